//! The `pubsub.v1` protocol: JSON envelopes for pub/sub over one
//! WebSocket, as `silverback serve --pubsub` speaks it to clients that
//! offer the subprotocol [`PROTOCOL`].
//!
//! Every message is a JSON object in a text message, with an `op`.
//!
//! # Client to server ([`Request`])
//! ```json
//! {"op":"subscribe","topic":"room:lobby"}
//! {"op":"subscribe","topic":"room:lobby","since":{"offset":41,"epoch":"5f0c2a9e1b7d3c44"}}
//! {"op":"unsubscribe","topic":"room:lobby"}
//! {"op":"publish","topic":"room:lobby","data":{"nick":"alice","text":"hi"}}
//! {"op":"presence","topic":"room:lobby"}
//! {"op":"ping","id":7}
//! ```
//!
//! # Server to client ([`Reply`], and [`EnvelopeCodec`] for messages)
//! ```json
//! {"op":"subscribed","topic":"room:lobby","offset":41,"epoch":"5f0c2a9e1b7d3c44","recovered":true}
//! {"op":"unsubscribed","topic":"room:lobby"}
//! {"op":"message","topic":"room:lobby","offset":42,"epoch":"5f0c2a9e1b7d3c44","data":{"nick":"alice","text":"hi"}}
//! {"op":"presence","topic":"room:lobby","count":2}
//! {"op":"pong","id":7}
//! {"op":"error","code":"invalid_topic","message":"invalid topic name: too long"}
//! ```
//!
//! - `subscribe` answers `subscribed` with the position the subscription
//!   starts after: every later `message` of the topic follows, none
//!   before. With `since` (the `offset` and `epoch` of the last message the
//!   client got, or of its last `subscribed`), what was published after it
//!   and is still in history comes first, as `message`s in order, then
//!   `subscribed` with `recovered` (whether nothing was missed: `false`
//!   when the epoch is unknown or history was trimmed), then live
//!   messages. A client keeps, per topic, the position of the last
//!   `message` it got (or of `subscribed`, when it is further in the same
//!   epoch, or in another epoch).
//! - An unsolicited `subscribed` with `"recovered":false` comes when the
//!   topic's history was lost under a live subscription (a broker that
//!   restarted without its data: a new `epoch`, or a gap the node could
//!   not fill): messages were missed, the next ones follow its `offset`.
//! - `publish` publishes `data` (any JSON value) to the topic; the
//!   publisher gets its own message too when it subscribes to the topic.
//!   Subscribers in raw mode (no subprotocol) get the JSON text of
//!   `data`.
//! - A raw-mode publication reaches `pubsub.v1` subscribers with `data`
//!   set to the text when it is JSON, to a JSON string of the text
//!   otherwise, and for a binary message to its base64 in a string, with
//!   `"encoding":"base64"` next to `data`.
//! - `presence` answers the topic's subscriber count; `ping` answers
//!   `pong` with the same `id` (browsers cannot send WebSocket pings: this
//!   is how a page measures its round trip).
//! - A bad request gets an `error` ([`ErrorCode`]) and the connection
//!   stays open: a binary message, a text that is not a JSON object, an
//!   unknown `op`, a missing or ill-typed field, a refused topic name, a
//!   limit reached.
//!
//! The `message` envelope is built once per publication for all the
//! `pubsub.v1` subscribers of the topic: [`EnvelopeCodec`] is the
//! [`Codec`] given to [`Hub::subscribe_with`](crate::Hub::subscribe_with),
//! one `Arc` shared by every connection.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use silverback::{Message, PreparedMessage};

use crate::codec::Codec;
use crate::error::HubError;
use crate::history::{Publication, StreamPosition};

/// The subprotocol name.
pub const PROTOCOL: &str = "pubsub.v1";

/// A client's request, parsed and validated ([`Request::parse`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Request<'a> {
    /// `{"op":"subscribe","topic":T}`, with an optional
    /// `"since":{"offset":N,"epoch":E}`.
    Subscribe {
        /// The topic.
        topic: String,
        /// The position to recover from.
        since: Option<StreamPosition>,
    },
    /// `{"op":"unsubscribe","topic":T}`.
    Unsubscribe {
        /// The topic.
        topic: String,
    },
    /// `{"op":"publish","topic":T,"data":ANY}`.
    Publish {
        /// The topic.
        topic: String,
        /// The data, as the client wrote it (valid JSON).
        data: &'a RawValue,
    },
    /// `{"op":"presence","topic":T}`.
    Presence {
        /// The topic.
        topic: String,
    },
    /// `{"op":"ping","id":N}`.
    Ping {
        /// Echoed in the `pong`.
        id: u64,
    },
}

