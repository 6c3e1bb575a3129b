//! The one consumer runtime every stage runs on: poll a batch, hand it to the
//! stage, dead-letter what the stage rejects, then store and commit the
//! offsets, in order per partition. Nothing is stored before its batch
//! succeeded, so a crash redoes at most the batch in flight.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{KafkaConfig, KafkaError, Producer, topics};

/// One record as the stage sees it.
#[derive(Clone, Debug)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    /// The record's headers in order (a key may repeat).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Why a record cannot be decoded: a reason to dead-letter it.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("record has no value")]
    NoValue,
    #[error(transparent)]
    Codec(#[from] schemas::CodecError),
}

impl Record {
    /// A copy of a message a consumer received.
    pub fn from_message(m: &impl Message) -> Record {
        Record {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp: m.timestamp().to_millis(),
            headers: m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The record's value decoded as `T`.
    pub fn decode<T: schemas::Record>(&self, codec: &schemas::Codec) -> Result<T, DecodeError> {
        let bytes = self.payload.as_deref().ok_or(DecodeError::NoValue)?;
        Ok(codec.decode::<T>(bytes)?)
    }
}

/// A record the stage can never process: it goes to the dead-letter queue.
#[derive(Clone, Debug)]
pub struct Rejection {
    /// Index into the batch.
    pub index: usize,
    pub reason: String,
}

impl Rejection {
    pub fn new(index: usize, reason: impl std::fmt::Display) -> Self {
        Rejection {
            index,
            reason: reason.to_string(),
        }
    }
}

/// A failure that may pass: the whole batch is retried with backoff.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StageError(pub String);

/// A stage's own logic. `process` must be idempotent: after a crash the
/// batch in flight is delivered again.
#[async_trait]
pub trait Stage: Send + Sync + 'static {
    async fn process(&self, batch: &[Record]) -> Result<Vec<Rejection>, StageError>;

    /// For a stage that holds records before they are durable (an archive
    /// segment being filled): the offset a restart must read `partition`
    /// from, below what it processed. `None`: everything processed is
    /// durable. The runtime commits no further.
    fn durable_offset(&self, _topic: &str, _partition: i32) -> Option<i64> {
        None
    }

    /// Makes what the stage holds durable; called every
    /// [`ConsumerSpec::flush_every`] and at shutdown.
    async fn flush(&self) -> Result<(), StageError> {
        Ok(())
    }

    /// These partitions went to another member of the group: forget what
    /// is held for them (the new owner reads it again from the committed
    /// offset).
    fn revoked(&self, _partitions: &[(String, i32)]) {}

    /// The stage holds these partitions (topic, partition) and will be
    /// given each one's records from the offset named, in order. Told for
    /// [`Assignment::All`], before the first batch.
    fn assigned(&self, _starts: &[(String, i32, i64)]) {}
}

#[derive(Clone, Debug, Default)]
pub struct ConsumerSpec {
    pub group: String,
    pub topics: Vec<String>,
    pub max_batch: usize,
    /// The broker's long-poll bound; see `KafkaConfig::consumer`.
    pub fetch_wait: Duration,
    pub assignment: Assignment,
    /// Told how many partitions the stage holds.
    pub status: Arc<StageStatus>,
    /// How often to call [`Stage::flush`] (and commit what it made
    /// durable), for a stage that holds records; `None` for the others.
    pub flush_every: Option<Duration>,
    /// How often to commit the offsets of processed batches (zero: after
    /// every batch). Each commit is a write on the broker; what was
    /// processed but not yet committed when the process dies is processed
    /// again, which the stages' idempotent sinks absorb.
    pub commit_every: Duration,
}

/// How a stage gets its partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Assignment {
    /// Balanced over the consumer group's members (one process of a stage
    /// or many).
    #[default]
    Group,
    /// Every partition, in this process alone (embedded mode). No group
    /// join, so a process restarted right after a crash does not wait for
    /// the dead one's session to expire; offsets are still committed to
    /// the group, so a later start resumes where it stopped.
    All,
}

