//! Users and their devices: typing signals (throttled), presence and last
//! seen, and device registration for push notifications.

use chat::rules;
use schemas::{DeviceRegistered, DeviceRemoved, Payload, user_stream};
use serde::Serialize;

use crate::actions::members::actor;
use crate::auth::Claims;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::validate;
use crate::wire::rfc3339;

const PLATFORMS: [&str; 4] = ["ios", "android", "web", "desktop"];

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Presence {
    pub user_id: String,
    pub online: bool,
    /// RFC 3339; null while online or if never seen.
    pub last_seen: Option<String>,
}

impl Gateway {
    /// A member is typing: a signal on `chat.signals`, at most one per
    /// [`crate::rate::TYPING_EVERY`] per user and conversation (the rest are dropped).
    pub async fn typing(
        &self,
        conversation_id: &str,
        user_id: &str,
        device_id: &str,
    ) -> Result<(), ApiError> {
        self.require_member(conversation_id, user_id).await?;
        if !self.typing_throttle.admit(user_id, conversation_id) {
            return Ok(());
        }
        self.publish_typing(conversation_id, user_id, device_id)
            .await
    }

    /// A user's presence, for the user or someone who shares a
    /// conversation with them.
    pub async fn presence_of(&self, caller: &Claims, user_id: &str) -> Result<Presence, ApiError> {
        validate::named_id("user_id", user_id)?;
        if rules::see_presence(&caller.sub, user_id, caller.is_admin(), false).is_err() {
            self.user_memberships_settled(&caller.sub).await?;
            self.user_memberships_settled(user_id).await?;
            let mine = self.store.user_conversations(&caller.sub).await?;
            let theirs = self.store.user_conversations(user_id).await?;
            let shared = mine.iter().any(|m| {
                theirs
                    .iter()
                    .any(|t| t.conversation_id == m.conversation_id)
            });
            rules::see_presence(&caller.sub, user_id, caller.is_admin(), shared)?;
        }
        let Some(view) = &self.presence else {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "presence is not known on this node",
            ));
        };
        let (online, last_seen) = view.presence(user_id);
        Ok(Presence {
            user_id: user_id.to_owned(),
            online,
            last_seen: last_seen.map(rfc3339),
        })
    }

    /// Registers one of the caller's devices (for push notifications).
    pub async fn register_device(
        &self,
        caller: &Claims,
        device_id: &str,
        platform: &str,
        push_token: Option<String>,
    ) -> Result<i64, ApiError> {
        validate::named_id("device_id", device_id)?;
        if !PLATFORMS.contains(&platform) {
            return Err(ApiError::invalid(
                "invalid_platform",
                "platform is ios, android, web or desktop",
            ));
        }
        if push_token
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.len() > 4096)
        {
            return Err(ApiError::invalid(
                "invalid_push_token",
                "a push token is 1-4096 bytes",
            ));
        }
        let payload = Payload::DeviceRegistered(DeviceRegistered {
            device_id: device_id.to_owned(),
            platform: platform.to_owned(),
            push_token,
        });
        let stream = user_stream(&caller.sub);
        let actor = actor(caller, device_id);
        Ok(self.publish(&stream, actor, payload).await?.0)
    }

    pub async fn remove_device(&self, caller: &Claims, device_id: &str) -> Result<i64, ApiError> {
        validate::named_id("device_id", device_id)?;
        let payload = Payload::DeviceRemoved(DeviceRemoved {
            device_id: device_id.to_owned(),
        });
        let stream = user_stream(&caller.sub);
        let actor = actor(caller, device_id);
        Ok(self.publish(&stream, actor, payload).await?.0)
    }
}

impl Gateway {
    /// This node's own presence record: alive (a heartbeat), or a reset
    /// (none of its devices is online: at start and at a clean stop).
    pub async fn publish_node(&self, alive: bool) -> Result<(), ApiError> {
        let (key, record) =
            chat::presence::node_record(&self.config.node_id, alive, schemas::now_millis());
        self.publish_presence_record(&key, &record).await
    }
}

/// Resets this node's devices, then heartbeats until `shutdown`, so that
/// the routers know the node lives (see `router::presence`).
pub async fn heartbeat(gw: std::sync::Arc<Gateway>, shutdown: tokio_util::sync::CancellationToken) {
    if let Err(e) = gw.publish_node(false).await {
        tracing::warn!(error = %e.message, "node reset not published");
    }
    loop {
        if let Err(e) = gw.publish_node(true).await {
            tracing::warn!(error = %e.message, "heartbeat not published");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(chat::presence::HEARTBEAT_EVERY) => {}
        }
    }
}
