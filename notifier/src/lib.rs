//! The notifier stage: a push to each device of each member who has no
//! device online when a message is posted, except the sender, members who
//! muted the conversation (a mention still gets through) and members who
//! read it meanwhile.
//!
//! Pushes collapse: the first message opens a window per device and
//! conversation; the messages until it closes join it, and one push tells
//! of them all ("20 new messages"). Reading the conversation or coming
//! online cancels it. Mentions and direct messages are urgent (high
//! priority, short expiry). No message text goes out unless the operator
//! asks (`--push-show-body`), as Signal does.
//!
//! Exactly one push per window across redelivery and restart: a window's
//! events are not committed until its push went out (the runtime's
//! durable offset), and a ledger in the store (the last seq pushed per
//! device and conversation) makes a redelivered event open no window
//! again.

pub mod providers;
mod service;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chat::presence::PresenceView;
use futures::StreamExt;
use providers::{Providers, Push, PushError};
use schemas::{ChatEvent, Codec, Payload};
use store::Store;
use streams::{Record, Rejection, Stage, StageError};
use tracing::{debug, warn};

pub use service::{NotifierArgs, Service};

pub const GROUP: &str = "notifier";

#[derive(Clone, Debug)]
pub struct Config {
    /// How long a window collects messages before its push (0: at once).
    pub window: Duration,
    /// Pushes per device per minute, at most; more wait and collapse.
    pub per_device_per_minute: usize,
    /// Put the newest message's text in the push.
    pub show_body: bool,
    /// Give up on a push after this many failed tries.
    pub max_attempts: u32,
}

/// A device's pending push for one conversation.
struct Window {
    platform: String,
    token: String,
    last_seq: i64,
    count: u32,
    urgent: bool,
    title: String,
    body: String,
    /// The record that opened it: nothing from it on is committed before
    /// the push is out.
    partition: (String, i32),
    first_offset: i64,
    due: Instant,
    attempts: u32,
}

/// (user, device, conversation)
type Key = (String, String, String);

pub struct Notifier {
    store: Arc<dyn Store>,
    presence: PresenceView,
    providers: Providers,
    config: Config,
    codec: Codec,
    windows: tokio::sync::Mutex<HashMap<Key, Window>>,
    /// The earliest offset per partition that a pending window holds.
    holds: std::sync::Mutex<HashMap<(String, i32), i64>>,
    /// Recent pushes per device, for the rate cap.
    sent: std::sync::Mutex<HashMap<(String, String), VecDeque<Instant>>>,
    /// Produces the removal of a dead token.
    removals: Option<streams::Producer>,
    /// Tokens a provider called dead, skipped until the store has their
    /// removal: (user, device, token).
    dead: std::sync::Mutex<std::collections::HashSet<(String, String, String)>>,
    /// Opens sealed message text, when pushes show it.
    vault: Option<Arc<vault::Vault>>,
}

fn count(reason: &'static str) {
    metrics::counter!("chatflow_push_suppressed_total", "reason" => reason).increment(1);
}

impl Notifier {
    pub fn new(
        store: Arc<dyn Store>,
        presence: PresenceView,
        providers: Providers,
        config: Config,
        removals: Option<streams::Producer>,
    ) -> Notifier {
        Notifier {
            store,
            presence,
            providers,
            config,
            codec: Codec::new(),
            windows: Default::default(),
            holds: Default::default(),
            sent: Default::default(),
            removals,
            dead: Default::default(),
            vault: None,
        }
    }

