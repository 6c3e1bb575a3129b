//! The records carried on chatflow's topics. Field order follows the .avsc
//! files in `schemas/avro`, which are the source of truth.

use serde::{Deserialize, Serialize};

/// One chat action on `chat.events`, keyed by `conversation_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatEvent {
    pub event_id: String,
    pub conversation_id: String,
    /// Server time at ingest, milliseconds since the Unix epoch.
    pub occurred_at: i64,
    pub actor: Actor,
    pub payload: Payload,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: String,
    pub device_id: String,
}

/// The union branch of a [`ChatEvent`]. The order of the variants is the
/// order of the Avro union and must only ever be appended to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    ConversationCreated(ConversationCreated),
    ConversationUpdated(ConversationUpdated),
    MemberAdded(MemberAdded),
    MemberRemoved(MemberRemoved),
    MemberRoleChanged(MemberRoleChanged),
    MessagePosted(MessagePosted),
    MessageEdited(MessageEdited),
    MessageDeleted(MessageDeleted),
    ReactionAdded(ReactionAdded),
    ReactionRemoved(ReactionRemoved),
    ReadUpTo(ReadUpTo),
    DeliveredUpTo(DeliveredUpTo),
    MemberMuted(MemberMuted),
    DeviceRegistered(DeviceRegistered),
    DeviceRemoved(DeviceRemoved),
    MessagePinned(MessagePinned),
    UserErased(UserErased),
    ExportRequested(ExportRequested),
}

impl Payload {
    /// The client-facing event kind (PROTOCOL.md, `event.kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::ConversationCreated(_) => "conversation_created",
            Payload::ConversationUpdated(_) => "conversation_updated",
            Payload::MemberAdded(_) => "member_added",
            Payload::MemberRemoved(_) => "member_removed",
            Payload::MemberRoleChanged(_) => "role_changed",
            Payload::MessagePosted(_) => "message_posted",
            Payload::MessageEdited(_) => "message_edited",
            Payload::MessageDeleted(_) => "message_deleted",
            Payload::ReactionAdded(_) => "reaction_added",
            Payload::ReactionRemoved(_) => "reaction_removed",
            Payload::ReadUpTo(_) => "read",
            Payload::DeliveredUpTo(_) => "delivered",
            Payload::MemberMuted(_) => "muted",
            Payload::DeviceRegistered(_) => "device_registered",
            Payload::DeviceRemoved(_) => "device_removed",
            Payload::MessagePinned(_) => "message_pinned",
            Payload::UserErased(_) => "user_erased",
            Payload::ExportRequested(_) => "export_requested",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSpec {
    pub user_id: String,
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationCreated {
    pub kind: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub members: Vec<MemberSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationUpdated {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAdded {
    pub user_id: String,
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRemoved {
    pub user_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRoleChanged {
    pub user_id: String,
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePosted {
    pub message_id: String,
    pub client_msg_id: String,
    pub body: String,
    pub reply_to: Option<i64>,
    pub mentions: Vec<String>,
    /// No push notification for it (v2; false in records written before).
    #[serde(default)]
    pub silent: bool,
    /// The files sent with it (v3; none in records written before).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// The id of the sender's key that sealed the body and each
    /// attachment's name and thumbnail (v3; `None`: plaintext).
    #[serde(default)]
    pub sealed: Option<String>,
}

/// A file uploaded with `POST /v1/uploads` that a message references (v3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The upload's id.
    pub id: String,
    /// The file name the sender gave.
    pub name: String,
    pub content_type: String,
    /// Bytes, as stored.
    pub size: i64,
    /// A small preview of an image, base64.
    #[serde(default)]
    pub thumbnail: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEdited {
    pub seq: i64,
    pub body: String,
    /// As [`MessagePosted::sealed`], for the new body (v3).
    #[serde(default)]
    pub sealed: Option<String>,
}

/// Someone asked for an export of the user's data (GDPR, v3): for the
/// audit log. On the user's own stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequested {
    pub user_id: String,
    pub export_id: String,
}

/// The user's key was deleted (GDPR erasure, v3): what they sealed is
/// unreadable from now on. On the user's own stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserErased {
    pub user_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeleted {
    pub seq: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionAdded {
    pub seq: i64,
    pub emoji: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionRemoved {
    pub seq: i64,
    pub emoji: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadUpTo {
    pub seq: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredUpTo {
    pub seq: i64,
}

/// A member pinned the message at `seq` for everyone, or unpinned it (v2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePinned {
    pub seq: i64,
    pub pinned: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMuted {
    pub muted: bool,
}

/// A user's device events travel on the user's own stream of `chat.events`:
/// this is its conversation_id.
pub fn user_stream(user_id: &str) -> String {
    format!("user:{user_id}")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRegistered {
    pub device_id: String,
    pub platform: String,
    pub push_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRemoved {
    pub device_id: String,
}

/// `chat.presence`: a device came online on a gateway node, or went offline.
/// Key: `user_id/device_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePresence {
    pub user_id: String,
    pub device_id: String,
    pub node: String,
    pub online: bool,
    pub at: i64,
}

/// `chat.signals`: someone is typing. Key: conversation_id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    pub conversation_id: String,
    pub user_id: String,
    pub device_id: String,
    pub at: i64,
}

/// `chat.inbox.<node>`: one event addressed to some devices on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub conversation_id: String,
    pub seq: i64,
    /// `user_id/device_id` of every target device on the node.
    pub devices: Vec<String>,
    /// The `ChatEvent` exactly as it is on `chat.events` (Confluent framed).
    #[serde(with = "serde_bytes_vec")]
    pub event: Vec<u8>,
}

/// Avro `bytes` must be serialized as bytes, not as a sequence of integers.
mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(Visitor)
    }
}
