//! What the client-side tests dial: a loopback server for any number of
//! connections over plain TCP or TLS (each connection handed, type-erased,
//! to a handler), and two small proxies, HTTP `CONNECT` (with basic auth)
//! and SOCKS5 (RFC 1928, with RFC 1929 username/password), each piping
//! bytes with `copy_bidirectional`.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use silverback::{Error, Upgrader, WebSocket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{echo, listen, within};

/// A transport of any kind (plain TCP or a server-side TLS stream).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
/// A boxed [`Io`]: what a [`Served`] handler gets.
pub type BoxIo = Box<dyn Io>;

type Wrap =
    Arc<dyn Fn(TcpStream) -> Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>> + Send + Sync>;

/// A loopback server: accepts connections until dropped, wraps each (TLS
/// or not) and runs the handler on it in its own task. What each handler
/// returns (or the TLS handshake error) arrives on [`next`](Self::next).
pub struct Served<T> {
    pub addr: SocketAddr,
    results: mpsc::UnboundedReceiver<io::Result<T>>,
    accept_loop: JoinHandle<()>,
}

impl<T> Drop for Served<T> {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl<T: Send + 'static> Served<T> {
    /// Plain TCP on 127.0.0.1.
    pub async fn plain<F, Fut>(handler: F) -> Self
    where
        F: Fn(BoxIo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        Self::on(listen().await.0, plain_wrap(), handler)
    }

    /// TLS with `acceptor` on 127.0.0.1.
    #[cfg(feature = "tls")]
    pub async fn tls<F, Fut>(acceptor: silverback::tls::TlsAcceptor, handler: F) -> Self
    where
        F: Fn(BoxIo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        Self::on(listen().await.0, tls_wrap(acceptor), handler)
    }

    /// On `listener`, each connection wrapped by `wrap` (see [`plain_wrap`],
    /// `tls_wrap`).
    pub fn on<F, Fut>(listener: TcpListener, wrap: Wrap, handler: F) -> Self
    where
        F: Fn(BoxIo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let (tx, results) = mpsc::unbounded_channel();
        let handler = Arc::new(handler);
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                tcp.set_nodelay(true).unwrap();
                let (wrap, handler, tx) = (wrap.clone(), handler.clone(), tx.clone());
                tokio::spawn(async move {
                    let result = match wrap(tcp).await {
                        Ok(io) => Ok(handler(io).await),
                        Err(e) => Err(e),
                    };
                    let _ = tx.send(result);
                });
            }
        });
        Self {
            addr,
            results,
            accept_loop,
        }
    }

    /// `SCHEME://HOST:PORT/PATH` on this server; `host` defaults to the
    /// IP address it listens on.
    pub fn url(&self, scheme: &str, host: Option<&str>, path: &str) -> String {
        let host = match host {
            Some(h) => h.to_owned(),
            None if self.addr.is_ipv6() => format!("[{}]", self.addr.ip()),
            None => self.addr.ip().to_string(),
        };
        format!("{scheme}://{host}:{}{path}", self.addr.port())
    }

    /// The outcome of the next connection to end (its handler's result, or
    /// the TLS handshake's error).
    pub async fn next(&mut self) -> io::Result<T> {
        within(self.results.recv())
            .await
            .expect("accept loop still running")
    }

    /// The result of the next connection's handler; panics on a TLS error.
    pub async fn next_ok(&mut self) -> T {
        match self.next().await {
            Ok(t) => t,
            Err(e) => panic!("server-side TLS handshake failed: {e}"),
        }
    }
}

/// No wrapping: plain TCP.
pub fn plain_wrap() -> Wrap {
    Arc::new(|tcp| Box::pin(async move { Ok(Box::new(tcp) as BoxIo) }))
}

/// A TLS handshake with `acceptor`.
#[cfg(feature = "tls")]
pub fn tls_wrap(acceptor: silverback::tls::TlsAcceptor) -> Wrap {
    Arc::new(move |tcp| {
        let acceptor = acceptor.clone();
        Box::pin(async move { Ok(Box::new(acceptor.accept(tcp).await?) as BoxIo) })
    })
}

/// What an [`upgrade_and_echo`] server saw of a connection.
pub struct Session {
    /// The upgrade request head.
    pub request: silverback::proto::http::Request<()>,
    /// The subprotocol chosen.
    pub protocol: Option<String>,
    /// What ended the echo loop.
    pub end: Error,
    /// The connection itself (its transport stays open until dropped).
    pub ws: WebSocket<BoxIo>,
}

