//! A gateway node as a process of its own: REST + WebSocket, producing to
//! `chat.events`, delivering what arrives on `chat.inbox.<node-id>`. Scale
//! out by starting more nodes, each with its own `--node-id`.

use clap::Parser;

/// jemalloc, as in the all-in-one binary: glibc's arenas kept the memory
/// of closed sockets.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "ingest",
    version,
    about = "chatflow gateway node: REST + WebSocket"
)]
struct Args {
    #[command(flatten)]
    node: cli::NodeArgs,
    #[command(flatten)]
    ingest: ingest::IngestArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_tracing();
    let args = Args::parse();
    let service = ingest::Service::bind(args.ingest).await?;
    cli::run(args.node, vec![Box::new(service)]).await
}
