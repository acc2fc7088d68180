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
use tokio::task::JoinHandle;
use tokio::time::{timeout, timeout_at, Instant};

/// Client-side helpers: `silverback connect` runs, interop peer servers,
/// certificates for `serve --tls-cert`.
pub mod chromium;
pub mod client_side;
pub mod redis;

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

/// Parses the `ws://ADDR/PATH` (or `wss://`) URL out of a
/// `listening on ws://ADDR/PATH` line (the server's log, or an interop
/// peer server's stdout, whose URL may have no path: then it is `/`).
pub fn parse_listening_line(line: &str) -> Option<(String, SocketAddr, String)> {
    let url = line
        .split("listening on ")
        .nth(1)?
        .split_whitespace()
        .next()?;
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))?;
    let (addr, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    Some((url.to_owned(), addr.parse().ok()?, path.to_owned()))
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
    /// Log lines not looked at yet (by the startup or
    /// [`wait_for_log`](Self::wait_for_log)).
    lines: mpsc::UnboundedReceiver<String>,
    /// The task that reads stderr; it ends at the end of the stream.
    log_reader: Option<JoinHandle<()>>,
}

/// A spawned `silverback` whose stderr is read line by line in a task (so
/// that it never blocks on a full pipe).
struct Launched {
    child: Child,
    /// Every line so far, colours stripped.
    log: Arc<Mutex<Vec<String>>>,
    /// Each line as it comes.
    lines: mpsc::UnboundedReceiver<String>,
    /// The reading task; it ends at the end of stderr.
    reader: JoinHandle<()>,
}

/// Spawns `silverback ARGS...` with `RUST_LOG` set to `rust_log`, or unset.
fn launch(args: &[&str], rust_log: Option<&str>) -> Launched {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_silverback"));
    cmd.args(args);
    match rust_log {
        Some(filter) => cmd.env("RUST_LOG", filter),
        None => cmd.env_remove("RUST_LOG"),
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning the silverback binary");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, lines) = mpsc::unbounded_channel();
    let stderr = child.stderr.take().expect("piped stderr");
    let sink = log.clone();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = strip_ansi(&line);
            sink.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    Launched {
        child,
        log,
        lines,
        reader,
    }
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
        // The listening line is logged at info: make sure it is shown.
        Self::spawn_logging(args, "info").await
    }

    /// [`spawn`](Self::spawn) with `RUST_LOG=filter` (which must show
    /// info lines of `silverback`, the listening line among them).
    pub async fn spawn_logging(args: &[&str], filter: &str) -> Server {
        let mut full = vec!["serve"];
        full.extend_from_slice(args);
        let Launched {
            mut child,
            log,
            lines: mut rx,
            reader,
        } = launch(&full, Some(filter));
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
                            lines: rx,
                            log_reader: Some(reader),
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

    /// `silverback -q serve --addr 127.0.0.1:PORT EXTRA...`, without
    /// `RUST_LOG`: it logs nothing below warnings, the listening line
    /// included, so the port is picked beforehand and the server is ready
    /// once a connection to it succeeds.
    pub async fn start_quiet(extra: &[&str]) -> Server {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe bind");
            probe.local_addr().unwrap().port()
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let addr_arg = addr.to_string();
        let mut args = vec!["-q", "serve", "--addr", &addr_arg];
        args.extend_from_slice(extra);
        let Launched {
            mut child,
            log,
            lines,
            reader,
        } = launch(&args, None);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        // Readiness: poll until the port accepts (bounded), failing early
        // if the process exits.
        while TcpStream::connect(addr).await.is_err() {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "silverback {args:?} exited before listening ({status}); stderr:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "silverback {args:?} not listening on {addr} within {STARTUP_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Server {
            child,
            ws_url: format!("ws://{addr}/ws"),
            addr,
            path: "/ws".to_owned(),
            log,
            lines,
            log_reader: Some(reader),
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
        self.signal("INT").await;
    }

    /// Sends SIGTERM, as a service manager does.
    pub async fn terminate(&self) {
        self.signal("TERM").await;
    }

    /// Sends `SIG<name>` with `kill -<name>`.
    pub async fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .await
            .expect("running kill");
        assert!(
            status.success(),
            "kill -{name} {} failed: {status}",
            self.pid()
        );
    }

    /// Waits for the process to exit, at most [`EXIT_TIMEOUT`], and for
    /// its log to be read to the end (so [`log`](Self::log) is complete).
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let status = match timeout(EXIT_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.expect("waiting for silverback"),
            Err(_) => panic!(
                "silverback serve did not exit within {EXIT_TIMEOUT:?}; stderr:\n{}",
                self.log()
            ),
        };
        if let Some(reader) = self.log_reader.take() {
            timeout(IO_TIMEOUT, reader)
                .await
                .expect("stderr still open after the server exited")
                .expect("stderr reader");
        }
        status
    }

    /// Waits (at most [`IO_TIMEOUT`]) for a log line that satisfies
    /// `pred`, looking only at lines not seen by an earlier call; returns
    /// it.
    pub async fn wait_for_log(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if pred(&line) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!("no {what} in the log before it ended:\n{}", self.log()),
                Err(_) => panic!(
                    "no {what} in the log within {IO_TIMEOUT:?}:\n{}",
                    self.log()
                ),
            }
        }
    }
}

