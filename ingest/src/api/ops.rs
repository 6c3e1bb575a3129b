//! Health, readiness and the fallback for unknown paths.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::api::extract::AppState;
use crate::error::ApiError;

#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses((status = 200, body = crate::api::openapi::Health)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "ops", security(()), responses((status = 200, body = crate::api::openapi::Ready)))]
pub async fn readyz(State(gw): State<AppState>) -> Result<Json<Value>, ApiError> {
    gw.require_ready()?;
    gw.store.conversation("readyz-probe").await?;
    Ok(Json(
        json!({"status": "ready", "node": gw.config.node_id, "sockets": gw.hub.len()}),
    ))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}
