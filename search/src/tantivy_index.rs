//! The embedded backend: a tantivy index in a directory of its own.
//!
//! One writer, serialized by a mutex; each `apply` is one commit, so what it
//! returns for is durable and visible. The indexer's batches come from the
//! broker's long poll, which bounds the commit rate.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query, RangeQuery,
    TermQuery, TermSetQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term};

use crate::analysis::{chat_analyzer, tokens};
use crate::highlight::{Terms, snippet};
use crate::query::{Clause, ParsedQuery};
use crate::{
    Hit, IndexOp, MessageDoc, Rejected, Result, SearchError, SearchIndex, SearchQuery,
    SearchResults, doc_id, recency_boost, resolve,
};

const TOKENIZER: &str = "chat";
/// The writer's indexing memory (split across its threads).
const WRITER_HEAP_BYTES: usize = 128 * 1024 * 1024;
/// A prefix matches at most this many distinct indexed words.
const PREFIX_EXPANSIONS: u32 = 200;

#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
}

struct Inner {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    f: Fields,
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    conversation_id: Field,
    sender_id: Field,
    message_id: Field,
    seq: Field,
    sent_at: Field,
    version: Field,
    deleted: Field,
    body: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let body = TextOptions::default().set_stored().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let f = Fields {
        id: b.add_text_field("id", STRING | STORED),
        conversation_id: b.add_text_field("conversation_id", STRING | STORED),
        sender_id: b.add_text_field("sender_id", STRING | STORED),
        message_id: b.add_text_field("message_id", STORED),
        seq: b.add_i64_field("seq", STORED),
        sent_at: b.add_i64_field("sent_at", INDEXED | STORED | FAST),
        version: b.add_i64_field("version", STORED),
        deleted: b.add_bool_field("deleted", INDEXED | STORED),
        body: b.add_text_field("body", body),
    };
    (b.build(), f)
}

fn transient(e: impl std::fmt::Display) -> SearchError {
    SearchError::Transient(e.to_string())
}

impl TantivyIndex {
    /// Opens the index in `dir`, creating it if needed.
    pub fn open(dir: &Path) -> Result<TantivyIndex> {
        std::fs::create_dir_all(dir).map_err(transient)?;
        let (schema, f) = schema();
        let directory = MmapDirectory::open(dir).map_err(transient)?;
        let index = Index::open_or_create(directory, schema)
            .map_err(|e| SearchError::Permanent(format!("index in {}: {e}", dir.display())))?;
        index.tokenizers().register(TOKENIZER, chat_analyzer());
        let writer = index.writer(WRITER_HEAP_BYTES).map_err(transient)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(transient)?;
        Ok(TantivyIndex {
            inner: Arc::new(Inner {
                reader,
                writer: Mutex::new(writer),
                f,
            }),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| SearchError::Transient(format!("search task failed: {e}")))?
    }
}

#[async_trait]
impl SearchIndex for TantivyIndex {
    async fn apply(&self, ops: Vec<IndexOp>) -> Result<Vec<Rejected>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        self.blocking(move |inner| inner.apply(&ops)).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResults> {
        let query = query.clone();
        self.blocking(move |inner| inner.search(&query)).await
    }

    async fn get(&self, conversation_id: &str, seq: i64) -> Result<Option<MessageDoc>> {
        let id = doc_id(conversation_id, seq);
        self.blocking(move |inner| inner.lookup(&inner.reader.searcher(), &id))
            .await
    }

