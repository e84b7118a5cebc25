//! URLs fit for a log line or an error message: credentials never appear in logs.
//!
//! Settings carry secrets inside URLs (`amqp://guest:secret@...`, a webhook's `?token=...`), and
//! those URLs are worth logging: "connected to Redis at ...", "node 2 of 3 (...) is wrong". The
//! [`url`] crate finds the parts (where the user info ends, where the query starts, with `@`,
//! `?` or `#` anywhere), and this module blanks the secret ones: the password and every query
//! value become `***`, the fragment is dropped. A URL the parser refuses is hidden whole when it
//! could hold a secret, rather than guessed at.

use url::Url;

/// What stands in for a secret.
const BLANK: &str = "***";

/// A scheme lent to one host of a list (`h2:26380/saga` after a comma) so that it parses as a
/// URL; taken off again after redaction. Not special (unlike `http`), so the parser leaves the
/// text as written: no default port dropped, no `/` added.
const LENT: &str = "redacted://";

/// A URL fit for a log line or an error message: its password and every query value are
/// replaced with `***`, its fragment dropped (a webhook's token often rides in the query).
/// Credentials never appear in logs. A list of URLs (`RABBITMQ_URL` naming several nodes,
/// Sentinel's `host:port,host:port`) has each one redacted.
pub fn redact_url(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

/// Every `scheme://...` in free text redacted as by [`redact_url`] (a URL quoted in an error
/// message ends at a space, a quote or a comma).
pub fn mask_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(separator) = rest.find("://") {
        let scheme_start = rest[..separator]
            .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || "+-.".contains(c))
            .len();
        let after = separator + "://".len();
        let end = rest[after..]
            .find(|c: char| c.is_whitespace() || "'\",".contains(c))
            .map_or(rest.len(), |len| after + len);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&redact_one(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// One URL, or one host of a list, redacted.
fn redact_one(url: &str) -> String {
    let lent = !url.contains("://");
    let parsed = if lent {
        Url::parse(&format!("{LENT}{url}"))
    } else {
        Url::parse(url)
    };
    let Ok(mut parsed) = parsed else {
        return unparsed(url);
    };
    if parsed.password().is_some() {
        // Only a URL without a host refuses a password, and that one has none to blank.
        let _ = parsed.set_password(Some(BLANK));
    }
    let query = parsed.query().map(blank_query_values);
    parsed.set_query(query.as_deref());
    parsed.set_fragment(None);
    let shown = String::from(parsed);
    if lent {
        // The parser keeps a non-special scheme as written, so the lent one comes off whole.
        shown
            .strip_prefix(LENT)
            .map_or_else(|| BLANK.to_owned(), str::to_owned)
    } else {
        shown
    }
}

/// `token=abc&x=1&flag` → `token=***&x=***&***`: the names stay (they say what was there), the
/// values go, and a bare word may itself be a token.
fn blank_query_values(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _value)) => format!("{name}={BLANK}"),
            None => BLANK.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A URL the parser refused (a port that is not a number, a `/` or `#` inside a password): shown
/// as written only if it cannot hold a secret, that is without user info, query or fragment.
fn unparsed(url: &str) -> String {
    if !url.contains(['@', '?', '#']) {
        return url.to_owned();
    }
    match url.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://{BLANK} (not a valid URL)"),
        None => format!("{BLANK} (not a valid URL)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("amqp://guest:secret@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("amqp://a:one@h1/v,amqp://b:two@h2/v"),
            "amqp://a:***@h1/v,amqp://b:***@h2/v"
        );
        assert_eq!(
            redact_url("redis+sentinel://:pw@h1:1,h2:2/saga"),
            "redis+sentinel://:***@h1:1,h2:2/saga"
        );
    }

    #[test]
    fn redacts_query_values_and_fragments_too() {
        assert_eq!(
            redact_url("http://user:secret@hooks.example:8080/path?token=abc&x=1#frag"),
            "http://user:***@hooks.example:8080/path?token=***&x=***"
        );
        assert_eq!(
            redact_url("https://hooks.example/a?flag"),
            "https://hooks.example/a?***"
        );
        // An @ in the query is not the end of a user name.
        assert_eq!(redact_url("http://h/p?mail=a@b"), "http://h/p?mail=***");
        assert_eq!(
            mask_passwords("webhook http://u:pw@h/p?token=t failed"),
            "webhook http://u:***@h/p?token=*** failed"
        );
    }

    #[test]
    fn masks_passwords_quoted_in_error_messages() {
        let clap_says = "error: invalid value 'amqp://guest:s3cret@h1:5672/v,,amqp://g:two@h2/v' for '--rabbitmq-url'";
        let masked = mask_passwords(clap_says);
        assert_eq!(
            masked,
            "error: invalid value 'amqp://guest:***@h1:5672/v,,amqp://g:***@h2/v' for '--rabbitmq-url'"
        );
        assert_eq!(
            mask_passwords("see http://example.org/x and redis://h:1"),
            "see http://example.org/x and redis://h:1"
        );
    }

    /// What the hand-written splitter got wrong: it cut the URL at the first `#`, `?` or `/`
    /// before looking for the user info, and left a list's later hosts alone.
    #[test]
    fn hides_what_a_hand_split_url_leaked() {
        let hidden = |url: &str, secret: &str| {
            let shown = redact_url(url);
            assert!(!shown.contains(secret), "{url} shown as {shown}");
            shown
        };
        // A Sentinel list's later host with a password in its query.
        assert_eq!(
            hidden("redis+sentinel://h1:1,h2:2/saga?password=pw", "pw"),
            "redis+sentinel://h1:1,h2:2/saga?password=***"
        );
        // A password with an unescaped `#`, `?` or `/`: not a valid URL, so hidden whole.
        assert_eq!(
            hidden("amqp://u:p#ss@h/v", "ss"),
            "amqp://*** (not a valid URL)"
        );
        hidden("amqp://u:pa?ss@h/v", "pa");
        hidden("amqp://u:pa/ss@h/v", "pa");
        // An unescaped `@` in a password: the user info ends at the last one.
        assert_eq!(
            hidden("amqp://user:p@ss@host/v", "p@ss"),
            "amqp://user:***@host/v"
        );
        // An escaped one, an IPv6 host, and a scheme in capitals.
        assert_eq!(
            hidden("AMQP://u:p%40ss@[::1]:5672/v", "p%40ss"),
            "amqp://u:***@[::1]:5672/v"
        );
        // In free text too, right after other characters.
        assert_eq!(
            mask_passwords("(at=redis://:pw@h:1/0?password=pw)"),
            "(at=redis://:***@h:1/0?password=***"
        );
    }

    #[test]
    fn leaves_what_holds_no_secret_as_written() {
        assert_eq!(redact_url(""), "");
        assert_eq!(redact_url("nonsense"), "nonsense");
        assert_eq!(
            redact_url("redis+sentinel://h1:1,h2:x/saga"),
            "redis+sentinel://h1:1,h2:x/saga"
        );
        assert_eq!(redact_url("amqp://h:99999/v"), "amqp://h:99999/v");
    }
}
