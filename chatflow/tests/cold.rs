#![allow(clippy::unwrap_used)]
//! The message cold tier through the API: messages older than the hot age
//! (here two seconds, so that the test ages them by waiting) move to the
//! archive; history reads the same across the boundary, page by page in
//! both directions; archived messages can be edited, reacted to and
//! deleted; a device resumes from a cursor inside the archived range; all
//! of it survives kill -9.

mod common;

use std::time::{Duration, Instant};

use common::{Api, Chatflow, Ws, post};
use serde_json::{Value, json};

const OLD: usize = 30;

/// The value of a Prometheus counter on `/metrics` (0 if absent).
async fn counter(cf: &Chatflow, name: &str) -> f64 {
    cf.metric(name).await.unwrap_or(0.0)
}

async fn until_moved(cf: &Chatflow, at_least: usize) {
    let started = Instant::now();
    while counter(cf, "chatflow_cold_moved_messages_total").await < at_least as f64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the cold move did not archive {at_least} messages"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// History read back page by page with `before` (newest first), `limit` at
/// a time, in seq order.
async fn backwards(api: &Api, cid: &str, limit: usize) -> Vec<Value> {
    let mut pages: Vec<Vec<Value>> = Vec::new();
    let mut before = String::new();
    loop {
        let path = format!("/v1/conversations/{cid}/messages?limit={limit}{before}");
        let (status, page) = api.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let messages = page["messages"].as_array().unwrap().clone();
        if let Some(first) = messages.first() {
            before = format!("&before={}", first["seq"]);
        }
        pages.push(messages);
        if page["has_more"] != true {
            break;
        }
    }
    pages.into_iter().rev().flatten().collect()
}

fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_edits_and_resume_work_across_the_cold_boundary_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let extra = [
        "--rate",
        "10000",
        "--rate-burst",
        "10000",
        "--hot-age",
        "2s",
        "--cold-every",
        "200ms",
    ];
    let mut cf = Chatflow::start_with(&data, &extra).await;
    let (ann_token, bob_token) = (cf.token("ann").await, cf.token("bob").await);
    let (ann, bob) = (Api::new(&cf, &ann_token), Api::new(&cf, &bob_token));
    let cid = ann.create_group(&["bob"]).await;
    for i in 0..OLD {
        post(
            &ann,
            &cid,
            &format!("old-{i}"),
            json!({"body": format!("old message {i}")}),
        )
        .await;
    }
    let before_move = ann.all_messages(&cid).await;
    assert_eq!(before_move.len(), OLD);

    until_moved(&cf, OLD).await;
    assert!(
        std::fs::read_dir(data.join("archive/cold"))
            .unwrap()
            .count()
            > 0,
        "segments under the archive"
    );
    assert_eq!(
        ann.all_messages(&cid).await,
        before_move,
        "after the move, oldest first"
    );
    assert_eq!(
        backwards(&bob, &cid, 7).await,
        before_move,
        "newest first, 7 a page"
    );

    // Change archived messages.
    let s = seqs(&before_move);
    let (edited, reacted, deleted) = (s[3], s[4], s[5]);
    let (status, body) = ann
        .call(
            "PATCH",
            &format!("/v1/conversations/{cid}/messages/{edited}"),
            Some(json!({"body": "edited when cold"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = bob
        .call(
            "PUT",
            &format!("/v1/conversations/{cid}/messages/{reacted}/reactions/%F0%9F%91%8D"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = ann
        .call(
            "DELETE",
            &format!("/v1/conversations/{cid}/messages/{deleted}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let changed = |history: &[Value]| {
        let at = |seq| history.iter().find(|m| m["seq"] == seq).unwrap().clone();
        at(edited)["body"] == "edited when cold"
            && at(reacted)["reactions"]["👍"] == json!(["bob"])
            && at(deleted)["deleted"] == true
    };
    let started = Instant::now();
    while !changed(&ann.all_messages(&cid).await) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the changes never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Newer messages beside the archived ones: one history, no gap, no twin.
    for i in 0..10 {
        post(
            &bob,
            &cid,
            &format!("new-{i}"),
            json!({"body": format!("new message {i}")}),
        )
        .await;
    }
    let everything = ann.all_messages(&cid).await;
    assert_eq!(everything.len(), OLD + 10);
    assert!(changed(&everything));
    assert_eq!(seqs(&everything)[..OLD], s[..]);
    assert_eq!(backwards(&ann, &cid, 4).await, everything);

    // A device resumes from a cursor in the archived range.
    let cursor = s[1];
    let mut tablet = Ws::connect(&cf, &bob_token, "bob-tablet").await;
    tablet
        .send(json!({"type": "resume", "cursors": {&cid: cursor}}))
        .await;
    let (_, frames) = tablet.until("resumed").await;
    let replayed: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "event" && f["conversation_id"] == cid.as_str())
        .collect();
    let replayed_seqs: Vec<i64> = replayed
        .iter()
        .map(|f| f["seq"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = seqs(&everything)
        .into_iter()
        .filter(|q| *q > cursor)
        .collect();
    assert_eq!(
        replayed_seqs[..expected.len()],
        expected[..],
        "every message after the cursor, in order"
    );
    let edited_event = replayed.iter().find(|f| f["seq"] == edited).unwrap();
    assert_eq!(edited_event["data"]["body"], "edited when cold");

    // Killed and started again: the archive and the hot store agree still.
    until_moved(&cf, OLD + 10).await;
    cf.kill();
    cf.start_again().await;
    let after_restart = Api::new(&cf, &ann_token);
    assert_eq!(after_restart.all_messages(&cid).await, everything);
    assert_eq!(backwards(&after_restart, &cid, 9).await, everything);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_cold_moves_loses_and_duplicates_nothing() {
    const CONVERSATIONS: usize = 120;
    const EACH: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let limits = ["--rate", "100000", "--rate-burst", "100000"];
    // First nothing moves: the history to compare with.
    let mut cf = Chatflow::start_with(&data, &[&limits[..], &["--hot-age", "1h"]].concat()).await;
    let token = cf.token("ann").await;
    let ann = Api::new(&cf, &token);
    let mut cids = Vec::new();
    for _ in 0..CONVERSATIONS {
        cids.push(ann.create_group(&["bob"]).await);
    }
    futures::future::join_all(cids.iter().map(|cid| {
        let ann = &ann;
        async move {
            for i in 0..EACH {
                post(
                    ann,
                    cid,
                    &format!("m{i}"),
                    json!({"body": format!("{cid} {i}")}),
                )
                .await;
            }
        }
    }))
    .await;
    let mut before = Vec::new();
    for cid in &cids {
        before.push(ann.all_messages(cid).await);
    }
    assert!(cf.stop().await.success());
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Now everything is old: each start sweeps, and is killed partway
    // (one fsync'd write after another: segment, index, removal).
    let moving = [&limits[..], &["--hot-age", "1s", "--cold-every", "50ms"]].concat();
    let mut cf = Chatflow::start_with(&data, &moving).await;
    for wait in [40u64, 120, 250, 10, 400] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        cf.kill();
        cf.start_again().await;
    }
    let ann = Api::new(&cf, &token);
    let started = Instant::now();
    // Every conversation has its segment in the end.
    while std::fs::read_dir(data.join("archive/cold")).map_or(0, |d| d.count()) < CONVERSATIONS {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the moves never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (cid, expected) in cids.iter().zip(&before) {
        assert_eq!(&ann.all_messages(cid).await, expected, "{cid}");
        assert_eq!(
            &backwards(&ann, cid, 3).await,
            expected,
            "{cid}, newest first"
        );
    }
}
