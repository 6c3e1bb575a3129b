//! A user's data as a whole (GDPR): erasure by crypto-shredding.

use schemas::{DeviceRemoved, Payload, UserErased, user_stream};

use crate::auth::Claims;
use crate::error::ApiError;
use crate::gateway::{Gateway, vault_error};
use crate::validate;

/// What an erasure did.
pub struct Erased {
    /// The `user_erased` event's seq on the user's stream.
    pub event_seq: i64,
    /// The user's uploads removed from storage.
    pub files: usize,
    /// Their registered devices removed (push tokens with them).
    pub devices: usize,
}

impl Gateway {
    /// Erases `user_id`: the user themselves or a global admin. Their key
    /// goes first (from then on nothing they sealed opens, in any read
    /// model or replay), then their files and devices, then the
    /// `user_erased` event tells the read models (the index drops their
    /// messages, the audit log records it). Safe to repeat: a retry after
    /// a failure finishes what the first attempt began.
    pub async fn erase_user(&self, caller: &Claims, user_id: &str) -> Result<Erased, ApiError> {
        validate::named_id("user_id", user_id)?;
        if caller.sub != user_id && !caller.is_admin() {
            return Err(ApiError::forbidden(
                "only the user themselves or a global admin may erase a user",
            ));
        }
        let vault = self
            .vault
            .as_ref()
            .ok_or_else(|| ApiError::unavailable("the key vault", "this node has no key vault"))?;
        vault.erase(user_id).await.map_err(vault_error)?;
        let files = match &self.uploads {
            Some(uploads) => uploads
                .erase_owner(user_id)
                .await
                .map_err(|e| ApiError::unavailable("the file storage", e))?,
            None => 0,
        };
        let stream = user_stream(user_id);
        let actor = schemas::Actor {
            user_id: caller.sub.clone(),
            device_id: "api".into(),
        };
        let devices = self.store.devices(user_id).await?;
        for device in &devices {
            let payload = Payload::DeviceRemoved(DeviceRemoved {
                device_id: device.device_id.clone(),
            });
            self.publish(&stream, actor.clone(), payload).await?;
        }
        let payload = Payload::UserErased(UserErased {
            user_id: user_id.to_owned(),
        });
        let (event_seq, _) = self.publish(&stream, actor, payload).await?;
        tracing::info!(user_id, by = %caller.sub, files, devices = devices.len(), "user erased");
        Ok(Erased {
            event_seq,
            files,
            devices: devices.len(),
        })
    }
}

/// How long an export may run before its status reads failed (the node
/// that ran it stopped).
const EXPORT_DEADLINE_MS: i64 = 15 * 60 * 1000;

/// Where an export stands, as `GET /v1/users/{uid}/exports/{id}` shows it.
pub struct ExportView {
    pub status: String,
    pub lines: Option<usize>,
    pub error: Option<String>,
    pub link: Option<crate::uploads::Link>,
    pub size: Option<i64>,
}

impl Gateway {
    fn may_act_for(caller: &Claims, user_id: &str, what: &str) -> Result<(), ApiError> {
        validate::named_id("user_id", user_id)?;
        if caller.sub != user_id && !caller.is_admin() {
            return Err(ApiError::forbidden(format!(
                "only the user themselves or a global admin may {what}"
            )));
        }
        Ok(())
    }

    fn uploads(&self) -> Result<&std::sync::Arc<crate::uploads::Uploads>, ApiError> {
        self.uploads.as_ref().ok_or_else(|| {
            ApiError::unavailable("the file storage", "this node has no object storage")
        })
    }

    /// Starts an export of `user_id`'s data (the user or a global admin):
    /// it runs in the background; its id names it for
    /// [`Gateway::export_view`].
    pub async fn start_export(
        self: &std::sync::Arc<Self>,
        caller: &Claims,
        user_id: &str,
    ) -> Result<String, ApiError> {
        Self::may_act_for(caller, user_id, "export a user's data")?;
        self.check_rate(&caller.sub)?;
        let uploads = self.uploads()?.clone();
        let id = ulid::Ulid::new().to_string();
        let mut status = crate::uploads::ExportStatus {
            owner: user_id.to_owned(),
            status: "running".into(),
            started_at: schemas::now_millis(),
            lines: None,
            error: None,
        };
        uploads.put_export_status(&id, &status).await?;
        let payload = Payload::ExportRequested(schemas::ExportRequested {
            user_id: user_id.to_owned(),
            export_id: id.clone(),
        });
        let actor = schemas::Actor {
            user_id: caller.sub.clone(),
            device_id: "api".into(),
        };
        self.publish(&user_stream(user_id), actor, payload).await?;
        let (gw, user, export_id) = (self.clone(), user_id.to_owned(), id.clone());
        tokio::spawn(async move {
            let built = gw.build_export(&user).await;
            let stored = match built {
                Ok((lines, bytes)) => {
                    let name = format!("chatflow-export-{user}-{export_id}.jsonl");
                    uploads
                        .put_generated(&export_id, &user, &name, "application/x-ndjson", bytes)
                        .await
                        .map(|_| lines)
                }
                Err(e) => Err(e),
            };
            match stored {
                Ok(lines) => {
                    status.status = "ready".into();
                    status.lines = Some(lines);
                }
                Err(e) => {
                    tracing::warn!(user, error = %e.message, "an export failed");
                    status.status = "failed".into();
                    status.error = Some(e.message);
                }
            }
            if let Err(e) = uploads.put_export_status(&export_id, &status).await {
                tracing::warn!(user, error = %e.message, "an export's status was not stored");
            }
        });
        Ok(id)
    }

