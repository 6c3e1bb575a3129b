#![allow(clippy::unwrap_used)]
//! Switching a running chatflow to rebuilt read models: the store and the
//! index are replayed into fresh targets while traffic goes on, then
//! `chatflow switch` points the live process at them. Readers never get
//! an error while it switches, sends are acknowledged throughout, every
//! acknowledged message is in the new store's history in seq order and
//! findable in the new index, and a restart keeps serving the new models.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Api, Chatflow, chatflow, post, text};
use serde_json::json;

/// Every message of `cid`, oldest first, page by page.
async fn history(api: &Api, cid: &str) -> Vec<serde_json::Value> {
    let mut all: Vec<serde_json::Value> = Vec::new();
    loop {
        let after = all.last().map_or(0, |m| m["seq"].as_i64().unwrap());
        let (status, page) = api
            .get(&format!(
                "/v1/conversations/{cid}/messages?after={after}&limit=200"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        all.extend(page["messages"].as_array().unwrap().iter().cloned());
        if page["has_more"] != true {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_chatflow_switches_to_rebuilt_models_without_a_reader_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let extra = ["--rate", "10000", "--rate-burst", "10000"];
    let mut cf = Chatflow::start_with(&data, &extra).await;
    let token = cf.token("ann").await;
    let ann = Api::new(&cf, &token);
    let group = ann.create_group(&["bob"]).await;
    let mut acked = Vec::new();
    for i in 0..30 {
        let body = json!({"body": format!("before the replay {i}")});
        acked.push(post(&ann, &group, &format!("a{i}"), body).await);
    }
    for (model, into) in [
        ("persister", "fjall://store-2"),
        ("indexer", "tantivy://search-2"),
    ] {
        let out = chatflow(&["replay", model, "--into", into], &data, Some(cf.kafka));
        assert!(out.status.success(), "{}", text(&out));
    }
    // The targets are behind from here on: the switch catches them up.
    for i in 0..20 {
        let body = json!({"body": format!("after the replay {i}")});
        acked.push(post(&ann, &group, &format!("b{i}"), body).await);
    }

    // Readers and a sender run through both switches.
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for path in [
        format!("/v1/conversations/{group}/messages?limit=5"),
        format!("/v1/conversations/{group}"),
        "/v1/search?q=replay".to_owned(),
    ] {
        let (api, stop) = (Api::at(cf.http, &token), stop.clone());
        let (reads, failures) = (reads.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = api.get(&path).await;
                reads.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{path}: {status} {body}");
                }
            }
            Vec::new()
        }));
    }
    {
        let (api, stop, group) = (Api::at(cf.http, &token), stop.clone(), group.clone());
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"body": format!("during the switch {i}")});
                seqs.push(post(&api, &group, &format!("c{i}"), body).await);
                i += 1;
            }
            seqs
        }));
    }
    for (model, into) in [
        ("persister", "fjall://store-2"),
        ("indexer", "tantivy://search-2"),
    ] {
        let out = chatflow(&["switch", model, into], &data, None);
        assert!(out.status.success(), "{}", text(&out));
        println!("{}", text(&out).trim());
        assert!(
            text(&out).contains(&format!("to {into}: caught up")),
            "{}",
            text(&out)
        );
        let again = chatflow(&["switch", model, into], &data, None);
        assert!(text(&again).contains("already serving"), "{}", text(&again));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    let reads = reads.load(Ordering::Relaxed);
    assert!(reads >= 10, "{reads} reads");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "of {reads} reads");
    println!(
        "{reads} reads during the switches, 0 failed; {} messages acked",
        acked.len()
    );
    let last = post(
        &ann,
        &group,
        "after",
        json!({"body": "after the switch zebra"}),
    )
    .await;
    acked.push(last);

    // Every acknowledged message, once, in seq order, from the new store.
    acked.sort_unstable();
    let check = |messages: Vec<serde_json::Value>| {
        let seqs: Vec<i64> = messages
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, acked);
    };
    check(settled(&ann, &group, last).await);
    let mut found = false;
    for _ in 0..100 {
        let (_, hits) = ann.get("/v1/search?q=zebra").await;
        if hits["hits"].as_array().is_some_and(|h| h.len() == 1) {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(found, "the new index takes new messages");

    // A restart keeps serving what was switched to.
    assert!(cf.stop().await.success());
    let pointer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("generations.json")).unwrap()).unwrap();
    assert_eq!(
        pointer,
        json!({"persister": "fjall://store-2", "indexer": "tantivy://search-2"})
    );
    let verify = chatflow(
        &[
            "verify",
            "persister",
            "fjall://store",
            "--against",
            "fjall://store-2",
        ],
        &data,
        None,
    );
    assert!(
        !verify.status.success() && text(&verify).contains(&format!("{group}:")),
        "the old store stopped taking writes at the switch: {}",
        text(&verify)
    );
    cf.start_again().await;
    let ann = Api::new(&cf, &cf.token("ann").await);
    check(settled(&ann, &group, last).await);
}

/// The history once the store has applied `last`.
async fn settled(api: &Api, cid: &str, last: i64) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let messages = history(api, cid).await;
        if messages.last().is_some_and(|m| m["seq"] == last) {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("message {last} never stored");
}
