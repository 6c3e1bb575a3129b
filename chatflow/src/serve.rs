//! `chatflow serve`: the chosen services (all by default) in one process;
//! with `--kafka embedded`, also the broker and the schema registry.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use cli::{NodeArgs, Service, Supervisor};
use tokio_util::sync::CancellationToken;

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// The services this process runs, comma-separated.
    #[arg(
        long = "service",
        env = "CHATFLOW_SERVICES",
        value_delimiter = ',',
        default_value = "ingest,persister,router,indexer,archiver,notifier"
    )]
    pub services: Vec<ServiceName>,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub ingest: ingest::IngestArgs,
    #[command(flatten)]
    pub persister: persister::PersisterArgs,
    #[command(flatten)]
    pub router: router::RouterArgs,
    #[command(flatten)]
    pub indexer: indexer::IndexerArgs,
    #[command(flatten)]
    pub archiver: archiver::ArchiverArgs,
    #[command(flatten)]
    pub notifier: notifier::NotifierArgs,
    /// Built-in schema registry (embedded mode); `off` to not serve it.
    #[arg(long, env = "CHATFLOW_REGISTRY", default_value = "127.0.0.1:8081")]
    pub registry: String,
}

/// In the order they start: the gateway first, so that the router finds
/// its inbox; the persister before the router, whose membership reads the
/// store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum ServiceName {
    Ingest,
    Persister,
    Router,
    Indexer,
    Archiver,
    Notifier,
}

pub async fn run(mut args: ServeArgs) -> anyhow::Result<()> {
    args.services.sort();
    args.services.dedup();
    let data_dir = enter_data_dir(&args.node.data.data_dir)?;
    args.node.data.data_dir = data_dir.clone();
    let embedded = args.node.kafka.kafka == "embedded";
    // Every listener is bound before this process opens any connection of
    // its own: an outgoing connection's ephemeral port can otherwise take
    // a port it was told to listen on.
    let mut services: Vec<Box<dyn Service>> = Vec::new();
    let mut http = None;
    for name in &args.services {
        services.push(match name {
            ServiceName::Ingest => {
                let service = ingest::Service::bind(args.ingest.clone()).await?;
                http = Some(service.local_addr()?);
                Box::new(service)
            }
            ServiceName::Persister => Box::new(persister::Service(args.persister.clone())),
            ServiceName::Router => Box::new(router::Service(args.router.clone())),
            ServiceName::Indexer => Box::new(indexer::Service(args.indexer.clone())),
            ServiceName::Archiver => Box::new(archiver::Service(args.archiver.clone())),
            ServiceName::Notifier => Box::new(notifier::Service(args.notifier.clone())),
        });
    }
    let registry = match embedded {
        true => bind_registry(&args.registry).await?,
        false => None,
    };
    let broker = if embedded {
        // This process is the only one on its broker: its stages take
        // every partition, without a group to rejoin after a crash.
        args.node.assignment = streams::Assignment::All;
        Some(start_broker(args.node.kafka.kafka_listen).await?)
    } else {
        None
    };
    let result = async {
        let mut supervisor = Supervisor::start(args.node.clone(), services).await?;
        let registry = match registry {
            Some(listener) => {
                let addr = listener.local_addr()?;
                supervisor.spawn_last("registry", |token| {
                    Box::pin(serve_registry(listener, token))
                });
                Some(addr)
            }
            None => None,
        };
        if args.services.contains(&ServiceName::Persister)
            || args.services.contains(&ServiceName::Indexer)
        {
            let node = supervisor.node().clone();
            supervisor.spawn_last("switch", |token| {
                Box::pin(crate::switch::watch(node, token))
            });
        }
        banner(&args, http, broker.as_ref(), registry, &data_dir);
        supervisor.run().await
    }
    .await;
    // Every Kafka client of this process is closed by now.
    if let Some(b) = broker {
        b.stop().await;
    }
    result
}

fn banner(
    args: &ServeArgs,
    http: Option<SocketAddr>,
    broker: Option<&broker::EmbeddedBroker>,
    registry: Option<SocketAddr>,
    data_dir: &Path,
) {
    let names: Vec<_> = args.services.iter().map(|s| format!("{s:?}")).collect();
    println!("chatflow is up ({})", names.join(", ").to_lowercase());
    if let Some(http) = http {
        println!("  API and WebSocket   http://{http}  (ws://{http}/v1/ws)");
    }
    if let Some(b) = broker {
        println!("  Kafka (embedded)    {}", b.addr());
    }
    if let Some(r) = registry {
        println!("  schema registry     http://{r}");
    }
    if let Some(http) = http {
        println!("  metrics             http://{http}/metrics");
    }
    println!("  data                {}", data_dir.display());
    if args.services.contains(&ServiceName::Archiver) {
        println!("  event-log archive   {}", args.node.archive);
    }
    if let Some(http) = http.filter(|_| args.ingest.gateway.dev_auth) {
        println!("  dev login           POST http://{http}/v1/dev/token {{\"user_id\":\"alice\"}}");
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

/// The built-in schema registry's listener on `addr`, unless `off`.
pub async fn bind_registry(addr: &str) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    if addr == "off" {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the registry on {addr}"))?;
    Ok(Some(listener))
}

/// The built-in schema registry on `listener` until `shutdown`.
pub async fn serve_registry(
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, schemas::registry::router())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("serving the schema registry")
}
