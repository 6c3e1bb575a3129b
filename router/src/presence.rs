//! The router's view of `chat.presence`: which node holds each online
//! device. Rebuilt at start by reading the changelog from its beginning.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use schemas::{Codec, DevicePresence};
use streams::{KafkaConfig, KafkaError, topics};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// user → device → node
#[derive(Clone, Default)]
pub struct PresenceView {
    online: Arc<RwLock<HashMap<String, HashMap<String, String>>>>,
}

impl PresenceView {
    pub fn apply(&self, p: &DevicePresence) {
        let Ok(mut online) = self.online.write() else { return };
        let devices = online.entry(p.user_id.clone()).or_default();
        if p.online {
            devices.insert(p.device_id.clone(), p.node.clone());
        } else if devices.get(&p.device_id) == Some(&p.node) {
            // Only the node that holds the device may take it offline: a
            // late "offline" from a node the device left must not win.
            devices.remove(&p.device_id);
        }
        if devices.is_empty() {
            online.remove(&p.user_id);
        }
    }

    /// `(node, "user/device")` for every online device of `user_id`.
    pub fn devices_of(&self, user_id: &str, out: &mut Vec<(String, String)>) {
        let Ok(online) = self.online.read() else { return };
        if let Some(devices) = online.get(user_id) {
            for (device, node) in devices {
                out.push((node.clone(), format!("{user_id}/{device}")));
            }
        }
    }

    pub fn is_online(&self, user_id: &str) -> bool {
        self.online.read().is_ok_and(|o| o.contains_key(user_id))
    }
}

/// Follows `chat.presence` into `view` until `shutdown`; `ready` fires once
/// the view holds everything that was on the topic when it started.
pub fn follow(
    config: &KafkaConfig,
    view: PresenceView,
    fetch_wait: Duration,
    ready: oneshot::Sender<()>,
    shutdown: CancellationToken,
) -> Result<std::thread::JoinHandle<()>, KafkaError> {
    let consumer: BaseConsumer = config.reader(fetch_wait).create()?;
    let metadata = consumer.fetch_metadata(Some(topics::PRESENCE), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut targets = HashMap::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topics::PRESENCE) {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topics::PRESENCE, p.id(), Duration::from_secs(10))?;
            tpl.add_partition_offset(topics::PRESENCE, p.id(), Offset::Offset(low))?;
            if high > low {
                targets.insert(p.id(), high);
            }
        }
    }
    consumer.assign(&tpl)?;
    let codec = Codec::new();
    // A blocking consumer on its own thread: the view is tiny to update and
    // this keeps the poll loop off the async workers.
    Ok(std::thread::spawn(move || {
        let mut ready = Some(ready);
        let mut applied = 0u64;
        while !shutdown.is_cancelled() {
            if targets.is_empty() {
                if let Some(r) = ready.take() {
                    info!(records = applied, "presence view caught up");
                    let _ = r.send(());
                }
            }
            let Some(result) = consumer.poll(Duration::from_millis(100)) else { continue };
            let m = match result {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "presence poll failed");
                    continue;
                }
            };
            match m.payload().map(|p| codec.decode::<DevicePresence>(p)) {
                Some(Ok(p)) => view.apply(&p),
                Some(Err(e)) => warn!(offset = m.offset(), error = %e, "undecodable presence record skipped"),
                None => {}
            }
            applied += 1;
            if targets.get(&m.partition()).is_some_and(|high| m.offset() + 1 >= *high) {
                targets.remove(&m.partition());
            }
        }
    }))
}
