//! What every chatflow process shares: flags (each with an env fallback),
//! the [`Node`] its services share, the one way to start and stop them
//! ([`Service`], [`Supervisor`]), tracing, metrics and shutdown signals.

mod node;
mod service;
mod switch;

pub use node::{Generations, LocalInbox, Node, NodeArgs, ReadyCheck};
pub use service::{Running, Service, Supervisor, run, together};
pub use switch::Switch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

#[derive(Args, Clone, Debug)]
pub struct KafkaArgs {
    /// `embedded` runs the broker in this process; otherwise `host:port[,…]`.
    #[arg(long, env = "CHATFLOW_KAFKA", default_value = "embedded")]
    pub kafka: String,
    /// Where the embedded broker listens (Kafka protocol).
    #[arg(long, env = "CHATFLOW_KAFKA_LISTEN", default_value = "127.0.0.1:9092")]
    pub kafka_listen: SocketAddr,
    /// How long producers may hold records to batch them (ms). Measured on
    /// two cores: 5 ms degrades far less past the knee (4,000 msgs/s: p99
    /// send→deliver 2.8 s at 1 ms, 126 ms at 5 ms) but costs ~8 ms p50 in a
    /// closed loop and does not raise the rate sustained at p99 ≤ 100 ms;
    /// 1 ms keeps delivery fast at normal load.
    #[arg(long, env = "CHATFLOW_LINGER_MS", default_value_t = 1)]
    pub linger_ms: u64,
    /// Any librdkafka property for every client, `key=value`, repeatable.
    #[arg(long = "kafka-option", value_parser = key_value)]
    pub kafka_options: Vec<(String, String)>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

impl KafkaArgs {
    /// The client settings every Kafka client of this process uses.
    pub fn config(&self) -> streams::KafkaConfig {
        let mut config = streams::KafkaConfig::new(self.brokers());
        config.linger = std::time::Duration::from_millis(self.linger_ms);
        config.extra = self.kafka_options.clone();
        config
    }

