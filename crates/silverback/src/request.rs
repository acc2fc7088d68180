//! What a server-side [`WebSocket`] keeps of its upgrade request: the
//! request target (path and query), the identity set by
//! [`Upgrader::authorize`](crate::Upgrader::authorize), and the headers
//! when [`Upgrader::keep_request_headers`](crate::Upgrader::keep_request_headers)
//! asked for them.
//!
//! An idle connection pays for this with one pointer in the `WebSocket`
//! (`None` on the client side) and, on the server side, one 64-byte
//! allocation plus the bytes of the request target. The request headers
//! (often a kilobyte with cookies) are dropped after the handshake unless
//! kept on purpose.

use std::any::Any;
use std::sync::Arc;

use http::uri::PathAndQuery;
use http::HeaderMap;

use crate::WebSocket;

/// A type-erased identity, as returned by an authorize hook.
pub(crate) type Identity = Arc<dyn Any + Send + Sync>;

/// The parts of the upgrade request a server-side connection keeps.
#[derive(Debug)]
pub(crate) struct UpgradeInfo {
    /// The request target: path and query.
    pub(crate) target: PathAndQuery,
    /// What the authorize hook returned, if anything.
    pub(crate) identity: Option<Identity>,
    /// The request headers, if the upgrader keeps them.
    pub(crate) headers: Option<Box<HeaderMap>>,
}

impl UpgradeInfo {
    /// The part of `uri` to keep: its path and query, in a buffer of their
    /// own (so that nothing else of the request stays allocated), shared
    /// with the previous connection's when it is the same target (most
    /// connections of a server come to one endpoint: one buffer for all,
    /// not one each).
    pub(crate) fn target_of(uri: &http::Uri) -> PathAndQuery {
        let Some(pq) = uri.path_and_query() else {
            return PathAndQuery::from_static("/");
        };
        thread_local! {
            /// The last target made on this thread.
            static LAST: std::cell::RefCell<Option<PathAndQuery>> =
                const { std::cell::RefCell::new(None) };
        }
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            if let Some(t) = last.as_ref().filter(|t| t.as_str() == pq.as_str()) {
                return t.clone();
            }
            let t = PathAndQuery::from_maybe_shared(bytes::Bytes::copy_from_slice(
                pq.as_str().as_bytes(),
            ))
            .unwrap_or_else(|_| PathAndQuery::from_static("/"));
            *last = Some(t.clone());
            t
        })
    }
}

/// The accessors to the upgrade request, the same on a [`WebSocket`] and
/// on both split halves; the type provides
/// `fn upgrade_info(&self) -> Option<&UpgradeInfo>`.
macro_rules! request_accessors {
    () => {
        /// Server side: the target of the upgrade request (path and query,
        /// e.g. `/chat?room=rust`). `None` on a client.
        pub fn request_target(&self) -> Option<&::http::uri::PathAndQuery> {
            self.upgrade_info().map(|u| &u.target)
        }

        /// Server side: the path of the upgrade request (e.g. `/chat`).
        pub fn request_path(&self) -> Option<&str> {
            self.request_target().map(::http::uri::PathAndQuery::path)
        }

        /// Server side: the query of the upgrade request, without the `?`
        /// (`None` if it had none, or on a client).
        pub fn request_query(&self) -> Option<&str> {
            self.request_target()
                .and_then(::http::uri::PathAndQuery::query)
        }

        /// Server side: the headers of the upgrade request, kept only when
        /// the upgrader was told to
        /// ([`Upgrader::keep_request_headers`](crate::Upgrader::keep_request_headers)):
        /// they often weigh a kilobyte (cookies), per connection.
        pub fn request_headers(&self) -> Option<&::http::HeaderMap> {
            self.upgrade_info().and_then(|u| u.headers.as_deref())
        }

        /// Server side: the identity the authorize hook returned
        /// ([`Authorized::new`](crate::Authorized::new)), if it is a `T`.
        pub fn identity<T: ::std::any::Any>(&self) -> Option<&T> {
            self.upgrade_info()?.identity.as_deref()?.downcast_ref()
        }

        /// Server side: the identity the authorize hook returned,
        /// type-erased and shared (clone it to keep it beyond the
        /// connection, e.g. in a presence list).
        pub fn identity_arc(&self) -> Option<&::std::sync::Arc<dyn ::std::any::Any + Send + Sync>> {
            self.upgrade_info()?.identity.as_ref()
        }
    };
}
pub(crate) use request_accessors;

