#![allow(clippy::unwrap_used)]
//! The persister stage over a real store: decodes, writes once, rejects poison.

use std::sync::Arc;

use persister::Persister;
use schemas::{Actor, ChatEvent, Codec, ConversationCreated, MemberSpec, MessagePosted, Payload};
use store::{FjallStore, Page, Store};
use streams::{Record, Stage};

fn record(offset: i64, payload: Vec<u8>) -> Record {
    Record {
        topic: "chat.events".into(),
        partition: 0,
        offset,
        key: Some(b"c".to_vec()),
        payload: Some(payload),
        timestamp: None,
        headers: vec![],
    }
}

fn event(payload: Payload) -> ChatEvent {
    ChatEvent {
        event_id: "e".into(),
        conversation_id: "c".into(),
        occurred_at: 1_000,
        actor: Actor {
            user_id: "ann".into(),
            device_id: "d".into(),
        },
        payload,
    }
}

#[tokio::test]
async fn writes_each_event_once_and_rejects_what_does_not_decode() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FjallStore::open(dir.path()).unwrap());
    let stage = Persister::new(store.clone());
    let codec = Codec::new();
    let created = codec
        .encode(&event(Payload::ConversationCreated(ConversationCreated {
            kind: "group".into(),
            name: None,
            description: None,
            members: vec![MemberSpec {
                user_id: "ann".into(),
                role: "owner".into(),
            }],
        })))
        .unwrap();
    let posted = codec
        .encode(&event(Payload::MessagePosted(MessagePosted {
            silent: false,
            attachments: Vec::new(),
            sealed: None,
            message_id: "m".into(),
            client_msg_id: "x".into(),
            body: "hi".into(),
            reply_to: None,
            mentions: vec![],
        })))
        .unwrap();
    let batch = vec![
        record(0, created),
        record(1, b"\x00garbage".to_vec()),
        record(2, posted),
    ];

    let rejected = stage.process(&batch).await.unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].index, 1);
    // A redelivered batch changes nothing.
    stage.process(&batch).await.unwrap();
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
    assert_eq!(page.messages.len(), 1);
    assert_eq!(
        (page.messages[0].seq, page.messages[0].body.as_deref()),
        (2, Some("hi"))
    );
    assert_eq!(store.conversation("c").await.unwrap().unwrap().last_seq, 2);
}
