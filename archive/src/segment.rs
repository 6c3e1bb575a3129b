//! The event-log archive's objects: each is a run of consecutive records of
//! one partition of a topic, as an Avro object container file, named and
//! laid out as Confluent's S3 sink lays them out:
//! `topics/<topic>/partition=<p>/<topic>+<p>+<first offset, 20 digits>.avro`.
//!
//! Each record keeps what the log held: its offset, timestamp, key, value
//! (the raw Confluent-framed Avro bytes, so the schema id and the event's
//! seq survive) and headers. The encoding is a function of the records
//! alone (a sync marker derived from the segment's name, header metadata in
//! key order), so writing the same records again gives the same bytes.

use apache_avro::types::Value;
use apache_avro::{Codec, DeflateSettings, Reader, Schema, Writer};
use bytes::Bytes;

/// The schema of one archived record.
pub const RECORD_SCHEMA: &str = r#"{
  "type": "record", "name": "ArchivedRecord", "namespace": "chatflow.archive",
  "fields": [
    {"name": "offset", "type": "long"},
    {"name": "timestamp", "type": ["null", "long"], "default": null},
    {"name": "key", "type": ["null", "bytes"], "default": null},
    {"name": "value", "type": ["null", "bytes"], "default": null},
    {"name": "headers", "default": [], "type": {"type": "array", "items": {
      "type": "record", "name": "Header",
      "fields": [
        {"name": "key", "type": "string"},
        {"name": "value", "type": ["null", "bytes"], "default": null}
      ]}}}
  ]
}"#;

/// One record as the log held it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchivedRecord {
    pub offset: i64,
    /// Milliseconds since the epoch, as the broker stamped it.
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Consecutive records of one partition, in offset order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub topic: String,
    pub partition: i32,
    pub records: Vec<ArchivedRecord>,
}

/// What the header of a segment says, without reading its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub key: String,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub records: u64,
    pub first_timestamp: Option<i64>,
    pub last_timestamp: Option<i64>,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("an empty segment has no name")]
    Empty,
    #[error("not a segment of the event-log archive: {0}")]
    Invalid(String),
    #[error(transparent)]
    Avro(#[from] Box<apache_avro::Error>),
}

impl From<apache_avro::Error> for SegmentError {
    fn from(e: apache_avro::Error) -> Self {
        SegmentError::Avro(Box::new(e))
    }
}

/// Where a topic's segments live (all partitions).
pub fn topic_prefix(topic: &str) -> String {
    format!("topics/{topic}/")
}

/// Where one partition's segments live; listed in key order they are in
/// offset order (the offsets are zero-padded).
pub fn partition_prefix(topic: &str, partition: i32) -> String {
    format!("topics/{topic}/partition={partition}/")
}

/// The object key of the segment that starts at `first_offset`.
pub fn key(topic: &str, partition: i32, first_offset: i64) -> String {
    format!(
        "{}{topic}+{partition}+{first_offset:020}.avro",
        partition_prefix(topic, partition)
    )
}

/// Topic, partition and first offset of a segment's key; `None` for any
/// other object.
pub fn parse_key(key: &str) -> Option<(String, i32, i64)> {
    let rest = key.strip_prefix("topics/")?;
    let (topic, rest) = rest.split_once('/')?;
    let (dir, file) = rest.split_once('/')?;
    let partition: i32 = dir.strip_prefix("partition=")?.parse().ok()?;
    let stem = file.strip_suffix(".avro")?;
    let (name, rest) = stem.split_once('+')?;
    let (p, offset) = rest.split_once('+')?;
    let offset: i64 = offset.parse().ok()?;
    (name == topic && p.parse::<i32>().ok()? == partition && offset >= 0)
        .then(|| (topic.to_owned(), partition, offset))
        .filter(|(t, p, o)| key == self::key(t, *p, *o))
}

/// The segments under `prefix` (a topic's or a partition's), as
/// (partition, first offset, key), in partition and offset order; other
/// objects under it are skipped.
pub async fn list(
    archive: &dyn crate::Archive,
    prefix: &str,
) -> crate::Result<Vec<(i32, i64, String)>> {
    let mut segments: Vec<(i32, i64, String)> = archive
        .list(prefix)
        .await?
        .into_iter()
        .filter_map(|o| parse_key(&o.key).map(|(_, p, first)| (p, first, o.key)))
        .collect();
    // Key order puts partition 10 before 2.
    segments.sort();
    Ok(segments)
}

fn schema() -> Schema {
    #[allow(clippy::expect_used)]
    Schema::parse_str(RECORD_SCHEMA).expect("the archived record schema parses")
}

impl Segment {
    /// The segment's object key; `None` while it is empty.
    pub fn key(&self) -> Option<String> {
        let first = self.records.first()?;
        Some(key(&self.topic, self.partition, first.offset))
    }

