//! The archiver as a service of a chatflow process (its own binary, or
//! `chatflow serve --service archiver`).

use std::sync::Arc;
use std::time::Duration;

use cli::{Node, Running};
use streams::ConsumerSpec;
use streams::topics::TopicSpec;
use tokio_util::sync::CancellationToken;

use tracing::{info, warn};

use crate::{Archiver, GROUP, Rotation};

#[derive(clap::Args, Clone, Debug)]
pub struct ArchiverArgs {
    /// Records taken from the log per batch, at most.
    #[arg(
        id = "archiver_max_batch",
        long = "archiver-max-batch",
        env = "CHATFLOW_ARCHIVER_MAX_BATCH",
        default_value_t = 5000
    )]
    pub max_batch: usize,
    /// A segment closes when it holds this many records.
    #[arg(
        long,
        env = "CHATFLOW_ARCHIVE_SEGMENT_RECORDS",
        default_value_t = 10_000
    )]
    pub archive_segment_records: usize,
    /// A segment closes when the next record's timestamp is this far past
    /// its first record's (record time, not the clock).
    #[arg(long, env = "CHATFLOW_ARCHIVE_SEGMENT_SPAN", default_value = "1h", value_parser = humantime::parse_duration)]
    pub archive_segment_span: Duration,
    /// How often the segment being filled is written (how far the archive
    /// may trail the log when traffic is low).
    #[arg(long, env = "CHATFLOW_ARCHIVE_FLUSH", default_value = "10s", value_parser = humantime::parse_duration)]
    pub archive_flush: Duration,
    /// Messages older than this move from the hot store to the archive.
    #[arg(long, env = "CHATFLOW_HOT_AGE", default_value = "30days", value_parser = humantime::parse_duration)]
    pub hot_age: Duration,
    /// How often the cold move sweeps every conversation.
    #[arg(long, env = "CHATFLOW_COLD_EVERY", default_value = "1h", value_parser = humantime::parse_duration)]
    pub cold_every: Duration,
    /// Run the cold move in this process. Exactly one archiver of a
    /// deployment should: two moving the same conversation at once could
    /// archive an edit's older copy.
    #[arg(long, env = "CHATFLOW_COLD_MOVE", default_value_t = true, action = clap::ArgAction::Set)]
    pub cold_move: bool,
}

pub struct Service(pub ArchiverArgs);

#[async_trait::async_trait]
impl cli::Service for Service {
    fn name(&self) -> &'static str {
        "archiver"
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
        let rotation = Rotation {
            max_records: args.archive_segment_records,
            max_span_ms: i64::try_from(args.archive_segment_span.as_millis()).unwrap_or(i64::MAX),
        };
        let stage = Archiver::new(node.archive().await?, rotation);
        // The archive is not on the delivery path: fetch as lazily as the
        // indexer does.
        let fetch_wait = node.args.fetch.index_fetch_wait();
        let spec = ConsumerSpec {
            flush_every: Some(args.archive_flush.max(Duration::from_millis(10))),
            ..node.events_spec(GROUP, args.max_batch, fetch_wait)
        };
        let log = node.run_stage(spec, Arc::new(stage), shutdown.clone());
        if !args.cold_move {
            return Ok(log);
        }
        let tiered = node.tiered().await?;
        let mover: Running = Box::pin(cold_move(
            tiered,
            args.hot_age,
            args.cold_every,
            shutdown.clone(),
        ));
        Ok(Box::pin(cli::together(vec![log, mover], shutdown)))
    }
}

/// Every `every`, moves the messages older than `hot_age` to the archive.
/// A failed sweep is logged and tried again on the next.
async fn cold_move(
    tiered: Arc<store::Tiered>,
    hot_age: Duration,
    every: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let age = i64::try_from(hot_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = schemas::now_millis().saturating_sub(age);
        let started = std::time::Instant::now();
        let sweep = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = store::cold::move_all(&**tiered.hot(), &**tiered.archive(), cutoff) => r,
        };
        match sweep {
            Ok((report, failed)) => {
                metrics::counter!("chatflow_cold_moved_messages_total")
                    .increment(report.archived as u64);
                metrics::counter!("chatflow_cold_segments_written_total")
                    .increment(report.segments as u64);
                metrics::counter!("chatflow_cold_bytes_written_total").increment(report.bytes);
                if report.archived > 0 || !failed.is_empty() {
                    info!(archived = report.archived, dropped = report.dropped,
                        segments = report.segments, bytes = report.bytes,
                        failed = failed.len(), took = ?started.elapsed(), "cold move");
                }
                for (cid, e) in failed {
                    warn!(conversation = %cid, error = %e, "cold move failed, retried on the next sweep");
                }
            }
            Err(e) => warn!(error = %e, "cold move sweep failed"),
        }
    }
}
