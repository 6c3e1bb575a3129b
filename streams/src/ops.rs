//! Operators' tools for a broker that old kcat builds cannot talk to:
//! `tail` prints records as JSON lines, `topics` lists topics with their end
//! offsets and each consumer group's lag.

use std::io::Write;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use schemas::Codec;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{KafkaConfig, KafkaError};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Each partition of `topic` with its low and high watermarks, in
/// partition order; none when the topic does not exist.
pub fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let mut out = Vec::new();
    for t in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
    {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), TIMEOUT)?;
            out.push((p.id(), low, high));
        }
    }
    out.sort();
    Ok(out)
}

#[derive(Clone, Debug)]
pub struct TailOptions {
    pub topic: String,
    /// Start at the beginning (default) or only print new records.
    pub from_end: bool,
    /// Keep waiting for new records instead of stopping at the end.
    pub follow: bool,
    /// Stop after this many records.
    pub limit: Option<u64>,
}

/// Prints each record of a topic as one JSON line:
/// `{"partition","offset","timestamp","key","value"}` with the value decoded
/// from Avro (or `value_error` and the raw bytes in hex when it does not decode).
pub fn tail(
    config: &KafkaConfig,
    opts: &TailOptions,
    out: &mut dyn Write,
    stop: &CancellationToken,
) -> Result<u64, KafkaError> {
    let consumer: BaseConsumer = config.reader(Duration::from_millis(100)).create()?;
    let partitions = watermarks(&consumer, &opts.topic)?;
    if partitions.is_empty() {
        return Err(KafkaError::Permanent(format!("no topic {}", opts.topic)));
    }
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for (p, low, high) in partitions {
        let start = if opts.from_end { high } else { low };
        tpl.add_partition_offset(&opts.topic, p, Offset::Offset(start))?;
        ends.push((p, high));
    }
    consumer.assign(&tpl)?;
    let codec = Codec::new();
    let mut printed = 0u64;
    let done = |pos: &[(i32, i64)]| {
        !opts.follow
            && ends
                .iter()
                .all(|(p, high)| pos.iter().any(|(q, o)| q == p && o >= high))
    };
    let mut positions: Vec<(i32, i64)> = tpl
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset().to_raw().unwrap_or(0)))
        .collect();
    while !done(&positions) && !stop.is_cancelled() && opts.limit.is_none_or(|l| printed < l) {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = message?;
        let mut line = json!({
            "partition": m.partition(),
            "offset": m.offset(),
            "timestamp": m.timestamp().to_millis(),
            "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        });
        match m.payload().map(|p| codec.decode_json(p)) {
            Some(Ok(value)) => line["value"] = value,
            Some(Err(e)) => {
                line["value_error"] = json!(e.to_string());
                line["value_hex"] = json!(hex(m.payload().unwrap_or_default()));
            }
            None => line["value"] = serde_json::Value::Null,
        }
        writeln!(out, "{line}").map_err(|e| KafkaError::Permanent(e.to_string()))?;
        printed += 1;
        if let Some(pos) = positions.iter_mut().find(|(p, _)| *p == m.partition()) {
            pos.1 = m.offset() + 1;
        }
    }
    Ok(printed)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    pub start_offset: i64,
    pub end_offset: i64,
    /// `(group, committed offset, lag)` for each group that committed here.
    pub groups: Vec<(String, i64, i64)>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TopicInfo {
    pub topic: String,
    pub partitions: Vec<PartitionInfo>,
}

/// Every topic with its partitions, offsets and the lag of `groups`.
/// (Groups are named rather than listed: the embedded broker drops the
/// connection on ListGroups.)
pub fn topics(config: &KafkaConfig, groups: &[String]) -> Result<Vec<TopicInfo>, KafkaError> {
    let consumer: BaseConsumer = config.reader(Duration::from_millis(100)).create()?;
    let metadata = consumer.fetch_metadata(None, TIMEOUT)?;
    let mut out = Vec::new();
    let mut names: Vec<_> = metadata.topics().iter().collect();
    names.sort_by_key(|t| t.name());
    for t in names {
        let mut partitions = Vec::new();
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(t.name(), p.id(), TIMEOUT)?;
            partitions.push(PartitionInfo {
                partition: p.id(),
                start_offset: low,
                end_offset: high,
                groups: Vec::new(),
            });
        }
        partitions.sort_by_key(|p| p.partition);
        out.push(TopicInfo {
            topic: t.name().to_owned(),
            partitions,
        });
    }
    for group in groups {
        let member: BaseConsumer = config
            .reader(Duration::from_millis(100))
            .set("group.id", group)
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for t in &out {
            for p in &t.partitions {
                tpl.add_partition(&t.topic, p.partition);
            }
        }
        let committed = member.committed_offsets(tpl, TIMEOUT)?;
        for e in committed.elements() {
            let Offset::Offset(offset) = e.offset() else {
                continue;
            };
            if let Some(p) = out
                .iter_mut()
                .filter(|t| t.topic == e.topic())
                .flat_map(|t| t.partitions.iter_mut())
                .find(|p| p.partition == e.partition())
            {
                p.groups
                    .push((group.clone(), offset, (p.end_offset - offset).max(0)));
            }
        }
    }
    Ok(out)
}

/// Waits until `group` has committed, on every partition of `topic`, at
/// least the end offset the partition had when this was called: the group
/// has then applied everything produced before. Returns false on timeout.
pub fn wait_caught_up(
    config: &KafkaConfig,
    group: &str,
    topic: &str,
    timeout: Duration,
) -> Result<bool, KafkaError> {
    let started = std::time::Instant::now();
    let probe: BaseConsumer = config
        .reader(Duration::from_millis(100))
        .set("group.id", group)
        .create()?;
    let targets: Vec<(i32, i64)> = watermarks(&probe, topic)?
        .into_iter()
        .map(|(p, _, high)| (p, high))
        .collect();
    loop {
        let mut tpl = TopicPartitionList::new();
        for (p, _) in &targets {
            tpl.add_partition(topic, *p);
        }
        let committed = probe.committed_offsets(tpl, TIMEOUT)?;
        let behind = targets.iter().any(|(p, high)| {
            let at = committed
                .find_partition(topic, *p)
                .and_then(|e| e.offset().to_raw())
                .unwrap_or(-1);
            *high > 0 && at < *high
        });
        if !behind {
            return Ok(true);
        }
        if started.elapsed() > timeout {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `topic` from its start to its current end as fast as the broker
/// serves it and returns (records, bytes, time): the raw consume rate.
pub fn read_all(config: &KafkaConfig, topic: &str) -> Result<(u64, u64, Duration), KafkaError> {
    let consumer: BaseConsumer = config
        .reader(Duration::from_millis(100))
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()?;
    let ranges: Vec<_> = watermarks(&consumer, topic)?
        .into_iter()
        .map(|(p, low, high)| (topic.to_owned(), p, low, high))
        .collect();
    let started = std::time::Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    read_ranges(&consumer, &ranges, |m| {
        records += 1;
        bytes += m.payload().map_or(0, <[u8]>::len) as u64;
    })?;
    Ok((records, bytes, started.elapsed()))
}

/// Hands each record of every (topic, partition, from, until) range to
/// `each`, in offset order per partition, through `consumer` (which it
/// assigns). An error when nothing comes for 10 s while a range is unread.
pub(crate) fn read_ranges(
    consumer: &BaseConsumer,
    ranges: &[(String, i32, i64, i64)],
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    let mut assignment = TopicPartitionList::new();
    // (topic, partition, until) of each range not read to its end.
    let mut remaining = Vec::new();
    for (topic, partition, from, until) in ranges {
        if from < until {
            assignment.add_partition_offset(topic, *partition, Offset::Offset(*from))?;
            remaining.push((topic.as_str(), *partition, *until));
        }
    }
    if remaining.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment)?;
    while !remaining.is_empty() {
        match consumer.poll(TIMEOUT) {
            Some(Ok(m)) => {
                let Some(i) = remaining
                    .iter()
                    .position(|(t, p, _)| *t == m.topic() && *p == m.partition())
                else {
                    continue;
                };
                let until = remaining[i].2;
                if m.offset() < until {
                    each(&m);
                }
                if m.offset() + 1 >= until {
                    remaining.swap_remove(i);
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                let unread: Vec<String> = remaining
                    .iter()
                    .map(|(t, p, _)| format!("{t}/{p}"))
                    .collect();
                return Err(KafkaError::Transient(format!(
                    "no record for 10 s with {} unread",
                    unread.join(", ")
                )));
            }
        }
    }
    Ok(())
}
