//! The notifier as a service of a chatflow process (its own binary, or
//! `chatflow serve --service notifier`). Provider credentials come from
//! files (never from flags, never logged).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cli::{Node, Running};
use streams::ConsumerSpec;
use streams::topics::TopicSpec;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::providers::{Apns, ApnsConfig, Fcm, FcmConfig, Providers, Webhook};
use crate::{Config, GROUP, Notifier};

#[derive(clap::Args, Clone, Debug)]
pub struct NotifierArgs {
    /// Records taken from the log per batch, at most.
    #[arg(
        id = "notifier_max_batch",
        long = "notifier-max-batch",
        env = "CHATFLOW_NOTIFIER_MAX_BATCH",
        default_value_t = 1000
    )]
    pub max_batch: usize,
    /// How long a device's pushes for a conversation collapse into one.
    #[arg(long, env = "CHATFLOW_PUSH_WINDOW", default_value = "3s", value_parser = humantime::parse_duration)]
    pub push_window: Duration,
    /// Broker long-poll bound for the notifier. A push goes to a device
    /// that is offline, seconds after the window opens: a tenth of a
    /// second more is not seen, and each fetch costs the broker CPU.
    #[arg(long, env = "CHATFLOW_PUSH_FETCH_WAIT", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub push_fetch_wait: Duration,
    /// Pushes per device per minute, at most (more collapse and wait).
    #[arg(
        long,
        env = "CHATFLOW_PUSH_PER_DEVICE_PER_MINUTE",
        default_value_t = 20
    )]
    pub push_per_device_per_minute: usize,
    /// Put the message's text in the push (off: "3 new messages").
    #[arg(long, env = "CHATFLOW_PUSH_SHOW_BODY", default_value_t = false, action = clap::ArgAction::Set)]
    pub push_show_body: bool,
    /// Web and desktop devices: POST each push here as signed JSON.
    #[arg(long, env = "CHATFLOW_PUSH_WEBHOOK_URL")]
    pub push_webhook_url: Option<String>,
    /// The webhook's HMAC secret, in a file.
    #[arg(long, env = "CHATFLOW_PUSH_WEBHOOK_SECRET_FILE")]
    pub push_webhook_secret_file: Option<PathBuf>,
    /// Android devices: the FCM service account's JSON key file.
    #[arg(long, env = "CHATFLOW_FCM_SERVICE_ACCOUNT")]
    pub fcm_service_account: Option<PathBuf>,
    #[arg(
        long,
        env = "CHATFLOW_FCM_ENDPOINT",
        default_value = "https://fcm.googleapis.com"
    )]
    pub fcm_endpoint: String,
    /// iOS devices: the APNs signing key (`.p8`).
    #[arg(long, env = "CHATFLOW_APNS_KEY")]
    pub apns_key: Option<PathBuf>,
    #[arg(long, env = "CHATFLOW_APNS_KEY_ID", default_value = "")]
    pub apns_key_id: String,
    #[arg(long, env = "CHATFLOW_APNS_TEAM_ID", default_value = "")]
    pub apns_team_id: String,
    /// The app's bundle id.
    #[arg(long, env = "CHATFLOW_APNS_TOPIC", default_value = "")]
    pub apns_topic: String,
    #[arg(
        long,
        env = "CHATFLOW_APNS_ENDPOINT",
        default_value = "https://api.push.apple.com"
    )]
    pub apns_endpoint: String,
}

impl NotifierArgs {
    fn providers(&self) -> anyhow::Result<Providers> {
        let mut providers = Providers::default();
        if let Some(url) = &self.push_webhook_url {
            let secret = match &self.push_webhook_secret_file {
                Some(path) => std::fs::read(path)
                    .with_context(|| format!("reading the webhook secret {}", path.display()))?,
                None => anyhow::bail!("--push-webhook-url needs --push-webhook-secret-file"),
            };
            let secret = String::from_utf8_lossy(&secret).trim().as_bytes().to_vec();
            providers.webhook = Some(Box::new(Webhook::new(url.clone(), secret)));
        }
        if let Some(path) = &self.fcm_service_account {
            let config = FcmConfig {
                service_account: path.clone(),
                endpoint: self.fcm_endpoint.clone(),
            };
            providers.fcm =
                Some(Box::new(Fcm::new(&config).with_context(|| {
                    format!("the FCM service account {}", path.display())
                })?));
        }
        if let Some(key) = &self.apns_key {
            let config = ApnsConfig {
                key: key.clone(),
                key_id: self.apns_key_id.clone(),
                team_id: self.apns_team_id.clone(),
                topic: self.apns_topic.clone(),
                endpoint: self.apns_endpoint.clone(),
            };
            providers.apns =
                Some(Box::new(Apns::new(config).with_context(|| {
                    format!("the APNs key {}", key.display())
                })?));
        }
        Ok(providers)
    }
}

pub struct Service(pub NotifierArgs);

#[async_trait::async_trait]
impl cli::Service for Service {
    fn name(&self) -> &'static str {
        "notifier"
    }

    fn topics(&self, _: &Node) -> Vec<TopicSpec> {
        vec![TopicSpec::dlq(GROUP)]
    }

    async fn start(
        self: Box<Self>,
        node: Arc<Node>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Running> {
        let args = self.0;
        let providers = args.providers()?;
        if providers.apns.is_none() && providers.fcm.is_none() && providers.webhook.is_none() {
            info!(
                "no push provider configured (--push-webhook-url, --fcm-service-account, --apns-key): the notifier stays idle"
            );
            return Ok(Box::pin(async move {
                shutdown.cancelled().await;
                Ok(())
            }));
        }
        let config = Config {
            window: args.push_window,
            per_device_per_minute: args.push_per_device_per_minute.max(1),
            show_body: args.push_show_body,
            max_attempts: 8,
        };
        let stage = Notifier::new(
            node.store().await?,
            node.presence().await?,
            providers,
            config,
            Some(node.producer().await?),
        )
        .with_vault(node.vault().await?);
        let fetch_wait = args.push_fetch_wait;
        let tick =
            (args.push_window / 4).clamp(Duration::from_millis(20), Duration::from_millis(250));
        let spec = ConsumerSpec {
            flush_every: Some(tick),
            ..node.events_spec(GROUP, args.max_batch, fetch_wait)
        };
        Ok(node.run_stage(spec, Arc::new(stage), shutdown))
    }
}
