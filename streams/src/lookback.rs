//! What came just before a stage's start. A stage that remembers recent
//! records to judge later ones (the router's and the indexer's memory of
//! sends, which tells a second copy of a send from the first) loses that
//! memory when it restarts, and the first copy may lie just below where its
//! group committed. [`Lookback`] reads, the first time the stage sees a
//! partition, the records right below the first one it is given.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::{KafkaConfig, KafkaError, Record, StageError, ops};

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Lookback {
    config: KafkaConfig,
    depth: i64,
    /// Partitions looked back on since the start or their last revocation.
    done: Mutex<Vec<(String, i32)>>,
}

impl Lookback {
    /// Looks back up to `depth` records per partition.
    pub fn new(config: &KafkaConfig, depth: usize) -> Lookback {
        Lookback {
            config: config.clone(),
            depth: i64::try_from(depth).unwrap_or(i64::MAX),
            done: Mutex::default(),
        }
    }

    /// For each partition of `batch` not looked back on yet, the records
    /// (up to the depth) below its first record in the batch, in offset
    /// order per partition. A failed read is an error and leaves the
    /// partition to be looked back on with the next try.
    pub async fn before(&self, batch: &[Record]) -> Result<Vec<Record>, KafkaError> {
        // (topic, partition, first offset); a stage holds few partitions,
        // so a scan beats allocating a key per record.
        let mut wanted: Vec<(String, i32, i64)> = Vec::new();
        {
            let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
            for r in batch {
                let this = |t: &String, p: i32| *t == r.topic && p == r.partition;
                if !done.iter().any(|(t, p)| this(t, *p))
                    && !wanted.iter().any(|(t, p, _)| this(t, *p))
                {
                    wanted.push((r.topic.clone(), r.partition, r.offset));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let (config, depth, firsts) = (self.config.clone(), self.depth, wanted.clone());
        let records = tokio::task::spawn_blocking(move || read_below(&config, depth, &firsts))
            .await
            .map_err(|e| KafkaError::Transient(format!("lookback: {e}")))??;
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.extend(wanted.into_iter().map(|(t, p, _)| (t, p)));
        Ok(records)
    }

    /// [`Lookback::before`], each record decoded as `T` with its offset;
    /// one that does not decode is left out (the stage rejected it when it
    /// came).
    pub async fn decoded_before<T: schemas::Record>(
        &self,
        batch: &[Record],
        codec: &schemas::Codec,
    ) -> Result<Vec<(i64, T)>, StageError> {
        let earlier = self
            .before(batch)
            .await
            .map_err(|e| StageError(format!("reading below the start: {e}")))?;
        Ok(earlier
            .iter()
            .filter_map(|r| Some((r.offset, r.decode::<T>(codec).ok()?)))
            .collect())
    }

    /// These partitions were revoked: look back again when they return.
    pub fn forget(&self, revoked: &[(String, i32)]) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.retain(|tp| !revoked.contains(tp));
    }
}

/// The records in `[max(low, until - depth), until)` of each (topic,
/// partition, until).
fn read_below(
    config: &KafkaConfig,
    depth: i64,
    firsts: &[(String, i32, i64)],
) -> Result<Vec<Record>, KafkaError> {
    let consumer: BaseConsumer = config.reader(Duration::from_millis(10)).create()?;
    let mut ranges = Vec::with_capacity(firsts.len());
    for (topic, partition, until) in firsts {
        let (low, _) = consumer.fetch_watermarks(topic, *partition, TIMEOUT)?;
        ranges.push((
            topic.clone(),
            *partition,
            until.saturating_sub(depth).max(low),
            *until,
        ));
    }
    let mut out = Vec::new();
    ops::read_ranges(&consumer, &ranges, |m| out.push(Record::from_message(m)))?;
    Ok(out)
}
