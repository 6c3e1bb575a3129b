#![allow(clippy::unwrap_used)]
//! The notifier stage on its own, over fjall and a local webhook receiver:
//! the per-device rate cap holds pushes back (they collapse and wait), and
//! a window's events stay uncommitted until its push is out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use notifier::providers::{Providers, Webhook};
use notifier::{Config, Notifier};
use schemas::{Actor, ChatEvent, Codec, MessagePosted, Payload};
use store::{EventWrite, FjallStore, Mutation, Store};
use streams::{Record, Stage};

type Got = Arc<Mutex<Vec<serde_json::Value>>>;

async fn receiver(got: Got) -> String {
    async fn hook(State(g): State<Got>, body: Bytes) {
        g.lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap());
    }
    let app = Router::new().route("/hook", post(hook)).with_state(got);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn posted(conversation: &str, seq: i64) -> (EventWrite, Record) {
    posted_as(conversation, seq, false)
}

fn posted_as(conversation: &str, seq: i64, silent: bool) -> (EventWrite, Record) {
    let write = EventWrite {
        conversation_id: conversation.into(),
        seq,
        at: seq,
        mutations: vec![Mutation::PostMessage {
            message_id: format!("m{seq}"),
            sender_id: "ann".into(),
            client_msg_id: format!("c{seq}"),
            body: "hi".into(),
            reply_to: None,
            mentions: vec![],
            attachments: Vec::new(),
            sealed: None,
        }],
    };
    let event = ChatEvent {
        event_id: format!("e{seq}"),
        conversation_id: conversation.into(),
        occurred_at: seq,
        actor: Actor {
            user_id: "ann".into(),
            device_id: "d".into(),
        },
        payload: Payload::MessagePosted(MessagePosted {
            silent,
            attachments: Vec::new(),
            sealed: None,
            message_id: format!("m{seq}"),
            client_msg_id: format!("c{seq}"),
            body: "hi".into(),
            reply_to: None,
            mentions: vec![],
        }),
    };
    let record = Record {
        topic: "chat.events".into(),
        partition: 0,
        offset: seq,
        key: Some(conversation.as_bytes().to_vec()),
        payload: Some(Codec::new().encode(&event).unwrap()),
        timestamp: Some(seq),
        headers: vec![],
    };
    (write, record)
}

/// A store where ann and bob share "g:a", "g:b" and "g:c" and bob has
/// one device with a webhook token; the webhook's receiver.
async fn bob_with_a_webhook(dir: &tempfile::TempDir) -> (Arc<dyn Store>, Got, Providers) {
    let store: Arc<dyn Store> = Arc::new(FjallStore::open(&dir.path().join("store")).unwrap());
    let mut setup = vec![EventWrite {
        conversation_id: "user:bob".into(),
        seq: 1,
        at: 0,
        mutations: vec![Mutation::PutDevice {
            user_id: "bob".into(),
            device_id: "web".into(),
            platform: "web".into(),
            push_token: Some("bob-token".into()),
        }],
    }];
    for (i, cid) in ["g:a", "g:b", "g:c"].into_iter().enumerate() {
        setup.push(EventWrite {
            conversation_id: cid.into(),
            seq: i as i64 + 2,
            at: 0,
            mutations: vec![Mutation::CreateConversation {
                kind: "group".into(),
                name: Some(cid.into()),
                description: None,
                created_by: "ann".into(),
                members: vec![
                    ("ann".into(), "owner".into()),
                    ("bob".into(), "member".into()),
                ],
            }],
        });
    }
    store.apply(setup).await.unwrap();
    let got: Got = Arc::default();
    let providers = Providers {
        webhook: Some(Box::new(Webhook::new(
            receiver(got.clone()).await,
            b"s".to_vec(),
        ))),
        ..Providers::default()
    };
    (store, got, providers)
}

/// A notifier without a collapse window, capped at `per_minute` pushes per
/// device.
fn notifier(store: &Arc<dyn Store>, providers: Providers, per_minute: usize) -> Notifier {
    let config = Config {
        window: Duration::ZERO,
        per_device_per_minute: per_minute,
        show_body: false,
        max_attempts: 3,
    };
    Notifier::new(store.clone(), Default::default(), providers, config, None)
}

/// The seqs of the pushes the webhook received, in order.
fn told(got: &Got) -> Vec<i64> {
    got.lock()
        .unwrap()
        .iter()
        .map(|p| p["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_cap_holds_pushes_back_and_holds_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (store, got, providers) = bob_with_a_webhook(&dir).await;
    let stage = notifier(&store, providers, 2);
    // One message in each of three conversations, to bob's one device.
    let mut records = Vec::new();
    for (cid, seq) in [("g:a", 10), ("g:b", 11), ("g:c", 12)] {
        let (write, record) = posted(cid, seq);
        store.apply(vec![write]).await.unwrap();
        records.push(record);
    }
    stage.process(&records).await.unwrap();
    assert_eq!(
        stage.durable_offset("chat.events", 0),
        Some(10),
        "nothing committed before the pushes"
    );
    stage.flush().await.unwrap();
    let started = Instant::now();
    while got.lock().unwrap().len() < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Two went out; the third waits, and holds its offset.
    assert_eq!(got.lock().unwrap().len(), 2);
    let held = stage.durable_offset("chat.events", 0);
    assert!(held.is_some_and(|o| (10..=12).contains(&o)), "{held:?}");
    stage.flush().await.unwrap();
    assert_eq!(got.lock().unwrap().len(), 2, "the cap still holds");
    // The ledger remembers what was told.
    let told = told(&got);
    for (cid, seq) in [("g:a", 10), ("g:b", 11), ("g:c", 12)] {
        let ledger = store.push_sent("bob", "web", cid).await.unwrap();
        assert_eq!(ledger.is_some(), told.contains(&seq), "{cid}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_message_notifies_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let (store, got, providers) = bob_with_a_webhook(&dir).await;
    let stage = notifier(&store, providers, 100);
    let mut records = Vec::new();
    for (seq, silent) in [(10, true), (11, false), (12, true)] {
        let (write, record) = posted_as("g:a", seq, silent);
        store.apply(vec![write]).await.unwrap();
        records.push(record);
    }
    stage.process(&records).await.unwrap();
    stage.flush().await.unwrap();
    let started = Instant::now();
    while got.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stage.flush().await.unwrap();
    let told = told(&got);
    assert_eq!(told, vec![11], "only the message that was not silent");
    assert_eq!(stage.durable_offset("chat.events", 0), None, "nothing held");
}
