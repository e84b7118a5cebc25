//! Envelopes: one event in the shapes other buses give it, written ([`Stamp::wrap`]) and read
//! ([`open`]).
//!
//! Our events travel as the lab's flat body, with their metadata in AMQP properties and the
//! CloudEvents 1.0 attributes in *binary mode*: AMQP headers `cloudEvents_id`, `cloudEvents_type`,
//! ... ([`Stamp::cloud_events`]), so the body stays the lab's byte for byte. One setting
//! (`EVENT_ENVELOPE`, [`Envelope`]) makes a service publish instead in one of the structured
//! envelopes of the documents this project learns from, so a class can watch one event in four
//! shapes:
//!
//! | [`Envelope`]        | the body                                                                  |
//! |---------------------|---------------------------------------------------------------------------|
//! | `binary` (default)  | the flat lab body; CloudEvents attributes in `cloudEvents_*` headers      |
//! | `standard-message`  | `{messageId, messageType, messageVersion, timestamp, source, correlationId, partitionKey, payload}` |
//! | `go-event`          | `{id, type, source, timestamp, tenant_id, correlation_id, data, metadata: {version}}` |
//! | `cloudevents`       | CloudEvents structured JSON (`application/cloudevents+json`), the body in `data` |
//!
//! Every consumer reads all of them, and the course starter's `BaseEvent` too (`{event_id,
//! event_type, created_at, correlation_id, order: {order_id, user_id, items: [{sku, qty}]}}`).
//! [`open`] tells the shape apart by explicit rules, never by trying each reader in turn:
//!
//! | [`Shape`]              | told by                                                          |
//! |------------------------|------------------------------------------------------------------|
//! | CloudEvents binary     | the header `cloudEvents_specversion`                             |
//! | CloudEvents structured | content type `application/cloudevents+json`, or the key `specversion` |
//! | StandardMessage        | the keys `messageType` and `payload`                             |
//! | Go bus Event           | the keys `type` and `data`, and no `specversion`                 |
//! | BaseEvent              | the keys `event_id` and `event_type`                             |
//! | flat lab body          | none of the above, and the key `order_id`                        |
//!
//! A body that fits none is poison, and so is one that fits two: the reason names what was
//! looked for. Fields an envelope has beyond these are ignored (tolerant reader); those that
//! say something about the sender (`tenant_id`, `partitionKey`, `source`) are kept
//! ([`Opened::kept`]) for the order's timeline.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value, json};

use crate::events::{EventMeta, EventType};
use crate::trace::Trace;
use crate::version::SchemaVersion;
use crate::wire::Malformed;

/// The content type of a CloudEvent in structured mode.
pub const CLOUD_EVENTS_JSON: &str = "application/cloudevents+json";

/// The prefix of CloudEvents attributes as AMQP headers (the CloudEvents AMQP binding).
pub const CLOUD_EVENTS_HEADER_PREFIX: &str = "cloudEvents_";

/// The header whose presence says "CloudEvents, binary mode".
pub const CLOUD_EVENTS_SPECVERSION_HEADER: &str = "cloudEvents_specversion";

/// How a service publishes its events (`EVENT_ENVELOPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Envelope {
    /// The flat lab body, CloudEvents attributes in headers.
    #[default]
    Binary,
    /// The NestJS seed's `StandardMessage<T>`.
    StandardMessage,
    /// The Go event bus's `Event`.
    GoEvent,
    /// CloudEvents 1.0, structured mode.
    CloudEvents,
}

impl Envelope {
    pub const ALL: [Self; 4] = [
        Self::Binary,
        Self::StandardMessage,
        Self::GoEvent,
        Self::CloudEvents,
    ];

    /// The setting's word for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::StandardMessage => "standard-message",
            Self::GoEvent => "go-event",
            Self::CloudEvents => "cloudevents",
        }
    }

    /// The AMQP content type of a message in this envelope.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::CloudEvents => CLOUD_EVENTS_JSON,
            Self::Binary | Self::StandardMessage | Self::GoEvent => "application/json",
        }
    }
}

