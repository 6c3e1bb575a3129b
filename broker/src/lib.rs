//! The embedded Kafka-protocol broker: tansu in-process, its log in a libSQL
//! (SQLite) file under the data directory, so it survives a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;
use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{error, info};
use url::Url;

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
    let broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
        .node_id(tansu_broker::NODE_ID)
        .cluster_id("chatflow")
        .incarnation_id(uuid::Uuid::new_v4())
        .advertised_listener(listener.clone())
        .storage(storage)
        .listener(listener)
        .silent(true)
        .build()
        .await;
    let mut broker = match broker {
        Ok(b) => b,
        Err(e) => {
            let _ = built.send(Err(BrokerError::Tansu(format!("{e:?}"))));
            return;
        }
    };
    // The log's tables exist once the broker is built; it serves nothing
    // before it is told to.
    if let Err(e) = index_record_keys(&db_file).await {
        let _ = built.send(Err(e));
        return;
    }
    let _ = built.send(Ok(()));
    tokio::select! {
        result = broker.serve(Instant::now()) => {
            if let Err(e) = result {
                error!(error = ?e, "embedded broker stopped");
            }
        }
        _ = stop => {}
    }
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
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_indexed_for_compaction() {
        let dir = PathBuf::from(".test-data").join(uuid::Uuid::new_v4().to_string());
        let db_file = dir.join("log.db");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
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
}
