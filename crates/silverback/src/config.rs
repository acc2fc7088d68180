//! Settings shared by the server and client sides.

use std::time::Duration;

use silverback_proto::extension::deflate::DeflateConfig;

/// Settings of one WebSocket connection. Every field has a safe default.
///
/// Set them with the builder methods of the same name (each documents its
/// setting and default); read them as fields, as with
/// [`silverback_proto::Config`]. The struct is `#[non_exhaustive]`: build
/// it from [`Config::default`], not with a struct literal.
///
/// ```
/// use std::time::Duration;
/// let config = silverback::Config::default()
///     .max_message_size(1 << 20)
///     .close_timeout(Duration::from_secs(2));
/// assert_eq!(config.max_message_size, 1 << 20);
/// assert_eq!(config.close_timeout, Duration::from_secs(2));
/// assert!(config.auto_pong);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// See [`Config::read_buffer_size()`]; values below 64 count as 64.
    pub read_buffer_size: usize,
    /// See [`Config::write_buffer_size()`].
    pub write_buffer_size: usize,
    /// See [`Config::max_write_buffer_size()`].
    pub max_write_buffer_size: usize,
    /// See [`Config::max_message_size()`].
    pub max_message_size: usize,
    /// See [`Config::max_frame_size()`].
    pub max_frame_size: usize,
    /// See [`Config::close_timeout()`].
    pub close_timeout: Duration,
    /// See [`Config::handshake_timeout()`].
    pub handshake_timeout: Duration,
    /// See [`Config::ping_interval()`].
    pub ping_interval: Option<Duration>,
    /// See [`Config::ping_timeout()`].
    pub ping_timeout: Duration,
    /// See [`Config::idle_timeout()`].
    pub idle_timeout: Option<Duration>,
    /// See [`Config::write_timeout()`].
    pub write_timeout: Option<Duration>,
    /// See [`Config::compression()`].
    pub compression: Option<DeflateConfig>,
    /// See [`Config::auto_pong()`].
    pub auto_pong: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            read_buffer_size: 4096,
            write_buffer_size: 64 * 1024,
            max_write_buffer_size: 16 << 20,
            max_message_size: 64 << 20,
            max_frame_size: 16 << 20,
            close_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Some(Duration::from_secs(20)),
            ping_timeout: Duration::from_secs(20),
            idle_timeout: None,
            write_timeout: Some(Duration::from_secs(30)),
            compression: None,
            auto_pong: true,
        }
    }
}

impl Config {
    /// Bytes asked of the transport per read (default 4 KiB, at least 64).
    /// A larger frame is read in as few reads as its size needs.
    pub fn read_buffer_size(mut self, n: usize) -> Self {
        self.read_buffer_size = n;
        self
    }

    /// Outgoing bytes queued before a send flushes them even though more
    /// input is waiting to be handled (default 64 KiB). See the crate docs
    /// on write coalescing.
    pub fn write_buffer_size(mut self, n: usize) -> Self {
        self.write_buffer_size = n;
        self
    }

    /// The most outgoing bytes kept waiting for a peer that does not read
    /// (default 16 MiB); beyond it sends fail with
    /// [`ErrorKind::WriteBufferFull`](crate::ErrorKind::WriteBufferFull).
    pub fn max_write_buffer_size(mut self, n: usize) -> Self {
        self.max_write_buffer_size = n;
        self
    }

    /// Largest message accepted (default 64 MiB); larger ones close the
    /// connection with 1009.
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }

    /// Largest frame accepted (default 16 MiB), checked from the frame
    /// header before the payload is buffered; larger ones close with 1009.
    pub fn max_frame_size(mut self, n: usize) -> Self {
        self.max_frame_size = n;
        self
    }

    /// How long [`close`](crate::WebSocket::close) waits for the peer's
    /// Close (and a client for the server's TCP close) before closing the
    /// transport anyway (default 5 s).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }

    /// How long the opening handshake may take (default 10 s).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// Keepalive: after this long without receiving anything, send a Ping
    /// (default 20 s; `None` turns keepalive off). Pings go out only while
    /// a task is in `recv` (a connection needs a reader anyway).
    pub fn ping_interval(mut self, d: Option<Duration>) -> Self {
        self.ping_interval = d;
        self
    }

    /// Keepalive: how long to wait, after a keepalive Ping, for anything
    /// from the peer (a Pong or any data) before closing with 1011 and
    /// reporting [`Timeout::Keepalive`](crate::Timeout::Keepalive)
    /// (default 20 s).
    pub fn ping_timeout(mut self, d: Duration) -> Self {
        self.ping_timeout = d;
        self
    }

    /// Read timeout: close the connection if nothing at all arrives for
    /// this long (default: none; keepalive usually serves better).
    /// Reported as [`Timeout::Idle`](crate::Timeout::Idle), close code 1006.
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Write timeout: a write that makes no progress for this long (a peer
    /// that stopped reading) fails the connection with
    /// [`Timeout::Write`](crate::Timeout::Write) (default 30 s; `None`:
    /// wait forever).
    pub fn write_timeout(mut self, d: Option<Duration>) -> Self {
        self.write_timeout = d;
        self
    }

    /// permessage-deflate (RFC 7692): `Some(config)` offers it (client) or
    /// accepts offers (server) with these parameters; default `None`
    /// (off: compression costs memory per connection — see
    /// [`MemoryMode`](silverback_proto::extension::deflate::MemoryMode)).
    /// `max_message_size` applies to the inflated size.
    ///
    /// ```
    /// use silverback::{Config, DeflateConfig};
    /// let config = Config::default().compression(Some(DeflateConfig::default()));
    /// ```
    pub fn compression(mut self, deflate: Option<DeflateConfig>) -> Self {
        self.compression = deflate;
        self
    }

    /// Answer each Ping with a Pong automatically (default `true`), as
    /// RFC 6455 §5.5.2 asks. With `false` the application answers: it
    /// learns of pings with [`WebSocket::on_ping`](crate::WebSocket::on_ping)
    /// and replies with [`WebSocket::pong`](crate::WebSocket::pong) (or
    /// [`WsWriter::pong`](crate::WsWriter::pong)). Either way, no Pong is
    /// sent once our Close was sent.
    ///
    /// ```
    /// let config = silverback::Config::default().auto_pong(false);
    /// assert!(!config.auto_pong);
    /// ```
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.auto_pong = on;
        self
    }

    pub(crate) fn proto(&self) -> silverback_proto::Config {
        silverback_proto::Config::default()
            .max_message_size(self.max_message_size)
            .max_frame_size(self.max_frame_size)
            .auto_pong(self.auto_pong)
    }
}
