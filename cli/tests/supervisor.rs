#![allow(clippy::unwrap_used)]
//! The supervisor stops everything, front first, when one service fails,
//! and reports the failure.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use cli::{Node, NodeArgs, Running, Service};
use streams::topics::TopicSpec;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    node: NodeArgs,
}

type Log = Arc<Mutex<Vec<&'static str>>>;

/// Runs until cancelled, then takes `linger` to stop and notes it.
struct Waits {
    name: &'static str,
    front: bool,
    linger: Duration,
    log: Log,
}

/// Fails a moment after it started.
struct Fails;

#[async_trait::async_trait]
impl Service for Waits {
    fn name(&self) -> &'static str {
        self.name
    }
    fn topics(&self, _: &Node) -> Vec<TopicSpec> {
        Vec::new()
    }
    fn front(&self) -> bool {
        self.front
    }
    async fn start(
        self: Box<Self>,
        _: Arc<Node>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Running> {
        Ok(Box::pin(async move {
            shutdown.cancelled().await;
            tokio::time::sleep(self.linger).await;
            self.log.lock().unwrap().push(self.name);
            Ok(())
        }))
    }
}

#[async_trait::async_trait]
impl Service for Fails {
    fn name(&self) -> &'static str {
        "fails"
    }
    fn topics(&self, _: &Node) -> Vec<TopicSpec> {
        Vec::new()
    }
    async fn start(self: Box<Self>, _: Arc<Node>, _: CancellationToken) -> anyhow::Result<Running> {
        Ok(Box::pin(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            anyhow::bail!("broken")
        }))
    }
}

#[tokio::test]
async fn one_failed_service_stops_all_front_first_and_the_run_fails() {
    let args = Args::parse_from(["test", "--kafka", "127.0.0.1:1"]).node;
    let log = Log::default();
    let services: Vec<Box<dyn Service>> = vec![
        Box::new(Waits {
            name: "stage",
            front: false,
            linger: Duration::ZERO,
            log: log.clone(),
        }),
        // A slow drain: the stage must still run until it is done.
        Box::new(Waits {
            name: "front",
            front: true,
            linger: Duration::from_millis(50),
            log: log.clone(),
        }),
        Box::new(Fails),
    ];
    let result = cli::run(args, services).await;
    let error = result.expect_err("a failed service fails the run");
    assert!(error.to_string().contains("failure"), "{error:#}");
    assert_eq!(*log.lock().unwrap(), ["front", "stage"]);
}
