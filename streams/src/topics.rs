//! Topic names and their creation with the admin API.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use tracing::info;

use crate::{KafkaConfig, KafkaError};

pub const EVENTS: &str = "chat.events";
pub const SIGNALS: &str = "chat.signals";
pub const PRESENCE: &str = "chat.presence";

pub fn inbox(node: &str) -> String {
    format!("chat.inbox.{node}")
}

pub fn dlq(group: &str) -> String {
    format!("chat.dlq.{group}")
}

const HOUR_MS: &str = "3600000";
const THIRTY_DAYS_MS: &str = "2592000000";

#[derive(Clone, Debug)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub config: Vec<(&'static str, &'static str)>,
}

impl TopicSpec {
    /// `chat.events`: kept forever. The partition count is fixed for the
    /// topic's life: the conversation → partition map must never change.
    pub fn events(partitions: i32) -> Self {
        TopicSpec {
            name: EVENTS.into(),
            partitions,
            config: vec![("retention.ms", "-1")],
        }
    }

    pub fn signals(partitions: i32) -> Self {
        TopicSpec {
            name: SIGNALS.into(),
            partitions,
            config: vec![("retention.ms", HOUR_MS)],
        }
    }

    pub fn presence(partitions: i32) -> Self {
        TopicSpec {
            name: PRESENCE.into(),
            partitions,
            config: vec![("cleanup.policy", "compact")],
        }
    }

    pub fn inbox(node: &str) -> Self {
        TopicSpec {
            name: inbox(node),
            partitions: 1,
            config: vec![("retention.ms", HOUR_MS)],
        }
    }

    pub fn dlq(group: &str) -> Self {
        TopicSpec {
            name: dlq(group),
            partitions: 1,
            config: vec![("retention.ms", THIRTY_DAYS_MS)],
        }
    }
}

/// Creates the topics that do not exist yet; existing ones are left as they
/// are (their partition count is never changed).
pub async fn ensure(
    config: &KafkaConfig,
    specs: &[TopicSpec],
    replication: i32,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config.admin().create()?;
    let new: Vec<NewTopic> = specs
        .iter()
        .map(|s| {
            s.config.iter().fold(
                NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(replication)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(new.iter(), &options).await? {
        match result {
            Ok(name) => info!(topic = %name, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::Transient(format!(
                    "create topic {name}: {code}"
                )));
            }
        }
    }
    Ok(())
}
