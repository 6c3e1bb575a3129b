//! Where pushes go: one [`Provider`] per kind of device. iOS devices get
//! APNs, Android devices FCM, web and desktop devices the webhook (a
//! self-hosted gateway such as ntfy, or the operator's own service).

mod apns;
mod fcm;
mod webhook;

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

pub use apns::{Apns, ApnsConfig};
pub use fcm::{Fcm, FcmConfig};
pub use webhook::Webhook;

/// One notification for one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Push {
    pub user_id: String,
    pub device_id: String,
    pub platform: String,
    #[serde(skip)]
    pub token: String,
    pub conversation_id: String,
    /// The newest message it tells of.
    pub seq: i64,
    /// How many messages it tells of.
    pub count: u32,
    pub title: String,
    pub body: String,
    /// Mentions and direct messages: high priority, short expiry.
    pub urgent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Throttled or unavailable: try again, after `Retry-After` if given.
    #[error("retry later: {reason}")]
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The provider says this token will never work again.
    #[error("dead token: {0}")]
    DeadToken(String),
    /// Refused for good (bad request, bad credentials).
    #[error("push refused: {0}")]
    Failed(String),
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// Its name in metrics.
    fn name(&self) -> &'static str;
    async fn send(&self, push: &Push) -> Result<(), PushError>;
}

/// The providers configured, by device platform.
#[derive(Default)]
pub struct Providers {
    pub apns: Option<Box<dyn Provider>>,
    pub fcm: Option<Box<dyn Provider>>,
    pub webhook: Option<Box<dyn Provider>>,
}

impl Providers {
    pub fn for_platform(&self, platform: &str) -> Option<&dyn Provider> {
        match platform {
            "ios" => self.apns.as_deref(),
            "android" => self.fcm.as_deref(),
            _ => self.webhook.as_deref(),
        }
    }
}

/// How an HTTP answer maps to a [`PushError`]: 429 and 5xx are worth a
/// retry (after `Retry-After`), the rest is final.
pub(crate) async fn classify(response: reqwest::Response) -> Result<(), PushError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.text().await.unwrap_or_default();
    let reason = format!("{status}: {}", body.chars().take(300).collect::<String>());
    if status.as_u16() == 429 || status.is_server_error() {
        Err(PushError::Retry { after, reason })
    } else {
        Err(PushError::Failed(reason))
    }
}

pub(crate) fn transport(e: reqwest::Error) -> PushError {
    PushError::Retry {
        after: None,
        reason: e.to_string(),
    }
}
