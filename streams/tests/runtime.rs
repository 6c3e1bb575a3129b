#![allow(clippy::unwrap_used)]
//! The consumer runtime against the in-process broker.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use streams::topics::{self, TopicSpec};
use streams::{
    Assignment, ConsumerSpec, KafkaConfig, KafkaError, Lookback, Producer, Record, Rejection,
    SharedRead, Stage, StageError, StageStatus, run_stage,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A broker whose log lives in a directory removed when the test ends.
struct TestBroker {
    broker: Option<broker::EmbeddedBroker>,
    dir: PathBuf,
}

impl TestBroker {
    async fn start() -> TestBroker {
        let dir = PathBuf::from(".test-data").join(ulid::Ulid::new().to_string());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let broker = broker::EmbeddedBroker::start(port, &dir.join("log.db"))
            .await
            .unwrap();
        TestBroker {
            broker: Some(broker),
            dir,
        }
    }

    fn config(&self) -> KafkaConfig {
        KafkaConfig::new(self.broker.as_ref().unwrap().addr().to_string())
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            drop(b);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn produce(config: &KafkaConfig, topic: &str, payloads: &[String]) {
    let producer = Producer::new(config).unwrap();
    for p in payloads {
        producer
            .send(topic, b"k", p.as_bytes(), None)
            .await
            .unwrap();
    }
}

/// Sends one record per key `key{k}`, spread over the partitions by key.
async fn send_keyed(producer: &Producer, topic: &str, keys: std::ops::Range<i32>) {
    for k in keys {
        let key = format!("key{k}");
        producer
            .send(topic, key.as_bytes(), b"x", None)
            .await
            .unwrap();
    }
}

/// A broker with topic `name` of one partition holding `payloads`.
async fn one_partition(name: &str, payloads: Vec<String>) -> (TestBroker, KafkaConfig) {
    let broker = TestBroker::start().await;
    let config = broker.config();
    topic(&config, name, 1).await;
    produce(&config, name, &payloads).await;
    (broker, config)
}

/// Makes `name` with `partitions` partitions.
async fn topic(config: &KafkaConfig, name: &str, partitions: i32) {
    let spec = TopicSpec {
        name: name.into(),
        partitions,
        config: vec![],
    };
    topics::ensure(config, &[spec], 1).await.unwrap();
}

/// Records what it processed; on the record `block_at` it never returns,
/// like a process that dies mid-batch.
struct Recorder {
    done: Mutex<Vec<i64>>,
    /// (partition, offset) of each record processed, in order.
    seen: Mutex<Vec<(i32, i64)>>,
    batches: Mutex<Vec<Vec<i64>>>,
    block_at: Option<i64>,
    blocked: mpsc::UnboundedSender<Vec<i64>>,
    transient_failures: Mutex<u32>,
}

#[async_trait]
impl Stage for Recorder {
    async fn process(&self, batch: &[Record]) -> Result<Vec<Rejection>, StageError> {
        {
            let mut left = self.transient_failures.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(StageError("store unavailable".into()));
            }
        }
        let offsets: Vec<i64> = batch.iter().map(|r| r.offset).collect();
        if self.block_at.is_some_and(|b| offsets.contains(&b)) {
            let _ = self.blocked.send(offsets.clone());
            std::future::pending::<()>().await;
        }
        let mut rejected = Vec::new();
        for (index, r) in batch.iter().enumerate() {
            if r.payload.as_deref() == Some(b"poison") {
                rejected.push(Rejection {
                    index,
                    reason: "cannot decode".into(),
                });
            } else {
                self.done.lock().unwrap().push(r.offset);
                self.seen.lock().unwrap().push((r.partition, r.offset));
            }
        }
        self.batches.lock().unwrap().push(offsets);
        Ok(rejected)
    }
}

fn recorder(
    block_at: Option<i64>,
    transient_failures: u32,
) -> (Arc<Recorder>, mpsc::UnboundedReceiver<Vec<i64>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let r = Recorder {
        done: Mutex::default(),
        seen: Mutex::default(),
        batches: Mutex::default(),
        block_at,
        blocked: tx,
        transient_failures: Mutex::new(transient_failures),
    };
    (Arc::new(r), rx)
}

fn spec(topic: &str, group: &str) -> ConsumerSpec {
    ConsumerSpec {
        group: group.into(),
        topics: vec![topic.into()],
        max_batch: 5,
        fetch_wait: Duration::from_millis(20),
        // Commits on a timer, as the stages run.
        commit_every: Duration::from_millis(100),
        ..Default::default()
    }
}

async fn wait_for(mut check: impl FnMut() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached in 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_batch_is_redone_from_what_was_not_stored() {
    let (_broker, config) =
        one_partition("t.kill", (0..20).map(|i| format!("r{i}")).collect()).await;

    let (first, mut blocked) = recorder(Some(12), 0);
    let task = tokio::spawn({
        let (config, stage) = (config.clone(), first.clone());
        async move {
            run_stage(
                &config,
                spec("t.kill", "g.kill"),
                stage,
                CancellationToken::new(),
            )
            .await
        }
    });
    let in_flight = tokio::time::timeout(Duration::from_secs(30), blocked.recv())
        .await
        .unwrap()
        .unwrap();
    task.abort(); // killed: no graceful commit of anything further
    let _ = task.await;
    let stored_before: Vec<i64> = first.done.lock().unwrap().clone();
    assert!(!in_flight.is_empty());
    assert_eq!(stored_before, (0..in_flight[0]).collect::<Vec<_>>());

    let (second, _) = recorder(None, 0);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (config, stage, shutdown) = (config.clone(), second.clone(), shutdown.clone());
        async move { run_stage(&config, spec("t.kill", "g.kill"), stage, shutdown).await }
    });
    wait_for(|| second.done.lock().unwrap().last() == Some(&19)).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    // Exactly the records that were not stored: the batch in flight onwards.
    assert_eq!(
        *second.done.lock().unwrap(),
        (in_flight[0]..20).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dlq_and_transient_failures_are_retried() {
    let broker = TestBroker::start().await;
    let config = broker.config();
    topics::ensure(
        &config,
        &[
            TopicSpec {
                name: "t.poison".into(),
                partitions: 1,
                config: vec![],
            },
            TopicSpec::dlq("g.poison"),
        ],
        1,
    )
    .await
    .unwrap();
    let payloads: Vec<String> = ["a", "b", "poison", "c", "d"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    produce(&config, "t.poison", &payloads).await;

    let (stage, _) = recorder(None, 2);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (config, stage, shutdown) = (config.clone(), stage.clone(), shutdown.clone());
        async move { run_stage(&config, spec("t.poison", "g.poison"), stage, shutdown).await }
    });
    wait_for(|| stage.done.lock().unwrap().contains(&4)).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    // Nothing skipped by the two transient failures; the poison is not "done".
    assert_eq!(*stage.done.lock().unwrap(), vec![0, 1, 3, 4]);

    let reader: BaseConsumer = config.reader(Duration::from_millis(20)).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topics::dlq("g.poison"), 0, Offset::Beginning)
        .unwrap();
    reader.assign(&tpl).unwrap();
    let m = loop {
        if let Some(m) = reader.poll(Duration::from_millis(500)) {
            break m.unwrap();
        }
    };
    assert_eq!(m.payload(), Some(&b"poison"[..]));
    assert_eq!(m.key(), Some(&b"k"[..]));
    let headers = m.headers().unwrap();
    let get = |k: &str| {
        headers
            .iter()
            .find(|h| h.key == k)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(get("dlq.reason").as_deref(), Some("cannot decode"));
    assert_eq!(get("dlq.offset").as_deref(), Some("2"));
    assert_eq!(get("dlq.topic").as_deref(), Some("t.poison"));

    // A restart in the same group starts after everything: all was stored.
    let (again, _) = recorder(None, 0);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (config, stage, shutdown) = (config.clone(), again.clone(), shutdown.clone());
        async move { run_stage(&config, spec("t.poison", "g.poison"), stage, shutdown).await }
    });
    produce(&config, "t.poison", &["e".to_string()]).await;
    wait_for(|| !again.done.lock().unwrap().is_empty()).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(*again.done.lock().unwrap(), vec![5]);
}

