//! A gateway node as a process of its own: REST + WebSocket, producing to
//! `chat.events`, delivering what arrives on `chat.inbox.<node-id>`. Scale
//! out by starting more nodes, each with its own `--node-id`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use cli::{AuthArgs, DataArgs, FetchArgs, GatewayArgs, KafkaArgs, StoreArgs, TopicArgs};
use ingest::auth::Auth;
use ingest::{Gateway, GatewayConfig, Limits};
use streams::Producer;
use streams::topics::{self, TopicSpec};
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Parser)]
#[command(
    name = "ingest",
    version,
    about = "chatflow gateway node: REST + WebSocket"
)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    auth: AuthArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    topics: TopicArgs,
    #[command(flatten)]
    fetch: FetchArgs,
    #[command(flatten)]
    gateway: GatewayArgs,
    #[command(flatten)]
    registry: cli::SchemaRegistryArgs,
    /// The index `GET /v1/search` reads (the indexer's, normally
    /// `opensearch+http(s)://<host:port>[/<index>]`); without it search answers 503.
    #[arg(long, env = "CHATFLOW_SEARCH")]
    search: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_tracing();
    let args = Args::parse();
    args.gateway.validate()?;
    args.topics.validate()?;
    cli::use_schema_registry(&args.registry).await?;
    let metrics = cli::install_metrics()?;
    let kafka = args.kafka.config();
    let node = args.gateway.node_id.clone();
    // Bound before any connection of this process's own can take the port.
    let listener = tokio::net::TcpListener::bind(args.gateway.http).await?;
    topics::ensure(
        &kafka,
        &[
            TopicSpec::events(args.topics.events_partitions),
            TopicSpec::signals(1),
            TopicSpec::presence(1),
            TopicSpec::inbox(&node),
        ],
        args.topics.replication,
    )
    .await
    .context("creating topics")?;
    let auth = match &args.auth.jwt_public_key {
        Some(path) => Auth::rs256(&std::fs::read(path)?).map_err(anyhow::Error::msg)?,
        None => Auth::hs256(&cli::secret(&args.auth, &args.data.data_dir, true)?),
    };
    let limits = Limits {
        rate_per_sec: args.gateway.rate,
        rate_burst: args.gateway.rate_burst,
        idle_timeout: Duration::from_secs(args.gateway.idle_timeout_secs),
        ..Limits::default()
    };
    let producer = Producer::new(&kafka)?;
    let mut gateway = Gateway::new(
        GatewayConfig {
            node_id: node.clone(),
            limits,
            dev_auth: args.gateway.dev_auth,
        },
        auth,
        store::open(&args.store.store).await?,
        producer.clone(),
    );
    if let Some(url) = &args.search {
        gateway = gateway.with_search(search::open(url).await?);
    }
    // Presence for `GET /v1/users/{uid}/presence`: this node's own view of
    // chat.presence.
    let presence = chat::presence::PresenceView::default();
    gateway = gateway.with_presence(presence.clone());
    let gateway = Arc::new(gateway);
    let shutdown = CancellationToken::new();
    let (view_ready, _) = tokio::sync::oneshot::channel();
    let presence_follower = {
        let view = presence;
        streams::follow::presence(
            &kafka,
            args.fetch.presence_fetch_wait(),
            view_ready,
            shutdown.child_token(),
            move |p| view.apply(p),
        )
    }?;
    let heartbeat = tokio::spawn(ingest::people::heartbeat(
        gateway.clone(),
        shutdown.child_token(),
    ));
    let (inbox, ready) = ingest::inbox::start(
        gateway.clone(),
        &kafka,
        args.fetch.live_fetch_wait(),
        shutdown.child_token(),
    )?;
    let _ = tokio::time::timeout(Duration::from_secs(30), ready).await;

    info!(node = %node, addr = %listener.local_addr()?, "gateway node serving");
    let result = cli::run_until_stopped(shutdown.clone(), {
        let (gateway, token) = (gateway.clone(), shutdown.clone());
        let metrics = cli::metrics_route(metrics);
        async move { Ok(ingest::serve(listener, gateway, metrics, token, DRAIN).await?) }
    })
    .await;
    let _ = heartbeat.await;
    let _ = gateway.publish_node(false).await;
    let _ = producer.flush(Duration::from_secs(10));
    let _ = tokio::task::spawn_blocking(move || {
        let _ = inbox.join();
        let _ = presence_follower.join();
    })
    .await;
    result
}

/// How long shutdown waits for the answers in flight.
const DRAIN: Duration = Duration::from_secs(10);
