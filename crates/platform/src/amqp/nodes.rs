//! `RABBITMQ_URL` as a list of broker nodes: `amqp://u:p@h1:5672/v,amqp://u:p@h2:5672/v,...`.
//!
//! One URL is a list of one, so the lab's single broker and a cluster are read the same way.
//! Every node is validated at start-up (one readable line naming the node that is wrong), shown
//! with its password masked, and tried in turn from a random starting point
//! ([`BrokerNodes::in_turn`]): connections spread over the cluster, and a dead node costs one
//! refused connect before the next one is tried. Each node gets a 10 s heartbeat unless its URL
//! names one, so a node that hangs (rather than dies) is noticed within about 20 s.

use lapin::uri::AMQPUri;

use crate::service::redact::redact_url;

/// Seconds between heartbeats we ask for: both sides give up on a connection after two missed
/// ones. The broker's default, 60 s, would leave a service talking to a hung node for minutes.
pub const HEARTBEAT_SECS: u16 = 10;
/// The largest AMQP frame we ask the broker for, unless the URL says `?frame_max=`. lapin
/// keeps two buffers of 32 frames per connection, so the broker's default of 128 KiB costs
/// 8 MiB of memory per connection. Our messages are well under 1 KiB (a larger one is simply
/// split across frames), so we ask for the protocol's minimum, 4 KiB: 256 KiB per connection.
pub const FRAME_MAX: u32 = 4 * 1024;
/// More nodes than this in one list is a mistake, not a cluster.
const MAX_NODES: usize = 16;

/// One broker node: where to connect, and how to show it in a log line.
#[derive(Debug, Clone)]
pub struct Node {
    pub uri: AMQPUri,
    /// The node's URL with the password masked.
    pub shown: String,
}

/// The nodes of one broker (or cluster), in the order they were listed.
#[derive(Debug, Clone)]
pub struct BrokerNodes {
    nodes: Vec<Node>,
}

impl BrokerNodes {
    /// Read a comma-separated list of AMQP URLs (a single URL is a list of one).
    ///
    /// # Errors
    /// One sentence naming the node that is wrong and why.
    pub fn parse(list: &str) -> Result<Self, String> {
        let parts: Vec<&str> = list.split(',').map(str::trim).collect();
        if parts.len() > MAX_NODES {
            return Err(format!("{} nodes listed; at most {MAX_NODES}", parts.len()));
        }
        let many = parts.len() > 1;
        let name = |i: usize, url: &str| {
            if many {
                format!("node {} of {} ({})", i + 1, parts.len(), redact_url(url))
            } else {
                redact_url(url)
            }
        };
        let mut nodes: Vec<Node> = Vec::with_capacity(parts.len());
        for (i, url) in parts.iter().enumerate() {
            if url.is_empty() {
                return Err(format!(
                    "node {} of {} is empty (a stray comma?)",
                    i + 1,
                    parts.len()
                ));
            }
            let mut uri: AMQPUri = url
                .parse()
                .map_err(|e| format!("{} is not an AMQP URL ({e})", name(i, url)))?;
            uri.query.frame_max.get_or_insert(FRAME_MAX);
            uri.query.heartbeat.get_or_insert(HEARTBEAT_SECS);
            if let Some(first) = nodes.first() {
                if uri.vhost != first.uri.vhost {
                    return Err(format!(
                        "{} names vhost {:?}, node 1 names {:?}: every node of one cluster \
                         must name the same vhost",
                        name(i, url),
                        uri.vhost,
                        first.uri.vhost
                    ));
                }
                let same = |n: &Node| {
                    n.uri.authority.host == uri.authority.host
                        && n.uri.authority.port == uri.authority.port
                };
                if let Some(j) = nodes.iter().position(same) {
                    return Err(format!("{} repeats node {}", name(i, url), j + 1));
                }
            }
            nodes.push(Node {
                uri,
                shown: redact_url(url),
            });
        }
        Ok(Self { nodes })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The vhost every node names.
    pub fn vhost(&self) -> &str {
        self.nodes.first().map_or("/", |n| n.uri.vhost.as_str())
    }

    /// Every node once, starting at a random one and going round the list from there.
    pub fn in_turn(&self) -> impl Iterator<Item = &Node> {
        self.in_turn_from(crate::service::backoff::random_below(self.nodes.len() as u64) as usize)
    }

    fn in_turn_from(&self, start: usize) -> impl Iterator<Item = &Node> {
        let n = self.nodes.len();
        (0..n).map(move |k| &self.nodes[(start + k) % n])
    }
}

/// Validate `RABBITMQ_URL` for clap: the list as given, or one line saying what is wrong.
///
/// # Errors
/// See [`BrokerNodes::parse`].
pub fn validate(list: &str) -> Result<String, String> {
    BrokerNodes::parse(list).map(|_| list.to_owned()).map_err(|e| {
        format!("{e}; expected amqp://user:password@host:5672/vhost, or several such URLs separated by commas")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = "amqp://guest:guest@127.0.0.1:5681/saga,amqp://guest:guest@127.0.0.1:5682/saga,amqp://guest:guest@127.0.0.1:5683/saga";

    #[test]
    fn one_url_is_a_list_of_one_with_our_defaults() {
        let nodes = BrokerNodes::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes.vhost(), "/");
        let node = nodes.in_turn().next().unwrap();
        assert_eq!(node.uri.query.frame_max, Some(FRAME_MAX));
        assert_eq!(node.uri.query.heartbeat, Some(HEARTBEAT_SECS));
        assert_eq!(node.shown, "amqp://guest:***@127.0.0.1:5672/%2f");
        let own = BrokerNodes::parse("amqp://h:5672/%2f?frame_max=131072&heartbeat=30").unwrap();
        let node = own.in_turn().next().unwrap();
        assert_eq!(node.uri.query.frame_max, Some(131_072));
        assert_eq!(node.uri.query.heartbeat, Some(30));
    }

    #[test]
    fn every_node_is_tried_once_going_round_from_the_start() {
        let nodes = BrokerNodes::parse(THREE).unwrap();
        assert_eq!(nodes.vhost(), "saga");
        let ports = |start| -> Vec<u16> {
            nodes
                .in_turn_from(start)
                .map(|n| n.uri.authority.port)
                .collect()
        };
        assert_eq!(ports(0), [5681, 5682, 5683]);
        assert_eq!(ports(2), [5683, 5681, 5682]);
        let mut seen: Vec<u16> = nodes.in_turn().map(|n| n.uri.authority.port).collect();
        seen.sort_unstable();
        assert_eq!(seen, [5681, 5682, 5683]);
    }

    #[test]
    fn a_bad_list_says_which_node_and_why_without_its_password() {
        let err = |list: &str| BrokerNodes::parse(list).unwrap_err();
        let bad = err("amqp://u:secret@h1:5672/v,http://u:secret@h2/v");
        assert!(bad.starts_with("node 2 of 2 (http://u:***@h2/v)"), "{bad}");
        assert!(!bad.contains("secret"), "{bad}");
        assert!(err("amqp://h1/v,,amqp://h2/v").contains("node 2 of 3 is empty"));
        assert!(err("amqp://h1/a,amqp://h2/b").contains("same vhost"));
        assert!(err("amqp://h1:1/v,amqp://h1:1/v").contains("repeats node 1"));
        assert!(err("nonsense").contains("not an AMQP URL"));
        assert!(validate(THREE).is_ok());
        assert!(validate("x").unwrap_err().contains("separated by commas"));
    }
}
