#![allow(clippy::unwrap_used)]
//! Many senders at once in one conversation: every receiving device sees
//! the conversation's events in strictly increasing seq order, with every
//! acknowledged message once (no gap, no duplicate), and history agrees.

mod common;

use std::collections::BTreeSet;

use common::{Api, Chatflow, Ws, online};
use serde_json::{Value, json};

const SENDERS: usize = 6;
const EACH: usize = 40;

/// Sends `EACH` messages as fast as the socket takes them (when `send` is
/// set), then reads until it has seen every message of the conversation;
/// returns the seqs acknowledged to it and the seqs of the conversation's
/// events in the order they arrived.
async fn run(mut ws: Ws, cid: String, me: usize, send: bool) -> (Vec<i64>, Vec<i64>, usize) {
    if send {
        for i in 0..EACH {
            ws.send(json!({
                "type": "send", "conversation_id": cid,
                "client_msg_id": format!("s{me}-{i}"), "body": format!("{me}:{i}"),
            }))
            .await;
        }
    }
    let (mut acked, mut events, mut posted) = (Vec::new(), Vec::new(), 0);
    while posted < SENDERS * EACH || (send && acked.len() < EACH) {
        let f: Value = ws.next().await;
        match f["type"].as_str() {
            Some("ack") => acked.push(f["seq"].as_i64().unwrap()),
            Some("event") if f["conversation_id"] == cid.as_str() => {
                events.push(f["seq"].as_i64().unwrap());
                if f["kind"] == "message_posted" {
                    posted += 1;
                }
            }
            Some("error") => panic!("sender {me}: {f}"),
            _ => {}
        }
    }
    (acked, events, posted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_in_one_conversation_reach_every_device_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start_with(
        &dir.path().join("data"),
        &["--rate", "10000", "--rate-burst", "10000"],
    )
    .await;
    let users: Vec<String> = (0..SENDERS).map(|i| format!("u{i}")).collect();
    let mut tokens = Vec::new();
    for u in &users {
        tokens.push(cf.token(u).await);
    }
    let others: Vec<&str> = users[1..].iter().map(String::as_str).collect();
    let cid = Api::new(&cf, &tokens[0]).create_group(&others).await;

    // Every member live on a socket, and u0 on a second device that only
    // listens.
    let mut sockets = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        sockets.push((online(&cf, token, &format!("d{i}")).await, i, true));
    }
    sockets.push((online(&cf, &tokens[0], "tablet").await, 0, false));
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|(ws, i, send)| tokio::spawn(run(ws, cid.clone(), i, send)))
        .collect();
    let mut all_acked = BTreeSet::new();
    let mut seen = Vec::new();
    for task in tasks {
        let (acked, events, posted) = task.await.unwrap();
        for seq in acked {
            assert!(all_acked.insert(seq), "seq {seq} acked twice");
        }
        seen.push((events, posted));
    }
    assert_eq!(all_acked.len(), SENDERS * EACH);
    for (device, (events, posted)) in seen.iter().enumerate() {
        assert!(
            events.windows(2).all(|w| w[0] < w[1]),
            "device {device}: seqs not strictly increasing: {events:?}"
        );
        assert_eq!(*posted, SENDERS * EACH, "device {device}");
        let messages: BTreeSet<i64> = events
            .iter()
            .copied()
            .filter(|s| all_acked.contains(s))
            .collect();
        assert_eq!(
            messages, all_acked,
            "device {device}: every acked message, once"
        );
    }
    let history: Vec<i64> = Api::new(&cf, &tokens[3])
        .all_messages(&cid)
        .await
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(history, all_acked.into_iter().collect::<Vec<_>>());
}