impl fmt::Display for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Envelope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                let words: Vec<_> = Self::ALL.iter().map(|e| e.as_str()).collect();
                format!("{s:?} is not an envelope; one of {}", words.join(", "))
            })
    }
}

/// What every envelope says about an event besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp<'a> {
    pub event: EventType,
    pub version: SchemaVersion,
    pub event_id: &'a str,
    pub correlation_id: &'a str,
    /// The publishing service (`order-svc`).
    pub service: &'a str,
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// The order the event is about, when known (CloudEvents `subject`, `partitionKey`).
    pub order_id: Option<&'a str>,
    /// The publish's span, sent as `traceparent` (crate::trace), in every envelope.
    pub trace: Option<&'a Trace>,
}

impl EventMeta {
    /// What an envelope says about this event, at the version its type is written in; its
    /// trace is the one the event was made with (a publisher that records its own span sets
    /// [`Stamp::trace`] to that span).
    pub fn stamp<'a>(&'a self, order_id: Option<&'a str>) -> Stamp<'a> {
        Stamp {
            event: self.event_type,
            version: self.version,
            event_id: &self.event_id,
            correlation_id: &self.correlation_id,
            service: &self.app_id,
            time: self.timestamp,
            order_id,
            trace: self.trace.as_ref(),
        }
    }
}

impl Stamp<'_> {
    /// The CloudEvents attributes of the event, named as in CloudEvents 1.0 (without the header
    /// prefix). `type` is the routing key (one name for the event on the bus); `dataschema` is
    /// the JSON Schema of its body and version in the repository (docs/schemas/).
    pub fn cloud_events(&self) -> Vec<(&'static str, String)> {
        let mut attributes = vec![
            ("specversion", "1.0".to_owned()),
            ("id", self.event_id.to_owned()),
            ("source", format!("/saga/{}", self.service)),
            ("type", self.event.routing_key().to_owned()),
            ("time", rfc3339(self.time)),
            ("dataschema", self.data_schema()),
        ];
        if let Some(order_id) = self.order_id {
            attributes.push(("subject", order_id.to_owned()));
        }
        attributes
    }

    /// `schemas/order.placed.v1.json`: where the body's JSON Schema is, relative to docs/.
    pub fn data_schema(&self) -> String {
        self.event.schema_path(self.version.major)
    }

    /// The message body in `envelope`: the flat body itself for [`Envelope::Binary`], else the
    /// envelope with the flat body inside.
    pub fn wrap(&self, envelope: Envelope, body: &[u8]) -> Vec<u8> {
        if envelope == Envelope::Binary {
            return body.to_vec();
        }
        // Our own bodies are JSON objects; anything else is carried as a string rather than lost.
        let data = serde_json::from_slice::<Value>(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
        let wrapped = match envelope {
            Envelope::Binary => unreachable!("returned above"),
            Envelope::StandardMessage => json!({
                "messageId": self.event_id,
                "messageType": self.event.name(),
                "messageVersion": self.version.to_string(),
                "timestamp": rfc3339(self.time),
                "source": self.service,
                "correlationId": self.correlation_id,
                "partitionKey": self.order_id,
                "payload": data,
            }),
            Envelope::GoEvent => json!({
                "id": self.event_id,
                "type": self.event.routing_key(),
                "source": self.service,
                "timestamp": rfc3339(self.time),
                "tenant_id": null,
                "correlation_id": self.correlation_id,
                "data": data,
                "metadata": {"version": self.version.to_string()},
            }),
            Envelope::CloudEvents => {
                let mut event: Map<String, Value> = self
                    .cloud_events()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), Value::String(v)))
                    .collect();
                event.insert("datacontenttype".into(), "application/json".into());
                event.insert("schemaversion".into(), self.version.to_string().into());
                event.insert("correlationid".into(), self.correlation_id.into());
                event.insert("data".into(), data);
                Value::Object(event)
            }
        };
        serde_json::to_vec(&wrapped).unwrap_or_default()
    }
}

/// `2026-12-05T07:10:00Z`.
fn rfc3339(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The shape a message came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    #[default]
    Flat,
    CloudEventsBinary,
    CloudEventsStructured,
    StandardMessage,
    GoEvent,
    BaseEvent,
}

