//! # silverback-proto
//!
//! The sans-I/O core of [silverback](https://docs.rs/silverback): the
//! WebSocket protocol (RFC 6455) as plain data transformations. Bytes go in,
//! events and bytes come out; no sockets, no async runtime, no timers. The
//! async layer (`silverback`) owns the I/O and asks this crate for every
//! protocol decision, so the rules live in one place and are tested without
//! a network.
//!
//! ```
//! use silverback_proto::{CloseCode, Connection, Event, Message, Role};
//!
//! let mut client = Connection::new(Role::Client);
//! let mut server = Connection::new(Role::Server);
//!
//! client.send_text("hello").unwrap();
//! server.receive_data(&client.take_data_to_send());
//! assert_eq!(server.next_event().unwrap(), Some(Event::Message(Message::text("hello"))));
//!
//! // The client closes; the server echoes the Close automatically.
//! client.close(CloseCode::Normal, "bye").unwrap();
//! server.receive_data(&client.take_data_to_send());
//! assert!(matches!(server.next_event().unwrap(), Some(Event::Close(Some(f))) if f.code == CloseCode::Normal));
//! assert!(server.close_expected()); // the server now closes the TCP connection
//! client.receive_data(&server.take_data_to_send());
//! assert!(matches!(client.next_event().unwrap(), Some(Event::Close(_))));
//! assert!(client.close_expected());
//! ```
//!
//! ## What is where
//! - [`frame`]: header decoding (incremental) and encoding.
//! - [`mask`]: payload masking, the only `unsafe` code in silverback.
//! - [`utf8`]: incremental UTF-8 validation for fragmented text.
//! - [`close`]: close codes and Close payloads.
//! - [`handshake`]: the opening handshake on [`http`] types.
//! - [`extension`]: the hook permessage-deflate plugs into.
//! - [`Connection`]: the protocol state machine.
//!
//! Every protocol violation maps to a close code ([`ProtocolError::close_code`]),
//! and the Close frame carrying it is queued before the connection stops:
//! the peer always learns why.
#![deny(missing_docs)]

pub mod close;
mod connection;
mod deferred;
mod error;
pub mod extension;
pub mod frame;
pub mod handshake;
mod lifecycle;
pub mod mask;
mod message;
mod output;
mod prepared;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use connection::{CloseHandler, Config, Connection, Event, Role, State, Suspended};
pub use deferred::{EncodedMessage, MessageDecoder};
pub use error::{ProtocolError, SendError};
pub use frame::OpCode;
pub use lifecycle::{End, Initiator, Timeout};
pub use message::{Message, MessageKind, Utf8Bytes};
pub use prepared::PreparedMessage;

pub use bytes::Bytes;
pub use http;