/// A handler that reads the request, upgrades it with `upgrader` (a
/// refusal panics the handler task: the client sees the refusal, the test
/// sees no result) and echoes until the connection ends.
pub fn upgrade_and_echo(
    upgrader: Upgrader,
) -> impl Fn(BoxIo) -> Pin<Box<dyn Future<Output = Session> + Send>> + Send + Sync + 'static {
    move |io| {
        let upgrader = upgrader.clone();
        Box::pin(async move {
            let incoming = upgrader.read_request(io).await.expect("request head");
            let request = incoming.request().clone();
            let ws = incoming.upgrade(&upgrader).await.expect("server upgrade");
            let protocol = ws.protocol().map(str::to_owned);
            let (end, ws) = echo(ws).await;
            Session {
                request,
                protocol,
                end,
                ws,
            }
        })
    }
}

// ----- proxies ---------------------------------------------------------------

/// A proxy on 127.0.0.1:0 for the duration of a test. Every request it
/// handled is logged as one line (`CONNECT host:port`, `407 host:port`,
/// `socks5 domain host:port`, ...).
pub struct TestProxy {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    accept_loop: JoinHandle<()>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl TestProxy {
    /// An HTTP proxy for `CONNECT`; with `auth`, a request without the
    /// matching `Proxy-Authorization: Basic` gets 407.
    pub async fn http(auth: Option<(&str, &str)>) -> Self {
        let expected = auth.map(|(u, p)| format!("Basic {}", BASE64.encode(format!("{u}:{p}"))));
        Self::spawn(move |client, log| http_connect(client, expected.clone(), log)).await
    }

    /// A SOCKS5 proxy; with `auth`, only username/password authentication
    /// with these credentials is accepted.
    pub async fn socks5(auth: Option<(&str, &str)>) -> Self {
        let auth = auth.map(|(u, p)| (u.to_owned(), p.to_owned()));
        Self::spawn(move |client, log| socks5(client, auth.clone(), log)).await
    }

    async fn spawn<F, Fut>(serve: F) -> Self
    where
        F: Fn(TcpStream, Arc<Mutex<Vec<String>>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<()>> + Send + 'static,
    {
        let (listener, addr) = listen().await;
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let accept_loop = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                client.set_nodelay(true).unwrap();
                let conn = serve(client, sink.clone());
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Self {
            addr,
            log,
            accept_loop,
        }
    }

    /// `SCHEME://[USER:PASS@]127.0.0.1:PORT`.
    pub fn url(&self, scheme: &str, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(u) => format!("{scheme}://{u}@{}", self.addr),
            None => format!("{scheme}://{}", self.addr),
        }
    }

