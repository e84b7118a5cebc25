//! `sagactl publish`: put a raw event on the exchange, the way a lab script (or a buggy
//! service) would, and wait for the broker's confirm.
//!
//! By default the message carries the properties our services set (see
//! [`saga_domain::events::EventMeta::properties`]); `--bare` sends none at all, like a minimal pika
//! script, which consumers must accept too. `--times N` sends the *same* body with the *same*
//! `message_id` N times: a duplicate delivery, on purpose, to watch idempotency work.
//! `--envelope` wraps the body as the services would with `EVENT_ENVELOPE` (StandardMessage, the
//! Go bus Event, structured CloudEvents), to watch a consumer read the same event in each shape.

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgGroup, Args};
use lapin::BasicProperties;
use saga_domain::envelope::Envelope;
use saga_domain::events::{EventMeta, EventType, unix_now_secs};
use saga_domain::wire;
use saga_platform::amqp::Publisher;
use saga_platform::amqp::properties::{MetaProperties, outgoing};
use saga_platform::service::config::Common;
use serde_json::Value;

use crate::broker;
use crate::samples::{Sample, SampleParams};

/// The `app_id` of everything `sagactl` publishes, so a person can tell hand-made messages apart.
pub const APP_ID: &str = "sagactl";

#[derive(Args, Debug)]
#[command(
    group(ArgGroup::new("payload").required(true).args(["body", "file", "sample"])),
    after_help = "Example:\n  sagactl publish --sample order --order-id demo-1 --qty 3 --times 2\n  \
                  sagactl publish --sample missing-qty\n  \
                  sagactl publish --sample order --envelope go-event\n  \
                  sagactl publish --routing-key order.placed --bare --body '{\"order_id\":\"x1\",\"item\":\"burger\",\"qty\":1}'"
)]
pub struct PublishArgs {
    /// Routing key; defaults to the sample's (order.placed or order.cancelled), else order.placed.
    #[arg(long)]
    routing_key: Option<String>,
    /// The body, sent byte for byte (it need not be valid JSON).
    #[arg(long)]
    body: Option<String>,
    /// Read the body from this file, byte for byte.
    #[arg(long)]
    file: Option<PathBuf>,
    /// A ready-made message (see the list below).
    #[arg(long, value_enum)]
    sample: Option<Sample>,
    /// The order a sample is about (default: a fresh UUID; `cancel` requires it).
    #[arg(long, conflicts_with_all = ["body", "file"])]
    order_id: Option<String>,
    /// Item for --sample order (and the poison samples).
    #[arg(long, default_value = "burger", conflicts_with_all = ["body", "file"])]
    item: String,
    /// Quantity for --sample order.
    #[arg(long, default_value_t = 1, conflicts_with_all = ["body", "file"])]
    qty: i64,
    /// student_id for --sample order.
    #[arg(long, conflicts_with_all = ["body", "file"])]
    student: Option<String>,
    /// Send no AMQP properties at all, as a minimal lab script would.
    #[arg(long)]
    bare: bool,
    /// Wrap the body in an envelope, as a service set with EVENT_ENVELOPE does: binary (the
    /// flat body, CloudEvents headers), standard-message, go-event or cloudevents.
    #[arg(long, conflicts_with = "bare", value_parser = saga_platform::service::config::parse_envelope)]
    envelope: Option<Envelope>,
    /// Publish the same body with the same message_id this many times (duplicates on purpose).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    times: u32,
    /// Exchange to publish to (default: the topology's; "" is the default exchange, where the
    /// routing key is a queue name).
    #[arg(long)]
    exchange: Option<String>,
}

/// # Errors
/// Unreadable file, invalid sample parameters, broker unreachable, or the broker refused or
/// returned the message (nothing is bound to that routing key).
pub async fn run(common: &Common, args: PublishArgs) -> anyhow::Result<()> {
    let Payload {
        body,
        order_id,
        routing_key: default_key,
        expectation,
    } = payload(&args)?;
    let routing_key = args.routing_key.clone().unwrap_or(default_key);
    let exchange = args
        .exchange
        .clone()
        .unwrap_or_else(|| common.topology.exchange.clone());
    let message_id = uuid::Uuid::new_v4().to_string();
    let (body, properties) = match (args.bare, args.envelope) {
        (true, _) => (body, BasicProperties::default()),
        (false, None) => {
            let properties = properties(&routing_key, order_id.as_deref(), &message_id, &body);
            (body, properties)
        }
        (false, Some(envelope)) => {
            let event = EventType::from_routing_key(&routing_key).with_context(|| {
                format!("--envelope needs an event's routing key (order.placed, ...), not {routing_key:?}")
            })?;
            let meta = hand_made(event, order_id.as_deref().unwrap_or_default(), &message_id)
                .versioned(wire::version_of(&body));
            outgoing(&meta.stamp(order_id.as_deref()), envelope, &body)
        }
    };

    let conn = broker::connect(&common.rabbitmq_url).await?;
    let outgoing = Outgoing {
        exchange: &exchange,
        routing_key: &routing_key,
        body: &body,
        properties,
    };
    let published = publish_copies(&conn, &common.topology, &outgoing, args.times).await;
    let _ = conn.close(200, "done".into()).await;
    published?;

    let copies = match args.times {
        1 => String::new(),
        n => format!("{n} copies "),
    };
    outln!(
        "published {copies}to exchange {exchange:?} with routing key {routing_key} (confirmed)"
    )?;
    outln!("  order_id    {}", order_id.as_deref().unwrap_or("-"))?;
    if args.bare {
        outln!("  message_id  - (bare: no properties)")?;
    } else {
        let same = if args.times > 1 {
            " (the same on every copy)"
        } else {
            ""
        };
        outln!("  message_id  {message_id}{same}")?;
    }
    if let Some(expectation) = expectation {
        outln!("  expect      {expectation}")?;
    }
    Ok(())
}

