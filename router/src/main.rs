//! The router as a process of its own: `chat.events` → the inboxes of the
//! gateway nodes that hold the devices. Scale it by starting more: they
//! share the `router` consumer group, each reading all of `chat.presence`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "router",
    version,
    about = "chatflow router stage: chat.events → chat.inbox.<node>"
)]
struct Args {
    #[command(flatten)]
    node: cli::NodeArgs,
    #[command(flatten)]
    router: router::RouterArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_tracing();
    let args = Args::parse();
    cli::run(args.node, vec![Box::new(router::Service(args.router))]).await
}
