//! The board's HTTP API: the page, its live stream, and one small JSON POST per button.
//!
//! | route | does |
//! |---|---|
//! | `GET /` and `/assets/*` | the page (embedded in the binary) |
//! | `GET /health` | alive (`{"service":"board"}`, as scripts/svc.sh checks every process) |
//! | `GET /api/events` | server-sent events: every topic's latest value, then every change |
//! | `GET /api/state` | every topic's latest value as one JSON object |
//! | `GET /api/orders/{id}/journey` | the order's journey (`?format=text` or `mermaid` for text) |
//! | `POST /api/orders` | `{"item","qty","count"}`: place orders |
//! | `POST /api/orders/{id}/duplicate` | publish its OrderPlaced again, same message id |
//! | `POST /api/orders/{id}/status` | ask order-svc to ship or deliver it (`PATCH /order/{id}/status`) |
//! | `POST /api/poison` | `{"kind"}`: publish a poison message |
//! | `POST /api/dlq/replay` | `{"position","key"}` or `{"all":true}` |
//! | `POST /api/dlq/purge` | `{"confirm":true}` |
//! | `POST /api/dlq/look` | look at the DLQ's messages now |
//! | `POST /api/drills/{name}` | run a lab drill |
//! | `POST /api/faults/services/{name}/{stop,start,kill}` | 403 unless faults are allowed |
//! | `POST /api/faults/connections` | close every broker connection of the vhost |
//! | `POST /api/faults/redis` | `{"seconds"}`: stop Redis for a while |
//!
//! Every error is JSON (`{"error": ...}`). Before any route, [`guard`](crate::guard) checks the
//! request's `Host`; every answer forbids framing. A POST must say `content-type:
//! application/json` and, if the browser sends an `Origin`, come from the board's own page: a
//! page on another site cannot send that content type without the browser asking first
//! (CORS), so it cannot press the board's buttons behind a visitor's back. Every POST that
//! changes state (all but `look`) also passes [`Access::check_action`]: off loopback, only
//! with the board's token.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use saga_domain::order::OrderStatus;
use saga_platform::service::http::{ApiError, recover};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::guard::{Access, FRAMING_HEADERS};
use crate::hub::Update;
use crate::lab::drills;
use crate::lab::faults::{self, FaultError, ServiceAction};
use crate::lab::redis_outage::{self, RedisStopError};
use crate::page::{
    Done, Health, JourneyAnswer, Looking, OrderRow, PartialSuccess, Topic, TracesAccepted,
};
use crate::{Board, Shutdown, actions, assets, lock};

/// Largest request body: every action's parameters fit in far less.
const MAX_BODY: u64 = 16 * 1024;
/// Largest OTLP batch: the services send at most 512 spans a request, well under this.
const MAX_TRACES_BODY: u64 = 8 * 1024 * 1024;

