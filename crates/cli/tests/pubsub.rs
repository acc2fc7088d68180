#![allow(missing_docs)]
//! `silverback serve --pubsub` over real sockets: raw mode with
//! silverback's `Dialer` and Python `websockets` on two topics, the
//! `pubsub.v1` envelope protocol (subscribe, publish, presence,
//! unsubscribe, recovery with `since`, an `error` for every bad request),
//! and a slow consumer closed with 1013 while the others keep receiving.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{recv, repo_root, Running, Server, Ws, IO_TIMEOUT};
use serde_json::{json, Value};
use silverback::{CloseCode, Dialer, Message};
use tokio::process::Command;
use tokio::time::timeout;

async fn dial(url: &str, envelope: bool) -> Ws {
    let mut d = Dialer::new().no_proxy();
    if envelope {
        d = d.subprotocols(["pubsub.v1"]);
    }
    let (ws, _) = timeout(IO_TIMEOUT, d.connect(url))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    assert_eq!(ws.protocol(), envelope.then_some("pubsub.v1"));
    ws
}

async fn send(ws: &mut Ws, m: Message) {
    ws.send(m).await.expect("sending");
}

async fn send_json(ws: &mut Ws, v: Value) {
    send(ws, Message::text(v.to_string())).await;
}

async fn recv_json(ws: &mut Ws) -> Value {
    let m = recv(ws).await;
    let text = m.as_text().expect("envelope replies are text");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The next reply, which must have `op`.
async fn expect_op(ws: &mut Ws, op: &str) -> Value {
    let v = recv_json(ws).await;
    assert_eq!(v["op"], op, "expected {op}, got {v}");
    v
}

/// Pings and expects the pong next: nothing else was queued before it.
async fn ping_pong(ws: &mut Ws, id: u64) {
    send_json(ws, json!({"op":"ping","id":id})).await;
    let v = recv_json(ws).await;
    assert_eq!(v, json!({"op":"pong","id":id}));
}

// ----- raw mode ---------------------------------------------------------------

/// A message as the Python client prints it.
fn line_of(m: &Message) -> String {
    match m.as_text() {
        Some(t) => format!("T:{t}"),
        None => {
            let hex: String = m.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
            format!("B:{hex}")
        }
    }
}

const PY_CLIENT: &str = r#"
import sys
from websockets.sync.client import connect
with connect(sys.argv[1], open_timeout=10, compression=None) as ws:
    ws.send("hello-py")
    sent = False
    while True:
        m = ws.recv(timeout=30)
        if isinstance(m, bytes):
            print("B:" + m.hex(), flush=True)
        else:
            print("T:" + m, flush=True)
        if m == "hello-py" and not sent:
            ws.send(b"\x00\xffpy")
            sent = True
        if m == "bye":
            break
"#;

/// The clients of the raw test, what each subscribes to and expects.
struct Model {
    topics: HashMap<&'static str, Vec<&'static str>>,
    connected: Vec<&'static str>,
    expected: HashMap<&'static str, Vec<String>>,
}

impl Model {
    /// `from` publishes `m`: every connected client subscribed to each of
    /// `from`'s topics gets it (once per topic).
    fn publish(&mut self, from: &str, m: &Message) {
        for t in self.topics[from].clone() {
            for c in &self.connected {
                if self.topics[c].contains(&t) {
                    self.expected.entry(c).or_default().push(line_of(m));
                }
            }
        }
    }
}

#[tokio::test]
async fn raw_mode_delivers_each_topic_to_its_subscribers_in_order() {
    let python = common::client_side::python_peer().await;
    let server = Server::start(&["--pubsub"]).await;
    let url = |q: &str| format!("{}{q}", server.ws_url);
    let mut model = Model {
        topics: HashMap::from([
            ("d1", vec!["a"]),
            ("d2", vec!["b"]),
            ("d3", vec!["a", "b"]),
            ("py", vec!["a"]),
            ("all", vec!["all"]),
        ]),
        connected: Vec::new(),
        expected: HashMap::new(),
    };
    let mut ws: HashMap<&str, Ws> = HashMap::new();
    let mut got: HashMap<&str, Vec<String>> = HashMap::new();

    // Reads what each Dialer client should have got by now.
    async fn catch_up(
        ws: &mut HashMap<&'static str, Ws>,
        got: &mut HashMap<&'static str, Vec<String>>,
        model: &Model,
    ) {
        for (name, w) in ws.iter_mut() {
            let want = model.expected.get(name).map_or(0, Vec::len);
            let have = got.entry(name).or_default();
            while have.len() < want {
                have.push(line_of(&recv(w).await));
            }
            assert_eq!(have, &model.expected[name], "{name} got");
        }
    }

    // Clients connect one by one; each says hello and waits for its own
    // hello (the sender is included): then it is subscribed.
    for (name, query) in [
        ("d1", "?topic=a"),
        ("d2", "?topic=b"),
        ("d3", "?topic=a&topic=b"),
        ("all", ""),
    ] {
        let mut w = dial(&url(query), false).await;
        model.connected.push(name);
        let hello = Message::text(format!("hello-{name}"));
        send(&mut w, hello.clone()).await;
        model.publish(name, &hello);
        ws.insert(name, w);
        catch_up(&mut ws, &mut got, &model).await;
    }
    // Python websockets on topic a: it says hello, then sends a binary
    // message once its hello is back, and prints all it gets.
    let mut cmd = Command::new(&python);
    cmd.arg("-c")
        .arg(PY_CLIENT)
        .arg(url("?topic=a"))
        .current_dir(repo_root());
    let mut py = Running::spawn(cmd).expect("running the Python client");
    model.connected.push("py");
    model.publish("py", &Message::text("hello-py"));
    model.publish("py", &Message::binary(vec![0u8, 0xff, b'p', b'y']));
    assert!(
        py.wait_for_line("B:00ff7079", IO_TIMEOUT).await,
        "python ended early"
    );
    catch_up(&mut ws, &mut got, &model).await;

    // Each Dialer client publishes text and binary in turn.
    for round in 0..3 {
        for name in ["d1", "d2", "d3", "all"] {
            for m in [
                Message::text(format!("{name} says {round} \u{e9}")),
                Message::binary(vec![round as u8, 0, 0xfe, name.len() as u8]),
            ] {
                send(ws.get_mut(name).unwrap(), m.clone()).await;
                model.publish(name, &m);
                catch_up(&mut ws, &mut got, &model).await;
            }
        }
    }
    // Binary stayed binary, text text, for the Dialer clients.
    let w = ws.get_mut("d1").unwrap();
    send(w, Message::binary(vec![1, 2, 3])).await;
    model.publish("d1", &Message::binary(vec![1, 2, 3]));
    assert!(recv(w).await.is_binary());
    got.get_mut("d1").unwrap().push("B:010203".into());
    catch_up(&mut ws, &mut got, &model).await;

    // "bye" on topic a ends the Python client.
    send(ws.get_mut("d1").unwrap(), Message::text("bye")).await;
    model.publish("d1", &Message::text("bye"));
    catch_up(&mut ws, &mut got, &model).await;
    let finished = py.finish(IO_TIMEOUT).await;
    assert!(finished.status.success(), "{}", finished.output());
    let py_lines: Vec<String> = finished.stdout.lines().map(str::to_owned).collect();
    assert_eq!(py_lines, model.expected["py"], "python got");
    // d2 (topic b) saw nothing of topic a, "all" only its own.
    assert!(got["d2"]
        .iter()
        .all(|l| !l.contains("d1") && !l.contains("py")));
    assert!(got["all"]
        .iter()
        .all(|l| l.contains("all") || l.starts_with("B:")));
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[tokio::test]
async fn raw_mode_refuses_a_bad_topic_with_1008() {
    let server = Server::start(&["--pubsub", "--max-topic-len", "8"]).await;
    // A repeated topic counts once.
    let mut ok = dial(
        &format!("{}?topic=ok&topic=b&topic=ok", server.ws_url),
        false,
    )
    .await;
    send(&mut ok, Message::text("once")).await;
    assert_eq!(recv(&mut ok).await.as_text(), Some("once"));
    assert_eq!(recv(&mut ok).await.as_text(), Some("once")); // topic b
    send(&mut ok, Message::text("second")).await;
    assert_eq!(recv(&mut ok).await.as_text(), Some("second"));
    let mut ws = dial(
        &format!("{}?topic=ok&topic=much-too-long", server.ws_url),
        false,
    )
    .await;
    let end = timeout(IO_TIMEOUT, ws.recv())
        .await
        .expect("closed in time")
        .expect_err("closed, no message");
    let frame = end
        .close_frame()
        .unwrap_or_else(|| panic!("no Close frame: {end}"));
    assert_eq!(frame.code, CloseCode::PolicyViolation);
    assert_eq!(&*frame.reason, "invalid_topic: much-too-long");
}

// ----- envelope mode ----------------------------------------------------------

#[tokio::test]
async fn envelope_subscribe_publish_presence_unsubscribe() {
    let server = Server::start(&["--pubsub"]).await;
    let mut a = dial(&server.ws_url, true).await;
    let mut b = dial(&server.ws_url, true).await;
    send_json(&mut a, json!({"op":"subscribe","topic":"room:1"})).await;
    let sa = expect_op(&mut a, "subscribed").await;
    assert_eq!(sa["topic"], "room:1");
    assert_eq!(sa["offset"], 0);
    assert_eq!(sa["recovered"], true);
    let epoch = sa["epoch"].as_str().expect("an epoch").to_owned();
    send_json(&mut b, json!({"op":"subscribe","topic":"room:1"})).await;
    expect_op(&mut b, "subscribed").await;
    send_json(&mut a, json!({"op":"presence","topic":"room:1"})).await;
    assert_eq!(
        recv_json(&mut a).await,
        json!({"op":"presence","topic":"room:1","count":2})
    );
    send_json(&mut a, json!({"op":"presence","topic":"nobody"})).await;
    assert_eq!(
        recv_json(&mut a).await,
        json!({"op":"presence","topic":"nobody","count":0})
    );

    // Publish: both get it (the publisher too), with offset and epoch.
    let data = json!({"nick":"alice","text":"hi \u{e9}","n":[1,2]});
    send_json(&mut a, json!({"op":"publish","topic":"room:1","data":data})).await;
    for ws in [&mut a, &mut b] {
        assert_eq!(
            recv_json(ws).await,
            json!({"op":"message","topic":"room:1","offset":1,"epoch":epoch,"data":data})
        );
    }
    // A raw client on the same topic gets the data's JSON text, and its
    // own messages reach the envelope subscribers as data.
    let mut raw = dial(&format!("{}?topic=room:1", server.ws_url), false).await;
    send(&mut raw, Message::text("plain words")).await;
    assert_eq!(recv(&mut raw).await.as_text(), Some("plain words"));
    for ws in [&mut a, &mut b] {
        let v = expect_op(ws, "message").await;
        assert_eq!(
            (v["offset"].clone(), v["data"].clone()),
            (json!(2), json!("plain words"))
        );
    }
    send_json(&mut b, json!({"op":"publish","topic":"room:1","data":"x"})).await;
    assert_eq!(recv(&mut raw).await.as_text(), Some("\"x\""));
    for ws in [&mut a, &mut b] {
        assert_eq!(expect_op(ws, "message").await["data"], "x");
    }

    // Unsubscribe: b gets no more messages of the topic.
    send_json(&mut b, json!({"op":"unsubscribe","topic":"room:1"})).await;
    assert_eq!(
        recv_json(&mut b).await,
        json!({"op":"unsubscribed","topic":"room:1"})
    );
    send_json(&mut a, json!({"op":"presence","topic":"room:1"})).await;
    assert_eq!(expect_op(&mut a, "presence").await["count"], 2); // a and raw
    send_json(&mut a, json!({"op":"publish","topic":"room:1","data":4})).await;
    assert_eq!(expect_op(&mut a, "message").await["data"], 4);
    // The publication was fanned out before a got it: b's next reply is
    // its pong, not a message.
    ping_pong(&mut b, 1).await;

    // A connection that ends leaves its topics.
    drop(raw);
    a.close(CloseCode::Normal, "").await.unwrap();
    let _ = timeout(IO_TIMEOUT, a.recv()).await;
    send_json(&mut b, json!({"op":"presence","topic":"room:1"})).await;
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    loop {
        let v = expect_op(&mut b, "presence").await;
        if v["count"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        send_json(&mut b, json!({"op":"presence","topic":"room:1"})).await;
    }
}

#[tokio::test]
async fn envelope_recovery_hit_and_miss() {
    let server = Server::start(&["--pubsub", "--history", "10"]).await;
    let mut publisher = dial(&server.ws_url, true).await;
    send_json(&mut publisher, json!({"op":"subscribe","topic":"t"})).await;
    expect_op(&mut publisher, "subscribed").await;
    let mut a = dial(&server.ws_url, true).await;
    send_json(&mut a, json!({"op":"subscribe","topic":"t"})).await;
    expect_op(&mut a, "subscribed").await;
    let publish = |n: u64| json!({"op":"publish","topic":"t","data":{"n":n}});
    let mut last = json!(null);
    for n in 1..=3 {
        send_json(&mut publisher, publish(n)).await;
        expect_op(&mut publisher, "message").await;
        last = expect_op(&mut a, "message").await;
        assert_eq!(last["data"]["n"], n);
    }
    let since = json!({"offset": last["offset"], "epoch": last["epoch"]});
    // a goes away; 4 and 5 are published meanwhile.
    drop(a);
    for n in 4..=5 {
        send_json(&mut publisher, publish(n)).await;
        expect_op(&mut publisher, "message").await;
    }
    // Back with its position: 4 and 5 first, in order, then subscribed
    // (recovered), then live messages.
    let mut a = dial(&server.ws_url, true).await;
    send_json(&mut a, json!({"op":"subscribe","topic":"t","since":since})).await;
    for n in 4..=5 {
        let m = expect_op(&mut a, "message").await;
        assert_eq!(
            (m["data"]["n"].clone(), m["offset"].clone()),
            (json!(n), json!(n))
        );
        assert_eq!(m["epoch"], last["epoch"]);
    }
    let s = expect_op(&mut a, "subscribed").await;
    assert_eq!(
        s,
        json!({"op":"subscribed","topic":"t","offset":5,"epoch":last["epoch"],"recovered":true})
    );
    send_json(&mut publisher, publish(6)).await;
    assert_eq!(expect_op(&mut a, "message").await["data"]["n"], 6);

    // Miss: an unknown epoch replays nothing, says so, and starts now.
    let mut c = dial(&server.ws_url, true).await;
    send_json(
        &mut c,
        json!({"op":"subscribe","topic":"t","since":{"offset":2,"epoch":"no-such-epoch"}}),
    )
    .await;
    let s = expect_op(&mut c, "subscribed").await;
    assert_eq!(s["recovered"], false);
    assert_eq!(s["offset"], 6);
    assert_eq!(s["epoch"], last["epoch"]);
    send_json(&mut publisher, publish(7)).await;
    assert_eq!(expect_op(&mut c, "message").await["data"]["n"], 7);
}

#[tokio::test]
async fn envelope_bad_requests_get_an_error_and_the_connection_stays_usable() {
    let server = Server::start(&[
        "--pubsub",
        "--max-topic-len",
        "16",
        "--max-subscriptions",
        "2",
    ])
    .await;
    let mut ws = dial(&server.ws_url, true).await;
    let long_topic = "t".repeat(17);
    let cases: Vec<(Message, &str)> = vec![
        (Message::binary(vec![1, 2, 3]), "binary_not_supported"),
        (Message::text("not json"), "bad_json"),
        (Message::text("{\"op\":"), "bad_json"),
        (Message::text("[1,2]"), "bad_json"),
        (Message::text("\"subscribe\""), "bad_json"),
        (Message::text("{}"), "bad_request"),
        (Message::text(json!({"op":7}).to_string()), "bad_request"),
        (
            Message::text(json!({"op":"nope","topic":"a"}).to_string()),
            "unknown_op",
        ),
        (
            Message::text(json!({"op":"message","topic":"a"}).to_string()),
            "unknown_op",
        ),
        (
            Message::text(json!({"op":"subscribe"}).to_string()),
            "bad_request",
        ),
        (
            Message::text(json!({"op":"subscribe","topic":1}).to_string()),
            "bad_request",
        ),
        (
            Message::text(
                json!({"op":"subscribe","topic":"a","since":{"offset":"x","epoch":"e"}})
                    .to_string(),
            ),
            "bad_request",
        ),
        (
            Message::text(json!({"op":"publish","topic":"a"}).to_string()),
            "bad_request",
        ),
        (
            Message::text(json!({"op":"ping"}).to_string()),
            "bad_request",
        ),
        (
            Message::text(json!({"op":"subscribe","topic":""}).to_string()),
            "invalid_topic",
        ),
        (
            Message::text(json!({"op":"subscribe","topic":long_topic}).to_string()),
            "invalid_topic",
        ),
        (
            Message::text(json!({"op":"publish","topic":long_topic,"data":1}).to_string()),
            "invalid_topic",
        ),
        (
            Message::text(json!({"op":"subscribe","topic":"a\u{1}b"}).to_string()),
            "invalid_topic",
        ),
        (
            Message::text(json!({"op":"presence","topic":"line\nbreak"}).to_string()),
            "invalid_topic",
        ),
        (
            Message::text(json!({"op":"unsubscribe","topic":"x"}).to_string()),
            "not_subscribed",
        ),
    ];
    for (i, (m, code)) in cases.into_iter().enumerate() {
        let shown = format!("{m:?}");
        send(&mut ws, m).await;
        let v = recv_json(&mut ws).await;
        assert_eq!(v["op"], "error", "{shown}: {v}");
        assert_eq!(v["code"], code, "{shown}: {v}");
        assert!(v["message"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        ping_pong(&mut ws, i as u64).await;
    }
    // Limits: two subscriptions, not three; not twice the same.
    for t in ["x", "y"] {
        send_json(&mut ws, json!({"op":"subscribe","topic":t})).await;
        expect_op(&mut ws, "subscribed").await;
    }
    send_json(&mut ws, json!({"op":"subscribe","topic":"x"})).await;
    assert_eq!(
        expect_op(&mut ws, "error").await["code"],
        "already_subscribed"
    );
    send_json(&mut ws, json!({"op":"subscribe","topic":"z"})).await;
    assert_eq!(
        expect_op(&mut ws, "error").await["code"],
        "too_many_subscriptions"
    );
    ping_pong(&mut ws, 100).await;
    // Still a working subscriber.
    send_json(&mut ws, json!({"op":"publish","topic":"y","data":[1]})).await;
    assert_eq!(expect_op(&mut ws, "message").await["data"], json!([1]));
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

// ----- slow consumer ------------------------------------------------------------

#[tokio::test]
async fn a_slow_consumer_is_closed_with_1013_while_the_others_keep_receiving() {
    let server = Server::start(&[
        "--pubsub",
        "--no-compression",
        "--slow-consumer",
        "close",
        "--queue-messages",
        "16",
        "--queue-bytes",
        "262144",
    ])
    .await;
    let url = format!("{}?topic=s", server.ws_url);
    // The server subscribes a connection after its handshake, so each
    // client in turn says hello and waits for its own hello (the sender is
    // included): then it is subscribed, and so are those before it.
    let mut slow = dial(&url, false).await;
    send(&mut slow, Message::text("hello-slow")).await;
    assert_eq!(recv(&mut slow).await.as_text(), Some("hello-slow"));
    let mut fast = dial(&url, false).await;
    send(&mut fast, Message::text("hello-fast")).await;
    assert_eq!(recv(&mut fast).await.as_text(), Some("hello-fast"));
    let mut publisher = dial(&url, false).await;
    send(&mut publisher, Message::text("hello")).await;
    for ws in [&mut publisher, &mut fast] {
        assert_eq!(recv(ws).await.as_text(), Some("hello"));
    }
    // Far more than the slow client's socket buffers and queue hold, in
    // lockstep with the two readers (which never fall behind).
    const N: usize = 1000;
    const SIZE: usize = 16 * 1024;
    for i in 0..N {
        let mut payload = vec![(i % 251) as u8; SIZE];
        payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
        send(&mut publisher, Message::binary(payload.clone())).await;
        for ws in [&mut publisher, &mut fast] {
            let m = recv(ws).await;
            assert!(m.is_binary());
            assert_eq!(m.as_bytes(), &payload[..], "message {i}");
        }
    }
    // The slow client now reads: what was written before the close, then
    // the server's Close 1013 "slow consumer".
    assert_eq!(recv(&mut slow).await.as_text(), Some("hello-fast"));
    assert_eq!(recv(&mut slow).await.as_text(), Some("hello"));
    let mut got = 0;
    let end = loop {
        match timeout(IO_TIMEOUT, slow.recv())
            .await
            .expect("slow client: recv in time")
        {
            Ok(m) => {
                let i = u64::from_be_bytes(m.as_bytes()[..8].try_into().unwrap()) as usize;
                assert_eq!(i, got, "in order, without gaps, up to the close");
                got += 1;
            }
            Err(e) => break e,
        }
    };
    let frame = end
        .close_frame()
        .unwrap_or_else(|| panic!("no Close frame: {end}"));
    assert_eq!(frame.code, CloseCode::TryAgainLater);
    assert_eq!(&*frame.reason, "slow consumer");
    assert!(
        got < N,
        "the slow client got everything ({got}): not slow enough"
    );
    // The others are still served.
    send(&mut publisher, Message::text("after")).await;
    for ws in [&mut publisher, &mut fast] {
        assert_eq!(recv(ws).await.as_text(), Some("after"));
    }
}
