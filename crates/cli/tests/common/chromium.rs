//! Headless Chromium for the browser tests: launched on a page served by
//! the test, waited for until the page reports (it POSTs its report to the
//! test's responder), then stopped with its whole process group. A missing
//! chromium fails the test (never skipped).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::client_side::TempDir;

pub const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL_HINT: &str = "run scripts/install-peers.sh";

/// Fails the test at once when Chromium is missing (never a skip).
pub fn require() {
    assert!(
        std::path::Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} not found; {INSTALL_HINT}"
    );
}

/// What a page run gave: its report (`None`: none within the limit) and
/// Chromium's stderr.
pub struct PageRun {
    pub report: Option<String>,
    pub stderr: String,
}

/// Opens `page_url` in headless Chromium (with `extra_args`), waits up to
/// `limit` for the page's report on `results`, then stops Chromium and its
/// helpers (TERM, then KILL).
pub async fn run_page(
    page_url: &str,
    extra_args: &[&str],
    results: &mut mpsc::UnboundedReceiver<String>,
    limit: Duration,
) -> PageRun {
    // Chromium's profile, removed when dropped.
    let profile = TempDir::new("chromium");
    let mut chromium = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .args(extra_args)
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg(page_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {CHROMIUM}: {e}; {INSTALL_HINT}"));
    let pgid = chromium.id().expect("chromium pid");
    let mut stderr = chromium.stderr.take().expect("piped stderr");
    let stderr_text = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    });

    let report = tokio::select! {
        r = timeout(limit, results.recv()) => r.ok().flatten(),
        status = chromium.wait() => {
            panic!("chromium exited before the page reported ({status:?}):\n{}",
                stderr_text.await.unwrap_or_default())
        }
    };

    // Stop Chromium and its helpers: TERM, then KILL if still there.
    signal_group(pgid, "TERM").await;
    if timeout(Duration::from_secs(5), chromium.wait())
        .await
        .is_err()
    {
        signal_group(pgid, "KILL").await;
        let _ = timeout(Duration::from_secs(5), chromium.wait()).await;
    }
    signal_group(pgid, "KILL").await; // stragglers of the group, if any
    let stderr = timeout(Duration::from_secs(5), stderr_text)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    PageRun { report, stderr }
}

/// Sends `SIG<sig>` to the process group `pgid` (Chromium and its
/// helpers, started in their own group).
async fn signal_group(pgid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// Reads one HTTP request (head and `Content-Length` body): what the
/// test's responder serves the page and takes the report with.
pub async fn read_request(stream: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((method, path, body))
}

/// Writes one `Connection: close` HTTP/1.1 response (`status` such as
/// `"200 OK"`) and shuts the stream down: the other half of
/// [`read_request`].
pub async fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

/// Serves `page` on `/` and forwards the body of `POST /result` to
/// `results` (the page's report).
pub async fn serve_page(
    listener: TcpListener,
    page: String,
    results: mpsc::UnboundedSender<String>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let page = page.clone();
        let results = results.clone();
        tokio::spawn(async move {
            let Some((method, path, body)) = read_request(&mut stream).await else {
                return;
            };
            let (status, ctype, body_out) = match (method.as_str(), path.as_str()) {
                ("GET", "/") => ("200 OK", "text/html; charset=utf-8", page.into_bytes()),
                ("POST", "/result") => {
                    let _ = results.send(String::from_utf8_lossy(&body).into_owned());
                    ("200 OK", "text/plain", b"thanks".to_vec())
                }
                _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
            };
            respond(&mut stream, status, ctype, &body_out).await;
        });
    }
}
