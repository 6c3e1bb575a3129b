//! The message cold tier. Messages older than the hot age move from the
//! hot store to the archive as per-conversation segments, one object per
//! time bucket (as Discord buckets messages by time):
//! `cold/<conversation>/<bucket start ms, 20 digits>.json`. A move writes,
//! in this order: the segment objects (durable) → the conversation's
//! [`ColdIndex`] in the store → the hot items removed (each only if it is
//! unchanged). A crash between any two steps loses and duplicates nothing:
//! readers prefer a hot copy to an archived one, and the next move redoes
//! the same writes.
//!
//! [`Tiered`](crate::Tiered) reads across the two tiers.

use std::collections::BTreeMap;

use archive::Archive;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{ColdIndex, ColdSegment, Message, Page, Result, Store, StoreError};

/// The width of a time bucket: ten days.
pub const BUCKET_MS: i64 = 10 * 86_400_000;

/// One segment object: a conversation's archived messages of one bucket,
/// in seq order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentObject {
    pub conversation_id: String,
    pub bucket: i64,
    pub messages: Vec<Message>,
}

/// The object key of a conversation's bucket. Ids may hold characters an
/// object key should not (`:` `@`): those are written `=XX`.
pub fn segment_key(conversation_id: &str, bucket: i64) -> String {
    let mut escaped = String::with_capacity(conversation_id.len());
    for b in conversation_id.bytes() {
        if b.is_ascii_alphanumeric() || b"._-+".contains(&b) {
            escaped.push(char::from(b));
        } else {
            escaped.push_str(&format!("={b:02X}"));
        }
    }
    format!("cold/{escaped}/{bucket:020}.json")
}

fn bucket_of(sent_at: i64) -> i64 {
    sent_at.div_euclid(BUCKET_MS) * BUCKET_MS
}

pub(crate) fn archive_error(e: archive::ArchiveError) -> StoreError {
    if e.is_transient() {
        StoreError::Transient(e.to_string())
    } else {
        StoreError::Permanent(e.to_string())
    }
}

/// A segment object's messages, or `None` if the object is not there.
pub(crate) async fn read_segment(
    archive: &dyn Archive,
    conversation_id: &str,
    bucket: i64,
) -> Result<Option<Vec<Message>>> {
    let key = segment_key(conversation_id, bucket);
    let Some(bytes) = archive.get(&key).await.map_err(archive_error)? else {
        return Ok(None);
    };
    let object: SegmentObject = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::Permanent(format!("{key} cannot be read: {e}")))?;
    Ok(Some(object.messages))
}

/// What one move did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MoveReport {
    /// Messages written to segments.
    pub archived: usize,
    /// Hot items removed.
    pub dropped: usize,
    /// Segment objects written.
    pub segments: usize,
    pub bytes: u64,
}

impl std::ops::AddAssign for MoveReport {
    fn add_assign(&mut self, o: MoveReport) {
        self.archived += o.archived;
        self.dropped += o.dropped;
        self.segments += o.segments;
        self.bytes += o.bytes;
    }
}

/// Where a move stops: for tests, after a step, as a crash would.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopAfter {
    /// The whole move.
    #[default]
    Nothing,
    /// The segments are durable; the index is not written.
    Segments,
    /// The index is written; the hot items are still there.
    Index,
}

