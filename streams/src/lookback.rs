//! What came just before a stage's start. A stage that remembers recent
//! records to judge later ones (the router's and the indexer's memory of
//! sends, which tells a second copy of a send from the first) loses that
//! memory when it restarts, and the first copy may lie just below where its
//! group committed. [`Lookback`] reads, the first time the stage sees a
//! partition, the records right below the first one it is given.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::{KafkaConfig, KafkaError, Record};

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Lookback {
    config: KafkaConfig,
    depth: i64,
    /// Partitions looked back on since the start or their last revocation.
    done: Mutex<HashSet<(String, i32)>>,
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
        let mut wanted: Vec<(String, i32, i64)> = Vec::new();
        {
            let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
            for r in batch {
                let tp = (r.topic.clone(), r.partition);
                if !done.contains(&tp) && !wanted.iter().any(|(t, p, _)| (t, *p) == (&tp.0, tp.1)) {
                    wanted.push((tp.0, tp.1, r.offset));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let (config, depth, ranges) = (self.config.clone(), self.depth, wanted.clone());
        let records = tokio::task::spawn_blocking(move || read_below(&config, depth, &ranges))
            .await
            .map_err(|e| KafkaError::Transient(format!("lookback: {e}")))??;
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.extend(wanted.into_iter().map(|(t, p, _)| (t, p)));
        Ok(records)
    }

    /// These partitions were revoked: look back again when they return.
    pub fn forget(&self, revoked: &[(String, i32)]) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        for tp in revoked {
            done.remove(tp);
        }
    }
}

/// The records in `[max(low, until - depth), until)` of each (topic,
/// partition, until).
fn read_below(
    config: &KafkaConfig,
    depth: i64,
    ranges: &[(String, i32, i64)],
) -> Result<Vec<Record>, KafkaError> {
    let consumer: BaseConsumer = config.reader(Duration::from_millis(10)).create()?;
    let mut assignment = TopicPartitionList::new();
    // Per partition: the offset it stops before.
    let mut remaining = std::collections::HashMap::new();
    for (topic, partition, until) in ranges {
        let (low, _) = consumer.fetch_watermarks(topic, *partition, TIMEOUT)?;
        let from = until.saturating_sub(depth).max(low);
        if from < *until {
            assignment.add_partition_offset(topic, *partition, Offset::Offset(from))?;
            remaining.insert((topic.clone(), *partition), *until);
        }
    }
    let mut out = Vec::new();
    if remaining.is_empty() {
        return Ok(out);
    }
    consumer.assign(&assignment)?;
    while !remaining.is_empty() {
        match consumer.poll(TIMEOUT) {
            Some(Ok(m)) => {
                let r = Record::from_message(&m);
                let tp = (r.topic.clone(), r.partition);
                let Some(&until) = remaining.get(&tp) else {
                    continue;
                };
                if r.offset + 1 >= until {
                    remaining.remove(&tp);
                }
                if r.offset < until {
                    out.push(r);
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                return Err(KafkaError::Transient(format!(
                    "lookback: no record for 10 s with {} partitions unread",
                    remaining.len()
                )));
            }
        }
    }
    Ok(out)
}