impl PartialEq for Request<'_> {
    fn eq(&self, other: &Self) -> bool {
        use Request::*;
        match (self, other) {
            (Subscribe { topic: a, since: x }, Subscribe { topic: b, since: y }) => {
                a == b && x == y
            }
            (Unsubscribe { topic: a }, Unsubscribe { topic: b }) => a == b,
            (Publish { topic: a, data: x }, Publish { topic: b, data: y }) => {
                a == b && x.get() == y.get()
            }
            (Presence { topic: a }, Presence { topic: b }) => a == b,
            (Ping { id: a }, Ping { id: b }) => a == b,
            _ => false,
        }
    }
}

/// The fields of any request, before validation.
#[derive(Deserialize)]
struct Fields<'a> {
    op: Option<String>,
    topic: Option<String>,
    since: Option<StreamPosition>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    id: Option<u64>,
}

impl<'a> Request<'a> {
    /// Parses a text message; checks topic names (not empty, at most
    /// `max_topic_len` bytes, no control characters).
    pub fn parse(text: &'a str, max_topic_len: usize) -> Result<Self, EnvelopeError> {
        let value: &RawValue = serde_json::from_str(text)
            .map_err(|e| EnvelopeError::new(ErrorCode::BadJson, format!("not JSON: {e}")))?;
        if !value.get().trim_start().starts_with('{') {
            return Err(EnvelopeError::new(
                ErrorCode::BadJson,
                "a request is a JSON object",
            ));
        }
        let f: Fields<'a> = serde_json::from_str(text)
            .map_err(|e| EnvelopeError::new(ErrorCode::BadRequest, format!("bad field: {e}")))?;
        let op =
            f.op.ok_or_else(|| EnvelopeError::new(ErrorCode::BadRequest, "missing \"op\""))?;
        let topic = |t: Option<String>| -> Result<String, EnvelopeError> {
            let t = t.ok_or_else(|| {
                EnvelopeError::new(ErrorCode::BadRequest, format!("\"{op}\" needs a \"topic\""))
            })?;
            crate::topic::validate(&t, max_topic_len)?;
            Ok(t)
        };
        Ok(match op.as_str() {
            "subscribe" => Request::Subscribe {
                topic: topic(f.topic)?,
                since: f.since,
            },
            "unsubscribe" => Request::Unsubscribe {
                topic: topic(f.topic)?,
            },
            "publish" => {
                let topic = topic(f.topic)?;
                let data = f.data.ok_or_else(|| {
                    EnvelopeError::new(ErrorCode::BadRequest, "\"publish\" needs \"data\"")
                })?;
                Request::Publish { topic, data }
            }
            "presence" => Request::Presence {
                topic: topic(f.topic)?,
            },
            "ping" => Request::Ping {
                id: f.id.ok_or_else(|| {
                    EnvelopeError::new(ErrorCode::BadRequest, "\"ping\" needs a numeric \"id\"")
                })?,
            },
            other => {
                let mut shown: String = other.chars().take(32).collect();
                if shown.len() < other.len() {
                    shown.push('…');
                }
                return Err(EnvelopeError::new(
                    ErrorCode::UnknownOp,
                    format!("unknown op {shown:?}"),
                ));
            }
        })
    }
}

/// What a `publish` puts in the topic: the JSON text of `data`, as a
/// text message (what raw-mode subscribers get; the [`EnvelopeCodec`]
/// wraps it for `pubsub.v1` ones).
pub fn publish_message(data: &RawValue) -> Message {
    Message::text(data.get().to_owned())
}

/// A server reply (everything but `message`, which [`EnvelopeCodec`]
/// builds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Reply {
    /// The subscription is made, starting after `offset` in `epoch`.
    Subscribed {
        /// The topic.
        topic: String,
        /// The offset the subscription starts after.
        offset: u64,
        /// The stream's epoch.
        epoch: String,
        /// Whether nothing since the asked position was missed (`true`
        /// without `since`).
        recovered: bool,
    },
    /// The subscription is gone.
    Unsubscribed {
        /// The topic.
        topic: String,
    },
    /// The topic's subscriber count.
    Presence {
        /// The topic.
        topic: String,
        /// Subscribers.
        count: usize,
    },
    /// The answer to `ping`.
    Pong {
        /// The ping's id.
        id: u64,
    },
    /// A request was refused.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// For humans.
        message: String,
    },
}

impl Reply {
    /// The JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("replies serialize")
    }

    /// The JSON text, as a text message.
    pub fn to_message(&self) -> Message {
        Message::text(self.to_json())
    }
}

