//! The Redis backplane: many nodes (each a [`Hub`](crate::Hub)) share
//! topics through one or more Redis servers, with history, recovery after
//! an outage, and presence.
//!
//! # How it works
//! - **Publish** is one Lua script per message on the topic's shard
//!   (`EVALSHA`), sent by the shard's writer task: it takes every
//!   publication waiting (up to 256) and sends them as one pipeline, in
//!   the order [`publish`](Backplane::publish) was first polled, headed by
//!   a `SCRIPT LOAD` of the script (cheap when cached), so an `EVALSHA`
//!   never meets `NOSCRIPT` and nothing is retried: a publisher with many
//!   publications in flight keeps its order. One pipeline is in flight
//!   per shard; publications arriving meanwhile make the next one. The
//!   script increments the topic's offset counter, appends the
//!   message to the topic's Redis Stream (`XADD … MAXLEN ~ N`, N the
//!   history limit, with a TTL: the history age, or
//!   [`key_ttl`](RedisBuilder::key_ttl)) and `PUBLISH`es it with its
//!   offset and epoch on the topic's channel. The epoch is a random id kept
//!   in a key created with the counter: a Redis that lost its data (a
//!   restart without persistence, a flush, keys expired) gives the topic a
//!   new epoch. Offsets are dense per topic within an epoch. Redis CPU per
//!   message does not depend on how many nodes or subscribers there are.
//! - **Delivery**: each node holds one PUB/SUB connection per shard,
//!   subscribed to the channels of the topics it has local subscribers
//!   for. Per topic it tracks the last offset and epoch delivered: a
//!   duplicate is dropped, a gap is filled from the stream (`XRANGE`)
//!   before the live message.
//! - **Redis down**: [`publish`](Backplane::publish) fails (the caller
//!   sees it; nothing is dropped silently); local subscribers stay
//!   connected; the node reconnects with exponential backoff and jitter,
//!   subscribes again, reads every topic's stream from its last delivered
//!   offset and delivers what it missed, in order, before live messages.
//!   When that is not possible (a new epoch: the history is gone; or the
//!   missed messages were trimmed, or the topic keeps no history) the hub
//!   is told through [`Delivery::reset`], which tells the subscribers
//!   (`pubsub.v1`: `{"op":"subscribed",…,"recovered":false}`).
//! - **Presence**: every node writes its subscriber count per topic into
//!   the topic's presence hash and keeps a liveness key with a TTL, both
//!   refreshed every [`presence_interval`](RedisBuilder::presence_interval);
//!   a node that dies stops counting when its key expires.
//! - **Shards**: topics are spread over the Redis URLs by rendezvous
//!   hashing (adding a shard moves only the topics it wins).
//!
//! [`RedisBackplane::state`] says whether the node is connected (for a
//! readiness check), [`RedisBackplane::stats`] counts reconnects and
//! caught-up messages.
//!
//! # Metrics
//! With the `metrics` feature, through the [`metrics`](https://docs.rs/metrics)
//! facade: `silverback_backplane_connected` (gauge, 1 when every shard is
//! connected), `silverback_backplane_reconnects_total` and
//! `silverback_backplane_caught_up_total` (counters),
//! `silverback_backplane_lag_seconds` (histogram: from the publish, by
//! Redis' clock, to the delivery on this node, by its clock).

mod scripts;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use silverback::{Message, PreparedMessage};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{timeout, Instant};

use super::{Backplane, BoxFuture, Delivery};
use crate::error::HubError;
use crate::history::{new_epoch, History, HistoryLimits, Publication, StreamPosition};

/// Whether a [`RedisBackplane`] is connected to all its shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackplaneState {
    /// Every shard's PUB/SUB connection is up and caught up.
    Connected,
    /// At least one shard cannot be reached (or not yet): publications to
    /// its topics fail, its subscribers get nothing until it is back.
    Disconnected,
}

/// Counters of a [`RedisBackplane`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Times a shard's connection was lost.
    pub disconnects: u64,
    /// Times a shard was reached again after a loss.
    pub reconnects: u64,
    /// Messages delivered from the streams rather than live: missed while
    /// disconnected, or filling a gap.
    pub caught_up: u64,
    /// Topic resets: messages that could not be recovered (new epoch,
    /// trimmed or no history); subscribers were told.
    pub resets: u64,
    /// Publications Redis did not take (the caller got an error).
    pub publish_errors: u64,
    /// Pipelines sent by the publish writers (each carries every
    /// publication that was waiting, up to 256): fewer than the
    /// publications when they overlap.
    pub publish_batches: u64,
}

/// Builds a [`RedisBackplane`] ([`RedisBackplane::builder`]).
#[derive(Debug, Clone)]
pub struct RedisBuilder {
    urls: Vec<String>,
    node_id: Option<String>,
    prefix: String,
    key_ttl: Duration,
    presence_interval: Duration,
    timeout: Duration,
    backoff: (Duration, Duration),
}

impl RedisBuilder {
    /// This node's id, for presence (default: random).
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// The prefix of every key and channel (default `silverback`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a topic's offset counter and epoch are kept after its last
    /// publication, and its stream when the history has no age limit
    /// (default 24 hours). Past it, the topic starts a new epoch.
    pub fn key_ttl(mut self, ttl: Duration) -> Self {
        self.key_ttl = ttl;
        self
    }

