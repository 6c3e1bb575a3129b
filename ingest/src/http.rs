//! REST handlers (PROTOCOL.md, REST).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use store::Page;

use crate::auth::Claims;
use crate::error::ApiError;
use crate::frames;
use crate::gateway::{Gateway, NewMessage};
use crate::validate;

pub type AppState = Arc<Gateway>;

/// The authenticated caller.
pub struct User(pub Claims);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &AppState) -> Result<Self, Self::Rejection> {
        gw.auth.from_request(&parts.headers, None).map(User)
    }
}

/// `Json` whose rejections use the protocol's error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::too_large("request body is too large"))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::invalid(
                "invalid_content_type",
                "send Content-Type: application/json",
            )),
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::invalid("invalid_json", e.body_text()))
            }
            Err(e) => Err(ApiError::invalid("invalid_body", e.body_text())),
        }
    }
}

/// `Path` and `Query` with the protocol's error shape.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e: PathRejection| ApiError::invalid("invalid_path", e.body_text()))
    }
}

pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e: QueryRejection| ApiError::invalid("invalid_query", e.body_text()))
    }
}

/// The device a REST call acts from: `X-Device-Id`, or `api`.
pub(crate) fn rest_device(parts: &axum::http::HeaderMap) -> String {
    parts
        .get("x-device-id")
        .and_then(|v| v.to_str().ok())
        .filter(|d| validate::id(d).is_ok())
        .unwrap_or("api")
        .to_owned()
}

#[derive(Deserialize)]
pub struct DevTokenRequest {
    user_id: String,
    name: Option<String>,
}

#[utoipa::path(post, path = "/v1/dev/token", tag = "auth", security(()), request_body = crate::openapi::DevTokenRequest, responses((status = 200, body = crate::openapi::Token)))]
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

#[derive(Deserialize)]
pub struct CreateConversation {
    kind: String,
    name: Option<String>,
    #[serde(default)]
    members: Vec<String>,
}

