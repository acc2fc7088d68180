//! A chat server: every text message is published to the sender's room.
//!
//! `cargo run -p silverback-hub --example chat [addr]`, then from two
//! terminals: `silverback connect ws://127.0.0.1:8080/?room=lobby`.
use silverback::{Message, Upgrader};
use silverback_hub::{Hub, HubError};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8080".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("chat on ws://{}/?room=lobby", listener.local_addr()?);
    let hub = Hub::new();
    let upgrader = Upgrader::new().check_origin(|_| true);
    loop {
        let (stream, peer) = listener.accept().await?;
        let (hub, upgrader) = (hub.clone(), upgrader.clone());
        tokio::spawn(async move {
            let Ok(incoming) = upgrader.read_request(stream).await else {
                return;
            };
            let room = room_of(incoming.request().uri().query());
            let Ok(mut ws) = incoming.upgrade(&upgrader).await else {
                return;
            };
            let tx = ws.sender();
            if let Err(e) = hub.subscribe(&room, &tx, peer.to_string()).await {
                return eprintln!("{peer}: {e}");
            }
            // Receiving also writes out what the hub queued for us.
            while let Ok(msg) = ws.recv().await {
                if let Message::Text(_) = msg {
                    let r: Result<_, HubError> = hub.publish(&room, msg).await;
                    r.map(drop).unwrap_or_else(|e| eprintln!("{room}: {e}"));
                }
            }
            hub.unsubscribe_all(&tx).await.ok();
        });
    }
}

/// The `room` query parameter, or "lobby".
fn room_of(query: Option<&str>) -> String {
    let rooms = query.unwrap_or("").split('&');
    let room = rooms.filter_map(|kv| kv.strip_prefix("room=")).next();
    room.filter(|r| !r.is_empty()).unwrap_or("lobby").to_owned()
}
