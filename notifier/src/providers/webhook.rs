//! A JSON POST per push, signed with HMAC-SHA256 over
//! `<timestamp>.<body>`, as Stripe and GitHub sign theirs:
//! `X-Chatflow-Timestamp: <unix seconds>`,
//! `X-Chatflow-Signature: sha256=<hex>`. A receiver recomputes the HMAC
//! with the shared secret and refuses old timestamps.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Provider, Push, PushError, classify, transport};

pub struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
}

impl Webhook {
    pub fn new(url: String, secret: Vec<u8>) -> Webhook {
        Webhook {
            client: reqwest::Client::new(),
            url,
            secret,
        }
    }

    /// The signature header's value for `body` sent at `timestamp`.
    pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

#[async_trait]
impl Provider for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, push: &Push) -> Result<(), PushError> {
        let mut payload =
            serde_json::to_value(push).map_err(|e| PushError::Failed(e.to_string()))?;
        payload["token"] = serde_json::Value::String(push.token.clone());
        let body = serde_json::to_vec(&payload).map_err(|e| PushError::Failed(e.to_string()))?;
        let timestamp = schemas::now_millis() as u64 / 1000;
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-chatflow-timestamp", timestamp.to_string())
            .header(
                "x-chatflow-signature",
                Webhook::sign(&self.secret, timestamp, &body),
            )
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        // A receiver answers 410 Gone for a subscription that is no more.
        if response.status() == reqwest::StatusCode::GONE {
            return Err(PushError::DeadToken("410 Gone".into()));
        }
        classify(response).await
    }
}
