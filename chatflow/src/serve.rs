//! The all-in-one process: broker, registry, persister, router and gateway
//! as tasks under one cancellation token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use ingest::auth::Auth;
use ingest::{Gateway, GatewayConfig, Limits};
use store::Store;
use streams::topics::{self, TopicSpec};
use streams::{ConsumerSpec, Producer, StageStatus, run_stage};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use clap::Args;
use cli::{
    AuthArgs, DataArgs, FetchArgs, GatewayArgs, KafkaArgs, SearchArgs, StoreArgs, TopicArgs,
};

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub search: SearchArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    #[command(flatten)]
    pub schema_registry: cli::SchemaRegistryArgs,
    /// Built-in schema registry (embedded mode); `off` to not serve it.
    #[arg(long, env = "CHATFLOW_REGISTRY", default_value = "127.0.0.1:8081")]
    pub registry: String,
    /// The in-process router hands this node's deliveries straight to its
    /// sockets; `false` sends them through `chat.inbox.<node-id>` as
    /// separate processes do.
    #[arg(long, env = "CHATFLOW_LOCAL_DELIVERY", default_value_t = true, action = clap::ArgAction::Set)]
    pub local_delivery: bool,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    args.gateway.validate()?;
    args.topics.validate()?;
    cli::use_schema_registry(&args.schema_registry).await?;
    let metrics = cli::install_metrics().context("installing the metrics recorder")?;

    let data_dir = enter_data_dir(&args.data.data_dir)?;
    let secret = match &args.auth.jwt_public_key {
        Some(_) => None,
        None => Some(cli::secret(&args.auth, &data_dir, true)?),
    };

    let shutdown = CancellationToken::new();
    // Every listener is bound before this process opens any connection of
    // its own: an outgoing connection's ephemeral port can otherwise take
    // a port it was told to listen on.
    let listener = tokio::net::TcpListener::bind(args.gateway.http)
        .await
        .with_context(|| format!("binding {}", args.gateway.http))?;
    let http_addr = listener.local_addr()?;
    let registry = if args.kafka.kafka == "embedded" {
        serve_registry(&args.registry, shutdown.child_token()).await?
    } else {
        None
    };
    let broker = if args.kafka.kafka == "embedded" {
        Some(start_broker(args.kafka.kafka_listen).await?)
    } else {
        None
    };
    let kafka = args.kafka.config();
    topics::ensure(
        &kafka,
        &[
            TopicSpec::events(args.topics.events_partitions),
            TopicSpec::signals(1),
            TopicSpec::presence(1),
            TopicSpec::inbox(&args.gateway.node_id),
            TopicSpec::dlq(persister::GROUP),
            TopicSpec::dlq(router::GROUP),
            TopicSpec::dlq(indexer::GROUP),
            TopicSpec::dlq(router::SIGNALS_GROUP),
        ],
        args.topics.replication,
    )
    .await
    .context("creating topics")?;

    let store: Arc<dyn Store> = store::open(&args.store.store).await?;
    let search = search::open(&args.search.search).await?;
    let auth = match (&args.auth.jwt_public_key, secret) {
        (Some(path), _) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            Auth::rs256(&pem).map_err(anyhow::Error::msg)?
        }
        (None, Some(secret)) => Auth::hs256(&secret),
        (None, None) => bail!("no token key configured"),
    };
    let producer = Producer::new(&kafka)?;
    let limits = Limits {
        rate_per_sec: args.gateway.rate,
        rate_burst: args.gateway.rate_burst,
        idle_timeout: Duration::from_secs(args.gateway.idle_timeout_secs),
        ..Limits::default()
    };
    let presence = router::PresenceView::default();
    let mut gateway = Gateway::new(
        GatewayConfig {
            node_id: args.gateway.node_id.clone(),
            limits,
            dev_auth: args.gateway.dev_auth,
        },
        auth,
        store.clone(),
        producer.clone(),
    );
    gateway = gateway
        .with_search(search.clone())
        .with_presence(presence.clone());
    // Writes wait until the persister and the router hold their partitions
    // and the store has every event already on the log.
    let (persisting, routing) = (Arc::<StageStatus>::default(), Arc::<StageStatus>::default());
    let caught_up = Arc::new(AtomicBool::new(false));
    {
        let (persisting, routing, caught_up) =
            (persisting.clone(), routing.clone(), caught_up.clone());
        gateway = gateway.with_readiness(Arc::new(move || {
            if persisting.partitions() == 0 {
                Some("the persister holds no partition".into())
            } else if routing.partitions() == 0 {
                Some("the router holds no partition".into())
            } else if !caught_up.load(Ordering::Relaxed) {
                Some("the persister is catching up with chat.events".into())
            } else {
                None
            }
        }));
    }
    if args.local_delivery {
        let view = presence.clone();
        gateway = gateway.with_presence_hook(Arc::new(move |p| view.apply(p)));
    }
    let gateway = Arc::new(gateway);

    let mut tasks = JoinSet::new();
    // The router must know who is online before it routes anything.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut threads = vec![{
        let view = presence.clone();
        streams::follow::presence(
            &kafka,
            args.fetch.presence_fetch_wait(),
            ready_tx,
            shutdown.child_token(),
            move |p| view.apply(p),
        )
    }?];
    let _ = tokio::time::timeout(Duration::from_secs(30), ready_rx).await;
    if !args.local_delivery {
        let (inbox_thread, inbox_ready) = ingest::inbox::start(
            gateway.clone(),
            &kafka,
            args.fetch.live_fetch_wait(),
            shutdown.child_token(),
        )?;
        let _ = tokio::time::timeout(Duration::from_secs(30), inbox_ready).await;
        threads.push(inbox_thread);
    }

    let persister = Arc::new(persister::Persister::new(store.clone()));
    spawn_stage(
        &mut tasks,
        &kafka,
        (persister::GROUP, 1000, args.fetch.store_fetch_wait()),
        persister,
        persisting,
        &shutdown,
    );
    spawn_stage(
        &mut tasks,
        &kafka,
        (indexer::GROUP, 2000, args.fetch.index_fetch_wait()),
        Arc::new(indexer::Indexer::new(search)),
        Arc::default(),
        &shutdown,
    );
    let mut router = router::RouterStage::new(store.clone(), presence.clone(), producer.clone());
    let mut fanout = router::Fanout::new(presence.clone(), producer.clone());
    if args.local_delivery {
        let local = Arc::new(LocalGateway(gateway.clone()));
        router = router.with_local_inbox(&args.gateway.node_id, local.clone());
        fanout = fanout.with_local_inbox(&args.gateway.node_id, local);
    }
    {
        let (kafka, store, token) = (kafka.clone(), store.clone(), shutdown.child_token());
        let fetch_wait = args.fetch.signals_fetch_wait();
        let fanout = Arc::new(fanout);
        let all = streams::Assignment::All;
        tasks.spawn(async move {
            router::signals::run(&kafka, store, presence, fanout, fetch_wait, all, token)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    {
        let (gateway, token) = (gateway.clone(), shutdown.child_token());
        tasks.spawn(async move {
            ingest::people::heartbeat(gateway, token).await;
            Ok(())
        });
    }
    spawn_stage(
        &mut tasks,
        &kafka,
        (router::GROUP, 500, args.fetch.live_fetch_wait()),
        Arc::new(router),
        routing,
        &shutdown,
    );

    let registry_addr = match registry {
        Some((addr, task)) => {
            tasks.spawn(async move { task.await? });
            Some(addr)
        }
        None => None,
    };

    // The HTTP side stops first at shutdown, and the stages only after its
    // last answer: a token of its own.
    let front = CancellationToken::new();
    let mut http = tokio::spawn(ingest::serve(
        listener,
        gateway.clone(),
        cli::metrics_route(metrics),
        front.clone(),
        DRAIN,
    ));

    // Take no write before the store holds every event already on the log:
    // a retried send is then recognised as the message it already is.
    {
        let (kafka, caught_up, token) = (kafka.clone(), caught_up, shutdown.child_token());
        tasks.spawn(async move {
            wait_for_persister(kafka, token).await?;
            caught_up.store(true, Ordering::Relaxed);
            info!("the persister has caught up with chat.events: ready");
            Ok(())
        });
    }

    println!("chatflow is up");
    println!("  API and WebSocket   http://{http_addr}  (ws://{http_addr}/v1/ws)");
    if let Some(b) = &broker {
        println!("  Kafka (embedded)    {}", b.addr());
    }
    if let Some(r) = registry_addr {
        println!("  schema registry     http://{r}");
    }
    println!("  metrics             http://{http_addr}/metrics");
    println!("  data                {}", data_dir.display());
    if args.gateway.dev_auth {
        println!(
            "  dev login           POST http://{http_addr}/v1/dev/token {{\"user_id\":\"alice\"}}"
        );
    }

    let failed = tokio::select! {
        _ = cli::stop_signal() => { info!("shutting down"); false }
        result = &mut http => {
            error!(?result, "the HTTP server ended early, shutting everything down");
            true
        }
        Some(result) = next_failure(&mut tasks) => {
            error!(?result, "a task ended early, shutting everything down");
            true
        }
    };
    // Stop taking requests and frames; every one in hand gets its answer
    // (its event is on the log) before its socket closes, and only then do
    // the stages stop.
    front.cancel();
    if !http.is_finished() {
        match (&mut http).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!(error = %e, "the HTTP server failed while draining"),
            Err(e) => error!(error = %e, "the HTTP server task failed"),
        }
    }
    shutdown.cancel();
    // None of this node's devices is online any more.
    if let Err(e) = gateway.publish_node(false).await {
        error!(error = %e.message, "node reset not published");
    }
    while let Some(result) = tasks.join_next().await {
        if let Ok(Err(e)) = result {
            error!(error = %e, "task failed during shutdown");
        }
    }
    if let Err(e) = producer.flush(Duration::from_secs(10)) {
        error!(error = %e, "producer flush failed");
    }
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    // Close this process's Kafka clients before their broker goes away.
    drop((gateway, producer, store));
    if let Some(b) = broker {
        b.stop().await;
    }
    info!("stopped");
    if failed {
        bail!("stopped after a task failed")
    } else {
        Ok(())
    }
}

/// Makes the data dir and works from inside it: the embedded broker
/// resolves its log path against the working directory only.
pub fn enter_data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir)?;
    std::env::set_current_dir(&dir)?;
    Ok(dir)
}

