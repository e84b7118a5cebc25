//! The JSON Schemas of docs/schemas/ against the Rust types that write and read the bodies, so
//! that neither can change without the other (issue 21).
//!
//! For every event of [`EventType::ALL`]: a schema file exists for the major our services write
//! (`schema_path`); the bodies the `From` impls write for representative events validate; the
//! schema lists exactly the fields those bodies carry (a field added in Rust and not in the
//! schema fails here); and `required` is exactly what `TryFrom` requires, both ways. Bodies the
//! reader refuses as poison for a bad value are refused by the schema too, so a producer that
//! validates against a schema never lands in the DLQ for it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use saga_domain::events::{
    EventType, FailureCode, InventoryOutcome, OrderCancelled, OrderPlaced, OrderStatusUpdated,
};
use saga_domain::ids::{Item, OrderId, Qty, StudentId};
use saga_domain::lines::{Lines, ReleasedLine, ReservedLine, UnservedLine};
use saga_domain::order::{OrderEvent, OrderStatus};
use saga_domain::product::{
    Currency, MAX_UNIT_PRICE, Price, ProductChange, ProductEvent, ProductName,
};
use saga_domain::wire::Malformed;
use serde_json::{Map, Value, json};

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// The schema our services write `event` against, as JSON.
fn schema(event: EventType) -> Value {
    let path = docs().join(event.schema_path(event.schema_version().major));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{event}: no schema at {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator(event: EventType) -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema(event))
        .unwrap_or_else(|e| panic!("{event}: the schema does not compile: {e}"))
}

