//! Copies of a message's headers that are sure to fit in one AMQP frame.
//!
//! A message's properties (its headers among them) travel in one content-header frame, which
//! may not exceed the connection's `frame_max` (RabbitMQ's default: 131,072 bytes). A message
//! whose headers are close to that limit arrived whole, but the copy we publish of it (to the
//! DLQ with `x-dlq-*` added, or to a retry queue with `x-retry-*`) could be over it: the broker
//! then closes the whole connection, the delivery comes back, and the same thing happens again,
//! for ever. So every copy is [`fit`] first: our own headers always go in, the sender's go in
//! as long as they fit, and the ones left out are named, so the copy says what it lost.
//!
//! The body is never touched: it travels in body frames of its own, split as needed.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use saga_domain::dlq::DlqHeaders;

/// The most one header value of the sender's may take in a copy of ours (its encoded size).
/// 16 KiB is far more than any metadata a person reads in the DLQ (an id, a trace, a reason);
/// larger values are payload smuggled in headers, and keeping them would crowd out the rest.
pub const MAX_HEADER_VALUE: usize = 16 * 1024;

/// The most all headers of a copy may take, encoded: 64 KiB, half of RabbitMQ's default
/// `frame_max` (131,072). The other half is ample for the other properties (at most 14 short
/// strings and numbers, about 3.6 KiB) and the frame's own framing (a few bytes). A broker
/// configured with a smaller `frame_max` gets a smaller budget ([`budget_for`]).
pub const MAX_HEADERS_SIZE: usize = 64 * 1024;

/// What a content-header frame needs besides the headers: the frame's envelope, class, weight,
/// body size, property flags, and every other property at its largest (short strings of 255).
const OTHER_PROPERTIES: usize = 8 * 1024;

/// The header budget on a connection that negotiated `frame_max` (0 means "no limit" in AMQP).
pub fn budget_for(frame_max: u32) -> usize {
    match usize::try_from(frame_max) {
        Ok(0) | Err(_) => MAX_HEADERS_SIZE,
        Ok(frame_max) => MAX_HEADERS_SIZE.min(frame_max.saturating_sub(OTHER_PROPERTIES)),
    }
}

/// Headers made to fit, and the names of the sender's headers left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub headers: FieldTable,
    pub dropped: Vec<String>,
}

/// The sender's `original` headers with `ours` set over them, within `budget` encoded bytes.
///
/// Ours always go in (the caller keeps them small: names, counts, a bounded reason). Of the
/// sender's, any value over [`MAX_HEADER_VALUE`] is left out, then the largest ones go until
/// the rest fits. Dropped names are sorted, for a stable reason text.
pub fn fit(original: Option<&FieldTable>, ours: &[(&str, AMQPValue)], budget: usize) -> Fitted {
    let mut theirs: Vec<(&ShortString, &AMQPValue, usize)> = original
        .map(|t| t.inner().iter())
        .into_iter()
        .flatten()
        .filter(|(name, _)| !ours.iter().any(|(ours, _)| *ours == name.as_str()))
        .map(|(name, value)| (name, value, entry_size(name.as_str(), value)))
        .collect();
    let mut dropped: Vec<String> = Vec::new();
    theirs.retain(|(name, value, _)| {
        let keep = value_size(value) <= MAX_HEADER_VALUE;
        if !keep {
            dropped.push(name.to_string());
        }
        keep
    });
    let mut headers = FieldTable::default();
    let mut used = 4 + ours
        .iter()
        .map(|(name, value)| entry_size(name, value))
        .sum::<usize>();
    // Smallest first: as many of the sender's headers as possible stay.
    theirs.sort_by_key(|(_, _, size)| *size);
    for (name, value, size) in theirs {
        if used + size <= budget {
            used += size;
            headers.insert(name.clone(), value.clone());
        } else {
            dropped.push(name.to_string());
        }
    }
    for (name, value) in ours {
        // Our names are constants of a few bytes: always valid short strings.
        if let Ok(name) = ShortString::try_new(*name) {
            headers.insert(name, value.clone());
        }
    }
    dropped.sort();
    Fitted { headers, dropped }
}

/// The encoded size of a whole header table (its 4-byte length included).
pub fn table_size(table: &FieldTable) -> usize {
    4 + table
        .inner()
        .iter()
        .map(|(name, value)| entry_size(name.as_str(), value))
        .sum::<usize>()
}

/// One `name: value` entry of a table: the name as a short string, the type tag, the value.
fn entry_size(name: &str, value: &AMQPValue) -> usize {
    1 + name.len() + 1 + value_size(value)
}

/// A value's encoded size, without its type tag.
fn value_size(value: &AMQPValue) -> usize {
    match value {
        AMQPValue::Void => 0,
        AMQPValue::Boolean(_) | AMQPValue::ShortShortInt(_) | AMQPValue::ShortShortUInt(_) => 1,
        AMQPValue::ShortInt(_) | AMQPValue::ShortUInt(_) => 2,
        AMQPValue::LongInt(_) | AMQPValue::LongUInt(_) | AMQPValue::Float(_) => 4,
        AMQPValue::DecimalValue(_) => 5,
        AMQPValue::LongLongInt(_) | AMQPValue::Double(_) | AMQPValue::Timestamp(_) => 8,
        AMQPValue::ShortString(s) => 1 + s.as_str().len(),
        AMQPValue::LongString(s) => 4 + s.as_bytes().len(),
        AMQPValue::ByteArray(b) => 4 + b.as_slice().len(),
        AMQPValue::FieldArray(a) => {
            4 + a
                .as_slice()
                .iter()
                .map(|v| 1 + value_size(v))
                .sum::<usize>()
        }
        AMQPValue::FieldTable(t) => table_size(t),
    }
}