    /// How often this node writes its presence (default 1 s: its liveness
    /// key, and the counts that changed); a node that stops writing drops
    /// out after three intervals.
    pub fn presence_interval(mut self, every: Duration) -> Self {
        self.presence_interval = every;
        self
    }

    /// Bound on one Redis command, and on connecting (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reconnect delays: from `min`, doubling up to `max`, with jitter
    /// (default 50 ms to 5 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max.max(min));
        self
    }

    /// The backplane. Connections are made once it is attached to a hub
    /// (which must happen inside a Tokio runtime); until then, and while
    /// Redis cannot be reached, its [`state`](RedisBackplane::state) is
    /// [`Disconnected`](BackplaneState::Disconnected). Fails on an
    /// invalid URL.
    pub fn build(self) -> Result<RedisBackplane, HubError> {
        if self.urls.is_empty() {
            return Err(HubError::backplane("no Redis URL"));
        }
        let node_id = self.node_id.unwrap_or_else(new_epoch);
        let mut shards = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            let client = redis::Client::open(url.as_str()).map_err(HubError::backplane)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout))
                .set_number_of_retries(1)
                .set_min_delay(self.backoff.0)
                .set_max_delay(self.backoff.1);
            shards.push(Shard {
                name: redact(url),
                key: url.clone(),
                client,
                config,
                cmd: OnceLock::new(),
                writer: OnceLock::new(),
                topics: Mutex::new(HashMap::new()),
                sink: Mutex::new(None),
                written: Mutex::new(HashMap::new()),
                writes: AtomicU64::new(0),
                connected: AtomicBool::new(false),
            });
        }
        let (state, _) = watch::channel(BackplaneState::Disconnected);
        let (stop, _) = watch::channel(());
        Ok(RedisBackplane {
            shared: Arc::new(Shared {
                live_prefix: format!("{}:n:", self.prefix),
                node_id,
                prefix: self.prefix,
                key_ttl: self.key_ttl,
                presence_interval: self.presence_interval,
                timeout: self.timeout,
                backoff: self.backoff,
                shards,
                node: OnceLock::new(),
                state,
                stop,
                disconnects: AtomicU64::new(0),
                reconnects: AtomicU64::new(0),
                caught_up: AtomicU64::new(0),
                resets: AtomicU64::new(0),
                publish_errors: AtomicU64::new(0),
                publish_batches: Arc::new(AtomicU64::new(0)),
            }),
        })
    }
}

/// A [`Backplane`] on Redis (feature `redis`): see the
/// [module docs](self) for the design. One per node; cheap to clone (a
/// handle: keep one to watch its [`state`](Self::state) after giving
/// another to the hub).
///
/// ```no_run
/// use silverback_hub::backplane::redis::RedisBackplane;
/// use silverback_hub::Hub;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), silverback_hub::HubError> {
/// let redis = RedisBackplane::builder(["redis://127.0.0.1:6379"])
///     .node_id("node-a")
///     .build()?;
/// let hub = Hub::builder().backplane(redis.clone()).build()?;
/// let mut state = redis.state();
/// state.wait_for(|s| *s == silverback_hub::backplane::redis::BackplaneState::Connected)
///     .await
///     .ok();
/// hub.publish("room", silverback::Message::text("hello")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackplane {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("node_id", &self.shared.node_id)
            .field(
                "shards",
                &self
                    .shared
                    .shards
                    .iter()
                    .map(|s| &s.name)
                    .collect::<Vec<_>>(),
            )
            .field("state", &*self.shared.state.borrow())
            .finish()
    }
}

struct Shared {
    node_id: String,
    prefix: String,
    live_prefix: String,
    key_ttl: Duration,
    presence_interval: Duration,
    timeout: Duration,
    backoff: (Duration, Duration),
    shards: Vec<Shard>,
    node: OnceLock<Arc<dyn Delivery>>,
    state: watch::Sender<BackplaneState>,
    /// Dropped with the backplane: its tasks end.
    stop: watch::Sender<()>,
    disconnects: AtomicU64,
    reconnects: AtomicU64,
    caught_up: AtomicU64,
    resets: AtomicU64,
    publish_errors: AtomicU64,
    /// Shared with the shards' publish writers.
    publish_batches: Arc<AtomicU64>,
}

struct Shard {
    /// The URL without its password, for logs.
    name: String,
    /// The URL, for rendezvous hashing.
    key: String,
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Commands (publish, history, presence): reconnects by itself.
    cmd: OnceLock<ConnectionManager>,
    /// The publish writer's queue (started on the first publication).
    writer: OnceLock<mpsc::UnboundedSender<Job>>,
    /// Topics this node is interested in, with the last position delivered.
    topics: Mutex<HashMap<Arc<str>, Last>>,
    /// The PUB/SUB connection's sink while it is up.
    sink: Mutex<Option<PubSubSink>>,
    /// The subscriber counts last written to the presence hashes.
    written: Mutex<HashMap<Arc<str>, usize>>,
    /// Presence writes since everything was last rewritten.
    writes: AtomicU64,
    connected: AtomicBool,
}

