//! A real `redis-server` for the Redis backplane tests (Debian's package,
//! installed by `scripts/install-peers.sh`): started on a free port in a
//! directory of its own, stopped by PID (SIGKILL) on drop.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// `redis-server`, found on the PATH or in /usr/bin.
fn program() -> String {
    for p in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] {
        if std::path::Path::new(p).exists() {
            return p.to_owned();
        }
    }
    panic!("redis-server not found (Debian package redis-server): run scripts/install-peers.sh");
}

/// A `redis-server` child process.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    aof: bool,
}

impl RedisServer {
    /// Starts one without persistence (`--save '' --appendonly no`), or
    /// with AOF and `appendfsync always` when `aof`.
    pub async fn start(aof: bool) -> RedisServer {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe bind");
            probe.local_addr().unwrap().port()
        };
        let dir =
            std::env::temp_dir().join(format!("silverback-redis-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut r = RedisServer {
            child: None,
            port,
            dir,
            aof,
        };
        r.launch().await;
        r
    }

    async fn launch(&mut self) {
        let mut cmd = Command::new(program());
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(&self.dir)
        .args(["--daemonize", "no", "--loglevel", "notice"]);
        if self.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning redis-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = timeout(Duration::from_secs(10), async {
            let mut seen = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Ready to accept connections") {
                    return Ok(());
                }
                seen.push(line);
            }
            Err(seen.join("\n"))
        })
        .await;
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(log)) => panic!("redis-server on port {} exited:\n{log}", self.port),
            Err(_) => panic!("redis-server on port {} not ready in 10 s", self.port),
        }
        // Keep reading its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and waits for it to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = timeout(Duration::from_secs(10), c.wait()).await;
        }
    }

    /// Starts it again on the same port and directory (with AOF, it loads
    /// what it had).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.launch().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
