#![allow(clippy::unwrap_used)]
//! A restart in the middle of traffic loses no acknowledged message.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Api, Chatflow};
use serde_json::{Value, json};

const MESSAGES: usize = 300;

/// Sends every message until the server acknowledges it, retrying the same
/// client_msg_id through the restart, as a client would.
async fn sender(base: String, token: String, cid: String) -> HashMap<String, i64> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut acked = HashMap::new();
    for i in 0..MESSAGES {
        let id = format!("m{i:04}");
        loop {
            let r = client
                .post(format!("{base}/v1/conversations/{cid}/messages"))
                .bearer_auth(&token)
                .json(&json!({"client_msg_id": id, "body": format!("message {i}")}))
                .send()
                .await;
            match r {
                Ok(r) if r.status().as_u16() == 201 => {
                    let ack: Value = r.json().await.unwrap();
                    acked.insert(id.clone(), ack["seq"].as_i64().unwrap());
                    break;
                }
                Ok(r) => assert!(
                    [429, 503].contains(&r.status().as_u16()),
                    "unexpected {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ),
                Err(_) => {} // the server is restarting
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_traffic_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    // A rate limit far above what this test sends.
    let mut cf = Chatflow::start_with(
        &dir.path().join("data"),
        &["--rate", "10000", "--rate-burst", "10000"],
    )
    .await;
    let token = cf.token("alice").await;
    let api = Api::new(&cf, &token);
    let cid = api.create_group(&["bob"]).await;

    let task = tokio::spawn(sender(cf.url(""), token.clone(), cid.clone()));
    // Let traffic flow, then restart under it.
    loop {
        let (_, body) = api
            .get(&format!("/v1/conversations/{cid}/messages?limit=200"))
            .await;
        if body["messages"].as_array().is_some_and(|m| m.len() >= 50) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cf.restart().await;
    let acked = task.await.unwrap();
    assert_eq!(acked.len(), MESSAGES);

    let mut stored: HashMap<String, Vec<i64>> = HashMap::new();
    let mut after = -1;
    loop {
        let (status, page) = api
            .get(&format!(
                "/v1/conversations/{cid}/messages?after={after}&limit=200"
            ))
            .await;
        assert_eq!(status, 200);
        for m in page["messages"].as_array().unwrap() {
            let seq = m["seq"].as_i64().unwrap();
            stored
                .entry(m["client_msg_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(seq);
            assert!(seq > after, "history is in seq order");
            after = seq;
        }
        if page["has_more"] != true {
            break;
        }
    }
    for (id, seq) in &acked {
        assert_eq!(
            stored.get(id),
            Some(&vec![*seq]),
            "{id} acknowledged at seq {seq}"
        );
    }
    assert_eq!(stored.len(), MESSAGES, "no message that was not sent");
    cf.stop().await;
}
