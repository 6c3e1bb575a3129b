//! What the services started in one process share: their flags, the Kafka
//! client settings, and the store, index, producer and presence view, each
//! opened once on first use.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use archive::Archive;
use chat::presence::PresenceView;
use clap::Args;
use metrics_exporter_prometheus::PrometheusHandle;
use search::SearchIndex;
use store::{Store, Tiered};
use streams::{Assignment, ConsumerSpec, KafkaConfig, Producer, Record, SharedRead, Stage};
use tokio::sync::{OnceCell, mpsc};
use tokio_util::sync::CancellationToken;
use vault::{MasterKey, Vault};

use crate::switch::Switch;
use crate::{
    DataArgs, FetchArgs, KafkaArgs, MetricsArgs, SchemaRegistryArgs, StoreArgs, TopicArgs,
};

/// Flags every chatflow process takes, whichever services it runs.
#[derive(Args, Clone, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Search index: `tantivy://<dir>` or
    /// `opensearch+http(s)://<host:port>[/<index>]`. Default where the
    /// indexer runs: `tantivy://search`; a gateway without it answers
    /// `GET /v1/search` with 503.
    #[arg(long, env = "CHATFLOW_SEARCH")]
    pub search: Option<String>,
    /// Object storage for the event-log archive and the message cold
    /// tier: `file://<dir>` or `s3://bucket[/prefix][?endpoint=<url>]`
    /// (AWS credentials and region from the usual environment).
    #[arg(long, env = "CHATFLOW_ARCHIVE", default_value = "file://archive")]
    pub archive: String,
    /// The key that wraps each user's data key (crypto-shredding): base64
    /// of 32 bytes (`openssl rand -base64 32`), the same for every process
    /// of a deployment. Default: `<data-dir>/master-key`, made at first use.
    #[arg(long, env = "CHATFLOW_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub schema_registry: SchemaRegistryArgs,
    /// Where the gateway and the router run in one process, the router
    /// hands this node's deliveries straight to its sockets; `false` sends
    /// them through `chat.inbox.<node-id>` as separate processes do.
    #[arg(long, env = "CHATFLOW_LOCAL_DELIVERY", default_value_t = true, action = clap::ArgAction::Set)]
    pub local_delivery: bool,
    /// How this process's stages take partitions of their topics: a
    /// consumer group (default), or all of them (set by `chatflow serve`
    /// when it runs the broker itself, see [`Assignment::All`]).
    #[arg(skip)]
    pub assignment: Assignment,
}

/// `<data dir>/generations.json`: the store and index an operator switched
/// to (`chatflow switch`); they win over `--store` and `--search` from
/// then on, so that a restart keeps serving what was switched to.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Generations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persister: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexer: Option<String>,
}

impl Generations {
    fn path(data_dir: &std::path::Path) -> PathBuf {
        data_dir.join("generations.json")
    }

    /// None set when the file is absent or unreadable (logged).
    pub fn load(data_dir: &std::path::Path) -> Generations {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::error!(path = %path.display(), error = %e, "ignoring an unreadable generation pointer");
                Generations::default()
            }),
            Err(_) => Generations::default(),
        }
    }

    /// Replaces the file whole (a crash leaves the old or the new one).
    pub fn save(&self, data_dir: &std::path::Path) -> anyhow::Result<()> {
        crate::write_whole(&Self::path(data_dir), &serde_json::to_vec_pretty(self)?)
    }
}

/// A check of whether this process may take writes: `Some(reason)` if not.
/// Events handed over and not yet taken by the router; past this the
/// gateway stops handing over and the router's own read brings them.
const HANDOVER_CAPACITY: usize = 65_536;

pub type ReadyCheck = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// This process's deliveries for its own gateway node, handed over without
/// the hop through `chat.inbox.<node>`.
pub type LocalInbox = Arc<dyn Fn(&schemas::Delivery) + Send + Sync>;

/// The hot store as served now, and the tiered view every service uses.
type Stores = (Arc<Switch<dyn Store>>, Arc<Tiered>);

