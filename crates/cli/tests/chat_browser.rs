#![allow(missing_docs)]
//! The chat page of `silverback serve --pubsub` in a real browser:
//! headless Chromium (Debian's `chromium`, installed by
//! `scripts/install-peers.sh`) runs three chat pages, the page the server
//! serves on `/` (fetched from it, then served by this test's responder
//! in iframes of a driver page, so that the driver can read each page's
//! `window.chat`). Alice and Bob are in room `lobby`, Carol in `other`.
//!
//! Bob's WebSocket goes through a TCP forwarder in this test. The driver
//! page has the test cut the forwarded connections (the server sees an
//! abnormal close, Bob's page 1006) and refuse new ones while Alice
//! publishes; then the forwarder is restored, Bob's page reconnects (with
//! its backoff) and recovers the missed messages with `since`, reporting
//! `recovered: true`. Carol sees none of the lobby. The driver POSTs its
//! report to the responder. The same runs with Bob on a second node that
//! shares topics with the first through a real `redis-server`. A missing
//! chromium fails the test (never skipped); every wait is bounded
//! (polling the pages' state, never sleeping as synchronisation) and
//! Chromium's process group is stopped at the end.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::chromium::{self, read_request};
use common::{http_exchange, plain_request, Server};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Bound on the whole browser run, from launch to the driver's report.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

const DRIVER: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>chat driver</title>
<style>iframe { width: 30%; height: 30rem; }</style></head>
<body><pre id="log"></pre>
<script>
"use strict";
const DIRECT = "__DIRECT__", FORWARDED = "__FORWARDED__";
// Connections on alice's server: all three pages, or alice's and carol's
// when bob's page talks to another node.
const DIRECT_CONNECTIONS = __DIRECT_CONNECTIONS__;
const lines = [];
function log(s) { lines.push(s); document.getElementById("log").textContent = lines.join("\n"); }
function check(cond, what) { if (!cond) throw new Error(what); }
function frame(nick, room, ws) {
  const f = document.createElement("iframe");
  f.src = `/chat?nick=${nick}&room=${room}&ws=${encodeURIComponent(ws)}`;
  document.body.appendChild(f);
  return f;
}
const chat = (f) => f.contentWindow && f.contentWindow.chat;
const texts = (f) => chat(f).messages.map((m) => m.text);
const tick = () => new Promise((res) => setTimeout(res, 25));
// Polls `pred` (bounded): the pages' state is what we wait for.
async function until(what, pred, ms = 30000) {
  const t0 = Date.now();
  for (;;) {
    try { if (pred()) return; } catch (e) { /* a page not loaded yet */ }
    if (Date.now() - t0 > ms) throw new Error("timed out waiting for " + what);
    await tick();
  }
}
async function post(path) {
  const r = await fetch(path, { method: "POST", body: "" });
  check(r.ok, path + " failed: " + r.status);
}
async function run() {
  const A = frame("alice", "lobby", DIRECT);
  const B = frame("bob", "lobby", FORWARDED);
  const C = frame("carol", "other", DIRECT);
  await until("three pages subscribed", () => [A, B, C].every((f) => chat(f).subscribed));
  log("ok: subscribed");
  let asked = 0;
  await until("lobby presence 2", () => {
    if (asked++ % 8 === 0) chat(A).refreshPresence();
    return chat(A).presence === 2;
  });
  log("ok: presence 2");
  await until("an RTT", () => chat(A).rtt !== null && chat(B).rtt !== null);
  log("ok: rtt");
  // The page's own figures, and the server's (GET /stats, every 2 s).
  await until("the server's figures", () => {
    const c = chat(A);
    return c.sent > 0 && c.received > 0 && c.bytesReceived > 0 && c.server && c.server.connections === DIRECT_CONNECTIONS;
  });
  log("ok: figures");

  chat(A).send("hello from alice");
  await until("bob gets alice's message", () => texts(B).includes("hello from alice"));
  chat(B).send("hi from bob");
  await until("alice gets bob's message", () => texts(A).includes("hi from bob"));
  log("ok: exchange");

  // Cut bob's connection; refuse new ones until restored.
  await post("/cut");
  await until("bob sees the drop", () => chat(B).closes.some((c) => c.code === 1006));
  log("ok: bob dropped, close " + chat(B).closes[0].code + " state " + chat(B).state);
  chat(A).send("missed 1");
  chat(A).send("missed 2");
  await until("alice's messages published", () => texts(A).includes("missed 2"));
  check(!texts(B).includes("missed 1"), "bob got a message while cut off");
  await post("/restore");
  await until("bob recovers", () => texts(B).includes("missed 2") && chat(B).subscribed, 60000);
  chat(A).send("after");
  await until("bob gets live messages again", () => texts(B).includes("after"));
  const ev = chat(B).events;
  const i = (s) => ev.findIndex((e) => e.endsWith(" " + s) || e.startsWith(s));
  const iClose = ev.findIndex((e) => e.startsWith("close 1006"));
  const iM1 = i("missed 1"), iM2 = i("missed 2"), iAfter = i("after");
  const iSub = ev.findIndex((e, k) => k > iClose && e.startsWith("subscribed "));
  log("bob events: " + JSON.stringify(ev));
  check(iClose >= 0 && iClose < iM1 && iM1 < iM2 && iM2 < iSub && iSub < iAfter, "bob's events out of order");
  check(ev[iSub].startsWith("subscribed recovered=true"), "not recovered: " + ev[iSub]);
  check(chat(B).messages.filter((m) => m.text.startsWith("missed")).every((m) => m.replayed), "missed messages not replayed");
  log("ok: " + ev[iSub].split(" offset")[0]);
  log("bob: " + JSON.stringify(texts(B)));
  check(JSON.stringify(texts(B)) === JSON.stringify(["hello from alice", "hi from bob", "missed 1", "missed 2", "after"]), "bob's messages");
  check(JSON.stringify(texts(A)) === JSON.stringify(texts(B)), "alice and bob differ");
  log("ok: bob has every message once, in order");

  chat(C).send("carol here");
  await until("carol gets her own message", () => texts(C).includes("carol here"));
  log("carol: " + JSON.stringify(texts(C)));
  check(JSON.stringify(texts(C)) === JSON.stringify(["carol here"]), "carol saw another room");
  check(!texts(A).includes("carol here"), "alice saw another room");
  log("ok: rooms are separate");
}
run()
  .then(() => log("done"), (e) => log("FAIL: " + e.message))
  .finally(() => fetch("/result", { method: "POST", body: lines.join("\n") }));