impl Shape {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Flat => "flat lab body",
            Self::CloudEventsBinary => "CloudEvents binary",
            Self::CloudEventsStructured => "CloudEvents structured",
            Self::StandardMessage => "StandardMessage",
            Self::GoEvent => "Go bus Event",
            Self::BaseEvent => "BaseEvent",
        }
    }

    /// What tells it apart, for a reason.
    const fn told_by(self) -> &'static str {
        match self {
            Self::Flat => "order_id",
            Self::CloudEventsBinary => "header cloudEvents_specversion",
            Self::CloudEventsStructured => {
                "specversion, or content type application/cloudevents+json"
            }
            Self::StandardMessage => "messageType and payload",
            Self::GoEvent => "type and data",
            Self::BaseEvent => "event_id and event_type",
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the transport says about a message besides its body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Transport<'a> {
    pub content_type: Option<&'a str>,
    /// The `cloudEvents_specversion` header, if any.
    pub cloud_events_specversion: Option<&'a str>,
}

/// A message taken out of its envelope: the flat body, and what the envelope said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened<'a> {
    pub shape: Shape,
    /// The flat lab body the handlers read (the message's own bytes when it came flat).
    pub body: Cow<'a, [u8]>,
    /// The event as the envelope names it (a routing key or an event name), if it does.
    pub event: Option<String>,
    pub event_id: Option<String>,
    pub correlation_id: Option<String>,
    /// `MAJOR.MINOR`, if the envelope states a version.
    pub version: Option<String>,
    /// What the sender said about itself (`tenant_id`, `partitionKey`, `source`): kept, not used.
    pub kept: Vec<(String, String)>,
}

impl<'a> Opened<'a> {
    fn flat(shape: Shape, body: &'a [u8]) -> Self {
        Self {
            shape,
            body: Cow::Borrowed(body),
            event: None,
            event_id: None,
            correlation_id: None,
            version: None,
            kept: Vec::new(),
        }
    }

    /// Which event this is: the routing key says so, and a named event must agree with it;
    /// a message published straight to a queue (no routing key of ours) is what its envelope
    /// names, failing that its `type` property.
    ///
    /// # Errors
    /// The envelope names no event of the saga, or another one than the routing key.
    pub fn event_type(
        &self,
        routing_key: &str,
        type_property: Option<&str>,
    ) -> Result<Option<EventType>, Malformed> {
        let routed = EventType::from_routing_key(routing_key);
        let Some(named) = self.event.as_deref() else {
            return Ok(routed.or_else(|| EventType::from_name(type_property?)));
        };
        let event = EventType::from_routing_key(named)
            .or_else(|| EventType::from_name(named))
            .ok_or_else(|| {
                Malformed(format!(
                    "{} names the event {:?}, which is no event of this saga (e.g. order.placed or OrderPlaced)",
                    self.shape,
                    cut(named)
                ))
            })?;
        match routed {
            Some(routed) if routed != event => Err(Malformed(format!(
                "{} names the event {event} but it came with routing key {routing_key}",
                self.shape
            ))),
            _ => Ok(Some(event)),
        }
    }
}

/// The keys that tell the shapes apart (present or not; values are read later).
#[derive(Deserialize)]
#[allow(non_snake_case)]
struct Probe {
    specversion: Option<IgnoredAny>,
    messageType: Option<IgnoredAny>,
    payload: Option<IgnoredAny>,
    #[serde(rename = "type")]
    kind: Option<IgnoredAny>,
    data: Option<IgnoredAny>,
    event_id: Option<IgnoredAny>,
    event_type: Option<IgnoredAny>,
    order_id: Option<IgnoredAny>,
}

