//! W3C Trace Context across the saga: one trace per order, from the HTTP request that placed it
//! to the last event about it.
//!
//! A span context is a trace id, the id of the span that is the parent of whatever comes next,
//! and a sampled flag; it travels as the `traceparent` header
//! (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`), on HTTP and in AMQP headers alike, with
//! `tracestate` (vendors' opaque data) carried along unread. order-svc takes it from the request
//! or starts one there, stores it with each outbox entry, and every publisher and consumer makes a
//! child of what it received ([`Trace::child`]) and sends that on. A `traceparent` that breaks the
//! format is ignored (a new trace starts), as the W3C recommendation says: tracing must never
//! refuse work.

use std::fmt;

/// The header (HTTP and AMQP) that carries the span context.
pub const TRACEPARENT: &str = "traceparent";
/// The header that carries vendors' trace state, passed on unread.
pub const TRACESTATE: &str = "tracestate";

/// Longest `tracestate` passed on: the recommendation's 32 members of at most 256 bytes could be
/// far longer, but propagators may cut it, and 512 bytes keeps an AMQP header small.
const MAX_TRACESTATE: usize = 512;

/// Where a piece of work sits in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanContext {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl SpanContext {
    /// A new trace: random ids, sampled.
    pub fn root() -> Self {
        Self {
            trace_id: fastrand::u128(1..),
            span_id: fastrand::u64(1..),
            sampled: true,
        }
    }

    /// The next span of the same trace.
    pub fn child(&self) -> Self {
        Self {
            span_id: fastrand::u64(1..),
            ..*self
        }
    }

    /// Read a `traceparent` value; `None` for anything the recommendation says to ignore
    /// (wrong length, not lowercase hex, an all-zero id, version `ff`).
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let version = parts.next()?;
        let (trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four parts; a later version may add more, read as 00.
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let hex = |s: &str, len: usize| {
            (s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .then(|| u128::from_str_radix(s, 16).ok())
                .flatten()
        };
        hex(version, 2)?;
        let trace_id = hex(trace_id, 32).filter(|&id| id != 0)?;
        let span_id = hex(span_id, 16).filter(|&id| id != 0)?;
        let flags = hex(flags, 2)?;
        Some(Self {
            trace_id,
            span_id: u64::try_from(span_id).ok()?,
            sampled: flags & 1 == 1,
        })
    }

    /// 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }
}

/// The `traceparent` value.
impl fmt::Display for SpanContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// A span context with the trace state that goes along with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Trace {
    pub context: SpanContext,
    pub state: Option<String>,
}

impl Trace {
    /// A new trace, with no state.
    pub fn root() -> Self {
        Self {
            context: SpanContext::root(),
            state: None,
        }
    }

    /// What the headers say, if the `traceparent` is one; the state is kept only with it and
    /// only while it is short.
    pub fn of_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Self> {
        Some(Self {
            context: SpanContext::parse(traceparent?)?,
            state: tracestate
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE && s.is_ascii())
                .map(str::to_owned),
        })
    }

    /// The next span of the same trace, with the same state.
    pub fn child(&self) -> Self {
        Self {
            context: self.context.child(),
            state: self.state.clone(),
        }
    }

    /// The `traceparent` value.
    pub fn traceparent(&self) -> String {
        self.context.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn the_recommendations_example_reads_and_writes_back() {
        let context = SpanContext::parse(EXAMPLE).unwrap();
        assert_eq!(context.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(context.span_id_hex(), "b7ad6b7169203331");
        assert!(context.sampled);
        assert_eq!(context.to_string(), EXAMPLE);
    }

    #[test]
    fn what_breaks_the_format_is_ignored() {
        for bad in [
            "",
            "garbage",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
        ] {
            assert_eq!(SpanContext::parse(bad), None, "{bad:?}");
        }
        // A later version may add fields: read as version 00.
        assert!(
            SpanContext::parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x")
                .is_some()
        );
    }

    #[test]
    fn a_child_keeps_the_trace_and_its_state_with_a_new_span() {
        let parent = Trace::of_headers(Some(EXAMPLE), Some("vendor=abc")).unwrap();
        let child = parent.child();
        assert_eq!(child.context.trace_id, parent.context.trace_id);
        assert_ne!(child.context.span_id, parent.context.span_id);
        assert_eq!(child.state.as_deref(), Some("vendor=abc"));
        let root = Trace::root();
        assert_ne!(root.context.trace_id, 0);
        assert_eq!(
            SpanContext::parse(&root.traceparent()),
            Some(root.context),
            "what we write, we read"
        );
        let long = "v=".to_owned() + &"x".repeat(600);
        assert_eq!(
            Trace::of_headers(Some(EXAMPLE), Some(&long)).unwrap().state,
            None
        );
    }
}
