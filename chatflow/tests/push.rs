#![allow(clippy::unwrap_used)]
//! Push notifications against local stand-ins for FCM (OAuth2 token
//! endpoint and `messages:send`), APNs (HTTP/2, ES256 provider tokens) and
//! a webhook receiver, each checking the exact request and its auth: an
//! offline member gets one push, an online one none, the sender none, a
//! muted one none unless mentioned; a burst collapses into one push;
//! reading cancels a pending push; a dead token is removed and not tried
//! again; a 429 is retried after Retry-After; after kill -9 no message is
//! told twice.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::{Api, Chatflow, post as post_message};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use sha2::Sha256;

const WEBHOOK_SECRET: &str = "webhook-test-secret";
const PROJECT: &str = "test-project";
const ACCESS_TOKEN: &str = "fcm-access-1";
const APNS_KEY_ID: &str = "KEYID12345";
const APNS_TEAM: &str = "TEAM123456";
const APNS_TOPIC: &str = "app.chatflow.test";

/// One push as a stand-in received it (after its checks passed).
#[derive(Clone, Debug)]
struct Got {
    provider: &'static str,
    token: String,
    conversation: String,
    seq: i64,
    count: i64,
    urgent: bool,
}

#[derive(Clone, Default)]
struct Stand {
    got: Arc<Mutex<Vec<Got>>>,
    /// Requests refused on purpose (429 first, dead tokens).
    refused: Arc<Mutex<Vec<String>>>,
    token_uri: Arc<Mutex<String>>,
}

