//! The answers to recent sends, by (conversation, sender, client_msg_id):
//! a retry gets the first attempt's answer, and a retry that comes while
//! the first is in flight waits for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::wire::Ack;

pub type SendKey = (String, String, String);

/// One send's answer, once there is one; its lock is held while it is made.
pub type Slot = Arc<tokio::sync::Mutex<Option<Ack>>>;

const RECENT_SENDS: usize = 100_000;

#[derive(Default)]
pub struct RecentSends {
    inner: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    slots: HashMap<SendKey, Slot>,
    order: VecDeque<SendKey>,
}

impl RecentSends {
    /// The slot of `key`, made if new (the oldest is forgotten past
    /// 100,000).
    pub fn slot(&self, key: &SendKey) -> Slot {
        let Ok(mut recent) = self.inner.lock() else {
            return Arc::default();
        };
        if let Some(slot) = recent.slots.get(key) {
            return slot.clone();
        }
        if recent.order.len() >= RECENT_SENDS
            && let Some(old) = recent.order.pop_front()
        {
            recent.slots.remove(&old);
        }
        let slot = Slot::default();
        recent.slots.insert(key.clone(), slot.clone());
        recent.order.push_back(key.clone());
        slot
    }
}
