//! Message search: one async trait for every backend (tantivy embedded,
//! OpenSearch distributed), the query language users type, and the
//! conformance suite each backend must pass.
//!
//! Every document carries a version, the seq of the last event that changed
//! it (posted, edited, deleted). A write with a version at or below the
//! stored one is ignored, so replays and redeliveries are harmless. A
//! deleted message stays as a tombstone without text: a replayed post of it
//! carries a lower version and cannot bring it back.

mod analysis;
#[cfg(feature = "conformance")]
pub mod conformance;
mod highlight;
#[cfg(feature = "opensearch")]
mod opensearch_index;
mod query;
mod tantivy_index;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use analysis::chat_analyzer;
#[cfg(feature = "opensearch")]
pub use opensearch_index::OpenSearchIndex;
pub use query::{Clause, ParsedQuery};
pub use tantivy_index::TantivyIndex;

/// A search failure, classified for the caller.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Worth retrying (unavailable, throttled, timed out).
    #[error("search backend unavailable: {0}")]
    Transient(String),
    /// The request itself is wrong and never succeeds.
    #[error("search backend rejected the request: {0}")]
    Permanent(String),
    /// The user's query has nothing to search for.
    #[error("{0}")]
    InvalidQuery(String),
}

impl SearchError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SearchError::Transient(_))
    }
}

pub type Result<T, E = SearchError> = std::result::Result<T, E>;

/// One message as the index holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDoc {
    pub conversation_id: String,
    pub seq: i64,
    pub message_id: String,
    pub sender_id: String,
    /// Milliseconds since the Unix epoch.
    pub sent_at: i64,
    /// Empty once deleted.
    pub body: String,
    pub deleted: bool,
    /// The seq of the last event applied to this document.
    pub version: i64,
}

impl MessageDoc {
    pub fn id(&self) -> String {
        doc_id(&self.conversation_id, self.seq)
    }
}

/// The document id of a message: unique because the seq after the last `#`
/// is a number.
pub fn doc_id(conversation_id: &str, seq: i64) -> String {
    format!("{conversation_id}#{seq}")
}

/// One change to the index, taken from one event on `chat.events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexOp {
    Post(MessageDoc),
    Edit {
        conversation_id: String,
        seq: i64,
        body: String,
        version: i64,
    },
    Delete {
        conversation_id: String,
        seq: i64,
        version: i64,
    },
}

impl IndexOp {
    fn id(&self) -> String {
        match self {
            IndexOp::Post(doc) => doc.id(),
            IndexOp::Edit {
                conversation_id,
                seq,
                ..
            }
            | IndexOp::Delete {
                conversation_id,
                seq,
                ..
            } => doc_id(conversation_id, *seq),
        }
    }
}

/// An op the backend refused for good (the rest of the batch was applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Index into the ops given to [`SearchIndex::apply`].
    pub op: usize,
    pub reason: String,
}

/// What a user searches for. `conversation_ids` is the set the caller may
/// see (the conversations they belong to now, or the one they filtered on);
/// nothing outside it is ever returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchQuery {
    pub text: String,
    pub conversation_ids: Vec<String>,
    pub sender_id: Option<String>,
    /// Inclusive bounds on `sent_at`, milliseconds since the epoch.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub offset: usize,
    pub limit: usize,
    /// "Now" for the recency boost, milliseconds since the epoch.
    pub now: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    pub conversation_id: String,
    pub seq: i64,
    pub message_id: String,
    pub sender_id: String,
    pub sent_at: i64,
    /// The matching passage, HTML-escaped, matches wrapped in `<mark>`.
    pub snippet: String,
    pub score: f32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SearchResults {
    pub hits: Vec<Hit>,
    /// More hits exist after this page.
    pub has_more: bool,
}

/// Relevance is multiplied by `1 + 0.5^(age / RECENCY_HALF_LIFE)`: a message
/// from today counts up to twice as much as an equally relevant old one.
pub const RECENCY_HALF_LIFE_DAYS: f64 = 30.0;
/// The longest snippet, in characters.
pub const SNIPPET_CHARS: usize = 160;

pub(crate) fn recency_boost(sent_at: i64, now: i64) -> f32 {
    let age_days = (now - sent_at).max(0) as f64 / 86_400_000.0;
    (1.0 + 0.5f64.powf(age_days / RECENCY_HALF_LIFE_DAYS)) as f32
}

/// The message search index.
#[async_trait]
pub trait SearchIndex: Send + Sync + 'static {
    /// Applies the ops in order; when it returns `Ok`, what was applied is
    /// durable and visible to searches.
    async fn apply(&self, ops: Vec<IndexOp>) -> Result<Vec<Rejected>>;

    /// One page of hits, best first.
    async fn search(&self, query: &SearchQuery) -> Result<SearchResults>;

    /// A stored document, tombstones included.
    async fn get(&self, conversation_id: &str, seq: i64) -> Result<Option<MessageDoc>>;

    /// Removes every document of `sender_id` (an erased user) for good:
    /// nothing of them is left in the index's files when it returns.
    /// Returns how many went.
    async fn erase_sender(&self, sender_id: &str) -> Result<usize>;
}

