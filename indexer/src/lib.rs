//! The indexer stage: keeps the search index in step with `chat.events`.
//! Posted messages are indexed, edits replace their text, deletes leave a
//! tombstone; each document's version is the seq of the event that last
//! changed it, so a replay of the log changes nothing.

mod service;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chat::twins::Twins;
use schemas::{ChatEvent, Codec, Payload};
use search::{IndexOp, MessageDoc, SearchIndex};
use streams::{Record, Rejection, Stage, StageError};

pub use service::{IndexerArgs, Service};

pub const GROUP: &str = "indexer";

pub struct Indexer {
    index: Arc<dyn SearchIndex>,
    codec: Codec,
    twins: Mutex<Twins>,
}

impl Indexer {
    pub fn new(index: Arc<dyn SearchIndex>) -> Self {
        Indexer {
            index,
            codec: Codec::new(),
            twins: Mutex::default(),
        }
    }
}

#[async_trait]
impl Stage for Indexer {
    async fn process(&self, batch: &[Record]) -> Result<Vec<Rejection>, StageError> {
        let mut ops = Vec::new();
        // The batch index of the record each op came from.
        let mut origin = Vec::new();
        let mut rejected = Vec::new();
        {
            let mut twins = self.twins.lock().unwrap_or_else(|e| e.into_inner());
            for (index, record) in batch.iter().enumerate() {
                let decoded = record.decode::<ChatEvent>(&self.codec);
                match decoded {
                    // Not a second document for one message.
                    Ok(event) if twins.is_second_copy(record.offset, &event) => {}
                    Ok(event) => {
                        if let Some(op) = to_op(record.offset, event) {
                            ops.push(op);
                            origin.push(index);
                        }
                    }
                    Err(reason) => rejected.push(Rejection::new(index, reason)),
                }
            }
        }
        let count = ops.len() as u64;
        match self.index.apply(ops).await {
            Ok(refused) => {
                metrics::counter!("chatflow_indexer_ops_total").increment(count);
                rejected.extend(refused.into_iter().filter_map(|r| {
                    origin.get(r.op).map(|&index| Rejection {
                        index,
                        reason: r.reason,
                    })
                }));
                Ok(rejected)
            }
            Err(e) if e.is_transient() => Err(StageError(e.to_string())),
            // Not tied to one record: retrying is the only choice that
            // loses nothing.
            Err(e) => Err(StageError(format!("permanent: {e}"))),
        }
    }
}

/// The index change an event makes, if any; its seq is its offset.
pub fn to_op(seq: i64, event: ChatEvent) -> Option<IndexOp> {
    let conversation_id = event.conversation_id;
    match event.payload {
        Payload::MessagePosted(p) => Some(IndexOp::Post(MessageDoc {
            conversation_id,
            seq,
            message_id: p.message_id,
            sender_id: event.actor.user_id,
            sent_at: event.occurred_at,
            body: p.body,
            deleted: false,
            version: seq,
        })),
        Payload::MessageEdited(p) => Some(IndexOp::Edit {
            conversation_id,
            seq: p.seq,
            body: p.body,
            version: seq,
        }),
        Payload::MessageDeleted(p) => Some(IndexOp::Delete {
            conversation_id,
            seq: p.seq,
            version: seq,
        }),
        _ => None,
    }
}
