//! The built-in, read-only schema registry: the Confluent Schema Registry
//! REST API over every version of the compiled-in schemas, so that
//! Confluent's clients (and any tool that speaks the registry API) decode
//! chatflow's topics, and a schema change can be checked for
//! BACKWARD_TRANSITIVE compatibility before it ships.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

use crate::{SchemaId, Version};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Routes of the registry; the caller binds and serves them.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { reply(StatusCode::OK, json!({})) }))
        .route("/config", get(config))
        .route(
            "/mode",
            get(|| async { reply(StatusCode::OK, json!({"mode": "READONLY"})) }),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility),
        )
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
        .fallback(|| async { plain_error(StatusCode::NOT_FOUND, "HTTP 404 Not Found".into()) })
        .layer(axum::middleware::map_response(confluent_errors))
}

/// Every refusal in Confluent's shape, those axum makes itself too (an
/// unknown method, a path segment that is not UTF-8): a registry client
/// reads `error_code` and `message`.
async fn confluent_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().ends_with(b"json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        format!("HTTP {status}")
    } else {
        text
    };
    plain_error(status, message)
}

fn plain_error(status: StatusCode, message: String) -> Response {
    reply(
        status,
        json!({"error_code": status.as_u16(), "message": message}),
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

fn by_id(id: &str) -> Result<Version, NotFound> {
    id.parse::<u32>()
        .ok()
        .and_then(Version::by_id)
        .ok_or_else(|| not_found(40403, format!("Schema {id} not found")))
}

async fn schema_by_id(Path(id): Path<String>) -> Response {
    match by_id(&id) {
        Ok(v) => reply(StatusCode::OK, json!({"schema": compact(v)})),
        Err(e) => e.into_response(),
    }
}

async fn raw_schema_by_id(Path(id): Path<String>) -> Response {
    match by_id(&id) {
        Ok(v) => raw(v),
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
        Ok(schema) => {
            let numbers: Vec<u32> = schema.versions().map(|v| v.number).collect();
            reply(StatusCode::OK, json!(numbers))
        }
        Err(e) => e.into_response(),
    }
}

/// A version of the subject's record: a number, or `latest` / `-1`.
fn by_version(schema: SchemaId, version: &str) -> Result<Version, NotFound> {
    let found = match version {
        "latest" | "-1" => Some(schema.current()),
        n => n
            .parse::<u32>()
            .ok()
            .and_then(|n| schema.versions().find(|v| v.number == n)),
    };
    found.ok_or_else(|| not_found(40402, format!("Version {version} not found.")))
}

fn described(subject: &str, v: Version) -> Value {
    json!({"subject": subject, "version": v.number, "id": v.id, "schema": compact(v)})
}

async fn version(Path((subject, v)): Path<(String, String)>) -> Response {
    match by_subject(&subject).and_then(|s| by_version(s, &v)) {
        Ok(version) => reply(StatusCode::OK, described(&subject, version)),
        Err(e) => e.into_response(),
    }
}

async fn raw_version(Path((subject, v)): Path<(String, String)>) -> Response {
    match by_subject(&subject).and_then(|s| by_version(s, &v)) {
        Ok(version) => raw(version),
        Err(e) => e.into_response(),
    }
}

fn raw(v: Version) -> Response {
    let value: Value = serde_json::from_str(v.text).unwrap_or(Value::Null);
    reply(StatusCode::OK, value)
}

fn compact(v: Version) -> String {
    serde_json::from_str::<Value>(v.text)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| v.text.to_owned())
}

/// The body clients post: `{"schema": "<Avro JSON>", "schemaType"?: "AVRO"}`.
#[derive(serde::Deserialize)]
struct Posted {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
}

/// Why a posted schema is refused.
enum Refused {
    /// The body is not `{"schema": "..."}` JSON: 400 (axum's own rejection
    /// would be plain text).
    Body(String),
    /// Confluent's 422: the posted schema is not an Avro schema.
    Schema(String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Body(e) => plain_error(
                StatusCode::BAD_REQUEST,
                format!("the body is not {{\"schema\": \"<Avro JSON>\"}}: {e}"),
            ),
            Refused::Schema(message) => reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error_code": 42201, "message": message}),
            ),
        }
    }
}

