//! The cold tier's costs: history page latency from the hot store, from
//! archived segments already cached, and from segments read from the
//! archive (a fresh reader); the move's throughput; and the hot store's
//! size before and after.
//!
//!   cargo bench -p store --bench cold

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use store::cold::{self, StopAfter};
use store::{EventWrite, FjallStore, Mutation, Page, Store, Tiered};

const CID: &str = "g:bench";
const MESSAGES: i64 = 20_000;
/// The first half is 100 days old (ten 10-day buckets), the rest recent.
const OLD: i64 = MESSAGES / 2;
const DAY: i64 = 86_400_000;
const NOW: i64 = 400 * DAY;
const READS: usize = 2_000;

fn sent_at(seq: i64) -> i64 {
    if seq <= OLD {
        seq * 100 * DAY / OLD
    } else {
        NOW - (MESSAGES - seq)
    }
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// p50 and p99 of `READS` newest-first pages (limit 50) ending below a
/// seq drawn from `range`.
async fn pages(store: &dyn Store, range: std::ops::Range<i64>) -> (Duration, Duration) {
    let mut took = Vec::with_capacity(READS);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..READS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let before = range.start + (x % (range.end - range.start) as u64) as i64;
        let page = Page {
            before: Some(before),
            after: None,
            limit: 50,
        };
        let started = Instant::now();
        let got = store.messages(CID, page).await.expect("page");
        took.push(started.elapsed());
        assert!(!got.messages.is_empty());
    }
    took.sort();
    (took[READS / 2], took[READS * 99 / 100])
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store_dir = dir.path().join("store");
    let hot: Arc<dyn Store> = Arc::new(FjallStore::open(&store_dir).expect("fjall"));
    let archive = archive::open(&format!("file://{}", dir.path().join("archive").display()))
        .await
        .expect("archive");
    let mut events = vec![EventWrite {
        conversation_id: CID.into(),
        seq: 0,
        at: 0,
        mutations: vec![Mutation::CreateConversation {
            kind: "group".into(),
            name: None,
            description: None,
            created_by: "u0".into(),
            members: vec![("u0".into(), "owner".into())],
        }],
    }];
    events.extend((1..=MESSAGES).map(|seq| EventWrite {
        conversation_id: CID.into(),
        seq,
        at: sent_at(seq),
        mutations: vec![Mutation::PostMessage {
            message_id: format!("m{seq}"),
            sender_id: "u0".into(),
            client_msg_id: format!("c{seq}"),
            body: "a message of a typical length, about eighty bytes of text in all........".into(),
            reply_to: None,
            mentions: vec![],
            attachments: Vec::new(),
            sealed: None,
        }],
    }));
    for chunk in events.chunks(1_000) {
        hot.apply(chunk.to_vec()).await.expect("apply");
    }
    let tiered = Tiered::new(hot.clone(), archive.clone());
    let (hot_p50, hot_p99) = pages(&tiered, OLD + 100..MESSAGES).await;
    let size_before = dir_size(&store_dir);

    let started = Instant::now();
    let report = cold::move_conversation(&*hot, &*archive, CID, NOW - 30 * DAY, StopAfter::Nothing)
        .await
        .expect("move");
    let move_took = started.elapsed();
    let size_after = dir_size(&store_dir);

    let (cached_p50, cached_p99) = pages(&tiered, 100..OLD).await;
    // A reader per page: every segment comes from the archive.
    let mut cold_took = Vec::new();
    for i in 0..200 {
        let fresh = Tiered::new(hot.clone(), archive.clone());
        let before = 100 + (i * 47) % (OLD - 100);
        let started = Instant::now();
        let page = Page {
            before: Some(before),
            after: None,
            limit: 50,
        };
        fresh.messages(CID, page).await.expect("page");
        cold_took.push(started.elapsed());
    }
    cold_took.sort();
    println!(
        "history page (50, newest first): hot p50 {:?} p99 {:?}; archived, cached p50 {:?} p99 {:?}; archived, read from the archive p50 {:?} p99 {:?}",
        hot_p50,
        hot_p99,
        cached_p50,
        cached_p99,
        cold_took[cold_took.len() / 2],
        cold_took[cold_took.len() * 99 / 100],
    );
    println!(
        "cold move: {} messages in {:?} ({:.0} msgs/s), {} segments, {} bytes; hot store {} -> {} bytes on disk",
        report.archived,
        move_took,
        report.archived as f64 / move_took.as_secs_f64(),
        report.segments,
        report.bytes,
        size_before,
        size_after,
    );
}
