//! Parking: idle connections held without a task, a reactor registration
//! or a timer of their own.
//!
//! A running connection costs its task (the future that runs its handler,
//! which holds the [`WebSocket`]), the runtime's registration of its socket
//! and its keepalive timer: about 2 KiB. Most connections of a chat, a
//! dashboard or a notification service are idle most of the time. A
//! [`Parking`] holds such a connection in its compact form (a few hundred
//! bytes: the protocol state that outlives a message, the counters, the
//! application's data), watches its socket with an epoll instance of its
//! own and its next keepalive or idle deadline with one timer for all, and
//! hands it back to the application — a `WebSocket` again, to run in a new
//! task — when something arrives, when a deadline comes, or when the
//! server shuts down.
//!
//! ```no_run
//! use std::time::Duration;
//! use silverback::park::Parking;
//! use silverback::{Upgrader, WebSocket};
//! use tokio::net::{TcpListener, TcpStream};
//!
//! /// Echoes; after a second without traffic, parks the connection.
//! async fn echo(mut ws: WebSocket<TcpStream>, parking: Parking<()>) {
//!     loop {
//!         match tokio::time::timeout(Duration::from_secs(1), ws.recv()).await {
//!             Ok(Ok(msg)) => {
//!                 if ws.send(msg).await.is_err() {
//!                     return;
//!                 }
//!             }
//!             Ok(Err(_)) => return, // closed
//!             // Idle: parked, this task ends; `parking` runs `echo`
//!             // again when something arrives. Not parkable (a Ping is
//!             // out, say): keep going.
//!             Err(_) => match parking.park(ws, ()) {
//!                 Ok(()) => return,
//!                 Err((back, ())) => ws = back,
//!             },
//!         }
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let parking = Parking::new(|ws, (), parking| {
//!     tokio::spawn(echo(ws, parking.clone()));
//! })?;
//! let listener = TcpListener::bind("127.0.0.1:8080").await?;
//! let upgrader = Upgrader::new();
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let (upgrader, parking) = (upgrader.clone(), parking.clone());
//!     tokio::spawn(async move {
//!         if let Ok(ws) = upgrader.upgrade(stream).await {
//!             echo(ws, parking).await;
//!         }
//!     });
//! }
//! # }
//! ```
//!
//! `recv` is cancel-safe: a message is never lost to the timeout. What a
//! parked connection keeps is all of its state but its buffers and
//! timers, which are empty or unset when it can be parked: a connection is
//! parkable when it is open and between messages, with nothing buffered
//! either way, no Ping awaiting its Pong, no [`WsSender`](crate::WsSender)
//! made, and no shutdown begun. Its [`Stats`](crate::Stats), its
//! keepalive, its idle timeout and its [`Shutdown`]
//! tracking carry on across parking. Only plain TCP connections park (TLS
//! and HTTP/2 streams keep state that lives in their task).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ws::Frozen;
use crate::{Shutdown, WebSocket};

/// What a [`Parking`] calls with a connection it hands back: the
/// connection, the data parked with it, and the parking itself (to park it
/// again later). It usually spawns the task that runs the connection.
type Wake<T> = dyn Fn(WebSocket<TcpStream>, T, &Parking<T>) + Send + Sync;

/// Events taken from the epoll instance at a time.
const EVENTS: usize = 256;

/// Idle connections held without a task: see the [module docs](self).
///
/// Cloning gives another handle to the same parking. Its background task
/// runs until the runtime it was made in shuts down (then the connections
/// still parked are dropped, which closes their sockets).
pub struct Parking<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Parking<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> fmt::Debug for Parking<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parking")
            .field("parked", &self.len())
            .finish_non_exhaustive()
    }
}

struct Shared<T> {
    registry: mio::Registry,
    state: Mutex<State<T>>,
    /// Tells the task that an earlier deadline was set.
    changed: Notify,
    wake: Box<Wake<T>>,
}

struct State<T> {
    /// The parked connections, in one vector (not one allocation each:
    /// they do not pin the pages of the heap that running connections
    /// churn through).
    entries: Slab<Entry<T>>,
    /// Deadlines (keepalive, idle), earliest first: `(when, key, gen)`,
    /// `when` in milliseconds from `epoch`, rounded up; stale ones (the
    /// entry left, or its slot was reused) are skipped.
    due: BinaryHeap<Reverse<(u64, u32, u32)>>,
    epoch: Instant,
    next_gen: u32,
    /// The shutdowns whose start is watched (one task each).
    shutdowns: Vec<Shutdown>,
}

/// One parked connection.
struct Entry<T> {
    stream: MioStream,
    frozen: Frozen,
    data: T,
    gen: u32,
}

impl<T> Parking<T> {
    /// Connections parked now.
    pub fn len(&self) -> usize {
        self.shared.lock().entries.len()
    }

