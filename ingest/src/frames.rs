//! JSON shapes sent to clients (PROTOCOL.md).

use schemas::{ChatEvent, Payload};
use serde_json::{Value, json};

/// How long clients show "typing" after a signal.
pub const TYPING_SHOWN: std::time::Duration = std::time::Duration::from_secs(5);

pub fn rfc3339(millis: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// A PROTOCOL.md `message`.
/// `typing`: show the user as typing for `shown`.
pub fn typing(t: &schemas::Typing, shown: std::time::Duration) -> String {
    json!({
        "type": "typing",
        "conversation_id": t.conversation_id,
        "user_id": t.user_id,
        "at": rfc3339(t.at),
        "expires_in_ms": shown.as_millis() as u64,
    })
    .to_string()
}

/// `presence`: a user came online, or went offline (last seen then).
pub fn presence(p: &schemas::DevicePresence) -> String {
    json!({
        "type": "presence",
        "user_id": p.user_id,
        "online": p.online,
        "last_seen": if p.online { None } else { Some(rfc3339(p.at)) },
    })
    .to_string()
}

pub fn message(m: &store::Message) -> Value {
    let mut v = json!({
        "conversation_id": m.conversation_id,
        "seq": m.seq,
        "message_id": m.message_id,
        "sender_id": m.sender_id,
        "client_msg_id": m.client_msg_id,
        "sent_at": rfc3339(m.sent_at),
        "deleted": m.deleted,
        "mentions": m.mentions,
        "reactions": m.reactions,
    });
    if let Some(body) = &m.body {
        v["body"] = json!(body);
    }
    if let Some(at) = m.edited_at {
        v["edited_at"] = json!(rfc3339(at));
    }
    if let Some(r) = m.reply_to {
        v["reply_to"] = json!(r);
    }
    v
}

/// The `data` of an `event` frame: the payload's fields.
fn payload_data(event: &ChatEvent, seq: i64) -> Value {
    let mut data = serde_json::to_value(&event.payload).unwrap_or(Value::Null);
    if let Some(obj) = data.as_object_mut() {
        obj.remove("type");
        if let Payload::MessagePosted(_) = event.payload {
            obj.insert("seq".into(), json!(seq));
            obj.insert("sender_id".into(), json!(event.actor.user_id));
            obj.insert("sent_at".into(), json!(rfc3339(event.occurred_at)));
            obj.insert("conversation_id".into(), json!(event.conversation_id));
        }
    }
    data
}

/// An `event` frame for a live event.
pub fn event(event: &ChatEvent, seq: i64) -> String {
    json!({
        "type": "event",
        "conversation_id": event.conversation_id,
        "seq": seq,
        "kind": event.payload.kind(),
        "actor_id": event.actor.user_id,
        "at": rfc3339(event.occurred_at),
        "data": payload_data(event, seq),
    })
    .to_string()
}

/// An `event` frame rebuilt from the store during `resume`: the message as
/// it is now (edits, deletion and reactions folded in).
pub fn stored_message_event(m: &store::Message) -> String {
    json!({
        "type": "event",
        "conversation_id": m.conversation_id,
        "seq": m.seq,
        "kind": "message_posted",
        "actor_id": m.sender_id,
        "at": rfc3339(m.sent_at),
        "data": message(m),
    })
    .to_string()
}

pub fn error(reference: Option<&str>, e: &crate::error::ApiError) -> String {
    let mut v = json!({"type": "error", "code": e.code, "message": e.message});
    if let Some(r) = reference {
        v["ref"] = json!(r);
    }
    v.to_string()
}
