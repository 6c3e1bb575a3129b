//! A read model that can be replaced while the process serves (`chatflow
//! switch`): readers always reach the current one, and writes can be held
//! while a replacement catches up with the log. One for the store, one for
//! the search index.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use search::{IndexOp, MessageDoc, Rejected, SearchIndex, SearchQuery, SearchResults};
use store::{
    ColdIndex, Conversation, Device, EventWrite, Member, Message, MessagePage, Page, Store,
    UserConversation,
};
use tokio::sync::{RwLock as Gate, RwLockWriteGuard};

pub struct Switch<T: ?Sized> {
    current: RwLock<(String, Arc<T>)>,
    /// Every write holds it shared; [`Switch::hold_writes`] exclusively.
    writes: Gate<()>,
}

impl<T: ?Sized> Switch<T> {
    /// Serves `model`, opened from `url`.
    pub fn new(url: &str, model: Arc<T>) -> Self {
        Switch {
            current: RwLock::new((url.to_owned(), model)),
            writes: Gate::new(()),
        }
    }

    pub fn current(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// The URL of the model served now.
    pub fn url(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Waits for the writes in flight and holds every new one until the
    /// guard drops; reads go on.
    pub async fn hold_writes(&self) -> RwLockWriteGuard<'_, ()> {
        self.writes.write().await
    }

    /// Serves `model` from now on (reads at once; writes once they are
    /// released, if held).
    pub fn replace(&self, url: &str, model: Arc<T>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (url.to_owned(), model);
    }
}

#[async_trait]
impl Store for Switch<dyn Store> {
    async fn apply(&self, events: Vec<EventWrite>) -> store::Result<Vec<bool>> {
        let _writing = self.writes.read().await;
        self.current().apply(events).await
    }

    async fn conversation(&self, conversation_id: &str) -> store::Result<Option<Conversation>> {
        self.current().conversation(conversation_id).await
    }

    async fn member(&self, conversation_id: &str, user_id: &str) -> store::Result<Option<Member>> {
        self.current().member(conversation_id, user_id).await
    }

    async fn members(&self, conversation_id: &str) -> store::Result<Vec<Member>> {
        self.current().members(conversation_id).await
    }

    async fn message(&self, conversation_id: &str, seq: i64) -> store::Result<Option<Message>> {
        self.current().message(conversation_id, seq).await
    }

    async fn client_message_seq(
        &self,
        conversation_id: &str,
        sender_id: &str,
        client_msg_id: &str,
    ) -> store::Result<Option<i64>> {
        self.current()
            .client_message_seq(conversation_id, sender_id, client_msg_id)
            .await
    }

    async fn messages(&self, conversation_id: &str, page: Page) -> store::Result<MessagePage> {
        self.current().messages(conversation_id, page).await
    }

    async fn user_conversations(&self, user_id: &str) -> store::Result<Vec<UserConversation>> {
        self.current().user_conversations(user_id).await
    }

    async fn device(&self, user_id: &str, device_id: &str) -> store::Result<Option<Device>> {
        self.current().device(user_id, device_id).await
    }

    async fn devices(&self, user_id: &str) -> store::Result<Vec<Device>> {
        self.current().devices(user_id).await
    }

    async fn push_sent(
        &self,
        user_id: &str,
        device_id: &str,
        conversation_id: &str,
    ) -> store::Result<Option<i64>> {
        self.current()
            .push_sent(user_id, device_id, conversation_id)
            .await
    }

    async fn set_push_sent(
        &self,
        user_id: &str,
        device_id: &str,
        conversation_id: &str,
        seq: i64,
    ) -> store::Result<()> {
        let _writing = self.writes.read().await;
        self.current()
            .set_push_sent(user_id, device_id, conversation_id, seq)
            .await
    }

    async fn cold_index(&self, conversation_id: &str) -> store::Result<Option<ColdIndex>> {
        self.current().cold_index(conversation_id).await
    }

    async fn put_cold_index(&self, conversation_id: &str, index: &ColdIndex) -> store::Result<()> {
        let _writing = self.writes.read().await;
        self.current().put_cold_index(conversation_id, index).await
    }

    /// Only messages the current store's cold index covers: a cold move
    /// that wrote its index before a switch must not drop the hot copies
    /// of the store switched to, which has no such index.
    async fn drop_hot(&self, conversation_id: &str, messages: &[Message]) -> store::Result<usize> {
        let _writing = self.writes.read().await;
        let store = self.current();
        let through = store
            .cold_index(conversation_id)
            .await?
            .map_or(i64::MIN, |c| c.through_seq);
        let covered: Vec<Message> = messages
            .iter()
            .filter(|m| m.seq <= through)
            .cloned()
            .collect();
        store.drop_hot(conversation_id, &covered).await
    }

    async fn conversation_ids(&self) -> store::Result<Vec<String>> {
        self.current().conversation_ids().await
    }

    async fn audit_day(&self, day: i64) -> store::Result<Vec<store::AuditEntry>> {
        self.current().audit_day(day).await
    }

    async fn day_stats(&self, day: i64) -> store::Result<Vec<store::ConversationDay>> {
        self.current().day_stats(day).await
    }

    async fn active_users(&self, day: i64) -> store::Result<Vec<String>> {
        self.current().active_users(day).await
    }
}

#[async_trait]
impl SearchIndex for Switch<dyn SearchIndex> {
    async fn apply(&self, ops: Vec<IndexOp>) -> search::Result<Vec<Rejected>> {
        let _writing = self.writes.read().await;
        self.current().apply(ops).await
    }

    async fn search(&self, query: &SearchQuery) -> search::Result<SearchResults> {
        self.current().search(query).await
    }

    async fn get(&self, conversation_id: &str, seq: i64) -> search::Result<Option<MessageDoc>> {
        self.current().get(conversation_id, seq).await
    }

    async fn erase_sender(&self, sender_id: &str) -> search::Result<usize> {
        let _writing = self.writes.read().await;
        self.current().erase_sender(sender_id).await
    }
}
