//! Membership, roles and per-member settings, each one event on
//! `chat.events`, checked against the caller's role: owners manage
//! everything, admins manage members, a global admin (JWT role `admin`) acts
//! as an owner anywhere.

use chat::{Kind, Role, rules};
use schemas::{
    Actor, ConversationUpdated, MemberAdded, MemberMuted, MemberRemoved, MemberRoleChanged, Payload,
};
use store::Member;

use crate::auth::Claims;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::validate;

pub(crate) fn actor(caller: &Claims, device_id: &str) -> Actor {
    Actor {
        user_id: caller.sub.clone(),
        device_id: device_id.to_owned(),
    }
}

/// A role named by the client.
fn role(value: &str) -> Result<Role, ApiError> {
    Role::parse(value)
        .ok_or_else(|| ApiError::invalid("invalid_role", "role is owner, admin or member"))
}

impl Gateway {
    /// The caller's role in a group they may change (a global admin counts
    /// as an owner); 409 for a direct conversation.
    async fn group_role(&self, caller: &Claims, conversation_id: &str) -> Result<Role, ApiError> {
        let (role, kind) = self.acting_role(caller, conversation_id).await?;
        rules::group_only(kind)?;
        Ok(role)
    }

    /// The role the caller acts with in a conversation, and its kind: a
    /// member's own, or an owner's for a global admin, member or not
    /// (403 for anyone else, 404 for no such conversation).
    pub(crate) async fn acting_role(
        &self,
        caller: &Claims,
        conversation_id: &str,
    ) -> Result<(Role, Kind), ApiError> {
        let member = if caller.is_admin() {
            validate::named_id("conversation_id", conversation_id)?;
            self.read_your_writes(conversation_id, true).await?;
            None
        } else {
            Some(Role::stored(
                &self
                    .require_member(conversation_id, &caller.sub)
                    .await?
                    .role,
            ))
        };
        let conversation = self.stored_conversation(conversation_id).await?;
        let kind = Kind::parse(&conversation.kind).unwrap_or(Kind::Group);
        let role = rules::acting_role(member, caller.is_admin())
            .ok_or_else(|| ApiError::forbidden("you are not a member of this conversation"))?;
        Ok((role, kind))
    }

    /// Adds a member (owner or admin; only an owner adds an owner).
    pub async fn add_member(
        &self,
        caller: &Claims,
        device_id: &str,
        conversation_id: &str,
        user_id: &str,
        new_role: Option<String>,
    ) -> Result<i64, ApiError> {
        validate::named_id("user_id", user_id)?;
        let new_role = role(new_role.as_deref().unwrap_or("member"))?;
        rules::add_member(self.group_role(caller, conversation_id).await?, new_role)?;
        rules::not_yet_member(self.store.member(conversation_id, user_id).await?.is_some())?;
        rules::room_for_one_more(self.store.members(conversation_id).await?.len())?;
        let payload = Payload::MemberAdded(MemberAdded {
            user_id: user_id.to_owned(),
            role: new_role.as_str().to_owned(),
        });
        let actor = actor(caller, device_id);
        Ok(self.publish(conversation_id, actor, payload).await?.0)
    }

    /// Changes a member's role (owners only); a group keeps an owner.
    pub async fn change_role(
        &self,
        caller: &Claims,
        device_id: &str,
        conversation_id: &str,
        user_id: &str,
        new_role: &str,
    ) -> Result<i64, ApiError> {
        validate::named_id("user_id", user_id)?;
        let new_role = role(new_role)?;
        rules::change_role(self.group_role(caller, conversation_id).await?)?;
        let target = self
            .store
            .member(conversation_id, user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such member"))?;
        if rules::demotes_owner(Role::stored(&target.role), new_role) {
            rules::keep_an_owner(self.owners(conversation_id).await?.len())?;
        }
        let payload = Payload::MemberRoleChanged(MemberRoleChanged {
            user_id: user_id.to_owned(),
            role: new_role.as_str().to_owned(),
        });
        let actor = actor(caller, device_id);
        Ok(self.publish(conversation_id, actor, payload).await?.0)
    }

    async fn owners(&self, conversation_id: &str) -> Result<Vec<Member>, ApiError> {
        Ok(self
            .store
            .members(conversation_id)
            .await?
            .into_iter()
            .filter(|m| Role::stored(&m.role) == Role::Owner)
            .collect())
    }

    /// Renames or describes a group (owner or admin).
    pub async fn update_conversation(
        &self,
        caller: &Claims,
        device_id: &str,
        conversation_id: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<i64, ApiError> {
        if name.is_none() && description.is_none() {
            return Err(ApiError::invalid(
                "invalid_body",
                "give a name or a description",
            ));
        }
        if name
            .as_ref()
            .is_some_and(|n| n.len() > 200 || n.trim().is_empty())
        {
            return Err(ApiError::invalid("invalid_name", "a name is 1-200 bytes"));
        }
        if description.as_ref().is_some_and(|d| d.len() > 2000) {
            return Err(ApiError::invalid(
                "invalid_description",
                "a description is at most 2000 bytes",
            ));
        }
        rules::update_conversation(self.group_role(caller, conversation_id).await?)?;
        let payload = Payload::ConversationUpdated(ConversationUpdated { name, description });
        let actor = actor(caller, device_id);
        Ok(self.publish(conversation_id, actor, payload).await?.0)
    }

    /// Mutes or unmutes a conversation for the caller alone.
    pub async fn set_muted(
        &self,
        caller: &Claims,
        device_id: &str,
        conversation_id: &str,
        muted: bool,
    ) -> Result<i64, ApiError> {
        self.require_member(conversation_id, &caller.sub).await?;
        let payload = Payload::MemberMuted(MemberMuted { muted });
        let actor = actor(caller, device_id);
        Ok(self.publish(conversation_id, actor, payload).await?.0)
    }
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
        let caller_role = self.group_role(caller, conversation_id).await?;
        let target = self
            .store
            .member(conversation_id, user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such member"))?;
        let leaving = user_id == caller.sub;
        let target_role = Role::stored(&target.role);
        rules::remove_member(caller_role, leaving, target_role)?;
        // The last owner leaving hands the group to its longest admin (or
        // member).
        if leaving && target_role == Role::Owner && self.owners(conversation_id).await?.len() <= 1 {
            let members = self.store.members(conversation_id).await?;
            let candidates = members
                .iter()
                .map(|m| (m.user_id.as_str(), Role::stored(&m.role), m.joined_seq));
            if let Some(heir) = rules::heir(candidates, &caller.sub) {
                let payload = Payload::MemberRoleChanged(MemberRoleChanged {
                    user_id: heir.to_owned(),
                    role: Role::Owner.as_str().into(),
                });
                self.publish(conversation_id, actor(caller, device_id), payload)
                    .await?;
            }
        }
        let actor = actor(caller, device_id);
        let payload = Payload::MemberRemoved(MemberRemoved {
            user_id: user_id.to_owned(),
        });
        let (seq, _) = self.publish(conversation_id, actor, payload).await?;
        Ok(seq)
    }
}
