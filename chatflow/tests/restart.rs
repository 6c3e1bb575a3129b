#![allow(clippy::unwrap_used)]
//! A restart in the middle of traffic loses no acknowledged message.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Api, Chatflow, send_until_acked};

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
        let body = format!("message {i}");
        let seq = send_until_acked(&client, &base, &token, &cid, &id, &body).await;
        acked.insert(id, seq);
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_traffic_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut cf = Chatflow::start_unlimited(&dir.path().join("data")).await;
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
    for m in api.all_messages(&cid).await {
        stored
            .entry(m["client_msg_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(m["seq"].as_i64().unwrap());
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
