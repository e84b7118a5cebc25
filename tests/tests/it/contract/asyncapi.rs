//! docs/asyncapi.yaml against the code: the routing keys are [`EventType::ALL`]'s, the queues,
//! their arguments and bindings are [`Topology::declarations`]'s (the defaults), each routing key
//! carries one message per major of its event ([`EventType::majors`]), each naming its event and
//! referring to the schema file of its version, its examples are bodies that schema takes (with
//! headers of that version), and every reference leads somewhere. Whether the document is valid
//! AsyncAPI is the CLI's part (scripts/test.sh); the CLI does not check examples, these tests do.

use std::collections::{BTreeMap, BTreeSet};

use lapin::types::AMQPValue;
use saga_domain::events::EventType;
use saga_platform::amqp::topology::Topology;
use serde_json::{Value, json};

use saga_domain::version::SchemaVersion;

use super::documents::{asyncapi, document_schema, json_file, refusal, resolve};

/// The channels of the document by address, each resolved through its `$ref`s.
fn channels(doc: &Value) -> BTreeMap<String, &Value> {
    doc["channels"]
        .as_object()
        .expect("the document has channels")
        .values()
        .map(|channel| {
            let address = channel["address"]
                .as_str()
                .expect("every channel has an address");
            (address.to_owned(), channel)
        })
        .collect()
}

/// What a channel's AMQP binding says it is: `routingKey` or `queue`.
fn amqp_binding<'d>(doc: &'d Value, channel: &'d Value) -> &'d Value {
    &resolve(doc, &channel["bindings"])["amqp"]
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_owned()
        })
        .collect()
}

