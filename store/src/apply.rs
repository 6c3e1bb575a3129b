//! How an event's mutations change the items, written once over an item
//! view so that every backend applies them identically.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    AuditEntry, ColdIndex, Conversation, ConversationDay, Device, EventWrite, Member, Message,
    Mutation, Result, StoreError, UserConversation, day_of,
};

pub(crate) fn conv_pk(conversation_id: &str) -> String {
    format!("CONV#{conversation_id}")
}
pub(crate) fn user_pk(user_id: &str) -> String {
    format!("USER#{user_id}")
}
pub(crate) const META: &str = "META";
pub(crate) const COLD: &str = "COLD";
pub(crate) fn member_sk(user_id: &str) -> String {
    format!("MEMBER#{user_id}")
}
/// Zero-padded so that the sort key orders by seq.
pub(crate) fn msg_sk(seq: i64) -> String {
    format!("MSG#{seq:020}")
}
pub(crate) fn client_sk(sender_id: &str, client_msg_id: &str) -> String {
    // The sender's length keeps `a#b`+`c` apart from `a`+`b#c`.
    format!("CLIENT#{}#{sender_id}#{client_msg_id}", sender_id.len())
}
pub(crate) fn user_conv_sk(conversation_id: &str) -> String {
    format!("CONV#{conversation_id}")
}
pub(crate) fn push_sk(device_id: &str, conversation_id: &str) -> String {
    format!("PUSH#{device_id}#{conversation_id}")
}
pub(crate) fn device_sk(device_id: &str) -> String {
    format!("DEVICE#{device_id}")
}
pub(crate) fn audit_pk(day: i64) -> String {
    format!("AUDIT#{day:08}")
}
pub(crate) fn day_stat_pk(day: i64) -> String {
    format!("DAYSTAT#{day:08}")
}
pub(crate) fn active_pk(day: i64) -> String {
    format!("ACTIVE#{day:08}")
}
/// Zero-padded so that the sort key orders by time, then seq.
pub(crate) fn audit_sk(at: i64, seq: i64, conversation_id: &str) -> String {
    format!("{at:015}#{seq:020}#{conversation_id}")
}

/// A transactional view of the items: reads see this transaction's writes.
pub(crate) trait Items {
    async fn get_raw(&mut self, pk: &str, sk: &str) -> Result<Option<Vec<u8>>>;
    fn put_raw(&mut self, pk: &str, sk: &str, value: Vec<u8>);
    fn delete(&mut self, pk: &str, sk: &str);

    async fn get<T: DeserializeOwned>(&mut self, pk: &str, sk: &str) -> Result<Option<T>> {
        match self.get_raw(pk, sk).await? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn put<T: Serialize>(&mut self, pk: &str, sk: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Permanent(e.to_string()))?;
        self.put_raw(pk, sk, bytes);
        Ok(())
    }
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Permanent(format!("corrupt item: {e}")))
}

/// Applies one event; false when the conversation already applied it.
pub(crate) async fn apply_event(items: &mut impl Items, write: &EventWrite) -> Result<bool> {
    let pk = conv_pk(&write.conversation_id);
    let mut meta: Option<Conversation> = items.get(&pk, META).await?;
    if meta.as_ref().is_some_and(|m| m.last_seq >= write.seq) {
        return Ok(false);
    }
    for mutation in &write.mutations {
        apply_mutation(items, write, &mut meta, mutation).await?;
    }
    // Events for a conversation that was never created (a replay that
    // starts mid-log) still advance nothing visible: no META, no items.
    if let Some(mut m) = meta {
        m.last_seq = write.seq;
        items.put(&pk, META, &m)?;
    }
    Ok(true)
}

