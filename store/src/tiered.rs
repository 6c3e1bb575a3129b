//! A [`Store`] over the hot store and the cold tier: history pages across
//! the boundary with no gap and no duplicate, single messages come from
//! whichever tier has them (a hot copy wins), and an event that changes an
//! archived message brings it back to the hot store first (the next cold
//! move archives the changed copy).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use archive::Archive;
use async_trait::async_trait;

use crate::cold::{self, segment_for};
use crate::{
    AuditEntry, ColdIndex, ColdSegment, Conversation, ConversationDay, Device, EventWrite, Member,
    Message, MessagePage, Mutation, Page, Result, Store, StoreError, UserConversation,
};

/// Segments kept in memory after a read (a scroll-back reads one bucket
/// for many pages).
const CACHED_SEGMENTS: usize = 128;

pub struct Tiered {
    hot: Arc<dyn Store>,
    archive: Arc<dyn Archive>,
    cache: Mutex<SegmentCache>,
}

#[derive(Default)]
struct SegmentCache {
    /// (object key, version) → its messages in seq order.
    entries: HashMap<(String, u64), Arc<Vec<Message>>>,
    order: VecDeque<(String, u64)>,
}

impl Tiered {
    pub fn new(hot: Arc<dyn Store>, archive: Arc<dyn Archive>) -> Tiered {
        Tiered {
            hot,
            archive,
            cache: Mutex::default(),
        }
    }

    /// The hot store alone.
    pub fn hot(&self) -> &Arc<dyn Store> {
        &self.hot
    }

    pub fn archive(&self) -> &Arc<dyn Archive> {
        &self.archive
    }

