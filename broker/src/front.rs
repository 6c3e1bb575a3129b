//! What the broker asks its storage on every long poll, answered from memory.
//!
//! tansu serves a fetch by asking its storage, for each topic, the topic's
//! metadata, and for each partition its records from the fetch offset and
//! then its offset stage (log start, high watermark): one SQL statement
//! each, which its libSQL engine prepares again every time, on its one
//! storage task. Most of those answers are "nothing new": an idle
//! consumer of a 16-partition topic costs 33 statements per poll.
//!
//! [`Fronted`] keeps, per partition, the offset stage it last read, and
//! moves the high watermark itself when a produce it passed on lands
//! exactly there; a fetch at or past the high watermark is answered
//! empty without asking. It keeps each topic's metadata until a topic
//! is created, deleted or altered. Everything else goes through.
//!
//! It is never ahead of the log: a watermark is only cached from the
//! storage's own answer, or advanced by a produce that the storage
//! placed exactly at the cached watermark, and any change it cannot
//! account for (a produce landing elsewhere, a failed produce, deleted
//! records, maintenance) drops the entry so the next question goes to
//! the storage. A read that raced a change is not cached.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;
use serde::de::value::{Error as ValueError, MapDeserializer};
use tansu_sans_io::{
    ConfigResource, ErrorCode, IsolationLevel, ListOffset, ScramMechanism,
    create_topics_request::CreatableTopic, delete_groups_response::DeletableGroupResult,
    delete_records_request::DeleteRecordsTopic, delete_records_response::DeleteRecordsTopicResult,
    describe_cluster_response::DescribeClusterBroker,
    describe_configs_response::DescribeConfigsResult,
    describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic,
    incremental_alter_configs_request::AlterConfigsResource,
    incremental_alter_configs_response::AlterConfigsResourceResponse,
    list_groups_response::ListedGroup, record::deflated,
    txn_offset_commit_response::TxnOffsetCommitResponseTopic,
};
use tansu_storage::{
    BrokerRegistrationRequest, GroupDetail, ListOffsetResponse, MetadataResponse, NamedGroupDetail,
    OffsetCommitRequest, OffsetStage, ProducerIdResponse, Result, ScramCredential, Storage,
    TopicId, Topition, TxnAddPartitionsRequest, TxnAddPartitionsResponse, TxnOffsetCommitRequest,
    UpdateError, Version,
};
use url::Url;
use uuid::Uuid;

/// A storage whose watermarks and topic metadata are answered from memory
/// where they are known to be current (see the module's documentation).
#[derive(Clone, Debug)]
pub struct Fronted<S> {
    inner: S,
    known: Arc<Known>,
}

#[derive(Debug, Default)]
struct Known {
    partitions: Mutex<HashMap<Topition, Partition>>,
    metadata: Mutex<HashMap<Vec<TopicId>, MetadataResponse>>,
}

#[derive(Debug, Default)]
struct Partition {
    /// The storage's offset stage, as last read or advanced; `None` when a
    /// change happened that this cannot account for.
    stage: Option<Stage>,
    /// Counts changes, so that a read which raced one is not cached.
    changes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Stage {
    log_start: i64,
    high_watermark: i64,
}

impl Stage {
    fn of(stage: &OffsetStage) -> Option<Self> {
        // Without transactions the last stable offset is the high
        // watermark; a stage where it is not is left to the storage.
        (stage.last_stable() == stage.high_watermark()).then(|| Stage {
            log_start: stage.log_start(),
            high_watermark: stage.high_watermark(),
        })
    }

    /// tansu's `OffsetStage` has no constructor; its serde form is public.
    fn offset_stage(self) -> std::result::Result<OffsetStage, ValueError> {
        OffsetStage::deserialize(MapDeserializer::new(
            [
                ("last_stable", self.high_watermark),
                ("high_watermark", self.high_watermark),
                ("log_start", self.log_start),
            ]
            .into_iter(),
        ))
    }
}

impl<S: Storage> Fronted<S> {
    pub fn new(inner: S) -> Self {
        Fronted {
            inner,
            known: Arc::default(),
        }
    }

    fn partitions(&self) -> MutexGuard<'_, HashMap<Topition, Partition>> {
        self.known
            .partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn metadata_cache(&self) -> MutexGuard<'_, HashMap<Vec<TopicId>, MetadataResponse>> {
        self.known
            .metadata
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn known_stage(&self, topition: &Topition) -> Option<Stage> {
        self.partitions().get(topition).and_then(|p| p.stage)
    }

    /// Something changed `topition` that this cannot follow: forget it.
    fn changed(&self, topition: &Topition) {
        let mut partitions = self.partitions();
        let p = partitions.entry(topition.clone()).or_default();
        p.changes += 1;
        p.stage = None;
    }

    /// Forgets every partition (maintenance, a deleted topic).
    fn changed_all(&self) {
        for p in self.partitions().values_mut() {
            p.changes += 1;
            p.stage = None;
        }
    }

