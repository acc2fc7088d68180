//! A chat server on axum: rooms are hub topics, WebSockets are upgraded by
//! `silverback::axum::WebSocketUpgrade` (HTTP/1.1, or HTTP/2 extended
//! CONNECT), and an HTTP route publishes into a room too.
//!
//! `cargo run -p silverback-hub --example axum_chat [addr]`, then open
//! http://127.0.0.1:3000/ in two browser tabs, or from terminals:
//! `silverback connect ws://127.0.0.1:3000/ws/lobby`, and
//! `curl -d 'hello from curl' http://127.0.0.1:3000/rooms/lobby`.
//! Ctrl-C closes every WebSocket with 1001 Going Away, then exits.
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Router};
use silverback::axum::WebSocketUpgrade;
use silverback::{DeflateConfig, Message, Shutdown, Upgrader};
use silverback_hub::Hub;

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    hub: Hub,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:3000".into());
    let upgrader = Upgrader::new()
        .compression(DeflateConfig::shared())
        .max_message_size(64 << 10);
    let shutdown = Shutdown::new();
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        // `any`: over HTTP/2 a WebSocket request is a CONNECT, not a GET.
        .route("/ws/{room}", any(join))
        .route("/rooms/{room}", post(publish))
        .with_state(AppState { hub: Hub::new() })
        .layer(Extension(upgrader))
        .layer(Extension(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("chat on http://{}/", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            let report = shutdown.shutdown(Duration::from_secs(5)).await;
            println!("{report}");
        })
        .await
}

/// `/ws/{room}`: joins the room; every text message is published to it.
async fn join(
    upgrade: WebSocketUpgrade,
    Path(room): Path<String>,
    State(state): State<AppState>,
) -> Response {
    upgrade.on_upgrade(move |mut ws| async move {
        let tx = ws.sender();
        let who = format!("guest-{}", rand_id());
        if let Err(e) = state.hub.subscribe(&room, &tx, who).await {
            return eprintln!("{room}: {e}");
        }
        // Receiving also writes out what the hub queued for this socket.
        while let Ok(msg) = ws.recv().await {
            if let Message::Text(_) = msg {
                if let Err(e) = state.hub.publish(&room, msg).await {
                    eprintln!("{room}: {e}");
                }
            }
        }
        state.hub.unsubscribe_all(&tx).await.ok();
    })
}

/// `POST /rooms/{room}`: publishes the body to the room's WebSockets.
async fn publish(
    Path(room): Path<String>,
    State(state): State<AppState>,
    body: String,
) -> impl IntoResponse {
    match state.hub.publish(&room, Message::text(body)).await {
        Ok(pos) => (StatusCode::OK, format!("offset {}\n", pos.offset)),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

/// A short id for a guest (not secret).
fn rand_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>axum chat</title>
<pre id="log"></pre><input id="say" placeholder="say something, Enter">
<script>
const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws/lobby");
const log = (s) => (document.getElementById("log").textContent += s + "\n");
ws.onmessage = (e) => log(e.data);
ws.onclose = (e) => log(`closed: ${e.code} ${e.reason}`);
document.getElementById("say").onkeydown = (e) => {
  if (e.key === "Enter") { ws.send(e.target.value); e.target.value = ""; }
};
</script>
"#;
