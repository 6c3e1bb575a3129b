//! REST handlers for messages: send, history, edit, delete, reactions,
//! read markers and receipts.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::Page;

use crate::actions::messages::Receipt;
use crate::actions::send::NewMessage;
use crate::api::done;
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, AppState, User, rest_device};
use crate::error::ApiError;
use crate::validate;
use crate::wire::{
    Changed, EditMessage, Message, MessageChanged, MessagePage, PostMessage, ReadUpTo, Receipts,
};

#[utoipa::path(post, path = "/v1/conversations/{cid}/messages", tag = "messages", params(("cid" = String, Path, description = "conversation id")), request_body = crate::wire::PostMessage, responses((status = 201, body = crate::wire::Ack)))]
pub async fn post_message(
    State(gw): State<AppState>,
    User(user): User,
    headers: axum::http::HeaderMap,
    ApiPath(cid): ApiPath<String>,
    ApiJson(req): ApiJson<PostMessage>,
) -> Result<Response, ApiError> {
    let device = rest_device(&headers);
    let new = NewMessage {
        conversation_id: cid,
        client_msg_id: req.client_msg_id,
        body: req.body,
        reply_to: req.reply_to,
        mentions: req.mentions,
        silent: req.silent,
        attachments: req.attachments,
    };
    let ack = gw.send_message(&user.sub, &device, new).await?;
    Ok((StatusCode::CREATED, Json(ack)).into_response())
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    before: Option<i64>,
    after: Option<i64>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/conversations/{cid}/messages", tag = "messages", params(("cid" = String, Path, description = "conversation id"), ("before" = Option<i64>, Query, description = "only messages below this seq"), ("after" = Option<i64>, Query, description = "only messages above this seq"), ("limit" = Option<i64>, Query, description = "1 to 200, default 50")), responses((status = 200, body = crate::wire::MessagePage)))]
pub async fn history(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath(cid): ApiPath<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let limit = validate::limit(q.limit, 50, 200)?;
    gw.require_member(&cid, &user.sub).await?;
    gw.read_your_writes(&cid, false).await?;
    let mut page = gw
        .store
        .messages(
            &cid,
            Page {
                before: q.before,
                after: q.after,
                limit,
            },
        )
        .await?;
    gw.open_messages(&mut page.messages).await?;
    Ok(Json(MessagePage {
        messages: page.messages.iter().map(Message::from).collect(),
        has_more: page.has_more,
    }))
}

/// `PATCH /v1/conversations/{cid}/messages/{seq}` (the author).
#[utoipa::path(patch, path = "/v1/conversations/{cid}/messages/{seq}", tag = "messages", params(("cid" = String, Path, description = "conversation id"), ("seq" = i64, Path, description = "message seq")), request_body = crate::wire::EditMessage, responses((status = 200, body = crate::wire::MessageChanged)))]
pub async fn edit_message(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, seq)): ApiPath<(String, i64)>,
    ApiJson(req): ApiJson<EditMessage>,
) -> Result<Json<MessageChanged>, ApiError> {
    let device = rest_device(&headers);
    let event_seq = gw.edit_message(&user, &device, &cid, seq, req.body).await?;
    Ok(Json(MessageChanged {
        conversation_id: cid,
        seq,
        event_seq,
    }))
}

/// `DELETE /v1/conversations/{cid}/messages/{seq}` (author, owner, admin).
#[utoipa::path(delete, path = "/v1/conversations/{cid}/messages/{seq}", tag = "messages", params(("cid" = String, Path, description = "conversation id"), ("seq" = i64, Path, description = "message seq")), responses((status = 200, body = crate::wire::MessageChanged)))]
pub async fn delete_message(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, seq)): ApiPath<(String, i64)>,
) -> Result<Json<MessageChanged>, ApiError> {
    let device = rest_device(&headers);
    let event_seq = gw.delete_message(&user, &device, &cid, seq).await?;
    Ok(Json(MessageChanged {
        conversation_id: cid,
        seq,
        event_seq,
    }))
}