/// Why the schema refuses `body`, or `None` when it is valid.
fn schema_refusal(validator: &jsonschema::Validator, body: &Value) -> Option<String> {
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// What the Rust reader makes of `body` as `event` (the same `from_body` the services call).
fn rust_reads(event: EventType, body: &Value) -> Result<(), Malformed> {
    let bytes = body.to_string().into_bytes();
    match event {
        EventType::OrderPlaced => OrderPlaced::from_body(&bytes).map(drop),
        EventType::OrderCancelled => OrderCancelled::from_body(&bytes).map(drop),
        EventType::InventoryReserved
        | EventType::InventoryFailed
        | EventType::InventoryReleased => InventoryOutcome::from_body(event, &bytes).map(drop),
        EventType::OrderStatusUpdated => OrderStatusUpdated::from_body(&bytes).map(drop),
        EventType::ProductSnapshot
        | EventType::ProductPriceChanged
        | EventType::ProductStockUpdated
        | EventType::ProductStockLow
        | EventType::ProductStockOut => ProductEvent::from_body(event, &bytes).map(drop),
    }
}

fn price(amount: i64, currency: &str) -> Price {
    Price::new(amount, Currency::parse(currency).unwrap()).unwrap()
}

/// A product event about `burger` (and one about a long, non-ASCII item at the edges).
fn product_events(changes: Vec<ProductChange>) -> Vec<Vec<u8>> {
    let edge = "crème brûlée "
        .repeat(6)
        .chars()
        .take(40)
        .collect::<String>();
    changes
        .into_iter()
        .flat_map(|change| {
            [
                ProductEvent {
                    item: item("burger"),
                    seq: 1,
                    at: 1_764_892_800_123,
                    change: change.clone(),
                },
                ProductEvent {
                    item: item(edge.trim()),
                    seq: u64::from(u32::MAX) * 4,
                    at: 0,
                    change,
                },
            ]
        })
        .map(|e| e.to_body())
        .collect()
}

fn id(s: &str) -> OrderId {
    OrderId::parse(s).unwrap()
}

fn item(s: &str) -> Item {
    Item::parse(s).unwrap()
}

fn qty(n: i64) -> Qty {
    Qty::parse(n).unwrap()
}

fn student(s: &str) -> Option<StudentId> {
    Some(StudentId::parse(s).unwrap())
}

/// Bodies the `From` impls write for `event`: each optional field at least once present and
/// once absent, and the edges of each value (the longest id, the largest qty, a non-ASCII item).
fn written(event: EventType) -> Vec<Value> {
    let long_id = "0f8fad5b-d9cb-469f-a165-70867728950e-".repeat(2)[..64].to_owned();
    let bytes: Vec<Vec<u8>> = match event {
        EventType::OrderPlaced => vec![
            OrderPlaced {
                order_id: id("o1"),
                lines: Lines::single(item("burger"), qty(5)),
                student_id: student("Ada Lovelace"),
            }
            .to_body(),
            OrderPlaced {
                order_id: id(&long_id),
                lines: Lines::single(item("crème brûlée 2"), qty(10_000)),
                student_id: None,
            }
            .to_body(),
        ],
        EventType::OrderCancelled => vec![
            OrderCancelled {
                order_id: id("o1"),
                reason: "changed my mind".into(),
            }
            .to_body(),
        ],
        EventType::InventoryReserved => vec![
            InventoryOutcome::Reserved {
                order_id: id("o1"),
                lines: vec![ReservedLine {
                    item: item("burger"),
                    qty: qty(5),
                    remaining: 95,
                }],
                student_id: student("s1"),
            }
            .to_body(),
            InventoryOutcome::Reserved {
                order_id: id("o.2_x"),
                lines: vec![ReservedLine {
                    item: item("pizza"),
                    qty: qty(1),
                    remaining: 0,
                }],
                student_id: None,
            }
            .to_body(),
        ],
        EventType::InventoryFailed => [FailureCode::UnknownItem, FailureCode::InsufficientStock]
            .into_iter()
            .map(|code| {
                InventoryOutcome::Failed {
                    order_id: id("o1"),
                    lines: Lines::single(item("caviar"), qty(1)),
                    student_id: student("s1"),
                    code,
                    reason: "no caviar".into(),
                    unserved: vec![UnservedLine {
                        item: item("caviar"),
                        qty: qty(1),
                        code,
                    }],
                }
                .to_body()
            })
            .chain([InventoryOutcome::Failed {
                order_id: id("o2"),
                lines: Lines::single(item("pizza"), qty(99)),
                student_id: None,
                code: FailureCode::InsufficientStock,
                reason: "only 50 pizza left".into(),
                unserved: vec![UnservedLine {
                    item: item("pizza"),
                    qty: qty(99),
                    code: FailureCode::InsufficientStock,
                }],
            }
            .to_body()])
            .collect(),
        EventType::InventoryReleased => vec![
            InventoryOutcome::Released {
                order_id: id("o1"),
                lines: vec![ReleasedLine {
                    item: item("burger"),
                    qty: 5,
                }],
            }
            .to_body(),
            InventoryOutcome::Released {
                order_id: id("o2"),
                lines: vec![],
            }
            .to_body(),
        ],
        // Every move of the status table, so every status is written as old and as new.
        EventType::OrderStatusUpdated => OrderEvent::ALL
            .into_iter()
            .flat_map(OrderStatus::transitions_on)
            .enumerate()
            .map(|(n, (old_status, new_status))| {
                OrderStatusUpdated {
                    order_id: id("o-6"),
                    old_status,
                    new_status,
                    updated_by: "inventory-svc".into(),
                    // Every other one with a reason: both shapes are written.
                    reason: (n % 2 == 0).then(|| "out of stock".into()),
                    at: 1_764_892_800_123,
                }
                .to_body()
            })
            .collect(),
        EventType::ProductSnapshot => product_events(vec![
            ProductChange::Snapshot {
                name: ProductName::parse("Burger").unwrap(),
                price: price(899, "EUR"),
                stock: 100,
                low_threshold: 10,
            },
            ProductChange::Snapshot {
                name: ProductName::parse("Crème brûlée, the house's").unwrap(),
                price: price(MAX_UNIT_PRICE, "XTS"),
                stock: 0,
                low_threshold: 0,
            },
        ]),
        EventType::ProductPriceChanged => product_events(vec![ProductChange::PriceChanged {
            name: ProductName::parse("Burger").unwrap(),
            old: price(899, "EUR"),
            new: price(0, "USD"),
        }]),
        EventType::ProductStockUpdated => product_events(vec![
            ProductChange::StockUpdated {
                stock: 9,
                previous: 10,
            },
            ProductChange::StockUpdated {
                stock: 0,
                previous: 0,
            },
        ]),
        EventType::ProductStockLow => product_events(vec![ProductChange::StockLow {
            stock: 0,
            threshold: 10,
        }]),
        EventType::ProductStockOut => product_events(vec![ProductChange::StockOut]),
    };
    bytes
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect()
}

fn object(body: &Value) -> &Map<String, Value> {
    body.as_object().expect("every body is a JSON object")
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_event_has_a_draft_2020_12_schema_for_the_major_we_write() {
    for event in EventType::ALL {
        let schema = schema(event);
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{event}"
        );
        if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("{event}: not a valid draft 2020-12 schema: {e}");
        }
        assert_eq!(schema["type"], "object", "{event}");
        // Tolerant reader: a body may carry fields this version does not know.
        assert_ne!(schema["additionalProperties"], false, "{event}");
        for example in schema["examples"].as_array().into_iter().flatten() {
            assert!(validator(event).is_valid(example), "{event}: {example}");
            assert_eq!(rust_reads(event, example), Ok(()), "{event}: {example}");
        }
    }
}

