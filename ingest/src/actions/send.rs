//! Sending a message: validated, checked against membership and the rate
//! limit, and answered once per client_msg_id however often it is retried
//! (a retry after a restart finds the stored message).

use schemas::{Actor, MessagePosted, Payload};

use std::sync::Arc;

use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::sends::{Sent, Slot};
use crate::uploads::{AttachmentRef, MAX_ATTACHMENTS};
use crate::validate;
use crate::wire::Ack;

pub struct NewMessage {
    pub conversation_id: String,
    pub client_msg_id: String,
    pub body: String,
    pub reply_to: Option<i64>,
    pub mentions: Vec<String>,
    /// No push notification for it.
    pub silent: bool,
    /// Files uploaded with `POST /v1/uploads`.
    pub attachments: Vec<AttachmentRef>,
}

impl Gateway {
    pub async fn send_message(
        self: &Arc<Self>,
        user_id: &str,
        device_id: &str,
        m: NewMessage,
    ) -> Result<Ack, ApiError> {
        validate::named_id("client_msg_id", &m.client_msg_id)?;
        if m.attachments.is_empty() {
            validate::body(&m.body, self.config.limits.max_body_bytes)?;
        } else {
            // A file may go without a caption.
            validate::body_size(&m.body, self.config.limits.max_body_bytes)?;
        }
        if m.attachments.len() > MAX_ATTACHMENTS {
            return Err(ApiError::invalid(
                "invalid_attachment",
                format!("at most {MAX_ATTACHMENTS} attachments"),
            ));
        }
        if m.mentions.len() > 100 {
            return Err(ApiError::invalid(
                "invalid_mentions",
                "at most 100 mentions",
            ));
        }
        for u in &m.mentions {
            validate::named_id("mentions", u)?;
        }
        self.require_member(&m.conversation_id, user_id).await?;
        self.check_rate(user_id)?;
        let attachments = self
            .attach(user_id, &m.conversation_id, &m.attachments)
            .await?;
        let key = (
            m.conversation_id.clone(),
            user_id.to_owned(),
            m.client_msg_id.clone(),
        );
        let slot = self.recent.slot(&key);
        // Answered by a task of its own: a caller that goes away (its
        // socket dropped while the broker was slow) does not take the
        // answer with it, and its retry waits for that answer instead of
        // producing the message a second time at another seq.
        let (gw, user_id, device_id) = (self.clone(), user_id.to_owned(), device_id.to_owned());
        tokio::spawn(async move {
            gw.answer_send(slot, &user_id, &device_id, m, attachments)
                .await
        })
        .await
        .map_err(|e| ApiError::unavailable("the gateway", e))?
    }

    /// The send's answer: the one already given, the stored message's, or
    /// a new event's.
    async fn answer_send(
        &self,
        slot: Slot,
        user_id: &str,
        device_id: &str,
        m: NewMessage,
        attachments: Vec<schemas::Attachment>,
    ) -> Result<Ack, ApiError> {
        let mut sent = slot.lock().await;
        if let Sent::Answered(ack) = &*sent {
            return Ok(ack.clone());
        }
        if let Some(ack) = self
            .stored_ack(&m.conversation_id, user_id, &m.client_msg_id)
            .await?
        {
            *sent = Sent::Answered(ack.clone());
            return Ok(ack);
        }
        if matches!(*sent, Sent::Not) {
            let message_id = ulid::Ulid::new().to_string();
            let actor = Actor {
                user_id: user_id.to_owned(),
                device_id: device_id.to_owned(),
            };
            let mut posted = MessagePosted {
                message_id: message_id.clone(),
                client_msg_id: m.client_msg_id.clone(),
                body: m.body,
                reply_to: m.reply_to,
                mentions: m.mentions,
                silent: m.silent,
                attachments,
                sealed: None,
            };
            if let Some(vault) = &self.vault {
                vault
                    .seal_posted(user_id, &m.conversation_id, &mut posted)
                    .await
                    .map_err(crate::gateway::vault_error)?;
            }
            let payload = Payload::MessagePosted(posted);
            let (seq, event) = self
                .publish_at_unknown_seq(&m.conversation_id, actor, payload)
                .await?;
            if seq >= 0 {
                let ack = Ack {
                    client_msg_id: m.client_msg_id,
                    seq,
                    message_id,
                    conversation_id: m.conversation_id,
                    sent_at: crate::wire::rfc3339(event.occurred_at),
                };
                *sent = Sent::Answered(ack.clone());
                return Ok(ack);
            }
            // In the log at a seq the broker did not tell (a re-sent batch
            // it already had, or an acknowledgement across a broker fault
            // that may name a second copy): the store has the first copy
            // once the persister applied it.
            tracing::warn!(
                conversation_id = %m.conversation_id,
                client_msg_id = %m.client_msg_id,
                "a send is in the log at an unknown seq; answering with the stored one"
            );
            *sent = Sent::InLog;
        }
        let stored = self
            .stored_send(&m.conversation_id, user_id, &m.client_msg_id)
            .await?;
        *sent = Sent::Answered(stored.clone());
        Ok(stored)
    }

    /// The attachments a send names, checked (see `Uploads::attach`).
    async fn attach(
        &self,
        user_id: &str,
        conversation_id: &str,
        refs: &[AttachmentRef],
    ) -> Result<Vec<schemas::Attachment>, ApiError> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let Some(uploads) = &self.uploads else {
            return Err(ApiError::invalid(
                "invalid_attachment",
                "this node takes no attachments (no object storage)",
            ));
        };
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            if out
                .iter()
                .any(|a: &schemas::Attachment| a.id == r.upload_id)
            {
                return Err(ApiError::invalid(
                    "invalid_attachment",
                    format!("upload {} is named twice", r.upload_id),
                ));
            }
            out.push(uploads.attach(user_id, conversation_id, r).await?);
        }
        Ok(out)
    }

    /// The answer to a send the store holds.
    async fn stored_ack(
        &self,
        conversation_id: &str,
        user_id: &str,
        client_msg_id: &str,
    ) -> Result<Option<Ack>, ApiError> {
        let stored = self
            .store
            .message_by_client_id(conversation_id, user_id, client_msg_id)
            .await?;
        Ok(stored.map(|stored| Ack {
            client_msg_id: client_msg_id.to_owned(),
            seq: stored.seq,
            message_id: stored.message_id,
            conversation_id: stored.conversation_id,
            sent_at: crate::wire::rfc3339(stored.sent_at),
        }))
    }

    /// Waits (the read-your-writes timeout at most) for the store to hold
    /// a send that is in the log; 503 if it does not in time (a retry then
    /// finds it stored).
    async fn stored_send(
        &self,
        conversation_id: &str,
        user_id: &str,
        client_msg_id: &str,
    ) -> Result<Ack, ApiError> {
        let started = std::time::Instant::now();
        loop {
            if let Some(ack) = self
                .stored_ack(conversation_id, user_id, client_msg_id)
                .await?
            {
                return Ok(ack);
            }
            if started.elapsed() > self.config.limits.read_your_writes_timeout {
                return Err(ApiError::unavailable(
                    "the message store",
                    format!("{client_msg_id} is in the log but not stored yet: retry"),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
