//! Connection metrics through the [`metrics`](https://docs.rs/metrics)
//! crate facade (feature `metrics`): install any recorder (e.g.
//! `metrics-exporter-prometheus`) **before the first connection opens**,
//! and every connection, server or client, records what it sees. Without
//! the feature, nothing here exists and the recording calls compile to
//! nothing.
//!
//! This module is the one place that records: the connection calls it
//! where it already sees each event (a message taken out of the core, a
//! message queued, a Pong, the end the core decided), and per-message
//! counts are kept in the connection and added to the shared counters
//! once per batch (when the connection waits for input or flushes), so a
//! message costs a few plain additions.
//!
//! Every series has a `role` label (`server` or `client`).
//!
//! | name | type | labels | meaning |
//! |------|------|--------|---------|
//! | `silverback_connections_active` | gauge | role | open connections |
//! | `silverback_connections_total` | counter | role, outcome, reason | opening handshakes: `outcome="accepted"`, or `outcome="rejected"` with `reason` `origin` (403), `bad_request` (400, 401, 405, 431, ...), `version` (426), `limit` (429, 503: over a connection limit), `timeout` (the handshake took too long), `tls` (the TLS handshake failed) |
//! | `silverback_messages_received_total` | counter | role, kind | data messages received (`kind` `text` or `binary`) |
//! | `silverback_messages_sent_total` | counter | role, kind | data messages sent |
//! | `silverback_bytes_received_total` | counter | role, kind | wire bytes of the data messages received: frame headers and (compressed) payload |
//! | `silverback_bytes_sent_total` | counter | role, kind | wire bytes of the data messages sent |
//! | `silverback_payload_bytes_received_total` | counter | role, kind | payload bytes of the data messages received, uncompressed (equal to the wire bytes less the headers without permessage-deflate) |
//! | `silverback_payload_bytes_sent_total` | counter | role, kind | payload bytes of the data messages sent, before compression |
//! | `silverback_closes_total` | counter | role, code, initiator | connections ended, by close code ([`End::close_code`](crate::End::close_code): 1006 for an abnormal end) and `initiator` `local`, `remote` or `abnormal` (nobody closed: the transport broke, a close timeout gave up, or the connection was dropped) |
//! | `silverback_ping_rtt_seconds` | histogram | role | round-trip time of each answered Ping (keepalive ones included); buckets [`PING_RTT_BUCKETS`] |
//! | `silverback_write_queue_bytes` | histogram | role | the largest write backlog (unwritten output plus [`WsSender`](crate::WsSender) queue) of each episode of backpressure (a write that could not complete at once), observed when it drained or the connection ended; buckets [`WRITE_QUEUE_BUCKETS`] |
//! | `silverback_compression_ratio` | histogram | role | for each connection that negotiated permessage-deflate, at its end: [`Stats::compression_ratio`](crate::Stats::compression_ratio), payload bytes of its data messages / all bytes on the wire after the handshake, both ways (2.0: half the size on the wire); buckets [`COMPRESSION_RATIO_BUCKETS`] |
//!
//! Wire bytes count only data frames; control frames and the opening
//! handshake are in [`Stats::bytes_in`](crate::Stats::bytes_in) and
//! [`Stats::bytes_out`](crate::Stats::bytes_out) only.
//!
//! The facade carries no histogram buckets: configure them in the
//! exporter with the constants here (a summary is what the Prometheus
//! exporter makes without them).
//!
//! See [`describe`] for an exporter's setup.

#![cfg_attr(not(feature = "metrics"), allow(dead_code))]

#[cfg(all(unix, feature = "metrics"))]
pub(crate) use imp::parked;
#[cfg(feature = "metrics")]
pub use imp::{connection_rejected, describe, register, RejectReason};
#[cfg(feature = "metrics")]
pub(crate) use imp::{rejected, rejected_timeout, ConnMetrics};
#[cfg(all(unix, not(feature = "metrics")))]
pub(crate) use off::parked;
#[cfg(not(feature = "metrics"))]
pub(crate) use off::{rejected, rejected_timeout, ConnMetrics};

