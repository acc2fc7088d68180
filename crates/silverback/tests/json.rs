//! JSON messages (feature `json`) over loopback: round trips, invalid JSON
//! that keeps its text and the connection, and connection errors passed
//! through.
#![cfg(feature = "json")]
#![allow(missing_docs)]

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use silverback::{CloseCode, Dialer, JsonError, Message, Upgrader};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Move {
    piece: String,
    to: (u8, u8),
}

fn knight() -> Move {
    Move {
        piece: "knight".into(),
        to: (3, 5),
    }
}

#[tokio::test]
async fn json_round_trip_as_text_frames() {
    let (mut server, mut client) = pair(Upgrader::new(), Dialer::new()).await;
    within(client.send_json(&knight())).await.unwrap();
    // A text message on the wire.
    let raw = within(server.recv()).await.unwrap();
    assert_eq!(raw, Message::text(r#"{"piece":"knight","to":[3,5]}"#));
    within(client.send_json(&knight())).await.unwrap();
    let m: Move = within(server.recv_json()).await.unwrap();
    assert_eq!(m, knight());
    within(server.send_json(&[1, 2, 3])).await.unwrap();
    assert_eq!(
        within(client.recv_json::<Vec<u32>>()).await.unwrap(),
        [1, 2, 3]
    );
}

#[tokio::test]
async fn invalid_json_keeps_the_text_and_the_connection() {
    let (mut server, mut client) = pair(Upgrader::new(), Dialer::new()).await;
    within(client.send(Message::text("{not json")))
        .await
        .unwrap();
    within(client.send(Message::text(r#"{"piece":1}"#)))
        .await
        .unwrap();
    within(client.send(Message::binary(vec![1, 2])))
        .await
        .unwrap();
    within(client.send_json(&knight())).await.unwrap();

    let err = within(server.recv_json::<Move>()).await.unwrap_err();
    assert_eq!(err.text(), Some("{not json"));
    assert!(err.is_data() && !err.is_closed(), "{err:?}");
    assert!(matches!(err, JsonError::Invalid { .. }));
    // Valid JSON of the wrong shape: also kept.
    let err = within(server.recv_json::<Move>()).await.unwrap_err();
    assert_eq!(err.text(), Some(r#"{"piece":1}"#));
    assert!(err.to_string().contains("invalid JSON"), "{err}");
    let err = within(server.recv_json::<Move>()).await.unwrap_err();
    assert!(matches!(err, JsonError::Binary(ref b) if b[..] == [1, 2]));
    // Still usable both ways.
    assert_eq!(within(server.recv_json::<Move>()).await.unwrap(), knight());
    within(server.send_json("ok")).await.unwrap();
    assert_eq!(within(client.recv_json::<String>()).await.unwrap(), "ok");
}

#[tokio::test]
async fn connection_errors_pass_through() {
    let (mut server, mut client) = pair(Upgrader::new(), Dialer::new()).await;
    let closing = tokio::spawn(async move {
        client.close(CloseCode::Normal, "done").await.unwrap();
        client
    });
    let err = within(server.recv_json::<Move>()).await.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    assert!(!err.is_data());
    let inner = err.into_connection_error().unwrap();
    assert_eq!(inner.close_code(), Some(CloseCode::Normal));
    let mut client = within(closing).await.unwrap();
    // Sending after the end: the connection's error, not a JSON one.
    let err = within(client.send_json(&knight())).await.unwrap_err();
    assert!(err.connection_error().is_some(), "{err:?}");
}

#[tokio::test]
async fn json_on_split_halves() {
    let (server, mut client) = pair(Upgrader::new(), Dialer::new()).await;
    let (mut rx, mut tx) = server.split();
    within(client.send_json(&knight())).await.unwrap();
    let m: Move = within(rx.recv_json()).await.unwrap();
    within(tx.send_json(&m)).await.unwrap();
    assert_eq!(within(client.recv_json::<Move>()).await.unwrap(), knight());
    within(client.send(Message::text("nope"))).await.unwrap();
    let err = within(rx.recv_json::<Move>()).await.unwrap_err();
    assert_eq!(err.text(), Some("nope"));
}
