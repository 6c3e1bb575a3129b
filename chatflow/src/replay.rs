//! `chatflow replay`: rebuilds a read model from the log alone, into a
//! fresh target, through the same stage code as live (the persister's or
//! the indexer's `Stage`). Each partition is read from the event-log
//! archive first, then from the broker from where the archive ends up to
//! the broker's end when the replay began; a gap between the two (the
//! broker's retention ran ahead of the archive) stops it loudly. The
//! router's and notifier's side effects never run. A checkpoint (the next
//! offset per partition) is written after each batch, so a replay killed
//! halfway goes on where it stopped; the stages are idempotent, so a
//! batch done twice changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use archive::segment::{self, Segment};
use clap::{Args, ValueEnum};
use cli::{DataArgs, KafkaArgs, SchemaRegistryArgs};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use streams::{KafkaConfig, Record, Stage};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Model {
    /// The store (conversations, members, messages, receipts, devices).
    Persister,
    /// The search index.
    Indexer,
}

#[derive(Args)]
pub struct ReplayArgs {
    pub model: Model,
    /// The fresh target: a store URL (`fjall://<dir>`, `dynamodb://<table>…`)
    /// for the persister, an index URL (`tantivy://<dir>`,
    /// `opensearch+http://…/<index>`) for the indexer. Relative paths are
    /// under the data dir.
    #[arg(long)]
    pub into: String,
    /// Where to start: `earliest`, an offset (in every partition), or an
    /// RFC 3339 time (records stamped before it are skipped).
    #[arg(long, default_value = "earliest")]
    pub from: String,
    /// The event-log archive the archiver writes.
    #[arg(long, env = "CHATFLOW_ARCHIVE", default_value = "file://archive")]
    pub archive: String,
    /// The master key of the users' data keys (the indexer opens sealed
    /// messages with them); default `<data-dir>/master-key`.
    #[arg(long, env = "CHATFLOW_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Records handed to the stage at once.
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
    /// Stop (checkpointed) after about this many events; the next run
    /// goes on from there.
    #[arg(long)]
    pub max_events: Option<u64>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub registry: SchemaRegistryArgs,
}

/// Where a replay stands: written after every batch.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    into: String,
    /// Partition → the next offset to replay.
    next: BTreeMap<i32, i64>,
}

impl Checkpoint {
    fn path(model: Model, into: &str) -> PathBuf {
        let name: String = into
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        PathBuf::from("replay").join(format!("{model:?}-{name}.json").to_lowercase())
    }

