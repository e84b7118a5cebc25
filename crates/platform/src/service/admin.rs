//! Who may call a service's state-changing ops endpoints (inventory-svc's `PUT /stock`, and any
//! endpoint like it): a caller on the same machine, or one that knows the admin token.
//!
//! A caller whose peer address is loopback may (the person at the machine, the lab's curl
//! commands, scripts/). Anyone else must send `Authorization: Bearer <ADMIN_TOKEN>`; without
//! `ADMIN_TOKEN` set, nobody off the machine may. A refusal is a 403 JSON answer given before the
//! request's body is read, and one log line. `/health`, `/ready` and `/metrics` never pass here.
//!
//! Put [`AdminGate::filter`] in front of the route: `warp::put().and(gate.filter()).and(...)`.

use std::net::SocketAddr;
use std::sync::Arc;

use warp::http::StatusCode;
use warp::{Filter, Rejection};

use crate::service::http::ApiError;

/// The admin token, as a flag every service with state-changing ops endpoints flattens in.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AdminArgs {
    /// Token that callers off this machine must send (`Authorization: Bearer ...`) to use the
    /// state-changing ops endpoints (e.g. PUT /stock). Unset: only loopback callers may.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// Loopback callers, and others with the admin token.
#[derive(Clone, Default)]
pub struct AdminGate {
    token: Option<Arc<str>>,
    /// What the gate guards, for the refusal's words (e.g. "changing stock").
    action: &'static str,
}

impl AdminGate {
    /// `token`: what non-loopback callers must send (none or empty: they may not). `action`
    /// says what is refused, e.g. "changing stock".
    pub fn new(args: &AdminArgs, action: &'static str) -> Self {
        Self {
            token: args
                .admin_token
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(Arc::from),
            action,
        }
    }

    /// Passes an allowed request on; refuses any other with 403 JSON.
    pub fn filter(&self) -> impl Filter<Extract = (), Error = Rejection> + Clone + use<> {
        let gate = self.clone();
        warp::addr::remote()
            .and(warp::header::optional::<String>("authorization"))
            .and_then(
                move |peer: Option<SocketAddr>, authorization: Option<String>| {
                    let checked = gate.check(peer, authorization.as_deref());
                    async move { checked.map_err(warp::reject::custom) }
                },
            )
            .untuple_one()
    }

    /// # Errors
    /// 403 for a caller off the machine without the right token.
    pub fn check(
        &self,
        peer: Option<SocketAddr>,
        authorization: Option<&str>,
    ) -> Result<(), ApiError> {
        // An IPv4 peer of a listener on `[::]` arrives as ::ffff:127.0.0.1.
        if peer.is_some_and(|p| p.ip().to_canonical().is_loopback()) {
            return Ok(());
        }
        let from = peer.map_or_else(|| "an unknown address".to_owned(), |p| p.ip().to_string());
        let action = self.action;
        let Some(token) = &self.token else {
            tracing::warn!(%from, "refused {action} from off the machine: no ADMIN_TOKEN is set");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "refused: {action} from {from} needs an admin token, and none is set (set \
                     ADMIN_TOKEN, send Authorization: Bearer <token>); until then only callers \
                     on this machine may"
                ),
            ));
        };
        let sent = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim);
        if sent.is_some_and(|sent| same_secret(sent.as_bytes(), token.as_bytes())) {
            return Ok(());
        }
        tracing::warn!(%from, "refused {action} without the admin token");
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("refused: {action} from {from} needs Authorization: Bearer <ADMIN_TOKEN>"),
        ))
    }
}

/// Compare two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(token: Option<&str>) -> AdminGate {
        let args = AdminArgs {
            admin_token: token.map(str::to_owned),
        };
        AdminGate::new(&args, "changing stock")
    }

    #[test]
    fn loopback_or_the_admin_token() {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        let remote: SocketAddr = "10.203.0.2:40000".parse().unwrap();
        let (none, set) = (gate(None), gate(Some("s3cret")));
        // (gate, peer, Authorization, allowed?)
        let cases = [
            (&none, Some(local), None, true),
            (&none, Some(mapped), None, true),
            (&none, Some(remote), None, false),
            (&none, Some(remote), Some("Bearer s3cret"), false),
            (&none, None, None, false),
            (&set, Some(local), None, true),
            (&set, Some(remote), None, false),
            (&set, Some(remote), Some("Bearer wrong!"), false),
            (&set, Some(remote), Some("s3cret"), false),
            (&set, Some(remote), Some("Bearer s3cret"), true),
        ];
        for (gate, peer, authorization, allowed) in cases {
            let got = gate.check(peer, authorization);
            assert_eq!(got.is_ok(), allowed, "{peer:?} {authorization:?}");
            if let Err(e) = got {
                assert_eq!(e.status, StatusCode::FORBIDDEN);
                assert!(e.message.contains("changing stock"), "{}", e.message);
            }
        }
        assert!(gate(Some("")).token.is_none(), "an empty token is none");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
