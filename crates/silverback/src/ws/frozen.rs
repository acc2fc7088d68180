//! A connection between messages without its transport, its buffers and
//! its timers: what [`Parking`](crate::park::Parking) holds for an idle
//! connection (a few hundred bytes, against a task, a future, a reactor
//! registration and a timer for a running one).

use std::sync::Arc;
use std::time::Duration;

use silverback_proto::extension::deflate::DeflateParams;
use silverback_proto::Suspended;
use tokio::time::Instant;

use super::{Extras, Flags, Hooks, Pings, Timers, WebSocket};
use crate::metrics::ConnMetrics;
use crate::shutdown::{Counters, Shutdown, ShutdownGuard};
use crate::Config;

/// A [`WebSocket`] parked: everything that outlives a message, nothing
/// else.
pub(crate) struct Frozen {
    conn: Suspended,
    config: Arc<Config>,
    last_rx: Instant,
    opened: Instant,
    last_rtt: Option<Duration>,
    keepalive_counter: u32,
    flags: Flags,
    deflate: Option<DeflateParams>,
    extras: Option<Box<Extras>>,
    shutdown: Option<ShutdownGuard>,
    stats: Counters,
    metrics: ConnMetrics,
    /// Out of its box while parked: the parking keeps its connections in
    /// one vector, and a box would be one more small allocation left
    /// among the freed ones of the connection's running days.
    upgrade: Option<crate::request::UpgradeInfo>,
    hooks: Option<Box<Hooks>>,
}

impl<S> WebSocket<S> {
    /// Whether [`freeze`](Self::freeze) would succeed: open, between
    /// messages, nothing buffered either way, no Ping awaiting its Pong,
    /// no write or close under way, no [`WsSender`](crate::WsSender), no
    /// shutdown begun.
    pub(crate) fn is_parkable(&self) -> bool {
        self.conn.is_suspendable()
            && self.pings.park().is_some()
            && self.timers.park().is_some()
            && self.send_queue.is_none()
            && self.io_error.is_none()
            && !self.flags.draining
            && !self.flags.ended
            && !self.flags.http2
            && !self
                .shutdown
                .as_ref()
                .is_some_and(ShutdownGuard::is_draining)
    }

    /// Splits the connection into its transport and its frozen state, or
    /// gives it back if it is not [parkable](Self::is_parkable).
    #[allow(clippy::result_large_err)] // gives the connection back as it was, no allocation
    pub(crate) fn freeze(mut self) -> Result<(S, Frozen), Self> {
        if !self.is_parkable() {
            return Err(self);
        }
        let (Some(last_rtt), Some((last_rx, keepalive_counter))) =
            (self.pings.park(), self.timers.park())
        else {
            return Err(self);
        };
        self.metrics.flush();
        if let Some(guard) = self.shutdown.as_mut() {
            guard.park();
        }
        let conn = match self.conn.suspend() {
            Ok(c) => c,
            // Checked by `is_parkable`: never taken.
            Err(_) => unreachable!("a parkable connection suspends"),
        };
        let frozen = Frozen {
            conn,
            config: self.config,
            last_rx,
            opened: self.opened,
            last_rtt,
            keepalive_counter,
            flags: self.flags,
            deflate: self.deflate,
            extras: self.extras,
            shutdown: self.shutdown,
            stats: self.stats,
            metrics: self.metrics,
            upgrade: self.upgrade.map(|b| *b),
            hooks: self.hooks,
        };
        Ok((self.io, frozen))
    }
}

impl Frozen {
    /// The connection again, over `io` (the transport `freeze` gave).
    pub(crate) fn thaw<S>(self, io: S) -> WebSocket<S> {
        WebSocket {
            io,
            conn: self.conn.resume(self.config.proto()),
            timers: Timers::resumed(self.last_rx, self.keepalive_counter),
            pings: Pings::resumed(self.last_rtt),
            config: self.config,
            extras: self.extras,
            shutdown: self.shutdown,
            send_queue: None,
            io_error: None,
            flags: self.flags,
            stats: self.stats,
            metrics: self.metrics,
            deflate: self.deflate,
            opened: self.opened,
            upgrade: self.upgrade.map(Box::new),
            hooks: self.hooks,
        }
    }

    /// When the parked connection must run again even if nothing arrives:
    /// its next keepalive Ping or its idle timeout.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        Timers::next_due(self.last_rx, &self.config)
    }

    /// The shutdown the connection is tracked by, if any.
    pub(crate) fn shutdown(&self) -> Option<Shutdown> {
        self.shutdown.as_ref().map(ShutdownGuard::handle)
    }
}
