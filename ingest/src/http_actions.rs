//! REST handlers for changes inside a conversation (members, roles,
//! settings, messages, reactions, receipts) and for users and devices.
//! Each answers with the seq of the event it produced (`event_seq`), or
//! `null` when there was nothing to change.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::{ApiJson, ApiPath, AppState, User, rest_device};
use crate::messages::Receipt;

fn done(cid: &str, event_seq: Option<i64>) -> Json<Value> {
    Json(json!({"conversation_id": cid, "event_seq": event_seq}))
}

#[derive(Deserialize)]
pub struct UpdateConversation {
    name: Option<String>,
    description: Option<String>,
}

/// `PATCH /v1/conversations/{cid}`: rename or describe (owner/admin).
#[utoipa::path(patch, path = "/v1/conversations/{cid}", tag = "conversations", params(("cid" = String, Path, description = "conversation id")), request_body = crate::openapi::UpdateConversation, responses((status = 200, body = crate::openapi::Changed)))]
pub async fn update_conversation(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath(cid): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateConversation>,
) -> Result<Json<Value>, ApiError> {
    let device = rest_device(&headers);
    let seq = gw
        .update_conversation(&user, &device, &cid, req.name, req.description)
        .await?;
    Ok(done(&cid, Some(seq)))
}

#[derive(Deserialize)]
pub struct AddMember {
    user_id: String,
    role: Option<String>,
}

/// `POST /v1/conversations/{cid}/members` (owner/admin).
#[utoipa::path(post, path = "/v1/conversations/{cid}/members", tag = "members", params(("cid" = String, Path, description = "conversation id")), request_body = crate::openapi::AddMember, responses((status = 201, body = crate::openapi::Changed)))]
pub async fn add_member(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath(cid): ApiPath<String>,
    ApiJson(req): ApiJson<AddMember>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let device = rest_device(&headers);
    let seq = gw
        .add_member(&user, &device, &cid, &req.user_id, req.role)
        .await?;
    Ok((axum::http::StatusCode::CREATED, done(&cid, Some(seq))))
}

/// `DELETE /v1/conversations/{cid}/members/{uid}`: leave, or remove someone.
#[utoipa::path(delete, path = "/v1/conversations/{cid}/members/{uid}", tag = "members", params(("cid" = String, Path, description = "conversation id"), ("uid" = String, Path, description = "user id")), responses((status = 200, body = crate::openapi::Changed)))]
pub async fn remove_member(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, uid)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let device = rest_device(&headers);
    let seq = gw.remove_member(&user, &device, &cid, &uid).await?;
    Ok(done(&cid, Some(seq)))
}

#[derive(Deserialize)]
pub struct ChangeRole {
    role: String,
}

/// `PUT /v1/conversations/{cid}/members/{uid}/role` (owner).
#[utoipa::path(put, path = "/v1/conversations/{cid}/members/{uid}/role", tag = "members", params(("cid" = String, Path, description = "conversation id"), ("uid" = String, Path, description = "user id")), request_body = crate::openapi::ChangeRole, responses((status = 200, body = crate::openapi::Changed)))]
pub async fn change_role(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, uid)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<ChangeRole>,
) -> Result<Json<Value>, ApiError> {
    let device = rest_device(&headers);
    let seq = gw
        .change_role(&user, &device, &cid, &uid, &req.role)
        .await?;
    Ok(done(&cid, Some(seq)))
}

#[derive(Deserialize)]
pub struct Mute {
    muted: bool,
}

/// `PUT /v1/conversations/{cid}/mute`: mute or unmute for the caller.
#[utoipa::path(put, path = "/v1/conversations/{cid}/mute", tag = "members", params(("cid" = String, Path, description = "conversation id")), request_body = crate::openapi::Mute, responses((status = 200, body = crate::openapi::Changed)))]
pub async fn mute(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath(cid): ApiPath<String>,
    ApiJson(req): ApiJson<Mute>,
) -> Result<Json<Value>, ApiError> {
    let device = rest_device(&headers);
    let seq = gw.set_muted(&user, &device, &cid, req.muted).await?;
    Ok(done(&cid, Some(seq)))
}

#[derive(Deserialize)]
pub struct EditMessage {
    body: String,
}

/// `PATCH /v1/conversations/{cid}/messages/{seq}` (the author).
#[utoipa::path(patch, path = "/v1/conversations/{cid}/messages/{seq}", tag = "messages", params(("cid" = String, Path, description = "conversation id"), ("seq" = i64, Path, description = "message seq")), request_body = crate::openapi::EditMessage, responses((status = 200, body = crate::openapi::MessageChanged)))]
pub async fn edit_message(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, seq)): ApiPath<(String, i64)>,
    ApiJson(req): ApiJson<EditMessage>,
) -> Result<Json<Value>, ApiError> {
    let device = rest_device(&headers);
    let event_seq = gw.edit_message(&user, &device, &cid, seq, req.body).await?;
    Ok(Json(
        json!({"conversation_id": cid, "seq": seq, "event_seq": event_seq}),
    ))
}