pub fn routes(
    board: Arc<Board>,
    shutdown: Shutdown,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with = {
        let board = board.clone();
        warp::any().map(move || board.clone())
    };

    let page = assets::routes();

    let events = warp::path!("api" / "events")
        .and(warp::get())
        .and(with.clone())
        .map(move |board: Arc<Board>| {
            let stream = event_stream(board, shutdown.clone());
            warp::sse::reply(
                warp::sse::keep_alive()
                    .interval(Duration::from_secs(15))
                    .stream(stream),
            )
            .into_response()
        });

    let state = warp::path!("api" / "state")
        .and(warp::get())
        .and(with.clone())
        .map(|board: Arc<Board>| warp::reply::json(&state(&board)).into_response());

    let journey = warp::path!("api" / "orders" / String / "journey")
        .and(warp::get())
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .and(with.clone())
        .then(
            |id: String, query: std::collections::HashMap<String, String>, board| async move {
                answer(journey(board, id, query.get("format").map(String::as_str)).await)
            },
        );

    let place = warp::path!("api" / "orders")
        .and(action(&board))
        .and(with.clone())
        .then(|body: Bytes, board: Arc<Board>| async move {
            answer(
                async { actions::place(&board, parse(&body)?).await }
                    .await
                    .map(|answer| ok(&answer)),
            )
        });

    let duplicate = warp::path!("api" / "orders" / String / "duplicate")
        .and(action(&board))
        .and(with.clone())
        .then(|id: String, _body: Bytes, board: Arc<Board>| async move {
            answer(
                actions::duplicate(&board, &id)
                    .await
                    .map(|answer| ok(&answer)),
            )
        });

    let set_status = warp::path!("api" / "orders" / String / "status")
        .and(action(&board))
        .and(with.clone())
        .then(|id: String, body: Bytes, board: Arc<Board>| async move {
            answer(
                async { actions::set_status(&board, &id, parse(&body)?).await }
                    .await
                    .map(|answer| ok(&answer)),
            )
        });

    let poison = warp::path!("api" / "poison")
        .and(action(&board))
        .and(with.clone())
        .then(|body: Bytes, board: Arc<Board>| async move {
            answer(
                async { actions::poison(&board, parse(&body)?).await }
                    .await
                    .map(|answer| ok(&answer)),
            )
        });

    let replay = warp::path!("api" / "dlq" / "replay")
        .and(action(&board))
        .and(with.clone())
        .then(|body: Bytes, board: Arc<Board>| async move {
            answer(
                async { actions::replay(&board, parse(&body)?).await }
                    .await
                    .map(|answer| ok(&answer)),
            )
        });

    let look = warp::path!("api" / "dlq" / "look")
        .and(post_json())
        .and(with.clone())
        .then(|_body: Bytes, board: Arc<Board>| async move {
            board.dlq_dirty.notify_one();
            ok(&Looking { looking: true })
        });

    // The services' spans (OTLP/HTTP, JSON). Not an action: it changes only what the page
    // shows, and a service has no token to send.
    let traces = warp::path!("v1" / "traces")
        .and(warp::post())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("host"))
        .and(saga_platform::service::http::body_up_to(MAX_TRACES_BODY))
        .and(with.clone())
        .map(
            |content_type: Option<String>,
             origin: Option<String>,
             host: Option<String>,
             body: Bytes,
             board: Arc<Board>| {
                answer(
                    take_spans(&board, content_type, origin, host, &body).map(|answer| ok(&answer)),
                )
            },
        );

    let health = warp::path!("health").and(warp::get()).map(|| {
        ok(&Health {
            status: "ok",
            service: "board",
        })
    });

    let purge = warp::path!("api" / "dlq" / "purge")
        .and(action(&board))
        .and(with.clone())
        .then(|body: Bytes, board: Arc<Board>| async move {
            answer(
                async { actions::purge(&board, parse(&body)?).await }
                    .await
                    .map(|answer| ok(&answer)),
            )
        });

    let drill = warp::path!("api" / "drills" / String)
        .and(action(&board))
        .and(with.clone())
        .then(|name: String, _body: Bytes, board: Arc<Board>| async move {
            let started = drills::start(&board, &name).map_err(|e| {
                let status = match e {
                    drills::DrillError::Unknown(_) => StatusCode::NOT_FOUND,
                    drills::DrillError::Busy(_) | drills::DrillError::NoScripts => {
                        StatusCode::CONFLICT
                    }
                    drills::DrillError::Spawn(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                ApiError::new(status, e.to_string())
            });
            answer(started.map(|run| {
                warp::reply::with_status(warp::reply::json(&run), StatusCode::ACCEPTED)
                    .into_response()
            }))
        });

    let service = warp::path!("api" / "faults" / "services" / String / String)
        .and(action(&board))
        .and(with.clone())
        .then(
            |name: String, action: String, _body: Bytes, board: Arc<Board>| async move {
                answer(
                    service_fault(&board, &name, &action)
                        .await
                        .map(|answer| ok(&answer)),
                )
            },
        );

    let connections = warp::path!("api" / "faults" / "connections")
        .and(action(&board))
        .and(with.clone())
        .then(|_body: Bytes, board: Arc<Board>| async move {
            let closed = faults::close_connections(&board).await;
            answer(fault_result(&board, closed).map(|answer| ok(&answer)))
        });

    let redis = warp::path!("api" / "faults" / "redis")
        .and(action(&board))
        .and(with)
        .then(|body: Bytes, board: Arc<Board>| async move {
            answer(stop_redis(&board, &body).await.map(|outage| {
                warp::reply::with_status(warp::reply::json(&outage), StatusCode::ACCEPTED)
                    .into_response()
            }))
        });

    // Two boxed halves: one chain of fourteen `or`s is a type deep enough to overflow the
    // compiler's recursion limit when a release build checks it.
    let reads = page
        .or(health)
        .unify()
        .or(events)
        .unify()
        .or(look)
        .unify()
        .or(state)
        .unify()
        .or(journey)
        .unify()
        .or(traces)
        .unify()
        .boxed();
    let actions = place
        .or(duplicate)
        .unify()
        .or(set_status)
        .unify()
        .or(poison)
        .unify()
        .or(replay)
        .unify()
        .or(purge)
        .unify()
        .or(drill)
        .unify()
        .or(service)
        .unify()
        .or(connections)
        .unify()
        .or(redis)
        .unify()
        .boxed();
    let headers =
        FRAMING_HEADERS
            .into_iter()
            .fold(warp::http::HeaderMap::new(), |mut map, (name, value)| {
                map.insert(name, warp::http::HeaderValue::from_static(value));
                map
            });
    known_host(&board)
        .and(reads.or(actions).unify())
        .recover(recover)
        .unify()
        .with(warp::reply::with::headers(headers))
        .map(Reply::into_response)
}

/// Every request must name a host the board answers to (see [`crate::guard`]).
fn known_host(board: &Board) -> impl Filter<Extract = (), Error = Rejection> + Clone + use<> {
    let access = board.access.clone();
    warp::header::optional::<String>("host")
        .and_then(move |host: Option<String>| {
            let checked = access.check_host(host.as_deref());
            async move { checked.map_err(warp::reject::custom) }
        })
        .untuple_one()
}

/// A POST that changes state: [`post_json`] from a caller the board lets act.
fn action(board: &Board) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone + use<> {
    let access: Access = board.access.clone();
    warp::post()
        .and(warp::header::optional::<String>("authorization"))
        .and_then(move |authorization: Option<String>| {
            let checked = access.check_action(authorization.as_deref());
            async move { checked.map_err(warp::reject::custom) }
        })
        .untuple_one()
        .and(post_json())
}

fn ok(value: &impl serde::Serialize) -> Response {
    warp::reply::json(value).into_response()
}

fn answer(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(Reply::into_response)
}

/// A POST with a JSON body from the board's own page (see the module doc), at most
/// [`MAX_BODY`] bytes; an empty body reads as `{}`.
fn post_json() -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::post()
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("host"))
        .and_then(
            |content_type: Option<String>, origin: Option<String>, host: Option<String>| async move {
                guard(content_type.as_deref(), origin.as_deref(), host.as_deref())
                    .map_err(warp::reject::custom)
            },
        )
        .untuple_one()
        .and(saga_platform::service::http::body_up_to(MAX_BODY))
}

