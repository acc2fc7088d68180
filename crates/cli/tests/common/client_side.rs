//! Client-side helpers: `silverback connect` driven through pipes, the
//! interop peer servers (`interop/python_server.py`,
//! `interop/node_server.mjs`) started and found by their listening line,
//! and certificate files made with rcgen for `serve --tls-cert/--tls-key`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::{timeout, timeout_at, Instant};

use super::{parse_listening_line, read_all, repo_root, Running, IO_TIMEOUT, STARTUP_TIMEOUT};

/// Bound on one `silverback connect` run.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
pub const INSTALL_HINT: &str = "run scripts/install-peers.sh";
pub const PY_WEBSOCKETS_VERSION: &str = "15.0.1";
pub const NODE_WS_VERSION: &str = "8.18.3";

// ----- silverback connect ----------------------------------------------------

/// What happens to `silverback connect`'s stdin once the input is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinEnd {
    /// Closed: EOF, so the client closes with 1000.
    Close,
    /// Left open until the process exits (the server ends the session).
    KeepOpen,
}

/// How a `silverback connect` run ended: stdout as bytes (binary messages
/// are written as they are).
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Ran {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last non-empty line of stderr (the end-of-session summary).
    pub fn last_stderr_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }

    pub fn output(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout_text(),
            self.stderr
        )
    }
}

/// Runs `silverback connect ARGS...` with `input` written to its stdin
/// (while its output is read), then stdin closed or kept open; bounded by
/// [`CONNECT_TIMEOUT`] (killed and a panic after it).
pub async fn run_connect(args: &[&str], input: &[u8], end: StdinEnd) -> Ran {
    let mut child = Command::new(env!("CARGO_BIN_EXE_silverback"))
        .arg("connect")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning silverback connect");
    let mut out = child.stdout.take().expect("piped stdout");
    let stdout = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf).await;
        buf
    });
    let stderr = tokio::spawn(read_all(child.stderr.take().expect("piped stderr")));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // Written concurrently with the output being read, so a large input
    // cannot deadlock on full pipes. The handle is returned (kept open)
    // when asked.
    let writer = tokio::spawn(async move {
        // The client may exit before reading everything (e.g. refused):
        // a broken pipe is not the test's concern.
        let _ = stdin.write_all(&input).await;
        let _ = stdin.flush().await;
        match end {
            StdinEnd::Close => None,
            StdinEnd::KeepOpen => Some(stdin),
        }
    });
    let status = match timeout(CONNECT_TIMEOUT, child.wait()).await {
        Ok(status) => status.expect("waiting for silverback connect"),
        Err(_) => {
            let _ = child.start_kill();
            let status = child.wait().await;
            panic!(
                "silverback connect {args:?} did not finish within {CONNECT_TIMEOUT:?}, killed ({status:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout.await.unwrap_or_default()),
                stderr.await.unwrap_or_default()
            );
        }
    };
    drop(writer.await);
    Ran {
        status,
        stdout: timeout(IO_TIMEOUT, stdout)
            .await
            .expect("stdout open after exit")
            .unwrap(),
        stderr: timeout(IO_TIMEOUT, stderr)
            .await
            .expect("stderr open after exit")
            .unwrap(),
    }
}

// ----- interop peer servers -----------------------------------------------------

fn require_file(path: &Path, what: &str) {
    assert!(
        path.is_file(),
        "{what} missing: {} not found; {INSTALL_HINT}",
        path.display()
    );
}

