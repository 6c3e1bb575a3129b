//! The archiver stage: every record of `chat.events` into the event-log
//! archive, as segments of consecutive records per partition (see
//! [`archive::segment`]), so that replay can start before the broker's
//! retention and operators can read the log from object storage.
//!
//! A partition's segment is filled in memory and closed by record count or
//! by record time (never the wall clock), so the same log always cuts into
//! the same segments with the same bytes. A segment is written whole when
//! it closes and, while it fills, every flush interval under its final
//! name (a later write of the same records plus more replaces it). The
//! consumer commits no offset beyond what the archive holds: after a crash
//! the records after the last durable one are read again, and the segment
//! in progress is read back from the archive to go on filling it.

mod service;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use archive::Archive;
use archive::segment::{self, ArchivedRecord, Segment};
use async_trait::async_trait;
use streams::{Record, Rejection, Stage, StageError};
use tracing::{info, warn};

pub use service::{ArchiverArgs, Service};

pub const GROUP: &str = "archiver";

/// When a segment closes: the next record starts a new one if the segment
/// holds `max_records`, or if the record's timestamp is `max_span_ms` or
/// more after the segment's first.
#[derive(Clone, Copy, Debug)]
pub struct Rotation {
    pub max_records: usize,
    pub max_span_ms: i64,
}

impl Rotation {
    fn fits(&self, open: &[ArchivedRecord], next: &Record) -> bool {
        let Some(first) = open.first() else {
            return true;
        };
        let within_span = match (first.timestamp, next.timestamp) {
            (Some(first), Some(next)) => next.saturating_sub(first) < self.max_span_ms,
            _ => true,
        };
        open.len() < self.max_records.max(1) && within_span
    }
}

type TopicPartition = (String, i32);

/// What the archiver holds of one partition.
struct Partition {
    /// Segments closed but not yet durable, oldest first.
    closed: Vec<Segment>,
    /// The segment being filled (empty right after a rotation).
    open: Segment,
    /// How many of `open`'s records the archive already holds.
    open_durable: usize,
    /// The offset after the last record taken.
    next: i64,
}

impl Partition {
    fn empty(topic: &str, partition: i32) -> Partition {
        Partition {
            closed: Vec::new(),
            open: Segment {
                topic: topic.to_owned(),
                partition,
                records: Vec::new(),
            },
            open_durable: 0,
            next: 0,
        }
    }

    /// Where reading must resume for nothing to be missing from the
    /// archive.
    fn durable_next(&self) -> i64 {
        if let Some(first) = self.closed.first().and_then(|s| s.records.first()) {
            return first.offset;
        }
        match self.open.records.get(self.open_durable) {
            Some(first_not_durable) => first_not_durable.offset,
            None => self.next,
        }
    }

    fn take(&mut self, r: &Record, rotation: Rotation) {
        if !rotation.fits(&self.open.records, r) {
            let next = Segment {
                topic: self.open.topic.clone(),
                partition: self.open.partition,
                records: Vec::new(),
            };
            self.closed.push(std::mem::replace(&mut self.open, next));
            self.open_durable = 0;
        }
        self.open.records.push(archived(r));
        self.next = r.offset + 1;
    }
}

/// A record as the archive keeps it.
pub fn archived(r: &Record) -> ArchivedRecord {
    ArchivedRecord {
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key.clone(),
        value: r.payload.clone(),
        headers: r.headers.clone(),
    }
}

/// An archived record as a stage sees it (replay reads the archive so).
pub fn unarchived(topic: &str, partition: i32, r: ArchivedRecord) -> Record {
    Record {
        topic: topic.to_owned(),
        partition,
        offset: r.offset,
        key: r.key,
        payload: r.value,
        timestamp: r.timestamp,
        headers: r.headers,
    }
}

pub struct Archiver {
    archive: Arc<dyn Archive>,
    rotation: Rotation,
    partitions: tokio::sync::Mutex<HashMap<TopicPartition, Partition>>,
    /// Each partition's [`Partition::durable_next`], for the runtime.
    durable: Mutex<HashMap<TopicPartition, i64>>,
}

impl Archiver {
    pub fn new(archive: Arc<dyn Archive>, rotation: Rotation) -> Archiver {
        Archiver {
            archive,
            rotation,
            partitions: Default::default(),
            durable: Default::default(),
        }
    }