    /// Whether no connection is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Send + 'static> Parking<T> {
    /// A parking whose connections are handed to `wake` when they need to
    /// run (something arrived, a deadline came, the shutdown began). Must
    /// be called within a tokio runtime (with I/O and time enabled): it
    /// starts the parking's task there.
    ///
    /// # Errors
    /// If the epoll instance cannot be made or registered.
    pub fn new<F>(wake: F) -> std::io::Result<Self>
    where
        F: Fn(WebSocket<TcpStream>, T, &Parking<T>) + Send + Sync + 'static,
    {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        // Deprecated in tokio 1.54 for types whose `AsRawFd` could return
        // another descriptor over time, or one they do not own (I/O
        // safety); the safe replacement is an `unsafe fn`. `mio::Poll`
        // owns its epoll descriptor, returns that same one for its whole
        // life and closes it only when dropped, which is what the
        // replacement asks of its callers.
        #[allow(deprecated)]
        let poll = AsyncFd::with_interest(poll, tokio::io::Interest::READABLE)?;
        let shared = Arc::new(Shared {
            registry,
            state: Mutex::new(State {
                entries: Slab::new(),
                due: BinaryHeap::new(),
                epoch: Instant::now(),
                next_gen: 0,
                shutdowns: Vec::new(),
            }),
            changed: Notify::new(),
            wake: Box::new(wake),
        });
        tokio::spawn(run(shared.clone(), poll));
        Ok(Self { shared })
    }

    /// Parks `ws` with `data`: the task that ran it may end. Gives both
    /// back if the connection is not parkable (see the [module
    /// docs](self)) or its socket could not be registered.
    ///
    /// # Errors
    /// The connection and the data, unchanged, when it was not parked.
    #[allow(clippy::result_large_err)] // gives the connection back as it was, no allocation
    pub fn park(&self, ws: WebSocket<TcpStream>, data: T) -> Result<(), (WebSocket<TcpStream>, T)> {
        let (io, frozen) = match ws.freeze() {
            Ok(parts) => parts,
            Err(ws) => return Err((ws, data)),
        };
        let std = match io.into_std() {
            Ok(s) => s,
            Err(e) => {
                // The runtime would not let go of the socket (never seen):
                // it is closed with the connection.
                tracing::warn!(error = %e, "parking: could not take the socket from the runtime");
                return Ok(());
            }
        };
        let mut stream = MioStream::from_std(std);
        let shutdown = frozen.shutdown();
        let mut state = self.shared.lock();
        let key = state.entries.vacant_key();
        let Ok(key32) = u32::try_from(key) else {
            drop(state);
            return give_back(stream, frozen, data);
        };
        if let Err(e) = self
            .shared
            .registry
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            drop(state);
            tracing::debug!(error = %e, "parking: could not register the socket");
            return give_back(stream, frozen, data);
        }
        let gen = state.next_gen;
        state.next_gen = gen.wrapping_add(1);
        let due = frozen.next_due().map(|when| state.millis(when));
        state.entries.insert(Entry {
            stream,
            frozen,
            data,
            gen,
        });
        if let Some(due) = due {
            let earliest = state.due.peek().is_none_or(|Reverse((d, ..))| due < *d);
            state.due.push(Reverse((due, key32, gen)));
            if earliest {
                self.shared.changed.notify_one();
            }
            // Connections woken by their socket leave their deadline
            // behind (skipped when it comes): drop those once they are
            // most of the heap.
            if state.due.len() > 2 * state.entries.len() + 1024 {
                let State { due, entries, .. } = &mut *state;
                due.retain(|Reverse((_, k, g))| {
                    entries.get(*k as usize).is_some_and(|e| e.gen == *g)
                });
            }
        }
        crate::metrics::parked(1.0);
        if let Some(shutdown) = shutdown {
            if !state.shutdowns.iter().any(|s| s.same(&shutdown)) {
                state.shutdowns.push(shutdown.clone());
                tokio::spawn(watch(Arc::downgrade(&self.shared), shutdown));
            }
        }
        Ok(())
    }

    /// Hands every parked connection back (to the `wake` function), now.
    pub fn wake_all(&self) {
        let entries: Vec<_> = self.shared.lock().entries.drain().collect();
        self.shared.resume(entries);
    }
}

/// A connection that could not be parked, as it was (or closed, if the
/// runtime would not take its socket back).
#[allow(clippy::result_large_err)] // as `park`
fn give_back<T>(
    stream: MioStream,
    frozen: Frozen,
    data: T,
) -> Result<(), (WebSocket<TcpStream>, T)> {
    match TcpStream::from_std(std::net::TcpStream::from(OwnedFd::from(stream))) {
        Ok(io) => Err((frozen.thaw(io), data)),
        Err(e) => {
            tracing::warn!(error = %e, "parking: could not give the socket back to the runtime");
            Ok(())
        }
    }
}