/// The Python interpreter of `.peers/venv`, checked to import the pinned
/// websockets version.
pub async fn python_peer() -> PathBuf {
    let python = repo_root().join(".peers/venv/bin/python");
    require_file(&python, "Python peer (.peers/venv)");
    let mut cmd = Command::new(&python);
    cmd.args(["-c", "import websockets; print(websockets.__version__)"]);
    let version = super::run_bounded(cmd, STARTUP_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", python.display()));
    assert!(
        version.status.success() && version.stdout.trim() == PY_WEBSOCKETS_VERSION,
        "Python websockets {PY_WEBSOCKETS_VERSION} not importable from {}; {INSTALL_HINT}\n{}",
        python.display(),
        version.output()
    );
    python
}

/// `node`, once `.peers/node` is checked to hold the pinned ws version.
pub fn node_peer() -> PathBuf {
    let ws_package = repo_root().join(".peers/node/node_modules/ws/package.json");
    require_file(&ws_package, "Node peer (.peers/node)");
    let manifest = std::fs::read_to_string(&ws_package).expect("reading ws/package.json");
    assert!(
        manifest.contains(&format!("\"version\": \"{NODE_WS_VERSION}\"")),
        "{} is not ws {NODE_WS_VERSION}; {INSTALL_HINT}",
        ws_package.display()
    );
    PathBuf::from("node")
}

/// An interop server script running (killed when dropped), found by the
/// `listening on ws://ADDR` line it prints on stdout.
pub struct PeerServer {
    running: Running,
    /// `ws://127.0.0.1:PORT`, without path.
    pub url: String,
    pub addr: SocketAddr,
    pub what: String,
}

impl PeerServer {
    /// Starts `program interop/SCRIPT` in the checkout; a program that
    /// cannot be started is a missing peer.
    pub async fn start(program: &Path, script: &str, what: &str) -> PeerServer {
        let script = repo_root().join("interop").join(script);
        require_file(&script, "interop server");
        let mut cmd = Command::new(program);
        cmd.arg(&script).current_dir(repo_root());
        let mut running = Running::spawn(cmd).unwrap_or_else(|e| {
            panic!(
                "{what}: cannot run {}: {e}; {INSTALL_HINT}",
                program.display()
            )
        });
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match timeout_at(deadline, running.lines.recv()).await {
                Ok(Some(line)) => {
                    if let Some((_, addr, _)) = parse_listening_line(&line) {
                        let url = format!("ws://{addr}");
                        return PeerServer {
                            running,
                            url,
                            addr,
                            what: what.to_owned(),
                        };
                    }
                }
                Ok(None) => {
                    let finished = running.finish(IO_TIMEOUT).await;
                    panic!(
                        "{what} server exited before listening; {INSTALL_HINT}?\n{}",
                        finished.output()
                    );
                }
                Err(_) => {
                    panic!("no listening line from the {what} server within {STARTUP_TIMEOUT:?}")
                }
            }
        }
    }

    /// A URL on this server with `path`.
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Waits (at most [`IO_TIMEOUT`]) for the next stdout line starting
    /// with `prefix`; returns it.
    pub async fn line_starting_with(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match timeout_at(deadline, self.running.lines.recv()).await {
                Ok(Some(line)) if line.starts_with(prefix) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!(
                    "the {} server's stdout ended before a {prefix:?} line",
                    self.what
                ),
                Err(_) => panic!(
                    "no {prefix:?} line from the {} server within {IO_TIMEOUT:?}",
                    self.what
                ),
            }
        }
    }
}

// ----- certificates ---------------------------------------------------------------

/// A directory under the system's temporary directory, removed when
/// dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "silverback-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// PEM files made at test time: a CA, and a server certificate it signed
/// for `localhost`, 127.0.0.1 and ::1 with its key.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: TempDir,
}

impl TlsFiles {
    pub fn generate() -> TlsFiles {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "silverback CLI test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();

        let dir = TempDir::new("tls");
        let write = |name: &str, pem: String| {
            let path = dir.0.join(name);
            std::fs::write(&path, pem).expect("writing a PEM file");
            path
        };
        TlsFiles {
            ca: write("ca.pem", ca_cert.pem()),
            cert: write("cert.pem", cert.pem()),
            key: write("key.pem", key.serialize_pem()),
            _dir: dir,
        }
    }
}