/// Take a message out of its envelope (see the module's table of rules).
///
/// A body that is not a JSON object is handed on as a flat body, for the handler's reader to
/// say what is wrong with it, as it always has.
///
/// # Errors
/// [`Malformed`] when the body fits no shape, fits two, or its envelope lacks what it must have.
pub fn open<'a>(transport: Transport<'_>, body: &'a [u8]) -> Result<Opened<'a>, Malformed> {
    let Ok(probe) = serde_json::from_slice::<Probe>(body) else {
        return Ok(Opened::flat(Shape::Flat, body));
    };
    let structured_type = transport
        .content_type
        .is_some_and(|t| t.eq_ignore_ascii_case(CLOUD_EVENTS_JSON));
    let fits: Vec<Shape> = [
        (
            transport.cloud_events_specversion.is_some(),
            Shape::CloudEventsBinary,
        ),
        (
            probe.specversion.is_some() || structured_type,
            Shape::CloudEventsStructured,
        ),
        (
            probe.messageType.is_some() && probe.payload.is_some(),
            Shape::StandardMessage,
        ),
        (
            probe.kind.is_some() && probe.data.is_some() && probe.specversion.is_none(),
            Shape::GoEvent,
        ),
        (
            probe.event_id.is_some() && probe.event_type.is_some(),
            Shape::BaseEvent,
        ),
    ]
    .into_iter()
    .filter_map(|(fits, shape)| fits.then_some(shape))
    .collect();
    match fits.as_slice() {
        [] if probe.order_id.is_some() => Ok(Opened::flat(Shape::Flat, body)),
        [] => Err(Malformed(format!(
            "missing required field order_id: the body fits no shape this saga reads (looked for {})",
            [
                Shape::Flat,
                Shape::CloudEventsBinary,
                Shape::CloudEventsStructured,
                Shape::StandardMessage,
                Shape::GoEvent,
                Shape::BaseEvent,
            ]
            .map(|s| format!("{s}: {}", s.told_by()))
            .join("; ")
        ))),
        [Shape::CloudEventsBinary] => Ok(Opened::flat(Shape::CloudEventsBinary, body)),
        [shape] => unwrap(*shape, body),
        [first, second, ..] => Err(Malformed(format!(
            "the body fits two shapes, {first} ({}) and {second} ({}); send one",
            first.told_by(),
            second.told_by()
        ))),
    }
}

/// The flat body and metadata out of a structured envelope.
fn unwrap(shape: Shape, body: &[u8]) -> Result<Opened<'static>, Malformed> {
    let Ok(Value::Object(envelope)) = serde_json::from_slice::<Value>(body) else {
        return Err(Malformed(format!("{shape} is not a JSON object")));
    };
    let field = Field {
        shape,
        envelope: &envelope,
    };
    let opened = |data: Value, event, event_id, correlation_id, version, kept| Opened {
        shape,
        body: Cow::Owned(serde_json::to_vec(&data).unwrap_or_default()),
        event,
        event_id,
        correlation_id,
        version,
        kept,
    };
    match shape {
        Shape::CloudEventsStructured => {
            let specversion = field.text("specversion")?;
            if specversion.as_deref() != Some("1.0") {
                return Err(Malformed(format!(
                    "CloudEvents specversion {specversion:?} is not read; this saga reads 1.0"
                )));
            }
            Ok(opened(
                field.data("data")?,
                Some(field.required("type")?),
                Some(field.required("id")?),
                field.text("correlationid")?,
                field.version("schemaversion")?,
                field.kept(&["source", "subject", "partitionkey", "tenantid"])?,
            ))
        }
        Shape::StandardMessage => Ok(opened(
            field.data("payload")?,
            Some(field.required("messageType")?),
            Some(field.required("messageId")?),
            field.text("correlationId")?,
            field.version("messageVersion")?,
            field.kept(&["source", "partitionKey"])?,
        )),
        Shape::GoEvent => {
            let version = match envelope.get("metadata") {
                Some(Value::Object(metadata)) => Field {
                    shape,
                    envelope: metadata,
                }
                .version("version")?,
                None | Some(Value::Null) => None,
                Some(_) => {
                    return Err(Malformed(format!("{shape} metadata must be an object")));
                }
            };
            Ok(opened(
                field.data("data")?,
                Some(field.required("type")?),
                Some(field.required("id")?),
                field.text("correlation_id")?,
                version,
                field.kept(&["source", "tenant_id"])?,
            ))
        }
        Shape::BaseEvent => {
            let event = field.required("event_type")?;
            let (data, version) = match envelope.get("order") {
                Some(order) => placed_of_starter_order(order)?,
                // The starter's other events carry their fields beside the envelope's.
                None => (
                    Value::Object(
                        envelope
                            .iter()
                            .filter(|(k, _)| {
                                !["event_id", "event_type", "created_at", "correlation_id"]
                                    .contains(&k.as_str())
                            })
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    ),
                    None,
                ),
            };
            Ok(opened(
                data,
                Some(event),
                Some(field.required("event_id")?),
                field.text("correlation_id")?,
                version,
                Vec::new(),
            ))
        }
        Shape::Flat | Shape::CloudEventsBinary => unreachable!("flat shapes are not unwrapped"),
    }
}

