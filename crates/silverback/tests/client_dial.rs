#![allow(missing_docs)]
//! The Dialer against our own server over loopback: `ws://`, `wss://`
//! (certificates made at test time), IPv6 literals, certificate
//! verification failures, client certificates, subprotocols and request
//! headers, refused upgrades (status, headers, body), redirects (relative
//! and absolute, the limit, credentials dropped on leaving the origin,
//! `wss://` -> `ws://` refused), HTTP CONNECT and SOCKS5 proxies, and close
//! codes both ways.
//!
//! Client frames being masked is covered by `tests/client.rs`.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use common::dial::{plain_wrap, upgrade_and_echo, BoxIo, Served, Session, TestProxy};
use common::*;
use silverback::http::{Request, Response};
use silverback::{CloseCode, Dialer, Error, ErrorKind, Message, Proxy, Upgrader, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// Echo round trips at the frame length encodings' boundaries.
async fn assert_echoes<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) {
    for n in [0usize, 125, 126, 65535, 65536] {
        let text: String = (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        within(ws.send(Message::text(text.clone()))).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap(), Message::text(text));
        let bin: Vec<u8> = (0..n).map(|i| i as u8).collect();
        within(ws.send(Message::binary(bin.clone()))).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap(), Message::binary(bin));
    }
}

/// The client closes with 4000: its `close` completes, and the server's
/// echo loop ends on a clean close from the peer with that code and reason.
async fn client_close_4000<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    served: &mut Served<Session>,
) -> Session {
    within(ws.close(CloseCode::from(4000), "client done"))
        .await
        .unwrap();
    let session = served.next_ok().await;
    assert!(session.end.is_closed(), "{:?}", session.end);
    assert!(
        matches!(session.end.kind(), ErrorKind::Closed { by_us: false, .. }),
        "{:?}",
        session.end
    );
    assert_eq!(session.end.close_code(), Some(CloseCode::from(4000)));
    assert_eq!(session.end.close_frame().unwrap().reason, "client done");
    session
}

fn host_header(session: &Session) -> &str {
    session.request.headers()["host"].to_str().unwrap()
}

#[tokio::test]
async fn ws_echo_and_client_close_4000() {
    let mut served = Served::plain(upgrade_and_echo(Upgrader::new())).await;
    let url = served.url("ws", None, "/ws?x=1");
    let (mut ws, resp) = within(Dialer::new().no_proxy().connect(&url))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    assert!(!ws.get_ref().is_tls());
    assert_eq!(ws.protocol(), None);
    assert_echoes(&mut ws).await;
    let session = client_close_4000(ws, &mut served).await;
    assert_eq!(session.request.uri(), "/ws?x=1");
    assert_eq!(host_header(&session), served.addr.to_string());
}

#[tokio::test]
async fn server_close_1001_reaches_the_client() {
    let mut served = Served::plain(|io: BoxIo| async move {
        let mut ws = Upgrader::new().upgrade(io).await.unwrap();
        ws.send(Message::text("before the close")).await.unwrap();
        ws.close(CloseCode::GoingAway, "server going away").await
    })
    .await;
    let (mut ws, _) = within(Dialer::new().connect(&served.url("ws", None, "/")))
        .await
        .unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap(),
        Message::text("before the close")
    );
    let end = within(ws.recv()).await.unwrap_err();
    assert!(end.is_closed(), "{end:?}");
    assert!(
        matches!(end.kind(), ErrorKind::Closed { by_us: false, .. }),
        "{end:?}"
    );
    assert_eq!(end.close_code(), Some(CloseCode::GoingAway));
    assert_eq!(end.close_frame().unwrap().reason, "server going away");
    assert!(!end.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
    // The server's close completed: the client answered its Close.
    served.next_ok().await.unwrap();
}

#[tokio::test]
async fn ipv6_literal_url() {
    let listener = match TcpListener::bind("[::1]:0").await {
        Ok(l) => l,
        Err(e) => {
            // An environment fact (no IPv6 loopback), not a silent skip:
            // only this error is accepted as a reason not to run.
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::AddrNotAvailable,
                "binding [::1]:0: {e}"
            );
            eprintln!("NOT RUN: no IPv6 loopback on this machine: binding [::1]:0: {e}");
            return;
        }
    };
    let mut served = Served::on(listener, plain_wrap(), upgrade_and_echo(Upgrader::new()));
    let url = served.url("ws", None, "/v6");
    assert!(url.starts_with("ws://[::1]:"), "{url}");
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    assert!(ws
        .get_ref()
        .get_ref()
        .unwrap()
        .peer_addr()
        .unwrap()
        .is_ipv6());
    assert_echoes(&mut ws).await;
    let session = client_close_4000(ws, &mut served).await;
    assert_eq!(
        host_header(&session),
        format!("[::1]:{}", served.addr.port())
    );
    assert_eq!(session.request.uri(), "/v6");
}

