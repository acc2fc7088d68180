//! `silverback serve --pubsub`: every WebSocket connection is a pub/sub
//! client of one [`Hub`].
//!
//! - **Raw mode** (no subprotocol): the connection subscribes to the
//!   topics of its URL (`/ws?topic=a&topic=b`; `all` without any), and
//!   every data message it sends is published, unchanged (same opcode,
//!   same bytes), to each of them — the sender gets it too.
//! - **Envelope mode** (subprotocol `pubsub.v1`): JSON requests and
//!   replies, see [`silverback_hub::envelope`].
//!
//! **Pipelined publishes.** A connection has up to [`MAX_IN_FLIGHT`]
//! publications (and [`MAX_IN_FLIGHT_BYTES`] of their data, but always
//! one) in flight (a `FuturesOrdered` in its loop): the next
//! message is read while earlier ones are still in the backplane (with
//! Redis: waiting in, or on the way back from, the shard's pipeline).
//! Each publication is handed to the backplane when it is first polled,
//! and `FuturesOrdered` first-polls in push order, so the backplane gets
//! them in the order they were read (the Redis backplane sends them in
//! that order and never retries one). Their results are taken in that
//! order too: a failure is logged and counted (raw) or answered with
//! `{"op":"error",...}` (envelope); any other envelope request first waits
//! for the publications before it, so replies keep the requests' order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt as _};
use silverback::{CloseCode, Overflow, PreparedMessage, QueueLimits, WebSocket, WsSender};
use silverback_hub::backplane::redis::RedisBackplane;
use silverback_hub::envelope::{self, EnvelopeCodec, EnvelopeError, ErrorCode, Reply, Request};
use silverback_hub::{Codec, HistoryLimits, Hub, HubLimits, SubscribeOptions};
use tokio::io::{AsyncRead, AsyncWrite};

/// The topic of a raw-mode connection whose URL names none.
pub const DEFAULT_TOPIC: &str = "all";

/// Most publications a connection has in flight (see the module docs).
pub const MAX_IN_FLIGHT: usize = 64;

/// Most bytes of data a connection has in flight (one publication may be
/// larger: it is then alone).
pub const MAX_IN_FLIGHT_BYTES: usize = 1 << 20;

/// What `--slow-consumer` chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SlowConsumer {
    /// Drop the oldest queued messages to make room.
    DropOldest,
    /// Drop the new message.
    DropNew,
    /// Close the connection with 1013 "slow consumer" (it reconnects and
    /// recovers from history).
    Close,
}

impl SlowConsumer {
    fn overflow(self) -> Overflow {
        match self {
            Self::DropOldest => Overflow::DropOldest,
            Self::DropNew => Overflow::DropNew,
            Self::Close => silverback_hub::DEFAULT_OVERFLOW,
        }
    }
}

/// The settings of `--pubsub` (from the `serve` flags).
#[derive(Debug, Clone)]
pub struct Settings {
    pub queue: QueueLimits,
    pub slow_consumer: SlowConsumer,
    pub history: usize,
    pub history_age: Option<Duration>,
    pub max_topics: usize,
    pub max_subscriptions: usize,
    pub max_topic_len: usize,
    /// Redis URLs (`--redis`; none: the in-memory backplane).
    pub redis: Vec<String>,
    /// `--node-id`.
    pub node_id: Option<String>,
    /// The WebSocket path (for the log).
    pub path: String,
}

/// The hub and what every connection needs.
pub struct PubSub {
    hub: Hub,
    queue: QueueLimits,
    overflow: Overflow,
    max_topic_len: usize,
    path: String,
    /// One codec for every envelope connection: each publication is
    /// wrapped once for all of them.
    codec: Arc<dyn Codec>,
    /// The Redis backplane, with `--redis`.
    redis: Option<RedisBackplane>,
}

impl PubSub {
    pub fn new(s: &Settings) -> anyhow::Result<Self> {
        let overflow = s.slow_consumer.overflow();
        let redis = if s.redis.is_empty() {
            None
        } else {
            let mut b = RedisBackplane::builder(s.redis.iter().cloned());
            if let Some(id) = &s.node_id {
                b = b.node_id(id.clone());
            }
            let r = b.build()?;
            tracing::info!(
                node = r.node_id(),
                shards = s.redis.len(),
                "pubsub: Redis backplane"
            );
            Some(r)
        };
        let mut builder = Hub::builder();
        if let Some(r) = &redis {
            builder = builder.backplane(r.clone());
        }
        let hub = builder
            .overflow(overflow.clone())
            .history(HistoryLimits::new(s.history, s.history_age))
            .limits(
                HubLimits::default()
                    .max_topics(s.max_topics)
                    .max_topics_per_connection(s.max_subscriptions)
                    .max_topic_len(s.max_topic_len),
            )
            .build()?;
        Ok(Self {
            hub,
            queue: s.queue,
            overflow,
            max_topic_len: s.max_topic_len,
            path: s.path.clone(),
            codec: Arc::new(EnvelopeCodec),
            redis,
        })
    }