/// Server side: what the connection knows of its upgrade request.
///
/// On a connection from an [`Upgrader`](crate::Upgrader) (raw transport or
/// hyper), the request target and the identity from the authorize hook are
/// always kept; the request headers only with
/// [`Upgrader::keep_request_headers`](crate::Upgrader::keep_request_headers).
/// On a client connection, or one made with
/// [`WebSocket::from_raw_socket`], they are all `None`. The split halves
/// ([`WsReader`](crate::WsReader), [`WsWriter`](crate::WsWriter)) have the
/// same accessors, without locking the connection.
///
/// ```
/// use silverback::{Authorized, Dialer, Upgrader};
/// use tokio::net::TcpListener;
///
/// #[derive(Debug, PartialEq)]
/// struct User(String);
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = TcpListener::bind("127.0.0.1:0").await?;
/// let url = format!("ws://{}/chat?room=rust", listener.local_addr()?);
/// let upgrader = Upgrader::new()
///     .keep_request_headers(true)
///     .authorize(|_req| async { Ok(Authorized::new(User("ada".into()))) });
/// let server = tokio::spawn(async move {
///     let (stream, _) = listener.accept().await?;
///     let ws = upgrader.upgrade(stream).await?;
///     assert_eq!(ws.request_path(), Some("/chat"));
///     assert_eq!(ws.request_query(), Some("room=rust"));
///     assert_eq!(ws.identity::<User>(), Some(&User("ada".into())));
///     assert_eq!(ws.request_headers().unwrap()["x-client"], "doc");
///     Ok::<_, silverback::Error>(())
/// });
/// let (_ws, _) = Dialer::new().header("x-client", "doc").connect(&url).await?;
/// server.await??;
/// # Ok(())
/// # }
/// ```
impl<S> WebSocket<S> {
    fn upgrade_info(&self) -> Option<&UpgradeInfo> {
        self.upgrade.as_deref()
    }

    /// Moves the upgrade request info out (to the split halves, which read
    /// it without locking the connection).
    pub(crate) fn take_upgrade_info(&mut self) -> Option<Box<UpgradeInfo>> {
        self.upgrade.take()
    }

    /// Puts back what [`take_upgrade_info`](Self::take_upgrade_info) took.
    pub(crate) fn restore_upgrade_info(&mut self, info: Option<Box<UpgradeInfo>>) {
        self.upgrade = info;
    }

    request_accessors!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_info_is_small() {
        // One cache line per server connection (plus the target's bytes).
        assert!(std::mem::size_of::<UpgradeInfo>() <= 64);
    }

    #[test]
    fn connections_to_one_target_share_its_bytes() {
        let uri: http::Uri = "/ws?room=1".parse().unwrap();
        let (a, b) = (UpgradeInfo::target_of(&uri), UpgradeInfo::target_of(&uri));
        assert_eq!(a.as_str().as_ptr(), b.as_str().as_ptr());
        let other = UpgradeInfo::target_of(&"/ws?room=2".parse().unwrap());
        assert_eq!(other.as_str(), "/ws?room=2");
        assert_ne!(other.as_str().as_ptr(), a.as_str().as_ptr());
        assert_eq!(a.as_str(), "/ws?room=1");
    }

    #[test]
    fn target_keeps_path_and_query() {
        let uri: http::Uri = "/a/b?x=1".parse().unwrap();
        let t = UpgradeInfo::target_of(&uri);
        assert_eq!((t.path(), t.query()), ("/a/b", Some("x=1")));
        let uri: http::Uri = "http://h:1/p".parse().unwrap();
        assert_eq!(UpgradeInfo::target_of(&uri).as_str(), "/p");
    }
}
