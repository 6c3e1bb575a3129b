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
