//! HS256 Bearer tokens for order-svc's per-user API: the shared secret as a setting
//! ([`AuthArgs`], `AUTH_JWT_SECRET`), minting ([`mint`], for `sagactl token`) and verifying
//! ([`verify`], for order-svc). One definition, so that what sagactl writes is what the service
//! reads.
//!
//! **Only HS256.** The [`jsonwebtoken`] crate checks the signature, `exp` and the algorithm;
//! [`verify`] pins the accepted algorithms to HS256 alone, so a token whose header says `none`,
//! `HS512` or `RS256` is refused before its signature is looked at (the classic JWT attacks
//! swap the algorithm: `alg: none` needs no key, and an RS256 public key used as an HMAC secret
//! verifies a forged token). `exp` is required and honoured to the second (no leeway: tokens
//! are minted and checked on machines whose clocks agree).
//!
//! **The secret never shows.** [`JwtSecret`]'s `Debug` prints `***`, its flag hides its value
//! in `--help`, and a refused value is not repeated in the error line
//! ([`crate::service::config::parse_or_exit`]).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use saga_domain::owner::Claims;

/// The variable (and, lower-cased with dashes, the flag) that holds the secret.
pub const SECRET_VAR: &str = "AUTH_JWT_SECRET";
/// The shortest secret we take, in bytes: HS256's key should be at least as long as its hash
/// (RFC 7518, 3.2), and a short one is guessed offline from any token.
pub const MIN_SECRET_LEN: usize = 32;

/// The shared secret tokens are signed with. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSecret(Arc<str>);

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(***)")
    }
}

impl JwtSecret {
    /// A secret of at least [`MIN_SECRET_LEN`] bytes.
    ///
    /// # Errors
    /// Shorter; the message does not repeat it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() < MIN_SECRET_LEN {
            return Err(format!(
                "{SECRET_VAR} must be at least {MIN_SECRET_LEN} bytes (it is {}); make one with \
                 `openssl rand -hex 32`, or leave it empty to turn the per-user API's auth off",
                raw.len()
            ));
        }
        Ok(Self(Arc::from(raw)))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The setting, for order-svc (and `sagactl token`, which signs with the same secret).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AuthArgs {
    /// Shared secret of the HS256 Bearer tokens the per-user API (/api/v1/orders) requires, at
    /// least 32 bytes. Unset or empty: that API works without tokens, orders without owners.
    #[arg(long = "auth-jwt-secret", env = SECRET_VAR, hide_env_values = true,
          value_parser = parse_optional_secret)]
    pub auth_jwt_secret: Option<OptionalSecret>,
}

/// What the flag holds: a secret, or (empty) none. An empty value is how Compose and scripts
/// pass "not set" (`AUTH_JWT_SECRET=${AUTH_JWT_SECRET:-}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionalSecret(pub Option<JwtSecret>);

fn parse_optional_secret(raw: &str) -> Result<OptionalSecret, String> {
    if raw.is_empty() {
        return Ok(OptionalSecret(None));
    }
    JwtSecret::parse(raw).map(|secret| OptionalSecret(Some(secret)))
}

impl AuthArgs {
    /// The secret, if auth is on.
    pub fn secret(&self) -> Option<&JwtSecret> {
        self.auth_jwt_secret.as_ref().and_then(|s| s.0.as_ref())
    }
}

/// Why a token was refused, in words for the 401's `error` (never the token or the secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the token has expired")]
    Expired,
    #[error("the token is signed with {0}; only HS256 is accepted")]
    Algorithm(String),
    #[error("the token's signature does not match")]
    Signature,
    #[error("the token is missing the {0} claim")]
    MissingClaim(String),
    /// Signed by us, but its claims are not what a token of ours holds (e.g. no `exp`).
    #[error("the token's claims cannot be read: {0}")]
    Claims(String),
    #[error("the token is not a JWT (three base64url parts: header.claims.signature)")]
    Malformed,
}

/// `claims` as a token signed with `secret` (HS256).
///
/// # Errors
/// Only if the claims cannot be serialised, which ours always can.
pub fn mint(secret: &JwtSecret, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.bytes())?,
    )
}

