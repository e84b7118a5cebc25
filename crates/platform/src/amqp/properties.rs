//! The domain's events meet AMQP here: an event's metadata as message properties (and its
//! CloudEvents attributes as headers), which event a delivery carries, and header values read
//! back as text. The domain crate knows the events
//! (`saga_domain::events`) but not the broker, so these live beside the broker code.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use saga_domain::envelope::{CLOUD_EVENTS_HEADER_PREFIX, Envelope, Stamp};
use saga_domain::events::{EventMeta, EventType};
use saga_domain::trace::{TRACEPARENT, TRACESTATE, Trace};
use saga_domain::version::{SCHEMA_VERSION_HEADER, SchemaVersion};

/// An event's metadata as the AMQP properties every event of ours carries.
pub trait MetaProperties {
    /// Persistent JSON message properties, with the event's schema version and its CloudEvents
    /// attributes in binary mode ([`properties_of`] with [`Envelope::Binary`]).
    fn properties(&self) -> BasicProperties;
}

impl MetaProperties for EventMeta {
    fn properties(&self) -> BasicProperties {
        properties_of(&self.stamp(None), Envelope::Binary)
    }
}

/// An event on its way out in `envelope`: the message body ([`Stamp::wrap`]) and its properties
/// ([`properties_of`]).
pub fn outgoing(stamp: &Stamp<'_>, envelope: Envelope, body: &[u8]) -> (Vec<u8>, BasicProperties) {
    (stamp.wrap(envelope, body), properties_of(stamp, envelope))
}

/// The AMQP properties of an event in `envelope`: persistent, its id, type, correlation id,
/// publisher and time, its schema version ([`SCHEMA_VERSION_HEADER`], docs/DESIGN.md §3), and in
/// binary mode its CloudEvents attributes as `cloudEvents_*` headers. A structured envelope
/// carries those in its body instead: sent twice, a reader could not tell the shapes apart.
///
/// Never panics: an id too long for an AMQP short string (255 bytes) is left out rather
/// than cut (a cut id would name another event or order); the body still carries the
/// order id. The front door refuses such ids (order-svc's limits), so this is a last guard.
pub fn properties_of(stamp: &Stamp<'_>, envelope: Envelope) -> BasicProperties {
    let mut headers = schema_version_headers(stamp.version);
    if let Some(trace) = stamp.trace {
        insert_text(&mut headers, TRACEPARENT, trace.traceparent());
        if let Some(state) = &trace.state {
            insert_text(&mut headers, TRACESTATE, state.clone());
        }
    }
    if envelope == Envelope::Binary {
        for (attribute, value) in stamp.cloud_events() {
            insert_text(
                &mut headers,
                &format!("{CLOUD_EVENTS_HEADER_PREFIX}{attribute}"),
                value,
            );
        }
    }
    let mut props = BasicProperties::default()
        .with_type(ShortString::from(stamp.event.name()))
        .with_timestamp(stamp.time)
        .with_content_type(ShortString::from(envelope.content_type()))
        .with_delivery_mode(2)
        .with_headers(headers);
    if let Ok(id) = ShortString::try_new(stamp.event_id) {
        props = props.with_message_id(id);
    }
    if let Ok(id) = ShortString::try_new(stamp.correlation_id) {
        props = props.with_correlation_id(id);
    }
    if let Ok(app) = ShortString::try_new(stamp.service) {
        props = props.with_app_id(app);
    }
    props
}

/// A long-string header (what pika sends for a `str`).
fn insert_text(headers: &mut FieldTable, name: &str, value: String) {
    headers.insert(
        name.into(),
        AMQPValue::LongString(LongString::from(value.into_bytes())),
    );
}

/// The trace a delivery's headers carry, if they carry a valid `traceparent`.
pub fn trace_of(props: &BasicProperties) -> Option<Trace> {
    let headers = props.headers();
    Trace::of_headers(
        header_str(headers, TRACEPARENT).as_deref(),
        header_str(headers, TRACESTATE).as_deref(),
    )
}

/// The headers every event of ours carries: its schema version (`x-schema-version: "1.0"`,
/// docs/DESIGN.md §3), as a long string.
pub fn schema_version_headers(version: SchemaVersion) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(
        SCHEMA_VERSION_HEADER.into(),
        AMQPValue::LongString(LongString::from(version.to_string().into_bytes())),
    );
    headers
}

/// Which event a delivery carries.
pub trait DeliveryEvent: Sized {
    /// Its routing key says so; failing that (a message published straight to a queue), its
    /// `type` property.
    fn of_delivery(routing_key: &str, props: &BasicProperties) -> Option<Self>;
}

impl DeliveryEvent for EventType {
    fn of_delivery(routing_key: &str, props: &BasicProperties) -> Option<Self> {
        Self::from_routing_key(routing_key).or_else(|| {
            props
                .kind()
                .as_ref()
                .and_then(|k| Self::from_name(k.as_str()))
        })
    }
}

/// A string header value from an AMQP header table, if present.
pub fn header_str(headers: &Option<FieldTable>, key: &str) -> Option<String> {
    let table = headers.as_ref()?;
    match table.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        other => Some(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_never_panic_on_long_ids() {
        let meta = EventMeta::new(EventType::OrderCancelled, &"c".repeat(300), "order-svc");
        let props = meta.properties();
        assert!(props.correlation_id().is_none(), "left out, not cut");
        assert_eq!(
            props.app_id().as_ref().map(|a| a.as_str()),
            Some("order-svc")
        );
        let fits = EventMeta::new(EventType::OrderCancelled, &"c".repeat(255), "order-svc");
        assert_eq!(
            fits.properties()
                .correlation_id()
                .as_ref()
                .map(|c| c.as_str().len()),
            Some(255)
        );
    }

    #[test]
    fn binary_mode_sends_the_cloud_events_attributes_as_headers_and_structured_does_not() {
        let meta = EventMeta::new(EventType::OrderPlaced, "c-1", "order-svc");
        let stamp = meta.stamp(Some("o-1"));
        let (body, binary) = outgoing(&stamp, Envelope::Binary, b"{}");
        assert_eq!(body, b"{}");
        let header = |props: &BasicProperties, key| header_str(props.headers(), key);
        assert_eq!(
            header(&binary, "cloudEvents_specversion").as_deref(),
            Some("1.0")
        );
        assert_eq!(
            header(&binary, "cloudEvents_id"),
            Some(meta.event_id.clone())
        );
        assert_eq!(
            header(&binary, "cloudEvents_type").as_deref(),
            Some("order.placed")
        );
        assert_eq!(
            header(&binary, "cloudEvents_subject").as_deref(),
            Some("o-1")
        );
        assert_eq!(
            header(&binary, SCHEMA_VERSION_HEADER).as_deref(),
            Some("1.0")
        );
        for envelope in [
            Envelope::StandardMessage,
            Envelope::GoEvent,
            Envelope::CloudEvents,
        ] {
            let (_, structured) = outgoing(&stamp, envelope, b"{}");
            assert_eq!(
                header(&structured, "cloudEvents_specversion"),
                None,
                "{envelope}"
            );
            assert_eq!(
                header(&structured, SCHEMA_VERSION_HEADER).as_deref(),
                Some("1.0")
            );
            assert_eq!(
                structured.content_type().as_ref().map(ShortString::as_str),
                Some(envelope.content_type())
            );
        }
    }
}
