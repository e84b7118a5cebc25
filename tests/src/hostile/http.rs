//! Random HTTP requests at every route of the three services and the board, and the rules every
//! answer must follow.
//!
//! A request is drawn as a route of its target (or a random path), a method (mostly the
//! route's own), query pairs, up to six headers and a body. Header values go up to and past
//! every limit (255, 256, 8 KiB and 64 KiB), with bytes above 0x7f; bodies are JSON of every
//! type and depth, hostile text (NUL, lone surrogates, `1e400`, invalid UTF-8) and sizes on both
//! sides of each body limit (4 KiB for inventory-svc, 16 KiB elsewhere) and far over.
//!
//! What the client cannot send is not drawn: header names are HTTP tokens and values have no
//! control characters (the `http` crate refuses both, as any proxy would), and the headers of
//! one request stay under hyper's own 400 KiB buffer, past which hyper itself answers before any
//! route sees the request.

use std::fmt;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

use super::run::brief;

/// Who a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Order,
    Inventory,
    Notification,
    Board,
}

impl Target {
    pub const ALL: [Target; 4] = [
        Self::Order,
        Self::Inventory,
        Self::Notification,
        Self::Board,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Order => "order-svc",
            Self::Inventory => "inventory-svc",
            Self::Notification => "notification-svc",
            Self::Board => "board",
        }
    }

    /// The largest body the target reads on its routes with a body.
    fn body_limit(self) -> usize {
        match self {
            Self::Inventory => 4096,
            _ => 16 * 1024,
        }
    }

    /// `(method, path template)` of every route (and a few near misses, such as `PUT /stock`):
    /// `{id}` an order id (often a real one), `{item}`,
    /// `{name}` and `{action}` any text.
    pub fn routes(self) -> &'static [(&'static str, &'static str)] {
        const OPS: [(&str, &str); 3] = [("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics")];
        match self {
            Self::Order => &[
                ("POST", "/order"),
                ("GET", "/order/{id}"),
                ("GET", "/orders"),
                ("POST", "/order/{id}/cancel"),
                ("PATCH", "/order/{id}/status"),
                ("PATCH", "/api/v1/orders/{id}/status"),
                ("GET", "/api/v1/orders"),
                ("POST", "/api/v1/orders"),
                ("GET", "/api/v1/orders/{id}"),
                ("POST", "/api/v1/orders/{id}/cancel"),
                ("GET", "/products"),
                ("GET", "/openapi.json"),
                OPS[0],
                OPS[1],
                OPS[2],
            ],
            Self::Inventory => &[
                ("GET", "/stock"),
                ("PUT", "/stock/{item}"),
                ("PUT", "/stock"),
                ("GET", "/products"),
                ("PUT", "/products/{item}"),
                ("POST", "/products/announce"),
                ("GET", "/openapi.json"),
                OPS[0],
                OPS[1],
                OPS[2],
            ],
            Self::Notification => &OPS,
            Self::Board => &[
                ("GET", "/"),
                ("GET", "/assets/{name}"),
                ("GET", "/health"),
                ("GET", "/api/state"),
                ("GET", "/api/orders/{id}/journey"),
                ("POST", "/api/orders"),
                ("POST", "/api/orders/{id}/duplicate"),
                ("POST", "/api/poison"),
                ("POST", "/api/dlq/replay"),
                ("POST", "/api/dlq/purge"),
                ("POST", "/api/dlq/look"),
                ("POST", "/api/drills/{name}"),
                ("POST", "/api/faults/services/{name}/{action}"),
                ("POST", "/api/faults/connections"),
                ("POST", "/api/faults/redis"),
                ("POST", "/v1/traces"),
            ],
        }
    }
}

/// How many of the latest orders a path's order id is drawn from.
const RECENT: usize = 4;

/// One piece of a path.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Literal text of the route.
    Fixed(String),
    /// Drawn text, percent-encoded when sent.
    Text(String),
    /// One of the latest orders this run has placed (see [`RECENT`]).
    KnownOrder(usize),
}

/// A request body, with the name of how it was drawn (for the tally and the findings).
#[derive(Clone)]
pub struct Body {
    pub kind: &'static str,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, brief(&self.bytes))
    }
}

/// One drawn request.
#[derive(Clone)]
pub struct Request {
    pub target: Target,
    pub method: String,
    /// The route template it was drawn from, or `random path`.
    pub route: String,
    pub path: Vec<Piece>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Option<Body>,
}

