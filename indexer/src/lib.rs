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
use streams::{DecodeError, Lookback, Record, Rejection, Stage, StageError};
use vault::Vault;

pub use service::{IndexerArgs, Service};

pub const GROUP: &str = "indexer";

pub struct Indexer {
    index: Arc<dyn SearchIndex>,
    /// Opens sealed message content for indexing; none: the log is taken
    /// as it is.
    vault: Option<Arc<Vault>>,
    codec: Codec,
    twins: Mutex<Twins>,
    /// Reads what lies below where the indexer starts into `twins`.
    lookback: Option<Lookback>,
}

impl Indexer {
    pub fn new(index: Arc<dyn SearchIndex>, vault: Option<Arc<Vault>>) -> Self {
        Indexer {
            index,
            vault,
            codec: Codec::new(),
            twins: Mutex::default(),
            lookback: None,
        }
    }

    /// After a restart, the sends just below the start are remembered
    /// before the first batch, so a second copy of one is not indexed.
    pub fn with_lookback(mut self, lookback: Lookback) -> Self {
        self.lookback = Some(lookback);
        self
    }

    /// The batch decoded, sealed content opened. An erased user's content
    /// comes back as `None`: nothing of it is indexed.
    async fn open(
        &self,
        batch: &[Record],
    ) -> Result<Vec<Result<Option<ChatEvent>, DecodeError>>, StageError> {
        let mut out = Vec::with_capacity(batch.len());
        for record in batch {
            let mut event = match record.decode::<ChatEvent>(&self.codec) {
                Ok(event) => event,
                Err(reason) => {
                    out.push(Err(reason));
                    continue;
                }
            };
            let erased = match &self.vault {
                Some(vault) => vault
                    .open_event(&mut event)
                    .await
                    .map_err(|e| StageError(format!("opening sealed content: {e}")))?,
                None => false,
            };
            out.push(Ok((!erased).then_some(event)));
        }
        Ok(out)
    }
}

#[async_trait]
impl Stage for Indexer {
    async fn process(&self, batch: &[Record]) -> Result<Vec<Rejection>, StageError> {
        let mut ops = Vec::new();
        // The batch index of the record each op came from.
        let mut origin = Vec::new();
        let mut rejected = Vec::new();
        let mut erased_users = Vec::new();
        let earlier = match &self.lookback {
            Some(lookback) => {
                lookback
                    .decoded_before::<ChatEvent>(batch, &self.codec)
                    .await?
            }
            None => Vec::new(),
        };
        let opened = self.open(batch).await?;
        {
            let mut twins = self.twins.lock().unwrap_or_else(|e| e.into_inner());
            for (seq, event) in &earlier {
                twins.remember(*seq, event);
            }
            for (index, (record, decoded)) in batch.iter().zip(opened).enumerate() {
                match decoded {
                    // An erased user's message: not indexed.
                    Ok(None) => {}
                    // Not a second document for one message.
                    Ok(Some(event)) if twins.is_second_copy(record.offset, &event) => {}
                    Ok(Some(event)) => {
                        if let Payload::UserErased(e) = &event.payload {
                            erased_users.push(e.user_id.clone());
                        }
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
        let applied = self.index.apply(ops).await;
        if applied.is_ok() {
            for user in &erased_users {
                match self.index.erase_sender(user).await {
                    Ok(n) => tracing::info!(
                        user,
                        documents = n,
                        "erased a user's messages from the index"
                    ),
                    Err(e) => return Err(StageError(format!("erasing {user}: {e}"))),
                }
            }
        }
        match applied {
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

    fn revoked(&self, partitions: &[(String, i32)]) {
        if let Some(lookback) = &self.lookback {
            lookback.forget(partitions);
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