fn fail(what: String) -> Response {
    eprintln!("stand-in refused a request: {what}");
    (StatusCode::BAD_REQUEST, what).into_response()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn webhook(State(s): State<Stand>, h: HeaderMap, body: Bytes) -> Response {
    let ts = header(&h, "x-chatflow-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    if header(&h, "x-chatflow-signature") != expected {
        return fail("webhook: bad signature".into());
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    s.got.lock().unwrap().push(Got {
        provider: "webhook",
        token: v["token"].as_str().unwrap_or("").into(),
        conversation: v["conversation_id"].as_str().unwrap_or("").into(),
        seq: v["seq"].as_i64().unwrap_or(-1),
        count: v["count"].as_i64().unwrap_or(-1),
        urgent: v["urgent"] == true,
    });
    StatusCode::NO_CONTENT.into_response()
}

async fn fcm_token(State(s): State<Stand>, h: HeaderMap, body: String) -> Response {
    if header(&h, "content-type") != "application/x-www-form-urlencoded" {
        return fail("token: not a form".into());
    }
    let Some(assertion) = body.strip_prefix(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=",
    ) else {
        return fail(format!("token: grant {body}"));
    };
    let key = DecodingKey::from_rsa_pem(include_bytes!("../../ingest/tests/keys/rs256-test.pub"))
        .unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[s.token_uri.lock().unwrap().clone()]);
    let claims = match jsonwebtoken::decode::<Value>(assertion, &key, &v) {
        Ok(d) => d.claims,
        Err(e) => return fail(format!("token: assertion {e}")),
    };
    if claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging"
        || claims["iss"] != "chatflow@test-project.iam.gserviceaccount.com"
    {
        return fail(format!("token: claims {claims}"));
    }
    axum::Json(json!({"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}))
        .into_response()
}

async fn fcm_send(
    State(s): State<Stand>,
    Path(action): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    if action != "messages:send" || header(&h, "authorization") != format!("Bearer {ACCESS_TOKEN}")
    {
        return fail(format!("fcm: {action} {}", header(&h, "authorization")));
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    let m = &v["message"];
    let token = m["token"].as_str().unwrap_or("").to_owned();
    let cid = m["data"]["conversation_id"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let priority = m["android"]["priority"].as_str().unwrap_or("");
    if !["HIGH", "NORMAL"].contains(&priority)
        || m["android"]["collapse_key"] != cid.as_str()
        || m["notification"]["title"].as_str().is_none()
    {
        return fail(format!("fcm: message {v}"));
    }
    if token == "dead-android" {
        s.refused.lock().unwrap().push(token);
        return (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"status": "NOT_FOUND", "details": [{"errorCode": "UNREGISTERED"}]}}))).into_response();
    }
    if token == "busy-android" && !s.refused.lock().unwrap().contains(&token) {
        s.refused.lock().unwrap().push(token);
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
    }
    s.got.lock().unwrap().push(Got {
        provider: "fcm",
        token,
        conversation: cid,
        seq: m["data"]["seq"]
            .as_str()
            .and_then(|x| x.parse().ok())
            .unwrap_or(-1),
        count: m["data"]["count"]
            .as_str()
            .and_then(|x| x.parse().ok())
            .unwrap_or(-1),
        urgent: priority == "HIGH",
    });
    axum::Json(json!({"name": format!("projects/{PROJECT}/messages/1")})).into_response()
}

async fn apns(
    State(s): State<Stand>,
    Path(token): Path<String>,
    version: Version,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    if version != Version::HTTP_2 {
        return fail(format!("apns: {version:?}"));
    }
    let key = DecodingKey::from_ec_pem(include_bytes!("keys/apns-test.pub")).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    let jwt = header(&h, "authorization")
        .strip_prefix("bearer ")
        .or(header(&h, "authorization").strip_prefix("Bearer "));
    let ok = jwt.and_then(|t| {
        let head = jsonwebtoken::decode_header(t).ok()?;
        let data = jsonwebtoken::decode::<Value>(t, &key, &v).ok()?;
        (head.kid.as_deref() == Some(APNS_KEY_ID) && data.claims["iss"] == APNS_TEAM).then_some(())
    });
    let priority = header(&h, "apns-priority");
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let cid = payload["conversation_id"].as_str().unwrap_or("").to_owned();
    if ok.is_none()
        || header(&h, "apns-topic") != APNS_TOPIC
        || header(&h, "apns-push-type") != "alert"
        || !["5", "10"].contains(&priority)
        || header(&h, "apns-expiration").parse::<u64>().is_err()
        || header(&h, "apns-collapse-id") != cid
        || payload["aps"]["alert"]["title"].as_str().is_none()
    {
        return fail(format!("apns: headers {h:?} payload {payload}"));
    }
    if token == "dead-ios" {
        s.refused.lock().unwrap().push(token);
        return (
            StatusCode::GONE,
            axum::Json(json!({"reason": "Unregistered"})),
        )
            .into_response();
    }
    s.got.lock().unwrap().push(Got {
        provider: "apns",
        token,
        conversation: cid,
        seq: payload["seq"].as_i64().unwrap_or(-1),
        count: payload["count"].as_i64().unwrap_or(-1),
        urgent: priority == "10",
    });
    StatusCode::OK.into_response()
}

async fn stand_in(stand: Stand) -> SocketAddr {
    let app = Router::new()
        .route("/hook", post(webhook))
        .route("/token", post(fcm_token))
        .route("/v1/projects/test-project/{action}", post(fcm_send))
        .route("/3/device/{token}", post(apns))
        .with_state(stand);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn push_flags(dir: &std::path::Path, addr: SocketAddr, window: &str) -> Vec<String> {
    let secret = dir.join("webhook-secret");
    std::fs::write(&secret, WEBHOOK_SECRET).unwrap();
    let account = dir.join("fcm.json");
    let private_key =
        std::str::from_utf8(include_bytes!("../../ingest/tests/keys/rs256-test.key")).unwrap();
    let json = json!({
        "type": "service_account",
        "project_id": PROJECT,
        "client_email": "chatflow@test-project.iam.gserviceaccount.com",
        "private_key": private_key,
        "token_uri": format!("http://{addr}/token"),
    });
    std::fs::write(&account, json.to_string()).unwrap();
    let key = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/apns-test.p8");
    [
        "--push-window",
        window,
        "--push-webhook-url",
        &format!("http://{addr}/hook"),
        "--push-webhook-secret-file",
        secret.to_str().unwrap(),
        "--fcm-service-account",
        account.to_str().unwrap(),
        "--fcm-endpoint",
        &format!("http://{addr}"),
        "--apns-key",
        key.to_str().unwrap(),
        "--apns-key-id",
        APNS_KEY_ID,
        "--apns-team-id",
        APNS_TEAM,
        "--apns-topic",
        APNS_TOPIC,
        "--apns-endpoint",
        &format!("http://{addr}"),
        "--rate",
        "10000",
        "--rate-burst",
        "10000",
    ]
    .map(String::from)
    .to_vec()
}

async fn register(api: &Api, device: &str, platform: &str, token: &str) {
    let (status, body) = api
        .post(
            "/v1/devices",
            json!({"device_id": device, "platform": platform, "push_token": token}),
        )
        .await;
    assert!(status < 300, "{body}");
}

/// Waits until `check` holds for what arrived.
async fn until(stand: &Stand, what: &str, check: impl Fn(&[Got]) -> bool) {
    let started = Instant::now();
    loop {
        if check(&stand.got.lock().unwrap()) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}; got {:#?}",
            stand.got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn to(got: &[Got], token: &str) -> Vec<Got> {
    got.iter().filter(|g| g.token == token).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_reach_offline_members_once_as_users_expect() {
    let stand = Stand::default();
    let addr = stand_in(stand.clone()).await;
    *stand.token_uri.lock().unwrap() = format!("http://{addr}/token");
    let dir = tempfile::tempdir().unwrap();
    let flags = push_flags(dir.path(), addr, "400ms");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut cf = Chatflow::start_with(&dir.path().join("data"), &flags).await;
    let mut apis = BTreeMap::new();
    for user in ["ann", "bob", "cy", "dan", "eve", "fay"] {
        apis.insert(user, Api::new(&cf, &cf.token(user).await));
    }
    register(&apis["ann"], "ann-phone", "android", "ann-android").await;
    register(&apis["bob"], "bob-phone", "android", "bob-android").await;
    register(&apis["bob"], "bob-laptop", "desktop", "bob-desktop").await;
    register(&apis["cy"], "cy-phone", "ios", "cy-ios").await;
    register(&apis["dan"], "dan-phone", "ios", "dan-ios").await;
    register(&apis["eve"], "eve-phone", "ios", "dead-ios").await;
    register(&apis["fay"], "fay-phone", "android", "busy-android").await;
    let group = apis["ann"]
        .create_group(&["bob", "cy", "dan", "eve", "fay"])
        .await;
    let (status, _) = apis["cy"]
        .call(
            "PUT",
            &format!("/v1/conversations/{group}/mute"),
            Some(json!({"muted": true})),
        )
        .await;
    assert!(status < 300);
    let _dan_online = common::online(&cf, &apis["dan"].token, "dan-phone").await;

    // One message: bob (both devices) and fay (after a 429) get a push;
    // eve's dead token is refused once; cy muted, dan online, ann sent it.
    let first = post_message(&apis["ann"], &group, "m1", json!({"body": "hello"})).await;
    until(&stand, "bob's and fay's pushes", |g| {
        to(g, "bob-android").len() == 1
            && to(g, "bob-desktop").len() == 1
            && to(g, "busy-android").len() == 1
    })
    .await;
    {
        let got = stand.got.lock().unwrap().clone();
        for token in ["cy-ios", "dan-ios", "ann-android", "dead-ios"] {
            assert!(to(&got, token).is_empty(), "{token} got a push: {got:#?}");
        }
        // Each platform through its provider.
        assert_eq!(to(&got, "bob-android")[0].provider, "fcm");
        assert_eq!(to(&got, "bob-desktop")[0].provider, "webhook");
        let bob = &to(&got, "bob-android")[0];
        assert_eq!(
            (bob.conversation.as_str(), bob.seq, bob.count, bob.urgent),
            (group.as_str(), first, 1, false)
        );
        assert_eq!(
            stand
                .refused
                .lock()
                .unwrap()
                .iter()
                .filter(|t| *t == "busy-android")
                .count(),
            1
        );
    }
    // The dead token is gone from eve's device, and is not tried again.
    let started = Instant::now();
    while stand
        .refused
        .lock()
        .unwrap()
        .iter()
        .filter(|t| *t == "dead-ios")
        .count()
        != 1
    {
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A burst of 20: one push to bob's phone telling of 20.
    let mut last = 0;
    for i in 0..20 {
        last = post_message(
            &apis["ann"],
            &group,
            &format!("burst-{i}"),
            json!({"body": format!("b{i}")}),
        )
        .await;
    }
    until(&stand, "the burst's push", |g| {
        to(g, "bob-android").len() == 2
    })
    .await;
    let burst = to(&stand.got.lock().unwrap(), "bob-android")[1].clone();
    assert_eq!((burst.seq, burst.count), (last, 20));
    assert!(to(&stand.got.lock().unwrap(), "dead-ios").is_empty());

    // A mention reaches muted cy, urgently; a direct message is urgent.
    let mention = post_message(
        &apis["ann"],
        &group,
        "to-cy",
        json!({"body": "@cy look", "mentions": ["cy"]}),
    )
    .await;
    until(&stand, "cy's mention", |g| to(g, "cy-ios").len() == 1).await;
    let cy = to(&stand.got.lock().unwrap(), "cy-ios")[0].clone();
    assert_eq!((cy.provider, cy.seq, cy.urgent), ("apns", mention, true));
    let (status, direct) = apis["ann"]
        .post(
            "/v1/conversations",
            json!({"kind": "direct", "members": ["bob"]}),
        )
        .await;
    assert_eq!(status, 201);
    let direct = direct["conversation_id"].as_str().unwrap().to_owned();
    post_message(&apis["ann"], &direct, "dm", json!({"body": "psst"})).await;
    until(&stand, "the direct message's push", |g| {
        g.iter()
            .any(|p| p.token == "bob-android" && p.conversation == direct)
    })
    .await;
    assert!(
        stand
            .got
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.conversation == direct && p.urgent)
    );

    // Read at once: the pending push is cancelled.
    let before = to(&stand.got.lock().unwrap(), "bob-android").len();
    let seq = post_message(
        &apis["ann"],
        &group,
        "read-me",
        json!({"body": "read soon"}),
    )
    .await;
    let (status, _) = apis["bob"]
        .post(
            &format!("/v1/conversations/{group}/read"),
            json!({"seq": seq}),
        )
        .await;
    assert!(status < 300);
    // A later message to fay shows the window of `read-me` has passed.
    let marker = post_message(&apis["ann"], &group, "marker", json!({"body": "after"})).await;
    until(&stand, "fay's push for the marker", |g| {
        to(g, "busy-android").iter().any(|p| p.seq == marker)
    })
    .await;
    let bob_after: Vec<i64> = to(&stand.got.lock().unwrap(), "bob-android")
        .iter()
        .map(|p| p.seq)
        .collect();
    assert!(
        !bob_after.contains(&seq),
        "a read message was pushed: {bob_after:?}"
    );
    assert!(bob_after.len() <= before + 1, "{bob_after:?}");

    // kill -9 while messages are in flight: no message is told twice.
    let sending = {
        let (token, http, group) = (apis["ann"].token.clone(), cf.http, group.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..30 {
                let sent = client
                    .post(format!("http://{http}/v1/conversations/{group}/messages"))
                    .bearer_auth(&token)
                    .json(&json!({"client_msg_id": format!("k{i}"), "body": format!("k{i}")}))
                    .send()
                    .await;
                if sent.is_err() {
                    return; // killed
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    cf.kill();
    let _ = sending.await;
    cf.start_again().await;
    let end = post_message(
        &Api::new(&cf, &apis["ann"].token),
        &group,
        "end",
        json!({"body": "end"}),
    )
    .await;
    until(&stand, "the push after the restart", |g| {
        to(g, "busy-android").iter().any(|p| p.seq == end)
    })
    .await;
    let posted = Api::new(&cf, &apis["ann"].token)
        .all_messages(&group)
        .await
        .len() as i64;
    for token in ["bob-android", "bob-desktop", "busy-android"] {
        let mut told: Vec<Got> = to(&stand.got.lock().unwrap(), token)
            .into_iter()
            .filter(|p| p.conversation == group)
            .collect();
        told.sort_by_key(|p| p.seq);
        for pair in told.windows(2) {
            assert!(
                pair[0].seq < pair[1].seq,
                "{token}: a window pushed twice: {told:#?}"
            );
        }
        let messages_told: i64 = told.iter().map(|p| p.count).sum();
        assert!(
            messages_told <= posted,
            "{token}: {messages_told} told of {posted} messages: {told:#?}"
        );
    }
}