</script></body></html>
"#;

/// A TCP forwarder to the server whose connections the test can cut.
#[derive(Default)]
struct Forwarder {
    /// Refuse (accept and drop) new connections.
    blocked: AtomicBool,
    /// The forwarding tasks (aborting one drops both its sockets).
    conns: Mutex<Vec<AbortHandle>>,
    /// Connections forwarded, and refused.
    forwarded: AtomicUsize,
    refused: AtomicUsize,
}

impl Forwarder {
    async fn run(self: Arc<Self>, listener: TcpListener, target: SocketAddr) {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            if self.blocked.load(Ordering::SeqCst) {
                self.refused.fetch_add(1, Ordering::SeqCst);
                drop(inbound);
                continue;
            }
            self.forwarded.fetch_add(1, Ordering::SeqCst);
            let task = tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
            self.conns.lock().unwrap().push(task.abort_handle());
        }
    }

    /// Drops every forwarded connection (both ends see the TCP connection
    /// end without a Close frame) and refuses new ones.
    fn cut(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

/// Serves the driver on `/`, the chat page on `/chat`, cuts and restores
/// the forwarder on `POST /cut` and `/restore`, and forwards the body of
/// `POST /result`.
async fn responder(
    listener: TcpListener,
    driver: String,
    chat: String,
    forwarder: Arc<Forwarder>,
    results: mpsc::UnboundedSender<String>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let (driver, chat) = (driver.clone(), chat.clone());
        let (results, forwarder) = (results.clone(), forwarder.clone());
        tokio::spawn(async move {
            let Some((method, path, body)) = read_request(&mut stream).await else {
                return;
            };
            let path = path.split('?').next().unwrap_or("").to_owned();
            let ok = |ctype: &'static str, body: Vec<u8>| ("200 OK", ctype, body);
            let (status, ctype, body_out) = match (method.as_str(), path.as_str()) {
                ("GET", "/") => ok("text/html; charset=utf-8", driver.into_bytes()),
                ("GET", "/chat") => ok("text/html; charset=utf-8", chat.into_bytes()),
                ("POST", "/cut") => {
                    forwarder.cut();
                    ok("text/plain", b"cut".to_vec())
                }
                ("POST", "/restore") => {
                    forwarder.restore();
                    ok("text/plain", b"restored".to_vec())
                }
                ("POST", "/result") => {
                    let _ = results.send(String::from_utf8_lossy(&body).into_owned());
                    ok("text/plain", b"thanks".to_vec())
                }
                _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
            };
            chromium::respond(&mut stream, status, ctype, &body_out).await;
        });
    }
}