    fn produced(&self, topition: &Topition, base: i64, records: i64) {
        let mut partitions = self.partitions();
        let p = partitions.entry(topition.clone()).or_default();
        p.changes += 1;
        p.stage = match p.stage {
            Some(stage) if stage.high_watermark == base => Some(Stage {
                high_watermark: base + records,
                ..stage
            }),
            _ => None,
        };
    }
}

/// Runs one call to the storage, recording how long it took (its wait
/// for the storage's one task included) as
/// `chatflow_broker_storage_seconds{op}`.
async fn timed<T>(op: &'static str, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = call.await;
    metrics::histogram!("chatflow_broker_storage_seconds", "op" => op)
        .record(started.elapsed().as_secs_f64());
    out
}

/// Counts a question answered from memory, as
/// `chatflow_broker_storage_answered_total{op}`.
fn answered(op: &'static str) {
    metrics::counter!("chatflow_broker_storage_answered_total", "op" => op).increment(1);
}

#[async_trait]
impl<S: Storage> Storage for Fronted<S> {
    async fn register_broker(&self, broker_registration: BrokerRegistrationRequest) -> Result<()> {
        self.metadata_cache().clear();
        self.inner.register_broker(broker_registration).await
    }

    async fn create_topic(&self, topic: CreatableTopic, validate_only: bool) -> Result<Uuid> {
        let created = self.inner.create_topic(topic, validate_only).await;
        self.metadata_cache().clear();
        created
    }

    async fn incremental_alter_resource(
        &self,
        resource: AlterConfigsResource,
    ) -> Result<AlterConfigsResourceResponse> {
        let altered = self.inner.incremental_alter_resource(resource).await;
        self.metadata_cache().clear();
        altered
    }

    async fn delete_records(
        &self,
        topics: &[DeleteRecordsTopic],
    ) -> Result<Vec<DeleteRecordsTopicResult>> {
        let deleted = self.inner.delete_records(topics).await;
        for topic in topics {
            for partition in topic.partitions.iter().flatten() {
                self.changed(&Topition::new(
                    topic.name.as_str(),
                    partition.partition_index,
                ));
            }
        }
        deleted
    }

    async fn delete_topic(&self, topic: &TopicId) -> Result<ErrorCode> {
        let deleted = self.inner.delete_topic(topic).await;
        self.metadata_cache().clear();
        self.changed_all();
        deleted
    }

    async fn brokers(&self) -> Result<Vec<DescribeClusterBroker>> {
        self.inner.brokers().await
    }

    async fn produce(
        &self,
        transaction_id: Option<&str>,
        topition: &Topition,
        batch: deflated::Batch,
    ) -> Result<i64> {
        let records = i64::from(batch.last_offset_delta) + 1;
        let produced = timed(
            "produce",
            self.inner.produce(transaction_id, topition, batch),
        )
        .await;
        match &produced {
            Ok(base) if transaction_id.is_none() => self.produced(topition, *base, records),
            _ => self.changed(topition),
        }
        produced
    }

    async fn fetch(
        &self,
        topition: &'_ Topition,
        offset: i64,
        min_bytes: u32,
        max_bytes: u32,
        isolation: IsolationLevel,
    ) -> Result<Vec<deflated::Batch>> {
        match self.known_stage(topition) {
            Some(stage) if offset >= stage.high_watermark => {
                answered("fetch");
                Ok(Vec::new())
            }
            _ => {
                timed(
                    "fetch",
                    self.inner
                        .fetch(topition, offset, min_bytes, max_bytes, isolation),
                )
                .await
            }
        }
    }

    async fn offset_stage(&self, topition: &Topition) -> Result<OffsetStage> {
        if let Some(stage) = self.known_stage(topition)
            && let Ok(stage) = stage.offset_stage()
        {
            answered("offset_stage");
            return Ok(stage);
        }
        let before = self.partitions().get(topition).map_or(0, |p| p.changes);
        let read = timed("offset_stage", self.inner.offset_stage(topition)).await?;
        let mut partitions = self.partitions();
        let p = partitions.entry(topition.clone()).or_default();
        if p.changes == before {
            p.stage = Stage::of(&read);
        }
        Ok(read)
    }

    async fn list_offsets(
        &self,
        isolation_level: IsolationLevel,
        offsets: &[(Topition, ListOffset)],
    ) -> Result<Vec<(Topition, ListOffsetResponse)>> {
        timed(
            "list_offsets",
            self.inner.list_offsets(isolation_level, offsets),
        )
        .await
    }

    async fn offset_commit(
        &self,
        group_id: &str,
        retention_time_ms: Option<Duration>,
        offsets: &[(Topition, OffsetCommitRequest)],
    ) -> Result<Vec<(Topition, ErrorCode)>> {
        timed(
            "offset_commit",
            self.inner
                .offset_commit(group_id, retention_time_ms, offsets),
        )
        .await
    }

    async fn offset_fetch(
        &self,
        group_id: Option<&str>,
        topics: &[Topition],
        require_stable: Option<bool>,
    ) -> Result<BTreeMap<Topition, i64>> {
        timed(
            "offset_fetch",
            self.inner.offset_fetch(group_id, topics, require_stable),
        )
        .await
    }