/// `DELETE /v1/conversations/{cid}/messages/{seq}` (author, owner, admin).
#[utoipa::path(delete, path = "/v1/conversations/{cid}/messages/{seq}", tag = "messages", params(("cid" = String, Path, description = "conversation id"), ("seq" = i64, Path, description = "message seq")), responses((status = 200, body = crate::openapi::MessageChanged)))]
pub async fn delete_message(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, seq)): ApiPath<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    let device = rest_device(&headers);
    let event_seq = gw.delete_message(&user, &device, &cid, seq).await?;
    Ok(Json(
        json!({"conversation_id": cid, "seq": seq, "event_seq": event_seq}),
    ))
}

/// `PUT /v1/conversations/{cid}/messages/{seq}/reactions/{emoji}`.
#[utoipa::path(put, path = "/v1/conversations/{cid}/messages/{seq}/reactions/{emoji}", tag = "messages", params(("cid" = String, Path, description = "conversation id"), ("seq" = i64, Path, description = "message seq"), ("emoji" = String, Path)), responses((status = 200, body = crate::openapi::Changed)))]
pub async fn add_reaction(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, seq, emoji)): ApiPath<(String, i64, String)>,
) -> Result<Json<Value>, ApiError> {
    let device = rest_device(&headers);
    let event_seq = gw.react(&user, &device, &cid, seq, &emoji, true).await?;
    Ok(done(&cid, event_seq))
}

/// `DELETE /v1/conversations/{cid}/messages/{seq}/reactions/{emoji}`.
#[utoipa::path(delete, path = "/v1/conversations/{cid}/messages/{seq}/reactions/{emoji}", tag = "messages", params(("cid" = String, Path, description = "conversation id"), ("seq" = i64, Path, description = "message seq"), ("emoji" = String, Path)), responses((status = 200, body = crate::openapi::Changed)))]
pub async fn remove_reaction(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, seq, emoji)): ApiPath<(String, i64, String)>,
) -> Result<Json<Value>, ApiError> {
    let device = rest_device(&headers);
    let event_seq = gw.react(&user, &device, &cid, seq, &emoji, false).await?;
    Ok(done(&cid, event_seq))
}

#[derive(Deserialize)]
pub struct ReadUpTo {
    seq: i64,
}

/// `POST /v1/conversations/{cid}/read`: read up to seq, for all devices.
#[utoipa::path(post, path = "/v1/conversations/{cid}/read", tag = "receipts", params(("cid" = String, Path, description = "conversation id")), request_body = crate::openapi::ReadUpTo, responses((status = 200, body = crate::openapi::Changed)))]
pub async fn mark_read(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath(cid): ApiPath<String>,
    ApiJson(req): ApiJson<ReadUpTo>,
) -> Result<Json<Value>, ApiError> {
    let device = rest_device(&headers);
    let event_seq = gw
        .receipt(&user, &device, &cid, req.seq, Receipt::Read)
        .await?;
    Ok(done(&cid, event_seq))
}

/// `GET /v1/conversations/{cid}/messages/{seq}/receipts`.
#[utoipa::path(get, path = "/v1/conversations/{cid}/messages/{seq}/receipts", tag = "receipts", params(("cid" = String, Path, description = "conversation id"), ("seq" = i64, Path, description = "message seq")), responses((status = 200, body = crate::openapi::Receipts)))]
pub async fn receipts(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath((cid, seq)): ApiPath<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    let r = gw.receipts(&user, &cid, seq).await?;
    Ok(Json(
        json!({"conversation_id": cid, "seq": seq, "delivered_to": r.delivered_to, "read_by": r.read_by}),
    ))
}

/// `GET /v1/users/{uid}/presence`.
#[utoipa::path(get, path = "/v1/users/{uid}/presence", tag = "users", params(("uid" = String, Path, description = "user id")), responses((status = 200, body = crate::openapi::Presence)))]
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
#[utoipa::path(post, path = "/v1/devices", tag = "users", request_body = crate::openapi::RegisterDevice, responses((status = 201, body = crate::openapi::DeviceChanged)))]
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
#[utoipa::path(delete, path = "/v1/devices/{device_id}", tag = "users", params(("device_id" = String, Path)), responses((status = 200, body = crate::openapi::DeviceChanged)))]
pub async fn remove_device(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath(device_id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let seq = gw.remove_device(&user, &device_id).await?;
    Ok(Json(json!({"device_id": device_id, "event_seq": seq})))
}
