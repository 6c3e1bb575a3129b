//! The gateway's operations, shared by REST and WebSocket: every change is
//! an event produced to `chat.events`, answered only once the broker has
//! acknowledged it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schemas::{Actor, ChatEvent, Codec, DevicePresence, Payload, Typing};
use store::{Member, Store};
use streams::{Producer, topics};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::delivery::hub::Hub;
use crate::error::ApiError;
use crate::rate::RateLimiter;
use crate::sends::RecentSends;
use crate::validate;
pub use crate::wire::Ack;
use schemas::now_millis;

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_body_bytes: usize,
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    pub idle_timeout: Duration,
    /// How long a read waits for the store to show this node's own writes.
    pub read_your_writes_timeout: Duration,
    /// How long a new socket holds live events for its first `resume`.
    pub resume_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 64 * 1024,
            max_body_bytes: 16 * 1024,
            rate_per_sec: 20.0,
            rate_burst: 50.0,
            idle_timeout: Duration::from_secs(60),
            read_your_writes_timeout: Duration::from_secs(5),
            resume_grace: Duration::from_secs(2),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub node_id: String,
    pub limits: Limits,
    /// `POST /v1/dev/token` is served (embedded mode on loopback only).
    pub dev_auth: bool,
}

/// The highest seq this node produced per conversation, for any event and
/// for membership changes: reads wait until the store has applied them.
#[derive(Default)]
struct Written {
    any: HashMap<String, i64>,
    membership: HashMap<String, i64>,
    /// Per user, the membership changes of theirs this node produced that
    /// the store may not have applied yet: conversation → seq. Queries over
    /// a user's conversations (search, presence) wait for them; entries go
    /// once the store has them.
    joins_and_leaves: HashMap<String, HashMap<String, i64>>,
}

impl Written {
    /// Notes an acknowledged event of this node's; `members`: the users
    /// whose membership it changes.
    fn record(
        written: &Mutex<Written>,
        conversation_id: &str,
        seq: i64,
        membership: bool,
        members: &[String],
    ) {
        let Ok(mut w) = written.lock() else { return };
        let any = w.any.entry(conversation_id.to_owned()).or_insert(seq);
        *any = (*any).max(seq);
        if membership {
            let m = w
                .membership
                .entry(conversation_id.to_owned())
                .or_insert(seq);
            *m = (*m).max(seq);
        }
        for user in members {
            let pending = w.joins_and_leaves.entry(user.clone()).or_default();
            let at = pending.entry(conversation_id.to_owned()).or_insert(seq);
            *at = (*at).max(seq);
        }
    }
}

/// The users whose membership an event changes.
fn joining_or_leaving(payload: &Payload) -> Vec<String> {
    match payload {
        Payload::ConversationCreated(c) => c.members.iter().map(|m| m.user_id.clone()).collect(),
        Payload::MemberAdded(m) => vec![m.user_id.clone()],
        Payload::MemberRemoved(m) => vec![m.user_id.clone()],
        _ => Vec::new(),
    }
}

/// Why the node cannot take writes yet (`None`: it can): its stages
/// cannot store or deliver what it would acknowledge.
pub type Readiness = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Told of this node's presence changes as they happen (a router in the
/// same process uses it to know a new device before its first event).
pub type PresenceHook = Arc<dyn Fn(&DevicePresence) + Send + Sync>;

pub struct Gateway {
    pub config: GatewayConfig,
    presence_hook: Option<PresenceHook>,
    pub auth: Auth,
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub codec: Codec,
    /// Where `GET /v1/search` looks; none on a node without search.
    pub search: Option<Arc<dyn search::SearchIndex>>,
    /// Users' data keys: what they write is sealed with them before it
    /// goes to the log (none: plaintext, as before sealing began).
    pub vault: Option<Arc<vault::Vault>>,
    /// Attachments' files; none on a node without object storage.
    pub uploads: Option<Arc<crate::uploads::Uploads>>,
    /// Who is online, for `GET /v1/users/{uid}/presence`.
    pub presence: Option<chat::presence::PresenceView>,
    pub(crate) typing_throttle: crate::rate::TypingThrottle,
    /// Fired at shutdown: sockets finish the frame in hand, then close.
    pub draining: CancellationToken,
    /// The sockets' tasks, awaited at shutdown.
    pub sockets: TaskTracker,
    readiness: Option<Readiness>,
    producer: Producer,
    /// Where each acknowledged event goes at once: the router in this
    /// process (see `router::Sequenced`).
    handover: Option<tokio::sync::mpsc::Sender<streams::Record>>,
    rate: RateLimiter,
    pub(crate) recent: RecentSends,
    written: Arc<Mutex<Written>>,
}

