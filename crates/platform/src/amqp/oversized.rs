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
//! So when a consumer's connection closes with `FRAME-ERROR`, the loop calls [`rescue`] before
//! it consumes again. It reads the heads of the consumer's queues with amqprs, a second AMQP
//! client that does not limit the frames it receives, at most a prefetch's worth each (the
//! message was among the deliveries the closed connection held, which went back to the head).
//! A message whose properties do not fit the frame is copied to the DLQ, body byte for byte,
//! with the `x-dlq-*` headers saying why and without the sender's headers (the reason names
//! them), and acked once the broker has confirmed the copy. The others are given back
//! untouched, in their order, when the rescue's channel closes.

use std::time::Duration;

use amqprs::channel::{BasicAckArguments, BasicGetArguments, Channel};
use amqprs::connection::{Connection as RescueConnection, OpenConnectionArguments};
use lapin::BasicProperties;
use lapin::protocol::{AMQPErrorKind, AMQPHardError};
use lapin::types::ShortString;
use tracing::{error, info, warn};

use crate::amqp::headers;
use crate::amqp::nodes::BrokerNodes;
use crate::amqp::topology::Topology;
use crate::amqp::{Publisher, close_connection, connect_once};
use saga_domain::dlq::DlqHeaders;
use saga_domain::events::unix_now_secs;

/// The bytes of a content-header frame besides the properties: frame header (7), class id,
/// weight and body size (12), frame end (1).
const HEADER_FRAME_OVERHEAD: usize = 20;

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

/// Did this session end because the broker sent a frame larger than the connection agreed?
pub fn is_frame_too_large(cause: &anyhow::Error) -> bool {
    cause.chain().any(|e| {
        e.downcast_ref::<lapin::Error>().is_some_and(|e| {
            matches!(e.kind(), lapin::ErrorKind::ProtocolError(amqp)
                if *amqp.kind() == AMQPErrorKind::Hard(AMQPHardError::FRAMEERROR))
        })
    }) || format!("{cause:#}").contains("frame too large")
}

