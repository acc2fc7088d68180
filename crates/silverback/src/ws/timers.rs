//! The clocks of one connection: keepalive, idle, write and close
//! deadlines. Each is allocated only once it is needed, and each is polled
//! by the task that acts on it (the reader for keepalive and idle, the
//! writer for the write timeout, whoever finishes the connection for the
//! close timeout), so split halves in two tasks each get their wake-ups.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use silverback_proto::Timeout;
use tokio::time::{Instant, Sleep};

use crate::Config;

/// What a read-side timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Idle for a whole ping interval: send this keepalive Ping.
    Ping(u32),
    /// The connection must end.
    Expired(Timeout),
}

/// Keepalive: the timer and whether a ping awaits an answer.
struct Keepalive {
    timer: Pin<Box<Sleep>>,
    /// A keepalive ping is out and nothing was received since.
    waiting: bool,
}

pub(crate) struct Timers {
    /// When something was last received (keepalive and idle timeout).
    last_rx: Instant,
    keepalive: Option<Keepalive>,
    /// Keepalive pings sent (their payload).
    counter: u32,
    idle: Option<Pin<Box<Sleep>>>,
    write: Option<Pin<Box<Sleep>>>,
    close: Option<Pin<Box<Sleep>>>,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Self::resumed(Instant::now(), 0)
    }

    /// The timers of a connection taken out of its parking: only when
    /// something was last received and the keepalive count are kept (the
    /// timers are made again from them when polled).
    pub(crate) fn resumed(last_rx: Instant, counter: u32) -> Self {
        Self {
            last_rx,
            keepalive: None,
            counter,
            idle: None,
            write: None,
            close: None,
        }
    }

    /// Something was received: the peer is alive.
    pub(crate) fn received(&mut self, config: &Config) {
        if config.ping_interval.is_none() && config.idle_timeout.is_none() {
            return;
        }
        self.last_rx = Instant::now();
        if let (Some(ka), Some(interval)) = (self.keepalive.as_mut(), config.ping_interval) {
            if ka.waiting {
                // Answered: the next Ping is due an interval from now, not
                // when the answer's timeout would have expired.
                ka.waiting = false;
                ka.timer.as_mut().reset(self.last_rx + interval);
            }
        }
    }

    /// Polls the keepalive and idle timers (the reader does, while it
    /// waits for input).
    pub(crate) fn poll_read_side(&mut self, cx: &mut Context<'_>, config: &Config) -> Option<Due> {
        if let Some(interval) = config.ping_interval {
            if let Some(due) = self.poll_keepalive(cx, interval, config.ping_timeout) {
                return Some(due);
            }
        }
        let idle = config.idle_timeout?;
        let due = self.last_rx + idle;
        let timer = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        timer
            .as_mut()
            .poll(cx)
            .is_ready()
            .then_some(Due::Expired(Timeout::Idle))
    }

    fn poll_keepalive(
        &mut self,
        cx: &mut Context<'_>,
        interval: Duration,
        ping_timeout: Duration,
    ) -> Option<Due> {
        let last_rx = self.last_rx;
        let ka = self.keepalive.get_or_insert_with(|| Keepalive {
            timer: Box::pin(tokio::time::sleep_until(last_rx + interval)),
            waiting: false,
        });
        while ka.timer.as_mut().poll(cx).is_ready() {
            if ka.waiting {
                return Some(Due::Expired(Timeout::Keepalive));
            }
            let now = Instant::now();
            let due = last_rx + interval;
            if now >= due {
                self.counter = self.counter.wrapping_add(1);
                ka.waiting = true;
                ka.timer.as_mut().reset(now + ping_timeout);
                return Some(Due::Ping(self.counter));
            }
            // Something arrived since the timer was set: wait the rest.
            ka.timer.as_mut().reset(due);
        }
        None
    }

    /// A write is blocked (`progress`: some bytes went out first): polls
    /// the write timeout; `true` when it expired.
    pub(crate) fn poll_write_blocked(
        &mut self,
        cx: &mut Context<'_>,
        limit: Option<Duration>,
        progress: bool,
    ) -> bool {
        let Some(limit) = limit else { return false };
        let timer = self
            .write
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if progress {
            timer.as_mut().reset(Instant::now() + limit);
        }
        timer.as_mut().poll(cx).is_ready()
    }

    /// The output drained: no write is waiting.
    pub(crate) fn write_done(&mut self) {
        self.write = None;
    }

    /// Waits for the closing handshake, at most `timeout` from the first
    /// wait (the timer is armed only when something must be waited for:
    /// a close that completes at once costs no timer). `Ready` when it
    /// expired.
    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>, timeout: Duration) -> Poll<()> {
        self.close
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)))
            .as_mut()
            .poll(cx)
    }

    /// Whether the close timer, if armed, expired.
    pub(crate) fn close_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.close
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
    }

    /// What a parked connection keeps (`None`: a keepalive Ping awaits
    /// its answer, or a write or close is under way: not parkable).
    pub(crate) fn park(&self) -> Option<(Instant, u32)> {
        let waiting = self.keepalive.as_ref().is_some_and(|ka| ka.waiting);
        (!waiting && self.write.is_none() && self.close.is_none())
            .then_some((self.last_rx, self.counter))
    }

    /// When a parked connection with `last_rx` must be polled again: its
    /// next keepalive Ping, or its idle timeout.
    pub(crate) fn next_due(last_rx: Instant, config: &Config) -> Option<Instant> {
        let ping = config.ping_interval.map(|i| last_rx + i);
        let idle = config.idle_timeout.map(|i| last_rx + i);
        match (ping, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The connection ended: free every timer.
    pub(crate) fn clear(&mut self) {
        self.keepalive = None;
        self.idle = None;
        self.write = None;
        self.close = None;
    }
}