/// `silverback_connections_active`.
pub const CONNECTIONS_ACTIVE: &str = "silverback_connections_active";
/// `silverback_connections_parked` (see [`crate::park`]).
#[cfg(unix)]
pub const CONNECTIONS_PARKED: &str = "silverback_connections_parked";
/// `silverback_connections_total`.
pub const CONNECTIONS_TOTAL: &str = "silverback_connections_total";
/// `silverback_messages_received_total`.
pub const MESSAGES_RECEIVED: &str = "silverback_messages_received_total";
/// `silverback_messages_sent_total`.
pub const MESSAGES_SENT: &str = "silverback_messages_sent_total";
/// `silverback_bytes_received_total`.
pub const BYTES_RECEIVED: &str = "silverback_bytes_received_total";
/// `silverback_bytes_sent_total`.
pub const BYTES_SENT: &str = "silverback_bytes_sent_total";
/// `silverback_payload_bytes_received_total`.
pub const PAYLOAD_BYTES_RECEIVED: &str = "silverback_payload_bytes_received_total";
/// `silverback_payload_bytes_sent_total`.
pub const PAYLOAD_BYTES_SENT: &str = "silverback_payload_bytes_sent_total";
/// `silverback_closes_total`.
pub const CLOSES_TOTAL: &str = "silverback_closes_total";
/// `silverback_ping_rtt_seconds`.
pub const PING_RTT_SECONDS: &str = "silverback_ping_rtt_seconds";
/// `silverback_write_queue_bytes`.
pub const WRITE_QUEUE_BYTES: &str = "silverback_write_queue_bytes";
/// `silverback_compression_ratio`.
pub const COMPRESSION_RATIO: &str = "silverback_compression_ratio";

/// Buckets for [`PING_RTT_SECONDS`]: 0.5 ms to 10 s.
pub const PING_RTT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for [`WRITE_QUEUE_BYTES`]: 1 KiB to 64 MiB.
pub const WRITE_QUEUE_BUCKETS: &[f64] = &[
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];
/// Buckets for [`COMPRESSION_RATIO`].
pub const COMPRESSION_RATIO_BUCKETS: &[f64] = &[0.5, 0.9, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0];

/// Index of a role in the per-role tables.
#[cfg(feature = "metrics")]
fn role_index(role: silverback_proto::Role) -> usize {
    match role {
        silverback_proto::Role::Server => 0,
        silverback_proto::Role::Client => 1,
    }
}

#[cfg(feature = "metrics")]
mod imp {
    use std::sync::OnceLock;
    use std::time::Duration;

