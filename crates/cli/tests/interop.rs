#![allow(missing_docs)]
//! Interop: third-party WebSocket clients (Python `websockets`, Node `ws`)
//! against the real `silverback serve` binary. The peers are installed in
//! the checkout by `scripts/install-peers.sh`; a missing peer fails the test
//! (it is never skipped). Besides the echo and close checks, each peer
//! checks it is closed with 1001 when the server gets SIGTERM.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use common::{repo_root, run_bounded, DrainReport, Finished, Running, Server};
use tokio::process::Command;

/// Bound on one peer run (the clients bound each of their steps too).
const PEER_TIMEOUT: Duration = Duration::from_secs(60);
const INSTALL_HINT: &str = "run scripts/install-peers.sh";
const PY_WEBSOCKETS_VERSION: &str = "15.0.1";
const NODE_WS_VERSION: &str = "8.18.3";

fn require_file(path: &Path, what: &str) {
    assert!(
        path.is_file(),
        "{what} missing: {} not found; {INSTALL_HINT}",
        path.display()
    );
}

/// Runs a peer: a program that could not be started is a missing peer.
async fn run_peer(program: &Path, args: &[&OsStr], what: &str) -> Finished {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(repo_root());
    match run_bounded(cmd, PEER_TIMEOUT).await {
        Ok(f) => f,
        Err(e) => panic!(
            "{what}: cannot run {}: {e}; {INSTALL_HINT}",
            program.display()
        ),
    }
}

/// Runs a client script against a fresh server and checks it succeeded and
/// the server survived.
async fn interop(program: &Path, script: &Path, what: &str) {
    require_file(script, "interop client");
    let mut server = Server::start(&["--path", "/ws"]).await;
    let url = server.ws_url.clone();
    let finished = run_peer(program, &[script.as_os_str(), url.as_ref()], what).await;
    assert!(
        finished.status.success(),
        "{what} client failed against {url}\n{}\n--- server stderr ---\n{}",
        finished.output(),
        server.log()
    );
    assert!(
        finished.stdout.contains("all checks passed"),
        "{what} client exited 0 without its success line\n{}",
        finished.output()
    );
    server.assert_running();
    assert!(
        !server.log().contains("panicked"),
        "server panicked:\n{}",
        server.log()
    );
}

/// Runs a shutdown script (it prints `ready` once its connection is
/// tracked, then expects the server's 1001) against a fresh server sent
/// `signal`; checks the peer, the exit status and the drain report.
async fn interop_shutdown(program: &Path, script: &Path, what: &str, signal: &str) {
    require_file(script, "interop shutdown client");
    let mut server = Server::start(&["--shutdown-timeout", "5"]).await;
    let url = server.ws_url.clone();
    let mut cmd = Command::new(program);
    cmd.arg(script).arg(&url).current_dir(repo_root());
    let mut peer = Running::spawn(cmd).unwrap_or_else(|e| {
        panic!(
            "{what}: cannot run {}: {e}; {INSTALL_HINT}",
            program.display()
        )
    });
    if !peer.wait_for_line("ready", PEER_TIMEOUT).await {
        let finished = peer.finish(PEER_TIMEOUT).await;
        panic!(
            "{what} client ended before it was ready\n{}\n--- server stderr ---\n{}",
            finished.output(),
            server.log()
        );
    }
    server.signal(signal).await;
    let finished = peer.finish(PEER_TIMEOUT).await;
    let status = server.wait_exit().await;
    assert!(
        finished.status.success() && finished.stdout.contains("all checks passed"),
        "{what} client failed on SIG{signal}\n{}\n--- server stderr ---\n{}",
        finished.output(),
        server.log()
    );
    assert!(
        status.success(),
        "server exit on SIG{signal}: {status}\n{}",
        server.log()
    );
    let report = DrainReport::from_log(&server.log());
    assert_eq!(
        (report.open, report.clean, report.unclean, report.forced),
        (1, 1, 0, 0),
        "{what}: {report:?}"
    );
}

/// The Python peer's interpreter, checked to hold the pinned websockets.
async fn python_peer() -> std::path::PathBuf {
    let root = repo_root();
    let python = root.join(".peers/venv/bin/python");
    require_file(&python, "Python peer (.peers/venv)");
    // The venv exists: check it holds the websockets version the client
    // is written against.
    let version = run_peer(
        &python,
        &[
            "-c".as_ref(),
            "import websockets; print(websockets.__version__)".as_ref(),
        ],
        "python websockets",
    )
    .await;
    assert!(
        version.status.success() && version.stdout.trim() == PY_WEBSOCKETS_VERSION,
        "Python websockets {PY_WEBSOCKETS_VERSION} not importable from {}; {INSTALL_HINT}\n{}",
        python.display(),
        version.output()
    );
    python
}

/// Checks the Node peer holds the pinned ws; returns the `node` program.
fn node_peer() -> &'static Path {
    let root = repo_root();
    let ws_package = root.join(".peers/node/node_modules/ws/package.json");
    require_file(&ws_package, "Node peer (.peers/node)");
    let manifest = std::fs::read_to_string(&ws_package).expect("reading ws/package.json");
    assert!(
        manifest.contains(&format!("\"version\": \"{NODE_WS_VERSION}\"")),
        "{} is not ws {NODE_WS_VERSION}; {INSTALL_HINT}",
        ws_package.display()
    );
    Path::new("node")
}

#[tokio::test]
async fn python_websockets_client() {
    let python = python_peer().await;
    let script = repo_root().join("interop/python_client.py");
    interop(&python, &script, "python websockets").await;
}

#[tokio::test]
async fn node_ws_client() {
    let script = repo_root().join("interop/node_client.mjs");
    interop(node_peer(), &script, "node ws").await;
}

/// `silverback serve` gets SIGTERM while a Python websockets client is
/// connected: the client sees the Close 1001 "server shutting down",
/// answers it, and the server reports one clean close and exits 0.
#[tokio::test]
async fn python_websockets_client_sees_1001_on_sigterm() {
    let python = python_peer().await;
    let script = repo_root().join("interop/python_shutdown.py");
    interop_shutdown(&python, &script, "python websockets", "TERM").await;
}

/// The same with a Node ws client.
#[tokio::test]
async fn node_ws_client_sees_1001_on_sigterm() {
    let script = repo_root().join("interop/node_shutdown.mjs");
    interop_shutdown(node_peer(), &script, "node ws", "TERM").await;
}
