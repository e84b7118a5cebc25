//! Who may use the board: the checks every request passes before any route sees it.
//!
//! - **Host allowlist** (every request): a page that reaches the board through DNS rebinding
//!   (an attacker's name that resolves to 127.0.0.1 a moment later) arrives with the attacker's
//!   name in `Host`. Only loopback names (`localhost`, `127.0.0.1`, `[::1]`, any port), the
//!   board's own `--addr` and each `--allow-host` are answered; anything else is a 403.
//! - **Same origin** (every POST): a browser's `Origin` must name the host it asked, so another
//!   site cannot press the board's buttons behind a visitor's back. A POST must also say
//!   `content-type: application/json`, which a cross-site form cannot send without the browser
//!   asking first (CORS).
//! - **Token** (every state-changing POST): with `--token`, the request must carry
//!   `Authorization: Bearer <token>` (the page reads it from its URL's `#token=` fragment,
//!   which the board prints at start and which never travels to a server). Without a token, a
//!   board on a loopback address accepts actions from its own machine only, and a board on any
//!   other address refuses every action: anyone who can reach the page could purge the DLQ.
//! - **No framing** (every answer, see [`FRAMING_HEADERS`]): another site cannot show the page
//!   in a frame and trick a visitor into clicking its buttons.

use std::net::SocketAddr;

use saga_platform::service::admin::same_secret;
use saga_platform::service::http::ApiError;
use warp::http::StatusCode;

/// Sent with every answer: no page may frame the board (clickjacking).
pub const FRAMING_HEADERS: [(&str, &str); 3] = [
    ("content-security-policy", "frame-ancestors 'none'"),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
];

/// The names a request may address the board by, and whether it may change state.
#[derive(Debug, Clone)]
pub struct Access {
    /// Host names (lowercase, without brackets for IPv6), each with the port it must come
    /// with, or any port.
    hosts: Vec<(String, Option<u16>)>,
    token: Option<String>,
    listen: SocketAddr,
}

/// What a state-changing request is allowed, as `/api/state` tells the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionPolicy {
    /// Loopback board without a token: its own machine may act.
    Open,
    /// A token is set: only requests that carry it may act.
    Token,
    /// Non-loopback board without a token: no action at all.
    Refused,
}

impl Access {
    /// The loopback names, the board's own address `listen`, and `allow_hosts` (`name` for any
    /// port, `name:port` for that port only; `[::1]:8080` for an IPv6 address).
    pub fn new(listen: SocketAddr, allow_hosts: &[String], token: Option<String>) -> Self {
        let mut hosts: Vec<(String, Option<u16>)> = ["localhost", "127.0.0.1", "::1"]
            .into_iter()
            .map(|name| (name.to_owned(), None))
            .collect();
        if !listen.ip().is_unspecified() {
            hosts.push((listen.ip().to_string(), Some(listen.port())));
        }
        hosts.extend(allow_hosts.iter().filter_map(|entry| {
            let (name, port) = split_host(entry.trim());
            (!name.is_empty()).then(|| (name.to_ascii_lowercase(), port))
        }));
        Self {
            hosts,
            token: token.filter(|t| !t.is_empty()),
            listen,
        }
    }

