//! chatflow: the all-in-one binary. `chatflow` (or `chatflow serve`) runs
//! every stage in one process, with the embedded broker and store by
//! default; the other subcommands are operators' tools.

mod archive;
mod replay;
mod serve;
mod switch;
mod tools;
mod verify;

use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's malloc: with glibc, each window of 10,000
/// sockets that connected, chatted and closed left ~120 MiB more resident
/// (memory freed, but held in its per-thread arenas); with jemalloc the
/// process grows ~35 MiB per window (its data), at the same latency and
/// CPU.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "chatflow",
    version,
    about = "Event-sourced real-time chat backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: serve::ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker, registry, every stage and the HTTP/WebSocket API (default).
    Serve(Box<serve::ServeArgs>),
    /// Print a token for a user (HS256 with the configured or dev secret).
    Token(tools::TokenArgs),
    /// Print a topic's records as JSON lines: partition, offset, key, decoded value.
    Tail(tools::TailArgs),
    /// List topics with partitions, end offsets and each consumer group's lag.
    Topics(tools::TopicsArgs),
    /// Run the embedded Kafka-protocol broker and the schema registry alone.
    Broker(tools::BrokerArgs),
    /// Administration tasks.
    #[command(subcommand)]
    Admin(tools::Admin),
    /// The event-log archive on object storage.
    #[command(subcommand)]
    Archive(archive::ArchiveCommand),
    /// Rebuild a read model from the log (archive, then broker) into a fresh target.
    Replay(replay::ReplayArgs),
    /// Point the running chatflow at a rebuilt read model, without stopping it.
    Switch(switch::SwitchArgs),
    /// Compare a rebuilt read model with the live one.
    Verify(verify::VerifyArgs),
    /// Measure send→receive latency and throughput against a fresh chatflow.
    Bench(loadgen::bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        None => runtime.block_on(serve::run(cli.serve)),
        Some(Command::Serve(args)) => runtime.block_on(serve::run(*args)),
        Some(Command::Token(args)) => tools::token(args),
        Some(Command::Tail(args)) => runtime.block_on(tools::tail(args)),
        Some(Command::Topics(args)) => tools::topics(args),
        Some(Command::Broker(args)) => runtime.block_on(tools::broker(args)),
        Some(Command::Admin(command)) => runtime.block_on(tools::admin(command)),
        Some(Command::Archive(command)) => runtime.block_on(archive::run(command)),
        Some(Command::Replay(args)) => runtime.block_on(replay::run(args)),
        Some(Command::Switch(args)) => runtime.block_on(switch::run(args)),
        Some(Command::Verify(args)) => runtime.block_on(verify::run(args)),
        Some(Command::Bench(args)) => runtime.block_on(loadgen::bench::run(args)),
    }
}
