//! Avro encoding in Confluent framing: magic byte 0, the schema id as a
//! big-endian u32, then the Avro binary datum.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{Schema, from_value, to_value};
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::event::*;
use crate::resolve::Resolver;
use crate::versions::{RegistryIds, SchemaId, VERSIONS, Version};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record is empty or shorter than the 5-byte Confluent header")]
    Truncated,
    #[error("unknown magic byte {0} (expected 0)")]
    Magic(u8),
    #[error("schema id {found} where {expected} was expected")]
    WrongSchema { expected: u32, found: u32 },
    #[error("avro: {0}")]
    Avro(String),
    #[error("payload branch {0} is not known to this version")]
    UnknownBranch(usize),
}

impl From<apache_avro::Error> for CodecError {
    fn from(e: apache_avro::Error) -> Self {
        CodecError::Avro(e.to_string())
    }
}

/// Any record chatflow puts on a topic.
pub trait Record: Sized {
    const SCHEMA: SchemaId;
    fn to_avro(&self) -> Result<Value, CodecError>;
    fn from_avro(value: Value) -> Result<Self, CodecError>;
}

/// A compiled-in version, parsed once per process, with its datum writer
/// and reader built once (building them resolves the schema's names: a
/// cost per record when it was done per call); an earlier version also
/// holds its resolution into the current one.
struct Prepared {
    schema: &'static Schema,
    writer: GenericDatumWriter<'static>,
    reader: GenericDatumReader<'static>,
    /// This version's records into the current version (earlier ones).
    upgrade: Option<Resolver>,
    /// The current version's records into this one (earlier ones).
    downgrade: Option<Resolver>,
}

impl Prepared {
    fn read(&self, mut body: &[u8]) -> Result<Value, CodecError> {
        let value = self.reader.read_value(&mut body)?;
        if !body.is_empty() {
            return Err(CodecError::Avro(format!(
                "{} trailing bytes after the datum",
                body.len()
            )));
        }
        match &self.upgrade {
            Some(resolver) => resolver.resolve(value),
            None => Ok(value),
        }
    }
}

/// The most one decode may allocate for a string, bytes or a collection
/// the record declares. A record is at most a few MiB (a Kafka message), so
/// a length past this is a lie told by a poison record; Avro's default
/// (512 MiB) let a 10-byte record make every stage that read it allocate
/// that much before its short read failed.
pub const MAX_DECODE_ALLOCATION: usize = 64 * 1024 * 1024;

/// The compiled-in schema texts and their resolutions are covered by
/// tests; each is parsed once and lives as long as the process.
#[allow(clippy::expect_used)]
fn prepared() -> &'static [Prepared] {
    static PREPARED: OnceLock<Vec<Prepared>> = OnceLock::new();
    PREPARED.get_or_init(|| {
        // Process-wide in Avro, set once: before the first decode.
        apache_avro::util::max_allocation_bytes(MAX_DECODE_ALLOCATION);
        let parsed: Vec<&'static Schema> = VERSIONS
            .iter()
            .map(|v| {
                &*Box::leak(Box::new(
                    Schema::parse_str(v.text).expect("compiled-in schema parses"),
                ))
            })
            .collect();
        VERSIONS
            .into_iter()
            .zip(&parsed)
            .map(|(version, &schema)| {
                let writer = GenericDatumWriter::builder(schema)
                    .build()
                    .expect("a compiled-in schema resolves");
                let reader = GenericDatumReader::builder(schema)
                    .build()
                    .expect("a compiled-in schema resolves");
                let current = parsed[version.schema.current().index()];
                let resolver =
                    |from, to| Resolver::new(from, to).expect("compiled-in versions resolve");
                let earlier = !version.is_current();
                Prepared {
                    schema,
                    writer,
                    reader,
                    upgrade: earlier.then(|| resolver(schema, current)),
                    downgrade: earlier.then(|| resolver(current, schema)),
                }
            })
            .collect()
    })
}

/// A compiled-in version's schema, parsed once per process.
pub(crate) fn parsed(version: Version) -> &'static Schema {
    prepared()[version.index()].schema
}

/// Frames and unframes chatflow's records; cheap to make (the schemas are
/// prepared once per process).
pub struct Codec {
    schemas: &'static [Prepared],
    ids: RegistryIds,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").field("ids", &self.ids).finish()
    }
}

impl Codec {
    pub fn new() -> Self {
        Codec {
            schemas: prepared(),
            ids: RegistryIds::installed(),
        }
    }

    /// A codec that frames records with the given registry ids.
    pub fn with_ids(ids: RegistryIds) -> Self {
        Codec {
            ids,
            ..Codec::new()
        }
    }

    fn prepared(&self, version: Version) -> &Prepared {
        &self.schemas[version.index()]
    }