    fn load(path: &PathBuf, into: &str) -> anyhow::Result<Checkpoint> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)
                .with_context(|| format!("reading the checkpoint {}", path.display()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Checkpoint {
                into: into.to_owned(),
                next: BTreeMap::new(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the file whole (a crash leaves the old or the new one).
    fn save(&self, path: &std::path::Path) -> anyhow::Result<()> {
        cli::write_whole(path, &serde_json::to_vec(self)?)
    }
}

/// `--max-events` reached: the checkpoint is saved.
#[derive(Debug, thiserror::Error)]
#[error("stopped after --max-events")]
struct Stopped;

/// Where reading starts.
enum From {
    Offset(i64),
    Time(i64),
}

fn parse_from(from: &str) -> anyhow::Result<From> {
    if from == "earliest" {
        return Ok(From::Offset(0));
    }
    if let Ok(offset) = from.parse::<i64>() {
        return Ok(From::Offset(offset.max(0)));
    }
    let time = humantime::parse_rfc3339_weak(from).with_context(|| {
        format!("--from {from:?}: expected earliest, an offset or an RFC 3339 time")
    })?;
    let millis = time.duration_since(std::time::UNIX_EPOCH)?.as_millis();
    Ok(From::Time(i64::try_from(millis)?))
}

struct Replay {
    stage: Arc<dyn Stage>,
    checkpoint: Checkpoint,
    path: PathBuf,
    from_time: Option<i64>,
    bar: indicatif::ProgressBar,
    max_events: u64,
    from_archive: u64,
    from_broker: u64,
    rejected: u64,
}

impl Replay {
    /// Hands `records` (one partition, offset order) to the stage, then
    /// moves the checkpoint past them.
    async fn feed(&mut self, partition: i32, records: Vec<Record>) -> anyhow::Result<()> {
        let Some(last) = records.last().map(|r| r.offset) else {
            return Ok(());
        };
        let kept: Vec<Record> = match self.from_time {
            Some(t) => records
                .into_iter()
                .filter(|r| r.timestamp.is_none_or(|ts| ts >= t))
                .collect(),
            None => records,
        };
        let mut attempt = 0;
        let rejected = loop {
            match self.stage.process(&kept).await {
                Ok(rejected) => break rejected,
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "batch failed, retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(e) => bail!("partition {partition}: the target refused a batch: {e}"),
            }
        };
        for r in &rejected {
            let offset = kept.get(r.index).map_or(-1, |k| k.offset);
            eprintln!(
                "partition {partition} offset {offset}: skipped, {}",
                r.reason
            );
        }
        self.rejected += rejected.len() as u64;
        self.bar.inc(kept.len() as u64);
        self.checkpoint.next.insert(partition, last + 1);
        self.checkpoint.save(&self.path)?;
        if self.from_archive + self.from_broker >= self.max_events {
            return Err(Stopped.into());
        }
        Ok(())
    }
}

/// What a replay did.
pub struct Outcome {
    pub from_archive: u64,
    pub from_broker: u64,
    pub rejected: u64,
    /// Stopped at `--max-events`, checkpointed.
    pub stopped: bool,
    pub seconds: f64,
}

impl Outcome {
    pub fn events(&self) -> u64 {
        self.from_archive + self.from_broker
    }
}

/// Opens the fresh target of `model` and the stage that writes it, as live.
pub async fn target_stage(
    model: Model,
    into: &str,
    vault: Option<Arc<vault::Vault>>,
) -> anyhow::Result<Arc<dyn Stage>> {
    Ok(match model {
        Model::Persister => Arc::new(persister::Persister::new(
            store::open(into)
                .await
                .with_context(|| format!("opening the store {into}"))?,
        )),
        Model::Indexer => Arc::new(indexer::Indexer::new(
            search::open(into)
                .await
                .with_context(|| format!("opening the index {into}"))?,
            vault,
        )),
    })
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    crate::serve::enter_data_dir(&args.data.data_dir)?;
    cli::use_schema_registry(&args.registry).await?;
    let archive = archive::open(&args.archive).await?;
    let master = vault::MasterKey::configured(args.master_key.as_deref(), Path::new("."))?;
    let vault = Arc::new(vault::Vault::new(archive.clone(), master));
    let stage = target_stage(args.model, &args.into, Some(vault)).await?;
    let plan = Plan {
        model: args.model,
        into: &args.into,
        from: &args.from,
        batch: args.batch,
        max_events: args.max_events,
        progress: true,
    };
    let outcome = rebuild(&plan, stage, &*archive, &args.kafka.config()).await?;
    println!(
        "replayed {} events into {} ({} from the archive, {} from the broker, {} skipped as undecodable) in {:.1} s: {:.0} events/s{}",
        outcome.events(),
        args.into,
        outcome.from_archive,
        outcome.from_broker,
        outcome.rejected,
        outcome.seconds,
        outcome.events() as f64 / outcome.seconds.max(1e-9),
        if outcome.stopped {
            "; stopped at --max-events, run again to go on"
        } else {
            ""
        },
    );
    Ok(())
}

/// What to replay, and how.
pub struct Plan<'a> {
    pub model: Model,
    /// The target's URL: names its checkpoint.
    pub into: &'a str,
    pub from: &'a str,
    pub batch: usize,
    pub max_events: Option<u64>,
    /// Show a progress bar.
    pub progress: bool,
}

/// Replays `chat.events` into `stage` (the target's stage, see
/// [`target_stage`]) from the target's checkpoint (or `plan.from`) up to
/// the broker's end now: the archive first, then the broker.
pub async fn rebuild(
    plan: &Plan<'_>,
    stage: Arc<dyn Stage>,
    archive: &dyn archive::Archive,
    config: &KafkaConfig,
) -> anyhow::Result<Outcome> {
    let from = parse_from(plan.from)?;
    let partitions = tokio::task::block_in_place(|| watermarks(config))?;
    let path = Checkpoint::path(plan.model, plan.into);
    let checkpoint = Checkpoint::load(&path, plan.into)?;
    let resume = checkpoint.next.clone();
    let start = |p: i32| match (resume.get(&p), &from) {
        (Some(next), _) => *next,
        (None, From::Offset(o)) => *o,
        (None, From::Time(_)) => 0,
    };
    let total: i64 = partitions
        .iter()
        .map(|(p, _, high)| (high - start(*p)).max(0))
        .sum();
    if !checkpoint.next.is_empty() && plan.progress {
        eprintln!("resuming from {}: {:?}", path.display(), checkpoint.next);
    }
    let bar = if plan.progress {
        indicatif::ProgressBar::new(total as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "replaying {bar:40} {pos}/{len} events, {per_sec}, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut replay = Replay {
        stage,
        from_time: match from {
            From::Time(t) => Some(t),
            From::Offset(_) => None,
        },
        checkpoint,
        path,
        bar,
        max_events: plan.max_events.unwrap_or(u64::MAX),
        from_archive: 0,
        from_broker: 0,
        rejected: 0,
    };
    let started = Instant::now();
    let outcome = replay_all(&mut replay, archive, config, partitions, &start, plan.batch).await;
    replay.bar.finish_and_clear();
    let stopped = match outcome {
        Ok(()) => false,
        Err(e) if e.is::<Stopped>() => true,
        Err(e) => return Err(e),
    };
    Ok(Outcome {
        from_archive: replay.from_archive,
        from_broker: replay.from_broker,
        rejected: replay.rejected,
        stopped,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn replay_all(
    replay: &mut Replay,
    archive: &dyn archive::Archive,
    config: &KafkaConfig,
    partitions: Vec<(i32, i64, i64)>,
    start: &(dyn Fn(i32) -> i64 + Sync),
    batch: usize,
) -> anyhow::Result<()> {
    for (partition, low, high) in partitions {
        let next = from_archive(replay, archive, partition, start(partition), batch).await?;
        if next < low {
            bail!(
                "partition {partition}: the archive ends before offset {next} and the broker's log starts at {low}: \
                 offsets {next}..{} are in neither (is the archiver behind the broker's retention?)",
                low - 1
            );
        }
        from_broker(replay, config, partition, next, high, batch).await?;
    }
    Ok(())
}

/// Every partition of `chat.events` with its low and high watermarks.
fn watermarks(config: &KafkaConfig) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let consumer: BaseConsumer = config.reader(Duration::from_millis(100)).create()?;
    let topic = streams::topics::EVENTS;
    let out = streams::ops::watermarks(&consumer, topic)?;
    if out.is_empty() {
        bail!("{topic} has no partitions");
    }
    Ok(out)
}

/// Replays the archived records of `partition` from `next`; returns the
/// offset after the last one.
async fn from_archive(
    replay: &mut Replay,
    archive: &dyn archive::Archive,
    partition: i32,
    mut next: i64,
    batch: usize,
) -> anyhow::Result<i64> {
    let topic = streams::topics::EVENTS;
    let keys = segment::list(archive, &segment::partition_prefix(topic, partition)).await?;
    for (i, (_, _, key)) in keys.iter().enumerate() {
        // A segment ends where the next one starts: skip those wholly done.
        if keys.get(i + 1).is_some_and(|(_, first, _)| *first <= next) {
            continue;
        }
        let Some(bytes) = archive.get(key).await? else {
            continue;
        };
        let segment = Segment::decode(&bytes).with_context(|| format!("reading {key}"))?;
        let records: Vec<Record> = segment
            .records
            .into_iter()
            .filter(|r| r.offset >= next)
            .map(|r| archiver::unarchived(topic, partition, r))
            .collect();
        for chunk in records.chunks(batch.max(1)) {
            replay.from_archive += chunk.len() as u64;
            next = chunk.last().map_or(next, |r| r.offset + 1);
            replay.feed(partition, chunk.to_vec()).await?;
        }
    }
    Ok(next)
}

/// Replays `partition` from the broker, `next` up to `high` (its end when
/// the replay began).
async fn from_broker(
    replay: &mut Replay,
    config: &KafkaConfig,
    partition: i32,
    next: i64,
    high: i64,
    batch: usize,
) -> anyhow::Result<()> {
    if next >= high {
        return Ok(());
    }
    let topic = streams::topics::EVENTS;
    let consumer: BaseConsumer = config.reader(Duration::from_millis(100)).create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(next))?;
    consumer.assign(&tpl)?;
    let mut done = next;
    while done < high {
        let mut records = Vec::with_capacity(batch);
        while records.len() < batch.max(1) && done < high {
            let polled = tokio::task::block_in_place(|| consumer.poll(Duration::from_secs(10)));
            let m = match polled {
                Some(m) => m?,
                None => bail!("partition {partition}: no record at offset {done} within 10 s"),
            };
            let r = Record::from_message(&m);
            done = r.offset + 1;
            records.push(r);
        }
        replay.from_broker += records.len() as u64;
        replay.feed(partition, records).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The broker's retention ran ahead of the archive: the offsets in
    /// neither are named and nothing past the gap is replayed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gap_between_the_archive_and_the_broker_stops_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let stage = target_stage(
            Model::Persister,
            &format!("fjall://{}", target.display()),
            None,
        )
        .await
        .unwrap();
        let archive_dir = dir.path().join("archive");
        let archive = archive::open(&format!("file://{}", archive_dir.display()))
            .await
            .unwrap();
        let mut replay = Replay {
            stage,
            checkpoint: Checkpoint::default(),
            path: dir.path().join("checkpoint.json"),
            from_time: None,
            bar: indicatif::ProgressBar::hidden(),
            max_events: u64::MAX,
            from_archive: 0,
            from_broker: 0,
            rejected: 0,
        };
        // Partition 0 starts at 100 on the broker; the archive is empty.
        let unreachable = KafkaConfig::new("127.0.0.1:1");
        let e = replay_all(
            &mut replay,
            &*archive,
            &unreachable,
            vec![(0, 100, 120)],
            &|_| 0,
            10,
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string().contains("offsets 0..99 are in neither"),
            "{e}"
        );
        assert_eq!((replay.from_archive, replay.from_broker), (0, 0));
        assert!(!replay.path.exists(), "no checkpoint past the gap");
        // Starting at the broker's start is no gap.
        let at_start = replay_all(
            &mut replay,
            &*archive,
            &unreachable,
            vec![(0, 100, 100)],
            &|_| 100,
            10,
        )
        .await;
        assert!(at_start.is_ok(), "{at_start:?}");
    }
}
