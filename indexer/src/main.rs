//! The indexer as a process of its own: `chat.events` → the search index.
//! Scale it by starting more: they share the `indexer` consumer group.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "indexer",
    version,
    about = "chatflow indexer stage: chat.events → search index"
)]
struct Args {
    #[command(flatten)]
    node: cli::NodeArgs,
    #[command(flatten)]
    indexer: indexer::IndexerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_tracing();
    let args = Args::parse();
    cli::run(args.node, vec![Box::new(indexer::Service(args.indexer))]).await
}
