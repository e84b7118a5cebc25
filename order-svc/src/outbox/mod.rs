//! The transactional outbox: how an order's event gets from Redis to the broker, exactly as
//! durable as the order itself.
//!
//! - **Write**: [`crate::orders`] writes an order *and* its event in one Redis transaction
//!   (`POST /order`: `MULTI/EXEC`; cancel: `lua/cancel.lua`), the event as a stream entry whose
//!   fields are [`entry_fields`]. Either both exist or neither, so `POST /order` can answer 201
//!   while the broker is down: the event waits here.
//! - **Relay** ([`relay`]): reads the stream in order, publishes each entry with publisher
//!   confirms ([`message_of`] turns it back into a message), and deletes it only once the broker
//!   confirmed it. A crash between confirm and delete publishes it again: consumers dedupe.
//! - **Backpressure** ([`backpressure`]): while the relay is connected but not keeping up, new
//!   orders wait briefly for room, then get 503, instead of joining an ever-longer queue.

pub mod backpressure;
pub mod relay;

use std::collections::HashMap;

use lapin::BasicProperties;
use shared::events::EventMeta;

pub use backpressure::Outbox;

use crate::orders::SERVICE;

/// The fields of an outbox stream entry: everything the relay needs to publish the event.
pub fn entry_fields(meta: &EventMeta, order_id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("event_id", meta.event_id.clone()),
        ("type", meta.event_type.name().to_owned()),
        ("routing_key", meta.event_type.routing_key().to_owned()),
        ("correlation_id", meta.correlation_id.clone()),
        ("order_id", order_id.to_owned()),
        ("timestamp", meta.timestamp.to_string()),
        ("body", String::from_utf8_lossy(body).into_owned()),
    ]
}

/// Routing key, body and properties of an outbox entry, if it is well formed.
pub fn message_of(fields: &HashMap<String, String>) -> Option<(&str, &str, BasicProperties)> {
    let get = |k: &str| fields.get(k).map(String::as_str);
    let properties = BasicProperties::default()
        .with_message_id(get("event_id")?.into())
        .with_type(get("type")?.into())
        .with_correlation_id(get("correlation_id")?.into())
        .with_app_id(SERVICE.into())
        .with_timestamp(get("timestamp")?.parse().ok()?)
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    Some((get("routing_key")?, get("body")?, properties))
}

#[cfg(test)]
mod tests {
    use shared::events::EventType;

    use super::*;

    #[test]
    fn an_entry_becomes_the_message_it_was_written_as() {
        let meta = EventMeta::new(EventType::OrderPlaced, "corr-1", SERVICE);
        let fields: HashMap<String, String> = entry_fields(&meta, "o-1", br#"{"order_id":"o-1"}"#)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let (key, body, props) = message_of(&fields).expect("well formed");
        assert_eq!(key, "order.placed");
        assert_eq!(body, r#"{"order_id":"o-1"}"#);
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
        let mut fields: HashMap<String, String> = HashMap::new();
        fields.insert("body".into(), "{}".into());
        assert!(message_of(&fields).is_none());
    }
}
