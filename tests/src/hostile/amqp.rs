//! Random AMQP messages, published raw with lapin to every work queue and retry queue.
//!
//! A message is drawn as a destination (the exchange with a saga routing key, or a queue
//! straight through the default exchange: a work queue or its `.retry` queue), each of the
//! fourteen basic properties set or unset, a header table, and a body.
//!
//! - Short strings (properties, table keys) are drawn up to 255 bytes and at 256 and 300. AMQP
//!   writes a short string's length in one byte, so 256 cannot be put on the wire at all; lapin's
//!   `ShortString::try_new` refuses it (its `From` panics), and the case is counted as not
//!   sendable.
//! - Header values cover every field type RabbitMQ reads (bool, i8..i64, u8..u32, f32, f64,
//!   decimal, long string, byte array, timestamp, nested tables and arrays, void). Not the
//!   "short string" value: RabbitMQ has no such field type, and lapin would write it as `_`.
//! - Forged saga headers: `x-retry-attempts` (huge, negative, text, other types), `x-death`
//!   (well-formed for a retry queue, and garbage), `x-original-exchange` and
//!   `x-original-routing-key` (300 bytes, empty, unknown, real), and one large value that puts
//!   the header table near, at or over the broker's frame limit (131,072 bytes).
//! - Bodies: valid events of each type, poison (JSON with a missing or ill-typed field, or not
//!   JSON), random bytes, any JSON, empty. Valid and poison bodies carry a marker (a field, or a
//!   prefix of the bytes) so the checks can tell afterwards what became of each one.

use std::fmt;

use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use lapin::{BasicProperties, options::BasicPublishOptions};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::json;

use super::run::brief;

/// The saga's routing keys, and one nothing is bound to.
const ROUTING_KEYS: [&str; 6] = [
    "order.placed",
    "order.cancelled",
    "inventory.reserved",
    "inventory.failed",
    "inventory.released",
    "order.unknown",
];

/// The consumed queues (the topology's defaults; each has a `.retry` queue).
pub const WORK_QUEUES: [&str; 3] = [
    "inventory_queue",
    "order_status_queue",
    "notification_queue",
];

/// The broker's default frame size: a content header (properties and headers) must fit in one.
pub const FRAME_MAX: usize = 131_072;

/// Where a message is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The saga's exchange, with this routing key.
    Exchange(String),
    /// Straight into this queue, through the default exchange.
    Queue(String),
}

impl Destination {
    fn is_retry_queue(&self) -> bool {
        matches!(self, Self::Queue(q) if q.ends_with(".retry"))
    }
}

/// The basic properties as drawn: short strings as plain strings, since some are too long to
/// be short strings at all (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Properties {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub headers: Option<Vec<(String, AMQPValue)>>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub expiration: Option<String>,
    pub message_id: Option<String>,
    pub timestamp: Option<u64>,
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub app_id: Option<String>,
    pub cluster_id: Option<String>,
}

/// What must become of a message once the services have seen it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// In the DLQ, body unchanged, with a reason: its body carries this marker.
    Poison(Vec<u8>),
    /// A valid OrderPlaced that inventory-svc must decide (a reservation record for the order).
    Decided(String),
    /// Settled one way or another; the invariant checker judges valid events left in the DLQ.
    Settled,
}

/// One drawn message.
#[derive(Clone)]
pub struct Message {
    pub destination: Destination,
    pub properties: Properties,
    pub body_kind: &'static str,
    pub body: Vec<u8>,
    pub expect: Expect,
}

impl Message {
    /// The tally's name for this kind of message: where it went and what its body was.
    pub fn kind(&self) -> String {
        let to = match &self.destination {
            Destination::Exchange(key) => key.clone(),
            Destination::Queue(queue) => queue.clone(),
        };
        format!("amqp {to} {}", self.body_kind)
    }

