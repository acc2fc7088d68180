#![allow(missing_docs)]
//! A real browser against `silverback serve`: headless Chromium (Debian's
//! `chromium`, installed by `scripts/install-peers.sh`) loads a test page
//! served by this test on 127.0.0.1 (another origin than the WebSocket
//! server, so the server runs with `--any-origin`). The page opens a
//! WebSocket to the server, checks that `ws.extensions` holds
//! permessage-deflate, echoes a text, a binary and a 100 KB text message,
//! closes with 1000, and POSTs its report back to the test's responder.
//! The server's log must show the extension, the close and that the large
//! message crossed the wire compressed. A missing chromium fails the test
//! (never skipped); every wait is bounded and Chromium (with its whole
//! process group) is stopped at the end.

mod common;

use std::time::Duration;

use common::chromium;
use common::Server;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Bound on the whole browser run, from launch to the page's report.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);
/// The large message the page sends, in bytes.
const LARGE: usize = 100 * 1024;

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>silverback browser test</title></head>
<body><pre id="log"></pre>
<script>
"use strict";
const WS_URL = "__WS_URL__";
const LARGE = __LARGE__;
const lines = [];
function log(s) {
  lines.push(s);
  document.getElementById("log").textContent = lines.join("\n");
}
function check(cond, what) {
  if (!cond) throw new Error(what);
}
function jsonLike(n) {
  let s = "";
  for (let i = 0; s.length < n; i++) s += `{"id":${i},"name":"item ${i % 97}","ok":true},`;
  return s.slice(0, n);
}
function withTimeout(p, what) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error("timed out: " + what)), 15000))]);
}
async function run() {
  const ws = new WebSocket(WS_URL);
  ws.binaryType = "arraybuffer";
  const queue = [];
  const waiters = [];
  ws.onmessage = (e) => (waiters.length ? waiters.shift()(e.data) : queue.push(e.data));
  const next = (what) => withTimeout(new Promise((res) => (queue.length ? res(queue.shift()) : waiters.push(res))), what);
  const closed = new Promise((res) => (ws.onclose = res));
  await withTimeout(new Promise((res, rej) => {
    ws.onopen = res;
    ws.onerror = () => rej(new Error("WebSocket error before open"));
  }), "open");
  log("extensions: " + ws.extensions);
  check(ws.extensions.startsWith("permessage-deflate"), "no permessage-deflate in ws.extensions: " + JSON.stringify(ws.extensions));

  const text = "hello from chromium, h\u00e9llo \u20ac \ud834\udd1e";
  ws.send(text);
  check((await next("text echo")) === text, "text echo differs");
  log("ok: text echo");

  const bin = new Uint8Array(1024);
  for (let i = 0; i < bin.length; i++) bin[i] = (i * 7) & 0xff;
  ws.send(bin);
  const got = await next("binary echo");
  check(got instanceof ArrayBuffer, "binary echo is not binary: " + typeof got);
  const back = new Uint8Array(got);
  check(back.length === bin.length && back.every((b, i) => b === bin[i]), "binary echo differs");
  log("ok: binary echo");

  const large = jsonLike(LARGE);
  ws.send(large);
  const largeBack = await next("large echo");
  check(largeBack === large, "large echo differs (" + largeBack.length + " chars back)");
  log("ok: large text echo, " + LARGE + " bytes");

  ws.close(1000, "browser done");
  const ev = await withTimeout(closed, "close");
  log(`close: code=${ev.code} clean=${ev.wasClean}`);
  check(ev.code === 1000 && ev.wasClean, "unclean close");
}
run()
  .then(() => log("done"), (e) => log("FAIL: " + e.message))
  .finally(() => fetch("/result", { method: "POST", body: lines.join("\n") }));
</script></body></html>
"#;

/// The server's first log line whose message is `message` (bounded wait).
async fn log_line(server: &Server, message: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        if let Some(l) = log.lines().find(|l| {
            l.split_once(" INFO ")
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(&format!("{message} ")))
        }) {
            return l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no {message:?} line in the server log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn chromium_echo_with_permessage_deflate() {
    chromium::require();
    let server = Server::start(&["--any-origin"]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_url = format!("http://{}/", listener.local_addr().unwrap());
    let page = PAGE
        .replace("__WS_URL__", &server.ws_url)
        .replace("__LARGE__", &LARGE.to_string());
    let (tx, mut results) = mpsc::unbounded_channel();
    let responder = tokio::spawn(chromium::serve_page(listener, page, tx));

    let run = chromium::run_page(&page_url, &[], &mut results, BROWSER_TIMEOUT).await;
    responder.abort();
    let (report, stderr_text) = (run.report, run.stderr);

    let report = report.unwrap_or_else(|| {
        panic!(
            "no report from the page within {BROWSER_TIMEOUT:?}\n--- chromium stderr ---\n{stderr_text}\n--- server log ---\n{}",
            server.log()
        )
    });
    println!("page report:\n{report}");
    let context = || {
        format!(
            "page report:\n{report}\n--- server log ---\n{}",
            server.log()
        )
    };
    assert!(!report.contains("FAIL"), "{}", context());
    for line in [
        "ok: text echo",
        "ok: binary echo",
        &format!("ok: large text echo, {LARGE} bytes"),
        "close: code=1000 clean=true",
        "done",
    ] {
        assert!(
            report.lines().any(|l| l == line),
            "missing {line:?}: {}",
            context()
        );
    }
    let extensions = report
        .lines()
        .find_map(|l| l.strip_prefix("extensions: "))
        .unwrap_or_default();
    assert!(
        extensions.starts_with("permessage-deflate"),
        "ws.extensions = {extensions:?}"
    );

    // The server saw the same: the extension, the browser's 1000, and the
    // large message compressed on the wire.
    let open = log_line(&server, "open").await;
    assert!(open.contains("permessage-deflate"), "{open}");
    let closed = log_line(&server, "closed").await;
    assert!(
        (closed.contains(" by=peer ") || closed.contains(" by=\"peer\" "))
            && closed.contains(" code=1000 "),
        "{closed}"
    );
    let bytes_in: usize = closed
        .split(' ')
        .find_map(|f| f.strip_prefix("bytes_in="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no bytes_in in {closed}"));
    assert!(
        bytes_in < LARGE / 4,
        "{bytes_in} bytes received for a {LARGE}-byte compressible message and two small ones: not compressed?\n{closed}"
    );
    println!("server: {closed}");
}
