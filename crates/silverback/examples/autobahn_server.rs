//! Echo server for the Autobahn|Testsuite (`wstest -m fuzzingclient`).
//!
//! ```sh
//! cargo run --release -p silverback --example autobahn_server -- 127.0.0.1:9001
//! ```
//!
//! Listens on the given address (default `127.0.0.1:9001`; port 0 picks a
//! free one), prints `listening on ws://ADDR` once bound, accepts any
//! origin and path, negotiates permessage-deflate (RFC 7692) with the
//! default [`DeflateConfig`] (the Autobahn cases 12.* and 13.*), and
//! echoes every text and binary message with the default limits (64 MiB
//! messages, 16 MiB frames). `conformance/run.sh` runs it.

use silverback::{DeflateConfig, Upgrader};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    let addr = addr.as_deref().unwrap_or("127.0.0.1:9001");
    let upgrader = Upgrader::new()
        .check_origin(|_| true)
        .compression(DeflateConfig::default());
    let listener = TcpListener::bind(addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let upgrader = upgrader.clone();
        tokio::spawn(async move {
            let Ok(mut ws) = upgrader.upgrade(stream).await else {
                return;
            };
            // Until the connection ends: the peer's Close is answered by
            // `recv`, protocol errors are closed with the right code by it.
            while let Ok(msg) = ws.recv().await {
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
    }
}
