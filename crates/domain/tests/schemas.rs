//! The JSON Schemas of docs/schemas/ against the Rust types that write and read the bodies, so
//! that neither can change without the other (issue 21).
//!
//! For every event of [`EventType::ALL`] and every major of it ([`EventType::majors`]: version 2
//! of the events that carry an order's lines): a schema file exists (`schema_path`); the bodies
//! the `From` impls write for representative events of that version validate; the schema lists
//! exactly the fields those bodies carry, and those of their lines (a field added in Rust and not
//! in the schema fails here); and `required` is exactly what `TryFrom` requires, both ways, of a
//! body and of its lines. Bodies the reader refuses as poison for a bad value are refused by the
//! schema too, so a producer that validates against a schema never lands in the DLQ for it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use saga_domain::events::{
    EventType, FailureCode, InventoryOutcome, OrderCancelled, OrderPlaced, OrderStatusUpdated,
};
use saga_domain::ids::{Item, OrderId, Qty, StudentId};
use saga_domain::lines::{Line, Lines, ReleasedLine, ReservedLine, UnservedLine};
use saga_domain::order::{OrderEvent, OrderStatus};
use saga_domain::product::{
    Currency, MAX_UNIT_PRICE, Price, Priced, ProductChange, ProductEvent, ProductName,
};
use saga_domain::version::SchemaVersion;
use saga_domain::wire::Malformed;
use serde_json::{Map, Value, json};

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// The schema of major `major` of `event`, as JSON.
fn schema(event: EventType, major: u16) -> Value {
    let path = docs().join(event.schema_path(major));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{event} v{major}: no schema at {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator(event: EventType, major: u16) -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema(event, major))
        .unwrap_or_else(|e| panic!("{event} v{major}: the schema does not compile: {e}"))
}