impl From<EnvelopeError> for Reply {
    fn from(e: EnvelopeError) -> Self {
        Reply::Error {
            code: e.code,
            message: e.message,
        }
    }
}

/// The `code` of an `error` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not JSON, or not a JSON object.
    BadJson,
    /// A field is missing or has the wrong type.
    BadRequest,
    /// `op` names no request.
    UnknownOp,
    /// The topic name is empty, too long or holds a control character.
    InvalidTopic,
    /// The connection subscribes to as many topics as it may.
    TooManySubscriptions,
    /// The server has as many topics as it may.
    TooManyTopics,
    /// `subscribe` on a topic the connection already subscribes to.
    AlreadySubscribed,
    /// `unsubscribe` from a topic the connection does not subscribe to.
    NotSubscribed,
    /// A binary message: `pubsub.v1` is JSON in text messages.
    BinaryNotSupported,
    /// The server could not do it now (e.g. its backplane is down); it
    /// may work later.
    Unavailable,
}

impl ErrorCode {
    /// The code as it is on the wire (`"bad_json"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadRequest => "bad_request",
            Self::UnknownOp => "unknown_op",
            Self::InvalidTopic => "invalid_topic",
            Self::TooManySubscriptions => "too_many_subscriptions",
            Self::TooManyTopics => "too_many_topics",
            Self::AlreadySubscribed => "already_subscribed",
            Self::NotSubscribed => "not_subscribed",
            Self::BinaryNotSupported => "binary_not_supported",
            Self::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: an [`ErrorCode`] and a message, sent back as an
/// `error` reply ([`Reply::from`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError {
    /// The code.
    pub code: ErrorCode,
    /// For humans.
    pub message: String,
}

impl EnvelopeError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The error for a binary message.
    pub fn binary() -> Self {
        Self::new(
            ErrorCode::BinaryNotSupported,
            "pubsub.v1 takes JSON in text messages, not binary",
        )
    }
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for EnvelopeError {}

impl From<HubError> for EnvelopeError {
    fn from(e: HubError) -> Self {
        let code = match &e {
            HubError::InvalidTopic(_) => ErrorCode::InvalidTopic,
            HubError::TooManyTopics { .. } => ErrorCode::TooManyTopics,
            HubError::TooManyTopicsForConnection { .. } => ErrorCode::TooManySubscriptions,
            HubError::AlreadySubscribed => ErrorCode::AlreadySubscribed,
            _ => ErrorCode::Unavailable,
        };
        Self::new(code, e.to_string())
    }
}

/// The [`Codec`] of `pubsub.v1` subscribers: wraps each publication in a
/// `message` envelope with its topic, offset and epoch, once per
/// publication for all of them.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvelopeCodec;

impl Codec for EnvelopeCodec {
    fn encode(&self, p: &Publication) -> PreparedMessage {
        PreparedMessage::new(Message::text(message_envelope(p)))
    }

    /// `{"op":"subscribed","topic":T,"offset":N,"epoch":E,"recovered":false}`:
    /// the topic's history was lost (e.g. the broker restarted without
    /// persistence); the subscription goes on after `position`.
    fn reset(&self, topic: &str, position: &StreamPosition) -> Option<PreparedMessage> {
        let reply = Reply::Subscribed {
            topic: topic.to_owned(),
            offset: position.offset,
            epoch: position.epoch.clone(),
            recovered: false,
        };
        Some(PreparedMessage::new(reply.to_message()))
    }
}

