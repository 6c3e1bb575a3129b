//! The indexer as a process of its own: `chat.events` → the search index.
//! Scale it by starting more: they share the `indexer` consumer group.

use clap::Parser;
use cli::{FetchArgs, KafkaArgs, MetricsArgs, SearchArgs};
use streams::topics::{self, TopicSpec};
use streams::{ConsumerSpec, run_stage};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "indexer",
    version,
    about = "chatflow indexer stage: chat.events → search index"
)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    search: SearchArgs,
    #[command(flatten)]
    fetch: FetchArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(flatten)]
    registry: cli::SchemaRegistryArgs,
    /// Records per index batch (one bulk request or commit), at most.
    #[arg(long, env = "CHATFLOW_MAX_BATCH", default_value_t = 2000)]
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
    topics::ensure(&kafka, &[TopicSpec::dlq(indexer::GROUP)], 1).await?;
    let stage = std::sync::Arc::new(indexer::Indexer::new(
        search::open(&args.search.search).await?,
    ));
    let spec = ConsumerSpec {
        group: indexer::GROUP.into(),
        topics: vec![topics::EVENTS.into()],
        max_batch: args.max_batch,
        fetch_wait: args.fetch.index_fetch_wait(),
        ..Default::default()
    };
    let token = shutdown.clone();
    cli::run_until_stopped(shutdown, async move {
        Ok(run_stage(&kafka, spec, stage, token).await?)
    })
    .await
}
