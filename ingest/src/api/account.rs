//! A user's data (GDPR), for the user or a global admin: `DELETE
//! /v1/users/{uid}` erases it, `POST /v1/users/{uid}/export` exports it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::api::extract::{ApiPath, AppState, User};
use crate::error::ApiError;
use crate::wire::{ExportState, UserErased, rfc3339};

#[utoipa::path(delete, path = "/v1/users/{uid}", tag = "users", params(("uid" = String, Path, description = "user id")), responses((status = 200, body = crate::wire::UserErased)))]
pub async fn erase(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath(uid): ApiPath<String>,
) -> Result<Json<UserErased>, ApiError> {
    let erased = gw.erase_user(&user, &uid).await?;
    Ok(Json(UserErased {
        user_id: uid,
        event_seq: erased.event_seq,
        erased_at: rfc3339(schemas::now_millis()),
        files_removed: erased.files,
        devices_removed: erased.devices,
    }))
}

#[utoipa::path(post, path = "/v1/users/{uid}/export", tag = "users", params(("uid" = String, Path, description = "user id")), responses((status = 202, body = crate::wire::ExportState)))]
pub async fn start_export(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath(uid): ApiPath<String>,
) -> Result<(StatusCode, Json<ExportState>), ApiError> {
    let export_id = gw.start_export(&user, &uid).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ExportState {
            status_url: format!("/v1/users/{uid}/exports/{export_id}"),
            user_id: uid,
            export_id,
            status: "running".into(),
            lines: None,
            bytes: None,
            url: None,
            expires_at: None,
            error: None,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/users/{uid}/exports/{export_id}", tag = "users", params(("uid" = String, Path, description = "user id"), ("export_id" = String, Path, description = "from POST /v1/users/{uid}/export")), responses((status = 200, body = crate::wire::ExportState)))]
pub async fn export_state(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath((uid, export_id)): ApiPath<(String, String)>,
) -> Result<Json<ExportState>, ApiError> {
    let view = gw.export_view(&user, &uid, &export_id).await?;
    Ok(Json(ExportState {
        status_url: format!("/v1/users/{uid}/exports/{export_id}"),
        user_id: uid,
        export_id,
        status: view.status,
        lines: view.lines,
        bytes: view.size,
        expires_at: view.link.as_ref().map(|l| rfc3339(l.expires_at)),
        url: view.link.map(|l| l.url),
        error: view.error,
    }))
}
