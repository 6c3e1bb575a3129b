//! The embedded Kafka-protocol broker: tansu in-process, its log in a libSQL
//! (SQLite) file under the data directory, so it survives a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::{Duration, SystemTime};

use rama::{Context, Service};
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_broker::service::services;
use tansu_storage::{BrokerRegistrationRequest, Storage, StorageContainer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};
use url::Url;

mod front;
pub use front::Fronted;

const CLUSTER_ID: &str = "chatflow";

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the broker's log must live under the working directory, {0} is not")]
    OutsideWorkingDir(String),
    #[error("bad broker address: {0}")]
    Address(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("broker: {0}")]
    Tansu(String),
}

/// A running broker; [`EmbeddedBroker::stop`] stops it.
///
/// It runs on a runtime of its own: the application's Kafka clients block
/// threads while they wait for the broker (a synchronous commit, a flush),
/// and on a shared runtime those waits could starve the broker that has
/// to answer them.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts the broker listening on `addr`, with its log in `db_file`,
    /// which must be a path relative to the process's working directory:
    /// tansu resolves `sqlite://` URLs against the working directory only.
    pub async fn start(addr: SocketAddr, db_file: &Path) -> Result<Self, BrokerError> {
        if db_file.is_absolute() {
            return Err(BrokerError::OutsideWorkingDir(
                db_file.display().to_string(),
            ));
        }
        if let Some(parent) = db_file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let storage = Url::parse(&format!("sqlite://{}", db_file.display()))
            .map_err(|e| BrokerError::Address(e.to_string()))?;
        let listener = Url::parse(&format!("tcp://{addr}"))
            .map_err(|e| BrokerError::Address(e.to_string()))?;
        let db_file = db_file.to_owned();
        let (built_tx, built_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("broker")
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = built_tx.send(Err(BrokerError::Io(e)));
                        return;
                    }
                };
                runtime.block_on(serve(storage, db_file, listener, built_tx, stop_rx));
                runtime.shutdown_timeout(Duration::from_secs(2));
            })?;
        built_rx
            .await
            .map_err(|_| BrokerError::Tansu("broker thread ended".into()))??;
        wait_listening(addr).await?;
        info!(%addr, "embedded broker listening");
        Ok(EmbeddedBroker {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and drops every connection. Call it after the
    /// stages have flushed their producers and committed their offsets.
    pub async fn stop(mut self) {
        self.shut();
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    fn shut(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.shut();
    }
}

async fn serve(
    storage: Url,
    db_file: PathBuf,
    listener: Url,
    built: oneshot::Sender<Result<(), BrokerError>>,
    stop: oneshot::Receiver<()>,
) {
    let running = match start_serving(storage, &db_file, &listener).await {
        Ok(running) => running,
        Err(e) => {
            let _ = built.send(Err(e));
            return;
        }
    };
    let _ = built.send(Ok(()));
    tokio::select! {
        result = running => {
            if let Err(e) = result {
                error!(error = %e, "embedded broker stopped");
            }
        }
        _ = stop => {}
    }
}

/// How often tansu's storage runs its maintenance (compaction, retention):
/// tansu's own default.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(600);

/// Builds tansu's libSQL storage behind a [`Fronted`] and returns the
/// broker's accept loop. This is what `tansu_broker::broker::Broker` does,
/// minus its terminal progress display (which only its builder turns off,
/// and its builder cannot take another storage).
async fn start_serving(
    storage: Url,
    db_file: &Path,
    listener: &Url,
) -> Result<impl std::future::Future<Output = Result<(), BrokerError>>, BrokerError> {
    let storage = StorageContainer::builder()
        .cluster_id(CLUSTER_ID)
        .node_id(tansu_broker::NODE_ID)
        .advertised_listener(listener.clone())
        .storage(storage)
        .silent(true)
        .build()
        .await
        .map_err(tansu)?;
    let storage = Fronted::new(storage);
    storage
        .register_broker(BrokerRegistrationRequest {
            broker_id: tansu_broker::NODE_ID,
            cluster_id: CLUSTER_ID.into(),
            incarnation_id: uuid::Uuid::new_v4(),
            rack: None,
        })
        .await
        .map_err(tansu)?;
    // The log's tables exist once the storage is built; nothing is served
    // before it is told to.
    index_record_keys(db_file).await?;
    let groups = Controller::with_storage(storage.clone()).map_err(tansu)?;
    let addr = listener
        .socket_addrs(|| None)
        .ok()
        .and_then(|a| a.first().copied())
        .ok_or_else(|| BrokerError::Address(listener.to_string()))?;
    let accept = TcpListener::bind(addr).await?;
    Ok(async move {
        let mut maintenance = tokio::time::interval(MAINTENANCE_INTERVAL);
        maintenance.tick().await;
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = accept.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            // Out of descriptors, say: the next try may do.
                            warn!(error = %e, "broker accept");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let service = services(CLUSTER_ID, groups.clone(), storage.clone(), None)
                        .map_err(tansu)?;
                    connections.spawn(async move {
                        if let Err(e) = service.serve(Context::default(), stream).await {
                            debug!(error = ?e, "broker connection ended");
                        }
                    });
                }
                _ = maintenance.tick() => {
                    let storage = storage.clone();
                    connections.spawn(async move {
                        if let Err(e) = storage.maintain(SystemTime::now()).await {
                            debug!(error = ?e, "broker maintenance");
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    })
}

/// An error of tansu's (its storage's, its broker's), as ours.
fn tansu(e: impl std::fmt::Debug) -> BrokerError {
    BrokerError::Tansu(format!("{e:?}"))
}

/// The index that keeps tansu's compaction linear.
const KEY_INDEX: &str = "chatflow_record_topition_k_offset";

/// Indexes the log's records by (partition, key, offset). tansu 0.6
/// compacts a `cleanup.policy=compact` topic (`chat.presence`) every ten
/// minutes by deleting, for every key with more than one record, the
/// records below its latest, and finds them by a range over offsets only:
/// each duplicated key costs a scan of its partition, and the whole broker
/// waits, since its storage serves one request at a time. 40,000 presence
/// records of 10,000 devices took 54 s (every producer timed out); with
/// this index, 0.1 s. An index on the broker's own database file, made
/// once; tansu's code is unchanged.
async fn index_record_keys(db_file: &Path) -> Result<(), BrokerError> {
    let db = libsql::Builder::new_local(db_file)
        .build()
        .await
        .map_err(|e| BrokerError::Tansu(format!("opening {}: {e}", db_file.display())))?;
    let connection = db
        .connect()
        .map_err(|e| BrokerError::Tansu(format!("opening {}: {e}", db_file.display())))?;
    connection
        .execute(
            &format!("create index if not exists {KEY_INDEX} on record (topition, k, offset_id)"),
            (),
        )
        .await
        .map_err(|e| BrokerError::Tansu(format!("indexing the log's keys: {e}")))?;
    Ok(())
}

async fn wait_listening(addr: SocketAddr) -> Result<(), BrokerError> {
    let mut last = None;
    for _ in 0..200 {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    Err(BrokerError::Io(last.unwrap_or_else(|| {
        std::io::Error::other("broker did not listen")
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The broker's log is indexed by key, and a lookup of one key's older
    /// records (what compaction deletes) uses that index instead of a scan
    /// of the partition.
    /// A directory of its own for a test's log, the log file in it and a
    /// free port for the broker.
    fn fresh_log() -> (PathBuf, PathBuf, SocketAddr) {
        let dir = PathBuf::from(".test-data").join(uuid::Uuid::new_v4().to_string());
        let db_file = dir.join("log.db");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        (dir, db_file, port)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_indexed_for_compaction() {
        let (dir, db_file, port) = fresh_log();
        let broker = EmbeddedBroker::start(port, &db_file).await.unwrap();

        let db = libsql::Builder::new_local(&db_file).build().await.unwrap();
        let connection = db.connect().unwrap();
        let mut rows = connection
            .query(
                "explain query plan select offset_id from record \
                 where topition = 1 and k = x'6b' and offset_id < 100",
                (),
            )
            .await
            .unwrap();
        let mut plan = String::new();
        while let Some(row) = rows.next().await.unwrap() {
            plan.push_str(&row.get::<String>(3).unwrap());
            plan.push('\n');
        }
        assert!(plan.contains(KEY_INDEX), "plan:\n{plan}");

        broker.stop().await;
        // A restart finds the index there and keeps it.
        let broker = EmbeddedBroker::start(port, &db_file).await.unwrap();
        broker.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    const TOPIC: &str = "front";
    const PARTITIONS: i32 = 4;
    const PER_PRODUCER: i64 = 300;
    const PRODUCERS: i64 = 3;

    /// Every partition of [`TOPIC`] from its start, until all that the
    /// producers write is read (or a minute passed), as (offset, value).
    fn read_from_start(consumer: &rdkafka::consumer::BaseConsumer) -> Vec<Vec<(i64, String)>> {
        use rdkafka::consumer::Consumer;
        use rdkafka::{Message, TopicPartitionList};
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(TOPIC, p, rdkafka::Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut seen: Vec<Vec<(i64, String)>> = vec![Vec::new(); PARTITIONS as usize];
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while seen.iter().map(Vec::len).sum::<usize>() < (PER_PRODUCER * PRODUCERS) as usize
            && std::time::Instant::now() < deadline
        {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
                seen[m.partition() as usize].push((m.offset(), value));
            }
        }
        seen
    }

    /// Producers write while a consumer polls with a short wait, so that
    /// most of its fetches find nothing new (the answers the front gives
    /// from memory): the consumer still gets every record once, in order,
    /// the watermarks it is told are the log's, and after a restart (an
    /// empty front) everything reads back the same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polls_answered_from_memory_never_hide_a_record() {
        use rdkafka::ClientConfig;
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::producer::{FutureProducer, FutureRecord};

        let (dir, db_file, port) = fresh_log();
        let broker = EmbeddedBroker::start(port, &db_file).await.unwrap();
        let servers = port.to_string();
        let config = |extra: &[(&str, &str)]| {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", &servers);
            for (k, v) in extra {
                c.set(*k, *v);
            }
            c
        };
        let admin: AdminClient<_> = config(&[]).create().unwrap();
        admin
            .create_topics(
                &[NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .unwrap();

        // The consumer polls from the start, before anything is written.
        let reader = std::thread::spawn({
            let config = config(&[("group.id", "front-test"), ("fetch.wait.max.ms", "5")]);
            move || read_from_start(&config.create().unwrap())
        });

        let mut writers = Vec::new();
        for w in 0..PRODUCERS {
            let producer: FutureProducer =
                config(&[("enable.idempotence", "true"), ("linger.ms", "0")])
                    .create()
                    .unwrap();
            writers.push(tokio::spawn(async move {
                for i in 0..PER_PRODUCER {
                    let value = format!("{w}-{i}");
                    let key = format!("k{}", i % 7);
                    producer
                        .send(
                            FutureRecord::to(TOPIC).key(&key).payload(&value),
                            Duration::from_secs(10),
                        )
                        .await
                        .unwrap();
                    if i % 50 == 0 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        let seen = tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();

        let check = |seen: &[Vec<(i64, String)>]| {
            let mut values: Vec<&String> = seen.iter().flatten().map(|(_, v)| v).collect();
            assert_eq!(
                values.len() as i64,
                PER_PRODUCER * PRODUCERS,
                "every record once"
            );
            values.sort();
            values.dedup();
            assert_eq!(
                values.len() as i64,
                PER_PRODUCER * PRODUCERS,
                "no record twice"
            );
            for partition in seen {
                let offsets: Vec<i64> = partition.iter().map(|(o, _)| *o).collect();
                let expected: Vec<i64> = (0..offsets.len() as i64).collect();
                assert_eq!(
                    offsets, expected,
                    "each partition read in order, without a gap"
                );
            }
        };
        check(&seen);

        let watermarks = |consumer: &BaseConsumer| {
            (0..PARTITIONS)
                .map(|p| {
                    consumer
                        .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                        .unwrap()
                })
                .collect::<Vec<_>>()
        };
        let lengths: Vec<(i64, i64)> = seen.iter().map(|p| (0, p.len() as i64)).collect();
        let probe: BaseConsumer = config(&[("group.id", "front-probe")]).create().unwrap();
        assert_eq!(
            watermarks(&probe),
            lengths,
            "high watermarks are the log's ends"
        );
        drop(probe);

        broker.stop().await;
        let broker = EmbeddedBroker::start(port, &db_file).await.unwrap();
        let again = tokio::task::spawn_blocking({
            let config = config(&[("group.id", "front-again"), ("fetch.wait.max.ms", "5")]);
            move || {
                let consumer: BaseConsumer = config.create().unwrap();
                let seen = read_from_start(&consumer);
                (watermarks(&consumer), seen)
            }
        })
        .await
        .unwrap();
        assert_eq!(again.0, lengths, "the same ends after a restart");
        assert_eq!(again.1, seen, "the same log after a restart");
        broker.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
