#![allow(clippy::unwrap_used)]
//! SIGTERM under traffic: every send the gateway took in hand is answered
//! before its socket closes, so no message is stored without its sender
//! having been told.

mod common;

use std::collections::{HashMap, HashSet};

use common::{Api, Chatflow, Ws};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const SENDERS: usize = 4;
/// Sends each socket keeps in flight.
const WINDOW: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_send_in_hand_before_closing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cf = Chatflow::start_unlimited(&dir.path().join("data")).await;
    let token = cf.token("alice").await;
    let api = Api::new(&cf, &token);
    let cid = api.create_group(&["bob"]).await;

    let mut senders = Vec::new();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    for s in 0..SENDERS {
        let mut ws = Ws::connect(&cf, &token, &format!("sender{s}")).await;
        ws.live().await;
        let (cid, started) = (cid.clone(), started_tx.clone());
        senders.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.stream.split();
            let mut next = 0usize;
            let mut acked = HashSet::new();
            let mut close = None;
            let send = |i: usize| {
                let id = format!("s{s}-{i:05}");
                json!({"type": "send", "conversation_id": cid, "client_msg_id": id, "body": id})
                    .to_string()
            };
            for _ in 0..WINDOW {
                sink.send(Message::Text(send(next).into())).await.unwrap();
                next += 1;
            }
            while let Some(Ok(m)) = stream.next().await {
                match m {
                    Message::Text(t) => {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        if v["type"] == "ack" {
                            acked.insert(v["client_msg_id"].as_str().unwrap().to_owned());
                            if acked.len() == 20 {
                                let _ = started.send(());
                            }
                            // The socket may already be closing.
                            let _ = sink.send(Message::Text(send(next).into())).await;
                            next += 1;
                        }
                    }
                    Message::Close(frame) => {
                        close = frame.map(|f| u16::from(f.code));
                        break;
                    }
                    _ => {}
                }
            }
            (acked, close)
        }));
    }
    for _ in 0..SENDERS {
        started_rx.recv().await.unwrap();
    }
    let status = cf.stop().await;
    assert!(status.success(), "graceful stop exits 0, got {status}");

    let mut acked = HashSet::new();
    for s in senders {
        let (ids, close) = s.await.unwrap();
        assert_eq!(close, Some(1001), "closed as going away");
        acked.extend(ids);
    }
    cf.restart().await;
    let stored: HashMap<String, i64> = api
        .all_messages(&cid)
        .await
        .iter()
        .map(|m| {
            let id = m["client_msg_id"].as_str().unwrap().to_owned();
            (id, m["seq"].as_i64().unwrap())
        })
        .collect();
    let unanswered: Vec<&String> = stored.keys().filter(|id| !acked.contains(*id)).collect();
    assert!(
        unanswered.is_empty(),
        "stored but never acknowledged: {unanswered:?}"
    );
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(acked.len() >= 20 * SENDERS);
    cf.stop().await;
}
