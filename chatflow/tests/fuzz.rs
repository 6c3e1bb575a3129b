#![allow(clippy::unwrap_used)]
//! Property-based fuzzing of what clients send, against the real embedded
//! process: WebSocket frames, bearer tokens, REST query strings and bodies.
//! Inputs come from proptest strategies shaped like the protocol (known
//! frame types and field names with values of every JSON kind, unicode,
//! deep nesting, numbers at the edges) and from raw text. For each input:
//! an answer comes, every error is the documented shape with a 4xx meaning,
//! nothing is a 5xx, no socket is closed; at the end every acknowledged
//! message is in history once at its acknowledged seq.
//!
//! `FUZZ_CASES` sets the inputs per surface (default 200); `FUZZ_SEED` a
//! seed (default fixed, so a failure is reproducible). `scripts/chaos`
//! runs a long form.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Api, Chatflow, draw};
use futures::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;

const FRAME_TYPES: [&str; 8] = [
    "send",
    "typing",
    "read",
    "delivered",
    "resume",
    "ping",
    "SEND",
    "",
];
const FIELDS: [&str; 10] = [
    "conversation_id",
    "client_msg_id",
    "body",
    "reply_to",
    "mentions",
    "silent",
    "cursors",
    "seq",
    "type",
    "data",
];

fn cases() -> usize {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(200)
}

fn runner() -> TestRunner {
    common::seeded_runner("FUZZ_SEED", 0x00c0_ffee)
}

/// Strings a client might send: empty, unicode of every plane, control
/// characters, numbers as text, long runs.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,24}",
        2 => any::<String>(),
        1 => Just(String::new()),
        1 => "[0-9-]{1,20}",
        1 => (1usize..9_000).prop_map(|n| "é".repeat(n)),
    ]
}

/// An input as shown in a failure message: its start and its length.
fn shown(input: &str) -> String {
    let start: String = input.chars().take(200).collect();
    format!("{start:?}… ({} bytes)", input.len())
}

/// Ids as the protocol takes them, and now and then text that is not one.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._@:+-]{1,40}",
        1 => text(),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        (-3i64..1000).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ]
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Changes to a valid input: drop a field, give one an arbitrary value, or
/// add one the protocol does not know.
#[derive(Debug, Clone)]
enum Mutation {
    Drop(prop::sample::Index),
    Replace(prop::sample::Index, Value),
    Add(String, Value),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Drop),
        (any::<prop::sample::Index>(), json_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        (text(), json_value()).prop_map(|(k, v)| Mutation::Add(k, v)),
    ];
    // Half of the inputs stay valid.
    prop_oneof![
        1 => Just(Vec::new()),
        1 => prop::collection::vec(one, 1..3),
    ]
}