impl<T> State<T> {
    /// `when` in the heap's unit: milliseconds from `epoch`, rounded up
    /// (never early).
    fn millis(&self, when: Instant) -> u64 {
        let d = when.saturating_duration_since(self.epoch);
        u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// The earliest deadline, if any.
    fn next_due(&self) -> Option<Instant> {
        self.due
            .peek()
            .map(|Reverse((ms, ..))| self.epoch + Duration::from_millis(*ms))
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic in `wake` cannot leave the state half-changed: recover.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Send + 'static> Shared<T> {
    /// Takes these connections out of the epoll instance and hands them to
    /// `wake`, as `WebSocket`s registered with the runtime again.
    fn resume(self: &Arc<Self>, entries: Vec<Entry<T>>) {
        if entries.is_empty() {
            return;
        }
        crate::metrics::parked(-(entries.len() as f64));
        let handle = Parking {
            shared: self.clone(),
        };
        for entry in entries {
            let Entry {
                mut stream,
                frozen,
                data,
                ..
            } = entry;
            let _ = self.registry.deregister(&mut stream);
            match TcpStream::from_std(std::net::TcpStream::from(OwnedFd::from(stream))) {
                Ok(io) => (self.wake)(frozen.thaw(io), data, &handle),
                Err(e) => {
                    tracing::warn!(error = %e, "parking: could not give the socket back to the runtime");
                }
            }
        }
    }

    /// Removes the entries at `keys` (those still there).
    fn take(&self, keys: impl IntoIterator<Item = usize>) -> Vec<Entry<T>> {
        let mut state = self.lock();
        keys.into_iter()
            .filter_map(|k| state.entries.try_remove(k))
            .collect()
    }

    /// Removes the entries whose deadline came.
    fn take_due(&self, now: Instant) -> Vec<Entry<T>> {
        let mut state = self.lock();
        // Rounded down: due means `when <= now`, never early.
        let now = u64::try_from(now.saturating_duration_since(state.epoch).as_millis())
            .unwrap_or(u64::MAX);
        let mut out = Vec::new();
        while let Some(&Reverse((when, key, gen))) = state.due.peek() {
            if when > now {
                break;
            }
            state.due.pop();
            let key = key as usize;
            if state.entries.get(key).is_some_and(|e| e.gen == gen) {
                out.push(state.entries.remove(key));
            }
        }
        out
    }
}

/// The parking's task: readiness from the epoll instance, deadlines.
async fn run<T: Send + 'static>(shared: Arc<Shared<T>>, mut poll: AsyncFd<Poll>) {
    let mut events = Events::with_capacity(EVENTS);
    let mut keys = Vec::new();
    let mut next: Option<Instant> = None;
    loop {
        let sleep = async {
            match next {
                Some(when) => tokio::time::sleep_until(when).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ready = poll.readable_mut() => {
                let Ok(mut guard) = ready else { return };
                keys.clear();
                loop {
                    events.clear();
                    match guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            tracing::error!(error = %e, "parking: epoll failed");
                            return;
                        }
                    }
                    keys.extend(events.iter().map(|ev| ev.token().0));
                    if events.iter().count() < EVENTS {
                        break;
                    }
                }
                guard.clear_ready();
                let entries = shared.take(keys.drain(..));
                shared.resume(entries);
            }
            () = sleep => {
                let entries = shared.take_due(Instant::now());
                shared.resume(entries);
            }
            () = shared.changed.notified() => {}
        }
        // The earliest deadline now (a new one, or the heap's head after
        // wake-ups).
        next = shared.lock().next_due();
    }
}

/// Waits for `shutdown` to begin, then hands back every connection it
/// tracks (they close with 1001 as running ones do).
async fn watch<T: Send + 'static>(shared: Weak<Shared<T>>, shutdown: Shutdown) {
    shutdown.draining().await;
    let Some(s) = shared.upgrade() else { return };
    let entries = {
        let mut state = s.lock();
        let keys: Vec<usize> = state
            .entries
            .iter()
            .filter(|(_, e)| e.frozen.shutdown().is_some_and(|sd| sd.same(&shutdown)))
            .map(|(k, _)| k)
            .collect();
        state.shutdowns.retain(|sd| !sd.same(&shutdown));
        keys.into_iter()
            .map(|k| state.entries.remove(k))
            .collect::<Vec<_>>()
    };
    s.resume(entries);
}

#[cfg(test)]
mod tests {
    /// A parked connection is one slot of this size (plus the
    /// application's data) in the parking's vector: memory per idle
    /// connection is measured by `scripts/bench.sh`; this catches a field
    /// that grows it.
    #[test]
    fn a_parked_connection_stays_small() {
        let size = std::mem::size_of::<super::Entry<()>>();
        assert!(size <= 384, "a parked connection is {size} bytes");
    }
}
