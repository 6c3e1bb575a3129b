//! The distributed backend: an OpenSearch index, written with `_bulk` and
//! external versions (version = the seq of the last event that shaped the
//! document), so replays and reorderings lose to what is stored.

use std::collections::HashMap;

use async_trait::async_trait;
use opensearch::http::request::JsonBody;
use opensearch::http::response::Response;
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use opensearch::indices::{IndicesCreateParts, IndicesExistsParts, IndicesPutIndexTemplateParts};
use opensearch::params::Refresh;
use opensearch::{BulkParts, MgetParts, OpenSearch, SearchParts};
use serde_json::{Value, json};

use crate::analysis::tokens;
use crate::query::{Clause, ParsedQuery};
use crate::{
    Hit, IndexOp, MessageDoc, RECENCY_HALF_LIFE_DAYS, Rejected, Result, SNIPPET_CHARS, SearchError,
    SearchIndex, SearchQuery, SearchResults, doc_id, resolve,
};

pub const DEFAULT_INDEX: &str = "chatflow-messages";
const PREFIX_EXPANSIONS: u32 = 200;

pub struct OpenSearchIndex {
    client: OpenSearch,
    index: String,
}

fn transient(e: impl std::fmt::Display) -> SearchError {
    SearchError::Transient(e.to_string())
}

/// Throttling and server errors pass; anything else is the request's fault.
fn classify(status: u16, what: &str, body: &str) -> SearchError {
    let message = format!("{what}: HTTP {status}: {}", truncate(body, 300));
    if status == 429 || status >= 500 {
        SearchError::Transient(message)
    } else {
        SearchError::Permanent(message)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

async fn json_of(response: Response, what: &str) -> Result<Value> {
    let status = response.status_code().as_u16();
    let body = response.text().await.map_err(transient)?;
    if !(200..300).contains(&status) {
        return Err(classify(status, what, &body));
    }
    serde_json::from_str(&body).map_err(|e| SearchError::Transient(format!("{what}: {e}")))
}

/// The analysis and mapping every chatflow message index gets: words
/// lowercased and accent-folded, CJK runs as bigrams (as the embedded
/// backend does).
fn index_template(pattern: &str) -> Value {
    json!({
        "index_patterns": [pattern],
        "template": {
            "settings": {
                "analysis": {
                    "analyzer": {
                        "chat": {
                            "type": "custom",
                            "tokenizer": "standard",
                            "filter": ["cjk_width", "lowercase", "cjk_bigram", "asciifolding"]
                        }
                    }
                }
            },
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "conversation_id": {"type": "keyword"},
                    "seq": {"type": "long"},
                    "message_id": {"type": "keyword", "index": false},
                    "sender_id": {"type": "keyword"},
                    "sent_at": {"type": "date", "format": "epoch_millis"},
                    "body": {"type": "text", "analyzer": "chat"},
                    "deleted": {"type": "boolean"},
                    "version": {"type": "long", "index": false}
                }
            }
        }
    })
}