/// The course starter's `order: {order_id, user_id, items: [{sku, qty}]}` as our OrderPlaced
/// body, with the version it is: one item is the flat lab body `{order_id, item, qty,
/// student_id}` (version 1), several are `lines` (version 2.0).
fn placed_of_starter_order(order: &Value) -> Result<(Value, Option<String>), Malformed> {
    let Value::Object(order) = order else {
        return Err(Malformed("BaseEvent order must be an object".into()));
    };
    let items = match order.get("items") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => {
            return Err(Malformed("BaseEvent order.items is empty".into()));
        }
        _ => return Err(Malformed("BaseEvent order.items must be an array".into())),
    };
    if let [line] = items.as_slice() {
        let flat = json!({
            "order_id": order.get("order_id"),
            "item": line.get("sku"),
            "qty": line.get("qty"),
            "student_id": order.get("user_id"),
        });
        return Ok((flat, None));
    }
    let lines: Vec<Value> = items
        .iter()
        .map(|line| json!({"item": line.get("sku"), "qty": line.get("qty")}))
        .collect();
    let v2 = json!({
        "order_id": order.get("order_id"),
        "lines": lines,
        "student_id": order.get("user_id"),
    });
    Ok((v2, Some(SchemaVersion::V2.to_string())))
}

/// Reads one envelope's fields, naming the envelope in every reason.
struct Field<'e> {
    shape: Shape,
    envelope: &'e Map<String, Value>,
}