/// What a running stage holds, for readiness.
#[derive(Debug, Default)]
pub struct StageStatus {
    partitions: AtomicUsize,
}

impl StageStatus {
    /// Partitions the stage holds now (0: it stores or delivers nothing).
    pub fn partitions(&self) -> usize {
        self.partitions.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, n: usize) {
        self.partitions.store(n, Ordering::Relaxed);
    }
}

pub(crate) struct RuntimeContext {
    group: String,
    status: Arc<StageStatus>,
    /// Partitions revoked since the run loop last looked.
    revoked: std::sync::Mutex<Vec<(String, i32)>>,
    /// Where a shared read keeps each partition's high watermark from the
    /// statistics, for the lag of the stages it feeds.
    highs: Option<HighWatermarks>,
}

/// Per (topic, partition), the log's end as the last statistics saw it.
pub(crate) type HighWatermarks =
    Arc<std::sync::Mutex<std::collections::HashMap<(String, i32), i64>>>;

impl RuntimeContext {
    pub(crate) fn new(group: &str, status: Arc<StageStatus>) -> Self {
        RuntimeContext {
            group: group.to_owned(),
            status,
            revoked: Default::default(),
            highs: None,
        }
    }

    /// Also keeps each partition's high watermark in `highs`.
    pub(crate) fn with_highs(mut self, highs: HighWatermarks) -> Self {
        self.highs = Some(highs);
        self
    }

    fn take_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientContext for RuntimeContext {
    /// librdkafka's statistics carry each assigned partition's lag.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if let Some(highs) = &self.highs
                    && *partition >= 0
                    && p.hi_offset >= 0
                {
                    let mut highs = highs.lock().unwrap_or_else(|e| e.into_inner());
                    highs.insert((topic.clone(), *partition), p.hi_offset);
                }
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                set_lag(&self.group, topic, *partition, p.consumer_lag);
            }
        }
    }
}

/// A stage's lag on one partition: records between its position and the
/// log's end.
pub(crate) fn set_lag(stage: &str, topic: &str, partition: i32, lag: i64) {
    metrics::gauge!("chatflow_consumer_lag_records",
        "stage" => stage.to_owned(),
        "topic" => crate::producer::topic_family(topic),
        "partition" => partition.to_string())
    .set(lag as f64);
}

impl ConsumerContext for RuntimeContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // The runtime never polls with a batch in flight, so every stored
        // offset is final: commit them before the partitions move away.
        if let Rebalance::Revoke(tpl) = rebalance {
            self.status.set(0);
            info!(group = %self.group, partitions = tpl.count(), "partitions revoked, committing");
            self.revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(
                    tpl.elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition())),
                );
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                debug!(group = %self.group, error = %e, "nothing to commit on revoke");
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.status.set(tpl.count());
            info!(group = %self.group, partitions = tpl.count(), "partitions assigned");
        }
    }
}

/// Where a stage's records come from and where its offsets go: its own
/// consumer in its group, or its share of this process's one read
/// ([`crate::SharedRead`]).
#[async_trait]
pub(crate) trait Source: Send {
    /// The next record, waiting for it.
    async fn recv(&mut self) -> Result<Record, KafkaError>;
    /// The next record if one is already here.
    fn try_recv(&mut self) -> Option<Record>;
    /// Waits, up to the stage's own batching delay, for `wanted` records
    /// to be here (a shared read brings records sooner than some stages
    /// want them).
    async fn gather(&mut self, _wanted: usize) {}
    /// Partitions revoked since the last look.
    fn take_revoked(&self) -> Vec<(String, i32)> {
        Vec::new()
    }
    /// Remembers these offsets as the ones the next commit carries.
    fn store(&mut self, offsets: &TopicPartitionList) -> Result<(), KafkaError>;
    fn commit(&self, mode: CommitMode) -> Result<(), KafkaError>;
    /// Leaves the group (if the source joined one).
    fn close(&self) {}
}