/// The message of a log line (`TIMESTAMP  INFO message key=value...`, or
/// DEBUG, WARN) is exactly `message` (`closed` is not `closed
/// unexpectedly`).
pub fn is_log_message(line: &str, message: &str) -> bool {
    let Some((_, rest)) = [" INFO ", " DEBUG ", " WARN "]
        .iter()
        .find_map(|level| line.split_once(level))
    else {
        return false;
    };
    match rest.trim_start().strip_prefix(message) {
        Some("") => true,
        Some(fields) => {
            fields.starts_with(' ')
                && fields
                    .split_whitespace()
                    .next()
                    .is_some_and(|f| f.contains('='))
        }
        None => false,
    }
}

/// The log lines with `message` (see [`is_log_message`]).
pub fn log_lines<'a>(log: &'a str, message: &str) -> Vec<&'a str> {
    log.lines().filter(|l| is_log_message(l, message)).collect()
}

/// Waits (at most [`IO_TIMEOUT`]) until `server`'s log holds `n` lines
/// with message `message` (see [`log_lines`]); gives them.
pub async fn wait_for_lines(server: &Server, message: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let log = server.log();
        let lines: Vec<String> = log_lines(&log, message)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} {message:?} lines, expected {n}:\n{log}",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client WebSocket of the tests.
pub type Ws = silverback::WebSocket<silverback::ClientStream>;

/// The next message on `ws` (at most [`IO_TIMEOUT`]).
pub async fn recv(ws: &mut Ws) -> silverback::Message {
    timeout(IO_TIMEOUT, ws.recv())
        .await
        .expect("a message in time")
        .expect("a message")
}

/// The counts of the server's drain report line, `N connections drained
/// in Xs: A closed cleanly, B uncleanly, C forced`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrainReport {
    pub open: usize,
    pub clean: usize,
    pub unclean: usize,
    pub forced: usize,
    pub seconds: f64,
}

impl DrainReport {
    /// The report line in `log`, parsed; panics if there is not exactly one.
    pub fn from_log(log: &str) -> DrainReport {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" connections drained in "))
            .collect();
        assert_eq!(lines.len(), 1, "expected one drain report line in:\n{log}");
        Self::parse(lines[0]).unwrap_or_else(|| panic!("malformed drain report: {}", lines[0]))
    }

    /// Parses a drain report line.
    pub fn parse(line: &str) -> Option<DrainReport> {
        let (head, tail) = line.split_once(" connections drained in ")?;
        let open = head.rsplit(' ').next()?.parse().ok()?;
        let (secs, counts) = tail.split_once("s: ")?;
        let mut n = counts
            .split(", ")
            .map(|part| part.split(' ').next().and_then(|v| v.parse::<usize>().ok()));
        let (clean, unclean, forced) = (n.next()??, n.next()??, n.next()??);
        let expected = format!("{clean} closed cleanly, {unclean} uncleanly, {forced} forced");
        (counts.trim_end() == expected).then_some(DrainReport {
            open,
            clean,
            unclean,
            forced,
            seconds: secs.parse().ok()?,
        })
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

/// A child process whose stdout is read line by line while it runs (for a
/// peer that says when it is ready).
pub struct Running {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

impl Running {
    /// Spawns `cmd` with stdout and stderr piped; an error if it could not
    /// be started (e.g. program not found).
    pub fn spawn(mut cmd: Command) -> std::io::Result<Running> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let (tx, lines) = mpsc::unbounded_channel();
        let out = child.stdout.take().expect("piped stdout");
        let stdout = tokio::spawn(async move {
            let mut all = String::new();
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        let stderr = tokio::spawn(read_all(child.stderr.take().expect("piped stderr")));
        Ok(Running {
            child,
            lines,
            stdout,
            stderr,
        })
    }

    /// Waits (at most `limit`) for a stdout line equal to `line`; `false`
    /// if stdout ended first (see [`finish`](Self::finish) for why).
    pub async fn wait_for_line(&mut self, line: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(l)) if l.trim_end() == line => return true,
                Ok(Some(_)) => {}
                Ok(None) => return false,
                Err(_) => panic!("no {line:?} line on stdout within {limit:?}"),
            }
        }
    }

    /// Waits for the exit (killed, and a panic, after `limit`) and returns
    /// what it printed.
    pub async fn finish(mut self, limit: Duration) -> Finished {
        let status = match timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("waiting for the child"),
            Err(_) => {
                let _ = self.child.start_kill();
                let status = self.child.wait().await;
                panic!(
                    "child did not finish within {limit:?}, killed ({status:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.stdout.await.unwrap_or_default(),
                    self.stderr.await.unwrap_or_default()
                );
            }
        };
        Finished {
            status,
            stdout: self.stdout.await.unwrap_or_default(),
            stderr: self.stderr.await.unwrap_or_default(),
        }
    }
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
