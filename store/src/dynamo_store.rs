//! The distributed store: DynamoDB, single-table (`pk`, `sk`), the same keys
//! as fjall. Each event's writes are one transaction conditioned on the
//! conversation's `last_seq`, so a redelivered event changes nothing.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, DeleteRequest, KeySchemaElement,
    KeyType, Put, PutRequest, ScalarAttributeType, TransactWriteItem, WriteRequest,
};
use futures::future::try_join_all;
use serde::de::DeserializeOwned;

use crate::apply::{
    self, COLD, Items, META, active_pk, audit_pk, conv_pk, day_stat_pk, decode, device_sk,
    member_sk, msg_sk, push_sk, user_pk,
};
use crate::{
    AuditEntry, ColdIndex, Conversation, ConversationDay, Device, EventWrite, Member, Message,
    MessagePage, Page, Result, Store, StoreError, UserConversation,
};

/// Items one transaction may hold.
const TRANSACT_MAX: usize = 100;
const BATCH_MAX: usize = 25;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn classify<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> StoreError {
    let transient = match &e {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            matches!(
                code,
                "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
                    | "TransactionConflictException"
                    | "TransactionInProgressException"
                    | "LimitExceededException"
            )
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    };
    let text = match &e {
        SdkError::ServiceError(service) => {
            format!(
                "{}: {}",
                service.err().code().unwrap_or("?"),
                service.err().message().unwrap_or("")
            )
        }
        other => format!("{other:?}"),
    };
    if transient {
        StoreError::Transient(text)
    } else {
        StoreError::Permanent(text)
    }
}

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Permanent(format!("dynamodb request: {e}"))
}

