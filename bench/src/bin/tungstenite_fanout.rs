//! Pub/sub fan-out server on tokio-tungstenite, written the way a user
//! writes one today: one `tokio::sync::broadcast` channel per topic, and
//! per socket a reader loop that publishes into its topics' channels and a
//! writer task that forwards what the channels deliver.
//!
//! The raw protocol of `silverback serve --pubsub`: a client connecting to
//! `/ws?topic=NAME` (topic `all` when absent; several `topic` parameters
//! allowed) is subscribed to those topics; every text or binary message it
//! sends is published unchanged to every subscriber of its topics, the
//! sender included.
//!
//! A subscriber that falls more than `CAPACITY` messages behind its
//! channel loses the oldest ones (`RecvError::Lagged`), as broadcast
//! channels do; the load generator counts them as lost.
//!
//! Usage: `tungstenite-fanout 127.0.0.1:PORT` (any path is accepted).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Error, Message, Result};

/// Messages a topic's channel holds for its slowest subscriber.
const CAPACITY: usize = 1024;

type Topics = Arc<Mutex<HashMap<String, broadcast::Sender<Message>>>>;

/// The `topic` parameters of a request's query (`all` when there are none).
fn topics_of(req: &Request) -> Vec<String> {
    let mut topics: Vec<String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("topic="))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if topics.is_empty() {
        topics.push("all".to_owned());
    }
    topics.sort();
    topics.dedup();
    topics
}

// The handshake callback's error type (an HTTP response) is tungstenite's.
#[allow(clippy::result_large_err)]
async fn handle_connection(stream: TcpStream, registry: Topics) -> Result<()> {
    let mut names = Vec::new();
    let ws = tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
        names = topics_of(req);
        Ok(resp)
    })
    .await?;
    // Subscribe to every topic, keeping a sender per topic to publish.
    let (senders, receivers): (Vec<_>, Vec<_>) = {
        let mut map = registry.lock().expect("topic registry");
        names
            .iter()
            .map(|name| {
                let tx = map
                    .entry(name.clone())
                    .or_insert_with(|| broadcast::channel(CAPACITY).0)
                    .clone();
                let rx = tx.subscribe();
                (tx, BroadcastStream::new(rx))
            })
            .unzip()
    };
    let (mut sink, mut stream) = ws.split();
    // The writer task: everything the topics deliver, in order, one send each.
    let writer = tokio::spawn(async move {
        let mut incoming = futures_util::stream::select_all(receivers);
        while let Some(msg) = incoming.next().await {
            match msg {
                Ok(msg) => sink.send(msg).await?,
                // Lagged: the channel dropped messages for this subscriber.
                Err(_) => continue,
            }
        }
        Ok::<_, Error>(())
    });
    let result = async {
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            if msg.is_text() || msg.is_binary() {
                for tx in &senders {
                    let _ = tx.send(msg.clone());
                }
            }
        }
        Ok(())
    }
    .await;
    writer.abort();
    // Forget topics nobody listens to any more.
    drop(senders);
    let mut map = registry.lock().expect("topic registry");
    for name in &names {
        if map.get(name).is_some_and(|tx| tx.receiver_count() == 0) {
            map.remove(name);
        }
    }
    result
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("tungstenite-fanout listening on {addr}");
    let registry: Topics = Arc::default();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let registry = registry.clone();
        tokio::spawn(async move {
            match handle_connection(stream, registry).await {
                Ok(())
                | Err(
                    Error::ConnectionClosed
                    | Error::AlreadyClosed
                    | Error::Protocol(_)
                    | Error::Utf8(_)
                    | Error::Io(_),
                ) => {}
                Err(e) => eprintln!("connection error: {e}"),
            }
        });
    }
}