async fn apply_mutation(
    items: &mut impl Items,
    write: &EventWrite,
    meta: &mut Option<Conversation>,
    mutation: &Mutation,
) -> Result<()> {
    let cid = write.conversation_id.as_str();
    let pk = conv_pk(cid);
    match mutation {
        Mutation::CreateConversation {
            kind,
            name,
            description,
            created_by,
            members,
        } => {
            if meta.is_some() {
                return Ok(());
            }
            *meta = Some(Conversation {
                conversation_id: cid.to_owned(),
                kind: kind.clone(),
                name: name.clone(),
                description: description.clone(),
                created_by: created_by.clone(),
                created_at: write.at,
                last_seq: write.seq,
                last_message_seq: None,
                last_activity_at: write.at,
                pinned: Vec::new(),
            });
            for (user_id, role) in members {
                put_member(items, write, user_id, role).await?;
            }
        }
        Mutation::PutDevice {
            user_id,
            device_id,
            platform,
            push_token,
        } => {
            let mut device = device_or_new(items, user_id, device_id).await?;
            device.platform = Some(platform.clone());
            device.push_token = push_token.clone();
            items.put(&user_pk(user_id), &device_sk(device_id), &device)?;
        }
        Mutation::RemoveDevice { user_id, device_id } => {
            items.delete(&user_pk(user_id), &device_sk(device_id));
        }
        Mutation::Audit {
            actor,
            action,
            target,
            detail,
        } => audit(items, write, meta.is_some(), actor, action, target, detail).await?,
        _ if meta.is_none() => {}
        Mutation::UpdateConversation { name, description } => {
            if let Some(m) = meta.as_mut() {
                if name.is_some() {
                    m.name = name.clone();
                }
                if description.is_some() {
                    m.description = description.clone();
                }
                m.last_activity_at = write.at;
            }
        }
        Mutation::PutMember { user_id, role } => put_member(items, write, user_id, role).await?,
        Mutation::RemoveMember { user_id } => {
            items.delete(&pk, &member_sk(user_id));
            items.delete(&user_pk(user_id), &user_conv_sk(cid));
        }
        Mutation::PostMessage {
            message_id,
            sender_id,
            client_msg_id,
            body,
            reply_to,
            mentions,
            attachments,
            sealed,
        } => {
            let client_key = client_sk(sender_id, client_msg_id);
            if items.get::<i64>(&pk, &client_key).await?.is_some() {
                return Ok(());
            }
            items.put(&pk, &client_key, &write.seq)?;
            let message = Message {
                conversation_id: cid.to_owned(),
                seq: write.seq,
                message_id: message_id.clone(),
                sender_id: sender_id.clone(),
                client_msg_id: client_msg_id.clone(),
                body: Some(body.clone()),
                sent_at: write.at,
                edited_at: None,
                deleted: false,
                reply_to: *reply_to,
                mentions: mentions.clone(),
                attachments: attachments.clone(),
                sealed: sealed.clone(),
                reactions: Default::default(),
                pinned_by: None,
                pinned_at: None,
            };
            items.put(&pk, &msg_sk(write.seq), &message)?;
            if let Some(m) = meta.as_mut() {
                m.last_message_seq = Some(write.seq);
                m.last_activity_at = write.at;
                count_message(items, write, &m.kind).await?;
            }
            mark_active(items, write, sender_id).await?;
        }
        Mutation::RestoreMessage { seq, message } => {
            if let Some(message) = message
                && items.get_raw(&pk, &msg_sk(*seq)).await?.is_none()
            {
                items.put(&pk, &msg_sk(*seq), message)?;
            }
        }
        Mutation::EditMessage { seq, body, sealed } => {
            update_message(items, write, *seq, |m| {
                if !m.deleted {
                    m.body = Some(body.clone());
                    m.sealed = sealed.clone();
                    m.edited_at = Some(write.at);
                }
            })
            .await?
        }
        Mutation::DeleteMessage { seq } => {
            update_message(items, write, *seq, |m| {
                m.deleted = true;
                m.body = None;
                m.reactions.clear();
                m.mentions.clear();
                m.attachments.clear();
                m.pinned_by = None;
                m.pinned_at = None;
            })
            .await?;
            if let Some(m) = meta.as_mut() {
                m.pinned.retain(|s| s != seq);
            }
        }
        Mutation::PinMessage {
            seq,
            pinned,
            user_id,
        } => {
            let mut pin = false;
            update_message(items, write, *seq, |m| {
                pin = *pinned && !m.deleted;
                m.pinned_by = pin.then(|| user_id.clone());
                m.pinned_at = pin.then_some(write.at);
            })
            .await?;
            if let Some(m) = meta.as_mut() {
                m.pinned.retain(|s| s != seq);
                if pin {
                    m.pinned.insert(0, *seq);
                }
            }
        }
        Mutation::AddReaction {
            seq,
            emoji,
            user_id,
        } => {
            mark_active(items, write, user_id).await?;
            update_message(items, write, *seq, |m| {
                let users = m.reactions.entry(emoji.clone()).or_default();
                if !m.deleted && !users.contains(user_id) {
                    users.push(user_id.clone());
                }
                m.reactions.retain(|_, users| !users.is_empty());
            })
            .await?
        }
        Mutation::RemoveReaction {
            seq,
            emoji,
            user_id,
        } => {
            update_message(items, write, *seq, |m| {
                if let Some(users) = m.reactions.get_mut(emoji) {
                    users.retain(|u| u != user_id);
                }
                m.reactions.retain(|_, users| !users.is_empty());
            })
            .await?
        }
        Mutation::MarkRead { user_id, seq } => {
            mark_active(items, write, user_id).await?;
            if let Some(mut member) = items.get::<Member>(&pk, &member_sk(user_id)).await? {
                member.last_read_seq = member.last_read_seq.max(*seq);
                member.last_delivered_seq = member.last_delivered_seq.max(*seq);
                items.put(&pk, &member_sk(user_id), &member)?;
            }
        }
        Mutation::MarkDelivered {
            user_id,
            device_id,
            seq,
        } => {
            if let Some(mut member) = items.get::<Member>(&pk, &member_sk(user_id)).await? {
                member.last_delivered_seq = member.last_delivered_seq.max(*seq);
                items.put(&pk, &member_sk(user_id), &member)?;
            }
            let mut device = device_or_new(items, user_id, device_id).await?;
            let cursor = device.cursors.entry(cid.to_owned()).or_insert(*seq);
            *cursor = (*cursor).max(*seq);
            items.put(&user_pk(user_id), &device_sk(device_id), &device)?;
        }
        Mutation::SetMuted { user_id, muted } => {
            let (upk, usk) = (user_pk(user_id), user_conv_sk(cid));
            if let Some(mut uc) = items.get::<UserConversation>(&upk, &usk).await? {
                uc.muted = *muted;
                items.put(&upk, &usk, &uc)?;
            }
        }
    }
    Ok(())
}

