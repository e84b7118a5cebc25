//! A network partition between a Redis master and its replicas, made on one machine.
//!
//! `kill -9` of a master on one machine loses nothing that reached its socket: the kernel still
//! delivers what the process had written. What loses acknowledged writes in real life is the
//! master answering while its replicas do not hear it (a partition, a crashed machine), then
//! dying. [`Partition`] is a TCP relay the replicas reach their master through; [`Partition::cut`]
//! stops it carrying bytes either way while every connection stays open, as a dead network
//! link does: the master keeps answering writes, believes its replicas connected (until
//! `min-replicas-max-lag` passes), and the replicas fall behind.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A relay that can be cut; see the module docs.
pub struct Partition {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    closed: CancellationToken,
}

impl Partition {
    /// Relay connections made to [`Self::addr`] to `target`.
    ///
    /// # Errors
    /// No local port to listen on.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, watch_cut) = watch::channel(false);
        let closed = CancellationToken::new();
        let stop = closed.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let (watch_cut, stop) = (watch_cut.clone(), stop.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = carry(client_read, server_write, watch_cut.clone()) => {}
                        _ = carry(server_read, client_write, watch_cut) => {}
                    }
                });
            }
        });
        Ok(Self { addr, cut, closed })
    }

    /// Stop carrying bytes; connections stay open and what is sent waits "in the network".
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// End the partition by closing every relayed connection (and taking no new ones): the
    /// replicas, cut off for good, reconnect to whatever master they are told about.
    pub fn close(&self) {
        self.closed.cancel();
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// Copy one direction until either side closes; while cut, hold what was read (a chunk already
/// read is never forwarded once the cut is on).
async fn carry(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.wait_for(|is_cut| !is_cut).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
