#![cfg(feature = "dynamodb")]
#![allow(clippy::unwrap_used)]
//! The DynamoDB backend against a DynamoDB-API server in its own process
//! (dynoxide, installed by scripts/test).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use store::{DynamoStore, Store};

struct Dynoxide(Child, u16);

impl Drop for Dynoxide {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn dynoxide() -> Dynoxide {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(std::env::var("DYNOXIDE").unwrap_or_else(|_| "dynoxide".into()))
        .args(["serve", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dynoxide on PATH (scripts/test installs it)");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "dynoxide did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Dynoxide(child, port)
}

#[tokio::test]
async fn dynamodb_passes_the_store_conformance_suite() {
    let server = dynoxide().await;
    let url = format!(
        "dynamodb://chatflow-test?endpoint=http://127.0.0.1:{}",
        server.1
    );
    let store = DynamoStore::connect(&url).await.unwrap();
    assert!(store.create_table().await.unwrap(), "a new table");
    assert!(
        !store.create_table().await.unwrap(),
        "creating it again is a no-op"
    );
    store::conformance::run(Arc::new(store) as Arc<dyn Store>).await;
}
