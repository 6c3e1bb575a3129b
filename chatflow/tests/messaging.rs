#![allow(clippy::unwrap_used)]
//! Messaging features users expect, end to end on the real binary, one test
//! per behaviour: replies, mentions, edits, deletes, reactions, unread
//! counts and the list, receipts across devices, typing, presence and last
//! seen, mute, push devices.

mod common;

use common::{Api, code, is_event, online, post, start};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_edits_reactions_and_deletes_reach_every_device_and_history() {
    let (_dir, cf, [alice, bob, carol]) = start(["alice", "bob", "carol"]).await;
    let cid = alice.create_group(&["bob", "carol"]).await;
    let path = |p: &str| format!("/v1/conversations/{cid}{p}");
    // Alice on one device, bob on two.
    let mut a = online(&cf, &alice.token, "a-phone").await;
    let mut b1 = online(&cf, &bob.token, "b-phone").await;
    let mut b2 = online(&cf, &bob.token, "b-laptop").await;

    // Replies and mentions; every device of every member gets the event.
    let first = post(&alice, &cid, "m1", json!({"body": "lunch?"})).await;
    let reply = post(
        &bob,
        &cid,
        "m2",
        json!({"body": "yes @carol", "reply_to": first, "mentions": ["carol"]}),
    )
    .await;
    for ws in [&mut a, &mut b1, &mut b2] {
        let e = ws
            .until_where(|f| is_event(f, &cid, "message_posted") && f["seq"] == reply)
            .await;
        assert_eq!(e["data"]["reply_to"], first);
        assert_eq!(e["data"]["mentions"], json!(["carol"]));
    }

    // Edit (author only), reactions per emoji with who reacted, delete.
    let (s, _) = alice
        .call(
            "PATCH",
            &path(&format!("/messages/{first}")),
            Some(json!({"body": "lunch at 1?"})),
        )
        .await;
    assert_eq!(s, 200);
    for (api, emoji) in [(&bob, "👍"), (&carol, "👍"), (&carol, "🎉")] {
        let (s, b) = api
            .call(
                "PUT",
                &path(&format!("/messages/{first}/reactions/{emoji}")),
                None,
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
    let (_, again) = bob
        .call(
            "PUT",
            &path(&format!("/messages/{first}/reactions/👍")),
            None,
        )
        .await;
    assert_eq!(again["event_seq"], Value::Null, "already reacted: no event");
    let (s, _) = carol
        .call(
            "DELETE",
            &path(&format!("/messages/{first}/reactions/🎉")),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let e = b2
        .until_where(|f| is_event(f, &cid, "reaction_removed"))
        .await;
    assert_eq!(
        (e["actor_id"].as_str(), e["data"]["emoji"].as_str()),
        (Some("carol"), Some("🎉"))
    );
    let (s, _) = bob
        .call("DELETE", &path(&format!("/messages/{reply}")), None)
        .await;
    assert_eq!(s, 200);
    let history = bob.history(&cid).await;
    let m1 = history.iter().find(|m| m["seq"] == first).unwrap();
    assert_eq!(m1["body"], "lunch at 1?");
    assert!(m1["edited_at"].is_string());
    assert_eq!(m1["reactions"], json!({"👍": ["bob", "carol"]}));
    let m2 = history.iter().find(|m| m["seq"] == reply).unwrap();
    assert_eq!(
        (m2["deleted"].as_bool(), m2["body"].is_null()),
        (Some(true), true)
    );
    let (s, b) = carol
        .call(
            "PUT",
            &path(&format!("/messages/{reply}/reactions/👍")),
            None,
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (404, "not_found"),
        "no reactions on a tombstone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_counts_receipts_and_the_list_follow_every_device() {
    let (_dir, cf, [alice, bob, _carol]) = start(["alice", "bob", "carol"]).await;
    let quiet = bob.create_group(&["alice"]).await;
    let cid = alice.create_group(&["bob", "carol"]).await;
    let path = |p: &str| format!("/v1/conversations/{cid}{p}");
    let mut a = online(&cf, &alice.token, "a-phone").await;
    let mut b1 = online(&cf, &bob.token, "b-phone").await;
    let mut b2 = online(&cf, &bob.token, "b-laptop").await;
    let first = post(&alice, &cid, "m1", json!({"body": "lunch?"})).await;
    let reply = post(&bob, &cid, "m2", json!({"body": "yes"})).await;
    let (s, _) = bob
        .call("DELETE", &path(&format!("/messages/{reply}")), None)
        .await;
    assert_eq!(s, 200);

    // Unread counts and the list, newest activity first, with a preview.
    let (_, list) = bob.get("/v1/conversations").await;
    let convs = list["conversations"].as_array().unwrap();
    assert_eq!(
        convs[0]["conversation_id"], cid,
        "most recent activity first"
    );
    assert_eq!(convs[1]["conversation_id"], quiet);
    assert_eq!(
        convs[0]["unread_count"], 1,
        "alice's message (bob's own and deleted ones do not count)"
    );
    let preview = &convs[0]["last_message"];
    assert_eq!(
        (preview["seq"].as_i64(), preview["deleted"].as_bool()),
        (Some(reply), Some(true))
    );

    // Receipts: bob's phone has it (delivered), bob reads it on his laptop;
    // alice sees both; bob's phone learns of the read; unread is 0.
    b1.send(json!({"type": "delivered", "conversation_id": cid, "seq": first}))
        .await;
    let d = a.until_where(|f| is_event(f, &cid, "delivered")).await;
    assert_eq!(d["actor_id"], "bob");
    b2.send(json!({"type": "read", "conversation_id": cid, "seq": reply}))
        .await;
    let r = a.until_where(|f| is_event(f, &cid, "read")).await;
    assert_eq!(
        (r["actor_id"].as_str(), r["data"]["seq"].as_i64()),
        (Some("bob"), Some(reply))
    );
    let r = b1.until_where(|f| is_event(f, &cid, "read")).await;
    assert_eq!(r["actor_id"], "bob", "the other device learns of the read");
    let (s, receipts) = alice
        .get(&path(&format!("/messages/{first}/receipts")))
        .await;
    assert_eq!(s, 200);
    assert_eq!(receipts["delivered_to"], json!(["bob"]));
    assert_eq!(receipts["read_by"], json!(["bob"]));
    let (_, list) = bob.get("/v1/conversations").await;
    assert_eq!(list["conversations"][0]["unread_count"], 0);
    let (s, b) = bob.post(&path("/read"), json!({"seq": 1_000_000})).await;
    assert_eq!((s, code(&b)), (400, "invalid_seq"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_presence_reach_the_members_and_no_one_else() {
    let (_dir, cf, [alice, bob, carol]) = start(["alice", "bob", "carol"]).await;
    let cid = alice.create_group(&["bob", "carol"]).await;
    // Eve shares no conversation with them: her socket must hear nothing.
    let eve = cf.token("eve").await;
    let mut eve_ws = online(&cf, &eve, "e-phone").await;
    let mut a = online(&cf, &alice.token, "a-phone").await;
    let mut b1 = online(&cf, &bob.token, "b-phone").await;
    post(&alice, &cid, "m1", json!({"body": "lunch?"})).await;

    // Typing: the others see it, with how long to show it; throttled.
    b1.send(json!({"type": "typing", "conversation_id": cid}))
        .await;
    let t = a.until_where(|f| f["type"] == "typing").await;
    assert_eq!(
        (t["user_id"].as_str(), t["conversation_id"].as_str()),
        (Some("bob"), Some(cid.as_str()))
    );
    assert_eq!(t["expires_in_ms"], 5000);

    // Presence: carol comes online, alice is told; carol leaves, alice is
    // told when she was last seen, and can ask.
    let c = online(&cf, &carol.token, "c-phone").await;
    let p = a
        .until_where(|f| f["type"] == "presence" && f["user_id"] == "carol")
        .await;
    assert_eq!(p["online"], true);
    let (_, now) = alice.get("/v1/users/carol/presence").await;
    assert_eq!(
        (now["online"].as_bool(), now["last_seen"].is_null()),
        (Some(true), true)
    );
    drop(c);
    let p = a
        .until_where(|f| f["type"] == "presence" && f["user_id"] == "carol")
        .await;
    assert_eq!(p["online"], false);
    assert!(p["last_seen"].is_string());
    let (s, seen) = alice.get("/v1/users/carol/presence").await;
    assert_eq!((s, seen["online"].as_bool()), (200, Some(false)));
    assert_eq!(seen["last_seen"], p["last_seen"]);

    // Nothing of theirs (events, typing, presence) reached eve: everything
    // above was delivered by now, since later frames reached the others.
    let leaked = eve_ws.pending(std::time::Duration::from_millis(300)).await;
    assert!(
        leaked.iter().all(|f| f["type"] == "pong"),
        "eve received {leaked:?}"
    );
    let (s, b) = Api::new(&cf, &eve).get("/v1/users/carol/presence").await;
    assert_eq!((s, code(&b)), (403, "forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_and_push_devices_are_the_callers_own() {
    let (_dir, _cf, [alice, bob, _carol]) = start(["alice", "bob", "carol"]).await;
    let cid = alice.create_group(&["bob", "carol"]).await;
    let path = |p: &str| format!("/v1/conversations/{cid}{p}");

    // Mute is the caller's own setting.
    let (s, _) = bob
        .call("PUT", &path("/mute"), Some(json!({"muted": true})))
        .await;
    assert_eq!(s, 200);
    let muted = |list: &Value, who_cid: &str| {
        list["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["conversation_id"] == who_cid)
            .map(|c| c["muted"].clone())
    };
    let (_, bl) = bob.get("/v1/conversations").await;
    let (_, al) = alice.get("/v1/conversations").await;
    assert_eq!(muted(&bl, &cid), Some(json!(true)));
    assert_eq!(muted(&al, &cid), Some(json!(false)));

    // Devices for push notifications.
    let (s, _) = bob
        .post(
            "/v1/devices",
            json!({"device_id": "b-phone", "platform": "ios", "push_token": "tok"}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, b) = bob
        .post(
            "/v1/devices",
            json!({"device_id": "b-fridge", "platform": "fridge"}),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "invalid_platform"));
    let (s, _) = bob.call("DELETE", "/v1/devices/b-phone", None).await;
    assert_eq!(s, 200);
}

/// `PUT`s `bytes` to an upload URL (relative: on the gateway) as `ct`.
async fn put_file(cf: &common::Chatflow, url: &str, ct: &str, bytes: &[u8]) -> (u16, Value) {
    let url = if url.starts_with('/') {
        cf.url(url)
    } else {
        url.to_owned()
    };
    let r = reqwest::Client::new()
        .put(url)
        .header("content-type", ct)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Announces a file and returns (upload_id, upload_url).
async fn announce(api: &Api, name: &str, ct: &str, size: usize) -> (String, String) {
    let (status, body) = api
        .post(
            "/v1/uploads",
            json!({"name": name, "content_type": ct, "size": size}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["method"], "PUT");
    (
        body["upload_id"].as_str().unwrap().to_owned(),
        body["upload_url"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_upload_send_and_download_for_members_only() {
    let (_dir, cf, [alice, bob, carol]) = common::start_args(
        ["alice", "bob", "carol"],
        &[
            "--upload-max-bytes",
            "100000",
            "--upload-ttl-secs",
            "6",
            "--upload-sweep-secs",
            "1",
        ],
    )
    .await;
    let cid = alice.create_group(&["bob"]).await;
    let mut b = online(&cf, &bob.token, "b-phone").await;
    let picture: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();

    // Limits on what is announced.
    for (body, status, wanted) in [
        (
            json!({"name": "big.bin", "content_type": "application/octet-stream", "size": 100_001}),
            413,
            "too_large",
        ),
        (
            json!({"name": "x.svg", "content_type": "image/svg+xml", "size": 10}),
            400,
            "invalid_file_type",
        ),
        (
            json!({"name": "page.html", "content_type": "text/html", "size": 10}),
            400,
            "invalid_file_type",
        ),
        (
            json!({"name": "a/b.png", "content_type": "image/png", "size": 10}),
            400,
            "invalid_name",
        ),
        (
            json!({"name": "e.png", "content_type": "image/png", "size": 0}),
            400,
            "invalid_size",
        ),
    ] {
        let (s, answer) = alice.post("/v1/uploads", body.clone()).await;
        assert_eq!((s, code(&answer)), (status, wanted), "{body}: {answer}");
    }

    let (id, url) = announce(&alice, "cat picture.png", "image/png", picture.len()).await;
    assert!(url.starts_with("/v1/uploads/"), "the gateway signs: {url}");
    // A message cannot carry it before its bytes are there.
    let (s, answer) = alice
        .post(
            &format!("/v1/conversations/{cid}/messages"),
            json!({"client_msg_id": "early", "attachments": [{"upload_id": id}]}),
        )
        .await;
    assert_eq!((s, code(&answer)), (400, "invalid_attachment"), "{answer}");
    // The PUT: the type announced, no more bytes than announced, a URL
    // that is not tampered with, once.
    let (s, answer) = put_file(&cf, &url, "image/jpeg", &picture).await;
    assert_eq!(
        (s, code(&answer)),
        (400, "invalid_content_type"),
        "{answer}"
    );
    let mut bigger = picture.clone();
    bigger.push(0);
    let (s, answer) = put_file(&cf, &url, "image/png", &bigger).await;
    assert_eq!((s, code(&answer)), (413, "too_large"), "{answer}");
    let forged = url.replace(&id, "01JAAAAAAAAAAAAAAAAAAAAAAA");
    let (s, answer) = put_file(&cf, &forged, "image/png", &picture).await;
    assert_eq!((s, code(&answer)), (403, "forbidden"), "{answer}");
    let (s, _) = put_file(&cf, &url, "image/png", &picture).await;
    assert_eq!(s, 204);
    let (s, answer) = put_file(&cf, &url, "image/png", b"other bytes").await;
    assert_eq!((s, code(&answer)), (409, "already_uploaded"), "{answer}");

    // Someone else's upload cannot be sent; a thumbnail is checked.
    let (s, answer) = bob
        .post(
            &format!("/v1/conversations/{cid}/messages"),
            json!({"client_msg_id": "theft", "attachments": [{"upload_id": id}]}),
        )
        .await;
    assert_eq!((s, code(&answer)), (400, "invalid_attachment"), "{answer}");
    let (s, answer) = alice
        .post(
            &format!("/v1/conversations/{cid}/messages"),
            json!({"client_msg_id": "thumb", "attachments": [{"upload_id": id, "thumbnail": "not base64!"}]}),
        )
        .await;
    assert_eq!((s, code(&answer)), (400, "invalid_thumbnail"), "{answer}");

    // Sent without a caption; a retry is the same message.
    let thumbnail = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let send =
        json!({"client_msg_id": "pic", "attachments": [{"upload_id": id, "thumbnail": thumbnail}]});
    let seq = post(&alice, &cid, "pic", send.clone()).await;
    assert_eq!(post(&alice, &cid, "pic", send).await, seq);
    let live = b
        .until_where(|f| is_event(f, &cid, "message_posted") && f["seq"] == seq)
        .await;
    let sent = &live["data"]["attachments"][0];
    assert_eq!(
        (
            &sent["id"],
            &sent["name"],
            &sent["content_type"],
            &sent["size"],
            &sent["thumbnail"]
        ),
        (
            &json!(id),
            &json!("cat picture.png"),
            &json!("image/png"),
            &json!(picture.len()),
            &json!(thumbnail)
        )
    );
    let history = bob.history(&cid).await;
    let stored = history.iter().find(|m| m["seq"] == seq).unwrap();
    assert_eq!(
        stored["attachments"], live["data"]["attachments"],
        "{stored}"
    );

    // A member downloads it through an expiring link.
    let link_path = format!("/v1/conversations/{cid}/messages/{seq}/attachments/{id}");
    let (s, link) = bob.get(&link_path).await;
    assert_eq!(s, 200, "{link}");
    assert_eq!(link["size"], picture.len());
    let file = reqwest::get(cf.url(link["url"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "image/png");
    assert_eq!(file.headers()["x-content-type-options"], "nosniff");
    assert!(
        file.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline; filename=\"cat picture.png\"")
    );
    assert_eq!(file.bytes().await.unwrap().to_vec(), picture);
    // The upload URL does not download, nor does a tampered link.
    let tampered = link["url"]
        .as_str()
        .unwrap()
        .replace("expires=", "expires=9");
    assert_eq!(reqwest::get(cf.url(&tampered)).await.unwrap().status(), 403);
    let put_as_get = reqwest::get(cf.url(&url)).await.unwrap();
    assert_eq!(put_as_get.status(), 403);
    // Outsiders and unknown ids are refused.
    let (s, answer) = carol.get(&link_path).await;
    assert_eq!((s, code(&answer)), (403, "forbidden"), "{answer}");
    let (s, _) = bob
        .get(&format!(
            "/v1/conversations/{cid}/messages/{seq}/attachments/01JAAAAAAAAAAAAAAAAAAAAAAA"
        ))
        .await;
    assert_eq!(s, 404);

    // An upload nobody sends is swept once its time to be sent is over;
    // the one sent stays. A deleted message's file is not handed out.
    let (orphan, orphan_url) = announce(&alice, "notes.txt", "text/plain", 5).await;
    assert_eq!(
        put_file(&cf, &orphan_url, "text/plain", b"hello").await.0,
        204
    );
    let files = cf.data_dir.join("archive/uploads");
    assert!(files.join(&orphan).join("data").exists());
    let started = std::time::Instant::now();
    while files.join(&orphan).exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the unsent upload is still there"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(files.join(&id).join("data").exists(), "the sent file stays");
    assert_eq!(bob.get(&link_path).await.0, 200);
    let (s, _) = alice
        .call(
            "DELETE",
            &format!("/v1/conversations/{cid}/messages/{seq}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(bob.get(&link_path).await.0, 404);
}
