#![allow(clippy::unwrap_used)]
//! Bad input gets the documented error, never a panic or a hung socket.

mod common;

use common::{Api, Chatflow, Ws};
use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error shape>")
}

fn sign(secret: &[u8], sub: &str, exp_offset: i64) -> String {
    common::signed_token(secret, sub, exp_offset, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_frames_get_the_documented_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cf = Chatflow::start(&data).await;
    let secret = std::fs::read(data.join("dev-secret")).unwrap();
    let alice = cf.token("alice").await;
    let a = Api::new(&cf, &alice);
    let cid = a.create_group(&["bob"]).await;
    let messages = format!("/v1/conversations/{cid}/messages");
    let http = reqwest::Client::new();

    // Tokens: missing, forged, expired, garbage.
    let r = http.get(cf.url(&messages)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(&r.json().await.unwrap()), "unauthorized");
    for (token, why) in [
        (sign(b"not-the-secret", "alice", 3600), "forged"),
        (sign(&secret, "alice", -3600), "expired"),
        ("not.a.jwt".to_owned(), "garbage"),
    ] {
        let (status, body) = Api::new(&cf, &token).get(&messages).await;
        assert_eq!(
            (status, error_code(&body)),
            (401, "unauthorized"),
            "{why}: {body}"
        );
    }
    let (_, body) = Api::new(&cf, &sign(&secret, "alice", -3600))
        .get(&messages)
        .await;
    assert_eq!(body["error"]["message"], "token expired");

    // Malformed JSON, missing fields, oversize bodies, bad limits.
    let r = http
        .post(cf.url(&messages))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{\"client_msg_id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.json().await.unwrap()), "invalid_json");
    let (status, body) = a.post(&messages, json!({"body": "no id"})).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_body"));
    let (status, body) = a
        .post(
            &messages,
            json!({"client_msg_id": "big", "body": "x".repeat(17 * 1024)}),
        )
        .await;
    assert_eq!((status, error_code(&body)), (413, "too_large"));
    let (status, body) = a
        .post(&messages, json!({"client_msg_id": "bad id!", "body": "x"}))
        .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_id"));
    let (status, body) = a.get(&format!("{messages}?limit=5000")).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_limit"));
    let (status, body) = a.get(&format!("{messages}?before=abc")).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_query"));
    let (status, body) = a
        .post(
            "/v1/conversations",
            json!({"kind": "channel", "members": []}),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_kind"));
    let (status, body) = a.get("/v1/nothing-here").await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));

    // Membership: a non-member can neither read nor send; unknown ids are 404.
    let eve = cf.token("eve").await;
    let e = Api::new(&cf, &eve);
    let (status, body) = e.get(&messages).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, body) = e
        .post(
            &messages,
            json!({"client_msg_id": "e1", "body": "let me in"}),
        )
        .await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, body) = e.get(&format!("/v1/conversations/{cid}")).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, body) = a.get("/v1/conversations/g:nope/messages").await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));

    // The socket upgrade needs a valid token and a device id.
    let url = format!("ws://{}/v1/ws?device_id=d", cf.http);
    assert!(
        tokio_tungstenite::connect_async(url).await.is_err(),
        "no token, no socket"
    );
    let url = format!("ws://{}/v1/ws?token={alice}", cf.http);
    assert!(
        tokio_tungstenite::connect_async(url).await.is_err(),
        "no device, no socket"
    );

    // Frames: each bad one gets an error frame and the socket stays usable.
    let mut ws = Ws::connect(&cf, &alice, "a-1").await;
    ws.send_raw("{not json".into()).await;
    assert_eq!(ws.until("error").await.0["code"], "invalid_json");
    ws.send(json!({"type": "teleport"})).await;
    assert_eq!(ws.until("error").await.0["code"], "unknown_type");
    ws.send(json!({"type": "send", "conversation_id": cid}))
        .await;
    assert_eq!(ws.until("error").await.0["code"], "invalid_frame");
    ws.send(json!({"type": "send", "conversation_id": cid, "client_msg_id": "big", "body": "x".repeat(70 * 1024)}))
        .await;
    assert_eq!(ws.until("error").await.0["code"], "too_large");
    ws.send(json!({"type": "ping"})).await;
    ws.until("pong").await;

    let mut ew = Ws::connect(&cf, &eve, "e-1").await;
    ew.send(
        json!({"type": "send", "conversation_id": cid, "client_msg_id": "sneak", "body": "hi"}),
    )
    .await;
    let (err, _) = ew.until("error").await;
    assert_eq!(
        (err["code"].as_str(), err["ref"].as_str()),
        (Some("forbidden"), Some("sneak"))
    );
    ew.send(json!({"type": "resume", "cursors": {cid.clone(): -1}}))
        .await;
    let (resumed, before) = ew.until("resumed").await;
    assert_eq!(resumed["events"], 0);
    assert!(
        before
            .iter()
            .all(|f| f["type"] == "error" && f["code"] == "forbidden"),
        "{before:?}"
    );

    // Garbage, again and again: disconnected with 1008.
    let mut bad = Ws::connect(&cf, &alice, "a-2").await;
    for _ in 0..5 {
        bad.send_raw("garbage".into()).await;
    }
    assert_eq!(bad.closed_with().await, Some(1008));
    // A well-formed frame that is refused ends a run of malformed ones.
    let mut mixed = Ws::connect(&cf, &eve, "e-2").await;
    for round in 0..3 {
        for _ in 0..4 {
            mixed.send_raw("garbage".into()).await;
            assert_eq!(
                mixed.until("error").await.0["code"],
                "invalid_json",
                "round {round}"
            );
        }
        mixed
            .send(json!({"type": "send", "conversation_id": cid, "client_msg_id": format!("no-{round}"), "body": "hi"}))
            .await;
        assert_ne!(mixed.until("error").await.0["code"], "invalid_json");
    }
    mixed.send(json!({"type": "ping"})).await;
    mixed.until("pong").await;

    // RFC 6455 close codes: 1009 for a message over the hard limit, 1007
    // for a text frame that is not UTF-8.
    // Only the header of a 2 MiB text frame: the length alone is refused,
    // and with nothing left unread the close is not lost to a reset (a
    // client still writing the body would race it).
    let mut huge = Ws::connect(&cf, &alice, "a-3").await;
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(2u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tokio::io::AsyncWriteExt::write_all(huge.stream.get_mut(), &header)
        .await
        .unwrap();
    assert_eq!(huge.closed_with().await, Some(1009));
    let mut latin1 = Ws::connect(&cf, &alice, "a-4").await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    latin1.stream.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(latin1.closed_with().await, Some(1007));

    // Not a WebSocket handshake: the error JSON, not axum's plain text.
    let ws_url = format!("{}?device_id=d&token={alice}", cf.url("/v1/ws"));
    let handshakes = [
        (vec![], 400),
        (
            vec![
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
            ],
            400,
        ),
        (
            vec![
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "8"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            400,
        ),
    ];
    for (headers, status) in handshakes {
        let mut req = http.get(&ws_url);
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let got = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (got, error_code(&body)),
            (status, "invalid_upgrade"),
            "{headers:?}: {body}"
        );
    }
    // A method /metrics does not take: the error JSON as on every path.
    for method in ["PUT", "DELETE", "TRACE"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = http
            .request(method.clone(), cf.url("/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 405, "{method}");
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(error_code(&body), "method_not_allowed", "{method}: {body}");
    }

    // Nothing broke: the server answers and alice can still send.
    assert_eq!(
        http.get(cf.url("/healthz")).send().await.unwrap().status(),
        200
    );
    let (status, _) = a
        .post(
            &messages,
            json!({"client_msg_id": "still-ok", "body": "fine"}),
        )
        .await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_and_idle_sockets_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start_with(
        &dir.path().join("data"),
        &[
            "--rate",
            "0.5",
            "--rate-burst",
            "2",
            "--idle-timeout-secs",
            "2",
        ],
    )
    .await;
    let alice = cf.token("alice").await;
    let a = Api::new(&cf, &alice);
    let cid = a.create_group(&["bob"]).await; // takes one token
    let messages = format!("/v1/conversations/{cid}/messages");
    let (status, _) = a
        .post(&messages, json!({"client_msg_id": "r1", "body": "one"}))
        .await;
    assert_eq!(status, 201);
    let r = reqwest::Client::new()
        .post(cf.url(&messages))
        .bearer_auth(&alice)
        .json(&json!({"client_msg_id": "r2", "body": "two"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(error_code(&r.json().await.unwrap()), "rate_limited");

    let mut ws = Ws::connect(&cf, &alice, "a-1").await;
    ws.send(
        json!({"type": "send", "conversation_id": cid, "client_msg_id": "r3", "body": "three"}),
    )
    .await;
    let (err, _) = ws.until("error").await;
    assert_eq!(
        (err["code"].as_str(), err["ref"].as_str()),
        (Some("rate_limited"), Some("r3"))
    );
    // Then silence: the server closes the idle socket.
    assert_eq!(ws.closed_with().await, Some(1000));
}