#[test]
fn no_schema_file_names_an_event_or_version_we_do_not_have() {
    for entry in std::fs::read_dir(docs().join("schemas")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let known = EventType::ALL.into_iter().any(|event| {
            event.schema_path(event.schema_version().major) == format!("schemas/{name}")
        });
        assert!(
            known,
            "docs/schemas/{name} is the schema of no event we write"
        );
    }
}

#[test]
fn every_body_we_write_validates() {
    for event in EventType::ALL {
        let validator = validator(event);
        for body in written(event) {
            assert_eq!(schema_refusal(&validator, &body), None, "{event}: {body}");
        }
    }
}

#[test]
fn a_schema_lists_exactly_the_fields_we_write() {
    for event in EventType::ALL {
        let schema = schema(event);
        let listed: BTreeSet<String> = object(&schema["properties"]).keys().cloned().collect();
        let bodies = written(event);
        let written: BTreeSet<String> = bodies
            .iter()
            .flat_map(|body| object(body).keys().cloned())
            .collect();
        assert_eq!(
            listed, written,
            "{event}: the schema's properties and the fields the Rust body writes differ"
        );
    }
}

#[test]
fn required_is_exactly_what_the_reader_requires() {
    for event in EventType::ALL {
        let validator = validator(event);
        let required = strings(&schema(event)["required"]);
        // The fullest body we write: every field present.
        let full = written(event)
            .into_iter()
            .max_by_key(|body| object(body).values().filter(|v| !v.is_null()).count())
            .unwrap();
        for field in object(&full).keys() {
            for (how, body) in [
                ("without", without(&full, field)),
                ("with a null", null(&full, field)),
            ] {
                let rust = rust_reads(event, &body);
                let refused_by_schema = schema_refusal(&validator, &body);
                if required.contains(field) {
                    assert_eq!(
                        rust,
                        Err(Malformed(format!("missing required field {field}"))),
                        "{event} {how} {field}: the schema requires it, the reader does not"
                    );
                    assert!(
                        refused_by_schema.is_some(),
                        "{event} {how} {field}: the reader refuses it, the schema does not"
                    );
                } else {
                    assert_eq!(rust, Ok(()), "{event} {how} {field}: {body}");
                    assert_eq!(refused_by_schema, None, "{event} {how} {field}: {body}");
                }
            }
        }
    }
}

fn without(body: &Value, field: &str) -> Value {
    let mut body = body.clone();
    body.as_object_mut().unwrap().remove(field);
    body
}

fn null(body: &Value, field: &str) -> Value {
    let mut body = body.clone();
    body[field] = Value::Null;
    body
}

