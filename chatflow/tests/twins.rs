#![allow(clippy::unwrap_used)]
//! A send that stands in the log twice (a broker that lost its
//! idempotent-producer state in a restart takes a retried batch again),
//! with chatflow restarted between the two copies: the restarted router
//! and indexer have committed past the first copy, yet neither delivers
//! nor indexes the second.

mod common;

use std::time::{Duration, Instant};

use common::{Api, Chatflow, is_event, online, post};
use schemas::{Actor, ChatEvent, Codec, MessagePosted, Payload};
use serde_json::json;

const BODY: &str = "twinned send zebracorn";

/// The second copy of ann's send `client_msg_id`, straight onto the log;
/// its seq.
async fn second_copy(cf: &Chatflow, cid: &str, client_msg_id: &str) -> i64 {
    let producer =
        streams::Producer::new(&streams::KafkaConfig::new(cf.kafka.to_string())).unwrap();
    let event = ChatEvent {
        event_id: ulid::Ulid::new().to_string(),
        conversation_id: cid.into(),
        occurred_at: schemas::now_millis(),
        actor: Actor {
            user_id: "ann".into(),
            device_id: "ann-phone".into(),
        },
        payload: Payload::MessagePosted(MessagePosted {
            message_id: ulid::Ulid::new().to_string(),
            client_msg_id: client_msg_id.into(),
            body: BODY.into(),
            reply_to: None,
            mentions: vec![],
            silent: false,
            attachments: Vec::new(),
            sealed: None,
        }),
    };
    let bytes = Codec::new().encode(&event).unwrap();
    producer
        .send("chat.events", cid.as_bytes(), &bytes, None)
        .await
        .unwrap()
        .1
}

/// The seqs the search finds for `q`.
async fn found(api: &Api, q: &str) -> Vec<i64> {
    let hits = api.search(q).await;
    hits.iter().map(|h| h["seq"].as_i64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_copy_after_a_restart_is_neither_delivered_nor_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cf = Chatflow::start(&dir.path().join("data")).await;
    let ann = Api::new(&cf, &cf.token("ann").await);
    let group = ann.create_group(&["bob"]).await;
    let first = post(&ann, &group, "twin-1", json!({"body": BODY})).await;
    // Indexed, then committed past by every stage in the graceful stop.
    let deadline = Instant::now() + Duration::from_secs(20);
    while found(&ann, "zebracorn").await != [first] {
        assert!(Instant::now() < deadline, "the first copy is indexed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cf.restart().await;

    let ann = Api::new(&cf, &cf.token("ann").await);
    let mut bob = online(&cf, &cf.token("bob").await, "bob-phone").await;
    let second = second_copy(&cf, &group, "twin-1").await;
    assert!(second > first, "the copy lands later in the log");
    let after = post(
        &ann,
        &group,
        "after-1",
        json!({"body": "after it a quokka"}),
    )
    .await;
    assert!(after > second);

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "bob gets the next message");
        let f = bob.next().await;
        if is_event(&f, &group, "message_posted") {
            let seq = f["seq"].as_i64().unwrap();
            seen.push(seq);
            if seq == after {
                break;
            }
        }
    }
    assert_eq!(seen, [after], "the second copy is not delivered");

    // The message after it is indexed, so the copy has been through the
    // indexer too: one hit, the first copy.
    let deadline = Instant::now() + Duration::from_secs(20);
    while found(&ann, "quokka").await.is_empty() {
        assert!(Instant::now() < deadline, "the next message is indexed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found(&ann, "zebracorn").await, [first], "one document");
    let bodies: Vec<_> = ann
        .history(&group)
        .await
        .into_iter()
        .filter(|m| m["body"] == BODY)
        .map(|m| m["seq"].clone())
        .collect();
    assert_eq!(bodies, [json!(first)], "history keeps the first copy");
}
