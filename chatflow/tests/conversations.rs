#![allow(clippy::unwrap_used)]
//! Conversations and who may do what, end to end on the real binary, one
//! test per behaviour: groups and roles, the refusals, direct
//! conversations, the owner hand-over. (Messaging: `messaging.rs`.)

mod common;

use common::{Api, Ws, code, post, start};
use serde_json::{Value, json};

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
    common::signed_token(&secret, user, 3600, &["admin"])
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
