#![allow(clippy::unwrap_used)]
//! The archiver stage against the in-process broker and a directory
//! archive: every record lands once, with its offset, key, value, timestamp
//! and headers, and the same log gives the same objects byte for byte
//! however it was batched, flushed or interrupted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use archive::Archive;
use archive::segment::{self, ArchivedRecord, Segment};
use archiver::{Archiver, Rotation};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use streams::topics::{self, TopicSpec};
use streams::{Assignment, ConsumerSpec, KafkaConfig, run_stage};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "t.archive";
const RECORDS: i64 = 300;
/// 45 records or 60 s of record time, whichever comes first; records are
/// stamped 1 s apart, with a jump of 90 s in the middle.
const ROTATION: Rotation = Rotation {
    max_records: 45,
    max_span_ms: 60_000,
};

async fn broker(dir: &std::path::Path) -> broker::EmbeddedBroker {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    broker::EmbeddedBroker::start(port, &dir.join("log.db"))
        .await
        .unwrap()
}

/// Records with keys, values, stamped times and headers (some without a
/// key, some without a value, some headers without a value).
async fn produce(config: &KafkaConfig) {
    let producer: FutureProducer = config.producer().create().unwrap();
    for i in 0..RECORDS {
        let key = format!("conversation-{}", i % 7);
        let value = format!("value {i} \u{1F600}").into_bytes();
        let stamp = 1_700_000_000_000 + i * 1_000 + if i >= 150 { 90_000 } else { 0 };
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(TOPIC)
            .timestamp(stamp)
            .partition((i % 2) as i32);
        if i % 11 != 0 {
            record = record.key(key.as_bytes());
        }
        if i % 13 != 0 {
            record = record.payload(&value);
        }
        if i % 3 == 0 {
            record = record.headers(
                OwnedHeaders::new()
                    .insert(Header {
                        key: "trace",
                        value: Some(&format!("t{i}")),
                    })
                    .insert(Header::<&[u8]> {
                        key: "empty",
                        value: None,
                    }),
            );
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

/// The topic as the broker holds it, per partition.
fn log(config: &KafkaConfig) -> BTreeMap<i32, Vec<ArchivedRecord>> {
    let consumer: BaseConsumer = config.reader(Duration::from_millis(50)).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut log: BTreeMap<i32, Vec<ArchivedRecord>> = BTreeMap::new();
    while log.values().map(Vec::len).sum::<usize>() < RECORDS as usize {
        let Some(m) = consumer.poll(Duration::from_secs(10)) else {
            panic!("the broker has fewer records than were produced");
        };
        let m = m.unwrap();
        log.entry(m.partition())
            .or_default()
            .push(archiver::archived(&streams::Record::from_message(&m)));
    }
    log
}

/// Every object under the archive's topic prefix, by key.
async fn objects(archive: &dyn Archive) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for o in archive.list(&segment::topic_prefix(TOPIC)).await.unwrap() {
        let bytes = archive.get(&o.key).await.unwrap().unwrap();
        out.insert(o.key, bytes.to_vec());
    }
    out
}

/// The archive read back, per partition, in key order.
async fn read_back(archive: &dyn Archive) -> BTreeMap<i32, Vec<ArchivedRecord>> {
    let mut out: BTreeMap<i32, Vec<ArchivedRecord>> = BTreeMap::new();
    for (key, bytes) in objects(archive).await {
        let s = Segment::decode(&bytes).unwrap();
        assert_eq!(
            s.key().as_deref(),
            Some(key.as_str()),
            "named by its first offset"
        );
        out.entry(s.partition).or_default().extend(s.records);
    }
    out
}

struct Run {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

fn start(
    config: &KafkaConfig,
    archive: Arc<dyn Archive>,
    group: &str,
    max_batch: usize,
    flush_every: Duration,
) -> Run {
    let spec = ConsumerSpec {
        group: group.into(),
        topics: vec![TOPIC.into()],
        max_batch,
        fetch_wait: Duration::from_millis(20),
        assignment: Assignment::All,
        flush_every: Some(flush_every),
        ..Default::default()
    };
    let stage = Arc::new(Archiver::new(archive, ROTATION));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move { run_stage(&config, spec, stage, shutdown).await.unwrap() }
    });
    Run { shutdown, task }
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn archived(archive: &dyn Archive) -> usize {
    read_back(archive).await.values().map(Vec::len).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_lands_once_and_the_same_log_gives_the_same_bytes() {
    // The embedded broker keeps its log under the working directory only.
    let dir = tempfile::tempdir_in(".").unwrap();
    let broker = broker(std::path::Path::new(dir.path().file_name().unwrap())).await;
    let config = KafkaConfig::new(broker.addr().to_string());
    let spec = TopicSpec {
        name: TOPIC.into(),
        partitions: 2,
        config: vec![],
    };
    topics::ensure(&config, &[spec], 1).await.unwrap();
    produce(&config).await;
    let expected = log(&config);

    // Small batches, frequent flushes: the open segment is rewritten often.
    let a: Arc<dyn Archive> = archive::open(&format!("file://{}", dir.path().join("a").display()))
        .await
        .unwrap();
    let run = start(
        &config,
        a.clone(),
        "archiver-a",
        7,
        Duration::from_millis(20),
    );
    until("archive a holds every record", async || {
        archived(&*a).await == RECORDS as usize
    })
    .await;
    run.shutdown.cancel();
    run.task.await.unwrap();
    assert_eq!(read_back(&*a).await, expected);

    // Larger batches, no flush but at shutdown, killed after its first
    // closed segment (the task dropped: nothing flushed, nothing
    // committed past what is durable), then started again.
    let b: Arc<dyn Archive> = archive::open(&format!("file://{}", dir.path().join("b").display()))
        .await
        .unwrap();
    let start_b = |flush_every| start(&config, b.clone(), "archiver-b", 50, flush_every);
    let run = start_b(Duration::from_secs(3600));
    until("archive b has a segment", async || {
        !objects(&*b).await.is_empty()
    })
    .await;
    run.task.abort();
    let _ = run.task.await;
    let before_restart = archived(&*b).await;
    assert!(before_restart < RECORDS as usize, "killed before the end");
    let run = start_b(Duration::from_secs(3600));
    until("archive b holds every closed segment", async || {
        // The last segment of each partition waits for a flush.
        objects(&*b).await.len() >= objects(&*a).await.len() - 2
    })
    .await;
    run.shutdown.cancel();
    run.task.await.unwrap();
    // The shutdown flushed what that run had read, which need not be all
    // (the wait above sees closed segments only): one more start, with
    // flushes, takes the rest from the group's committed offsets.
    let run = start_b(Duration::from_millis(20));
    until("archive b holds every record", async || {
        archived(&*b).await >= RECORDS as usize
    })
    .await;
    run.shutdown.cancel();
    run.task.await.unwrap();

    assert_eq!(
        read_back(&*b).await,
        expected,
        "nothing lost, nothing twice"
    );
    assert_eq!(objects(&*b).await, objects(&*a).await, "the same bytes");

    // Segments close by count and by record time.
    let sizes: Vec<(i32, usize)> = objects(&*a)
        .await
        .values()
        .map(|bytes| Segment::decode(bytes).unwrap())
        .map(|s| (s.partition, s.records.len()))
        .collect();
    assert!(sizes.iter().all(|(_, n)| *n <= ROTATION.max_records));
    // 150 records per partition, 2 s apart there: 30 per minute, with a
    // jump between the records 149 and 150 of the whole topic.
    assert!(
        sizes.iter().filter(|(p, _)| *p == 0).count() >= 5,
        "partition 0 cut by time as well as by count: {sizes:?}"
    );
}
