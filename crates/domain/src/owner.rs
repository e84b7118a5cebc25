//! Who owns an order, and who may do what to it: the per-user API (`/api/v1/orders`, opt-in
//! with `AUTH_JWT_SECRET`).
//!
//! A caller is known by the claims of an HS256 Bearer token ([`Claims`]: the wire shape, which
//! `sagactl token` writes and order-svc reads). [`Caller::try_from`] turns them into a
//! [`Caller`]: the [`Owner`] the orders it places are stored with, and whether it is staff. The
//! rules are here, once, as plain functions:
//!
//! - a caller sees and cancels its own orders ([`Caller::may_see`]); someone else's order does
//!   not exist for it (404, never 403: a 403 would tell that the id is real);
//! - staff see every order, and only staff move an order on to SHIPPED or DELIVERED
//!   ([`Caller::may_request`]): the shop ships, not the customer.
//!
//! The staff claim is `roles: ["staff"]` (a list, so that other roles can be added without a
//! new claim); `role: "staff"` is not read.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::Invalid;
use crate::order::{OrderEvent, OrderStatus};

/// Longest user id we accept, in bytes: room for a UUID, an e-mail used as `sub`, or an
/// identity provider's `provider|id`.
pub const MAX_USER_ID_LEN: usize = 128;
/// Longest e-mail address we accept, in bytes (RFC 5321's limit for a path).
pub const MAX_EMAIL_LEN: usize = 254;
/// The role that may ship and deliver orders and see everyone's.
pub const STAFF: &str = "staff";

/// A user's id, from a token's `sub` or `user_id`: visible ASCII, never `:`, because it names a
/// Redis key (`{prefix}:orders:owner:{user_id}`, the user's orders) and `:` separates a key's parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    /// # Errors
    /// Empty, longer than [`MAX_USER_ID_LEN`], or a character that is not visible ASCII or is `:`.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid("user id must not be empty".into()));
        }
        if raw.len() > MAX_USER_ID_LEN {
            return Err(Invalid(format!(
                "user id longer than {MAX_USER_ID_LEN} bytes"
            )));
        }
        if let Some(bad) = raw.chars().find(|c| !c.is_ascii_graphic() || *c == ':') {
            return Err(Invalid(format!("user id contains {bad:?}")));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An e-mail address, as far as a notification needs: `local@domain`, no spaces or control
/// characters, at most [`MAX_EMAIL_LEN`] bytes. Whether it receives mail is not ours to know.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// # Errors
    /// Not `something@something`, too long, or with whitespace or control characters.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.len() > MAX_EMAIL_LEN {
            return Err(Invalid(format!("email longer than {MAX_EMAIL_LEN} bytes")));
        }
        if let Some(bad) = raw.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(Invalid(format!("email contains {bad:?}")));
        }
        match raw.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                Ok(Self(raw.to_owned()))
            }
            _ => Err(Invalid("email must look like name@domain".into())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! text_serde {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        /// Read through `parse`, so a record read back is as valid as the one written.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
text_serde!(UserId, Email);

/// Whose order it is: stored with an order placed through the per-user API, shown with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Owner {
    pub user_id: UserId,
    pub email: Email,
}

/// A token's claims, as `sagactl token` writes them and order-svc reads them. Registered claims
/// (`exp`, `iat`) are checked by the JWT library; the others are ours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id (the standard claim); `user_id` is read too, for the seed's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `["staff"]` for the shop's people; empty for a customer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Expires at, seconds since the Unix epoch (required: a token without it is refused).
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Who is asking, once their token has been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub owner: Owner,
    pub staff: bool,
}

impl TryFrom<Claims> for Caller {
    type Error = Invalid;

    /// # Errors
    /// No user id (`sub` or `user_id`), `sub` and `user_id` naming two users, no `email`, or
    /// either not a valid value.
    fn try_from(claims: Claims) -> Result<Self, Invalid> {
        let user_id = match (claims.sub, claims.user_id) {
            (Some(sub), Some(user_id)) if sub != user_id => {
                return Err(Invalid(
                    "the token's sub and user_id name two different users".into(),
                ));
            }
            (Some(id), _) | (None, Some(id)) => UserId::parse(&id)?,
            (None, None) => {
                return Err(Invalid(
                    "the token names no user (claim sub or user_id)".into(),
                ));
            }
        };
        let email = claims
            .email
            .ok_or_else(|| Invalid("the token has no email claim".into()))?;
        Ok(Self {
            owner: Owner {
                user_id,
                email: Email::parse(&email)?,
            },
            staff: claims.roles.iter().any(|role| role == STAFF),
        })
    }
}