    async fn segment(&self, cid: &str, s: &ColdSegment) -> Result<Arc<Vec<Message>>> {
        let id = (cold::segment_key(cid, s.bucket), s.version);
        if let Some(hit) = self.lock().entries.get(&id) {
            metrics::counter!("chatflow_cold_reads_total", "cache" => "hit").increment(1);
            return Ok(hit.clone());
        }
        metrics::counter!("chatflow_cold_reads_total", "cache" => "miss").increment(1);
        let messages = cold::read_segment(&*self.archive, cid, s.bucket)
            .await?
            .ok_or_else(|| {
                StoreError::Transient(format!(
                    "{} is in the cold index but not in the archive",
                    id.0
                ))
            })?;
        let messages = Arc::new(messages);
        let mut cache = self.lock();
        if cache.entries.insert(id.clone(), messages.clone()).is_none() {
            cache.order.push_back(id);
        }
        while cache.order.len() > CACHED_SEGMENTS {
            if let Some(old) = cache.order.pop_front() {
                cache.entries.remove(&old);
            }
        }
        Ok(messages)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SegmentCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn cold_message(&self, cid: &str, seq: i64) -> Result<Option<Message>> {
        let Some(index) = self.hot.cold_index(cid).await? else {
            return Ok(None);
        };
        let Some(s) = segment_for(&index, seq) else {
            return Ok(None);
        };
        let messages = self.segment(cid, s).await?;
        Ok(messages
            .binary_search_by_key(&seq, |m| m.seq)
            .ok()
            .and_then(|i| messages.get(i).cloned()))
    }

    /// Adds a restore to each event that changes an archived message the
    /// hot store lacks.
    async fn restore_archived(&self, events: &mut [EventWrite]) -> Result<()> {
        let mut indexes: HashMap<String, Option<ColdIndex>> = HashMap::new();
        let mut wanted = Vec::new();
        for e in events.iter() {
            for seq in e.mutations.iter().filter_map(changed_message) {
                if !indexes.contains_key(&e.conversation_id) {
                    let index = self.hot.cold_index(&e.conversation_id).await?;
                    indexes.insert(e.conversation_id.clone(), index);
                }
                let archived = indexes
                    .get(&e.conversation_id)
                    .and_then(Option::as_ref)
                    .is_some_and(|i| seq <= i.through_seq);
                if archived && self.hot.message(&e.conversation_id, seq).await?.is_none() {
                    wanted.push((e.conversation_id.clone(), seq));
                }
            }
        }
        for (cid, seq) in wanted {
            let message = self.cold_message(&cid, seq).await?;
            add_restore(events, &cid, seq, message);
        }
        Ok(())
    }

    /// The hot page, with the archived messages of its range merged in.
    async fn merged(&self, cid: &str, page: Page, index: ColdIndex) -> Result<MessagePage> {
        let hot = self.hot.messages(cid, page).await?;
        let lo = page.after.map_or(i64::MIN, |a| a.saturating_add(1));
        let hi = page.before.map_or(i64::MAX, |b| b.saturating_sub(1));
        let newest_first = page.after.is_none();
        // Archived messages are at or below `through_seq`: nothing to add
        // when the range lies above it, or when the newest page is full of
        // hot messages above it.
        let hot_is_enough = newest_first
            && hot.messages.len() >= page.limit
            && hot
                .messages
                .first()
                .is_some_and(|m| m.seq > index.through_seq);
        if lo > index.through_seq || page.limit == 0 {
            return Ok(hot);
        }
        let in_range = |s: &&ColdSegment| s.last_seq >= lo && s.first_seq <= hi;
        if hot_is_enough {
            // Older archived messages of the range are beyond the page.
            let has_more = hot.has_more || index.segments.iter().any(|s| in_range(&s));
            return Ok(MessagePage { has_more, ..hot });
        }
        let mut segments: Vec<&ColdSegment> = index.segments.iter().filter(in_range).collect();
        if newest_first {
            segments.reverse();
        }
        // Segments are disjoint and in seq order: once `limit` archived
        // messages are in hand, the segments further on cannot be in the
        // page (each holds a message of the range, so there is more).
        let mut merged: BTreeMap<i64, Message> = BTreeMap::new();
        let mut more_archived = false;
        for (i, s) in segments.iter().enumerate() {
            if merged.len() >= page.limit {
                more_archived |= i < segments.len();
                break;
            }
            let segment = self.segment(cid, s).await?;
            // The range's messages of this segment; only the `limit`
            // nearest the page's end can be in it.
            let from = segment.partition_point(|m| m.seq < lo);
            let to = segment.partition_point(|m| m.seq <= hi);
            let in_range = segment.get(from..to).unwrap_or_default();
            let near = if newest_first {
                &in_range[in_range.len().saturating_sub(page.limit)..]
            } else {
                &in_range[..in_range.len().min(page.limit)]
            };
            more_archived |= near.len() < in_range.len();
            for m in near {
                merged.insert(m.seq, m.clone());
            }
        }
        for m in hot.messages {
            merged.insert(m.seq, m); // a hot copy wins
        }
        let found = merged.len();
        let messages: Vec<Message> = if newest_first {
            let skip = found.saturating_sub(page.limit);
            merged.into_values().skip(skip).collect()
        } else {
            merged.into_values().take(page.limit).collect()
        };
        Ok(MessagePage {
            messages,
            has_more: found > page.limit || hot.has_more || more_archived,
        })
    }
}

/// The message a mutation changes, if it changes one.
fn changed_message(m: &Mutation) -> Option<i64> {
    match m {
        Mutation::EditMessage { seq, .. }
        | Mutation::DeleteMessage { seq }
        | Mutation::AddReaction { seq, .. }
        | Mutation::RemoveReaction { seq, .. }
        | Mutation::PinMessage { seq, .. } => Some(*seq),
        _ => None,
    }
}

/// Adds a restore of message `seq` to the first event of `cid` that
/// changes it without one.
fn add_restore(events: &mut [EventWrite], cid: &str, seq: i64, message: Option<Message>) -> bool {
    let changes = |m: &Mutation| changed_message(m) == Some(seq);
    let restores = |m: &Mutation| matches!(m, Mutation::RestoreMessage { seq: s, .. } if *s == seq);
    let Some(event) = events.iter_mut().find(|e| {
        e.conversation_id == cid
            && e.mutations.iter().any(changes)
            && !e.mutations.iter().any(restores)
    }) else {
        return false;
    };
    event.mutations.insert(
        0,
        Mutation::RestoreMessage {
            seq,
            message: message.map(Box::new),
        },
    );
    true
}

#[async_trait]
impl Store for Tiered {
    async fn apply(&self, mut events: Vec<EventWrite>) -> Result<Vec<bool>> {
        self.restore_archived(&mut events).await?;
        // A message archived since that check makes the hot store ask for
        // it: each round restores one, and the events applied before it
        // are skipped the next time (their seq is applied; they then count
        // as not applied in the answer).
        let limit = events.iter().map(|e| e.mutations.len()).sum::<usize>() + 1;
        for _ in 0..limit {
            match self.hot.apply(events.clone()).await {
                Err(StoreError::Cold {
                    conversation_id,
                    seq,
                }) => {
                    let message = self.cold_message(&conversation_id, seq).await?;
                    metrics::counter!("chatflow_cold_restores_total").increment(1);
                    if !add_restore(&mut events, &conversation_id, seq, message) {
                        return Err(StoreError::Permanent(format!(
                            "message {seq} of {conversation_id} is archived, yet no event changes it"
                        )));
                    }
                }
                other => return other,
            }
        }
        Err(StoreError::Permanent(
            "restoring archived messages did not converge".into(),
        ))
    }

