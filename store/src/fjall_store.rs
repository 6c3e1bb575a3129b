//! The embedded store: fjall (an LSM tree) under the data directory. Items
//! live in one keyspace under `<pk> 0x00 <sk>`, so a partition key's items
//! are one contiguous, sorted range, as in DynamoDB.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::apply::{
    self, COLD, Items, META, active_pk, audit_pk, conv_pk, day_stat_pk, decode, device_sk,
    member_sk, msg_sk, push_sk, user_pk,
};
use crate::{
    AuditEntry, ColdIndex, Conversation, ConversationDay, Device, EventWrite, Member, Message,
    MessagePage, Page, Result, Store, StoreError, UserConversation,
};

#[derive(Clone)]
pub struct FjallStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    items: Keyspace,
    /// Serializes appliers: apply reads then writes.
    write_lock: Mutex<()>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Transient(format!("fjall: {e}"))
}

fn key(pk: &str, sk: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(pk.len() + sk.len() + 1);
    k.extend_from_slice(pk.as_bytes());
    k.push(0);
    k.extend_from_slice(sk.as_bytes());
    k
}

impl FjallStore {
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::builder(path).open().map_err(err)?;
        let items = db
            .keyspace("items", KeyspaceCreateOptions::default)
            .map_err(err)?;
        Ok(FjallStore {
            inner: Arc::new(Inner {
                db,
                items,
                write_lock: Mutex::new(()),
            }),
        })
    }

    fn get<T: serde::de::DeserializeOwned>(&self, pk: &str, sk: &str) -> Result<Option<T>> {
        match self.inner.items.get(key(pk, sk)).map_err(err)? {
            Some(v) => decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Items of `pk` whose sort key starts with `sk_prefix`, in key order.
    fn scan<T: serde::de::DeserializeOwned>(&self, pk: &str, sk_prefix: &str) -> Result<Vec<T>> {
        self.inner
            .items
            .prefix(key(pk, sk_prefix))
            .map(|guard| {
                let (_, v) = guard.into_inner().map_err(err)?;
                decode(&v)
            })
            .collect()
    }
}

struct Tx<'a> {
    items: &'a Keyspace,
    pending: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Items for Tx<'_> {
    async fn get_raw(&mut self, pk: &str, sk: &str) -> Result<Option<Vec<u8>>> {
        let k = key(pk, sk);
        if let Some(v) = self.pending.get(&k) {
            return Ok(v.clone());
        }
        Ok(self.items.get(k).map_err(err)?.map(|v| v.to_vec()))
    }

    fn put_raw(&mut self, pk: &str, sk: &str, value: Vec<u8>) {
        self.pending.insert(key(pk, sk), Some(value));
    }

    fn delete(&mut self, pk: &str, sk: &str) {
        self.pending.insert(key(pk, sk), None);
    }
}

#[async_trait]
impl Store for FjallStore {
    async fn apply(&self, events: Vec<EventWrite>) -> Result<Vec<bool>> {
        // Durable (see `write`) before the persister stores its offsets.
        self.write(move |inner| {
            let mut applied = Vec::with_capacity(events.len());
            for write in &events {
                let mut tx = Tx {
                    items: &inner.items,
                    pending: HashMap::new(),
                };
                // The view reads fjall synchronously: its futures are ready at once.
                applied.push(futures::executor::block_on(apply::apply_event(
                    &mut tx, write,
                ))?);
                // One atomic batch per event: an event is applied whole or not at all.
                let mut batch = inner.db.batch();
                for (k, v) in tx.pending {
                    match v {
                        Some(v) => batch.insert(&inner.items, k, v),
                        None => batch.remove(&inner.items, k),
                    }
                }
                batch.commit().map_err(err)?;
            }
            Ok(applied)
        })
        .await
    }

    async fn conversation(&self, conversation_id: &str) -> Result<Option<Conversation>> {
        self.get(&conv_pk(conversation_id), META)
    }

    async fn member(&self, conversation_id: &str, user_id: &str) -> Result<Option<Member>> {
        self.get(&conv_pk(conversation_id), &member_sk(user_id))
    }

    async fn members(&self, conversation_id: &str) -> Result<Vec<Member>> {
        self.scan(&conv_pk(conversation_id), "MEMBER#")
    }

    async fn message(&self, conversation_id: &str, seq: i64) -> Result<Option<Message>> {
        self.get(&conv_pk(conversation_id), &msg_sk(seq))
    }

    async fn client_message_seq(
        &self,
        conversation_id: &str,
        sender_id: &str,
        client_msg_id: &str,
    ) -> Result<Option<i64>> {
        self.get(
            &conv_pk(conversation_id),
            &apply::client_sk(sender_id, client_msg_id),
        )
    }

