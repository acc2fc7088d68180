//! Metrics (feature `metrics`): a scripted workload over loopback, both
//! roles, recorded into metrics-util's `DebuggingRecorder`, and the exact
//! values asserted. One test: the recorder is process-wide (installed
//! before the first connection, as the docs ask), so the whole workload
//! runs in one test whatever the test runner.
#![cfg(feature = "metrics")]
#![allow(missing_docs)]

mod common;

use std::collections::HashMap;

use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use silverback::{CloseCode, Dialer, Message, Upgrader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `name{label=value,...}` (labels sorted) → value.
type Snapshot = HashMap<String, DebugValue>;

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

fn counter(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    match s.get(&key(name, labels)) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        Some(other) => panic!("{name}: not a counter: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_is_counted_exactly() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");

    // A server for three connections: echo until the end, report it.
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut ends = Vec::new();
        let mut accepted = 0;
        while accepted < 3 {
            let (stream, _) = listener.accept().await.unwrap();
            let Ok(mut ws) = Upgrader::new().upgrade(stream).await else {
                continue; // the cross-origin request
            };
            accepted += 1;
            ends.push(tokio::spawn(async move {
                loop {
                    match ws.recv().await {
                        Ok(m) => ws.send(m).await.unwrap(),
                        Err(_) => return ws.end(),
                    }
                }
            }));
        }
        let mut out = Vec::new();
        for e in ends {
            out.push(e.await.unwrap());
        }
        out
    });
    let url = format!("ws://{addr}/ws");

    // 1. Three texts of 5 bytes, two binaries of 3, a ping; close 1000.
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    for _ in 0..3 {
        within(ws.send(Message::text("hello"))).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap(), Message::text("hello"));
    }
    for _ in 0..2 {
        within(ws.send(Message::binary(&b"abc"[..]))).await.unwrap();
        assert_eq!(
            within(ws.recv()).await.unwrap(),
            Message::binary(&b"abc"[..])
        );
    }
    let pong = within(ws.ping(b"p")).await.unwrap();
    tokio::select! {
        rtt = pong => { rtt.unwrap(); }
        m = ws.recv() => panic!("unexpected {m:?}"),
    }
    let stats = ws.stats();
    assert_eq!((stats.messages_in, stats.messages_out), (5, 5));
    assert_eq!((stats.payload_in, stats.payload_out), (21, 21));
    assert!(stats.last_rtt.is_some());
    within(ws.close(CloseCode::Normal, "")).await.unwrap();

    // 2. A cross-origin browser request: refused with 403.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
             Origin: http://elsewhere.example\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    within(raw.read_to_end(&mut answer)).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 403"), "{answer:?}");

    // 3. One text, close 4001.
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    within(ws.send(Message::text("x"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("x"));
    within(ws.close(CloseCode::from(4001), "app"))
        .await
        .unwrap();

    // 4. Dropped without a Close: 1006 on both sides.
    let (ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    drop(ws);

    let ends = within(server).await.unwrap();
    let codes: Vec<u16> = ends
        .iter()
        .map(|e| u16::from(e.as_ref().unwrap().close_code()))
        .collect();
    assert_eq!(codes, [1000, 4001, 1006]);

    let snapshot: Snapshot = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(ck, _, _, v)| {
            let (_, k) = ck.into_parts();
            let labels: Vec<(&str, &str)> = k.labels().map(|l| (l.key(), l.value())).collect();
            (key(k.name(), &labels), v)
        })
        .collect();
    let c = |name: &str, labels: &[(&str, &str)]| counter(&snapshot, name, labels);

    for role in ["server", "client"] {
        assert_eq!(
            c(
                "silverback_connections_total",
                &[("role", role), ("outcome", "accepted")]
            ),
            3,
            "{role}"
        );
        assert_eq!(
            snapshot.get(&key("silverback_connections_active", &[("role", role)])),
            Some(&DebugValue::Gauge(0.0.into())),
            "{role}"
        );
        let text = [("role", role), ("kind", "text")];
        let binary = [("role", role), ("kind", "binary")];
        assert_eq!(c("silverback_messages_received_total", &text), 4);
        assert_eq!(c("silverback_messages_received_total", &binary), 2);
        assert_eq!(c("silverback_messages_sent_total", &text), 4);
        assert_eq!(c("silverback_messages_sent_total", &binary), 2);
        assert_eq!(c("silverback_payload_bytes_received_total", &text), 16);
        assert_eq!(c("silverback_payload_bytes_sent_total", &binary), 6);
        // Headers: 2 bytes, plus the 4-byte masking key from the client.
        let (to_server, to_client) = (2 + 4, 2);
        let (wire_in, wire_out) = if role == "server" {
            (to_server, to_client)
        } else {
            (to_client, to_server)
        };
        assert_eq!(
            c("silverback_bytes_received_total", &text),
            16 + 4 * wire_in
        );
        assert_eq!(c("silverback_bytes_sent_total", &binary), 6 + 2 * wire_out);
    }
    assert_eq!(
        c(
            "silverback_connections_total",
            &[
                ("role", "server"),
                ("outcome", "rejected"),
                ("reason", "origin")
            ]
        ),
        1
    );
    let close = |role, code, initiator| {
        c(
            "silverback_closes_total",
            &[("role", role), ("code", code), ("initiator", initiator)],
        )
    };
    assert_eq!(close("server", "1000", "remote"), 1);
    assert_eq!(close("server", "4001", "remote"), 1);
    assert_eq!(close("server", "1006", "abnormal"), 1);
    // The client's own Close is echoed: the peer's code, started here.
    assert_eq!(close("client", "1000", "local"), 1);
    assert_eq!(close("client", "4001", "local"), 1);
    assert_eq!(close("client", "1006", "abnormal"), 1);
    match snapshot.get(&key("silverback_ping_rtt_seconds", &[("role", "client")])) {
        Some(DebugValue::Histogram(v)) => assert_eq!(v.len(), 1),
        other => panic!("rtt: {other:?}"),
    }
}
