//! The domain's events meet AMQP here: an event's metadata as message properties, which event a
//! delivery carries, and header values read back as text. The domain crate knows the events
//! (`saga_domain::events`) but not the broker, so these live beside the broker code.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use saga_domain::events::{EventMeta, EventType};
use saga_domain::version::{SCHEMA_VERSION_HEADER, SchemaVersion};

/// An event's metadata as the AMQP properties every event of ours carries.
pub trait MetaProperties {
    /// Persistent JSON message properties, with the event's schema version
    /// ([`schema_version_headers`]).
    ///
    /// Never panics: an id too long for an AMQP short string (255 bytes) is left out rather
    /// than cut (a cut id would name another event or order); the body still carries the
    /// order id. The front door refuses such ids (order-svc's limits), so this is a last guard.
    fn properties(&self) -> BasicProperties;
}

impl MetaProperties for EventMeta {
    fn properties(&self) -> BasicProperties {
        let mut props = BasicProperties::default()
            .with_type(ShortString::from(self.event_type.name()))
            .with_timestamp(self.timestamp)
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2)
            .with_headers(schema_version_headers(self.event_type.schema_version()));
        if let Ok(id) = ShortString::try_new(self.event_id.as_str()) {
            props = props.with_message_id(id);
        }
        if let Ok(id) = ShortString::try_new(self.correlation_id.as_str()) {
            props = props.with_correlation_id(id);
        }
        if let Ok(app) = ShortString::try_new(self.app_id.as_str()) {
            props = props.with_app_id(app);
        }
        props
    }
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
}
