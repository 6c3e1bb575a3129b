//! The message store: one async trait for every backend (fjall embedded,
//! DynamoDB distributed), its items, and the conformance suite each backend
//! must pass.

mod apply;
pub mod cold;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "dynamodb")]
mod dynamo_store;
mod fjall_store;
mod model;
mod tiered;

#[cfg(feature = "dynamodb")]
pub use dynamo_store::DynamoStore;
pub use fjall_store::FjallStore;
pub use model::*;
pub use tiered::Tiered;

use async_trait::async_trait;

/// A store failure, classified for the caller.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying (throttled, unavailable, timed out).
    #[error("store unavailable: {0}")]
    Transient(String),
    /// The request itself is wrong and never succeeds.
    #[error("store rejected the request: {0}")]
    Permanent(String),
    /// An event changes a message that moved to the archive: apply it
    /// again with a [`Mutation::RestoreMessage`] for `seq` first (what
    /// [`Tiered`] does). Events before it in the batch are applied.
    #[error("message {seq} of {conversation_id} is in the archive")]
    Cold { conversation_id: String, seq: i64 },
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// The day (since the epoch, UTC) of a time in ms: what the audit log and
/// the analytics are kept and asked by.
pub fn day_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(DAY_MS)
}

/// Opens a backend by URL: `fjall://<dir>`, or (with the `dynamodb`
/// feature) `dynamodb://<table>[?endpoint=…]`.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    match url.split_once("://") {
        Some(("fjall", path)) => Ok(std::sync::Arc::new(FjallStore::open(
            std::path::Path::new(path),
        )?)),
        #[cfg(feature = "dynamodb")]
        Some(("dynamodb", _)) => Ok(std::sync::Arc::new(DynamoStore::connect(url).await?)),
        _ => Err(StoreError::Permanent(format!(
            "unsupported store URL {url:?} (this build knows fjall://<dir>{})",
            if cfg!(feature = "dynamodb") {
                " and dynamodb://<table>"
            } else {
                ""
            }
        ))),
    }
}