impl Gateway {
    pub fn new(
        config: GatewayConfig,
        auth: Auth,
        store: Arc<dyn Store>,
        producer: Producer,
    ) -> Self {
        let rate = RateLimiter::new(config.limits.rate_per_sec, config.limits.rate_burst);
        Gateway {
            config,
            presence_hook: None,
            auth,
            store,
            hub: Arc::default(),
            codec: Codec::new(),
            search: None,
            uploads: None,
            vault: None,
            presence: None,
            typing_throttle: Default::default(),
            draining: CancellationToken::new(),
            sockets: TaskTracker::new(),
            readiness: None,
            producer,
            handover: None,
            rate,
            recent: RecentSends::default(),
            written: Arc::default(),
        }
    }

    pub fn with_search(mut self, index: Arc<dyn search::SearchIndex>) -> Self {
        self.search = Some(index);
        self
    }

    pub fn with_vault(mut self, vault: Arc<vault::Vault>) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Opens stored messages' sealed content for a reader (an erased
    /// sender's reads `[erased]`).
    pub async fn open_messages(&self, messages: &mut [store::Message]) -> Result<(), ApiError> {
        if let Some(vault) = &self.vault {
            for m in messages {
                vault.open_message(m).await.map_err(vault_error)?;
            }
        }
        Ok(())
    }

    pub fn with_uploads(mut self, uploads: Arc<crate::uploads::Uploads>) -> Self {
        self.uploads = Some(uploads);
        self
    }