#[async_trait]
impl Source for StreamConsumer<RuntimeContext> {
    async fn recv(&mut self) -> Result<Record, KafkaError> {
        match StreamConsumer::recv(self).await {
            Ok(m) => Ok(Record::from_message(&m)),
            Err(e) => Err(e.into()),
        }
    }

    fn try_recv(&mut self) -> Option<Record> {
        match StreamConsumer::recv(self).now_or_never() {
            Some(Ok(m)) => Some(Record::from_message(&m)),
            _ => None,
        }
    }

    fn take_revoked(&self) -> Vec<(String, i32)> {
        self.context().take_revoked()
    }

    fn store(&mut self, offsets: &TopicPartitionList) -> Result<(), KafkaError> {
        Ok(self.store_offsets(offsets)?)
    }

    fn commit(&self, mode: CommitMode) -> Result<(), KafkaError> {
        Ok(self.commit_consumer_state(mode)?)
    }

    fn close(&self) {
        self.unsubscribe();
    }
}

/// Runs `stage` over `spec.topics` in consumer group `spec.group` until
/// `shutdown` fires; then commits what was stored and returns.
pub async fn run_stage(
    config: &KafkaConfig,
    spec: ConsumerSpec,
    stage: Arc<dyn Stage>,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let consumer: StreamConsumer<RuntimeContext> = config
        .consumer(&spec.group, spec.fetch_wait)
        .set("statistics.interval.ms", "5000")
        .create_with_context(RuntimeContext::new(&spec.group, spec.status.clone()))?;
    let topic_refs: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
    match spec.assignment {
        Assignment::Group => consumer.subscribe(&topic_refs)?,
        Assignment::All => {
            let tpl = tokio::task::block_in_place(|| all_partitions(&consumer, &spec.topics))?;
            consumer.assign(&tpl)?;
            let starts = tokio::task::block_in_place(|| start_offsets(&consumer, &tpl))?;
            stage.assigned(&starts);
            spec.status.set(tpl.count());
        }
    }
    run_source(consumer, config, spec, stage, shutdown).await
}

