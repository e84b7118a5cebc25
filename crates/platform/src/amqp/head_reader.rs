//! A reader of a queue's head that receives any message the broker sends: the rescue's client.
//!
//! lapin, like every AMQP client we tried, closes its connection on a frame larger than the
//! connection agreed, and on a content header it cannot parse (a header string that is not
//! UTF-8 where the protocol says short string). The rescue ([`super::oversized`]) must read
//! exactly those messages. So it speaks the handful of AMQP 0-9-1 methods it needs itself, on a
//! plain TCP socket, with the frame codec lapin is built on (amq-protocol): log in, open a
//! channel, `basic.get`, `basic.ack`, close. It reads a frame of any size the broker sends, and a
//! content header it cannot parse comes back as the parse error, beside the body, for the
//! caller to judge. Closing the connection gives every message it read and did not ack back to
//! its queue, in order: that is how the messages that fit are returned untouched.

use std::time::Duration;

use amq_protocol::frame::{AMQPFrame, ProtocolVersion, WriteContext, gen_frame, parse_frame};
use lapin::BasicProperties;
use lapin::protocol::{AMQPClass, basic, channel, connection};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::{AMQPScheme, AMQPUri};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The only channel this reader opens.
const CHANNEL: u16 = 1;
/// Frame types (AMQP 0-9-1 §4.2.3) and the octet that ends every frame.
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;
/// A frame's header: type (1), channel (2), payload size (4).
const FRAME_PREFIX: usize = 7;
/// The largest body the rescue takes in (the broker's own limit is 128 MiB by default in 3.10;
/// a body is read only to be copied, so a far larger claim means the stream is not what we think).
const MAX_BODY: u64 = 512 * 1024 * 1024;

/// One message taken from the head of a queue, not yet acked.
pub struct Got {
    pub delivery_tag: u64,
    pub exchange: String,
    pub routing_key: String,
    /// The size of its content-header frame as it came over the wire: what a consumer's
    /// `frame_max` is judged against.
    pub header_frame_bytes: usize,
    /// Its properties, or why they could not be read.
    pub properties: Result<BasicProperties, String>,
    pub body: Vec<u8>,
}

/// An open connection with one channel, ready to `get` from queues.
pub struct HeadReader {
    stream: BufReader<TcpStream>,
}