    pub fn with_presence(mut self, view: chat::presence::PresenceView) -> Self {
        self.presence = Some(view);
        self
    }

    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = Some(readiness);
        self
    }

    /// 503 while the node may not take writes (see [`Readiness`]) or is
    /// shutting down.
    pub fn require_ready(&self) -> Result<(), ApiError> {
        let reason = if self.draining.is_cancelled() {
            Some("this node is shutting down".to_owned())
        } else {
            self.readiness.as_ref().and_then(|r| r())
        };
        match reason {
            Some(reason) => Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{reason}, retry later"),
            )),
            None => Ok(()),
        }
    }

    pub fn with_handover(mut self, handover: tokio::sync::mpsc::Sender<streams::Record>) -> Self {
        self.handover = Some(handover);
        self
    }

    pub fn with_presence_hook(mut self, hook: PresenceHook) -> Self {
        self.presence_hook = Some(hook);
        self
    }

    pub fn check_rate(&self, user_id: &str) -> Result<(), ApiError> {
        self.rate.check(user_id).map_err(ApiError::rate_limited)
    }

    /// Produces one event and returns its seq once the broker acknowledged
    /// it. An event the log has at a place the broker did not tell (see
    /// [`Gateway::publish_at_unknown_seq`]) is a 503: retry.
    pub async fn publish(
        &self,
        conversation_id: &str,
        actor: Actor,
        payload: Payload,
    ) -> Result<(i64, ChatEvent), ApiError> {
        let (seq, event) = self
            .publish_at_unknown_seq(conversation_id, actor, payload)
            .await?;
        if seq < 0 {
            return Err(ApiError::unavailable(
                "the event log",
                "the event is stored but the broker did not say at which seq: retry",
            ));
        }
        Ok((seq, event))
    }

    /// [`Gateway::publish`], except that the seq may be -1: the record is
    /// in the log, but where is not known. An idempotent producer that
    /// re-sends a batch the broker already had (its first answer was lost,
    /// e.g. the broker was killed and restarted) is told "duplicate" and
    /// delivers no offset. The caller finds the seq another way.
    pub async fn publish_at_unknown_seq(
        &self,
        conversation_id: &str,
        actor: Actor,
        payload: Payload,
    ) -> Result<(i64, ChatEvent), ApiError> {
        self.require_ready()?;
        let membership = matches!(
            payload,
            Payload::ConversationCreated(_)
                | Payload::MemberAdded(_)
                | Payload::MemberRemoved(_)
                | Payload::MemberRoleChanged(_)
        );
        let members = joining_or_leaving(&payload);
        let event = ChatEvent {
            event_id: ulid::Ulid::new().to_string(),
            conversation_id: conversation_id.to_owned(),
            occurred_at: now_millis(),
            actor,
            payload,
        };
        let bytes = self
            .codec
            .encode(&event)
            .map_err(|e| ApiError::unavailable("the event encoder", e))?;
        let ack = self
            .producer
            .enqueue(topics::EVENTS, conversation_id.as_bytes(), &bytes)?;
        let seq = match &self.handover {
            None => {
                let seq = ack.await?.1;
                Written::record(&self.written, conversation_id, seq, membership, &members);
                seq
            }
            Some(handover) => {
                // Handed over by a task of its own, so that a caller that
                // goes away does not leave a gap the router must wait out.
                let (handover, key) = (handover.clone(), conversation_id.as_bytes().to_vec());
                let (written, cid) = (self.written.clone(), conversation_id.to_owned());
                let acked = tokio::spawn(async move {
                    let (partition, offset) = ack.await?;
                    // Before anyone can see it: a read that follows a
                    // delivery waits for the store to have it.
                    Written::record(&written, &cid, offset, membership, &members);
                    let record = streams::Record {
                        topic: topics::EVENTS.to_owned(),
                        partition,
                        offset,
                        key: Some(key),
                        payload: Some(bytes),
                        timestamp: None,
                        headers: Vec::new(),
                    };
                    // Full, or its offset unknown: the router's own read
                    // brings it.
                    if offset >= 0 {
                        let _ = handover.try_send(record);
                    }
                    Ok::<_, streams::KafkaError>(offset)
                });
                acked
                    .await
                    .map_err(|e| ApiError::unavailable("the producer", e))??
            }
        };
        Ok((seq, event))
    }

    pub async fn publish_presence(
        &self,
        user_id: &str,
        device_id: &str,
        online: bool,
    ) -> Result<(), ApiError> {
        self.publish_device_presence(&self.device_presence(user_id, device_id, online))
            .await
    }

    /// This node's presence record for a device, stamped now: the view
    /// keeps the newest record per device, so a record built when a socket
    /// closed and published later cannot undo its reconnection.
    pub fn device_presence(&self, user_id: &str, device_id: &str, online: bool) -> DevicePresence {
        DevicePresence {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            node: self.config.node_id.clone(),
            online,
            at: now_millis(),
        }
    }

    pub async fn publish_device_presence(&self, record: &DevicePresence) -> Result<(), ApiError> {
        let key = format!("{}/{}", record.user_id, record.device_id);
        self.publish_presence_record(&key, record).await
    }

    pub(crate) async fn publish_presence_record(
        &self,
        key: &str,
        record: &DevicePresence,
    ) -> Result<(), ApiError> {
        if let Some(hook) = &self.presence_hook {
            hook(record);
        }
        let bytes = self
            .codec
            .encode(record)
            .map_err(|e| ApiError::unavailable("the event encoder", e))?;
        self.producer
            .send(topics::PRESENCE, key.as_bytes(), &bytes, None)
            .await?;
        Ok(())
    }

    pub async fn publish_typing(
        &self,
        conversation_id: &str,
        user_id: &str,
        device_id: &str,
    ) -> Result<(), ApiError> {
        let record = Typing {
            conversation_id: conversation_id.to_owned(),
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            at: now_millis(),
        };
        let bytes = self
            .codec
            .encode(&record)
            .map_err(|e| ApiError::unavailable("the event encoder", e))?;
        self.producer
            .send(topics::SIGNALS, conversation_id.as_bytes(), &bytes, None)
            .await?;
        Ok(())
    }

    /// Waits until the store has applied this node's writes to the
    /// conversation (all of them, or only membership changes). True when it
    /// had to wait: what was read before may be stale.
    pub async fn read_your_writes(
        &self,
        conversation_id: &str,
        membership_only: bool,
    ) -> Result<bool, ApiError> {
        let target = self.written.lock().ok().and_then(|w| {
            let map = if membership_only {
                &w.membership
            } else {
                &w.any
            };
            map.get(conversation_id).copied()
        });
        match target {
            Some(target) => self.wait_applied(conversation_id, target).await,
            None => Ok(false),
        }
    }

    /// The highest seq the store applied in a conversation (-1: none).
    pub async fn applied_seq(&self, conversation_id: &str) -> Result<i64, ApiError> {
        Ok(self
            .store
            .conversation(conversation_id)
            .await?
            .map_or(-1, |c| c.last_seq))
    }

    /// Waits (at most the read-your-writes timeout) until the store applied
    /// `target` of the conversation, and so every event below it: the
    /// persister applies a partition in order. True when it had to wait.
    pub async fn wait_applied(&self, conversation_id: &str, target: i64) -> Result<bool, ApiError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        let mut waited = false;
        while self.applied_seq(conversation_id).await? < target {
            if started.elapsed() > self.config.limits.read_your_writes_timeout {
                return Err(ApiError::unavailable(
                    "the message store",
                    format!("{conversation_id} not caught up to {target}"),
                ));
            }
            waited = true;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        Ok(waited)
    }

    /// Waits until the store has applied every change to `user_id`'s
    /// memberships that this node produced: the user's list of
    /// conversations then includes the ones just joined and none just left
    /// (search across them, whose presence they may see).
    pub async fn user_memberships_settled(&self, user_id: &str) -> Result<(), ApiError> {
        let pending: Vec<(String, i64)> = self
            .written
            .lock()
            .ok()
            .and_then(|w| w.joins_and_leaves.get(user_id).cloned())
            .map(|p| p.into_iter().collect())
            .unwrap_or_default();
        for (conversation_id, seq) in &pending {
            self.wait_applied(conversation_id, *seq).await?;
        }
        if let Ok(mut w) = self.written.lock()
            && let Some(p) = w.joins_and_leaves.get_mut(user_id)
        {
            for (conversation_id, seq) in pending {
                if p.get(&conversation_id) == Some(&seq) {
                    p.remove(&conversation_id);
                }
            }
            if p.is_empty() {
                w.joins_and_leaves.remove(user_id);
            }
        }
        Ok(())
    }

    /// The highest seq this node produced in a conversation (-1: none).
    pub(crate) fn written_seq(&self, conversation_id: &str) -> i64 {
        self.written
            .lock()
            .ok()
            .and_then(|w| w.any.get(conversation_id).copied())
            .unwrap_or(-1)
    }

    /// The stored conversation, or 404.
    pub async fn stored_conversation(
        &self,
        conversation_id: &str,
    ) -> Result<store::Conversation, ApiError> {
        self.store
            .conversation(conversation_id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such conversation"))
    }

    /// The caller's membership, or 403 (exists, not a member) / 404.
    pub async fn require_member(
        &self,
        conversation_id: &str,
        user_id: &str,
    ) -> Result<Member, ApiError> {
        validate::named_id("conversation_id", conversation_id)?;
        self.read_your_writes(conversation_id, true).await?;
        if let Some(m) = self.store.member(conversation_id, user_id).await? {
            return Ok(m);
        }
        if self.store.conversation(conversation_id).await?.is_some() {
            Err(ApiError::forbidden(
                "you are not a member of this conversation",
            ))
        } else {
            Err(ApiError::not_found("no such conversation"))
        }
    }
}

/// An erased user may not write; the rest is the key storage failing.
pub(crate) fn vault_error(e: vault::VaultError) -> ApiError {
    match e {
        vault::VaultError::Erased(user) => ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "user_erased",
            format!("{user} was erased"),
        ),
        other => ApiError::unavailable("the key vault", other),
    }
}