    pub fn brokers(&self) -> String {
        if self.kafka == "embedded" {
            self.kafka_listen.to_string()
        } else {
            self.kafka.clone()
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// Where the embedded broker's log, the store and the dev secret live.
    #[arg(long, env = "CHATFLOW_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

#[derive(Args, Clone, Debug)]
pub struct AuthArgs {
    /// HS256 secret for tokens. Default (embedded): a random one kept in `<data-dir>/dev-secret`.
    #[arg(long, env = "CHATFLOW_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// RS256: PEM file of the public key that verifies tokens (no tokens are issued then).
    #[arg(long, env = "CHATFLOW_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Message store: `fjall://<dir>` or `dynamodb://<table>?endpoint=<url>&region=<r>`.
    #[arg(long, env = "CHATFLOW_STORE", default_value = "fjall://store")]
    pub store: String,
}

#[derive(Args, Clone, Debug)]
pub struct TopicArgs {
    /// Partitions of chat.events when it is created (fixed for its life).
    #[arg(long, env = "CHATFLOW_EVENTS_PARTITIONS", default_value_t = 2)]
    pub events_partitions: i32,
    /// Replication factor of created topics.
    #[arg(long, env = "CHATFLOW_REPLICATION", default_value_t = 1)]
    pub replication: i32,
}

/// Broker long-poll bounds per consumer kind.
#[derive(Args, Clone, Debug)]
pub struct FetchArgs {
    /// Broker long-poll bound for hops on the delivery path (router, inbox).
    #[arg(long, env = "CHATFLOW_LIVE_FETCH_WAIT_MS", default_value_t = 10)]
    pub live_fetch_wait_ms: u64,
    /// Broker long-poll bound for the router's own read of `chat.events`
    /// when the gateway in its process hands it each event at the ack:
    /// that read only brings what was not handed over (events other
    /// producers wrote) and bounds how long such an event waits.
    #[arg(long, env = "CHATFLOW_BACKSTOP_FETCH_WAIT_MS", default_value_t = 250)]
    pub backstop_fetch_wait_ms: u64,
    /// Broker long-poll bound for the persister.
    #[arg(long, env = "CHATFLOW_STORE_FETCH_WAIT_MS", default_value_t = 50)]
    pub store_fetch_wait_ms: u64,
    /// Broker long-poll bound for the presence changelog (this node's own
    /// devices reach the in-process router directly).
    #[arg(long, env = "CHATFLOW_PRESENCE_FETCH_WAIT_MS", default_value_t = 200)]
    pub presence_fetch_wait_ms: u64,
    /// Broker long-poll bound for typing signals (shown for seconds: a
    /// tenth of a second more is not seen).
    #[arg(long, env = "CHATFLOW_SIGNALS_FETCH_WAIT_MS", default_value_t = 100)]
    pub signals_fetch_wait_ms: u64,
    /// Broker long-poll bound for the indexer and the archiver (neither is
    /// on the delivery path). Each indexer batch is one index commit, so
    /// this bounds both how often the index commits and how soon a new
    /// message is searchable.
    #[arg(long, env = "CHATFLOW_INDEX_FETCH_WAIT_MS", default_value_t = 1000)]
    pub index_fetch_wait_ms: u64,
    /// How often each stage commits the offsets it processed (0: after
    /// every batch). Each commit is a write on the broker; after a crash,
    /// up to this much is processed again (the sinks are idempotent).
    #[arg(long, env = "CHATFLOW_COMMIT_INTERVAL_MS", default_value_t = 1000)]
    pub commit_interval_ms: u64,
    /// Where one process runs several stages on every partition (embedded
    /// mode), one consumer reads `chat.events` for all of them, so that
    /// the broker serves each record once instead of once per stage; each
    /// stage still keeps its own group's offsets. `false`: a consumer per
    /// stage, as in distributed mode.
    #[arg(long, env = "CHATFLOW_SHARED_READ", default_value_t = true, action = clap::ArgAction::Set)]
    pub shared_read: bool,
}

/// The gateway's listener, identity and limits.
#[derive(Args, Clone, Debug)]
pub struct GatewayArgs {
    /// HTTP and WebSocket API.
    #[arg(long, env = "CHATFLOW_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// This gateway node's id, unique per node: its inbox is `chat.inbox.<node-id>`.
    #[arg(long, env = "CHATFLOW_NODE_ID", default_value = "node-1")]
    pub node_id: String,
    /// Serve `POST /v1/dev/token` (only allowed on a loopback address).
    #[arg(long, env = "CHATFLOW_DEV_AUTH", default_value_t = true, action = clap::ArgAction::Set)]
    pub dev_auth: bool,
    /// Idle sockets are closed after this many seconds without a frame.
    #[arg(long, env = "CHATFLOW_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Sends per second per user, and the burst allowed.
    #[arg(long, env = "CHATFLOW_RATE", default_value_t = 20.0)]
    pub rate: f64,
    #[arg(long, env = "CHATFLOW_RATE_BURST", default_value_t = 50.0)]
    pub rate_burst: f64,
    /// The largest attachment taken, in bytes.
    #[arg(long, env = "CHATFLOW_UPLOAD_MAX_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub upload_max_bytes: u64,
    /// A message may reference an upload this many seconds after it was
    /// announced; one no message references is removed a 24th of that later.
    #[arg(long, env = "CHATFLOW_UPLOAD_TTL_SECS", default_value_t = 24 * 3600)]
    pub upload_ttl_secs: u64,
    /// How often the gateway looks for uploads to remove, in seconds.
    #[arg(long, env = "CHATFLOW_UPLOAD_SWEEP_SECS", default_value_t = 3600)]
    pub upload_sweep_secs: u64,
}

impl FetchArgs {
    pub fn live_fetch_wait(&self) -> Duration {
        Duration::from_millis(self.live_fetch_wait_ms)
    }
    pub fn backstop_fetch_wait(&self) -> Duration {
        Duration::from_millis(self.backstop_fetch_wait_ms)
    }
    pub fn presence_fetch_wait(&self) -> Duration {
        Duration::from_millis(self.presence_fetch_wait_ms)
    }
    pub fn signals_fetch_wait(&self) -> Duration {
        Duration::from_millis(self.signals_fetch_wait_ms)
    }
    pub fn index_fetch_wait(&self) -> Duration {
        Duration::from_millis(self.index_fetch_wait_ms)
    }
    pub fn store_fetch_wait(&self) -> Duration {
        Duration::from_millis(self.store_fetch_wait_ms)
    }
}

impl GatewayArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.dev_auth && !self.http.ip().is_loopback() {
            bail!(
                "--dev-auth is only allowed when --http is a loopback address (it hands out tokens to anyone)"
            );
        }
        if self.rate <= 0.0 || self.rate_burst < 1.0 {
            bail!("--rate must be positive and --rate-burst at least 1");
        }
        if self.upload_max_bytes == 0 || self.upload_ttl_secs == 0 || self.upload_sweep_secs == 0 {
            bail!(
                "--upload-max-bytes, --upload-ttl-secs and --upload-sweep-secs must be at least 1"
            );
        }
        Ok(())
    }
}

/// The HS256 secret: the flag, or the dev secret in the data dir (made on
/// first use).
pub fn secret(auth: &AuthArgs, data_dir: &Path, create: bool) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &auth.jwt_secret {
        return Ok(s.as_bytes().to_vec());
    }
    let path = data_dir.join("dev-secret");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            std::fs::create_dir_all(data_dir)?;
            let secret = format!("{}{}", ulid::Ulid::new(), ulid::Ulid::new());
            std::fs::write(&path, &secret)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(secret.into_bytes())
        }
        Err(e) => Err(e).with_context(|| format!("reading {} (pass --jwt-secret)", path.display())),
    }
}