    /// The properties lapin can send, or why these cannot be sent at all.
    ///
    /// # Errors
    /// A short string over 255 bytes.
    pub fn basic_properties(&self) -> Result<BasicProperties, String> {
        let p = &self.properties;
        let short = |name: &str, value: &Option<String>| -> Result<Option<ShortString>, String> {
            value
                .as_ref()
                .map(|v| {
                    ShortString::try_new(v.clone())
                        .map_err(|e| format!("property {name} of {} bytes: {e}", v.len()))
                })
                .transpose()
        };
        let mut props = BasicProperties::default();
        if let Some(v) = short("content_type", &p.content_type)? {
            props = props.with_content_type(v);
        }
        if let Some(v) = short("content_encoding", &p.content_encoding)? {
            props = props.with_content_encoding(v);
        }
        if let Some(headers) = &p.headers {
            let mut table = FieldTable::default();
            for (key, value) in headers {
                let key = ShortString::try_new(key.clone())
                    .map_err(|e| format!("header name of {} bytes: {e}", key.len()))?;
                table.insert(key, value.clone());
            }
            props = props.with_headers(table);
        }
        if let Some(v) = p.delivery_mode {
            props = props.with_delivery_mode(v);
        }
        if let Some(v) = p.priority {
            props = props.with_priority(v);
        }
        if let Some(v) = short("correlation_id", &p.correlation_id)? {
            props = props.with_correlation_id(v);
        }
        if let Some(v) = short("reply_to", &p.reply_to)? {
            props = props.with_reply_to(v);
        }
        if let Some(v) = short("expiration", &p.expiration)? {
            props = props.with_expiration(v);
        }
        if let Some(v) = short("message_id", &p.message_id)? {
            props = props.with_message_id(v);
        }
        if let Some(v) = p.timestamp {
            props = props.with_timestamp(v);
        }
        if let Some(v) = short("type", &p.kind)? {
            props = props.with_type(v);
        }
        if let Some(v) = short("user_id", &p.user_id)? {
            props = props.with_user_id(v);
        }
        if let Some(v) = short("app_id", &p.app_id)? {
            props = props.with_app_id(v);
        }
        if let Some(v) = short("cluster_id", &p.cluster_id)? {
            props = props.with_cluster_id(v);
        }
        Ok(props)
    }

    /// The exchange and routing key to publish with.
    pub fn address(&self) -> (&str, &str) {
        match &self.destination {
            Destination::Exchange(key) => ("order_events", key),
            Destination::Queue(queue) => ("", queue),
        }
    }
}

impl fmt::Debug for Message {
    /// Long values shown short, so a finding names the case in a few lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} body({}) {}",
            self.destination,
            self.body_kind,
            brief(&self.body)
        )?;
        let p = &self.properties;
        let shorts = [
            ("content_type", &p.content_type),
            ("content_encoding", &p.content_encoding),
            ("correlation_id", &p.correlation_id),
            ("reply_to", &p.reply_to),
            ("expiration", &p.expiration),
            ("message_id", &p.message_id),
            ("type", &p.kind),
            ("user_id", &p.user_id),
            ("app_id", &p.app_id),
            ("cluster_id", &p.cluster_id),
        ];
        for (name, value) in shorts {
            if let Some(value) = value {
                write!(f, " {name}={}", brief(value.as_bytes()))?;
            }
        }
        for (name, value) in [
            ("delivery_mode", p.delivery_mode.map(u64::from)),
            ("priority", p.priority.map(u64::from)),
            ("timestamp", p.timestamp),
        ] {
            if let Some(value) = value {
                write!(f, " {name}={value}")?;
            }
        }
        if let Some(headers) = &p.headers {
            write!(f, " headers{{")?;
            for (key, value) in headers {
                write!(f, " {}: {}", brief(key.as_bytes()), show_value(value))?;
            }
            write!(f, " }}")?;
        }
        Ok(())
    }
}

/// A header value shown short.
fn show_value(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => format!("S{}", brief(s.as_bytes())),
        AMQPValue::ByteArray(b) => format!("x{}", brief(b.as_slice())),
        AMQPValue::FieldTable(t) => format!("F[{} entries]", t.inner().len()),
        AMQPValue::FieldArray(a) => format!("A[{} values]", a.as_slice().len()),
        other => format!("{other:?}"),
    }
}

// --- strategies ------------------------------------------------------------------------------

/// A short string's text, up to the limit of 255 bytes (past it: [`oversize`]).
fn short_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ".{0,20}",
        2 => select(vec![
            "", "application/json", "OrderPlaced", "OrderCancelled", "InventoryReserved",
            "inventory-svc", "order-svc", "o-1", "a:b", "\u{0}", "🍕", "guest",
        ])
        .prop_map(str::to_owned),
        1 => select(vec![254usize, 255]).prop_map(|len| "s".repeat(len)),
        1 => Just("é".repeat(127)), // 254 bytes in 127 characters
    ]
}