#[tokio::test]
async fn handshake_over_a_transport_of_our_own() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let ws = Upgrader::new().upgrade(server_io).await.unwrap();
        echo(ws).await.0
    });
    let (mut ws, resp) = within(Dialer::new().handshake(client_io, "ws://in-memory.invalid/ws"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    assert_echoes(&mut ws).await;
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    let end = within(server).await.unwrap();
    assert_eq!(end.close_code(), Some(CloseCode::Normal));
}

#[tokio::test]
async fn subprotocol_is_the_servers_preference_among_those_offered() {
    let mut served =
        Served::plain(upgrade_and_echo(Upgrader::new().subprotocols(["b", "a"]))).await;
    let (ws, resp) = within(
        Dialer::new()
            .subprotocols(["a", "b"])
            .connect(&served.url("ws", None, "/")),
    )
    .await
    .unwrap();
    assert_eq!(ws.protocol(), Some("b"));
    assert_eq!(resp.headers()["sec-websocket-protocol"], "b");
    let session = client_close_4000(ws, &mut served).await;
    assert_eq!(session.protocol.as_deref(), Some("b"));
    assert_eq!(session.request.headers()["sec-websocket-protocol"], "a, b");

    // Nothing in common: no subprotocol, and the connection still opens.
    let (ws, resp) = within(
        Dialer::new()
            .subprotocols(["c"])
            .connect(&served.url("ws", None, "/")),
    )
    .await
    .unwrap();
    assert_eq!(ws.protocol(), None);
    assert!(resp.headers().get("sec-websocket-protocol").is_none());
    client_close_4000(ws, &mut served).await;
}

#[tokio::test]
async fn custom_headers_and_origin_reach_the_server() {
    let mut served = Served::plain(upgrade_and_echo(Upgrader::new().check_origin(|_| true))).await;
    let dialer = Dialer::new()
        .header("Authorization", "Bearer t0ken")
        .header("Cookie", "session=abc; theme=dark")
        .try_header("X-Test", "v")
        .unwrap()
        .origin("https://app.example");
    let (ws, _) = within(dialer.connect(&served.url("ws", None, "/")))
        .await
        .unwrap();
    let session = client_close_4000(ws, &mut served).await;
    let h = session.request.headers();
    assert_eq!(h["authorization"], "Bearer t0ken");
    assert_eq!(h["cookie"], "session=abc; theme=dark");
    assert_eq!(h["x-test"], "v");
    assert_eq!(h["origin"], "https://app.example");

    // Headers that are not valid HTTP are refused before dialing.
    for (name, value) in [("bad name", "v"), ("x-ok", "line\r\nbreak")] {
        let err = Dialer::new().try_header(name, value).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::InvalidUrl(_)),
            "{name:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn cross_origin_refusal_is_an_http_status_error() {
    // The default upgrader refuses an Origin that does not match Host.
    let served =
        Served::plain(|io: BoxIo| async move { Upgrader::new().upgrade(io).await.err() }).await;
    let err = within(
        Dialer::new()
            .origin("https://evil.example")
            .connect(&served.url("ws", None, "/")),
    )
    .await
    .unwrap_err();
    assert!(err.is_handshake(), "{err:?}");
    let resp = err.http_response().expect("the 403 response");
    assert_eq!(resp.status(), 403);
    assert!(
        String::from_utf8_lossy(resp.body()).contains("cross-origin"),
        "{resp:?}"
    );
    assert!(err.to_string().contains("403"), "{err}");
}

/// A raw server that answers the upgrade request with `response`, then
/// either waits for the client to close (`close_after: false`: the body
/// must be read by its length) or closes its side at once.
async fn refusing_server(response: &'static [u8], close_after: bool) -> String {
    let (addr, _task) = spawn_accept(move |stream| async move {
        let mut s = RawPeer::new(stream);
        s.read_request_head().await;
        s.write(response).await;
        if close_after {
            use tokio::io::AsyncWriteExt;
            within(s.stream.shutdown()).await.unwrap();
        }
        // The client drops the connection once it has the response.
        s.expect_eof().await;
    })
    .await;
    format!("ws://{addr}/private")
}

#[tokio::test]
async fn refused_upgrade_keeps_status_headers_and_body() {
    // Body delimited by Content-Length on a connection the server keeps
    // open, then a body delimited by the end of the stream.
    let cases: [(&'static [u8], bool); 2] = [
        (
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"silverback\"\r\n\
              Content-Type: text/plain\r\nContent-Length: 8\r\n\r\ngo away\n",
            false,
        ),
        (
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"silverback\"\r\n\
              Connection: close\r\n\r\ngo away\n",
            true,
        ),
    ];
    for (response, close_after) in cases {
        let url = refusing_server(response, close_after).await;
        let err = within(Dialer::new().connect(&url)).await.unwrap_err();
        assert!(err.is_handshake(), "{err:?}");
        assert!(!err.is_tls() && !err.is_closed(), "{err:?}");
        let resp = err.http_response().expect("the refusal");
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Bearer realm=\"silverback\""
        );
        assert_eq!(resp.body().as_ref(), b"go away\n");
        let msg = err.to_string();
        assert!(msg.contains("401") && msg.contains("go away"), "{msg}");
    }
}

/// A server that redirects `/one` → `/two` → `/real` (relative
/// locations), `/away` → an absolute `http://` URL on `elsewhere`, and
/// upgrades `/real`. Yields each request's path and, for the upgraded one,
/// how it ended.
async fn redirecting_server(elsewhere: Option<String>) -> Served<(String, Option<Error>)> {
    Served::plain(move |io: BoxIo| {
        let elsewhere = elsewhere.clone();
        async move {
            let upgrader = Upgrader::new();
            let incoming = upgrader.read_request(io).await.unwrap();
            let path = incoming.request().uri().path().to_owned();
            let location = match path.as_str() {
                "/real" => {
                    let ws = incoming.upgrade(&upgrader).await.unwrap();
                    return (path, Some(echo(ws).await.0));
                }
                "/one" => "/two".to_owned(),
                "/two" => "/real".to_owned(),
                "/away" => elsewhere.expect("an absolute target"),
                other => panic!("unexpected path {other}"),
            };
            let resp = Response::builder()
                .status(302)
                .header("location", location)
                .body("moved\n")
                .unwrap();
            incoming.respond(resp).await.unwrap();
            (path, None)
        }
    })
    .await
}

#[tokio::test]
async fn redirects_followed_only_when_asked() {
    let mut served = redirecting_server(None).await;

    // Not asked: the 302 is the error, with its Location.
    let err = within(Dialer::new().connect(&served.url("ws", None, "/two")))
        .await
        .unwrap_err();
    let resp = err.http_response().expect("the redirect");
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/real");
    assert!(err.is_handshake(), "{err:?}");
    assert_eq!(served.next_ok().await.0, "/two");

    // One allowed: /two → /real.
    let (mut ws, _) = within(
        Dialer::new()
            .follow_redirects(1)
            .connect(&served.url("ws", None, "/two")),
    )
    .await
    .unwrap();
    assert_echoes(&mut ws).await;
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    let (path, end) = served.next_ok().await;
    assert_eq!(path, "/two");
    assert!(end.is_none());
    let (path, end) = served.next_ok().await;
    assert_eq!(path, "/real");
    assert_eq!(end.unwrap().close_code(), Some(CloseCode::Normal));

    // Two hops with one allowed: the second redirect is the error.
    let err = within(
        Dialer::new()
            .follow_redirects(1)
            .connect(&served.url("ws", None, "/one")),
    )
    .await
    .unwrap_err();
    let resp = err.http_response().expect("the second redirect");
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/real");
    assert_eq!(served.next_ok().await.0, "/one");
    assert_eq!(served.next_ok().await.0, "/two");
}

#[tokio::test]
async fn absolute_http_redirect_to_another_server() {
    let mut real = redirecting_server(None).await;
    let target = real.url("http", None, "/real");
    let mut first = redirecting_server(Some(target)).await;
    let (ws, _) = within(
        Dialer::new()
            .follow_redirects(3)
            .connect(&first.url("ws", None, "/away")),
    )
    .await
    .unwrap();
    assert!(!ws.get_ref().is_tls());
    drop(ws);
    assert_eq!(first.next_ok().await.0, "/away");
    let (path, end) = real.next_ok().await;
    assert_eq!(path, "/real");
    // Dropped without a Close: the server sees 1006.
    assert_eq!(end.unwrap().close_code(), Some(CloseCode::Abnormal));
}

// ----- redirects and credentials ---------------------------------------------

const CREDENTIALS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// A dialer with the three credential headers, a header of our own, an
/// Origin and a subprotocol, following up to `n` redirects.
fn dialer_with_credentials(n: usize) -> Dialer {
    Dialer::new()
        .header("Authorization", "Bearer t0ken")
        .header("Cookie", "session=abc")
        .header("Proxy-Authorization", "Basic YWxpY2U6cw==")
        .header("X-Custom", "kept")
        .origin("https://app.example")
        .subprotocols(["chat"])
        .follow_redirects(n)
}

/// Asserts which of the credential headers `request` carried.
fn assert_credentials(request: &Request<()>, present: bool) {
    let h = request.headers();
    for name in CREDENTIALS {
        assert_eq!(
            h.contains_key(name),
            present,
            "{name} in the request for {}: {h:?}",
            request.uri()
        );
    }
    if present {
        assert_eq!(h["authorization"], "Bearer t0ken");
        assert_eq!(h["cookie"], "session=abc");
        assert_eq!(h["proxy-authorization"], "Basic YWxpY2U6cw==");
    }
}

/// Asserts the headers that go on every hop.
fn assert_other_headers(request: &Request<()>) {
    let h = request.headers();
    assert_eq!(h["x-custom"], "kept", "{h:?}");
    assert_eq!(h["origin"], "https://app.example", "{h:?}");
    assert_eq!(h["sec-websocket-protocol"], "chat", "{h:?}");
}

/// A raw TCP server for one connection: answers the upgrade request with
/// `status` and `Location: location`, then waits for the client to hang
/// up. Yields the request head it received.
async fn raw_redirector(
    status: &'static str,
    location: String,
) -> (String, tokio::task::JoinHandle<Request<()>>) {
    let (addr, task) = spawn_accept(move |stream| async move {
        let mut s = RawPeer::new(stream);
        let request = s.read_request_head().await;
        let resp =
            format!("HTTP/1.1 {status}\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
        s.write(resp.as_bytes()).await;
        s.expect_eof().await;
        request
    })
    .await;
    (format!("ws://{addr}/start"), task)
}

/// The server the redirects lead to: records the request, accepts any
/// Origin, chooses subprotocol "chat", echoes.
fn recording_upgrader() -> Upgrader {
    Upgrader::new()
        .subprotocols(["chat"])
        .check_origin(|_| true)
}

/// One request a [`hop_handler`] served: its head, and whether it was
/// upgraded (then echoed until the connection ended).
struct Hop {
    request: Request<()>,
    upgraded: bool,
}

/// A handler for redirect chains on one server: a request for a path in
/// `routes` is answered `307` with that `Location`; any other is upgraded
/// by [`recording_upgrader`] and echoed.
fn hop_handler(
    routes: Vec<(&'static str, String)>,
) -> impl Fn(BoxIo) -> Pin<Box<dyn Future<Output = Hop> + Send>> + Send + Sync + 'static {
    let routes = Arc::new(routes);
    move |io| {
        let routes = routes.clone();
        Box::pin(async move {
            let upgrader = recording_upgrader();
            let incoming = upgrader.read_request(io).await.expect("request head");
            let request = incoming.request().clone();
            let path = request.uri().path();
            if let Some((_, location)) = routes.iter().find(|(p, _)| *p == path) {
                let resp = Response::builder()
                    .status(307)
                    .header("location", location)
                    .body("moved\n")
                    .unwrap();
                incoming.respond(resp).await.unwrap();
                return Hop {
                    request,
                    upgraded: false,
                };
            }
            let ws = incoming.upgrade(&upgrader).await.expect("server upgrade");
            echo(ws).await;
            Hop {
                request,
                upgraded: true,
            }
        })
    }
}

/// The next `n` requests `served` handled, by request target: the order in
/// which their handlers end is not the order of the requests.
async fn hops(served: &mut Served<Hop>, n: usize) -> HashMap<String, Hop> {
    let mut hops = HashMap::new();
    for _ in 0..n {
        let hop = served.next_ok().await;
        hops.insert(hop.request.uri().to_string(), hop);
    }
    hops
}

/// One echo round trip, then a close with 1000.
async fn echo_once_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocket<S>) {
    assert_eq!(ws.protocol(), Some("chat"));
    within(ws.send(Message::text("over the redirect")))
        .await
        .unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap(),
        Message::text("over the redirect")
    );
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
}

