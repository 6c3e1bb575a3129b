//! Event-log archive throughput: the archiver stage fed batches of
//! chat-sized records (≈ 300-byte values, keys, a header), writing
//! 10,000-record segments into a directory, and into an S3-API server when
//! `CHATFLOW_BENCH_S3` names one (e.g. `s3://bench?endpoint=http://127.0.0.1:9000`
//! with `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` set for it).
//!
//!   cargo bench -p archiver --bench segments

use std::time::Instant;

use archiver::{Archiver, Rotation};
use streams::{Record, Stage};

const RECORDS: i64 = 100_000;
const BATCH: i64 = 2_000;

fn batch(start: i64) -> Vec<Record> {
    (start..start + BATCH)
        .map(|offset| Record {
            topic: "chat.events".into(),
            partition: (offset % 2) as i32,
            offset: offset / 2,
            key: Some(format!("g:01J{:020}", offset % 500).into_bytes()),
            payload: Some(
                [&[0u8, 0, 0, 0, 1][..], &vec![b'x'; 300]]
                    .concat()
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| b ^ ((offset as usize + i) % 251) as u8)
                    .collect(),
            ),
            timestamp: Some(1_700_000_000_000 + offset),
            headers: vec![("trace".into(), Some(b"0af7651916cd43dd".to_vec()))],
        })
        .collect()
}

async fn run(url: &str) {
    let archive = archive::open(url).await.expect("archive");
    let stage = Archiver::new(
        archive,
        Rotation {
            max_records: 10_000,
            max_span_ms: 3_600_000,
        },
    );
    let batches: Vec<Vec<Record>> = (0..RECORDS / BATCH).map(|b| batch(b * BATCH)).collect();
    let bytes: usize = batches
        .iter()
        .flatten()
        .map(|r| r.payload.as_ref().map_or(0, Vec::len) + r.key.as_ref().map_or(0, Vec::len))
        .sum();
    let started = Instant::now();
    for b in &batches {
        stage.process(b).await.expect("batch");
    }
    stage.flush().await.expect("flush");
    let took = started.elapsed().as_secs_f64();
    println!(
        "{url}: {RECORDS} records in {took:.2} s: {:.0} records/s, {:.1} MB/s of keys and values",
        RECORDS as f64 / took,
        bytes as f64 / took / 1e6
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(&format!("file://{}", dir.path().display())).await;
    if let Ok(url) = std::env::var("CHATFLOW_BENCH_S3") {
        run(&url).await;
    }
}
