#![allow(missing_docs)]
//! `silverback serve` shutting down on SIGTERM and SIGINT: every connected
//! client gets 1001 "server shutting down", the process exits 0 and logs
//! the drain report; the per-connection log lines (`open`, `closed`,
//! `closed unexpectedly`), and none with `-q`.

mod common;

use common::{log_lines, read_frame, DrainReport, Server, IO_TIMEOUT};
use silverback::{CloseCode, Dialer, ErrorKind, Message};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const CLOSE: u8 = 0x8;

/// Connects `n` clients of ours; each checks one echo (so the server tracks
/// it) and then waits in `recv`, which yields the error that ended it.
async fn connect_clients(server: &Server, n: usize) -> Vec<JoinHandle<silverback::Error>> {
    let mut clients = Vec::new();
    for i in 0..n {
        let (mut ws, _) = timeout(IO_TIMEOUT, Dialer::new().connect(&server.ws_url))
            .await
            .expect("connect timed out")
            .expect("connect");
        let hello = Message::text(format!("hello {i}"));
        ws.send(hello.clone()).await.unwrap();
        let got = timeout(IO_TIMEOUT, ws.recv())
            .await
            .expect("echo timed out");
        assert_eq!(got.unwrap(), hello);
        clients.push(tokio::spawn(async move {
            timeout(IO_TIMEOUT, ws.recv())
                .await
                .expect("no close from the server")
                .unwrap_err()
        }));
    }
    clients
}

/// Each client was closed by the server with 1001 "server shutting down".
async fn assert_all_got_1001(clients: Vec<JoinHandle<silverback::Error>>, log: &str) {
    for client in clients {
        let end = client.await.unwrap();
        assert!(end.is_closed(), "{end:?}; server log:\n{log}");
        assert!(
            matches!(end.kind(), ErrorKind::Closed { by_us: false, .. }),
            "{end:?}"
        );
        assert_eq!(end.close_code(), Some(CloseCode::GoingAway), "{end:?}");
        assert_eq!(&*end.close_frame().unwrap().reason, "server shutting down");
    }
}

async fn drains_on(signal: &str) {
    const N: usize = 4;
    let mut server = Server::start(&["--shutdown-timeout", "5"]).await;
    let clients = connect_clients(&server, N).await;
    server.signal(signal).await;
    let status = server.wait_exit().await;
    let log = server.log();
    assert!(status.success(), "exit on SIG{signal}: {status}\n{log}");
    assert_all_got_1001(clients, &log).await;

    let announce = format!("SIG{signal}: shutting down, closing {N} connections with 1001");
    assert_eq!(log.matches(&announce).count(), 1, "{log}");
    let report = DrainReport::from_log(&log);
    assert_eq!(
        (report.open, report.clean, report.unclean, report.forced),
        (N, N, 0, 0),
        "{log}"
    );
    // One `open` and one `closed` line per connection: closed by us, 1001.
    assert_eq!(log_lines(&log, "open").len(), N, "{log}");
    let closed = log_lines(&log, "closed");
    assert_eq!(closed.len(), N, "{log}");
    for line in closed {
        assert!(
            line.contains(" by=\"us\"") && line.contains(" code=1001"),
            "{line}"
        );
    }
    assert!(log_lines(&log, "closed unexpectedly").is_empty(), "{log}");
}

#[tokio::test]
async fn sigterm_drains_every_connection_with_1001() {
    drains_on("TERM").await;
}

#[tokio::test]
async fn sigint_drains_every_connection_with_1001() {
    drains_on("INT").await;
}

/// A signal right after the listening line (before any connection) is
/// handled, not fatal: the handlers are installed before that line.
#[tokio::test]
async fn signal_right_after_the_listening_line_is_handled() {
    for signal in ["TERM", "INT", "TERM", "INT"] {
        let mut server = Server::start(&[]).await;
        server.signal(signal).await;
        let status = server.wait_exit().await;
        let log = server.log();
        assert!(status.success(), "exit on SIG{signal}: {status}\n{log}");
        let report = DrainReport::from_log(&log);
        assert_eq!((report.open, report.forced), (0, 0), "{log}");
    }
}

