//! A message too large to receive, and how a consumer takes it off its queue anyway.
//!
//! A message's properties travel in one frame, which the protocol cannot split, and every
//! connection agrees a largest frame. RabbitMQ checks what publishers send against it, but it
//! adds headers of its own on the way: `x-death` and `x-first-death-*` when it dead-letters a
//! message (our retry queues do, when a delay ends), `x-delivery-count` when a quorum queue
//! delivers one again. A message that came in just under the limit can then go out over it, and
//! RabbitMQ sends it anyway (it is a known gap: amqp-node/amqplib#135). lapin keeps to the
//! protocol: it closes the connection with `FRAME-ERROR`, the message goes back to the head of
//! its queue, and it comes first again after every reconnect. One message, for example one that
//! someone published straight into a retry queue with 128 KB of headers, would stop the
//! consumer for good.
//!
//! So when a consumer's connection closes with `FRAME-ERROR`, or because lapin could not parse
//! a message's properties (a header string that is not UTF-8 where the protocol wants one), the
//! loop calls [`rescue`] before it consumes again. It reads the heads of the consumer's queues
//! with [`HeadReader`], which receives frames of any size and hands back properties it cannot
//! parse as the reason why, at most a prefetch's worth each (the message was among the
//! deliveries the closed connection held, which went back to the head). A message whose
//! properties do not fit the frame, or cannot be read, is copied to the DLQ, body byte for byte,
//! with the `x-dlq-*` headers saying why and without the sender's headers (the reason names
//! them), and acked once the broker has confirmed the copy. The others are given back
//! untouched, in their order, when the reader's connection closes.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::protocol::{AMQPErrorKind, AMQPHardError};
use lapin::types::ShortString;
use tracing::{error, info, warn};

use crate::amqp::head_reader::{Got, HeadReader};
use crate::amqp::headers;
use crate::amqp::nodes::BrokerNodes;
use crate::amqp::topology::Topology;
use crate::amqp::{Publisher, close_connection, connect_once};
use saga_domain::dlq::DlqHeaders;
use saga_domain::events::unix_now_secs;

/// How long one step of a rescue (connect, get, publish) may take before it is given up; the
/// consumer's next session tries again.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a rescue needs to know of the consumer it works for.
pub struct Rescue<'a> {
    /// The broker (`RABBITMQ_URL`: one node or a list).
    pub url: &'a str,
    /// The service, for connection names and the DLQ copy's `x-dlq-service`.
    pub service: &'a str,
    /// The consumer's work queue (its retry queue's way back is looked at too).
    pub queue: &'a str,
    /// The consumer's prefetch: how deep into each queue the message can be.
    pub prefetch: u16,
    pub dlq_queue: &'a str,
}

/// Did this session end on a message lapin cannot receive: a frame larger than the connection
/// agreed, or properties it cannot parse?
pub fn is_unreceivable(cause: &anyhow::Error) -> bool {
    cause.chain().any(|e| {
        e.downcast_ref::<lapin::Error>()
            .is_some_and(|e| match e.kind() {
                lapin::ErrorKind::ProtocolError(amqp) => {
                    *amqp.kind() == AMQPErrorKind::Hard(AMQPHardError::FRAMEERROR)
                }
                lapin::ErrorKind::ParsingError(_) => true,
                _ => false,
            })
    }) || {
        let text = format!("{cause:#}");
        text.contains("frame too large") || text.contains("parsing error")
    }
}

