//! Ephemeral signals, routed like events but never stored: typing (from
//! `chat.signals`) to the other members of its conversation, and presence
//! changes (from the presence view) to everyone who shares a conversation
//! with the user. Both reach the gateway nodes as `Delivery`s whose payload
//! is the framed signal record instead of a `ChatEvent`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use cli::LocalInbox;
use schemas::{Codec, Delivery, DevicePresence, Record, Typing};
use store::Store;
use streams::{Producer, Rejection, Stage, StageError, topics};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::presence::{Change, PresenceView};
use schemas::now_millis;

pub const SIGNALS_GROUP: &str = "router-signals";
/// Presence changes go to at most this many conversations of the user.
const PRESENCE_CONVERSATIONS: usize = 500;

/// Hands signal deliveries to gateway nodes.
pub struct Fanout {
    local: Option<(String, LocalInbox)>,
    presence: PresenceView,
    producer: Producer,
    codec: Codec,
}

impl Fanout {
    pub fn new(presence: PresenceView, producer: Producer) -> Self {
        Fanout {
            local: None,
            presence,
            producer,
            codec: Codec::new(),
        }
    }

    pub fn with_local_inbox(mut self, local: Option<(String, LocalInbox)>) -> Self {
        self.local = local;
        self
    }

    /// Sends `record` to every online device of `users`.
    async fn send<R: Record>(
        &self,
        conversation_id: &str,
        users: impl IntoIterator<Item = &String>,
        record: &R,
    ) -> Result<usize, StageError> {
        let mut targets = Vec::new();
        for user in users {
            self.presence.devices_of(user, &mut targets);
        }
        if targets.is_empty() {
            return Ok(0);
        }
        let bytes = self
            .codec
            .encode(record)
            .map_err(|e| StageError(e.to_string()))?;
        let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (node, device) in targets {
            by_node.entry(node).or_default().push(device);
        }
        let count = by_node.len();
        for (node, devices) in by_node {
            let delivery = Delivery {
                conversation_id: conversation_id.to_owned(),
                seq: -1,
                devices,
                event: bytes.clone(),
            };
            match &self.local {
                Some((local, inbox)) if *local == node => inbox(&delivery),
                _ => {
                    let value = self
                        .codec
                        .encode(&delivery)
                        .map_err(|e| StageError(e.to_string()))?;
                    self.producer
                        .send(
                            &topics::inbox(&node),
                            conversation_id.as_bytes(),
                            &value,
                            None,
                        )
                        .await
                        .map_err(|e| StageError(format!("inbox produce: {e}")))?;
                }
            }
        }
        Ok(count)
    }
}

/// Routes `chat.signals` (typing) to the conversation's other members.
pub struct TypingStage {
    store: Arc<dyn Store>,
    fanout: Arc<Fanout>,
}

impl TypingStage {
    pub fn new(store: Arc<dyn Store>, fanout: Arc<Fanout>) -> Self {
        TypingStage { store, fanout }
    }
}

#[async_trait]
impl Stage for TypingStage {
    async fn process(&self, batch: &[streams::Record]) -> Result<Vec<Rejection>, StageError> {
        let mut rejected = Vec::new();
        for (index, record) in batch.iter().enumerate() {
            let decoded = record.decode::<Typing>(&self.fanout.codec);
            let typing = match decoded {
                Ok(t) if now_millis() - t.at > TYPING_STALE_MS => continue,
                Ok(t) => t,
                Err(reason) => {
                    rejected.push(Rejection::new(index, reason));
                    continue;
                }
            };
            let members = self
                .store
                .members(&typing.conversation_id)
                .await
                .map_err(|e| StageError(e.to_string()))?;
            let others = chat::audience::typing_audience(
                members.into_iter().map(|m| m.user_id),
                &typing.user_id,
            );
            self.fanout
                .send(&typing.conversation_id, &others, &typing)
                .await?;
        }
        Ok(rejected)
    }
}

/// Tells everyone who shares a conversation with a user that the user came
/// online or went offline, until `shutdown`.
pub async fn notify_presence(
    mut changes: mpsc::UnboundedReceiver<Change>,
    store: Arc<dyn Store>,
    fanout: Arc<Fanout>,
    shutdown: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = changes.recv() => match c { Some(c) => c, None => return },
        };
        if let Err(e) = notify_one(&change, &*store, &fanout).await {
            warn!(user = %change.user_id, error = %e, "presence change not delivered");
        }
    }
}

async fn notify_one(change: &Change, store: &dyn Store, fanout: &Fanout) -> Result<(), StageError> {
    let failed = |e: store::StoreError| StageError(e.to_string());
    let conversations = store
        .user_conversations(&change.user_id)
        .await
        .map_err(failed)?;
    let mut watchers = BTreeSet::new();
    for uc in conversations.iter().take(PRESENCE_CONVERSATIONS) {
        for m in store.members(&uc.conversation_id).await.map_err(failed)? {
            if m.user_id != change.user_id {
                watchers.insert(m.user_id);
            }
        }
    }
    let record = DevicePresence {
        user_id: change.user_id.clone(),
        device_id: String::new(),
        node: String::new(),
        online: change.online,
        at: change.at,
    };
    fanout.send("", &watchers, &record).await?;
    Ok(())
}

/// Typing older than this is not worth showing (a router catching up).
const TYPING_STALE_MS: i64 = 5_000;

/// Everything the router does besides events, until `shutdown`: typing
/// from `chat.signals`, presence changes to those who share a conversation,
/// and resets of silent gateway nodes. Call after the presence view is
/// ready, so that its history is not announced as news. `spec` is the
/// process's consumer settings (assignment, commit interval); its group,
/// topics and batch size are set here.
pub async fn run(
    kafka: &streams::KafkaConfig,
    store: Arc<dyn Store>,
    view: PresenceView,
    fanout: Arc<Fanout>,
    spec: streams::ConsumerSpec,
    shutdown: CancellationToken,
) -> Result<(), streams::KafkaError> {
    let notifier = tokio::spawn(notify_presence(
        view.subscribe(),
        store.clone(),
        fanout.clone(),
        shutdown.child_token(),
    ));
    let sweeper = tokio::spawn(crate::presence::sweep(
        view,
        fanout.producer.clone(),
        shutdown.child_token(),
    ));
    let spec = streams::ConsumerSpec {
        group: SIGNALS_GROUP.into(),
        topics: vec![topics::SIGNALS.into()],
        max_batch: 500,
        ..spec
    };
    let stage = Arc::new(TypingStage::new(store, fanout));
    let result = streams::run_stage(kafka, spec, stage, shutdown.clone()).await;
    shutdown.cancel();
    let _ = notifier.await;
    let _ = sweeper.await;
    result
}