/// The Avro schema a request body posts.
fn parse(body: &[u8]) -> Result<Schema, Refused> {
    let posted: Posted = serde_json::from_slice(body).map_err(|e| Refused::Body(e.to_string()))?;
    if let Some(t) = posted.schema_type.as_deref().filter(|t| *t != "AVRO") {
        return Err(Refused::Schema(format!(
            "schema type {t} is not supported here"
        )));
    }
    Schema::parse_str(&posted.schema).map_err(|e| Refused::Schema(format!("Invalid schema: {e}")))
}

/// The subject's version whose canonical form is the posted schema's.
fn registered(schema: SchemaId, posted: &Schema) -> Option<Version> {
    let form = posted.canonical_form();
    schema
        .versions()
        .find(|v| crate::codec::parsed(*v).canonical_form() == form)
}

/// Why the posted schema cannot read what some version of the subject
/// wrote (BACKWARD_TRANSITIVE), one message per such version.
fn incompatibilities(schema: SchemaId, posted: &Schema) -> Vec<String> {
    schema
        .versions()
        .filter_map(
            |v| match SchemaCompatibility::can_read(crate::codec::parsed(v), posted) {
                Ok(Compatibility::Full) => None,
                Ok(_) => Some(format!(
                    "version {}: some of its records cannot be read (a union branch is missing)",
                    v.number
                )),
                Err(e) => Some(format!("version {}: {e}", v.number)),
            },
        )
        .collect()
}

/// `POST /subjects/{subject}`: is this schema registered under the subject?
async fn lookup(Path(subject): Path<String>, body: Bytes) -> Response {
    let schema = match by_subject(&subject) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match parse(&body).map(|p| registered(schema, &p)) {
        Ok(Some(v)) => reply(StatusCode::OK, described(&subject, v)),
        Ok(None) => not_found(40403, "Schema not found".into()).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /subjects/{subject}/versions`: a schema the subject holds gets its
/// id; one that cannot read every earlier version (BACKWARD_TRANSITIVE) is
/// refused as incompatible (409); a compatible new one is refused because
/// the subject is read-only (chatflow's schemas change with a release).
async fn register(Path(subject): Path<String>, body: Bytes) -> Response {
    let schema = match by_subject(&subject) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let posted = match parse(&body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Some(v) = registered(schema, &posted) {
        return reply(StatusCode::OK, json!({"id": v.id}));
    }
    let problems = incompatibilities(schema, &posted);
    if !problems.is_empty() {
        return reply(
            StatusCode::CONFLICT,
            json!({"error_code": 409, "message": format!(
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\" (BACKWARD_TRANSITIVE): {}",
                problems.join("; ")
            )}),
        );
    }
    reply(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"error_code": 42205, "message": format!(
            "Subject {subject} is in read-only mode: chatflow's schemas change with a chatflow release (the schema is compatible)"
        )}),
    )
}

/// `POST /compatibility/subjects/{subject}/versions/{version}`: whether the
/// posted schema could be the subject's next version. The level is
/// BACKWARD_TRANSITIVE, so it is checked against every version whichever
/// one is named.
async fn compatibility(Path((subject, v)): Path<(String, String)>, body: Bytes) -> Response {
    let schema = match by_subject(&subject).and_then(|s| by_version(s, &v).map(|_| s)) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match parse(&body) {
        Ok(posted) => {
            let messages = incompatibilities(schema, &posted);
            reply(
                StatusCode::OK,
                json!({"is_compatible": messages.is_empty(), "messages": messages}),
            )
        }
        Err(e) => e.into_response(),
    }
}
