//! The all-in-one process: broker, registry, persister, router and gateway
//! as tasks under one cancellation token.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::routing::get;
use ingest::auth::Auth;
use ingest::{Gateway, GatewayConfig, Limits};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use store::{FjallStore, Store};
use streams::topics::{self, TopicSpec};
use streams::{ConsumerSpec, KafkaConfig, Producer, run_stage};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::{self, ServeArgs};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    args.validate()?;
    let metrics = PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])?
        .install_recorder()
        .context("installing the metrics recorder")?;

    std::fs::create_dir_all(&args.data.data_dir)
        .with_context(|| format!("creating {}", args.data.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data.data_dir)?;
    let secret = match &args.auth.jwt_public_key {
        Some(_) => None,
        None => Some(config::secret(&args.auth, &data_dir, true)?),
    };
    // The embedded broker resolves its log path against the working
    // directory only, so the process works from inside its data dir.
    std::env::set_current_dir(&data_dir)?;

    let shutdown = CancellationToken::new();
    let broker = if args.kafka.kafka == "embedded" {
        let b = broker::EmbeddedBroker::start(
            args.kafka.kafka_listen,
            std::path::Path::new("log/chatflow.db"),
        )
        .await
        .context("starting the embedded broker")?;
        Some(b)
    } else {
        None
    };
    let kafka = KafkaConfig::new(args.kafka.brokers());
    topics::ensure(
        &kafka,
        &[
            TopicSpec::events(args.events_partitions),
            TopicSpec::signals(1),
            TopicSpec::presence(1),
            TopicSpec::inbox(&args.node_id),
            TopicSpec::dlq(persister::GROUP),
            TopicSpec::dlq(router::GROUP),
        ],
        args.replication,
    )
    .await
    .context("creating topics")?;

    let store: Arc<dyn Store> = open_store(&args.store)?;
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
        rate_per_sec: args.rate,
        rate_burst: args.rate_burst,
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        ..Limits::default()
    };
    let presence = router::PresenceView::default();
    let mut gateway = Gateway::new(
        GatewayConfig {
            node_id: args.node_id.clone(),
            limits,
            dev_auth: args.dev_auth,
        },
        auth,
        store.clone(),
        producer.clone(),
    );
    if args.local_delivery {
        let view = presence.clone();
        gateway = gateway.with_presence_hook(Arc::new(move |p| view.apply(p)));
    }
    let gateway = Arc::new(gateway);

    let mut tasks = JoinSet::new();
    // The router must know who is online before it routes anything.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut threads = vec![router::presence::follow(
        &kafka,
        presence.clone(),
        args.presence_fetch_wait(),
        ready_tx,
        shutdown.child_token(),
    )?];
    let _ = tokio::time::timeout(Duration::from_secs(30), ready_rx).await;
    if !args.local_delivery {
        let (inbox_thread, inbox_ready) = ingest::inbox::start(
            gateway.clone(),
            &kafka,
            args.live_fetch_wait(),
            shutdown.child_token(),
        )?;
        let _ = tokio::time::timeout(Duration::from_secs(30), inbox_ready).await;
        threads.push(inbox_thread);
    }

    let persister = Arc::new(persister::Persister::new(store.clone()));
    spawn_stage(
        &mut tasks,
        &kafka,
        persister::GROUP,
        1000,
        args.store_fetch_wait(),
        persister,
        &shutdown,
    );
    let mut router = router::RouterStage::new(store.clone(), presence, producer.clone());
    if args.local_delivery {
        router = router.with_local_inbox(&args.node_id, Arc::new(LocalGateway(gateway.clone())));
    }
    spawn_stage(
        &mut tasks,
        &kafka,
        router::GROUP,
        500,
        args.live_fetch_wait(),
        Arc::new(router),
        &shutdown,
    );

    let registry_addr = if args.registry != "off" && args.kafka.kafka == "embedded" {
        let listener = tokio::net::TcpListener::bind(&args.registry)
            .await
            .with_context(|| format!("binding the registry on {}", args.registry))?;
        let addr = listener.local_addr()?;
        let token = shutdown.child_token();
        tasks.spawn(async move {
            axum::serve(listener, schemas::registry::router())
                .with_graceful_shutdown(token.cancelled_owned())
                .await
                .map_err(anyhow::Error::from)
        });
        Some(addr)
    } else {
        None
    };

    let app =
        ingest::router(gateway.clone()).route("/metrics", get(move || render(metrics.clone())));
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding {}", args.http))?;
    let http_addr = listener.local_addr()?;
    {
        let token = shutdown.child_token();
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
                .map_err(anyhow::Error::from)
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
    if args.dev_auth {
        println!(
            "  dev login           POST http://{http_addr}/v1/dev/token {{\"user_id\":\"alice\"}}"
        );
    }

    let failed = tokio::select! {
        _ = stop_signal() => { info!("shutting down"); false }
        Some(result) = tasks.join_next() => {
            error!(?result, "a task ended early, shutting everything down");
            true
        }
    };
    shutdown.cancel();
    for socket in gateway.hub.all() {
        socket.close(1001, "server shutting down");
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

/// Runs a stage over `chat.events` in its consumer group.
fn spawn_stage(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    kafka: &KafkaConfig,
    group: &str,
    max_batch: usize,
    fetch_wait: Duration,
    stage: Arc<dyn streams::Stage>,
    shutdown: &CancellationToken,
) {
    let spec = ConsumerSpec {
        group: group.into(),
        topics: vec![topics::EVENTS.into()],
        max_batch,
        fetch_wait,
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

fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    match url.split_once("://") {
        Some(("fjall", path)) => Ok(Arc::new(FjallStore::open(std::path::Path::new(path))?)),
        _ => bail!("unsupported --store {url:?} (this build knows fjall://<dir>)"),
    }
}

async fn render(handle: PrometheusHandle) -> String {
    handle.run_upkeep();
    handle.render()
}

async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