/// Now and then, one short-string property past the limit: 256 or 300 bytes (256 bytes in 128
/// characters too). Not sendable (see the module doc): which property, and its text.
fn oversize() -> impl Strategy<Value = Option<(usize, String)>> {
    prop_oneof![
        12 => Just(None),
        1 => (0usize..10, select(vec![256usize, 300])).prop_map(|(i, len)| Some((i, "s".repeat(len)))),
        1 => (0usize..10).prop_map(|i| Some((i, "é".repeat(128)))),
    ]
}

fn maybe<T: fmt::Debug + Clone + 'static>(
    value: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![1 => Just(None), 1 => value.prop_map(Some)]
}

fn long_string(bytes: Vec<u8>) -> AMQPValue {
    AMQPValue::LongString(LongString::from(bytes))
}

/// Any header value, nested up to three deep.
fn amqp_value() -> impl Strategy<Value = AMQPValue> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<i8>().prop_map(AMQPValue::ShortShortInt),
        any::<u8>().prop_map(AMQPValue::ShortShortUInt),
        any::<i16>().prop_map(AMQPValue::ShortInt),
        any::<u16>().prop_map(AMQPValue::ShortUInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<u32>().prop_map(AMQPValue::LongUInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<f32>().prop_map(AMQPValue::Float),
        any::<f64>().prop_map(AMQPValue::Double),
        (any::<u8>(), any::<u32>())
            .prop_map(|(scale, value)| AMQPValue::DecimalValue(DecimalValue { scale, value })),
        proptest::collection::vec(any::<u8>(), 0..48).prop_map(long_string),
        ".{0,24}".prop_map(|s| long_string(s.into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..48)
            .prop_map(|b| AMQPValue::ByteArray(ByteArray::from(b))),
        any::<u64>().prop_map(AMQPValue::Timestamp),
        Just(AMQPValue::Void),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5)
                .prop_map(|values| AMQPValue::FieldArray(FieldArray::from(values))),
            proptest::collection::btree_map("[a-z-]{1,12}", inner, 0..5).prop_map(|entries| {
                let mut table = FieldTable::default();
                for (key, value) in entries {
                    table.insert(ShortString::from(key), value);
                }
                AMQPValue::FieldTable(table)
            }),
        ]
    })
}

/// `x-death` as the broker writes it, for a message that expired in `queue`.
fn x_death(queue: &str, count: i64) -> AMQPValue {
    let mut death = FieldTable::default();
    death.insert("count".into(), AMQPValue::LongLongInt(count));
    death.insert("reason".into(), long_string(b"expired".to_vec()));
    death.insert("queue".into(), long_string(queue.as_bytes().to_vec()));
    death.insert("time".into(), AMQPValue::Timestamp(1_764_800_000));
    death.insert("exchange".into(), long_string(Vec::new()));
    death.insert(
        "routing-keys".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![long_string(
            queue.as_bytes().to_vec(),
        )])),
    );
    AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)]))
}

/// Whether `value` is an `x-death` of the shape the broker writes: an array of tables.
fn well_formed_death(value: &AMQPValue) -> bool {
    matches!(value, AMQPValue::FieldArray(deaths)
        if deaths.as_slice().iter().all(|d| matches!(d, AMQPValue::FieldTable(_))))
}

