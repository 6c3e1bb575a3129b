//! The view of `chat.presence`: which node holds each online device, when
//! each user was last seen, and which gateway nodes are alive. Whoever
//! needs it rebuilds it by applying the changelog from its beginning.
//!
//! Besides device records (key `user/device`), gateway nodes write two
//! records of their own, with an empty user id: a heartbeat
//! (`node/<id>/heartbeat`, online) every few seconds, and a reset
//! (`node/<id>/reset`, offline) when they start and stop, meaning "none of my
//! devices is online". A node that stops heartbeating is reset by a router
//! (see [`sweep`]), so its devices turn offline within a bounded time even
//! when it died without a word. The topic has one partition: device and node
//! records stay in order.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use schemas::DevicePresence;
use tokio::sync::mpsc;

/// The device id of a node's heartbeat record.
pub const HEARTBEAT: &str = "heartbeat";
/// The device id of a node's reset record.
pub const RESET: &str = "reset";
/// How often a gateway node says it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// A node silent this long is taken for dead.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(15);

/// A user came online (their first device) or went offline (their last).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub user_id: String,
    pub online: bool,
    /// When it happened, milliseconds since the epoch.
    pub at: i64,
}

#[derive(Default)]
struct Inner {
    /// user → device → node
    online: HashMap<String, HashMap<String, String>>,
    /// user → when their last device went offline
    last_seen: HashMap<String, i64>,
    /// node → its latest heartbeat time
    nodes: HashMap<String, i64>,
    /// (user, device) → the time of the latest record applied for it. A
    /// record reaches the view twice in the all-in-one process (directly,
    /// then through the topic); an older one must not undo a newer one.
    device_at: HashMap<(String, String), i64>,
}

#[derive(Clone, Default)]
pub struct PresenceView {
    inner: Arc<RwLock<Inner>>,
    changes: Arc<RwLock<Option<mpsc::UnboundedSender<Change>>>>,
}

impl PresenceView {
    /// User-level changes from now on go to the returned receiver.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Change> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut changes) = self.changes.write() {
            *changes = Some(tx);
        }
        rx
    }

    fn emit(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        if let Ok(guard) = self.changes.read()
            && let Some(tx) = guard.as_ref()
        {
            for change in changes {
                let _ = tx.send(change);
            }
        }
    }

    pub fn apply(&self, p: &DevicePresence) {
        let changes = match self.inner.write() {
            Ok(mut inner) => inner.apply(p),
            Err(_) => return,
        };
        self.emit(changes);
    }

    /// `(node, "user/device")` for every online device of `user_id`.
    pub fn devices_of(&self, user_id: &str, out: &mut Vec<(String, String)>) {
        let Ok(inner) = self.inner.read() else {
            return;
        };
        if let Some(devices) = inner.online.get(user_id) {
            for (device, node) in devices {
                out.push((node.clone(), format!("{user_id}/{device}")));
            }
        }
    }

    pub fn is_online(&self, user_id: &str) -> bool {
        self.inner
            .read()
            .is_ok_and(|i| i.online.contains_key(user_id))
    }

    /// Online now, and when last seen (None: online, or never seen).
    pub fn presence(&self, user_id: &str) -> (bool, Option<i64>) {
        match self.inner.read() {
            Ok(i) if i.online.contains_key(user_id) => (true, None),
            Ok(i) => (false, i.last_seen.get(user_id).copied()),
            Err(_) => (false, None),
        }
    }

    /// Nodes that hold online devices but have not heartbeaten since
    /// `now - NODE_TIMEOUT`.
    pub fn silent_nodes(&self, now: i64) -> Vec<String> {
        let Ok(inner) = self.inner.read() else {
            return Vec::new();
        };
        let cutoff = now - NODE_TIMEOUT.as_millis() as i64;
        let mut holding: Vec<String> = inner
            .online
            .values()
            .flat_map(|devices| devices.values())
            .filter(|node| inner.nodes.get(*node).is_none_or(|&at| at < cutoff))
            .cloned()
            .collect();
        holding.sort();
        holding.dedup();
        holding
    }
}

