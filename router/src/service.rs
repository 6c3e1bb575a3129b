//! The router as a service of a chatflow process (its own binary, or
//! `chatflow serve --service router`): the event router and the signal
//! router, which fail and stop together.

use std::sync::Arc;

use cli::{Node, Running};
use streams::topics::TopicSpec;
use streams::{ConsumerSpec, Lookback, StageStatus};
use tokio_util::sync::CancellationToken;

use crate::{Fanout, GROUP, RouterStage, SIGNALS_GROUP, Sequenced};

#[derive(clap::Args, Clone, Debug)]
pub struct RouterArgs {
    /// Events routed per batch, at most.
    #[arg(
        id = "router_max_batch",
        long = "router-max-batch",
        env = "CHATFLOW_ROUTER_MAX_BATCH",
        default_value_t = 500
    )]
    pub max_batch: usize,
}

pub struct Service(pub RouterArgs);

#[async_trait::async_trait]
impl cli::Service for Service {
    fn name(&self) -> &'static str {
        "router"
    }

    fn topics(&self, _: &Node) -> Vec<TopicSpec> {
        vec![
            TopicSpec::presence(1),
            TopicSpec::signals(1),
            TopicSpec::dlq(GROUP),
            TopicSpec::dlq(SIGNALS_GROUP),
        ]
    }

    async fn start(
        self: Box<Self>,
        node: Arc<Node>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Running> {
        // Route nothing before the view holds everyone already online.
        let presence = node.presence().await?;
        let (store, producer) = (node.store().await?, node.producer().await?);
        let stage = RouterStage::new(store.clone(), presence.clone(), producer.clone())
            .with_local_inbox(node.local_inbox())
            .with_lookback(Lookback::new(&node.kafka, chat::twins::LOOKBACK));
        let fanout = Fanout::new(presence.clone(), producer).with_local_inbox(node.local_inbox());
        let status = Arc::<StageStatus>::default();
        node.require({
            let status = status.clone();
            move || (status.partitions() == 0).then(|| "the router holds no partition".into())
        });
        // With the gateway in this process handing events over at the ack,
        // the router's own read is the backstop and can wait longer.
        let handed = node.take_handed_events();
        let fetch_wait = match handed {
            Some(_) => node.args.fetch.backstop_fetch_wait(),
            None => node.args.fetch.live_fetch_wait(),
        };
        let spec = ConsumerSpec {
            status,
            ..node.events_spec(GROUP, self.0.max_batch, fetch_wait)
        };
        let mut parts = Vec::new();
        match handed {
            Some(handed) => {
                let stage = Arc::new(Sequenced::new(stage));
                parts.push(node.run_stage(spec, stage.clone(), shutdown.clone()));
                parts.push(Box::pin(stage.follow_handed(handed, shutdown.clone())) as Running);
            }
            None => parts.push(node.run_stage(spec, Arc::new(stage), shutdown.clone())),
        }
        let (kafka, token) = (node.kafka.clone(), shutdown.clone());
        let signals_spec =
            node.events_spec(SIGNALS_GROUP, 500, node.args.fetch.signals_fetch_wait());
        let signals: Running = Box::pin(async move {
            let fanout = Arc::new(fanout);
            Ok(crate::signals::run(&kafka, store, presence, fanout, signals_spec, token).await?)
        });
        parts.push(signals);
        Ok(Box::pin(cli::together(parts, shutdown)))
    }
}