pub struct Node {
    pub args: NodeArgs,
    pub kafka: KafkaConfig,
    /// The services this process runs.
    pub services: Vec<&'static str>,
    pub metrics: PrometheusHandle,
    /// Cancelled once the stages have stopped: ends the followers.
    followers: CancellationToken,
    store: OnceCell<Stores>,
    search: OnceCell<Option<Arc<Switch<dyn SearchIndex>>>>,
    archive: OnceCell<Arc<dyn Archive>>,
    vault: OnceCell<Arc<Vault>>,
    producer: OnceCell<Producer>,
    presence: OnceCell<PresenceView>,
    shared_read: std::sync::OnceLock<Option<Arc<SharedRead>>>,
    shared_reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
    local_inbox: Mutex<Option<(String, LocalInbox)>>,
    handed: Mutex<Option<mpsc::Receiver<Record>>>,
    readiness: Arc<RwLock<Vec<ReadyCheck>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Node {
    pub(crate) fn new(
        args: NodeArgs,
        services: Vec<&'static str>,
        metrics: PrometheusHandle,
        followers: CancellationToken,
    ) -> Node {
        Node {
            kafka: args.kafka.config(),
            args,
            services,
            metrics,
            followers,
            store: OnceCell::new(),
            search: OnceCell::new(),
            archive: OnceCell::new(),
            vault: OnceCell::new(),
            producer: OnceCell::new(),
            presence: OnceCell::new(),
            shared_read: std::sync::OnceLock::new(),
            shared_reader: Mutex::default(),
            local_inbox: Mutex::default(),
            handed: Mutex::default(),
            readiness: Arc::default(),
            threads: Mutex::default(),
        }
    }

    pub fn runs(&self, service: &str) -> bool {
        self.services.contains(&service)
    }

    /// The gateway and the router share this process and deliver directly.
    pub fn delivers_locally(&self) -> bool {
        self.args.local_delivery && self.runs("ingest") && self.runs("router")
    }

    pub fn assignment(&self) -> Assignment {
        self.args.assignment
    }

    pub fn data_dir(&self) -> &PathBuf {
        &self.args.data.data_dir
    }

    /// The store as every service reads and writes it: the hot store with
    /// the cold tier behind it (see [`store::Tiered`]).
    pub async fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(self.tiered().await?)
    }

    pub async fn tiered(&self) -> anyhow::Result<Arc<Tiered>> {
        Ok(self.stores().await?.1.clone())
    }

    /// The hot store as served now, replaceable while the process runs
    /// (`chatflow switch persister`).
    pub async fn store_switch(&self) -> anyhow::Result<Arc<Switch<dyn Store>>> {
        Ok(self.stores().await?.0.clone())
    }

    async fn stores(&self) -> anyhow::Result<&Stores> {
        self.store
            .get_or_try_init(|| async {
                let url = self
                    .generations()
                    .persister
                    .unwrap_or_else(|| self.args.store.store.clone());
                let hot = store::open(&url)
                    .await
                    .with_context(|| format!("opening the store {url}"))?;
                let switch = Arc::new(Switch::new(&url, hot));
                let tiered = Arc::new(Tiered::new(switch.clone(), self.archive().await?));
                Ok::<_, anyhow::Error>((switch, tiered))
            })
            .await
    }

    /// The read models an operator switched this data dir to.
    pub fn generations(&self) -> Generations {
        Generations::load(self.data_dir())
    }

    /// The search index, if this process has one.
    pub async fn search(&self) -> anyhow::Result<Option<Arc<dyn SearchIndex>>> {
        Ok(self
            .search_switch()
            .await?
            .map(|s| s as Arc<dyn SearchIndex>))
    }

