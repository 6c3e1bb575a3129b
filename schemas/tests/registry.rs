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
    for id in SchemaId::ALL {
        let (status, body) = get(&format!("/schemas/ids/{}", id.id())).await;
        assert_eq!(status, StatusCode::OK);
        let schema: Value = serde_json::from_str(body["schema"].as_str().unwrap()).unwrap();
        let file: Value = serde_json::from_str(id.text()).unwrap();
        assert_eq!(schema, file);
        // And it parses as Avro.
        apache_avro::Schema::parse_str(body["schema"].as_str().unwrap()).unwrap();
    }
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
        (Some(1), Some(1))
    );
    let (_, v) = get("/subjects/chat.inbox.node-7-value/versions/1").await;
    assert_eq!(v["id"].as_u64(), Some(u64::from(SchemaId::Delivery.id())));
    let (status, v) = get("/subjects/chat.events-value/versions/2").await;
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