/// Take every message too large for a `frame_max` frame off the heads of the consumer's queues
/// (its work queue and its retry queue's way back) into the DLQ. Returns how many it moved.
///
/// # Errors
/// The broker could not be reached by either client, or refused a step; nothing is lost (a
/// message is acked only after its DLQ copy is confirmed) and the next session tries again.
pub async fn rescue(settings: &Rescue<'_>, frame_max: u32) -> anyhow::Result<usize> {
    let limit = usize::try_from(frame_max).unwrap_or(usize::MAX);
    let reader = open_reader(settings.url, settings.service).await?;
    let conn = connect_once(settings.url, &format!("{}-rescue", settings.service)).await?;
    let publisher = Publisher::open(&conn).await?;
    let mut moved = 0;
    let mut outcome = Ok(());
    for queue in [
        settings.queue.to_owned(),
        Topology::retry_due_queue(settings.queue),
    ] {
        match rescue_queue(settings, &reader, &publisher, &queue, limit).await {
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

/// One queue: read up to a prefetch's worth of its head, move the ones that do not fit.
async fn rescue_queue(
    settings: &Rescue<'_>,
    reader: &RescueConnection,
    publisher: &Publisher,
    queue: &str,
    limit: usize,
) -> anyhow::Result<usize> {
    let channel = step(reader.open_channel(None)).await?;
    let mut moved = 0;
    for _ in 0..=settings.prefetch {
        let Some((get, properties, body)) =
            step(channel.basic_get(BasicGetArguments::new(queue))).await?
        else {
            break;
        };
        let size = amqp_serde::to_bytes(&properties)
            .map_or(usize::MAX, |bytes| bytes.len() + HEADER_FRAME_OVERHEAD);
        if size <= limit {
            continue;
        }
        let order = saga_domain::wire::peek_order_id(&body).unwrap_or_else(|| "?".to_owned());
        let (copy, reason) = dlq_copy(
            settings,
            queue,
            get.exchange(),
            get.routing_key(),
            &properties,
            size,
            limit,
        );
        step(publisher.publish("", settings.dlq_queue, &body, copy)).await?;
        ack(&channel, get.delivery_tag()).await?;
        metrics::counter!("saga_dlq_total", "queue" => settings.queue.to_owned()).increment(1);
        error!(queue, dlq = %settings.dlq_queue, reason = %reason,
               "Message for order {order} was too large to receive: routed to DLQ");
        moved += 1;
    }
    let _ = step(channel.close()).await;
    Ok(moved)
}

/// The DLQ copy's properties: the sender's, less its headers, `expiration` and `user_id` (see
/// the consume loop's copies), with ours saying why. And the reason as written.
fn dlq_copy(
    settings: &Rescue<'_>,
    queue: &str,
    exchange: &str,
    routing_key: &str,
    p: &amqprs::BasicProperties,
    size: usize,
    limit: usize,
) -> (BasicProperties, String) {
    let mut dropped: Vec<String> = p
        .headers()
        .map(|h| h.as_ref().keys().map(ToString::to_string).collect())
        .unwrap_or_default();
    dropped.sort();
    let why = format!(
        "too large to receive: its properties take {size} bytes with what the broker added \
         (x-death, x-delivery-count), over the {limit}-byte frame its consumers agreed"
    );
    let reason = if dropped.is_empty() {
        why
    } else {
        headers::with_dropped_note(&why, &dropped)
    };
    let mut table = lapin::types::FieldTable::default();
    for (name, value) in headers::dlq_headers(&DlqHeaders {
        reason: reason.clone(),
        service: Some(settings.service.to_owned()),
        exchange: Some(exchange.to_owned()),
        routing_key: Some(routing_key.to_owned()),
        queue: Some(queue.to_owned()),
        at: Some(unix_now_secs()),
        attempts: None,
    }) {
        table.insert(name.into(), value);
    }
    let short = |s: &String| ShortString::try_new(headers::truncate(s, 255)).ok();
    let mut copy = BasicProperties::default()
        .with_headers(table)
        .with_delivery_mode(2);
    if let Some(v) = p.content_type().and_then(short) {
        copy = copy.with_content_type(v);
    }
    if let Some(v) = p.content_encoding().and_then(short) {
        copy = copy.with_content_encoding(v);
    }
    if let Some(v) = p.correlation_id().and_then(short) {
        copy = copy.with_correlation_id(v);
    }
    if let Some(v) = p.reply_to().and_then(short) {
        copy = copy.with_reply_to(v);
    }
    if let Some(v) = p.message_id().and_then(short) {
        copy = copy.with_message_id(v);
    }
    if let Some(v) = p.message_type().and_then(short) {
        copy = copy.with_type(v);
    }
    if let Some(v) = p.app_id().and_then(short) {
        copy = copy.with_app_id(v);
    }
    if let Some(v) = p.cluster_id().and_then(short) {
        copy = copy.with_cluster_id(v);
    }
    if let Some(v) = p.priority() {
        copy = copy.with_priority(v);
    }
    if let Some(v) = p.timestamp() {
        copy = copy.with_timestamp(v);
    }
    (copy, reason)
}

/// An amqprs connection to the first node of `url` that answers.
async fn open_reader(url: &str, service: &str) -> anyhow::Result<RescueConnection> {
    let nodes = BrokerNodes::parse(url).map_err(|e| anyhow::anyhow!(e))?;
    let mut failures = Vec::new();
    for node in nodes.in_turn() {
        let uri = &node.uri;
        let (user, password) = (
            &uri.authority.userinfo.username,
            &uri.authority.userinfo.password,
        );
        let mut args =
            OpenConnectionArguments::new(&uri.authority.host, uri.authority.port, user, password);
        args.virtual_host(&uri.vhost)
            .connection_name(&format!("{service}-rescue-reader"));
        match step(RescueConnection::open(&args)).await {
            Ok(conn) => return Ok(conn),
            Err(e) => failures.push(format!("{}: {e}", node.shown)),
        }
    }
    anyhow::bail!("no node answered the rescue: {}", failures.join("; "))
}

/// Ack one message the rescue read.
async fn ack(channel: &Channel, tag: u64) -> anyhow::Result<()> {
    step(channel.basic_ack(BasicAckArguments::new(tag, false))).await
}

/// Run one step of a rescue, given up after [`STEP_TIMEOUT`].
async fn step<T, E>(work: impl Future<Output = Result<T, E>>) -> anyhow::Result<T>
where
    E: std::fmt::Display,
{
    match tokio::time::timeout(STEP_TIMEOUT, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(anyhow::anyhow!("{e}")),
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
            "rescue after a frame too large: nothing too large found at the heads"
        ),
        Ok(moved) => info!(
            queue,
            moved, "rescue after a frame too large: moved to the DLQ"
        ),
        Err(e) => warn!(queue, cause = %format!("{e:#}"),
                        "rescue after a frame too large failed; the next session tries again"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_error_is_told_from_other_losses() {
        let frame = anyhow::anyhow!("AMQP hard error: FRAME-ERROR: frame too large: 131293 bytes")
            .context("consumer failed");
        assert!(is_frame_too_large(&frame));
        let reset = anyhow::anyhow!("connection reset by peer").context("consumer failed");
        assert!(!is_frame_too_large(&reset));
    }
}