    /// The search index as served now, replaceable while the process runs
    /// (`chatflow switch indexer`).
    pub async fn search_switch(&self) -> anyhow::Result<Option<Arc<Switch<dyn SearchIndex>>>> {
        let index = self
            .search
            .get_or_try_init(|| async {
                let configured = self
                    .args
                    .search
                    .clone()
                    .or_else(|| self.runs("indexer").then(|| "tantivy://search".into()));
                let Some(configured) = configured else {
                    return Ok(None);
                };
                let url = self.generations().indexer.unwrap_or(configured);
                search::open(&url)
                    .await
                    .map(|index| Some(Arc::new(Switch::new(&url, index))))
                    .with_context(|| format!("opening the search index {url}"))
            })
            .await?;
        Ok(index.clone())
    }

    /// The object storage behind the archive and the cold tier.
    pub async fn archive(&self) -> anyhow::Result<Arc<dyn Archive>> {
        let url = &self.args.archive;
        let archive = self
            .archive
            .get_or_try_init(|| async { archive::open(url).await })
            .await
            .with_context(|| format!("opening the archive {url}"))?;
        Ok(archive.clone())
    }

    /// The users' data keys (see the `vault` crate), in the archive.
    pub async fn vault(&self) -> anyhow::Result<Arc<Vault>> {
        let vault = self
            .vault
            .get_or_try_init(|| async {
                let master =
                    MasterKey::configured(self.args.master_key.as_deref(), self.data_dir())?;
                anyhow::Ok(Arc::new(Vault::new(self.archive().await?, master)))
            })
            .await
            .context("opening the key vault")?;
        Ok(vault.clone())
    }

    pub async fn producer(&self) -> anyhow::Result<Producer> {
        let producer = self
            .producer
            .get_or_try_init(|| async { Producer::new(&self.kafka) })
            .await
            .context("creating the Kafka producer")?;
        Ok(producer.clone())
    }

    /// Who is online, from `chat.presence`, followed from its start by one
    /// thread per process; returns once the view holds everything already
    /// on the topic (or after 30 s, with a warning).
    pub async fn presence(&self) -> anyhow::Result<PresenceView> {
        let view = self
            .presence
            .get_or_try_init(|| async {
                let view = PresenceView::default();
                let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
                let apply = view.clone();
                let thread = streams::follow::presence(
                    &self.kafka,
                    self.presence_fetch_wait(),
                    ready_tx,
                    self.followers.clone(),
                    move |p| apply.apply(p),
                )
                .context("following chat.presence")?;
                self.adopt(thread);
                if tokio::time::timeout(Duration::from_secs(30), ready_rx)
                    .await
                    .is_err()
                {
                    tracing::warn!("chat.presence not read to its end in 30 s; going on");
                }
                anyhow::Ok(view)
            })
            .await?;
        Ok(view.clone())
    }

    /// A router that routes other nodes' devices learns of them only from
    /// the changelog: it reads it as often as the delivery path; a gateway
    /// (or a router whose gateway tells it directly) can wait longer.
    fn presence_fetch_wait(&self) -> Duration {
        if self.runs("router") && !self.delivers_locally() {
            self.args.fetch.live_fetch_wait()
        } else {
            self.args.fetch.presence_fetch_wait()
        }
    }

    /// A consumer of `chat.events` in `group`, taking partitions as this
    /// process does.
    pub fn events_spec(&self, group: &str, max_batch: usize, fetch_wait: Duration) -> ConsumerSpec {
        ConsumerSpec {
            group: group.into(),
            topics: vec![streams::topics::EVENTS.into()],
            max_batch,
            fetch_wait,
            assignment: self.assignment(),
            commit_every: Duration::from_millis(self.args.fetch.commit_interval_ms),
            ..Default::default()
        }
    }