    pub fn policy(&self) -> ActionPolicy {
        match (&self.token, self.listen.ip().is_loopback()) {
            (Some(_), _) => ActionPolicy::Token,
            (None, true) => ActionPolicy::Open,
            (None, false) => ActionPolicy::Refused,
        }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Every request: the `Host` it names must be one the board answers to.
    ///
    /// # Errors
    /// 403 for a missing or unknown host, saying how to allow it.
    pub fn check_host(&self, host: Option<&str>) -> Result<(), ApiError> {
        let Some(host) = host else {
            return Err(forbidden("refused: the request names no Host"));
        };
        let (name, port) = split_host(host.trim());
        let name = name.to_ascii_lowercase();
        let known = self
            .hosts
            .iter()
            .any(|(allowed, only)| *allowed == name && only.is_none_or(|p| Some(p) == port));
        if known {
            Ok(())
        } else {
            Err(forbidden(format!(
                "refused: the board does not answer to the host {host:?} (a page on another \
                 site may have been given this address); to reach it by that name, start it \
                 with --allow-host {name}"
            )))
        }
    }

    /// Every state-changing request: allowed by the [`ActionPolicy`] and, with a token, carrying it.
    ///
    /// # Errors
    /// 403 saying what is missing.
    pub fn check_action(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        match self.policy() {
            ActionPolicy::Open => Ok(()),
            ActionPolicy::Refused => Err(forbidden(format!(
                "refused: the board listens on {}, which is not a loopback address, and was \
                 started without a token; anyone who can reach the page could change the \
                 saga. Start it with --token (BOARD_TOKEN) and open the address it prints",
                self.listen
            ))),
            ActionPolicy::Token => {
                let sent = authorization
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .map(str::trim);
                let expected = self.token.as_deref().unwrap_or_default();
                if sent.is_some_and(|sent| same_secret(sent.as_bytes(), expected.as_bytes())) {
                    Ok(())
                } else {
                    Err(forbidden(
                        "refused: this board changes state only for requests with its token \
                         (open the address with #token=... that the board printed at start)",
                    ))
                }
            }
        }
    }
}

/// A browser's `Origin`, if it sent one, must be the host it asked: the same site.
///
/// # Errors
/// 403 for a request from another site.
pub fn check_origin(origin: Option<&str>, host: Option<&str>) -> Result<(), ApiError> {
    let Some(origin) = origin else {
        return Ok(());
    };
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    if host.is_some_and(|host| authority.eq_ignore_ascii_case(host)) {
        Ok(())
    } else {
        Err(forbidden(format!(
            "refused: a request from another site ({origin})"
        )))
    }
}

/// `name` and its port, from `name`, `name:port`, `[v6]` or `[v6]:port` (brackets dropped).
fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((name, tail)) => (name, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        // A bare IPv6 address has colons but no port.
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(listen: &str, allow: &[&str], token: Option<&str>) -> Access {
        let allow: Vec<String> = allow.iter().map(|s| (*s).to_owned()).collect();
        Access::new(listen.parse().unwrap(), &allow, token.map(str::to_owned))
    }

    #[test]
    fn only_loopback_names_the_own_address_and_allowed_hosts_are_answered() {
        let a = access("0.0.0.0:8080", &["board.lab", "10.0.0.5:8080"], None);
        // (Host header, answered?)
        let cases = [
            (Some("localhost:8080"), true),
            (Some("LOCALHOST"), true),
            (Some("127.0.0.1:9999"), true),
            (Some("[::1]:8080"), true),
            (Some("board.lab:1234"), true),
            (Some("10.0.0.5:8080"), true),
            (Some("10.0.0.5:8081"), false),
            (Some("evil.example"), false),
            (Some("evil.example:8080"), false),
            (Some("localhost.evil.example"), false),
            (Some("0.0.0.0:8080"), false),
            (None, false),
        ];
        for (host, answered) in cases {
            let got = a.check_host(host);
            assert_eq!(got.is_ok(), answered, "{host:?}");
            if let Err(e) = got {
                assert_eq!(e.status, StatusCode::FORBIDDEN);
            }
        }
        let own = access("10.1.2.3:8080", &[], None);
        assert!(own.check_host(Some("10.1.2.3:8080")).is_ok());
        assert!(own.check_host(Some("10.1.2.3:80")).is_err());
    }

    #[test]
    fn actions_need_loopback_or_the_token() {
        let open = access("127.0.0.1:8080", &[], None);
        assert_eq!(open.policy(), ActionPolicy::Open);
        assert!(open.check_action(None).is_ok());

        let wide = access("0.0.0.0:8080", &[], None);
        assert_eq!(wide.policy(), ActionPolicy::Refused);
        let refused = wide.check_action(Some("Bearer anything")).unwrap_err();
        assert!(refused.message.contains("not a loopback address"));

        for listen in ["0.0.0.0:8080", "127.0.0.1:8080"] {
            let guarded = access(listen, &[], Some("s3cret"));
            assert_eq!(guarded.policy(), ActionPolicy::Token);
            assert!(guarded.check_action(Some("Bearer s3cret")).is_ok());
            for wrong in [None, Some("Bearer s3cre"), Some("s3cret"), Some("Bearer ")] {
                assert!(guarded.check_action(wrong).is_err(), "{wrong:?}");
            }
        }
        // An empty token is no token.
        assert_eq!(
            access("0.0.0.0:1", &[], Some("")).policy(),
            ActionPolicy::Refused
        );
    }

    #[test]
    fn origin_must_be_the_host_asked() {
        assert!(check_origin(None, Some("127.0.0.1:8080")).is_ok());
        assert!(check_origin(Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080")).is_ok());
        assert!(check_origin(Some("http://evil.example"), Some("127.0.0.1:8080")).is_err());
        assert!(check_origin(Some("http://127.0.0.1:8080"), None).is_err());
    }

    #[test]
    fn hosts_split_into_name_and_port() {
        assert_eq!(split_host("a.b:80"), ("a.b", Some(80)));
        assert_eq!(split_host("a.b"), ("a.b", None));
        assert_eq!(split_host("[::1]:8080"), ("::1", Some(8080)));
        assert_eq!(split_host("[::1]"), ("::1", None));
        assert_eq!(split_host("::1"), ("::1", None));
    }
}