    /// The Avro object container file of these records (deflate blocks).
    pub fn encode(&self) -> Result<Bytes, SegmentError> {
        let (first, last) = match (self.records.first(), self.records.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => return Err(SegmentError::Empty),
        };
        let schema = schema();
        let codec = Codec::Deflate(DeflateSettings::default());
        let mut metadata: Vec<(String, Vec<u8>)> = vec![
            ("avro.codec".into(), b"deflate".to_vec()),
            ("avro.schema".into(), RECORD_SCHEMA.as_bytes().to_vec()),
            ("chatflow.topic".into(), self.topic.clone().into_bytes()),
            (
                "chatflow.partition".into(),
                self.partition.to_string().into_bytes(),
            ),
            (
                "chatflow.first_offset".into(),
                first.offset.to_string().into_bytes(),
            ),
            (
                "chatflow.last_offset".into(),
                last.offset.to_string().into_bytes(),
            ),
            (
                "chatflow.records".into(),
                self.records.len().to_string().into_bytes(),
            ),
        ];
        if let Some(t) = first.timestamp {
            metadata.push((
                "chatflow.first_timestamp".into(),
                t.to_string().into_bytes(),
            ));
        }
        if let Some(t) = last.timestamp {
            metadata.push(("chatflow.last_timestamp".into(), t.to_string().into_bytes()));
        }
        metadata.sort();
        let marker = sync_marker(&self.topic, self.partition, first.offset);
        let mut out = header(&metadata, &marker);
        let mut writer = Writer::builder()
            .schema(&schema)
            .writer(&mut out)
            .codec(codec)
            .marker(marker)
            .has_header(true)
            .build()?;
        for r in &self.records {
            writer.append_value(to_value(r))?;
        }
        writer.flush()?;
        drop(writer);
        Ok(Bytes::from(out))
    }

    /// The records of a segment written by [`Segment::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Segment, SegmentError> {
        let reader = Reader::new(bytes)?;
        let meta = reader.user_metadata();
        let topic = text(meta, "chatflow.topic")?;
        let partition = number(meta, "chatflow.partition")?;
        let mut records = Vec::new();
        for value in reader {
            records.push(from_value(value?)?);
        }
        Ok(Segment {
            topic,
            partition,
            records,
        })
    }
}

/// The header of a segment: what `chatflow archive ls` shows.
pub fn info(key: &str, bytes: &[u8]) -> Result<SegmentInfo, SegmentError> {
    let reader = Reader::new(bytes)?;
    let meta = reader.user_metadata();
    let optional = |name: &str| {
        meta.contains_key(name)
            .then(|| number(meta, name))
            .transpose()
    };
    Ok(SegmentInfo {
        key: key.to_owned(),
        topic: text(meta, "chatflow.topic")?,
        partition: number(meta, "chatflow.partition")?,
        first_offset: number(meta, "chatflow.first_offset")?,
        last_offset: number(meta, "chatflow.last_offset")?,
        records: number(meta, "chatflow.records")?,
        first_timestamp: optional("chatflow.first_timestamp")?,
        last_timestamp: optional("chatflow.last_timestamp")?,
        bytes: bytes.len() as u64,
    })
}

type Metadata = std::collections::HashMap<String, Vec<u8>>;

fn text(meta: &Metadata, name: &str) -> Result<String, SegmentError> {
    let bytes = meta
        .get(name)
        .ok_or_else(|| SegmentError::Invalid(format!("no {name} in the header")))?;
    String::from_utf8(bytes.clone())
        .map_err(|_| SegmentError::Invalid(format!("{name} is not UTF-8")))
}

fn number<T: std::str::FromStr>(meta: &Metadata, name: &str) -> Result<T, SegmentError> {
    text(meta, name)?
        .parse()
        .map_err(|_| SegmentError::Invalid(format!("{name} is not a number")))
}

/// The container header (magic, metadata map, sync marker), written here
/// so that the metadata is in key order.
fn header(metadata: &[(String, Vec<u8>)], marker: &[u8; 16]) -> Vec<u8> {
    let mut out = b"Obj\x01".to_vec();
    zigzag(metadata.len() as i64, &mut out);
    for (k, v) in metadata {
        zigzag(k.len() as i64, &mut out);
        out.extend_from_slice(k.as_bytes());
        zigzag(v.len() as i64, &mut out);
        out.extend_from_slice(v);
    }
    zigzag(0, &mut out);
    out.extend_from_slice(marker);
    out
}

