#![allow(missing_docs)]
//! permessage-deflate (RFC 7692) interop over real sockets, compression ON:
//!
//! - third-party clients (Python `websockets`, Node `ws`) against the real
//!   `silverback serve` (which accepts compression by default), in both
//!   `--compression-mode dedicated` and `shared`: the peer script prints
//!   the negotiated extension (checked here), echoes text and binary of 0,
//!   125, 126, 65535, 65536 and 1 MiB bytes, compressible and random, and a
//!   fragmented compressed message; the server's log must show the
//!   extension and far fewer bytes on the wire than were sent;
//! - silverback's `Dialer` with `.compression(..)` against third-party
//!   servers (`interop/python_deflate_server.py`,
//!   `interop/node_deflate_server.mjs`), with several offers (defaults,
//!   client_no_context_takeover, server_no_context_takeover, window bits,
//!   the shared memory mode): the agreed parameters are checked, the same
//!   messages echoed, and the wire byte counts show both sides compressed.
//!
//! The peers come from `scripts/install-peers.sh`; a missing peer fails the
//! test (never skipped).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{repo_root, run_bounded, Finished, Server};
use silverback::{
    ClientStream, CloseCode, Compression, DeflateConfig, DeflateParams, Dialer, Message, WebSocket,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};

const INSTALL_HINT: &str = "run scripts/install-peers.sh";
const PY_WEBSOCKETS_VERSION: &str = "15.0.1";
const NODE_WS_VERSION: &str = "8.18.3";
/// Bound on one peer client run (its own steps are bounded too).
const PEER_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on one step (connect, send, echo, close) of our client.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const SIZES: [usize; 6] = [0, 125, 126, 65535, 65536, 1 << 20];

// ----- peers ----------------------------------------------------------------

fn require_file(path: &Path, what: &str) {
    assert!(
        path.is_file(),
        "{what} missing: {} not found; {INSTALL_HINT}",
        path.display()
    );
}

/// `.peers/venv/bin/python`, checked to import the pinned websockets.
async fn python() -> PathBuf {
    let python = repo_root().join(".peers/venv/bin/python");
    require_file(&python, "Python peer (.peers/venv)");
    let mut cmd = Command::new(&python);
    cmd.args(["-c", "import websockets; print(websockets.__version__)"]);
    let v = run_bounded(cmd, PEER_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", python.display()));
    assert!(
        v.status.success() && v.stdout.trim() == PY_WEBSOCKETS_VERSION,
        "Python websockets {PY_WEBSOCKETS_VERSION} not importable from {}; {INSTALL_HINT}\n{}",
        python.display(),
        v.output()
    );
    python
}

/// `node`, once `.peers/node` is checked to hold the pinned ws.
fn node() -> PathBuf {
    let manifest = repo_root().join(".peers/node/node_modules/ws/package.json");
    require_file(&manifest, "Node peer (.peers/node)");
    let text = std::fs::read_to_string(&manifest).expect("reading ws/package.json");
    assert!(
        text.contains(&format!("\"version\": \"{NODE_WS_VERSION}\"")),
        "{} is not ws {NODE_WS_VERSION}; {INSTALL_HINT}",
        manifest.display()
    );
    PathBuf::from("node")
}

/// The value after `prefix` on the first line of `out` that starts with it.
fn line_after<'a>(out: &'a str, prefix: &str) -> Option<&'a str> {
    out.lines().find_map(|l| l.strip_prefix(prefix))
}

/// `name=value` in a log line (value up to the next space, unquoted).
fn log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[start..];
    Some(rest.split(' ').next()?.trim_matches('"'))
}