/// The saga's own headers, forged.
fn forged_header() -> impl Strategy<Value = (String, AMQPValue)> {
    let attempts = prop_oneof![
        any::<u32>().prop_map(AMQPValue::LongUInt),
        select(vec![0u32, 1, 2, 3, 4, 100, u32::MAX]).prop_map(AMQPValue::LongUInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        select(vec![-1i64, i64::MIN, i64::MAX]).prop_map(AMQPValue::LongLongInt),
        select(vec!["1", "-1", "abc", "99999999999", ""])
            .prop_map(|s| long_string(s.as_bytes().to_vec())),
        amqp_value(),
    ]
    .prop_map(|v| ("x-retry-attempts".to_owned(), v));
    let death = prop_oneof![
        (select(WORK_QUEUES.to_vec()), -2i64..5)
            .prop_map(|(q, count)| x_death(&format!("{q}.retry"), count)),
        (".{0,20}", any::<i64>()).prop_map(|(q, count)| x_death(&q, count)),
        amqp_value(),
    ]
    .prop_map(|v| ("x-death".to_owned(), v));
    let original_text = prop_oneof![
        Just("x".repeat(300)),
        Just("e".repeat(255)),
        Just(String::new()),
        select(vec!["order_events", "", "nope", "amq.direct"]).prop_map(str::to_owned),
        select(ROUTING_KEYS.to_vec()).prop_map(str::to_owned),
        ".{0,16}",
    ];
    let original = (
        select(vec!["x-original-exchange", "x-original-routing-key"]),
        prop_oneof![
            4 => original_text.prop_map(|s| long_string(s.into_bytes())),
            1 => amqp_value(),
        ],
    )
        .prop_map(|(k, v)| (k.to_owned(), v));
    let dlq = (
        select(vec![
            "x-dlq-reason",
            "x-dlq-service",
            "x-dlq-attempts",
            "x-original-queue",
            "traceparent",
            "cloudEvents_id",
            "cloudEvents_type",
            "cloudEvents_specversion",
        ]),
        amqp_value(),
    )
        .prop_map(|(k, v)| (k.to_owned(), v));
    prop_oneof![3 => attempts, 2 => death, 3 => original, 1 => dlq]
}

/// One value large enough to bring the header table near, to or over the frame limit.
fn bulky_header() -> impl Strategy<Value = (String, AMQPValue)> {
    select(vec![
        60_000usize,
        120_000,
        FRAME_MAX - 2_000,
        FRAME_MAX - 600,
        FRAME_MAX - 200,
        FRAME_MAX + 100,
    ])
    .prop_map(|len| ("x-bulk".to_owned(), long_string(vec![b'b'; len])))
}

/// A whole forged retry: attempts, where it was "first published", and sometimes an `x-death`
/// that says it came back from a retry queue, as a message parked by a service carries them.
fn forged_retry() -> impl Strategy<Value = Vec<(String, AMQPValue)>> {
    let text = prop_oneof![
        Just("x".repeat(300)),
        Just("e".repeat(255)),
        Just("e".repeat(256)),
        Just(String::new()),
        select(vec!["order_events", "nope", "amq.direct"]).prop_map(str::to_owned),
        select(ROUTING_KEYS.to_vec()).prop_map(str::to_owned),
        Just("k".repeat(300)),
    ];
    let attempts = prop_oneof![
        select(vec![1u32, 2, 3, 100, u32::MAX]).prop_map(AMQPValue::LongUInt),
        select(vec![-1i64, 1, i64::MAX]).prop_map(AMQPValue::LongLongInt),
        select(vec!["1", "-5", "x"]).prop_map(|s| long_string(s.as_bytes().to_vec())),
    ];
    let death = maybe(
        (select(WORK_QUEUES.to_vec()), 1i64..3)
            .prop_map(|(q, n)| x_death(&format!("{q}.retry"), n)),
    );
    (attempts, text.clone(), text, death).prop_map(|(attempts, exchange, key, death)| {
        let mut entries = vec![
            ("x-retry-attempts".to_owned(), attempts),
            (
                "x-original-exchange".to_owned(),
                long_string(exchange.into_bytes()),
            ),
            (
                "x-original-routing-key".to_owned(),
                long_string(key.into_bytes()),
            ),
        ];
        entries.extend(death.map(|d| ("x-death".to_owned(), d)));
        entries
    })
}

fn headers() -> impl Strategy<Value = Option<Vec<(String, AMQPValue)>>> {
    let long_key = (
        select(vec![256usize, 300]).prop_map(|len| "k".repeat(len)),
        amqp_value(),
    );
    let entry = if super::run::without("bulky-headers") {
        prop_oneof![
            8 => forged_header(),
            6 => (short_text(), amqp_value()),
            1 => long_key,
        ]
        .boxed()
    } else {
        prop_oneof![
            8 => forged_header(),
            6 => (short_text(), amqp_value()),
            1 => bulky_header(),
            1 => long_key,
        ]
        .boxed()
    };
    let loose = proptest::collection::vec(entry, 0..6);
    prop_oneof![
        3 => Just(None),
        3 => loose.clone().prop_map(Some),
        1 => (forged_retry(), loose).prop_map(|(mut retry, more)| {
            retry.extend(more);
            Some(retry)
        }),
    ]
}

fn properties(destination: &Destination) -> impl Strategy<Value = Properties> + use<> {
    // A message parked in a retry queue leaves it when its expiration ends. One without an
    // expiration leaves at the queue's own TTL, an hour (saga_domain::retry::MAX_DELAY: a unit test
    // of the topology holds it), longer than a batch can wait, so it is drawn only by a soak that
    // asks for it (HOSTILE_WITH=retry-without-expiration). Elsewhere an expiration is long enough
    // never to run out before a consumer takes the message, or invalid (refused by the broker).
    let expires = select(vec!["0", "1", "100", "500", "1500"]).prop_map(|s| Some(s.to_owned()));
    let invalid = select(vec!["-1", "abc", "1.5", ""]).prop_map(|s| Some(s.to_owned()));
    let expiration = if destination.is_retry_queue() {
        if super::run::with("retry-without-expiration") {
            prop_oneof![12 => expires, 1 => Just(None), 1 => invalid].boxed()
        } else {
            prop_oneof![12 => expires, 1 => invalid].boxed()
        }
    } else {
        prop_oneof![
            16 => Just(None),
            2 => Just(Some("600000".to_owned())),
            1 => select(vec!["-1", "abc"]).prop_map(|s| Some(s.to_owned())),
        ]
        .boxed()
    };
    let user_id = prop_oneof![
        16 => Just(None),
        2 => Just(Some("guest".to_owned())),
        1 => Just(Some("mallory".to_owned())),
    ];
    // Straight into a retry queue, an `x-death` is drawn only as the broker writes one:
    // RabbitMQ 3.10 crashes the queue process that dead-letters a message whose `x-death` is
    // malformed, and loses the message (the broker's defect, not the saga's; the hardened broker
    // lets no student publish into a queue). The services strip the sender's `x-death` from the
    // copies they park, so a forged one sent to a work queue is drawn in full.
    let straight_into_retry = destination.is_retry_queue();
    let headers = headers().prop_map(move |headers| {
        headers.map(|entries| {
            entries
                .into_iter()
                .filter(|(k, v)| !(straight_into_retry && k == "x-death" && !well_formed_death(v)))
                .collect::<Vec<_>>()
        })
    });
    (
        (
            maybe(short_text()),
            maybe(short_text()),
            headers,
            // RabbitMQ refuses a delivery mode other than 1 or 2 (406, the channel closes).
            maybe(prop_oneof![12 => 1u8..=2, 1 => any::<u8>()]),
            maybe(any::<u8>()),
            maybe(short_text()),
            maybe(short_text()),
        ),
        (
            expiration,
            maybe(short_text()),
            maybe(any::<u64>()),
            maybe(short_text()),
            user_id,
            maybe(short_text()),
            maybe(short_text()),
        ),
        oversize(),
    )
        .prop_map(
            |(
                (
                    content_type,
                    content_encoding,
                    headers,
                    delivery_mode,
                    priority,
                    correlation_id,
                    reply_to,
                ),
                (expiration, message_id, timestamp, kind, user_id, app_id, cluster_id),
                oversize,
            )| {
                let mut p = Properties {
                    content_type,
                    content_encoding,
                    headers,
                    delivery_mode,
                    priority,
                    correlation_id,
                    reply_to,
                    expiration,
                    message_id,
                    timestamp,
                    kind,
                    user_id,
                    app_id,
                    cluster_id,
                };
                if let Some((which, text)) = oversize {
                    let slot = match which {
                        0 => &mut p.content_type,
                        1 => &mut p.content_encoding,
                        2 => &mut p.correlation_id,
                        3 => &mut p.reply_to,
                        4 => &mut p.expiration,
                        5 => &mut p.message_id,
                        6 => &mut p.kind,
                        7 => &mut p.user_id,
                        8 => &mut p.app_id,
                        _ => &mut p.cluster_id,
                    };
                    *slot = Some(text);
                }
                p
            },
        )
}

fn destination() -> impl Strategy<Value = Destination> {
    prop_oneof![
        3 => select(ROUTING_KEYS.to_vec()).prop_map(|k| Destination::Exchange(k.to_owned())),
        1 => select(WORK_QUEUES.to_vec()).prop_map(|q| Destination::Queue(q.to_owned())),
        1 => select(WORK_QUEUES.to_vec()).prop_map(|q| Destination::Queue(format!("{q}.retry"))),
    ]
}

/// A body, what it is called, and the order id of a valid one. `mark` is unique to the case.
fn body(mark: String) -> impl Strategy<Value = (&'static str, Vec<u8>, Option<String>)> {
    let order_id = format!("h-{mark}");
    // Wire samples: the lab's flat bodies, with the statuses it sends (literals on purpose: they
    // are what arrives over the wire, not what the domain calls them).
    let placed = {
        let id = order_id.clone();
        (1i64..4, select(vec!["burger", "pizza", "sushi", "salad"])).prop_map(move |(qty, item)| {
            let body = json!({"order_id": id, "item": item, "qty": qty, "student_id": "s-1", "status": "PLACED"});
            ("placed", body.to_string().into_bytes(), Some(id.clone()))
        })
    };
    let cancelled = {
        let id = order_id.clone();
        Just(()).prop_map(move |()| {
            let body = json!({"order_id": id, "reason": "hostile"});
            ("cancelled", body.to_string().into_bytes(), Some(id.clone()))
        })
    };
    let outcome = {
        let id = order_id.clone();
        select(vec!["RESERVED", "FAILED"]).prop_map(move |status| {
            let body = json!({"order_id": id, "item": "burger", "qty": 1, "student_id": "s-1",
                              "remaining": 5, "status": status, "reason": "out", "code": "insufficient_stock"});
            ("outcome", body.to_string().into_bytes(), Some(id.clone()))
        })
    };
    let poison_json = {
        let mark = mark.clone();
        select(vec![
            json!({"item": "burger", "qty": 1}),
            json!({"order_id": 42, "item": "burger", "qty": 1}),
            json!({"order_id": null, "item": "burger", "qty": 1}),
            json!({"order_id": ["o"], "item": "burger", "qty": 1}),
            json!({"order_id": "x".repeat(300), "item": "burger", "qty": 1}),
        ])
        .prop_map(move |mut body| {
            body["hostile_mark"] = json!(mark);
            ("poison-json", body.to_string().into_bytes(), None)
        })
    };
    let not_json = {
        let mark = mark.clone();
        proptest::collection::vec(any::<u8>(), 0..128).prop_map(move |tail| {
            let bytes = [b"\xff\xfe not json ".as_slice(), mark.as_bytes(), &tail].concat();
            ("not-json", bytes, None)
        })
    };
    prop_oneof![
        3 => placed,
        1 => cancelled,
        1 => outcome,
        2 => poison_json,
        2 => not_json,
        1 => proptest::collection::vec(any::<u8>(), 0..512).prop_map(|b| ("random", b, None)),
        1 => super::http::json_value().prop_map(|v| ("json", v.to_string().into_bytes(), None)),
        1 => Just(("empty", Vec::new(), None)),
    ]
}

/// A message for case `mark` (unique in the run).
pub fn message(mark: String) -> impl Strategy<Value = Message> {
    destination().prop_flat_map(move |destination| {
        let to = destination.clone();
        (properties(&destination), body(mark.clone())).prop_map(
            move |(properties, (body_kind, body, order_id))| {
                let expect = expect(&to, &properties, body_kind, &body, order_id);
                Message {
                    destination: to.clone(),
                    properties,
                    body_kind,
                    body,
                    expect,
                }
            },
        )
    })
}

/// What must become of a message, from how it was drawn.
fn expect(
    destination: &Destination,
    properties: &Properties,
    body_kind: &str,
    body: &[u8],
    order_id: Option<String>,
) -> Expect {
    // Parked without an expiration, it never leaves the retry queue; the drain check says so.
    if destination.is_retry_queue() && properties.expiration.is_none() {
        return Expect::Settled;
    }
    match body_kind {
        "poison-json" | "not-json" => Expect::Poison(body.to_vec()),
        "placed" if *destination == Destination::Exchange("order.placed".into()) => {
            // Forged retry headers must not turn it into another event; only a forged `x-death`
            // that looks exactly like our own retry queue's may (nobody can tell those apart).
            // Forged CloudEvents headers or a content encoding may fairly make it unreadable.
            let headers = properties.headers.as_deref().unwrap_or_default();
            let forged_death = headers.iter().any(|(k, _)| k == "x-death");
            let says_otherwise = properties.content_encoding.is_some()
                || headers.iter().any(|(k, _)| k.starts_with("cloudEvents"));
            match (forged_death || says_otherwise, order_id) {
                (false, Some(id)) => Expect::Decided(id),
                _ => Expect::Settled,
            }
        }
        _ => Expect::Settled,
    }
}

// --- publishing ------------------------------------------------------------------------------

/// What the broker did with a publish.
#[derive(Debug)]
pub enum Published {
    /// Confirmed and routed to a queue.
    Routed,
    /// Confirmed, but no queue was bound for it (mandatory: returned).
    Unroutable,
    /// lapin would not write it (a short string over 255 bytes).
    Unsendable(String),
    /// The broker refused it (channel or connection closed, nack): e.g. an invalid expiration,
    /// a forged `user_id`, a frame over the limit.
    Refused(String),
}

/// A confirm-mode channel on its own connection, opened again after the broker closes it.
pub struct RawPublisher {
    url: String,
    link: Option<(lapin::Connection, lapin::Channel)>,
}

impl RawPublisher {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            link: None,
        }
    }

    async fn channel(&mut self) -> anyhow::Result<&lapin::Channel> {
        let open = self
            .link
            .as_ref()
            .is_some_and(|(conn, ch)| conn.status().connected() && ch.status().connected());
        if !open {
            if let Some((conn, _)) = self.link.take() {
                let _ = conn.close(200, "reopening".into()).await;
            }
            let connect = lapin::Connection::connect(
                &self.url,
                lapin::ConnectionProperties::default().with_connection_name("hostile".into()),
            );
            let conn = tokio::time::timeout(std::time::Duration::from_secs(10), connect)
                .await
                .map_err(|_| anyhow::anyhow!("no connection to the broker within 10 s"))??;
            let channel = conn.create_channel().await?;
            channel
                .confirm_select(lapin::options::ConfirmSelectOptions::default())
                .await?;
            self.link = Some((conn, channel));
        }
        match &self.link {
            Some((_, channel)) => Ok(channel),
            None => anyhow::bail!("no channel"),
        }
    }

    /// Publish `message` as drawn, mandatory, and wait for the broker's confirm.
    ///
    /// # Errors
    /// The broker cannot be reached at all.
    pub async fn publish(&mut self, message: &Message) -> anyhow::Result<Published> {
        let properties = match message.basic_properties() {
            Ok(p) => p,
            Err(why) => return Ok(Published::Unsendable(why)),
        };
        let (exchange, routing_key) = message.address();
        let Ok(routing_key) = ShortString::try_new(routing_key) else {
            return Ok(Published::Unsendable("routing key over 255 bytes".into()));
        };
        let channel = self.channel().await?;
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let sent = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            channel
                .basic_publish(
                    exchange.into(),
                    routing_key,
                    options,
                    &message.body,
                    properties,
                )
                .await?
                .await
        })
        .await;
        Ok(match sent {
            Ok(Ok(lapin::Confirmation::Ack(None))) => Published::Routed,
            Ok(Ok(lapin::Confirmation::Ack(Some(_)))) => Published::Unroutable,
            Ok(Ok(other)) => Published::Refused(format!("{other:?}")),
            Ok(Err(e)) => {
                self.link = None;
                Published::Refused(e.to_string())
            }
            Err(_) => {
                self.link = None;
                Published::Refused("no confirm within 10 s".into())
            }
        })
    }

    pub async fn close(mut self) {
        if let Some((conn, _)) = self.link.take() {
            let _ = conn.close(200, "done".into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostile::run::{Seed, draw};

    #[test]
    fn messages_cover_every_destination_and_too_long_short_strings_are_not_sendable() {
        let mut runner = Seed(11).runner("amqp-unit");
        let mut destinations = std::collections::BTreeSet::new();
        let mut unsendable = 0;
        for i in 0..400 {
            let message = draw(&mut runner, &message(format!("m{i}"))).unwrap();
            destinations.insert(format!("{:?}", message.destination));
            unsendable += usize::from(message.basic_properties().is_err());
        }
        assert_eq!(destinations.len(), 12, "{destinations:?}");
        assert!(unsendable > 0, "256-byte short strings are drawn");
    }

    #[test]
    fn poison_carries_its_mark_and_valid_orders_are_expected_decided() {
        let placed = expect(
            &Destination::Exchange("order.placed".into()),
            &Properties::default(),
            "placed",
            b"{}",
            Some("h-1".into()),
        );
        assert_eq!(placed, Expect::Decided("h-1".into()));
        let stuck = expect(
            &Destination::Queue("inventory_queue.retry".into()),
            &Properties::default(),
            "not-json",
            b"x",
            None,
        );
        assert_eq!(stuck, Expect::Settled);
    }
}