/// The cross-site checks of every POST.
fn guard(
    content_type: Option<&str>,
    origin: Option<&str>,
    host: Option<&str>,
) -> Result<(), ApiError> {
    let json =
        content_type.is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the parameters as application/json",
        ));
    }
    crate::guard::check_origin(origin, host)
}

/// The body as the action's parameters; a body that is not that is a 400 saying why.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid parameters: {e}")))
}

/// Every topic's latest value, as one object (for a script, or a test without SSE).
fn state(board: &Board) -> Value {
    let mut state = serde_json::Map::new();
    for update in board.hub.latest() {
        if let Ok(value) = serde_json::from_str::<Value>(&update.data) {
            state.insert(update.topic.name().to_owned(), value);
        }
    }
    if let Ok(history) = serde_json::to_value(lock(&board.live.series).history(&board.queues)) {
        state.insert(Topic::QueueHistory.name().to_owned(), history);
    }
    Value::Object(state)
}

/// What a page gets: the chart's history and every topic's latest value at once, then every
/// change as it comes, until the page goes away or the board stops.
fn event_stream(
    board: Arc<Board>,
    shutdown: Shutdown,
) -> impl Stream<Item = Result<warp::sse::Event, Infallible>> + Send + 'static {
    let history =
        serde_json::to_string(&lock(&board.live.series).history(&board.queues)).map(|data| {
            Update {
                topic: Topic::QueueHistory,
                data: data.into(),
            }
        });
    // The vocabulary first (the page draws nothing without it), then the chart, then the rest.
    let (vocabulary, rest): (Vec<Update>, Vec<Update>) = board
        .hub
        .latest()
        .into_iter()
        .partition(|update| update.topic == Topic::Vocabulary);
    let first: Vec<Update> = vocabulary.into_iter().chain(history).chain(rest).collect();
    let receiver = board.hub.subscribe();
    let live =
        futures_util::stream::unfold((receiver, board), |(mut receiver, board)| async move {
            let updates = match receiver.recv().await {
                Ok(update) => vec![update],
                // Too slow to keep up: catch up on the latest of everything instead.
                Err(RecvError::Lagged(_)) => board.hub.latest(),
                Err(RecvError::Closed) => return None,
            };
            Some((updates, (receiver, board)))
        })
        .flat_map(futures_util::stream::iter);
    futures_util::stream::iter(first)
        .chain(live)
        .take_until(shutdown.cancelled_owned())
        .map(|update| {
            Ok(warp::sse::Event::default()
                .event(update.topic.name())
                .data(update.data.as_ref()))
        })
}

