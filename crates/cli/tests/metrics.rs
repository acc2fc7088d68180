#![allow(missing_docs)]
//! `silverback serve`'s `/metrics` after a scripted workload: exact
//! counter values, and the exposition validated by `promtool check
//! metrics` (Debian's prometheus package, from scripts/install-peers.sh);
//! `/stats` for the page; `--metrics-addr`; a slow consumer dropped by the
//! hub in --pubsub mode; `--log-format json`.

mod common;

use std::collections::HashMap;
use std::process::Stdio;

use common::{
    http_exchange, is_log_message, plain_request, recv, upgrade_request, Server, Ws, IO_TIMEOUT,
};
use silverback::{CloseCode, Dialer, Message};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

const PROMTOOL: &str = "/usr/bin/promtool";

/// The series of an exposition: `name{labels as printed}` → value.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("`series value`");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// `GET path` on `addr`: the body (status 200 asserted).
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let (resp, _, _) = http_exchange(addr, &plain_request("GET", path, &addr.to_string())).await;
    assert_eq!(resp.status, 200, "GET {path}: {resp:?}");
    resp.body_text()
}

/// Scrapes `/metrics`, checks it with promtool, and parses it.
async fn scrape(addr: std::net::SocketAddr) -> HashMap<String, f64> {
    let text = get(addr, "/metrics").await;
    promtool_check(&text).await;
    parse(&text)
}

