#![allow(clippy::unwrap_used)]
//! The REST surface in-process, through `Router::oneshot`: the error
//! contract, health, readiness and the OpenAPI document, with a real store
//! and no broker (nothing here publishes).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use ingest::auth::Auth;
use ingest::{Gateway, GatewayConfig, Limits};
use serde_json::Value;
use tower::ServiceExt;

struct Node {
    gateway: Arc<Gateway>,
    token: String,
    _dir: tempfile::TempDir,
}

async fn node(readiness: Option<&'static str>) -> Node {
    node_with(readiness, true).await
}

async fn node_with(readiness: Option<&'static str>, dev_auth: bool) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("fjall://{}", dir.path().join("store").display());
    let store = store::open(&url).await.unwrap();
    // Never reached: these requests are refused before anything is sent.
    let producer = streams::Producer::new(&streams::KafkaConfig::new("127.0.0.1:9")).unwrap();
    let auth = Auth::hs256(b"test-secret");
    let token = auth.issue("alice", None, 600).unwrap();
    let config = GatewayConfig {
        node_id: "n1".into(),
        limits: Limits::default(),
        dev_auth,
    };
    let mut gateway = Gateway::new(config, auth, store, producer);
    if let Some(reason) = readiness {
        gateway = gateway.with_readiness(Arc::new(move || Some(reason.into())));
    }
    Node {
        gateway: Arc::new(gateway),
        token,
        _dir: dir,
    }
}

impl Node {
    async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = ingest::router(self.gateway.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn post(&self, path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
        Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, content_type)
            .body(body.into())
            .unwrap()
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn bad_requests_get_the_error_shape_before_anything_is_published() {
    let n = node(None).await;
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();

    let (status, body) = n.call(get("/v1/conversations")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );

    let (status, body) = n.call(get("/v1/nothing-here")).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));

    let delete = Request::delete("/healthz").body(Body::empty()).unwrap();
    let (status, body) = n.call(delete).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );

    let json = "application/json";
    let (status, body) = n.call(n.post("/v1/conversations", json, "{not json")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );

    let (status, body) = n
        .call(n.post("/v1/conversations", "text/plain", r#"{"kind":"group"}"#))
        .await;
    assert_eq!(code(&body), "invalid_content_type", "{status}");

    let (status, body) = n
        .call(n.post("/v1/conversations", json, r#"{"kind":"channel"}"#))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let huge = format!(r#"{{"kind":"group","name":"{}"}}"#, "x".repeat(1 << 20));
    let (status, body) = n.call(n.post("/v1/conversations", json, huge)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );

    let path = "/v1/conversations/c1/messages?limit=many";
    let request = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {}", n.token))
        .body(Body::empty())
        .unwrap();
    let (status, body) = n.call(request).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );
}

#[tokio::test]
async fn a_node_that_is_not_ready_says_why_and_takes_no_write() {
    let n = node(Some("the persister is catching up with chat.events")).await;
    let (status, body) = n
        .call(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the persister is catching up"),
        "{body}"
    );

    let send = r#"{"client_msg_id":"m1","body":"hello"}"#;
    let request = n.post("/v1/conversations/c1/messages", "application/json", send);
    let (status, body) = n.call(request).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );

    // Liveness is not readiness.
    let (status, body) = n
        .call(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
}

#[tokio::test]
async fn the_openapi_document_describes_what_the_handlers_write() {
    let n = node(None).await;
    let (status, doc) = n
        .call(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(operations, 34, "every REST operation is documented");
    let schemas = &doc["components"]["schemas"];
    // A message as history and the conversation list write it.
    let message = schemas["Message"]["properties"].as_object().unwrap();
    for field in [
        "seq",
        "sender_id",
        "body",
        "edited_at",
        "reply_to",
        "mentions",
        "reactions",
    ] {
        assert!(message.contains_key(field), "Message.{field}");
    }
    let required = schemas["Ack"]["required"].as_array().unwrap();
    assert_eq!(required.len(), 5, "{required:?}");
    let error = &schemas["ErrorBody"]["properties"]["error"];
    assert!(!error.is_null(), "{}", schemas["ErrorBody"]);
}

#[tokio::test]
async fn dev_login_is_served_only_when_dev_auth_is_on() {
    let login = |n: &Node| {
        n.post(
            "/v1/dev/token",
            "application/json",
            r#"{"user_id":"mallory"}"#,
        )
    };
    let off = node_with(None, false).await;
    let (status, body) = off.call(login(&off)).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));

    let on = node(None).await;
    let (status, body) = on.call(login(&on)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
}
