#![allow(clippy::unwrap_used)]
//! Conversations and who may do what, end to end on the real binary, one
//! test per behaviour: groups and roles, the refusals, direct
//! conversations, the owner hand-over. (Messaging: `messaging.rs`.)

mod common;

use common::{Api, Ws, admin_token, code, post, start};
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

/// (actor, action, target, detail, global_admin) of each audit entry.
fn audit_rows(page: &Value) -> Vec<(String, String, String, String, bool)> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                text(&e["actor"]),
                text(&e["action"]),
                text(&e["target"]),
                text(&e["detail"]),
                e["global_admin"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrative_actions_are_audited_for_global_admins_only() {
    let (dir, cf, [alice, bob, carol, dave]) = start(["alice", "bob", "carol", "dave"]).await;
    let root = Api::new(&cf, &admin_token(&dir.path().join("data"), "root"));
    let cid = alice.create_group(&["bob", "carol"]).await;
    let path = |p: &str| format!("/v1/conversations/{cid}{p}");
    let ok = |(s, b): (u16, Value)| assert!((200..300).contains(&s), "{s} {b}");

    ok(alice
        .call("PATCH", &path(""), Some(json!({"name": "ops"})))
        .await);
    ok(alice
        .post(&path("/members"), json!({"user_id": "dave"}))
        .await);
    ok(alice
        .call(
            "PUT",
            &path("/members/bob/role"),
            Some(json!({"role": "admin"})),
        )
        .await);
    let own = post(&carol, &cid, "c1", json!({"body": "mine"})).await;
    let moderated = post(&carol, &cid, "c2", json!({"body": "spam"})).await;
    ok(carol
        .call("DELETE", &path(&format!("/messages/{own}")), None)
        .await);
    ok(bob
        .call("DELETE", &path(&format!("/messages/{moderated}")), None)
        .await);
    let pinned = post(&bob, &cid, "b1", json!({"body": "rules"})).await;
    ok(alice
        .call("PUT", &path(&format!("/messages/{pinned}/pin")), None)
        .await);
    ok(dave.call("DELETE", &path("/members/dave"), None).await);
    ok(root.call("DELETE", &path("/members/carol"), None).await);
    ok(alice
        .post(
            "/v1/devices",
            json!({"device_id": "phone", "platform": "ios"}),
        )
        .await);
    ok(alice.call("DELETE", "/v1/devices/phone", None).await);

    let s = |v: &str| v.to_owned();
    let expected = vec![
        (
            s("alice"),
            s("conversation_updated"),
            s(""),
            s("name"),
            false,
        ),
        (s("alice"), s("member_added"), s("dave"), s("member"), false),
        (s("alice"), s("role_changed"), s("bob"), s("admin"), false),
        (
            s("bob"),
            s("message_deleted"),
            moderated.to_string(),
            s(""),
            false,
        ),
        (
            s("alice"),
            s("message_pinned"),
            pinned.to_string(),
            s("pinned"),
            false,
        ),
        (s("root"), s("member_removed"), s("carol"), s(""), true),
        (s("alice"), s("device_removed"), s("phone"), s(""), false),
    ];
    // A read model: each action shows once the store has applied it.
    let started = std::time::Instant::now();
    let all = loop {
        let (status, page) = root.get("/v1/admin/audit").await;
        assert_eq!(status, 200, "{page}");
        if audit_rows(&page).len() >= expected.len()
            || started.elapsed() > std::time::Duration::from_secs(10)
        {
            break page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // A sender deleting their own message and a member leaving are not
    // administrative actions.
    assert_eq!(audit_rows(&all), expected, "{all}");
    assert_eq!(all["has_more"], false);
    assert_eq!(all["entries"][0]["conversation_id"], cid.as_str());
    assert_eq!(all["entries"][6]["conversation_id"], "user:alice");
    assert!(all["entries"][0]["at"].as_str().unwrap().ends_with('Z'));

    // Filters.
    let (_, page) = root.get("/v1/admin/audit?actor=root").await;
    assert_eq!(audit_rows(&page), expected[5..6]);
    let (_, page) = root.get("/v1/admin/audit?action=role_changed").await;
    assert_eq!(audit_rows(&page), expected[2..3]);
    let (_, page) = root
        .get("/v1/admin/audit?from=2999-01-01T00:00:00Z&to=2999-01-02T00:00:00Z")
        .await;
    assert_eq!(audit_rows(&page), []);

    // Pages of 3 add up to the whole log, in order.
    let mut paged = Vec::new();
    let mut after = String::new();
    for expect_more in [true, true, false] {
        let (status, page) = root
            .get(&format!("/v1/admin/audit?limit=3&after={after}"))
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["has_more"], expect_more, "{page}");
        paged.extend(audit_rows(&page));
        after = page["next_after"].as_str().unwrap_or("").to_owned();
    }
    assert_eq!(paged, expected);

    // Nobody else reads it, not even the conversation's owner; bad
    // queries are refused with the error shape.
    let (s, b) = alice.get("/v1/admin/audit").await;
    assert_eq!((s, code(&b)), (403, "forbidden"));
    let (s, b) = root.get("/v1/admin/audit?limit=0").await;
    assert_eq!((s, code(&b)), (400, "invalid_limit"));
    let (s, b) = root
        .get("/v1/admin/audit?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z")
        .await;
    assert_eq!((s, code(&b)), (400, "invalid_range"));
    let (s, b) = root.get("/v1/admin/audit?from=2020-01-01T00:00:00Z").await;
    assert_eq!((s, code(&b)), (400, "invalid_range"), "over 366 days");
    let (s, b) = root.get("/v1/admin/audit?to=yesterday").await;
    assert_eq!((s, code(&b)), (400, "invalid_time"));
    let (s, b) = root.get("/v1/admin/audit?after=zz").await;
    assert_eq!((s, code(&b)), (400, "invalid_cursor"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_count_the_traffic_for_global_admins_only() {
    let (dir, cf, [alice, bob, carol, dave]) = common::start_args(
        ["alice", "bob", "carol", "dave"],
        &["--analytics-interval-secs", "1"],
    )
    .await;
    let root = Api::new(&cf, &admin_token(&dir.path().join("data"), "root"));
    let group = alice.create_group(&["bob", "carol"]).await;
    let (s, direct) = alice
        .post(
            "/v1/conversations",
            json!({"kind": "direct", "members": ["dave"]}),
        )
        .await;
    assert_eq!(s, 201, "{direct}");
    let direct = direct["conversation_id"].as_str().unwrap().to_owned();

    // The test's own traffic: 5 group messages, 2 direct ones; a retried
    // send is one message; carol only reads.
    for (api, cid, id) in [
        (&alice, &group, "a1"),
        (&alice, &group, "a2"),
        (&alice, &group, "a3"),
        (&bob, &group, "b1"),
        (&bob, &group, "b2"),
        (&bob, &group, "b2"),
        (&dave, &direct, "d1"),
        (&alice, &direct, "a4"),
    ] {
        post(api, cid, id, json!({"body": "hello"})).await;
    }
    let (s, b) = carol
        .post(
            &format!("/v1/conversations/{group}/read"),
            json!({"seq": 1}),
        )
        .await;
    assert!(s < 300, "{s} {b}");
    let sent: u64 = 7;

    let yesterday = schemas::now_millis() - 86_400_000;
    let query = format!("/v1/admin/analytics?from={yesterday}");
    let started = std::time::Instant::now();
    let report = loop {
        let (status, report) = root.get(&query).await;
        assert_eq!(status, 200, "{report}");
        let counted: u64 = report["days"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|d| d["messages"].as_object().unwrap().values())
            .map(|n| n.as_u64().unwrap())
            .sum();
        let read = report["active_users"] == 4;
        if (counted == sent && read) || started.elapsed() > std::time::Duration::from_secs(10) {
            break report;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let per_kind = |kind: &str| -> u64 {
        report["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["messages"][kind].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!((per_kind("group"), per_kind("direct")), (5, 2), "{report}");
    assert_eq!(
        report["active_users"], 4,
        "alice, bob, dave posted; carol read: {report}"
    );
    assert_eq!(
        report["days"].as_array().unwrap().len(),
        2,
        "yesterday and today"
    );
    assert_eq!(
        report["top_conversations"],
        json!([
            {"conversation_id": group, "kind": "group", "messages": 5},
            {"conversation_id": direct, "kind": "direct", "messages": 2},
        ])
    );

    // The gauges, read from the same model (today only).
    let started = std::time::Instant::now();
    let gauges = loop {
        let gauges = (
            cf.metric("chatflow_active_users{window=\"1d\"}").await,
            cf.metric("chatflow_messages_today{kind=\"group\"}").await,
            cf.metric("chatflow_messages_today{kind=\"direct\"}").await,
        );
        if gauges == (Some(4.0), Some(5.0), Some(2.0))
            || started.elapsed() > std::time::Duration::from_secs(10)
        {
            break gauges;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(gauges, (Some(4.0), Some(5.0), Some(2.0)));
    assert_eq!(
        cf.metric("chatflow_active_users{window=\"30d\"}").await,
        Some(4.0)
    );

    let (s, b) = alice.get("/v1/admin/analytics").await;
    assert_eq!((s, code(&b)), (403, "forbidden"));
    let (s, b) = root
        .get("/v1/admin/analytics?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z")
        .await;
    assert_eq!((s, code(&b)), (400, "invalid_range"));
}
