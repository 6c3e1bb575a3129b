//! The frames the server sends on the WebSocket (PROTOCOL.md, WebSocket),
//! as one tagged enum: a frame's `type` is its variant.

use serde::Serialize;
use serde_json::Value;

use schemas::{ChatEvent, Payload};

use crate::wire::{Ack, Message, rfc3339};

/// How long clients show "typing" after a signal.
pub const TYPING_SHOWN: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame<'a> {
    Event {
        conversation_id: &'a str,
        seq: i64,
        kind: &'a str,
        actor_id: &'a str,
        at: String,
        data: EventData,
    },
    Ack(&'a Ack),
    /// The resume is complete: `events` were sent from the store.
    Resumed {
        events: usize,
    },
    Typing {
        conversation_id: &'a str,
        user_id: &'a str,
        at: String,
        expires_in_ms: u64,
    },
    /// A user came online, or went offline (last seen then).
    Presence {
        user_id: &'a str,
        online: bool,
        last_seen: Option<String>,
    },
    Error {
        /// The `client_msg_id` or conversation the error is about.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
        code: &'a str,
        message: &'a str,
    },
    Pong,
}

/// An event frame's `data`: a live event's payload fields, or a stored
/// message as it is now.
#[derive(Serialize)]
#[serde(untagged)]
pub enum EventData {
    Live(Value),
    Stored(Box<Message>),
}

impl Frame<'_> {
    pub fn text(&self) -> String {
        // Nothing in a frame can fail to serialize (string keys only).
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `typing`: show the user as typing for `shown`.
pub fn typing(t: &schemas::Typing, shown: std::time::Duration) -> String {
    Frame::Typing {
        conversation_id: &t.conversation_id,
        user_id: &t.user_id,
        at: rfc3339(t.at),
        expires_in_ms: shown.as_millis() as u64,
    }
    .text()
}

pub fn presence(p: &schemas::DevicePresence) -> String {
    Frame::Presence {
        user_id: &p.user_id,
        online: p.online,
        last_seen: (!p.online).then(|| rfc3339(p.at)),
    }
    .text()
}

/// The `data` of a live event: the payload's fields; a posted message
/// also carries its seq, sender, time and conversation.
fn payload_data(event: &ChatEvent, seq: i64) -> Value {
    let mut data = serde_json::to_value(&event.payload).unwrap_or(Value::Null);
    if let Some(obj) = data.as_object_mut() {
        obj.remove("type");
        if let Payload::MessagePosted(_) = event.payload {
            obj.insert("seq".into(), seq.into());
            obj.insert("sender_id".into(), event.actor.user_id.clone().into());
            obj.insert("sent_at".into(), rfc3339(event.occurred_at).into());
            obj.insert(
                "conversation_id".into(),
                event.conversation_id.clone().into(),
            );
        }
    }
    data
}

/// An `event` frame for a live event.
pub fn event(event: &ChatEvent, seq: i64) -> String {
    Frame::Event {
        conversation_id: &event.conversation_id,
        seq,
        kind: event.payload.kind(),
        actor_id: &event.actor.user_id,
        at: rfc3339(event.occurred_at),
        data: EventData::Live(payload_data(event, seq)),
    }
    .text()
}

/// An `event` frame rebuilt from the store during `resume`: the message as
/// it is now (edits, deletion and reactions folded in).
pub fn stored_message_event(m: &store::Message) -> String {
    Frame::Event {
        conversation_id: &m.conversation_id,
        seq: m.seq,
        kind: "message_posted",
        actor_id: &m.sender_id,
        at: rfc3339(m.sent_at),
        data: EventData::Stored(Box::new(Message::from(m))),
    }
    .text()
}

pub fn error(reference: Option<&str>, e: &crate::error::ApiError) -> String {
    Frame::Error {
        reference,
        code: e.code,
        message: &e.message,
    }
    .text()
}