/// At most `max` bytes of `text`, cut at a character boundary, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The longest `x-dlq-reason` (and timeline reason) we write: a reason is read by a person, and
/// a handler's error chain can be long; 2 KiB keeps the DLQ copy well inside its header budget.
pub const MAX_REASON: usize = 2048;

/// Room kept in a DLQ copy's header budget for the note that names the headers left out.
pub const DROPPED_NOTE: usize = 1024;

/// The `x-dlq-*` and `x-original-*` headers of a DLQ copy ([`DlqHeaders`]: why, who, where
/// it came from, when, after how many attempts) as AMQP values; the reason is cut to
/// [`MAX_REASON`].
pub fn dlq_headers(ours: &DlqHeaders) -> Vec<(&'static str, AMQPValue)> {
    let text = |value: &str| AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()));
    let ours = DlqHeaders {
        reason: truncate(&ours.reason, MAX_REASON),
        ..ours.clone()
    };
    ours.to_pairs()
        .into_iter()
        .map(|(name, value)| (name, text(&value)))
        .collect()
}

/// `reason`, and which of the sender's headers the copy left out (a few names, each cut short:
/// the note itself must stay small).
pub fn with_dropped_note(reason: &str, dropped: &[String]) -> String {
    const NAMES: usize = 8;
    let mut names: Vec<String> = dropped
        .iter()
        .take(NAMES)
        .map(|n| truncate(n, 48))
        .collect();
    if dropped.len() > NAMES {
        names.push(format!("and {} more", dropped.len() - NAMES));
    }
    format!(
        "{reason}; headers too large for this copy, left out: {}",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use lapin::types::LongString;

    use super::*;

    fn text(s: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
    }

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(ShortString::try_new(*k).unwrap(), v.clone());
        }
        t
    }

    #[test]
    fn sizes_are_the_encoded_sizes() {
        assert_eq!(table_size(&FieldTable::default()), 4);
        // name (1 + 1) + tag (1) + long string (4 + 3)
        assert_eq!(table_size(&table(&[("a", text("abc"))])), 4 + 2 + 1 + 7);
        let nested = table(&[("t", AMQPValue::FieldTable(table(&[("a", text("abc"))])))]);
        assert_eq!(table_size(&nested), 4 + 2 + 1 + (4 + 2 + 1 + 7));
        let array = AMQPValue::FieldArray(vec![AMQPValue::LongUInt(1), text("")].into());
        assert_eq!(value_size(&array), 4 + (1 + 4) + (1 + 4));
    }

    #[test]
    fn everything_fits_when_there_is_room() {
        let original = table(&[("trace", text("t-1")), ("x-dlq-reason", text("old"))]);
        let fitted = fit(Some(&original), &[("x-dlq-reason", text("new"))], 1000);
        assert!(fitted.dropped.is_empty());
        assert_eq!(
            fitted.headers.inner().get("x-dlq-reason"),
            Some(&text("new"))
        );
        assert_eq!(fitted.headers.inner().get("trace"), Some(&text("t-1")));
    }

    #[test]
    fn oversized_and_then_the_largest_headers_are_dropped_and_named() {
        let huge = "h".repeat(MAX_HEADER_VALUE + 1);
        let big = "b".repeat(600);
        let original = table(&[
            ("huge", text(&huge)),
            ("big", text(&big)),
            ("small", text("s")),
        ]);
        let ours = [("x-dlq-reason", text("why"))];
        let fitted = fit(Some(&original), &ours, 500);
        assert_eq!(fitted.dropped, ["big", "huge"]);
        assert!(table_size(&fitted.headers) <= 500);
        assert_eq!(fitted.headers.inner().get("small"), Some(&text("s")));
        assert_eq!(
            fitted.headers.inner().get("x-dlq-reason"),
            Some(&text("why"))
        );
    }

    #[test]
    fn budgets_follow_the_negotiated_frame_size() {
        assert_eq!(budget_for(131_072), MAX_HEADERS_SIZE);
        assert_eq!(budget_for(0), MAX_HEADERS_SIZE);
        assert_eq!(budget_for(16_384), 16_384 - OTHER_PROPERTIES);
        assert_eq!(budget_for(4_096), 0);
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate("ééééé", 6);
        assert!(cut.len() <= 6 && cut.ends_with('…'), "{cut}");
    }

    #[test]
    fn the_dropped_note_names_a_few_headers_briefly() {
        let dropped: Vec<String> = (0..10)
            .map(|i| format!("h{i}{}", "x".repeat(100)))
            .collect();
        let note = with_dropped_note("bad json", &dropped);
        assert!(note.starts_with("bad json; headers too large for this copy, left out: h0"));
        assert!(note.ends_with("and 2 more"), "{note}");
        assert!(note.len() < DROPPED_NOTE, "{}", note.len());
    }
}
