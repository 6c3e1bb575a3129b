//! REST handlers for users and devices: dev login, presence, push devices.

use axum::Json;
use axum::extract::State;

use crate::actions::people::Presence;
use crate::api::extract::{ApiJson, ApiPath, AppState, User};
use crate::error::ApiError;
use crate::validate;
use crate::wire::{DevTokenRequest, DeviceChanged, RegisterDevice, Token};

#[utoipa::path(post, path = "/v1/dev/token", tag = "auth", security(()), request_body = crate::wire::DevTokenRequest, responses((status = 200, body = crate::wire::Token)))]
pub async fn dev_token(
    State(gw): State<AppState>,
    ApiJson(req): ApiJson<DevTokenRequest>,
) -> Result<Json<Token>, ApiError> {
    if !gw.config.dev_auth {
        return Err(ApiError::not_found("dev login is off"));
    }
    validate::named_id("user_id", &req.user_id)?;
    let token = gw
        .auth
        .issue(&req.user_id, req.name.as_deref(), 7 * 24 * 3600)
        .map_err(|e| ApiError::unavailable("token issuing", e))?;
    Ok(Json(Token { token }))
}

/// `GET /v1/users/{uid}/presence`.
#[utoipa::path(get, path = "/v1/users/{uid}/presence", tag = "users", params(("uid" = String, Path, description = "user id")), responses((status = 200, body = crate::actions::people::Presence)))]
pub async fn presence(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath(uid): ApiPath<String>,
) -> Result<Json<Presence>, ApiError> {
    Ok(Json(gw.presence_of(&user, &uid).await?))
}

/// `POST /v1/devices`.
#[utoipa::path(post, path = "/v1/devices", tag = "users", request_body = crate::wire::RegisterDevice, responses((status = 201, body = crate::wire::DeviceChanged)))]
pub async fn register_device(
    State(gw): State<AppState>,
    User(user): User,
    ApiJson(req): ApiJson<RegisterDevice>,
) -> Result<(axum::http::StatusCode, Json<DeviceChanged>), ApiError> {
    let seq = gw
        .register_device(&user, &req.device_id, &req.platform, req.push_token)
        .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(DeviceChanged {
            device_id: req.device_id,
            event_seq: seq,
        }),
    ))
}

/// `DELETE /v1/devices/{device_id}`.
#[utoipa::path(delete, path = "/v1/devices/{device_id}", tag = "users", params(("device_id" = String, Path)), responses((status = 200, body = crate::wire::DeviceChanged)))]
pub async fn remove_device(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath(device_id): ApiPath<String>,
) -> Result<Json<DeviceChanged>, ApiError> {
    let seq = gw.remove_device(&user, &device_id).await?;
    Ok(Json(DeviceChanged {
        device_id,
        event_seq: seq,
    }))
}
