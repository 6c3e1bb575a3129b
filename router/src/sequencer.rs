//! Routing at the produce ack. When the gateway shares the process, it
//! hands the router each event it produced as soon as the broker has
//! acknowledged it, so that delivery does not wait for the router's next
//! fetch. The router's own read of `chat.events` stays as the backstop: it
//! brings what was not handed over (events other producers wrote, an ack
//! lost to a full channel) and retries what failed.
//!
//! Both feed one [`Sequenced`] stage, which routes each partition strictly
//! in offset order and each offset once. A conversation lives in one
//! partition, so every device still sees it in seq order, and the router's
//! membership is still kept in log order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use streams::{Record, Rejection, Stage, StageError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Events handed over that may wait for a gap below them, per partition;
/// past this, the backstop brings the rest.
const MAX_WAITING: usize = 100_000;
/// Handed-over events taken per routing pass.
const MAX_PASS: usize = 500;
/// How soon a failed pass over handed-over events is tried again.
const RETRY: Duration = Duration::from_millis(25);

/// One partition's progress.
#[derive(Default)]
struct Lane {
    /// The first offset not yet routed; unknown until the runtime or the
    /// backstop names where the partition is read from.
    next: Option<i64>,
    /// Handed-over events above `next`, waiting for the gap below them to
    /// be routed.
    waiting: BTreeMap<i64, Record>,
}

impl Lane {
    /// The handed-over events that follow `next` without a gap.
    fn take_run(&mut self) -> Vec<Record> {
        let Some(mut at) = self.next else {
            return Vec::new();
        };
        let mut run = Vec::new();
        while run.len() < MAX_PASS {
            match self.waiting.first_entry() {
                Some(e) if *e.key() == at => run.push(e.remove()),
                _ => break,
            }
            at += 1;
        }
        run
    }

    /// Everything below `next` is routed.
    fn advance(&mut self, next: i64) {
        if self.next.is_none_or(|n| n < next) {
            self.next = Some(next);
        }
        self.waiting = self.waiting.split_off(&next);
    }
}

/// Wraps the routing stage: the runtime's batches and the handed-over
/// events are routed in offset order per partition, each offset once.
pub struct Sequenced<S> {
    inner: S,
    lanes: Mutex<HashMap<i32, Lane>>,
    /// Held for a whole routing pass, whichever source it serves.
    routing: tokio::sync::Mutex<()>,
}

impl<S: Stage> Sequenced<S> {
    pub fn new(inner: S) -> Self {
        Sequenced {
            inner,
            lanes: Mutex::default(),
            routing: tokio::sync::Mutex::new(()),
        }
    }

    fn lanes(&self) -> MutexGuard<'_, HashMap<i32, Lane>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes events the gateway handed over (already acknowledged by the
    /// broker) until the channel closes or `shutdown`; routes each as soon
    /// as everything below it in its partition is routed.
    pub async fn follow_handed(
        self: Arc<Self>,
        mut handed: mpsc::Receiver<Record>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut retry = false;
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = handed.recv() => match r {
                    Some(r) => Some(r),
                    None => return Ok(()),
                },
                _ = tokio::time::sleep(RETRY), if retry => None,
            };
            let mut records: Vec<Record> = first.into_iter().collect();
            while records.len() < MAX_PASS {
                match handed.try_recv() {
                    Ok(r) => records.push(r),
                    Err(_) => break,
                }
            }
            self.hand_over(records);
            retry = !self.route_waiting().await;
        }
    }

    /// Puts handed-over events where they wait for their turn.
    fn hand_over(&self, records: Vec<Record>) {
        let mut lanes = self.lanes();
        for r in records {
            let lane = lanes.entry(r.partition).or_default();
            if lane.next.is_some_and(|n| r.offset < n) || lane.waiting.len() >= MAX_WAITING {
                continue;
            }
            lane.waiting.insert(r.offset, r);
        }
    }

    /// Routes what waits and has no gap below it; false when a pass failed
    /// (what it held waits again).
    async fn route_waiting(&self) -> bool {
        let _routing = self.routing.lock().await;
        self.route_waiting_locked().await
    }

    async fn route_waiting_locked(&self) -> bool {
        let partitions: Vec<i32> = self.lanes().keys().copied().collect();
        let mut ok = true;
        for partition in partitions {
            loop {
                let run = match self.lanes().get_mut(&partition) {
                    Some(lane) => lane.take_run(),
                    None => break,
                };
                let Some(last) = run.last().map(|r| r.offset) else {
                    break;
                };
                match self.inner.process(&run).await {
                    Ok(rejected) => {
                        metrics::counter!("chatflow_router_events_total", "source" => "ack")
                            .increment(run.len() as u64);
                        let next = match rejected.iter().map(|r| r.index).min() {
                            // The backstop reads it again and dead-letters
                            // it; what followed it is routed twice, which
                            // devices drop by seq.
                            Some(i) => {
                                warn!(offset = run[i].offset, "a handed-over event was rejected");
                                run[i].offset
                            }
                            None => last + 1,
                        };
                        self.lanes().entry(partition).or_default().advance(next);
                    }
                    Err(e) => {
                        debug!(partition, error = %e, "routing handed-over events failed; retrying");
                        let mut lanes = self.lanes();
                        let lane = lanes.entry(partition).or_default();
                        for r in run {
                            if lane.next.is_some_and(|n| r.offset >= n) {
                                lane.waiting.insert(r.offset, r);
                            }
                        }
                        ok = false;
                        break;
                    }
                }
            }
        }
        ok
    }
}