/// The runtime's loop over any source: batches in order, retried until
/// they pass, rejections dead-lettered, offsets stored and committed.
pub(crate) async fn run_source(
    mut source: impl Source,
    config: &KafkaConfig,
    spec: ConsumerSpec,
    stage: Arc<dyn Stage>,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let dlq = DeadLetters::new(config, &spec.group);
    let group = spec.group.as_str();
    info!(group, topics = ?spec.topics, "stage consuming");

    let mut failures = 0u32;
    let mut done = Positions::default();
    let mut flush = spec.flush_every.map(|every| {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    let mut commits = (!spec.commit_every.is_zero()).then(|| {
        let every = spec.commit_every;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    // Offsets stored since the last commit.
    let mut uncommitted = false;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick(&mut flush) => {
                forget_revoked(&source, &*stage, &mut done);
                flush_and_commit(&mut source, group, &*stage, &done).await?;
                continue;
            }
            _ = tick(&mut commits), if uncommitted => {
                uncommitted = false;
                // Async: librdkafka sends it; a failure leaves the offsets
                // stored, and the next commit carries them.
                if let Err(e) = source.commit(CommitMode::Async) {
                    warn!(group, error = %e, "commit failed");
                }
                continue;
            }
            m = source.recv() => m,
        };
        forget_revoked(&source, &*stage, &mut done);
        let mut batch = match first {
            Ok(record) => vec![record],
            Err(e) => {
                failures += 1;
                warn!(group, error = %e, "poll failed");
                if sleep_or_cancel(backoff(failures), &shutdown).await {
                    break;
                }
                continue;
            }
        };
        failures = 0;
        source.gather(spec.max_batch - 1).await;
        // Take what is already fetched, without waiting for more.
        while batch.len() < spec.max_batch {
            match source.try_recv() {
                Some(record) => batch.push(record),
                None => break,
            }
        }
        let Some(rejected) = process_with_retry(group, &*stage, &batch, &shutdown).await else {
            // Shut down with the batch unfinished: nothing of it is stored,
            // so the next owner of these partitions does it again.
            break;
        };
        for r in &rejected {
            if let Some(record) = batch.get(r.index)
                && !dlq.send(record, &r.reason, &shutdown).await
            {
                return commit_and_close(&source, group);
            }
        }
        done.advance(&batch);
        store_offsets(&mut source, group, &*stage, &done)?;
        if commits.is_some() {
            uncommitted = true;
            continue;
        }
        // A synchronous commit blocks this thread on the broker: tell the
        // runtime, so that its other tasks run meanwhile.
        let committed = tokio::task::block_in_place(|| source.commit(CommitMode::Sync));
        if let Err(e) = committed {
            // Stored offsets stay stored; the next commit carries them.
            warn!(group, error = %e, "commit failed");
        }
    }
    if spec.flush_every.is_some() {
        forget_revoked(&source, &*stage, &mut done);
        flush_and_commit(&mut source, group, &*stage, &done).await?;
    }
    commit_and_close(&source, group)
}

/// Per partition, the offset after the last record processed.
#[derive(Default)]
struct Positions(BTreeMap<(String, i32), i64>);

impl Positions {
    fn advance(&mut self, batch: &[Record]) {
        for r in batch {
            let e = self
                .0
                .entry((r.topic.clone(), r.partition))
                .or_insert(r.offset + 1);
            *e = (*e).max(r.offset + 1);
        }
    }
}

/// The next tick, or never without an interval.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Tells the stage which partitions it lost in the last rebalance.
fn forget_revoked(source: &impl Source, stage: &dyn Stage, done: &mut Positions) {
    let revoked = source.take_revoked();
    if revoked.is_empty() {
        return;
    }
    for p in &revoked {
        done.0.remove(p);
    }
    stage.revoked(&revoked);
}

/// Flushes the stage, then stores and commits what that made durable. A
/// failed flush is retried on the next tick: nothing is stored for it.
async fn flush_and_commit(
    source: &mut impl Source,
    group: &str,
    stage: &dyn Stage,
    done: &Positions,
) -> Result<(), KafkaError> {
    if let Err(e) = stage.flush().await {
        warn!(group, error = %e, "flush failed, retrying on the next tick");
        return Ok(());
    }
    if done.0.is_empty() {
        return Ok(());
    }
    store_offsets(source, group, stage, done)?;
    if let Err(e) = tokio::task::block_in_place(|| source.commit(CommitMode::Sync)) {
        debug!(group, error = %e, "commit after flush failed");
    }
    Ok(())
}

/// Every partition of `topics`, each from its committed offset.
pub(crate) fn all_partitions<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topics: &[String],
) -> Result<TopicPartitionList, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for t in metadata.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Stored)?;
            }
        }
    }
    if tpl.count() == 0 {
        return Err(KafkaError::Transient(format!(
            "no partitions in {topics:?} yet"
        )));
    }
    Ok(tpl)
}

/// Where each partition of `tpl` will be read from: the group's committed
/// offset, or (none committed, `auto.offset.reset` is earliest) the log's
/// start.
pub(crate) fn start_offsets<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    tpl: &TopicPartitionList,
) -> Result<Vec<(String, i32, i64)>, KafkaError> {
    let timeout = Duration::from_secs(10);
    let committed = consumer.committed_offsets(tpl.clone(), timeout)?;
    let mut starts = Vec::new();
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => o,
            _ => {
                consumer
                    .fetch_watermarks(e.topic(), e.partition(), timeout)?
                    .0
            }
        };
        starts.push((e.topic().to_owned(), e.partition(), offset));
    }
    Ok(starts)
}

fn commit_and_close(source: &impl Source, group: &str) -> Result<(), KafkaError> {
    match source.commit(CommitMode::Sync) {
        Ok(()) => info!(group, "offsets committed at shutdown"),
        Err(e) => debug!(group, error = %e, "no offsets to commit at shutdown"),
    }
    source.close();
    Ok(())
}

