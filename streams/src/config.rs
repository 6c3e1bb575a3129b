use std::time::Duration;

use rdkafka::ClientConfig;

/// librdkafka's static-membership property.
const INSTANCE_ID: &str = "group.instance.id";

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
            // A consumer-group property: only `consumer` sets it, per group.
            if k != INSTANCE_ID {
                c.set(k, v);
            }
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
        // Static membership (`--kafka-option group.instance.id=router-0`):
        // a restarted stage takes its predecessor's place in each of its
        // groups at once. One process may consume in several groups (the
        // router: events and signals), so the id is made per group.
        let mut c = self.finish(c);
        if let Some((_, id)) = self.extra.iter().find(|(k, _)| k == INSTANCE_ID) {
            c.set(INSTANCE_ID, format!("{id}.{group}"));
        }
        c
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_static_member_id_is_made_per_group_and_kept_off_other_clients() {
        let mut config = KafkaConfig::new("b:9092");
        config.extra = vec![
            ("group.instance.id".into(), "router-0".into()),
            ("socket.timeout.ms".into(), "5000".into()),
        ];
        let events = config.consumer("router", Duration::from_millis(5));
        let signals = config.consumer("router-signals", Duration::from_millis(5));
        assert_eq!(events.get("group.instance.id"), Some("router-0.router"));
        assert_eq!(
            signals.get("group.instance.id"),
            Some("router-0.router-signals")
        );
        for other in [
            config.producer(),
            config.reader(Duration::from_millis(5)),
            config.admin(),
        ] {
            assert_eq!(other.get("group.instance.id"), None);
            assert_eq!(other.get("socket.timeout.ms"), Some("5000"));
        }
    }
}