#[async_trait]
impl<S: Stage> Stage for Sequenced<S> {
    /// The backstop's batch: what is not yet routed is routed now, then
    /// whatever handed-over events it unblocked.
    async fn process(&self, batch: &[Record]) -> Result<Vec<Rejection>, StageError> {
        let _routing = self.routing.lock().await;
        // Where each partition stands once this batch is routed.
        let mut reached: HashMap<i32, i64> = HashMap::new();
        let mut todo = Vec::new();
        {
            let lanes = self.lanes();
            for (index, r) in batch.iter().enumerate() {
                let next = reached
                    .get(&r.partition)
                    .copied()
                    .or_else(|| lanes.get(&r.partition).and_then(|l| l.next));
                if next.is_some_and(|n| r.offset < n) {
                    continue;
                }
                reached.insert(r.partition, r.offset + 1);
                todo.push(index);
            }
        }
        let rejected = if todo.len() == batch.len() {
            self.inner.process(batch).await?
        } else {
            let records: Vec<Record> = todo.iter().map(|&i| batch[i].clone()).collect();
            let mut rejected = self.inner.process(&records).await?;
            for r in &mut rejected {
                r.index = todo[r.index];
            }
            rejected
        };
        metrics::counter!("chatflow_router_events_total", "source" => "read")
            .increment(todo.len() as u64);
        {
            let mut lanes = self.lanes();
            for (partition, next) in reached {
                lanes.entry(partition).or_default().advance(next);
            }
        }
        // Handed-over events the batch unblocked; a failure here leaves
        // them waiting for the backstop.
        self.route_waiting_locked().await;
        Ok(rejected)
    }

    fn assigned(&self, starts: &[(String, i32, i64)]) {
        let mut lanes = self.lanes();
        for (_, partition, offset) in starts {
            let lane = lanes.entry(*partition).or_default();
            if lane.next.is_none() {
                lane.advance(*offset);
            }
        }
    }

