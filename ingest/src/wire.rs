//! The REST contract (PROTOCOL.md, REST) as types: each request body is
//! what its handler deserializes and each answer what it serializes, and
//! both are the schemas of `GET /openapi.json`. One source of truth: a
//! field added here is in the answer and in the document.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Times on the wire: RFC 3339 in UTC, with milliseconds.
pub fn rfc3339(millis: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Every error: `{"error":{"code","message"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// snake_case, e.g. `forbidden`, `invalid_json`, `rate_limited`.
    pub code: String,
    pub message: String,
}

#[derive(Deserialize, ToSchema)]
pub struct DevTokenRequest {
    #[schema(pattern = r"^[A-Za-z0-9._@:+-]{1,128}$")]
    pub user_id: String,
    pub name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Token {
    pub token: String,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateConversation {
    #[schema(pattern = "^(direct|group)$")]
    pub kind: String,
    pub name: Option<String>,
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MemberInfo {
    pub user_id: String,
    /// owner, admin or member.
    pub role: String,
    pub last_read_seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivered_seq: Option<i64>,
}

impl From<&store::Member> for MemberInfo {
    fn from(m: &store::Member) -> Self {
        MemberInfo {
            user_id: m.user_id.clone(),
            role: m.role.clone(),
            last_read_seq: m.last_read_seq,
            last_delivered_seq: Some(m.last_delivered_seq),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedConversation {
    pub conversation_id: String,
    pub kind: String,
    pub name: Option<String>,
    pub role: Option<String>,
    pub members: Vec<MemberInfo>,
    pub last_seq: i64,
}

/// A message as it is now: edits, deletion and reactions folded in.
#[derive(Serialize, ToSchema)]
pub struct Message {
    pub conversation_id: String,
    pub seq: i64,
    pub message_id: String,
    pub sender_id: String,
    pub client_msg_id: String,
    /// Absent once deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub sent_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    pub deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    pub mentions: Vec<String>,
    pub attachments: Vec<Attachment>,
    /// emoji → the users who reacted with it.
    pub reactions: BTreeMap<String, Vec<String>>,
    /// Who pinned it for the conversation (absent: not pinned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_at: Option<String>,
}

impl From<&store::Message> for Message {
    fn from(m: &store::Message) -> Self {
        Message {
            conversation_id: m.conversation_id.clone(),
            seq: m.seq,
            message_id: m.message_id.clone(),
            sender_id: m.sender_id.clone(),
            client_msg_id: m.client_msg_id.clone(),
            body: m.body.clone(),
            sent_at: rfc3339(m.sent_at),
            edited_at: m.edited_at.map(rfc3339),
            deleted: m.deleted,
            reply_to: m.reply_to,
            mentions: m.mentions.clone(),
            attachments: m.attachments.iter().map(Attachment::from).collect(),
            reactions: m.reactions.clone(),
            pinned_by: m.pinned_by.clone(),
            pinned_at: m.pinned_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ConversationSummary {
    pub conversation_id: String,
    pub kind: String,
    pub name: Option<String>,
    pub role: String,
    pub last_seq: i64,
    pub unread_count: usize,
    pub last_message: Option<Message>,
    pub muted: bool,
    pub last_activity_at: String,
    /// The other member of a direct conversation.
    pub peer: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<ConversationSummary>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationDetails {
    pub conversation_id: String,
    pub kind: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub role: String,
    pub last_seq: i64,
    pub members: Vec<MemberInfo>,
    /// Seqs of the pinned messages, the most recently pinned first.
    pub pinned: Vec<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct PostMessage {
    #[schema(pattern = r"^[A-Za-z0-9._@:+-]{1,128}$")]
    pub client_msg_id: String,
    /// At most 16 KiB, not blank unless files are attached.
    #[schema(max_length = 16384)]
    #[serde(default)]
    pub body: String,
    pub reply_to: Option<i64>,
    #[serde(default)]
    pub mentions: Vec<String>,
    /// Send without a push notification (it still counts as unread).
    #[serde(default)]
    pub silent: bool,
    /// At most 10 files uploaded with `POST /v1/uploads`.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub attachments: Vec<crate::uploads::AttachmentRef>,
}

/// A file sent with a message; `GET …/messages/{seq}/attachments/{id}`
/// gives a link to its bytes.
#[derive(Serialize, ToSchema)]
pub struct Attachment {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    /// A small preview of an image, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
}

impl From<&schemas::Attachment> for Attachment {
    fn from(a: &schemas::Attachment) -> Self {
        Attachment {
            id: a.id.clone(),
            name: a.name.clone(),
            content_type: a.content_type.clone(),
            size: a.size,
            thumbnail: a.thumbnail.clone(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewUpload {
    /// The file's name, 1 to 255 bytes.
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    /// Its media type (images but SVG, audio, video, PDF, text, office
    /// documents, zip, application/octet-stream).
    pub content_type: String,
    /// Its size in bytes: the most the upload takes.
    #[schema(minimum = 1)]
    pub size: u64,
}

/// Where to `PUT` the file's bytes (with `Content-Type` as announced)
/// before `expires_at`; a relative `upload_url` is on this API's origin.
#[derive(Serialize, ToSchema)]
pub struct UploadTicket {
    pub upload_id: String,
    pub upload_url: String,
    pub method: &'static str,
    pub expires_at: String,
    pub max_bytes: u64,
}

/// An attachment and where to download it from until `expires_at`.
#[derive(Serialize, ToSchema)]
pub struct AttachmentLink {
    pub conversation_id: String,
    pub seq: i64,
    #[serde(flatten)]
    pub attachment: Attachment,
    pub url: String,
    pub expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateConversation {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct AddMember {
    #[schema(pattern = r"^[A-Za-z0-9._@:+-]{1,128}$")]
    pub user_id: String,
    #[schema(pattern = "^(owner|admin|member)$")]
    pub role: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct ChangeRole {
    #[schema(pattern = "^(owner|admin|member)$")]
    pub role: String,
}

#[derive(Deserialize, ToSchema)]
pub struct Mute {
    pub muted: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct EditMessage {
    #[schema(min_length = 1, max_length = 16384)]
    pub body: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ReadUpTo {
    pub seq: i64,
}

/// The event a change produced; `event_seq` is null when nothing changed.
#[derive(Serialize, ToSchema)]
pub struct Changed {
    pub conversation_id: String,
    pub event_seq: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageChanged {
    pub conversation_id: String,
    pub seq: i64,
    pub event_seq: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Receipts {
    pub conversation_id: String,
    pub seq: i64,
    pub delivered_to: Vec<String>,
    pub read_by: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterDevice {
    #[schema(pattern = r"^[A-Za-z0-9._@:+-]{1,128}$")]
    pub device_id: String,
    #[schema(pattern = "^(ios|android|web|desktop)$")]
    pub platform: String,
    #[schema(min_length = 1, max_length = 4096)]
    pub push_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeviceChanged {
    pub device_id: String,
    pub event_seq: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SearchHit {
    pub conversation_id: String,
    pub seq: i64,
    pub message_id: String,
    pub sender_id: String,
    pub sent_at: String,
    /// HTML-escaped, matches wrapped in `<mark>`.
    pub snippet: String,
    pub score: f32,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    pub has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

/// One administrative action (`GET /v1/admin/audit`).
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    pub at: String,
    pub actor: String,
    /// The event kind: conversation_updated, member_added, member_removed,
    /// role_changed, message_deleted, message_pinned, device_removed.
    pub action: String,
    /// The conversation (a user's own stream `user:<id>` for devices).
    pub conversation_id: String,
    /// The event's seq.
    pub seq: i64,
    /// Whom or what it acted on: a user id, a message seq, a device id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The new role, the fields changed, pinned or unpinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The actor was not a member: a global admin acted.
    pub global_admin: bool,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub has_more: bool,
    /// Pass as `after` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// One day of `GET /v1/admin/analytics`.
#[derive(Serialize, ToSchema)]
pub struct AnalyticsDay {
    /// YYYY-MM-DD (UTC).
    pub date: String,
    /// Users who posted, read or reacted that day.
    pub active_users: usize,
    /// Messages posted that day per conversation kind (direct, group).
    pub messages: std::collections::BTreeMap<String, u64>,
}

#[derive(Serialize, ToSchema)]
pub struct TopConversation {
    pub conversation_id: String,
    pub kind: String,
    pub messages: u64,
}

#[derive(Serialize, ToSchema)]
pub struct AnalyticsReport {
    /// The first and last day counted, YYYY-MM-DD (UTC).
    pub from: String,
    pub to: String,
    pub days: Vec<AnalyticsDay>,
    /// Distinct users active on any day of the range (30 days: monthly
    /// active users).
    pub active_users: usize,
    /// The conversations with the most messages in the range, most first
    /// (at most 10).
    pub top_conversations: Vec<TopConversation>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    pub status: &'static str,
    pub node: String,
    pub sockets: usize,
}

/// The answer to a send, the same for every retry of one client_msg_id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Ack {
    pub client_msg_id: String,
    pub seq: i64,
    pub message_id: String,
    pub conversation_id: String,
    pub sent_at: String,
}

/// An erasure done: nothing the user sealed opens any more.
#[derive(Serialize, ToSchema)]
pub struct UserErased {
    pub user_id: String,
    /// The `user_erased` event on the user's stream.
    pub event_seq: i64,
    pub erased_at: String,
    pub files_removed: usize,
    pub devices_removed: usize,
}

/// An export of a user's data: `running`, then `ready` (with a link, for
/// a while), `failed` or, once swept, `expired`.
#[derive(Serialize, ToSchema)]
pub struct ExportState {
    pub user_id: String,
    pub export_id: String,
    pub status: String,
    pub status_url: String,
    /// JSON lines in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
