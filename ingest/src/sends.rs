//! The answers to recent sends, by (conversation, sender, client_msg_id):
//! a retry gets the first attempt's answer, and a retry that comes while
//! the first is in flight waits for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::wire::Ack;

pub type SendKey = (String, String, String);

/// What is known of one send; its lock is held while its answer is made.
pub type Slot = Arc<tokio::sync::Mutex<Sent>>;

#[derive(Default)]
pub enum Sent {
    /// Never produced, or its produce failed before the log had it.
    #[default]
    Not,
    /// In the log at a seq the broker did not tell: only the store can
    /// answer, and producing it again would make a second copy.
    InLog,
    Answered(Ack),
}

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
