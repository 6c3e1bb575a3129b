//! The archiver as a process of its own: `chat.events` → the event-log
//! archive. Scale it by starting more: they share the `archiver` group.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "archiver",
    version,
    about = "chatflow archiver stage: chat.events → the event-log archive (directory or S3)"
)]
struct Args {
    #[command(flatten)]
    node: cli::NodeArgs,
    #[command(flatten)]
    archiver: archiver::ArchiverArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_tracing();
    let args = Args::parse();
    cli::run(args.node, vec![Box::new(archiver::Service(args.archiver))]).await
}
