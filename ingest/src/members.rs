//! Membership, roles and per-member settings, each one event on
//! `chat.events`, checked against the caller's role: owners manage
//! everything, admins manage members, a global admin (JWT role `admin`) acts
//! as an owner anywhere.

use axum::http::StatusCode;
use schemas::{
    Actor, ConversationUpdated, MemberAdded, MemberMuted, MemberRemoved, MemberRoleChanged, Payload,
};
use store::Member;

use crate::auth::Claims;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::validate;

pub(crate) const ROLES: [&str; 3] = ["owner", "admin", "member"];
/// The most members a group holds.
pub(crate) const MAX_MEMBERS: usize = 10_000;

pub(crate) fn can_manage(role: &str) -> bool {
    matches!(role, "owner" | "admin")
}

pub(crate) fn actor(caller: &Claims, device_id: &str) -> Actor {
    Actor {
        user_id: caller.sub.clone(),
        device_id: device_id.to_owned(),
    }
}

fn conflict(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

fn role(value: &str) -> Result<(), ApiError> {
    if ROLES.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_role",
            "role is owner, admin or member",
        ))
    }
}

impl Gateway {
    /// The caller's role in a group they may change (a global admin counts
    /// as an owner); 409 for a direct conversation.
    async fn group_role(&self, caller: &Claims, conversation_id: &str) -> Result<String, ApiError> {
        let role = if caller.is_admin() {
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
            return Err(conflict(
                "direct_conversation",
                "a direct conversation keeps its two members and has no name",
            ));
        }
        Ok(role)
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
        let new_role = new_role.unwrap_or_else(|| "member".into());
        role(&new_role)?;
        let caller_role = self.group_role(caller, conversation_id).await?;
        if !can_manage(&caller_role) {
            return Err(ApiError::forbidden(
                "only an owner or admin can add members",
            ));
        }
        if new_role == "owner" && caller_role != "owner" {
            return Err(ApiError::forbidden("only an owner can add an owner"));
        }
        if self.store.member(conversation_id, user_id).await?.is_some() {
            return Err(conflict("already_member", "already a member"));
        }
        if self.store.members(conversation_id).await?.len() >= MAX_MEMBERS {
            return Err(conflict("too_many_members", "the group is full"));
        }
        let payload = Payload::MemberAdded(MemberAdded {
            user_id: user_id.to_owned(),
            role: new_role,
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
        role(new_role)?;
        if self.group_role(caller, conversation_id).await? != "owner" {
            return Err(ApiError::forbidden("only an owner can change roles"));
        }
        let target = self
            .store
            .member(conversation_id, user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such member"))?;
        if target.role == "owner" && new_role != "owner" {
            let owners = self.owners(conversation_id).await?;
            if owners.len() <= 1 {
                return Err(conflict(
                    "last_owner",
                    "a group keeps at least one owner: make someone else owner first",
                ));
            }
        }
        let payload = Payload::MemberRoleChanged(MemberRoleChanged {
            user_id: user_id.to_owned(),
            role: new_role.to_owned(),
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
            .filter(|m| m.role == "owner")
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
        if !can_manage(&self.group_role(caller, conversation_id).await?) {
            return Err(ApiError::forbidden(
                "only an owner or admin can change the group",
            ));
        }
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
        if !leaving && !can_manage(&caller_role) {
            return Err(ApiError::forbidden(
                "only an owner or admin can remove other members",
            ));
        }
        if !leaving && target.role == "owner" && caller_role != "owner" {
            return Err(ApiError::forbidden("only an owner can remove an owner"));
        }
        // The last owner leaving hands the group to its longest member.
        if leaving && target.role == "owner" {
            let owners = self.owners(conversation_id).await?;
            if owners.len() <= 1
                && let Some(heir) = self
                    .store
                    .members(conversation_id)
                    .await?
                    .into_iter()
                    .filter(|m| m.user_id != caller.sub)
                    .min_by_key(|m| (m.role != "admin", m.joined_seq))
            {
                let payload = Payload::MemberRoleChanged(MemberRoleChanged {
                    user_id: heir.user_id,
                    role: "owner".into(),
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
