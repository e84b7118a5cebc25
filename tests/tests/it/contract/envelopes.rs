//! The envelopes of `EVENT_ENVELOPE` against docs/asyncapi.yaml: every event at every major, in
//! every shape a service can publish it, as `saga_domain::envelope::Stamp::wrap` and
//! `saga_platform::amqp::properties::outgoing` make it. The body inside an envelope is the flat
//! body its schema file describes (each schema's own examples are the bodies wrapped here).

use saga_domain::envelope::Envelope;
use saga_domain::events::{EventMeta, EventType};
use saga_domain::version::{SCHEMA_VERSION_HEADER, SchemaVersion};
use saga_platform::amqp::properties::outgoing;
use serde_json::Value;

use super::documents::{asyncapi, document_schema, headers_of, json_file, refusal, validator};

/// The document's schema of a structured envelope, and where in it the flat body is.
fn described(envelope: Envelope) -> Option<(&'static str, &'static str)> {
    match envelope {
        Envelope::Binary => None,
        Envelope::StandardMessage => Some(("StandardMessage", "payload")),
        Envelope::GoEvent => Some(("GoBusEvent", "data")),
        Envelope::CloudEvents => Some(("CloudEventStructured", "data")),
    }
}

#[test]
fn every_event_in_every_envelope_is_as_the_document_says() {
    let doc = asyncapi();
    let headers = document_schema(&doc, "EventHeaders");
    let mut wrapped = 0;
    for event in EventType::ALL {
        for &major in event.majors() {
            let body_schema = validator(event, major).expect("every event has its schema");
            let examples = json_file(&event.schema_path(major)).expect("checked by the validator")
                ["examples"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(
                !examples.is_empty(),
                "{event}: its schema shows no example body"
            );
            for body in examples {
                let version = SchemaVersion { major, minor: 0 };
                let meta = EventMeta::new(event, "corr-1", "order-svc").versioned(version);
                let order_id = body["order_id"].as_str();
                let stamp = meta.stamp(order_id);
                for envelope in Envelope::ALL {
                    let (bytes, properties) =
                        outgoing(&stamp, envelope, body.to_string().as_bytes());
                    let said = headers_of(&properties);
                    assert_eq!(refusal(&headers, &said), None, "{event} {envelope}: {said}");
                    assert_eq!(
                        said[SCHEMA_VERSION_HEADER],
                        version.to_string(),
                        "{event} {envelope}"
                    );

                    let message: Value = serde_json::from_slice(&bytes).expect("JSON");
                    let Some((name, inside)) = described(envelope) else {
                        assert_eq!(message, body, "binary mode sends the flat body as it is");
                        continue;
                    };
                    let schema = document_schema(&doc, name);
                    assert_eq!(
                        refusal(&schema, &message),
                        None,
                        "{event} {envelope}: {message}"
                    );
                    assert_eq!(
                        refusal(&body_schema, &message[inside]),
                        None,
                        "{event} {envelope}: the body inside"
                    );
                    if let Some(named) = message.get("dataschema") {
                        assert_eq!(named, &event.schema_path(major), "{event} {envelope}");
                    }
                    wrapped += 1;
                }
            }
        }
    }
    assert!(wrapped >= EventType::ALL.len() * 3);
}