    /// A partition as the archive has it: its last segment is the one to
    /// go on filling.
    async fn load(&self, topic: &str, partition: i32) -> Result<Partition, StageError> {
        let mut state = Partition::empty(topic, partition);
        let listed = segment::list(&*self.archive, &segment::partition_prefix(topic, partition))
            .await
            .map_err(stage_error)?;
        let Some((_, _, last)) = listed.last() else {
            return Ok(state);
        };
        let bytes = self
            .archive
            .get(last)
            .await
            .map_err(stage_error)?
            .ok_or_else(|| StageError(format!("{last} vanished while loading it")))?;
        let open = Segment::decode(&bytes)
            .map_err(|e| StageError(format!("{last} cannot be read: {e}")))?;
        let Some(tail) = open.records.last() else {
            return Err(StageError(format!("{last} holds no record")));
        };
        state.next = tail.offset + 1;
        state.open_durable = open.records.len();
        state.open = open;
        info!(topic, partition, segment = %last, next = state.next, "archive resumes");
        Ok(state)
    }

    /// Writes what `state` holds that the archive lacks: the closed
    /// segments in order, then (if `open_too`) the open one.
    async fn write(
        &self,
        tp: &TopicPartition,
        state: &mut Partition,
        open_too: bool,
    ) -> Result<(), StageError> {
        while let Some(closed) = state.closed.first() {
            self.put(closed, "closed").await?;
            state.closed.remove(0);
            self.set_durable(tp, state);
        }
        if open_too && state.open.records.len() > state.open_durable {
            self.put(&state.open, "open").await?;
            state.open_durable = state.open.records.len();
            self.set_durable(tp, state);
        }
        Ok(())
    }

    async fn put(&self, s: &Segment, kind: &'static str) -> Result<(), StageError> {
        let key = s.key().ok_or_else(|| StageError("empty segment".into()))?;
        let bytes = tokio::task::block_in_place(|| s.encode())
            .map_err(|e| StageError(format!("encoding {key}: {e}")))?;
        let size = bytes.len() as u64;
        self.archive.put(&key, bytes).await.map_err(stage_error)?;
        metrics::counter!("chatflow_archive_segments_written_total", "segment" => kind)
            .increment(1);
        metrics::counter!("chatflow_archive_bytes_written_total").increment(size);
        Ok(())
    }

    fn set_durable(&self, tp: &TopicPartition, state: &Partition) {
        let durable = state.durable_next();
        self.durable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tp.clone(), durable);
        metrics::gauge!("chatflow_archive_lag_records",
            "topic" => tp.0.clone(), "partition" => tp.1.to_string())
        .set((state.next - durable) as f64);
    }
}

fn stage_error(e: archive::ArchiveError) -> StageError {
    StageError(e.to_string())
}

#[async_trait]
impl Stage for Archiver {
    async fn process(&self, batch: &[Record]) -> Result<Vec<Rejection>, StageError> {
        let mut by_partition: BTreeMap<TopicPartition, Vec<&Record>> = BTreeMap::new();
        for r in batch {
            by_partition
                .entry((r.topic.clone(), r.partition))
                .or_default()
                .push(r);
        }
        let mut partitions = self.partitions.lock().await;
        for (tp, records) in by_partition {
            if !partitions.contains_key(&tp) {
                let loaded = self.load(&tp.0, tp.1).await?;
                partitions.insert(tp.clone(), loaded);
            }
            let Some(state) = partitions.get_mut(&tp) else {
                continue;
            };
            for r in records {
                // At or below what is held: redelivered after a restart or
                // a retried batch.
                if r.offset < state.next {
                    continue;
                }
                state.take(r, self.rotation);
            }
            // A closed segment is written at once; the open one waits for
            // the flush.
            self.write(&tp, state, false).await?;
            self.set_durable(&tp, state);
        }
        Ok(Vec::new())
    }

    fn durable_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let durable = self.durable.lock().unwrap_or_else(|e| e.into_inner());
        durable.get(&(topic.to_owned(), partition)).copied()
    }

    async fn flush(&self) -> Result<(), StageError> {
        let mut partitions = self.partitions.lock().await;
        for (tp, state) in partitions.iter_mut() {
            self.write(tp, state, true).await?;
        }
        Ok(())
    }

    fn revoked(&self, revoked: &[(String, i32)]) {
        // The runtime never calls this during a batch or a flush.
        let Ok(mut partitions) = self.partitions.try_lock() else {
            warn!("revocation while a batch was in flight; state kept");
            return;
        };
        let mut durable = self.durable.lock().unwrap_or_else(|e| e.into_inner());
        for tp in revoked {
            partitions.remove(tp);
            durable.remove(tp);
        }
    }
}
