//! `loadgen`: chatflow's producer harness. `loadgen ws` drives real
//! WebSocket clients through a gateway; `loadgen kafka` writes chat events
//! straight to `chat.events` to load the consumer stages alone. Both print
//! a human summary and, with `--report`, write a JSON report.

use clap::{Parser, Subcommand};
use loadgen::{kafka, ws};

#[derive(Parser)]
#[command(name = "loadgen", version, about = "chatflow's producer harness")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    /// Also write the report as JSON to this file.
    #[arg(long, global = true)]
    report: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Mode {
    /// Simulated people on WebSocket connections through a gateway.
    Ws(ws::WsArgs),
    /// Chat events straight onto chat.events, to load the stages alone.
    Kafka(kafka::KafkaArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = match cli.mode {
        Mode::Ws(args) => ws::run(args).await?,
        Mode::Kafka(args) => kafka::run(args).await?,
    };
    if let Some(path) = cli.report {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