impl Request {
    /// The tally's name for this kind of request: target and route.
    pub fn kind(&self) -> String {
        format!("http {} {}", self.target.name(), self.route)
    }

    /// The path and query as sent, given the orders known so far.
    pub fn path_and_query(&self, orders: &[String]) -> String {
        let mut out = String::new();
        for piece in &self.path {
            match piece {
                Piece::Fixed(text) => out.push_str(text),
                Piece::Text(text) => out.push_str(&encode(text)),
                // One of the latest few: a recent order can still be cancelled.
                Piece::KnownOrder(i) => {
                    let back = i % orders.len().clamp(1, RECENT);
                    match orders
                        .len()
                        .checked_sub(back + 1)
                        .and_then(|at| orders.get(at))
                    {
                        Some(id) => out.push_str(&encode(id)),
                        None => out.push_str("no-order-yet"),
                    }
                }
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        for (i, (key, value)) in self.query.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(&encode(key));
            out.push('=');
            out.push_str(&encode(value));
        }
        out
    }
}

impl fmt::Debug for Request {
    /// Long values shown short, so a finding names the case in a few lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.target.name(),
            self.method,
            brief(self.path_and_query(&["<a placed order>".into()]).as_bytes())
        )?;
        for (name, value) in &self.headers {
            write!(f, " -H {name}: {}", brief(value))?;
        }
        match &self.body {
            Some(body) => write!(f, " body({}) {}", body.kind, brief(&body.bytes)),
            None => write!(f, " no body"),
        }
    }
}

/// Percent-encode everything but unreserved characters and `:@`, so that any drawn text
/// reaches the route as one path segment (the server decodes it).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// --- strategies ------------------------------------------------------------------------------

/// Text of exactly `len` bytes (ASCII), for limits: 255, 256, 8 KiB, 64 KiB.
fn sized(len: usize) -> impl Strategy<Value = String> {
    select(vec!['x', 'a', '7', '-']).prop_map(move |c| c.to_string().repeat(len))
}

/// An id-like or hostile path segment.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9-]{1,12}",
        2 => ".{0,24}",
        1 => select(vec![
            "", ".", "..", ":", "a:b", "o-1:history", "*", "%", "%00", "\u{0}", "null", "-1",
            "9999999999999999999999", "order", "orders", "cancel", "🍕", "\u{202e}gpj.exe",
        ]).prop_map(str::to_owned),
        1 => select(vec![64usize, 128, 129, 255, 256, 300, 1024, 4096]).prop_flat_map(sized),
    ]
}

fn path_for(template: &'static str) -> impl Strategy<Value = Vec<Piece>> {
    let parts: Vec<&'static str> = template.split('/').filter(|p| !p.is_empty()).collect();
    let pieces: Vec<BoxedStrategy<Piece>> = parts
        .into_iter()
        .map(|part| match part {
            "{id}" => prop_oneof![
                3 => any::<usize>().prop_map(Piece::KnownOrder),
                2 => segment().prop_map(Piece::Text),
            ]
            .boxed(),
            "{item}" => prop_oneof![
                select(vec!["burger", "pizza", "sushi", "salad", "widget"])
                    .prop_map(|s| Piece::Text(s.into())),
                segment().prop_map(Piece::Text),
            ]
            .boxed(),
            "{name}" | "{action}" => prop_oneof![
                select(vec![
                    "backlog",
                    "idempotency",
                    "dlq",
                    "inventory-svc",
                    "order-svc",
                    "stop",
                    "start",
                    "kill",
                    "rm-rf",
                    "app.js",
                    "style.css",
                    "index.html",
                ])
                .prop_map(|s| Piece::Text(s.into())),
                segment().prop_map(Piece::Text),
            ]
            .boxed(),
            fixed => Just(Piece::Fixed(format!("/{fixed}"))).boxed(),
        })
        .collect();
    pieces.prop_map(|pieces| {
        // A drawn piece needs its own slash; fixed ones carry theirs.
        pieces
            .into_iter()
            .flat_map(|piece| match piece {
                Piece::Fixed(_) => vec![piece],
                other => vec![Piece::Fixed("/".into()), other],
            })
            .collect()
    })
}

fn random_path() -> impl Strategy<Value = Vec<Piece>> {
    proptest::collection::vec(segment(), 0..5).prop_map(|segments| {
        segments
            .into_iter()
            .flat_map(|s| [Piece::Fixed("/".into()), Piece::Text(s)])
            .collect()
    })
}

fn method(own: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(own.to_owned()),
        3 => select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"])
            .prop_map(str::to_owned),
        1 => "[A-Z]{1,10}",
    ]
}

