#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use search::{SearchIndex, TantivyIndex, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tantivy_passes_the_search_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let index = TantivyIndex::open(dir.path()).unwrap();
    conformance::run(Arc::new(index)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tantivy_index_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let index = TantivyIndex::open(dir.path()).unwrap();
        let doc = search::MessageDoc {
            conversation_id: "c".into(),
            seq: 7,
            message_id: "m".into(),
            sender_id: "u".into(),
            sent_at: 1,
            body: "kept across restarts".into(),
            deleted: false,
            version: 7,
        };
        index.apply(vec![search::IndexOp::Post(doc)]).await.unwrap();
    }
    let index = TantivyIndex::open(dir.path()).unwrap();
    let results = index
        .search(&search::SearchQuery {
            text: "restarts".into(),
            conversation_ids: vec!["c".into()],
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(results.hits.len(), 1);
}
