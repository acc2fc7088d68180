//! The [`Hub`]: topics, subscribe, publish.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use silverback::{CloseCode, Overflow, PreparedMessage, WsSender};

use crate::backplane::{Backplane, Delivery, MemoryBackplane};
use crate::codec::Codec;
use crate::error::HubError;
use crate::history::{History, HistoryLimits, Publication, Recovery, StreamPosition};
use crate::presence::SubscriberInfo;
use crate::stats::{Counters, Fanout, HubStats, TopicStats};
use crate::topic::{self, Pending, Sub, Topic, TopicOptions};

/// Limits of a hub, with safe defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubLimits {
    /// Longest topic name, in bytes (default 256).
    pub max_topic_len: usize,
    /// Most topics one connection subscribes to (default 1024).
    pub max_topics_per_connection: usize,
    /// Most topics with subscribers on the hub (default 100,000).
    pub max_topics: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        Self {
            max_topic_len: 256,
            max_topics_per_connection: 1024,
            max_topics: 100_000,
        }
    }
}

impl HubLimits {
    /// Sets [`max_topic_len`](Self::max_topic_len).
    pub fn max_topic_len(mut self, n: usize) -> Self {
        self.max_topic_len = n;
        self
    }

    /// Sets [`max_topics_per_connection`](Self::max_topics_per_connection).
    pub fn max_topics_per_connection(mut self, n: usize) -> Self {
        self.max_topics_per_connection = n;
        self
    }

    /// Sets [`max_topics`](Self::max_topics).
    pub fn max_topics(mut self, n: usize) -> Self {
        self.max_topics = n;
        self
    }
}

/// The default overflow policy: close a subscriber that cannot keep up
/// with 1013 Try Again Later, so that it reconnects and recovers from
/// history rather than silently missing messages.
pub const DEFAULT_OVERFLOW: Overflow = Overflow::Close(CloseCode::TryAgainLater, "slow consumer");

/// How [`Hub::subscribe_with`] subscribes: presence info, a position to
/// recover from, a [`Codec`].
///
/// ```
/// use silverback_hub::{StreamPosition, SubscribeOptions};
/// let opts = SubscribeOptions::new()
///     .info("alice")
///     .since(StreamPosition::new(41, "5f0c2a9e1b7d3c44"));
/// # let _ = opts;
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// For [presence](Hub::presence).
    pub info: SubscriberInfo,
    /// Recover what was published after this position first (see
    /// [`Hub::subscribe_since`]); `None`: start at the current position.
    pub since: Option<StreamPosition>,
    /// The wire form of the topic's messages for this subscriber (`None`:
    /// the published message as it is).
    pub codec: Option<Arc<dyn Codec>>,
}

impl fmt::Debug for SubscribeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscribeOptions")
            .field("info", &self.info)
            .field("since", &self.since)
            .field("codec", &self.codec.is_some())
            .finish()
    }
}

impl SubscribeOptions {
    /// No info, no position, no codec.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`info`](Self::info).
    pub fn info(mut self, info: impl Into<SubscriberInfo>) -> Self {
        self.info = info.into();
        self
    }

    /// Sets [`since`](Self::since).
    pub fn since(mut self, since: StreamPosition) -> Self {
        self.since = Some(since);
        self
    }

    /// Sets [`codec`](Self::codec).
    pub fn codec(mut self, codec: Arc<dyn Codec>) -> Self {
        self.codec = Some(codec);
        self
    }
}

/// Where a new subscription starts.
enum Start {
    /// Now, without asking the position (plain [`Hub::subscribe`]).
    Now,
    /// Now, reporting the position it starts after.
    NowWithPosition,
    /// After this position, replaying what was missed.
    Since(StreamPosition),
}

/// Builds a [`Hub`] ([`Hub::builder`]).
pub struct HubBuilder {
    backplane: Option<Arc<dyn Backplane>>,
    overflow: Overflow,
    history: HistoryLimits,
    limits: HubLimits,
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("overflow", &self.overflow)
            .field("history", &self.history)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl HubBuilder {
    /// The backplane (default: a new [`MemoryBackplane`]).
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Some(Arc::new(backplane));
        self
    }