/// The names of the messages a channel lists.
fn message_names(doc: &Value, channel: &Value) -> BTreeSet<String> {
    channel["messages"]
        .as_object()
        .map(|messages| {
            messages
                .values()
                .map(|m| {
                    resolve(doc, m)["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The major of the version a message states (`x-schema-version: '2.0'`); none stated is
/// version 1, as for a message on the wire.
fn major_of(message: &Value) -> u16 {
    let stated = message["x-schema-version"].as_str();
    SchemaVersion::of_header(stated)
        .unwrap_or_else(|e| panic!("{}: {e}", message["title"]))
        .major
}

/// The (event name, major) of each message a channel lists.
fn message_versions(doc: &Value, channel: &Value) -> BTreeSet<(String, u16)> {
    channel["messages"]
        .as_object()
        .into_iter()
        .flat_map(|messages| messages.values())
        .map(|m| {
            let message = resolve(doc, m);
            let name = message["name"].as_str().unwrap_or_default().to_owned();
            (name, major_of(message))
        })
        .collect()
}

/// A queue argument as the document writes it.
fn argument(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        other => panic!("an argument the document cannot say yet: {other:?}"),
    }
}

#[test]
fn the_routing_keys_are_the_events_and_each_names_its_schema() {
    let doc = asyncapi();
    let exchange = Topology::default().exchange;
    let routed: BTreeMap<String, &Value> = channels(&doc)
        .into_iter()
        .filter(|(_, c)| amqp_binding(&doc, c)["is"] == "routingKey")
        .collect();
    let events: BTreeSet<String> = EventType::ALL
        .iter()
        .map(|e| e.routing_key().to_owned())
        .collect();
    assert_eq!(routed.keys().cloned().collect::<BTreeSet<_>>(), events);

    for event in EventType::ALL {
        let channel = routed[event.routing_key()];
        let binding = amqp_binding(&doc, channel);
        assert_eq!(binding["exchange"]["name"], exchange.as_str(), "{event}");
        assert_eq!(binding["exchange"]["type"], "topic", "{event}");
        assert_eq!(binding["exchange"]["durable"], true, "{event}");

        let messages = channel["messages"]
            .as_object()
            .expect("a channel lists messages");
        assert_eq!(
            messages.len(),
            event.majors().len(),
            "{event}: one message per routing key and major"
        );
        for &major in event.majors() {
            let of_major: Vec<(&String, &Value)> = messages
                .iter()
                .map(|(key, m)| (key, resolve(&doc, m)))
                .filter(|(_, m)| major_of(m) == major)
                .collect();
            let [(key, message)] = of_major[..] else {
                panic!("{event}: {} messages of version {major}", of_major.len());
            };
            assert_eq!(message["name"], event.name(), "{event} v{major}");
            assert_eq!(
                message["bindings"]["amqp"]["messageType"],
                event.name(),
                "{event} v{major}"
            );
            let schema = event.schema_path(major);
            assert_eq!(message["payload"]["$ref"], schema.as_str(), "{event}");
            assert!(
                json_file(&schema).is_ok(),
                "{event}: docs/{schema} is not JSON"
            );
            assert!(
                message["traits"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| resolve(&doc, t)["headers"].is_object())),
                "{event} v{major}: the message describes its headers"
            );

            let sent = doc["operations"]
                .as_object()
                .expect("the document has operations")
                .values()
                .any(|op| {
                    op["action"] == "send"
                        && std::ptr::eq(resolve(&doc, &op["channel"]), channel)
                        && op["messages"].as_array().is_some_and(|listed| {
                            listed.iter().any(|m| {
                                m["$ref"]
                                    .as_str()
                                    .is_some_and(|r| r.ends_with(&format!("/messages/{key}")))
                            })
                        })
                });
            assert!(sent, "{event} v{major}: no operation publishes it");
        }
    }
}

#[test]
fn the_queues_their_arguments_and_bindings_are_the_topologys() {
    let doc = asyncapi();
    let queues: BTreeMap<String, &Value> = channels(&doc)
        .into_iter()
        .filter(|(_, c)| amqp_binding(&doc, c)["is"] == "queue")
        .collect();
    let declared = Topology::default().declarations();
    assert_eq!(
        queues.keys().cloned().collect::<BTreeSet<_>>(),
        declared
            .iter()
            .map(|d| d.name.clone())
            .collect::<BTreeSet<_>>(),
        "the document's queues and the topology's"
    );

    for declaration in declared {
        let name = &declaration.name;
        let channel = queues[name];
        let queue = &amqp_binding(&doc, channel)["queue"];
        assert_eq!(queue["name"], name.as_str());
        assert_eq!(queue["durable"], true, "{name}");
        assert_eq!(queue["autoDelete"], false, "{name}");

        let bound: BTreeSet<String> = declaration
            .routing_keys
            .iter()
            .map(|k| (*k).to_owned())
            .collect();
        assert_eq!(
            strings(&channel["x-bound-routing-keys"]),
            bound,
            "{name}: bindings"
        );
        if !bound.is_empty() {
            let events: BTreeSet<String> = bound
                .iter()
                .map(|k| {
                    EventType::from_routing_key(k)
                        .expect("a bound key is an event")
                        .name()
                        .to_owned()
                })
                .collect();
            assert_eq!(
                message_names(&doc, channel),
                events,
                "{name}: the messages it receives"
            );
            let versions: BTreeSet<(String, u16)> = bound
                .iter()
                .filter_map(|k| EventType::from_routing_key(k))
                .flat_map(|e| e.majors().iter().map(move |&m| (e.name().to_owned(), m)))
                .collect();
            assert_eq!(
                message_versions(&doc, channel),
                versions,
                "{name}: the versions of the messages it receives"
            );
        }

        let arguments: BTreeMap<String, Value> = declaration
            .arguments
            .inner()
            .iter()
            .map(|(key, value)| (key.to_string(), argument(value)))
            .collect();
        let documented: BTreeMap<String, Value> = channel
            .get("x-arguments")
            .and_then(Value::as_object)
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        assert_eq!(documented, arguments, "{name}: arguments");
    }
}

/// Every `$ref` anywhere in `value`.
fn refs<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
    match value {
        Value::Object(map) => {
            if let Some(target) = map.get("$ref").and_then(Value::as_str) {
                out.push(target);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_leads_to_something() {
    let doc = asyncapi();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for target in all {
        match target.strip_prefix('#') {
            Some(pointer) => assert!(doc.pointer(pointer).is_some(), "{target} points at nothing"),
            None => assert!(
                json_file(target).is_ok(),
                "{target} is no JSON file under docs/"
            ),
        }
    }
}

#[test]
fn the_documents_examples_are_bodies_their_schemas_take() {
    let doc = asyncapi();
    let messages = doc["components"]["messages"]
        .as_object()
        .expect("the document has messages");
    let headers = document_schema(&doc, "EventHeaders");
    let mut checked = 0;
    for (name, message) in messages {
        let Some(schema) = message["payload"]["$ref"].as_str() else {
            continue;
        };
        let major = major_of(message);
        assert!(
            schema.ends_with(&format!(".v{major}.json")),
            "{name}: version {major} with the payload {schema}"
        );
        let validator = jsonschema::draft202012::new(&json_file(schema).expect("checked above"))
            .unwrap_or_else(|e| panic!("{schema}: {e}"));
        for example in message["examples"].as_array().into_iter().flatten() {
            let payload = &example["payload"];
            assert_eq!(refusal(&validator, payload), None, "{name}: {payload}");
            if let Some(said) = example.get("headers") {
                assert_eq!(refusal(&headers, said), None, "{name}: {said}");
                assert_eq!(
                    major_of(said),
                    major,
                    "{name}: an example's x-schema-version is the message's"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "the document shows no example body");
}