    use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, SharedString, Unit};
    use silverback_proto::handshake::server::Rejection;
    use silverback_proto::{End, Initiator, MessageKind, Role};

    use super::*;

    const ROLES: [&str; 2] = ["server", "client"];
    const KINDS: [&str; 2] = ["text", "binary"];

    /// The per-message counters (and the histograms) of one role, resolved
    /// once against the recorder installed then.
    struct Handles {
        counters: [[Counter; 2]; SLOTS],
        active: Gauge,
        accepted: Counter,
        rtt: Histogram,
        backlog: Histogram,
        ratio: Histogram,
    }

    /// Slots of the per-kind counters.
    const MSGS_IN: usize = 0;
    const MSGS_OUT: usize = 1;
    const WIRE_IN: usize = 2;
    const WIRE_OUT: usize = 3;
    const PAYLOAD_IN: usize = 4;
    const PAYLOAD_OUT: usize = 5;
    const SLOTS: usize = 6;
    const NAMES: [&str; SLOTS] = [
        MESSAGES_RECEIVED,
        MESSAGES_SENT,
        BYTES_RECEIVED,
        BYTES_SENT,
        PAYLOAD_BYTES_RECEIVED,
        PAYLOAD_BYTES_SENT,
    ];

    static HANDLES: [OnceLock<Handles>; 2] = [OnceLock::new(), OnceLock::new()];

    fn handles(role: usize) -> &'static Handles {
        HANDLES[role].get_or_init(|| {
            let r = ROLES[role];
            Handles {
                counters: NAMES
                    .map(|name| KINDS.map(|kind| counter!(name, "role" => r, "kind" => kind))),
                active: gauge!(CONNECTIONS_ACTIVE, "role" => r),
                accepted: counter!(CONNECTIONS_TOTAL, "role" => r, "outcome" => "accepted"),
                rtt: histogram!(PING_RTT_SECONDS, "role" => r),
                backlog: histogram!(WRITE_QUEUE_BYTES, "role" => r),
                ratio: histogram!(COMPRESSION_RATIO, "role" => r),
            }
        })
    }

    fn kind_index(kind: MessageKind) -> usize {
        match kind {
            MessageKind::Text => 0,
            _ => 1,
        }
    }

    /// One connection's share: counts not yet added to the shared
    /// counters, and what its end records.
    ///
    /// Counts are `u32` (an idle connection holds this too): one that
    /// would overflow goes to the shared counter at once.
    #[derive(Debug)]
    pub(crate) struct ConnMetrics {
        pending: [[u32; 2]; SLOTS],
        /// Input bytes consumed by the core up to the last event.
        consumed: u64,
        /// The largest backlog of the current episode of backpressure.
        backlog: u32,
        role: u8,
        ended: bool,
    }

    impl ConnMetrics {
        /// A connection opened (its handshake, if any, is done).
        pub(crate) fn new(role: Role) -> Self {
            let r = role_index(role);
            let h = handles(r);
            h.active.increment(1.0);
            h.accepted.increment(1);
            Self {
                pending: [[0; 2]; SLOTS],
                consumed: 0,
                backlog: 0,
                role: r as u8,
                ended: false,
            }
        }

        /// The core handed out an event; `consumed`: the input bytes it
        /// has parsed so far. A data event (`kind`, `messages`: 1 when it
        /// completes a message) is charged the bytes parsed since the last
        /// event.
        #[inline]
        pub(crate) fn received(&mut self, consumed: u64, kind: Option<MessageKind>, messages: u64) {
            let wire = consumed.saturating_sub(self.consumed);
            self.consumed = consumed;
            if let Some(kind) = kind {
                let k = kind_index(kind);
                self.add(WIRE_IN, k, wire);
                self.add(MSGS_IN, k, messages);
            }
        }

        /// Adds `n` to a pending count, or to the shared counter if the
        /// sum would not fit.
        #[inline]
        fn add(&mut self, slot: usize, k: usize, n: u64) {
            let p = &mut self.pending[slot][k];
            match u32::try_from(n).ok().and_then(|n| p.checked_add(n)) {
                Some(sum) => *p = sum,
                None => {
                    let sum = u64::from(std::mem::take(p)) + n;
                    handles(self.role as usize).counters[slot][k].increment(sum);
                }
            }
        }

        /// Payload bytes of a received message, decoded.
        #[inline]
        pub(crate) fn received_payload(&mut self, kind: MessageKind, len: usize) {
            self.add(PAYLOAD_IN, kind_index(kind), len as u64);
        }

        /// A data message (`messages`: 1, or 0 for a fragment that does not
        /// end one) was queued: `payload` bytes, `wire` on the wire.
        #[inline]
        pub(crate) fn sent(
            &mut self,
            kind: MessageKind,
            messages: u64,
            payload: usize,
            wire: usize,
        ) {
            let k = kind_index(kind);
            self.add(MSGS_OUT, k, messages);
            self.add(PAYLOAD_OUT, k, payload as u64);
            self.add(WIRE_OUT, k, wire as u64);
        }

        /// Adds the pending counts to the shared counters.
        pub(crate) fn flush(&mut self) {
            let h = handles(self.role as usize);
            for (slot, counts) in self.pending.iter_mut().enumerate() {
                for (k, n) in counts.iter_mut().enumerate() {
                    if *n > 0 {
                        h.counters[slot][k].increment(u64::from(std::mem::take(n)));
                    }
                }
            }
        }

        /// A Pong answered a Ping after `rtt`.
        pub(crate) fn rtt(&self, rtt: Duration) {
            handles(self.role as usize).rtt.record(rtt.as_secs_f64());
        }

        /// A write could not complete: `backlog` bytes wait.
        #[inline]
        pub(crate) fn blocked(&mut self, backlog: usize) {
            let backlog = u32::try_from(backlog).unwrap_or(u32::MAX);
            self.backlog = self.backlog.max(backlog);
        }

        /// The output drained: the episode of backpressure, if any, ends.
        #[inline]
        pub(crate) fn drained(&mut self) {
            if self.backlog > 0 {
                let peak = std::mem::take(&mut self.backlog);
                handles(self.role as usize).backlog.record(f64::from(peak));
            }
        }

        /// The connection ended (`None`: dropped before its end);
        /// `ratio`: its compression ratio, if it negotiated compression.
        pub(crate) fn ended(&mut self, end: Option<&End>, ratio: Option<f64>) {
            if std::mem::replace(&mut self.ended, true) {
                return;
            }
            self.flush();
            self.drained();
            let r = self.role as usize;
            let h = handles(r);
            h.active.decrement(1.0);
            if let Some(ratio) = ratio {
                h.ratio.record(ratio);
            }
            let (code, initiator) = match end {
                Some(end) => (
                    u16::from(end.close_code()),
                    match end.initiator() {
                        Some(Initiator::Local) => 0,
                        Some(Initiator::Remote) => 1,
                        None => 2,
                    },
                ),
                None => (1006, 2),
            };
            closes(r, code, initiator).increment(1);
        }
    }

    const INITIATORS: [&str; 3] = ["local", "remote", "abnormal"];

    /// The `silverback_closes_total` series of a role, close code and
    /// initiator: resolved once for the codes 1000..=1015 (a connection's
    /// end then costs no registry lookup), looked up for the others.
    fn closes(role: usize, code: u16, initiator: usize) -> Counter {
        static CACHE: [[[OnceLock<Counter>; 3]; 16]; 2] =
            [const { [const { [const { OnceLock::new() }; 3] }; 16] }; 2];
        let lookup = || {
            counter!(
                CLOSES_TOTAL,
                "role" => ROLES[role],
                "code" => code_label(code),
                "initiator" => INITIATORS[initiator]
            )
        };
        match code.checked_sub(1000).map(usize::from) {
            Some(i) if i < 16 => CACHE[role][i][initiator].get_or_init(lookup).clone(),
            _ => lookup(),
        }
    }

    impl Drop for ConnMetrics {
        fn drop(&mut self) {
            self.ended(None, None);
        }
    }

    /// A close code as a label value (no allocation for the common ones).
    fn code_label(code: u16) -> SharedString {
        let s = match code {
            1000 => "1000",
            1001 => "1001",
            1002 => "1002",
            1003 => "1003",
            1005 => "1005",
            1006 => "1006",
            1007 => "1007",
            1008 => "1008",
            1009 => "1009",
            1010 => "1010",
            1011 => "1011",
            1012 => "1012",
            1013 => "1013",
            1014 => "1014",
            1015 => "1015",
            _ => return SharedString::from(code.to_string()),
        };
        SharedString::const_str(s)
    }

    /// Why an opening handshake was refused: the `reason` label of
    /// `silverback_connections_total{outcome="rejected"}`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    pub enum RejectReason {
        /// A cross-origin request refused (403).
        Origin,
        /// A malformed or unacceptable request (400, 401, 405, 431, ...).
        BadRequest,
        /// An unsupported WebSocket version (426).
        Version,
        /// Over a connection limit (429, 503).
        Limit,
        /// The handshake did not complete in time.
        Timeout,
        /// The TLS handshake failed.
        Tls,
    }

    impl RejectReason {
        /// The label value.
        pub fn as_str(self) -> &'static str {
            match self {
                Self::Origin => "origin",
                Self::BadRequest => "bad_request",
                Self::Version => "version",
                Self::Limit => "limit",
                Self::Timeout => "timeout",
                Self::Tls => "tls",
            }
        }

        /// The class of a refusal with HTTP `status`.
        pub fn of_status(status: http::StatusCode) -> Self {
            match status.as_u16() {
                403 => Self::Origin,
                426 => Self::Version,
                429 | 503 => Self::Limit,
                408 => Self::Timeout,
                _ => Self::BadRequest,
            }
        }
    }

    /// Connections went into a parking (`n` > 0) or out of it.
    #[cfg(unix)]
    pub(crate) fn parked(n: f64) {
        static PARKED: OnceLock<Gauge> = OnceLock::new();
        PARKED
            .get_or_init(|| gauge!(CONNECTIONS_PARKED))
            .increment(n);
    }

    /// Registers the per-connection series of `role` now (at zero), so an
    /// exporter shows them before the first connection. Optional.
    ///
    /// ```
    /// silverback::metrics::register(silverback::Role::Server);
    /// ```
    pub fn register(role: Role) {
        let r = role_index(role);
        handles(r);
        counter!(CONNECTIONS_TOTAL, "role" => ROLES[r], "outcome" => "accepted").increment(0);
    }

    /// Counts a server connection refused before it opened, for refusals
    /// made outside the [`Upgrader`](crate::Upgrader) (which counts its
    /// own): a connection limit, a failed TLS handshake.
    ///
    /// ```
    /// use silverback::metrics::{connection_rejected, RejectReason};
    /// connection_rejected(RejectReason::Limit); // e.g. before answering 503
    /// ```
    pub fn connection_rejected(reason: RejectReason) {
        counter!(
            CONNECTIONS_TOTAL,
            "role" => "server",
            "outcome" => "rejected",
            "reason" => reason.as_str()
        )
        .increment(1);
    }

    /// The upgrader refused a request with `rej`.
    pub(crate) fn rejected(rej: &Rejection) {
        connection_rejected(RejectReason::of_status(rej.status));
    }

    /// A server handshake timed out.
    pub(crate) fn rejected_timeout() {
        connection_rejected(RejectReason::Timeout);
    }

    /// Describes every metric to the installed recorder (the `# HELP` and
    /// `# TYPE` lines of a Prometheus exposition). Optional.
    ///
    /// ```
    /// // With metrics-exporter-prometheus, the buckets go to the builder:
    /// // PrometheusBuilder::new()
    /// //     .set_buckets_for_metric(Matcher::Full(PING_RTT_SECONDS.into()), PING_RTT_BUCKETS)?
    /// //     .install_recorder()?;
    /// use silverback::metrics::{describe, PING_RTT_BUCKETS};
    /// describe();
    /// assert!(PING_RTT_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    /// ```
    pub fn describe() {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        describe_gauge!(CONNECTIONS_ACTIVE, "Open WebSocket connections.");
        #[cfg(unix)]
        describe_gauge!(
            CONNECTIONS_PARKED,
            "Open connections held idle in a parking (counted in the active ones too)."
        );
        describe_counter!(
            CONNECTIONS_TOTAL,
            "WebSocket opening handshakes, accepted or rejected (with the reason class)."
        );
        describe_counter!(MESSAGES_RECEIVED, "Data messages received.");
        describe_counter!(MESSAGES_SENT, "Data messages sent.");
        describe_counter!(
            BYTES_RECEIVED,
            Unit::Bytes,
            "Wire bytes (headers and compressed payload) of the data messages received."
        );
        describe_counter!(
            BYTES_SENT,
            Unit::Bytes,
            "Wire bytes (headers and compressed payload) of the data messages sent."
        );
        describe_counter!(
            PAYLOAD_BYTES_RECEIVED,
            Unit::Bytes,
            "Uncompressed payload bytes of the data messages received."
        );
        describe_counter!(
            PAYLOAD_BYTES_SENT,
            Unit::Bytes,
            "Uncompressed payload bytes of the data messages sent."
        );
        describe_counter!(
            CLOSES_TOTAL,
            "Connections ended, by close code and initiator (local, remote, abnormal)."
        );
        describe_histogram!(
            PING_RTT_SECONDS,
            Unit::Seconds,
            "Round-trip time of answered pings."
        );
        describe_histogram!(
            WRITE_QUEUE_BYTES,
            Unit::Bytes,
            "Largest write backlog of each episode of backpressure."
        );
        describe_histogram!(
            COMPRESSION_RATIO,
            "Payload bytes over wire bytes of a compressed connection, at its end."
        );
    }
}

