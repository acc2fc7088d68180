//! Topics: names, per-topic options, and the local fan-out.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use silverback::{Offered, Overflow, PreparedMessage, WsSender};

use crate::codec::Codec;
use crate::error::HubError;
use crate::history::{HistoryLimits, Publication};
use crate::presence::SubscriberInfo;
use crate::stats::{Counters, Fanout};

/// Options of one topic, overriding the hub's
/// ([`Hub::set_topic_options`](crate::Hub::set_topic_options)).
///
/// ```
/// use silverback::{CloseCode, Overflow};
/// use silverback_hub::{HistoryLimits, TopicOptions};
/// use std::time::Duration;
/// let prices = TopicOptions::new().overflow(Overflow::DropOldest);
/// let chat = TopicOptions::new()
///     .history(HistoryLimits::new(100, Some(Duration::from_secs(300))))
///     .overflow(Overflow::Close(CloseCode::TryAgainLater, "slow consumer"));
/// # let _ = (prices, chat);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicOptions {
    /// What to do when a subscriber's queue is full (`None`: the hub's).
    pub overflow: Option<Overflow>,
    /// History kept (`None`: the hub's).
    pub history: Option<HistoryLimits>,
}

impl TopicOptions {
    /// No override.
    pub fn new() -> Self {
        Self::default()
    }

    /// Overflow policy for this topic.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }

    /// History limits for this topic.
    pub fn history(mut self, history: HistoryLimits) -> Self {
        self.history = Some(history);
        self
    }
}

/// Checks a topic name: not empty, at most `max_len` bytes, no control
/// characters.
pub(crate) fn validate(name: &str, max_len: usize) -> Result<(), HubError> {
    if name.is_empty() {
        return Err(HubError::InvalidTopic("empty"));
    }
    if name.len() > max_len {
        return Err(HubError::InvalidTopic("too long"));
    }
    if name.chars().any(char::is_control) {
        return Err(HubError::InvalidTopic("control character"));
    }
    Ok(())
}

/// Most live publications kept for one subscriber while its history is
/// fetched; past it the recovery is reported incomplete.
pub(crate) const MAX_PENDING: usize = 16 * 1024;

/// One topic on one hub.
pub(crate) struct Topic {
    pub name: Arc<str>,
    /// Whether this node told the backplane it is interested. Held across
    /// the backplane's subscribe/unsubscribe and while subscribers are
    /// added, so that "first subscriber" and "last subscriber" transitions
    /// do not interleave.
    pub interest: tokio::sync::Mutex<bool>,
    /// Taken out of the hub's map: look again. Set under `interest`.
    pub removed: AtomicBool,
    pub state: Mutex<TopicState>,
    pub counters: Counters,
}

pub(crate) struct TopicState {
    pub subs: Vec<Sub>,
    /// Subscribers whose history is being fetched: live publications wait
    /// here, to be queued after the history.
    pub pending: Vec<Pending>,
    pub overflow: Overflow,
    /// The last publication fanned out (epoch, offset): older or equal
    /// offsets of the same epoch are duplicates.
    pub last: Option<(Arc<str>, u64)>,
}

pub(crate) struct Sub {
    pub conn: u64,
    pub sender: WsSender,
    pub info: Arc<SubscriberInfo>,
    /// Replayed up to this offset of this epoch: skip live ones up to it.
    pub skip: Option<(Arc<str>, u64)>,
    /// The wire form (`None`: the publication's message as it is).
    pub codec: Option<Arc<dyn Codec>>,
}

/// A codec's identity: the address of its value (the same `Arc`).
fn codec_key(c: &Arc<dyn Codec>) -> *const () {
    Arc::as_ptr(c) as *const ()
}

/// The message of `p` for a subscriber with `codec`: the publication's own
/// message, or its encoding, made once per codec and kept in `encoded`
/// (which allocates only when a subscriber has a codec).
pub(crate) fn wire_form<'a>(
    p: &'a Publication,
    codec: Option<&Arc<dyn Codec>>,
    encoded: &'a mut Vec<(*const (), PreparedMessage)>,
) -> &'a PreparedMessage {
    let Some(codec) = codec else {
        return &p.message;
    };
    let key = codec_key(codec);
    let i = match encoded.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            encoded.push((key, codec.encode(p)));
            encoded.len() - 1
        }
    };
    &encoded[i].1
}

pub(crate) struct Pending {
    pub conn: u64,
    pub buffer: Vec<Publication>,
    pub overflowed: bool,
}

impl Topic {
    pub fn new(name: Arc<str>, overflow: Overflow) -> Self {
        Self {
            name,
            interest: tokio::sync::Mutex::new(false),
            removed: AtomicBool::new(false),
            state: Mutex::new(TopicState {
                subs: Vec::new(),
                pending: Vec::new(),
                overflow,
                last: None,
            }),
            counters: Counters::default(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, TopicState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TopicState {
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.pending.is_empty()
    }

    /// Offers `p` to every subscriber; returns the counts (`None` for a
    /// duplicate) and pushes the connections that are gone to `gone`.
    pub fn fan_out(&mut self, p: &Publication, gone: &mut Vec<u64>) -> Option<Fanout> {
        if let Some((epoch, offset)) = &self.last {
            if p.offset <= *offset && (Arc::ptr_eq(epoch, &p.epoch) || **epoch == *p.epoch) {
                return None;
            }
        }
        self.last = Some((p.epoch.clone(), p.offset));
        for pending in &mut self.pending {
            if pending.buffer.len() < MAX_PENDING {
                pending.buffer.push(p.clone());
            } else {
                pending.overflowed = true;
            }
        }
        let mut f = Fanout::default();
        let mut dead = false;
        let mut encoded = Vec::new();
        for sub in &mut self.subs {
            if let Some((epoch, until)) = &sub.skip {
                if **epoch == *p.epoch && p.offset <= *until {
                    continue;
                }
                sub.skip = None;
            }
            let m = wire_form(p, sub.codec.as_ref(), &mut encoded);
            if !offer(&sub.sender, m, &self.overflow, &mut f) {
                dead = true;
            }
        }
        if dead {
            self.subs.retain(|s| {
                let closed = s.sender.is_closed();
                if closed {
                    gone.push(s.conn);
                }
                !closed
            });
        }
        Some(f)
    }
}

/// Offers `m` to one subscriber, counting; `false` when the subscriber is
/// gone (closed, or closed now by the policy).
pub(crate) fn offer(
    sender: &WsSender,
    m: &PreparedMessage,
    overflow: &Overflow,
    f: &mut Fanout,
) -> bool {
    match sender.offer(m, overflow) {
        Offered::Queued => f.delivered += 1,
        Offered::DroppedOldest(n) => {
            f.delivered += 1;
            f.dropped += n as u64;
        }
        Offered::DroppedNew => f.dropped += 1,
        Offered::Closing(n) => {
            f.dropped += n as u64;
            f.closed_slow += 1;
            return false;
        }
        Offered::Closed => return false,
        _ => {}
    }
    true
}