fn query() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![
        3 => select(vec!["status", "limit", "offset", "format", "item", "page", "student_id"])
            .prop_map(str::to_owned),
        1 => ".{0,12}",
    ];
    // Wire samples, not the domain's vocabulary: the statuses are words a client may type into
    // a query, in and out of the spelling the API knows.
    let value = prop_oneof![
        3 => select(vec![
            "", "0", "1", "-1", "10", "1000", "1001", "18446744073709551616", "1e3", "NaN",
            "PLACED", "CONFIRMED", "FAILED", "CANCELLED", "placed", "text", "mermaid", "json",
        ])
        .prop_map(str::to_owned),
        2 => ".{0,24}",
        1 => select(vec![255usize, 256, 8192]).prop_flat_map(sized),
    ];
    proptest::collection::vec((key, value), 0..4)
}

/// A header value the `http` crate lets a client send: visible ASCII, spaces and tabs, and
/// bytes above 0x7f (obs-text), at every size that is a limit somewhere.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let visible =
        proptest::collection::vec(prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff], 0..64);
    prop_oneof![
        3 => select(vec![
            "application/json", "application/json; charset=utf-8", "text/plain",
            "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "",
            "o-123", "2f1c8f0e-6f1b-4f4e-9a53-2b0c8b7a1d11", "127.0.0.1", "localhost:1",
            "http://127.0.0.1", "null", "http://evil.example", "https://evil.example:443",
            "Bearer x.y.z", "*/*", "text/event-stream", "a:b", "../../etc/passwd",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        3 => visible,
        2 => select(vec![128usize, 129, 255, 256, 1024, 8192, 8193, 65536])
            .prop_flat_map(sized)
            .prop_map(String::into_bytes),
    ]
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        // The headers the services read and copy on (into AMQP properties, Redis): most often.
        3 => select(vec!["x-correlation-id", "idempotency-key"]).prop_map(str::to_owned),
        5 => select(vec![
            "x-correlation-id", "idempotency-key", "content-type", "host", "origin", "accept",
            "authorization", "x-forwarded-for", "x-forwarded-host", "user-agent", "cookie",
            "referer", "x-request-id", "accept-encoding",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z][a-z0-9-]{0,20}",
        1 => select(vec![255usize, 256, 1024]).prop_flat_map(sized),
    ]
}

/// Up to six headers, of which at most two of 8 KiB or more (see the module doc).
fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    proptest::collection::vec((header_name(), header_value()), 0..6).prop_map(|mut headers| {
        let mut big = 0;
        headers.retain(|(_, value)| {
            big += usize::from(value.len() >= 8192);
            value.len() < 8192 || big <= 2
        });
        headers
    })
}