    pub async fn export_view(
        &self,
        caller: &Claims,
        user_id: &str,
        export_id: &str,
    ) -> Result<ExportView, ApiError> {
        Self::may_act_for(caller, user_id, "see a user's export")?;
        let uploads = self.uploads()?;
        let status = uploads
            .export_status(export_id)
            .await?
            .filter(|s| s.owner == user_id)
            .ok_or_else(|| ApiError::not_found(format!("no export {export_id} of {user_id}")))?;
        let mut view = ExportView {
            status: status.status.clone(),
            lines: status.lines,
            error: status.error.clone(),
            link: None,
            size: None,
        };
        match status.status.as_str() {
            "running" if schemas::now_millis() - status.started_at > EXPORT_DEADLINE_MS => {
                view.status = "failed".into();
                view.error = Some("interrupted: ask for a new export".into());
            }
            "ready" => match uploads.read_meta_as_attachment(export_id).await? {
                Some(file) => {
                    view.size = Some(file.size);
                    view.link = Some(uploads.download_link(&file).await?);
                }
                None => view.status = "expired".into(),
            },
            _ => {}
        }
        Ok(view)
    }

    /// The user's data as JSON lines: their profile, devices, the
    /// conversations they are in (with their role and receipts), every
    /// message they sent there (opened, with its reactions) and every
    /// reaction they made to others' messages. Returns the line count.
    async fn build_export(&self, user_id: &str) -> Result<(usize, bytes::Bytes), ApiError> {
        use serde_json::json;
        let mut lines = Vec::new();
        let erased = match &self.vault {
            Some(vault) => vault.is_erased(user_id).await.map_err(vault_error)?,
            None => false,
        };
        lines.push(json!({
            "type": "profile",
            "user_id": user_id,
            "exported_at": crate::wire::rfc3339(schemas::now_millis()),
            "erased": erased,
        }));
        // An erased user's devices went with the erasure (the store may
        // not have applied their removal yet).
        let devices = if erased {
            Vec::new()
        } else {
            self.store.devices(user_id).await?
        };
        for d in devices {
            lines.push(json!({
                "type": "device",
                "device_id": d.device_id,
                "platform": d.platform,
                "push_token": d.push_token,
                "cursors": d.cursors,
            }));
        }
        let mut conversations = self.store.user_conversations(user_id).await?;
        conversations.sort_by(|a, b| a.conversation_id.cmp(&b.conversation_id));
        for uc in conversations {
            let cid = uc.conversation_id;
            self.read_your_writes(&cid, false).await?;
            let conversation = self.store.conversation(&cid).await?;
            let member = self.store.member(&cid, user_id).await?;
            lines.push(json!({
                "type": "conversation",
                "conversation_id": cid,
                "kind": conversation.as_ref().map(|c| c.kind.clone()),
                "name": conversation.as_ref().and_then(|c| c.name.clone()),
                "role": uc.role,
                "muted": uc.muted,
                "joined_seq": member.as_ref().map(|m| m.joined_seq),
                "last_read_seq": member.as_ref().map(|m| m.last_read_seq),
                "last_delivered_seq": member.as_ref().map(|m| m.last_delivered_seq),
            }));
            let mut after = -1;
            loop {
                let mut page = self
                    .store
                    .messages(
                        &cid,
                        store::Page {
                            after: Some(after),
                            before: None,
                            limit: 200,
                        },
                    )
                    .await?;
                self.open_messages(&mut page.messages).await?;
                for m in &page.messages {
                    after = m.seq;
                    if m.sender_id == user_id {
                        lines.push(json!({
                            "type": "message",
                            "conversation_id": cid,
                            "seq": m.seq,
                            "message_id": m.message_id,
                            "sent_at": crate::wire::rfc3339(m.sent_at),
                            "edited_at": m.edited_at.map(crate::wire::rfc3339),
                            "deleted": m.deleted,
                            "body": m.body,
                            "reply_to": m.reply_to,
                            "mentions": m.mentions,
                            "attachments": m.attachments.iter().map(crate::wire::Attachment::from).collect::<Vec<_>>(),
                            "reactions": m.reactions,
                        }));
                    } else {
                        for (emoji, users) in &m.reactions {
                            if users.iter().any(|u| u == user_id) {
                                lines.push(json!({
                                    "type": "reaction",
                                    "conversation_id": cid,
                                    "seq": m.seq,
                                    "emoji": emoji,
                                }));
                            }
                        }
                    }
                }
                if !page.has_more || page.messages.is_empty() {
                    break;
                }
            }
        }
        let mut out = Vec::new();
        for line in &lines {
            out.extend_from_slice(line.to_string().as_bytes());
            out.push(b'\n');
        }
        Ok((lines.len(), bytes::Bytes::from(out)))
    }
}