async fn journey(
    board: Arc<Board>,
    id: String,
    format: Option<&str>,
) -> Result<Response, ApiError> {
    let id = saga_domain::ids::OrderId::parse(&id)
        .map_err(|e| ApiError::bad_request(format!("invalid order id: {}", e.0)))?;
    let timeline = sagactl::timeline::read(&board.redis, &board.keys, id.as_str())
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
    if timeline.is_unknown() {
        return Err(ApiError::not_found(format!(
            "nothing is recorded about order {id}"
        )));
    }
    let journey = sagactl::explain::journey(&timeline);
    let text = |body: String| {
        warp::reply::with_header(body, "content-type", "text/plain; charset=utf-8").into_response()
    };
    match format {
        None | Some("json") => Ok(ok(&JourneyAnswer {
            lanes: sagactl::explain::Lane::ALL.map(|l| l.name()).to_vec(),
            journey: &journey,
            requestable: timeline
                .order
                .as_ref()
                .and_then(|o| OrderStatus::parse(&o.status))
                .map(OrderStatus::requestable_from)
                .unwrap_or_default(),
            order: timeline
                .order
                .clone()
                .map(|order| OrderRow::of(id.as_str(), order, None)),
            waterfall: board.traces.waterfall(id.as_str()),
        })),
        Some("text") => Ok(text(journey.text())),
        Some("mermaid") => Ok(text(journey.mermaid())),
        Some(other) => Err(ApiError::bad_request(format!(
            "format is json, text or mermaid, not {other:?}"
        ))),
    }
}