/// The read models chatflow builds from `chat.events`.
///
/// Writes come only from the persister, as the mutations of one event of one
/// conversation, applied atomically and at most once: each conversation
/// remembers the highest event seq it applied and ignores anything at or
/// below it, which makes every redelivery and replay harmless.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies each event's mutations; returns, per event, whether it was
    /// applied (false: already applied before). When it returns, the
    /// writes are durable.
    async fn apply(&self, events: Vec<EventWrite>) -> Result<Vec<bool>>;

    async fn conversation(&self, conversation_id: &str) -> Result<Option<Conversation>>;
    async fn member(&self, conversation_id: &str, user_id: &str) -> Result<Option<Member>>;
    async fn members(&self, conversation_id: &str) -> Result<Vec<Member>>;
    async fn message(&self, conversation_id: &str, seq: i64) -> Result<Option<Message>>;
    /// The seq of the message a sender posted with this client_msg_id.
    async fn client_message_seq(
        &self,
        conversation_id: &str,
        sender_id: &str,
        client_msg_id: &str,
    ) -> Result<Option<i64>>;
    /// The message a sender posted with this client_msg_id, if any.
    async fn message_by_client_id(
        &self,
        conversation_id: &str,
        sender_id: &str,
        client_msg_id: &str,
    ) -> Result<Option<Message>> {
        match self
            .client_message_seq(conversation_id, sender_id, client_msg_id)
            .await?
        {
            Some(seq) => self.message(conversation_id, seq).await,
            None => Ok(None),
        }
    }
    /// A page of history in seq order; see [`Page`].
    async fn messages(&self, conversation_id: &str, page: Page) -> Result<MessagePage>;
    /// The conversations a user belongs to (unordered).
    async fn user_conversations(&self, user_id: &str) -> Result<Vec<UserConversation>>;
    /// A device's stored per-conversation cursors.
    async fn device(&self, user_id: &str, device_id: &str) -> Result<Option<Device>>;
    /// Every registered device of a user.
    async fn devices(&self, user_id: &str) -> Result<Vec<Device>>;
    /// The seq of the last message a push was sent for, to this device, in
    /// this conversation (the notifier's ledger).
    async fn push_sent(
        &self,
        user_id: &str,
        device_id: &str,
        conversation_id: &str,
    ) -> Result<Option<i64>>;
    /// Records a push sent up to `seq` (never moves back); durable when it
    /// returns.
    async fn set_push_sent(
        &self,
        user_id: &str,
        device_id: &str,
        conversation_id: &str,
        seq: i64,
    ) -> Result<()>;

    /// Which messages of the conversation moved to the archive.
    async fn cold_index(&self, conversation_id: &str) -> Result<Option<ColdIndex>>;
    /// Replaces the conversation's cold index (the cold move is its only
    /// writer); durable when it returns.
    async fn put_cold_index(&self, conversation_id: &str, index: &ColdIndex) -> Result<()>;
    /// Removes each message from the hot store if it is still exactly as
    /// given (one changed since is kept); returns how many went.
    async fn drop_hot(&self, conversation_id: &str, messages: &[Message]) -> Result<usize>;
    /// Every conversation id (for the cold move's sweep).
    async fn conversation_ids(&self) -> Result<Vec<String>>;

    /// The audit entries of one day (since the epoch, UTC), in order.
    async fn audit_day(&self, day: i64) -> Result<Vec<AuditEntry>>;

    /// Each conversation's messages on one day.
    async fn day_stats(&self, day: i64) -> Result<Vec<ConversationDay>>;
    /// The users active on one day.
    async fn active_users(&self, day: i64) -> Result<Vec<String>>;

    /// Analytics over the days `from_day..=to_day` (days since the epoch,
    /// UTC), with the `top` busiest conversations.
    async fn analytics(&self, from_day: i64, to_day: i64, top: usize) -> Result<Analytics> {
        let mut figures = Analytics::default();
        let mut users = std::collections::HashSet::new();
        let mut conversations: std::collections::HashMap<String, ConversationDay> =
            Default::default();
        for day in from_day..=to_day {
            let active = self.active_users(day).await?;
            let mut messages = std::collections::BTreeMap::new();
            for c in self.day_stats(day).await? {
                *messages.entry(c.kind.clone()).or_insert(0) += c.messages;
                conversations
                    .entry(c.conversation_id.clone())
                    .and_modify(|t| t.messages += c.messages)
                    .or_insert(c);
            }
            figures.days.push(DayFigures {
                day,
                active_users: active.len(),
                messages,
            });
            users.extend(active);
        }
        figures.active_users = users.len();
        let mut busiest: Vec<ConversationDay> = conversations.into_values().collect();
        busiest.sort_by(|a, b| {
            b.messages
                .cmp(&a.messages)
                .then_with(|| a.conversation_id.cmp(&b.conversation_id))
        });
        busiest.truncate(top);
        figures.top_conversations = busiest;
        Ok(figures)
    }

    /// A page of the audit log: the days of `from..=to` one after another,
    /// filtered by actor and action.
    async fn audit(&self, query: &AuditQuery) -> Result<AuditPage> {
        let mut page = AuditPage::default();
        if query.limit == 0 || query.from > query.to {
            return Ok(page);
        }
        let after = query.after.as_deref().unwrap_or("");
        for day in day_of(query.from)..=day_of(query.to) {
            for entry in self.audit_day(day).await? {
                let wanted = (query.from..=query.to).contains(&entry.at)
                    && entry.cursor().as_str() > after
                    && query.actor.as_ref().is_none_or(|a| *a == entry.actor)
                    && query.action.as_ref().is_none_or(|a| *a == entry.action);
                if !wanted {
                    continue;
                }
                if page.entries.len() == query.limit {
                    page.next = page.entries.last().map(AuditEntry::cursor);
                    return Ok(page);
                }
                page.entries.push(entry);
            }
        }
        Ok(page)
    }
}
