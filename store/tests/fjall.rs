#![allow(clippy::unwrap_used)]
use std::sync::Arc;

use store::{EventWrite, FjallStore, Mutation, Page, Store};

#[tokio::test]
async fn fjall_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    store::conformance::run(Arc::new(store)).await;
}

#[tokio::test]
async fn fjall_keeps_applied_events_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open(dir.path()).unwrap();
        store
            .apply(vec![
                EventWrite {
                    conversation_id: "c".into(),
                    seq: 0,
                    at: 1,
                    mutations: vec![Mutation::CreateConversation {
                        kind: "direct".into(),
                        name: None,
                        description: None,
                        created_by: "a".into(),
                        members: vec![("a".into(), "owner".into()), ("b".into(), "owner".into())],
                    }],
                },
                EventWrite {
                    conversation_id: "c".into(),
                    seq: 1,
                    at: 2,
                    mutations: vec![Mutation::PostMessage {
                        message_id: "m".into(),
                        sender_id: "a".into(),
                        client_msg_id: "x".into(),
                        body: "kept".into(),
                        reply_to: None,
                        mentions: vec![],
                        attachments: Vec::new(),
                        sealed: None,
                    }],
                },
            ])
            .await
            .unwrap();
    }
    let store = FjallStore::open(dir.path()).unwrap();
    let page = store
        .messages(
            "c",
            Page {
                limit: 10,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.messages[0].body.as_deref(), Some("kept"));
    assert_eq!(store.conversation("c").await.unwrap().unwrap().last_seq, 1);
}
