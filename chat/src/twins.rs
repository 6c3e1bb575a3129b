//! Second copies of a send. A broker that loses its idempotent-producer
//! state in a restart (tansu 0.6) can take a retried batch twice, so one
//! send can stand in the log at two seqs. The store keeps the first copy
//! and the gateway answers with it; the router must not deliver the second
//! nor the indexer index it. Twins land within a retry of each other, so
//! the most recent sends are enough to know them by.

use std::collections::{HashMap, VecDeque};

use schemas::{ChatEvent, Payload};

/// Sends remembered; the oldest is forgotten past this.
const REMEMBERED: usize = 100_000;

/// Records per partition to read back below a restarted stage's start
/// (`streams::Lookback`), so that a first copy just below it is known. The
/// two copies are apart by what was in flight when the broker went down
/// (a few idempotent batches per producer), far fewer than this.
pub const LOOKBACK: usize = 2_000;

/// (conversation, sender, client_msg_id).
type SendKey = (String, String, String);

#[derive(Default)]
pub struct Twins {
    first: HashMap<SendKey, i64>,
    order: VecDeque<SendKey>,
}

impl Twins {
    /// True when `event` at `seq` is a later copy of a send already seen at
    /// a lower seq; otherwise remembers it.
    pub fn is_second_copy(&mut self, seq: i64, event: &ChatEvent) -> bool {
        let Payload::MessagePosted(p) = &event.payload else {
            return false;
        };
        let key = (
            event.conversation_id.clone(),
            event.actor.user_id.clone(),
            p.client_msg_id.clone(),
        );
        if let Some(first) = self.first.get(&key) {
            return *first < seq;
        }
        if self.order.len() >= REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.first.remove(&old);
        }
        self.first.insert(key.clone(), seq);
        self.order.push_back(key);
        false
    }

    /// Remembers what came before a restart (whether it was a second copy
    /// is of no use there: those records were handled before).
    pub fn remember(&mut self, seq: i64, event: &ChatEvent) {
        self.is_second_copy(seq, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{Actor, MessagePosted};

    fn post(cid: &str, user: &str, client_msg_id: &str) -> ChatEvent {
        ChatEvent {
            event_id: "e".into(),
            conversation_id: cid.into(),
            occurred_at: 0,
            actor: Actor {
                user_id: user.into(),
                device_id: "d".into(),
            },
            payload: Payload::MessagePosted(MessagePosted {
                message_id: "m".into(),
                client_msg_id: client_msg_id.into(),
                body: "hi".into(),
                reply_to: None,
                mentions: Vec::new(),
                silent: false,
                attachments: Vec::new(),
                sealed: None,
            }),
        }
    }

    #[test]
    fn a_later_copy_of_a_send_is_known_and_the_first_is_routed_again() {
        let mut twins = Twins::default();
        assert!(!twins.is_second_copy(1503, &post("c", "alice", "s1")));
        assert!(twins.is_second_copy(1825, &post("c", "alice", "s1")));
        // The first copy read again (a redelivery) is still the first.
        assert!(!twins.is_second_copy(1503, &post("c", "alice", "s1")));
        // The same client_msg_id from another sender or in another
        // conversation is another send.
        assert!(!twins.is_second_copy(1826, &post("c", "bob", "s1")));
        assert!(!twins.is_second_copy(1827, &post("d", "alice", "s1")));
    }

    #[test]
    fn memory_is_bounded_by_forgetting_the_oldest() {
        let mut twins = Twins::default();
        for i in 0..REMEMBERED as i64 + 10 {
            twins.is_second_copy(i, &post("c", "alice", &i.to_string()));
        }
        assert_eq!(twins.first.len(), REMEMBERED);
        // The oldest is forgotten: its copy is taken as new.
        assert!(!twins.is_second_copy(1_000_000, &post("c", "alice", "0")));
        assert!(twins.is_second_copy(2_000_000, &post("c", "alice", "50")));
    }
}
