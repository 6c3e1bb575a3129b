//! The notifier as a process of its own: `chat.events` → push
//! notifications. Scale it by starting more: they share the `notifier`
//! consumer group.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "notifier",
    version,
    about = "chatflow notifier stage: chat.events → push notifications (APNs, FCM, webhook)"
)]
struct Args {
    #[command(flatten)]
    node: cli::NodeArgs,
    #[command(flatten)]
    notifier: notifier::NotifierArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_tracing();
    let args = Args::parse();
    cli::run(args.node, vec![Box::new(notifier::Service(args.notifier))]).await
}