/// The `message` envelope of `p` (see the [module docs](self) for how a
/// raw message becomes `data`).
pub fn message_envelope(p: &Publication) -> String {
    let m = p.message.message();
    let mut out = String::with_capacity(m.len() + p.topic.len() + p.epoch.len() + 64);
    out.push_str(r#"{"op":"message","topic":"#);
    push_json_string(&mut out, &p.topic);
    let _ = write!(out, r#","offset":{},"epoch":"#, p.offset);
    push_json_string(&mut out, &p.epoch);
    match m.as_text() {
        Some(text) => {
            out.push_str(r#","data":"#);
            if serde_json::from_str::<&RawValue>(text).is_ok() {
                out.push_str(text);
            } else {
                push_json_string(&mut out, text);
            }
        }
        None => {
            out.push_str(r#","encoding":"base64","data":""#);
            base64(&mut out, m.as_bytes());
            out.push('"');
        }
    }
    out.push('}');
    out
}

fn push_json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("strings serialize"));
}

/// Standard base64 with padding.
fn base64(out: &mut String, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn err(text: &str) -> ErrorCode {
        match Request::parse(text, 16) {
            Ok(r) => panic!("{text} parsed as {r:?}"),
            Err(e) => {
                assert!(!e.message.is_empty());
                e.code
            }
        }
    }

    #[test]
    fn parses_every_request() {
        assert_eq!(
            Request::parse(r#"{"op":"subscribe","topic":"a"}"#, 16).unwrap(),
            Request::Subscribe {
                topic: "a".into(),
                since: None
            }
        );
        assert_eq!(
            Request::parse(
                r#"{"op":"subscribe","topic":"a","since":{"offset":3,"epoch":"e"}}"#,
                16
            )
            .unwrap(),
            Request::Subscribe {
                topic: "a".into(),
                since: Some(StreamPosition::new(3, "e"))
            }
        );
        assert_eq!(
            Request::parse(r#"{"op":"unsubscribe","topic":"a"}"#, 16).unwrap(),
            Request::Unsubscribe { topic: "a".into() }
        );
        assert_eq!(
            Request::parse(r#"{"op":"presence","topic":"a"}"#, 16).unwrap(),
            Request::Presence { topic: "a".into() }
        );
        assert_eq!(
            Request::parse(r#"{"op":"ping","id":7}"#, 16).unwrap(),
            Request::Ping { id: 7 }
        );
        let text = r#"{"op":"publish","topic":"a","data": {"x": [1, "é"]} , "extra":1}"#;
        match Request::parse(text, 16).unwrap() {
            Request::Publish { topic, data } => {
                assert_eq!(topic, "a");
                assert_eq!(data.get(), r#"{"x": [1, "é"]}"#);
                assert_eq!(publish_message(data).as_text(), Some(r#"{"x": [1, "é"]}"#));
            }
            other => panic!("{other:?}"),
        }
        // Escaped topic names are unescaped.
        assert_eq!(
            Request::parse(r#"{"op":"presence","topic":"r\u00e9"}"#, 16).unwrap(),
            Request::Presence {
                topic: "ré".into()
            }
        );
    }

    #[test]
    fn not_json() {
        assert_eq!(err(""), ErrorCode::BadJson);
        assert_eq!(err("hello"), ErrorCode::BadJson);
        assert_eq!(err(r#"{"op":"ping""#), ErrorCode::BadJson);
        assert_eq!(err(r#"{"op":"ping","id":1} trailing"#), ErrorCode::BadJson);
    }

    #[test]
    fn not_an_object() {
        assert_eq!(err("[]"), ErrorCode::BadJson);
        assert_eq!(err("42"), ErrorCode::BadJson);
        assert_eq!(err(r#""subscribe""#), ErrorCode::BadJson);
        assert_eq!(err("null"), ErrorCode::BadJson);
    }

    #[test]
    fn missing_or_ill_typed_fields() {
        assert_eq!(err("{}"), ErrorCode::BadRequest);
        assert_eq!(err(r#"{"op":1}"#), ErrorCode::BadRequest);
        assert_eq!(err(r#"{"op":"subscribe"}"#), ErrorCode::BadRequest);
        assert_eq!(
            err(r#"{"op":"subscribe","topic":5}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            err(r#"{"op":"subscribe","topic":"a","since":{"offset":-1,"epoch":"e"}}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            err(r#"{"op":"subscribe","topic":"a","since":{"offset":1}}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            err(r#"{"op":"subscribe","topic":"a","since":"1"}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(err(r#"{"op":"unsubscribe"}"#), ErrorCode::BadRequest);
        assert_eq!(err(r#"{"op":"presence"}"#), ErrorCode::BadRequest);
        assert_eq!(
            err(r#"{"op":"publish","topic":"a"}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(err(r#"{"op":"publish","data":1}"#), ErrorCode::BadRequest);
        assert_eq!(err(r#"{"op":"ping"}"#), ErrorCode::BadRequest);
        assert_eq!(err(r#"{"op":"ping","id":"x"}"#), ErrorCode::BadRequest);
        assert_eq!(err(r#"{"op":"ping","id":-3}"#), ErrorCode::BadRequest);
    }

    #[test]
    fn unknown_op() {
        assert_eq!(
            err(r#"{"op":"subscribez","topic":"a"}"#),
            ErrorCode::UnknownOp
        );
        assert_eq!(err(r#"{"op":"message","topic":"a"}"#), ErrorCode::UnknownOp);
        assert_eq!(err(r#"{"op":""}"#), ErrorCode::UnknownOp);
        // A long op is cut in the message.
        let long = format!(r#"{{"op":"{}"}}"#, "x".repeat(10_000));
        let e = Request::parse(&long, 16).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownOp);
        assert!(e.message.len() < 100, "{}", e.message);
    }

    #[test]
    fn bad_topic_names() {
        for op in ["subscribe", "unsubscribe", "presence"] {
            assert_eq!(
                err(&format!(r#"{{"op":"{op}","topic":""}}"#)),
                ErrorCode::InvalidTopic
            );
            assert_eq!(
                err(&format!(r#"{{"op":"{op}","topic":"{}"}}"#, "t".repeat(17))),
                ErrorCode::InvalidTopic
            );
            assert_eq!(
                err(&format!(r#"{{"op":"{op}","topic":"a\nb"}}"#)),
                ErrorCode::InvalidTopic
            );
            assert_eq!(
                err(&format!(r#"{{"op":"{op}","topic":"a\u0000"}}"#)),
                ErrorCode::InvalidTopic
            );
        }
        assert_eq!(
            err(r#"{"op":"publish","topic":"a\tb","data":1}"#),
            ErrorCode::InvalidTopic
        );
        // 16 bytes is the limit here.
        assert!(Request::parse(
            &format!(r#"{{"op":"presence","topic":"{}"}}"#, "t".repeat(16)),
            16
        )
        .is_ok());
    }

    #[test]
    fn hub_errors_map_to_codes() {
        let code = |e: HubError| EnvelopeError::from(e).code;
        assert_eq!(
            code(HubError::InvalidTopic("empty")),
            ErrorCode::InvalidTopic
        );
        assert_eq!(
            code(HubError::TooManyTopicsForConnection { limit: 1 }),
            ErrorCode::TooManySubscriptions
        );
        assert_eq!(
            code(HubError::TooManyTopics { limit: 1 }),
            ErrorCode::TooManyTopics
        );
        assert_eq!(
            code(HubError::AlreadySubscribed),
            ErrorCode::AlreadySubscribed
        );
        assert_eq!(code(HubError::backplane("down")), ErrorCode::Unavailable);
        assert_eq!(EnvelopeError::binary().code, ErrorCode::BinaryNotSupported);
    }

    #[test]
    fn replies_serialize() {
        let j = |r: Reply| serde_json::from_str::<serde_json::Value>(&r.to_json()).unwrap();
        assert_eq!(
            j(Reply::Subscribed {
                topic: "a".into(),
                offset: 3,
                epoch: "e".into(),
                recovered: true
            }),
            serde_json::json!({"op":"subscribed","topic":"a","offset":3,"epoch":"e","recovered":true})
        );
        assert_eq!(
            j(Reply::Presence {
                topic: "a".into(),
                count: 2
            }),
            serde_json::json!({"op":"presence","topic":"a","count":2})
        );
        assert_eq!(
            j(Reply::Pong { id: 9 }),
            serde_json::json!({"op":"pong","id":9})
        );
        assert_eq!(
            j(Reply::Unsubscribed { topic: "a".into() }),
            serde_json::json!({"op":"unsubscribed","topic":"a"})
        );
        assert_eq!(
            j(EnvelopeError::new(ErrorCode::TooManySubscriptions, "no").into()),
            serde_json::json!({"op":"error","code":"too_many_subscriptions","message":"no"})
        );
    }

    fn publication(message: Message) -> Publication {
        Publication {
            topic: Arc::from("room \"1\""),
            offset: 42,
            epoch: Arc::from("ep"),
            message: PreparedMessage::new(message),
        }
    }

    #[test]
    fn message_envelopes() {
        let v = |m: Message| -> serde_json::Value {
            let text = EnvelopeCodec.encode(&publication(m));
            serde_json::from_str(text.message().as_text().unwrap()).unwrap()
        };
        assert_eq!(
            v(Message::text(r#"{"nick":"a","text":"hi"}"#)),
            serde_json::json!({"op":"message","topic":"room \"1\"","offset":42,"epoch":"ep","data":{"nick":"a","text":"hi"}})
        );
        assert_eq!(v(Message::text("plain \"text\""))["data"], "plain \"text\"");
        assert_eq!(v(Message::text("12"))["data"], 12);
        let bin = v(Message::binary(vec![0u8, 1, 2, 250, 251]));
        assert_eq!(bin["encoding"], "base64");
        assert_eq!(bin["data"], "AAEC+vs=");
    }

    #[test]
    fn base64_padding() {
        for (input, expected) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ] {
            let mut s = String::new();
            base64(&mut s, input);
            assert_eq!(s, expected);
        }
    }
}