impl DynamoStore {
    /// `dynamodb://<table>?endpoint=<url>&region=<region>`. Credentials come
    /// from the usual AWS chain; with an endpoint and none set, placeholder
    /// credentials are used (local emulators accept any).
    pub async fn connect(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("dynamodb://")
            .ok_or_else(|| build_err("expected dynamodb://<table>"))?;
        let (table, query) = rest.split_once('?').unwrap_or((rest, ""));
        if table.is_empty() {
            return Err(build_err("the URL names no table"));
        }
        let mut endpoint = None;
        let mut region = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("endpoint", v)) => endpoint = Some(v.to_owned()),
                Some(("region", v)) => region = Some(v.to_owned()),
                _ => return Err(build_err(format!("unknown option {pair}"))),
            }
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = region.or_else(|| std::env::var("AWS_REGION").ok()) {
            loader = loader.region(aws_config::Region::new(r));
        } else {
            loader = loader.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(e) = &endpoint {
            loader = loader.endpoint_url(e);
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
                && std::env::var_os("AWS_PROFILE").is_none()
            {
                loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    "local",
                    "local",
                    None,
                    None,
                    "chatflow-local",
                ));
            }
        }
        let config = loader.load().await;
        Ok(DynamoStore {
            client: Client::new(&config),
            table: table.to_owned(),
        })
    }

    /// Creates the table (on-demand capacity) unless it exists.
    pub async fn create_table(&self) -> Result<bool> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_err)
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(build_err)
        };
        let result = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().code() == Some("ResourceInUseException") => {
                Ok(false)
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn get_item(&self, pk: &str, sk: &str) -> Result<Option<Vec<u8>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(out.item().and_then(value_bytes))
    }

    async fn get<T: DeserializeOwned>(&self, pk: &str, sk: &str) -> Result<Option<T>> {
        match self.get_item(pk, sk).await? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Items of `pk` with `lo <= sk <= hi`, in sort order (or reversed),
    /// at most `limit` of them; and whether more matched.
    async fn query(
        &self,
        pk: &str,
        lo: &str,
        hi: &str,
        forward: bool,
        limit: Option<usize>,
    ) -> Result<(Vec<Vec<u8>>, bool)> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":lo", s(lo))
                .expression_attribute_values(":hi", s(hi))
                .scan_index_forward(forward)
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            if let Some(l) = limit {
                q = q.limit(i32::try_from(l + 1 - out.len().min(l)).unwrap_or(i32::MAX));
            }
            let page = q.send().await.map_err(classify)?;
            out.extend(page.items().iter().filter_map(value_bytes));
            if let Some(l) = limit
                && out.len() > l
            {
                out.truncate(l);
                return Ok((out, true));
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok((out, false)),
            }
        }
    }

    async fn scan_prefix<T: DeserializeOwned>(&self, pk: &str, prefix: &str) -> Result<Vec<T>> {
        let hi = format!("{prefix}\u{10FFFF}");
        let (items, _) = self.query(pk, prefix, &hi, true, None).await?;
        items.iter().map(|b| decode(b)).collect()
    }

    /// Applies one event: reads through a view, then writes its changes in
    /// one transaction guarded by `last_seq`.
    async fn apply_one(&self, write: &EventWrite) -> Result<bool> {
        let mut tx = Tx {
            store: self,
            cache: HashMap::new(),
            pending: Vec::new(),
        };
        if !apply::apply_event(&mut tx, write).await? {
            return Ok(false);
        }
        let pk = conv_pk(&write.conversation_id);
        let (meta, rest): (Vec<_>, Vec<_>) = tx
            .pending
            .into_iter()
            .partition(|(p, s, _)| *p == pk && s == META);
        let Some((_, _, Some(meta_value))) = meta.into_iter().last() else {
            // No conversation: a user's own stream (device registrations,
            // idempotent writes applied in log order), or an event of a
            // conversation that does not exist (nothing to write).
            if !rest.is_empty() {
                self.batch_write(rest).await?;
            }
            return Ok(true);
        };
        let mut rest = rest;
        if rest.len() + 1 > TRANSACT_MAX {
            // Too large for one transaction (a big group's creation): the
            // member items go first, as plain idempotent writes; the guarded
            // META write below still decides whether the event counts.
            self.batch_write(std::mem::take(&mut rest)).await?;
        }
        let mut items = Vec::with_capacity(rest.len() + 1);
        for (p, sk, value) in rest {
            items.push(match value {
                Some(v) => TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(item(&p, &sk, v)))
                            .build()
                            .map_err(build_err)?,
                    )
                    .build(),
                None => TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.table)
                            .key("pk", s(&p))
                            .key("sk", s(&sk))
                            .build()
                            .map_err(build_err)?,
                    )
                    .build(),
            });
        }
        let mut meta_item = item(&pk, META, meta_value);
        meta_item.insert("last_seq".into(), AttributeValue::N(write.seq.to_string()));
        items.push(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(meta_item))
                        .condition_expression("attribute_not_exists(pk) OR last_seq < :seq")
                        .expression_attribute_values(
                            ":seq",
                            AttributeValue::N(write.seq.to_string()),
                        )
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
        );
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if already_applied(e.err()) => Ok(false),
            Err(e) => Err(classify(e)),
        }
    }

    async fn batch_write(&self, writes: Vec<(String, String, Option<Vec<u8>>)>) -> Result<()> {
        for chunk in writes.chunks(BATCH_MAX) {
            let mut requests = Vec::with_capacity(chunk.len());
            for (p, sk, value) in chunk {
                requests.push(match value {
                    Some(v) => WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(item(p, sk, v.clone())))
                                .build()
                                .map_err(build_err)?,
                        )
                        .build(),
                    None => WriteRequest::builder()
                        .delete_request(
                            DeleteRequest::builder()
                                .key("pk", s(p))
                                .key("sk", s(sk))
                                .build()
                                .map_err(build_err)?,
                        )
                        .build(),
                });
            }
            let mut pending = HashMap::from([(self.table.clone(), requests)]);
            let mut attempt = 0u32;
            while !pending.values().all(Vec::is_empty) {
                let out = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(classify)?;
                pending = out.unprocessed_items().cloned().unwrap_or_default();
                attempt += 1;
                if !pending.is_empty() {
                    // Unprocessed items mean throttling: back off and retry them.
                    tokio::time::sleep(std::time::Duration::from_millis(25u64 << attempt.min(6)))
                        .await;
                }
            }
        }
        Ok(())
    }
}