impl Caller {
    /// Whether this caller may see (read, cancel, change) an order owned by `owner` (`None`: an
    /// order placed without a token, through the lab's routes). Staff see every order.
    pub fn may_see(&self, owner: Option<&UserId>) -> bool {
        self.staff || owner == Some(&self.owner.user_id)
    }

    /// Whether this caller may ask for `target` (`PATCH .../status`): anyone may cancel what they
    /// see; shipping and delivering are the shop's, so staff only.
    pub fn may_request(&self, target: OrderStatus) -> bool {
        match OrderStatus::requested(target) {
            Some(OrderEvent::MarkedShipped | OrderEvent::MarkedDelivered) => self.staff,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: Option<&str>, user_id: Option<&str>, email: Option<&str>) -> Claims {
        Claims {
            sub: sub.map(str::to_owned),
            user_id: user_id.map(str::to_owned),
            email: email.map(str::to_owned),
            exp: 1,
            ..Claims::default()
        }
    }

    #[test]
    fn a_caller_is_named_by_sub_or_user_id_and_has_an_email() {
        let a = Caller::try_from(claims(Some("alice"), None, Some("a@x.io"))).unwrap();
        assert_eq!(a.owner.user_id.as_str(), "alice");
        assert!(!a.staff);
        let b = Caller::try_from(claims(None, Some("bob"), Some("b@x.io"))).unwrap();
        assert_eq!(b.owner.user_id.as_str(), "bob");
        let same = Caller::try_from(claims(Some("c"), Some("c"), Some("c@x.io")));
        assert!(same.is_ok());

        let err = |c: Claims| Caller::try_from(c).unwrap_err().0;
        assert!(err(claims(None, None, Some("a@x.io"))).contains("names no user"));
        assert!(err(claims(Some("a"), Some("b"), Some("a@x.io"))).contains("two different"));
        assert!(err(claims(Some("a"), None, None)).contains("no email"));
        assert!(err(claims(Some("a:b"), None, Some("a@x.io"))).contains("':'"));
        assert!(err(claims(Some("a"), None, Some("not-an-email"))).contains("name@domain"));
    }

    #[test]
    fn staff_is_the_staff_role_and_only_staff_ship_or_deliver() {
        let mut staff = claims(Some("s"), None, Some("s@shop.io"));
        staff.roles = vec!["reader".into(), STAFF.into()];
        let staff = Caller::try_from(staff).unwrap();
        let customer = Caller::try_from(claims(Some("c"), None, Some("c@x.io"))).unwrap();
        assert!(staff.staff);
        for status in [OrderStatus::Shipped, OrderStatus::Delivered] {
            assert!(staff.may_request(status));
            assert!(!customer.may_request(status), "{status}");
        }
        assert!(customer.may_request(OrderStatus::Cancelled));
    }

    #[test]
    fn an_order_is_seen_by_its_owner_and_staff_only() {
        let alice = Caller::try_from(claims(Some("alice"), None, Some("a@x.io"))).unwrap();
        let bob = UserId::parse("bob").unwrap();
        assert!(alice.may_see(Some(&alice.owner.user_id)));
        assert!(!alice.may_see(Some(&bob)));
        assert!(!alice.may_see(None), "a lab order has no owner to be");
        let staff = Caller {
            staff: true,
            ..alice
        };
        assert!(staff.may_see(Some(&bob)) && staff.may_see(None));
    }

    #[test]
    fn values_are_bounded() {
        assert!(UserId::parse(&"u".repeat(MAX_USER_ID_LEN)).is_ok());
        assert!(UserId::parse(&"u".repeat(MAX_USER_ID_LEN + 1)).is_err());
        assert!(UserId::parse("auth0|5f7c").is_ok());
        assert!(UserId::parse("has space").is_err());
        assert!(Email::parse("a b@x.io").is_err());
        assert!(Email::parse("@x.io").is_err());
        assert!(Email::parse(&format!("{}@x.io", "a".repeat(MAX_EMAIL_LEN))).is_err());
    }
}