    async fn messages(&self, conversation_id: &str, page: Page) -> Result<MessagePage> {
        let pk = conv_pk(conversation_id);
        let lower = key(
            &pk,
            &msg_sk(page.after.map_or(0, |a| a.saturating_add(1)).max(0)),
        );
        let upper = match page.before {
            Some(b) => key(&pk, &msg_sk(b.max(0))),
            None => key(&pk, "MSG$"), // '$' sorts right after '#'
        };
        if lower >= upper || page.limit == 0 {
            return Ok(MessagePage {
                messages: vec![],
                has_more: false,
            });
        }
        let range = self.inner.items.range(lower..upper);
        let take = |it: &mut dyn Iterator<Item = fjall::Guard>| -> Result<(Vec<Message>, bool)> {
            let mut out = Vec::with_capacity(page.limit);
            for guard in it {
                if out.len() == page.limit {
                    return Ok((out, true));
                }
                let (_, v) = guard.into_inner().map_err(err)?;
                out.push(decode(&v)?);
            }
            Ok((out, false))
        };
        let (messages, has_more) = if page.after.is_some() {
            take(&mut range.into_iter())?
        } else {
            let (mut newest_first, more) = take(&mut range.rev())?;
            newest_first.reverse();
            (newest_first, more)
        };
        Ok(MessagePage { messages, has_more })
    }

    async fn user_conversations(&self, user_id: &str) -> Result<Vec<UserConversation>> {
        self.scan(&user_pk(user_id), "CONV#")
    }

    async fn device(&self, user_id: &str, device_id: &str) -> Result<Option<Device>> {
        self.get(&user_pk(user_id), &device_sk(device_id))
    }

    async fn devices(&self, user_id: &str) -> Result<Vec<Device>> {
        self.scan(&user_pk(user_id), "DEVICE#")
    }

    async fn push_sent(
        &self,
        user_id: &str,
        device_id: &str,
        conversation_id: &str,
    ) -> Result<Option<i64>> {
        self.get(&user_pk(user_id), &push_sk(device_id, conversation_id))
    }

    async fn set_push_sent(
        &self,
        user_id: &str,
        device_id: &str,
        conversation_id: &str,
        seq: i64,
    ) -> Result<()> {
        let k = key(&user_pk(user_id), &push_sk(device_id, conversation_id));
        self.write(move |inner| {
            let current: Option<i64> = match inner.items.get(&k).map_err(err)? {
                Some(v) => Some(decode(&v)?),
                None => None,
            };
            if current.is_none_or(|c| c < seq) {
                inner.items.insert(k, seq.to_string()).map_err(err)?;
            }
            Ok(())
        })
        .await
    }

    async fn cold_index(&self, conversation_id: &str) -> Result<Option<ColdIndex>> {
        self.get(&conv_pk(conversation_id), COLD)
    }

    async fn put_cold_index(&self, conversation_id: &str, index: &ColdIndex) -> Result<()> {
        let bytes = serde_json::to_vec(index).map_err(|e| StoreError::Permanent(e.to_string()))?;
        let k = key(&conv_pk(conversation_id), COLD);
        self.write(move |inner| {
            inner.items.insert(k, bytes).map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn drop_hot(&self, conversation_id: &str, messages: &[Message]) -> Result<usize> {
        let pk = conv_pk(conversation_id);
        let expected: Vec<(Vec<u8>, Message)> = messages
            .iter()
            .map(|m| (key(&pk, &msg_sk(m.seq)), m.clone()))
            .collect();
        self.write(move |inner| {
            let mut batch = inner.db.batch();
            let mut dropped = 0;
            for (k, message) in expected {
                let Some(current) = inner.items.get(&k).map_err(err)? else {
                    continue;
                };
                if decode::<Message>(&current)? == message {
                    batch.remove(&inner.items, k);
                    dropped += 1;
                }
            }
            batch.commit().map_err(err)?;
            Ok(dropped)
        })
        .await
    }

    async fn day_stats(&self, day: i64) -> Result<Vec<ConversationDay>> {
        self.scan(&day_stat_pk(day), "")
    }

    async fn active_users(&self, day: i64) -> Result<Vec<String>> {
        self.scan(&active_pk(day), "")
    }

    async fn audit_day(&self, day: i64) -> Result<Vec<AuditEntry>> {
        self.scan(&audit_pk(day), "")
    }

    async fn conversation_ids(&self) -> Result<Vec<String>> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut ids = Vec::new();
            // One seek per conversation: after `CONV#<id> 0x00 …` comes the
            // next id's first item at `CONV#<id> 0x01`.
            let mut from = b"CONV#".to_vec();
            loop {
                let next = inner.items.range(from.clone()..).next();
                let Some(guard) = next else { break };
                let (k, _) = guard.into_inner().map_err(err)?;
                let Some(rest) = k.strip_prefix(b"CONV#") else {
                    break;
                };
                let Some(end) = rest.iter().position(|b| *b == 0) else {
                    break;
                };
                let id = String::from_utf8_lossy(&rest[..end]).into_owned();
                from = key(&conv_pk(&id), "");
                if let Some(sep) = from.last_mut() {
                    *sep = 1;
                }
                ids.push(id);
            }
            Ok(ids)
        })
        .await
        .map_err(|e| StoreError::Transient(format!("scan task: {e}")))?
    }
}

impl FjallStore {
    /// Runs `f` as the only writer (as `apply` is), then makes it durable.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = inner
                .write_lock
                .lock()
                .map_err(|_| StoreError::Transient("lock poisoned".into()))?;
            let out = f(&inner)?;
            inner.db.persist(PersistMode::SyncData).map_err(err)?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Transient(format!("write task: {e}")))?
    }
}