impl OpenSearchIndex {
    /// Connects to `http(s)://host:port[/index]` and makes sure the index
    /// template and the index exist.
    pub async fn connect(url: &str) -> Result<OpenSearchIndex> {
        let mut parsed = url::Url::parse(url)
            .map_err(|e| SearchError::Permanent(format!("search URL {url:?}: {e}")))?;
        let index = match parsed.path().trim_matches('/') {
            "" => DEFAULT_INDEX.to_owned(),
            name => name.to_owned(),
        };
        parsed.set_path("/");
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(parsed))
            .disable_proxy()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| SearchError::Permanent(e.to_string()))?;
        let this = OpenSearchIndex {
            client: OpenSearch::new(transport),
            index,
        };
        this.ensure_index().await?;
        Ok(this)
    }

    async fn ensure_index(&self) -> Result<()> {
        let response = self
            .client
            .indices()
            .put_index_template(IndicesPutIndexTemplateParts::Name(&self.index))
            .body(index_template(&self.index))
            .send()
            .await
            .map_err(transient)?;
        json_of(response, "put index template").await?;
        let exists = self
            .client
            .indices()
            .exists(IndicesExistsParts::Index(&[&self.index]))
            .send()
            .await
            .map_err(transient)?;
        if exists.status_code().as_u16() == 404 {
            let response = self
                .client
                .indices()
                .create(IndicesCreateParts::Index(&self.index))
                .send()
                .await
                .map_err(transient)?;
            let status = response.status_code().as_u16();
            let body = response.text().await.map_err(transient)?;
            // Another indexer may have created it first.
            if !(200..300).contains(&status) && !body.contains("resource_already_exists") {
                return Err(classify(status, "create index", &body));
            }
        }
        Ok(())
    }

    /// One bulk request, visible to searches when it returns.
    async fn bulk(&self, body: Vec<JsonBody<Value>>, what: &str) -> Result<Value> {
        let response = self
            .client
            .bulk(BulkParts::Index(&self.index))
            .refresh(Refresh::WaitFor)
            .body(body)
            .send()
            .await
            .map_err(transient)?;
        json_of(response, what).await
    }

    async fn fetch(&self, ids: Vec<String>) -> Result<HashMap<String, MessageDoc>> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let response = self
            .client
            .mget(MgetParts::Index(&self.index))
            .body(json!({ "ids": ids }))
            .send()
            .await
            .map_err(transient)?;
        let body = json_of(response, "mget").await?;
        for doc in body["docs"].as_array().into_iter().flatten() {
            if doc["found"].as_bool() == Some(true)
                && let (Some(id), Ok(source)) = (
                    doc["_id"].as_str(),
                    serde_json::from_value::<MessageDoc>(doc["_source"].clone()),
                )
            {
                out.insert(id.to_owned(), source);
            }
        }
        Ok(out)
    }

    /// The bool query's `must` clauses for the user's text.
    fn text_clauses(text: &str) -> Result<Vec<Value>> {
        let parsed = ParsedQuery::parse(text);
        let last = parsed.clauses.len().saturating_sub(1);
        let mut must = Vec::new();
        for (i, clause) in parsed.clauses.iter().enumerate() {
            let (text, prefix) = match clause {
                Clause::Word(w) => (w, parsed.prefix_last && i == last),
                Clause::Phrase(p) => (p, false),
            };
            // The same rule as the embedded backend: text without a word
            // (punctuation) is no clause.
            if tokens(text).is_empty() {
                continue;
            }
            must.push(if prefix {
                json!({"match_phrase_prefix": {"body": {
                    "query": text, "max_expansions": PREFIX_EXPANSIONS
                }}})
            } else {
                json!({"match_phrase": {"body": text}})
            });
        }
        if must.is_empty() {
            return Err(SearchError::InvalidQuery(
                "the query has no word to search for".into(),
            ));
        }
        Ok(must)
    }
}

#[async_trait]
impl SearchIndex for OpenSearchIndex {
    async fn apply(&self, ops: Vec<IndexOp>) -> Result<Vec<Rejected>> {
        let mut ids: Vec<String> = ops
            .iter()
            .filter(|op| !matches!(op, IndexOp::Post(_)))
            .map(IndexOp::id)
            .collect();
        ids.sort();
        ids.dedup();
        // Posts need no read: the external version already makes an older
        // post lose to what is stored.
        let writes = resolve(&ops, self.fetch(ids).await?);
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let mut body: Vec<JsonBody<Value>> = Vec::with_capacity(writes.len() * 2);
        for (_, doc) in &writes {
            body.push(
                json!({"index": {
                    "_id": doc.id(), "version": doc.version, "version_type": "external"
                }})
                .into(),
            );
            body.push(json!(doc).into());
        }
        let result = self.bulk(body, "bulk").await?;
        let mut rejected = Vec::new();
        let items = result["items"].as_array().cloned().unwrap_or_default();
        for ((op, _), item) in writes.iter().zip(items) {
            let item = &item["index"];
            let status = item["status"].as_u64().unwrap_or(0) as u16;
            match status {
                // 409: the stored version is newer; this write is history.
                200..=299 | 409 => {}
                429 | 500.. => return Err(classify(status, "bulk item", &item.to_string())),
                _ => rejected.push(Rejected {
                    op: *op,
                    reason: format!("HTTP {status}: {}", item["error"]),
                }),
            }
        }
        Ok(rejected)
    }