impl Inner {
    fn apply(&mut self, p: &DevicePresence) -> Vec<Change> {
        if p.user_id.is_empty() {
            return match (p.device_id.as_str(), p.online) {
                (HEARTBEAT, true) => {
                    let at = self.nodes.entry(p.node.clone()).or_insert(p.at);
                    *at = (*at).max(p.at);
                    Vec::new()
                }
                (RESET, false) => self.reset(&p.node, p.at),
                _ => Vec::new(),
            };
        }
        let key = (p.user_id.clone(), p.device_id.clone());
        if self.device_at.get(&key).is_some_and(|&seen| p.at < seen) {
            return Vec::new();
        }
        self.device_at.insert(key, p.at);
        let was_online = self.online.contains_key(&p.user_id);
        let devices = self.online.entry(p.user_id.clone()).or_default();
        if p.online {
            devices.insert(p.device_id.clone(), p.node.clone());
        } else if devices.get(&p.device_id) == Some(&p.node) {
            // Only the node that holds the device may take it offline: a
            // late "offline" from a node the device left must not win.
            devices.remove(&p.device_id);
        }
        let online = !devices.is_empty();
        if !online {
            self.online.remove(&p.user_id);
            if was_online {
                self.last_seen.insert(p.user_id.clone(), p.at);
            }
        }
        if online == was_online {
            return Vec::new();
        }
        vec![Change {
            user_id: p.user_id.clone(),
            online,
            at: p.at,
        }]
    }

    /// Every device of `node` that came online before `at` goes offline.
    fn reset(&mut self, node: &str, at: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        let device_at = &self.device_at;
        self.online.retain(|user, devices| {
            devices.retain(|device, n| {
                let since = device_at.get(&(user.clone(), device.clone()));
                n != node || since.is_some_and(|&t| t >= at)
            });
            if devices.is_empty() {
                changes.push(Change {
                    user_id: user.clone(),
                    online: false,
                    at,
                });
                false
            } else {
                true
            }
        });
        for change in &changes {
            self.last_seen.insert(change.user_id.clone(), at);
        }
        self.nodes.remove(node);
        changes
    }
}

/// A node's own record: a heartbeat, or a reset of all its devices.
pub fn node_record(node: &str, heartbeat: bool, at: i64) -> (String, DevicePresence) {
    let kind = if heartbeat { HEARTBEAT } else { RESET };
    let record = DevicePresence {
        user_id: String::new(),
        device_id: kind.into(),
        node: node.into(),
        online: heartbeat,
        at,
    };
    (format!("node/{node}/{kind}"), record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(user: &str, device: &str, node: &str, online: bool, at: i64) -> DevicePresence {
        DevicePresence {
            user_id: user.into(),
            device_id: device.into(),
            node: node.into(),
            online,
            at,
        }
    }

    #[test]
    fn users_change_with_their_first_and_last_device() {
        let view = PresenceView::default();
        let mut changes = view.subscribe();
        view.apply(&device("ann", "phone", "n1", true, 1));
        view.apply(&device("ann", "laptop", "n2", true, 2));
        view.apply(&device("ann", "phone", "n1", false, 3));
        assert_eq!(view.presence("ann"), (true, None));
        view.apply(&device("ann", "laptop", "n2", false, 4));
        assert_eq!(view.presence("ann"), (false, Some(4)));
        let seen: Vec<(bool, i64)> = std::iter::from_fn(|| changes.try_recv().ok())
            .map(|c| (c.online, c.at))
            .collect();
        assert_eq!(seen, [(true, 1), (false, 4)]);
    }

    #[test]
    fn a_silent_node_is_found_and_its_reset_takes_its_devices_offline() {
        let view = PresenceView::default();
        let (_, beat) = node_record("n1", true, 1_000);
        view.apply(&beat);
        view.apply(&device("ann", "phone", "n1", true, 1_000));
        view.apply(&device("bob", "phone", "n2", true, 1_000));
        let (_, beat2) = node_record("n2", true, 20_000);
        view.apply(&beat2);
        // n1 last spoke at 1 s; at 20 s it is past the timeout, n2 is not.
        assert_eq!(view.silent_nodes(20_000), ["n1"]);
        let (_, reset) = node_record("n1", false, 20_000);
        view.apply(&reset);
        assert_eq!(view.presence("ann"), (false, Some(20_000)));
        assert!(view.is_online("bob"));
        assert!(view.silent_nodes(20_000).is_empty());
    }

    #[test]
    fn a_record_seen_again_later_does_not_undo_a_newer_one() {
        let view = PresenceView::default();
        // Directly: the node resets at start, then ann connects.
        let (_, reset) = node_record("n1", false, 100);
        view.apply(&reset);
        view.apply(&device("ann", "phone", "n1", true, 200));
        // Then the same records come back through the topic.
        view.apply(&reset);
        view.apply(&device("ann", "phone", "n1", true, 200));
        assert!(view.is_online("ann"), "the start-up reset is older");
        view.apply(&device("ann", "phone", "n1", false, 300));
        view.apply(&device("ann", "phone", "n1", true, 200));
        assert!(!view.is_online("ann"), "a replayed online is older");
    }
}
