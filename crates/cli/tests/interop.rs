#![allow(missing_docs)]
//! Interop: third-party WebSocket clients (Python `websockets`, Node `ws`)
//! against the real `silverback serve` binary. The peers are installed in
//! the checkout by `scripts/install-peers.sh`; a missing peer fails the test
//! (it is never skipped).

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use common::{repo_root, run_bounded, Finished, Server};
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

#[tokio::test]
async fn python_websockets_client() {
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
    interop(
        &python,
        &root.join("interop/python_client.py"),
        "python websockets",
    )
    .await;
}

#[tokio::test]
async fn node_ws_client() {
    let root = repo_root();
    let ws_package = root.join(".peers/node/node_modules/ws/package.json");
    require_file(&ws_package, "Node peer (.peers/node)");
    let manifest = std::fs::read_to_string(&ws_package).expect("reading ws/package.json");
    assert!(
        manifest.contains(&format!("\"version\": \"{NODE_WS_VERSION}\"")),
        "{} is not ws {NODE_WS_VERSION}; {INSTALL_HINT}",
        ws_package.display()
    );
    interop(
        Path::new("node"),
        &root.join("interop/node_client.mjs"),
        "node ws",
    )
    .await;
}