    async fn search(&self, q: &SearchQuery) -> Result<SearchResults> {
        let must = Self::text_clauses(&q.text)?;
        if q.conversation_ids.is_empty() || q.limit == 0 {
            return Ok(SearchResults::default());
        }
        let mut filter = vec![
            json!({"terms": {"conversation_id": q.conversation_ids}}),
            json!({"term": {"deleted": false}}),
        ];
        if let Some(sender) = &q.sender_id {
            filter.push(json!({"term": {"sender_id": sender}}));
        }
        if q.from.is_some() || q.to.is_some() {
            let mut range = serde_json::Map::new();
            if let Some(from) = q.from {
                range.insert("gte".into(), json!(from));
            }
            if let Some(to) = q.to {
                range.insert("lte".into(), json!(to));
            }
            filter.push(json!({"range": {"sent_at": range}}));
        }
        let request = json!({
            "from": q.offset,
            "size": q.limit + 1,
            "query": {"function_score": {
                "query": {"bool": {"must": must, "filter": filter}},
                // score × (1 + 0.5^(age / half-life)), as the embedded backend.
                "functions": [
                    {"exp": {"sent_at": {
                        "origin": q.now,
                        "scale": format!("{}d", RECENCY_HALF_LIFE_DAYS),
                        "decay": 0.5
                    }}},
                    {"weight": 1}
                ],
                "score_mode": "sum",
                "boost_mode": "multiply"
            }},
            "sort": ["_score", {"sent_at": "desc"}],
            "_source": ["conversation_id", "seq", "message_id", "sender_id", "sent_at", "body"],
            "highlight": {
                "encoder": "html",
                "pre_tags": ["<mark>"],
                "post_tags": ["</mark>"],
                "fields": {"body": {
                    "number_of_fragments": 1,
                    "fragment_size": SNIPPET_CHARS,
                    "no_match_size": SNIPPET_CHARS
                }}
            }
        });
        let response = self
            .client
            .search(SearchParts::Index(&[&self.index]))
            .body(request)
            .send()
            .await
            .map_err(transient)?;
        let result = json_of(response, "search").await?;
        let raw = result["hits"]["hits"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let has_more = raw.len() > q.limit;
        let hits = raw
            .into_iter()
            .take(q.limit)
            .map(|h| {
                let source = &h["_source"];
                let text = |k: &str| source[k].as_str().unwrap_or_default().to_owned();
                Hit {
                    conversation_id: text("conversation_id"),
                    seq: source["seq"].as_i64().unwrap_or_default(),
                    message_id: text("message_id"),
                    sender_id: text("sender_id"),
                    sent_at: source["sent_at"].as_i64().unwrap_or_default(),
                    snippet: h["highlight"]["body"][0]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    score: h["_score"]
                        .as_f64()
                        .or_else(|| h["sort"][0].as_f64())
                        .unwrap_or_default() as f32,
                }
            })
            .collect();
        Ok(SearchResults { hits, has_more })
    }

    async fn get(&self, conversation_id: &str, seq: i64) -> Result<Option<MessageDoc>> {
        let id = doc_id(conversation_id, seq);
        Ok(self.fetch(vec![id.clone()]).await?.remove(&id))
    }

    /// Page by page: the sender's ids, then a bulk delete of them, until
    /// none is left (OpenSearch drops deleted documents at its merges).
    async fn erase_sender(&self, sender_id: &str) -> Result<usize> {
        let mut erased = 0;
        loop {
            let response = self
                .client
                .search(SearchParts::Index(&[&self.index]))
                .body(json!({
                    "query": {"bool": {"filter": [{"term": {"sender_id": sender_id}}]}},
                    "size": 500,
                    "_source": false,
                }))
                .send()
                .await
                .map_err(transient)?;
            let found = json_of(response, "search").await?;
            let ids: Vec<String> = found["hits"]["hits"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|h| h["_id"].as_str().map(str::to_owned))
                .collect();
            if ids.is_empty() {
                return Ok(erased);
            }
            let body: Vec<JsonBody<Value>> = ids
                .iter()
                .map(|id| json!({"delete": {"_id": id}}).into())
                .collect();
            let result = self.bulk(body, "bulk delete").await?;
            if result["errors"].as_bool() == Some(true) {
                let failed = result["items"].as_array().into_iter().flatten().find(|i| {
                    i["delete"]["status"]
                        .as_u64()
                        .is_some_and(|s| s >= 300 && s != 404)
                });
                if let Some(item) = failed {
                    return Err(classify(
                        item["delete"]["status"].as_u64().unwrap_or(500) as u16,
                        "bulk delete item",
                        &item.to_string(),
                    ));
                }
            }
            erased += ids.len();
        }
    }
}
