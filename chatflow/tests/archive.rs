#![allow(clippy::unwrap_used)]
//! The event-log archive of a running chatflow: killed with SIGKILL while
//! messages are being sent (segments half filled), started again, the
//! archive read back holds every record of `chat.events` once, at its
//! offset, with the bytes the broker holds; `chatflow archive ls` lists it.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use archive::segment::{ArchivedRecord, Segment, parse_key};
use common::{Api, Chatflow, post, run_ok};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

const SEGMENT_RECORDS: usize = 40;

/// Sends until the server goes away, counting the acknowledged sends.
async fn burst(
    http: SocketAddr,
    token: String,
    groups: Vec<String>,
    round: usize,
    acked: Arc<AtomicUsize>,
) {
    let client = reqwest::Client::new();
    for i in 0..400 {
        let cid = &groups[i % groups.len()];
        let sent = client
            .post(format!("http://{http}/v1/conversations/{cid}/messages"))
            .bearer_auth(&token)
            .json(&json!({"client_msg_id": format!("r{round}-{i}"), "body": format!("round {round}, message {i}")}))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// `chat.events` as the broker holds it, per partition.
fn log(kafka: SocketAddr) -> BTreeMap<i32, Vec<ArchivedRecord>> {
    let config = streams::KafkaConfig::new(kafka.to_string());
    let consumer: BaseConsumer = config.reader(Duration::from_millis(50)).create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some("chat.events"), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in metadata.topics()[0].partitions() {
        let (_, high) = consumer
            .fetch_watermarks("chat.events", p.id(), Duration::from_secs(10))
            .unwrap();
        ends.insert(p.id(), high);
        tpl.add_partition_offset("chat.events", p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut log: BTreeMap<i32, Vec<ArchivedRecord>> = BTreeMap::new();
    let done = |log: &BTreeMap<i32, Vec<ArchivedRecord>>| {
        ends.iter().all(|(p, high)| {
            *high == 0
                || log
                    .get(p)
                    .and_then(|r| r.last())
                    .is_some_and(|r| r.offset + 1 >= *high)
        })
    };
    while !done(&log) {
        let m = consumer
            .poll(Duration::from_secs(10))
            .expect("the broker serves up to its high watermark")
            .unwrap();
        log.entry(m.partition())
            .or_default()
            .push(archiver::archived(&streams::Record::from_message(&m)));
    }
    log
}

/// The archive in the data dir, read back per partition; and its segment
/// sizes.
fn read_back(data: &Path) -> (BTreeMap<i32, Vec<ArchivedRecord>>, Vec<usize>) {
    let root = data.join("archive/topics/chat.events");
    let mut out: BTreeMap<i32, Vec<ArchivedRecord>> = BTreeMap::new();
    let mut sizes = Vec::new();
    let Ok(partitions) = std::fs::read_dir(&root) else {
        return (out, sizes);
    };
    let mut files: Vec<_> = partitions
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        // Segments as the archive lists them: not the temporary file a
        // kill -9 can leave behind a write (its name ends in .avro too).
        .filter(|p| {
            let key = p.strip_prefix(data.join("archive")).unwrap();
            parse_key(&key.to_string_lossy()).is_some()
        })
        .collect();
    files.sort();
    for f in files {
        let s = Segment::decode(&std::fs::read(&f).unwrap()).unwrap();
        sizes.push(s.records.len());
        out.entry(s.partition).or_default().extend(s.records);
    }
    (out, sizes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_holds_every_record_of_the_log_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let segment = SEGMENT_RECORDS.to_string();
    let mut cf = Chatflow::start_with(
        &data,
        &[
            "--rate",
            "10000",
            "--rate-burst",
            "10000",
            "--archive-segment-records",
            &segment,
            "--archive-flush",
            "150ms",
        ],
    )
    .await;
    let token = cf.token("ann").await;
    let ann = Api::new(&cf, &token);
    let groups = vec![
        ann.create_group(&["bob"]).await,
        ann.create_group(&["eve", "bob"]).await,
        ann.create_group(&["eve"]).await,
    ];
    let acked = Arc::new(AtomicUsize::new(0));
    for round in 0..3 {
        let sending = tokio::spawn(burst(
            cf.http,
            token.clone(),
            groups.clone(),
            round,
            acked.clone(),
        ));
        // Killed mid-burst, once this round has some 40 messages in.
        let started = std::time::Instant::now();
        while acked.load(Ordering::Relaxed) < 40 * (round + 1) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "sends are not acked"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(30 * round as u64)).await;
        cf.kill();
        let _ = sending.await;
        cf.start_again().await;
    }
    for (i, cid) in groups.iter().cycle().take(25).enumerate() {
        post(
            &ann,
            cid,
            &format!("after-{i}"),
            json!({"body": format!("after {i}")}),
        )
        .await;
    }

    let expected = log(cf.kafka);
    let total: usize = expected.values().map(Vec::len).sum();
    assert!(
        total > 100,
        "the test sent too little to fill segments: {total}"
    );
    let mut archived = BTreeMap::new();
    for _ in 0..300 {
        archived = read_back(&data).0;
        if archived == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (p, records) in &expected {
        let got = archived.get(p).map(Vec::as_slice).unwrap_or_default();
        let offsets = |r: &[ArchivedRecord]| r.iter().map(|r| r.offset).collect::<Vec<_>>();
        assert_eq!(
            offsets(got),
            offsets(records),
            "partition {p}: each offset once, in order"
        );
        assert!(
            got == records.as_slice(),
            "partition {p}: the bytes the broker holds"
        );
    }
    let (_, sizes) = read_back(&data);
    assert!(sizes.iter().all(|n| *n <= SEGMENT_RECORDS), "{sizes:?}");

    let listing = run_ok(Command::new(env!("CARGO_BIN_EXE_chatflow")).args([
        "archive",
        "ls",
        "--data-dir",
        data.to_str().unwrap(),
    ]));
    assert!(
        listing.contains(&format!("{} segments, {total} records", sizes.len())),
        "{listing}"
    );
    for p in expected.keys() {
        let first = format!("chat.events+{p}+00000000000000000000.avro");
        assert!(listing.contains(&first), "{listing}");
    }
}