/// A client that reads the 1001 and never answers is forced closed at the
/// `--shutdown-timeout` deadline; the well-behaved one closes cleanly; the
/// process still exits 0.
#[tokio::test]
async fn unanswered_close_is_forced_at_the_deadline() {
    let mut server = Server::start(&["--shutdown-timeout", "0.3"]).await;
    let clients = connect_clients(&server, 1).await;
    // A raw client: upgrade and one echo, then it only reads.
    let host = server.addr.to_string();
    let (resp, mut raw, mut pending) = common::http_exchange(
        server.addr,
        &common::upgrade_request("GET", "/ws", &host, &[]),
    )
    .await;
    assert_eq!(resp.status, 101);
    let mask = [1, 2, 3, 4];
    raw.write_all(&common::client_frame(0x1, b"hi", mask))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut raw, &mut pending).await.payload, b"hi");

    server.terminate().await;
    let close = read_frame(&mut raw, &mut pending).await;
    assert_eq!(close.opcode, CLOSE);
    assert_eq!(&close.payload[..2], &1001u16.to_be_bytes());
    assert_eq!(&close.payload[2..], b"server shutting down");
    // No answer: the server closes the connection at the deadline.
    let mut rest = Vec::new();
    let end = timeout(
        IO_TIMEOUT,
        tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut rest),
    )
    .await
    .expect("connection still open after the deadline");
    assert!(end.is_ok() && rest.is_empty(), "{end:?}, {rest:?}");

    let status = server.wait_exit().await;
    let log = server.log();
    assert!(status.success(), "exit: {status}\n{log}");
    assert_all_got_1001(clients, &log).await;
    let report = DrainReport::from_log(&log);
    assert_eq!(
        (report.open, report.clean, report.unclean, report.forced),
        (2, 1, 0, 1),
        "{log}"
    );
    assert_eq!(log_lines(&log, "open").len(), 2, "{log}");
    assert_eq!(log_lines(&log, "closed").len(), 1, "{log}");
    let forced = log_lines(&log, "closed unexpectedly");
    assert_eq!(forced.len(), 1, "{log}");
    assert!(forced[0].contains(" code=1006"), "{}", forced[0]);
}

/// A client that vanishes is logged as `closed unexpectedly` (1006), one
/// that closes as `closed` with its code, each after its `open` line.
#[tokio::test]
async fn per_connection_log_lines() {
    let mut server = Server::start(&[]).await;
    let (mut ws, _) = timeout(IO_TIMEOUT, Dialer::new().connect(&server.ws_url))
        .await
        .expect("connect timed out")
        .expect("connect");
    server
        .wait_for_log("an open line", |l| common::is_log_message(l, "open"))
        .await;
    timeout(IO_TIMEOUT, ws.close(CloseCode::from(4000), "bye"))
        .await
        .expect("close timed out")
        .unwrap();
    let closed = server
        .wait_for_log("a closed line", |l| common::is_log_message(l, "closed"))
        .await;
    assert!(
        closed.contains(" by=\"peer\"")
            && closed.contains(" code=4000")
            && closed.contains("reason=\"bye\""),
        "{closed}"
    );

    let host = server.addr.to_string();
    let (resp, raw, _) = common::http_exchange(
        server.addr,
        &common::upgrade_request("GET", "/ws", &host, &[]),
    )
    .await;
    assert_eq!(resp.status, 101);
    server
        .wait_for_log("an open line", |l| common::is_log_message(l, "open"))
        .await;
    drop(raw);
    let vanished = server
        .wait_for_log("a closed unexpectedly line", |l| {
            common::is_log_message(l, "closed unexpectedly")
        })
        .await;
    assert!(vanished.contains(" code=1006"), "{vanished}");

    server.terminate().await;
    assert!(server.wait_exit().await.success());
    let log = server.log();
    assert_eq!(log_lines(&log, "open").len(), 2, "{log}");
    let report = DrainReport::from_log(&log);
    assert_eq!(
        (report.open, report.clean, report.unclean, report.forced),
        (0, 0, 0, 0),
        "{log}"
    );
}

/// With `-q`, nothing is logged per connection (nor the drain report): the
/// clients still get 1001 and the process exits 0.
#[tokio::test]
async fn quiet_logs_no_connection_lines() {
    const N: usize = 3;
    let mut server = Server::start_quiet(&["--shutdown-timeout", "5"]).await;
    let clients = connect_clients(&server, N).await;
    server.terminate().await;
    let status = server.wait_exit().await;
    let log = server.log();
    assert!(status.success(), "exit: {status}\n{log}");
    assert_all_got_1001(clients, &log).await;
    for message in ["open", "closed", "closed unexpectedly"] {
        assert!(log_lines(&log, message).is_empty(), "{message}: {log}");
    }
    assert!(!log.contains("connections drained"), "{log}");
    assert!(!log.contains(" INFO "), "{log}");
}