impl TopicArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.events_partitions < 1 || self.replication < 1 {
            bail!("--events-partitions and --replication must be at least 1");
        }
        Ok(())
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default filter.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "info,librdkafka=warn,rdkafka=warn,tansu=warn,tansu_broker=warn,tansu_storage=warn,\
                 tansu_sans_io=warn,tansu_service=warn"
                    .into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves once on Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = ctrl_c.await;
        return;
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

#[derive(Args, Clone, Debug)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at `http://<addr>/metrics` (stage binaries
    /// without an HTTP API of their own).
    #[arg(long, env = "CHATFLOW_METRICS")]
    pub metrics: Option<SocketAddr>,
}

/// Installs the Prometheus recorder every `metrics::` call reports to.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new()
        .set_buckets(&[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0,
        ])?
        .install_recorder()?)
}

/// The `/metrics` route, for any axum router.
pub fn metrics_route(handle: PrometheusHandle) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                handle.run_upkeep();
                handle.render()
            }
        }),
    )
}

/// Creates the DynamoDB table a `dynamodb://` URL names; false if it existed.
#[cfg(feature = "dynamodb")]
pub async fn create_table(url: &str) -> anyhow::Result<bool> {
    Ok(store::DynamoStore::connect(url)
        .await?
        .create_table()
        .await?)
}

#[cfg(not(feature = "dynamodb"))]
pub async fn create_table(_: &str) -> anyhow::Result<bool> {
    bail!(
        "this build has no DynamoDB support: cargo run --release --features dynamodb -- admin create-table …"
    )
}

#[derive(Args, Clone, Debug)]
pub struct SchemaRegistryArgs {
    /// A Confluent Schema Registry: chatflow's schemas are registered there
    /// (subjects `<topic>-value`, `chat.inbox-value` for every inbox) and
    /// records are framed with its ids. Without it, the compiled-in ids.
    #[arg(long, env = "CHATFLOW_SCHEMA_REGISTRY")]
    pub schema_registry: Option<String>,
}

/// Resolves and installs the registry's schema ids; call it before any
/// codec is made.
pub async fn use_schema_registry(args: &SchemaRegistryArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.schema_registry {
        let ids = schemas::registry_client::resolve(url).await?;
        ids.install();
        tracing::info!(registry = %url, ?ids, "schema ids from the registry");
    }
    Ok(())
}

/// Replaces the file at `path` whole, making its directory if need be: the
/// bytes go to `<path>.tmp` first and are renamed over it, so a crash
/// leaves the old file or the new one, never a part.
pub fn write_whole(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::GatewayArgs;

    #[derive(Parser)]
    struct Gateway {
        #[command(flatten)]
        args: GatewayArgs,
    }

    fn validate(argv: &[&str]) -> anyhow::Result<()> {
        let argv = std::iter::once("gateway").chain(argv.iter().copied());
        Gateway::try_parse_from(argv)?.args.validate()
    }

    #[test]
    fn dev_login_is_refused_off_loopback() {
        // On by default, which is only allowed on a loopback address.
        assert!(validate(&[]).is_ok());
        assert!(validate(&["--http", "[::1]:8080"]).is_ok());
        let refused = validate(&["--http", "0.0.0.0:8080"]).unwrap_err();
        assert!(refused.to_string().contains("--dev-auth"), "{refused}");
        assert!(validate(&["--http", "10.0.0.5:8080", "--dev-auth", "true"]).is_err());
        assert!(validate(&["--http", "0.0.0.0:8080", "--dev-auth", "false"]).is_ok());
    }
}