#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", request_body = crate::openapi::CreateConversation, responses((status = 201, body = crate::openapi::CreatedConversation), (status = 200, description = "the existing direct conversation", body = crate::openapi::CreatedConversation)))]
pub async fn create_conversation(
    State(gw): State<AppState>,
    User(user): User,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<CreateConversation>,
) -> Result<Response, ApiError> {
    gw.check_rate(&user.sub)?;
    let device = rest_device(&headers);
    let (cid, created, members, seq) = gw
        .create_conversation(&user.sub, &device, &req.kind, req.name.clone(), req.members)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({
        "conversation_id": cid,
        "kind": req.kind,
        "name": req.name,
        "role": members.iter().find(|m| m.user_id == user.sub).map(|m| m.role.as_str()),
        "members": members.iter().map(|m| json!({"user_id": m.user_id, "role": m.role, "last_read_seq": -1})).collect::<Vec<_>>(),
        "last_seq": seq,
    });
    Ok((status, Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/conversations/{cid}", tag = "conversations", params(("cid" = String, Path, description = "conversation id")), responses((status = 200, body = crate::openapi::ConversationDetails)))]
pub async fn get_conversation(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath(cid): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let me = gw.require_member(&cid, &user.sub).await?;
    gw.read_your_writes(&cid, false).await?;
    let c = gw
        .store
        .conversation(&cid)
        .await?
        .ok_or_else(|| ApiError::not_found("no such conversation"))?;
    let members = gw.store.members(&cid).await?;
    Ok(Json(json!({
        "conversation_id": c.conversation_id,
        "kind": c.kind,
        "name": c.name,
        "description": c.description,
        "created_by": c.created_by,
        "created_at": frames::rfc3339(c.created_at),
        "role": me.role,
        "last_seq": c.last_seq,
        "members": members.iter().map(|m| json!({
            "user_id": m.user_id,
            "role": m.role,
            "last_read_seq": m.last_read_seq,
            "last_delivered_seq": m.last_delivered_seq,
        })).collect::<Vec<_>>(),
    })))
}

/// Unread messages are counted up to this many; clients show "999+".
const UNREAD_CAP: usize = 999;

#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", responses((status = 200, body = crate::openapi::ConversationList)))]
pub async fn list_conversations(
    State(gw): State<AppState>,
    User(user): User,
) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    // This node's own writes first (a mute, a read); read the list again
    // only if one of them was still on its way to the store.
    let mut conversations = gw.store.user_conversations(&user.sub).await?;
    let mut waited = false;
    for uc in &conversations {
        waited |= gw.read_your_writes(&uc.conversation_id, false).await?;
    }
    if waited {
        conversations = gw.store.user_conversations(&user.sub).await?;
    }
    for uc in conversations {
        let Some(c) = gw.store.conversation(&uc.conversation_id).await? else {
            continue;
        };
        let last_read = gw
            .store
            .member(&c.conversation_id, &user.sub)
            .await?
            .map_or(-1, |m| m.last_read_seq);
        // Read to the end (the common case): nothing to count.
        let unread = if last_read >= c.last_message_seq.unwrap_or(-1) {
            0
        } else {
            gw.store
                .messages(
                    &c.conversation_id,
                    Page {
                        after: Some(last_read),
                        before: None,
                        limit: UNREAD_CAP,
                    },
                )
                .await?
                .messages
                .iter()
                .filter(|m| m.sender_id != user.sub && !m.deleted)
                .count()
        };
        let last_message = match c.last_message_seq {
            Some(seq) => gw
                .store
                .message(&c.conversation_id, seq)
                .await?
                .map(|m| frames::message(&m)),
            None => None,
        };
        // A direct conversation is shown as the other person.
        let peer = if c.kind == "direct" {
            gw.store
                .members(&c.conversation_id)
                .await?
                .into_iter()
                .map(|m| m.user_id)
                .find(|u| *u != user.sub)
        } else {
            None
        };
        out.push((
            c.last_activity_at,
            json!({
                "peer": peer,
                "conversation_id": c.conversation_id,
                "kind": c.kind,
                "name": c.name,
                "role": uc.role,
                "last_seq": c.last_seq,
                "unread_count": unread,
                "last_message": last_message,
                "muted": uc.muted,
                "last_activity_at": frames::rfc3339(c.last_activity_at),
            }),
        ));
    }
    out.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    Ok(Json(
        json!({"conversations": out.into_iter().map(|(_, v)| v).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize)]
pub struct PostMessage {
    client_msg_id: String,
    body: String,
    reply_to: Option<i64>,
    #[serde(default)]
    mentions: Vec<String>,
}

#[utoipa::path(post, path = "/v1/conversations/{cid}/messages", tag = "messages", params(("cid" = String, Path, description = "conversation id")), request_body = crate::openapi::PostMessage, responses((status = 201, body = crate::openapi::Ack)))]
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

#[utoipa::path(get, path = "/v1/conversations/{cid}/messages", tag = "messages", params(("cid" = String, Path, description = "conversation id"), ("before" = Option<i64>, Query, description = "only messages below this seq"), ("after" = Option<i64>, Query, description = "only messages above this seq"), ("limit" = Option<i64>, Query, description = "1 to 200, default 50")), responses((status = 200, body = crate::openapi::MessagePage)))]
pub async fn history(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath(cid): ApiPath<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 200 {
        return Err(ApiError::invalid("invalid_limit", "limit is 1 to 200"));
    }
    gw.require_member(&cid, &user.sub).await?;
    gw.read_your_writes(&cid, false).await?;
    let page = gw
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
    Ok(Json(json!({
        "messages": page.messages.iter().map(frames::message).collect::<Vec<_>>(),
        "has_more": page.has_more,
    })))
}

#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses((status = 200, body = crate::openapi::Health)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "ops", security(()), responses((status = 200, body = crate::openapi::Ready)))]
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
