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
