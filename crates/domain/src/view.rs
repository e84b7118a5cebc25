//! What order-svc's HTTP API answers: an order as order-svc keeps it ([`Order`]), with its
//! timeline and its DLQ hops (`GET /order/{id}`: [`OrderView`]), a page of them (`GET /orders?..`:
//! [`OrderPage`]) and the answer to a place or a cancel ([`OrderAck`]). order-svc serves these
//! types; `sagactl`, the board, the client and the tests read them, so each answer is declared
//! once.

use serde::{Deserialize, Serialize};

use crate::ids::{Item, OrderId};
use crate::order::{DlqHop, HistoryEntry, OrderStatus};

/// An order as stored and as `GET /order/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Order {
    pub order_id: OrderId,
    pub item: Item,
    pub qty: i64,
    pub student_id: Option<String>,
    pub status: OrderStatus,
    /// Why the order failed or was cancelled, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub correlation_id: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: u64,
}

/// An order with its timeline: every transition (or ignored event) and any DLQ hops.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrderView {
    #[serde(flatten)]
    pub order: Order,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    #[serde(default)]
    pub dlq_hops: Vec<DlqHop>,
}

/// The answer to `POST /order` (201) and `POST /order/{id}/cancel` (202): which order, and
/// where it stands now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrderAck {
    pub order_id: String,
    pub status: OrderStatus,
}

/// A page of orders, newest first (`GET /orders?status=&limit=&offset=`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// Orders on this page.
    pub count: usize,
    /// Orders in all (with the status asked for, if any).
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_reads_back_as_it_was_written() {
        let json = r#"{"order_id":"o-1","item":"burger","qty":2,"student_id":null,
            "status":"CONFIRMED","correlation_id":"o-1","created_at":1,"updated_at":2,
            "history":[],"dlq_hops":[]}"#;
        let view: OrderView = serde_json::from_str(json).unwrap();
        assert_eq!(view.order.status, OrderStatus::Confirmed);
        assert_eq!(view.order.order_id.as_str(), "o-1");
        let again: OrderView =
            serde_json::from_value(serde_json::to_value(&view).unwrap()).unwrap();
        assert_eq!(again, view);
    }

    #[test]
    fn a_status_order_svc_never_sends_is_an_error() {
        let answer = r#"{ "order_id": "o1", "status": "LOST" }"#;
        assert!(serde_json::from_str::<OrderAck>(answer).is_err());
    }

    #[test]
    fn an_order_id_that_could_not_have_been_written_is_refused() {
        let json = r#"{"order_id":"o:1","item":"burger","qty":2,"student_id":null,
            "status":"CONFIRMED","correlation_id":"o-1","created_at":1,"updated_at":2}"#;
        let err = serde_json::from_str::<Order>(json).unwrap_err();
        assert!(err.to_string().contains("order_id contains ':'"), "{err}");
    }
}