    /// The requests handled so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// Connects to the target and pipes bytes both ways until both ends are
/// done (an end of stream is passed on as a shutdown).
async fn pipe(mut client: TcpStream, mut upstream: TcpStream) -> io::Result<()> {
    upstream.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

async fn http_connect(
    mut client: TcpStream,
    expected_auth: Option<String>,
    log: Arc<Mutex<Vec<String>>>,
) -> io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 1024];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(&buf[..head_end]).map_err(io::Error::other)?;
    let (method, target) = (req.method.unwrap_or(""), req.path.unwrap_or("").to_owned());
    let reply = |status: &str, extra: &str| {
        format!("HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")
    };
    if method != "CONNECT" {
        log.lock().unwrap().push(format!("405 {method} {target}"));
        client
            .write_all(reply("405 Method Not Allowed", "").as_bytes())
            .await?;
        return client.shutdown().await;
    }
    if let Some(expected) = expected_auth {
        let given = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
            .map(|h| h.value);
        if given != Some(expected.as_bytes()) {
            log.lock().unwrap().push(format!("407 {target}"));
            let resp = reply(
                "407 Proxy Authentication Required",
                "Proxy-Authenticate: Basic realm=\"test\"\r\n",
            );
            client.write_all(resp.as_bytes()).await?;
            return client.shutdown().await;
        }
    }
    let upstream = match TcpStream::connect(target.as_str()).await {
        Ok(s) => s,
        Err(e) => {
            log.lock().unwrap().push(format!("502 {target}: {e}"));
            client
                .write_all(reply("502 Bad Gateway", "").as_bytes())
                .await?;
            return client.shutdown().await;
        }
    };
    log.lock().unwrap().push(format!("CONNECT {target}"));
    client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    let mut upstream = upstream;
    // Bytes the client sent right after its request belong to the tunnel.
    upstream.write_all(&buf[head_end..]).await?;
    pipe(client, upstream).await
}

const SOCKS_VERSION: u8 = 5;
const NO_AUTH: u8 = 0x00;
const USER_PASS: u8 = 0x02;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;

async fn socks5(
    mut client: TcpStream,
    auth: Option<(String, String)>,
    log: Arc<Mutex<Vec<String>>>,
) -> io::Result<()> {
    let record = |line: String| log.lock().unwrap().push(line);
    // Method selection (RFC 1928 §3).
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    if head[0] != SOCKS_VERSION {
        record(format!("bad version {}", head[0]));
        return Ok(());
    }
    let mut methods = vec![0u8; head[1] as usize];
    client.read_exact(&mut methods).await?;
    let wanted = if auth.is_some() { USER_PASS } else { NO_AUTH };
    if !methods.contains(&wanted) {
        record(format!("no acceptable method in {methods:?}"));
        client
            .write_all(&[SOCKS_VERSION, NO_ACCEPTABLE_METHOD])
            .await?;
        return client.shutdown().await;
    }
    client.write_all(&[SOCKS_VERSION, wanted]).await?;
    // Username/password (RFC 1929).
    if let Some((user, pass)) = auth {
        let mut ver_len = [0u8; 2];
        client.read_exact(&mut ver_len).await?;
        let mut uname = vec![0u8; ver_len[1] as usize];
        client.read_exact(&mut uname).await?;
        let mut plen = [0u8; 1];
        client.read_exact(&mut plen).await?;
        let mut passwd = vec![0u8; plen[0] as usize];
        client.read_exact(&mut passwd).await?;
        let ok = ver_len[0] == 1 && uname == user.as_bytes() && passwd == pass.as_bytes();
        client.write_all(&[1, if ok { 0 } else { 1 }]).await?;
        if !ok {
            record(format!(
                "auth failed for {:?}",
                String::from_utf8_lossy(&uname)
            ));
            return client.shutdown().await;
        }
        record(format!("auth ok for {user:?}"));
    }
    // The request (RFC 1928 §4).
    let mut req = [0u8; 4];
    client.read_exact(&mut req).await?;
    let (kind, host) = match req[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            ("ipv4", Ipv4Addr::from(ip).to_string())
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len).await?;
            let mut name = vec![0u8; len[0] as usize];
            client.read_exact(&mut name).await?;
            ("domain", String::from_utf8_lossy(&name).into_owned())
        }
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await?;
            ("ipv6", Ipv6Addr::from(ip).to_string())
        }
        other => {
            record(format!("bad address type {other}"));
            // Address type not supported.
            client
                .write_all(&[SOCKS_VERSION, 8, 0, 1, 0, 0, 0, 0, 0, 0])
                .await?;
            return client.shutdown().await;
        }
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await?;
    let port = u16::from_be_bytes(port);
    if req[0] != SOCKS_VERSION || req[1] != 1 {
        record(format!("unsupported command {}", req[1]));
        // Command not supported.
        client
            .write_all(&[SOCKS_VERSION, 7, 0, 1, 0, 0, 0, 0, 0, 0])
            .await?;
        return client.shutdown().await;
    }
    let upstream = match kind {
        "ipv6" => TcpStream::connect((host.parse::<Ipv6Addr>().unwrap(), port)).await,
        _ => TcpStream::connect((host.as_str(), port)).await,
    };
    let upstream = match upstream {
        Ok(s) => s,
        Err(e) => {
            record(format!("refused {kind} {host}:{port}: {e}"));
            // Connection refused.
            client
                .write_all(&[SOCKS_VERSION, 5, 0, 1, 0, 0, 0, 0, 0, 0])
                .await?;
            return client.shutdown().await;
        }
    };
    record(format!("socks5 {kind} {host}:{port}"));
    let bound = upstream.local_addr()?;
    let mut reply = vec![SOCKS_VERSION, 0, 0];
    match bound {
        SocketAddr::V4(a) => {
            reply.push(1);
            reply.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            reply.push(4);
            reply.extend_from_slice(&a.ip().octets());
        }
    }
    reply.extend_from_slice(&bound.port().to_be_bytes());
    client.write_all(&reply).await?;
    pipe(client, upstream).await
}