/// One message, ready to go out.
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub properties: BasicProperties,
}

/// Publish `times` identical copies of a message (same properties, so the same `message_id`)
/// and wait for every confirm. The topology is declared first, as every publisher of the saga
/// does, should it be missing.
///
/// # Errors
/// The broker refused the declaration or a copy, or returned it unroutable.
pub async fn publish_copies(
    conn: &lapin::Connection,
    topology: &saga_platform::amqp::topology::Topology,
    message: &Outgoing<'_>,
    times: u32,
) -> anyhow::Result<()> {
    saga_platform::amqp::declare_topology(conn, topology)
        .await
        .context("declaring the saga's exchange and queues")?;
    let publisher = Publisher::open(conn).await?;
    // Send every copy first, then collect the confirms: same order, one round trip's wait.
    let mut pending = Vec::new();
    for _ in 0..times {
        pending.push(
            publisher
                .send(
                    message.exchange,
                    message.routing_key,
                    message.body,
                    message.properties.clone(),
                )
                .await?,
        );
    }
    for confirm in pending {
        confirm
            .confirmed()
            .await
            .with_context(|| format!("publishing to exchange {:?}", message.exchange))?;
    }
    Ok(())
}

/// What to publish, before properties.
struct Payload {
    body: Vec<u8>,
    /// The order the message is about, if we can tell.
    order_id: Option<String>,
    /// Where it goes unless --routing-key says otherwise.
    routing_key: String,
    /// For a sample: what the saga should do with it.
    expectation: Option<&'static str>,
}

fn payload(args: &PublishArgs) -> anyhow::Result<Payload> {
    if let Some(sample) = args.sample {
        let message = sample.build(&SampleParams {
            order_id: args.order_id.clone(),
            item: args.item.clone(),
            qty: args.qty,
            student_id: args.student.clone(),
        })?;
        return Ok(Payload {
            body: message.body,
            order_id: Some(message.order_id),
            routing_key: message.event_type.routing_key().to_owned(),
            expectation: Some(sample.expectation()),
        });
    }
    let body = match (&args.body, &args.file) {
        (Some(body), _) => body.clone().into_bytes(),
        (None, Some(path)) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        (None, None) => anyhow::bail!("give --body, --file or --sample"),
    };
    Ok(Payload {
        order_id: order_id_of(&body),
        body,
        routing_key: EventType::OrderPlaced.routing_key().to_owned(),
        expectation: None,
    })
}

/// The body's `order_id`, if it is a JSON object with a string there.
fn order_id_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("order_id")?
        .as_str()
        .map(str::to_owned)
}

/// The metadata of a hand-made event: ours, published by sagactl, starting a trace of its own.
fn hand_made(event_type: EventType, order_id: &str, message_id: &str) -> EventMeta {
    EventMeta {
        event_id: message_id.to_owned(),
        event_type,
        correlation_id: order_id.to_owned(),
        app_id: APP_ID.to_owned(),
        timestamp: unix_now_secs(),
        trace: Some(saga_domain::trace::Trace::root()),
        version: event_type.schema_version(),
    }
}

/// The properties our services put on an event, for a hand-made one with this body: its
/// `x-schema-version` is the version the body's keys show (`lines`: 2.0, else 1.0).
pub fn properties(
    routing_key: &str,
    order_id: Option<&str>,
    message_id: &str,
    body: &[u8],
) -> BasicProperties {
    let event_type = EventType::from_routing_key(routing_key);
    if let (Some(event_type), Some(order_id)) = (event_type, order_id) {
        return hand_made(event_type, order_id, message_id)
            .versioned(wire::version_of(body))
            .properties();
    }
    // A routing key outside the contract, or no order id: the same properties, minus the ones
    // we cannot know.
    let mut props = BasicProperties::default()
        .with_message_id(message_id.into())
        .with_app_id(APP_ID.into())
        .with_timestamp(unix_now_secs())
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    if let Some(event_type) = event_type {
        props = props.with_type(event_type.name().into());
    }
    if let Some(order_id) = order_id {
        props = props.with_correlation_id(order_id.into());
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_follow_the_contract() {
        let props = properties("order.placed", Some("o1"), "m1", b"{}");
        assert_eq!(props.message_id().as_ref().map(|s| s.as_str()), Some("m1"));
        assert_eq!(
            props.kind().as_ref().map(|s| s.as_str()),
            Some("OrderPlaced")
        );
        assert_eq!(
            props.correlation_id().as_ref().map(|s| s.as_str()),
            Some("o1")
        );
        assert_eq!(props.app_id().as_ref().map(|s| s.as_str()), Some(APP_ID));
        assert_eq!(*props.delivery_mode(), Some(2));

        let odd = properties("something.else", None, "m2", b"{}");
        assert!(odd.kind().is_none());
        assert!(odd.correlation_id().is_none());
        assert_eq!(odd.message_id().as_ref().map(|s| s.as_str()), Some("m2"));
    }

    #[test]
    fn finds_the_order_id_in_a_body() {
        assert_eq!(
            order_id_of(br#"{"order_id":"x","qty":1}"#),
            Some("x".into())
        );
        assert_eq!(order_id_of(br#"{"order_id":5}"#), None);
        assert_eq!(order_id_of(b"not json"), None);
    }
}