    async fn committed_offset_topitions(&self, group_id: &str) -> Result<BTreeMap<Topition, i64>> {
        self.inner.committed_offset_topitions(group_id).await
    }

    async fn metadata(&self, topics: Option<&[TopicId]>) -> Result<MetadataResponse> {
        // Only questions about named topics are kept: the fetch path asks
        // those; "every topic" changes with each topic created.
        let Some(topics) = topics else {
            return self.inner.metadata(None).await;
        };
        if let Some(known) = self.metadata_cache().get(topics) {
            answered("metadata");
            return Ok(known.clone());
        }
        let answer = timed("metadata", self.inner.metadata(Some(topics))).await?;
        let complete = answer.topics().iter().all(|t| {
            t.error_code == i16::from(ErrorCode::None)
                && t.partitions.as_ref().is_some_and(|p| !p.is_empty())
        });
        if complete && answer.topics().len() == topics.len() {
            self.metadata_cache()
                .insert(topics.to_vec(), answer.clone());
        }
        Ok(answer)
    }

    async fn upsert_user_scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    ) -> Result<()> {
        self.inner
            .upsert_user_scram_credential(user, mechanism, credential)
            .await
    }

    async fn delete_user_scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<()> {
        self.inner
            .delete_user_scram_credential(user, mechanism)
            .await
    }

    async fn user_scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<Option<ScramCredential>> {
        self.inner.user_scram_credential(user, mechanism).await
    }

    async fn describe_config(
        &self,
        name: &str,
        resource: ConfigResource,
        keys: Option<&[String]>,
    ) -> Result<DescribeConfigsResult> {
        self.inner.describe_config(name, resource, keys).await
    }

    async fn list_groups(&self, states_filter: Option<&[String]>) -> Result<Vec<ListedGroup>> {
        self.inner.list_groups(states_filter).await
    }

    async fn delete_groups(
        &self,
        group_ids: Option<&[String]>,
    ) -> Result<Vec<DeletableGroupResult>> {
        self.inner.delete_groups(group_ids).await
    }

    async fn describe_groups(
        &self,
        group_ids: Option<&[String]>,
        include_authorized_operations: bool,
    ) -> Result<Vec<NamedGroupDetail>> {
        self.inner
            .describe_groups(group_ids, include_authorized_operations)
            .await
    }

    async fn describe_topic_partitions(
        &self,
        topics: Option<&[TopicId]>,
        partition_limit: i32,
        cursor: Option<Topition>,
    ) -> Result<Vec<DescribeTopicPartitionsResponseTopic>> {
        self.inner
            .describe_topic_partitions(topics, partition_limit, cursor)
            .await
    }

    async fn update_group(
        &self,
        group_id: &str,
        detail: GroupDetail,
        version: Option<Version>,
    ) -> Result<Version, UpdateError<GroupDetail>> {
        timed(
            "update_group",
            self.inner.update_group(group_id, detail, version),
        )
        .await
    }

    async fn init_producer(
        &self,
        transaction_id: Option<&str>,
        transaction_timeout_ms: i32,
        producer_id: Option<i64>,
        producer_epoch: Option<i16>,
    ) -> Result<ProducerIdResponse> {
        self.inner
            .init_producer(
                transaction_id,
                transaction_timeout_ms,
                producer_id,
                producer_epoch,
            )
            .await
    }

    async fn txn_add_offsets(
        &self,
        transaction_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group_id: &str,
    ) -> Result<ErrorCode> {
        self.inner
            .txn_add_offsets(transaction_id, producer_id, producer_epoch, group_id)
            .await
    }

    async fn txn_add_partitions(
        &self,
        partitions: TxnAddPartitionsRequest,
    ) -> Result<TxnAddPartitionsResponse> {
        self.inner.txn_add_partitions(partitions).await
    }

    async fn txn_offset_commit(
        &self,
        offsets: TxnOffsetCommitRequest,
    ) -> Result<Vec<TxnOffsetCommitResponseTopic>> {
        self.inner.txn_offset_commit(offsets).await
    }

    async fn txn_end(
        &self,
        transaction_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        committed: bool,
    ) -> Result<ErrorCode> {
        // A transaction's end moves the last stable offset.
        let ended = self
            .inner
            .txn_end(transaction_id, producer_id, producer_epoch, committed)
            .await;
        self.changed_all();
        ended
    }

    async fn maintain(&self, now: SystemTime) -> Result<()> {
        // Maintenance deletes records (retention, compaction).
        let maintained = timed("maintain", self.inner.maintain(now)).await;
        self.changed_all();
        maintained
    }

    async fn cluster_id(&self) -> Result<String> {
        self.inner.cluster_id().await
    }

    async fn node(&self) -> Result<i32> {
        self.inner.node().await
    }

    async fn advertised_listener(&self) -> Result<Url> {
        self.inner.advertised_listener().await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}
