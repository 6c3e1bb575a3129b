//! The behaviour every [`SearchIndex`] must have. Each backend's tests call
//! [`run`] with an empty index; every group uses conversations of its own.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use crate::{IndexOp, MessageDoc, SearchError, SearchIndex, SearchQuery};

const DAY: i64 = 86_400_000;
/// A fixed "now" so that recency is deterministic.
const NOW: i64 = 1_800_000_000_000;

/// Runs every check against `index`.
pub async fn run(index: Arc<dyn SearchIndex>) {
    let index = &*index;
    posted_messages_are_found_with_highlights(index).await;
    edits_and_deletes_change_what_is_found(index).await;
    only_the_allowed_conversations_are_searched(index).await;
    any_language_and_any_accent(index).await;
    phrases_and_prefixes(index).await;
    filters_paging_and_recency(index).await;
    queries_without_words_are_refused(index).await;
    an_erased_sender_leaves_nothing(index).await;
}

async fn an_erased_sender_leaves_nothing(index: &dyn SearchIndex) {
    let cid = "erase-1";
    index
        .apply(vec![
            IndexOp::Post(doc(cid, 1, "mallory", NOW - DAY, "okapi secrets one")),
            IndexOp::Post(doc(cid, 2, "mallory", NOW - DAY, "okapi secrets two")),
            IndexOp::Post(doc(cid, 3, "trent", NOW - DAY, "okapi reply")),
            IndexOp::Delete {
                conversation_id: cid.into(),
                seq: 2,
                version: 4,
            },
        ])
        .await
        .unwrap();
    let query = SearchQuery {
        text: "okapi".into(),
        conversation_ids: vec![cid.into()],
        limit: 10,
        now: NOW,
        ..Default::default()
    };
    assert_eq!(index.search(&query).await.unwrap().hits.len(), 2);
    // Its documents and tombstones go; another sender's stay.
    assert_eq!(index.erase_sender("mallory").await.unwrap(), 2);
    let hits = index.search(&query).await.unwrap().hits;
    assert_eq!(
        hits.iter()
            .map(|h| h.sender_id.as_str())
            .collect::<Vec<_>>(),
        vec!["trent"]
    );
    assert_eq!(index.get(cid, 1).await.unwrap(), None);
    assert_eq!(index.get(cid, 2).await.unwrap(), None);
    assert!(index.get(cid, 3).await.unwrap().is_some());
    assert_eq!(index.erase_sender("mallory").await.unwrap(), 0);
    assert_eq!(index.erase_sender("nobody").await.unwrap(), 0);
}

fn doc(cid: &str, seq: i64, sender: &str, sent_at: i64, body: &str) -> MessageDoc {
    MessageDoc {
        conversation_id: cid.into(),
        seq,
        message_id: format!("{cid}-m{seq}"),
        sender_id: sender.into(),
        sent_at,
        body: body.into(),
        deleted: false,
        version: seq,
    }
}

fn post(cid: &str, seq: i64, body: &str) -> IndexOp {
    IndexOp::Post(doc(cid, seq, "alice", NOW - DAY, body))
}

fn query(text: &str, cids: &[&str]) -> SearchQuery {
    SearchQuery {
        text: text.into(),
        conversation_ids: cids.iter().map(|c| c.to_string()).collect(),
        limit: 20,
        now: NOW,
        ..Default::default()
    }
}

/// The (conversation, seq) of each hit, best first.
async fn found(index: &dyn SearchIndex, q: SearchQuery) -> Vec<(String, i64)> {
    let results = index.search(&q).await.unwrap();
    results
        .hits
        .into_iter()
        .map(|h| (h.conversation_id, h.seq))
        .collect()
}

async fn seqs(index: &dyn SearchIndex, text: &str, cid: &str) -> Vec<i64> {
    let mut s: Vec<i64> = found(index, query(text, &[cid]))
        .await
        .into_iter()
        .map(|(_, seq)| seq)
        .collect();
    s.sort();
    s
}