/// Runs the batch until it succeeds; `None` when shutdown interrupted it.
async fn process_with_retry(
    group: &str,
    stage: &dyn Stage,
    batch: &[Record],
    shutdown: &CancellationToken,
) -> Option<Vec<Rejection>> {
    let mut attempt = 0u32;
    loop {
        let started = Instant::now();
        match stage.process(batch).await {
            Ok(rejected) => {
                metrics::histogram!("chatflow_stage_batch_seconds", "stage" => group.to_owned())
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("chatflow_stage_events_total", "stage" => group.to_owned())
                    .increment((batch.len() - rejected.len()) as u64);
                return Some(rejected);
            }
            Err(e) => {
                attempt += 1;
                metrics::counter!("chatflow_stage_errors_total", "stage" => group.to_owned())
                    .increment(1);
                warn!(group, attempt, error = %e, records = batch.len(), "batch failed, retrying");
                if sleep_or_cancel(backoff(attempt), shutdown).await {
                    return None;
                }
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let ms = 50u64.saturating_mul(1 << attempt.min(7));
    Duration::from_millis(ms.min(5_000))
}

/// Sleeps; true when shutdown came first.
async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// Stores, per partition, the offset after the last record processed, or
/// the stage's durable offset where that is lower. Batches are processed
/// whole and in poll order, so that is in order.
fn store_offsets(
    source: &mut impl Source,
    group: &str,
    stage: &dyn Stage,
    done: &Positions,
) -> Result<(), KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in &done.0 {
        let durable = stage.durable_offset(topic, *partition).unwrap_or(*next);
        tpl.add_partition_offset(topic, *partition, Offset::Offset(durable.min(*next)))?;
    }
    source.store(&tpl).inspect_err(|e| {
        error!(group, error = %e, "storing offsets failed");
    })
}

/// `chat.dlq.<group>`: the original key and bytes, the reason in headers.
/// Its producer is made on the first record to dead-letter: most stages
/// never have one, and an idle producer still costs a polling thread and
/// the broker's metadata requests.
struct DeadLetters {
    config: KafkaConfig,
    producer: tokio::sync::OnceCell<Producer>,
    topic: String,
    group: String,
}

impl DeadLetters {
    fn new(config: &KafkaConfig, group: &str) -> Self {
        DeadLetters {
            config: config.clone(),
            producer: tokio::sync::OnceCell::new(),
            topic: topics::dlq(group),
            group: group.to_owned(),
        }
    }

    async fn producer(&self) -> Result<&Producer, KafkaError> {
        self.producer
            .get_or_try_init(|| async { Producer::new(&self.config) })
            .await
    }

    /// Retries until the broker has the record; false on shutdown.
    async fn send(&self, record: &Record, reason: &str, shutdown: &CancellationToken) -> bool {
        let group = self.group.as_str();
        let offset = record.offset.to_string();
        let partition = record.partition.to_string();
        let headers = || {
            OwnedHeaders::new()
                .insert(Header {
                    key: "dlq.reason",
                    value: Some(reason),
                })
                .insert(Header {
                    key: "dlq.topic",
                    value: Some(&record.topic),
                })
                .insert(Header {
                    key: "dlq.partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "dlq.offset",
                    value: Some(&offset),
                })
                .insert(Header {
                    key: "dlq.group",
                    value: Some(group),
                })
        };
        let mut attempt = 0;
        loop {
            let key = record.key.as_deref().unwrap_or_default();
            let payload = record.payload.as_deref().unwrap_or_default();
            let producer = self.producer().await;
            let sent = match producer {
                Ok(p) => p.send(&self.topic, key, payload, Some(headers())).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(_) => {
                    warn!(group, topic = %record.topic, partition = record.partition,
                        offset = record.offset, reason, "record dead-lettered");
                    metrics::counter!("chatflow_stage_dead_lettered_total", "stage" => group.to_owned())
                        .increment(1);
                    return true;
                }
                Err(e) => {
                    attempt += 1;
                    warn!(group, error = %e, "dead-letter produce failed, retrying");
                    if sleep_or_cancel(backoff(attempt), shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}
