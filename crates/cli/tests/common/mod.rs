//! Helpers shared by the CLI integration tests: the `silverback serve`
//! process guard, a bounded child-process runner, and a raw HTTP/WebSocket
//! client for checks below the library's own client.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};

/// How long the server may take to print its listening line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on any single network exchange of a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take to exit after SIGINT.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The root of the checkout (where `interop/`, `scripts/` and `.peers/` are).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Removes ANSI escape sequences (tracing colours its output by default,
/// even into a pipe).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses the `ws://ADDR/PATH` URL out of the server's
/// `listening on ws://ADDR/PATH` log line.
pub fn parse_listening_line(line: &str) -> Option<(String, SocketAddr, String)> {
    let url = line
        .split("listening on ")
        .nth(1)?
        .split_whitespace()
        .next()?;
    let rest = url.strip_prefix("ws://")?;
    let slash = rest.find('/')?;
    let addr = rest[..slash].parse().ok()?;
    Some((url.to_owned(), addr, rest[slash..].to_owned()))
}

/// A running `silverback serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// The URL of the WebSocket endpoint, from the listening line.
    pub ws_url: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The WebSocket path.
    pub path: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// `silverback serve --addr 127.0.0.1:0 EXTRA...`.
    pub async fn start(extra: &[&str]) -> Server {
        let mut args = vec!["--addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::spawn(&args).await
    }

    /// `silverback serve ARGS...`; returns once the listening line was
    /// printed (fails after [`STARTUP_TIMEOUT`] or if the process exits).
    pub async fn spawn(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_silverback"))
            .arg("serve")
            .args(args)
            // The listening line is logged at info: make sure it is shown.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning the silverback binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        // Keeps draining stderr for the server's whole life (so that it
        // never blocks on a full pipe) and records it for diagnostics.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = strip_ansi(&line);
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => {
                    if let Some((ws_url, addr, path)) = parse_listening_line(&line) {
                        return Server {
                            child,
                            ws_url,
                            addr,
                            path,
                            log,
                        };
                    }
                }
                Ok(None) => {
                    let status = timeout(EXIT_TIMEOUT, child.wait()).await;
                    panic!(
                        "silverback serve {args:?} exited before listening ({status:?}); stderr:\n{}",
                        log.lock().unwrap().join("\n")
                    );
                }
                Err(_) => panic!(
                    "no `listening on ws://...` line from silverback serve {args:?} within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                    log.lock().unwrap().join("\n")
                ),
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("server still running")
    }

    /// What the server logged so far (colours stripped).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `http://ADDR/`.
    pub fn http_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `ws://` URL on this server with another path.
    pub fn ws_url_for(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Panics (with the log) if the server has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "silverback serve exited ({status}); stderr:\n{}",
                self.log()
            );
        }
    }

    /// Sends SIGINT, as Ctrl-C does.
    pub async fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .await
            .expect("running kill");
        assert!(
            status.success(),
            "kill -INT {} failed: {status}",
            self.pid()
        );
    }

    /// Waits for the process to exit, at most [`EXIT_TIMEOUT`].
    pub async fn wait_exit(&mut self) -> ExitStatus {
        match timeout(EXIT_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.expect("waiting for silverback"),
            Err(_) => panic!(
                "silverback serve did not exit within {EXIT_TIMEOUT:?}; stderr:\n{}",
                self.log()
            ),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL if still running (kill_on_drop would too; be explicit).
        // Tokio reaps the process in the background.
        let _ = self.child.start_kill();
    }
}

/// What a child process printed, and how it ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn output(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

