//! `silverback-h2-echo 127.0.0.1:PORT [--tls]`: silverback's echo over
//! hyper, HTTP/1.1 (Upgrade) and HTTP/2 (RFC 8441 extended CONNECT, h2c
//! with prior knowledge, or ALPN `h2` with `--tls`) on the same port. For
//! `silverback bench --http2` until `silverback serve` speaks HTTP/2.
//! `--tls` serves a self-signed certificate for 127.0.0.1 (bench with
//! `--insecure`).
//!
//! The server side of RFC 8441 is not in the library yet: the HTTP/2
//! CONNECT is translated into the HTTP/1.1 upgrade request it stands for
//! (RFC 8441 §5) and given to `Upgrader::upgrade_hyper`, whose `101`
//! becomes a `200`. The WebSocket then runs over hyper's upgraded stream.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use silverback::http::{header, Method, Request, Response, StatusCode, Version};
use silverback::Upgrader;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9001".into());
    let tls = args.next().as_deref() == Some("--tls");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(addr, tls))
}

async fn serve(addr: String, tls: bool) -> Result<(), Box<dyn std::error::Error>> {
    let acceptor = if tls {
        let cert =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])?;
        let config = silverback::tls::server_config_from_pem(
            cert.cert.pem().as_bytes(),
            cert.signing_key.serialize_pem().as_bytes(),
        )?;
        let mut config = (*config).clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Some(silverback::tls::TlsAcceptor::from(Arc::new(config)))
    } else {
        None
    };
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("listening on {addr} (tls: {tls})");
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    serve_conn(tls, h2).await;
                }
                None => {
                    let mut preface = [0u8; 3];
                    let h2 = matches!(tcp.peek(&mut preface).await, Ok(3) if &preface == b"PRI");
                    serve_conn(tcp, h2).await;
                }
            }
        });
    }
}

async fn serve_conn<I>(io: I, h2: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let service = service_fn(handle);
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .enable_connect_protocol()
            .serve_connection(io, service)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .with_upgrades()
            .await;
    }
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let h2 = req.version() == Version::HTTP_2;
    let mut upgrade = if h2 {
        let protocol = req.extensions().get::<hyper::ext::Protocol>();
        if req.method() != Method::CONNECT || protocol.map(|p| p.as_str()) != Some("websocket") {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"WebSocket only\n")));
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(resp);
        }
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let authority = req.uri().authority().map_or("", |a| a.as_str());
        let mut r = Request::get(path)
            .header(header::HOST, authority)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .body(())
            .expect("valid request");
        for (name, value) in req.headers() {
            r.headers_mut().append(name, value.clone());
        }
        *r.extensions_mut() = std::mem::take(req.extensions_mut());
        r
    } else {
        req.map(|_| ())
    };
    let upgrader = Upgrader::new().check_origin(|_| true);
    match upgrader.upgrade_hyper(&mut upgrade).await {
        Ok((switching, ws)) => {
            tokio::spawn(async move {
                let Ok(mut ws) = ws.await else { return };
                while let Ok(msg) = ws.recv().await {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
            if !h2 {
                return Ok(switching);
            }
            let mut ok = Response::new(Full::new(Bytes::new()));
            for name in [
                header::SEC_WEBSOCKET_PROTOCOL,
                header::SEC_WEBSOCKET_EXTENSIONS,
            ] {
                if let Some(v) = switching.headers().get(&name) {
                    ok.headers_mut().insert(name, v.clone());
                }
            }
            Ok(ok)
        }
        Err(refusal) => Ok(refusal),
    }
}
