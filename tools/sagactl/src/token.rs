//! `sagactl token`: mint an HS256 Bearer token for order-svc's per-user API, signed with the
//! secret order-svc runs with (`AUTH_JWT_SECRET`), and print it, for a class to paste into curl:
//!
//! ```text
//! TOKEN=$(sagactl token --user alice --email alice@example.org)
//! curl -H "Authorization: Bearer $TOKEN" localhost:5001/api/v1/orders
//! ```
//!
//! The claims are the ones order-svc reads ([`saga_domain::owner::Claims`]): `sub`, `email`,
//! `roles: ["staff"]` with `--staff`, `iat` and `exp` (`--ttl` from now). The user id and e-mail
//! are checked as order-svc checks them, so a token it would refuse is never printed.

use std::time::Duration;

use anyhow::Context;
use saga_domain::owner::{Claims, Email, STAFF, UserId};
use saga_platform::service::jwt::{self, AuthArgs};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  TOKEN=$(sagactl token --user alice --email alice@example.org)\n  \
    curl -H \"Authorization: Bearer $TOKEN\" localhost:5001/api/v1/orders\n  \
    sagactl token --user ops --staff --ttl 8h"
)]
pub struct TokenArgs {
    /// The user the token names (claim `sub`): the owner of the orders placed with it.
    #[arg(long)]
    pub user: String,

    /// The user's e-mail (claim `email`). Default: the user id if it is an address, else
    /// <user>@example.org.
    #[arg(long)]
    pub email: Option<String>,

    /// A staff token (claim `roles: ["staff"]`): may mark orders SHIPPED and DELIVERED, and
    /// see everyone's.
    #[arg(long)]
    pub staff: bool,

    /// How long the token is valid: 1h, 30m, 8h (1s to 30days).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,

    #[command(flatten)]
    pub auth: AuthArgs,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a duration such as 1h or 30m"))?;
    if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(30 * 24 * 3600) {
        return Err(format!("{s} is out of range: use 1s to 30days"));
    }
    Ok(ttl)
}

/// The claims `args` ask for, checked as order-svc will check them.
///
/// # Errors
/// A user id or e-mail order-svc would refuse.
pub fn claims(args: &TokenArgs) -> anyhow::Result<Claims> {
    let user = UserId::parse(&args.user).context("--user")?;
    let email = match &args.email {
        Some(email) => email.clone(),
        None if Email::parse(user.as_str()).is_ok() => user.to_string(),
        None => format!("{user}@example.org"),
    };
    let email = Email::parse(&email).context("--email")?;
    Ok(Claims {
        sub: Some(user.to_string()),
        email: Some(email.to_string()),
        roles: if args.staff {
            vec![STAFF.to_owned()]
        } else {
            Vec::new()
        },
        exp: jwt::expires_in(args.ttl),
        iat: Some(jwt::expires_in(Duration::ZERO)),
        ..Claims::default()
    })
}

/// Print a token for `args`.
///
/// # Errors
/// No secret (order-svc's own setting, `AUTH_JWT_SECRET`), or claims it would refuse.
pub fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let Some(secret) = args.auth.secret() else {
        anyhow::bail!(
            "no secret to sign with: set {} (the one order-svc runs with) or pass --auth-jwt-secret",
            jwt::SECRET_VAR
        );
    };
    let token = jwt::mint(secret, &claims(args)?).context("cannot sign the token")?;
    outln!("{token}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        token: TokenArgs,
    }

    fn args(argv: &[&str]) -> TokenArgs {
        let mut all = vec!["token"];
        all.extend(argv);
        Cli::try_parse_from(all).unwrap().token
    }

    #[test]
    fn a_token_names_the_user_their_email_and_staff_only_when_asked() {
        let secret = "s".repeat(jwt::MIN_SECRET_LEN);
        let alice = args(&["--user", "alice", "--auth-jwt-secret", &secret]);
        let claims = claims(&alice).unwrap();
        assert_eq!(claims.sub.as_deref(), Some("alice"));
        assert_eq!(claims.email.as_deref(), Some("alice@example.org"));
        assert!(claims.roles.is_empty());
        let secret = jwt::JwtSecret::parse(&secret).unwrap();
        let token = jwt::mint(&secret, &claims).unwrap();
        assert_eq!(jwt::verify(&secret, &token).unwrap(), claims);

        let ops = args(&["--user", "ops@shop.io", "--staff", "--ttl", "8h"]);
        let claims = super::claims(&ops).unwrap();
        assert_eq!(claims.email.as_deref(), Some("ops@shop.io"));
        assert_eq!(claims.roles, [STAFF]);
        assert!(super::claims(&args(&["--user", "a:b"])).is_err());
        assert!(run(&args(&["--user", "alice"])).is_err(), "no secret");
    }
}
