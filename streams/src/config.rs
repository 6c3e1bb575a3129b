use std::time::Duration;

use rdkafka::ClientConfig;

/// How every chatflow client reaches Kafka.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`
    pub brokers: String,
    /// How long a producer may hold records to batch them.
    pub linger: Duration,
    /// Extra librdkafka properties, applied last (`--kafka-option k=v`).
    pub extra: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            linger: Duration::from_millis(1),
            extra: Vec::new(),
        }
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "chatflow")
            .set("socket.nagle.disable", "true");
        c
    }

    fn finish(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// Idempotent, acks from all in-sync replicas: an acknowledged record is
    /// never lost nor duplicated by the producer's own retries.
    pub fn producer(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger.as_millis().to_string())
            .set("message.timeout.ms", "30000")
            .set("compression.type", "none");
        self.finish(c)
    }

    /// A consumer in `group` that never stores an offset by itself: the
    /// runtime stores each one after its batch succeeded. `fetch_wait` is
    /// the broker's long-poll bound, the latency floor of every hop.
    pub fn consumer(&self, group: &str, fetch_wait: Duration) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", fetch_wait.as_millis().to_string())
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("partition.assignment.strategy", "range");
        self.finish(c)
    }

    /// A consumer outside any group, for readers that assign partitions
    /// themselves (presence views, inboxes, operator tools).
    pub fn reader(&self, fetch_wait: Duration) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", "chatflow-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", fetch_wait.as_millis().to_string());
        self.finish(c)
    }

    pub fn admin(&self) -> ClientConfig {
        self.finish(self.base())
    }
}