impl Field<'_> {
    fn text(&self, key: &str) -> Result<Option<String>, Malformed> {
        match self.envelope.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(Malformed(format!(
                "{} {key} must be a string, got {}",
                self.shape,
                kind(other)
            ))),
        }
    }

    fn required(&self, key: &str) -> Result<String, Malformed> {
        self.text(key)?
            .ok_or_else(|| Malformed(format!("{} missing required field {key}", self.shape)))
    }

    /// The event's body: a JSON object.
    fn data(&self, key: &str) -> Result<Value, Malformed> {
        match self.envelope.get(key) {
            Some(data @ Value::Object(_)) => Ok(data.clone()),
            None | Some(Value::Null) => Err(Malformed(format!(
                "{} missing required field {key}",
                self.shape
            ))),
            Some(other) => Err(Malformed(format!(
                "{} {key} must be a JSON object, got {}",
                self.shape,
                kind(other)
            ))),
        }
    }

    /// A version as `MAJOR.MINOR`: `"2"`, `2`, `"2.1"`, `"v2.1.0"` are all read.
    fn version(&self, key: &str) -> Result<Option<String>, Malformed> {
        let raw = match self.envelope.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(Malformed(format!(
                    "{} {key} must be a version, got {}",
                    self.shape,
                    kind(other)
                )));
            }
        };
        let digits = raw.strip_prefix('v').unwrap_or(&raw);
        let mut parts = digits.split('.');
        let major = parts.next().unwrap_or_default();
        let minor = parts.next().unwrap_or("0");
        SchemaVersion::parse(&format!("{major}.{minor}"))
            .map(|v| Some(v.to_string()))
            .map_err(|_| {
                Malformed(format!(
                    "{} {key} {:?} is not a version (e.g. \"1.0\")",
                    self.shape,
                    cut(&raw)
                ))
            })
    }

    fn kept(&self, keys: &[&str]) -> Result<Vec<(String, String)>, Malformed> {
        let mut kept = Vec::new();
        for key in keys {
            if let Some(value) = self.text(key)? {
                kept.push(((*key).to_owned(), cut(&value)));
            }
        }
        Ok(kept)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value quoted in a reason or kept for the timeline, cut to a line.
fn cut(value: &str) -> String {
    value.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::OrderPlaced;

    const FLAT: &str = r#"{"order_id":"o-1","item":"burger","qty":2,"student_id":"s-9"}"#;

    fn stamp() -> Stamp<'static> {
        Stamp {
            event: EventType::OrderPlaced,
            version: SchemaVersion::V1,
            event_id: "e-1",
            correlation_id: "c-1",
            service: "order-svc",
            time: 1_796_000_000,
            order_id: Some("o-1"),
            trace: None,
        }
    }

    fn open_as(envelope: Envelope) -> Opened<'static> {
        let body = stamp().wrap(envelope, FLAT.as_bytes());
        let transport = Transport {
            content_type: Some(envelope.content_type()),
            cloud_events_specversion: (envelope == Envelope::Binary).then_some("1.0"),
        };
        let opened = open(transport, &body).expect("our own envelope opens");
        Opened {
            body: Cow::Owned(opened.body.into_owned()),
            ..opened
        }
    }

    #[test]
    fn every_envelope_we_write_opens_to_the_same_event() {
        let expected = OrderPlaced::from_body(FLAT.as_bytes()).unwrap();
        for envelope in Envelope::ALL {
            let opened = open_as(envelope);
            assert_eq!(
                OrderPlaced::from_body(&opened.body).unwrap(),
                expected,
                "{envelope}"
            );
            assert_eq!(
                opened.event_type("order.placed", None).unwrap(),
                Some(EventType::OrderPlaced),
                "{envelope}"
            );
            if envelope != Envelope::Binary {
                assert_eq!(opened.event_id.as_deref(), Some("e-1"), "{envelope}");
                assert_eq!(opened.correlation_id.as_deref(), Some("c-1"), "{envelope}");
                assert_eq!(opened.version.as_deref(), Some("1.0"), "{envelope}");
            }
        }
    }

    #[test]
    fn the_binary_mode_leaves_the_lab_body_as_it_is() {
        assert_eq!(
            stamp().wrap(Envelope::Binary, FLAT.as_bytes()),
            FLAT.as_bytes()
        );
        let opened = open_as(Envelope::Binary);
        assert_eq!(opened.shape, Shape::CloudEventsBinary);
        assert_eq!(&*opened.body, FLAT.as_bytes());
        let bare = open(Transport::default(), FLAT.as_bytes()).unwrap();
        assert_eq!((bare.shape, &*bare.body), (Shape::Flat, FLAT.as_bytes()));
    }

    #[test]
    fn the_cloud_events_attributes() {
        let attributes: std::collections::BTreeMap<_, _> =
            stamp().cloud_events().into_iter().collect();
        assert_eq!(attributes["specversion"], "1.0");
        assert_eq!(attributes["type"], "order.placed");
        assert_eq!(attributes["source"], "/saga/order-svc");
        assert_eq!(attributes["time"], "2026-11-30T00:53:20Z");
        assert_eq!(attributes["subject"], "o-1");
        assert_eq!(attributes["dataschema"], "schemas/order.placed.v1.json");
    }

    #[test]
    fn the_course_starters_base_event_is_an_order_placed() {
        let body =
            br#"{"event_id":"e-7","event_type":"OrderPlaced","created_at":"2026-01-01T00:00:00Z",
            "correlation_id":null,"order":{"order_id":"o-7","user_id":"u-1",
            "items":[{"sku":"burger","qty":1}],"created_at":"2026-01-01T00:00:00Z"}}"#;
        let opened = open(Transport::default(), body).unwrap();
        assert_eq!(opened.shape, Shape::BaseEvent);
        let placed = OrderPlaced::from_body(&opened.body).unwrap();
        assert_eq!(placed.order_id.as_str(), "o-7");
        assert_eq!(placed.lines.first().item.as_str(), "burger");
        assert_eq!(placed.lines.first().qty.get(), 1);
        // Several items are an order of several lines: version 2.
        let two = br#"{"event_id":"e","event_type":"OrderPlaced","order":{"order_id":"o",
            "items":[{"sku":"a","qty":1},{"sku":"b","qty":3}]}}"#;
        let opened = open(Transport::default(), two).unwrap();
        assert_eq!(opened.version.as_deref(), Some("2.0"));
        let placed = OrderPlaced::from_body_at(&opened.body, SchemaVersion::V2).unwrap();
        assert_eq!(placed.lines.summary(), "2 lines, 4 units");
    }

    #[test]
    fn versions_are_read_in_every_spelling() {
        for (stated, read) in [
            ("\"2\"", "2.0"),
            ("2", "2.0"),
            ("\"1.3\"", "1.3"),
            ("\"v2.1.0\"", "2.1"),
        ] {
            let body = format!(
                r#"{{"messageId":"m","messageType":"OrderPlaced","messageVersion":{stated},"payload":{{}}}}"#
            );
            let opened = open(Transport::default(), body.as_bytes()).unwrap();
            assert_eq!(opened.version.as_deref(), Some(read), "{stated}");
        }
        let bad =
            br#"{"messageId":"m","messageType":"OrderPlaced","messageVersion":"two","payload":{}}"#;
        assert!(
            open(Transport::default(), bad)
                .unwrap_err()
                .0
                .contains("messageVersion \"two\" is not a version")
        );
    }

    #[test]
    fn a_body_that_fits_no_shape_or_two_is_refused_with_what_was_looked_for() {
        let none = open(Transport::default(), br#"{"item":"burger"}"#).unwrap_err();
        assert!(
            none.0.starts_with("missing required field order_id"),
            "{none}"
        );
        assert!(
            none.0.contains("StandardMessage: messageType and payload"),
            "{none}"
        );
        let two = open(
            Transport::default(),
            br#"{"messageType":"OrderPlaced","payload":{},"event_id":"e","event_type":"OrderPlaced"}"#,
        )
        .unwrap_err();
        assert!(
            two.0.contains("fits two shapes, StandardMessage") && two.0.contains("and BaseEvent"),
            "{two}"
        );
        let binary_and_structured = open(
            Transport {
                cloud_events_specversion: Some("1.0"),
                ..Transport::default()
            },
            br#"{"specversion":"1.0","type":"order.placed","id":"e","data":{}}"#,
        )
        .unwrap_err();
        assert!(binary_and_structured.0.contains("fits two shapes"));
        // Not JSON at all: handed on, for the body's reader to say so as it always has.
        assert_eq!(
            open(Transport::default(), b"not json").unwrap().shape,
            Shape::Flat
        );
    }

    #[test]
    fn a_named_event_must_be_ours_and_agree_with_the_routing_key() {
        let opened = open_as(Envelope::StandardMessage);
        let wrong = opened.event_type("inventory.reserved", None).unwrap_err();
        assert!(wrong.0.contains(
            "names the event OrderPlaced but it came with routing key inventory.reserved"
        ));
        // Straight to a queue: the envelope says which event it is.
        assert_eq!(
            opened.event_type("saga.inventory", None).unwrap(),
            Some(EventType::OrderPlaced)
        );
        let foreign = br#"{"id":"e","type":"com.example.thing","data":{}}"#;
        let opened = open(Transport::default(), foreign).unwrap();
        assert!(
            opened
                .event_type("order.placed", None)
                .unwrap_err()
                .0
                .contains("no event of this saga")
        );
    }

    #[test]
    fn what_the_sender_says_about_itself_is_kept() {
        let body = br#"{"id":"e","type":"order.placed","source":"go-bus","tenant_id":"t-42",
            "data":{"order_id":"o-1"},"metadata":{"version":"1.0"}}"#;
        let opened = open(Transport::default(), body).unwrap();
        assert_eq!(opened.shape, Shape::GoEvent);
        assert_eq!(
            opened.kept,
            vec![
                ("source".to_owned(), "go-bus".to_owned()),
                ("tenant_id".to_owned(), "t-42".to_owned())
            ]
        );
    }
}