/// The last position delivered for a topic (epoch, offset); `None` until
/// known.
type Last = Option<(Arc<str>, u64)>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `redis://user:pass@host` → `redis://user:***@host`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let auth = &url[s + 3..at];
            match auth.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &auth[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// FNV-1a, then a finalizer: a hash that is the same on every node and
/// every Rust version (rendezvous hashing needs that).
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// The index of the shard of `topic` among `keys`: rendezvous hashing.
fn shard_index<'a>(keys: impl Iterator<Item = &'a str>, topic: &str) -> usize {
    let mut best = (0, 0);
    for (i, key) in keys.enumerate() {
        let score = stable_hash(&[key.as_bytes(), topic.as_bytes()]);
        if i == 0 || score > best.1 {
            best = (i, score);
        }
    }
    best.0
}

/// The stream and channel form of a message: a kind byte, the payload.
fn encode_payload(m: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len() + 1);
    out.push(if m.is_text() { b't' } else { b'b' });
    out.extend_from_slice(m.as_bytes());
    out
}

fn decode_payload(p: &[u8]) -> Option<Message> {
    match p.split_first()? {
        (b't', rest) => Some(Message::text(String::from_utf8(rest.to_vec()).ok()?)),
        (b'b', rest) => Some(Message::binary(rest.to_vec())),
        _ => None,
    }
}

/// A channel message: `OFFSET:EPOCH:MILLIS:PAYLOAD`.
struct Live<'a> {
    offset: u64,
    epoch: &'a str,
    /// When Redis ran the publish (ms since the Unix epoch, its clock).
    millis: u64,
    payload: &'a [u8],
}

fn parse_live(bytes: &[u8]) -> Option<Live<'_>> {
    let mut rest = bytes;
    let mut field = || {
        let c = rest.iter().position(|b| *b == b':')?;
        let f = std::str::from_utf8(&rest[..c]).ok()?;
        rest = &rest[c + 1..];
        Some(f)
    };
    // Offsets start at 1: a 0 is not ours.
    let offset = field()?.parse().ok().filter(|o| *o > 0)?;
    let epoch = field()?;
    let millis = field()?.parse().ok()?;
    Some(Live {
        offset,
        epoch,
        millis,
        payload: rest,
    })
}