#[cfg(not(feature = "metrics"))]
mod off {
    use std::time::Duration;

    use silverback_proto::handshake::server::Rejection;
    use silverback_proto::{End, MessageKind, Role};

    /// Nothing: the feature is off.
    #[derive(Debug)]
    pub(crate) struct ConnMetrics;

    impl ConnMetrics {
        #[inline(always)]
        pub(crate) fn new(_: Role) -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn received(&mut self, _: u64, _: Option<MessageKind>, _: u64) {}
        #[inline(always)]
        pub(crate) fn received_payload(&mut self, _: MessageKind, _: usize) {}
        #[inline(always)]
        pub(crate) fn sent(&mut self, _: MessageKind, _: u64, _: usize, _: usize) {}
        #[inline(always)]
        pub(crate) fn flush(&mut self) {}
        #[inline(always)]
        pub(crate) fn rtt(&self, _: Duration) {}
        #[inline(always)]
        pub(crate) fn blocked(&mut self, _: usize) {}
        #[inline(always)]
        pub(crate) fn drained(&mut self) {}
        #[inline(always)]
        pub(crate) fn ended(&mut self, _: Option<&End>, _: Option<f64>) {}
    }

    #[cfg(unix)]
    #[inline(always)]
    pub(crate) fn parked(_: f64) {}
    #[inline(always)]
    pub(crate) fn rejected(_: &Rejection) {}
    #[inline(always)]
    pub(crate) fn rejected_timeout() {}
}
