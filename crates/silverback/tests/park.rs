#![allow(missing_docs)]
#![cfg(unix)]
//! `silverback::park`: idle connections held without a task, over
//! loopback. A parked connection comes back (as a `WebSocket`, with its
//! counters) when its peer sends something, when its peer goes away, for
//! its keepalive Ping (on tokio's paused clock), and when the server shuts
//! down (it closes with 1001 like a running one); a connection that is
//! not parkable is given back unchanged.

mod common;

use std::time::Duration;

use common::*;
use silverback::park::Parking;
use silverback::{CloseCode, Config, Dialer, Message, Shutdown, Upgrader, WebSocket};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A parking whose woken connections (and their data) arrive on the
/// receiver.
fn parking<T: Send + 'static>() -> (
    Parking<T>,
    mpsc::UnboundedReceiver<(WebSocket<TcpStream>, T)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let parking = Parking::new(move |ws, data, _: &Parking<T>| {
        let _ = tx.send((ws, data));
    })
    .expect("parking");
    (parking, rx)
}

/// Parks `ws`, which must be parkable.
#[track_caller]
fn park<T: Send + 'static>(parking: &Parking<T>, ws: WebSocket<TcpStream>, data: T) {
    if parking.park(ws, data).is_err() {
        panic!("not parked");
    }
}

#[tokio::test]
async fn a_parked_connection_wakes_up_when_a_message_arrives_and_keeps_its_state() {
    let upgrader = Upgrader::new().config(Config::default().ping_interval(None));
    let (mut server, mut client) = pair(upgrader, Dialer::new()).await;
    // Some traffic first: the counters must survive parking.
    client.send(Message::text("one")).await.unwrap();
    assert_eq!(within(server.recv()).await.unwrap(), Message::text("one"));
    server.send(Message::text("one")).await.unwrap();
    assert_eq!(within(client.recv()).await.unwrap(), Message::text("one"));

    let (parking, mut woken) = parking::<&'static str>();
    park(&parking, server, "alice");
    assert_eq!(parking.len(), 1);

    client.send(Message::binary(&b"two"[..])).await.unwrap();
    let (mut server, data) = within(woken.recv()).await.unwrap();
    assert_eq!(data, "alice");
    assert!(parking.is_empty());
    assert_eq!(server.request_path(), Some("/ws"));
    assert_eq!(
        within(server.recv()).await.unwrap(),
        Message::binary(&b"two"[..])
    );
    server.send(Message::text("three")).await.unwrap();
    assert_eq!(within(client.recv()).await.unwrap(), Message::text("three"));
    let stats = server.stats();
    assert_eq!((stats.messages_in, stats.messages_out), (2, 2));
    assert_eq!((stats.payload_in, stats.payload_out), (6, 8));

    // Parked again, then closed by the client: woken, the close completes.
    park(&parking, server, "alice");
    let closing = tokio::spawn(async move { client.close(CloseCode::Normal, "bye").await });
    let (mut server, _) = within(woken.recv()).await.unwrap();
    let end = within(server.recv()).await.unwrap_err();
    assert!(end.is_closed(), "{end:?}");
    assert_eq!(end.close_code(), Some(CloseCode::Normal));
    within(closing).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_peer_that_vanishes_while_parked_ends_the_connection_unexpectedly() {
    let upgrader = Upgrader::new().config(Config::default().ping_interval(None));
    let (server, client) = pair(upgrader, Dialer::new()).await;
    let (parking, mut woken) = parking::<()>();
    park(&parking, server, ());
    drop(client); // no Close: the socket just closes
    let (mut server, ()) = within(woken.recv()).await.unwrap();
    let end = within(server.recv()).await.unwrap_err();
    assert!(end.is_unexpected_close(&[]), "{end:?}");
    assert_eq!(end.close_code(), Some(CloseCode::Abnormal));
}

#[tokio::test]
async fn a_connection_that_is_not_parkable_is_given_back_unchanged() {
    let upgrader = Upgrader::new().config(Config::default().ping_interval(None));
    let (mut server, mut client) = pair(upgrader, Dialer::new()).await;
    let (parking, _woken) = parking::<u32>();

    // A Ping awaits its Pong.
    let pong = server.ping(b"rtt").await.unwrap();
    let (mut server, data) = parking
        .park(server, 7)
        .map(|()| panic!("parked"))
        .unwrap_err();
    assert_eq!(data, 7);
    assert!(parking.is_empty());
    // The client answers while it reads; the server reads the Pong.
    let reader = tokio::spawn(async move {
        let msg = client.recv().await;
        (client, msg)
    });
    server.send(Message::text("after")).await.unwrap();
    let (mut client, msg) = within(reader).await.unwrap();
    assert_eq!(msg.unwrap(), Message::text("after"));
    client.send(Message::text("x")).await.unwrap();
    assert_eq!(within(server.recv()).await.unwrap(), Message::text("x"));
    within(pong).await.unwrap();

    // A sender exists: messages may come from elsewhere at any time.
    let _sender = server.sender();
    let (server, _) = parking
        .park(server, 8)
        .map(|()| panic!("parked"))
        .unwrap_err();
    drop(server);
    assert!(parking.is_empty());
}

#[tokio::test]
async fn wake_all_hands_every_parked_connection_back() {
    let upgrader = Upgrader::new().config(Config::default().ping_interval(None));
    let (parking, mut woken) = parking::<usize>();
    let mut clients = Vec::new();
    for i in 0..3 {
        let (server, client) = pair(upgrader.clone(), Dialer::new()).await;
        park(&parking, server, i);
        clients.push(client);
    }
    assert_eq!(parking.len(), 3);
    parking.wake_all();
    assert!(parking.is_empty());
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (mut server, i) = within(woken.recv()).await.unwrap();
        // Running again: it echoes what its client sends.
        clients[i].send(Message::text("back")).await.unwrap();
        assert_eq!(within(server.recv()).await.unwrap(), Message::text("back"));
        seen.push(i);
    }
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2]);
}