/// Waits (bounded) for the server's log line whose message is `message`.
async fn server_log_line(server: &Server, message: &str) -> String {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let log = server.log();
        if let Some(line) = log.lines().find(|l| {
            l.split_once(" INFO ")
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(&format!("{message} ")))
        }) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no {message:?} line in the server log within {STEP_TIMEOUT:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ----- (a) third-party clients against `silverback serve` ---------------------

async fn client_against_serve(program: &Path, script: &str, what: &str, mode: &str) {
    let script = repo_root().join("interop").join(script);
    require_file(&script, "interop client");
    let mut server = Server::start(&["--compression-mode", mode]).await;
    let url = server.ws_url.clone();
    let mut cmd = Command::new(program);
    cmd.arg(&script).arg(&url).current_dir(repo_root());
    let finished: Finished = run_bounded(cmd, PEER_TIMEOUT).await.unwrap_or_else(|e| {
        panic!(
            "{what}: cannot run {}: {e}; {INSTALL_HINT}",
            program.display()
        )
    });
    let context = || {
        format!(
            "{what} ({mode})\n{}\n--- server log ---\n{}",
            finished.output(),
            server.log()
        )
    };
    assert!(finished.status.success(), "peer failed: {}", context());
    assert!(
        finished.stdout.contains("all checks passed"),
        "no success line: {}",
        context()
    );

    // What the peer saw agreed.
    let negotiated = line_after(&finished.stdout, "negotiated: ")
        .unwrap_or_else(|| panic!("no `negotiated:` line: {}", context()));
    assert!(
        negotiated.starts_with("permessage-deflate"),
        "negotiated {negotiated:?}: {}",
        context()
    );
    let no_takeover = mode == "shared";
    for param in ["server_no_context_takeover", "client_no_context_takeover"] {
        assert_eq!(
            negotiated.contains(param),
            no_takeover,
            "{param} in {negotiated:?} ({mode} mode): {}",
            context()
        );
    }
    let extension = line_after(&finished.stdout, "extension: ").unwrap_or_default();
    assert!(
        extension.contains("permessage-deflate") || extension.contains("PerMessageDeflate"),
        "extension line {extension:?}: {}",
        context()
    );

    // The server agreed too, and compressed both ways: far fewer bytes
    // than the payloads crossed the wire (half of them are random).
    let open = server_log_line(&server, "open").await;
    assert!(
        open.contains("compression=") && open.contains("permessage-deflate"),
        "open line without the extension: {open}"
    );
    assert_eq!(
        open.contains("server_no_context_takeover"),
        no_takeover,
        "{open}"
    );
    let sent: u64 = line_after(&finished.stdout, "sent: ")
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `sent:` line: {}", context()));
    let closed = server_log_line(&server, "closed").await;
    let bytes = |name| -> u64 {
        log_field(&closed, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {closed}"))
    };
    let (bytes_in, bytes_out) = (bytes("bytes_in"), bytes("bytes_out"));
    println!(
        "{what} ({mode}): {sent} payload bytes sent, {bytes_in} bytes in, {bytes_out} bytes out"
    );
    assert!(
        bytes_in * 10 < sent * 6 && bytes_out * 10 < sent * 6,
        "{what} ({mode}): {sent} payload bytes each way, but {bytes_in} bytes in and \
         {bytes_out} out on the wire: not compressed?\n{closed}"
    );
    assert!(closed.contains("code=1000"), "{closed}");
    server.assert_running();
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[tokio::test]
async fn python_client_dedicated() {
    let py = python().await;
    client_against_serve(
        &py,
        "python_deflate_client.py",
        "python websockets",
        "dedicated",
    )
    .await;
}

#[tokio::test]
async fn python_client_shared() {
    let py = python().await;
    client_against_serve(
        &py,
        "python_deflate_client.py",
        "python websockets",
        "shared",
    )
    .await;
}

#[tokio::test]
async fn node_client_dedicated() {
    client_against_serve(&node(), "node_deflate_client.mjs", "node ws", "dedicated").await;
}

#[tokio::test]
async fn node_client_shared() {
    client_against_serve(&node(), "node_deflate_client.mjs", "node ws", "shared").await;
}

// ----- (b) our Dialer against third-party servers ------------------------------

/// A peer server script, killed when dropped; its stdout read line by line.
struct PeerServer {
    _child: Child,
    url: String,
    lines: mpsc::UnboundedReceiver<String>,
    what: String,
}

impl PeerServer {
    async fn start(program: &Path, script: &str, what: &str) -> PeerServer {
        let script = repo_root().join("interop").join(script);
        require_file(&script, "interop server");
        let mut child = Command::new(program)
            .arg(&script)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{what}: cannot run {}: {e}; {INSTALL_HINT}",
                    program.display()
                )
            });
        let (tx, mut lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            match timeout_at(deadline, lines.recv()).await {
                Ok(Some(line)) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        return PeerServer {
                            _child: child,
                            url: url.trim().to_owned(),
                            lines,
                            what: what.to_owned(),
                        };
                    }
                }
                Ok(None) => panic!("{what} server exited before listening; {INSTALL_HINT}?"),
                Err(_) => {
                    panic!("no listening line from the {what} server within {STEP_TIMEOUT:?}")
                }
            }
        }
    }

    /// The next stdout line starting with `prefix` (bounded).
    async fn line_starting_with(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            match timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line.starts_with(prefix) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!(
                    "{} server's stdout ended before a {prefix:?} line",
                    self.what
                ),
                Err(_) => panic!("no {prefix:?} line from the {} server", self.what),
            }
        }
    }
}