#[tokio::test]
async fn cross_origin_redirect_drops_credentials_and_keeps_other_headers() {
    // Another port on the same host (307), and another host and port (302,
    // 127.0.0.1 -> localhost).
    for (status, host) in [
        ("307 Temporary Redirect", None),
        ("302 Found", Some("localhost")),
    ] {
        let mut target = Served::plain(upgrade_and_echo(recording_upgrader())).await;
        let (url, redirector) = raw_redirector(status, target.url("ws", host, "/target?q=1")).await;
        let (ws, resp) = within(dialer_with_credentials(1).connect(&url))
            .await
            .unwrap();
        assert_eq!(resp.status(), 101);
        assert_eq!(ws.protocol(), Some("chat"));
        let session = client_close_4000(ws, &mut target).await;

        let first = within(redirector).await.unwrap();
        assert_credentials(&first, true);
        assert_other_headers(&first);

        let second = &session.request;
        assert_eq!(second.uri(), "/target?q=1", "{status}");
        assert_credentials(second, false);
        assert_other_headers(second);
        assert_eq!(session.protocol.as_deref(), Some("chat"));
        let expected_host = format!("{}:{}", host.unwrap_or("127.0.0.1"), target.addr.port());
        assert_eq!(host_header(&session), expected_host);
    }
}

