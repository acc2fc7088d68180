//! Client for the Autobahn|Testsuite (`wstest -m fuzzingserver`).
//!
//! ```sh
//! cargo run --release -p silverback --example autobahn_client -- ws://127.0.0.1:9001 silverback
//! ```
//!
//! Speaks the fuzzingserver protocol against the base URL (default
//! `ws://127.0.0.1:9001`) under the agent name (default `silverback`; used
//! in the URL as is, so keep it to letters, digits, `-` and `_`):
//! 1. `/getCaseCount`: one text message with the number of cases N;
//! 2. `/runCase?case=I&agent=AGENT` for I in 1..=N: echo every message
//!    until the connection ends;
//! 3. `/updateReports?agent=AGENT`: the server writes its reports.
//!
//! Every connection offers permessage-deflate (RFC 7692) with the default
//! [`DeflateConfig`] (the Autobahn cases 12.* and 13.*).
//!
//! `conformance/run.sh` runs it.

use silverback::{DeflateConfig, Dialer, Error, Message};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let agent = args.next().unwrap_or_else(|| "silverback".into());
    let dialer = Dialer::new().compression(DeflateConfig::default());

    let (mut ws, _) = dialer.connect(&format!("{base}/getCaseCount")).await?;
    let count: u32 = match ws.recv().await? {
        Message::Text(t) => t.as_str().trim().parse().unwrap_or(0),
        Message::Binary(_) => 0,
    };
    while ws.recv().await.is_ok() {}
    eprintln!("{count} cases");

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let mut ws = match dialer.connect(&url).await {
            Ok((ws, _)) => ws,
            Err(e) => {
                eprintln!("case {case}: connect failed: {e}");
                continue;
            }
        };
        // Echo until the connection ends (cleanly or not: the suite judges).
        while let Ok(msg) = ws.recv().await {
            if ws.send(msg).await.is_err() {
                break;
            }
        }
    }

    let (mut ws, _) = dialer
        .connect(&format!("{base}/updateReports?agent={agent}"))
        .await?;
    while ws.recv().await.is_ok() {}
    eprintln!("reports updated");
    Ok(())
}
