#![allow(clippy::unwrap_used)]
//! The built-in registry answers as Confluent's does, for the reads clients make.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use schemas::SchemaId;
use serde_json::Value;
use tower::ServiceExt;

async fn get(path: &str) -> (StatusCode, Value) {
    let response = schemas::registry::router()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn serves_every_compiled_in_schema_by_id() {
    for version in schemas::VERSIONS {
        let (status, body) = get(&format!("/schemas/ids/{}", version.id)).await;
        assert_eq!(status, StatusCode::OK);
        let schema: Value = serde_json::from_str(body["schema"].as_str().unwrap()).unwrap();
        let file: Value = serde_json::from_str(version.text).unwrap();
        assert_eq!(schema, file);
        // And it parses as Avro.
        apache_avro::Schema::parse_str(body["schema"].as_str().unwrap()).unwrap();
    }
    assert_eq!(SchemaId::ChatEvent.id(), 6);
    let (status, body) = get("/schemas/ids/99").await;
    assert_eq!(
        (status, body["error_code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(40403))
    );
    let (status, _) = get("/schemas/ids/not-a-number").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn serves_subjects_under_the_topic_name_strategy() {
    let (_, subjects) = get("/subjects").await;
    assert!(
        subjects
            .as_array()
            .unwrap()
            .contains(&Value::from("chat.events-value"))
    );
    let (status, v) = get("/subjects/chat.events-value/versions/latest").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (v["id"].as_u64(), v["version"].as_u64()),
        (Some(6), Some(3))
    );
    // Every earlier version stays readable, by version and by id.
    let (_, v) = get("/subjects/chat.events-value/versions").await;
    assert_eq!(v, serde_json::json!([1, 2, 3]));
    let (_, v) = get("/subjects/chat.events-value/versions/1").await;
    assert_eq!(v["id"].as_u64(), Some(1));
    let (status, v) = get("/schemas/ids/1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!v["schema"].as_str().unwrap().contains("MessagePinned"));
    let (_, v) = get("/subjects/chat.inbox.node-7-value/versions/1").await;
    assert_eq!(v["id"].as_u64(), Some(u64::from(SchemaId::Delivery.id())));
    let (status, v) = get("/subjects/chat.events-value/versions/4").await;
    assert_eq!(
        (status, v["error_code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(40402))
    );
    let (status, v) = get("/subjects/nope-value/versions").await;
    assert_eq!(
        (status, v["error_code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(40401))
    );
    let (_, v) = get("/config").await;
    assert_eq!(v["compatibilityLevel"], "BACKWARD_TRANSITIVE");
}

#[cfg(feature = "registry-client")]
#[tokio::test]
async fn a_registry_client_resolves_ids_over_http_and_the_codec_frames_with_them() {
    use schemas::{Actor, ChatEvent, Codec, Payload, ReadUpTo, RegistryIds};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, schemas::registry::router()).await });
    let ids = schemas::registry_client::resolve(&format!("http://{addr}"))
        .await
        .unwrap();
    assert_eq!(
        ids,
        RegistryIds::compiled(),
        "the built-in registry serves the compiled-in ids"
    );

    // A registry that numbered the schemas otherwise: records carry its ids,
    // and records framed with the compiled-in ids still decode.
    let theirs = RegistryIds::compiled().with(SchemaId::ChatEvent, 1042);
    let codec = Codec::with_ids(theirs);
    let event = ChatEvent {
        event_id: "e".into(),
        conversation_id: "c".into(),
        occurred_at: 1,
        actor: Actor {
            user_id: "u".into(),
            device_id: "d".into(),
        },
        payload: Payload::ReadUpTo(ReadUpTo { seq: 3 }),
    };
    let bytes = codec.encode(&event).unwrap();
    assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), 1042);
    assert_eq!(codec.decode::<ChatEvent>(&bytes).unwrap(), event);
    let old = Codec::with_ids(RegistryIds::compiled())
        .encode(&event)
        .unwrap();
    assert_eq!(codec.decode::<ChatEvent>(&old).unwrap(), event);
    assert!(
        Codec::with_ids(RegistryIds::compiled())
            .decode::<ChatEvent>(&bytes)
            .is_err(),
        "an unknown id is an error"
    );

    // A schema that is not chatflow's is refused by the read-only registry.
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/subjects/chat.events-value/versions"))
        .json(&serde_json::json!({"schema": "{\"type\":\"string\"}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

async fn post(path: &str, schema: &Value) -> (StatusCode, Value) {
    let body = serde_json::json!({"schema": schema.to_string()}).to_string();
    let response = schemas::registry::router()
        .oneshot(
            Request::post(path)
                .header("content-type", "application/vnd.schemaregistry.v1+json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// The current ChatEvent schema, changed by `edit`.
fn chat_event_v2_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut schema: Value = serde_json::from_str(SchemaId::ChatEvent.text()).unwrap();
    edit(&mut schema);
    schema
}

fn payload_branches(schema: &mut Value) -> &mut Vec<Value> {
    schema["fields"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "payload")
        .unwrap()["type"]
        .as_array_mut()
        .unwrap()
}

#[tokio::test]
async fn refuses_a_change_that_cannot_read_every_earlier_version() {
    const REGISTER: &str = "/subjects/chat.events-value/versions";
    const CHECK: &str = "/compatibility/subjects/chat.events-value/versions/latest";
    // Each version chatflow shipped registers as itself.
    for version in SchemaId::ChatEvent.versions() {
        let schema: Value = serde_json::from_str(version.text).unwrap();
        let (status, v) = post(REGISTER, &schema).await;
        assert_eq!(
            (status, v["id"].as_u64()),
            (StatusCode::OK, Some(u64::from(version.id)))
        );
    }
    let incompatible = [
        // A new field without a default: records already written lack it.
        chat_event_v2_with(|s| {
            s["fields"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"name": "tenant", "type": "string"}))
        }),
        // A branch removed: records of that kind could no longer be read.
        chat_event_v2_with(|s| {
            payload_branches(s).retain(|b| b["name"] != "ReactionRemoved");
        }),
        // A field's type changed.
        chat_event_v2_with(|s| {
            s["fields"][0]["type"] = "long".into();
        }),
        // Only v1's branches lost: v2 was fine with v1, this is not with v2.
        chat_event_v2_with(|s| {
            payload_branches(s).retain(|b| b["name"] != "MessagePinned");
        }),
    ];
    for schema in &incompatible {
        let (status, v) = post(REGISTER, schema).await;
        assert_eq!(
            (status, v["error_code"].as_u64()),
            (StatusCode::CONFLICT, Some(409)),
            "{v}"
        );
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("BACKWARD_TRANSITIVE")
        );
        let (status, v) = post(CHECK, schema).await;
        assert_eq!(
            (status, v["is_compatible"].as_bool()),
            (StatusCode::OK, Some(false))
        );
        assert!(!v["messages"].as_array().unwrap().is_empty());
    }
    // A compatible next version: an optional field and a new branch at the
    // end. The check says so; registering is refused as read-only.
    let next = chat_event_v2_with(|s| {
        s["fields"].as_array_mut().unwrap().push(
            serde_json::json!({"name": "tenant", "type": ["null", "string"], "default": null}),
        );
        payload_branches(s).push(serde_json::json!({
            "type": "record", "name": "ConversationArchived", "fields": []
        }));
    });
    let (status, v) = post(CHECK, &next).await;
    assert_eq!(
        (status, v["is_compatible"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    let (status, v) = post(REGISTER, &next).await;
    assert_eq!(
        (status, v["error_code"].as_u64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(42205))
    );
    // Not Avro at all.
    let (status, v) = post(REGISTER, &Value::from("nope")).await;
    assert_eq!(
        (status, v["error_code"].as_u64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(42201))
    );
}

/// An Avro-shaped schema: records (some recursive, naming themselves),
/// arrays, maps, unions, enums, fixed, named references that may not
/// exist, and defaults of any type.
fn avro_schema() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    use serde_json::json;
    let name = prop_oneof![
        Just("R".to_owned()),
        Just("S".to_owned()),
        "[A-Za-z_][A-Za-z0-9_.]{0,6}",
        "\\PC{0,4}"
    ];
    let leaf = prop_oneof![
        Just(json!("null")),
        Just(json!("int")),
        Just(json!("long")),
        Just(json!("string")),
        Just(json!("bytes")),
        Just(json!("R")),
        Just(json!("no.such.Name")),
        (name.clone(), any::<i64>())
            .prop_map(|(n, size)| json!({"type": "fixed", "name": n, "size": size})),
        (name.clone(), proptest::collection::vec("\\PC{0,3}", 0..3))
            .prop_map(|(n, symbols)| json!({"type": "enum", "name": n, "symbols": symbols})),
    ];
    leaf.prop_recursive(4, 24, 4, move |inner| {
        let name = name.clone();
        prop_oneof![
            inner
                .clone()
                .prop_map(|t| json!({"type": "array", "items": t})),
            inner
                .clone()
                .prop_map(|t| json!({"type": "map", "values": t})),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            (
                name,
                proptest::collection::vec(("[a-z]{1,3}", inner, any::<Option<i32>>()), 0..4)
            )
                .prop_map(|(n, fields)| {
                    let fields: Vec<Value> = fields
                        .into_iter()
                        .map(|(f, t, d)| match d {
                            Some(d) => json!({"name": f, "type": t, "default": d}),
                            None => json!({"name": f, "type": t}),
                        })
                        .collect();
                    json!({"type": "record", "name": n, "fields": fields})
                }),
        ]
    })
}

/// The registry's every route, fed generated subjects, versions, ids,
/// methods and bodies (garbage, JSON of any shape, generated Avro
/// schemas, the real schema with a union branch dropped, 5,000-deep
/// nesting): never a 5xx or a panic, and every refusal is Confluent's
/// `{"error_code", "message"}` JSON. `REGISTRY_FUZZ_CASES` runs more.
#[tokio::test]
async fn fuzzed_registry_requests_get_confluent_answers() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use serde_json::json;
    let cases: u32 = std::env::var("REGISTRY_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1_000);
    let real: Value = serde_json::from_str(SchemaId::ChatEvent.current().text).unwrap();
    let mut without_a_branch = real.clone();
    let payload = without_a_branch["fields"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "payload")
        .unwrap();
    payload["type"].as_array_mut().unwrap().pop();
    let deep = format!(
        "{}\"int\"{}",
        "{\"type\":\"array\",\"items\":".repeat(5000),
        "}".repeat(5000)
    );
    let segment = prop_oneof![
        Just("chat.events-value".to_owned()),
        Just("chat.events-value".to_owned()),
        Just("chat.presence-value".to_owned()),
        Just("chat.inbox.n1-value".to_owned()),
        Just("latest".to_owned()),
        Just("-1".to_owned()),
        Just("%FF%FE".to_owned()),
        any::<u32>().prop_map(|n| n.to_string()),
        "[a-z.\\-]{0,12}",
        "\\PC{0,8}".prop_map(|s| urlencode(&s)),
    ];
    // Each route with the method it serves (mostly) or any other.
    let any_method = prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE")];
    let path = (
        0..8usize,
        segment.clone(),
        segment,
        any::<bool>(),
        any_method,
    )
        .prop_map(|(route, a, b, other_method, method)| {
            let (path, served) = match route {
                0 => (format!("/schemas/ids/{a}"), "GET"),
                1 => (format!("/schemas/ids/{a}/schema"), "GET"),
                2 => (format!("/subjects/{a}"), "POST"),
                3 => (format!("/subjects/{a}/versions"), "POST"),
                4 => (format!("/subjects/{a}/versions/{b}"), "GET"),
                5 => (format!("/subjects/{a}/versions/{b}/schema"), "GET"),
                6 => (format!("/compatibility/subjects/{a}/versions/{b}"), "POST"),
                _ => (format!("/{a}/{b}"), "GET"),
            };
            (if other_method { method } else { served }, path)
        });
    let body = prop_oneof![
        3 => avro_schema().prop_map(|s| json!({"schema": s.to_string()}).to_string()),
        1 => Just(json!({"schema": without_a_branch.to_string()}).to_string()),
        1 => Just(json!({"schema": real.to_string(), "schemaType": "AVRO"}).to_string()),
        1 => Just(json!({"schema": real.to_string(), "schemaType": "PROTOBUF"}).to_string()),
        1 => Just(json!({"schema": deep}).to_string()),
        1 => Just(format!("{}1{}", "[".repeat(5000), "]".repeat(5000))),
        1 => "\\PC{0,40}",
        1 => proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..cases {
        let ((method, path), body) = proptest::strategy::ValueTree::current(
            &(path.clone(), body.clone()).new_tree(&mut runner).unwrap(),
        );
        let request = Request::builder()
            .method(method)
            .uri(&path)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(Body::from(body.clone()));
        let Ok(request) = request else { continue }; // not a URI at all
        let response = schemas::registry::router().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let shown = || {
            format!(
                "{method} {path} {}: {}",
                &body.chars().take(200).collect::<String>(),
                String::from_utf8_lossy(&bytes)
            )
        };
        assert!(status.as_u16() < 500, "{status} for {}", shown());
        let answer: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {}", shown()));
        if !status.is_success() {
            assert!(
                answer["error_code"].is_u64() && answer["message"].is_string(),
                "not Confluent's error shape: {}",
                shown()
            );
        }
        *statuses.entry(status.as_u16()).or_default() += 1;
    }
    println!("registry fuzz: {cases} requests, statuses {statuses:?}, 0 5xx");
    assert!(statuses.keys().any(|s| *s == 200) && statuses.keys().any(|s| *s >= 400));
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
