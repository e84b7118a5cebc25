//! The per-user API's door (`/api/v1/orders...`): who is asking, from an HS256 Bearer token.
//!
//! Off by default: without `AUTH_JWT_SECRET` every request passes as no one in particular
//! (`None`), and the API behaves as the lab's routes do. With the secret set, every request to
//! `/api/v1/orders...` must carry `Authorization: Bearer <token>`; anything else is answered
//! 401 JSON with `WWW-Authenticate: Bearer` (RFC 6750) before the request's body is read:
//! no header, another scheme, the header twice, a token that is not a JWT, expired, signed with
//! another secret or another algorithm than HS256 (`saga_platform::service::jwt::verify`), or
//! whose claims do not name a user and an e-mail ([`saga_domain::owner::Caller`]).
//!
//! What a caller may then do is the domain's rule ([`Caller::may_see`],
//! [`Caller::may_request`]); the routes apply it (`crate::api`). The lab's routes (`/order`,
//! `/orders`, ...) never pass here: they stay open (docs/SECURITY.md says why).
//!
//! A refusal is one log line with the route and the reason; the token and the secret never
//! reach a log.

use saga_domain::owner::Caller;
use saga_platform::service::http::{count_request, record_route};
use saga_platform::service::jwt::{self, JwtSecret};
use serde_json::json;
use tracing::info;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// The realm a 401 names in `WWW-Authenticate`.
const REALM: &str = "order-svc";
/// Longest `Authorization` value read: far more than any token of ours (a few hundred bytes).
const MAX_AUTHORIZATION: usize = 8 * 1024;

/// The gate: the secret tokens are checked with, or none (auth off).
#[derive(Clone, Default)]
pub struct Auth {
    secret: Option<JwtSecret>,
}

/// A request the gate refused: answered 401 by [`refused`].
#[derive(Debug)]
pub struct Unauthorized {
    route: &'static str,
    /// Why, in words for the client (never the token).
    why: String,
    /// Whether a token was sent (RFC 6750: only then does the challenge say `invalid_token`).
    token_sent: bool,
}

impl warp::reject::Reject for Unauthorized {}

impl Auth {
    pub fn new(secret: Option<JwtSecret>) -> Self {
        Self { secret }
    }

    /// Whether the per-user API requires tokens.
    pub fn is_on(&self) -> bool {
        self.secret.is_some()
    }

    /// Who is asking on `route`: `None` with auth off; with auth on, the token's caller or a
    /// rejection ([`Unauthorized`]) that [`refused`] answers. Put it after the route's path and
    /// method and before its body.
    pub fn caller(
        &self,
        route: &'static str,
    ) -> impl Filter<Extract = (Option<Caller>,), Error = Rejection> + Clone + use<> {
        let auth = self.clone();
        warp::header::headers_cloned().and_then(move |headers: HeaderMap| {
            let checked = auth.authenticate(&headers).map_err(|(why, token_sent)| {
                warp::reject::custom(Unauthorized {
                    route,
                    why,
                    token_sent,
                })
            });
            async move { checked }
        })
    }

    /// The caller the request's `Authorization` header names, or why not (and whether a token
    /// was sent at all).
    fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Caller>, (String, bool)> {
        let Some(secret) = &self.secret else {
            return Ok(None);
        };
        let token = bearer_token(headers).map_err(|why| (why, false))?;
        let claims = jwt::verify(secret, token).map_err(|e| (e.to_string(), true))?;
        Caller::try_from(claims).map(Some).map_err(|e| (e.0, true))
    }
}

/// The token of `Authorization: Bearer <token>`, or why there is none.
fn bearer_token(headers: &HeaderMap) -> Result<&str, String> {
    let mut values = headers.get_all("authorization").iter();
    let Some(value) = values.next() else {
        return Err("this API needs Authorization: Bearer <token> (see `sagactl token`)".into());
    };
    if values.next().is_some() {
        return Err("Authorization sent more than once; send it once".into());
    }
    if value.len() > MAX_AUTHORIZATION {
        return Err(format!(
            "Authorization longer than {MAX_AUTHORIZATION} bytes"
        ));
    }
    let text = value
        .to_str()
        .map_err(|_| "Authorization is not visible ASCII".to_owned())?;
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err("Authorization must be: Bearer <token>".into()),
    }
}

/// The per-user API's recovery: an [`Unauthorized`] becomes its 401 (counted under its route);
/// any other rejection goes on to the service's own recovery.
///
/// # Errors
/// The rejection, when it is not ours.
pub async fn refused(rejection: Rejection) -> Result<Response, Rejection> {
    let Some(refusal) = rejection.find::<Unauthorized>() else {
        return Err(rejection);
    };
    record_route(refusal.route);
    info!(route = refusal.route, why = %refusal.why, "Refused a request without a valid token (401)");
    let response = unauthorized(&refusal.why, refusal.token_sent);
    count_request(refusal.route, response.status());
    Ok(response)
}

/// 401 `{"error": why}` with its `WWW-Authenticate: Bearer` challenge.
fn unauthorized(why: &str, token_sent: bool) -> Response {
    // A quoted-string may not hold `"` or `\`; our reasons have none, but a header must be valid
    // whatever they say.
    let description: String = why
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && c.is_ascii() && !c.is_ascii_control())
        .collect();
    let challenge = if token_sent {
        format!(
            r#"Bearer realm="{REALM}", error="invalid_token", error_description="{description}""#
        )
    } else {
        format!(r#"Bearer realm="{REALM}""#)
    };
    let body = warp::reply::json(&json!({ "error": why }));
    let mut response = warp::reply::with_status(body, StatusCode::UNAUTHORIZED).into_response();
    let value =
        HeaderValue::from_str(&challenge).unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
    response.headers_mut().insert("www-authenticate", value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("authorization", HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn only_one_bearer_header_is_read() {
        assert!(
            bearer_token(&HeaderMap::new())
                .unwrap_err()
                .contains("Bearer <token>")
        );
        assert_eq!(
            bearer_token(&with_authorization(&[b"Bearer abc.def.ghi"])),
            Ok("abc.def.ghi")
        );
        assert_eq!(
            bearer_token(&with_authorization(&[b"bearer  abc"])),
            Ok("abc")
        );
        for bad in [&b"Basic dXNlcjpwdw=="[..], b"Bearer", b"Bearer ", b"abc"] {
            assert!(
                bearer_token(&with_authorization(&[bad])).is_err(),
                "{bad:?}"
            );
        }
        let twice = with_authorization(&[b"Bearer a", b"Bearer b"]);
        assert!(bearer_token(&twice).unwrap_err().contains("more than once"));
        let latin1 = with_authorization(&[b"Bearer caf\xe9"]);
        assert!(bearer_token(&latin1).unwrap_err().contains("ASCII"));
    }

    #[test]
    fn a_refusal_is_401_json_with_a_bearer_challenge() {
        let response = unauthorized("the token has expired", true);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"order-svc\""),
            "{challenge}"
        );
        assert!(challenge.contains("invalid_token"), "{challenge}");
        let missing = unauthorized("no header", false);
        assert_eq!(
            missing.headers()["www-authenticate"],
            "Bearer realm=\"order-svc\""
        );
    }

    #[test]
    fn with_auth_off_nobody_in_particular_passes() {
        assert_eq!(Auth::default().authenticate(&HeaderMap::new()), Ok(None));
    }
}
