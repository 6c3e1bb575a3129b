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
