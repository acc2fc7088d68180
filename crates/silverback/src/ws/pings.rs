//! Pings awaiting their Pong, and round-trip times.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Most pings awaiting their Pong; older ones are dropped (their
/// [`PongFuture`] fails).
const MAX_PENDING_PINGS: usize = 64;

/// Resolves with the round-trip time when the Pong answering a
/// [`ping`](crate::WebSocket::ping) arrives (received by whoever calls
/// `recv`). Fails with [`ErrorKind::AlreadyClosed`](crate::ErrorKind) if
/// the connection ends first.
#[derive(Debug)]
pub struct PongFuture {
    rx: oneshot::Receiver<Duration>,
}

impl Future for PongFuture {
    type Output = Result<Duration, crate::Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map_err(|_| crate::Error::new(crate::ErrorKind::AlreadyClosed))
    }
}

#[derive(Default)]
pub(crate) struct Pings {
    /// The application's pings, oldest first.
    pending: VecDeque<(Bytes, Instant, oneshot::Sender<Duration>)>,
    /// The keepalive ping in flight: its payload and when it left.
    keepalive: Option<([u8; 4], Instant)>,
    last_rtt: Option<Duration>,
}

impl Pings {
    /// The application sent a Ping with `payload`.
    pub(crate) fn sent(&mut self, payload: &[u8]) -> PongFuture {
        let (tx, rx) = oneshot::channel();
        if self.pending.len() >= MAX_PENDING_PINGS {
            self.pending.pop_front();
        }
        self.pending
            .push_back((Bytes::copy_from_slice(payload), Instant::now(), tx));
        PongFuture { rx }
    }

    /// A keepalive Ping with `payload` left.
    pub(crate) fn keepalive_sent(&mut self, payload: [u8; 4]) {
        self.keepalive = Some((payload, Instant::now()));
    }

    /// A Pong arrived: it answers the matching ping and every earlier one.
    /// Returns the round-trip time it measured, if it answered a ping.
    pub(crate) fn pong(&mut self, payload: &[u8]) -> Option<Duration> {
        let mut measured = false;
        if let Some((_, sent)) = self.keepalive.filter(|(p, _)| p[..] == *payload) {
            self.keepalive = None;
            self.last_rtt = Some(sent.elapsed());
            measured = true;
        }
        if let Some(pos) = self.pending.iter().position(|(p, ..)| p == payload) {
            for (_, sent, tx) in self.pending.drain(..=pos) {
                let rtt = sent.elapsed();
                self.last_rtt = Some(rtt);
                let _ = tx.send(rtt);
            }
            measured = true;
        }
        self.last_rtt.filter(|_| measured)
    }

    /// Nothing awaits a Pong: what a parked connection keeps (the last
    /// round-trip time), or `None` if something does.
    pub(crate) fn park(&self) -> Option<Option<Duration>> {
        (self.pending.is_empty() && self.keepalive.is_none()).then_some(self.last_rtt)
    }

    /// The pings of a connection taken out of its parking.
    pub(crate) fn resumed(last_rtt: Option<Duration>) -> Self {
        Self {
            last_rtt,
            ..Self::default()
        }
    }

    /// The round-trip time of the last answered ping (keepalive or not).
    pub(crate) fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    /// The connection ended: pending pings fail.
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.keepalive = None;
    }
}
