//! JSON messages (feature `json`): [`WebSocket::send_json`] and
//! [`WebSocket::recv_json`], also on the split halves.
//!
//! A value goes out as one text message; a text message comes in as one
//! value. A message that is not the JSON expected is reported with its
//! text ([`JsonError::text`]) and the connection stays usable; an error of
//! the connection itself comes through as [`JsonError::Connection`].

use std::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use silverback_proto::{Message, Utf8Bytes};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{Error, WebSocket, WsReader, WsWriter};

/// The error of [`WebSocket::send_json`] and [`WebSocket::recv_json`].
///
/// Only [`Connection`](Self::Connection) means the connection failed or
/// ended (ask the wrapped [`Error`], e.g. [`Error::is_closed`]); after the
/// other variants it can be used as before.
///
/// ```
/// # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) -> Result<(), silverback::Error> {
/// use silverback::JsonError;
/// #[derive(serde::Deserialize)]
/// struct Cmd { op: String }
/// loop {
///     match ws.recv_json::<Cmd>().await {
///         Ok(cmd) => println!("{}", cmd.op),
///         Err(JsonError::Connection(e)) if e.is_closed() => return Ok(()),
///         Err(JsonError::Connection(e)) => return Err(e),
///         // Not what we expected: say so, and keep going.
///         Err(e) => ws.send_json(&serde_json::json!({ "error": e.to_string() }))
///             .await
///             .map_err(|e| e.into_connection_error().expect("serializable"))?,
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum JsonError {
    /// The connection failed or ended: the same error `recv` or `send`
    /// would have returned.
    Connection(Error),
    /// A text message was received that is not JSON, or not of the type
    /// expected. The connection is still usable.
    Invalid {
        /// The message received.
        text: Utf8Bytes,
        /// What serde_json found wrong (line, column, expected type).
        source: serde_json::Error,
    },
    /// A binary message was received where JSON (text) was expected. The
    /// connection is still usable.
    Binary(Bytes),
    /// The value could not be serialized (nothing was sent).
    Serialize(serde_json::Error),
}

impl JsonError {
    /// The text of a received message that was not the JSON expected.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Invalid { text, .. } => Some(text.as_str()),
            _ => None,
        }
    }

    /// The connection's error, if this is one.
    pub fn connection_error(&self) -> Option<&Error> {
        match self {
            Self::Connection(e) => Some(e),
            _ => None,
        }
    }

    /// The connection's error, if this is one.
    pub fn into_connection_error(self) -> Option<Error> {
        match self {
            Self::Connection(e) => Some(e),
            _ => None,
        }
    }

    /// The connection ended cleanly ([`Error::is_closed`]).
    pub fn is_closed(&self) -> bool {
        self.connection_error().is_some_and(Error::is_closed)
    }

    /// The data was at fault, not the connection: it can still be used.
    pub fn is_data(&self) -> bool {
        !matches!(self, Self::Connection(_))
    }
}

impl From<Error> for JsonError {
    fn from(e: Error) -> Self {
        Self::Connection(e)
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connection(e) => e.fmt(f),
            Self::Invalid { text, source } => {
                write!(f, "invalid JSON message ({source}) of {} bytes", text.len())
            }
            Self::Binary(b) => write!(
                f,
                "expected a JSON text message, got a binary message of {} bytes",
                b.len()
            ),
            Self::Serialize(e) => write!(f, "cannot serialize to JSON: {e}"),
        }
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connection(e) => Some(e),
            Self::Invalid { source, .. } | Self::Serialize(source) => Some(source),
            Self::Binary(_) => None,
        }
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Message, JsonError> {
    serde_json::to_string(value)
        .map(Message::text)
        .map_err(JsonError::Serialize)
}

fn decode<T: DeserializeOwned>(msg: Message) -> Result<T, JsonError> {
    match msg {
        Message::Text(text) => serde_json::from_str(text.as_str())
            .map_err(|source| JsonError::Invalid { text, source }),
        Message::Binary(b) => Err(JsonError::Binary(b)),
    }
}

/// JSON messages (feature `json`).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use silverback::{Dialer, Upgrader};
/// use tokio::net::TcpListener;
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Point { x: i32, y: i32 }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let listener = TcpListener::bind("127.0.0.1:0").await?;
/// let url = format!("ws://{}/ws", listener.local_addr()?);
/// let server = tokio::spawn(async move {
///     let (stream, _) = listener.accept().await?;
///     let mut ws = Upgrader::new().upgrade(stream).await?;
///     let p: Point = ws.recv_json().await?;
///     ws.send_json(&Point { x: p.y, y: p.x }).await?;
///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
/// });
/// let (mut ws, _) = Dialer::new().connect(&url).await?;
/// ws.send_json(&Point { x: 1, y: 2 }).await?;
/// assert_eq!(ws.recv_json::<Point>().await?, Point { x: 2, y: 1 });
/// server.await??;
/// # Ok(())
/// # }
/// ```
impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Sends `value` as JSON in one text message.
    pub async fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        let msg = encode(value)?;
        Ok(self.send(msg).await?)
    }

    /// Receives the next message as a `T`, from JSON text.
    ///
    /// A message that is not a `T` in JSON gives [`JsonError::Invalid`]
    /// with its text (or [`JsonError::Binary`]): the message is consumed,
    /// the connection stays usable.
    pub async fn recv_json<T: DeserializeOwned>(&mut self) -> Result<T, JsonError> {
        decode(self.recv().await?)
    }
}

impl<S> WsWriter<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Sends `value` as JSON in one text message; see
    /// [`WebSocket::send_json`].
    pub async fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        let msg = encode(value)?;
        Ok(self.send(msg).await?)
    }
}

impl<S> WsReader<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Receives the next message as a `T`, from JSON text; see
    /// [`WebSocket::recv_json`].
    pub async fn recv_json<T: DeserializeOwned>(&mut self) -> Result<T, JsonError> {
        decode(self.recv().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_keeps_the_text() {
        let err = decode::<u32>(Message::text("{oops")).unwrap_err();
        assert_eq!(err.text(), Some("{oops"));
        assert!(err.is_data() && !err.is_closed());
        assert!(matches!(
            decode::<u32>(Message::binary(vec![1])),
            Err(JsonError::Binary(_))
        ));
        assert_eq!(decode::<Vec<u8>>(Message::text("[1,2]")).unwrap(), [1, 2]);
    }

    #[test]
    fn serialize_failure() {
        let mut m = std::collections::HashMap::new();
        m.insert(vec![1u8], 1);
        assert!(matches!(encode(&m), Err(JsonError::Serialize(_))));
    }
}
