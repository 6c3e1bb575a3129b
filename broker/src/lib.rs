//! The embedded Kafka-protocol broker: tansu in-process, its log in a libSQL
//! (SQLite) file under the data directory, so it survives a restart.

use std::net::SocketAddr;
use std::path::Path;

use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
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

/// A running broker; dropping it does not stop it, [`EmbeddedBroker::stop`] does.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    task: JoinHandle<()>,
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
        let mut broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(tansu_broker::NODE_ID)
            .cluster_id("chatflow")
            .incarnation_id(uuid::Uuid::new_v4())
            .advertised_listener(listener.clone())
            .storage(storage)
            .listener(listener)
            .silent(true)
            .build()
            .await
            .map_err(|e| BrokerError::Tansu(format!("{e:?}")))?;
        let task = tokio::spawn(async move {
            if let Err(e) = broker.serve(Instant::now()).await {
                error!(error = ?e, "embedded broker stopped");
            }
        });
        wait_listening(addr).await?;
        info!(%addr, "embedded broker listening");
        Ok(EmbeddedBroker { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and drops every connection. Call it after the
    /// stages have flushed their producers and committed their offsets.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
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
