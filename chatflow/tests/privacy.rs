#![allow(clippy::unwrap_used)]
//! GDPR end to end on the real binary: erasure by crypto-shredding leaves
//! no plaintext of the user anywhere under the data dir, and a replay of
//! the log rebuilds the same erased models.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Api, chatflow, code, online, post, start, text};
use serde_json::{Value, json};

/// The files under `dir` that contain `needle`, as bytes.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

async fn until_hits(api: &Api, q: &str, wanted: usize) {
    let started = Instant::now();
    while api.search(q).await.len() != wanted {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "search for {q} never had {wanted} hits"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_leaves_no_plaintext_and_replay_reproduces_the_erasure() {
    const MARKER: &str = "zebra7f3a";
    let (dir, mut cf, [alice, bob, carol]) = start(["alice", "bob", "carol"]).await;
    let data = dir.path().join("data");
    let cid = alice.create_group(&["bob"]).await;
    let mut b = online(&cf, &bob.token, "b-phone").await;

    // Alice writes the marker in a message, an edit, a file's name and
    // its bytes; bob writes his own.
    let first = post(
        &alice,
        &cid,
        "a1",
        json!({"body": format!("meet at the {MARKER} crossing")}),
    )
    .await;
    let second = post(&alice, &cid, "a2", json!({"body": "typo"})).await;
    let (s, _) = alice
        .call(
            "PATCH",
            &format!("/v1/conversations/{cid}/messages/{second}"),
            Some(json!({"body": format!("edited: {MARKER} again")})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, upload) = alice
        .post(
            "/v1/uploads",
            json!({"name": format!("{MARKER}.txt"), "content_type": "text/plain", "size": 20}),
        )
        .await;
    assert_eq!(s, 201, "{upload}");
    let put = reqwest::Client::new()
        .put(cf.url(upload["upload_url"].as_str().unwrap()))
        .header("content-type", "text/plain")
        .body(format!("{MARKER} in a file"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let with_file = post(
        &alice,
        &cid,
        "a3",
        json!({"attachments": [{"upload_id": upload["upload_id"]}]}),
    )
    .await;
    post(&bob, &cid, "b1", json!({"body": "okapi9c1 from bob"})).await;

    // Members read it as written: live, in history, in search.
    let live = b
        .until_where(|f| common::is_event(f, &cid, "message_posted") && f["seq"] == first)
        .await;
    assert_eq!(
        live["data"]["body"],
        format!("meet at the {MARKER} crossing")
    );
    let history = bob.history(&cid).await;
    let by_seq = |h: &[Value], seq: i64| h.iter().find(|m| m["seq"] == seq).unwrap().clone();
    assert_eq!(
        by_seq(&history, second)["body"],
        format!("edited: {MARKER} again")
    );
    assert_eq!(
        by_seq(&history, with_file)["attachments"][0]["name"],
        format!("{MARKER}.txt")
    );
    until_hits(&bob, MARKER, 2).await;
    until_hits(&bob, "okapi9c1", 1).await;
    // Sealed before it reached the log: only the search index (which
    // must read it) holds the plaintext.
    let outside_index: Vec<String> = files_containing(&data, MARKER)
        .into_iter()
        .filter(|f| !f.contains("/search/") && !f.contains("/uploads/"))
        .collect();
    assert_eq!(outside_index, Vec::<String>::new());

    // Only the user or a global admin erases.
    let (s, answer) = carol.call("DELETE", "/v1/users/alice", None).await;
    assert_eq!((s, code(&answer)), (403, "forbidden"), "{answer}");
    let (s, erased) = alice.call("DELETE", "/v1/users/alice", None).await;
    assert_eq!(s, 200, "{erased}");
    assert_eq!(erased["files_removed"], 1);

    // Her content reads as erased everywhere; bob's stays.
    let (s, answer) = alice
        .post(
            &format!("/v1/conversations/{cid}/messages"),
            json!({"client_msg_id": "a4", "body": "still here?"}),
        )
        .await;
    assert_eq!((s, code(&answer)), (403, "user_erased"), "{answer}");
    let history = bob.history(&cid).await;
    for seq in [first, second, with_file] {
        let m = by_seq(&history, seq);
        assert_eq!(m["body"], "[erased]", "{m}");
        assert_eq!(m["attachments"], json!([]), "{m}");
    }
    assert_eq!(history.last().unwrap()["body"], "okapi9c1 from bob");
    let link = bob
        .get(&format!(
            "/v1/conversations/{cid}/messages/{with_file}/attachments/{}",
            upload["upload_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(link.0, 404);
    until_hits(&bob, MARKER, 0).await;
    assert_eq!(bob.search("okapi9c1").await.len(), 1);

    // The audit log has the erasure.
    let admin = Api::new(&cf, &common::admin_token(&data, "root"));
    let (s, audit) = admin.get("/v1/admin/audit?action=user_erased").await;
    assert_eq!(s, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["actor"] == "alice" && e["target"] == "alice"),
        "{audit}"
    );

    // A replay of the whole log rebuilds the same erased store and index.
    for (model, into) in [
        ("persister", "fjall://rebuilt-store"),
        ("indexer", "tantivy://rebuilt-search"),
    ] {
        let out = chatflow(&["replay", model, "--into", into], &data, Some(cf.kafka));
        assert!(out.status.success(), "{}", text(&out));
    }
    assert!(cf.stop().await.success());
    for (model, rebuilt, live) in [
        ("persister", "fjall://rebuilt-store", "fjall://store"),
        ("indexer", "tantivy://rebuilt-search", "tantivy://search"),
    ] {
        let out = chatflow(&["verify", model, rebuilt, "--against", live], &data, None);
        assert!(out.status.success(), "{}", text(&out));
    }

    // Nothing of hers is left in plaintext under the data dir: log,
    // archive, store, cold tier, index, files, replayed copies.
    assert_eq!(files_containing(&data, MARKER), Vec::<String>::new());
    // (The search works: bob's words are still in the index.)
    assert!(!files_containing(&data.join("search"), "okapi9c1").is_empty());
}

/// Asks for an export and waits until it is ready; returns its lines.
async fn export(cf: &common::Chatflow, api: &Api, user: &str) -> Vec<Value> {
    let (s, started) = api
        .post(&format!("/v1/users/{user}/export"), json!({}))
        .await;
    assert_eq!(s, 202, "{started}");
    assert_eq!(started["status"], "running");
    let status_url = started["status_url"].as_str().unwrap().to_owned();
    let begun = Instant::now();
    let ready = loop {
        let (s, state) = api.get(&status_url).await;
        assert_eq!(s, 200, "{state}");
        match state["status"].as_str().unwrap() {
            "ready" => break state,
            "running" => {}
            other => panic!("export {other}: {state}"),
        }
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "export never ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let file = reqwest::get(cf.url(ready["url"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert!(
        file.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    let text = file.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ready["lines"], lines.len());
    lines
}

fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_holds_exactly_the_users_data_and_shows_an_erasure() {
    let (dir, cf, [alice, bob, carol]) = start(["alice", "bob", "carol"]).await;
    let data = dir.path().join("data");
    let admin = Api::new(&cf, &common::admin_token(&data, "root"));
    let group = alice.create_group(&["bob"]).await;
    let (s, direct) = alice
        .post(
            "/v1/conversations",
            json!({"kind": "direct", "members": ["carol"]}),
        )
        .await;
    assert_eq!(s, 201, "{direct}");
    let direct = direct["conversation_id"].as_str().unwrap().to_owned();
    let elsewhere = bob.create_group(&["carol"]).await;
    let (s, _) = alice
        .post(
            "/v1/devices",
            json!({"device_id": "a-phone", "platform": "android", "push_token": "tok-alice"}),
        )
        .await;
    assert_eq!(s, 201);

    let a1 = post(&alice, &group, "a1", json!({"body": "alice one"})).await;
    let (s, _) = alice
        .call(
            "PATCH",
            &format!("/v1/conversations/{group}/messages/{a1}"),
            Some(json!({"body": "alice one, edited"})),
        )
        .await;
    assert_eq!(s, 200);
    let b1 = post(&bob, &group, "b1", json!({"body": "bob's own words"})).await;
    let a2 = post(&alice, &direct, "a2", json!({"body": "alice to carol"})).await;
    post(&carol, &direct, "c1", json!({"body": "carol's own words"})).await;
    post(&bob, &elsewhere, "b2", json!({"body": "without alice"})).await;
    for (api, cid, seq, emoji) in [(&alice, &group, b1, "👍"), (&bob, &group, a1, "🎉")] {
        let (s, _) = api
            .call(
                "PUT",
                &format!("/v1/conversations/{cid}/messages/{seq}/reactions/{emoji}"),
                None,
            )
            .await;
        assert_eq!(s, 200);
    }
    let (s, _) = alice
        .post(
            &format!("/v1/conversations/{group}/read"),
            json!({"seq": b1}),
        )
        .await;
    assert_eq!(s, 200);

    // Only the user or a global admin.
    let (s, answer) = carol.post("/v1/users/alice/export", json!({})).await;
    assert_eq!((s, code(&answer)), (403, "forbidden"), "{answer}");

    // Give the store a moment to hold the reaction and the read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = export(&cf, &alice, "alice").await;
    let profile = of_type(&lines, "profile");
    assert_eq!(
        (profile.len(), &profile[0]["user_id"], &profile[0]["erased"]),
        (1, &json!("alice"), &json!(false))
    );
    let devices = of_type(&lines, "device");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["push_token"], "tok-alice");
    let mut conversations: Vec<&str> = of_type(&lines, "conversation")
        .iter()
        .map(|c| c["conversation_id"].as_str().unwrap())
        .collect();
    conversations.sort();
    let mut wanted = vec![group.as_str(), direct.as_str()];
    wanted.sort();
    assert_eq!(conversations, wanted, "not {elsewhere}");
    let in_group = of_type(&lines, "conversation")
        .into_iter()
        .find(|c| c["conversation_id"] == group.as_str())
        .unwrap();
    assert_eq!(in_group["last_read_seq"], b1);
    let mut messages: Vec<(String, i64, String)> = of_type(&lines, "message")
        .iter()
        .map(|m| {
            (
                m["conversation_id"].as_str().unwrap().to_owned(),
                m["seq"].as_i64().unwrap(),
                m["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    messages.sort();
    let mut wanted = vec![
        (direct.clone(), a2, "alice to carol".to_owned()),
        (group.clone(), a1, "alice one, edited".to_owned()),
    ];
    wanted.sort();
    assert_eq!(messages, wanted);
    let a1_line = of_type(&lines, "message")
        .into_iter()
        .find(|m| m["seq"] == a1 && m["conversation_id"] == group.as_str())
        .unwrap();
    assert_eq!(a1_line["reactions"], json!({"🎉": ["bob"]}));
    let reactions = of_type(&lines, "reaction");
    assert_eq!(reactions.len(), 1);
    assert_eq!(
        (&reactions[0]["seq"], &reactions[0]["emoji"]),
        (&json!(b1), &json!("👍"))
    );
    let everything: String = lines.iter().map(Value::to_string).collect();
    for theirs in ["bob's own words", "carol's own words", "without alice"] {
        assert!(!everything.contains(theirs), "{theirs} is not alice's");
    }
    // Someone else's export is not found under another user.
    let export_id = {
        let (_, started) = alice.post("/v1/users/alice/export", json!({})).await;
        started["export_id"].as_str().unwrap().to_owned()
    };
    let (s, _) = bob.get(&format!("/v1/users/bob/exports/{export_id}")).await;
    assert_eq!(s, 404);

    // The audit log lists the exports; after an erasure an export (by a
    // global admin) shows her content erased.
    let begun = Instant::now();
    loop {
        let (s, audit) = admin.get("/v1/admin/audit?action=export_requested").await;
        assert_eq!(s, 200);
        let entries = audit["entries"].as_array().unwrap();
        if entries.len() == 2 {
            assert!(
                entries
                    .iter()
                    .all(|e| e["actor"] == "alice" && e["target"] == "alice")
            );
            break;
        }
        assert!(begun.elapsed() < Duration::from_secs(10), "{audit}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, _) = admin.call("DELETE", "/v1/users/alice", None).await;
    assert_eq!(s, 200);
    let lines = export(&cf, &admin, "alice").await;
    assert_eq!(of_type(&lines, "profile")[0]["erased"], true);
    let bodies: Vec<&Value> = of_type(&lines, "message")
        .iter()
        .map(|m| &m["body"])
        .collect();
    assert_eq!(bodies, vec![&json!("[erased]"), &json!("[erased]")]);
    assert!(
        of_type(&lines, "device").is_empty(),
        "her devices went with her"
    );
}
