use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use tracing::warn;

use crate::{KafkaConfig, KafkaError};

/// The idempotent producer: `send` resolves only once the broker has
/// acknowledged the record, with the (partition, offset) it got.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer<FaultWatch>,
    faults: Arc<AtomicU64>,
}

/// Counts the client's faults (a broker connection lost or refused, a
/// request timed out). A record whose acknowledgement crossed one may
/// have been written before it and then written again by librdkafka's
/// retry: a broker that lost its idempotent-producer state in a restart
/// (tansu 0.6) takes the retried batch a second time, and the offset
/// reported is the second copy's.
pub struct FaultWatch {
    faults: Arc<AtomicU64>,
}

impl ClientContext for FaultWatch {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.faults.fetch_add(1, Ordering::SeqCst);
        warn!(%error, reason, "producer fault");
    }
}

impl Producer {
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let faults = Arc::<AtomicU64>::default();
        let watch = FaultWatch {
            faults: faults.clone(),
        };
        Ok(Producer {
            inner: config.producer().create_with_context(watch)?,
            faults,
        })
    }

    pub async fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<(i32, i64), KafkaError> {
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        let started = Instant::now();
        let result = self.inner.send(record, Duration::from_secs(30)).await;
        metrics::histogram!("chatflow_produce_seconds", "topic" => topic_family(topic))
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(delivery) => Ok((delivery.partition, delivery.offset)),
            Err((e, _)) => Err(e.into()),
        }
    }

    /// Enqueues a record now, so that records enqueued one after another
    /// keep that order, and returns the acknowledgement to await. A full
    /// local queue is a transient error. The offset is -1, unknown, when
    /// the broker did not say it or the acknowledgement crossed a fault
    /// ([`FaultWatch`]): the record is in the log, possibly twice, and the
    /// caller finds its first place another way.
    pub fn enqueue(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> Result<impl Future<Output = Result<(i32, i64), KafkaError>> + Send + 'static, KafkaError>
    {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        let family = topic_family(topic);
        let started = Instant::now();
        let watch = self.faults.clone();
        let faults = watch.load(Ordering::SeqCst);
        let future = self
            .inner
            .send_result(record)
            .map_err(|(e, _)| KafkaError::from(e))?;
        Ok(async move {
            let result = future.await;
            metrics::histogram!("chatflow_produce_seconds", "topic" => family)
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(Ok(delivery)) if watch.load(Ordering::SeqCst) != faults => {
                    warn!(
                        partition = delivery.partition,
                        offset = delivery.offset,
                        "acknowledged across a producer fault: the offset may be a second copy's"
                    );
                    Ok((delivery.partition, -1))
                }
                Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
                Ok(Err((e, _))) => Err(e.into()),
                Err(_) => Err(KafkaError::Transient("producer closed".into())),
            }
        })
    }

    /// Waits for every queued record to be acknowledged (shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        Ok(self.inner.flush(timeout)?)
    }
}

/// A metric label for a topic without per-node or per-group suffixes, so the
/// label set stays bounded.
pub(crate) fn topic_family(topic: &str) -> &'static str {
    match topic {
        "chat.events" => "chat.events",
        "chat.signals" => "chat.signals",
        "chat.presence" => "chat.presence",
        t if t.starts_with("chat.inbox.") => "chat.inbox",
        t if t.starts_with("chat.dlq.") => "chat.dlq",
        _ => "other",
    }
}
