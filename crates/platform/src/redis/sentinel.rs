//! `REDIS_URL` in its Sentinel form: `redis+sentinel://[user:password@]h1:p1,h2:p2,h3:p3/<master>`.
//!
//! The hosts are the Sentinels (port 26379 when left out), the path is the name they monitor the
//! master under (optionally followed by `/<db>`). The credentials, if any, are the master's and
//! the replicas' (Sentinels themselves are asked without a password). This module only reads the
//! URL; asking the Sentinels for the master is [`crate::redis::client`]'s job.

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

pub const SCHEME: &str = "redis+sentinel://";
const DEFAULT_PORT: u16 = 26379;

/// A parsed Sentinel URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
}

/// Whether `url` is in the Sentinel form (then [`SentinelUrl::parse`] reads it).
pub fn is_sentinel(url: &str) -> bool {
    url.get(..SCHEME.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
}

impl SentinelUrl {
    /// # Errors
    /// A sentence saying what is wrong, for a one-line start-up error.
    pub fn parse(url: &str) -> Result<Self, String> {
        if !is_sentinel(url) {
            return Err(format!("does not start with {SCHEME}"));
        }
        let rest = &url[SCHEME.len()..];
        if rest.contains(['?', '#']) {
            return Err("takes no query string or fragment".into());
        }
        let (authority, path) = rest
            .split_once('/')
            .ok_or("names no master: add /<master-name> after the Sentinels")?;
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let sentinels = hosts
            .split(',')
            .enumerate()
            .map(|(i, host)| parse_host(host).map_err(|e| format!("Sentinel {}: {e}", i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        let (master, db) = match path.split_once('/') {
            Some((master, db)) => (
                master,
                db.parse::<i64>()
                    .ok()
                    .filter(|db| (0..=15).contains(db))
                    .ok_or_else(|| format!("database {db:?} is not a number from 0 to 15"))?,
            ),
            None => (path, 0),
        };
        let name_ok = !master.is_empty()
            && master
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(format!(
                "master name {master:?}: use letters, digits, -, _ and . (e.g. /saga)"
            ));
        }
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (
                    Some(user.to_owned()).filter(|u| !u.is_empty()),
                    Some(password.to_owned()),
                ),
                None => (Some(info.to_owned()), None),
            },
        };
        Ok(Self {
            sentinels,
            master: master.to_owned(),
            username,
            password,
            db,
        })
    }

    /// A client that asks these Sentinels for the master (and checks, by `ROLE`, that the node
    /// they name really is one).
    ///
    /// # Errors
    /// Only an unusable address, which [`Self::parse`] has already ruled out.
    pub fn client(&self) -> redis::RedisResult<SentinelClient> {
        let sentinels: Vec<ConnectionInfo> = self
            .sentinels
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port).into_connection_info())
            .collect::<Result<_, _>>()?;
        let mut node = RedisConnectionInfo::default().set_db(self.db);
        if let Some(user) = &self.username {
            node = node.set_username(user);
        }
        if let Some(password) = &self.password {
            node = node.set_password(password);
        }
        SentinelClient::build(
            sentinels,
            self.master.clone(),
            Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(node)),
            SentinelServerType::Master,
        )
    }
}

fn parse_host(host: &str) -> Result<(String, u16), String> {
    let host = host.trim();
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (
            name,
            port.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port {port:?} is not a number from 1 to 65535"))?,
        ),
        None => (host, DEFAULT_PORT),
    };
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains(['@', '/']) {
        return Err(format!("{host:?} is not host:port"));
    }
    Ok((name.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cluster_profile_url() {
        let url =
            SentinelUrl::parse("redis+sentinel://127.0.0.1:26381,127.0.0.1:26382,h3/saga").unwrap();
        assert_eq!(
            url.sentinels,
            [
                ("127.0.0.1".to_owned(), 26381),
                ("127.0.0.1".to_owned(), 26382),
                ("h3".to_owned(), 26379)
            ]
        );
        assert_eq!(url.master, "saga");
        assert!(url.client().is_ok());
        assert_eq!((url.username, url.password, url.db), (None, None, 0));
    }

    #[test]
    fn reads_credentials_and_a_database() {
        let url = SentinelUrl::parse("redis+sentinel://app:s3cret@h1:1,h2:2/orders/3").unwrap();
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!(url.password.as_deref(), Some("s3cret"));
        assert_eq!((url.master.as_str(), url.db), ("orders", 3));
        let url = SentinelUrl::parse("redis+sentinel://:pw@h1/m").unwrap();
        assert_eq!((url.username, url.password.as_deref()), (None, Some("pw")));
    }

    #[test]
    fn says_what_is_wrong() {
        let err = |u: &str| SentinelUrl::parse(u).unwrap_err();
        assert!(err("redis+sentinel://h1:26379").contains("names no master"));
        assert!(err("redis+sentinel://h1:26379/").contains("master name"));
        assert!(err("redis+sentinel://h1:x,h2:2/m").contains("Sentinel 1: port"));
        assert!(err("redis+sentinel://h1:1,,h2:2/m").contains("Sentinel 2"));
        assert!(err("redis+sentinel://h1:1/m/99").contains("database"));
        assert!(err("redis+sentinel://h1:1/m?x=1").contains("query"));
        assert!(err("redis://h1/m").contains("does not start"));
        assert!(is_sentinel("REDIS+SENTINEL://h/m"));
    }
}
