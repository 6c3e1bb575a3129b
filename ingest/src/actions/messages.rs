//! Changes to messages already posted (edit, delete, reactions) and the
//! receipts members give, each one event on `chat.events`, checked against
//! the caller's role.

use chat::{Kind, Role, rules};
use schemas::{
    DeliveredUpTo, MessageDeleted, MessageEdited, MessagePinned, Payload, ReactionAdded,
    ReactionRemoved, ReadUpTo,
};
use store::Message;

use crate::actions::members::actor;
use crate::auth::Claims;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::validate;

/// Who has a message: members (other than its sender) whose delivered or
/// read cursor is at or past it.
#[derive(Debug)]
pub struct Receipts {
    pub delivered_to: Vec<String>,
    pub read_by: Vec<String>,
}

/// The receipt kinds a member gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receipt {
    Read,
    Delivered,
}

/// An emoji reaction: a short run of printable characters.
fn emoji(value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && value.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_emoji",
            "an emoji is 1-32 bytes without spaces",
        ))
    }
}

impl Gateway {
    /// The message at `seq`, if the caller may see the conversation.
    async fn message_for(
        &self,
        caller: &Claims,
        conversation_id: &str,
        seq: i64,
    ) -> Result<(String, Message), ApiError> {
        let role = self
            .require_member(conversation_id, &caller.sub)
            .await?
            .role;
        Ok((role, self.live_message(conversation_id, seq).await?))
    }

    /// The message at `seq` for a moderating action (delete, pin) and the
    /// role the caller acts with (PROTOCOL.md: a global admin acts as an
    /// owner in any group, member or not).
    async fn message_to_moderate(
        &self,
        caller: &Claims,
        conversation_id: &str,
        seq: i64,
    ) -> Result<(Role, Message), ApiError> {
        let (role, _) = self.acting_role(caller, conversation_id).await?;
        Ok((role, self.live_message(conversation_id, seq).await?))
    }

    /// The message at `seq` as the store has it once it holds everything
    /// acknowledged; 404 when there is none or it is deleted.
    async fn live_message(&self, conversation_id: &str, seq: i64) -> Result<Message, ApiError> {
        self.read_your_writes(conversation_id, false).await?;
        self.store
            .message(conversation_id, seq)
            .await?
            .filter(|m| !m.deleted)
            .ok_or_else(|| ApiError::not_found("no such message"))
    }

    /// Replaces a message's text: its author only.
    pub async fn edit_message(
        &self,
        caller: &Claims,
        device_id: &str,
        conversation_id: &str,
        seq: i64,
        body: String,
    ) -> Result<i64, ApiError> {
        validate::body(&body, self.config.limits.max_body_bytes)?;
        let (_, message) = self.message_for(caller, conversation_id, seq).await?;
        rules::edit_message(&caller.sub, &message.sender_id)?;
        self.check_rate(&caller.sub)?;
        let mut edited = MessageEdited {
            seq,
            body,
            sealed: None,
        };
        if let Some(vault) = &self.vault {
            vault
                .seal_edited(&caller.sub, conversation_id, &mut edited)
                .await
                .map_err(crate::gateway::vault_error)?;
        }
        let payload = Payload::MessageEdited(edited);
        let actor = actor(caller, device_id);
        Ok(self.publish(conversation_id, actor, payload).await?.0)
    }

    /// Deletes a message, leaving a tombstone at its seq: its author, an
    /// owner or admin of the conversation, or a global admin.
    pub async fn delete_message(
        &self,
        caller: &Claims,
        device_id: &str,
        conversation_id: &str,
        seq: i64,
    ) -> Result<i64, ApiError> {
        let (role, message) = self
            .message_to_moderate(caller, conversation_id, seq)
            .await?;
        rules::delete_message(&caller.sub, &message.sender_id, role, caller.is_admin())?;
        let payload = Payload::MessageDeleted(MessageDeleted { seq });
        let actor = actor(caller, device_id);
        Ok(self.publish(conversation_id, actor, payload).await?.0)
    }
}

