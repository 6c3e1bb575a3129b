//! Firebase Cloud Messaging, HTTP v1: an OAuth2 access token from the
//! service account (an RS256 JWT exchanged at its `token_uri`, cached until
//! a minute before it expires), then one `messages:send` per push.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use super::{Provider, Push, PushError, classify, transport};

#[derive(Clone, Debug)]
pub struct FcmConfig {
    /// The service account's JSON key file (Firebase console → Service
    /// accounts); its `token_uri` is where tokens come from.
    pub service_account: std::path::PathBuf,
    /// `https://fcm.googleapis.com`, or a stand-in.
    pub endpoint: String,
}

#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    client_email: String,
    private_key: String,
    token_uri: String,
}

pub struct Fcm {
    client: reqwest::Client,
    account: ServiceAccount,
    key: EncodingKey,
    endpoint: String,
    token: Mutex<Option<(String, Instant)>>,
}

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

impl Fcm {
    pub fn new(config: &FcmConfig) -> anyhow::Result<Fcm> {
        let account: ServiceAccount =
            serde_json::from_slice(&std::fs::read(&config.service_account)?)?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())?;
        Ok(Fcm {
            client: reqwest::Client::new(),
            account,
            key,
            endpoint: config.endpoint.trim_end_matches('/').to_owned(),
            token: Mutex::new(None),
        })
    }

    async fn access_token(&self) -> Result<String, PushError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let now = schemas::now_millis() / 1000;
        let claims = json!({
            "iss": self.account.client_email,
            "scope": SCOPE,
            "aud": self.account.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let assertion = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| PushError::Failed(format!("signing the FCM assertion: {e}")))?;
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let response = self
            .client
            .post(&self.account.token_uri)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(transport)?;
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            expires_in: u64,
        }
        if !response.status().is_success() {
            classify(response).await?;
            return Err(PushError::Failed("no access token".into()));
        }
        let token: Token = response
            .json()
            .await
            .map_err(|e| PushError::Failed(format!("the token answer: {e}")))?;
        let until = Instant::now() + Duration::from_secs(token.expires_in.saturating_sub(60));
        *cached = Some((token.access_token.clone(), until));
        Ok(token.access_token)
    }
}

#[async_trait]
impl Provider for Fcm {
    fn name(&self) -> &'static str {
        "fcm"
    }

    async fn send(&self, push: &Push) -> Result<(), PushError> {
        let token = self.access_token().await?;
        let message = json!({
            "message": {
                "token": push.token,
                "notification": {"title": push.title, "body": push.body},
                "data": {
                    "conversation_id": push.conversation_id,
                    "seq": push.seq.to_string(),
                    "count": push.count.to_string(),
                },
                "android": {
                    "priority": if push.urgent { "HIGH" } else { "NORMAL" },
                    "collapse_key": push.conversation_id,
                    "ttl": if push.urgent { "300s" } else { "86400s" },
                },
            }
        });
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.endpoint, self.account.project_id
        );
        let response = self
            .client
            .post(url)
            .bearer_auth(&token)
            .json(&message)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // The token was revoked or expired early: a fresh one next time.
            *self.token.lock().await = None;
            return Err(PushError::Retry {
                after: None,
                reason: "401 from FCM".into(),
            });
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(PushError::DeadToken("404 UNREGISTERED".into()));
        }
        match classify(response).await {
            Err(PushError::Failed(reason)) if reason.contains("UNREGISTERED") => {
                Err(PushError::DeadToken(reason))
            }
            other => other,
        }
    }
}
