#![allow(clippy::unwrap_used)]
//! The producer harness counts what really happened: every message sent is
//! acknowledged once and delivered once to every device of every member,
//! and in Kafka mode every stage is seen catching up with what it produced.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Chatflow, run_ok};
use serde_json::Value;

fn loadgen() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_chatflow"))
        .parent()
        .unwrap()
        .join("loadgen");
    assert!(
        path.exists(),
        "loadgen is not built: scripts/test runs `cargo build --workspace --bins` first"
    );
    path
}

fn report(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_measures_what_the_pipeline_did() {
    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start_with(
        &dir.path().join("data"),
        &["--rate", "100000", "--rate-burst", "100000"],
    )
    .await;

    // 20 people × 2 devices in 4 groups of 5, 50 messages/s for 2 s.
    let ws_report = dir.path().join("ws.json");
    let url = format!("http://{}", cf.http);
    run_ok(Command::new(loadgen()).args([
        "ws",
        "--url",
        &url,
        "--users",
        "20",
        "--devices",
        "2",
        "--group-size",
        "5",
        "--rate",
        "50",
        "--duration",
        "2s",
        "--sources",
        "3",
        "--report",
        ws_report.to_str().unwrap(),
    ]));
    let r = report(&ws_report);
    assert_eq!(r["sockets"], 40);
    assert_eq!(
        (r["sent"].as_u64(), r["acked"].as_u64()),
        (Some(100), Some(100))
    );
    assert_eq!(
        r["delivered"],
        100 * 5 * 2,
        "each message to each device of each member"
    );
    assert_eq!(r["send_to_deliver"]["count"], 1000);
    assert_eq!(
        (r["errors"].as_u64(), r["reconnects"].as_u64()),
        (Some(0), Some(0))
    );

    // Straight onto chat.events: the stages are seen catching up.
    let kafka_report = dir.path().join("kafka.json");
    run_ok(Command::new(loadgen()).args([
        "kafka",
        "--brokers",
        &cf.kafka.to_string(),
        "--conversations",
        "20",
        "--rate",
        "500",
        "--duration",
        "2s",
        "--report",
        kafka_report.to_str().unwrap(),
    ]));
    let r = report(&kafka_report);
    assert_eq!(r["messages"], 1000);
    for stage in r["stages"].as_array().unwrap() {
        assert_eq!(stage["caught_up"], true, "{stage}");
        assert!(stage["events"].as_i64().unwrap() >= 1020, "{stage}");
    }
}
