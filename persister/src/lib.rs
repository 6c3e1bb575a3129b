//! The persister stage: writes every event of `chat.events` into the store,
//! idempotently by (conversation_id, seq).

mod service;

use std::sync::Arc;

use async_trait::async_trait;
use schemas::{ChatEvent, Codec, Payload};
use store::{EventWrite, Mutation, Store};
use streams::{Record, Rejection, Stage, StageError};

pub use service::{PersisterArgs, Service};

pub const GROUP: &str = "persister";

pub struct Persister {
    store: Arc<dyn Store>,
    codec: Codec,
}

impl Persister {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Persister {
            store,
            codec: Codec::new(),
        }
    }
}

#[async_trait]
impl Stage for Persister {
    async fn process(&self, batch: &[Record]) -> Result<Vec<Rejection>, StageError> {
        let mut writes = Vec::with_capacity(batch.len());
        let mut rejected = Vec::new();
        for (index, record) in batch.iter().enumerate() {
            let decoded = record.decode::<ChatEvent>(&self.codec);
            match decoded {
                Ok(event) => writes.push(to_write(record.offset, event)),
                Err(reason) => rejected.push(Rejection::new(index, reason)),
            }
        }
        match self.store.apply(writes).await {
            Ok(_) => Ok(rejected),
            Err(e) if e.is_transient() => Err(StageError(e.to_string())),
            // A permanent store error names no single record: retrying is
            // still the only choice that loses nothing.
            Err(e) => Err(StageError(format!("permanent: {e}"))),
        }
    }
}

/// The audit-log entry of an administrative event (`GET /v1/admin/audit`):
/// a change to a conversation, its members or their roles, a message
/// deleted or pinned (the store leaves out a sender deleting their own),
/// a device removed, a user erased or exported. Joining and leaving are
/// not administrative.
pub fn audit_of(actor: &str, payload: &Payload) -> Option<Mutation> {
    let entry = |target: Option<String>, detail: Option<String>| {
        Some(Mutation::Audit {
            actor: actor.to_owned(),
            action: payload.kind().to_owned(),
            target,
            detail,
        })
    };
    match payload {
        Payload::ConversationUpdated(p) => {
            let changed: Vec<&str> = [("name", &p.name), ("description", &p.description)]
                .into_iter()
                .filter_map(|(field, value)| value.as_ref().map(|_| field))
                .collect();
            entry(None, Some(changed.join(",")))
        }
        Payload::MemberAdded(p) if p.user_id != actor => {
            entry(Some(p.user_id.clone()), Some(p.role.clone()))
        }
        Payload::MemberRemoved(p) if p.user_id != actor => entry(Some(p.user_id.clone()), None),
        Payload::MemberRoleChanged(p) => entry(Some(p.user_id.clone()), Some(p.role.clone())),
        Payload::MessageDeleted(p) => entry(Some(p.seq.to_string()), None),
        Payload::MessagePinned(p) => entry(
            Some(p.seq.to_string()),
            Some(if p.pinned { "pinned" } else { "unpinned" }.to_owned()),
        ),
        Payload::DeviceRemoved(p) => entry(Some(p.device_id.clone()), None),
        Payload::UserErased(p) => entry(Some(p.user_id.clone()), None),
        Payload::ExportRequested(p) => entry(Some(p.user_id.clone()), Some(p.export_id.clone())),
        _ => None,
    }
}

/// The store writes of one event; its seq is its offset.
pub fn to_write(seq: i64, event: ChatEvent) -> EventWrite {
    let audit = audit_of(&event.actor.user_id, &event.payload);
    let actor = event.actor.user_id;
    let mutation = match event.payload {
        // Its audit entry is all the store keeps of it: the key is gone
        // already, and the gateway removed the user's devices before.
        Payload::UserErased(_) | Payload::ExportRequested(_) => None,
        Payload::ConversationCreated(p) => Some(Mutation::CreateConversation {
            kind: p.kind,
            name: p.name,
            description: p.description,
            created_by: actor,
            members: p.members.into_iter().map(|m| (m.user_id, m.role)).collect(),
        }),
        Payload::ConversationUpdated(p) => Some(Mutation::UpdateConversation {
            name: p.name,
            description: p.description,
        }),
        Payload::MemberAdded(p) => Some(Mutation::PutMember {
            user_id: p.user_id,
            role: p.role,
        }),
        Payload::MemberRoleChanged(p) => Some(Mutation::PutMember {
            user_id: p.user_id,
            role: p.role,
        }),
        Payload::MemberRemoved(p) => Some(Mutation::RemoveMember { user_id: p.user_id }),
        Payload::MessagePosted(p) => Some(Mutation::PostMessage {
            message_id: p.message_id,
            sender_id: actor,
            client_msg_id: p.client_msg_id,
            body: p.body,
            reply_to: p.reply_to,
            mentions: p.mentions,
            attachments: p.attachments,
            sealed: p.sealed,
        }),
        Payload::MessageEdited(p) => Some(Mutation::EditMessage {
            seq: p.seq,
            body: p.body,
            sealed: p.sealed,
        }),
        Payload::MessageDeleted(p) => Some(Mutation::DeleteMessage { seq: p.seq }),
        Payload::ReactionAdded(p) => Some(Mutation::AddReaction {
            seq: p.seq,
            emoji: p.emoji,
            user_id: actor,
        }),
        Payload::ReactionRemoved(p) => Some(Mutation::RemoveReaction {
            seq: p.seq,
            emoji: p.emoji,
            user_id: actor,
        }),
        Payload::ReadUpTo(p) => Some(Mutation::MarkRead {
            user_id: actor,
            seq: p.seq,
        }),
        Payload::DeliveredUpTo(p) => Some(Mutation::MarkDelivered {
            user_id: actor,
            device_id: event.actor.device_id,
            seq: p.seq,
        }),
        Payload::MemberMuted(p) => Some(Mutation::SetMuted {
            user_id: actor,
            muted: p.muted,
        }),
        Payload::DeviceRegistered(p) => Some(Mutation::PutDevice {
            user_id: actor,
            device_id: p.device_id,
            platform: p.platform,
            push_token: p.push_token,
        }),
        Payload::MessagePinned(p) => Some(Mutation::PinMessage {
            seq: p.seq,
            pinned: p.pinned,
            user_id: actor,
        }),
        Payload::DeviceRemoved(p) => Some(Mutation::RemoveDevice {
            user_id: actor,
            device_id: p.device_id,
        }),
    };
    EventWrite {
        conversation_id: event.conversation_id,
        seq,
        at: event.occurred_at,
        mutations: audit.into_iter().chain(mutation).collect(),
    }
}
