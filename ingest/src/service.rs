//! The gateway as a service of a chatflow process (its own binary, or
//! `chatflow serve --service ingest`): REST + WebSocket on a listener bound
//! before the process opens any connection, the node's heartbeat, and its
//! inbox (or the router's deliveries in-process).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cli::{AuthArgs, GatewayArgs, Node, Running};
use streams::topics::TopicSpec;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::uploads::{UploadConfig, Uploads};
use crate::{Gateway, GatewayConfig, Limits};

#[derive(clap::Args, Clone, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

pub struct Service {
    args: IngestArgs,
    listener: TcpListener,
}

/// How long shutdown waits for the answers in flight.
const DRAIN: Duration = Duration::from_secs(10);

impl Service {
    /// Binds the API's listener: call it before anything else opens a
    /// connection, whose ephemeral port could take the one asked for.
    pub async fn bind(args: IngestArgs) -> anyhow::Result<Service> {
        args.gateway.validate()?;
        let listener = TcpListener::bind(args.gateway.http)
            .await
            .with_context(|| format!("binding {}", args.gateway.http))?;
        Ok(Service { args, listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

#[async_trait::async_trait]
impl cli::Service for Service {
    fn name(&self) -> &'static str {
        "ingest"
    }

    fn front(&self) -> bool {
        true
    }

    fn topics(&self, node: &Node) -> Vec<TopicSpec> {
        vec![
            TopicSpec::events(node.args.topics.events_partitions),
            TopicSpec::signals(1),
            TopicSpec::presence(1),
            TopicSpec::inbox(&self.args.gateway.node_id),
        ]
    }

    async fn start(
        self: Box<Self>,
        node: Arc<Node>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Running> {
        let Service { args, listener } = *self;
        let secret = cli::secret(&args.auth, node.data_dir(), true)?;
        let auth = match &args.auth.jwt_public_key {
            Some(path) => {
                let pem =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                Auth::rs256(&pem)?
            }
            None => Auth::hs256(&secret),
        };
        let vault = node.vault().await?;
        let uploads = Arc::new(Uploads::new(
            node.archive().await?,
            &secret,
            UploadConfig {
                max_bytes: args.gateway.upload_max_bytes,
                ttl: Duration::from_secs(args.gateway.upload_ttl_secs),
                ..UploadConfig::default()
            },
        ));
        let limits = Limits {
            rate_per_sec: args.gateway.rate,
            rate_burst: args.gateway.rate_burst,
            idle_timeout: Duration::from_secs(args.gateway.idle_timeout_secs),
            ..Limits::default()
        };
        let config = GatewayConfig {
            node_id: args.gateway.node_id.clone(),
            limits,
            dev_auth: args.gateway.dev_auth,
        };
        let presence = node.presence().await?;
        let mut gateway = Gateway::new(config, auth, node.store().await?, node.producer().await?)
            .with_presence(presence.clone())
            .with_uploads(uploads.clone())
            .with_vault(vault.clone())
            .with_readiness(Arc::new(node.readiness()));
        if let Some(index) = node.search().await? {
            gateway = gateway.with_search(index);
        }
        if node.delivers_locally() {
            // The router in this process knows a new device at once, and
            // gets each event at its ack.
            gateway = gateway
                .with_presence_hook(Arc::new(move |p| presence.apply(p)))
                .with_handover(node.hand_events_over());
        }
        let gateway = Arc::new(gateway);
        if node.delivers_locally() {
            let (hub, codec, vault) = (gateway.hub.clone(), schemas::Codec::new(), vault.clone());
            node.set_local_inbox(
                &args.gateway.node_id,
                Arc::new(move |delivery| {
                    crate::delivery::inbox::deliver(&hub, &codec, Some(&vault), delivery)
                }),
            );
        } else {
            let (thread, ready) = crate::delivery::inbox::start(
                gateway.hub.clone(),
                Some(vault.clone()),
                &args.gateway.node_id,
                &node.kafka,
                node.args.fetch.live_fetch_wait(),
                node.followers(),
            )?;
            node.adopt(thread);
            let _ = tokio::time::timeout(Duration::from_secs(30), ready).await;
        }
        let heartbeat = CancellationToken::new();
        let beating = tokio::spawn(crate::actions::people::heartbeat(
            gateway.clone(),
            heartbeat.clone(),
        ));
        let sweeping = tokio::spawn(crate::uploads::sweeper(
            uploads,
            Duration::from_secs(args.gateway.upload_sweep_secs),
            heartbeat.clone(),
        ));
        let metrics = cli::metrics_route(node.metrics.clone());
        Ok(Box::pin(async move {
            let served = crate::serve(listener, gateway.clone(), metrics, shutdown, DRAIN).await;
            heartbeat.cancel();
            let _ = beating.await;
            let _ = sweeping.await;
            // None of this node's devices is online any more.
            if let Err(e) = gateway.publish_node(false).await {
                tracing::warn!(error = %e.message, "node reset not published");
            }
            served.context("serving HTTP")
        }))
    }
}