/// The claims of `token` if it is an HS256 token signed with `secret`, not expired.
///
/// # Errors
/// [`Refused`]: why not.
pub fn verify(secret: &JwtSecret, token: &str) -> Result<Claims, Refused> {
    // Pinned: a header naming any other algorithm is refused (see the module's docs).
    let mut validation = Validation::new(Algorithm::HS256);
    validation.algorithms = vec![Algorithm::HS256];
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let key = DecodingKey::from_secret(secret.bytes()).map_err(|_| Refused::Signature)?;
    match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::ExpiredSignature => Refused::Expired,
            ErrorKind::InvalidSignature => Refused::Signature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Refused::Algorithm(
                algorithm_named(token).unwrap_or_else(|| "an unknown algorithm".to_owned()),
            ),
            ErrorKind::MissingRequiredClaim(claim) => Refused::MissingClaim(claim.clone()),
            ErrorKind::InvalidClaimFormat(claim) => Refused::MissingClaim(format!(
                "{claim} claim in the right type (a number of seconds)"
            )),
            // A header the library cannot read names an algorithm it does not know (`none`).
            // With HS256, a JSON error comes after the signature was checked: the claims.
            kind => match (algorithm_named(token), kind) {
                (Some(alg), _) if alg != "HS256" => Refused::Algorithm(alg),
                (Some(_), ErrorKind::Json(e)) => Refused::Claims(e.to_string()),
                _ => Refused::Malformed,
            },
        }),
    }
}

/// The `alg` a token's header names, for the refusal's words (`none`, `HS512`, ...), if it
/// names a plausible one. Read without trusting anything else of the token.
fn algorithm_named(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|header| header.get("alg")?.as_str().map(str::to_owned))
        .filter(|alg| alg.len() <= 16 && alg.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Seconds since the Unix epoch, `ttl` from now: a token's `exp`.
pub fn expires_in(ttl: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (now + ttl).as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(fill: char) -> JwtSecret {
        JwtSecret::parse(&fill.to_string().repeat(MIN_SECRET_LEN)).unwrap()
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: Some("alice".into()),
            email: Some("alice@example.org".into()),
            exp,
            ..Claims::default()
        }
    }

    /// A token with `header` as its header, `claims` and a signature of `secret` over them
    /// (HMAC-SHA256 whatever the header says: enough to test that the header is refused).
    fn forged(header: &str, claims: &Claims) -> String {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let honest = mint(&secret('s'), claims).unwrap();
        let signature = honest.rsplit('.').next().unwrap();
        format!(
            "{}.{}.{signature}",
            b64(header.as_bytes()),
            b64(&serde_json::to_vec(claims).unwrap())
        )
    }

    #[test]
    fn a_minted_token_verifies_with_its_secret_only() {
        let claims = claims(expires_in(Duration::from_secs(60)));
        let token = mint(&secret('s'), &claims).unwrap();
        assert_eq!(verify(&secret('s'), &token), Ok(claims));
        assert_eq!(verify(&secret('t'), &token), Err(Refused::Signature));
    }

    #[test]
    fn expired_garbage_and_other_algorithms_are_refused() {
        let past = claims(expires_in(Duration::ZERO) - 10);
        let token = mint(&secret('s'), &past).unwrap();
        assert_eq!(verify(&secret('s'), &token), Err(Refused::Expired));
        assert_eq!(verify(&secret('s'), "garbage"), Err(Refused::Malformed));
        assert_eq!(verify(&secret('s'), "a.b.c"), Err(Refused::Malformed));

        let live = claims(expires_in(Duration::from_secs(60)));
        for alg in ["none", "HS512", "RS256"] {
            let token = forged(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#), &live);
            assert_eq!(
                verify(&secret('s'), &token),
                Err(Refused::Algorithm(alg.into())),
                "{alg}"
            );
        }
        let unsigned = format!(
            "{}.",
            forged(r#"{"alg":"none"}"#, &live)
                .rsplit_once('.')
                .unwrap()
                .0
        );
        assert_eq!(
            verify(&secret('s'), &unsigned),
            Err(Refused::Algorithm("none".into()))
        );
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        let no_exp = serde_json::json!({"sub": "alice", "email": "a@x.io"});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &no_exp,
            &EncodingKey::from_secret(secret('s').bytes()).unwrap(),
        )
        .unwrap();
        let refused = verify(&secret('s'), &token).unwrap_err();
        assert!(
            matches!(&refused, Refused::Claims(why) if why.contains("exp")),
            "{refused:?}"
        );
        // A mistyped exp is no way around it (GHSA-h395-gr6q-cpjc).
        let string_exp = serde_json::json!({"sub": "alice", "email": "a@x.io", "exp": "never"});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &string_exp,
            &EncodingKey::from_secret(secret('s').bytes()).unwrap(),
        )
        .unwrap();
        assert!(verify(&secret('s'), &token).is_err());
    }

    #[test]
    fn the_secret_is_long_enough_and_never_shown() {
        let err = JwtSecret::parse("short-secret").unwrap_err();
        assert!(err.contains("at least 32 bytes") && !err.contains("short-secret"));
        let s = secret('s');
        assert_eq!(format!("{s:?}"), "JwtSecret(***)");
        let args = AuthArgs {
            auth_jwt_secret: Some(OptionalSecret(Some(s))),
        };
        assert!(!format!("{args:?}").contains("sss"));
        assert_eq!(parse_optional_secret(""), Ok(OptionalSecret(None)));
    }
}