/// Keep an OTLP/HTTP JSON batch of spans (`ExportTraceServiceRequest`).
fn take_spans(
    board: &Board,
    content_type: Option<String>,
    origin: Option<String>,
    host: Option<String>,
    body: &[u8],
) -> Result<TracesAccepted, ApiError> {
    let json = content_type
        .as_deref()
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the board reads OTLP/HTTP JSON only (OTEL_EXPORTER_OTLP_PROTOCOL=http/json)",
        ));
    }
    crate::guard::check_origin(origin.as_deref(), host.as_deref())?;
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("not OTLP JSON: {e}")))?;
    let got = board.traces.ingest(&request);
    Ok(TracesAccepted {
        partial_success: (got.rejected > 0).then(|| PartialSuccess {
            rejected_spans: got.rejected,
            error_message:
                "spans without valid ids and times, or beyond a full trace, were dropped".into(),
        }),
    })
}

async fn service_fault(board: &Board, name: &str, action: &str) -> Result<Done, ApiError> {
    if let Some(why) = board.faults_refused() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, why));
    }
    let action = ServiceAction::parse(action).ok_or_else(|| {
        ApiError::bad_request(format!("action is stop, start or kill, not {action:?}"))
    })?;
    let done = faults::act_on_service(board, name, action).await;
    fault_result(board, done)
}

fn fault_result(board: &Board, done: Result<String, FaultError>) -> Result<Done, ApiError> {
    match done {
        Ok(what) => {
            board.record(true, what.clone());
            Ok(Done { done: what })
        }
        Err(e) => {
            let status = match e {
                FaultError::Refused(_) => StatusCode::FORBIDDEN,
                FaultError::UnknownInstance(_) => StatusCode::NOT_FOUND,
                FaultError::Conflict(_) => StatusCode::CONFLICT,
                FaultError::Failed(_) => StatusCode::BAD_GATEWAY,
            };
            if status == StatusCode::BAD_GATEWAY {
                board.record(false, e.to_string());
            }
            Err(ApiError::new(status, e.to_string()))
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisStopRequest {
    seconds: u64,
}

async fn stop_redis(board: &Arc<Board>, body: &[u8]) -> Result<redis_outage::Outage, ApiError> {
    if board.faults_refused().is_some() || !board.args.allow_redis_stop {
        let why = board
            .faults_refused()
            .unwrap_or_else(|| RedisStopError::NotAllowed.to_string());
        return Err(ApiError::new(StatusCode::FORBIDDEN, why));
    }
    let request: RedisStopRequest = parse(body)?;
    redis_outage::stop_for(board, request.seconds)
        .await
        .map_err(|e| {
            let status = match e {
                RedisStopError::NotAllowed => StatusCode::FORBIDDEN,
                RedisStopError::BadSeconds(_) => StatusCode::BAD_REQUEST,
                RedisStopError::AlreadyStopped(_) | RedisStopError::Unsafe(_) => {
                    StatusCode::CONFLICT
                }
                RedisStopError::Failed(_) => StatusCode::BAD_GATEWAY,
            };
            ApiError::new(status, e.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_must_be_json_from_the_boards_own_page() {
        let json = Some("application/json");
        assert!(guard(json, None, Some("127.0.0.1:8080")).is_ok());
        assert!(guard(json, Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080")).is_ok());
        let cross = guard(json, Some("http://evil.example"), Some("127.0.0.1:8080")).unwrap_err();
        assert_eq!(cross.status, StatusCode::FORBIDDEN);
        let form = guard(Some("text/plain"), None, Some("127.0.0.1:8080")).unwrap_err();
        assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(guard(None, None, None).is_err());
    }

    #[test]
    fn an_empty_body_is_no_parameters() {
        let purge: actions::PurgeRequest = parse(b"").unwrap();
        assert!(!purge.confirm);
        let bad = parse::<actions::PurgeRequest>(b"{\"confirm\": \"yes\"}").unwrap_err();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let unknown = parse::<actions::PurgeRequest>(b"{\"force\": true}").unwrap_err();
        assert!(unknown.message.contains("unknown field"));
    }
}
