//! The persister as a process of its own: `chat.events` → the store. Scale
//! it by starting more: they share the `persister` consumer group.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "persister",
    version,
    about = "chatflow persister stage: chat.events → store"
)]
struct Args {
    #[command(flatten)]
    node: cli::NodeArgs,
    #[command(flatten)]
    persister: persister::PersisterArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_tracing();
    let args = Args::parse();
    cli::run(
        args.node,
        vec![Box::new(persister::Service(args.persister))],
    )
    .await
}