/// Embedded mode: a stage that assigns itself every partition holds them at
/// once (no group join to wait for) and starts from the group's committed
/// offsets, whichever way they were committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_assigned_every_partition_resumes_from_the_group_offsets() {
    let broker = TestBroker::start().await;
    let config = broker.config();
    topic(&config, "t.all", 3).await;
    let producer = Producer::new(&config).unwrap();
    let send = |keys| send_keyed(&producer, "t.all", keys);
    send(0..30).await;

    let run = |assignment: Assignment| {
        let (stage, _) = recorder(None, 0);
        let status = Arc::new(StageStatus::default());
        let shutdown = CancellationToken::new();
        let spec = ConsumerSpec {
            assignment,
            status: status.clone(),
            ..spec("t.all", "g.all")
        };
        let task = tokio::spawn({
            let (config, stage, shutdown) = (config.clone(), stage.clone(), shutdown.clone());
            async move { run_stage(&config, spec, stage, shutdown).await }
        });
        (stage, status, shutdown, task)
    };
    let (first, _, shutdown, task) = run(Assignment::Group);
    wait_for(|| first.done.lock().unwrap().len() == 30).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();

    send(30..40).await;
    let (second, status, shutdown, task) = run(Assignment::All);
    wait_for(|| status.partitions() == 3).await;
    wait_for(|| second.done.lock().unwrap().len() >= 10).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        second.done.lock().unwrap().len(),
        10,
        "only the new records"
    );

    // Its own commits carry over to the next start too.
    send(40..45).await;
    let (third, _, shutdown, task) = run(Assignment::All);
    wait_for(|| third.done.lock().unwrap().len() >= 5).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(third.done.lock().unwrap().len(), 5);
}