async fn step<F: std::future::Future>(what: &str, f: F) -> F::Output {
    timeout(STEP_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {STEP_TIMEOUT:?}"))
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Highly compressible ASCII, exactly `n` bytes.
fn json_like(n: usize) -> String {
    let mut s = String::with_capacity(n + 80);
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"item {}\",\"tags\":[\"a\",\"b\"],\"ok\":true}},",
            i % 97
        ));
        i += 1;
    }
    s.truncate(n);
    s
}

/// The messages echoed for size `n`: compressible and random, text and
/// binary.
fn payloads(n: usize, seed: u64) -> Vec<(&'static str, Message)> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let random_text: String = random_bytes(n, seed)
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    vec![
        ("compressible text", Message::text(json_like(n))),
        ("random text", Message::text(random_text)),
        (
            "compressible binary",
            Message::binary(json_like(n).into_bytes()),
        ),
        ("random binary", Message::binary(random_bytes(n, seed + 1))),
    ]
}

/// Echoes every payload (and two per-message overrides); returns the
/// payload bytes sent.
async fn echo_all(ws: &mut WebSocket<ClientStream>, what: &str) -> u64 {
    let mut sent = 0u64;
    for (i, n) in SIZES.into_iter().enumerate() {
        for (kind, msg) in payloads(n, 10 * i as u64 + 1) {
            step("send", ws.send(msg.clone()))
                .await
                .unwrap_or_else(|e| panic!("{what}: sending {kind} of {n} bytes: {e}"));
            let got = step("echo", ws.recv())
                .await
                .unwrap_or_else(|e| panic!("{what}: echo of {kind} of {n} bytes: {e}"));
            assert!(got == msg, "{what}: {kind} echo of {n} bytes differs");
            sent += n as u64;
        }
    }
    // A small message compressed on request, a large one sent as is; an
    // empty message compressed on request in the middle of the stream
    // (with context takeover zlib emits nothing for it: the payload must
    // still be one 0x00 byte, or the peer's inflater breaks on the next
    // message).
    for (msg, compression) in [
        (Message::text(""), Compression::Always),
        (Message::binary(Vec::new()), Compression::Always),
        (
            Message::text("{\"small\":\"compressed on request\"}"),
            Compression::Always,
        ),
        (
            Message::binary(json_like(50_000).into_bytes()),
            Compression::Never,
        ),
    ] {
        step("send", ws.send_with(msg.clone(), compression))
            .await
            .unwrap_or_else(|e| panic!("{what}: send_with({compression:?}): {e}"));
        let got = step("echo", ws.recv()).await.unwrap();
        assert!(got == msg, "{what}: echo after send_with({compression:?})");
        sent += msg.len() as u64;
    }
    sent
}

