//! The transactional outbox: how an order's event gets from Redis to the broker, exactly as
//! durable as the order itself.
//!
//! - **Write**: [`crate::orders`] writes an order *and* its event in one Redis transaction
//!   (`POST /order`: `lua/place.lua`; every move of an order, with its `order.status.updated`:
//!   `lua/transition.lua`; each one atomic step, with the request's Idempotency-Key record
//!   when it has one), the event as a stream entry whose
//!   fields are [`entry_fields`]. Either both exist or neither, so `POST /order` can answer 201
//!   while the broker is down: the event waits here.
//! - **Relay** ([`relay`]): reads the stream in order, publishes each entry with publisher
//!   confirms ([`message_of`] turns it back into a message), and deletes it only once the broker
//!   confirmed it. A crash between confirm and delete publishes it again: consumers dedupe.
//! - **Backpressure** ([`backpressure`]): while the relay is connected but not keeping up, new
//!   orders wait briefly for room, then get 503, instead of joining an ever-longer queue.
//! - **Parking** ([`parked`]): an entry that can never be published as it is (a property longer
//!   than an AMQP short string, an event order-svc does not publish, a missing field: a
//!   corrupted entry, or one an older version wrote) is moved aside, with its reason, to the
//!   `{prefix}:outbox:parked` stream, and noted in its order's timeline; the entries behind it
//!   flow. [`message_of`] decides, without ever panicking; `sagactl outbox list` / `replay`
//!   are the operator's side.

pub mod backpressure;
pub mod parked;
pub mod relay;

use std::collections::HashMap;

use lapin::BasicProperties;
use lapin::types::ShortString;
use saga_domain::envelope::{Envelope, Stamp};
use saga_domain::events::{EventMeta, EventType};
use saga_domain::trace::{TRACEPARENT, TRACESTATE, Trace};
use saga_domain::version::SchemaVersion;
use saga_platform::amqp::properties::outgoing;

pub use backpressure::Outbox;

use crate::SERVICE;

/// The largest body an outbox entry may carry to the broker. Far above anything order-svc
/// writes (its requests are at most [`crate::api::MAX_BODY`]); an entry beyond it was not
/// written by us.
pub const MAX_ENTRY_BODY: usize = 64 * 1024;

/// The events order-svc publishes from its outbox; any other `type` in an entry is parked
/// (published, it would come back unroutable or mislead its consumers).
const PUBLISHED: [EventType; 3] = [
    EventType::OrderPlaced,
    EventType::OrderCancelled,
    EventType::OrderStatusUpdated,
];

/// The fields of an outbox stream entry: everything the relay needs to publish the event.
pub fn entry_fields(meta: &EventMeta, order_id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("event_id", meta.event_id.clone()),
        ("type", meta.event_type.name().to_owned()),
        ("routing_key", meta.event_type.routing_key().to_owned()),
        ("correlation_id", meta.correlation_id.clone()),
        ("order_id", order_id.to_owned()),
        ("timestamp", meta.timestamp.to_string()),
        ("schema_version", meta.version.to_string()),
        ("body", String::from_utf8_lossy(body).into_owned()),
        // Empty when untraced: a Lua script takes the fields as a flat list of pairs.
        (
            TRACEPARENT,
            meta.trace
                .as_ref()
                .map(Trace::traceparent)
                .unwrap_or_default(),
        ),
        (
            TRACESTATE,
            meta.trace
                .as_ref()
                .and_then(|t| t.state.clone())
                .unwrap_or_default(),
        ),
    ]
}

/// An outbox entry's fields as Redis holds them: bytes, which need not be UTF-8 (a corrupted
/// entry, or one written by hand). Read as bytes, so that one such entry cannot make the whole
/// batch around it unreadable; [`message_of`] tells it apart, and it is parked as it is.
pub type RawFields = HashMap<Vec<u8>, Vec<u8>>;

/// Field `name` of `fields` as text, cut to a line, for logs and reasons (`""` if absent).
pub fn shown(fields: &RawFields, name: &str) -> String {
    fields
        .get(name.as_bytes())
        .map(|v| cut(&String::from_utf8_lossy(v)))
        .unwrap_or_default()
}