    /// Runs `stage` as `spec` says until `shutdown` (see [`streams::run_stage`]).
    /// Where this process takes every partition (embedded mode), the
    /// stages reading `chat.events` share one read of it
    /// ([`streams::SharedRead`]) unless `--shared-read false`.
    pub fn run_stage(
        &self,
        spec: ConsumerSpec,
        stage: Arc<dyn Stage>,
        shutdown: CancellationToken,
    ) -> crate::Running {
        // A stage that wants records sooner than the shared read brings
        // them (the router without the hand-over) reads for itself.
        let shared = (spec.assignment == Assignment::All
            && spec.topics == [streams::topics::EVENTS]
            && spec.fetch_wait >= self.args.fetch.store_fetch_wait())
        .then(|| self.shared_read())
        .flatten();
        let kafka = self.kafka.clone();
        Box::pin(async move {
            match shared {
                Some(read) => Ok(read.run_stage(spec, stage, shutdown).await?),
                None => Ok(streams::run_stage(&kafka, spec, stage, shutdown).await?),
            }
        })
    }

    /// This process's one read of `chat.events`, started on first use; it
    /// brings records as often as the persister wants them.
    fn shared_read(&self) -> Option<Arc<SharedRead>> {
        self.shared_read
            .get_or_init(|| {
                if !self.args.fetch.shared_read {
                    return None;
                }
                let wait = self.args.fetch.store_fetch_wait();
                match SharedRead::start(&self.kafka, wait, self.followers.clone()) {
                    Ok((read, reader)) => {
                        *lock(&self.shared_reader) = Some(reader);
                        Some(Arc::new(read))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "no shared read: each stage reads for itself");
                        None
                    }
                }
            })
            .clone()
    }

    /// The token a follower thread of this process stops on.
    pub fn followers(&self) -> CancellationToken {
        self.followers.clone()
    }

    /// Joins `thread` at shutdown, after the stages stopped.
    pub fn adopt(&self, thread: std::thread::JoinHandle<()>) {
        lock(&self.threads).push(thread);
    }

    /// The inbox of gateway node `node_id`, running in this process.
    pub fn set_local_inbox(&self, node_id: &str, inbox: LocalInbox) {
        *lock(&self.local_inbox) = Some((node_id.to_owned(), inbox));
    }

    /// The node id and inbox of the gateway in this process, if it
    /// delivers locally.
    pub fn local_inbox(&self) -> Option<(String, LocalInbox)> {
        if !self.delivers_locally() {
            return None;
        }
        lock(&self.local_inbox).clone()
    }

    /// Adds a condition for taking writes (a stage holding partitions, the
    /// store caught up with the log).
    /// The channel on which this process's gateway hands its router each
    /// event it produced, at the broker's ack (see `router::Sequenced`).
    pub fn hand_events_over(&self) -> mpsc::Sender<Record> {
        let (tx, rx) = mpsc::channel(HANDOVER_CAPACITY);
        *lock(&self.handed) = Some(rx);
        tx
    }

    /// The events the gateway hands over, for the router; `None` when no
    /// gateway in this process does.
    pub fn take_handed_events(&self) -> Option<mpsc::Receiver<Record>> {
        lock(&self.handed).take()
    }

    pub fn require(&self, check: impl Fn() -> Option<String> + Send + Sync + 'static) {
        self.readiness
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(check));
    }

    /// Why this process may not take writes yet, if it may not: every
    /// condition the services added, in the order they added them.
    pub fn readiness(&self) -> impl Fn() -> Option<String> + Send + Sync + 'static {
        let checks = self.readiness.clone();
        move || {
            let checks = checks.read().unwrap_or_else(|e| e.into_inner());
            checks.iter().find_map(|check| check())
        }
    }

    /// Flushes the producer and joins the follower threads: call it once
    /// every service has stopped.
    pub(crate) async fn close(&self) -> anyhow::Result<()> {
        self.followers.cancel();
        let reader = lock(&self.shared_reader).take();
        if let Some(reader) = reader {
            reader.await.context("the shared read")?;
        }
        lock(&self.local_inbox).take();
        lock(&self.handed).take();
        if let Some(producer) = self.producer.get() {
            producer
                .flush(Duration::from_secs(10))
                .context("flushing the producer")?;
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(|t| t.join())
                .filter(Result::is_err)
                .count()
        })
        .await?;
        if joined > 0 {
            bail!("{joined} follower threads panicked");
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