/// Moves the conversation's messages sent before `cutoff` (ms since the
/// epoch), and any hot copy of an already archived message, to the
/// archive.
pub async fn move_conversation(
    hot: &dyn Store,
    archive: &dyn Archive,
    conversation_id: &str,
    cutoff: i64,
    stop: StopAfter,
) -> Result<MoveReport> {
    let mut index = hot.cold_index(conversation_id).await?.unwrap_or_default();
    let moving = candidates(hot, conversation_id, cutoff, index.through_seq).await?;
    let Some(last) = moving.last() else {
        return Ok(MoveReport::default());
    };
    let through = index.through_seq.max(last.seq);

    // Each message's bucket: its own time bucket, but never before the
    // bucket of an archived message below it, so that buckets stay in seq
    // order. A message below the newest archived one joins the segment
    // whose range it falls in.
    let mut by_bucket: BTreeMap<i64, Vec<&Message>> = BTreeMap::new();
    let newest = index.segments.last().map(|s| (s.bucket, s.last_seq));
    let mut floor = newest.map_or(i64::MIN, |(bucket, _)| bucket);
    for m in &moving {
        let bucket = match newest {
            Some((_, last_seq)) if m.seq <= last_seq => index
                .segments
                .iter()
                .rev()
                .find(|s| s.first_seq <= m.seq)
                .or(index.segments.first())
                .map_or(floor, |s| s.bucket),
            _ => {
                floor = floor.max(bucket_of(m.sent_at));
                floor
            }
        };
        by_bucket.entry(bucket).or_default().push(m);
    }

    let mut report = MoveReport::default();
    for (bucket, messages) in &by_bucket {
        // What the object holds (perhaps more than the index knows, after
        // a crash between the two), with the moving messages over it.
        let mut merged: BTreeMap<i64, Message> = read_segment(archive, conversation_id, *bucket)
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.seq, m))
            .collect();
        for m in messages {
            merged.insert(m.seq, (*m).clone());
        }
        let object = SegmentObject {
            conversation_id: conversation_id.to_owned(),
            bucket: *bucket,
            messages: merged.into_values().collect(),
        };
        let bytes =
            serde_json::to_vec(&object).map_err(|e| StoreError::Permanent(e.to_string()))?;
        report.bytes += bytes.len() as u64;
        archive
            .put(&segment_key(conversation_id, *bucket), Bytes::from(bytes))
            .await
            .map_err(archive_error)?;
        report.segments += 1;
        report.archived += messages.len();
        let (first, last) = match (object.messages.first(), object.messages.last()) {
            (Some(f), Some(l)) => (f.seq, l.seq),
            _ => continue,
        };
        match index.segments.iter_mut().find(|s| s.bucket == *bucket) {
            Some(s) => {
                s.first_seq = first;
                s.last_seq = last;
                s.messages = object.messages.len();
                s.version += 1;
            }
            None => index.segments.push(ColdSegment {
                bucket: *bucket,
                first_seq: first,
                last_seq: last,
                messages: object.messages.len(),
                version: 1,
            }),
        }
    }
    if stop == StopAfter::Segments {
        return Ok(report);
    }
    index.segments.sort_by_key(|s| s.first_seq);
    index.through_seq = through;
    hot.put_cold_index(conversation_id, &index).await?;
    if stop == StopAfter::Index {
        return Ok(report);
    }
    report.dropped = hot.drop_hot(conversation_id, &moving).await?;
    Ok(report)
}

/// The hot messages to move, in seq order: from the oldest, those sent
/// before `cutoff`, stopping at the first newer one; and every hot copy at
/// or below `through` (changed after it was archived).
async fn candidates(
    hot: &dyn Store,
    conversation_id: &str,
    cutoff: i64,
    through: i64,
) -> Result<Vec<Message>> {
    let mut out = Vec::new();
    let mut after = -1;
    loop {
        let page = hot
            .messages(
                conversation_id,
                Page {
                    after: Some(after),
                    before: None,
                    limit: 500,
                },
            )
            .await?;
        for m in page.messages {
            if m.seq > through && m.sent_at >= cutoff {
                return Ok(out);
            }
            after = m.seq;
            out.push(m);
        }
        if !page.has_more {
            return Ok(out);
        }
    }
}

/// Moves every conversation's old messages; a conversation that fails is
/// reported and the sweep goes on.
pub async fn move_all(
    hot: &dyn Store,
    archive: &dyn Archive,
    cutoff: i64,
) -> Result<(MoveReport, Vec<(String, StoreError)>)> {
    let mut total = MoveReport::default();
    let mut failed = Vec::new();
    for cid in hot.conversation_ids().await? {
        match move_conversation(hot, archive, &cid, cutoff, StopAfter::Nothing).await {
            Ok(r) => total += r,
            Err(e) => failed.push((cid, e)),
        }
    }
    Ok((total, failed))
}

/// The index entry whose range holds `seq`.
pub(crate) fn segment_for(index: &ColdIndex, seq: i64) -> Option<&ColdSegment> {
    index
        .segments
        .iter()
        .find(|s| s.first_seq <= seq && seq <= s.last_seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_escape_what_object_stores_should_not_see() {
        assert_eq!(
            segment_key("d:alice:bob@x", 864_000_000),
            "cold/d=3Aalice=3Abob=40x/00000000000864000000.json"
        );
        assert!(archive::check_key(&segment_key("g:01J/..", 0)).is_ok());
        assert_ne!(segment_key("a:b", 0), segment_key("a=3Ab", 0));
    }

    #[test]
    fn buckets_are_ten_days_wide() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(BUCKET_MS - 1), 0);
        assert_eq!(bucket_of(BUCKET_MS), BUCKET_MS);
        assert_eq!(bucket_of(-1), -BUCKET_MS);
    }
}