/// Offsets committed on a timer reach the broker with no batch after them
/// (a quiet partition keeps its place), and only what was processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_commits_land_in_a_quiet_period() {
    let (_broker, config) =
        one_partition("t.quiet", (0..20).map(|i| format!("{i}")).collect()).await;
    let (stage, _) = recorder(None, 0);
    let shutdown = CancellationToken::new();
    let spec = ConsumerSpec {
        commit_every: Duration::from_millis(300),
        ..spec("t.quiet", "g.quiet")
    };
    let task = tokio::spawn({
        let (config, stage, shutdown) = (config.clone(), stage.clone(), shutdown.clone());
        async move { run_stage(&config, spec, stage, shutdown).await }
    });
    wait_for(|| stage.done.lock().unwrap().len() == 20).await;
    let probe: BaseConsumer = config
        .consumer("g.quiet", Duration::from_millis(20))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("t.quiet", 0);
    let committed = || {
        let c = probe
            .committed_offsets(tpl.clone(), Duration::from_secs(5))
            .unwrap();
        c.find_partition("t.quiet", 0).unwrap().offset()
    };
    let mut seen = committed();
    for _ in 0..100 {
        if seen == Offset::Offset(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = committed();
    }
    assert_eq!(seen, Offset::Offset(20), "committed while the stage runs");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// A broker restarted under a producer may take a batch it already had a
/// second time (tansu 0.6 forgets its idempotent-producer state), so an
/// acknowledgement that crossed the restart may name a second copy: the
/// producer reports its offset as unknown (-1) and the caller finds the
/// first. Acknowledgements after that carry their offsets again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_across_a_broker_restart_has_an_unknown_offset() {
    let mut test = TestBroker::start().await;
    let config = test.config();
    topic(&config, "t.restart", 1).await;
    let producer = Producer::new(&config).unwrap();
    let ack = |payload: &'static [u8]| producer.enqueue("t.restart", b"k", payload).unwrap();

    let (_, before) = ack(b"before").await.unwrap();
    assert!(before >= 0);

    let addr = test.broker.as_ref().unwrap().addr();
    test.broker.take().unwrap().stop().await;
    let across = ack(b"across");
    tokio::time::sleep(Duration::from_millis(500)).await;
    test.broker = Some(
        broker::EmbeddedBroker::start(addr, &test.dir.join("log.db"))
            .await
            .unwrap(),
    );
    assert_eq!(
        across.await.unwrap().1,
        -1,
        "the offset of an ack across a restart"
    );

    let (_, after) = ack(b"after").await.unwrap();
    assert!(after > before, "{after} after {before}");
}

