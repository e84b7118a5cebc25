//! docs/ENVELOPES.md shows one OrderPlaced in each of the six shapes a consumer reads. This test
//! holds the page to the code: each structured example is what `Stamp::wrap` writes for the event
//! the page names, the binary-mode headers are `Stamp::cloud_events` (and the version header),
//! and every example opens to the same OrderPlaced.

use saga_domain::envelope::{Envelope, Shape, Stamp, Transport, open};
use saga_domain::events::{EventType, OrderPlaced};
use saga_domain::version::{SCHEMA_VERSION_HEADER, SchemaVersion};
use serde_json::Value;

const PAGE: &str = include_str!("../../../docs/ENVELOPES.md");
const ORDER: &str = "9b1e6a52-3f4d-4c2a-8f7e-1a2b3c4d5e6f";

/// The page's ```json blocks, in order.
fn blocks() -> Vec<String> {
    PAGE.split("```json\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default().to_owned())
        .collect()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[test]
fn every_shape_on_the_page_is_what_the_code_writes_and_reads() {
    let blocks = blocks();
    assert_eq!(blocks.len(), 6, "one block per shape");
    let stamp = Stamp {
        event: EventType::OrderPlaced,
        version: SchemaVersion::V1,
        event_id: "5f0c2c1e-8d7a-4c1b-9a53-0e4b7f3f2a10",
        correlation_id: ORDER,
        service: "order-svc",
        time: 1_796_454_000, // 2026-12-05T07:00:00Z
        order_id: Some(ORDER),
        trace: None,
    };
    let flat = blocks[0].trim().as_bytes();
    let placed = OrderPlaced::from_body(flat).expect("the flat body is an OrderPlaced");
    assert_eq!(placed.order_id.as_str(), ORDER);

    // 2: the headers of binary mode.
    let mut headers: serde_json::Map<String, Value> = stamp
        .cloud_events()
        .into_iter()
        .map(|(name, value)| (format!("cloudEvents_{name}"), Value::String(value)))
        .collect();
    headers.insert(SCHEMA_VERSION_HEADER.into(), "1.0".into());
    assert_eq!(
        json(&blocks[1]),
        Value::Object(headers),
        "binary mode's headers"
    );
    let binary = Transport {
        content_type: Some("application/json"),
        cloud_events_specversion: Some("1.0"),
    };
    assert_eq!(
        open(binary, flat).expect("opens").shape,
        Shape::CloudEventsBinary
    );

    // 3 to 5: what each structured envelope writes.
    for (block, envelope, shape, content_type) in [
        (
            &blocks[2],
            Envelope::StandardMessage,
            Shape::StandardMessage,
            "application/json",
        ),
        (
            &blocks[3],
            Envelope::GoEvent,
            Shape::GoEvent,
            "application/json",
        ),
        (
            &blocks[4],
            Envelope::CloudEvents,
            Shape::CloudEventsStructured,
            "application/cloudevents+json",
        ),
    ] {
        let written = stamp.wrap(envelope, flat);
        assert_eq!(
            json(block),
            serde_json::from_slice::<Value>(&written).expect("JSON"),
            "{envelope:?} as the page shows it"
        );
        let transport = Transport {
            content_type: Some(content_type),
            cloud_events_specversion: None,
        };
        let opened = open(transport, block.as_bytes()).expect("opens");
        assert_eq!(opened.shape, shape);
        assert_eq!(
            OrderPlaced::from_body(&opened.body).expect("an OrderPlaced inside"),
            placed,
            "{envelope:?} carries the same event"
        );
    }

    // 6: the course starter's BaseEvent, read only.
    let opened = open(Transport::default(), blocks[5].as_bytes()).expect("opens");
    assert_eq!(opened.shape, Shape::BaseEvent);
    let read = OrderPlaced::from_body(&opened.body).expect("an OrderPlaced inside");
    assert_eq!(
        (read.order_id, read.lines, read.student_id),
        (placed.order_id, placed.lines, placed.student_id),
        "the BaseEvent is the same order"
    );
}
