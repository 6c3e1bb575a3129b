//! An index that can be replaced while the process serves: searches always
//! reach the current one, and writes can be held while a replacement
//! catches up with the log (`chatflow switch`).

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tokio::sync::{RwLock as Gate, RwLockWriteGuard};

use crate::{IndexOp, MessageDoc, Rejected, Result, SearchIndex, SearchQuery, SearchResults};

pub struct Switch {
    current: RwLock<(String, Arc<dyn SearchIndex>)>,
    /// Every write holds it shared; [`Switch::hold_writes`] exclusively.
    writes: Gate<()>,
}

impl Switch {
    /// Serves `index`, opened from `url`.
    pub fn new(url: &str, index: Arc<dyn SearchIndex>) -> Self {
        Switch {
            current: RwLock::new((url.to_owned(), index)),
            writes: Gate::new(()),
        }
    }

    pub fn current(&self) -> Arc<dyn SearchIndex> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// The URL of the index served now.
    pub fn url(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Waits for the writes in flight and holds every new one until the
    /// guard drops; searches go on.
    pub async fn hold_writes(&self) -> RwLockWriteGuard<'_, ()> {
        self.writes.write().await
    }

    /// Serves `index` from now on.
    pub fn replace(&self, url: &str, index: Arc<dyn SearchIndex>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (url.to_owned(), index);
    }
}

#[async_trait]
impl SearchIndex for Switch {
    async fn apply(&self, ops: Vec<IndexOp>) -> Result<Vec<Rejected>> {
        let _writing = self.writes.read().await;
        self.current().apply(ops).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResults> {
        self.current().search(query).await
    }

    async fn get(&self, conversation_id: &str, seq: i64) -> Result<Option<MessageDoc>> {
        self.current().get(conversation_id, seq).await
    }
}
