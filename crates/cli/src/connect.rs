//! `silverback connect URL`: an interactive client in the spirit of
//! websocat. Each stdin line is sent as a text message (`--binary`: stdin
//! in chunks as binary messages), every message received is printed on
//! stdout, EOF on stdin closes with 1000. In a terminal, `/close [code
//! [reason]]` and `/ping` are commands. How the connection ended goes to
//! stderr; the exit status is 0 only for a clean close with 1000, 1001 or
//! no status.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use silverback::{CloseCode, Dialer, Error, ErrorKind, Message, Proxy, WsWriter};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Options of `silverback connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Subprotocol to offer (repeatable, most preferred first).
    #[arg(long = "subprotocol", value_name = "NAME")]
    pub subprotocols: Vec<String>,
    /// `Origin` header to send.
    #[arg(long)]
    pub origin: Option<String>,
    /// Send stdin as binary messages (in chunks) instead of text lines.
    #[arg(long)]
    pub binary: bool,
    /// Accept any TLS certificate (no verification!). Only when asked.
    #[arg(long)]
    pub insecure: bool,
    /// Trust the CA certificates in this PEM file (in addition to the
    /// webpki roots).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Proxy URL (`http://[user:pass@]host:port` or `socks5://...`);
    /// default: from HTTPS_PROXY/HTTP_PROXY/ALL_PROXY.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Ignore proxy environment variables.
    #[arg(long, conflicts_with = "proxy")]
    pub no_proxy: bool,
    /// Do not offer permessage-deflate (offered by default).
    #[arg(long)]
    pub no_compression: bool,
    /// Seconds allowed for connecting and the handshake.
    #[arg(long, default_value_t = 10.0)]
    pub handshake_timeout: f64,
    /// Follow up to N redirects (0: a redirect is an error). A redirect to
    /// another origin (scheme, host or port) does not get the
    /// Authorization, Cookie and Proxy-Authorization headers; one from
    /// wss:// to ws:// is refused.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub follow_redirects: usize,
    /// Open the WebSocket over HTTP/2 (RFC 8441 extended CONNECT): ALPN
    /// `h2` for wss://, prior knowledge (h2c) for ws://. `prefer` (the
    /// value of a bare `--http2`) falls back to HTTP/1.1 when the server
    /// does not take it, `require` fails instead.
    #[arg(
        long,
        value_name = "MODE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "prefer",
        value_enum
    )]
    pub http2: Option<Http2Mode>,
}

/// `--http2=MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Http2Mode {
    /// HTTP/2 if the server takes it, else HTTP/1.1.
    Prefer,
    /// HTTP/2 or fail.
    Require,
}

pub fn run(args: ConnectArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let status = rt.block_on(connect(args));
    // tokio reads stdin with a blocking read on another thread, which
    // cannot be cancelled: when the server ends the session while stdin is
    // still open, waiting for that read would keep us running until the
    // next line (or EOF) arrives.
    rt.shutdown_background();
    status
}

fn dialer(args: &ConnectArgs) -> anyhow::Result<Dialer> {
    let timeout =
        Duration::try_from_secs_f64(args.handshake_timeout).context("--handshake-timeout")?;
    let mut dialer = Dialer::new()
        .handshake_timeout(timeout)
        .follow_redirects(args.follow_redirects)
        .subprotocols(args.subprotocols.iter().cloned());
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("header {h:?} is not `Name: value`");
        };
        dialer = dialer.try_header(name.trim(), value.trim())?;
    }
    if !args.no_compression {
        dialer = dialer.compression(silverback::DeflateConfig::default());
    }
    if let Some(origin) = &args.origin {
        dialer = dialer.try_header("origin", origin)?;
    }
    if let Some(p) = &args.proxy {
        dialer = dialer.proxy(Proxy::parse(p)?);
    } else if args.no_proxy {
        dialer = dialer.no_proxy();
    }
    let mut tls = silverback::tls::TlsConfig::builder();
    if args.insecure {
        tls = tls.danger_accept_invalid_certs();
    }
    if let Some(ca) = &args.ca {
        tls = tls
            .add_root_pem_file(ca)
            .with_context(|| format!("reading {}", ca.display()))?;
    }
    dialer = match args.http2 {
        None => dialer,
        Some(Http2Mode::Prefer) => dialer.http2(silverback::Http2::Prefer),
        Some(Http2Mode::Require) => dialer.http2(silverback::Http2::Require),
    };
    Ok(dialer.tls(tls.build()?))
}