/// Opens a backend by URL: `tantivy://<dir>`, or (with the `opensearch`
/// feature) `opensearch+http(s)://host:port[/index]` (plain `http(s)://`
/// works too).
pub async fn open(url: &str) -> Result<Arc<dyn SearchIndex>> {
    let url = url.strip_prefix("opensearch+").unwrap_or(url);
    match url.split_once("://") {
        Some(("tantivy", dir)) => Ok(Arc::new(TantivyIndex::open(std::path::Path::new(dir))?)),
        #[cfg(feature = "opensearch")]
        Some(("http" | "https", _)) => Ok(Arc::new(OpenSearchIndex::connect(url).await?)),
        _ => Err(SearchError::Permanent(format!(
            "unsupported search URL {url:?} (this build knows tantivy://<dir>{})",
            if cfg!(feature = "opensearch") {
                " and opensearch+http(s)://<host:port>[/<index>]"
            } else {
                ""
            }
        ))),
    }
}

/// Folds a batch of ops over the documents as stored into the documents to
/// write, each with the index of the last op that shaped it. Ops at or below
/// a document's version change nothing; an edit of an unknown message is
/// dropped (nothing to edit), a delete of one leaves a tombstone so that a
/// late post cannot resurrect it.
pub(crate) fn resolve(
    ops: &[IndexOp],
    mut current: HashMap<String, MessageDoc>,
) -> Vec<(usize, MessageDoc)> {
    let mut changed: HashMap<String, usize> = HashMap::new();
    for (index, op) in ops.iter().enumerate() {
        let id = op.id();
        let existing = current.get(&id);
        let next = match op {
            IndexOp::Post(doc) => match existing {
                Some(old) if old.version >= doc.version => None,
                _ => Some(doc.clone()),
            },
            IndexOp::Edit { body, version, .. } => match existing {
                Some(old) if old.version < *version && !old.deleted => Some(MessageDoc {
                    body: body.clone(),
                    version: *version,
                    ..old.clone()
                }),
                _ => None,
            },
            IndexOp::Delete {
                conversation_id,
                seq,
                version,
            } => match existing {
                Some(old) if old.version >= *version => None,
                Some(old) => Some(MessageDoc {
                    body: String::new(),
                    deleted: true,
                    version: *version,
                    ..old.clone()
                }),
                None => Some(MessageDoc {
                    conversation_id: conversation_id.clone(),
                    seq: *seq,
                    message_id: String::new(),
                    sender_id: String::new(),
                    sent_at: 0,
                    body: String::new(),
                    deleted: true,
                    version: *version,
                }),
            },
        };
        if let Some(doc) = next {
            changed.insert(id.clone(), index);
            current.insert(id, doc);
        }
    }
    let mut out: Vec<(usize, MessageDoc)> = changed
        .into_iter()
        .filter_map(|(id, index)| current.remove(&id).map(|doc| (index, doc)))
        .collect();
    out.sort_by_key(|(index, _)| *index);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(seq: i64, body: &str) -> IndexOp {
        IndexOp::Post(doc(seq, body))
    }

    fn doc(seq: i64, body: &str) -> MessageDoc {
        MessageDoc {
            conversation_id: "c".into(),
            seq,
            message_id: format!("m{seq}"),
            sender_id: "u".into(),
            sent_at: seq,
            body: body.into(),
            deleted: false,
            version: seq,
        }
    }

    #[test]
    fn edits_and_deletes_fold_over_posts_in_the_same_batch() {
        let ops = vec![
            post(1, "one"),
            post(2, "two"),
            IndexOp::Edit {
                conversation_id: "c".into(),
                seq: 1,
                body: "uno".into(),
                version: 3,
            },
            IndexOp::Delete {
                conversation_id: "c".into(),
                seq: 2,
                version: 4,
            },
            // A redelivered post is older than what it became.
            post(1, "one"),
        ];
        let out = resolve(&ops, HashMap::new());
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0, out[0].1.body.as_str()), (2, "uno"));
        assert_eq!(out[1].0, 3);
        assert!(out[1].1.deleted && out[1].1.body.is_empty());
    }

    #[test]
    fn nothing_at_or_below_the_stored_version_changes_a_document() {
        let stored = MessageDoc {
            body: "edited".into(),
            version: 9,
            ..doc(5, "x")
        };
        let current = HashMap::from([(stored.id(), stored)]);
        let ops = vec![
            post(5, "x"),
            IndexOp::Edit {
                conversation_id: "c".into(),
                seq: 5,
                body: "older edit".into(),
                version: 7,
            },
        ];
        assert!(resolve(&ops, current).is_empty());
        // An edit of a message the index never saw has nothing to edit.
        let edit = IndexOp::Edit {
            conversation_id: "c".into(),
            seq: 8,
            body: "?".into(),
            version: 10,
        };
        assert!(resolve(&[edit], HashMap::new()).is_empty());
    }
}