/// A stream entry ID `OFFSET-0`.
fn entry_offset(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Every this many presence writes, every count is written, changed or
/// not (a Redis that lost its data gets them back).
const REWRITE_EVERY: u64 = 30;

/// What the history script answers.
struct Read {
    position: StreamPosition,
    entries: Vec<(u64, Message)>,
}

impl RedisBackplane {
    /// A builder for a backplane on these Redis URLs (`redis://HOST:PORT`,
    /// `redis://:PASSWORD@HOST/DB`, `rediss://` …): one shard each.
    pub fn builder<I, S>(urls: I) -> RedisBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisBuilder {
            urls: urls.into_iter().map(Into::into).collect(),
            node_id: None,
            prefix: "silverback".to_owned(),
            key_ttl: Duration::from_secs(24 * 3600),
            presence_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            backoff: (Duration::from_millis(50), Duration::from_secs(5)),
        }
    }

    /// The connection state, to watch (e.g. for a readiness check).
    pub fn state(&self) -> watch::Receiver<BackplaneState> {
        self.shared.state.subscribe()
    }

    /// Whether every shard is connected now.
    pub fn is_connected(&self) -> bool {
        *self.shared.state.borrow() == BackplaneState::Connected
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// The counters.
    pub fn stats(&self) -> RedisStats {
        let s = &self.shared;
        RedisStats {
            disconnects: s.disconnects.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            caught_up: s.caught_up.load(Ordering::Relaxed),
            resets: s.resets.load(Ordering::Relaxed),
            publish_errors: s.publish_errors.load(Ordering::Relaxed),
            publish_batches: s.publish_batches.load(Ordering::Relaxed),
        }
    }

    /// The shard (its URL, password hidden) that carries `topic`.
    pub fn shard_of(&self, topic: &str) -> &str {
        &self.shared.shard(topic).name
    }
}

impl Shared {
    fn shard(&self, topic: &str) -> &Shard {
        &self.shards[shard_index(self.shards.iter().map(|s| s.key.as_str()), topic)]
    }

    fn key(&self, kind: &str, topic: &str) -> String {
        format!("{}:{kind}:{topic}", self.prefix)
    }

    fn channel(&self, topic: &str) -> String {
        self.key("c", topic)
    }

    fn cmd(&self, shard: &Shard) -> Result<ConnectionManager, HubError> {
        if let Some(c) = shard.cmd.get() {
            return Ok(c.clone());
        }
        let c = ConnectionManager::new_lazy_with_config(shard.client.clone(), shard.config.clone())
            .map_err(HubError::backplane)?;
        Ok(shard.cmd.get_or_init(|| c).clone())
    }

    /// The queue of the shard's publish writer, started if need be.
    fn writer(&self, shard: &Shard) -> Result<mpsc::UnboundedSender<Job>, HubError> {
        if let Some(w) = shard.writer.get() {
            return Ok(w.clone());
        }
        let con = self.cmd(shard)?;
        Ok(shard
            .writer
            .get_or_init(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(publish_writer(
                    shard.name.clone(),
                    con,
                    rx,
                    self.timeout,
                    self.publish_batches.clone(),
                ));
                tx
            })
            .clone())
    }

    /// Runs a script with a bound on its time.
    async fn run<T: redis::FromRedisValue>(
        &self,
        shard: &Shard,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, HubError> {
        let mut con = self.cmd(shard)?;
        match timeout(self.timeout, inv.invoke_async(&mut con)).await {
            Ok(r) => r.map_err(HubError::backplane),
            Err(_) => Err(HubError::backplane(format!(
                "redis {}: no answer in {:?}",
                shard.name, self.timeout
            ))),
        }
    }

    /// The topic's position and, if `from` is given (and its epoch
    /// matches), its stream entries from that offset on.
    async fn read(
        &self,
        topic: &str,
        from: Option<(&str, u64)>,
        ttl: Duration,
    ) -> Result<Read, HubError> {
        let shard = self.shard(topic);
        let mut inv = scripts::HISTORY.prepare_invoke();
        inv.key(self.key("o", topic))
            .key(self.key("e", topic))
            .key(self.key("s", topic))
            .arg(new_epoch())
            .arg(millis(ttl));
        match from {
            Some((epoch, offset)) => inv.arg(format!("{offset}-0")).arg(epoch),
            None => inv.arg("-").arg(""),
        };
        type Entries = Vec<(String, Vec<Vec<u8>>)>;
        let (offset, epoch, raw): (u64, String, Entries) = self.run(shard, inv).await?;
        let mut entries = Vec::with_capacity(raw.len());
        for (id, fields) in raw {
            let Some(off) = entry_offset(&id) else {
                continue;
            };
            // Fields: "m", payload.
            let Some(m) = fields.get(1).and_then(|p| decode_payload(p)) else {
                continue;
            };
            entries.push((off, m));
        }
        Ok(Read {
            position: StreamPosition::new(offset, epoch),
            entries,
        })
    }

    fn node(&self) -> Option<&Arc<dyn Delivery>> {
        self.node.get()
    }

    fn reset(&self, topic: &str, position: &StreamPosition) {
        self.resets.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            topic,
            offset = position.offset,
            epoch = %position.epoch,
            "redis backplane: messages of the topic could not be recovered; subscribers told"
        );
        if let Some(node) = self.node() {
            node.reset(topic, position);
        }
    }

    /// Delivers what the topic's stream holds after the last position
    /// delivered (up to its current position), resetting the topic where
    /// messages cannot be recovered. Returns how many were delivered.
    async fn catch_up(&self, shard: &Shard, topic: &Arc<str>) -> Result<u64, HubError> {
        let Some(last) = lock(&shard.topics).get(topic).cloned() else {
            return Ok(0);
        };
        let Some((epoch, offset)) = last.clone() else {
            // Never positioned (subscribed while the position failed).
            let r = self.read(topic, None, self.key_ttl).await?;
            self.set_last(shard, topic, None, &r.position);
            return Ok(0);
        };
        let r = self
            .read(topic, Some((&epoch, offset + 1)), self.key_ttl)
            .await?;
        let (r, epoch, offset) = if r.position.epoch != *epoch {
            // A new epoch: the old history is gone. Subscribers are told,
            // then get the new epoch's stream from its start.
            let start = StreamPosition::new(0, r.position.epoch.as_str());
            self.reset(topic, &start);
            self.set_last(shard, topic, Some(&last), &start);
            let epoch: Arc<str> = start.epoch.as_str().into();
            let r = self.read(topic, Some((&epoch, 1)), self.key_ttl).await?;
            if r.position.epoch != *epoch {
                // Reset again meanwhile: the next catch-up goes on.
                return Ok(0);
            }
            (r, epoch, 0)
        } else {
            (r, epoch, offset)
        };
        let mut expected = offset + 1;
        let mut delivered = 0;
        for (off, m) in r.entries {
            if off < expected {
                continue;
            }
            if off > expected {
                // Trimmed: what is kept follows a gap.
                let at = StreamPosition::new(off - 1, &*epoch);
                self.reset(topic, &at);
                self.set_last(shard, topic, None, &at);
            }
            let p = Publication {
                topic: topic.clone(),
                offset: off,
                epoch: epoch.clone(),
                message: PreparedMessage::new(m),
            };
            if !self.deliver_if_current(shard, &p) {
                // Unsubscribed meanwhile, or a newer live message went out.
                return Ok(delivered);
            }
            delivered += 1;
            expected = off + 1;
        }
        if r.position.offset >= expected {
            self.reset(topic, &r.position);
            let pos = (epoch.clone(), expected - 1);
            self.set_last(shard, topic, Some(&Some(pos)), &r.position);
        }
        self.caught_up.fetch_add(delivered, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("silverback_backplane_caught_up_total").increment(delivered);
        Ok(delivered)
    }

    /// Sets the topic's last position to `to` if it still is `was`.
    fn set_last(&self, shard: &Shard, topic: &str, was: Option<&Last>, to: &StreamPosition) {
        let mut topics = lock(&shard.topics);
        if let Some(last) = topics.get_mut(topic) {
            if was.is_none_or(|w| w == last) {
                *last = Some((to.epoch.as_str().into(), to.offset));
            }
        }
    }

    /// Delivers `p` if it is the next of its topic (same epoch, offset one
    /// more than the last delivered), recording it.
    fn deliver_if_current(&self, shard: &Shard, p: &Publication) -> bool {
        {
            let mut topics = lock(&shard.topics);
            let Some(last) = topics.get_mut(&p.topic) else {
                return false;
            };
            match last {
                Some((e, o)) if **e == *p.epoch && *o + 1 == p.offset => {
                    *o = p.offset;
                }
                _ => return false,
            }
        }
        if let Some(node) = self.node() {
            node.deliver(p);
        }
        true
    }

    /// A live message from the channel.
    async fn on_live(&self, shard: &Shard, topic: Arc<str>, bytes: &[u8]) {
        let Some(Live {
            offset,
            epoch,
            millis,
            payload,
        }) = parse_live(bytes)
        else {
            tracing::debug!(%topic, "redis backplane: malformed channel message");
            return;
        };
        #[cfg(feature = "metrics")]
        {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            metrics::histogram!("silverback_backplane_lag_seconds")
                .record(now.saturating_sub(millis) as f64 / 1000.0);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = millis;
        let Some(m) = decode_payload(payload) else {
            return;
        };
        let last = match lock(&shard.topics).get(&topic) {
            Some(l) => l.clone(),
            None => return,
        };
        let epoch: Arc<str> = match &last {
            Some((e, _)) if **e == *epoch => e.clone(),
            _ => epoch.into(),
        };
        match &last {
            None => {
                // Not positioned yet: this is the first.
                self.set_last(
                    shard,
                    &topic,
                    Some(&last),
                    &StreamPosition::new(offset - 1, &*epoch),
                );
            }
            Some((e, o)) if *e == epoch => {
                if offset <= *o {
                    return; // a duplicate
                }
                if offset > *o + 1 {
                    // A gap: fill it from the stream first.
                    match self.catch_up(shard, &topic).await {
                        Ok(n) => tracing::debug!(%topic, n, "redis backplane: gap filled"),
                        Err(e) => {
                            tracing::warn!(%topic, error = %e, "redis backplane: gap not filled");
                            self.reset(&topic, &StreamPosition::new(offset - 1, &*epoch));
                            self.set_last(
                                shard,
                                &topic,
                                None,
                                &StreamPosition::new(offset - 1, &*epoch),
                            );
                        }
                    }
                }
            }
            Some(_) => {
                // A new epoch: the stream was lost and started again.
                let at = StreamPosition::new(0, &*epoch);
                self.reset(&topic, &at);
                self.set_last(shard, &topic, Some(&last), &at);
                if offset > 1 {
                    if let Err(e) = self.catch_up(shard, &topic).await {
                        tracing::debug!(%topic, error = %e, "redis backplane: catch-up failed");
                    }
                }
            }
        }
        let now = lock(&shard.topics).get(&topic).cloned().flatten();
        if let Some((e, o)) = now {
            if *e == *epoch && o + 1 < offset {
                // Still missing (history trimmed or off): say so, go on.
                let at = StreamPosition::new(offset - 1, &*epoch);
                self.reset(&topic, &at);
                self.set_last(shard, &topic, None, &at);
            }
        }
        let p = Publication {
            topic,
            offset,
            epoch,
            message: PreparedMessage::new(m),
        };
        self.deliver_if_current(shard, &p);
    }

    fn set_connected(&self, shard: &Shard, up: bool) {
        shard.connected.store(up, Ordering::Release);
        let all = self
            .shards
            .iter()
            .all(|s| s.connected.load(Ordering::Acquire));
        let state = if all {
            BackplaneState::Connected
        } else {
            BackplaneState::Disconnected
        };
        #[cfg(feature = "metrics")]
        metrics::gauge!("silverback_backplane_connected").set(if all { 1.0 } else { 0.0 });
        self.state.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let (min, max) = self.backoff;
        let exp = min.saturating_mul(1u32 << attempt.min(16)).min(max);
        // Full jitter over the upper half: never all nodes at once.
        let half = exp / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// Writes this node's presence to a shard: the liveness key, and the
    /// count of every topic it carries that changed since the last write
    /// (all of them every [`REWRITE_EVERY`] writes).
    async fn write_presence(&self, shard: &Shard) -> Result<(), HubError> {
        let Some(node) = self.node() else {
            return Ok(());
        };
        let all = shard
            .writes
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(REWRITE_EVERY);
        let topics: Vec<(Arc<str>, usize)> = {
            let names: Vec<Arc<str>> = lock(&shard.topics).keys().cloned().collect();
            let mut written = lock(&shard.written);
            written.retain(|t, _| names.contains(t));
            names
                .into_iter()
                .filter_map(|t| {
                    let n = node.subscriber_count(&t);
                    let changed = written.insert(t.clone(), n) != Some(n);
                    (all || changed).then_some((t, n))
                })
                .collect()
        };
        let ttl = millis(self.presence_interval * 3);
        // The hashes outlive the liveness keys: a dead node's counts are
        // skipped (and removed) by the reader once its key is gone.
        let hash_ttl = millis(self.presence_interval * 3 * REWRITE_EVERY as u32);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(format!("{}{}", self.live_prefix, self.node_id))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .ignore();
        for (t, n) in &topics {
            let key = self.key("p", t);
            pipe.cmd("HSET")
                .arg(&key)
                .arg(&self.node_id)
                .arg(*n)
                .ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(hash_ttl).ignore();
        }
        let mut con = self.cmd(shard)?;
        let r = match timeout(self.timeout, pipe.query_async::<()>(&mut con)).await {
            Ok(r) => r.map_err(HubError::backplane),
            Err(_) => Err(HubError::backplane("presence write timed out")),
        };
        if r.is_err() {
            // Write everything again next time.
            lock(&shard.written).clear();
        }
        r
    }
}

/// One shard's PUB/SUB connection: connect, subscribe, catch up, read;
/// again after a loss, with backoff.
async fn run_shard(shared: Weak<Shared>, index: usize, mut stop: watch::Receiver<()>) {
    let mut attempt = 0u32;
    let mut down_since: Option<Instant> = None;
    let mut ever = false;
    loop {
        let Some(sh) = shared.upgrade() else { return };
        let connected = connect_shard(&sh, index).await;
        let wait = match connected {
            Ok((caught_up, stream)) => {
                let shard = &sh.shards[index];
                if let Some(since) = down_since.take() {
                    sh.reconnects.fetch_add(1, Ordering::Relaxed);
                    #[cfg(feature = "metrics")]
                    metrics::counter!("silverback_backplane_reconnects_total").increment(1);
                    tracing::info!(
                        shard = %shard.name,
                        after = ?since.elapsed(),
                        caught_up,
                        "redis backplane: reconnected, caught up {caught_up} messages"
                    );
                } else {
                    tracing::info!(shard = %shard.name, node = %sh.node_id, "redis backplane: connected");
                }
                ever = true;
                attempt = 0;
                // Redis may have lost the presence counts: write them all.
                lock(&shard.written).clear();
                sh.set_connected(shard, true);
                let ping_every = sh.timeout;
                drop(sh);
                let end = read_shard(&shared, index, stream, &mut stop, ping_every).await;
                let Some(sh) = shared.upgrade() else { return };
                let shard = &sh.shards[index];
                if let ReadEnd::Stopped = end {
                    return;
                }
                *lock(&shard.sink) = None;
                sh.set_connected(shard, false);
                sh.disconnects.fetch_add(1, Ordering::Relaxed);
                down_since = Some(Instant::now());
                tracing::warn!(shard = %shard.name, why = ?end, "redis backplane: disconnected; publishing fails until it is back");
                Duration::ZERO
            }
            Err(e) => {
                let shard = &sh.shards[index];
                *lock(&shard.sink) = None;
                sh.set_connected(shard, false);
                if attempt == 0 {
                    if ever {
                        tracing::warn!(shard = %shard.name, error = %e, "redis backplane: cannot reconnect yet");
                    } else {
                        tracing::warn!(shard = %shard.name, error = %e, "redis backplane: cannot connect yet");
                    }
                }
                if down_since.is_none() {
                    down_since = Some(Instant::now());
                }
                let d = sh.backoff(attempt);
                attempt = attempt.saturating_add(1);
                d
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

#[derive(Debug)]
enum ReadEnd {
    Closed,
    PingFailed,
    Stopped,
}

/// Connects the shard's PUB/SUB connection, subscribes every topic and
/// catches them up.
/// A publication waiting for its shard's writer: the `EVALSHA` and where
/// its answer goes.
struct Job {
    cmd: redis::Cmd,
    reply: oneshot::Sender<Result<(u64, String), HubError>>,
}

/// Most publications in one pipeline.
const MAX_BATCH: usize = 256;

/// A shard's publish writer: sends the waiting publications as one
/// pipeline (one in flight at a time, so pipelines cannot pass each
/// other, even across a reconnect), headed by `SCRIPT LOAD` so that no
/// `EVALSHA` of it meets `NOSCRIPT`. Nothing is retried: a failure is each
/// publication's error. Ends when the backplane is dropped.
async fn publish_writer(
    name: String,
    mut con: ConnectionManager,
    mut rx: mpsc::UnboundedReceiver<Job>,
    wait: Duration,
    batches: Arc<AtomicU64>,
) {
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("SCRIPT").arg("LOAD").arg(scripts::PUBLISH_LUA);
        let mut job = Some(first);
        while let Some(j) = job.take() {
            pipe.add_command(j.cmd);
            replies.push(j.reply);
            if replies.len() < MAX_BATCH {
                job = rx.try_recv().ok();
            }
        }
        batches.fetch_add(1, Ordering::Relaxed);
        let r = match timeout(wait, pipe.query_async::<Vec<redis::Value>>(&mut con)).await {
            Ok(Ok(values)) if values.len() == replies.len() + 1 => Ok(values),
            Ok(Ok(values)) => Err(format!(
                "redis {name}: {} answers to {} commands",
                values.len(),
                replies.len() + 1
            )),
            Ok(Err(e)) => Err(format!("redis {name}: {e}")),
            Err(_) => Err(format!("redis {name}: no answer in {wait:?}")),
        };
        match r {
            Ok(values) => {
                for (v, reply) in values.into_iter().skip(1).zip(replies.drain(..)) {
                    let a = match redis::from_redis_value::<redis::RedisResult<(u64, String)>>(v) {
                        Ok(Ok(a)) => Ok(a),
                        Ok(Err(e)) => Err(HubError::backplane(e)),
                        Err(e) => Err(HubError::backplane(e)),
                    };
                    let _ = reply.send(a);
                }
            }
            Err(e) => {
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(HubError::backplane(e.clone())));
                }
            }
        }
    }
}

async fn connect_shard(
    sh: &Shared,
    index: usize,
) -> Result<(u64, redis::aio::PubSubStream), HubError> {
    let shard = &sh.shards[index];
    let ps = match timeout(sh.timeout, shard.client.get_async_pubsub()).await {
        Ok(r) => r.map_err(HubError::backplane)?,
        Err(_) => return Err(HubError::backplane("connect timed out")),
    };
    let (mut sink, stream) = ps.split();
    *lock(&shard.sink) = Some(sink.clone());
    let topics: Vec<Arc<str>> = lock(&shard.topics).keys().cloned().collect();
    for chunk in topics.chunks(512) {
        let channels: Vec<String> = chunk.iter().map(|t| sh.channel(t)).collect();
        match timeout(sh.timeout, sink.subscribe(channels)).await {
            Ok(r) => r.map_err(HubError::backplane)?,
            Err(_) => return Err(HubError::backplane("subscribe timed out")),
        }
    }
    let mut caught_up = 0;
    for t in &topics {
        caught_up += sh.catch_up(shard, t).await?;
    }
    Ok((caught_up, stream))
}

async fn read_shard(
    shared: &Weak<Shared>,
    index: usize,
    mut stream: redis::aio::PubSubStream,
    stop: &mut watch::Receiver<()>,
    ping_every: Duration,
) -> ReadEnd {
    let mut ping = tokio::time::interval(ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            m = stream.next() => {
                let Some(m) = m else { return ReadEnd::Closed };
                let Some(sh) = shared.upgrade() else { return ReadEnd::Stopped };
                let shard = &sh.shards[index];
                let channel = m.get_channel_name();
                let Some(topic) = channel
                    .strip_prefix(sh.prefix.as_str())
                    .and_then(|c| c.strip_prefix(":c:"))
                else {
                    continue;
                };
                let topic: Option<Arc<str>> = lock(&shard.topics).get_key_value(topic).map(|(k, _)| k.clone());
                if let Some(topic) = topic {
                    sh.on_live(shard, topic, m.get_payload_bytes()).await;
                }
            }
            _ = ping.tick() => {
                let Some(sh) = shared.upgrade() else { return ReadEnd::Stopped };
                let sink = lock(&sh.shards[index].sink).clone();
                let Some(mut sink) = sink else { return ReadEnd::Closed };
                let ok = matches!(
                    timeout(sh.timeout, sink.ping::<redis::Value>()).await,
                    Ok(Ok(_))
                );
                if !ok {
                    return ReadEnd::PingFailed;
                }
            }
            _ = stop.changed() => return ReadEnd::Stopped,
        }
    }
}

/// Writes presence every interval, on every shard.
async fn run_presence(shared: Weak<Shared>, mut stop: watch::Receiver<()>) {
    let every = match shared.upgrade() {
        Some(sh) => sh.presence_interval,
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(sh) = shared.upgrade() else { return };
        for shard in &sh.shards {
            if let Err(e) = sh.write_presence(shard).await {
                tracing::debug!(shard = %shard.name, error = %e, "redis backplane: presence not written");
            }
        }
    }
}

impl Backplane for RedisBackplane {
    fn attach(&self, node: Arc<dyn Delivery>) -> Result<(), HubError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| HubError::backplane("RedisBackplane needs a Tokio runtime"))?;
        self.shared
            .node
            .set(node)
            .map_err(|_| HubError::backplane("this RedisBackplane is already attached to a hub"))?;
        for i in 0..self.shared.shards.len() {
            rt.spawn(run_shard(
                Arc::downgrade(&self.shared),
                i,
                self.shared.stop.subscribe(),
            ));
        }
        rt.spawn(run_presence(
            Arc::downgrade(&self.shared),
            self.shared.stop.subscribe(),
        ));
        Ok(())
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: PreparedMessage,
        history: HistoryLimits,
    ) -> BoxFuture<'a, Result<StreamPosition, HubError>> {
        Box::pin(async move {
            let sh = &self.shared;
            let shard = sh.shard(topic);
            let stream_ttl = history.max_age.unwrap_or(sh.key_ttl);
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(scripts::PUBLISH.get_hash())
                .arg(3)
                .arg(sh.key("o", topic))
                .arg(sh.key("e", topic))
                .arg(sh.key("s", topic))
                .arg(new_epoch())
                .arg(encode_payload(message.message()))
                .arg(history.max_messages)
                .arg(millis(sh.key_ttl.max(stream_ttl)))
                .arg(millis(stream_ttl))
                .arg(sh.channel(topic));
            // Queued at once (no await before): publications are sent in
            // the order they were first polled.
            let (reply, answer) = oneshot::channel();
            let queued = sh.writer(shard).and_then(|w| {
                w.send(Job { cmd, reply })
                    .map_err(|_| HubError::backplane("redis writer stopped"))
            });
            let r = match queued {
                Ok(()) => answer
                    .await
                    .unwrap_or_else(|_| Err(HubError::backplane("redis writer stopped"))),
                Err(e) => Err(e),
            };
            match r {
                Ok((offset, epoch)) => Ok(StreamPosition::new(offset, epoch)),
                Err(e) => {
                    sh.publish_errors.fetch_add(1, Ordering::Relaxed);
                    Err(e)
                }
            }
        })
    }

    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            let sh = &self.shared;
            let shard = sh.shard(topic);
            let name: Arc<str> = topic.into();
            lock(&shard.topics).entry(name.clone()).or_insert(None);
            let r = async {
                let sink = lock(&shard.sink).clone();
                let Some(mut sink) = sink else {
                    return Err(HubError::backplane(format!(
                        "redis {} not connected",
                        shard.name
                    )));
                };
                match timeout(sh.timeout, sink.subscribe(sh.channel(topic))).await {
                    Ok(r) => r.map_err(HubError::backplane)?,
                    Err(_) => return Err(HubError::backplane("subscribe timed out")),
                }
                let r = sh.read(topic, None, sh.key_ttl).await?;
                let mut topics = lock(&shard.topics);
                if let Some(last) = topics.get_mut(topic) {
                    if last.is_none() {
                        *last = Some((r.position.epoch.as_str().into(), r.position.offset));
                    }
                }
                Ok(())
            }
            .await;
            if r.is_err() {
                lock(&shard.topics).remove(topic);
            }
            r
        })
    }

    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            let sh = &self.shared;
            let shard = sh.shard(topic);
            lock(&shard.topics).remove(topic);
            let sink = lock(&shard.sink).clone();
            if let Some(mut sink) = sink {
                let _ = timeout(sh.timeout, sink.unsubscribe(sh.channel(topic))).await;
            }
            let mut con = sh.cmd(shard)?;
            let del = redis::cmd("HDEL")
                .arg(sh.key("p", topic))
                .arg(&sh.node_id)
                .clone();
            let _ = timeout(sh.timeout, del.query_async::<()>(&mut con)).await;
            Ok(())
        })
    }

    fn history<'a>(
        &'a self,
        topic: &'a str,
        since: Option<&'a StreamPosition>,
    ) -> BoxFuture<'a, Result<History, HubError>> {
        Box::pin(async move {
            let sh = &self.shared;
            let from = match since {
                Some(s) => Some((s.epoch.as_str(), s.offset + 1)),
                None => Some(("", 0)),
            };
            let r = sh.read(topic, from, sh.key_ttl).await?;
            let epoch: Arc<str> = r.position.epoch.as_str().into();
            let topic_arc: Arc<str> = topic.into();
            let publications: Vec<Publication> = r
                .entries
                .into_iter()
                .filter(|(o, _)| *o <= r.position.offset)
                .map(|(offset, m)| Publication {
                    topic: topic_arc.clone(),
                    offset,
                    epoch: epoch.clone(),
                    message: PreparedMessage::new(m),
                })
                .collect();
            let complete = match since {
                None => true,
                Some(s) => {
                    s.epoch == r.position.epoch && s.offset <= r.position.offset && {
                        let first = publications
                            .first()
                            .map_or(r.position.offset + 1, |p| p.offset);
                        first <= s.offset + 1
                    }
                }
            };
            let publications = if since.is_some_and(|s| s.epoch != r.position.epoch) {
                Vec::new()
            } else {
                publications
            };
            Ok(History {
                publications,
                position: r.position,
                complete,
            })
        })
    }

    fn position<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<StreamPosition, HubError>> {
        Box::pin(async move {
            let sh = &self.shared;
            Ok(sh.read(topic, None, sh.key_ttl).await?.position)
        })
    }

    fn remote_subscriber_count<'a>(
        &'a self,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<usize, HubError>> {
        Box::pin(async move {
            let sh = &self.shared;
            let shard = sh.shard(topic);
            let mut inv = scripts::PRESENCE.prepare_invoke();
            inv.key(sh.key("p", topic))
                .arg(&sh.node_id)
                .arg(&sh.live_prefix);
            sh.run::<usize>(shard, inv).await
        })
    }

    fn remove_history<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            let sh = &self.shared;
            let shard = sh.shard(topic);
            let mut inv = scripts::REMOVE.prepare_invoke();
            inv.key(sh.key("o", topic))
                .key(sh.key("e", topic))
                .key(sh.key("s", topic));
            sh.run::<i64>(shard, inv).await.map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_is_stable_and_moves_few_topics() {
        let three = ["redis://a:1", "redis://b:1", "redis://c:1"];
        let four = ["redis://a:1", "redis://b:1", "redis://c:1", "redis://d:1"];
        let mut moved = 0;
        let mut per = [0usize; 3];
        for i in 0..3000 {
            let t = format!("topic-{i}");
            let a = shard_index(three.iter().copied(), &t);
            let b = shard_index(four.iter().copied(), &t);
            per[a] += 1;
            if a != b {
                moved += 1;
                assert_eq!(b, 3, "a topic only moves to the new shard");
            }
        }
        assert!(per.iter().all(|n| *n > 700), "spread: {per:?}");
        assert!((500..1000).contains(&moved), "moved {moved}");
        assert_eq!(shard_index(["x"].iter().copied(), "t"), 0);
    }

    #[test]
    fn payloads_and_channel_messages_round_trip() {
        for m in [
            Message::text("héllo:x"),
            Message::binary(vec![0u8, 255, b':']),
        ] {
            let p = encode_payload(&m);
            assert_eq!(decode_payload(&p), Some(m.clone()));
            let mut live = b"42:abcdef0123456789:1700000000123:".to_vec();
            live.extend_from_slice(&p);
            let l = parse_live(&live).unwrap();
            assert_eq!(
                (l.offset, l.epoch, l.millis),
                (42, "abcdef0123456789", 1700000000123)
            );
            assert_eq!(decode_payload(l.payload), Some(m));
        }
        assert!(parse_live(b"x:y:1:z").is_none());
        assert!(parse_live(b"1:y:x:z").is_none());
        assert!(parse_live(b"0:y:1:z").is_none());
        assert!(parse_live(b"12").is_none());
        assert!(decode_payload(b"").is_none());
        assert!(decode_payload(b"t\xff").is_none());
        assert_eq!(entry_offset("17-0"), Some(17));
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("redis://:secret@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("redis://u:secret@h"), "redis://u:***@h");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    }
}