    pub fn encode<R: Record>(&self, record: &R) -> Result<Vec<u8>, CodecError> {
        self.encode_version(record, R::SCHEMA.current())
    }

    /// Encodes with an earlier compiled-in version of the record's schema,
    /// framed with that version's id: what a producer writes during a
    /// rolling upgrade while consumers of the previous release still run.
    /// Fields that version lacks are dropped; a union branch it lacks is
    /// an error.
    pub fn encode_version<R: Record>(
        &self,
        record: &R,
        version: Version,
    ) -> Result<Vec<u8>, CodecError> {
        if version.schema != R::SCHEMA {
            return Err(CodecError::WrongSchema {
                expected: self.ids.get(R::SCHEMA),
                found: version.id,
            });
        }
        let prepared = self.prepared(version);
        let mut value = record.to_avro()?;
        if let Some(down) = &prepared.downgrade {
            value = down.resolve(value)?;
        }
        let mut out = Vec::with_capacity(128);
        out.push(0);
        out.extend_from_slice(&self.ids.version_id(version).to_be_bytes());
        prepared.writer.write_value(&mut out, value)?;
        Ok(out)
    }

    /// Decodes a record written with any compiled-in version of its
    /// schema (the framed id names the writer's version) into the current
    /// one.
    pub fn decode<R: Record>(&self, bytes: &[u8]) -> Result<R, CodecError> {
        let (id, body) = split_header(bytes)?;
        let version = self
            .version_of(id)
            .filter(|v| v.schema == R::SCHEMA)
            .ok_or(CodecError::WrongSchema {
                expected: self.ids.get(R::SCHEMA),
                found: id,
            })?;
        R::from_avro(self.prepared(version).read(body)?)
    }

    /// The version behind a framed id: this codec's registry ids, or the
    /// compiled-in ones (records written before a registry was configured).
    fn version_of(&self, id: u32) -> Option<Version> {
        self.ids.version_of(id).or_else(|| Version::by_id(id))
    }

    fn schema_of(&self, id: u32) -> Option<SchemaId> {
        self.version_of(id).map(|v| v.schema)
    }

    /// Which record a framed value holds, if this codec knows its schema.
    pub fn record_of(&self, bytes: &[u8]) -> Option<SchemaId> {
        split_header(bytes)
            .ok()
            .and_then(|(id, _)| self.schema_of(id))
    }

    /// Decodes any compiled-in record into JSON, for operators' tools.
    pub fn decode_json(&self, bytes: &[u8]) -> Result<serde_json::Value, CodecError> {
        let (id, _) = split_header(bytes)?;
        let json = match self.schema_of(id) {
            Some(SchemaId::ChatEvent) => json(&self.decode::<ChatEvent>(bytes)?),
            Some(SchemaId::DevicePresence) => json(&self.decode::<DevicePresence>(bytes)?),
            Some(SchemaId::Typing) => json(&self.decode::<Typing>(bytes)?),
            Some(SchemaId::Delivery) => {
                let d = self.decode::<Delivery>(bytes)?;
                // Events, and the typing and presence signals the router
                // also delivers.
                let inner = match self.record_of(&d.event) {
                    Some(SchemaId::Delivery) | None => json(&self.decode::<ChatEvent>(&d.event)?),
                    Some(_) => self.decode_json(&d.event)?,
                };
                serde_json::json!({
                    "conversation_id": d.conversation_id, "seq": d.seq,
                    "devices": d.devices, "event": inner,
                })
            }
            None => {
                return Err(CodecError::WrongSchema {
                    expected: SchemaId::ChatEvent.id(),
                    found: id,
                });
            }
        };
        Ok(json)
    }
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new()
    }
}

fn json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

fn split_header(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    let (header, body) = bytes.split_at_checked(5).ok_or(CodecError::Truncated)?;
    if header[0] != 0 {
        return Err(CodecError::Magic(header[0]));
    }
    let id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    Ok((id, body))
}

fn record_fields(value: Value) -> Result<Vec<(String, Value)>, CodecError> {
    match value {
        Value::Record(fields) => Ok(fields),
        other => Err(CodecError::Avro(format!(
            "expected a record, got {other:?}"
        ))),
    }
}

fn take(fields: &mut Vec<(String, Value)>, name: &str) -> Result<Value, CodecError> {
    let at = fields
        .iter()
        .position(|(n, _)| n == name)
        .ok_or_else(|| CodecError::Avro(format!("missing field {name}")))?;
    Ok(fields.swap_remove(at).1)
}

fn string(value: Value) -> Result<String, CodecError> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(CodecError::Avro(format!(
            "expected a string, got {other:?}"
        ))),
    }
}

fn millis(value: Value) -> Result<i64, CodecError> {
    match value {
        Value::TimestampMillis(t) | Value::Long(t) => Ok(t),
        other => Err(CodecError::Avro(format!(
            "expected a timestamp, got {other:?}"
        ))),
    }
}

