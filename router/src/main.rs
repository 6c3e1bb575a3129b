//! The router as a process of its own: `chat.events` → the inboxes of the
//! gateway nodes that hold the devices. Scale it by starting more: they
//! share the `router` consumer group, each reading all of `chat.presence`.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use cli::{FetchArgs, KafkaArgs, MetricsArgs, StoreArgs};
use streams::topics::{self, TopicSpec};
use streams::{ConsumerSpec, Producer, run_stage};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "router",
    version,
    about = "chatflow router stage: chat.events → chat.inbox.<node>"
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_tracing();
    let args = Args::parse();
    cli::use_schema_registry(&args.registry).await?;
    let shutdown = CancellationToken::new();
    cli::serve_metrics(&args.metrics, shutdown.child_token()).await?;
    let kafka = args.kafka.config();
    topics::ensure(
        &kafka,
        &[
            TopicSpec::presence(1),
            TopicSpec::signals(1),
            TopicSpec::dlq(router::GROUP),
            TopicSpec::dlq(router::SIGNALS_GROUP),
        ],
        1,
    )
    .await?;
    let store = store::open(&args.store.store).await?;
    let presence = router::PresenceView::default();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let follower = {
        let view = presence.clone();
        streams::follow::presence(
            &kafka,
            args.fetch.live_fetch_wait(),
            ready_tx,
            shutdown.child_token(),
            move |p| view.apply(p),
        )
    }?;
    // Route nothing before the view holds everyone already online.
    let _ = tokio::time::timeout(Duration::from_secs(60), ready_rx).await;
    let producer = Producer::new(&kafka)?;
    let stage = Arc::new(router::RouterStage::new(
        store.clone(),
        presence.clone(),
        producer.clone(),
    ));
    let fanout = Arc::new(router::Fanout::new(presence.clone(), producer));
    let signals = {
        let (kafka, token) = (kafka.clone(), shutdown.child_token());
        let fetch_wait = args.fetch.signals_fetch_wait();
        tokio::spawn(async move {
            let group = streams::Assignment::Group;
            router::signals::run(&kafka, store, presence, fanout, fetch_wait, group, token).await
        })
    };
    let spec = ConsumerSpec {
        group: router::GROUP.into(),
        topics: vec![topics::EVENTS.into()],
        max_batch: 500,
        fetch_wait: args.fetch.live_fetch_wait(),
        ..Default::default()
    };
    let token = shutdown.clone();
    let result = cli::run_until_stopped(shutdown, async move {
        Ok(run_stage(&kafka, spec, stage, token).await?)
    })
    .await;
    let _ = signals.await;
    let _ = tokio::task::spawn_blocking(move || follower.join()).await;
    result
}
