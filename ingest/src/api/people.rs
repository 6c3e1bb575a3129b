//! REST handlers for users and devices: dev login, presence, push devices.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::{ApiJson, ApiPath, AppState, User};
use crate::error::ApiError;
use crate::validate;

#[derive(Deserialize)]
pub struct DevTokenRequest {
    user_id: String,
    name: Option<String>,
}

#[utoipa::path(post, path = "/v1/dev/token", tag = "auth", security(()), request_body = crate::api::openapi::DevTokenRequest, responses((status = 200, body = crate::api::openapi::Token)))]
pub async fn dev_token(
    State(gw): State<AppState>,
    ApiJson(req): ApiJson<DevTokenRequest>,
) -> Result<Json<Value>, ApiError> {
    if !gw.config.dev_auth {
        return Err(ApiError::not_found("dev login is off"));
    }
    validate::named_id("user_id", &req.user_id)?;
    let token = gw
        .auth
        .issue(&req.user_id, req.name.as_deref(), 7 * 24 * 3600)
        .map_err(|e| ApiError::unavailable("token issuing", e))?;
    Ok(Json(json!({"token": token})))
}

/// `GET /v1/users/{uid}/presence`.
#[utoipa::path(get, path = "/v1/users/{uid}/presence", tag = "users", params(("uid" = String, Path, description = "user id")), responses((status = 200, body = crate::api::openapi::Presence)))]
pub async fn presence(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath(uid): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let p = gw.presence_of(&user, &uid).await?;
    Ok(Json(
        json!({"user_id": p.user_id, "online": p.online, "last_seen": p.last_seen}),
    ))
}

#[derive(Deserialize)]
pub struct RegisterDevice {
    device_id: String,
    platform: String,
    push_token: Option<String>,
}

/// `POST /v1/devices`.
#[utoipa::path(post, path = "/v1/devices", tag = "users", request_body = crate::api::openapi::RegisterDevice, responses((status = 201, body = crate::api::openapi::DeviceChanged)))]
pub async fn register_device(
    State(gw): State<AppState>,
    User(user): User,
    ApiJson(req): ApiJson<RegisterDevice>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let seq = gw
        .register_device(&user, &req.device_id, &req.platform, req.push_token)
        .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(json!({"device_id": req.device_id, "event_seq": seq})),
    ))
}

/// `DELETE /v1/devices/{device_id}`.
#[utoipa::path(delete, path = "/v1/devices/{device_id}", tag = "users", params(("device_id" = String, Path)), responses((status = 200, body = crate::api::openapi::DeviceChanged)))]
pub async fn remove_device(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath(device_id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let seq = gw.remove_device(&user, &device_id).await?;
    Ok(Json(json!({"device_id": device_id, "event_seq": seq})))
}