#[tokio::test]
async fn chat_pages_exchange_and_a_dropped_page_recovers_what_it_missed() {
    chromium::require();
    let mut server = Server::start(&["--pubsub", "--any-origin", "--history", "100"]).await;
    chat_scenario(&server, &server).await;
    server.assert_running();
}

/// The same with Alice and Carol on one node and Bob on another, the two
/// sharing topics through a real `redis-server`.
#[tokio::test]
async fn chat_pages_on_two_nodes_sharing_topics_through_redis() {
    chromium::require();
    let redis = common::redis::RedisServer::start(false).await;
    let url = redis.url();
    let args = [
        "--pubsub",
        "--any-origin",
        "--history",
        "100",
        "--redis",
        &url,
    ];
    let mut a = Server::start(&args).await;
    let mut b = Server::start(&args).await;
    for n in [&a, &b] {
        // Ready once the backplane is connected.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (r, _, _) = http_exchange(
                n.addr,
                &plain_request("GET", "/readyz", &n.addr.to_string()),
            )
            .await;
            if r.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "node not ready:\n{}", n.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    chat_scenario(&a, &b).await;
    a.assert_running();
    b.assert_running();
}

/// Alice and Carol's pages talk to `direct`, Bob's (through the
/// forwarder) to `bobs`: the same server, or two nodes.
async fn chat_scenario(direct: &Server, bobs: &Server) {
    let server = direct;
    // The page exactly as the server serves it.
    let (page, _, _) = http_exchange(
        server.addr,
        &plain_request("GET", "/", &server.addr.to_string()),
    )
    .await;
    assert_eq!(page.status, 200);
    let chat_page = page.body_text();
    assert!(
        chat_page.contains("pubsub.v1"),
        "not the chat page:\n{chat_page}"
    );

    let fwd_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forwarded_url = format!("ws://{}{}", fwd_listener.local_addr().unwrap(), bobs.path);
    let forwarder = Arc::new(Forwarder::default());
    let fwd_task = tokio::spawn(forwarder.clone().run(fwd_listener, bobs.addr));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_url = format!("http://{}/", listener.local_addr().unwrap());
    let driver = DRIVER
        .replace("__DIRECT__", &server.ws_url)
        .replace("__FORWARDED__", &forwarded_url)
        .replace(
            "__DIRECT_CONNECTIONS__",
            if direct.addr == bobs.addr { "3" } else { "2" },
        );
    let (tx, mut results) = mpsc::unbounded_channel();
    let responder = tokio::spawn(responder(
        listener,
        driver,
        chat_page,
        forwarder.clone(),
        tx,
    ));

    let run = chromium::run_page(
        &page_url,
        &[
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
        ],
        &mut results,
        BROWSER_TIMEOUT,
    )
    .await;
    responder.abort();
    fwd_task.abort();
    let (report, stderr_text) = (run.report, run.stderr);

    let report = report.unwrap_or_else(|| {
        panic!(
            "no report from the driver page within {BROWSER_TIMEOUT:?}\n--- chromium stderr ---\n{stderr_text}\n--- server log ---\n{}",
            server.log()
        )
    });
    println!("driver report:\n{report}");
    let context = || {
        format!(
            "driver report:\n{report}\n--- server log ---\n{}\n--- bob's server log ---\n{}",
            server.log(),
            bobs.log()
        )
    };
    assert!(!report.contains("FAIL"), "{}", context());
    for line in [
        "ok: subscribed",
        "ok: presence 2",
        "ok: rtt",
        "ok: figures",
        "ok: exchange",
        "ok: subscribed recovered=true",
        "ok: bob has every message once, in order",
        "ok: rooms are separate",
        "done",
    ] {
        assert!(
            report.lines().any(|l| l == line),
            "missing {line:?}: {}",
            context()
        );
    }
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("ok: bob dropped, close 1006")),
        "{}",
        context()
    );
    // Bob came back through the forwarder: at least two connections.
    assert!(forwarder.forwarded.load(Ordering::SeqCst) >= 2);
    // Bob's server saw the cut as an abnormal close.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common::log_lines(&bobs.log(), "closed unexpectedly")
        .iter()
        .any(|l| l.contains("code=1006"))
    {
        assert!(
            Instant::now() < deadline,
            "no abnormal close in the server log:\n{}",
            bobs.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