/// `PUT /v1/conversations/{cid}/messages/{seq}/reactions/{emoji}`.
#[utoipa::path(put, path = "/v1/conversations/{cid}/messages/{seq}/reactions/{emoji}", tag = "messages", params(("cid" = String, Path, description = "conversation id"), ("seq" = i64, Path, description = "message seq"), ("emoji" = String, Path)), responses((status = 200, body = crate::wire::Changed)))]
pub async fn add_reaction(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, seq, emoji)): ApiPath<(String, i64, String)>,
) -> Result<Json<Changed>, ApiError> {
    let device = rest_device(&headers);
    let event_seq = gw.react(&user, &device, &cid, seq, &emoji, true).await?;
    Ok(done(&cid, event_seq))
}

/// `DELETE /v1/conversations/{cid}/messages/{seq}/reactions/{emoji}`.
#[utoipa::path(delete, path = "/v1/conversations/{cid}/messages/{seq}/reactions/{emoji}", tag = "messages", params(("cid" = String, Path, description = "conversation id"), ("seq" = i64, Path, description = "message seq"), ("emoji" = String, Path)), responses((status = 200, body = crate::wire::Changed)))]
pub async fn remove_reaction(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, seq, emoji)): ApiPath<(String, i64, String)>,
) -> Result<Json<Changed>, ApiError> {
    let device = rest_device(&headers);
    let event_seq = gw.react(&user, &device, &cid, seq, &emoji, false).await?;
    Ok(done(&cid, event_seq))
}

/// `PUT /v1/conversations/{cid}/messages/{seq}/pin`: pin for everyone.
#[utoipa::path(put, path = "/v1/conversations/{cid}/messages/{seq}/pin", tag = "messages", params(("cid" = String, Path, description = "conversation id"), ("seq" = i64, Path, description = "message seq")), responses((status = 200, body = crate::wire::Changed)))]
pub async fn pin(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, seq)): ApiPath<(String, i64)>,
) -> Result<Json<Changed>, ApiError> {
    let device = rest_device(&headers);
    let event_seq = gw.pin(&user, &device, &cid, seq, true).await?;
    Ok(done(&cid, event_seq))
}

/// `DELETE /v1/conversations/{cid}/messages/{seq}/pin`.
#[utoipa::path(delete, path = "/v1/conversations/{cid}/messages/{seq}/pin", tag = "messages", params(("cid" = String, Path, description = "conversation id"), ("seq" = i64, Path, description = "message seq")), responses((status = 200, body = crate::wire::Changed)))]
pub async fn unpin(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, seq)): ApiPath<(String, i64)>,
) -> Result<Json<Changed>, ApiError> {
    let device = rest_device(&headers);
    let event_seq = gw.pin(&user, &device, &cid, seq, false).await?;
    Ok(done(&cid, event_seq))
}

/// `POST /v1/conversations/{cid}/read`: read up to seq, for all devices.
#[utoipa::path(post, path = "/v1/conversations/{cid}/read", tag = "receipts", params(("cid" = String, Path, description = "conversation id")), request_body = crate::wire::ReadUpTo, responses((status = 200, body = crate::wire::Changed)))]
pub async fn mark_read(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath(cid): ApiPath<String>,
    ApiJson(req): ApiJson<ReadUpTo>,
) -> Result<Json<Changed>, ApiError> {
    let device = rest_device(&headers);
    let event_seq = gw
        .receipt(&user, &device, &cid, req.seq, Receipt::Read)
        .await?;
    Ok(done(&cid, event_seq))
}

/// `GET /v1/conversations/{cid}/messages/{seq}/receipts`.
#[utoipa::path(get, path = "/v1/conversations/{cid}/messages/{seq}/receipts", tag = "receipts", params(("cid" = String, Path, description = "conversation id"), ("seq" = i64, Path, description = "message seq")), responses((status = 200, body = crate::wire::Receipts)))]
pub async fn receipts(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath((cid, seq)): ApiPath<(String, i64)>,
) -> Result<Json<Receipts>, ApiError> {
    let r = gw.receipts(&user, &cid, seq).await?;
    Ok(Json(Receipts {
        conversation_id: cid,
        seq,
        delivered_to: r.delivered_to,
        read_by: r.read_by,
    }))
}