#[tokio::test]
async fn parked_connections_close_with_1001_when_the_server_shuts_down() {
    let upgrader = Upgrader::new().config(Config::default().ping_interval(None));
    let shutdown = Shutdown::new();
    let (parking, mut woken) = parking::<usize>();
    let mut clients = Vec::new();
    for i in 0..3 {
        let (mut server, client) = pair(upgrader.clone(), Dialer::new()).await;
        shutdown.track(&mut server);
        park(&parking, server, i);
        clients.push(client);
    }
    assert_eq!(parking.len(), 3);
    // Woken connections run as a server's would: until their end.
    let runner = tokio::spawn(async move {
        let mut ends = Vec::new();
        while let Some((mut ws, i)) = woken.recv().await {
            ends.push(tokio::spawn(async move { (i, ws.recv().await) }));
            if ends.len() == 3 {
                break;
            }
        }
        ends
    });
    let clients: Vec<_> = clients
        .into_iter()
        .map(|mut c| tokio::spawn(async move { c.recv().await }))
        .collect();
    let report = within(shutdown.shutdown(Duration::from_secs(5))).await;
    assert_eq!(report.open_at_start, 3);
    assert_eq!(report.closed_cleanly, 3, "{report}");
    for client in clients {
        let end = within(client).await.unwrap().unwrap_err();
        assert!(end.is_closed(), "{end:?}");
        assert_eq!(end.close_code(), Some(CloseCode::GoingAway));
    }
    let mut seen = Vec::new();
    for end in within(runner).await.unwrap() {
        let (i, end) = within(end).await.unwrap();
        assert!(end.unwrap_err().is_closed());
        seen.push(i);
    }
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2]);
    assert!(parking.is_empty());
}

/// On tokio's paused clock: a parked connection is woken for its
/// keepalive Ping, which the peer answers; the Ping's count goes on
/// from before parking.
#[tokio::test(start_paused = true)]
async fn a_parked_connection_is_woken_for_its_keepalive_ping() {
    let interval = Duration::from_secs(20);
    let config = Config::default()
        .ping_interval(Some(interval))
        .ping_timeout(Duration::from_secs(5));
    let upgrader = Upgrader::new().config(config);
    let (server, mut client) = pair(
        upgrader,
        Dialer::new().config(Config::default().ping_interval(None)),
    )
    .await;
    let (parking, mut woken) = parking::<()>();
    let parked_at = tokio::time::Instant::now();
    park(&parking, server, ());
    // The client reads (and so answers Pings) until the server closes.
    let client = tokio::spawn(async move { client.recv().await });
    let (mut server, ()) = tokio::time::timeout(2 * interval, woken.recv())
        .await
        .expect("woken for the keepalive Ping")
        .unwrap();
    assert!(
        parked_at.elapsed() >= interval,
        "woken after {:?}",
        parked_at.elapsed()
    );
    assert!(server.stats().last_rtt.is_none());
    // Running again: the Ping goes out, the Pong comes back.
    let pong = tokio::time::timeout(Duration::from_secs(1), server.recv()).await;
    assert!(pong.is_err(), "nothing but the Pong arrives: {pong:?}");
    assert!(
        server.stats().last_rtt.is_some(),
        "the keepalive Ping was answered"
    );
    // Answered: parkable again, woken again an interval later.
    park(&parking, server, ());
    let again = tokio::time::Instant::now();
    let (mut server, ()) = tokio::time::timeout(2 * interval, woken.recv())
        .await
        .expect("woken again for the next Ping")
        .unwrap();
    assert!(again.elapsed() >= interval - Duration::from_secs(1));
    server.close(CloseCode::Normal, "").await.unwrap();
    assert!(client.await.unwrap().unwrap_err().is_closed());
}