/// Our offers, with what the agreed parameters must then hold (given the
/// server's own defaults in `server_bits`: its (server, client) windows).
fn variants() -> Vec<(&'static str, DeflateConfig)> {
    vec![
        ("defaults", DeflateConfig::default()),
        (
            "client_no_context_takeover",
            DeflateConfig {
                client_no_context_takeover: true,
                ..DeflateConfig::default()
            },
        ),
        (
            "server_no_context_takeover",
            DeflateConfig {
                server_no_context_takeover: true,
                ..DeflateConfig::default()
            },
        ),
        (
            "server_max_window_bits=10, client_max_window_bits=11",
            DeflateConfig {
                server_max_window_bits: 10,
                client_max_window_bits: 11,
                ..DeflateConfig::default()
            },
        ),
        ("shared memory mode", DeflateConfig::shared()),
    ]
}

fn check_params(
    what: &str,
    cfg: &DeflateConfig,
    p: &DeflateParams,
    server_defaults: (u8, u8),
    header: &str,
) {
    assert!(header.starts_with("permessage-deflate"), "{what}: {header}");
    // Context takeover: off where we asked for it off.
    assert_eq!(
        p.client_no_context_takeover, cfg.client_no_context_takeover,
        "{what}: {p:?}"
    );
    assert_eq!(
        p.server_no_context_takeover, cfg.server_no_context_takeover,
        "{what}: {p:?}"
    );
    if cfg.server_no_context_takeover {
        assert!(
            header.contains("server_no_context_takeover"),
            "{what}: {header}"
        );
    }
    // Windows: the smaller of what we offered and the server's default.
    let (server_bits, client_bits) = server_defaults;
    assert_eq!(
        p.server_max_window_bits,
        cfg.server_max_window_bits.min(server_bits),
        "{what}: {p:?}"
    );
    assert_eq!(
        p.client_max_window_bits,
        cfg.client_max_window_bits.min(client_bits),
        "{what}: {p:?}"
    );
}

async fn dialer_against(mut server: PeerServer, server_defaults: (u8, u8)) {
    let peer = server.what.clone();
    let url = server.url.clone();
    for (variant, cfg) in variants() {
        let what = format!("{peer}, {variant}");
        let dialer = Dialer::new().no_proxy().compression(cfg);
        let (mut ws, resp) = step("connect", dialer.connect(&url))
            .await
            .unwrap_or_else(|e| panic!("{what}: connect: {e}"));
        let header = resp
            .headers()
            .get("sec-websocket-extensions")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let params = *ws
            .compression()
            .unwrap_or_else(|| panic!("{what}: no compression agreed; response {header:?}"));
        println!("{what}: response {header:?}, agreed {params}");
        check_params(&what, &cfg, &params, server_defaults, &header);
        let seen = server.line_starting_with("connection: negotiated ").await;
        assert_eq!(
            seen,
            format!("connection: negotiated {header}"),
            "{what}: the server's own view"
        );

        let sent = echo_all(&mut ws, &what).await;
        let stats = ws.stats();
        println!(
            "{what}: {sent} payload bytes each way, {} bytes out, {} bytes in",
            stats.bytes_out, stats.bytes_in
        );
        assert!(
            stats.bytes_out * 10 < sent * 6,
            "{what}: we sent {} bytes for {sent} payload bytes: not compressed?",
            stats.bytes_out
        );
        assert!(
            stats.bytes_in * 10 < sent * 6,
            "{what}: we received {} bytes for {sent} payload bytes: the server did not compress?",
            stats.bytes_in
        );
        step("close", ws.close(CloseCode::Normal, "done"))
            .await
            .unwrap_or_else(|e| panic!("{what}: close: {e}"));
    }
}

#[tokio::test]
async fn dialer_against_python_server() {
    let py = python().await;
    let server = PeerServer::start(&py, "python_deflate_server.py", "python websockets").await;
    // websockets' server defaults: 12-bit windows both ways.
    dialer_against(server, (12, 12)).await;
}

#[tokio::test]
async fn dialer_against_node_server() {
    let server = PeerServer::start(&node(), "node_deflate_server.mjs", "node ws").await;
    // ws takes the windows offered.
    dialer_against(server, (15, 15)).await;
}
