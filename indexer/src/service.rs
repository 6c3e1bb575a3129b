//! The indexer as a service of a chatflow process (its own binary, or
//! `chatflow serve --service indexer`).

use std::sync::Arc;

use anyhow::Context;
use cli::{Node, Running};
use streams::Lookback;
use streams::topics::TopicSpec;
use tokio_util::sync::CancellationToken;

use crate::{GROUP, Indexer};

#[derive(clap::Args, Clone, Debug)]
pub struct IndexerArgs {
    /// Records per index batch (one bulk request or commit), at most.
    #[arg(
        id = "indexer_max_batch",
        long = "indexer-max-batch",
        env = "CHATFLOW_INDEXER_MAX_BATCH",
        default_value_t = 10_000
    )]
    pub max_batch: usize,
}

pub struct Service(pub IndexerArgs);

#[async_trait::async_trait]
impl cli::Service for Service {
    fn name(&self) -> &'static str {
        "indexer"
    }

    fn topics(&self, _: &Node) -> Vec<TopicSpec> {
        vec![TopicSpec::dlq(GROUP)]
    }

    async fn start(
        self: Box<Self>,
        node: Arc<Node>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Running> {
        let index = node.search().await?.context("no search index")?;
        let fetch_wait = node.args.fetch.index_fetch_wait();
        let spec = node.events_spec(GROUP, self.0.max_batch, fetch_wait);
        let vault = node.vault().await?;
        let stage = Indexer::new(index, Some(vault))
            .with_lookback(Lookback::new(&node.kafka, chat::twins::LOOKBACK));
        Ok(node.run_stage(spec, Arc::new(stage), shutdown))
    }
}
