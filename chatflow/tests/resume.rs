#![allow(clippy::unwrap_used)]
//! A reconnecting device gets every event it missed, once, in seq order,
//! whatever arrives live before its `resume` is handled.

mod common;

use std::time::Duration;

use common::{Api, Chatflow, Ws};
use serde_json::{Value, json};

async fn post(api: &Api, cid: &str, id: &str) -> i64 {
    let (status, ack) = api
        .post(
            &format!("/v1/conversations/{cid}/messages"),
            json!({"client_msg_id": id, "body": id}),
        )
        .await;
    assert_eq!(status, 201, "{ack}");
    ack["seq"].as_i64().unwrap()
}

fn seqs(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .filter(|f| f["type"] == "event")
        .map(|f| f["seq"].as_i64().unwrap())
        .collect()
}

/// The reported hole: bob saw 1, alice sends 2, 3, 4; bob's new socket is
/// online when alice sends 5, before bob's `resume {cid: 1}` is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_event_before_the_resume_leaves_no_hole() {
    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start(&dir.path().join("data")).await;
    let (ta, tb) = (cf.token("alice").await, cf.token("bob").await);
    let (alice, bob) = (Api::new(&cf, &ta), Api::new(&cf, &tb));
    let cid = alice.create_group(&["bob"]).await;
    let mut wa = Ws::connect(&cf, &ta, "a-phone").await;
    wa.live().await;

    let mut wb = Ws::connect(&cf, &tb, "b-phone").await;
    wb.live().await;
    let first = post(&alice, &cid, "m1").await;
    wb.until_where(|f| f["seq"] == first).await;
    drop(wb);
    wait_presence(&bob, false).await;

    let mut missed = Vec::new();
    for id in ["m2", "m3", "m4"] {
        missed.push(post(&alice, &cid, id).await);
    }
    let mut wb = Ws::connect(&cf, &tb, "b-phone").await;
    wait_presence(&bob, true).await;
    let live = post(&alice, &cid, "m5").await;
    // Alice's socket has it, so the router has handed it to bob's too.
    wa.until_where(|f| f["seq"] == live).await;

    wb.send(json!({"type": "resume", "cursors": {cid.clone(): first}}))
        .await;
    let (resumed, frames) = wb.until("resumed").await;
    missed.push(live);
    assert_eq!(seqs(&frames), missed, "{frames:?}");
    assert_eq!(resumed["events"].as_i64(), Some(4));

    // Live from here, without 5 again.
    let next = post(&alice, &cid, "m6").await;
    let event = wb.until("event").await.0;
    assert_eq!(event["seq"].as_i64(), Some(next), "{event}");
}

/// A client that never sends `resume` still gets live events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_resumes_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start(&dir.path().join("data")).await;
    let (ta, tb) = (cf.token("alice").await, cf.token("bob").await);
    let (alice, bob) = (Api::new(&cf, &ta), Api::new(&cf, &tb));
    let cid = alice.create_group(&["bob"]).await;
    let mut wb = Ws::connect(&cf, &tb, "b-phone").await;
    wait_presence(&bob, true).await;
    let first = post(&alice, &cid, "m1").await;
    let second = post(&alice, &cid, "m2").await;
    let posted = |f: &Value| f["kind"] == "message_posted";
    let got = [wb.until_where(posted).await, wb.until_where(posted).await];
    assert_eq!(seqs(&got), [first, second]);
}

/// Waits until the gateway counts bob's device as online (or offline).
async fn wait_presence(api: &Api, online: bool) {
    loop {
        let (_, p) = api.get("/v1/users/bob/presence").await;
        if p["online"] == online {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