fn already_applied(e: &TransactWriteItemsError) -> bool {
    match e {
        TransactWriteItemsError::TransactionCanceledException(t) => t
            .cancellation_reasons()
            .iter()
            .any(|r| r.code() == Some("ConditionalCheckFailed")),
        _ => false,
    }
}

fn item(pk: &str, sk: &str, value: Vec<u8>) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(pk)),
        ("sk".to_owned(), s(sk)),
        (
            "v".to_owned(),
            AttributeValue::S(String::from_utf8_lossy(&value).into_owned()),
        ),
    ])
}

fn value_bytes(item: &Item) -> Option<Vec<u8>> {
    match item.get("v") {
        Some(AttributeValue::S(v)) => Some(v.clone().into_bytes()),
        _ => None,
    }
}

struct Tx<'a> {
    store: &'a DynamoStore,
    cache: HashMap<(String, String), Option<Vec<u8>>>,
    /// Writes in order; a later write of a key replaces an earlier one.
    pending: Vec<(String, String, Option<Vec<u8>>)>,
}

impl Items for Tx<'_> {
    async fn get_raw(&mut self, pk: &str, sk: &str) -> Result<Option<Vec<u8>>> {
        let key = (pk.to_owned(), sk.to_owned());
        if let Some(v) = self.cache.get(&key) {
            return Ok(v.clone());
        }
        let v = self.store.get_item(pk, sk).await?;
        self.cache.insert(key, v.clone());
        Ok(v)
    }

    fn put_raw(&mut self, pk: &str, sk: &str, value: Vec<u8>) {
        self.set(pk, sk, Some(value));
    }

    fn delete(&mut self, pk: &str, sk: &str) {
        self.set(pk, sk, None);
    }
}

