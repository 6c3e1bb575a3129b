//! The router stage: resolves each event of `chat.events` to the online
//! devices that must see it and writes one `Delivery` per gateway node that
//! holds any of them, on that node's `chat.inbox.<node>`.

mod membership;
pub mod presence;
mod sequencer;
mod service;
pub mod signals;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use cli::LocalInbox;
use futures::future::try_join_all;
use schemas::{ChatEvent, Codec, Delivery};
use store::Store;
use streams::{Lookback, Producer, Record, Rejection, Stage, StageError, topics};
use tokio::sync::Mutex;

pub use presence::PresenceView;
pub use sequencer::Sequenced;
pub use signals::{Fanout, SIGNALS_GROUP, TypingStage};

pub use service::{RouterArgs, Service};

pub const GROUP: &str = "router";

pub struct RouterStage {
    local: Option<(String, LocalInbox)>,
    store: Arc<dyn Store>,
    presence: PresenceView,
    producer: Producer,
    codec: Codec,
    membership: Mutex<membership::Membership>,
    twins: Mutex<chat::twins::Twins>,
    /// Reads what lies below where the router starts into `twins`.
    lookback: Option<Lookback>,
}

impl RouterStage {
    pub fn new(store: Arc<dyn Store>, presence: PresenceView, producer: Producer) -> Self {
        RouterStage {
            local: None,
            store,
            presence,
            producer,
            codec: Codec::new(),
            membership: Mutex::default(),
            twins: Mutex::default(),
            lookback: None,
        }
    }

    /// After a restart, the sends just below the start are remembered
    /// before the first batch, so a second copy of one is not delivered.
    pub fn with_lookback(mut self, lookback: Lookback) -> Self {
        self.lookback = Some(lookback);
        self
    }
}

impl RouterStage {
    /// Deliveries for the gateway node named in `local` go to its inbox
    /// in-process instead of through Kafka.
    pub fn with_local_inbox(mut self, local: Option<(String, LocalInbox)>) -> Self {
        self.local = local;
        self
    }
}

#[async_trait]
impl Stage for RouterStage {
    async fn process(&self, batch: &[Record]) -> Result<Vec<Rejection>, StageError> {
        let mut rejected = Vec::new();
        let mut deliveries = Vec::new();
        let mut membership = self.membership.lock().await;
        let mut twins = self.twins.lock().await;
        if let Some(lookback) = &self.lookback {
            for (seq, event) in lookback
                .decoded_before::<ChatEvent>(batch, &self.codec)
                .await?
            {
                twins.remember(seq, &event);
            }
        }
        let mut targets = Vec::new();
        let mut local_count = 0u64;
        for (index, record) in batch.iter().enumerate() {
            let event: ChatEvent = match record.decode(&self.codec) {
                Ok(e) => e,
                Err(reason) => {
                    rejected.push(Rejection::new(index, reason));
                    continue;
                }
            };
            if twins.is_second_copy(record.offset, &event) {
                tracing::warn!(
                    conversation_id = %event.conversation_id,
                    seq = record.offset,
                    "a second copy of a send (a batch the broker took twice) is not delivered"
                );
                continue;
            }
            let bytes = record.payload.as_deref().unwrap_or_default();
            let audience = membership
                .audience(&*self.store, record.offset, &event)
                .await?;
            targets.clear();
            for user in &audience {
                self.presence.devices_of(user, &mut targets);
            }
            let mut by_node: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for (node, device) in &targets {
                by_node
                    .entry(node.as_str())
                    .or_default()
                    .push(device.clone());
            }
            for (node, devices) in by_node {
                let delivery = Delivery {
                    conversation_id: event.conversation_id.clone(),
                    seq: record.offset,
                    devices,
                    event: bytes.to_vec(),
                };
                match &self.local {
                    Some((local, inbox)) if local == node => {
                        inbox(&delivery);
                        local_count += 1;
                    }
                    _ => {
                        let value = self
                            .codec
                            .encode(&delivery)
                            .map_err(|e| StageError(e.to_string()))?;
                        deliveries.push((
                            topics::inbox(node),
                            event.conversation_id.clone(),
                            value,
                        ));
                    }
                }
            }
        }
        drop((membership, twins));
        // Records for one inbox are produced in batch order: the producer
        // is idempotent and keeps order per partition.
        let sends = deliveries
            .iter()
            .map(|(topic, key, value)| self.producer.send(topic, key.as_bytes(), value, None));
        try_join_all(sends)
            .await
            .map_err(|e| StageError(format!("inbox produce: {e}")))?;
        metrics::counter!("chatflow_router_deliveries_total")
            .increment(deliveries.len() as u64 + local_count);
        Ok(rejected)
    }

    fn revoked(&self, partitions: &[(String, i32)]) {
        if let Some(lookback) = &self.lookback {
            lookback.forget(partitions);
        }
    }
}
