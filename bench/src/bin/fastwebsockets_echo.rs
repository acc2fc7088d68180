//! Echo server on fastwebsockets, as its `examples/echo_server.rs` writes
//! one: hyper 1 serves the HTTP/1.1 connection and `upgrade::upgrade`
//! answers the handshake; a `FragmentCollector` then echoes every text and
//! binary frame with `read_frame`/`write_frame` (auto-pong and auto-close
//! on, the defaults), inside `tokio::task::unconstrained` as the example
//! does.
//!
//! Usage: `fastwebsockets-echo 127.0.0.1:PORT` (any path is accepted).

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;

async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        if let Err(e) = tokio::task::unconstrained(handle_client(fut)).await {
            match e {
                WebSocketError::ConnectionClosed | WebSocketError::UnexpectedEOF => {}
                e => eprintln!("connection error: {e}"),
            }
        }
    });
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("fastwebsockets-echo listening on {addr}");
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
            let io = hyper_util::rt::TokioIo::new(stream);
            let conn = http1::Builder::new()
                .serve_connection(io, service_fn(server_upgrade))
                .with_upgrades();
            if let Err(e) = conn.await {
                eprintln!("HTTP connection error: {e:?}");
            }
        });
    }
}