/// Why the schema refuses `body`, or `None` when it is valid.
fn schema_refusal(validator: &jsonschema::Validator, body: &Value) -> Option<String> {
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// What the Rust reader makes of `body` as major `major` of `event` (the same readers the
/// services call, at the version a message's `x-schema-version` states).
fn rust_reads(event: EventType, major: u16, body: &Value) -> Result<(), Malformed> {
    let bytes = body.to_string().into_bytes();
    let version = SchemaVersion { major, minor: 0 };
    match event {
        EventType::OrderPlaced => OrderPlaced::from_body_at(&bytes, version).map(drop),
        EventType::OrderCancelled => OrderCancelled::from_body(&bytes).map(drop),
        EventType::InventoryReserved
        | EventType::InventoryFailed
        | EventType::InventoryReleased => {
            InventoryOutcome::from_body_at(event, &bytes, version).map(drop)
        }
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

/// An order's lines: several (version 2) unless `lines` holds one.
fn lines(lines: &[(&str, i64)]) -> Lines {
    Lines::new(
        lines
            .iter()
            .map(|&(name, n)| Line::new(item(name), qty(n)))
            .collect(),
    )
    .unwrap()
}

/// Lines with the catalog's name and price (in EUR) where one is given.
fn priced_lines(lines: &[(&str, i64, Option<i64>)]) -> Lines {
    Lines::new(
        lines
            .iter()
            .map(|&(name, n, amount)| {
                Line::new(item(name), qty(n)).priced(amount.map(|amount| Priced {
                    name: ProductName::parse(&format!("The {name}")).unwrap(),
                    price: price(amount, "EUR"),
                }))
            })
            .collect(),
    )
    .unwrap()
}

/// Bodies the `From` impls write for `event` at major `major`: each optional field at least
/// once present and once absent, and the edges of each value (the longest id, the largest qty,
/// a non-ASCII item).
fn written(event: EventType, major: u16) -> Vec<Value> {
    let bytes = if major == 2 {
        written_v2(event)
    } else {
        written_v1(event)
    };
    for body in &bytes {
        let stated = match event {
            EventType::OrderPlaced => OrderPlaced::from_body(body).unwrap().schema_version(),
            EventType::InventoryReserved
            | EventType::InventoryFailed
            | EventType::InventoryReleased => InventoryOutcome::from_body(event, body)
                .unwrap()
                .schema_version(),
            _ => event.schema_version(),
        };
        assert_eq!(stated.major, major, "{event}: a body of another version");
    }
    bytes
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect()
}

fn written_v1(event: EventType) -> Vec<Vec<u8>> {
    let long_id = "0f8fad5b-d9cb-469f-a165-70867728950e-".repeat(2)[..64].to_owned();
    match event {
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
    }
}

/// Version 2: orders of several lines, up to [`saga_domain::lines::MAX_LINES`], and the
/// outcomes about them (a failure with lines unserved for each code).
fn written_v2(event: EventType) -> Vec<Vec<u8>> {
    let long_id = "0f8fad5b-d9cb-469f-a165-70867728950e-".repeat(2)[..64].to_owned();
    let twenty: Vec<String> = (1..=saga_domain::lines::MAX_LINES)
        .map(|n| format!("dish {n}"))
        .collect();
    let most: Vec<(&str, i64)> = twenty.iter().map(|name| (name.as_str(), 1)).collect();
    let reserved = |name: &str, n: i64, remaining: i64| ReservedLine {
        item: item(name),
        qty: qty(n),
        remaining,
    };
    let unserved = |name: &str, n: i64, code: FailureCode| UnservedLine {
        item: item(name),
        qty: qty(n),
        code,
    };
    match event {
        EventType::OrderPlaced => vec![
            OrderPlaced {
                order_id: id("o1"),
                lines: lines(&[("burger", 2), ("pizza", 1)]),
                student_id: student("Ada Lovelace"),
            }
            .to_body(),
            OrderPlaced {
                order_id: id(&long_id),
                lines: lines(&[("crème brûlée 2", 10_000), ("burger", 1), ("salad", 3)]),
                student_id: None,
            }
            .to_body(),
            OrderPlaced {
                order_id: id("o3"),
                lines: lines(&most),
                student_id: None,
            }
            .to_body(),
            // Priced by the catalog replica: every line, so the order has its total.
            OrderPlaced {
                order_id: id("o4"),
                lines: priced_lines(&[("burger", 2, Some(899)), ("pizza", 1, Some(0))]),
                student_id: None,
            }
            .to_body(),
            // One line's price unknown: no total.
            OrderPlaced {
                order_id: id("o5"),
                lines: priced_lines(&[("burger", 1, Some(MAX_UNIT_PRICE)), ("caviar", 1, None)]),
                student_id: None,
            }
            .to_body(),
        ],
        EventType::InventoryReserved => vec![
            InventoryOutcome::Reserved {
                order_id: id("o1"),
                lines: vec![reserved("burger", 2, 98), reserved("pizza", 1, 0)],
                student_id: student("s1"),
            }
            .to_body(),
            InventoryOutcome::Reserved {
                order_id: id("o.2_x"),
                lines: vec![
                    reserved("crème brûlée 2", 10_000, 5),
                    reserved("burger", 1, 0),
                    reserved("salad", 3, 7),
                ],
                student_id: None,
            }
            .to_body(),
        ],
        EventType::InventoryFailed => vec![
            // Both codes, one line each, and the first unserved line's code on top.
            InventoryOutcome::Failed {
                order_id: id("o1"),
                lines: lines(&[("burger", 2), ("pizza", 5), ("caviar", 1)]),
                student_id: student("s1"),
                code: FailureCode::InsufficientStock,
                reason: "insufficient stock for pizza: asked for 5, 1 left".into(),
                unserved: vec![
                    unserved("pizza", 5, FailureCode::InsufficientStock),
                    unserved("caviar", 1, FailureCode::UnknownItem),
                ],
            }
            .to_body(),
            InventoryOutcome::Failed {
                order_id: id("o2"),
                lines: lines(&[("caviar", 1), ("burger", 1)]),
                student_id: None,
                code: FailureCode::UnknownItem,
                reason: "caviar is not on the menu".into(),
                unserved: vec![unserved("caviar", 1, FailureCode::UnknownItem)],
            }
            .to_body(),
            InventoryOutcome::Failed {
                order_id: id("o3"),
                lines: lines(&most),
                student_id: None,
                code: FailureCode::InsufficientStock,
                reason: "insufficient stock for dish 20".into(),
                unserved: vec![unserved("dish 20", 1, FailureCode::InsufficientStock)],
            }
            .to_body(),
        ],
        EventType::InventoryReleased => vec![
            InventoryOutcome::Released {
                order_id: id("o1"),
                lines: vec![
                    ReleasedLine {
                        item: item("burger"),
                        qty: 2,
                    },
                    ReleasedLine {
                        item: item("pizza"),
                        qty: 1,
                    },
                ],
            }
            .to_body(),
            InventoryOutcome::Released {
                order_id: id("o2"),
                lines: vec![
                    ReleasedLine {
                        item: item("crème brûlée 2"),
                        qty: 10_000,
                    },
                    ReleasedLine {
                        item: item("burger"),
                        qty: 1,
                    },
                    ReleasedLine {
                        item: item("salad"),
                        qty: 3,
                    },
                ],
            }
            .to_body(),
        ],
        other => panic!("{other} has no version 2"),
    }
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
        for &major in event.majors() {
            let schema = schema(event, major);
            assert_eq!(
                schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
                "{event} v{major}"
            );
            if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
                panic!("{event} v{major}: not a valid draft 2020-12 schema: {e}");
            }
            assert_eq!(schema["type"], "object", "{event} v{major}");
            // Tolerant reader: a body may carry fields this version does not know.
            assert_ne!(schema["additionalProperties"], false, "{event} v{major}");
            for example in schema["examples"].as_array().into_iter().flatten() {
                assert!(
                    validator(event, major).is_valid(example),
                    "{event} v{major}: {example}"
                );
                assert_eq!(
                    rust_reads(event, major, example),
                    Ok(()),
                    "{event} v{major}: {example}"
                );
            }
        }
    }
}

#[test]
fn no_schema_file_names_an_event_or_version_we_do_not_have() {
    for entry in std::fs::read_dir(docs().join("schemas")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let known = EventType::ALL.into_iter().any(|event| {
            event
                .majors()
                .iter()
                .any(|&major| event.schema_path(major) == format!("schemas/{name}"))
        });
        assert!(
            known,
            "docs/schemas/{name} is the schema of no event or version we write"
        );
    }
}

#[test]
fn every_body_we_write_validates() {
    for event in EventType::ALL {
        for &major in event.majors() {
            let validator = validator(event, major);
            for body in written(event, major) {
                assert_eq!(
                    schema_refusal(&validator, &body),
                    None,
                    "{event} v{major}: {body}"
                );
            }
        }
    }
}

/// The lists of objects a schema describes (`lines`, `unserved`): each with the schema of its
/// elements.
fn lists(schema: &Value) -> Vec<(String, &Value)> {
    object(&schema["properties"])
        .iter()
        .filter(|(_, property)| property["items"]["type"] == "object")
        .map(|(field, property)| (field.clone(), &property["items"]))
        .collect()
}

#[test]
fn a_schema_lists_exactly_the_fields_we_write() {
    for event in EventType::ALL {
        for &major in event.majors() {
            let schema = schema(event, major);
            let listed: BTreeSet<String> = object(&schema["properties"]).keys().cloned().collect();
            let bodies = written(event, major);
            let written: BTreeSet<String> = bodies
                .iter()
                .flat_map(|body| object(body).keys().cloned())
                .collect();
            assert_eq!(
                listed, written,
                "{event} v{major}: the schema's properties and the fields the Rust body writes differ"
            );
            // And the fields of each line.
            for (list, element) in lists(&schema) {
                let listed: BTreeSet<String> =
                    object(&element["properties"]).keys().cloned().collect();
                let written: BTreeSet<String> = bodies
                    .iter()
                    .filter_map(|body| body[&list].as_array())
                    .flatten()
                    .flat_map(|line| object(line).keys().cloned())
                    .collect();
                assert_eq!(
                    listed, written,
                    "{event} v{major}: the fields of {list} in the schema and in the Rust body differ"
                );
            }
        }
    }
}

#[test]
fn required_is_exactly_what_the_reader_requires() {
    for event in EventType::ALL {
        for &major in event.majors() {
            let schema = schema(event, major);
            let validator = validator(event, major);
            let required = strings(&schema["required"]);
            // The fullest body we write: every field present.
            let full = written(event, major)
                .into_iter()
                .max_by_key(|body| object(body).values().filter(|v| !v.is_null()).count())
                .unwrap();
            for field in object(&full).keys() {
                for (how, body) in [
                    ("without", without(&full, field)),
                    ("with a null", null(&full, field)),
                ] {
                    let rust = rust_reads(event, major, &body);
                    let refused_by_schema = schema_refusal(&validator, &body);
                    if required.contains(field) {
                        assert_eq!(
                            rust,
                            Err(Malformed(format!("missing required field {field}"))),
                            "{event} v{major} {how} {field}: the schema requires it, the reader does not"
                        );
                        assert!(
                            refused_by_schema.is_some(),
                            "{event} v{major} {how} {field}: the reader refuses it, the schema does not"
                        );
                    } else {
                        assert_eq!(rust, Ok(()), "{event} v{major} {how} {field}: {body}");
                        assert_eq!(
                            refused_by_schema, None,
                            "{event} v{major} {how} {field}: {body}"
                        );
                    }
                }
            }
            // The same of a line: each field of the first line of each list, taken away.
            for (list, element) in lists(&schema) {
                let required = strings(&element["required"]);
                let line = &full[&list][0];
                for field in object(line).keys() {
                    for (how, changed) in [
                        ("without", without(line, field)),
                        ("with a null", null(line, field)),
                    ] {
                        let mut body = full.clone();
                        body[&list][0] = changed;
                        let rust = rust_reads(event, major, &body);
                        let refused_by_schema = schema_refusal(&validator, &body);
                        let at = format!("{event} v{major} {list}[0] {how} {field}");
                        if required.contains(field) {
                            assert!(
                                rust.as_ref().is_err_and(|e| e
                                    .0
                                    .ends_with(&format!("missing required field {field}"))),
                                "{at}: the schema requires it, the reader says {rust:?}"
                            );
                            assert!(
                                refused_by_schema.is_some(),
                                "{at}: the reader refuses it, the schema does not"
                            );
                        } else {
                            assert_eq!(rust, Ok(()), "{at}: {body}");
                            assert_eq!(refused_by_schema, None, "{at}: {body}");
                        }
                    }
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

/// Version-2 bodies the reader refuses as poison for a bad value, each beside the event it
/// claims to be: a bad line, a list that is no list, and for an order's lines (OrderPlaced,
/// InventoryFailed) none or more than [`saga_domain::lines::MAX_LINES`]. The schema must refuse
/// every one. What it cannot refuse is an item on two lines with different quantities (JSON
/// Schema has no uniqueness by a field of an object); two equal lines it can.
fn poison_v2() -> Vec<(EventType, Value)> {
    use EventType::*;
    let placed = json!({"order_id": "o1", "lines": [{"item": "burger", "qty": 1}, {"item": "pizza", "qty": 2}]});
    let mut failed = placed.clone();
    failed["unserved"] = json!([{"item": "pizza", "qty": 2, "code": "insufficient_stock"}]);
    let with = |base: &Value, field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    // `base` with field `field` of element 0 of the list `list` set to `value` (or taken away).
    let line = |base: &Value, list: &str, field: &str, value: Option<Value>| {
        let mut body = base.clone();
        let element = body[list][0].as_object_mut().unwrap();
        match value {
            Some(value) => element.insert(field.to_owned(), value),
            None => element.remove(field),
        };
        body
    };
    let twenty_one: Vec<Value> = (0..=saga_domain::lines::MAX_LINES)
        .map(|n| json!({"item": format!("dish {n}"), "qty": 1}))
        .collect();
    let mut cases = Vec::new();
    // A price that is there must make sense: every one of its three fields.
    let priced = json!({"order_id": "o1", "lines": [
        {"item": "burger", "qty": 1, "name": "Burger", "unit_price": 899, "currency": "EUR"}]});
    for (field, bad) in [
        ("unit_price", json!(-1)),
        ("unit_price", json!(100_000_001)),
        ("unit_price", json!(8.99)),
        ("unit_price", json!("899")),
        ("currency", json!("eur")),
        ("currency", json!("EURO")),
        ("currency", json!(978)),
        ("name", json!("")),
        ("name", json!("a\nb")),
        ("name", json!("n".repeat(101))),
    ] {
        cases.push((OrderPlaced, line(&priced, "lines", field, Some(bad))));
    }
    for (event, base) in [
        (OrderPlaced, &placed),
        (InventoryReserved, &placed),
        (InventoryFailed, &failed),
    ] {
        cases.extend(
            [
                line(base, "lines", "qty", Some(json!(0))),
                line(base, "lines", "qty", Some(json!(10_001))),
                line(base, "lines", "qty", Some(json!(2.5))),
                line(base, "lines", "qty", Some(json!("two"))),
                line(base, "lines", "qty", None),
                line(base, "lines", "item", Some(json!("burger/fries"))),
                line(base, "lines", "item", Some(json!(""))),
                line(base, "lines", "item", Some(json!(["burger"]))),
                line(base, "lines", "item", Some(json!(5))),
                line(base, "lines", "item", None),
                with(base, "lines", json!("burger")),
                with(base, "lines", json!({"item": "burger", "qty": 1})),
                with(base, "lines", json!([{"item": "burger", "qty": 1}, 5])),
                with(base, "order_id", json!("o1:history")),
                with(base, "order_id", json!(5)),
                with(base, "student_id", json!(42)),
                with(base, "student_id", json!("line\nbreak")),
            ]
            .map(|body| (event, body)),
        );
    }
    for (event, base) in [(OrderPlaced, &placed), (InventoryFailed, &failed)] {
        cases.extend(
            [
                with(base, "lines", json!([])),
                with(base, "lines", json!(twenty_one)),
                with(
                    base,
                    "lines",
                    json!([{"item": "burger", "qty": 1}, {"item": "burger", "qty": 1}]),
                ),
            ]
            .map(|body| (event, body)),
        );
    }
    let released = json!({"order_id": "o1", "lines": [{"item": "burger", "qty": 2}, {"item": "pizza", "qty": 1}]});
    cases.extend([
        (
            InventoryReserved,
            line(&placed, "lines", "remaining", Some(json!(1.5))),
        ),
        (
            InventoryReserved,
            line(&placed, "lines", "remaining", Some(json!("x"))),
        ),
        (InventoryReserved, with(&placed, "status", json!(7))),
        (
            InventoryFailed,
            line(&failed, "unserved", "code", Some(json!(5))),
        ),
        (
            InventoryFailed,
            line(&failed, "unserved", "qty", Some(json!(0))),
        ),
        (
            InventoryFailed,
            line(&failed, "unserved", "item", Some(json!("a/b"))),
        ),
        (InventoryFailed, line(&failed, "unserved", "item", None)),
        (InventoryFailed, with(&failed, "unserved", json!("pizza"))),
        (InventoryFailed, with(&failed, "unserved", json!([5]))),
        (InventoryFailed, with(&failed, "code", json!(5))),
        (InventoryFailed, with(&failed, "reason", json!(false))),
        (InventoryFailed, with(&failed, "status", json!(7))),
        (
            InventoryReleased,
            line(&released, "lines", "item", Some(json!("a/b"))),
        ),
        (
            InventoryReleased,
            line(&released, "lines", "item", Some(json!(5))),
        ),
        (InventoryReleased, line(&released, "lines", "item", None)),
        (
            InventoryReleased,
            line(&released, "lines", "qty", Some(json!("two"))),
        ),
        (
            InventoryReleased,
            line(&released, "lines", "qty", Some(json!(2.5))),
        ),
        (InventoryReleased, with(&released, "lines", json!("burger"))),
        (InventoryReleased, with(&released, "lines", json!([5]))),
        (InventoryReleased, with(&released, "order_id", json!("o:1"))),
        (InventoryReleased, with(&released, "status", json!(7))),
    ]);
    cases
}

#[test]
fn what_the_reader_refuses_the_schema_refuses() {
    let cases = poison()
        .into_iter()
        .map(|(event, body)| (event, 1, body))
        .chain(
            poison_v2()
                .into_iter()
                .map(|(event, body)| (event, 2, body)),
        );
    for (event, major, body) in cases {
        assert!(
            rust_reads(event, major, &body).is_err(),
            "{event} v{major}: the reader takes {body}"
        );
        assert!(
            schema_refusal(&validator(event, major), &body).is_some(),
            "{event} v{major}: the schema takes {body}, which the reader refuses"
        );
    }
}
