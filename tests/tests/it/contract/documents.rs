//! The contract's files: docs/schemas/*.json and docs/asyncapi.yaml, read from the repository.
//!
//! The AsyncAPI document is YAML; it is turned into JSON here so that the tests walk it with
//! `serde_json`'s pointers (`#/components/...` refs are JSON pointers) and validate against the
//! schemas it embeds.

use std::path::PathBuf;

use lapin::BasicProperties;
use saga_domain::events::EventType;
use saga_platform::amqp::properties::header_str;
use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// docs/, where the AsyncAPI document is and every relative `$ref` and schema path starts.
pub fn docs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// A file under docs/ as JSON (`schemas/order.placed.v1.json`).
///
/// # Errors
/// Missing, or not JSON.
pub fn json_file(relative: &str) -> anyhow::Result<Value> {
    let path = docs_dir().join(relative);
    let text =
        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("docs/{relative}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("docs/{relative}: {e}"))
}

/// The schema of major `major` of `event`, compiled (draft 2020-12).
///
/// # Errors
/// No such file (the version has no schema), or it does not compile.
pub fn validator(event: EventType, major: u16) -> anyhow::Result<jsonschema::Validator> {
    let path = event.schema_path(major);
    jsonschema::draft202012::new(&json_file(&path)?)
        .map_err(|e| anyhow::anyhow!("docs/{path} does not compile: {e}"))
}

/// Everything `validator` finds wrong with `instance`, one line; `None` when it is valid.
pub fn refusal(validator: &jsonschema::Validator, instance: &Value) -> Option<String> {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// docs/asyncapi.yaml as JSON.
pub fn asyncapi() -> Value {
    let path = docs_dir().join("asyncapi.yaml");
    let text = std::fs::read_to_string(&path).expect("docs/asyncapi.yaml is readable");
    let docs = YamlLoader::load_from_str(&text).expect("docs/asyncapi.yaml is YAML");
    json(docs.first().expect("docs/asyncapi.yaml has a document"))
}

fn json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(text) => text.parse::<f64>().map_or(Value::Null, Value::from),
        Yaml::Integer(n) => Value::from(*n),
        Yaml::String(s) => Value::from(s.as_str()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(items) => items.iter().map(json).collect(),
        Yaml::Hash(hash) => Value::Object(
            hash.iter()
                .map(|(key, value)| (key_text(key), json(value)))
                .collect::<Map<_, _>>(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

/// A mapping's key as the text YAML wrote (JSON keys are strings).
fn key_text(key: &Yaml) -> String {
    match key {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(n) => n.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// `value`, or what its local `$ref` (`#/components/...`) points at, followed to the end.
pub fn resolve<'d>(doc: &'d Value, value: &'d Value) -> &'d Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(local) if local.starts_with('#') => {
            let target = doc
                .pointer(&local[1..])
                .unwrap_or_else(|| panic!("{local} points at nothing in docs/asyncapi.yaml"));
            resolve(doc, target)
        }
        _ => value,
    }
}

/// A message's properties and headers as one JSON object, named as in the AsyncAPI document's
/// `EventHeaders` (`message_id`, ..., `x-schema-version`, `cloudEvents_id`, ...), so the
/// document's own schema checks them.
pub fn headers_of(p: &BasicProperties) -> Value {
    let mut out = Map::new();
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(name.to_owned(), value);
        }
    };
    let text = |s: &Option<lapin::types::ShortString>| s.as_ref().map(|s| Value::from(s.as_str()));
    put("message_id", text(p.message_id()));
    put("correlation_id", text(p.correlation_id()));
    put("type", text(p.kind()));
    put("app_id", text(p.app_id()));
    put("content_type", text(p.content_type()));
    put("timestamp", p.timestamp().map(Value::from));
    if let Some(table) = p.headers() {
        for key in table.inner().keys() {
            put(
                key.as_str(),
                header_str(p.headers(), key.as_str()).map(Value::from),
            );
        }
    }
    Value::Object(out)
}

/// The schema `components.schemas.<name>` of the AsyncAPI document, compiled. Its `$ref`s to
/// schema files are inlined first: the validator resolves no files of its own.
pub fn document_schema(doc: &Value, name: &str) -> jsonschema::Validator {
    let schema = inline(doc, &doc["components"]["schemas"][name]);
    jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|e| panic!("components.schemas.{name} does not compile: {e}"))
}

/// `value` with every `$ref` replaced by what it points at (in the document, or a file).
fn inline(doc: &Value, value: &Value) -> Value {
    match value {
        Value::Object(map) => match map.get("$ref").and_then(Value::as_str) {
            Some(local) if local.starts_with('#') => inline(doc, resolve(doc, value)),
            Some(file) => {
                let mut schema = json_file(file).unwrap_or_else(|e| panic!("{e:#}"));
                // An embedded schema names no dialect of its own; the document's is 2020-12 too.
                if let Some(map) = schema.as_object_mut() {
                    map.remove("$schema");
                }
                schema
            }
            None => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), inline(doc, v)))
                    .collect(),
            ),
        },
        Value::Array(items) => items.iter().map(|v| inline(doc, v)).collect(),
        other => other.clone(),
    }
}