/// Bodies the reader refuses as poison for a bad value (not a missing one), each beside the
/// event it claims to be; the schema must refuse every one.
fn poison() -> Vec<(EventType, Value)> {
    use EventType::*;
    let placed = json!({"order_id": "o1", "item": "burger", "qty": 1});
    let with = |base: &Value, field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let status = json!({"order_id": "o1", "old_status": "PLACED", "new_status": "CONFIRMED",
                        "updated_by": "x", "at": 1});
    let mut cases = Vec::new();
    for event in [OrderPlaced, InventoryReserved, InventoryFailed] {
        cases.extend(
            [
                with(&placed, "qty", json!(0)),
                with(&placed, "qty", json!(10_001)),
                with(&placed, "qty", json!(2.5)),
                with(&placed, "qty", json!("two")),
                with(&placed, "order_id", json!("o1:history")),
                with(&placed, "order_id", json!("a b")),
                with(&placed, "order_id", json!("")),
                with(&placed, "order_id", json!("x".repeat(65))),
                with(&placed, "order_id", json!(5)),
                with(&placed, "item", json!(["burger"])),
                with(&placed, "item", json!("burger/fries")),
                with(&placed, "item", json!("")),
                with(&placed, "student_id", json!(42)),
                with(&placed, "student_id", json!("line\nbreak")),
                with(&placed, "student_id", json!("")),
            ]
            .map(|body| (event, body)),
        );
    }
    cases.extend([
        (OrderCancelled, json!({"order_id": "o1", "reason": 3})),
        (OrderCancelled, json!({"order_id": "o:1"})),
        (InventoryReleased, json!({"order_id": "o1", "qty": "two"})),
        (InventoryReleased, json!({"order_id": "o1", "item": "a/b"})),
        (InventoryFailed, with(&placed, "code", json!(5))),
        (InventoryFailed, with(&placed, "reason", json!(false))),
        (InventoryReserved, with(&placed, "remaining", json!(1.5))),
        (
            OrderStatusUpdated,
            with(&status, "new_status", json!("LOST")),
        ),
        (
            OrderStatusUpdated,
            with(&status, "old_status", json!("placed")),
        ),
        (OrderStatusUpdated, with(&status, "at", json!(-1))),
        (OrderStatusUpdated, with(&status, "updated_by", json!(1))),
        (OrderStatusUpdated, with(&status, "reason", json!([]))),
        (OrderStatusUpdated, json!([1, 2])),
    ]);
    let snapshot = json!({"item": "burger", "name": "Burger", "unit_price": 899,
                          "currency": "EUR", "stock": 3, "low_threshold": 1, "seq": 1, "at": 1});
    let price_changed = json!({"item": "burger", "name": "Burger", "unit_price": 950,
                               "currency": "EUR", "old_unit_price": 899, "old_currency": "EUR",
                               "seq": 2, "at": 1});
    for (event, base) in [
        (ProductSnapshot, &snapshot),
        (ProductPriceChanged, &price_changed),
    ] {
        cases.extend(
            [
                with(base, "unit_price", json!(-1)),
                with(base, "unit_price", json!(8.99)),
                with(base, "unit_price", json!("899")),
                with(base, "unit_price", json!(MAX_UNIT_PRICE + 1)),
                with(base, "currency", json!("eur")),
                with(base, "currency", json!("EURO")),
                with(base, "name", json!("")),
                with(base, "name", json!("a\nb")),
                with(base, "name", json!("n".repeat(101))),
                with(base, "item", json!("a:b")),
                with(base, "seq", json!(-1)),
                with(base, "at", json!(1.5)),
            ]
            .map(|body| (event, body)),
        );
    }
    let stock =
        json!({"item": "burger", "stock": 3, "previous": 4, "threshold": 5, "seq": 1, "at": 1});
    cases.extend([
        (ProductSnapshot, with(&snapshot, "stock", json!(-1))),
        (ProductSnapshot, with(&snapshot, "low_threshold", json!(-1))),
        (
            ProductPriceChanged,
            with(&price_changed, "old_unit_price", json!(-5)),
        ),
        (
            ProductPriceChanged,
            with(&price_changed, "old_currency", json!("E")),
        ),
        (ProductStockUpdated, with(&stock, "stock", json!(-1))),
        (ProductStockUpdated, with(&stock, "previous", json!("4"))),
        (ProductStockLow, with(&stock, "threshold", json!(-3))),
        (ProductStockLow, with(&stock, "stock", json!(2.5))),
        (ProductStockOut, with(&stock, "seq", json!(-1))),
        (ProductStockOut, with(&stock, "item", json!(""))),
    ]);
    cases
}

#[test]
fn what_the_reader_refuses_the_schema_refuses() {
    for (event, body) in poison() {
        assert!(
            rust_reads(event, &body).is_err(),
            "{event}: the reader takes {body}"
        );
        assert!(
            schema_refusal(&validator(event), &body).is_some(),
            "{event}: the schema takes {body}, which the reader refuses"
        );
    }
}