fn branch<T: Serialize>(index: u32, payload: &T) -> Result<Value, CodecError> {
    Ok(Value::Union(index, Box::new(to_value(payload)?)))
}

fn from<T: DeserializeOwned>(value: &Value) -> Result<T, CodecError> {
    Ok(from_value(value)?)
}

impl Record for ChatEvent {
    const SCHEMA: SchemaId = SchemaId::ChatEvent;

    fn to_avro(&self) -> Result<Value, CodecError> {
        let payload = match &self.payload {
            Payload::ConversationCreated(p) => branch(0, p),
            Payload::ConversationUpdated(p) => branch(1, p),
            Payload::MemberAdded(p) => branch(2, p),
            Payload::MemberRemoved(p) => branch(3, p),
            Payload::MemberRoleChanged(p) => branch(4, p),
            Payload::MessagePosted(p) => branch(5, p),
            Payload::MessageEdited(p) => branch(6, p),
            Payload::MessageDeleted(p) => branch(7, p),
            Payload::ReactionAdded(p) => branch(8, p),
            Payload::ReactionRemoved(p) => branch(9, p),
            Payload::ReadUpTo(p) => branch(10, p),
            Payload::DeliveredUpTo(p) => branch(11, p),
            Payload::MemberMuted(p) => branch(12, p),
            Payload::DeviceRegistered(p) => branch(13, p),
            Payload::DeviceRemoved(p) => branch(14, p),
            Payload::MessagePinned(p) => branch(15, p),
            Payload::UserErased(p) => branch(16, p),
            Payload::ExportRequested(p) => branch(17, p),
        }?;
        Ok(Value::Record(vec![
            ("event_id".into(), Value::String(self.event_id.clone())),
            (
                "conversation_id".into(),
                Value::String(self.conversation_id.clone()),
            ),
            (
                "occurred_at".into(),
                Value::TimestampMillis(self.occurred_at),
            ),
            ("actor".into(), to_value(&self.actor)?),
            ("payload".into(), payload),
        ]))
    }

    fn from_avro(value: Value) -> Result<Self, CodecError> {
        let mut fields = record_fields(value)?;
        let payload = match take(&mut fields, "payload")? {
            Value::Union(index, inner) => {
                let v = inner.as_ref();
                match index {
                    0 => Payload::ConversationCreated(from(v)?),
                    1 => Payload::ConversationUpdated(from(v)?),
                    2 => Payload::MemberAdded(from(v)?),
                    3 => Payload::MemberRemoved(from(v)?),
                    4 => Payload::MemberRoleChanged(from(v)?),
                    5 => Payload::MessagePosted(from(v)?),
                    6 => Payload::MessageEdited(from(v)?),
                    7 => Payload::MessageDeleted(from(v)?),
                    8 => Payload::ReactionAdded(from(v)?),
                    9 => Payload::ReactionRemoved(from(v)?),
                    10 => Payload::ReadUpTo(from(v)?),
                    11 => Payload::DeliveredUpTo(from(v)?),
                    12 => Payload::MemberMuted(from(v)?),
                    13 => Payload::DeviceRegistered(from(v)?),
                    14 => Payload::DeviceRemoved(from(v)?),
                    15 => Payload::MessagePinned(from(v)?),
                    16 => Payload::UserErased(from(v)?),
                    17 => Payload::ExportRequested(from(v)?),
                    other => return Err(CodecError::UnknownBranch(other as usize)),
                }
            }
            other => {
                return Err(CodecError::Avro(format!(
                    "payload is not a union: {other:?}"
                )));
            }
        };
        Ok(ChatEvent {
            event_id: string(take(&mut fields, "event_id")?)?,
            conversation_id: string(take(&mut fields, "conversation_id")?)?,
            occurred_at: millis(take(&mut fields, "occurred_at")?)?,
            actor: from(&take(&mut fields, "actor")?)?,
            payload,
        })
    }
}

/// Records without unions map field for field through serde; timestamps are
/// plain longs on the Rust side.
macro_rules! plain_record {
    ($ty:ty, $id:expr) => {
        impl Record for $ty {
            const SCHEMA: SchemaId = $id;
            fn to_avro(&self) -> Result<Value, CodecError> {
                Ok(to_value(self)?)
            }
            fn from_avro(value: Value) -> Result<Self, CodecError> {
                let fields = record_fields(value)?
                    .into_iter()
                    .map(|(name, v)| match v {
                        Value::TimestampMillis(t) => (name, Value::Long(t)),
                        v => (name, v),
                    })
                    .collect();
                from(&Value::Record(fields))
            }
        }
    };
}

plain_record!(DevicePresence, SchemaId::DevicePresence);
plain_record!(Typing, SchemaId::Typing);
plain_record!(Delivery, SchemaId::Delivery);

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
