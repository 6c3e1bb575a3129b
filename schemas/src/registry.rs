//! The built-in, read-only schema registry: the Confluent Schema Registry
//! REST reads for the compiled-in schemas, so that Confluent's clients (and
//! any tool that speaks the registry API) decode chatflow's topics.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::SchemaId;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Routes of the registry; the caller binds and serves them.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { reply(StatusCode::OK, json!({})) }))
        .route("/config", get(config))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(raw_version),
        )
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], Json(body)).into_response()
}

/// Confluent's error shape: `{"error_code", "message"}`, always a 404 here.
struct NotFound(u32, String);

impl IntoResponse for NotFound {
    fn into_response(self) -> Response {
        reply(
            StatusCode::NOT_FOUND,
            json!({"error_code": self.0, "message": self.1}),
        )
    }
}

fn not_found(code: u32, message: String) -> NotFound {
    NotFound(code, message)
}

async fn config() -> Response {
    reply(
        StatusCode::OK,
        json!({"compatibilityLevel": "BACKWARD_TRANSITIVE"}),
    )
}

fn by_id(id: &str) -> Result<SchemaId, NotFound> {
    id.parse::<u32>()
        .ok()
        .and_then(SchemaId::from_id)
        .ok_or_else(|| not_found(40403, format!("Schema {id} not found")))
}

async fn schema_by_id(Path(id): Path<String>) -> Response {
    match by_id(&id) {
        Ok(schema) => reply(StatusCode::OK, json!({"schema": compact(schema)})),
        Err(e) => e.into_response(),
    }
}

async fn raw_schema_by_id(Path(id): Path<String>) -> Response {
    match by_id(&id) {
        Ok(schema) => raw(schema),
        Err(e) => e.into_response(),
    }
}

fn by_subject(subject: &str) -> Result<SchemaId, NotFound> {
    let topic = subject.strip_suffix("-value");
    SchemaId::ALL
        .into_iter()
        .find(|s| match (s, topic) {
            _ if subject == s.subject() => true,
            (SchemaId::Delivery, Some(t)) => t.starts_with(s.topic()) && t.len() > s.topic().len(),
            (_, Some(t)) => t == s.topic(),
            _ => false,
        })
        .ok_or_else(|| not_found(40401, format!("Subject '{subject}' not found.")))
}

async fn subjects() -> Response {
    let names: Vec<&str> = SchemaId::ALL.into_iter().map(SchemaId::subject).collect();
    reply(StatusCode::OK, json!(names))
}

async fn versions(Path(subject): Path<String>) -> Response {
    match by_subject(&subject) {
        Ok(_) => reply(StatusCode::OK, json!([1])),
        Err(e) => e.into_response(),
    }
}

fn check_version(version: &str) -> Result<(), NotFound> {
    match version {
        "1" | "latest" | "-1" => Ok(()),
        other => Err(not_found(40402, format!("Version {other} not found."))),
    }
}

async fn version(Path((subject, v)): Path<(String, String)>) -> Response {
    match by_subject(&subject).and_then(|s| check_version(&v).map(|_| s)) {
        Ok(schema) => reply(
            StatusCode::OK,
            json!({"subject": subject, "version": 1, "id": schema.id(), "schema": compact(schema)}),
        ),
        Err(e) => e.into_response(),
    }
}

async fn raw_version(Path((subject, v)): Path<(String, String)>) -> Response {
    match by_subject(&subject).and_then(|s| check_version(&v).map(|_| s)) {
        Ok(schema) => raw(schema),
        Err(e) => e.into_response(),
    }
}

fn raw(schema: SchemaId) -> Response {
    let value: Value = serde_json::from_str(schema.text()).unwrap_or(Value::Null);
    reply(StatusCode::OK, value)
}

fn compact(schema: SchemaId) -> String {
    serde_json::from_str::<Value>(schema.text())
        .map(|v| v.to_string())
        .unwrap_or_else(|_| schema.text().to_owned())
}

/// The body clients post: `{"schema": "<Avro JSON>", "schemaType"?: "AVRO"}`.
#[derive(serde::Deserialize)]
struct Posted {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
}

/// Whether a posted schema is the subject's compiled-in one (same
/// canonical form).
fn matches(schema: SchemaId, posted: &Posted) -> bool {
    if posted.schema_type.as_deref().is_some_and(|t| t != "AVRO") {
        return false;
    }
    match (
        apache_avro::Schema::parse_str(&posted.schema),
        apache_avro::Schema::parse_str(schema.text()),
    ) {
        (Ok(a), Ok(b)) => a.canonical_form() == b.canonical_form(),
        _ => false,
    }
}

/// `POST /subjects/{subject}`: is this schema registered under the subject?
async fn lookup(Path(subject): Path<String>, Json(posted): Json<Posted>) -> Response {
    match by_subject(&subject) {
        Ok(schema) if matches(schema, &posted) => reply(
            StatusCode::OK,
            json!({"subject": subject, "version": 1, "id": schema.id(), "schema": compact(schema)}),
        ),
        Ok(_) => not_found(40403, "Schema not found".into()).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /subjects/{subject}/versions`: this registry is read-only, so
/// "registering" succeeds only for the schema it already holds.
async fn register(Path(subject): Path<String>, Json(posted): Json<Posted>) -> Response {
    match by_subject(&subject) {
        Ok(schema) if matches(schema, &posted) => reply(StatusCode::OK, json!({"id": schema.id()})),
        Ok(_) => reply(
            StatusCode::CONFLICT,
            json!({"error_code": 409, "message": "this registry is read-only: it holds chatflow's compiled-in schemas only"}),
        ),
        Err(e) => e.into_response(),
    }
}