/// One more message of the conversation on the event's day (analytics).
async fn count_message(items: &mut impl Items, write: &EventWrite, kind: &str) -> Result<()> {
    let (pk, sk) = (
        day_stat_pk(day_of(write.at)),
        write.conversation_id.as_str(),
    );
    let mut day = items
        .get::<ConversationDay>(&pk, sk)
        .await?
        .unwrap_or_else(|| ConversationDay {
            conversation_id: sk.to_owned(),
            kind: kind.to_owned(),
            messages: 0,
        });
    day.messages += 1;
    items.put(&pk, sk, &day)
}

/// The user acted on the event's day (posted, read, reacted): analytics'
/// active users. Written once per user and day.
async fn mark_active(items: &mut impl Items, write: &EventWrite, user_id: &str) -> Result<()> {
    let pk = active_pk(day_of(write.at));
    if items.get_raw(&pk, user_id).await?.is_none() {
        items.put(&pk, user_id, &user_id)?;
    }
    Ok(())
}

async fn audit(
    items: &mut impl Items,
    write: &EventWrite,
    in_conversation: bool,
    actor: &str,
    action: &str,
    target: &Option<String>,
    detail: &Option<String>,
) -> Result<()> {
    let pk = conv_pk(&write.conversation_id);
    if action == "message_deleted"
        && let Some(seq) = target.as_deref().and_then(|t| t.parse::<i64>().ok())
        && let Some(message) = items.get::<Message>(&pk, &msg_sk(seq)).await?
        && message.sender_id == actor
    {
        return Ok(());
    }
    let global_admin = in_conversation && items.get_raw(&pk, &member_sk(actor)).await?.is_none();
    let entry = AuditEntry {
        at: write.at,
        conversation_id: write.conversation_id.clone(),
        seq: write.seq,
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.clone(),
        detail: detail.clone(),
        global_admin,
    };
    items.put(
        &audit_pk(day_of(write.at)),
        &audit_sk(write.at, write.seq, &write.conversation_id),
        &entry,
    )
}

async fn put_member(
    items: &mut impl Items,
    write: &EventWrite,
    user_id: &str,
    role: &str,
) -> Result<()> {
    let cid = write.conversation_id.as_str();
    let pk = conv_pk(cid);
    let member = match items.get::<Member>(&pk, &member_sk(user_id)).await? {
        Some(existing) => Member {
            role: role.to_owned(),
            ..existing
        },
        None => Member {
            user_id: user_id.to_owned(),
            role: role.to_owned(),
            joined_seq: write.seq,
            last_read_seq: -1,
            last_delivered_seq: -1,
        },
    };
    items.put(&pk, &member_sk(user_id), &member)?;
    let upk = user_pk(user_id);
    let usk = user_conv_sk(cid);
    let muted = items
        .get::<UserConversation>(&upk, &usk)
        .await?
        .is_some_and(|u| u.muted);
    items.put(
        &upk,
        &usk,
        &UserConversation {
            user_id: user_id.to_owned(),
            conversation_id: cid.to_owned(),
            role: role.to_owned(),
            muted,
        },
    )
}

/// A user's device item, or a fresh one.
async fn device_or_new(items: &mut impl Items, user_id: &str, device_id: &str) -> Result<Device> {
    Ok(items
        .get::<Device>(&user_pk(user_id), &device_sk(device_id))
        .await?
        .unwrap_or_else(|| Device {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            ..Default::default()
        }))
}

/// Changes a message; one that moved to the archive must be restored
/// first (see [`StoreError::Cold`]).
async fn update_message(
    items: &mut impl Items,
    write: &EventWrite,
    seq: i64,
    change: impl FnOnce(&mut Message),
) -> Result<()> {
    let pk = conv_pk(&write.conversation_id);
    let sk = msg_sk(seq);
    if let Some(mut message) = items.get::<Message>(&pk, &sk).await? {
        change(&mut message);
        items.put(&pk, &sk, &message)?;
        return Ok(());
    }
    let restored = write
        .mutations
        .iter()
        .any(|m| matches!(m, Mutation::RestoreMessage { seq: s, .. } if *s == seq));
    let cold = items.get::<ColdIndex>(&pk, COLD).await?;
    if !restored && cold.is_some_and(|c| seq <= c.through_seq) {
        return Err(StoreError::Cold {
            conversation_id: write.conversation_id.clone(),
            seq,
        });
    }
    Ok(())
}
