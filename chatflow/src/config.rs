//! Flags shared by the subcommands (each with an env fallback), validated
//! once into what the services take.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct KafkaArgs {
    /// `embedded` runs the broker in this process; otherwise `host:port[,…]`.
    #[arg(long, env = "CHATFLOW_KAFKA", default_value = "embedded")]
    pub kafka: String,
    /// Where the embedded broker listens (Kafka protocol).
    #[arg(long, env = "CHATFLOW_KAFKA_LISTEN", default_value = "127.0.0.1:9092")]
    pub kafka_listen: SocketAddr,
}

impl KafkaArgs {
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
pub struct ServeArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// HTTP and WebSocket API.
    #[arg(long, env = "CHATFLOW_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Built-in schema registry (embedded mode); `off` to not serve it.
    #[arg(long, env = "CHATFLOW_REGISTRY", default_value = "127.0.0.1:8081")]
    pub registry: String,
    /// Message store: `fjall://<dir>` (relative to the data dir).
    #[arg(long, env = "CHATFLOW_STORE", default_value = "fjall://store")]
    pub store: String,
    /// This gateway node's id: its inbox is `chat.inbox.<node-id>`.
    #[arg(long, env = "CHATFLOW_NODE_ID", default_value = "node-1")]
    pub node_id: String,
    /// Partitions of chat.events when it is created (fixed for its life).
    #[arg(long, env = "CHATFLOW_EVENTS_PARTITIONS", default_value_t = 2)]
    pub events_partitions: i32,
    /// Replication factor of created topics.
    #[arg(long, env = "CHATFLOW_REPLICATION", default_value_t = 1)]
    pub replication: i32,
    /// Broker long-poll bound for hops on the delivery path (router, inbox).
    #[arg(long, env = "CHATFLOW_LIVE_FETCH_WAIT_MS", default_value_t = 10)]
    pub live_fetch_wait_ms: u64,
    /// Broker long-poll bound for the persister.
    #[arg(long, env = "CHATFLOW_STORE_FETCH_WAIT_MS", default_value_t = 50)]
    pub store_fetch_wait_ms: u64,
    /// Broker long-poll bound for the presence changelog (this node's own
    /// devices reach the in-process router directly).
    #[arg(long, env = "CHATFLOW_PRESENCE_FETCH_WAIT_MS", default_value_t = 200)]
    pub presence_fetch_wait_ms: u64,
    /// The in-process router hands this node's deliveries straight to its
    /// sockets; `false` sends them through `chat.inbox.<node-id>` as
    /// separate processes do.
    #[arg(long, env = "CHATFLOW_LOCAL_DELIVERY", default_value_t = true, action = clap::ArgAction::Set)]
    pub local_delivery: bool,
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
}

impl ServeArgs {
    pub fn live_fetch_wait(&self) -> Duration {
        Duration::from_millis(self.live_fetch_wait_ms)
    }
    pub fn presence_fetch_wait(&self) -> Duration {
        Duration::from_millis(self.presence_fetch_wait_ms)
    }
    pub fn store_fetch_wait(&self) -> Duration {
        Duration::from_millis(self.store_fetch_wait_ms)
    }
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.dev_auth && !self.http.ip().is_loopback() {
            bail!(
                "--dev-auth is only allowed when --http is a loopback address (it hands out tokens to anyone)"
            );
        }
        if self.events_partitions < 1 {
            bail!("--events-partitions must be at least 1");
        }
        if self.rate <= 0.0 || self.rate_burst < 1.0 {
            bail!("--rate must be positive and --rate-burst at least 1");
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