impl Tx<'_> {
    fn set(&mut self, pk: &str, sk: &str, value: Option<Vec<u8>>) {
        self.cache
            .insert((pk.to_owned(), sk.to_owned()), value.clone());
        self.pending.retain(|(p, s, _)| !(p == pk && s == sk));
        self.pending.push((pk.to_owned(), sk.to_owned(), value));
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn apply(&self, events: Vec<EventWrite>) -> Result<Vec<bool>> {
        // Conversations are independent: apply each one's events in order,
        // different conversations concurrently.
        let mut by_conversation: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            match by_conversation
                .iter_mut()
                .find(|(c, _)| *c == e.conversation_id)
            {
                Some((_, idx)) => idx.push(i),
                None => by_conversation.push((e.conversation_id.clone(), vec![i])),
            }
        }
        let events = &events;
        let runs = by_conversation.iter().map(|(_, idx)| async move {
            let mut out = Vec::with_capacity(idx.len());
            for &i in idx {
                out.push((i, self.apply_one(&events[i]).await?));
            }
            Result::Ok(out)
        });
        let mut applied = vec![false; events.len()];
        for run in try_join_all(runs).await? {
            for (i, a) in run {
                applied[i] = a;
            }
        }
        Ok(applied)
    }

    async fn conversation(&self, conversation_id: &str) -> Result<Option<Conversation>> {
        self.get(&conv_pk(conversation_id), META).await
    }

    async fn member(&self, conversation_id: &str, user_id: &str) -> Result<Option<Member>> {
        self.get(&conv_pk(conversation_id), &member_sk(user_id))
            .await
    }

    async fn members(&self, conversation_id: &str) -> Result<Vec<Member>> {
        self.scan_prefix(&conv_pk(conversation_id), "MEMBER#").await
    }

    async fn message(&self, conversation_id: &str, seq: i64) -> Result<Option<Message>> {
        self.get(&conv_pk(conversation_id), &msg_sk(seq)).await
    }

    async fn client_message_seq(
        &self,
        conversation_id: &str,
        sender_id: &str,
        client_msg_id: &str,
    ) -> Result<Option<i64>> {
        self.get(
            &conv_pk(conversation_id),
            &apply::client_sk(sender_id, client_msg_id),
        )
        .await
    }

    async fn messages(&self, conversation_id: &str, page: Page) -> Result<MessagePage> {
        let lo_seq = page.after.map_or(0, |a| a.saturating_add(1)).max(0);
        let hi_seq = page.before.map_or(i64::MAX, |b| b.saturating_sub(1));
        if lo_seq > hi_seq || page.limit == 0 {
            return Ok(MessagePage {
                messages: vec![],
                has_more: false,
            });
        }
        let forward = page.after.is_some();
        let (items, has_more) = self
            .query(
                &conv_pk(conversation_id),
                &msg_sk(lo_seq),
                &msg_sk(hi_seq),
                forward,
                Some(page.limit),
            )
            .await?;
        let mut messages: Vec<Message> = items.iter().map(|b| decode(b)).collect::<Result<_>>()?;
        if !forward {
            messages.reverse();
        }
        Ok(MessagePage { messages, has_more })
    }

    async fn user_conversations(&self, user_id: &str) -> Result<Vec<UserConversation>> {
        self.scan_prefix(&user_pk(user_id), "CONV#").await
    }

    async fn device(&self, user_id: &str, device_id: &str) -> Result<Option<Device>> {
        self.get(&user_pk(user_id), &device_sk(device_id)).await
    }

    async fn devices(&self, user_id: &str) -> Result<Vec<Device>> {
        self.scan_prefix(&user_pk(user_id), "DEVICE#").await
    }

    async fn push_sent(
        &self,
        user_id: &str,
        device_id: &str,
        conversation_id: &str,
    ) -> Result<Option<i64>> {
        self.get(&user_pk(user_id), &push_sk(device_id, conversation_id))
            .await
    }

    async fn set_push_sent(
        &self,
        user_id: &str,
        device_id: &str,
        conversation_id: &str,
        seq: i64,
    ) -> Result<()> {
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some({
                let mut i = item(
                    &user_pk(user_id),
                    &push_sk(device_id, conversation_id),
                    seq.to_string().into_bytes(),
                );
                // A number beside the JSON, for the condition.
                i.insert("n".into(), AttributeValue::N(seq.to_string()));
                i
            }))
            .condition_expression("attribute_not_exists(pk) OR n < :seq")
            .expression_attribute_values(":seq", AttributeValue::N(seq.to_string()))
            .send()
            .await;
        match written {
            Ok(_) => Ok(()),
            // Already at or past `seq`.
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn cold_index(&self, conversation_id: &str) -> Result<Option<ColdIndex>> {
        self.get(&conv_pk(conversation_id), COLD).await
    }

    async fn put_cold_index(&self, conversation_id: &str, index: &ColdIndex) -> Result<()> {
        let bytes = serde_json::to_vec(index).map_err(|e| StoreError::Permanent(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(&conv_pk(conversation_id), COLD, bytes)))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn drop_hot(&self, conversation_id: &str, messages: &[Message]) -> Result<usize> {
        let pk = conv_pk(conversation_id);
        let mut dropped = 0;
        for m in messages {
            let expected =
                serde_json::to_string(m).map_err(|e| StoreError::Permanent(e.to_string()))?;
            let deleted = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(&pk))
                .key("sk", s(&msg_sk(m.seq)))
                .condition_expression("v = :expected")
                .expression_attribute_values(":expected", s(&expected))
                .send()
                .await;
            match deleted {
                Ok(_) => dropped += 1,
                // Changed since (or gone): it stays as it is.
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() => {}
                Err(e) => return Err(classify(e)),
            }
        }
        Ok(dropped)
    }

    async fn day_stats(&self, day: i64) -> Result<Vec<ConversationDay>> {
        self.scan_prefix(&day_stat_pk(day), "").await
    }

    async fn active_users(&self, day: i64) -> Result<Vec<String>> {
        self.scan_prefix(&active_pk(day), "").await
    }

    async fn audit_day(&self, day: i64) -> Result<Vec<AuditEntry>> {
        self.scan_prefix(&audit_pk(day), "").await
    }

    async fn conversation_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :meta AND begins_with(pk, :conv)")
                .expression_attribute_values(":meta", s(META))
                .expression_attribute_values(":conv", s("CONV#"))
                .projection_expression("pk")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            ids.extend(page.items().iter().filter_map(|item| match item.get("pk") {
                Some(AttributeValue::S(pk)) => pk.strip_prefix("CONV#").map(str::to_owned),
                _ => None,
            }));
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(ids),
            }
        }
    }
}