/// The group's committed offset on each partition of `topic`.
fn committed(config: &KafkaConfig, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let probe: BaseConsumer = config
        .consumer(group, Duration::from_millis(20))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let c = probe
        .committed_offsets(tpl, Duration::from_secs(5))
        .unwrap();
    (0..partitions)
        .map(|p| match c.find_partition(topic, p).unwrap().offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

/// Asserts `seen` holds, per partition, each offset from `from[p]` to
/// `to[p]` once and in order.
fn each_once_in_order(seen: &[(i32, i64)], from: &[i64], to: &[i64], who: &str) {
    for (p, (from, to)) in from.iter().zip(to).enumerate() {
        let got: Vec<i64> = seen
            .iter()
            .filter(|(q, _)| *q == p as i32)
            .map(|(_, o)| *o)
            .collect();
        let want: Vec<i64> = (*from..*to).collect();
        assert_eq!(got, want, "{who}, partition {p}");
    }
}

/// Stops the stages, each returning cleanly, then the read they share.
async fn stop_sharing(
    stages: [(CancellationToken, JoinHandle<Result<(), KafkaError>>); 2],
    reading: CancellationToken,
    reader: JoinHandle<()>,
) {
    for (stop, _) in &stages {
        stop.cancel();
    }
    for (_, task) in stages {
        task.await.unwrap().unwrap();
    }
    reading.cancel();
    reader.await.unwrap();
}

/// Stages sharing one read each get every record from their own group's
/// committed offset, once and in order; one that fails for a while or
/// joins late costs the others nothing; each commits to its own group and
/// resumes from there on the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_sharing_one_read_keep_their_own_positions() {
    let broker = TestBroker::start().await;
    let config = broker.config();
    let t = "t.shared";
    topic(&config, t, 2).await;
    let producer = Producer::new(&config).unwrap();
    let send = |keys| send_keyed(&producer, t, keys);
    let ends = |config: KafkaConfig| async move {
        let probe: BaseConsumer = config
            .consumer("g.probe", Duration::from_millis(20))
            .create()
            .unwrap();
        (0..2)
            .map(|p| {
                probe
                    .fetch_watermarks(t, p, Duration::from_secs(5))
                    .unwrap()
                    .1
            })
            .collect::<Vec<i64>>()
    };

    // Group b has read the first 20 on its own.
    send(0..20).await;
    let (b0, _) = recorder(None, 0);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (config, stage, shutdown) = (config.clone(), b0.clone(), shutdown.clone());
        let spec = ConsumerSpec {
            assignment: Assignment::All,
            ..spec(t, "g.b")
        };
        async move { run_stage(&config, spec, stage, shutdown).await }
    });
    wait_for(|| b0.done.lock().unwrap().len() == 20).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let b_start = committed(&config, "g.b", t, 2);
    assert_eq!(b_start.iter().sum::<i64>(), 20);
    send(20..40).await;
    let end = ends(config.clone()).await;

    let run = |read: Arc<SharedRead>, group: &'static str, stage: Arc<Recorder>| {
        let shutdown = CancellationToken::new();
        let spec = ConsumerSpec {
            assignment: Assignment::All,
            fetch_wait: Duration::from_millis(50),
            ..spec(t, group)
        };
        let task = tokio::spawn({
            let (stage, shutdown) = (stage.clone(), shutdown.clone());
            async move { read.run_stage(spec, stage, shutdown).await }
        });
        (shutdown, task)
    };

    // Group a starts from nothing and fails its first batches; group b
    // joins once a has read everything, from its own offsets.
    let reading = CancellationToken::new();
    let (read, reader) =
        SharedRead::start(&config, Duration::from_millis(20), reading.clone()).unwrap();
    let read = Arc::new(read);
    let (a, _) = recorder(None, 3);
    let (stop_a, task_a) = run(read.clone(), "g.a", a.clone());
    wait_for(|| a.done.lock().unwrap().len() == 40).await;
    let (b, _) = recorder(None, 0);
    let (stop_b, task_b) = run(read.clone(), "g.b", b.clone());
    wait_for(|| b.done.lock().unwrap().len() == 20).await;
    send(40..50).await;
    let end2 = ends(config.clone()).await;
    wait_for(|| a.done.lock().unwrap().len() == 50 && b.done.lock().unwrap().len() == 30).await;
    // Nothing more comes: no record twice for a after b moved the read back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    each_once_in_order(&a.seen.lock().unwrap(), &[0, 0], &end2, "a");
    each_once_in_order(&b.seen.lock().unwrap(), &b_start, &end2, "b");
    assert!(end.iter().sum::<i64>() == 40);
    stop_sharing([(stop_a, task_a), (stop_b, task_b)], reading, reader).await;
    assert_eq!(committed(&config, "g.a", t, 2), end2, "a committed its own");
    assert_eq!(committed(&config, "g.b", t, 2), end2, "b committed its own");

    // The next start resumes each group where it committed.
    send(50..60).await;
    let end3 = ends(config.clone()).await;
    let reading = CancellationToken::new();
    let (read, reader) =
        SharedRead::start(&config, Duration::from_millis(20), reading.clone()).unwrap();
    let read = Arc::new(read);
    let (a, _) = recorder(None, 0);
    let (b, _) = recorder(None, 0);
    let (stop_a, task_a) = run(read.clone(), "g.a", a.clone());
    let (stop_b, task_b) = run(read.clone(), "g.b", b.clone());
    wait_for(|| a.done.lock().unwrap().len() == 10 && b.done.lock().unwrap().len() == 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    each_once_in_order(&a.seen.lock().unwrap(), &end2, &end3, "a after restart");
    each_once_in_order(&b.seen.lock().unwrap(), &end2, &end3, "b after restart");
    stop_sharing([(stop_a, task_a), (stop_b, task_b)], reading, reader).await;
}