    /// The Redis backplane (a handle), with `--redis`.
    pub fn redis(&self) -> Option<RedisBackplane> {
        self.redis.clone()
    }

    fn path(&self) -> &str {
        &self.path
    }

    /// Serves one upgraded connection until it ends; `query` is its
    /// request's query string.
    pub async fn serve<S>(&self, ws: &mut WebSocket<S>, peer: SocketAddr, query: Option<&str>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let sender = ws.sender_with_limits(self.queue);
        let envelope = ws.protocol() == Some(envelope::PROTOCOL);
        if envelope {
            self.envelope(ws, &sender, peer).await;
        } else {
            self.raw(ws, &sender, peer, query).await;
        }
        // The connection ended: leave every topic at once rather than at
        // the next publication of each.
        if let Err(e) = self.hub.unsubscribe_all(&sender).await {
            tracing::debug!(%peer, error = %e, "unsubscribe failed");
        }
    }

    async fn raw<S>(
        &self,
        ws: &mut WebSocket<S>,
        sender: &WsSender,
        peer: SocketAddr,
        query: Option<&str>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut topics = topics_of_query(query.unwrap_or(""));
        if topics.is_empty() {
            topics.push(DEFAULT_TOPIC.to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        topics.retain(|t| seen.insert(t.clone()));
        for t in &topics {
            if let Err(e) = self.hub.subscribe(t, sender, peer.to_string()).await {
                let e = EnvelopeError::from(e);
                tracing::info!(%peer, topic = %t, error = %e, "subscription refused");
                let reason = truncate(&format!("{}: {t}", e.code), 120).to_owned();
                let _ = ws.close(CloseCode::PolicyViolation, &reason).await;
                let end = drain(ws).await;
                crate::serve::log_end(ws, peer, &end);
                return;
            }
        }
        crate::serve::log_open(ws, peer, self.path(), Some("raw"), &topics.join(","));
        let hub = &self.hub;
        let mut in_flight = FuturesOrdered::new();
        // Bytes of the messages in flight (shared by their topics: counted
        // once, released by the first topic's publication).
        let mut bytes = 0;
        let end = loop {
            tokio::select! {
                biased;
                Some(n) = in_flight.next(), if !in_flight.is_empty() => bytes -= n,
                r = ws.recv(), if in_flight.len() < MAX_IN_FLIGHT && bytes < MAX_IN_FLIGHT_BYTES => match r {
                    Ok(msg) => {
                        let mut len = msg.len();
                        bytes += len;
                        let m = PreparedMessage::new(msg);
                        for t in &topics {
                            let m = m.clone();
                            let n = std::mem::take(&mut len);
                            in_flight.push_back(async move {
                                if let Err(e) = hub.publish(t, m).await {
                                    tracing::warn!(%peer, topic = %t, error = %e, "publish failed");
                                }
                                n
                            });
                        }
                    }
                    Err(e) => break e,
                },
            }
        };
        // What was read was published: see it through.
        while in_flight.next().await.is_some() {}
        crate::serve::log_end(ws, peer, &end);
    }

    async fn envelope<S>(&self, ws: &mut WebSocket<S>, sender: &WsSender, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        crate::serve::log_open(ws, peer, self.path(), Some(envelope::PROTOCOL), "");
        // Through the queue: after what the hub queued before it (e.g.
        // the messages a `subscribe` replayed), under the same limits.
        let reply = |reply: Option<Reply>| {
            if let Some(reply) = reply {
                sender.offer(&PreparedMessage::new(reply.to_message()), &self.overflow);
            }
        };
        let publish = |topic: String, m: silverback::Message| async move {
            let n = m.len();
            match self.hub.publish(&topic, m).await {
                Ok(_) => (None, n),
                Err(e) => {
                    let e = EnvelopeError::from(e);
                    tracing::debug!(%peer, error = %e, "request refused");
                    (Some(Reply::from(e)), n)
                }
            }
        };
        let mut in_flight = FuturesOrdered::new();
        let mut bytes = 0;
        let end = loop {
            tokio::select! {
                biased;
                Some((r, n)) = in_flight.next(), if !in_flight.is_empty() => {
                    bytes -= n;
                    reply(r);
                }
                r = ws.recv(), if in_flight.len() < MAX_IN_FLIGHT && bytes < MAX_IN_FLIGHT_BYTES => match r {
                    Ok(msg) => {
                        let req = match msg.as_text() {
                            Some(text) => Request::parse(text, self.max_topic_len),
                            None => Err(EnvelopeError::binary()),
                        };
                        if let Ok(Request::Publish { topic, data }) = req {
                            let m = envelope::publish_message(data);
                            bytes += m.len();
                            in_flight.push_back(publish(topic, m));
                            continue;
                        }
                        // Replies in request order: the publications
                        // before this request answer first.
                        while let Some((r, _)) = in_flight.next().await {
                            reply(r);
                        }
                        bytes = 0;
                        reply(match req {
                            Ok(req) => self.request(req, sender, peer).await,
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "bad request");
                                Some(e.into())
                            }
                        });
                    }
                    Err(e) => break e,
                },
            }
        };
        while let Some((r, _)) = in_flight.next().await {
            reply(r);
        }
        crate::serve::log_end(ws, peer, &end);
    }