/// Any JSON value, nested up to four deep, with hostile leaves.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
        select(vec![
            "\u{0}", "a\u{0}b", "🍕", "\u{feff}", "\u{202e}", "burger", "PLACED"
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The names the routes read, and others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec![
            "item", "qty", "student_id", "reason", "available", "count", "kind", "position",
            "key", "all", "confirm", "seconds", "status", "items", "order_id", "format",
            "sku", "user_id", "lines",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
}

/// An object with the fields the routes read, each of any JSON type.
fn fields() -> impl Strategy<Value = Value> {
    let hostile = prop_oneof![
        3 => select(vec![
            json!("burger"), json!("pizza"), json!(1), json!(2), json!(0), json!(-1),
            json!(4_294_967_296_i64), json!(i64::MAX), json!(u64::MAX), json!(1.5), json!("1"),
            json!(true), json!(null), json!([]), json!({}), json!(""), json!("a\u{0}b"),
            json!("x".repeat(129)), json!("x".repeat(300)), json!(["burger"]),
            json!({"item": "burger", "qty": 1}), json!("CONFIRMED"), json!("a:b"),
            // Lines of an order of several: valid, the starter's, repeated, nested, too many.
            json!([{"item": "burger", "qty": 1}, {"item": "pizza", "qty": 2}]),
            json!([{"sku": "burger", "qty": 1}]),
            json!([{"item": "burger", "qty": 1}, {"item": "burger", "qty": 1}]),
            json!([{"item": "burger", "sku": "pizza", "qty": 1}]),
            json!([[1]]),
            Value::Array((0..25).map(|i| json!({"item": format!("i{i}"), "qty": 1})).collect()),
        ]),
        1 => json_value(),
    ];
    proptest::collection::btree_map(field_name(), hostile, 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Text that is not quite JSON, or JSON at the edges of what parsers accept.
fn edge_text() -> impl Strategy<Value = Vec<u8>> {
    select(vec![
        b"".to_vec(),
        b"   ".to_vec(),
        b"null".to_vec(),
        b"1e400".to_vec(),
        b"-0".to_vec(),
        br#"{"item":"burger","qty":1e400}"#.to_vec(),
        br#"{"item":"burger","qty":100000000000000000000000000000}"#.to_vec(),
        br#"{"item":"burger","qty":-0}"#.to_vec(),
        br#"{"item":"\ud800","qty":1}"#.to_vec(),
        br#"{"item":"burger","qty":1,"qty":2}"#.to_vec(),
        br#"{"item":"burger","qty":1} trailing"#.to_vec(),
        b"\xef\xbb\xbf{\"item\":\"burger\",\"qty\":1}".to_vec(),
        b"{\"item\":\"bur\xffger\",\"qty\":1}".to_vec(),
        b"\xff\xfe\x00\x01".to_vec(),
        [b"[".repeat(5000), b"]".repeat(5000)].concat(),
        [b"{\"a\":".repeat(3000), b"1".to_vec(), b"}".repeat(3000)].concat(),
        b"{\"item\":\"burger\",\"qty\":1".to_vec(),
    ])
}

/// A JSON object padded to exactly `len` bytes.
fn padded(len: usize) -> Vec<u8> {
    let shell = br#"{"item":"burger","qty":1,"pad":""}"#.len();
    let pad = "p".repeat(len.saturating_sub(shell));
    let mut bytes =
        serde_json::to_vec(&json!({"item": "burger", "qty": 1, "pad": pad})).unwrap_or_default();
    bytes.truncate(len.max(shell));
    bytes
}

fn body(limit: usize) -> impl Strategy<Value = Option<Body>> {
    let sizes = vec![limit - 1, limit, limit + 1, 65536, 1 << 20];
    prop_oneof![
        3 => Just(None),
        3 => fields().prop_map(|v| Some(Body { kind: "fields", bytes: v.to_string().into_bytes() })),
        2 => json_value().prop_map(|v| Some(Body { kind: "json", bytes: v.to_string().into_bytes() })),
        2 => edge_text().prop_map(|bytes| Some(Body { kind: "edge", bytes })),
        1 => proptest::collection::vec(any::<u8>(), 0..256)
            .prop_map(|bytes| Some(Body { kind: "bytes", bytes })),
        1 => select(sizes).prop_map(|len| Some(Body { kind: "sized", bytes: padded(len) })),
    ]
}

/// A request at `target`: one of its routes (mostly) or a random path.
pub fn request(target: Target) -> impl Strategy<Value = Request> {
    let route = prop_oneof![
        9 => select(target.routes().to_vec())
            .prop_flat_map(|(own, template)| (method(own), path_for(template), Just(template.to_owned()))),
        1 => (method("GET"), random_path(), Just("random path".to_owned())),
    ];
    (
        route,
        query(),
        headers(),
        body(target.body_limit()),
        any::<u8>(),
    )
        .prop_map(
            move |((method, path, route), query, mut headers, body, json_type)| {
                // Most bodies say they are JSON, so they get past the content-type check to the
                // parser; a drawn content-type header is sent as well (after this one).
                if body.is_some() && json_type < 200 {
                    headers.insert(0, ("content-type".into(), b"application/json".to_vec()));
                }
                Request {
                    target,
                    method,
                    route,
                    path,
                    query,
                    headers,
                    body,
                }
            },
        )
}

// --- sending and judging ---------------------------------------------------------------------

/// What came back.
#[derive(Debug)]
pub enum Answer {
    /// Status, content type and body (the body read only where one is expected).
    Answered {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    /// The client refused to build the request (never drawn on purpose; counted, not judged).
    Unsendable(String),
    /// No answer: the connection failed, closed or timed out.
    NoAnswer(String),
}

/// Send `request` to the service at `base` (`http://host:port`).
pub async fn send(
    client: &reqwest::Client,
    base: &str,
    request: &Request,
    orders: &[String],
) -> Answer {
    let Ok(method) = reqwest::Method::from_bytes(request.method.as_bytes()) else {
        return Answer::Unsendable(format!("method {:?}", request.method));
    };
    let url = format!("{base}{}", request.path_and_query(orders));
    let mut builder = client.request(method, &url);
    for (name, value) in &request.headers {
        let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value),
        ) else {
            return Answer::Unsendable(format!("header {name}"));
        };
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.bytes.clone());
    }
    let response = match builder.send().await {
        Ok(response) => response,
        Err(e) if e.is_builder() => return Answer::Unsendable(format!("{e:#}")),
        Err(e) => return Answer::NoAnswer(format!("{e:#}")),
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // A live stream (the board's server-sent events) never ends: its status is the answer.
    if content_type.starts_with("text/event-stream") {
        return Answer::Answered {
            status,
            content_type,
            body: Vec::new(),
        };
    }
    match tokio::time::timeout(Duration::from_secs(10), response.bytes()).await {
        Ok(Ok(body)) => Answer::Answered {
            status,
            content_type,
            body: body.to_vec(),
        },
        Ok(Err(e)) => Answer::NoAnswer(format!("status {status}, then the body failed: {e:#}")),
        Err(_) => Answer::NoAnswer(format!("status {status}, then no body within 10 s")),
    }
}

/// The rules every answer follows; `Err` says which one this answer broke.
///
/// - A request always gets an answer. The one exception: a body over the route's limit may be
///   cut off by the server closing the connection after answering 413 (hyper does not read a
///   body nobody wants), which a client sees as a failed send.
/// - No 5xx but 503 (a dependency away, the outbox full, not ready), and that one JSON too
///   (`/ready`'s 503 is its report of the checks, JSON without `"error"`).
/// - Every 4xx and 5xx is a JSON object with an `"error"` string (HEAD has no body to judge).
pub fn judge(request: &Request, answer: &Answer) -> Result<(), String> {
    match answer {
        Answer::Unsendable(_) => Ok(()),
        Answer::NoAnswer(why) => {
            let over_limit = request
                .body
                .as_ref()
                .is_some_and(|b| b.bytes.len() > request.target.body_limit());
            if over_limit {
                Ok(())
            } else {
                Err(format!("no answer: {why}"))
            }
        }
        Answer::Answered { status, body, .. } => {
            if *status >= 500 && *status != 503 {
                return Err(format!("answered {status}: {}", brief(body)));
            }
            if *status < 400 || request.method == "HEAD" {
                return Ok(());
            }
            // `/ready`'s 503 is documented: its body lists the checks and what is down.
            let ready = request.route == "/ready" || request.route.ends_with("/ready");
            if *status == 503 && ready && serde_json::from_slice::<Value>(body).is_ok() {
                return Ok(());
            }
            let parsed: Option<Value> = serde_json::from_slice(body).ok();
            match parsed.as_ref().and_then(|v| v.get("error")) {
                Some(Value::String(_)) => Ok(()),
                _ => Err(format!(
                    "answered {status} without a JSON {{\"error\": ...}} body: {}",
                    brief(body)
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostile::run::{Seed, draw};

    #[test]
    fn drawn_requests_cover_every_route_and_render_as_urls() {
        let mut runner = Seed(7).runner("http-unit");
        let mut routes = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let request = draw(&mut runner, &request(Target::Order)).unwrap();
            let url = request.path_and_query(&["o-1".into()]);
            assert!(url.starts_with('/'), "{url}");
            assert!(!url.contains(' '), "encoded: {url}");
            routes.insert(request.route);
        }
        for (_, template) in Target::Order.routes() {
            assert!(routes.contains(*template), "{template} never drawn");
        }
    }

    #[test]
    fn padded_bodies_have_the_size_asked_for() {
        for len in [4095, 4096, 4097, 16384] {
            assert_eq!(padded(len).len(), len);
            assert!(serde_json::from_slice::<Value>(&padded(len)).is_ok());
        }
    }

    #[test]
    fn the_rules_tell_good_answers_from_bad() {
        let request = Request {
            target: Target::Order,
            method: "GET".into(),
            route: "/orders".into(),
            path: vec![Piece::Fixed("/orders".into())],
            query: vec![],
            headers: vec![],
            body: None,
        };
        let answer = |status, body: &str| Answer::Answered {
            status,
            content_type: "application/json".into(),
            body: body.as_bytes().to_vec(),
        };
        assert!(judge(&request, &answer(200, "[]")).is_ok());
        assert!(judge(&request, &answer(400, r#"{"error":"bad"}"#)).is_ok());
        assert!(judge(&request, &answer(503, r#"{"error":"redis"}"#)).is_ok());
        assert!(judge(&request, &answer(400, "bad")).is_err());
        assert!(judge(&request, &answer(500, r#"{"error":"internal error"}"#)).is_err());
        assert!(judge(&request, &Answer::NoAnswer("reset".into())).is_err());
    }
}
