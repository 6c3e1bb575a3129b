//! Store write throughput: the persister's batches of message events applied
//! to fjall and, when `dynoxide` is on PATH and the `dynamodb` feature is
//! on, to a DynamoDB-API server in its own process.
//!
//!   cargo bench -p store --features dynamodb --bench apply

use std::sync::Arc;
use std::time::{Duration, Instant};

use store::{EventWrite, Mutation, Store};

const CONVERSATIONS: i64 = 50;
const EVENTS: i64 = 5_000;
const BATCH: usize = 500;

fn workload() -> Vec<Vec<EventWrite>> {
    let mut events: Vec<EventWrite> = (0..CONVERSATIONS)
        .map(|c| EventWrite {
            conversation_id: format!("c{c}"),
            seq: 0,
            at: 0,
            mutations: vec![Mutation::CreateConversation {
                kind: "group".into(),
                name: None,
                description: None,
                created_by: "u0".into(),
                members: (0..5).map(|u| (format!("u{u}"), "member".into())).collect(),
            }],
        })
        .collect();
    events.extend((1..=EVENTS).map(|i| EventWrite {
        conversation_id: format!("c{}", i % CONVERSATIONS),
        seq: i,
        at: i,
        mutations: vec![Mutation::PostMessage {
            message_id: format!("m{i}"),
            sender_id: format!("u{}", i % 5),
            client_msg_id: format!("x{i}"),
            body: "a message of a typical length, about eighty bytes of text in all........".into(),
            reply_to: None,
            mentions: vec![],
            attachments: Vec::new(),
            sealed: None,
        }],
    }));
    events.chunks(BATCH).map(<[EventWrite]>::to_vec).collect()
}

async fn measure(name: &str, store: Arc<dyn Store>) {
    let batches = workload();
    let started = Instant::now();
    for batch in batches {
        store.apply(batch).await.expect("apply");
    }
    let elapsed = started.elapsed();
    println!(
        "{name:<10} {EVENTS} message events in batches of {BATCH}: {:>8.0} events/s ({:.2} s)",
        EVENTS as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    measure(
        "fjall",
        Arc::new(store::FjallStore::open(dir.path()).expect("fjall")),
    )
    .await;
    dynamo().await;
}

#[cfg(feature = "dynamodb")]
async fn dynamo() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let Ok(mut child) = std::process::Command::new("dynoxide")
        .args(["serve", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        println!("dynamodb   skipped: no dynoxide on PATH");
        return;
    };
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = store::DynamoStore::connect(&format!(
        "dynamodb://bench?endpoint=http://127.0.0.1:{port}"
    ))
    .await
    .expect("connect");
    store.create_table().await.expect("table");
    measure("dynamodb", Arc::new(store)).await;
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(not(feature = "dynamodb"))]
async fn dynamo() {
    println!("dynamodb   skipped: build with --features dynamodb");
}