async fn promtool_check(text: &str) {
    assert!(
        std::path::Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: run scripts/install-peers.sh (Debian package prometheus)"
    );
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running promtool");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = timeout(IO_TIMEOUT, child.wait_with_output())
        .await
        .expect("promtool in time")
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn value(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no {series} in the exposition: {m:#?}"))
}

async fn dial(url: &str) -> Ws {
    let (ws, _) = timeout(IO_TIMEOUT, Dialer::new().no_proxy().connect(url))
        .await
        .expect("connect in time")
        .expect("connect");
    ws
}

/// Waits until the server logged the end of `n` connections.
async fn wait_for_ends(server: &mut Server, n: usize) {
    for _ in 0..n {
        server
            .wait_for_log("a connection's end", |l| {
                is_log_message(l, "closed") || is_log_message(l, "closed unexpectedly")
            })
            .await;
    }
}

#[tokio::test]
async fn echo_workload_is_counted_exactly() {
    let mut server = Server::start(&["--no-compression"]).await;
    // Before any connection: every series at zero, valid.
    let m = scrape(server.addr).await;
    assert_eq!(
        value(&m, r#"silverback_connections_active{role="server"}"#),
        0.0
    );

    // N connections, M messages each way.
    const N: usize = 4;
    const M: usize = 5;
    let mut conns = Vec::new();
    for _ in 0..N {
        let mut ws = dial(&server.ws_url).await;
        for i in 0..M {
            let text = format!("msg-{i}");
            ws.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(recv(&mut ws).await, Message::text(text));
        }
        conns.push(ws);
    }
    // The page's figures while they are open.
    let stats: serde_json::Value = serde_json::from_str(&get(server.addr, "/stats").await).unwrap();
    assert_eq!(stats["connections"], N as u64, "{stats}");
    assert_eq!(stats["messages_in"], (N * M) as u64, "{stats}");

    // A cross-origin browser request: 403.
    let host = server.addr.to_string();
    let (resp, _, _) = http_exchange(
        server.addr,
        &upgrade_request("GET", "/ws", &host, &["Origin: http://elsewhere.example"]),
    )
    .await;
    assert_eq!(resp.status, 403);

    // Closes with 1000, 1001, 4001, and an abrupt drop.
    let mut conns = conns.into_iter();
    for code in [1000u16, 1001, 4001] {
        let mut ws = conns.next().unwrap();
        timeout(IO_TIMEOUT, ws.close(CloseCode::from(code), "bye"))
            .await
            .expect("close in time")
            .expect("clean close");
    }
    drop(conns.next().unwrap());
    wait_for_ends(&mut server, N).await;

    let m = scrape(server.addr).await;
    let v = |s: &str| value(&m, s);
    assert_eq!(
        v(r#"silverback_connections_total{role="server",outcome="accepted"}"#),
        N as f64
    );
    assert_eq!(
        v(r#"silverback_connections_total{role="server",outcome="rejected",reason="origin"}"#),
        1.0
    );
    assert_eq!(v(r#"silverback_connections_active{role="server"}"#), 0.0);
    let nm = (N * M) as f64;
    assert_eq!(
        v(r#"silverback_messages_received_total{role="server",kind="text"}"#),
        nm
    );
    assert_eq!(
        v(r#"silverback_messages_sent_total{role="server",kind="text"}"#),
        nm
    );
    assert_eq!(
        v(r#"silverback_messages_received_total{role="server",kind="binary"}"#),
        0.0
    );
    // "msg-i": 5 bytes; masked client frames carry 2 + 4 header bytes,
    // the server's 2.
    assert_eq!(
        v(r#"silverback_payload_bytes_received_total{role="server",kind="text"}"#),
        nm * 5.0
    );
    assert_eq!(
        v(r#"silverback_payload_bytes_sent_total{role="server",kind="text"}"#),
        nm * 5.0
    );
    assert_eq!(
        v(r#"silverback_bytes_received_total{role="server",kind="text"}"#),
        nm * 11.0
    );
    assert_eq!(
        v(r#"silverback_bytes_sent_total{role="server",kind="text"}"#),
        nm * 7.0
    );
    for (code, initiator) in [
        ("1000", "remote"),
        ("1001", "remote"),
        ("4001", "remote"),
        ("1006", "abnormal"),
    ] {
        assert_eq!(
            v(&format!(
                r#"silverback_closes_total{{role="server",code="{code}",initiator="{initiator}"}}"#
            )),
            1.0,
            "{code} {initiator}"
        );
    }
    let closes: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("silverback_closes_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(closes, N as f64);
    // Nothing of the hub in echo mode, and no client-side series.
    assert!(!m.keys().any(|k| k.contains("role=\"client\"")));
}

#[tokio::test]
async fn pubsub_slow_consumer_is_counted_on_the_metrics_addr() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = probe.local_addr().unwrap();
    drop(probe);
    let mut server = Server::start(&[
        "--pubsub",
        "--no-compression",
        "--slow-consumer",
        "close",
        "--queue-messages",
        "16",
        "--queue-bytes",
        "262144",
        "--metrics-addr",
        &metrics_addr.to_string(),
    ])
    .await;
    server
        .wait_for_log("the metrics line", |l| {
            l.contains(&format!("metrics on http://{metrics_addr}/metrics"))
        })
        .await;
    // Not on the main port, then.
    let host = server.addr.to_string();
    let (resp, _, _) = http_exchange(server.addr, &plain_request("GET", "/metrics", &host)).await;
    assert_eq!(resp.status, 404);

    let url = format!("{}?topic=s", server.ws_url);
    // Each client says hello and waits for its own (then it is
    // subscribed, and so are those before it).
    let mut slow = dial(&url).await;
    slow.send(Message::text("hello-slow")).await.unwrap();
    assert_eq!(recv(&mut slow).await.as_text(), Some("hello-slow"));
    let mut publisher = dial(&url).await;
    publisher.send(Message::text("hello")).await.unwrap();
    assert_eq!(recv(&mut publisher).await.as_text(), Some("hello"));
    // Far more than the slow client's socket buffers and queue hold, in
    // lockstep with the publisher, which reads its own.
    const N: usize = 1000;
    const SIZE: usize = 16 * 1024;
    for i in 0..N {
        let payload = vec![(i % 251) as u8; SIZE];
        publisher.send(Message::binary(payload)).await.unwrap();
        assert!(recv(&mut publisher).await.is_binary());
    }
    // The slow client reads up to the server's Close 1013.
    let end = loop {
        match timeout(IO_TIMEOUT, slow.recv()).await.expect("in time") {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert_eq!(end.close_code(), Some(CloseCode::TryAgainLater), "{end}");
    timeout(IO_TIMEOUT, publisher.close(CloseCode::Normal, ""))
        .await
        .unwrap()
        .unwrap();
    wait_for_ends(&mut server, 2).await;

    let m = scrape(metrics_addr).await;
    let v = |s: &str| value(&m, s);
    // Every message received is published: 2 hellos and N.
    let published = (N + 2) as f64;
    assert_eq!(v("silverback_hub_published_total"), published);
    assert_eq!(
        v(r#"silverback_messages_received_total{role="server",kind="binary"}"#),
        N as f64
    );
    assert_eq!(
        v(r#"silverback_closes_total{role="server",code="1013",initiator="local"}"#),
        1.0
    );
    assert_eq!(
        v(r#"silverback_closes_total{role="server",code="1000",initiator="remote"}"#),
        1.0
    );
    // The slow consumer's queue was dropped when it was closed: the
    // message that found it full and what it held (at most 16).
    let dropped = v(r#"silverback_hub_dropped_total{policy="close"}"#);
    assert!((1.0..=17.0).contains(&dropped), "dropped {dropped}");
    // Delivered: "hello-slow" to the slow one, "hello" to both, the N to
    // the publisher, and to the slow one fewer than N.
    let delivered = v("silverback_hub_delivered_total");
    assert!(
        delivered >= (N + 3) as f64 && delivered < (2 * N + 3) as f64,
        "delivered {delivered}"
    );
    assert_eq!(v("silverback_hub_topics"), 0.0);
    assert_eq!(v("silverback_hub_subscribers"), 0.0);
}

#[tokio::test]
async fn log_format_json_writes_one_object_per_line() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_silverback"))
        .args(["--log-format", "json", "serve", "--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning silverback");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = timeout(IO_TIMEOUT, lines.next_line())
        .await
        .expect("a log line in time")
        .unwrap()
        .expect("a log line");
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["level"], "INFO", "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on ws://127.0.0.1:")),
        "{v}"
    );
    child.kill().await.unwrap();
}
