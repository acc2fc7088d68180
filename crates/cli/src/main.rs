//! The `silverback` command: `serve` (echo server and demo page, or with
//! `--pubsub` a pub/sub server and chat page; the default) and `connect`
//! (interactive client).

mod bench;
mod bench_h2;
mod connect;
mod fanout;
mod health;
mod metrics;
mod pubsub;
mod serve;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

/// WebSocket toolkit: an echo server with a demo page, and a client.
#[derive(Debug, Parser)]
#[command(name = "silverback", version, about)]
struct Cli {
    /// Log only warnings and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Log lines as text or as JSON objects (one per line).
    #[arg(long, value_enum, global = true, default_value = "text")]
    log_format: metrics::LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the echo server (default): ws://127.0.0.1:8080/ws plus a demo page at /;
    /// with --pubsub, a pub/sub server and a chat page.
    Serve(serve::ServeArgs),
    /// Connect to a WebSocket server: stdin lines out, messages received to stdout.
    Connect(connect::ConnectArgs),
    /// Load generator: echo throughput and latency, connect storm, idle connections, pub/sub fan-out.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let default_level = if cli.quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    metrics::init_logging(cli.log_format, filter, std::io::stderr().is_terminal());
    let command = cli
        .command
        .unwrap_or(Command::Serve(serve::ServeArgs::default()));
    match command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Connect(args) => {
            let status = connect::run(args)?;
            std::process::exit(status)
        }
    }
}
