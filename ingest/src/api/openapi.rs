//! `GET /openapi.json`: the REST contract, generated with utoipa from the
//! handlers' annotations and the shapes below. The shapes mirror the JSON
//! the handlers write; schemathesis checks every answer against them
//! (`scripts/test`).

#![allow(dead_code)] // the shapes exist for the document only

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error: `{"error":{"code","message"}}`.
#[derive(ToSchema, Serialize)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema, Serialize)]
pub struct ErrorDetail {
    /// snake_case, e.g. `forbidden`, `invalid_json`, `rate_limited`.
    code: String,
    message: String,
}

#[derive(ToSchema)]
pub struct DevTokenRequest {
    #[schema(pattern = r"^[A-Za-z0-9._@:+-]{1,128}$")]
    user_id: String,
    name: Option<String>,
}

#[derive(ToSchema)]
pub struct Token {
    token: String,
}

#[derive(ToSchema)]
pub struct CreateConversation {
    #[schema(pattern = "^(direct|group)$")]
    kind: String,
    name: Option<String>,
    members: Vec<String>,
}

#[derive(ToSchema)]
pub struct MemberInfo {
    user_id: String,
    /// owner, admin or member.
    role: String,
    last_read_seq: i64,
    last_delivered_seq: Option<i64>,
}

#[derive(ToSchema)]
pub struct CreatedConversation {
    conversation_id: String,
    kind: String,
    name: Option<String>,
    role: Option<String>,
    members: Vec<MemberInfo>,
    last_seq: i64,
}

#[derive(ToSchema)]
pub struct Message {
    conversation_id: String,
    seq: i64,
    message_id: String,
    sender_id: String,
    client_msg_id: Option<String>,
    /// Absent once deleted.
    body: Option<String>,
    sent_at: String,
    edited_at: Option<String>,
    deleted: bool,
    reply_to: Option<i64>,
    mentions: Vec<String>,
    /// emoji → the users who reacted with it.
    reactions: BTreeMap<String, Vec<String>>,
}

#[derive(ToSchema)]
pub struct ConversationSummary {
    conversation_id: String,
    kind: String,
    name: Option<String>,
    role: String,
    last_seq: i64,
    unread_count: i64,
    last_message: Option<Message>,
    muted: bool,
    last_activity_at: String,
    /// The other member of a direct conversation.
    peer: Option<String>,
}

#[derive(ToSchema)]
pub struct ConversationList {
    conversations: Vec<ConversationSummary>,
}

#[derive(ToSchema)]
pub struct ConversationDetails {
    conversation_id: String,
    kind: String,
    name: Option<String>,
    description: Option<String>,
    created_by: String,
    created_at: String,
    role: String,
    last_seq: i64,
    members: Vec<MemberInfo>,
}

#[derive(ToSchema)]
pub struct PostMessage {
    #[schema(pattern = r"^[A-Za-z0-9._@:+-]{1,128}$")]
    client_msg_id: String,
    /// At most 16 KiB, not blank.
    #[schema(min_length = 1, max_length = 16384)]
    body: String,
    reply_to: Option<i64>,
    mentions: Option<Vec<String>>,
}

#[derive(ToSchema)]
pub struct Ack {
    client_msg_id: String,
    seq: i64,
    message_id: String,
    conversation_id: String,
    sent_at: String,
}

#[derive(ToSchema)]
pub struct MessagePage {
    messages: Vec<Message>,
    has_more: bool,
}

#[derive(ToSchema)]
pub struct UpdateConversation {
    name: Option<String>,
    description: Option<String>,
}

#[derive(ToSchema)]
pub struct AddMember {
    #[schema(pattern = r"^[A-Za-z0-9._@:+-]{1,128}$")]
    user_id: String,
    #[schema(pattern = "^(owner|admin|member)$")]
    role: Option<String>,
}

#[derive(ToSchema)]
pub struct ChangeRole {
    #[schema(pattern = "^(owner|admin|member)$")]
    role: String,
}

