//! REST handlers for conversations: create, read, list, update, members,
//! roles and the caller's mute setting.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use store::Page;

use crate::api::done;
use crate::api::extract::{ApiJson, ApiPath, AppState, User, rest_device};
use crate::error::ApiError;
use crate::wire::{
    AddMember, ChangeRole, Changed, ConversationDetails, ConversationList, ConversationSummary,
    CreateConversation, CreatedConversation, MemberInfo, Message, Mute, UpdateConversation,
};

#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", request_body = crate::wire::CreateConversation, responses((status = 201, body = crate::wire::CreatedConversation), (status = 200, description = "the existing direct conversation", body = crate::wire::CreatedConversation)))]
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
    let body = CreatedConversation {
        role: members
            .iter()
            .find(|m| m.user_id == user.sub)
            .map(|m| m.role.clone()),
        members: members
            .iter()
            .map(|m| MemberInfo {
                user_id: m.user_id.clone(),
                role: m.role.clone(),
                last_read_seq: -1,
                last_delivered_seq: None,
            })
            .collect(),
        conversation_id: cid,
        kind: req.kind,
        name: req.name,
        last_seq: seq,
    };
    Ok((status, Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/conversations/{cid}", tag = "conversations", params(("cid" = String, Path, description = "conversation id")), responses((status = 200, body = crate::wire::ConversationDetails)))]
pub async fn get_conversation(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath(cid): ApiPath<String>,
) -> Result<Json<ConversationDetails>, ApiError> {
    let me = gw.require_member(&cid, &user.sub).await?;
    gw.read_your_writes(&cid, false).await?;
    let c = gw.stored_conversation(&cid).await?;
    let members = gw.store.members(&cid).await?;
    Ok(Json(ConversationDetails {
        conversation_id: c.conversation_id,
        kind: c.kind,
        name: c.name,
        description: c.description,
        created_by: c.created_by,
        created_at: crate::wire::rfc3339(c.created_at),
        role: me.role,
        last_seq: c.last_seq,
        members: members.iter().map(MemberInfo::from).collect(),
        pinned: c.pinned,
    }))
}

/// Unread messages are counted up to this many; clients show "999+".
const UNREAD_CAP: usize = 999;

#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", responses((status = 200, body = crate::wire::ConversationList)))]
pub async fn list_conversations(
    State(gw): State<AppState>,
    User(user): User,
) -> Result<Json<ConversationList>, ApiError> {
    let mut out = Vec::new();
    // This node's own writes first (a mute, a read); read the list again
    // only if one of them was still on its way to the store.
    gw.user_memberships_settled(&user.sub).await?;
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
        let mut last_message = match c.last_message_seq {
            Some(seq) => gw.store.message(&c.conversation_id, seq).await?,
            None => None,
        };
        gw.open_messages(last_message.as_mut_slice()).await?;
        let last_message = last_message.as_ref().map(Message::from);
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
            ConversationSummary {
                peer,
                conversation_id: c.conversation_id,
                kind: c.kind,
                name: c.name,
                role: uc.role,
                last_seq: c.last_seq,
                unread_count: unread,
                last_message,
                muted: uc.muted,
                last_activity_at: crate::wire::rfc3339(c.last_activity_at),
            },
        ));
    }
    out.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    Ok(Json(ConversationList {
        conversations: out.into_iter().map(|(_, v)| v).collect(),
    }))
}

/// `PATCH /v1/conversations/{cid}`: rename or describe (owner/admin).
#[utoipa::path(patch, path = "/v1/conversations/{cid}", tag = "conversations", params(("cid" = String, Path, description = "conversation id")), request_body = crate::wire::UpdateConversation, responses((status = 200, body = crate::wire::Changed)))]
pub async fn update_conversation(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath(cid): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateConversation>,
) -> Result<Json<Changed>, ApiError> {
    let device = rest_device(&headers);
    let seq = gw
        .update_conversation(&user, &device, &cid, req.name, req.description)
        .await?;
    Ok(done(&cid, Some(seq)))
}

/// `POST /v1/conversations/{cid}/members` (owner/admin).
#[utoipa::path(post, path = "/v1/conversations/{cid}/members", tag = "members", params(("cid" = String, Path, description = "conversation id")), request_body = crate::wire::AddMember, responses((status = 201, body = crate::wire::Changed)))]
pub async fn add_member(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath(cid): ApiPath<String>,
    ApiJson(req): ApiJson<AddMember>,
) -> Result<(axum::http::StatusCode, Json<Changed>), ApiError> {
    let device = rest_device(&headers);
    let seq = gw
        .add_member(&user, &device, &cid, &req.user_id, req.role)
        .await?;
    Ok((axum::http::StatusCode::CREATED, done(&cid, Some(seq))))
}

/// `DELETE /v1/conversations/{cid}/members/{uid}`: leave, or remove someone.
#[utoipa::path(delete, path = "/v1/conversations/{cid}/members/{uid}", tag = "members", params(("cid" = String, Path, description = "conversation id"), ("uid" = String, Path, description = "user id")), responses((status = 200, body = crate::wire::Changed)))]
pub async fn remove_member(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, uid)): ApiPath<(String, String)>,
) -> Result<Json<Changed>, ApiError> {
    let device = rest_device(&headers);
    let seq = gw.remove_member(&user, &device, &cid, &uid).await?;
    Ok(done(&cid, Some(seq)))
}

/// `PUT /v1/conversations/{cid}/members/{uid}/role` (owner).
#[utoipa::path(put, path = "/v1/conversations/{cid}/members/{uid}/role", tag = "members", params(("cid" = String, Path, description = "conversation id"), ("uid" = String, Path, description = "user id")), request_body = crate::wire::ChangeRole, responses((status = 200, body = crate::wire::Changed)))]
pub async fn change_role(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath((cid, uid)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<ChangeRole>,
) -> Result<Json<Changed>, ApiError> {
    let device = rest_device(&headers);
    let seq = gw
        .change_role(&user, &device, &cid, &uid, &req.role)
        .await?;
    Ok(done(&cid, Some(seq)))
}

/// `PUT /v1/conversations/{cid}/mute`: mute or unmute for the caller.
#[utoipa::path(put, path = "/v1/conversations/{cid}/mute", tag = "members", params(("cid" = String, Path, description = "conversation id")), request_body = crate::wire::Mute, responses((status = 200, body = crate::wire::Changed)))]
pub async fn mute(
    State(gw): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    ApiPath(cid): ApiPath<String>,
    ApiJson(req): ApiJson<Mute>,
) -> Result<Json<Changed>, ApiError> {
    let device = rest_device(&headers);
    let seq = gw.set_muted(&user, &device, &cid, req.muted).await?;
    Ok(done(&cid, Some(seq)))
}
