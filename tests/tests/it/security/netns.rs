//! A client off the machine, made on the machine: a network namespace with a veth pair.
//!
//! The namespace holds one end (`10.203.X.(Y+2)/30`), the host the other (`10.203.X.(Y+1)`): a
//! program run inside the namespace (`ip netns exec`) reaches the host's end with a source
//! address that is not loopback, which is all a "remote" caller is to a service. Traffic goes
//! only to that private /30, never to the machine's own network address. The namespace and its
//! link are deleted when the value is dropped, whatever the test's verdict.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, bail};

pub struct NetNs {
    name: String,
    host_link: String,
    /// The host's end: where a service the namespace should reach listens.
    pub host: Ipv4Addr,
    /// The namespace's own address: the "remote" peer a service sees.
    pub peer: Ipv4Addr,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl NetNs {
    /// A fresh namespace on a random private /30 (tests run in parallel: a clash is retried).
    ///
    /// # Errors
    /// Not root, or iproute2 missing.
    pub fn create() -> anyhow::Result<Self> {
        let mut last = None;
        for _ in 0..5 {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let bytes = uuid::Uuid::new_v4().into_bytes();
            let base = bytes[1] & 0xfc;
            let ns = Self {
                name: format!("saga-t-{}", &id[..8]),
                host_link: format!("vh{}", &id[..8]),
                host: Ipv4Addr::new(10, 203, bytes[0], base + 1),
                peer: Ipv4Addr::new(10, 203, bytes[0], base + 2),
            };
            // Linux lets two links hold the same address without a word: look first.
            if subnet_in_use(ns.host)? {
                continue;
            }
            match ns.set_up() {
                Ok(()) => return Ok(ns),
                // Drop removes whatever half of it was made.
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no namespace")))
    }

    fn set_up(&self) -> anyhow::Result<()> {
        let ns_link = format!("vn{}", &self.host_link[2..]);
        let (host, peer) = (format!("{}/30", self.host), format!("{}/30", self.peer));
        ip(&["netns", "add", &self.name])?;
        ip(&[
            "link",
            "add",
            &self.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &ns_link,
        ])?;
        ip(&["link", "set", &ns_link, "netns", &self.name])?;
        ip(&["addr", "add", &host, "dev", &self.host_link])?;
        ip(&["link", "set", &self.host_link, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &self.name, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &peer, "dev", &ns_link])?;
        inside(&["link", "set", &ns_link, "up"])?;
        inside(&["link", "set", "lo", "up"])
    }

    /// One HTTP request from inside the namespace (curl): the status and the body.
    ///
    /// # Errors
    /// curl could not run or reach the address.
    pub async fn http(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        let mut command = tokio::process::Command::new("ip");
        command
            .args(["netns", "exec", &self.name, "curl", "-sS", "-m", "10"])
            .args(["-X", method, "-w", "\n%{http_code}"]);
        for (name, value) in headers {
            command.arg("-H").arg(format!("{name}: {value}"));
        }
        if let Some(body) = body {
            command.args(["-H", "content-type: application/json", "--data", body]);
        }
        let out = command.arg(url).output().await.context("running curl")?;
        anyhow::ensure!(
            out.status.success(),
            "curl {url} from the namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').context("curl printed no status")?;
        Ok((status.trim().parse()?, body.to_owned()))
    }
}

/// Whether any address of the machine is in the /30 of `host`.
fn subnet_in_use(host: Ipv4Addr) -> anyhow::Result<bool> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .context("running ip (iproute2)")?;
    let net = u32::from(host) & !0b11;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|word| word.split_once('/')?.0.parse::<Ipv4Addr>().ok())
        .any(|addr| u32::from(addr) & !0b11 == net))
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the host's end deletes the pair; deleting the namespace the rest.
        let _ = ip(&["link", "del", &self.host_link]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