fn zigzag(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// 16 bytes from the segment's name (FNV-1a, two seeds): the same segment
/// always gets the same marker.
fn sync_marker(topic: &str, partition: i32, first_offset: i64) -> [u8; 16] {
    let name = key(topic, partition, first_offset);
    let fnv = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let mut marker = [0u8; 16];
    marker[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_be_bytes());
    marker[8..].copy_from_slice(&fnv(0x6c62_272e_07bb_0142).to_be_bytes());
    marker
}

fn nullable(v: Option<Value>) -> Value {
    match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}

fn to_value(r: &ArchivedRecord) -> Value {
    let headers = r
        .headers
        .iter()
        .map(|(k, v)| {
            Value::Record(vec![
                ("key".into(), Value::String(k.clone())),
                ("value".into(), nullable(v.clone().map(Value::Bytes))),
            ])
        })
        .collect();
    Value::Record(vec![
        ("offset".into(), Value::Long(r.offset)),
        ("timestamp".into(), nullable(r.timestamp.map(Value::Long))),
        ("key".into(), nullable(r.key.clone().map(Value::Bytes))),
        ("value".into(), nullable(r.value.clone().map(Value::Bytes))),
        ("headers".into(), Value::Array(headers)),
    ])
}

fn from_value(v: Value) -> Result<ArchivedRecord, SegmentError> {
    let bad = || SegmentError::Invalid("a record does not match the archive schema".into());
    let Value::Record(fields) = v else {
        return Err(bad());
    };
    let mut r = ArchivedRecord::default();
    for (name, value) in fields {
        match (name.as_str(), value) {
            ("offset", Value::Long(o)) => r.offset = o,
            ("timestamp", v) => {
                r.timestamp = unwrap_union(v, |v| match v {
                    Value::Long(t) => Some(t),
                    _ => None,
                })
                .ok_or_else(bad)?
            }
            ("key", v) => r.key = unwrap_union(v, bytes).ok_or_else(bad)?,
            ("value", v) => r.value = unwrap_union(v, bytes).ok_or_else(bad)?,
            ("headers", Value::Array(items)) => {
                for item in items {
                    let Value::Record(mut fields) = item else {
                        return Err(bad());
                    };
                    let (Some((_, value)), Some((_, Value::String(key)))) =
                        (fields.pop(), fields.pop())
                    else {
                        return Err(bad());
                    };
                    r.headers
                        .push((key, unwrap_union(value, bytes).ok_or_else(bad)?));
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(r)
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

/// A `["null", T]` union: `Some(None)` for null, `Some(Some(t))` for a T,
/// `None` for anything else.
fn unwrap_union<T>(v: Value, inner: impl Fn(Value) -> Option<T>) -> Option<Option<T>> {
    match v {
        Value::Union(_, v) => match *v {
            Value::Null => Some(None),
            v => inner(v).map(Some),
        },
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn segment(n: i64) -> Segment {
        Segment {
            topic: "chat.events".into(),
            partition: 3,
            records: (0..n)
                .map(|i| ArchivedRecord {
                    offset: 100 + i,
                    timestamp: (i % 3 != 0).then_some(1_700_000_000_000 + i),
                    key: (i % 4 != 0).then(|| format!("c{i}").into_bytes()),
                    value: (i % 5 != 0).then(|| vec![0, 0, 0, 0, 1, i as u8, 0xff]),
                    headers: if i % 2 == 0 {
                        vec![
                            ("trace".into(), Some(b"t".to_vec())),
                            ("empty".into(), None),
                        ]
                    } else {
                        vec![]
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn records_round_trip_with_every_field() {
        let s = segment(500);
        let bytes = s.encode().unwrap();
        assert_eq!(Segment::decode(&bytes).unwrap(), s);
        let info = info("k", &bytes).unwrap();
        assert_eq!(
            (info.first_offset, info.last_offset, info.records),
            (100, 599, 500)
        );
        assert_eq!(info.first_timestamp, None);
        assert_eq!(info.last_timestamp, Some(1_700_000_000_499));
    }

    #[test]
    fn the_same_records_encode_to_the_same_bytes() {
        let a = segment(300).encode().unwrap();
        let b = segment(300).encode().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, segment(301).encode().unwrap());
    }

    #[test]
    fn other_avro_readers_read_the_header() {
        // apache-avro's own reader sees our hand-written header and codec.
        let bytes = segment(10).encode().unwrap();
        let reader = Reader::new(&bytes[..]).unwrap();
        assert_eq!(reader.writer_schema(), &schema());
        assert_eq!(reader.count(), 10);
    }

    #[test]
    fn keys_sort_by_offset_and_parse_back() {
        let a = key("chat.events", 0, 99);
        let b = key("chat.events", 0, 100);
        assert!(a < b);
        assert_eq!(
            a,
            "topics/chat.events/partition=0/chat.events+0+00000000000000000099.avro"
        );
        assert_eq!(parse_key(&a), Some(("chat.events".into(), 0, 99)));
        assert_eq!(parse_key("topics/chat.events/partition=0/x.avro"), None);
        assert_eq!(
            parse_key("topics/chat.events/partition=1/chat.events+0+1.avro"),
            None
        );
        assert!(crate::check_key(&a).is_ok());
    }

    #[test]
    fn an_empty_segment_or_garbage_is_an_error() {
        let empty = Segment {
            topic: "t".into(),
            partition: 0,
            records: vec![],
        };
        assert!(matches!(empty.encode(), Err(SegmentError::Empty)));
        assert!(Segment::decode(b"not avro").is_err());
        let mut truncated = segment(50).encode().unwrap().to_vec();
        truncated.truncate(truncated.len() - 20);
        assert!(Segment::decode(&truncated).is_err());
    }
}
