#![allow(clippy::unwrap_used)] // a benchmark: a failed call ends it
//! Notifier throughput and delay: one group of 1 sender and 50 offline
//! members, each with a web device, 200 messages; pushes go to a local
//! webhook receiver. Reports pushes/s and the delay from the stage taking
//! a message to the receiver having its push (p50/p99), with the collapse
//! window off, and the pushes sent with it on (3 s).
//!
//!   cargo bench -p notifier --bench push

use std::collections::HashMap;
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

const MEMBERS: usize = 50;
const MESSAGES: i64 = 200;

type Arrivals = Arc<Mutex<Vec<(i64, Instant)>>>;

async fn receiver(arrivals: Arrivals) -> String {
    async fn hook(State(a): State<Arrivals>, body: Bytes) {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        a.lock()
            .unwrap()
            .push((v["seq"].as_i64().unwrap_or(-1), Instant::now()));
    }
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(arrivals);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn setup(store: &dyn Store) -> Vec<Record> {
    let members: Vec<(String, String)> = std::iter::once(("sender".to_owned(), "owner".to_owned()))
        .chain((0..MEMBERS).map(|i| (format!("u{i}"), "member".to_owned())))
        .collect();
    let mut writes = vec![EventWrite {
        conversation_id: "g:bench".into(),
        seq: 0,
        at: 0,
        mutations: vec![Mutation::CreateConversation {
            kind: "group".into(),
            name: Some("bench".into()),
            description: None,
            created_by: "sender".into(),
            members,
        }],
    }];
    for i in 0..MEMBERS {
        writes.push(EventWrite {
            conversation_id: format!("user:u{i}"),
            seq: 1,
            at: 0,
            mutations: vec![Mutation::PutDevice {
                user_id: format!("u{i}"),
                device_id: "web".into(),
                platform: "web".into(),
                push_token: Some(format!("token-{i}")),
            }],
        });
    }
    let codec = Codec::new();
    let mut records = Vec::new();
    for seq in 1..=MESSAGES {
        writes.push(EventWrite {
            conversation_id: "g:bench".into(),
            seq,
            at: seq,
            mutations: vec![Mutation::PostMessage {
                message_id: format!("m{seq}"),
                sender_id: "sender".into(),
                client_msg_id: format!("c{seq}"),
                body: "hello".into(),
                reply_to: None,
                mentions: vec![],
                attachments: Vec::new(),
                sealed: None,
            }],
        });
        let event = ChatEvent {
            event_id: format!("e{seq}"),
            conversation_id: "g:bench".into(),
            occurred_at: seq,
            actor: Actor {
                user_id: "sender".into(),
                device_id: "d".into(),
            },
            payload: Payload::MessagePosted(MessagePosted {
                silent: false,
                attachments: Vec::new(),
                sealed: None,
                message_id: format!("m{seq}"),
                client_msg_id: format!("c{seq}"),
                body: "hello".into(),
                reply_to: None,
                mentions: vec![],
            }),
        };
        records.push(Record {
            topic: "chat.events".into(),
            partition: 0,
            offset: seq,
            key: Some(b"g:bench".to_vec()),
            payload: Some(codec.encode(&event).unwrap()),
            timestamp: Some(seq),
            headers: vec![],
        });
    }
    store.apply(writes).await.unwrap();
    records
}

async fn run(window: Duration) -> (usize, Duration, Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FjallStore::open(&dir.path().join("store")).unwrap());
    let records = setup(&*store).await;
    let arrivals: Arrivals = Arc::default();
    let url = receiver(arrivals.clone()).await;
    let providers = Providers {
        webhook: Some(Box::new(Webhook::new(url, b"secret".to_vec()))),
        ..Providers::default()
    };
    let config = Config {
        window,
        per_device_per_minute: 1_000_000,
        show_body: false,
        max_attempts: 3,
    };
    let stage = Notifier::new(store, Default::default(), providers, config, None);
    let mut taken: HashMap<i64, Instant> = HashMap::new();
    let started = Instant::now();
    // One message at a time: each is its own window when the window is
    // off (in one batch they would collapse).
    for chunk in records.chunks(1) {
        let now = Instant::now();
        for r in chunk {
            taken.insert(r.offset, now);
        }
        stage.process(chunk).await.unwrap();
        stage.flush().await.unwrap();
    }
    let expected_min = if window.is_zero() {
        MESSAGES as usize * MEMBERS
    } else {
        MEMBERS
    };
    while arrivals.lock().unwrap().len() < expected_min
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
        stage.flush().await.unwrap();
    }
    let got = arrivals.lock().unwrap().clone();
    let took = got
        .iter()
        .map(|(_, at)| at.duration_since(started))
        .max()
        .unwrap_or_default();
    let mut delays: Vec<Duration> = got
        .iter()
        .filter_map(|(seq, at)| taken.get(seq).map(|t| at.duration_since(*t)))
        .collect();
    delays.sort();
    (got.len(), took, delays)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (pushes, took, delays) = run(Duration::ZERO).await;
    println!(
        "window off: {pushes} pushes in {took:.2?}: {:.0} pushes/s; message taken -> push received p50 {:?} p99 {:?}",
        pushes as f64 / took.as_secs_f64(),
        delays[delays.len() / 2],
        delays[delays.len() * 99 / 100],
    );
    let (pushes, took, delays) = run(Duration::from_secs(3)).await;
    println!(
        "window 3 s: {pushes} pushes for {} messages x {MEMBERS} members in {took:.2?}; delay p50 {:?} p99 {:?}",
        MESSAGES,
        delays[delays.len() / 2],
        delays[delays.len() * 99 / 100],
    );
}