async fn read_all(mut r: impl AsyncRead + Unpin) -> String {
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs `cmd` to completion, capturing its output; panics (with what it
/// printed) if it is still running after `limit`, once it is killed. An
/// error if it could not be started (e.g. program not found).
pub async fn run_bounded(mut cmd: Command, limit: Duration) -> std::io::Result<Finished> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = tokio::spawn(read_all(child.stdout.take().expect("piped stdout")));
    let stderr = tokio::spawn(read_all(child.stderr.take().expect("piped stderr")));
    let status = match timeout(limit, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            child.start_kill()?;
            let status = child.wait().await?;
            let stdout = stdout.await.unwrap_or_default();
            let stderr = stderr.await.unwrap_or_default();
            panic!(
                "{cmd:?} did not finish within {limit:?}, killed ({status})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            );
        }
    };
    Ok(Finished {
        status,
        stdout: stdout.await.unwrap_or_default(),
        stderr: stderr.await.unwrap_or_default(),
    })
}

// ----- raw HTTP / WebSocket client ------------------------------------------

/// The RFC 6455 §1.3 example key and its accept value.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A WebSocket upgrade request for `path` with the sample key, `Host:
/// host`, and `extra` header lines (each without CRLF).
pub fn upgrade_request(method: &str, path: &str, host: &str, extra: &[&str]) -> String {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {SAMPLE_KEY}\r\n"
    );
    let has_version = extra
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("sec-websocket-version:"));
    if !has_version {
        req.push_str("Sec-WebSocket-Version: 13\r\n");
    }
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req
}

/// A plain request without a body.
pub fn plain_request(method: &str, path: &str, host: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// Sends `request` on a new connection to `addr` and reads the response
/// head; for a non-101 response also the body (by `Content-Length`, else to
/// the end of the stream). Returns the connection and the bytes read past
/// the head for a 101.
pub async fn http_exchange(addr: SocketAddr, request: &str) -> (HttpResponse, TcpStream, Vec<u8>) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .expect("connecting to the server");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("writing the request");
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(buf.len() < 64 * 1024, "response head too large");
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("reading the response");
            assert!(
                n > 0,
                "connection closed before the response head was complete; got {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&buf[..head_end]).expect("response head is UTF-8");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(
            parts.next(),
            Some("HTTP/1.1"),
            "status line {status_line:?}"
        );
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad header line {l:?}"));
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut rest = buf[head_end..].to_vec();
        let mut resp = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if status != 101 {
            match resp
                .header("content-length")
                .map(|v| v.parse::<usize>().expect("content-length"))
            {
                Some(len) => {
                    while rest.len() < len {
                        let mut chunk = [0u8; 4096];
                        let n = stream.read(&mut chunk).await.expect("reading the body");
                        assert!(n > 0, "connection closed before the end of the body");
                        rest.extend_from_slice(&chunk[..n]);
                    }
                    assert_eq!(rest.len(), len, "bytes past the announced body");
                }
                None => {
                    stream
                        .read_to_end(&mut rest)
                        .await
                        .expect("reading the body");
                }
            }
            resp.body = std::mem::take(&mut rest);
        }
        (resp, stream, rest)
    };
    timeout(IO_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no complete response within {IO_TIMEOUT:?} to {request:?}"))
}

/// A client frame: FIN set, masked with `mask`.
pub fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A frame as read from the server.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Reads one server frame (which must be unmasked), with `pending` holding
/// bytes already read from the stream.
pub async fn read_frame(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Frame {
    async fn fill(stream: &mut TcpStream, pending: &mut Vec<u8>, n: usize) {
        while pending.len() < n {
            let mut chunk = [0u8; 4096];
            let got = stream.read(&mut chunk).await.expect("reading a frame");
            assert!(got > 0, "connection closed in the middle of a frame");
            pending.extend_from_slice(&chunk[..got]);
        }
    }
    let read = async {
        fill(stream, pending, 2).await;
        let (b0, b1) = (pending[0], pending[1]);
        assert_eq!(b0 & 0x70, 0, "RSV bits set by the server");
        assert_eq!(b1 & 0x80, 0, "server frames must not be masked");
        let (len, header) = match b1 & 0x7f {
            126 => {
                fill(stream, pending, 4).await;
                (u16::from_be_bytes([pending[2], pending[3]]) as usize, 4)
            }
            127 => {
                fill(stream, pending, 10).await;
                let len = u64::from_be_bytes(pending[2..10].try_into().unwrap());
                (usize::try_from(len).expect("frame length"), 10)
            }
            n => (n as usize, 2),
        };
        fill(stream, pending, header + len).await;
        let payload = pending[header..header + len].to_vec();
        pending.drain(..header + len);
        Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0f,
            payload,
        }
    };
    timeout(IO_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| panic!("no frame from the server within {IO_TIMEOUT:?}"))
}
