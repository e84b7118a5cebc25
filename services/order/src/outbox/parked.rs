//! Parking: moving an outbox entry that can never be published aside, so the entries behind it
//! flow.
//!
//! The relay publishes the outbox in order. An entry it cannot turn into a message (see
//! [`super::message_of`]), or whose publish panicked, would otherwise stop it there for good:
//! retried at every restart, it fails again. So it is moved, in one MULTI/EXEC, from the outbox
//! to `{prefix}:outbox:parked` with its reason (fields: [`saga_platform::redis::store::parked`]), and a note
//! goes into its order's timeline (`dlq_hops`, where `GET /order/{id}` and `sagactl explain`
//! show it). Nothing is lost: `sagactl outbox list` shows it, `sagactl outbox replay` puts it
//! back once its cause is fixed. Each parking is counted in `saga_outbox_parked_total`.

use saga_domain::events::unix_now_millis;
use saga_domain::ids::OrderId;
use saga_domain::order::DlqHop;
use saga_platform::redis::store::{DLQ_HOPS_KEPT, parked};
use tracing::error;

use super::{RawFields, shown};
use crate::SERVICE;
use crate::orders::OrderStore;

/// Move outbox entry `stream_id` (with its `fields`, byte for byte) to the parked stream,
/// because `why`.
///
/// # Errors
/// Redis unreachable: nothing moved, and the relay tries again after its next read.
pub async fn park(
    store: &OrderStore,
    stream_id: &str,
    fields: &RawFields,
    why: &str,
) -> Result<(), redis::RedisError> {
    let keys = store.keys();
    let now = unix_now_millis();
    let mut entry: Vec<(&[u8], &[u8])> = fields
        .iter()
        .filter(|(k, _)| !parked::ALL.iter().any(|p| p.as_bytes() == k.as_slice()))
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    let at = now.to_string();
    entry.extend([
        (parked::REASON.as_bytes(), why.as_bytes()),
        (parked::AT.as_bytes(), at.as_bytes()),
        (parked::FROM.as_bytes(), stream_id.as_bytes()),
    ]);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .xadd(keys.outbox_parked(), "*", &entry)
        .ignore()
        .xdel(keys.outbox(), &[stream_id])
        .ignore();
    // The order's timeline says so, in the same step; an entry whose order id is not one (a
    // corrupted entry) has no order to tell.
    let order = fields
        .get(b"order_id".as_slice())
        .and_then(|id| std::str::from_utf8(id).ok())
        .and_then(|id| OrderId::parse(id).ok());
    if let Some(order) = &order {
        let hop = DlqHop {
            at: now,
            service: SERVICE.to_owned(),
            routing_key: shown(fields, "routing_key"),
            reason: format!(
                "parked in the outbox, never published: {why}. `sagactl outbox list` shows it, \
                 `sagactl outbox replay` sends it again"
            ),
            redelivered: false,
            attempts: None,
        };
        let hops = keys.order_dlq_hops(order.as_str());
        pipe.rpush(&hops, serde_json::to_string(&hop).unwrap_or_default())
            .ignore()
            .ltrim(&hops, -DLQ_HOPS_KEPT, -1)
            .ignore();
    }
    let () = pipe.query_async(&mut store.redis().clone()).await?;
    metrics::counter!("saga_outbox_parked_total").increment(1);
    let event = shown(fields, "type");
    error!(
        order_id = order.as_ref().map_or("-", OrderId::as_str),
        stream_id,
        event,
        reason = why,
        "Outbox entry parked: it can never be published as it is ({why}); the entries behind it go on"
    );
    Ok(())
}
