//! Echo server on tokio-tungstenite, as its own examples write one
//! (`examples/autobahn-server.rs`): `accept_async`, then echo every text
//! and binary message with `send`. Pings are answered and Close is
//! echoed by tungstenite itself.
//!
//! Usage: `tungstenite-echo 127.0.0.1:PORT` (any path is accepted).

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::{Error, Result};

async fn handle_connection(stream: TcpStream) -> Result<()> {
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            ws.send(msg).await?;
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("tungstenite-echo listening on {addr}");
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
        // As every server under test: no Nagle delay on the echoes.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            match handle_connection(stream).await {
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
