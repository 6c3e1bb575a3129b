//! Health, readiness and the fallback for unknown paths.

use axum::Json;
use axum::extract::State;

use crate::api::extract::AppState;
use crate::error::ApiError;
use crate::wire::{Health, Ready};

#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses((status = 200, body = crate::wire::Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[utoipa::path(get, path = "/readyz", tag = "ops", security(()), responses((status = 200, body = crate::wire::Ready)))]
pub async fn readyz(State(gw): State<AppState>) -> Result<Json<Ready>, ApiError> {
    gw.require_ready()?;
    gw.store.conversation("readyz-probe").await?;
    Ok(Json(Ready {
        status: "ready",
        node: gw.config.node_id.clone(),
        sockets: gw.hub.len(),
    }))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// A path that exists, with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed here",
    )
}
