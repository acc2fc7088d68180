#![allow(missing_docs)]
//! `silverback serve --pubsub --redis`: several nodes on a real
//! `redis-server` (each test starts its own on a free port, killed by PID).
//!
//! - three nodes: every message from any node reaches every subscriber on
//!   every node exactly once, in order per publisher;
//! - publishers that never wait for an answer (raw and envelope; the
//!   server pipelines their publishes to Redis): the same, in order;
//! - Redis SIGKILLed and restarted under load, with AOF (`appendfsync
//!   always`: nothing acknowledged is lost, no reset) and without
//!   persistence (subscribers are told `recovered:false` with a new epoch);
//!   publishes during the outage fail visibly; `/readyz` is 503 meanwhile;
//! - a node SIGKILLed: its clients reconnect to another node with `since`
//!   and get exactly what they missed, `recovered:true`;
//! - `/readyz` 503 while draining for shutdown;
//! - the hub API on two Redis shards (rendezvous hashing).
//!
//! Each scenario prints its figures (published, delivered, lost,
//! duplicated).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::redis::RedisServer;
use common::{http_exchange, plain_request, Server, IO_TIMEOUT};
use serde_json::{json, Value};
use silverback::{ClientStream, Dialer, Message, WebSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

type Ws = WebSocket<ClientStream>;

const TOPIC: &str = "room";
/// Bound on a whole scenario's waiting.
const SCENARIO: Duration = Duration::from_secs(40);

async fn dial(url: &str) -> Result<Ws, silverback::Error> {
    let d = Dialer::new().no_proxy().subprotocols(["pubsub.v1"]);
    match timeout(IO_TIMEOUT, d.connect(url)).await {
        Ok(r) => r.map(|(ws, _)| ws),
        Err(_) => panic!("connecting to {url} timed out"),
    }
}

async fn send_json(ws: &mut Ws, v: Value) -> Result<(), silverback::Error> {
    ws.send(Message::text(v.to_string())).await
}

async fn recv_json(ws: &mut Ws) -> Result<Value, silverback::Error> {
    let m = timeout(SCENARIO, ws.recv())
        .await
        .expect("a message in time")?;
    let text = m.as_text().expect("envelope replies are text");
    Ok(serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

/// `N` nodes on `redis`, with node ids `a`, `b`, `c`, ...
async fn nodes<const N: usize>(redis: &RedisServer) -> [Server; N] {
    let mut out = Vec::with_capacity(N);
    for k in 0..N {
        let id = ((b'a' + k as u8) as char).to_string();
        out.push(node(redis, &["--node-id", &id]).await);
    }
    out.try_into().unwrap_or_else(|_| unreachable!())
}

/// `count` subscribers' URL lists, each one node's, spread round-robin.
fn round_robin(nodes: &[&Server], count: usize) -> Vec<Vec<String>> {
    (0..count)
        .map(|k| vec![nodes[k % nodes.len()].ws_url.clone()])
        .collect()
}

async fn node(redis: &RedisServer, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec![
        "--pubsub",
        "--redis",
        &url,
        "--history",
        "100000",
        "--queue-messages",
        "100000",
        "--queue-bytes",
        "67108864",
        // Debug builds deflate slowly; compression is not what is tested.
        "--no-compression",
    ];
    args.extend_from_slice(extra);
    let s = Server::start(&args).await;
    // Ready once the backplane is connected.
    wait_status(&s, "/readyz", 200).await;
    s
}

async fn http_status(server: &Server, path: &str) -> (u16, String) {
    let (resp, _, _) = http_exchange(
        server.addr,
        &plain_request("GET", path, &server.addr.to_string()),
    )
    .await;
    (resp.status, resp.body_text())
}

/// Polls `path` until it answers `status` (bounded).
async fn wait_status(server: &Server, path: &str, status: u16) -> String {
    let deadline = Instant::now() + SCENARIO;
    loop {
        let (s, body) = http_status(server, path).await;
        if s == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still {s} ({body}), wanted {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks `server` for the presence of `TOPIC` until it is `count` (nodes
/// write theirs every second).
async fn wait_presence(server: &Server, count: usize) {
    let mut ws = dial(&server.ws_url).await.unwrap();
    let deadline = Instant::now() + SCENARIO;
    loop {
        send_json(&mut ws, json!({"op":"presence","topic":TOPIC}))
            .await
            .unwrap();
        let v = recv_json(&mut ws).await.unwrap();
        if v["count"] == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "presence stays at {v}, not {count}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one subscriber got.
#[derive(Debug, Default)]
struct Got {
    /// `(publisher, i)` of each message, in order of arrival.
    messages: Vec<(u64, u64)>,
    /// Unsolicited `subscribed` with `recovered:false` (resets).
    resets: Vec<Value>,
    /// `recovered` of each `subscribed` that answered a `since`.
    recoveries: Vec<bool>,
    /// Epochs seen.
    epochs: Vec<String>,
}

/// A `pubsub.v1` subscriber of `TOPIC`: subscribes on `urls[0]`, and after
/// a lost connection resubscribes on the next URL with `since` its last
/// position; runs until it has `(publisher, i)` for every publisher in
/// `until` (or the scenario bound). `ready` is sent once subscribed.
fn subscriber(
    urls: Vec<String>,
    ready: tokio::sync::mpsc::Sender<()>,
    until: watch::Receiver<Option<HashMap<u64, u64>>>,
) -> JoinHandle<Got> {
    tokio::spawn(async move {
        let mut got = Got::default();
        let mut pos: Option<(u64, String)> = None;
        let mut seen_last: HashMap<u64, u64> = HashMap::new();
        let deadline = Instant::now() + SCENARIO;
        let mut first = true;
        'urls: for url in &urls {
            let mut ws = dial(url).await.expect("connecting a subscriber");
            let mut req = json!({"op":"subscribe","topic":TOPIC});
            if let Some((offset, epoch)) = &pos {
                req["since"] = json!({"offset": offset, "epoch": epoch});
            }
            send_json(&mut ws, req).await.expect("subscribing");
            let mut subscribed = false;
            loop {
                let done = |seen: &HashMap<u64, u64>| {
                    until
                        .borrow()
                        .as_ref()
                        .is_some_and(|u| u.iter().all(|(p, i)| seen.get(p).is_some_and(|s| s >= i)))
                };
                if subscribed && done(&seen_last) {
                    return got;
                }
                let mut until_changed = until.clone();
                let v = tokio::select! {
                    v = recv_json(&mut ws) => v,
                    _ = until_changed.changed() => continue,
                    _ = tokio::time::sleep_until(deadline) => return got,
                };
                let v = match v {
                    Ok(v) => v,
                    Err(_) => continue 'urls,
                };
                match v["op"].as_str() {
                    Some("message") => {
                        let (p, i) = (
                            v["data"]["p"].as_u64().unwrap(),
                            v["data"]["i"].as_u64().unwrap(),
                        );
                        got.messages.push((p, i));
                        let e = v["epoch"].as_str().unwrap().to_owned();
                        if got.epochs.last() != Some(&e) {
                            got.epochs.push(e.clone());
                        }
                        pos = Some((v["offset"].as_u64().unwrap(), e));
                        let s = seen_last.entry(p).or_default();
                        *s = (*s).max(i);
                    }
                    Some("subscribed") => {
                        let e = v["epoch"].as_str().unwrap().to_owned();
                        if got.epochs.last() != Some(&e) {
                            got.epochs.push(e.clone());
                        }
                        if !subscribed {
                            subscribed = true;
                            if pos.is_some() {
                                got.recoveries.push(v["recovered"].as_bool().unwrap());
                            }
                            if first {
                                first = false;
                                ready.send(()).await.unwrap();
                            }
                        } else {
                            assert_eq!(v["recovered"], false, "{v}");
                            got.resets.push(v.clone());
                        }
                        let o = v["offset"].as_u64().unwrap();
                        let further = match &pos {
                            Some((po, pe)) => *pe != e || o > *po,
                            None => true,
                        };
                        if further {
                            pos = Some((o, e));
                        }
                    }
                    _ => panic!("unexpected {v}"),
                }
            }
        }
        got
    })
}

/// What a publisher did: the `i` it published with success, and how many
/// publishes were refused with an `error` (the backplane down).
#[derive(Debug, Default)]
struct Published {
    acked: Vec<u64>,
    failed: u64,
}

/// A publisher `p` on `url`: publishes `{"p":p,"i":i}` for i = 1, 2, …
/// each followed by a `ping` (requests are answered in order: an `error`
/// before the `pong` means that publish failed), until `stop` is true
/// (then `count` does not matter) or `count` publishes were acknowledged.
/// `progress` counts acknowledged and failed publishes as they go.
fn publisher(
    url: String,
    p: u64,
    count: u64,
    stop: watch::Receiver<bool>,
    progress: watch::Sender<(u64, u64)>,
) -> JoinHandle<Published> {
    tokio::spawn(async move {
        let mut ws = dial(&url).await.expect("connecting the publisher");
        let mut out = Published::default();
        let mut i = 0;
        while !*stop.borrow() && (out.acked.len() as u64) < count {
            i += 1;
            send_json(
                &mut ws,
                json!({"op":"publish","topic":TOPIC,"data":{"p":p,"i":i}}),
            )
            .await
            .unwrap();
            send_json(&mut ws, json!({"op":"ping","id":i}))
                .await
                .unwrap();
            let mut failed = false;
            loop {
                let v = recv_json(&mut ws).await.expect("publisher reply");
                match v["op"].as_str() {
                    Some("error") => {
                        assert_eq!(v["code"], "unavailable", "{v}");
                        failed = true;
                    }
                    Some("pong") => {
                        assert_eq!(v["id"], i);
                        break;
                    }
                    _ => panic!("publisher got {v}"),
                }
            }
            if failed {
                out.failed += 1;
            } else {
                out.acked.push(i);
            }
            progress.send_replace((out.acked.len() as u64, out.failed));
        }
        out
    })
}

/// Figures of one scenario, checked against what each subscriber got.
struct Figures {
    published: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
}

/// Counts, over every subscriber, the acknowledged messages it lacks
/// (`lost`), got twice (`duplicated`) or out of publish order; `from`
/// ignores per publisher the `i` below it (messages a subscriber could not
/// get: before a reset).
fn figures(acked: &HashMap<u64, Vec<u64>>, got: &[Got]) -> Figures {
    let mut f = Figures {
        published: acked.values().map(|v| v.len() as u64).sum(),
        delivered: 0,
        lost: 0,
        duplicated: 0,
        out_of_order: 0,
    };
    for g in got {
        f.delivered += g.messages.len() as u64;
        let mut count: HashMap<(u64, u64), u64> = HashMap::new();
        let mut last: HashMap<u64, u64> = HashMap::new();
        for &(p, i) in &g.messages {
            *count.entry((p, i)).or_default() += 1;
            let l = last.entry(p).or_default();
            if i <= *l {
                f.out_of_order += 1;
            }
            *l = i;
        }
        for (p, is) in acked {
            for i in is {
                match count.get(&(*p, *i)) {
                    None => f.lost += 1,
                    Some(n) if *n > 1 => f.duplicated += n - 1,
                    _ => {}
                }
            }
        }
    }
    f
}

fn print(name: &str, subscribers: usize, f: &Figures, extra: &str) {
    println!(
        "FIGURES {name}: subscribers={subscribers} published={} delivered={} lost={} duplicated={} out_of_order={} {extra}",
        f.published, f.delivered, f.lost, f.duplicated, f.out_of_order
    );
}

/// Starts `n` subscribers per URL list and waits until all are subscribed.
async fn subscribers(
    lists: &[Vec<String>],
    until: &watch::Receiver<Option<HashMap<u64, u64>>>,
) -> Vec<JoinHandle<Got>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(lists.len());
    let subs: Vec<_> = lists
        .iter()
        .map(|urls| subscriber(urls.clone(), tx.clone(), until.clone()))
        .collect();
    for _ in 0..lists.len() {
        timeout(SCENARIO, rx.recv())
            .await
            .expect("subscribers subscribed in time")
            .unwrap();
    }
    subs
}

async fn collect(subs: Vec<JoinHandle<Got>>) -> Vec<Got> {
    let mut out = Vec::new();
    for s in subs {
        out.push(timeout(SCENARIO + IO_TIMEOUT, s).await.unwrap().unwrap());
    }
    out
}

fn last_of(acked: &HashMap<u64, Vec<u64>>) -> HashMap<u64, u64> {
    acked
        .iter()
        .filter_map(|(p, v)| v.last().map(|l| (*p, *l)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_deliver_every_message_exactly_once_in_order() {
    let redis = RedisServer::start(false).await;
    let nodes: [Server; 3] = nodes(&redis).await;
    const PER_NODE: usize = 40;
    const MESSAGES: u64 = 400;
    let (until_tx, until) = watch::channel(None);
    let lists = round_robin(&nodes.each_ref(), PER_NODE * 3);
    let subs = subscribers(&lists, &until).await;
    // Presence across nodes: every node counts every subscriber.
    for n in &nodes {
        wait_presence(n, PER_NODE * 3).await;
    }
    let (_stop_tx, stop) = watch::channel(false);
    let started = Instant::now();
    let pubs: Vec<_> = (0..3u64)
        .map(|p| {
            let (progress, _) = watch::channel((0, 0));
            publisher(
                nodes[p as usize].ws_url.clone(),
                p,
                MESSAGES,
                stop.clone(),
                progress,
            )
        })
        .collect();
    let mut acked = HashMap::new();
    for (p, h) in pubs.into_iter().enumerate() {
        let out = timeout(SCENARIO, h).await.unwrap().unwrap();
        assert_eq!(out.failed, 0);
        acked.insert(p as u64, out.acked);
    }
    until_tx.send_replace(Some(last_of(&acked)));
    let got = collect(subs).await;
    let f = figures(&acked, &got);
    print(
        "three_nodes",
        got.len(),
        &f,
        &format!("seconds={:.2}", started.elapsed().as_secs_f64()),
    );
    assert_eq!(f.published, 3 * MESSAGES);
    assert_eq!((f.lost, f.duplicated, f.out_of_order), (0, 0, 0));
    assert_eq!(f.delivered, 3 * MESSAGES * got.len() as u64);
    assert!(got.iter().all(|g| g.resets.is_empty()));
    // Redis stayed up: no node ever lost it (its liveness pings pass).
    for n in &nodes {
        let log = n.log();
        assert!(!log.contains("redis backplane: disconnected"), "{log}");
    }
}

/// Publishers that never wait (the server has many of each connection's
/// publishes in flight to Redis at once): an envelope publisher on one
/// node, a raw one on the other, thousands of messages each; every
/// subscriber on both nodes gets each exactly once, in publish order per
/// publisher, and the envelope publisher gets no `error` (its `pong`, sent
/// after all, comes first).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_publishes_keep_their_order_across_nodes() {
    let redis = RedisServer::start(false).await;
    let nodes: [Server; 2] = nodes(&redis).await;
    const PER_NODE: usize = 20;
    const MESSAGES: u64 = 3000;
    let (until_tx, until) = watch::channel(None);
    let lists = round_robin(&nodes.each_ref(), PER_NODE * 2);
    let subs = subscribers(&lists, &until).await;
    for n in &nodes {
        wait_presence(n, PER_NODE * 2).await;
    }
    let started = Instant::now();
    // Publisher 0: pubsub.v1 on node a, every publish written at once.
    let envelope = {
        let url = nodes[0].ws_url.clone();
        tokio::spawn(async move {
            let mut ws = dial(&url).await.unwrap();
            for i in 1..=MESSAGES {
                let m = json!({"op":"publish","topic":TOPIC,"data":{"p":0,"i":i}});
                send_json(&mut ws, m).await.unwrap();
            }
            send_json(&mut ws, json!({"op":"ping","id":1}))
                .await
                .unwrap();
            let v = recv_json(&mut ws).await.unwrap();
            assert_eq!(v, json!({"op":"pong","id":1}));
        })
    };
    // Publisher 1: raw on node b (subscribed to the topic too: it gets
    // its own messages back, in order).
    let raw = {
        let url = format!("{}?topic={TOPIC}", nodes[1].ws_url);
        tokio::spawn(async move {
            let d = Dialer::new().no_proxy();
            let (mut ws, _) = timeout(IO_TIMEOUT, d.connect(&url)).await.unwrap().unwrap();
            for i in 1..=MESSAGES {
                let m = json!({"p":1,"i":i}).to_string();
                ws.send(Message::text(m)).await.unwrap();
            }
            let mut next = 1;
            while next <= MESSAGES {
                let m = timeout(SCENARIO, ws.recv()).await.unwrap().unwrap();
                let v: Value = serde_json::from_str(m.as_text().unwrap()).unwrap();
                if v["p"] == 1 {
                    assert_eq!(v["i"], next, "the raw publisher's own order");
                    next += 1;
                }
            }
        })
    };
    timeout(SCENARIO, envelope).await.unwrap().unwrap();
    timeout(SCENARIO, raw).await.unwrap().unwrap();
    let acked: HashMap<u64, Vec<u64>> =
        [(0, (1..=MESSAGES).collect()), (1, (1..=MESSAGES).collect())].into();
    until_tx.send_replace(Some(last_of(&acked)));
    let got = collect(subs).await;
    let f = figures(&acked, &got);
    print(
        "pipelined",
        got.len(),
        &f,
        &format!("seconds={:.2}", started.elapsed().as_secs_f64()),
    );
    assert_eq!(f.published, 2 * MESSAGES);
    assert_eq!((f.lost, f.duplicated, f.out_of_order), (0, 0, 0));
    assert_eq!(f.delivered, 2 * MESSAGES * got.len() as u64);
    assert!(got.iter().all(|g| g.resets.is_empty()));
}

/// Redis SIGKILLed under load and restarted; returns the figures.
async fn redis_restart(aof: bool) {
    let name = if aof {
        "redis_restart_aof"
    } else {
        "redis_restart_no_persistence"
    };
    let mut redis = RedisServer::start(aof).await;
    let [a, b] = nodes(&redis).await;
    let (until_tx, until) = watch::channel(None);
    let lists = round_robin(&[&a, &b], 20);
    let subs = subscribers(&lists, &until).await;
    let (stop_tx, stop) = watch::channel(false);
    let (progress_tx, mut progress) = watch::channel((0u64, 0u64));
    let publishing = publisher(a.ws_url.clone(), 0, u64::MAX, stop, progress_tx);
    // Under load: kill Redis after 200 acknowledged publishes.
    let before = *timeout(SCENARIO, progress.wait_for(|(ok, _)| *ok >= 200))
        .await
        .unwrap()
        .unwrap();
    redis.kill().await;
    // Publishes fail visibly, and both nodes say they are not ready.
    timeout(SCENARIO, progress.wait_for(|(_, failed)| *failed >= 5))
        .await
        .expect("publishes fail while Redis is down")
        .unwrap();
    for n in [&a, &b] {
        let body = wait_status(n, "/readyz", 503).await;
        assert!(body.contains("backplane disconnected"), "{body}");
        let (s, body) = http_status(n, "/healthz").await;
        assert_eq!(s, 200);
        assert!(body.contains(r#""backplane":"disconnected""#), "{body}");
    }
    let down = Instant::now();
    redis.restart().await;
    for n in [&a, &b] {
        wait_status(n, "/readyz", 200).await;
    }
    let back = down.elapsed();
    let acked_at_restart = progress.borrow().0;
    timeout(
        SCENARIO,
        progress.wait_for(|(ok, _)| *ok >= acked_at_restart + 200),
    )
    .await
    .unwrap()
    .unwrap();
    stop_tx.send_replace(true);
    let out = timeout(SCENARIO, publishing).await.unwrap().unwrap();
    let acked = HashMap::from([(0u64, out.acked.clone())]);
    until_tx.send_replace(Some(last_of(&acked)));
    let got = collect(subs).await;
    let f = figures(&acked, &got);
    let resets: usize = got.iter().map(|g| g.resets.len()).sum();
    print(
        name,
        got.len(),
        &f,
        &format!(
            "failed_publishes={} acked_before_kill={} resets={resets} outage_and_catch_up={:.2}s",
            out.failed,
            before.0,
            back.as_secs_f64()
        ),
    );
    assert!(out.failed >= 5);
    assert_eq!(f.duplicated, 0);
    assert_eq!(f.out_of_order, 0);
    // Both nodes logged the disconnect and the reconnect with its count.
    for n in [&a, &b] {
        let log = n.log();
        assert!(log.contains("redis backplane: disconnected"), "{log}");
        assert!(
            log.contains("redis backplane: reconnected, caught up"),
            "{log}"
        );
    }
    if aof {
        // Nothing acknowledged is lost; nobody was reset.
        assert_eq!(f.lost, 0);
        assert_eq!(resets, 0);
        assert!(got.iter().all(|g| g.epochs.len() == 1), "one epoch");
    } else {
        // Every subscriber was told, with a new epoch; everything
        // acknowledged after the restart arrived.
        for g in &got {
            assert!(!g.resets.is_empty(), "no reset: {g:?}");
            assert_eq!(g.epochs.len(), 2, "{:?}", g.epochs);
            let after: Vec<u64> = g
                .messages
                .iter()
                .map(|(_, i)| *i)
                .filter(|i| *i > out.acked[acked_at_restart as usize - 1])
                .collect();
            let expect: Vec<u64> = out
                .acked
                .iter()
                .copied()
                .filter(|i| *i > out.acked[acked_at_restart as usize - 1])
                .collect();
            assert_eq!(after, expect);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_with_aof_loses_nothing_acknowledged() {
    redis_restart(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_without_persistence_tells_subscribers() {
    redis_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_of_a_killed_node_recover_exactly_what_they_missed_on_another() {
    let redis = RedisServer::start(false).await;
    let [a, b] = nodes(&redis).await;
    let (until_tx, until) = watch::channel(None);
    let lists: Vec<Vec<String>> = (0..20)
        .map(|_| vec![a.ws_url.clone(), b.ws_url.clone()])
        .collect();
    let subs = subscribers(&lists, &until).await;
    let (stop_tx, stop) = watch::channel(false);
    let (progress_tx, mut progress) = watch::channel((0u64, 0u64));
    let publishing = publisher(b.ws_url.clone(), 0, u64::MAX, stop, progress_tx);
    timeout(SCENARIO, progress.wait_for(|(ok, _)| *ok >= 300))
        .await
        .unwrap()
        .unwrap();
    let mut a = a;
    a.signal("KILL").await;
    a.wait_exit().await;
    let at_kill = progress.borrow().0;
    timeout(SCENARIO, progress.wait_for(|(ok, _)| *ok >= at_kill + 300))
        .await
        .unwrap()
        .unwrap();
    // Presence: the 20 subscribers, now on b; a's counts expire with it.
    wait_presence(&b, 20).await;
    stop_tx.send_replace(true);
    let out = timeout(SCENARIO, publishing).await.unwrap().unwrap();
    let acked = HashMap::from([(0u64, out.acked.clone())]);
    until_tx.send_replace(Some(last_of(&acked)));
    let got = collect(subs).await;
    let f = figures(&acked, &got);
    print(
        "node_killed",
        got.len(),
        &f,
        &format!("failed_publishes={}", out.failed),
    );
    assert_eq!(out.failed, 0);
    assert_eq!((f.lost, f.duplicated, f.out_of_order), (0, 0, 0));
    for g in &got {
        assert_eq!(g.recoveries, [true], "{g:?}");
        assert!(g.resets.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_draining_and_healthz_stays_200() {
    let redis = RedisServer::start(false).await;
    let mut n = node(&redis, &["--shutdown-timeout", "20"]).await;
    assert_eq!(http_status(&n, "/readyz").await.0, 200);
    let (s, body) = http_status(&n, "/healthz").await;
    assert_eq!(s, 200);
    assert!(body.contains(r#""backplane":"connected""#), "{body}");
    // A connection that never answers the server's close keeps it draining.
    let host = n.addr.to_string();
    let (resp, stuck, _) =
        http_exchange(n.addr, &common::upgrade_request("GET", "/ws", &host, &[])).await;
    assert_eq!(resp.status, 101);
    n.terminate().await;
    let body = wait_status(&n, "/readyz", 503).await;
    assert!(body.contains("draining"), "{body}");
    let (s, body) = http_status(&n, "/healthz").await;
    assert_eq!(s, 200);
    assert!(body.contains(r#""draining":true"#), "{body}");
    // Anything else is refused while draining.
    assert_eq!(http_status(&n, "/").await.0, 503);
    drop(stuck);
    assert!(n.wait_exit().await.success());
}

/// The hub API on two Redis shards: topics spread over both by
/// rendezvous hashing, each published once to its shard and delivered to
/// the other node in order; presence counts the other node.
/// The hub API: thousands of publishes of one task in flight at once (a
/// `FuturesOrdered`) get their offsets in the order they were issued, the
/// backplane sends them in shared pipelines (fewer than the publishes),
/// and a subscriber gets them in that order. (One thread: all are handed
/// to the backplane in one poll of the `FuturesOrdered` before its writer
/// runs, so the count of pipelines does not depend on timing.)
#[tokio::test]
async fn overlapping_publishes_share_pipelines_and_keep_their_order() {
    use futures_util::stream::{FuturesOrdered, StreamExt as _};
    use silverback_hub::backplane::redis::{BackplaneState, RedisBackplane};
    use silverback_hub::Hub;
    const N: u64 = 2000;
    let redis = RedisServer::start(false).await;
    let bp = RedisBackplane::builder([redis.url()]).build().unwrap();
    let hub = Hub::builder().backplane(bp.clone()).build().unwrap();
    timeout(
        IO_TIMEOUT,
        bp.state().wait_for(|s| *s == BackplaneState::Connected),
    )
    .await
    .expect("connected")
    .unwrap();
    let (mut client, mut server) =
        silverback::testing::pair(Default::default(), Default::default());
    let tx = server.sender();
    tokio::spawn(async move { while server.recv().await.is_ok() {} });
    hub.subscribe(TOPIC, &tx, "sub").await.unwrap();
    let mut in_flight: FuturesOrdered<_> = (1..=N)
        .map(|i| hub.publish(TOPIC, Message::text(i.to_string())))
        .collect();
    let mut offsets = Vec::new();
    while let Some(r) = timeout(SCENARIO, in_flight.next()).await.unwrap() {
        offsets.push(r.unwrap().offset);
    }
    assert_eq!(offsets, (1..=N).collect::<Vec<_>>());
    let stats = bp.stats();
    assert_eq!(stats.publish_errors, 0);
    assert!(
        stats.publish_batches > 0 && stats.publish_batches < N / 2,
        "{N} publishes in {} pipelines",
        stats.publish_batches
    );
    for i in 1..=N {
        let m = timeout(IO_TIMEOUT, client.recv()).await.unwrap().unwrap();
        assert_eq!(m.as_text().unwrap(), i.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_spread_over_two_shards() {
    use silverback_hub::backplane::redis::{BackplaneState, RedisBackplane};
    use silverback_hub::Hub;
    let r1 = RedisServer::start(false).await;
    let r2 = RedisServer::start(false).await;
    let urls = [r1.url(), r2.url()];
    let mut nodes = Vec::new();
    for id in ["n1", "n2"] {
        let bp = RedisBackplane::builder(urls.clone())
            .node_id(id)
            .build()
            .unwrap();
        let hub = Hub::builder().backplane(bp.clone()).build().unwrap();
        timeout(
            IO_TIMEOUT,
            bp.state().wait_for(|s| *s == BackplaneState::Connected),
        )
        .await
        .expect("connected to both shards")
        .unwrap();
        nodes.push((bp, hub));
    }
    let topics: Vec<String> = (0..16).map(|i| format!("t{i}")).collect();
    let on = |url: &str| {
        topics
            .iter()
            .filter(|t| nodes[0].0.shard_of(t) == url)
            .count()
    };
    let (n1, n2) = (on(&urls[0]), on(&urls[1]));
    assert_eq!(n1 + n2, 16);
    assert!(n1 > 0 && n2 > 0, "both shards used: {n1} and {n2}");
    assert!(topics
        .iter()
        .all(|t| nodes[0].0.shard_of(t) == nodes[1].0.shard_of(t)));
    // A subscriber of every topic on n2.
    let (mut client, mut server) =
        silverback::testing::pair(Default::default(), Default::default());
    let tx = server.sender();
    tokio::spawn(async move { while server.recv().await.is_ok() {} });
    for t in &topics {
        nodes[1].1.subscribe(t, &tx, "sub").await.unwrap();
    }
    for i in 1..=5 {
        for t in &topics {
            let pos = nodes[0]
                .1
                .publish(t, Message::text(format!("{t}:{i}")))
                .await
                .unwrap();
            assert_eq!(pos.offset, i);
        }
    }
    let mut got: HashMap<String, Vec<u64>> = HashMap::new();
    for _ in 0..topics.len() * 5 {
        let m = timeout(IO_TIMEOUT, client.recv()).await.unwrap().unwrap();
        let (t, i) = m.as_text().unwrap().split_once(':').unwrap();
        got.entry(t.to_owned())
            .or_default()
            .push(i.parse().unwrap());
    }
    for t in &topics {
        assert_eq!(got[t], [1, 2, 3, 4, 5], "{t}");
    }
    // n1 sees n2's subscriber (presence is written every second).
    let deadline = Instant::now() + SCENARIO;
    while nodes[0].1.presence_count("t0").await.unwrap() != 1 {
        assert!(Instant::now() < deadline, "presence never reached n1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(nodes[1].1.presence_count("t0").await.unwrap(), 1);
    // Each shard holds the offset counters of its topics only.
    for (url, r) in urls.iter().zip([&r1, &r2]) {
        let out = tokio::process::Command::new("redis-cli")
            .args([
                "-p",
                &r.port.to_string(),
                "--scan",
                "--pattern",
                "silverback:o:*",
            ])
            .output()
            .await
            .expect("redis-cli");
        let mut keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_start_matches("silverback:o:").to_owned())
            .collect();
        keys.sort();
        let mut want: Vec<String> = topics
            .iter()
            .filter(|t| nodes[0].0.shard_of(t) == url)
            .cloned()
            .collect();
        want.sort();
        assert_eq!(keys, want, "counters on {url}");
    }
    let stats = nodes[1].0.stats();
    assert_eq!((stats.disconnects, stats.resets), (0, 0));
}
