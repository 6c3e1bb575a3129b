//! Reading a whole topic outside any consumer group, by assignment: the
//! presence view reads its changelog from the start, a gateway node reads
//! its inbox from the end.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{KafkaConfig, KafkaError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Beginning,
    End,
}

/// Calls `handle` for each record of every partition of `topic`, on a
/// thread of its own, until `shutdown`. `ready` fires once everything that
/// was on the topic at the start has been handled.
pub fn follow(
    config: &KafkaConfig,
    topic: &str,
    from: Start,
    fetch_wait: Duration,
    ready: oneshot::Sender<()>,
    shutdown: CancellationToken,
    mut handle: impl FnMut(&BorrowedMessage<'_>) + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, KafkaError> {
    let consumer: BaseConsumer = config.reader(fetch_wait).create()?;
    let mut tpl = TopicPartitionList::new();
    let mut pending = HashMap::new();
    for (p, low, high) in crate::ops::watermarks(&consumer, topic)? {
        let start = if from == Start::Beginning { low } else { high };
        tpl.add_partition_offset(topic, p, Offset::Offset(start))?;
        if high > start {
            pending.insert(p, high);
        }
    }
    if tpl.count() == 0 {
        return Err(KafkaError::Transient(format!(
            "topic {topic} has no partitions yet"
        )));
    }
    consumer.assign(&tpl)?;
    let topic = topic.to_owned();
    Ok(std::thread::spawn(move || {
        let mut ready = Some(ready);
        let mut handled = 0u64;
        while !shutdown.is_cancelled() {
            if pending.is_empty()
                && let Some(r) = ready.take()
            {
                info!(%topic, records = handled, "caught up");
                let _ = r.send(());
            }
            let Some(result) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            match result {
                Ok(m) => {
                    use rdkafka::Message;
                    handle(&m);
                    handled += 1;
                    if pending
                        .get(&m.partition())
                        .is_some_and(|high| m.offset() + 1 >= *high)
                    {
                        pending.remove(&m.partition());
                    }
                }
                Err(e) => warn!(%topic, error = %e, "poll failed"),
            }
        }
    }))
}

/// Follows `chat.presence` from its beginning, handing each record to
/// `apply` (a presence view), until `shutdown`; `ready` fires once
/// everything that was on the topic at the start has been applied.
pub fn presence(
    config: &KafkaConfig,
    fetch_wait: Duration,
    ready: oneshot::Sender<()>,
    shutdown: CancellationToken,
    apply: impl Fn(&schemas::DevicePresence) + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, KafkaError> {
    use rdkafka::message::Message;
    let codec = schemas::Codec::new();
    follow(
        config,
        crate::topics::PRESENCE,
        Start::Beginning,
        fetch_wait,
        ready,
        shutdown,
        move |m| match m
            .payload()
            .map(|p| codec.decode::<schemas::DevicePresence>(p))
        {
            Some(Ok(p)) => apply(&p),
            Some(Err(e)) => {
                warn!(offset = m.offset(), error = %e, "undecodable presence record skipped")
            }
            None => {}
        },
    )
}