    /// Opens sealed message text for pushes that show it.
    pub fn with_vault(mut self, vault: Arc<vault::Vault>) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Waits (a while) for the store to hold the event: members, mutes and
    /// receipts are read from it. `None`: a conversation the store does not
    /// know (nothing to tell anyone).
    async fn until_stored(
        &self,
        cid: &str,
        seq: i64,
    ) -> Result<Option<store::Conversation>, StageError> {
        let started = Instant::now();
        loop {
            let conversation = self.store.conversation(cid).await.map_err(stage_error)?;
            match conversation {
                Some(c) if c.last_seq >= seq => return Ok(Some(c)),
                None if started.elapsed() > Duration::from_secs(10) => {
                    warn!(conversation = %cid, seq, "a message in a conversation the store does not know");
                    return Ok(None);
                }
                Some(_) if started.elapsed() > Duration::from_secs(10) => {
                    return Err(StageError(format!(
                        "the store has not applied {cid} seq {seq} yet"
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    async fn posted(
        &self,
        record: &Record,
        event: &ChatEvent,
        mentions: &[String],
        body: &str,
    ) -> Result<(), StageError> {
        let (cid, seq, actor) = (&event.conversation_id, record.offset, &event.actor.user_id);
        let Some(conversation) = self.until_stored(cid, seq).await? else {
            return Ok(());
        };
        let direct = conversation.kind == "direct";
        let title = match (&conversation.name, direct) {
            (Some(name), _) if !name.is_empty() => name.clone(),
            (_, true) => actor.clone(),
            _ => "New messages".into(),
        };
        let members = self.store.members(cid).await.map_err(stage_error)?;
        let mut windows = self.windows.lock().await;
        for member in members.iter().filter(|m| &m.user_id != actor) {
            let user = &member.user_id;
            if member.last_read_seq >= seq {
                count("read");
                continue;
            }
            let mentioned = mentions.contains(user);
            let muted = self
                .store
                .user_conversations(user)
                .await
                .map_err(stage_error)?
                .iter()
                .any(|uc| &uc.conversation_id == cid && uc.muted);
            if muted && !mentioned {
                count("muted");
                continue;
            }
            if self.presence.is_online(user) {
                count("online");
                continue;
            }
            for device in self.store.devices(user).await.map_err(stage_error)? {
                let Some(token) = device.push_token.clone() else {
                    continue;
                };
                let dead_key = (user.clone(), device.device_id.clone(), token.clone());
                if self
                    .dead
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&dead_key)
                {
                    count("dead_token");
                    continue;
                }
                let key = (user.clone(), device.device_id.clone(), cid.clone());
                // The ledger matters only to a window about to open: one
                // already open took newer messages than any pushed.
                if !windows.contains_key(&key) {
                    let pushed = self
                        .store
                        .push_sent(user, &device.device_id, cid)
                        .await
                        .map_err(stage_error)?;
                    if pushed.is_some_and(|p| p >= seq) {
                        count("already_sent");
                        continue;
                    }
                }
                let w = windows.entry(key).or_insert_with(|| Window {
                    platform: device.platform.clone().unwrap_or_default(),
                    token,
                    last_seq: seq,
                    count: 0,
                    urgent: false,
                    title: title.clone(),
                    body: String::new(),
                    partition: (record.topic.clone(), record.partition),
                    first_offset: record.offset,
                    due: Instant::now() + self.config.window,
                    attempts: 0,
                });
                if seq < w.last_seq {
                    continue; // redelivered into a window that has it
                }
                w.last_seq = seq;
                w.count += 1;
                w.urgent |= mentioned || direct;
                w.body = if self.config.show_body {
                    body.to_owned()
                } else if w.count == 1 {
                    "New message".into()
                } else {
                    format!("{} new messages", w.count)
                };
            }
        }
        Ok(())
    }

    /// A member read up to `seq`: their pending pushes for it are moot.
    async fn read(&self, user: &str, cid: &str, seq: i64) {
        let mut windows = self.windows.lock().await;
        windows.retain(|(u, _, c), w| {
            let moot = u == user && c == cid && w.last_seq <= seq;
            if moot {
                count("read");
            }
            !moot
        });
    }

    fn update_holds(&self, windows: &HashMap<Key, Window>) {
        let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        holds.clear();
        for w in windows.values() {
            let h = holds.entry(w.partition.clone()).or_insert(w.first_offset);
            *h = (*h).min(w.first_offset);
        }
    }

    /// Under the per-device cap? Records the push if so.
    fn within_rate(&self, user: &str, device: &str) -> bool {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let recent = sent
            .entry((user.to_owned(), device.to_owned()))
            .or_default();
        let now = Instant::now();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            recent.pop_front();
        }
        if recent.len() >= self.config.per_device_per_minute {
            return false;
        }
        recent.push_back(now);
        true
    }

    /// Sends one window's push. `Some(window)` when it must wait longer.
    async fn deliver(&self, key: &Key, mut w: Window) -> Result<Option<Window>, StageError> {
        let (user, device, cid) = key;
        if self.presence.is_online(user) {
            count("online");
            return Ok(None);
        }
        let member = self.store.member(cid, user).await.map_err(stage_error)?;
        if member.is_none_or(|m| m.last_read_seq >= w.last_seq) {
            count("read");
            return Ok(None);
        }
        let Some(provider) = self.providers.for_platform(&w.platform) else {
            count("no_provider");
            return Ok(None);
        };
        if !self.within_rate(user, device) {
            count("rate_limited");
            w.due = Instant::now() + Duration::from_secs(5);
            return Ok(Some(w));
        }
        let push = Push {
            user_id: user.clone(),
            device_id: device.clone(),
            platform: w.platform.clone(),
            token: w.token.clone(),
            conversation_id: cid.clone(),
            seq: w.last_seq,
            count: w.count,
            title: w.title.clone(),
            body: w.body.clone(),
            urgent: w.urgent,
        };
        let provider_name = provider.name();
        match provider.send(&push).await {
            Ok(()) => {
                metrics::counter!("chatflow_push_sent_total", "provider" => provider_name)
                    .increment(1);
                self.store
                    .set_push_sent(user, device, cid, w.last_seq)
                    .await
                    .map_err(stage_error)?;
                debug!(user, device, conversation = %cid, count = w.count, "push sent");
                Ok(None)
            }
            Err(PushError::Retry { after, reason })
                if w.attempts + 1 < self.config.max_attempts =>
            {
                w.attempts += 1;
                let backoff = Duration::from_millis(250 << w.attempts.min(8));
                w.due = Instant::now() + after.unwrap_or(backoff).max(backoff);
                debug!(user, device, %reason, attempt = w.attempts, "push deferred");
                Ok(Some(w))
            }
            Err(PushError::DeadToken(reason)) => {
                metrics::counter!("chatflow_push_failed_total", "provider" => provider_name, "reason" => "dead_token").increment(1);
                warn!(user, device, %reason, "push token is dead, removing the device's token");
                self.dead.lock().unwrap_or_else(|e| e.into_inner()).insert((
                    user.clone(),
                    device.clone(),
                    w.token.clone(),
                ));
                self.remove_token(user, device, &w.token).await?;
                Ok(None)
            }
            Err(e) => {
                metrics::counter!("chatflow_push_failed_total", "provider" => provider_name, "reason" => "failed").increment(1);
                warn!(user, device, error = %e, "push failed");
                Ok(None)
            }
        }
    }

    /// Forgets a dead token with an event on the user's stream, unless the
    /// device has a new token already.
    async fn remove_token(&self, user: &str, device: &str, token: &str) -> Result<(), StageError> {
        let current = self.store.device(user, device).await.map_err(stage_error)?;
        let Some(current) = current.filter(|d| d.push_token.as_deref() == Some(token)) else {
            return Ok(());
        };
        let Some(producer) = &self.removals else {
            return Ok(());
        };
        let event = ChatEvent {
            event_id: format!("notifier-{user}-{device}-{}", schemas::now_millis()),
            conversation_id: schemas::user_stream(user),
            occurred_at: schemas::now_millis(),
            actor: schemas::Actor {
                user_id: user.to_owned(),
                device_id: device.to_owned(),
            },
            payload: Payload::DeviceRegistered(schemas::DeviceRegistered {
                device_id: device.to_owned(),
                platform: current.platform.unwrap_or_default(),
                push_token: None,
            }),
        };
        let bytes = self
            .codec
            .encode(&event)
            .map_err(|e| StageError(e.to_string()))?;
        producer
            .send(
                streams::topics::EVENTS,
                event.conversation_id.as_bytes(),
                &bytes,
                None,
            )
            .await
            .map_err(|e| StageError(e.to_string()))?;
        Ok(())
    }
}

impl Notifier {
    /// Opens, fills and cancels windows for a batch's events.
    async fn handle(&self, batch: &[Record]) -> Result<Vec<Rejection>, StageError> {
        let mut rejected = Vec::new();
        for (index, record) in batch.iter().enumerate() {
            let mut event: ChatEvent = match record.decode(&self.codec) {
                Ok(e) => e,
                Err(reason) => {
                    rejected.push(Rejection::new(index, reason));
                    continue;
                }
            };
            if self.config.show_body
                && let Some(vault) = &self.vault
            {
                vault
                    .open_event(&mut event)
                    .await
                    .map_err(|e| StageError(format!("opening sealed content: {e}")))?;
            }
            match &event.payload {
                // A silent message notifies nobody (it still counts as
                // unread, which the store keeps).
                Payload::MessagePosted(p) if !p.silent => {
                    self.posted(record, &event, &p.mentions, &p.body).await?;
                }
                Payload::ReadUpTo(r) => {
                    self.read(&event.actor.user_id, &event.conversation_id, r.seq)
                        .await;
                }
                _ => {}
            }
        }
        Ok(rejected)
    }
}

fn stage_error(e: store::StoreError) -> StageError {
    StageError(e.to_string())
}

#[async_trait]
impl Stage for Notifier {
    async fn process(&self, batch: &[Record]) -> Result<Vec<Rejection>, StageError> {
        let result = self.handle(batch).await;
        // Once per batch: the runtime asks for it only between batches.
        self.update_holds(&*self.windows.lock().await);
        result
    }

    fn durable_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        holds.get(&(topic.to_owned(), partition)).copied()
    }

    /// Sends the pushes whose window closed.
    async fn flush(&self) -> Result<(), StageError> {
        let now = Instant::now();
        let due: Vec<(Key, Window)> = {
            let mut windows = self.windows.lock().await;
            let keys: Vec<Key> = windows
                .iter()
                .filter(|(_, w)| w.due <= now)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| windows.remove(&k).map(|w| (k, w)))
                .collect()
        };
        if due.is_empty() {
            return Ok(());
        }
        let results: Vec<(Key, Result<Option<Window>, StageError>)> = futures::stream::iter(due)
            .map(|(key, w)| async move {
                let r = self.deliver(&key, w).await;
                (key, r)
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let mut windows = self.windows.lock().await;
        let mut failure = None;
        for (key, result) in results {
            match result {
                Ok(Some(w)) => {
                    windows.insert(key, w);
                }
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
        }
        self.update_holds(&windows);
        failure.map_or(Ok(()), Err)
    }

    fn revoked(&self, partitions: &[(String, i32)]) {
        // The new owner reads these partitions from the committed offset,
        // which no pending window's events passed.
        if let Ok(mut windows) = self.windows.try_lock() {
            windows.retain(|_, w| !partitions.contains(&w.partition));
            self.update_holds(&windows);
        }
    }
}