    fn revoked(&self, partitions: &[(String, i32)]) {
        let mut lanes = self.lanes();
        for (_, partition) in partitions {
            lanes.remove(partition);
        }
        self.inner.revoked(partitions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it routed; fails while `failing` is set.
    #[derive(Default)]
    struct Recorder {
        routed: Mutex<Vec<(i32, i64)>>,
        failing: std::sync::atomic::AtomicBool,
    }

    /// The stage under test, sharing its recorder with the test.
    struct Probe(Arc<Recorder>);

    #[async_trait]
    impl Stage for Probe {
        async fn process(&self, batch: &[Record]) -> Result<Vec<Rejection>, StageError> {
            let Probe(this) = self;
            if this.failing.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(StageError("store behind".into()));
            }
            let mut routed = this.routed.lock().unwrap_or_else(|e| e.into_inner());
            routed.extend(batch.iter().map(|r| (r.partition, r.offset)));
            Ok(Vec::new())
        }
    }

    fn record(partition: i32, offset: i64) -> Record {
        Record {
            topic: "chat.events".into(),
            partition,
            offset,
            key: None,
            payload: Some(vec![1]),
            timestamp: None,
            headers: Vec::new(),
        }
    }

    fn routed(r: &Recorder) -> Vec<(i32, i64)> {
        r.routed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn hand(s: &Sequenced<Probe>, records: &[(i32, i64)]) -> bool {
        s.hand_over(records.iter().map(|&(p, o)| record(p, o)).collect());
        s.route_waiting().await
    }

    #[tokio::test]
    async fn acks_route_at_once_in_offset_order_and_the_backstop_skips_them() {
        let recorder = Arc::new(Recorder::default());
        let s = Sequenced::new(Probe(recorder.clone()));
        s.assigned(&[("chat.events".into(), 0, 10), ("chat.events".into(), 1, 0)]);
        // Acks arrive out of order: 11 waits for 10.
        hand(&s, &[(0, 11)]).await;
        assert_eq!(routed(&recorder), vec![]);
        hand(&s, &[(0, 10), (1, 0)]).await;
        // Partitions are independent: order holds within each.
        let mut by_partition = routed(&recorder);
        by_partition.sort_by_key(|&(p, _)| p);
        assert_eq!(by_partition, vec![(0, 10), (0, 11), (1, 0)]);
        // The backstop then reads the same records: nothing twice.
        let batch: Vec<Record> = [(0, 10), (0, 11), (1, 0)]
            .iter()
            .map(|&(p, o)| record(p, o))
            .collect();
        s.process(&batch).await.expect("batch");
        assert_eq!(routed(&recorder).len(), 3);
    }

    #[tokio::test]
    async fn a_gap_is_filled_by_the_backstop_before_what_waits_above_it() {
        let recorder = Arc::new(Recorder::default());
        let s = Sequenced::new(Probe(recorder.clone()));
        s.assigned(&[("chat.events".into(), 0, 0)]);
        // Offset 1 was written by another producer: 2 and 3 wait.
        hand(&s, &[(0, 0), (0, 2), (0, 3)]).await;
        assert_eq!(routed(&recorder), vec![(0, 0)]);
        let batch: Vec<Record> = (0..=2).map(|o| record(0, o)).collect();
        s.process(&batch).await.expect("batch");
        assert_eq!(routed(&recorder), vec![(0, 0), (0, 1), (0, 2), (0, 3)]);
    }

    #[tokio::test]
    async fn a_failed_pass_keeps_its_events_for_the_next_one() {
        let recorder = Arc::new(Recorder::default());
        let s = Sequenced::new(Probe(recorder.clone()));
        s.assigned(&[("chat.events".into(), 0, 5)]);
        recorder
            .failing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(!hand(&s, &[(0, 5), (0, 6)]).await);
        // A failed backstop batch is retried whole by the runtime: nothing
        // of it counts as routed.
        assert!(s.process(&[record(0, 5)]).await.is_err());
        recorder
            .failing
            .store(false, std::sync::atomic::Ordering::Relaxed);
        assert!(s.route_waiting().await);
        assert_eq!(routed(&recorder), vec![(0, 5), (0, 6)]);
        s.process(&[record(0, 5), record(0, 6), record(0, 7)])
            .await
            .expect("batch");
        assert_eq!(routed(&recorder), vec![(0, 5), (0, 6), (0, 7)]);
    }

    #[tokio::test]
    async fn without_a_known_start_handed_events_wait_for_the_backstop() {
        let recorder = Arc::new(Recorder::default());
        let s = Sequenced::new(Probe(recorder.clone()));
        hand(&s, &[(0, 4)]).await;
        assert_eq!(routed(&recorder), vec![]);
        s.process(&[record(0, 3)]).await.expect("batch");
        assert_eq!(routed(&recorder), vec![(0, 3), (0, 4)]);
        // A revoked partition starts over from what the runtime reads.
        s.revoked(&[("chat.events".into(), 0)]);
        s.process(&[record(0, 2)]).await.expect("batch");
        assert_eq!(routed(&recorder), vec![(0, 3), (0, 4), (0, 2)]);
    }
}