    /// Handles one request but `publish` (pipelined by the caller); the
    /// reply, if any.
    async fn request(
        &self,
        req: Request<'_>,
        sender: &WsSender,
        peer: SocketAddr,
    ) -> Option<Reply> {
        let r: Result<Option<Reply>, EnvelopeError> = match req {
            Request::Subscribe { topic, since } => {
                let mut opts = SubscribeOptions::new()
                    .info(peer.to_string())
                    .codec(self.codec.clone());
                if let Some(since) = since {
                    opts = opts.since(since);
                }
                match self.hub.subscribe_with(&topic, sender, opts).await {
                    Ok(r) => Ok(Some(Reply::Subscribed {
                        topic,
                        offset: r.position.offset,
                        epoch: r.position.epoch,
                        recovered: r.recovered,
                    })),
                    Err(e) => Err(e.into()),
                }
            }
            Request::Unsubscribe { topic } => match self.hub.unsubscribe(&topic, sender).await {
                Ok(true) => Ok(Some(Reply::Unsubscribed { topic })),
                Ok(false) => Err(EnvelopeError::new(
                    ErrorCode::NotSubscribed,
                    format!("not subscribed to {topic:?}"),
                )),
                Err(e) => Err(e.into()),
            },
            Request::Publish { topic, data } => self
                .hub
                .publish(&topic, envelope::publish_message(data))
                .await
                .map(|_| None)
                .map_err(Into::into),
            Request::Presence { topic } => match self.hub.presence_count(&topic).await {
                Ok(count) => Ok(Some(Reply::Presence { count, topic })),
                Err(e) => Err(e.into()),
            },
            Request::Ping { id } => Ok(Some(Reply::Pong { id })),
            _ => Err(EnvelopeError::new(ErrorCode::UnknownOp, "unsupported op")),
        };
        match r {
            Ok(reply) => reply,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "request refused");
                Some(e.into())
            }
        }
    }
}

/// Receives until the end, after a close was started.
async fn drain<S>(ws: &mut WebSocket<S>) -> silverback::Error
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        if let Err(e) = ws.recv().await {
            return e;
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary (a close
/// reason has at most 123).
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The values of the `topic` parameters of a query string
/// (percent-decoded, `+` as a space), in order.
pub fn topics_of_query(query: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == "topic").then(|| percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_from_the_query() {
        assert_eq!(topics_of_query(""), Vec::<String>::new());
        assert_eq!(topics_of_query("topic=a&x=1&topic=b"), ["a", "b"]);
        assert_eq!(
            topics_of_query("topic=room%3A1&topic=a+b"),
            ["room:1", "a b"]
        );
        assert_eq!(topics_of_query("topic=%zz&topic=%4"), ["%zz", "%4"]);
        assert_eq!(topics_of_query("topic"), [""]);
    }

    #[test]
    fn close_reasons_fit() {
        assert_eq!(truncate("abc", 120), "abc");
        let long = "é".repeat(100); // 200 bytes
        let cut = truncate(&long, 120);
        assert_eq!(cut.len(), 120);
        let odd = format!("x{long}");
        assert_eq!(truncate(&odd, 120).len(), 119);
    }
}
