//! The upgrade side, over loopback: extra response headers, the request as
//! the server's WebSocket sees it, and the authorize hook with tokens from
//! a bearer header, a cookie and a subprotocol entry; on a raw transport
//! and with hyper.
#![allow(missing_docs)]

mod common;

use std::sync::Arc;

use common::*;
use silverback::proto::http::header::{HeaderName, HeaderValue, SET_COOKIE, WWW_AUTHENTICATE};
use silverback::proto::http::StatusCode;
use silverback::{Authorized, Dialer, ErrorKind, Message, Rejection, RequestHead, Upgrader};
use tokio::net::TcpStream;

#[derive(Debug, PartialEq)]
struct User {
    name: String,
}

/// Accepts the token "good" from wherever `take` finds it: identity
/// `User { name: "ada" }` and a per-connection `Set-Cookie`; a missing
/// token gets 401 with `WWW-Authenticate`, a wrong one 403.
fn token_upgrader(
    take: impl Fn(&RequestHead<'_>) -> Option<silverback::AuthToken> + Send + Sync + 'static,
) -> Upgrader {
    Upgrader::new().authorize(move |req| {
        let token = take(req);
        async move {
            let Some(token) = token else {
                let mut rej = Rejection::new(StatusCode::UNAUTHORIZED, "token required");
                rej.headers
                    .push((WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
                return Err(rej);
            };
            if token.expose() != "good" {
                return Err(Rejection::new(StatusCode::FORBIDDEN, "token refused"));
            }
            Ok(Authorized::new(User { name: "ada".into() })
                .header(SET_COOKIE, HeaderValue::from_static("session=s1; HttpOnly")))
        }
    })
}

/// Dials `url` with `dialer` and expects the server upgraded by `server`
/// to have accepted: returns both sides and the client's 101 response.
async fn accepted(
    dialer: Dialer,
    upgrader: Upgrader,
    path: &str,
) -> (
    silverback::WebSocket<TcpStream>,
    silverback::WebSocket<silverback::ClientStream>,
    silverback::proto::http::Response<()>,
) {
    let (url, server) = spawn_server(upgrader, |ws| async move { ws }).await;
    let url = url.replace("/ws", path);
    let (client, resp) = within(dialer.connect(&url)).await.unwrap();
    (within(server).await.unwrap(), client, resp)
}

#[tokio::test]
async fn upgrader_response_headers_reach_the_client() {
    let upgrader = Upgrader::new()
        .response_header(SET_COOKIE, HeaderValue::from_static("a=1"))
        .response_header(SET_COOKIE, HeaderValue::from_static("b=2"))
        .response_header(
            HeaderName::from_static("x-node"),
            HeaderValue::from_static("n1"),
        );
    let (mut server, mut client, resp) = accepted(Dialer::new(), upgrader, "/ws").await;
    assert_eq!(resp.status(), 101);
    let cookies: Vec<_> = resp.headers().get_all(SET_COOKIE).iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(resp.headers()["x-node"], "n1");
    // The connection works.
    within(client.send(Message::text("hi"))).await.unwrap();
    assert_eq!(within(server.recv()).await.unwrap(), Message::text("hi"));
}

#[test]
fn reserved_response_headers_are_refused() {
    for name in [
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "content-length",
        "transfer-encoding",
    ] {
        let err = Upgrader::new()
            .try_response_header(HeaderName::from_static(name), HeaderValue::from_static("x"))
            .unwrap_err();
        assert_eq!(err.name(), name);
    }
}

#[test]
#[should_panic(expected = "set by the WebSocket handshake")]
fn reserved_response_header_panics_in_the_builder() {
    let _ = Upgrader::new().response_header(
        HeaderName::from_static("sec-websocket-accept"),
        HeaderValue::from_static("x"),
    );
}

#[tokio::test]
async fn server_websocket_knows_its_request() {
    let dialer = Dialer::new().header("x-trace", "t1");
    // Default: path and query, no headers; no identity without a hook.
    let (server, client, _) = accepted(dialer.clone(), Upgrader::new(), "/chat?room=1").await;
    assert_eq!(server.request_path(), Some("/chat"));
    assert_eq!(server.request_query(), Some("room=1"));
    assert_eq!(server.request_target().unwrap().as_str(), "/chat?room=1");
    assert!(server.request_headers().is_none());
    assert!(server.identity::<User>().is_none());
    // A client knows no upgrade request.
    assert!(client.request_path().is_none() && client.request_headers().is_none());

    // Opted in: the headers too.
    let upgrader = Upgrader::new().keep_request_headers(true);
    let (server, _client, _) = accepted(dialer, upgrader, "/x").await;
    assert_eq!(server.request_query(), None);
    assert_eq!(server.request_headers().unwrap()["x-trace"], "t1");
}

#[tokio::test]
async fn authorize_accepts_with_identity_and_headers_from_a_bearer_token() {
    let upgrader = token_upgrader(|r| r.bearer_token())
        .response_header(SET_COOKIE, HeaderValue::from_static("static=1"));
    let dialer = Dialer::new().header("authorization", "Bearer good");
    let (mut server, mut client, resp) = accepted(dialer, upgrader, "/ws").await;
    assert_eq!(
        server.identity::<User>(),
        Some(&User { name: "ada".into() })
    );
    assert!(server.identity::<String>().is_none(), "wrong type");
    let shared = Arc::clone(server.identity_arc().unwrap());
    assert!(shared.downcast_ref::<User>().is_some());
    // The upgrader's header first, then the hook's.
    let cookies: Vec<_> = resp.headers().get_all(SET_COOKIE).iter().collect();
    assert_eq!(cookies, ["static=1", "session=s1; HttpOnly"]);
    within(server.send(Message::text("welcome"))).await.unwrap();
    assert_eq!(
        within(client.recv()).await.unwrap(),
        Message::text("welcome")
    );
}

#[tokio::test]
async fn authorize_refuses_with_status_headers_and_body() {
    for (dialer, status, body) in [
        (Dialer::new(), 401, "token required\n"),
        (
            Dialer::new().header("authorization", "Bearer bad"),
            403,
            "token refused\n",
        ),
    ] {
        let (url, server) = spawn_accept(|stream| async move {
            token_upgrader(|r| r.bearer_token()).upgrade(stream).await
        })
        .await;
        let err = within(dialer.connect(&url_of(&url))).await.unwrap_err();
        let resp = err.http_response().expect("an HTTP refusal");
        assert_eq!(resp.status(), status);
        assert_eq!(resp.body(), body);
        if status == 401 {
            assert_eq!(resp.headers()[WWW_AUTHENTICATE], "Bearer");
        }
        // The server side reports the refusal it sent.
        let err = within(server).await.unwrap().unwrap_err();
        match err.kind() {
            ErrorKind::Rejected(rej) => assert_eq!(rej.status, status),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
}

fn url_of(addr: &std::net::SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

#[tokio::test]
async fn token_from_a_cookie() {
    let upgrader = token_upgrader(|r| r.cookie_token("sid"));
    let dialer = Dialer::new().header("cookie", "theme=dark; sid=good");
    let (server, _client, _) = accepted(dialer, upgrader, "/ws").await;
    assert_eq!(server.identity::<User>().unwrap().name, "ada");

    // Another cookie is no token.
    let (addr, _server) =
        spawn_accept(|s| async move { token_upgrader(|r| r.cookie_token("sid")).upgrade(s).await })
            .await;
    let dialer = Dialer::new().header("cookie", "sidx=good");
    let err = within(dialer.connect(&url_of(&addr))).await.unwrap_err();
    assert_eq!(err.http_response().unwrap().status(), 401);
}

#[tokio::test]
async fn token_from_a_subprotocol_entry_is_never_echoed() {
    // The browser pattern: a real subprotocol plus the token entry (here
    // first, and even listed by the server: it is still not chosen).
    let upgrader =
        token_upgrader(|r| r.protocol_token()).subprotocols(["access_token.good", "chat"]);
    let dialer = Dialer::new().subprotocols(["access_token.good", "chat"]);
    let (server, client, resp) = accepted(dialer, upgrader, "/ws").await;
    assert_eq!(server.identity::<User>().unwrap().name, "ada");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
    assert_eq!(server.protocol(), Some("chat"));
    assert_eq!(client.protocol(), Some("chat"));

    // Only the token offered: no subprotocol at all.
    let upgrader = token_upgrader(|r| r.protocol_token()).subprotocols(["chat"]);
    let dialer = Dialer::new().subprotocols(["access_token.good"]);
    let (server, client, resp) = accepted(dialer, upgrader, "/ws").await;
    assert!(resp.headers().get("sec-websocket-protocol").is_none());
    assert_eq!((server.protocol(), client.protocol()), (None, None));
    assert!(server.identity::<User>().is_some());
}

#[tokio::test]
async fn authorize_runs_after_the_origin_check() {
    let hook_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ran = hook_ran.clone();
    let upgrader = Upgrader::new().authorize(move |_| {
        ran.store(true, std::sync::atomic::Ordering::SeqCst);
        async { Ok(Authorized::anonymous()) }
    });
    let (url, server) = spawn_accept(move |s| async move { upgrader.upgrade(s).await }).await;
    let dialer = Dialer::new().origin("http://evil.example");
    let err = within(dialer.connect(&url_of(&url))).await.unwrap_err();
    assert_eq!(err.http_response().unwrap().status(), 403);
    assert!(within(server).await.unwrap().is_err());
    assert!(!hook_ran.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test]
async fn a_reserved_header_from_the_hook_fails_with_500() {
    let upgrader = Upgrader::new().authorize(|_| async {
        Ok(Authorized::anonymous().header(
            HeaderName::from_static("sec-websocket-protocol"),
            HeaderValue::from_static("evil"),
        ))
    });
    let (url, server) = spawn_accept(move |s| async move { upgrader.upgrade(s).await }).await;
    let err = within(Dialer::new().connect(&url_of(&url)))
        .await
        .unwrap_err();
    assert_eq!(err.http_response().unwrap().status(), 500);
    assert!(within(server).await.unwrap().is_err());
}

/// In memory, on the paused clock: the hook never answers, the handshake
/// timeout ends the upgrade exactly when it is due.
#[tokio::test(start_paused = true)]
async fn a_hook_that_never_answers_is_bounded_by_the_handshake_timeout() {
    let timeout = std::time::Duration::from_secs(3);
    let upgrader = Upgrader::new()
        .handshake_timeout(timeout)
        .authorize(|_| std::future::pending());
    let (client_io, server_io) = tokio::io::duplex(64 << 10);
    let start = tokio::time::Instant::now();
    let server = tokio::spawn(async move { upgrader.upgrade(server_io).await });
    let client = tokio::spawn(async move {
        Dialer::new()
            .handshake(client_io, "ws://localhost/ws")
            .await
    });
    let err = server.await.unwrap().unwrap_err();
    assert!(err.is_timeout() && err.is_handshake(), "{err:?}");
    assert_eq!(start.elapsed(), timeout);
    // The client sees the connection end without a 101.
    assert!(client.await.unwrap().is_err());
}

#[cfg(feature = "hyper")]
mod hyper {
    use super::*;
    use common::hyper_server::spawn_hyper;

    #[tokio::test]
    async fn hyper_response_headers_identity_and_request() {
        let upgrader = token_upgrader(|r| r.bearer_token())
            .keep_request_headers(true)
            .response_header(
                HeaderName::from_static("x-node"),
                HeaderValue::from_static("n1"),
            );
        let (addr, mut upgraded) = spawn_hyper(upgrader).await;
        let dialer = Dialer::new().header("authorization", "Bearer good");
        let (mut client, resp) = within(dialer.connect(&format!("ws://{addr}/feed?since=5")))
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-node"], "n1");
        assert_eq!(resp.headers()[SET_COOKIE], "session=s1; HttpOnly");
        let mut server = within(upgraded.recv()).await.unwrap().unwrap();
        assert_eq!(server.identity::<User>().unwrap().name, "ada");
        assert_eq!(server.request_path(), Some("/feed"));
        assert_eq!(server.request_query(), Some("since=5"));
        assert_eq!(
            server.request_headers().unwrap()["authorization"],
            "Bearer good"
        );
        within(client.send(Message::text("x"))).await.unwrap();
        assert_eq!(within(server.recv()).await.unwrap(), Message::text("x"));
    }

    #[tokio::test]
    async fn hyper_refusal_from_the_hook() {
        let (addr, _upgraded) = spawn_hyper(token_upgrader(|r| r.cookie_token("sid"))).await;
        let dialer = Dialer::new().header("cookie", "sid=bad");
        let err = within(dialer.connect(&format!("ws://{addr}/ws")))
            .await
            .unwrap_err();
        let resp = err.http_response().unwrap();
        assert_eq!(resp.status(), 403);
        assert_eq!(resp.body(), "token refused\n");
    }

    #[tokio::test]
    async fn hyper_subprotocol_token_not_echoed() {
        let upgrader = token_upgrader(|r| r.protocol_token()).subprotocols(["chat"]);
        let (addr, mut upgraded) = spawn_hyper(upgrader).await;
        let dialer = Dialer::new().subprotocols(["access_token.good", "chat"]);
        let (client, resp) = within(dialer.connect(&format!("ws://{addr}/ws")))
            .await
            .unwrap();
        assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
        assert_eq!(client.protocol(), Some("chat"));
        let server = within(upgraded.recv()).await.unwrap().unwrap();
        assert_eq!(server.identity::<User>().unwrap().name, "ada");
    }

    /// In memory, on the paused clock: hyper's service must answer
    /// something when the hook outlives the handshake timeout: 503.
    #[tokio::test(start_paused = true)]
    async fn hyper_hook_timeout_is_503() {
        let upgrader = Upgrader::new()
            .handshake_timeout(std::time::Duration::from_secs(3))
            .authorize(|_| std::future::pending());
        let (client_io, _upgraded) = common::hyper_server::hyper_in_memory(upgrader);
        let err = Dialer::new()
            .handshake(client_io, "ws://localhost/ws")
            .await
            .unwrap_err();
        assert_eq!(err.http_response().unwrap().status(), 503);
    }
}