async fn posted_messages_are_found_with_highlights(index: &dyn SearchIndex) {
    let ops = vec![
        post("hl", 1, "Lunch at the <usual> place?"),
        post("hl", 2, "Dinner instead"),
    ];
    assert!(index.apply(ops).await.unwrap().is_empty());
    let results = index.search(&query("lunch", &["hl"])).await.unwrap();
    assert_eq!(results.hits.len(), 1, "one message says lunch");
    let hit = &results.hits[0];
    assert_eq!(
        (
            hit.conversation_id.as_str(),
            hit.seq,
            hit.message_id.as_str()
        ),
        ("hl", 1, "hl-m1")
    );
    assert_eq!((hit.sender_id.as_str(), hit.sent_at), ("alice", NOW - DAY));
    assert!(
        hit.snippet.contains("<mark>Lunch</mark>") && hit.snippet.contains("&lt;usual&gt;"),
        "snippet marks the match and escapes the text: {}",
        hit.snippet
    );
    assert!(!results.has_more);
    let stored = index.get("hl", 2).await.unwrap().unwrap();
    assert_eq!(stored, doc("hl", 2, "alice", NOW - DAY, "Dinner instead"));
}

async fn edits_and_deletes_change_what_is_found(index: &dyn SearchIndex) {
    let cid = "ed";
    index
        .apply(vec![
            post(cid, 1, "meet at the station"),
            post(cid, 2, "bring the tickets"),
        ])
        .await
        .unwrap();
    index
        .apply(vec![
            IndexOp::Edit {
                conversation_id: cid.into(),
                seq: 1,
                body: "meet at the harbour".into(),
                version: 3,
            },
            IndexOp::Delete {
                conversation_id: cid.into(),
                seq: 2,
                version: 4,
            },
        ])
        .await
        .unwrap();
    assert!(
        seqs(index, "station", cid).await.is_empty(),
        "old text gone"
    );
    assert_eq!(seqs(index, "harbour", cid).await, [1], "new text found");
    assert!(seqs(index, "tickets", cid).await.is_empty(), "deleted");

    // A replay from the start of the log changes nothing.
    index
        .apply(vec![
            post(cid, 1, "meet at the station"),
            post(cid, 2, "bring the tickets"),
            IndexOp::Edit {
                conversation_id: cid.into(),
                seq: 1,
                body: "meet at the harbour".into(),
                version: 3,
            },
        ])
        .await
        .unwrap();
    assert!(
        seqs(index, "station", cid).await.is_empty(),
        "replayed post"
    );
    assert!(
        seqs(index, "tickets", cid).await.is_empty(),
        "replayed delete"
    );
    assert_eq!(seqs(index, "harbour", cid).await, [1]);
    let tombstone = index.get(cid, 2).await.unwrap().unwrap();
    assert!(tombstone.deleted && tombstone.body.is_empty());
    assert_eq!(tombstone.version, 4);
    // A deleted message cannot be edited back.
    index
        .apply(vec![IndexOp::Edit {
            conversation_id: cid.into(),
            seq: 2,
            body: "tickets again".into(),
            version: 5,
        }])
        .await
        .unwrap();
    assert!(seqs(index, "tickets", cid).await.is_empty());
}

async fn only_the_allowed_conversations_are_searched(index: &dyn SearchIndex) {
    index
        .apply(vec![
            post("auth-mine", 1, "secret plans"),
            post("auth-theirs", 1, "secret plans"),
            post("auth-theirs", 2, "more secret plans"),
        ])
        .await
        .unwrap();
    let hits = found(index, query("secret", &["auth-mine"])).await;
    assert_eq!(hits, [("auth-mine".to_string(), 1)]);
    let both = found(index, query("secret", &["auth-mine", "auth-theirs"])).await;
    assert_eq!(both.len(), 3);
    assert!(found(index, query("secret", &[])).await.is_empty());
}

async fn any_language_and_any_accent(index: &dyn SearchIndex) {
    let cid = "lang";
    index
        .apply(vec![
            post(cid, 1, "東京タワーに行きました"),
            post(cid, 2, "我爱北京天安门"),
            post(cid, 3, "한국어 공부를 합니다"),
            post(cid, 4, "Café au lait in Zürich"),
            post(cid, 5, "naïve résumé"),
        ])
        .await
        .unwrap();
    for (q, want) in [
        ("東京タワー", 1),
        ("タワー ", 1),
        ("北京", 2),
        ("天安门", 2),
        ("한국어 ", 3),
        ("zurich ", 4),
        ("CAFE ", 4),
        ("züRICH ", 4),
        ("resume naive ", 5),
        ("résumé ", 5),
    ] {
        assert_eq!(seqs(index, q, cid).await, [want], "query {q:?}");
    }
    assert!(
        seqs(index, "京都 ", cid).await.is_empty(),
        "no false bigram"
    );
}

