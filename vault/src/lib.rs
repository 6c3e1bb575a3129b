//! Crypto-shredding: how a user's content becomes unreadable on a log that
//! is never rewritten (GDPR erasure).
//!
//! Each user has one data key, made at their first message, kept in object
//! storage (`keys/<hex of the user id>.json`, beside the archive, because
//! it is not a read model: a replay cannot rebuild it), wrapped with the
//! deployment's master key. The gateway seals what a user writes with it
//! before the event goes to the log: a message's body, its attachments'
//! names and thumbnails, an edit's body (AES-256-GCM, a random nonce each,
//! the conversation id as associated data). So the log, its archive, the
//! store and the cold tier hold ciphertext; each reader opens it on the way
//! out. Erasure replaces the key with a tombstone: from then on, and in
//! every replay, that content reads as [`ERASED`].
//!
//! Keys are cached for [`CACHE_TTL`]; a node that did not itself erase a
//! user may open their content for that long after the erasure.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload as AeadPayload};
use aes_gcm::{Aes256Gcm, Nonce};
use archive::{Archive, ArchiveError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use schemas::{ChatEvent, MessageEdited, MessagePosted, Payload};
use serde::{Deserialize, Serialize};

/// What an erased user's content reads as.
pub const ERASED: &str = "[erased]";
/// What content reads as when it does not open with its key (altered).
pub const UNREADABLE: &str = "[unreadable]";
/// How long a node trusts a key (or its absence) it looked up.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The user was erased: nothing of theirs is sealed any more.
    #[error("user {0} was erased")]
    Erased(String),
    #[error(transparent)]
    Storage(#[from] ArchiveError),
    /// A key record that does not open with the master key.
    #[error("key of {user}: {reason}")]
    Corrupt { user: String, reason: String },
    #[error("master key: {0}")]
    MasterKey(String),
}

/// The deployment's key-encryption key: 32 bytes, base64.
pub struct MasterKey(Aes256Gcm);

impl MasterKey {
    pub fn from_base64(text: &str) -> Result<MasterKey, VaultError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| VaultError::MasterKey(format!("not base64: {e}")))?;
        if bytes.len() != 32 {
            return Err(VaultError::MasterKey(format!(
                "{} bytes; it must be 32 (openssl rand -base64 32)",
                bytes.len()
            )));
        }
        Aes256Gcm::new_from_slice(&bytes)
            .map(MasterKey)
            .map_err(|e| VaultError::MasterKey(e.to_string()))
    }

    /// `--master-key` when given, else the data dir's `master-key` file
    /// (made at first use).
    pub fn configured(given: Option<&str>, data_dir: &Path) -> Result<MasterKey, VaultError> {
        match given {
            Some(text) => Self::from_base64(text),
            None => Self::load_or_create(&data_dir.join("master-key")),
        }
    }

    /// The key in `path`, made (random, readable by its owner only) if
    /// there is none: embedded mode's default.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, VaultError> {
        let io = |e: std::io::Error| VaultError::MasterKey(format!("{}: {e}", path.display()));
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Aes256Gcm::generate_key(&mut OsRng);
                let text = B64.encode(key);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(path, &text).map_err(io)?;
                Self::from_base64(&text)
            }
            Err(e) => Err(io(e)),
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// `keys/<hex user id>.json`: the wrapped key, or the tombstone erasure
/// leaves in its place.
#[derive(Serialize, Deserialize)]
struct KeyRecord {
    key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wrapped: Option<String>,
    created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    erased_at: Option<i64>,
}

fn record_key(user_id: &str) -> String {
    format!("keys/{}.json", hex::encode(user_id))
}

/// One user's data key.
pub struct UserKey {
    pub id: String,
    cipher: Aes256Gcm,
}

