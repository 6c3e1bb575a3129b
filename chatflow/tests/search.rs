#![allow(clippy::unwrap_used)]
//! Search through the whole pipeline: messages posted on the API are indexed
//! by the indexer stage and found with `GET /v1/search`, only by members;
//! edits, deletes and leaving change what is found.

mod common;

use std::time::{Duration, Instant};

use common::{Api, Chatflow, search_path};
use serde_json::{Value, json};

async fn post(api: &Api, cid: &str, id: &str, body: &str) -> i64 {
    let (status, ack) = api
        .post(
            &format!("/v1/conversations/{cid}/messages"),
            json!({"client_msg_id": id, "body": body}),
        )
        .await;
    assert_eq!(status, 201, "{ack}");
    ack["seq"].as_i64().unwrap()
}

/// The (conversation, seq) of each hit.
async fn hits(api: &Api, q: &str, extra: &str) -> Vec<(String, i64)> {
    let (status, body) = api.get(&search_path(q, extra)).await;
    assert_eq!(status, 200, "{q}: {body}");
    body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["conversation_id"].as_str().unwrap().to_owned(),
                h["seq"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Search is eventually consistent (the indexer is a stage of its own):
/// asks again until the answer is the expected one.
async fn eventually(api: &Api, q: &str, extra: &str, want: &[(String, i64)]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut got = hits(api, q, extra).await;
        got.sort();
        let mut want = want.to_vec();
        want.sort();
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{q}: got {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_find_messages_in_any_language_and_nobody_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start(&dir.path().join("data")).await;
    let (alice, bob, carol, dave) = (
        Api::new(&cf, &cf.token("alice").await),
        Api::new(&cf, &cf.token("bob").await),
        Api::new(&cf, &cf.token("carol").await),
        Api::new(&cf, &cf.token("dave").await),
    );
    let team = alice.create_group(&["bob", "carol"]).await;
    let private = alice.create_group(&["dave"]).await;
    let lunch = post(&alice, &team, "a1", "Let's grab lunch at the harbour").await;
    let tokyo = post(&bob, &team, "b1", "東京タワーで会いましょう").await;
    let cafe = post(&carol, &team, "c1", "Café in Zürich tomorrow?").await;
    let secret = post(&alice, &private, "a2", "secret lunch plans with dave").await;
    let t = |seq| (team.clone(), seq);

    // Members see their conversations' messages, and only those.
    eventually(&bob, "lunch ", "", &[t(lunch)]).await;
    eventually(&dave, "lunch ", "", &[(private.clone(), secret)]).await;
    eventually(&alice, "lunch ", "", &[t(lunch), (private.clone(), secret)]).await;
    let (status, body) = bob
        .get(&search_path(
            "lunch",
            &format!("&conversation_id={private}"),
        ))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    // Any language, accents folded, phrases, prefixes, filters, highlights.
    eventually(&carol, "東京タワー", "", &[t(tokyo)]).await;
    eventually(&carol, "zurich ", "", &[t(cafe)]).await;
    eventually(&carol, "harb", "", &[t(lunch)]).await;
    eventually(&carol, "\"grab lunch\"", "", &[t(lunch)]).await;
    eventually(&carol, "\"lunch grab\"", "", &[]).await;
    eventually(&alice, "lunch ", "&sender_id=bob", &[]).await;
    eventually(&alice, "tomorrow", "&sender_id=carol", &[t(cafe)]).await;
    eventually(
        &alice,
        "lunch ",
        "&from=2000-01-01T00:00:00Z&to=2001-01-01T00:00:00Z",
        &[],
    )
    .await;
    let only_team = format!("&conversation_id={team}");
    eventually(&alice, "lunch ", &only_team, &[t(lunch)]).await;
    let (_, body) = carol.get(&search_path("ZÜRICH", "")).await;
    let hit = &body["hits"][0];
    assert_eq!(hit["snippet"], "Café in <mark>Zürich</mark> tomorrow?");
    assert_eq!(hit["sender_id"], "carol");
    assert_eq!(hit["message_id"].as_str().map(str::len), Some(26), "a ULID");
    assert!(hit["sent_at"].as_str().unwrap().ends_with('Z'));

    // An edit replaces the text; a delete removes the message.
    let (status, body) = bob
        .call(
            "PATCH",
            &format!("/v1/conversations/{team}/messages/{lunch}"),
            Some(json!({"body": "x"})),
        )
        .await;
    assert_eq!(status, 403, "only the author edits: {body}");
    let (status, body) = alice
        .call(
            "PATCH",
            &format!("/v1/conversations/{team}/messages/{lunch}"),
            Some(json!({"body": "Let's grab dinner at the harbour"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(&bob, "dinner", "", &[t(lunch)]).await;
    eventually(&bob, "lunch ", "", &[]).await;
    let (status, body) = alice
        .call(
            "DELETE",
            &format!("/v1/conversations/{team}/messages/{cafe}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "an owner deletes anyone's message: {body}");
    eventually(&bob, "zurich", "", &[]).await;

    // Whoever leaves stops finding the conversation's messages.
    eventually(&carol, "harbour", "", &[t(lunch)]).await;
    let (status, body) = carol
        .call(
            "DELETE",
            &format!("/v1/conversations/{team}/members/carol"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(&carol, "harbour", "", &[]).await;
    eventually(&bob, "harbour", "", &[t(lunch)]).await;

    // Bad queries get the documented errors.
    for (path, code) in [
        ("/v1/search".to_owned(), "invalid_query"),
        (search_path("!!!", ""), "invalid_query"),
        (search_path("x", "&limit=0"), "invalid_limit"),
        (search_path("x", "&offset=5000"), "invalid_offset"),
        (search_path("x", "&from=yesterday"), "invalid_time"),
        (search_path(&"long ".repeat(100), ""), "invalid_query"),
    ] {
        let (status, body): (u16, Value) = bob.get(&path).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{path}"
        );
    }
}
