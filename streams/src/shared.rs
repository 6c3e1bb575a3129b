//! One read of a topic for every stage of this process (embedded mode).
//!
//! Stages in consumer groups of their own make the broker serve each record
//! once per stage, and the embedded broker serves storage requests one at a
//! time. Here one consumer reads each record once and hands it to every
//! stage that joined. Each stage still processes in its own time, keeps its
//! own group's committed offsets and starts where its group left off: the
//! read starts at the lowest of those and gives each stage only what lies at
//! or past its own position. Each stage's queue is bounded, so a stage that
//! falls behind (or retries a failing batch) holds the read back instead of
//! anything being skipped for it or for the others.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::consumer::{
    HighWatermarks, RuntimeContext, Source, all_partitions, run_source, set_lag, start_offsets,
};
use crate::{ConsumerSpec, KafkaConfig, KafkaError, Record, Stage};

/// Records the reader takes from the consumer before handing them on.
const READ_BATCH: usize = 2_000;
/// Batches queued per stage before the read waits for it.
const QUEUED_BATCHES: usize = 16;

/// Per (topic, partition), an offset. A read holds few partitions: a scan
/// finds one without allocating a key for each record.
type Offsets = Vec<(String, i32, i64)>;

fn offset_of<'a>(offsets: &'a mut Offsets, topic: &str, partition: i32) -> Option<&'a mut i64> {
    offsets
        .iter_mut()
        .find(|(t, p, _)| t == topic && *p == partition)
        .map(|(_, _, o)| o)
}

/// The one reader of this process's topics; stages join it with
/// [`SharedRead::run_stage`].
pub struct SharedRead {
    config: KafkaConfig,
    fetch_wait: Duration,
    joins: mpsc::UnboundedSender<Join>,
    highs: HighWatermarks,
}

/// A stage asking for its share, from its own start offsets.
struct Join {
    group: String,
    starts: Vec<(String, i32, i64)>,
    queue: mpsc::Sender<Vec<Record>>,
}

impl SharedRead {
    /// Starts the reader; it runs until `shutdown` (cancel it after the
    /// stages it feeds have stopped) and is done when the handle is.
    pub fn start(
        config: &KafkaConfig,
        fetch_wait: Duration,
        shutdown: CancellationToken,
    ) -> Result<(SharedRead, JoinHandle<()>), KafkaError> {
        let highs = HighWatermarks::default();
        let consumer: StreamConsumer<RuntimeContext> = config
            .reader(fetch_wait)
            .set("statistics.interval.ms", "5000")
            .create_with_context(
                RuntimeContext::new("shared-read", Arc::default()).with_highs(highs.clone()),
            )?;
        let (joins, joined) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read(consumer, joined, shutdown));
        let read = SharedRead {
            config: config.clone(),
            fetch_wait,
            joins,
            highs,
        };
        Ok((read, reader))
    }

    /// Runs `stage` as [`crate::run_stage`] does with every partition
    /// (`Assignment::All`), on its share of this read instead of a consumer
    /// of its own. A stage that wants fewer, larger batches than the read
    /// brings (its `fetch_wait` is longer) gets them: it waits that much
    /// longer for a batch to fill.
    pub async fn run_stage(
        &self,
        spec: ConsumerSpec,
        stage: Arc<dyn Stage>,
        shutdown: CancellationToken,
    ) -> Result<(), KafkaError> {
        // Commits only: it never subscribes, so it joins no group.
        let committer: BaseConsumer = self
            .config
            .consumer(&spec.group, spec.fetch_wait)
            .create()?;
        let (tpl, starts) = tokio::task::block_in_place(|| {
            let tpl = all_partitions(&committer, &spec.topics)?;
            let starts = start_offsets(&committer, &tpl)?;
            Ok::<_, KafkaError>((tpl, starts))
        })?;
        let (queue, queued) = mpsc::channel(QUEUED_BATCHES);
        let join = Join {
            group: spec.group.clone(),
            starts: starts.clone(),
            queue,
        };
        if self.joins.send(join).is_err() {
            return Err(KafkaError::Transient("the shared read has stopped".into()));
        }
        stage.assigned(&starts);
        spec.status.set(tpl.count());
        let share = Share {
            queued,
            held: VecDeque::new(),
            committer,
            stored: TopicPartitionList::new(),
            group: spec.group.clone(),
            highs: self.highs.clone(),
            linger: spec.fetch_wait.saturating_sub(self.fetch_wait),
        };
        let config = self.config.clone();
        run_source(share, &config, spec, stage, shutdown).await
    }
}

/// What one stage has been given: the offset after the last record, per
/// partition.
struct Member {
    group: String,
    next: Offsets,
    queue: mpsc::Sender<Vec<Record>>,
}

impl Member {
    /// The records of `batch` at or past this stage's position.
    fn share(&mut self, batch: &[Record]) -> Vec<Record> {
        let mut share = Vec::new();
        for r in batch {
            let Some(next) = offset_of(&mut self.next, &r.topic, r.partition) else {
                continue;
            };
            if r.offset >= *next {
                *next = r.offset + 1;
                share.push(r.clone());
            }
        }
        share
    }
}