/// Take every message at the heads of the consumer's queues (its work queue and its retry
/// queue's way back) that is too large for a `frame_max` frame, or whose properties cannot be
/// read, into the DLQ. Returns how many it moved.
///
/// # Errors
/// The broker could not be reached, or refused a step; nothing is lost (a message is acked
/// only after its DLQ copy is confirmed) and the next session tries again.
pub async fn rescue(settings: &Rescue<'_>, frame_max: u32) -> anyhow::Result<usize> {
    let limit = usize::try_from(frame_max).unwrap_or(usize::MAX);
    let mut reader = open_reader(settings.url, settings.service).await?;
    let conn = connect_once(settings.url, &format!("{}-rescue", settings.service)).await?;
    let publisher = Publisher::open(&conn).await?;
    let mut moved = 0;
    let mut outcome = Ok(());
    for queue in [
        settings.queue.to_owned(),
        Topology::retry_due_queue(settings.queue),
    ] {
        match rescue_queue(settings, &mut reader, &publisher, &queue, limit).await {
            Ok(n) => moved += n,
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    close_connection(&conn, 200, "rescue done").await;
    // Closing gives back, in their order, the messages that fitted.
    let _ = tokio::time::timeout(STEP_TIMEOUT, reader.close()).await;
    outcome.map(|()| moved)
}

/// One queue: read up to a prefetch's worth of its head, move the ones that cannot be received.
async fn rescue_queue(
    settings: &Rescue<'_>,
    reader: &mut HeadReader,
    publisher: &Publisher,
    queue: &str,
    limit: usize,
) -> anyhow::Result<usize> {
    let mut moved = 0;
    for _ in 0..=settings.prefetch {
        let Some(got) = step(reader.get(queue)).await? else {
            break;
        };
        let Some(why) = unreceivable(&got, limit) else {
            continue;
        };
        let order = saga_domain::wire::peek_order_id(&got.body).unwrap_or_else(|| "?".to_owned());
        let (copy, reason) = dlq_copy(settings, queue, &got, &why);
        step(publisher.publish("", settings.dlq_queue, &got.body, copy)).await?;
        step(reader.ack(got.delivery_tag)).await?;
        metrics::counter!("saga_dlq_total", "queue" => settings.queue.to_owned()).increment(1);
        error!(queue, dlq = %settings.dlq_queue, reason = %reason,
               "Message for order {order} could not be received: routed to DLQ");
        moved += 1;
    }
    Ok(moved)
}

/// Why a consumer with this frame limit cannot receive the message, if it cannot.
fn unreceivable(got: &Got, limit: usize) -> Option<String> {
    match &got.properties {
        Err(parse) => Some(format!(
            "unreadable properties: {} (the AMQP client refuses them)",
            headers::truncate(parse, 200)
        )),
        Ok(_) if got.header_frame_bytes > limit => Some(format!(
            "too large to receive: its properties take {} bytes with what the broker added \
             (x-death, x-delivery-count), over the {limit}-byte frame its consumers agreed",
            got.header_frame_bytes
        )),
        Ok(_) => None,
    }
}

/// The DLQ copy's properties: the sender's, less its headers, `expiration` and `user_id` (see
/// the consume loop's copies), with ours saying why. And the reason as written.
fn dlq_copy(settings: &Rescue<'_>, queue: &str, got: &Got, why: &str) -> (BasicProperties, String) {
    let sent = got.properties.as_ref().ok();
    let mut dropped: Vec<String> = sent
        .and_then(|p| p.headers().as_ref())
        .map(|h| h.inner().keys().map(ToString::to_string).collect())
        .unwrap_or_default();
    dropped.sort();
    let reason = if dropped.is_empty() {
        why.to_owned()
    } else {
        headers::with_dropped_note(why, &dropped)
    };
    let mut table = lapin::types::FieldTable::default();
    for (name, value) in headers::dlq_headers(&DlqHeaders {
        reason: reason.clone(),
        service: Some(settings.service.to_owned()),
        exchange: Some(got.exchange.clone()),
        routing_key: Some(got.routing_key.clone()),
        queue: Some(queue.to_owned()),
        at: Some(unix_now_secs()),
        attempts: None,
    }) {
        table.insert(name.into(), value);
    }
    let mut copy = BasicProperties::default()
        .with_headers(table)
        .with_delivery_mode(2);
    let Some(p) = sent else {
        return (copy, reason);
    };
    let short = |s: &ShortString| ShortString::try_new(headers::truncate(s.as_str(), 255)).ok();
    if let Some(v) = p.content_type().as_ref().and_then(short) {
        copy = copy.with_content_type(v);
    }
    if let Some(v) = p.content_encoding().as_ref().and_then(short) {
        copy = copy.with_content_encoding(v);
    }
    if let Some(v) = p.correlation_id().as_ref().and_then(short) {
        copy = copy.with_correlation_id(v);
    }
    if let Some(v) = p.reply_to().as_ref().and_then(short) {
        copy = copy.with_reply_to(v);
    }
    if let Some(v) = p.message_id().as_ref().and_then(short) {
        copy = copy.with_message_id(v);
    }
    if let Some(v) = p.kind().as_ref().and_then(short) {
        copy = copy.with_type(v);
    }
    if let Some(v) = p.app_id().as_ref().and_then(short) {
        copy = copy.with_app_id(v);
    }
    if let Some(v) = p.cluster_id().as_ref().and_then(short) {
        copy = copy.with_cluster_id(v);
    }
    if let Some(v) = *p.priority() {
        copy = copy.with_priority(v);
    }
    if let Some(v) = *p.timestamp() {
        copy = copy.with_timestamp(v);
    }
    (copy, reason)
}

/// A head reader on the first node of `url` that answers.
async fn open_reader(url: &str, service: &str) -> anyhow::Result<HeadReader> {
    let nodes = BrokerNodes::parse(url).map_err(|e| anyhow::anyhow!(e))?;
    let mut failures = Vec::new();
    for node in nodes.in_turn() {
        match step(HeadReader::open(
            &node.uri,
            &format!("{service}-rescue-reader"),
        ))
        .await
        {
            Ok(reader) => return Ok(reader),
            Err(e) => failures.push(format!("{}: {e}", node.shown)),
        }
    }
    anyhow::bail!("no node answered the rescue: {}", failures.join("; "))
}

/// Run one step of a rescue, given up after [`STEP_TIMEOUT`].
async fn step<T, E>(work: impl Future<Output = Result<T, E>>) -> anyhow::Result<T>
where
    E: std::fmt::Display,
{
    match tokio::time::timeout(STEP_TIMEOUT, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(anyhow::anyhow!("{e:#}")),
        Err(_) => Err(anyhow::anyhow!(
            "no answer within {} s",
            STEP_TIMEOUT.as_secs()
        )),
    }
}

/// Log a rescue's outcome: the consumer goes on either way.
pub fn report(queue: &str, outcome: &anyhow::Result<usize>) {
    match outcome {
        Ok(0) => info!(
            queue,
            "rescue of an unreceivable message: nothing of the kind at the heads"
        ),
        Ok(moved) => info!(
            queue,
            moved, "rescue of an unreceivable message: moved to the DLQ"
        ),
        Err(e) => warn!(queue, cause = %format!("{e:#}"),
                        "rescue of an unreceivable message failed; the next session tries again"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_error_is_told_from_other_losses() {
        let frame = anyhow::anyhow!("AMQP hard error: FRAME-ERROR: frame too large: 131293 bytes")
            .context("consumer failed");
        assert!(is_unreceivable(&frame));
        let reset = anyhow::anyhow!("connection reset by peer").context("consumer failed");
        assert!(!is_unreceivable(&reset));
    }
}
