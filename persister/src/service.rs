//! The persister as a service of a chatflow process (its own binary, or
//! `chatflow serve --service persister`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cli::{Node, Running};
use streams::topics::{self, TopicSpec};
use streams::{ConsumerSpec, KafkaConfig, StageStatus};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{GROUP, Persister};

#[derive(clap::Args, Clone, Debug)]
pub struct PersisterArgs {
    /// Records handed to the store per batch, at most.
    #[arg(
        id = "persister_max_batch",
        long = "persister-max-batch",
        env = "CHATFLOW_PERSISTER_MAX_BATCH",
        default_value_t = 1000
    )]
    pub max_batch: usize,
    /// How often the analytics gauges (`chatflow_active_users`,
    /// `chatflow_messages_today`) are read from the store, in seconds.
    #[arg(
        long = "analytics-interval-secs",
        env = "CHATFLOW_ANALYTICS_INTERVAL_SECS",
        default_value_t = 60
    )]
    pub analytics_interval_secs: u64,
}

pub struct Service(pub PersisterArgs);

#[async_trait::async_trait]
impl cli::Service for Service {
    fn name(&self) -> &'static str {
        "persister"
    }

    fn topics(&self, _: &Node) -> Vec<TopicSpec> {
        vec![TopicSpec::dlq(GROUP)]
    }

    async fn start(
        self: Box<Self>,
        node: Arc<Node>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Running> {
        let store = node.store().await?;
        let stage = Arc::new(Persister::new(store.clone()));
        let gauges: Running = Box::pin(analytics_gauges(
            store,
            Duration::from_secs(self.0.analytics_interval_secs.max(1)),
            shutdown.clone(),
        ));
        // A gateway in this process takes no write before the store holds
        // every event already on the log: a retried send is then
        // recognised as the message it already is. Without a gateway here
        // nobody waits for that, and nothing checks.
        let gated = node.runs("ingest");
        let status = Arc::<StageStatus>::default();
        let caught_up = Arc::new(AtomicBool::new(!gated));
        node.require({
            let (status, caught_up) = (status.clone(), caught_up.clone());
            move || {
                if status.partitions() == 0 {
                    Some("the persister holds no partition".into())
                } else if !caught_up.load(Ordering::Relaxed) {
                    Some("the persister is catching up with chat.events".into())
                } else {
                    None
                }
            }
        });
        let fetch_wait = node.args.fetch.store_fetch_wait();
        let spec = ConsumerSpec {
            status,
            ..node.events_spec(GROUP, self.0.max_batch, fetch_wait)
        };
        let consume = node.run_stage(spec, stage, shutdown.clone());
        if !gated {
            return Ok(Box::pin(cli::together(vec![consume, gauges], shutdown)));
        }
        let (kafka, token) = (node.kafka.clone(), shutdown.clone());
        let catch_up: Running = Box::pin(async move {
            if wait_caught_up(kafka, token).await? {
                caught_up.store(true, Ordering::Relaxed);
                info!("the persister has caught up with chat.events: ready");
            }
            Ok(())
        });
        Ok(Box::pin(cli::together(
            vec![consume, catch_up, gauges],
            shutdown,
        )))
    }
}

/// Sets the analytics gauges from the store every `interval`: users active
/// today and in the last 30 days, messages today per conversation kind.
async fn analytics_gauges(
    store: Arc<dyn store::Store>,
    interval: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        let today = store::day_of(schemas::now_millis());
        match store.analytics(today - 29, today, 0).await {
            Ok(figures) => {
                metrics::gauge!("chatflow_active_users", "window" => "30d")
                    .set(figures.active_users as f64);
                if let Some(day) = figures.days.last() {
                    metrics::gauge!("chatflow_active_users", "window" => "1d")
                        .set(day.active_users as f64);
                    for (kind, n) in &day.messages {
                        metrics::gauge!("chatflow_messages_today", "kind" => kind.clone())
                            .set(*n as f64);
                    }
                }
            }
            Err(e) => warn!(error = %e, "analytics gauges not read"),
        }
    }
}

/// Returns true once the persister's committed offsets reach the end of
/// `chat.events` as it was when called (read again every 30 s, each time
/// with a warning); false at shutdown, which does not wait for the check
/// in progress.
async fn wait_caught_up(kafka: KafkaConfig, shutdown: CancellationToken) -> anyhow::Result<bool> {
    loop {
        let kafka = kafka.clone();
        let check = tokio::task::spawn_blocking(move || {
            streams::ops::wait_caught_up(&kafka, GROUP, topics::EVENTS, Duration::from_secs(30))
        });
        let done = tokio::select! {
            _ = shutdown.cancelled() => return Ok(false),
            done = check => done??,
        };
        if done {
            return Ok(true);
        }
        warn!("the persister is still catching up with chat.events; not ready");
    }
}