/// The embedded broker, its log in `log/` under the working directory:
/// call [`enter_data_dir`] first.
pub async fn start_broker(listen: SocketAddr) -> anyhow::Result<broker::EmbeddedBroker> {
    broker::EmbeddedBroker::start(listen, Path::new("log/chatflow.db"))
        .await
        .context("starting the embedded broker")
}

/// The built-in registry on `addr` (unless `off`) until `shutdown`.
pub async fn serve_registry(
    addr: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<(SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>)>> {
    if addr == "off" {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the registry on {addr}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        axum::serve(listener, schemas::registry::router())
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(anyhow::Error::from)
    });
    Ok(Some((bound, task)))
}

/// How long shutdown waits for the answers in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// The next task that ended with an error or early (the catch-up wait ends
/// early by design, with `Ok`).
async fn next_failure(
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> Option<Result<anyhow::Result<()>, tokio::task::JoinError>> {
    loop {
        match tasks.join_next().await? {
            Ok(Ok(())) if !tasks.is_empty() => continue,
            other => return Some(other),
        }
    }
}

/// Returns once the persister's committed offsets reach the end of
/// `chat.events` (read again every 30 s, each time with a warning), or at
/// shutdown, which does not wait for the check in progress.
async fn wait_for_persister(
    kafka: streams::KafkaConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let kafka = kafka.clone();
        let check = tokio::task::spawn_blocking(move || {
            streams::ops::wait_caught_up(
                &kafka,
                persister::GROUP,
                topics::EVENTS,
                Duration::from_secs(30),
            )
        });
        let done = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            done = check => done??,
        };
        if done {
            return Ok(());
        }
        tracing::warn!("the persister is still catching up with chat.events; not ready");
    }
}

/// Runs a stage over every partition of `chat.events` in this process
/// (see [`streams::Assignment::All`]), reporting what it holds to `status`.
fn spawn_stage(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    kafka: &streams::KafkaConfig,
    (group, max_batch, fetch_wait): (&str, usize, Duration),
    stage: Arc<dyn streams::Stage>,
    status: Arc<StageStatus>,
    shutdown: &CancellationToken,
) {
    let spec = ConsumerSpec {
        group: group.into(),
        topics: vec![topics::EVENTS.into()],
        max_batch,
        fetch_wait,
        assignment: streams::Assignment::All,
        status,
    };
    let (kafka, token) = (kafka.clone(), shutdown.child_token());
    tasks.spawn(async move {
        run_stage(&kafka, spec, stage, token)
            .await
            .map_err(anyhow::Error::from)
    });
}

/// The router's deliveries for this process's own gateway node.
struct LocalGateway(Arc<Gateway>);

impl router::LocalInbox for LocalGateway {
    fn deliver(&self, delivery: &schemas::Delivery) {
        ingest::inbox::deliver(&self.0, delivery);
    }
}