impl HeadReader {
    /// Connect to one node and log in (PLAIN), with heartbeats off: the reader lives for a few
    /// `basic.get`s, each bounded by the caller's timeout.
    ///
    /// # Errors
    /// The node did not answer, refused the login or the vhost, or the URL asks for TLS.
    pub async fn open(uri: &AMQPUri, name: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            uri.scheme == AMQPScheme::AMQP,
            "the rescue reads over plain amqp:// only"
        );
        let tcp = TcpStream::connect((uri.authority.host.as_str(), uri.authority.port)).await?;
        let mut reader = Self {
            stream: BufReader::new(tcp),
        };
        reader
            .send(&AMQPFrame::ProtocolHeader(ProtocolVersion::amqp_0_9_1()))
            .await?;
        reader
            .expect("connection.start", |m| {
                matches!(m, AMQPClass::Connection(connection::AMQPMethod::Start(_)))
            })
            .await?;
        let user = &uri.authority.userinfo;
        let mut properties = FieldTable::default();
        properties.insert(
            "connection_name".into(),
            AMQPValue::LongString(name.as_bytes().to_vec().into()),
        );
        let login = format!("\0{}\0{}", user.username, user.password);
        reader
            .method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                    client_properties: properties,
                    mechanism: "PLAIN".into(),
                    response: LongString::from(login.into_bytes()),
                    locale: "en_US".into(),
                })),
            )
            .await?;
        let tune = reader.expect_tune().await?;
        reader
            .method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                    channel_max: tune.channel_max,
                    frame_max: tune.frame_max,
                    heartbeat: 0,
                })),
            )
            .await?;
        reader
            .method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                    virtual_host: short(&uri.vhost)?,
                })),
            )
            .await?;
        reader
            .expect("connection.open-ok", |m| {
                matches!(m, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))
            })
            .await?;
        reader
            .method(
                CHANNEL,
                AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
            )
            .await?;
        reader
            .expect("channel.open-ok", |m| {
                matches!(m, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
            })
            .await?;
        Ok(reader)
    }

    /// Take the message at the head of `queue` (unacked), or `None` when it is empty.
    ///
    /// # Errors
    /// The broker closed the channel (no such queue) or the connection, or sent what is not a
    /// message where one belongs.
    pub async fn get(&mut self, queue: &str) -> anyhow::Result<Option<Got>> {
        self.method(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
                queue: short(queue)?,
                no_ack: false,
            })),
        )
        .await?;
        let ok = match self.next_method().await? {
            AMQPClass::Basic(basic::AMQPMethod::GetOk(ok)) => ok,
            AMQPClass::Basic(basic::AMQPMethod::GetEmpty(_)) => return Ok(None),
            other => anyhow::bail!("expected basic.get-ok, got {}", method_name(&other)),
        };
        let (header_frame_bytes, properties, body_size) = self.read_header().await?;
        anyhow::ensure!(
            body_size <= MAX_BODY,
            "a body of {body_size} bytes announced"
        );
        let mut body = Vec::with_capacity(usize::try_from(body_size)?);
        while (body.len() as u64) < body_size {
            let (kind, payload) = self.read_frame().await?;
            anyhow::ensure!(kind == FRAME_BODY, "expected a body frame, got type {kind}");
            body.extend_from_slice(&payload[FRAME_PREFIX..payload.len() - 1]);
        }
        Ok(Some(Got {
            delivery_tag: ok.delivery_tag,
            exchange: ok.exchange.to_string(),
            routing_key: ok.routing_key.to_string(),
            header_frame_bytes,
            properties,
            body,
        }))
    }

    /// Ack one message this reader took.
    ///
    /// # Errors
    /// The socket failed.
    pub async fn ack(&mut self, delivery_tag: u64) -> anyhow::Result<()> {
        self.method(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag,
                multiple: false,
            })),
        )
        .await
    }

    /// Publish a message whose properties are given as the bytes of its content header, as
    /// they go on the wire, unchecked: what a broken or hostile client can send and no client
    /// library would (a short string that is not UTF-8). The rescue never publishes; the tests use
    /// this to send the messages it must take off a queue.
    ///
    /// # Errors
    /// The socket failed.
    pub async fn publish_raw(
        &mut self,
        exchange: &str,
        routing_key: &str,
        properties: &[u8],
        body: &[u8],
    ) -> anyhow::Result<()> {
        self.method(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: short(exchange)?,
                routing_key: short(routing_key)?,
                mandatory: false,
                immediate: false,
            })),
        )
        .await?;
        // class 60 (basic), weight 0, body size, then the property flags and values as given.
        let mut header = Vec::with_capacity(12 + properties.len());
        header.extend_from_slice(&60u16.to_be_bytes());
        header.extend_from_slice(&0u16.to_be_bytes());
        header.extend_from_slice(&(body.len() as u64).to_be_bytes());
        header.extend_from_slice(properties);
        self.write_frame(FRAME_HEADER, &header).await?;
        self.write_frame(FRAME_BODY, body).await
    }

    /// Close the connection: the broker gives back, in order, what was read and not acked.
    pub async fn close(mut self) {
        let close = AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: "rescue done".into(),
            class_id: 0,
            method_id: 0,
        }));
        if self.method(0, close).await.is_ok() {
            // close-ok, or anything: the socket is dropped either way.
            let _ = tokio::time::timeout(Duration::from_secs(5), self.read_frame()).await;
        }
    }

    /// The content header after a get-ok: its frame's size, its properties (or the parse
    /// error), and the body size it announces.
    async fn read_header(
        &mut self,
    ) -> anyhow::Result<(usize, Result<BasicProperties, String>, u64)> {
        loop {
            let (kind, frame) = self.read_frame().await?;
            match kind {
                FRAME_HEARTBEAT => {}
                FRAME_HEADER => {
                    // class (2), weight (2), body size (8): read by hand, so a header whose
                    // properties do not parse still tells how much body follows.
                    let payload = &frame[FRAME_PREFIX..frame.len() - 1];
                    anyhow::ensure!(
                        payload.len() >= 12,
                        "a content header of {} bytes",
                        payload.len()
                    );
                    let body_size = u64::from_be_bytes(payload[4..12].try_into()?);
                    let properties = match parse_frame(frame.as_slice()) {
                        Ok((_, AMQPFrame::Header(_, header))) => Ok(header.properties),
                        Ok(_) => Err("not a content header".to_owned()),
                        Err(e) => Err(format!("{e}")),
                    };
                    return Ok((frame.len(), properties, body_size));
                }
                other => anyhow::bail!("expected a content header, got frame type {other}"),
            }
        }
    }

    /// The next method on any channel, heartbeats skipped; a close from the broker is an error
    /// that says why.
    async fn next_method(&mut self) -> anyhow::Result<AMQPClass> {
        loop {
            let (kind, frame) = self.read_frame().await?;
            if kind == FRAME_HEARTBEAT {
                continue;
            }
            anyhow::ensure!(
                kind == FRAME_METHOD,
                "expected a method, got frame type {kind}"
            );
            let (_, parsed) = parse_frame(frame.as_slice())
                .map_err(|e| anyhow::anyhow!("unreadable method: {e}"))?;
            let AMQPFrame::Method(_, method) = parsed else {
                anyhow::bail!("expected a method frame");
            };
            match method {
                AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                    anyhow::bail!(
                        "the broker closed the connection: {} {}",
                        c.reply_code,
                        c.reply_text
                    )
                }
                AMQPClass::Channel(channel::AMQPMethod::Close(c)) => {
                    anyhow::bail!(
                        "the broker closed the channel: {} {}",
                        c.reply_code,
                        c.reply_text
                    )
                }
                method => return Ok(method),
            }
        }
    }

    async fn expect(&mut self, what: &str, is: impl Fn(&AMQPClass) -> bool) -> anyhow::Result<()> {
        let method = self.next_method().await?;
        anyhow::ensure!(is(&method), "expected {what}, got {}", method_name(&method));
        Ok(())
    }

    async fn expect_tune(&mut self) -> anyhow::Result<connection::Tune> {
        match self.next_method().await? {
            AMQPClass::Connection(connection::AMQPMethod::Tune(tune)) => Ok(tune),
            other => anyhow::bail!("expected connection.tune, got {}", method_name(&other)),
        }
    }

    /// One whole frame, prefix and end octet included, of any size.
    async fn read_frame(&mut self) -> anyhow::Result<(u8, Vec<u8>)> {
        let mut prefix = [0u8; FRAME_PREFIX];
        self.stream.read_exact(&mut prefix).await?;
        let size = u32::from_be_bytes(prefix[3..7].try_into()?) as usize;
        let mut frame = Vec::with_capacity(FRAME_PREFIX + size + 1);
        frame.extend_from_slice(&prefix);
        frame.resize(FRAME_PREFIX + size + 1, 0);
        self.stream.read_exact(&mut frame[FRAME_PREFIX..]).await?;
        anyhow::ensure!(
            frame[frame.len() - 1] == FRAME_END,
            "a frame without its end octet"
        );
        Ok((prefix[0], frame))
    }

    async fn write_frame(&mut self, kind: u8, payload: &[u8]) -> anyhow::Result<()> {
        let mut frame = Vec::with_capacity(FRAME_PREFIX + payload.len() + 1);
        frame.push(kind);
        frame.extend_from_slice(&CHANNEL.to_be_bytes());
        frame.extend_from_slice(&u32::try_from(payload.len())?.to_be_bytes());
        frame.extend_from_slice(payload);
        frame.push(FRAME_END);
        let socket = self.stream.get_mut();
        socket.write_all(&frame).await?;
        socket.flush().await?;
        Ok(())
    }

    async fn method(&mut self, channel: u16, method: AMQPClass) -> anyhow::Result<()> {
        self.send(&AMQPFrame::Method(channel, method)).await
    }

    async fn send(&mut self, frame: &AMQPFrame) -> anyhow::Result<()> {
        let (bytes, _) = gen_frame(frame)(WriteContext::from(Vec::new()))
            .map_err(|e| anyhow::anyhow!("cannot encode a frame: {e}"))?
            .into_inner();
        let socket = self.stream.get_mut();
        socket.write_all(&bytes).await?;
        socket.flush().await?;
        Ok(())
    }
}

fn short(s: &str) -> anyhow::Result<ShortString> {
    ShortString::try_new(s.to_owned()).map_err(|e| anyhow::anyhow!("{s:?}: {e}"))
}

/// `class.method` ids, for errors.
fn method_name(method: &AMQPClass) -> String {
    format!(
        "method {}.{}",
        method.get_amqp_class_id(),
        method.get_amqp_method_id()
    )
}