impl UserKey {
    /// base64 of nonce and ciphertext; `aad` binds it to its place.
    pub fn seal(&self, aad: &str, text: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                AeadPayload {
                    msg: text.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// The text [`UserKey::seal`] sealed, or `None` when it does not open.
    pub fn open(&self, aad: &str, sealed: &str) -> Option<String> {
        let bytes = B64.decode(sealed).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                AeadPayload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

#[derive(Clone)]
enum Entry {
    Key(Arc<UserKey>),
    Erased,
    /// The user never sealed anything.
    Absent,
}

pub struct Vault {
    archive: Arc<dyn Archive>,
    master: MasterKey,
    cache: Mutex<HashMap<String, (Instant, Entry)>>,
}

impl Vault {
    pub fn new(archive: Arc<dyn Archive>, master: MasterKey) -> Vault {
        Vault {
            archive,
            master,
            cache: Mutex::default(),
        }
    }

    fn cached(&self, user_id: &str) -> Option<Entry> {
        let cache = self.cache.lock().ok()?;
        let (at, entry) = cache.get(user_id)?;
        (at.elapsed() < CACHE_TTL).then(|| entry.clone())
    }

    fn remember(&self, user_id: &str, entry: Entry) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 100_000 {
                cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            }
            cache.insert(user_id.to_owned(), (Instant::now(), entry));
        }
    }

    fn unwrap(&self, user_id: &str, record: KeyRecord) -> Result<Entry, VaultError> {
        let Some(wrapped) = record.wrapped else {
            return Ok(Entry::Erased);
        };
        let corrupt = |reason: &str| VaultError::Corrupt {
            user: user_id.to_owned(),
            reason: reason.to_owned(),
        };
        let bytes = B64.decode(&wrapped).map_err(|_| corrupt("not base64"))?;
        if bytes.len() < 12 {
            return Err(corrupt("too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| corrupt("too short"))?;
        let key = self
            .master
            .0
            .decrypt(
                &Nonce::from(nonce),
                AeadPayload {
                    msg: ciphertext,
                    aad: user_id.as_bytes(),
                },
            )
            .map_err(|_| corrupt("does not open with this master key"))?;
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| corrupt("not a 256-bit key"))?;
        Ok(Entry::Key(Arc::new(UserKey {
            id: record.key_id,
            cipher,
        })))
    }

    async fn lookup(&self, user_id: &str) -> Result<Entry, VaultError> {
        if let Some(entry) = self.cached(user_id) {
            return Ok(entry);
        }
        let entry = match self.archive.get(&record_key(user_id)).await? {
            None => Entry::Absent,
            Some(bytes) => {
                let record: KeyRecord =
                    serde_json::from_slice(&bytes).map_err(|e| VaultError::Corrupt {
                        user: user_id.to_owned(),
                        reason: e.to_string(),
                    })?;
                self.unwrap(user_id, record)?
            }
        };
        self.remember(user_id, entry.clone());
        Ok(entry)
    }

    /// The key `user_id`'s content is sealed with, made at first use;
    /// an erased user has none.
    pub async fn sealing_key(&self, user_id: &str) -> Result<Arc<UserKey>, VaultError> {
        match self.lookup(user_id).await? {
            Entry::Key(key) => return Ok(key),
            Entry::Erased => return Err(VaultError::Erased(user_id.to_owned())),
            Entry::Absent => {}
        }
        let key = Aes256Gcm::generate_key(&mut OsRng);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let wrapped = self
            .master
            .0
            .encrypt(
                &nonce,
                AeadPayload {
                    msg: &key[..],
                    aad: user_id.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&wrapped);
        let record = KeyRecord {
            key_id: ulid::Ulid::new().to_string(),
            wrapped: Some(B64.encode(bytes)),
            created_at: schemas::now_millis(),
            erased_at: None,
        };
        let json = serde_json::to_vec(&record).unwrap_or_default();
        // Another node may make one at the same moment: whichever was
        // written first is the key, for both.
        self.archive
            .put_if_absent(&record_key(user_id), Bytes::from(json))
            .await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(user_id);
        }
        match self.lookup(user_id).await? {
            Entry::Key(key) => Ok(key),
            _ => Err(VaultError::Erased(user_id.to_owned())),
        }
    }

    /// Deletes `user_id`'s key, leaving a tombstone (so no new key is
    /// made for them). True when there was a key.
    pub async fn erase(&self, user_id: &str) -> Result<bool, VaultError> {
        let had = matches!(self.lookup(user_id).await?, Entry::Key(_));
        let tombstone = KeyRecord {
            key_id: String::new(),
            wrapped: None,
            created_at: schemas::now_millis(),
            erased_at: Some(schemas::now_millis()),
        };
        let json = serde_json::to_vec(&tombstone).unwrap_or_default();
        self.archive
            .put(&record_key(user_id), Bytes::from(json))
            .await?;
        self.remember(user_id, Entry::Erased);
        Ok(had)
    }

    pub async fn is_erased(&self, user_id: &str) -> Result<bool, VaultError> {
        Ok(matches!(self.lookup(user_id).await?, Entry::Erased))
    }

    /// Seals a new message of `user_id`'s in `conversation_id`.
    pub async fn seal_posted(
        &self,
        user_id: &str,
        conversation_id: &str,
        p: &mut MessagePosted,
    ) -> Result<(), VaultError> {
        let key = self.sealing_key(user_id).await?;
        p.body = key.seal(conversation_id, &p.body);
        for a in &mut p.attachments {
            a.name = key.seal(conversation_id, &a.name);
            a.thumbnail = a.thumbnail.as_ref().map(|t| key.seal(conversation_id, t));
        }
        p.sealed = Some(key.id.clone());
        Ok(())
    }

    pub async fn seal_edited(
        &self,
        user_id: &str,
        conversation_id: &str,
        e: &mut MessageEdited,
    ) -> Result<(), VaultError> {
        let key = self.sealing_key(user_id).await?;
        e.body = key.seal(conversation_id, &e.body);
        e.sealed = Some(key.id.clone());
        Ok(())
    }

    /// The key that opens what `user_id` sealed with `key_id`: `Ok(None)`
    /// when it is gone (erased).
    async fn opener(
        &self,
        user_id: &str,
        key_id: &str,
    ) -> Result<Option<Arc<UserKey>>, VaultError> {
        Ok(match self.lookup(user_id).await? {
            Entry::Key(key) if key.id == key_id => Some(key),
            _ => None,
        })
    }

    /// Opens a sealed event's content in place (a new message or an
    /// edit); content of an erased user becomes [`ERASED`], and then it
    /// answers true.
    pub async fn open_event(&self, event: &mut ChatEvent) -> Result<bool, VaultError> {
        let Some(key_id) = sealed_by(event) else {
            return Ok(false);
        };
        let key = self.opener(&event.actor.user_id, &key_id).await?;
        open_payload(key.as_deref(), &event.conversation_id, &mut event.payload);
        Ok(key.is_none())
    }

    /// [`Vault::open_event`] for a caller that cannot wait (live delivery,
    /// which keeps each conversation's order): from the cache, else with
    /// one lookup on a thread of its own.
    pub fn open_event_now(self: &Arc<Self>, event: &mut ChatEvent) {
        let Some(key_id) = sealed_by(event) else {
            return;
        };
        let user = event.actor.user_id.clone();
        let key = match self.cached(&user) {
            Some(Entry::Key(key)) if key.id == key_id => Some(key),
            Some(_) => None,
            None => {
                let (vault, id) = (self.clone(), key_id.clone());
                let looked_up = std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()
                        .and_then(|rt| rt.block_on(vault.opener(&user, &id)).ok())
                        .flatten()
                })
                .join();
                looked_up.ok().flatten()
            }
        };
        open_payload(key.as_deref(), &event.conversation_id, &mut event.payload);
    }

    /// Opens a stored message in place. A plaintext message (written
    /// before sealing began) of a user erased since reads as erased too.
    pub async fn open_message(&self, m: &mut store::Message) -> Result<(), VaultError> {
        let key = match &m.sealed {
            Some(key_id) => self.opener(&m.sender_id, key_id).await?,
            None => {
                if !m.deleted && self.is_erased(&m.sender_id).await? {
                    erase_message(m);
                }
                return Ok(());
            }
        };
        let (key, cid) = (key.as_deref(), m.conversation_id.as_str());
        m.body = m.body.as_deref().map(|b| open_text(key, cid, b));
        open_attachments(key, cid, &mut m.attachments);
        if key.is_none() {
            erase_message(m);
        }
        m.sealed = None;
        Ok(())
    }
}

/// The key id an event's content is sealed with, if any.
fn sealed_by(event: &ChatEvent) -> Option<String> {
    match &event.payload {
        Payload::MessagePosted(p) => p.sealed.clone(),
        Payload::MessageEdited(e) => e.sealed.clone(),
        _ => None,
    }
}

/// Sealed text opened with its key: [`ERASED`] when the key is gone,
/// [`UNREADABLE`] when it does not open.
fn open_text(key: Option<&UserKey>, aad: &str, text: &str) -> String {
    match key {
        Some(key) => key.open(aad, text).unwrap_or_else(|| UNREADABLE.to_owned()),
        None => ERASED.to_owned(),
    }
}

/// Names and thumbnails opened; an erased sender's files are gone.
fn open_attachments(key: Option<&UserKey>, aad: &str, attachments: &mut Vec<schemas::Attachment>) {
    let Some(key) = key else {
        attachments.clear();
        return;
    };
    for a in attachments {
        a.name = open_text(Some(key), aad, &a.name);
        a.thumbnail = a.thumbnail.as_ref().and_then(|t| key.open(aad, t));
    }
}

fn open_payload(key: Option<&UserKey>, conversation_id: &str, payload: &mut Payload) {
    match payload {
        Payload::MessagePosted(p) => {
            p.body = open_text(key, conversation_id, &p.body);
            open_attachments(key, conversation_id, &mut p.attachments);
            p.sealed = None;
        }
        Payload::MessageEdited(e) => {
            e.body = open_text(key, conversation_id, &e.body);
            e.sealed = None;
        }
        _ => {}
    }
}

/// An erased user's message: its body reads [`ERASED`], its files and
/// mentions are gone.
fn erase_message(m: &mut store::Message) {
    if !m.deleted {
        m.body = Some(ERASED.to_owned());
    }
    m.attachments.clear();
    m.mentions.clear();
    m.sealed = None;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