async fn read(
    consumer: StreamConsumer<RuntimeContext>,
    mut joins: mpsc::UnboundedReceiver<Join>,
    shutdown: CancellationToken,
) {
    let mut members: Vec<Member> = Vec::new();
    // Per partition, the offset of the next record the consumer brings.
    let mut position = Offsets::new();
    let mut failures = 0u32;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            join = joins.recv() => {
                let Some(join) = join else { break };
                match admit(&consumer, &mut position, &join.starts) {
                    Ok(()) => {
                        info!(group = %join.group, "stage joined the shared read");
                        members.push(Member {
                            group: join.group,
                            next: join.starts,
                            queue: join.queue,
                        });
                    }
                    // The stage's queue is dropped with the join: it sees
                    // the read gone and retries as after a failed poll.
                    Err(e) => warn!(group = %join.group, error = %e, "could not take a stage into the shared read"),
                }
                continue;
            }
            m = consumer.recv() => m,
        };
        let first = match first {
            Ok(m) => Record::from_message(&m),
            Err(e) => {
                failures += 1;
                warn!(error = %e, "shared read: poll failed");
                let pause = Duration::from_millis(50 * u64::from(failures.min(20)));
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        failures = 0;
        let mut batch = vec![first];
        while batch.len() < READ_BATCH {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push(Record::from_message(&m)),
                _ => break,
            }
        }
        for r in &batch {
            match offset_of(&mut position, &r.topic, r.partition) {
                Some(at) => *at = r.offset + 1,
                None => position.push((r.topic.clone(), r.partition, r.offset + 1)),
            }
        }
        let mut i = 0;
        while i < members.len() {
            let share = members[i].share(&batch);
            let gone = !share.is_empty()
                && tokio::select! {
                    sent = members[i].queue.send(share) => sent.is_err(),
                    _ = shutdown.cancelled() => return,
                };
            if gone {
                let m = members.swap_remove(i);
                info!(group = %m.group, "stage left the shared read");
            } else {
                i += 1;
            }
        }
    }
}

/// Makes the read bring every partition from no later than `starts`:
/// partitions not read yet, or read past a joining stage's start, are
/// (re)assigned from there; the others go on from where they are.
fn admit(
    consumer: &StreamConsumer<RuntimeContext>,
    position: &mut Offsets,
    starts: &[(String, i32, i64)],
) -> Result<(), KafkaError> {
    let mut moved = false;
    for (topic, partition, start) in starts {
        match offset_of(position, topic, *partition) {
            Some(at) if *start < *at => *at = *start,
            Some(_) => continue,
            None => position.push((topic.clone(), *partition, *start)),
        }
        moved = true;
    }
    if !moved {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset) in position.iter() {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    // librdkafka drops what it fetched for the old positions.
    Ok(consumer.assign(&tpl)?)
}

/// One stage's share of the read, as the runtime's source.
struct Share {
    queued: mpsc::Receiver<Vec<Record>>,
    held: VecDeque<Record>,
    committer: BaseConsumer,
    stored: TopicPartitionList,
    group: String,
    highs: HighWatermarks,
    linger: Duration,
}

impl Share {
    fn take_queued(&mut self) {
        while let Ok(batch) = self.queued.try_recv() {
            self.held.extend(batch);
        }
    }
}

#[async_trait]
impl Source for Share {
    async fn recv(&mut self) -> Result<Record, KafkaError> {
        loop {
            if let Some(r) = self.held.pop_front() {
                return Ok(r);
            }
            match self.queued.recv().await {
                Some(batch) => self.held.extend(batch),
                None => return Err(KafkaError::Transient("the shared read has stopped".into())),
            }
        }
    }

    fn try_recv(&mut self) -> Option<Record> {
        if self.held.is_empty() {
            self.take_queued();
        }
        self.held.pop_front()
    }

    async fn gather(&mut self, wanted: usize) {
        if self.linger.is_zero() {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.linger;
        loop {
            self.take_queued();
            if self.held.len() >= wanted {
                return;
            }
            tokio::select! {
                batch = self.queued.recv() => match batch {
                    Some(batch) => self.held.extend(batch),
                    None => return,
                },
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    fn store(&mut self, offsets: &TopicPartitionList) -> Result<(), KafkaError> {
        self.stored = offsets.clone();
        // The lag a consumer of its own would report: the log's end less
        // this stage's position.
        let highs = self.highs.lock().unwrap_or_else(|e| e.into_inner());
        for e in offsets.elements() {
            let (Offset::Offset(at), Some(high)) = (
                e.offset(),
                highs.get(&(e.topic().to_owned(), e.partition())),
            ) else {
                continue;
            };
            set_lag(&self.group, e.topic(), e.partition(), (high - at).max(0));
        }
        Ok(())
    }

    fn commit(&self, mode: CommitMode) -> Result<(), KafkaError> {
        if self.stored.count() == 0 {
            return Ok(());
        }
        self.committer.commit(&self.stored, mode)?;
        // Serve the commit's answer (it is queued for this consumer, which
        // is otherwise never polled).
        let _ = self.committer.poll(Duration::ZERO);
        Ok(())
    }
}
