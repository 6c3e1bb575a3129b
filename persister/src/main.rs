//! The persister as a process of its own: `chat.events` → the store. Scale
//! it by starting more: they share the `persister` consumer group.

use std::sync::Arc;

use clap::Parser;
use cli::{FetchArgs, KafkaArgs, MetricsArgs, StoreArgs};
use streams::topics::{self, TopicSpec};
use streams::{ConsumerSpec, run_stage};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "persister",
    version,
    about = "chatflow persister stage: chat.events → store"
)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    fetch: FetchArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(flatten)]
    registry: cli::SchemaRegistryArgs,
    /// Records handed to the store per batch, at most.
    #[arg(long, env = "CHATFLOW_MAX_BATCH", default_value_t = 1000)]
    max_batch: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_tracing();
    let args = Args::parse();
    cli::use_schema_registry(&args.registry).await?;
    let shutdown = CancellationToken::new();
    cli::serve_metrics(&args.metrics, shutdown.child_token()).await?;
    let kafka = args.kafka.config();
    topics::ensure(&kafka, &[TopicSpec::dlq(persister::GROUP)], 1).await?;
    let stage = Arc::new(persister::Persister::new(
        store::open(&args.store.store).await?,
    ));
    let spec = ConsumerSpec {
        group: persister::GROUP.into(),
        topics: vec![topics::EVENTS.into()],
        max_batch: args.max_batch,
        fetch_wait: args.fetch.store_fetch_wait(),
        ..Default::default()
    };
    let token = shutdown.clone();
    cli::run_until_stopped(shutdown, async move {
        Ok(run_stage(&kafka, spec, stage, token).await?)
    })
    .await
}