#[derive(ToSchema)]
pub struct Mute {
    muted: bool,
}

#[derive(ToSchema)]
pub struct EditMessage {
    #[schema(min_length = 1, max_length = 16384)]
    body: String,
}

#[derive(ToSchema)]
pub struct ReadUpTo {
    seq: i64,
}

/// The event a change produced; `event_seq` is null when nothing changed.
#[derive(ToSchema)]
pub struct Changed {
    conversation_id: String,
    event_seq: Option<i64>,
}

#[derive(ToSchema)]
pub struct MessageChanged {
    conversation_id: String,
    seq: i64,
    event_seq: i64,
}

#[derive(ToSchema)]
pub struct Receipts {
    conversation_id: String,
    seq: i64,
    delivered_to: Vec<String>,
    read_by: Vec<String>,
}

#[derive(ToSchema)]
pub struct Presence {
    user_id: String,
    online: bool,
    /// Null while online or if never seen.
    last_seen: Option<String>,
}

#[derive(ToSchema)]
pub struct RegisterDevice {
    #[schema(pattern = r"^[A-Za-z0-9._@:+-]{1,128}$")]
    device_id: String,
    #[schema(pattern = "^(ios|android|web|desktop)$")]
    platform: String,
    #[schema(min_length = 1, max_length = 4096)]
    push_token: Option<String>,
}

#[derive(ToSchema)]
pub struct DeviceChanged {
    device_id: String,
    event_seq: i64,
}

#[derive(ToSchema)]
pub struct SearchHit {
    conversation_id: String,
    seq: i64,
    message_id: String,
    sender_id: String,
    sent_at: String,
    /// HTML-escaped, matches wrapped in `<mark>`.
    snippet: String,
    score: f64,
}

#[derive(ToSchema)]
pub struct SearchResults {
    hits: Vec<SearchHit>,
    has_more: bool,
    next_offset: Option<i64>,
}

#[derive(ToSchema)]
pub struct Health {
    status: String,
}

#[derive(ToSchema)]
pub struct Ready {
    status: String,
    node: String,
    sockets: i64,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatflow",
        description = "The chatflow client API (REST). Live events, typing and presence \
                       travel on the WebSocket at /v1/ws; see docs/PROTOCOL.md."
    ),
    paths(
        crate::api::people::dev_token,
        crate::api::conversations::create_conversation,
        crate::api::conversations::list_conversations,
        crate::api::conversations::get_conversation,
        crate::api::conversations::update_conversation,
        crate::api::conversations::add_member,
        crate::api::conversations::remove_member,
        crate::api::conversations::change_role,
        crate::api::conversations::mute,
        crate::api::messages::post_message,
        crate::api::messages::history,
        crate::api::messages::edit_message,
        crate::api::messages::delete_message,
        crate::api::messages::add_reaction,
        crate::api::messages::remove_reaction,
        crate::api::messages::mark_read,
        crate::api::messages::receipts,
        crate::api::search::search,
        crate::api::people::presence,
        crate::api::people::register_device,
        crate::api::people::remove_device,
        crate::api::ops::healthz,
        crate::api::ops::readyz,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Conventions),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// The bearer scheme, and the error responses every operation may give.
struct Conventions;

const ERRORS: [(&str, &str); 9] = [
    ("400", "invalid input"),
    ("401", "no token, or a bad one"),
    ("403", "not allowed"),
    ("404", "unknown id"),
    ("409", "conflicts with the current state"),
    ("413", "too large"),
    ("415", "not JSON"),
    ("429", "rate limited (see Retry-After)"),
    ("503", "a dependency is unavailable; retry later"),
];

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, description) in ERRORS {
                    let response = ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build();
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert(response.into());
                }
            }
        }
    }
}

pub async fn document() -> (StatusCode, Json<utoipa::openapi::OpenApi>) {
    (StatusCode::OK, Json(ApiDoc::openapi()))
}
