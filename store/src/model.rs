use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `CONV#<id>` / `META`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub conversation_id: String,
    pub kind: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    /// The highest event seq applied to this conversation.
    pub last_seq: i64,
    /// The seq of the newest message, if any.
    pub last_message_seq: Option<i64>,
    pub last_activity_at: i64,
    /// Seqs of the pinned messages, the most recently pinned first.
    #[serde(default)]
    pub pinned: Vec<i64>,
}

/// `AUDIT#<day>` / `<at>#<seq>#<conversation>`: one administrative action
/// (`GET /v1/admin/audit`). `day` counts days since the Unix epoch (UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Server time of the event, ms since the epoch.
    pub at: i64,
    pub conversation_id: String,
    pub seq: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
    /// The actor was not a member: a global admin acted.
    pub global_admin: bool,
}

impl AuditEntry {
    /// Where the entry sorts: by time, then by its place in the log.
    pub fn cursor(&self) -> String {
        crate::apply::audit_sk(self.at, self.seq, &self.conversation_id)
    }
}

/// A query of the audit log: entries at `from`..=`to` (ms), optionally of
/// one actor and one action, after the entry with `after` as its cursor.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub from: i64,
    pub to: i64,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub after: Option<String>,
    pub limit: usize,
}

/// A page of the audit log, oldest first; `next` is the cursor of the last
/// entry when more follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next: Option<String>,
}

/// `DAYSTAT#<day>` / `<conversation>`: one conversation's messages on one
/// day (only that conversation's events write it, in log order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationDay {
    pub conversation_id: String,
    pub kind: String,
    pub messages: u64,
}

/// The figures of `GET /v1/admin/analytics` for a range of days.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Analytics {
    /// Per day (since the epoch, UTC): users active that day and messages
    /// per conversation kind.
    pub days: Vec<DayFigures>,
    /// Distinct users active on any day of the range.
    pub active_users: usize,
    /// The conversations with the most messages in the range, most first.
    pub top_conversations: Vec<ConversationDay>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayFigures {
    pub day: i64,
    pub active_users: usize,
    pub messages: BTreeMap<String, u64>,
}

/// `CONV#<id>` / `MEMBER#<user>`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub user_id: String,
    pub role: String,
    pub joined_seq: i64,
    pub last_read_seq: i64,
    pub last_delivered_seq: i64,
}

/// `CONV#<id>` / `MSG#<seq>`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub conversation_id: String,
    pub seq: i64,
    pub message_id: String,
    pub sender_id: String,
    pub client_msg_id: String,
    /// None once deleted.
    pub body: Option<String>,
    pub sent_at: i64,
    pub edited_at: Option<i64>,
    pub deleted: bool,
    pub reply_to: Option<i64>,
    pub mentions: Vec<String>,
    /// The files sent with it (none once deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<schemas::Attachment>,
    /// The id of the sender's key the body and the attachments' names and
    /// thumbnails are sealed with (`None`: plaintext); see `vault`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
    /// emoji → users, in the order they reacted.
    pub reactions: BTreeMap<String, Vec<String>>,
    /// Who pinned the message for the conversation, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_at: Option<i64>,
}

/// `CONV#<id>` / `COLD`: which of the conversation's messages moved to the
/// archive (written by the cold move only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdIndex {
    /// A message at or below this seq that the hot store lacks is in one
    /// of `segments`; a hot copy of such a message (changed after it
    /// moved) wins over the archived one.
    pub through_seq: i64,
    /// In seq order; their seq ranges are disjoint.
    pub segments: Vec<ColdSegment>,
}

/// One archived object of a conversation's messages: those sent in one
/// time bucket (a message never goes to an earlier bucket than the one
/// before it, so buckets are seq-ordered).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdSegment {
    /// The bucket's start, ms since the epoch: it names the object.
    pub bucket: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub messages: usize,
    /// Bumped on every rewrite, so a reader's cache knows a stale copy.
    pub version: u64,
}

/// `USER#<user>` / `CONV#<id>`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConversation {
    pub user_id: String,
    pub conversation_id: String,
    pub role: String,
    pub muted: bool,
}

/// `USER#<user>` / `DEVICE#<device>`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub user_id: String,
    pub device_id: String,
    /// conversation_id → the last seq the device acknowledged.
    pub cursors: BTreeMap<String, i64>,
    /// Set when the device is registered (`POST /v1/devices`).
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub push_token: Option<String>,
}

/// One event's writes to one conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct EventWrite {
    pub conversation_id: String,
    pub seq: i64,
    /// Server time of the event.
    pub at: i64,
    pub mutations: Vec<Mutation>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    /// Creates the conversation (a no-op if it exists) with its members.
    CreateConversation {
        kind: String,
        name: Option<String>,
        description: Option<String>,
        created_by: String,
        members: Vec<(String, String)>,
    },
    UpdateConversation {
        name: Option<String>,
        description: Option<String>,
    },
    PutMember {
        user_id: String,
        role: String,
    },
    RemoveMember {
        user_id: String,
    },
    /// A new message at the event's seq; ignored when the sender already
    /// has a message with the same client_msg_id (a retried send).
    PostMessage {
        message_id: String,
        sender_id: String,
        client_msg_id: String,
        body: String,
        reply_to: Option<i64>,
        mentions: Vec<String>,
        attachments: Vec<schemas::Attachment>,
        sealed: Option<String>,
    },
    EditMessage {
        seq: i64,
        body: String,
        sealed: Option<String>,
    },
    DeleteMessage {
        seq: i64,
    },
    AddReaction {
        seq: i64,
        emoji: String,
        user_id: String,
    },
    RemoveReaction {
        seq: i64,
        emoji: String,
        user_id: String,
    },
    MarkRead {
        user_id: String,
        seq: i64,
    },
    MarkDelivered {
        user_id: String,
        device_id: String,
        seq: i64,
    },
    SetMuted {
        user_id: String,
        muted: bool,
    },
    /// Pins the message at `seq` for the conversation (a deleted or
    /// missing message is never pinned), or unpins it.
    PinMessage {
        seq: i64,
        pinned: bool,
        user_id: String,
    },
    /// A user's device (on the user's own stream, outside any conversation).
    PutDevice {
        user_id: String,
        device_id: String,
        platform: String,
        push_token: Option<String>,
    },
    RemoveDevice {
        user_id: String,
        device_id: String,
    },
    /// An entry in the audit log for an administrative event. Applied
    /// before the event's other mutations, so that it sees the state the
    /// action was taken in: whether the actor was a member (else a global
    /// admin acted), and whose message a delete removed (a sender deleting
    /// their own message is not an administrative action).
    Audit {
        actor: String,
        action: String,
        target: Option<String>,
        detail: Option<String>,
    },
    /// Puts an archived message back in the hot store (when absent) so
    /// that the mutations after it in the same event can change it;
    /// `None`: the archive was asked and does not have it.
    RestoreMessage {
        seq: i64,
        message: Option<Box<Message>>,
    },
}

/// Which messages a history read returns: those with `after < seq < before`,
/// at most `limit`, the newest ones when only `before` (or nothing) is set,
/// the oldest ones after `after` otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessagePage {
    /// In seq order.
    pub messages: Vec<Message>,
    /// More messages exist beyond the page in the direction it was read.
    pub has_more: bool,
}