async fn phrases_and_prefixes(index: &dyn SearchIndex) {
    let cid = "phr";
    index
        .apply(vec![
            post(cid, 1, "see you at lunch tomorrow"),
            post(cid, 2, "tomorrow we lunch at noon"),
            post(cid, 3, "the tomato soup"),
        ])
        .await
        .unwrap();
    assert_eq!(seqs(index, "\"lunch tomorrow\"", cid).await, [1]);
    assert_eq!(seqs(index, "\"tomorrow we lunch\"", cid).await, [2]);
    assert_eq!(seqs(index, "lunch tomorrow ", cid).await, [1, 2], "words");
    // The last word, still being typed, matches as a prefix.
    assert_eq!(seqs(index, "tom", cid).await, [1, 2, 3]);
    assert_eq!(seqs(index, "lunch tomo", cid).await, [1, 2]);
    assert_eq!(seqs(index, "toma", cid).await, [3]);
    // Once a space follows it, it is a whole word.
    assert!(seqs(index, "tom ", cid).await.is_empty());
    let hit = &index.search(&query("toma", &[cid])).await.unwrap().hits[0];
    assert!(
        hit.snippet.contains("<mark>tomato</mark>"),
        "{}",
        hit.snippet
    );
}

async fn filters_paging_and_recency(index: &dyn SearchIndex) {
    let cid = "flt";
    index
        .apply(vec![
            IndexOp::Post(doc(cid, 1, "alice", NOW - 300 * DAY, "status report")),
            IndexOp::Post(doc(cid, 2, "bob", NOW - 200 * DAY, "status report")),
            IndexOp::Post(doc(cid, 3, "alice", NOW - 100 * DAY, "status report")),
            IndexOp::Post(doc(cid, 4, "bob", NOW - DAY, "status report")),
            IndexOp::Post(doc(cid, 5, "carol", NOW, "status report")),
        ])
        .await
        .unwrap();
    let order: Vec<i64> = found(index, query("status report", &[cid]))
        .await
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(order, [5, 4, 3, 2, 1], "equal relevance: newest first");

    let by_sender = SearchQuery {
        sender_id: Some("alice".into()),
        ..query("status", &[cid])
    };
    let mut alice: Vec<i64> = found(index, by_sender).await.iter().map(|h| h.1).collect();
    alice.sort();
    assert_eq!(alice, [1, 3]);

    let in_range = SearchQuery {
        from: Some(NOW - 250 * DAY),
        to: Some(NOW - 100 * DAY),
        ..query("status", &[cid])
    };
    let mut ranged: Vec<i64> = found(index, in_range).await.iter().map(|h| h.1).collect();
    ranged.sort();
    assert_eq!(ranged, [2, 3], "from/to are inclusive");

    let page = |offset| SearchQuery {
        offset,
        limit: 2,
        ..query("status", &[cid])
    };
    let first = index.search(&page(0)).await.unwrap();
    let second = index.search(&page(2)).await.unwrap();
    let third = index.search(&page(4)).await.unwrap();
    let seqs_of = |r: &crate::SearchResults| r.hits.iter().map(|h| h.seq).collect::<Vec<_>>();
    assert_eq!(seqs_of(&first), [5, 4]);
    assert_eq!(seqs_of(&second), [3, 2]);
    assert_eq!(seqs_of(&third), [1]);
    assert!(first.has_more && second.has_more && !third.has_more);
}

async fn queries_without_words_are_refused(index: &dyn SearchIndex) {
    for text in ["", "   ", "!!! ?", "\"\""] {
        match index.search(&query(text, &["hl"])).await {
            Err(SearchError::InvalidQuery(_)) => {}
            other => panic!("query {text:?}: {other:?}"),
        }
    }
}