async fn connect(args: ConnectArgs) -> anyhow::Result<i32> {
    let dialer = dialer(&args)?;
    let (ws, _resp) = match dialer.connect(&args.url).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("connect failed: {e}");
            if let Some(resp) = e.http_response() {
                for (k, v) in resp.headers() {
                    eprintln!("  {k}: {}", v.to_str().unwrap_or("<binary>"));
                }
                if resp.status().is_redirection() && args.follow_redirects == 0 {
                    eprintln!("(--follow-redirects N follows redirects)");
                }
            }
            return Ok(1);
        }
    };
    eprintln!(
        "connected to {}{}{}",
        args.url,
        ws.protocol()
            .map(|p| format!(" (subprotocol {p})"))
            .unwrap_or_default(),
        if ws.get_ref().is_http2() {
            " over HTTP/2"
        } else {
            ""
        }
    );
    let (mut reader, mut writer) = ws.split();
    let mut printer = tokio::spawn(async move {
        let mut out = std::io::stdout();
        loop {
            match reader.recv().await {
                Ok(Message::Text(t)) => {
                    let _ = writeln!(out, "{t}");
                    let _ = out.flush();
                }
                Ok(Message::Binary(b)) => {
                    let _ = out.write_all(&b);
                    let _ = out.flush();
                }
                Err(e) => return e,
            }
        }
    });
    let interactive = std::io::stdin().is_terminal();
    let send = send_stdin(&mut writer, args.binary, interactive);
    let end = tokio::select! {
        res = send => {
            if let Err(e) = res {
                eprintln!("send failed: {e}");
            }
            // Stdin done (or /close): close cleanly; the printer still gets
            // what the server sent before its Close.
            let _ = writer.close(CloseCode::Normal, "").await;
            printer.await.context("receiver task")?
        }
        end = &mut printer => end.context("receiver task")?,
    };
    Ok(report(&end))
}

/// Sends stdin until EOF or a `/close` command.
async fn send_stdin(
    writer: &mut WsWriter<silverback::ClientStream>,
    binary: bool,
    interactive: bool,
) -> Result<(), Error> {
    let mut stdin = tokio::io::stdin();
    if binary {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stdin.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            writer.send(Message::binary(buf[..n].to_vec())).await?;
        }
    }
    let mut lines = BufReader::new(stdin).lines();
    while let Some(line) = lines.next_line().await? {
        if interactive {
            if let Some(rest) = line.strip_prefix("/close") {
                let mut parts = rest.trim().splitn(2, ' ');
                let code = parts
                    .next()
                    .filter(|c| !c.is_empty())
                    .and_then(|c| c.parse::<u16>().ok())
                    .map_or(CloseCode::Normal, CloseCode::from);
                let reason = parts.next().unwrap_or("").to_owned();
                return writer.close(code, &reason).await;
            }
            if line.trim() == "/ping" {
                let pong = writer.ping(b"silverback").await?;
                tokio::spawn(async move {
                    match pong.await {
                        Ok(rtt) => eprintln!("pong in {:.3} ms", rtt.as_secs_f64() * 1e3),
                        Err(e) => eprintln!("no pong: {e}"),
                    }
                });
                continue;
            }
        }
        writer.send(Message::text(line)).await?;
    }
    Ok(())
}

/// Prints how the connection ended; returns the exit status.
fn report(end: &Error) -> i32 {
    match end.kind() {
        ErrorKind::Closed { frame, by_us } => {
            let who = if *by_us { "us" } else { "the server" };
            let code = end.close_code().unwrap_or(CloseCode::NoStatusReceived);
            let reason = frame.as_ref().map_or("", |f| f.reason.as_str());
            if reason.is_empty() {
                eprintln!("closed by {who}: code {code}");
            } else {
                eprintln!("closed by {who}: code {code}, reason {reason:?}");
            }
            match code {
                CloseCode::Normal | CloseCode::GoingAway | CloseCode::NoStatusReceived => 0,
                _ => 1,
            }
        }
        _ => {
            let code = end
                .close_code()
                .map_or(String::new(), |c| format!(" (code {c})"));
            eprintln!("connection ended abnormally{code}: {end}");
            1
        }
    }
}