#[tokio::test]
async fn same_origin_redirects_keep_credentials() {
    // An absolute Location on the same origin (the host in upper case),
    // then a relative one.
    let (listener, addr) = listen().await;
    let routes = vec![
        ("/one", format!("ws://LOCALHOST:{}/dir/two", addr.port())),
        ("/dir/two", "three?x=1".to_owned()),
    ];
    let mut served = Served::on(listener, plain_wrap(), hop_handler(routes));
    let url = format!("ws://localhost:{}/one", addr.port());
    let (ws, _) = within(dialer_with_credentials(2).connect(&url))
        .await
        .unwrap();
    echo_once_and_close(ws).await;
    let hops = hops(&mut served, 3).await;
    for expected in ["/one", "/dir/two", "/dir/three?x=1"] {
        let hop = &hops[expected];
        assert_eq!(hop.upgraded, expected == "/dir/three?x=1");
        assert_credentials(&hop.request, true);
        assert_other_headers(&hop.request);
    }
}

#[tokio::test]
async fn credentials_stay_dropped_when_a_redirect_comes_back() {
    // Same server and port, only the host name changes: 127.0.0.1 ->
    // localhost (another origin) -> 127.0.0.1 (the first origin again).
    let (listener, addr) = listen().await;
    let port = addr.port();
    let routes = vec![
        ("/out", format!("ws://localhost:{port}/back")),
        ("/back", format!("http://127.0.0.1:{port}/real")),
    ];
    let mut served = Served::on(listener, plain_wrap(), hop_handler(routes));
    let url = format!("ws://127.0.0.1:{port}/out");
    let (ws, _) = within(dialer_with_credentials(2).connect(&url))
        .await
        .unwrap();
    echo_once_and_close(ws).await;
    let hops = hops(&mut served, 3).await;
    for (path, credentials) in [("/out", true), ("/back", false), ("/real", false)] {
        let hop = &hops[path];
        assert_eq!(hop.upgraded, path == "/real");
        assert_credentials(&hop.request, credentials);
        assert_other_headers(&hop.request);
    }
}

