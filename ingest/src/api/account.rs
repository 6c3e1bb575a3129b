//! `DELETE /v1/users/{uid}`: erasure (GDPR), by the user or a global admin.

use axum::Json;
use axum::extract::State;

use crate::api::extract::{ApiPath, AppState, User};
use crate::error::ApiError;
use crate::wire::{UserErased, rfc3339};

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
