#![allow(clippy::unwrap_used)]
//! The conversation features users expect, end to end on the real binary,
//! one test per behaviour: groups and roles, who may do what, direct
//! conversations, edits, deletes, replies, mentions, reactions, receipts,
//! typing, presence and last seen, unread counts and the conversation list,
//! mute, several devices per user, device registration.

mod common;

use common::{Api, Chatflow, Ws};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error>")
}

async fn post(api: &Api, cid: &str, id: &str, body: Value) -> i64 {
    let mut req = body;
    req["client_msg_id"] = json!(id);
    let (status, ack) = api
        .post(&format!("/v1/conversations/{cid}/messages"), req)
        .await;
    assert_eq!(status, 201, "{ack}");
    ack["seq"].as_i64().unwrap()
}

async fn conversation(api: &Api, cid: &str) -> Value {
    let (status, body) = api.get(&format!("/v1/conversations/{cid}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn role_of(conv: &Value, user: &str) -> Option<String> {
    conv["members"]
        .as_array()?
        .iter()
        .find(|m| m["user_id"] == user)
        .map(|m| m["role"].as_str().unwrap().to_owned())
}

fn admin_token(data: &std::path::Path, user: &str) -> String {
    let secret = std::fs::read(data.join("dev-secret")).unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    encode(
        &Header::default(),
        &json!({"sub": user, "exp": exp, "roles": ["admin"]}),
        &EncodingKey::from_secret(&secret),
    )
    .unwrap()
}

/// An event frame of `kind` in `cid`.
fn is_event(f: &Value, cid: &str, kind: &str) -> bool {
    f["type"] == "event" && f["conversation_id"] == cid && f["kind"] == kind
}

/// A live socket of `device`.
async fn online(cf: &Chatflow, token: &str, device: &str) -> Ws {
    let mut ws = Ws::connect(cf, token, device).await;
    ws.live().await;
    ws
}

/// A fresh chatflow and an API client per user.
async fn start<const N: usize>(users: [&str; N]) -> (tempfile::TempDir, Chatflow, [Api; N]) {
    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start(&dir.path().join("data")).await;
    let mut apis = Vec::new();
    for user in users {
        apis.push(Api::new(&cf, &cf.token(user).await));
    }
    let apis: [Api; N] = apis.try_into().ok().unwrap();
    (dir, cf, apis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_admins_manage_members_roles_and_settings() {
    let (dir, cf, [alice, bob, carol, dave]) = start(["alice", "bob", "carol", "dave"]).await;
    let data = dir.path().join("data");
    let cid = alice.create_group(&["bob"]).await;
    let path = |p: &str| format!("/v1/conversations/{cid}{p}");

    // Owner adds; a member may not; an admin may, but not an owner.
    let (s, b) = alice
        .post(&path("/members"), json!({"user_id": "carol"}))
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = bob
        .post(&path("/members"), json!({"user_id": "dave"}))
        .await;
    assert_eq!((s, code(&b)), (403, "forbidden"));
    let (s, b) = bob
        .call(
            "PUT",
            &path("/members/bob/role"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!((s, code(&b)), (403, "forbidden"), "only an owner promotes");
    let (s, _) = alice
        .call(
            "PUT",
            &path("/members/bob/role"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = bob
        .post(&path("/members"), json!({"user_id": "dave"}))
        .await;
    assert_eq!(s, 201, "an admin adds members");
    let (s, b) = bob
        .post(
            &path("/members"),
            json!({"user_id": "eve", "role": "owner"}),
        )
        .await;
    assert_eq!((s, code(&b)), (403, "forbidden"), "an admin adds no owner");
    let (s, b) = alice
        .post(&path("/members"), json!({"user_id": "dave"}))
        .await;
    assert_eq!((s, code(&b)), (409, "already_member"));
    let (s, b) = alice
        .post(&path("/members"), json!({"user_id": "x", "role": "king"}))
        .await;
    assert_eq!((s, code(&b)), (400, "invalid_role"));

    // Rename and describe: owner/admin only.
    let (s, _) = bob
        .call(
            "PATCH",
            &path(""),
            Some(json!({"name": "Team", "description": "ours"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = carol
        .call("PATCH", &path(""), Some(json!({"name": "Mine"})))
        .await;
    assert_eq!((s, code(&b)), (403, "forbidden"));
    let conv = conversation(&carol, &cid).await;
    assert_eq!(
        (conv["name"].as_str(), conv["description"].as_str()),
        (Some("Team"), Some("ours"))
    );
    assert_eq!(role_of(&conv, "bob").as_deref(), Some("admin"));
    assert_eq!(role_of(&conv, "dave").as_deref(), Some("member"));

    // Removing: admins remove members, not owners; members only leave.
    let (s, b) = carol.call("DELETE", &path("/members/dave"), None).await;
    assert_eq!((s, code(&b)), (403, "forbidden"));
    let (s, b) = bob.call("DELETE", &path("/members/alice"), None).await;
    assert_eq!((s, code(&b)), (403, "forbidden"));
    let (s, _) = bob.call("DELETE", &path("/members/dave"), None).await;
    assert_eq!(s, 200);
    let (s, b) = dave.get(&path("/messages")).await;
    assert_eq!((s, code(&b)), (403, "forbidden"), "removed: no more reads");
    let (s, b) = alice
        .call(
            "PUT",
            &path("/members/alice/role"),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!((s, code(&b)), (409, "last_owner"));

    // A global admin acts as an owner anywhere.
    let root = Api::new(&cf, &admin_token(&data, "root"));
    let (s, _) = root
        .call(
            "PATCH",
            &path(""),
            Some(json!({"name": "Renamed by admin"})),
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_and_plain_members_are_refused_everywhere() {
    let (_dir, cf, [alice, carol, eve]) = start(["alice", "carol", "eve"]).await;
    let cid = alice.create_group(&["bob", "carol"]).await;
    let path = |p: &str| format!("/v1/conversations/{cid}{p}");

    // The authorization matrix for someone outside the conversation.
    let m = post(&alice, &cid, "m1", json!({"body": "hello"})).await;
    let outside: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", path(""), None),
        ("GET", path("/messages"), None),
        (
            "POST",
            path("/messages"),
            Some(json!({"client_msg_id": "e", "body": "hi"})),
        ),
        (
            "PATCH",
            path(&format!("/messages/{m}")),
            Some(json!({"body": "x"})),
        ),
        ("DELETE", path(&format!("/messages/{m}")), None),
        ("PUT", path(&format!("/messages/{m}/reactions/👍")), None),
        ("GET", path(&format!("/messages/{m}/receipts")), None),
        ("POST", path("/read"), Some(json!({"seq": m}))),
        ("PUT", path("/mute"), Some(json!({"muted": true}))),
        ("PATCH", path(""), Some(json!({"name": "mine now"}))),
        ("POST", path("/members"), Some(json!({"user_id": "eve"}))),
        ("DELETE", path("/members/bob"), None),
        (
            "PUT",
            path("/members/eve/role"),
            Some(json!({"role": "owner"})),
        ),
        (
            "GET",
            format!("/v1/search?q=hello&conversation_id={cid}"),
            None,
        ),
        ("GET", "/v1/users/alice/presence".into(), None),
    ];
    for (method, p, body) in &outside {
        let (s, b) = eve.call(method, p, body.clone()).await;
        assert_eq!((s, code(&b)), (403, "forbidden"), "eve {method} {p}: {b}");
    }
    // And for a member without a role.
    let as_member: Vec<(&str, String, Option<Value>)> = vec![
        (
            "PATCH",
            path(&format!("/messages/{m}")),
            Some(json!({"body": "x"})),
        ),
        ("DELETE", path(&format!("/messages/{m}")), None),
        ("PATCH", path(""), Some(json!({"name": "x"}))),
        ("POST", path("/members"), Some(json!({"user_id": "eve"}))),
        ("DELETE", path("/members/bob"), None),
        (
            "PUT",
            path("/members/carol/role"),
            Some(json!({"role": "owner"})),
        ),
    ];
    for (method, p, body) in &as_member {
        let (s, b) = carol.call(method, p, body.clone()).await;
        assert_eq!((s, code(&b)), (403, "forbidden"), "carol {method} {p}: {b}");
    }
    // Over the socket: no typing, read or resume in someone else's group.
    let mut ws = Ws::connect(&cf, &eve.token, "eve-phone").await;
    for frame in [
        json!({"type": "typing", "conversation_id": cid}),
        json!({"type": "read", "conversation_id": cid, "seq": m}),
        json!({"type": "resume", "cursors": {cid.clone(): -1}}),
    ] {
        ws.send(frame.clone()).await;
        let f = ws.until_where(|f| f["type"] == "error").await;
        assert_eq!(f["code"], "forbidden", "{frame}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_conversation_is_one_per_pair_with_fixed_members() {
    let (_dir, _cf, [alice, bob]) = start(["alice", "bob"]).await;
    // Direct conversations: one per pair, two members for good.
    let (s, b) = alice
        .post(
            "/v1/conversations",
            json!({"kind": "direct", "members": ["bob"]}),
        )
        .await;
    assert_eq!(s, 201);
    let dm = b["conversation_id"].as_str().unwrap().to_owned();
    let (s, b) = bob
        .post(
            "/v1/conversations",
            json!({"kind": "direct", "members": ["alice"]}),
        )
        .await;
    assert_eq!((s, b["conversation_id"].as_str()), (200, Some(dm.as_str())));
    let (s, b) = alice
        .call(
            "DELETE",
            &format!("/v1/conversations/{dm}/members/bob"),
            None,
        )
        .await;
    assert_eq!((s, code(&b)), (409, "direct_conversation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_owner_leaving_hands_the_group_to_an_admin() {
    let (_dir, _cf, [alice, bob]) = start(["alice", "bob"]).await;
    let cid = alice.create_group(&["bob", "carol"]).await;
    let path = |p: &str| format!("/v1/conversations/{cid}{p}");
    let (s, _) = alice
        .call(
            "PUT",
            &path("/members/bob/role"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = alice.call("DELETE", &path("/members/alice"), None).await;
    assert_eq!(s, 200);
    let conv = conversation(&bob, &cid).await;
    assert_eq!(role_of(&conv, "bob").as_deref(), Some("owner"));
    assert_eq!(role_of(&conv, "alice"), None);
}

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