#[tokio::test]
async fn redirect_loop_ends_at_the_limit() {
    let (listener, _) = listen().await;
    let routes = vec![("/loop", "/loop".to_owned())];
    let mut served = Served::on(listener, plain_wrap(), hop_handler(routes));
    let err = within(dialer_with_credentials(3).connect(&served.url("ws", None, "/loop")))
        .await
        .unwrap_err();
    // Three redirects followed; the fourth is the error.
    let resp = err.http_response().expect("the last redirect");
    assert_eq!(resp.status(), 307);
    assert_eq!(resp.headers()["location"], "/loop");
    for _ in 0..4 {
        let hop = served.next_ok().await;
        assert_eq!(hop.request.uri(), "/loop");
        assert_credentials(&hop.request, true);
    }
}

#[tokio::test]
async fn ws_through_http_connect_proxy_to_an_ip_literal() {
    let mut served = Served::plain(upgrade_and_echo(Upgrader::new())).await;
    let proxy = TestProxy::http(None).await;
    let dialer = Dialer::new().proxy(Proxy::parse(&proxy.url("http", None)).unwrap());
    let (mut ws, _) = within(dialer.connect(&served.url("ws", None, "/")))
        .await
        .unwrap();
    assert_echoes(&mut ws).await;
    client_close_4000(ws, &mut served).await;
    assert_eq!(proxy.log(), [format!("CONNECT {}", served.addr)]);
}

#[tokio::test]
async fn ws_through_socks5_proxy_with_ipv4_and_domain_targets() {
    let mut served = Served::plain(upgrade_and_echo(Upgrader::new())).await;
    let proxy = TestProxy::socks5(None).await;
    let dialer = Dialer::new().proxy(Proxy::socks5(&proxy.url("socks5", None)).unwrap());
    let port = served.addr.port();
    for host in ["127.0.0.1", "localhost"] {
        let url = served.url("ws", Some(host), "/");
        let (mut ws, _) = within(dialer.connect(&url)).await.unwrap();
        assert_echoes(&mut ws).await;
        client_close_4000(ws, &mut served).await;
    }
    assert_eq!(
        proxy.log(),
        [
            format!("socks5 ipv4 127.0.0.1:{port}"),
            format!("socks5 domain localhost:{port}"),
        ]
    );
}

#[tokio::test]
async fn socks5_password_authentication() {
    let mut served = Served::plain(upgrade_and_echo(Upgrader::new())).await;
    let proxy = TestProxy::socks5(Some(("bob", "hunter2"))).await;
    let url = served.url("ws", Some("localhost"), "/");
    let port = served.addr.port();

    let good = Proxy::parse(&proxy.url("socks5h", Some("bob:hunter2"))).unwrap();
    let (mut ws, _) = within(Dialer::new().proxy(good).connect(&url))
        .await
        .unwrap();
    assert_echoes(&mut ws).await;
    client_close_4000(ws, &mut served).await;

    // Wrong password, then none at all (no acceptable method).
    let wrong = Proxy::socks5(&proxy.url("socks5", None))
        .unwrap()
        .with_auth("bob", "wrong");
    let none = Proxy::socks5(&proxy.url("socks5", None)).unwrap();
    for proxy_config in [wrong, none] {
        let err = within(Dialer::new().proxy(proxy_config).connect(&url))
            .await
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Proxy(_)), "{err:?}");
        assert!(!err.is_handshake(), "{err:?}");
    }
    assert_eq!(
        proxy.log(),
        [
            "auth ok for \"bob\"".to_owned(),
            format!("socks5 domain localhost:{port}"),
            "auth failed for \"bob\"".to_owned(),
            "no acceptable method in [0]".to_owned(),
        ]
    );
}