/// An outbox entry as the message the relay publishes: the event it is (its routing key and
/// `type` follow from it), its body and its AMQP properties.
#[derive(Debug, Clone)]
pub struct Message {
    pub event: EventType,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
    /// The publish's span and the span it continues (the one that wrote the entry), if traced.
    pub trace: Option<(Trace, u64)>,
}

/// Why an outbox entry can never be published as it is: the reason it is parked with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unpublishable(pub String);

/// The message an outbox entry stands for.
///
/// Every conversion is fallible (a `ShortString` built with `From` panics on more than 255
/// bytes, which is how one long `X-Correlation-Id` once stopped the relay for good).
///
/// # Errors
/// [`Unpublishable`], naming the field and the limit, when a field is missing, too long for its
/// AMQP property, not UTF-8, or not something order-svc publishes.
pub fn message_of(fields: &RawFields, envelope: Envelope) -> Result<Message, Unpublishable> {
    let get = |k: &str| {
        let value = fields
            .get(k.as_bytes())
            .ok_or_else(|| Unpublishable(format!("missing field {k}")))?;
        std::str::from_utf8(value).map_err(|e| {
            Unpublishable(format!(
                "{k} is not UTF-8 (invalid byte at {})",
                e.valid_up_to()
            ))
        })
    };
    let short = |k: &str| -> Result<ShortString, Unpublishable> {
        let value = get(k)?;
        ShortString::try_new(value).map_err(|_| {
            Unpublishable(format!(
                "{k} is {} bytes; an AMQP short string holds at most 255",
                value.len()
            ))
        })
    };
    let kind = get("type")?;
    let event = EventType::from_name(kind)
        .filter(|e| PUBLISHED.contains(e))
        .ok_or_else(|| {
            Unpublishable(format!(
                "type {:?} is not an event order-svc publishes (it publishes {})",
                cut(kind),
                PUBLISHED.map(EventType::name).join(", ")
            ))
        })?;
    let routing_key = get("routing_key")?;
    if routing_key != event.routing_key() {
        return Err(Unpublishable(format!(
            "routing_key {:?} does not match type {} (which goes to {})",
            cut(routing_key),
            event.name(),
            event.routing_key()
        )));
    }
    let timestamp = get("timestamp")?;
    let timestamp = timestamp.parse::<u64>().map_err(|_| {
        Unpublishable(format!(
            "timestamp {:?} is not a number of seconds",
            cut(timestamp)
        ))
    })?;
    // Entries written before versions were recorded carry none: version 1, as they were.
    let version = match fields.get(b"schema_version".as_slice()) {
        None => SchemaVersion::V1,
        Some(_) => SchemaVersion::parse(get("schema_version")?)
            .map_err(|e| Unpublishable(format!("schema_version: {e}")))?,
    };
    let body = get("body")?;
    if body.len() > MAX_ENTRY_BODY {
        return Err(Unpublishable(format!(
            "body is {} bytes; an outbox entry carries at most {MAX_ENTRY_BODY}",
            body.len()
        )));
    }
    // Checked here, where a reason can be given: the properties would leave such an id out.
    let event_id = short("event_id")?;
    let correlation_id = short("correlation_id")?;
    // The relay's publish is a span of its own, a child of the one that wrote the entry.
    let text = |k: &str| {
        fields
            .get(k.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let written = Trace::of_headers(text(TRACEPARENT), text(TRACESTATE));
    let publish = written.as_ref().map(Trace::child);
    let stamp = Stamp {
        event,
        version,
        event_id: event_id.as_str(),
        correlation_id: correlation_id.as_str(),
        service: SERVICE,
        time: timestamp,
        order_id: text("order_id"),
        trace: publish.as_ref(),
    };
    let (body, properties) = outgoing(&stamp, envelope, body.as_bytes());
    let parent = written.map(|t| t.context.span_id);
    Ok(Message {
        event,
        body,
        properties,
        trace: publish.zip(parent),
    })
}

/// A value quoted in a reason, cut so that the reason stays a line.
fn cut(value: &str) -> String {
    value.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use saga_domain::events::EventType;

    use super::*;

    fn raw(fields: Vec<(&str, String)>) -> RawFields {
        fields
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes()))
            .collect()
    }

    #[test]
    fn an_entry_becomes_the_message_it_was_written_as() {
        let request = Trace::root();
        let meta = EventMeta::new(EventType::OrderPlaced, "corr-1", SERVICE).traced(Some(&request));
        let fields = raw(entry_fields(&meta, "o-1", br#"{"order_id":"o-1"}"#));
        let Message {
            event,
            body,
            properties: props,
            trace,
        } = message_of(&fields, Envelope::Binary).expect("well formed");
        let (publish, parent) = trace.expect("traced");
        assert_eq!(parent, request.context.span_id, "the request's span");
        assert_eq!(publish.context.trace_id, request.context.trace_id);
        assert_eq!(
            saga_platform::amqp::properties::header_str(props.headers(), TRACEPARENT),
            Some(publish.traceparent()),
            "the publish's own span goes out"
        );
        assert_eq!(event, EventType::OrderPlaced);
        assert_eq!(body, br#"{"order_id":"o-1"}"#);
        assert_eq!(
            props.message_id().as_ref().map(|s| s.as_str()),
            Some(meta.event_id.as_str())
        );
        assert_eq!(
            props.correlation_id().as_ref().map(|s| s.as_str()),
            Some("corr-1")
        );
        assert_eq!(props.delivery_mode(), &Some(2));
    }

    #[test]
    fn a_malformed_entry_is_told_apart() {
        let fields = raw(vec![("body", "{}".to_owned())]);
        assert!(message_of(&fields, Envelope::Binary).is_err());
    }

    fn entry(field: &str, value: &str) -> RawFields {
        let meta = EventMeta::new(EventType::OrderCancelled, "o-1", SERVICE);
        let mut fields = raw(entry_fields(&meta, "o-1", b"{}"));
        fields.insert(field.as_bytes().to_vec(), value.as_bytes().to_vec());
        fields
    }

    #[test]
    fn an_entry_that_cannot_be_published_says_why_and_never_panics() {
        let why = |field: &str, value: &str| {
            message_of(&entry(field, value), Envelope::Binary)
                .unwrap_err()
                .0
        };
        assert_eq!(
            why("correlation_id", &"c".repeat(300)),
            "correlation_id is 300 bytes; an AMQP short string holds at most 255"
        );
        assert!(message_of(&entry("correlation_id", &"c".repeat(255)), Envelope::Binary).is_ok());
        assert_eq!(
            why("event_id", &"e".repeat(256)),
            "event_id is 256 bytes; an AMQP short string holds at most 255"
        );
        assert!(why("type", "InventoryReserved").contains("not an event order-svc publishes"));
        assert!(
            why("type", &"t".repeat(1000)).len() < 200,
            "a reason stays a line"
        );
        assert!(why("routing_key", "order.placed").contains("does not match"));
        assert!(why("timestamp", "yesterday").contains("not a number"));
        assert!(why("body", &"b".repeat(MAX_ENTRY_BODY + 1)).contains("at most"));
        let mut missing = entry("type", "OrderCancelled");
        missing.remove(b"event_id".as_slice());
        assert_eq!(
            message_of(&missing, Envelope::Binary).unwrap_err().0,
            "missing field event_id"
        );
        let mut latin1 = entry("type", "OrderCancelled");
        latin1.insert(b"body".to_vec(), b"{\"reason\":\"caf\xe9\"}".to_vec());
        assert_eq!(
            message_of(&latin1, Envelope::Binary).unwrap_err().0,
            "body is not UTF-8 (invalid byte at 14)"
        );
        assert_eq!(shown(&latin1, "body"), "{\"reason\":\"caf\u{fffd}\"}");
        assert!(why("schema_version", "two").contains("is not a version"));
    }

    /// The version the writer chose travels with the entry into the message's header; an entry
    /// written before versions were recorded goes out as version 1, as it was written.
    #[test]
    fn an_entry_goes_out_with_its_schema_version() {
        use saga_domain::version::SCHEMA_VERSION_HEADER;
        use saga_platform::amqp::properties::header_str;
        let version = |fields: &RawFields| {
            let message = message_of(fields, Envelope::Binary).expect("publishable");
            header_str(message.properties.headers(), SCHEMA_VERSION_HEADER)
        };
        assert_eq!(
            version(&entry("schema_version", "1.3")).as_deref(),
            Some("1.3")
        );
        let mut older = entry("type", "OrderCancelled");
        older.remove(b"schema_version".as_slice());
        assert_eq!(version(&older).as_deref(), Some("1.0"));
    }
}