    /// The overflow policy of every topic without its own (default
    /// [`DEFAULT_OVERFLOW`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// The history of every topic without its own (default none).
    pub fn history(mut self, history: HistoryLimits) -> Self {
        self.history = history;
        self
    }

    /// Limits (default [`HubLimits::default`]).
    pub fn limits(mut self, limits: HubLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The hub; fails if the backplane refuses it (e.g. already attached
    /// to another hub).
    pub fn build(self) -> Result<Hub, HubError> {
        let backplane = self
            .backplane
            .unwrap_or_else(|| Arc::new(MemoryBackplane::new()));
        let inner = Arc::new(Inner {
            backplane: backplane.clone(),
            topics: RwLock::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            options: RwLock::new(HashMap::new()),
            overflow: self.overflow,
            history: self.history,
            limits: self.limits,
            counters: Counters::default(),
            received: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            gauges: Default::default(),
        });
        backplane.attach(Arc::new(Node(Arc::downgrade(&inner))))?;
        Ok(Hub { inner })
    }
}

/// A pub/sub hub: connections subscribe to topics; a message published to
/// a topic, from anywhere, is queued once for each of its subscribers.
///
/// Cheap to clone (a handle), `Send + Sync`. See the [crate docs](crate)
/// for the model: delivery goes through the [`Backplane`]; each
/// subscriber is a connection's [`WsSender`] queue, bounded, and
/// [`Overflow`] says what happens when it is full.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub").field("stats", &self.stats()).finish()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

struct Inner {
    backplane: Arc<dyn Backplane>,
    topics: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
    /// Each connection's topics.
    conns: Mutex<HashMap<u64, HashSet<Arc<str>>>>,
    options: RwLock<HashMap<Arc<str>, TopicOptions>>,
    overflow: Overflow,
    history: HistoryLimits,
    limits: HubLimits,
    counters: Counters,
    received: AtomicU64,
    publish_errors: AtomicU64,
    /// This hub's share of the process-wide gauges (feature `metrics`).
    gauges: crate::metrics::Gauges,
}

/// What the backplane delivers to (weak: the hub owns the backplane).
struct Node(Weak<Inner>);

impl Delivery for Node {
    fn deliver(&self, p: &Publication) {
        if let Some(inner) = self.0.upgrade() {
            inner.deliver(p);
        }
    }

    fn reset(&self, topic: &str, position: &StreamPosition) {
        if let Some(inner) = self.0.upgrade() {
            inner.reset(topic, position);
        }
    }

    fn subscriber_count(&self, topic: &str) -> usize {
        self.0.upgrade().map_or(0, |inner| {
            read(&inner.topics)
                .get(topic)
                .map_or(0, |t| t.lock().subs.len())
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// A hub on a new [`MemoryBackplane`], with the default policy and
    /// limits.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("a new MemoryBackplane accepts its hub")
    }

    /// A builder, to choose the backplane, policy, history and limits.
    pub fn builder() -> HubBuilder {
        HubBuilder {
            backplane: None,
            overflow: DEFAULT_OVERFLOW,
            history: HistoryLimits::NONE,
            limits: HubLimits::default(),
        }
    }

    /// Sets `topic`'s own options (overflow policy, history), replacing
    /// earlier ones; they apply to current subscribers and later
    /// publications. Kept until [`clear_topic_options`](Self::clear_topic_options).
    pub fn set_topic_options(&self, topic: &str, options: TopicOptions) -> Result<(), HubError> {
        self.validate(topic)?;
        let overflow = options.overflow.clone();
        write(&self.inner.options).insert(topic.into(), options);
        if let Some(t) = read(&self.inner.topics).get(topic) {
            t.lock().overflow = overflow.unwrap_or_else(|| self.inner.overflow.clone());
        }
        Ok(())
    }

    /// Forgets `topic`'s own options: the hub's apply again.
    pub fn clear_topic_options(&self, topic: &str) {
        write(&self.inner.options).remove(topic);
        if let Some(t) = read(&self.inner.topics).get(topic) {
            t.lock().overflow = self.inner.overflow.clone();
        }
    }

    /// Subscribes the connection of `sender` to `topic`, with `info` for
    /// [presence](Self::presence); from now on every message published to
    /// the topic is offered to its queue. Subscribing again to the same
    /// topic only replaces `info`.
    ///
    /// Errors: a topic name or a limit refused, the connection closed, the
    /// backplane failing to register this node's interest.
    pub async fn subscribe(
        &self,
        topic: &str,
        sender: &WsSender,
        info: impl Into<SubscriberInfo>,
    ) -> Result<(), HubError> {
        self.subscribe_inner(topic, sender, info.into(), None, Start::Now)
            .await
            .map(|_| ())
    }

    /// Subscribes with [`SubscribeOptions`]: a [`Codec`] for the wire form
    /// of the topic's messages, a position to recover from (as
    /// [`subscribe_since`](Self::subscribe_since)) or none. Either way the
    /// returned [`Recovery`] has the position the subscription starts
    /// after (the client's position for a later recovery), consistent with
    /// the messages queued: every message after it, and none before,
    /// reaches the subscriber. Without `since`, `recovered` is `true` and
    /// `replayed` counts live messages that came while the position was
    /// fetched.
    ///
    /// Fails with [`HubError::AlreadySubscribed`] if the connection already
    /// subscribes to `topic`.
    pub async fn subscribe_with(
        &self,
        topic: &str,
        sender: &WsSender,
        options: SubscribeOptions,
    ) -> Result<Recovery, HubError> {
        let SubscribeOptions { info, since, codec } = options;
        let start = match since {
            Some(p) => Start::Since(p),
            None => Start::NowWithPosition,
        };
        let r = self
            .subscribe_inner(topic, sender, info, codec, start)
            .await?;
        Ok(r.expect("a recovery for a subscription that reports its position"))
    }

    /// Subscribes like [`subscribe`](Self::subscribe), first queueing what
    /// was published after `since` (a position the client kept from an
    /// earlier subscription), in order, then live messages: no gap and no
    /// duplicate between them. [`Recovery::recovered`] says whether
    /// nothing was missed. Fails with [`HubError::AlreadySubscribed`] if
    /// the connection already subscribes to `topic`.
    ///
    /// When the epoch differs (history lost), nothing is replayed and the
    /// subscription starts at the stream's current position; when it
    /// matches but messages since were trimmed, what is kept is replayed
    /// and `recovered` is `false`.
    pub async fn subscribe_since(
        &self,
        topic: &str,
        sender: &WsSender,
        info: impl Into<SubscriberInfo>,
        since: StreamPosition,
    ) -> Result<Recovery, HubError> {
        let r = self
            .subscribe_inner(topic, sender, info.into(), None, Start::Since(since))
            .await?;
        Ok(r.expect("a recovery for a subscription with a position"))
    }

    async fn subscribe_inner(
        &self,
        topic: &str,
        sender: &WsSender,
        info: SubscriberInfo,
        codec: Option<Arc<dyn Codec>>,
        start: Start,
    ) -> Result<Option<Recovery>, HubError> {
        self.validate(topic)?;
        if sender.is_closed() {
            return Err(HubError::ConnectionClosed);
        }
        let conn = sender.connection_id();
        let name: Arc<str> = topic.into();
        {
            let mut conns = lock(&self.inner.conns);
            let topics = conns.entry(conn).or_default();
            if topics.contains(topic) {
                drop(conns);
                if !matches!(start, Start::Now) {
                    return Err(HubError::AlreadySubscribed);
                }
                if let Some(t) = self.topic(topic) {
                    if let Some(s) = t.lock().subs.iter_mut().find(|s| s.conn == conn) {
                        s.info = Arc::new(info);
                    }
                }
                return Ok(None);
            }
            let limit = self.inner.limits.max_topics_per_connection;
            if topics.len() >= limit {
                if topics.is_empty() {
                    conns.remove(&conn);
                }
                return Err(HubError::TooManyTopicsForConnection { limit });
            }
            topics.insert(name.clone());
        }
        let r = self.register(&name, conn, sender, info, codec, start).await;
        if r.is_err() {
            self.inner.forget(conn, &name);
        }
        self.inner.sync_gauges();
        r
    }

    async fn register(
        &self,
        name: &Arc<str>,
        conn: u64,
        sender: &WsSender,
        info: SubscriberInfo,
        codec: Option<Arc<dyn Codec>>,
        start: Start,
    ) -> Result<Option<Recovery>, HubError> {
        let topic = loop {
            let topic = self.inner.topic_entry(name)?;
            let mut interest = topic.interest.lock().await;
            if topic.removed.load(Ordering::Acquire) {
                continue;
            }
            if !*interest {
                if let Err(e) = self.inner.backplane.subscribe(name).await {
                    drop(interest);
                    self.inner.release(&topic).await.ok();
                    return Err(e);
                }
                *interest = true;
            }
            let mut st = topic.lock();
            match start {
                Start::Now => {
                    st.subs.push(Sub {
                        conn,
                        sender: sender.clone(),
                        info: Arc::new(info),
                        skip: None,
                        codec,
                    });
                    return Ok(None);
                }
                Start::NowWithPosition | Start::Since(_) => st.pending.push(Pending {
                    conn,
                    buffer: Vec::new(),
                    overflowed: false,
                }),
            }
            drop(st);
            drop(interest);
            break topic;
        };
        let (since, history) = match start {
            Start::Since(since) => {
                let history = self.inner.backplane.history(name, Some(&since)).await;
                (since, history)
            }
            _ => match self.inner.backplane.position(name).await {
                // Starting at the current position is a recovery from it
                // with nothing to replay but what comes meanwhile.
                Ok(position) => (
                    position.clone(),
                    Ok(History {
                        publications: Vec::new(),
                        position,
                        complete: true,
                    }),
                ),
                Err(e) => (StreamPosition::default(), Err(e)),
            },
        };
        let (r, empty) = finish_recovery(
            &topic,
            Subscriber {
                conn,
                sender,
                info,
                codec,
            },
            &since,
            history,
            &self.inner.counters,
        );
        if r.is_err() && empty {
            self.inner.release(&topic).await.ok();
        }
        r.map(Some)
    }

    /// Unsubscribes the connection of `sender` from `topic`; returns
    /// whether it was subscribed. When it was the topic's last subscriber
    /// here, the node's interest is withdrawn from the backplane (whose
    /// error is returned, the local unsubscription done anyway).
    pub async fn unsubscribe(&self, topic: &str, sender: &WsSender) -> Result<bool, HubError> {
        let conn = sender.connection_id();
        let was = {
            let mut conns = lock(&self.inner.conns);
            let was = conns.get_mut(&conn).is_some_and(|t| t.remove(topic));
            if conns.get(&conn).is_some_and(|t| t.is_empty()) {
                conns.remove(&conn);
            }
            was
        };
        if !was {
            return Ok(false);
        }
        let r = self.inner.remove_sub(topic, conn).await;
        self.inner.sync_gauges();
        r.map(|()| true)
    }

    /// Unsubscribes the connection of `sender` from every topic (call it
    /// when the connection ends; closed connections are also dropped
    /// lazily, by the next publication to each of their topics). Returns
    /// how many subscriptions it had. Backplane errors are returned after
    /// every topic was done locally.
    pub async fn unsubscribe_all(&self, sender: &WsSender) -> Result<usize, HubError> {
        let conn = sender.connection_id();
        let topics = lock(&self.inner.conns).remove(&conn).unwrap_or_default();
        let n = topics.len();
        let mut first_err = None;
        for t in topics {
            if let Err(e) = self.inner.remove_sub(&t, conn).await {
                first_err.get_or_insert(e);
            }
        }
        self.inner.sync_gauges();
        first_err.map_or(Ok(n), Err)
    }

    /// Publishes `message` to `topic` through the backplane, which assigns
    /// its offset, keeps it in history and delivers it to every node with
    /// subscribers — this one included — where it is offered to each
    /// subscriber's queue (never waiting for one). Returns the message's
    /// position. An error (the backplane cannot reach its broker) means
    /// the message was not published.
    ///
    /// The message is encoded once per wire form and shared by every
    /// queue it is in.
    pub async fn publish(
        &self,
        topic: &str,
        message: impl Into<PreparedMessage>,
    ) -> Result<StreamPosition, HubError> {
        self.validate(topic)?;
        let history = self.history_limits(topic);
        let r = self
            .inner
            .backplane
            .publish(topic, message.into(), history)
            .await;
        match &r {
            Ok(_) => {
                self.inner.counters.add(1, Fanout::default());
                crate::metrics::published();
            }
            Err(e) => {
                tracing::debug!(topic, error = %e, "publish failed");
                self.inner.publish_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    /// The topic's history kept after `since` (all of it with `None`) and
    /// its current position, from the backplane.
    pub async fn history(
        &self,
        topic: &str,
        since: Option<&StreamPosition>,
    ) -> Result<History, HubError> {
        self.validate(topic)?;
        self.inner.backplane.history(topic, since).await
    }

    /// Drops the topic's history: the next publication starts a new epoch
    /// (subscribers recovering from an older position will be told they
    /// did not recover).
    pub async fn remove_history(&self, topic: &str) -> Result<(), HubError> {
        self.validate(topic)?;
        self.inner.backplane.remove_history(topic).await
    }

    /// Subscribers of `topic` on this hub.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.topic(topic).map_or(0, |t| t.lock().subs.len())
    }

    /// Subscribers of `topic` on every node: this hub's, plus what the
    /// backplane knows of the other nodes' (the same as
    /// [`subscriber_count`](Self::subscriber_count) on a backplane without
    /// shared presence, such as [`MemoryBackplane`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), silverback_hub::HubError> {
    /// let hub = silverback_hub::Hub::new();
    /// assert_eq!(hub.presence_count("room").await?, 0);
    /// # Ok(()) }
    /// ```
    pub async fn presence_count(&self, topic: &str) -> Result<usize, HubError> {
        self.validate(topic)?;
        let remote = self.inner.backplane.remote_subscriber_count(topic).await?;
        Ok(self.subscriber_count(topic) + remote)
    }

    /// The [`SubscriberInfo`] of each subscriber of `topic` on this hub
    /// (one per connection, in no particular order).
    pub fn presence(&self, topic: &str) -> Vec<Arc<SubscriberInfo>> {
        self.topic(topic).map_or_else(Vec::new, |t| {
            t.lock().subs.iter().map(|s| s.info.clone()).collect()
        })
    }

    /// The topics the connection of `sender` subscribes to.
    pub fn subscriptions(&self, sender: &WsSender) -> Vec<String> {
        lock(&self.inner.conns)
            .get(&sender.connection_id())
            .map_or_else(Vec::new, |t| t.iter().map(|s| s.to_string()).collect())
    }

    /// The topics with subscribers on this hub.
    pub fn topics(&self) -> Vec<String> {
        read(&self.inner.topics)
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    /// The hub's counters.
    pub fn stats(&self) -> HubStats {
        let (topics, subscriptions) = {
            let map = read(&self.inner.topics);
            (map.len(), map.values().map(|t| t.lock().subs.len()).sum())
        };
        let c = &self.inner.counters;
        HubStats {
            topics,
            connections: lock(&self.inner.conns).len(),
            subscriptions,
            published: Counters::get(&c.published),
            publish_errors: self.inner.publish_errors.load(Ordering::Relaxed),
            received: self.inner.received.load(Ordering::Relaxed),
            delivered: Counters::get(&c.delivered),
            dropped: Counters::get(&c.dropped),
            closed_slow: Counters::get(&c.closed_slow),
        }
    }

    /// The counters of `topic`, if it has subscribers on this hub.
    pub fn topic_stats(&self, topic: &str) -> Option<TopicStats> {
        let t = self.topic(topic)?;
        let c = &t.counters;
        let subscribers = t.lock().subs.len();
        Some(TopicStats {
            subscribers,
            published: Counters::get(&c.published),
            delivered: Counters::get(&c.delivered),
            dropped: Counters::get(&c.dropped),
            closed_slow: Counters::get(&c.closed_slow),
        })
    }

    fn topic(&self, topic: &str) -> Option<Arc<Topic>> {
        read(&self.inner.topics).get(topic).cloned()
    }

    fn validate(&self, topic: &str) -> Result<(), HubError> {
        topic::validate(topic, self.inner.limits.max_topic_len)
    }

    fn history_limits(&self, topic: &str) -> HistoryLimits {
        read(&self.inner.options)
            .get(topic)
            .and_then(|o| o.history)
            .unwrap_or(self.inner.history)
    }
}

/// A subscriber being added.
struct Subscriber<'a> {
    conn: u64,
    sender: &'a WsSender,
    info: SubscriberInfo,
    codec: Option<Arc<dyn Codec>>,
}

/// Replays `history` (then the live publications held meanwhile) to a
/// pending subscriber and makes it live, under the topic's lock; returns
/// whether the topic is left empty.
fn finish_recovery(
    topic: &Topic,
    sub: Subscriber<'_>,
    since: &StreamPosition,
    history: Result<History, HubError>,
    hub_counters: &Counters,
) -> (Result<Recovery, HubError>, bool) {
    let Subscriber {
        conn,
        sender,
        info,
        codec,
    } = sub;
    let mut st = topic.lock();
    let Some(i) = st.pending.iter().position(|p| p.conn == conn) else {
        // Unsubscribed meanwhile.
        return (Err(HubError::ConnectionClosed), st.is_empty());
    };
    let pending = st.pending.swap_remove(i);
    let history = match history {
        Ok(h) => h,
        Err(e) => return (Err(e), st.is_empty()),
    };
    let mut recovered = history.complete && !pending.overflowed;
    let matched = history.position.epoch == since.epoch;
    let mut epoch: Arc<str> = history.position.epoch.as_str().into();
    let mut last = if matched {
        since.offset
    } else {
        history.position.offset
    };
    let mut position = history.position.clone();
    let mut f = Fanout::default();
    let mut replayed = 0;
    let mut alive = true;
    let overflow = st.overflow.clone();
    for p in history.publications.iter().chain(&pending.buffer) {
        if *p.epoch != *epoch {
            // The stream was reset while its history was fetched.
            recovered = false;
            epoch = p.epoch.clone();
            last = 0;
        }
        if p.offset <= last {
            continue;
        }
        let before = f.delivered;
        let mut encoded = Vec::new();
        let m = topic::wire_form(p, codec.as_ref(), &mut encoded);
        alive = topic::offer(sender, m, &overflow, &mut f);
        if f.delivered == before || f.dropped > 0 {
            recovered = false;
        }
        if !alive {
            break;
        }
        replayed += 1;
        last = p.offset;
        position = p.position();
    }
    if alive {
        st.subs.push(Sub {
            conn,
            sender: sender.clone(),
            info: Arc::new(info),
            skip: Some((epoch, last)),
            codec,
        });
    }
    let empty = st.is_empty();
    drop(st);
    topic.counters.add(0, f);
    hub_counters.add(0, f);
    crate::metrics::fanout(&overflow, f);
    if !alive {
        return (Err(HubError::ConnectionClosed), empty);
    }
    let r = Recovery {
        recovered,
        replayed,
        position,
    };
    (Ok(r), empty)
}

impl Inner {
    /// The topic, created if missing (within the limit).
    fn topic_entry(&self, name: &Arc<str>) -> Result<Arc<Topic>, HubError> {
        if let Some(t) = read(&self.topics).get(name) {
            return Ok(t.clone());
        }
        let mut map = write(&self.topics);
        if let Some(t) = map.get(name) {
            return Ok(t.clone());
        }
        let limit = self.limits.max_topics;
        if map.len() >= limit {
            return Err(HubError::TooManyTopics { limit });
        }
        let overflow = read(&self.options)
            .get(name)
            .and_then(|o| o.overflow.clone())
            .unwrap_or_else(|| self.overflow.clone());
        let t = Arc::new(Topic::new(name.clone(), overflow));
        map.insert(name.clone(), t.clone());
        Ok(t)
    }

    /// Fans a publication from the backplane out to the local subscribers.
    fn deliver(self: Arc<Self>, p: &Publication) {
        let Some(topic) = read(&self.topics).get(&*p.topic).cloned() else {
            return;
        };
        let mut gone = Vec::new();
        let mut st = topic.lock();
        let Some(f) = st.fan_out(p, &mut gone) else {
            return;
        };
        crate::metrics::fanout(&st.overflow, f);
        let empty = st.is_empty();
        drop(st);
        self.received.fetch_add(1, Ordering::Relaxed);
        topic.counters.add(1, f);
        self.counters.add(0, f);
        if gone.is_empty() {
            return;
        }
        for conn in &gone {
            self.forget(*conn, &topic.name);
        }
        if empty {
            // Withdraw the node's interest; needs the backplane (async).
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let inner = self.clone();
                rt.spawn(async move {
                    if let Err(e) = inner.release(&topic).await {
                        tracing::debug!(topic = %topic.name, error = %e, "unsubscribe failed");
                    }
                });
            }
        }
    }

    /// The backplane reset the topic's stream: subscribers are told (by
    /// their codec's notice) and delivery goes on after `position`.
    fn reset(&self, name: &str, position: &StreamPosition) {
        let Some(topic) = read(&self.topics).get(name).cloned() else {
            return;
        };
        let mut st = topic.lock();
        st.last = Some((position.epoch.as_str().into(), position.offset));
        // A recovery under way cannot be complete any more.
        for p in &mut st.pending {
            p.overflowed = true;
        }
        let overflow = st.overflow.clone();
        let mut f = Fanout::default();
        let mut notices: Vec<(*const (), Option<PreparedMessage>)> = Vec::new();
        for sub in &mut st.subs {
            sub.skip = None;
            let Some(codec) = &sub.codec else { continue };
            let key = Arc::as_ptr(codec) as *const ();
            let i = match notices.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    notices.push((key, codec.reset(name, position)));
                    notices.len() - 1
                }
            };
            if let Some(m) = &notices[i].1 {
                topic::offer(&sub.sender, m, &overflow, &mut f);
            }
        }
        drop(st);
        tracing::debug!(topic = name, offset = position.offset, epoch = %position.epoch, "stream reset");
    }

    /// Removes `topic` from the connection's set.
    fn forget(&self, conn: u64, topic: &str) {
        {
            let mut conns = lock(&self.conns);
            if let Some(t) = conns.get_mut(&conn) {
                t.remove(topic);
                if t.is_empty() {
                    conns.remove(&conn);
                }
            }
        }
        self.sync_gauges();
    }

    /// Brings the process-wide gauges up to date with this hub.
    fn sync_gauges(&self) {
        self.gauges
            .sync(|| (read(&self.topics).len(), lock(&self.conns).len()));
    }

    /// Removes the connection's subscription from `topic`, releasing the
    /// topic if it was the last.
    async fn remove_sub(&self, topic: &str, conn: u64) -> Result<(), HubError> {
        let Some(t) = read(&self.topics).get(topic).cloned() else {
            return Ok(());
        };
        let empty = {
            let mut st = t.lock();
            if let Some(i) = st.subs.iter().position(|s| s.conn == conn) {
                st.subs.swap_remove(i);
            }
            st.pending.retain(|p| p.conn != conn);
            st.is_empty()
        };
        if empty {
            self.release(&t).await?;
        }
        Ok(())
    }

    /// If `topic` has no subscriber left: withdraws the node's interest
    /// and drops the topic.
    async fn release(&self, topic: &Arc<Topic>) -> Result<(), HubError> {
        let mut interest = topic.interest.lock().await;
        if topic.removed.load(Ordering::Acquire) || !topic.lock().is_empty() {
            return Ok(());
        }
        let r = if *interest {
            self.backplane.unsubscribe(&topic.name).await
        } else {
            Ok(())
        };
        *interest = false;
        // Subscribers are only added under `interest`: still empty.
        let mut map = write(&self.topics);
        if map.get(&topic.name).is_some_and(|t| Arc::ptr_eq(t, topic)) {
            map.remove(&topic.name);
        }
        drop(map);
        topic.removed.store(true, Ordering::Release);
        self.sync_gauges();
        r
    }
}