#[tokio::test]
async fn http_proxy_refusing_credentials_is_a_proxy_error() {
    let served = Served::plain(upgrade_and_echo(Upgrader::new())).await;
    let proxy = TestProxy::http(Some(("alice", "s:cret"))).await;
    let url = served.url("ws", Some("localhost"), "/");
    let wrong = Proxy::http(&proxy.url("http", None))
        .unwrap()
        .with_auth("alice", "nope");
    let none = Proxy::http(&proxy.url("http", None)).unwrap();
    for proxy_config in [wrong, none] {
        let err = within(Dialer::new().proxy(proxy_config).connect(&url))
            .await
            .unwrap_err();
        match err.kind() {
            ErrorKind::Proxy(msg) => assert!(msg.contains("407"), "{msg}"),
            other => panic!("expected a proxy error, got {other:?}"),
        }
        assert!(err.http_response().is_none(), "{err:?}");
    }
    let target = format!("localhost:{}", served.addr.port());
    assert_eq!(
        proxy.log(),
        [format!("407 {target}"), format!("407 {target}")]
    );
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use common::dial::tls_wrap;
    use common::pki::{acceptor, acceptor_requiring_client_cert, loopback_pki, Ca};
    use silverback::tls::TlsConfig;
    use silverback::RedirectRefusal;

    #[tokio::test]
    async fn wss_echo_by_name_and_by_ip_and_client_close_4000() {
        let (ca, leaf) = loopback_pki();
        let mut served = Served::tls(acceptor(&leaf), upgrade_and_echo(Upgrader::new())).await;
        let dialer = Dialer::new().tls(ca.trusted_by_client());
        for host in ["localhost", "127.0.0.1"] {
            let url = served.url("wss", Some(host), "/secure");
            let (mut ws, resp) = within(dialer.connect(&url)).await.unwrap();
            assert_eq!(resp.status(), 101);
            assert!(ws.get_ref().is_tls(), "{url}");
            assert_echoes(&mut ws).await;
            let session = client_close_4000(ws, &mut served).await;
            // The default port of wss is 443: this one is in Host.
            assert_eq!(
                host_header(&session),
                format!("{host}:{}", served.addr.port())
            );
        }
    }

    #[tokio::test]
    async fn wss_server_close_1001() {
        let (ca, leaf) = loopback_pki();
        let mut served = Served::tls(acceptor(&leaf), |io: BoxIo| async move {
            let mut ws = Upgrader::new().upgrade(io).await.unwrap();
            ws.close(CloseCode::GoingAway, "bye").await
        })
        .await;
        let (mut ws, _) = within(
            Dialer::new()
                .tls(ca.trusted_by_client())
                .connect(&served.url("wss", Some("localhost"), "/")),
        )
        .await
        .unwrap();
        let end = within(ws.recv()).await.unwrap_err();
        assert_eq!(end.close_code(), Some(CloseCode::GoingAway), "{end:?}");
        assert_eq!(end.close_frame().unwrap().reason, "bye");
        served.next_ok().await.unwrap();
    }

    #[tokio::test]
    async fn wss_ipv6_literal_url() {
        let listener = match TcpListener::bind("[::1]:0").await {
            Ok(l) => l,
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::AddrNotAvailable,
                    "binding [::1]:0: {e}"
                );
                eprintln!("NOT RUN: no IPv6 loopback on this machine: binding [::1]:0: {e}");
                return;
            }
        };
        let (ca, leaf) = loopback_pki();
        let mut served = Served::on(
            listener,
            tls_wrap(acceptor(&leaf)),
            upgrade_and_echo(Upgrader::new()),
        );
        let url = served.url("wss", None, "/");
        let (mut ws, _) = within(Dialer::new().tls(ca.trusted_by_client()).connect(&url))
            .await
            .unwrap();
        assert!(ws.get_ref().is_tls());
        assert_echoes(&mut ws).await;
        client_close_4000(ws, &mut served).await;
    }

    /// Dials `url` with `tls` against a server at `listener` that presents
    /// `leaf`; checks the client spoke TLS (a ClientHello, never a
    /// plaintext request) and made no second attempt. Returns the client's
    /// error and the server's TLS outcome.
    async fn refused_tls(
        listener: TcpListener,
        tls: TlsConfig,
        url: String,
        acceptor: silverback::tls::TlsAcceptor,
    ) -> (Error, std::io::Result<()>) {
        let client = tokio::spawn(async move {
            Dialer::new()
                .tls(tls)
                .connect(&url)
                .await
                .map(|(ws, _)| ws.get_ref().is_tls())
        });
        let (tcp, _) = within(listener.accept()).await.unwrap();
        let mut first = [0u8; 1];
        within(tcp.peek(&mut first)).await.unwrap();
        assert_eq!(
            first[0], 0x16,
            "the client's first byte is not a TLS handshake record"
        );
        let server = within(acceptor.accept(tcp)).await.map(drop);
        let err = match within(client).await.unwrap() {
            Ok(tls) => panic!("connected (TLS: {tls}) despite an untrusted certificate"),
            Err(e) => e,
        };
        // No other connection was attempted (e.g. a plaintext retry).
        let listener = listener.into_std().unwrap();
        listener.set_nonblocking(true).unwrap();
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a second connection after the TLS failure: {other:?}"),
        }
        (err, server)
    }

    #[tokio::test]
    async fn untrusted_issuer_is_a_tls_error_without_fallback() {
        let (_ca, leaf) = loopback_pki();
        let other_ca = Ca::new("not the server's CA");
        let configs = [
            ("the default webpki roots", TlsConfig::default()),
            ("another CA only", other_ca.trusted_by_client()),
        ];
        for (what, tls) in configs {
            let (listener, addr) = listen().await;
            let url = format!("wss://localhost:{}/ws", addr.port());
            let (err, server) = refused_tls(listener, tls, url, acceptor(&leaf)).await;
            assert!(err.is_tls(), "{what}: {err:?}");
            assert!(!err.is_handshake() && err.http_response().is_none());
            let msg = err.to_string();
            assert!(
                msg.contains("TLS error") && msg.contains("UnknownIssuer"),
                "{what}: {msg}"
            );
            assert!(server.is_err(), "{what}: the server's handshake succeeded");
        }
    }

    #[tokio::test]
    async fn wrong_name_is_a_tls_error() {
        let ca = Ca::new("silverback test CA");
        let leaf = ca.server_leaf(&["other.invalid"]);
        for host in ["localhost", "127.0.0.1"] {
            let (listener, addr) = listen().await;
            let url = format!("wss://{host}:{}/ws", addr.port());
            let (err, _) =
                refused_tls(listener, ca.trusted_by_client(), url, acceptor(&leaf)).await;
            assert!(err.is_tls(), "{host}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains("not valid for name"), "{host}: {msg}");
            assert!(msg.contains(host), "{host}: {msg}");
        }
    }

    #[tokio::test]
    async fn danger_accept_invalid_certs_connects_anyway() {
        // Untrusted issuer and a name that does not match.
        let leaf = Ca::new("unknown").server_leaf(&["other.invalid"]);
        let mut served = Served::tls(acceptor(&leaf), upgrade_and_echo(Upgrader::new())).await;
        let tls = TlsConfig::builder()
            .danger_accept_invalid_certs()
            .build()
            .unwrap();
        let (mut ws, _) = within(Dialer::new().tls(tls).connect(&served.url(
            "wss",
            Some("localhost"),
            "/",
        )))
        .await
        .unwrap();
        assert!(ws.get_ref().is_tls());
        assert_echoes(&mut ws).await;
        client_close_4000(ws, &mut served).await;
    }

    #[tokio::test]
    async fn ws_url_to_a_tls_server_does_not_upgrade() {
        // The reverse mistake: plain text to a TLS port fails (the server
        // answers with a TLS alert, not a 101).
        let (_ca, leaf) = loopback_pki();
        let mut served = Served::tls(acceptor(&leaf), |_io: BoxIo| async {}).await;
        let err = within(Dialer::new().connect(&served.url("ws", None, "/")))
            .await
            .unwrap_err();
        assert!(!err.is_closed(), "{err:?}");
        assert!(
            served.next().await.is_err(),
            "the TLS server accepted plain text"
        );
    }

    #[tokio::test]
    async fn client_certificate_required_by_the_server() {
        let (ca, leaf) = loopback_pki();
        let client_ca = Ca::new("client CA");
        let mut served = Served::tls(
            acceptor_requiring_client_cert(&leaf, &client_ca),
            upgrade_and_echo(Upgrader::new()),
        )
        .await;
        let url = served.url("wss", Some("localhost"), "/");

        let me = client_ca.client_leaf("alice");
        let with_cert = TlsConfig::builder()
            .webpki_roots(false)
            .add_root_pem(ca.pem.as_bytes())
            .unwrap()
            .client_cert_pem(me.cert_pem.as_bytes(), me.key_pem.as_bytes())
            .unwrap()
            .build()
            .unwrap();
        let (mut ws, _) = within(Dialer::new().tls(with_cert).connect(&url))
            .await
            .unwrap();
        assert_echoes(&mut ws).await;
        client_close_4000(ws, &mut served).await;

        // Without a certificate, or with one from a CA the server does not
        // trust: refused.
        let stranger = Ca::new("stranger CA").client_leaf("mallory");
        let untrusted_cert = TlsConfig::builder()
            .webpki_roots(false)
            .add_root_pem(ca.pem.as_bytes())
            .unwrap()
            .client_cert_pem(stranger.cert_pem.as_bytes(), stranger.key_pem.as_bytes())
            .unwrap()
            .build()
            .unwrap();
        // With TLS 1.3 the refusal reaches the client as an alert after
        // its side of the handshake: still a TLS error.
        for (what, tls, server_reason) in [
            ("no certificate", ca.trusted_by_client(), "no certificates"),
            ("untrusted certificate", untrusted_cert, "UnknownIssuer"),
        ] {
            let err = within(Dialer::new().tls(tls).connect(&url))
                .await
                .unwrap_err();
            assert!(err.is_tls(), "{what}: {err:?}");
            assert!(err.to_string().starts_with("TLS error"), "{what}: {err}");
            let server = served.next().await;
            let server_err = server.err().unwrap_or_else(|| panic!("{what}: accepted"));
            assert!(
                server_err.to_string().contains(server_reason),
                "{what}: server: {server_err}"
            );
        }
    }

    #[tokio::test]
    async fn client_certificate_pem_errors_are_tls_errors() {
        let err = TlsConfig::builder()
            .client_cert_pem(b"not a certificate", b"not a key")
            .unwrap_err();
        assert!(err.is_tls(), "{err:?}");
        let err = TlsConfig::builder().add_root_pem(b"").unwrap_err();
        assert!(err.is_tls(), "{err:?}");
    }

    #[tokio::test]
    async fn wss_handshake_over_a_tls_stream_of_our_own() {
        let (ca, leaf) = loopback_pki();
        let mut served = Served::tls(acceptor(&leaf), upgrade_and_echo(Upgrader::new())).await;
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
        let tcp = within(tokio::net::TcpStream::connect(served.addr))
            .await
            .unwrap();
        let tls = within(
            silverback::tls::TlsConnector::from(std::sync::Arc::new(config))
                .connect("localhost".try_into().unwrap(), tcp),
        )
        .await
        .unwrap();
        let url = served.url("wss", Some("localhost"), "/own");
        let (mut ws, _) = within(Dialer::new().handshake(tls, &url)).await.unwrap();
        assert_echoes(&mut ws).await;
        let session = client_close_4000(ws, &mut served).await;
        assert_eq!(session.request.uri(), "/own");
    }

    /// Asserts that nothing connected to `listener` (e.g. a plaintext
    /// retry or a followed redirect).
    fn assert_no_connection(listener: TcpListener) {
        let listener = listener.into_std().unwrap();
        listener.set_nonblocking(true).unwrap();
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a connection that should not have been made: {other:?}"),
        }
    }

    #[tokio::test]
    async fn wss_to_ws_redirect_is_refused() {
        let (ca, leaf) = loopback_pki();
        // Where the downgrades point: nothing may connect there.
        let (plain, plain_addr) = listen().await;
        let (listener, addr) = listen().await;
        let routes = vec![
            ("/ws", format!("ws://{plain_addr}/plain")),
            ("/http", format!("HTTP://{plain_addr}/plain")),
            ("/tls-ok", "/real".to_owned()),
        ];
        let mut served = Served::on(listener, tls_wrap(acceptor(&leaf)), hop_handler(routes));
        let dialer = dialer_with_credentials(5).tls(ca.trusted_by_client());
        for path in ["/ws", "/http"] {
            let url = format!("wss://localhost:{}{path}", addr.port());
            let err = within(dialer.connect(&url)).await.unwrap_err();
            let to = format!("ws://{plain_addr}/plain");
            match err.kind() {
                ErrorKind::RedirectRefused {
                    from,
                    to: refused,
                    reason,
                } => {
                    assert_eq!((&**from, &**refused), (url.as_str(), to.as_str()));
                    assert_eq!(*reason, RedirectRefusal::TlsDowngrade);
                }
                other => panic!("{path}: {other:?}"),
            }
            assert!(err.is_redirect_refused() && err.is_handshake(), "{err:?}");
            assert!(err.http_response().is_none() && !err.is_tls(), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("redirect from {url} to {to} refused"))
                    && msg.contains("downgrade wss:// (TLS) to ws:// (plain text)"),
                "{path}: {msg}"
            );
            let hop = served.next_ok().await;
            assert_eq!(hop.request.uri(), path);
            assert_credentials(&hop.request, true);
        }
        assert_no_connection(plain);

        // A redirect that stays on wss:// is followed.
        let url = format!("wss://localhost:{}/tls-ok", addr.port());
        let (ws, _) = within(dialer.connect(&url)).await.unwrap();
        assert!(ws.get_ref().is_tls());
        echo_once_and_close(ws).await;
        let hops = hops(&mut served, 2).await;
        for path in ["/tls-ok", "/real"] {
            let hop = &hops[path];
            assert_credentials(&hop.request, true);
        }
    }

    #[tokio::test]
    async fn ws_to_wss_redirect_is_followed_without_credentials() {
        // Upgrading to TLS is allowed, but the scheme (and here the port)
        // is another origin.
        let (ca, leaf) = loopback_pki();
        let mut target = Served::tls(acceptor(&leaf), upgrade_and_echo(recording_upgrader())).await;
        let (url, redirector) = raw_redirector(
            "301 Moved Permanently",
            target.url("https", Some("localhost"), "/s"),
        )
        .await;
        let dialer = dialer_with_credentials(1).tls(ca.trusted_by_client());
        let (ws, _) = within(dialer.connect(&url)).await.unwrap();
        assert!(ws.get_ref().is_tls());
        let session = client_close_4000(ws, &mut target).await;
        assert_credentials(&within(redirector).await.unwrap(), true);
        assert_credentials(&session.request, false);
        assert_other_headers(&session.request);
    }

    #[tokio::test]
    async fn wss_through_http_connect_proxy_with_basic_auth() {
        let (ca, leaf) = loopback_pki();
        let mut served = Served::tls(acceptor(&leaf), upgrade_and_echo(Upgrader::new())).await;
        // Percent-escapes in the proxy URL's user info are decoded.
        let proxy = TestProxy::http(Some(("alice", "s:cret"))).await;
        let dialer = Dialer::new()
            .tls(ca.trusted_by_client())
            .proxy(Proxy::parse(&proxy.url("http", Some("alice:s%3Acret"))).unwrap());
        let url = served.url("wss", Some("localhost"), "/");
        let (mut ws, _) = within(dialer.connect(&url)).await.unwrap();
        assert!(ws.get_ref().is_tls());
        assert_echoes(&mut ws).await;
        let session = client_close_4000(ws, &mut served).await;
        let target = format!("localhost:{}", served.addr.port());
        assert_eq!(host_header(&session), target);
        assert_eq!(proxy.log(), [format!("CONNECT {target}")]);

        // Wrong credentials: a proxy error; nothing reached the server.
        let wrong = Dialer::new().tls(ca.trusted_by_client()).proxy(
            Proxy::http(&proxy.url("http", None))
                .unwrap()
                .with_auth("alice", "guess"),
        );
        let err = within(wrong.connect(&url)).await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Proxy(_)), "{err:?}");
        assert!(!err.is_tls(), "{err:?}");
        assert_eq!(proxy.log().last().unwrap(), &format!("407 {target}"));
    }

    #[tokio::test]
    async fn wss_through_socks5_proxy_by_name() {
        let (ca, leaf) = loopback_pki();
        let mut served = Served::tls(acceptor(&leaf), upgrade_and_echo(Upgrader::new())).await;
        let proxy = TestProxy::socks5(Some(("bob", "hunter2"))).await;
        let dialer = Dialer::new()
            .tls(ca.trusted_by_client())
            .proxy(Proxy::parse(&proxy.url("socks5", Some("bob:hunter2"))).unwrap());
        let url = served.url("wss", Some("localhost"), "/");
        let (mut ws, _) = within(dialer.connect(&url)).await.unwrap();
        assert!(ws.get_ref().is_tls());
        assert_echoes(&mut ws).await;
        client_close_4000(ws, &mut served).await;
        assert_eq!(
            proxy.log(),
            [
                "auth ok for \"bob\"".to_owned(),
                format!("socks5 domain localhost:{}", served.addr.port()),
            ]
        );

        // The proxy's own refusal is a proxy error, not a TLS one.
        let wrong = Dialer::new().tls(ca.trusted_by_client()).proxy(
            Proxy::socks5(&proxy.url("socks5", None))
                .unwrap()
                .with_auth("bob", "hunter3"),
        );
        let err = within(wrong.connect(&url)).await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Proxy(_)), "{err:?}");
    }
}