fn mutate(mut object: Map<String, Value>, changes: Vec<Mutation>) -> String {
    for change in changes {
        let keys: Vec<String> = object.keys().cloned().collect();
        match change {
            Mutation::Drop(i) if !keys.is_empty() => {
                object.remove(&keys[i.index(keys.len())]);
            }
            Mutation::Replace(i, v) if !keys.is_empty() => {
                object.insert(keys[i.index(keys.len())].clone(), v);
            }
            Mutation::Add(k, v) => {
                object.insert(k, v);
            }
            _ => {}
        }
    }
    Value::Object(object).to_string()
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A valid frame of each kind the protocol knows, then mutated.
fn near_valid_frame(cid: String) -> impl Strategy<Value = String> {
    let seq = prop_oneof![(-1i64..50).prop_map(Value::from), number()];
    let c = cid.clone();
    let send = (id(), text(), prop::option::of(seq.clone()), any::<bool>()).prop_map(
        move |(id, body, reply_to, silent)| {
            let mut f = json!({"type": "send", "conversation_id": c, "client_msg_id": id,
                "body": body, "silent": silent, "mentions": ["bob"]});
            if let Some(r) = reply_to {
                f["reply_to"] = r;
            }
            f
        },
    );
    let (c1, c2, c3) = (cid.clone(), cid.clone(), cid);
    let others = prop_oneof![
        Just(json!({"type": "typing", "conversation_id": c1})),
        (
            prop::sample::select(&["read", "delivered"][..]),
            seq.clone()
        )
            .prop_map(move |(kind, seq)| json!({"type": kind, "conversation_id": c2, "seq": seq})),
        seq.prop_map(move |seq| json!({"type": "resume", "cursors": {c3.clone(): seq}})),
        Just(json!({"type": "ping"})),
    ];
    (prop_oneof![2 => send, 1 => others], mutations()).prop_map(|(f, m)| mutate(object(f), m))
}

/// A frame shaped like the protocol's: a known (or nearly known) type and
/// some of the protocol's fields, each with a plausible or an arbitrary
/// value. `cid` is a conversation the sender belongs to.
fn frame(cid: String) -> impl Strategy<Value = String> {
    let cid_again = cid.clone();
    let plausible = move |field: &str| -> BoxedStrategy<Value> {
        let cid = cid.clone();
        match field {
            "conversation_id" => prop_oneof![
                3 => Just(Value::String(cid)),
                1 => json_value(),
            ]
            .boxed(),
            "client_msg_id" | "body" => prop_oneof![
                3 => text().prop_map(Value::String),
                1 => json_value(),
            ]
            .boxed(),
            "seq" | "reply_to" => prop_oneof![number(), json_value()].boxed(),
            "cursors" => prop_oneof![
                prop::collection::btree_map(prop_oneof![Just(cid.clone()), text()], number(), 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                json_value(),
            ]
            .boxed(),
            _ => json_value().boxed(),
        }
    };
    let shaped = (
        prop::sample::select(&FRAME_TYPES[..]),
        prop::sample::subsequence(&FIELDS[..], 0..=FIELDS.len()),
    )
        .prop_flat_map(move |(kind, fields)| {
            let values: Vec<BoxedStrategy<Value>> = fields.iter().map(|f| plausible(f)).collect();
            (Just(kind), Just(fields), values)
        })
        .prop_map(|(kind, fields, values)| {
            let mut m = Map::new();
            m.insert("type".into(), Value::String(kind.into()));
            for (f, v) in fields.into_iter().zip(values) {
                m.insert(f.into(), v);
            }
            Value::Object(m).to_string()
        });
    prop_oneof![
        10 => near_valid_frame(cid_again),
        3 => shaped,
        1 => json_value().prop_map(|v| v.to_string()),
        1 => (1usize..3000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
        1 => (1usize..3000).prop_map(|depth| format!(r#"{{"type":"send","body":{}"#, r#"{"a":"#.repeat(depth))),
        1 => any::<String>(),
    ]
}

fn check_error_frame(f: &Value, input: &str) {
    let code = f["code"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "error frame without a snake_case code for {input}: {f}"
    );
    assert!(
        f["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error frame without a message for {input}: {f}"
    );
    assert_ne!(code, "unavailable", "a 5xx meaning for {input}: {f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_frames_tokens_and_requests_get_documented_answers_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start_unlimited(&dir.path().join("data")).await;
    let alice = cf.token("alice").await;
    let a = Api::new(&cf, &alice);
    let cid = a.create_group(&["bob"]).await;
    let n = cases();
    let mut runner = runner();

    // WebSocket frames: after each one, a ping; everything up to the pong
    // is a well-formed frame and the socket stays open.
    let url = format!("ws://{}/v1/ws?device_id=fuzz&token={alice}", cf.http);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let frames = frame(cid.clone());
    let mut acked: HashMap<String, i64> = HashMap::new();
    let mut errors: HashMap<String, usize> = HashMap::new();
    let mut answered = 0usize;
    for _ in 0..n {
        let frame = draw(&mut runner, &frames);
        let input = shown(&frame);
        ws.send(Message::Text(frame.into())).await.unwrap();
        let ping = json!({"type": "ping"}).to_string();
        ws.send(Message::Text(ping.into())).await.unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer within 10 s to {input}"));
            let text = match m {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("the socket ended after {input}: {other:?}"),
            };
            let f: Value = serde_json::from_str(&text).unwrap();
            match f["type"].as_str() {
                Some("pong") => break,
                Some("error") => {
                    check_error_frame(&f, &input);
                    *errors
                        .entry(f["code"].as_str().unwrap().to_owned())
                        .or_default() += 1;
                }
                Some("ack") => {
                    let id = f["client_msg_id"].as_str().unwrap().to_owned();
                    let seq = f["seq"].as_i64().unwrap();
                    if let Some(was) = acked.insert(id.clone(), seq) {
                        assert_eq!(was, seq, "{id} acknowledged at two seqs");
                    }
                    answered += 1;
                }
                Some(_) => answered += 1,
                None => panic!("a frame without a type after {input}: {f}"),
            }
        }
    }

    // Bearer tokens: anything but a token we signed is 401 with the error
    // shape, on REST and on the WebSocket upgrade.
    let http = reqwest::Client::new();
    // alice's token with its signature changed.
    let (signed, tail) = alice.split_at(alice.len() - 6);
    let forged = signed.to_owned() + if tail == "AAAAAA" { "BBBBBB" } else { "AAAAAA" };
    let tokens = prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,40}",
        "eyJhbGciOiJub25lIn0\\.[A-Za-z0-9_-]{0,60}\\.",
        Just(forged),
    ];
    for _ in 0..n {
        let token = draw(&mut runner, &tokens);
        let Ok(header) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) else {
            continue;
        };
        let r = http
            .get(cf.url("/v1/conversations"))
            .header(reqwest::header::AUTHORIZATION, header)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (status, common::code(&body)),
            (401, "unauthorized"),
            "token {}: {body}",
            shown(&token)
        );
    }

    // REST: query strings and bodies on the conversation's own routes.
    let queries = prop::collection::vec(("\\PC{0,16}", "\\PC{0,64}"), 0..4);
    let arbitrary = prop_oneof![
        3 => json_value().prop_map(|v| v.to_string()),
        1 => any::<String>(),
    ];
    let seq = prop_oneof![(-1i64..50).prop_map(Value::from), number()];
    // A valid body for each route, then mutated; or anything at all.
    let bodies: [BoxedStrategy<String>; 9] = [
        Just(String::new()).boxed(),
        Just(String::new()).boxed(),
        Just(String::new()).boxed(),
        (id(), text(), prop::option::of(seq.clone()), mutations())
            .prop_map(|(id, body, reply_to, m)| {
                let mut b = json!({"client_msg_id": id, "body": body, "mentions": ["bob"]});
                if let Some(r) = reply_to {
                    b["reply_to"] = r;
                }
                mutate(object(b), m)
            })
            .boxed(),
        (seq.clone(), mutations())
            .prop_map(|(seq, m)| mutate(object(json!({ "seq": seq })), m))
            .boxed(),
        (text(), text(), mutations())
            .prop_map(|(name, d, m)| mutate(object(json!({"name": name, "description": d})), m))
            .boxed(),
        (text(), mutations())
            .prop_map(|(body, m)| mutate(object(json!({ "body": body })), m))
            .boxed(),
        (
            id(),
            prop::sample::select(&["ios", "android", "web", "desktop", "fax"][..]),
            text(),
            mutations(),
        )
            .prop_map(|(id, platform, token, m)| {
                mutate(
                    object(json!({"device_id": id, "platform": platform, "push_token": token})),
                    m,
                )
            })
            .boxed(),
        (
            prop::sample::select(&["group", "direct", "channel"][..]),
            text(),
            prop::collection::vec(prop_oneof![Just("bob".to_owned()), text()], 0..4),
            mutations(),
        )
            .prop_map(|(kind, name, members, m)| {
                mutate(
                    object(json!({"kind": kind, "name": name, "members": members})),
                    m,
                )
            })
            .boxed(),
    ];
    let routes = [
        ("GET", format!("/v1/conversations/{cid}/messages")),
        ("GET", "/v1/search".to_owned()),
        ("GET", format!("/v1/conversations/{cid}")),
        ("POST", format!("/v1/conversations/{cid}/messages")),
        ("POST", format!("/v1/conversations/{cid}/read")),
        ("PATCH", format!("/v1/conversations/{cid}")),
        ("PATCH", format!("/v1/conversations/{cid}/messages/0")),
        ("POST", "/v1/devices".to_owned()),
        ("POST", "/v1/conversations".to_owned()),
    ];
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for i in 0..n {
        let (method, path) = &routes[i % routes.len()];
        let query: Vec<(String, String)> = draw(&mut runner, &queries);
        let body = if i % 4 == 3 {
            draw(&mut runner, &arbitrary)
        } else {
            draw(&mut runner, &bodies[i % routes.len()])
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut url = reqwest::Url::parse(&cf.url(path)).unwrap();
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(&query);
        }
        let mut request = http.request(method.clone(), url).bearer_auth(&alice);
        if method != reqwest::Method::GET {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let raw = r.bytes().await.unwrap();
        *statuses.entry(status).or_default() += 1;
        let input = shown(&format!("{method} {path} {query:?} {body:?}"));
        assert!(
            status < 500,
            "{status} for {input}: {}",
            shown(&String::from_utf8_lossy(&raw))
        );
        if status >= 400 {
            let v: Value = serde_json::from_slice(&raw).unwrap_or_else(|_| {
                panic!(
                    "{status} without JSON for {input}: {}",
                    shown(&String::from_utf8_lossy(&raw))
                )
            });
            let code = v["error"]["code"].as_str().unwrap_or_default();
            assert!(!code.is_empty(), "{status} without a code for {input}: {v}");
        } else if status == 201
            && path.ends_with("/messages")
            && let Ok(v) = serde_json::from_slice::<Value>(&raw)
        {
            let id = v["client_msg_id"].as_str().unwrap().to_owned();
            acked.insert(id, v["seq"].as_i64().unwrap());
        }
    }

    // Nothing acknowledged is lost or doubled, and the server still works.
    let history = a.all_messages(&cid).await;
    for (id, seq) in &acked {
        let found: Vec<i64> = history
            .iter()
            .filter(|m| m["client_msg_id"] == *id.as_str())
            .map(|m| m["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(found, vec![*seq], "acknowledged {id:?}");
    }
    let (status, _) = a
        .post(
            &format!("/v1/conversations/{cid}/messages"),
            json!({"client_msg_id": "after-the-fuzz", "body": "still fine"}),
        )
        .await;
    assert_eq!(status, 201);
    println!(
        "fuzz: {n} frames (error answers {errors:?}, {answered} other answers, {} acked), {n} tokens (all 401), {n} requests {statuses:?}; 0 closes, 0 5xx",
        acked.len()
    );
}
