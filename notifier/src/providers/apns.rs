//! Apple Push Notification service over HTTP/2 with token-based auth: an
//! ES256 provider token (`kid` = key id, `iss` = team id), reused for 50
//! minutes as Apple asks, and one `POST /3/device/<token>` per push.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::sync::Mutex;

use super::{Provider, Push, PushError, classify, transport};

#[derive(Clone, Debug)]
pub struct ApnsConfig {
    /// The `.p8` signing key (PEM).
    pub key: std::path::PathBuf,
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// `https://api.push.apple.com` (or the sandbox, or a stand-in; an
    /// `http://` endpoint speaks HTTP/2 without TLS).
    pub endpoint: String,
}

pub struct Apns {
    client: reqwest::Client,
    config: ApnsConfig,
    key: EncodingKey,
    token: Mutex<Option<(String, Instant)>>,
}

impl Apns {
    pub fn new(config: ApnsConfig) -> anyhow::Result<Apns> {
        let key = EncodingKey::from_ec_pem(&std::fs::read(&config.key)?)?;
        let client = reqwest::Client::builder().http2_prior_knowledge().build()?;
        Ok(Apns {
            client,
            config: ApnsConfig {
                endpoint: config.endpoint.trim_end_matches('/').to_owned(),
                ..config
            },
            key,
            token: Mutex::new(None),
        })
    }

    async fn provider_token(&self, fresh: bool) -> Result<String, PushError> {
        let mut cached = self.token.lock().await;
        if !fresh
            && let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.config.key_id.clone());
        let claims = json!({"iss": self.config.team_id, "iat": schemas::now_millis() / 1000});
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| PushError::Failed(format!("signing the APNs token: {e}")))?;
        *cached = Some((token.clone(), Instant::now() + Duration::from_secs(50 * 60)));
        Ok(token)
    }

    async fn post(&self, push: &Push, token: &str) -> Result<reqwest::Response, PushError> {
        let expiry = schemas::now_millis() / 1000 + if push.urgent { 300 } else { 86_400 };
        let payload = json!({
            "aps": {
                "alert": {"title": push.title, "body": push.body},
                "sound": "default",
                "thread-id": push.conversation_id,
            },
            "conversation_id": push.conversation_id,
            "seq": push.seq,
            "count": push.count,
        });
        self.client
            .post(format!("{}/3/device/{}", self.config.endpoint, push.token))
            .bearer_auth(token)
            .header("apns-topic", &self.config.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", if push.urgent { "10" } else { "5" })
            .header("apns-expiration", expiry.to_string())
            .header("apns-collapse-id", collapse_id(&push.conversation_id))
            .json(&payload)
            .send()
            .await
            .map_err(transport)
    }
}

/// APNs takes a collapse id of at most 64 bytes.
fn collapse_id(conversation_id: &str) -> String {
    if conversation_id.len() <= 64 {
        return conversation_id.to_owned();
    }
    let mut end = 64;
    while !conversation_id.is_char_boundary(end) {
        end -= 1;
    }
    conversation_id[..end].to_owned()
}

#[async_trait]
impl Provider for Apns {
    fn name(&self) -> &'static str {
        "apns"
    }

    async fn send(&self, push: &Push) -> Result<(), PushError> {
        let mut response = self.post(push, &self.provider_token(false).await?).await?;
        if response.status() == reqwest::StatusCode::FORBIDDEN {
            // ExpiredProviderToken: sign a new one and try once more.
            response = self.post(push, &self.provider_token(true).await?).await?;
        }
        if response.status() == reqwest::StatusCode::GONE {
            return Err(PushError::DeadToken("410 Unregistered".into()));
        }
        match classify(response).await {
            Err(PushError::Failed(reason)) if reason.contains("BadDeviceToken") => {
                Err(PushError::DeadToken(reason))
            }
            other => other,
        }
    }
}