/// The first batch of each partition brings up to `depth` records below
/// it, once; a revoked partition is looked back on again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookback_reads_below_the_first_record_once_per_partition() {
    let (_broker, config) =
        one_partition("t.back", (0..30).map(|i| format!("{i}")).collect()).await;
    let at = |offset: i64| Record {
        topic: "t.back".into(),
        partition: 0,
        offset,
        key: None,
        payload: None,
        timestamp: None,
        headers: Vec::new(),
    };
    let offsets = |records: Vec<Record>| records.iter().map(|r| r.offset).collect::<Vec<_>>();
    let lookback = Lookback::new(&config, 10);
    assert_eq!(
        offsets(lookback.before(&[at(25), at(26)]).await.unwrap()),
        (15..25).collect::<Vec<_>>()
    );
    assert!(lookback.before(&[at(27)]).await.unwrap().is_empty(), "once");
    lookback.forget(&[("t.back".into(), 0)]);
    assert_eq!(
        offsets(lookback.before(&[at(4)]).await.unwrap()),
        [0, 1, 2, 3],
        "no further back than the log's start"
    );
    assert!(lookback.before(&[at(5)]).await.unwrap().is_empty());
    let from_start = Lookback::new(&config, 10);
    assert!(from_start.before(&[at(0)]).await.unwrap().is_empty());
}
