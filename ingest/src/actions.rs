//! Changes to what is already in a conversation (members, messages), each
//! one event on `chat.events`, checked against the caller's role.

use schemas::{Actor, MemberRemoved, MessageDeleted, MessageEdited, Payload};
use store::Message;

use crate::auth::Claims;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::validate;

fn can_manage(role: &str) -> bool {
    matches!(role, "owner" | "admin")
}

impl Gateway {
    /// Removes `user_id`: the member itself (leaving), an owner or admin of
    /// the conversation (an admin cannot remove an owner), or a global
    /// admin. Returns the event's seq.
    pub async fn remove_member(
        &self,
        caller: &Claims,
        device_id: &str,
        conversation_id: &str,
        user_id: &str,
    ) -> Result<i64, ApiError> {
        validate::named_id("user_id", user_id)?;
        let caller_role = if caller.is_admin() {
            validate::named_id("conversation_id", conversation_id)?;
            self.read_your_writes(conversation_id, true).await?;
            "owner".to_owned()
        } else {
            self.require_member(conversation_id, &caller.sub)
                .await?
                .role
        };
        let conversation = self
            .store
            .conversation(conversation_id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such conversation"))?;
        if conversation.kind == "direct" {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "direct_conversation",
                "a direct conversation keeps its two members",
            ));
        }
        let target = self
            .store
            .member(conversation_id, user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such member"))?;
        let leaving = user_id == caller.sub;
        if !leaving && !can_manage(&caller_role) {
            return Err(ApiError::forbidden(
                "only an owner or admin can remove other members",
            ));
        }
        if !leaving && target.role == "owner" && caller_role != "owner" {
            return Err(ApiError::forbidden("only an owner can remove an owner"));
        }
        let actor = actor(caller, device_id);
        let payload = Payload::MemberRemoved(MemberRemoved {
            user_id: user_id.to_owned(),
        });
        let (seq, _) = self.publish(conversation_id, actor, payload).await?;
        Ok(seq)
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
        self.read_your_writes(conversation_id, false).await?;
        let message = self
            .store
            .message(conversation_id, seq)
            .await?
            .filter(|m| !m.deleted)
            .ok_or_else(|| ApiError::not_found("no such message"))?;
        Ok((role, message))
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
        if message.sender_id != caller.sub {
            return Err(ApiError::forbidden("only the author can edit a message"));
        }
        self.check_rate(&caller.sub)?;
        let payload = Payload::MessageEdited(MessageEdited { seq, body });
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
        let (role, message) = self.message_for(caller, conversation_id, seq).await?;
        if message.sender_id != caller.sub && !can_manage(&role) && !caller.is_admin() {
            return Err(ApiError::forbidden(
                "only the author or an owner or admin can delete a message",
            ));
        }
        let payload = Payload::MessageDeleted(MessageDeleted { seq });
        let actor = actor(caller, device_id);
        Ok(self.publish(conversation_id, actor, payload).await?.0)
    }
}

fn actor(caller: &Claims, device_id: &str) -> Actor {
    Actor {
        user_id: caller.sub.clone(),
        device_id: device_id.to_owned(),
    }
}