    async fn conversation(&self, conversation_id: &str) -> Result<Option<Conversation>> {
        self.hot.conversation(conversation_id).await
    }

    async fn member(&self, conversation_id: &str, user_id: &str) -> Result<Option<Member>> {
        self.hot.member(conversation_id, user_id).await
    }

    async fn members(&self, conversation_id: &str) -> Result<Vec<Member>> {
        self.hot.members(conversation_id).await
    }

    async fn message(&self, conversation_id: &str, seq: i64) -> Result<Option<Message>> {
        match self.hot.message(conversation_id, seq).await? {
            Some(m) => Ok(Some(m)),
            None => self.cold_message(conversation_id, seq).await,
        }
    }

    async fn client_message_seq(
        &self,
        conversation_id: &str,
        sender_id: &str,
        client_msg_id: &str,
    ) -> Result<Option<i64>> {
        self.hot
            .client_message_seq(conversation_id, sender_id, client_msg_id)
            .await
    }

    async fn messages(&self, conversation_id: &str, page: Page) -> Result<MessagePage> {
        match self.hot.cold_index(conversation_id).await? {
            Some(index) => self.merged(conversation_id, page, index).await,
            None => self.hot.messages(conversation_id, page).await,
        }
    }

    async fn user_conversations(&self, user_id: &str) -> Result<Vec<UserConversation>> {
        self.hot.user_conversations(user_id).await
    }

    async fn device(&self, user_id: &str, device_id: &str) -> Result<Option<Device>> {
        self.hot.device(user_id, device_id).await
    }

    async fn devices(&self, user_id: &str) -> Result<Vec<Device>> {
        self.hot.devices(user_id).await
    }

    async fn push_sent(
        &self,
        user_id: &str,
        device_id: &str,
        conversation_id: &str,
    ) -> Result<Option<i64>> {
        self.hot
            .push_sent(user_id, device_id, conversation_id)
            .await
    }

    async fn set_push_sent(
        &self,
        user_id: &str,
        device_id: &str,
        conversation_id: &str,
        seq: i64,
    ) -> Result<()> {
        self.hot
            .set_push_sent(user_id, device_id, conversation_id, seq)
            .await
    }

    async fn cold_index(&self, conversation_id: &str) -> Result<Option<ColdIndex>> {
        self.hot.cold_index(conversation_id).await
    }

    async fn put_cold_index(&self, conversation_id: &str, index: &ColdIndex) -> Result<()> {
        self.hot.put_cold_index(conversation_id, index).await
    }

    async fn drop_hot(&self, conversation_id: &str, messages: &[Message]) -> Result<usize> {
        self.hot.drop_hot(conversation_id, messages).await
    }

    async fn day_stats(&self, day: i64) -> Result<Vec<ConversationDay>> {
        self.hot.day_stats(day).await
    }

    async fn active_users(&self, day: i64) -> Result<Vec<String>> {
        self.hot.active_users(day).await
    }

    async fn audit_day(&self, day: i64) -> Result<Vec<AuditEntry>> {
        self.hot.audit_day(day).await
    }

    async fn conversation_ids(&self) -> Result<Vec<String>> {
        self.hot.conversation_ids().await
    }
}
