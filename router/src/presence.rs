//! The router's view of `chat.presence`: which node holds each online
//! device. Rebuilt at start by reading the changelog from its beginning.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::message::Message;
use schemas::{Codec, DevicePresence};
use streams::follow::From;
use streams::{KafkaConfig, KafkaError, topics};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// user → device → node
#[derive(Clone, Default)]
pub struct PresenceView {
    online: Arc<RwLock<HashMap<String, HashMap<String, String>>>>,
}

impl PresenceView {
    pub fn apply(&self, p: &DevicePresence) {
        let Ok(mut online) = self.online.write() else {
            return;
        };
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
        let Ok(online) = self.online.read() else {
            return;
        };
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
    let codec = Codec::new();
    streams::follow::follow(
        config,
        topics::PRESENCE,
        From::Beginning,
        fetch_wait,
        ready,
        shutdown,
        move |m| match m.payload().map(|p| codec.decode::<DevicePresence>(p)) {
            Some(Ok(p)) => view.apply(&p),
            Some(Err(e)) => {
                warn!(offset = m.offset(), error = %e, "undecodable presence record skipped")
            }
            None => {}
        },
    )
}