impl Gateway {
    /// Adds or removes the caller's reaction; a no-op (no event, `None`)
    /// when it is already so.
    pub async fn react(
        &self,
        caller: &Claims,
        device_id: &str,
        conversation_id: &str,
        seq: i64,
        emoji_text: &str,
        add: bool,
    ) -> Result<Option<i64>, ApiError> {
        emoji(emoji_text)?;
        let (_, message) = self.message_for(caller, conversation_id, seq).await?;
        let has = message
            .reactions
            .get(emoji_text)
            .is_some_and(|users| users.contains(&caller.sub));
        let known = message.reactions.contains_key(emoji_text);
        if !rules::react(add, has, message.reactions.len(), known)? {
            return Ok(None);
        }
        self.check_rate(&caller.sub)?;
        let emoji = emoji_text.to_owned();
        let payload = if add {
            Payload::ReactionAdded(ReactionAdded { seq, emoji })
        } else {
            Payload::ReactionRemoved(ReactionRemoved { seq, emoji })
        };
        let actor = actor(caller, device_id);
        Ok(Some(self.publish(conversation_id, actor, payload).await?.0))
    }

    /// Pins or unpins a message for everyone in the conversation; a no-op
    /// (no event, `None`) when it already is so.
    pub async fn pin(
        &self,
        caller: &Claims,
        device_id: &str,
        conversation_id: &str,
        seq: i64,
        pin: bool,
    ) -> Result<Option<i64>, ApiError> {
        let (role, message) = self
            .message_to_moderate(caller, conversation_id, seq)
            .await?;
        let conversation = self.stored_conversation(conversation_id).await?;
        let kind = Kind::parse(&conversation.kind).unwrap_or(Kind::Group);
        let is_pinned = message.pinned_by.is_some();
        let count = conversation.pinned.len();
        if !rules::pin(kind, role, caller.is_admin(), pin, is_pinned, count)? {
            return Ok(None);
        }
        self.check_rate(&caller.sub)?;
        let payload = Payload::MessagePinned(MessagePinned { seq, pinned: pin });
        let actor = actor(caller, device_id);
        Ok(Some(self.publish(conversation_id, actor, payload).await?.0))
    }

    /// Records that the caller's device has (delivered) or the caller has
    /// read the conversation up to `seq`. Returns None when nothing moves.
    pub async fn receipt(
        &self,
        caller: &Claims,
        device_id: &str,
        conversation_id: &str,
        seq: i64,
        kind: Receipt,
    ) -> Result<Option<i64>, ApiError> {
        let member = self.require_member(conversation_id, &caller.sub).await?;
        let last_seq = self.applied_seq(conversation_id).await?;
        rules::receipt_seq(seq, last_seq.max(self.written_seq(conversation_id)))?;
        let (current, payload) = match kind {
            Receipt::Read => (member.last_read_seq, Payload::ReadUpTo(ReadUpTo { seq })),
            Receipt::Delivered => (
                member.last_delivered_seq,
                Payload::DeliveredUpTo(DeliveredUpTo { seq }),
            ),
        };
        // Delivered also moves the device's own cursor: always recorded.
        if kind == Receipt::Read && !rules::read_moves_forward(seq, current) {
            return Ok(None);
        }
        let actor = actor(caller, device_id);
        Ok(Some(self.publish(conversation_id, actor, payload).await?.0))
    }

    /// Who received and who read the message at `seq`.
    pub async fn receipts(
        &self,
        caller: &Claims,
        conversation_id: &str,
        seq: i64,
    ) -> Result<Receipts, ApiError> {
        let (_, message) = self.message_for(caller, conversation_id, seq).await?;
        let mut receipts = Receipts {
            delivered_to: Vec::new(),
            read_by: Vec::new(),
        };
        for m in self.store.members(conversation_id).await? {
            if m.user_id == message.sender_id {
                continue;
            }
            if m.last_delivered_seq >= seq || m.last_read_seq >= seq {
                receipts.delivered_to.push(m.user_id.clone());
            }
            if m.last_read_seq >= seq {
                receipts.read_by.push(m.user_id);
            }
        }
        Ok(receipts)
    }
}