    async fn erase_sender(&self, sender_id: &str) -> Result<usize> {
        let sender = sender_id.to_owned();
        self.blocking(move |inner| inner.erase_sender(&sender))
            .await
    }
}

impl Inner {
    fn apply(&self, ops: &[IndexOp]) -> Result<Vec<Rejected>> {
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| SearchError::Permanent("index writer poisoned".into()))?;
        let searcher = self.reader.searcher();
        let mut current = HashMap::new();
        for op in ops {
            let id = op.id();
            if !current.contains_key(&id)
                && let Some(doc) = self.lookup(&searcher, &id)?
            {
                current.insert(id, doc);
            }
        }
        for (_, doc) in resolve(ops, current) {
            writer.delete_term(Term::from_field_text(self.f.id, &doc.id()));
            writer
                .add_document(self.to_document(&doc))
                .map_err(transient)?;
        }
        writer.commit().map_err(transient)?;
        self.reader.reload().map_err(transient)?;
        Ok(Vec::new())
    }

    /// Deletes the sender's documents, then merges every segment that
    /// held one into new ones without them and removes the old files: a
    /// deleted document otherwise stays in its segment until a merge.
    fn erase_sender(&self, sender: &str) -> Result<usize> {
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| SearchError::Permanent("index writer poisoned".into()))?;
        let term = Term::from_field_text(self.f.sender_id, sender);
        let searcher = self.reader.searcher();
        let count = searcher
            .search(
                &TermQuery::new(term.clone(), IndexRecordOption::Basic),
                &tantivy::collector::Count,
            )
            .map_err(transient)?;
        if count == 0 {
            return Ok(0);
        }
        writer.delete_term(term);
        writer.commit().map_err(transient)?;
        let segments = writer.index().searchable_segment_ids().map_err(transient)?;
        if !segments.is_empty() {
            writer.merge(&segments).wait().map_err(transient)?;
        }
        writer.garbage_collect_files().wait().map_err(transient)?;
        self.reader.reload().map_err(transient)?;
        Ok(count)
    }

    fn lookup(&self, searcher: &Searcher, id: &str) -> Result<Option<MessageDoc>> {
        let query = TermQuery::new(
            Term::from_field_text(self.f.id, id),
            IndexRecordOption::Basic,
        );
        let top = searcher
            .search(&query, &TopDocs::with_limit(1).order_by_score())
            .map_err(transient)?;
        match top.first() {
            Some((_, address)) => self.read(searcher, *address).map(Some),
            None => Ok(None),
        }
    }

    fn to_document(&self, doc: &MessageDoc) -> tantivy::TantivyDocument {
        let f = &self.f;
        let mut d = tantivy::TantivyDocument::default();
        d.add_text(f.id, doc.id());
        d.add_text(f.conversation_id, &doc.conversation_id);
        d.add_text(f.sender_id, &doc.sender_id);
        d.add_text(f.message_id, &doc.message_id);
        d.add_i64(f.seq, doc.seq);
        d.add_i64(f.sent_at, doc.sent_at);
        d.add_i64(f.version, doc.version);
        d.add_bool(f.deleted, doc.deleted);
        d.add_text(f.body, &doc.body);
        d
    }

    fn read(&self, searcher: &Searcher, address: DocAddress) -> Result<MessageDoc> {
        let d: tantivy::TantivyDocument = searcher.doc(address).map_err(transient)?;
        let f = &self.f;
        let text = |field| {
            d.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let int = |field| d.get_first(field).and_then(|v| v.as_i64()).unwrap_or(0);
        Ok(MessageDoc {
            conversation_id: text(f.conversation_id),
            seq: int(f.seq),
            message_id: text(f.message_id),
            sender_id: text(f.sender_id),
            sent_at: int(f.sent_at),
            body: text(f.body),
            deleted: d
                .get_first(f.deleted)
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            version: int(f.version),
        })
    }

    fn search(&self, q: &SearchQuery) -> Result<SearchResults> {
        let (text_query, terms) = self.text_query(&q.text)?;
        if q.conversation_ids.is_empty() || q.limit == 0 {
            return Ok(SearchResults::default());
        }
        let f = &self.f;
        let filter = |query: Box<dyn Query>| -> (Occur, Box<dyn Query>) {
            (Occur::Must, Box::new(ConstScoreQuery::new(query, 0.0)))
        };
        let mut clauses = vec![
            (Occur::Must, text_query),
            filter(Box::new(TermSetQuery::new(
                q.conversation_ids
                    .iter()
                    .map(|c| Term::from_field_text(f.conversation_id, c)),
            ))),
            filter(Box::new(TermQuery::new(
                Term::from_field_bool(f.deleted, false),
                IndexRecordOption::Basic,
            ))),
        ];
        if let Some(sender) = &q.sender_id {
            clauses.push(filter(Box::new(TermQuery::new(
                Term::from_field_text(f.sender_id, sender),
                IndexRecordOption::Basic,
            ))));
        }
        if q.from.is_some() || q.to.is_some() {
            let bound = |v: Option<i64>| match v {
                Some(v) => Bound::Included(Term::from_field_i64(f.sent_at, v)),
                None => Bound::Unbounded,
            };
            clauses.push(filter(Box::new(RangeQuery::new(
                bound(q.from),
                bound(q.to),
            ))));
        }
        let query = BooleanQuery::new(clauses);

        let now = q.now;
        let collector = TopDocs::with_limit(q.limit + 1)
            .and_offset(q.offset)
            .tweak_score(move |segment: &tantivy::SegmentReader| {
                let sent_at = segment
                    .fast_fields()
                    .i64("sent_at")
                    .ok()
                    .map(|c| c.first_or_default_col(0));
                move |doc: tantivy::DocId, score: tantivy::Score| match &sent_at {
                    Some(col) => score * recency_boost(col.get_val(doc), now),
                    None => score,
                }
            });
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &collector).map_err(transient)?;
        let has_more = top.len() > q.limit;
        let mut hits = Vec::with_capacity(top.len().min(q.limit));
        for (score, address) in top.into_iter().take(q.limit) {
            let doc = self.read(&searcher, address)?;
            hits.push(Hit {
                snippet: snippet(&doc.body, &terms),
                conversation_id: doc.conversation_id,
                seq: doc.seq,
                message_id: doc.message_id,
                sender_id: doc.sender_id,
                sent_at: doc.sent_at,
                score,
            });
        }
        Ok(SearchResults { hits, has_more })
    }

    /// The query for the user's text (every clause must match) and the
    /// terms to highlight.
    fn text_query(&self, text: &str) -> Result<(Box<dyn Query>, Terms)> {
        let parsed = ParsedQuery::parse(text);
        let last = parsed.clauses.len().saturating_sub(1);
        let mut terms = Terms::default();
        let mut queries: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (i, clause) in parsed.clauses.iter().enumerate() {
            let (text, prefix) = match clause {
                Clause::Word(w) => (w, parsed.prefix_last && i == last),
                Clause::Phrase(p) => (p, false),
            };
            let words: Vec<String> = tokens(text).into_iter().map(|t| t.text).collect();
            let Some((tail, head)) = words.split_last() else {
                continue;
            };
            let term = |w: &String| Term::from_field_text(self.f.body, w);
            let query: Box<dyn Query> = if prefix {
                let mut q = PhrasePrefixQuery::new(words.iter().map(term).collect());
                q.set_max_expansions(PREFIX_EXPANSIONS);
                Box::new(q)
            } else if head.is_empty() {
                Box::new(TermQuery::new(term(tail), IndexRecordOption::WithFreqs))
            } else {
                Box::new(PhraseQuery::new(words.iter().map(term).collect()))
            };
            terms.exact.extend(head.iter().cloned());
            if prefix {
                terms.prefixes.push(tail.clone());
            } else {
                terms.exact.insert(tail.clone());
            }
            queries.push((Occur::Must, query));
        }
        if queries.is_empty() {
            return Err(SearchError::InvalidQuery(
                "the query has no word to search for".into(),
            ));
        }
        Ok((Box::new(BooleanQuery::new(queries)), terms))
    }
}
