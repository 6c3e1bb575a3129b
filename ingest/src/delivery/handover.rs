//! What one socket has sent of each conversation, and the hand-over from a
//! fill out of the store to the router's live stream, with no gap and no
//! duplicate whatever the interleaving (DESIGN.md, guarantee 4).
//!
//! Two facts make it exact:
//! - the router's live stream to a device is a suffix of the conversation:
//!   once the first live event `f` reached the socket, every later event
//!   reaches it too, so only events below `f` can be missing;
//! - the persister applies a partition in order: once the store's
//!   conversation head is at or past `f`, every event below `f` is in it.
//!
//! So a conversation the client resumed stays held (live events queued
//! here, not sent) until the store has been read up to its first live
//! event. This is pure state: the socket locks it and queues the frames it
//! returns under the same lock, so frames leave in the order marks are
//! taken.

use std::collections::HashMap;
use std::sync::Arc;

/// Live frames held at most, over all conversations of one socket.
pub const MAX_HELD: usize = 4096;

#[derive(Debug)]
struct Stream {
    /// Every event of the conversation up to here is on its way to the
    /// client (or the client said it has it).
    sent: i64,
    /// `sent` rests on the client's cursor and a fill from the store, so a
    /// live event above it may leave a gap the store must fill.
    baseline: bool,
    /// The live stream is contiguous with what was sent: no fill needed.
    live: bool,
    /// The lowest seq sent live before any baseline (a late resume fills
    /// below it).
    first_live: Option<i64>,
    /// Live events held back while a fill runs, or before the first resume.
    held: Option<Vec<(i64, Arc<str>)>>,
}

impl Default for Stream {
    fn default() -> Self {
        Stream {
            sent: -1,
            baseline: false,
            live: false,
            first_live: None,
            held: None,
        }
    }
}

/// What to do with a live event.
#[derive(Debug, PartialEq)]
pub enum Live {
    /// Queue it now.
    Send(Arc<str>),
    /// Held, nothing to do.
    Held,
    /// Held, and the conversation needs a fill before it goes live.
    NeedsFill,
    /// Already sent (a redelivery, or covered by a fill).
    Duplicate,
    /// Too much held: the socket must close (its client resumes later).
    Overflow,
}

/// What a fill for a resume starts from.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// Fill after this seq.
    pub from: i64,
    /// A late resume below events already sent live: fill `(after, below)`
    /// as well, out of order (the only case that is).
    pub backfill: Option<(i64, i64)>,
}

/// After a fill: live, or one more fill below the first held event.
#[derive(Debug, PartialEq)]
pub enum Settle {
    Live(Vec<Arc<str>>),
    FillBelow(i64),
}

/// One socket's conversations.
#[derive(Debug)]
pub struct Streams {
    by_conversation: HashMap<String, Stream>,
    /// No resume yet: every live event is held (the first resume says
    /// where each conversation starts).
    awaiting_resume: bool,
    held: usize,
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            by_conversation: HashMap::new(),
            awaiting_resume: true,
            held: 0,
        }
    }
}

impl Streams {
    fn stream(&mut self, cid: &str) -> &mut Stream {
        if !self.by_conversation.contains_key(cid) {
            self.by_conversation
                .insert(cid.to_owned(), Stream::default());
        }
        self.by_conversation
            .get_mut(cid)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }

    /// A live event from the router.
    pub fn live(&mut self, cid: &str, seq: i64, frame: &Arc<str>) -> Live {
        if self.held >= MAX_HELD {
            return Live::Overflow;
        }
        let awaiting = self.awaiting_resume;
        let s = self.stream(cid);
        if let Some(held) = &mut s.held {
            held.push((seq, frame.clone()));
            self.held += 1;
            return Live::Held;
        }
        // Before the first resume, a conversation it has not reached yet
        // waits for it; one it already handed over is live.
        if awaiting && !s.baseline {
            s.held = Some(vec![(seq, frame.clone())]);
            self.held += 1;
            return Live::Held;
        }
        if seq <= s.sent {
            // The live stream reached what was sent: contiguous from here.
            s.live = true;
            return Live::Duplicate;
        }
        if s.baseline && !s.live {
            s.held = Some(vec![(seq, frame.clone())]);
            self.held += 1;
            return Live::NeedsFill;
        }
        s.live = true;
        s.sent = seq;
        if !s.baseline {
            s.first_live.get_or_insert(seq);
        }
        Live::Send(frame.clone())
    }

    /// A resume of `cid` from the client's `cursor`: holds its live events
    /// until [`Streams::settle`] says it is live.
    pub fn begin_fill(&mut self, cid: &str, cursor: i64) -> Plan {
        let s = self.stream(cid);
        s.held.get_or_insert_with(Vec::new);
        let backfill = match s.first_live {
            Some(first) if !s.baseline && cursor + 1 < first => Some((cursor, first)),
            _ => None,
        };
        let from = cursor.max(s.sent);
        s.sent = from;
        s.baseline = true;
        Plan { from, backfill }
    }

    /// The highest seq sent (or known to the client) of `cid`.
    pub fn sent(&self, cid: &str) -> i64 {
        self.by_conversation.get(cid).map_or(-1, |s| s.sent)
    }

    /// A message read from the store during a fill: true to queue it.
    pub fn filled(&mut self, cid: &str, seq: i64) -> bool {
        let s = self.stream(cid);
        if seq > s.sent {
            s.sent = seq;
            true
        } else {
            false
        }
    }

    /// The fill read the store when its head was `head`: the messages sent
    /// carry every event up to it.
    pub fn covered(&mut self, cid: &str, head: i64) {
        let s = self.stream(cid);
        s.sent = s.sent.max(head);
    }

    /// A fill below the first held event is done: what was sent and what
    /// is held are contiguous.
    pub fn bridged(&mut self, cid: &str) {
        self.stream(cid).live = true;
    }

    /// After a fill: releases what is held above what was sent, or asks for
    /// a fill below the first held event when it may leave a gap.
    pub fn settle(&mut self, cid: &str) -> Settle {
        let s = self.stream(cid);
        let Some(held) = &mut s.held else {
            return Settle::Live(Vec::new());
        };
        held.sort_by_key(|(seq, _)| *seq);
        if let Some(&(first, _)) = held.first()
            && s.baseline
            && !s.live
            && first > s.sent
        {
            return Settle::FillBelow(first);
        }
        let held = s.held.take().unwrap_or_default();
        let count = held.len();
        let frames = release(s, held);
        self.held -= count;
        Settle::Live(frames)
    }

    /// The first resume is done (or the client never sent one): every
    /// conversation still held goes live from its first held event.
    pub fn end_awaiting(&mut self) -> Vec<Arc<str>> {
        if !self.awaiting_resume {
            return Vec::new();
        }
        self.awaiting_resume = false;
        let mut frames = Vec::new();
        let mut released = 0;
        for s in self.by_conversation.values_mut() {
            if s.baseline {
                continue;
            }
            if let Some(held) = s.held.take() {
                released += held.len();
                frames.extend(release(s, held));
            }
        }
        self.held -= released;
        frames
    }

    pub fn awaiting_resume(&self) -> bool {
        self.awaiting_resume
    }
}

/// Sends what is held above the mark, in seq order; the stream is live.
fn release(s: &mut Stream, mut held: Vec<(i64, Arc<str>)>) -> Vec<Arc<str>> {
    held.sort_by_key(|(seq, _)| *seq);
    let mut frames = Vec::new();
    for (seq, frame) in held {
        s.live = true;
        if seq > s.sent {
            s.sent = seq;
            if !s.baseline {
                s.first_live.get_or_insert(seq);
            }
            frames.push(frame);
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(seq: i64) -> Arc<str> {
        format!("e{seq}").into()
    }

    fn texts(frames: Vec<Arc<str>>) -> Vec<String> {
        frames.iter().map(|f| f.to_string()).collect()
    }

    /// The reported hole: bob's new socket gets 5 live before his resume
    /// from 1 is handled; 2, 3, 4 come from the store, then 5.
    #[test]
    fn a_live_event_before_the_resume_does_not_raise_the_fill_start() {
        let mut s = Streams::default();
        assert_eq!(s.live("c", 5, &f(5)), Live::Held);
        let plan = s.begin_fill("c", 1);
        assert_eq!(plan.from, 1);
        for seq in [2, 3, 4, 5] {
            assert!(s.filled("c", seq), "{seq} is sent from the store");
        }
        s.covered("c", 5);
        assert_eq!(s.settle("c"), Settle::Live(vec![]), "5 was filled already");
        assert!(s.end_awaiting().is_empty());
        assert_eq!(s.live("c", 6, &f(6)), Live::Send(f(6)));
    }

    #[test]
    fn a_store_behind_the_first_held_event_needs_a_fill_below_it() {
        let mut s = Streams::default();
        s.live("c", 9, &f(9));
        s.begin_fill("c", 1);
        assert!(s.filled("c", 2));
        s.covered("c", 4); // the store had applied up to 4
        assert_eq!(s.live("c", 10, &f(10)), Live::Held);
        assert_eq!(s.settle("c"), Settle::FillBelow(9));
        assert!(s.filled("c", 7), "from the store, below 9");
        s.bridged("c");
        assert_eq!(s.settle("c"), Settle::Live(vec![f(9), f(10)]));
    }

    #[test]
    fn the_first_live_event_after_a_quiet_resume_checks_for_a_gap() {
        let mut s = Streams::default();
        s.begin_fill("c", 3);
        s.covered("c", 3);
        assert_eq!(s.settle("c"), Settle::Live(vec![]));
        s.end_awaiting();
        // 5 may be the router's first event for this device, with 4 only
        // in the store.
        assert_eq!(s.live("c", 5, &f(5)), Live::NeedsFill);
        assert_eq!(s.live("c", 6, &f(6)), Live::Held);
        assert_eq!(s.settle("c"), Settle::FillBelow(5));
        assert!(s.filled("c", 4));
        s.bridged("c");
        assert_eq!(s.settle("c"), Settle::Live(vec![f(5), f(6)]));
        assert_eq!(s.live("c", 7, &f(7)), Live::Send(f(7)), "live from now on");
    }

    #[test]
    fn a_live_event_the_fill_covered_makes_the_stream_live_without_a_check() {
        let mut s = Streams::default();
        s.begin_fill("c", 1);
        s.covered("c", 8);
        s.settle("c");
        s.end_awaiting();
        assert_eq!(s.live("c", 8, &f(8)), Live::Duplicate);
        assert_eq!(s.live("c", 9, &f(9)), Live::Send(f(9)));
    }

    /// The kill -9 test found it: the first conversation of a resume was
    /// held for good while the resume went on with the next one.
    #[test]
    fn a_conversation_already_resumed_stays_live_while_the_resume_goes_on() {
        let mut s = Streams::default();
        s.begin_fill("a", 3);
        s.covered("a", 3);
        assert_eq!(s.settle("a"), Settle::Live(vec![]));
        s.begin_fill("b", 1);
        assert_eq!(
            s.live("a", 4, &f(4)),
            Live::NeedsFill,
            "not held for the resume"
        );
        assert_eq!(s.settle("a"), Settle::FillBelow(4));
        s.bridged("a");
        assert_eq!(s.settle("a"), Settle::Live(vec![f(4)]));
        assert_eq!(s.live("a", 5, &f(5)), Live::Send(f(5)));
        s.covered("b", 1);
        s.settle("b");
        assert!(s.end_awaiting().is_empty());
        assert_eq!(s.live("a", 6, &f(6)), Live::Send(f(6)));
    }

    #[test]
    fn held_frames_leave_in_seq_order_without_duplicates() {
        let mut s = Streams::default();
        for seq in [7, 6, 7, 8] {
            s.live("c", seq, &f(seq));
        }
        s.begin_fill("c", 6);
        s.covered("c", 6);
        assert_eq!(
            texts(match s.settle("c") {
                Settle::Live(frames) => frames,
                other => panic!("{other:?}"),
            }),
            ["e7", "e8"]
        );
    }

    #[test]
    fn conversations_the_resume_does_not_name_go_live_from_their_first_held_event() {
        let mut s = Streams::default();
        s.live("other", 12, &f(12));
        s.live("other", 11, &f(11));
        s.begin_fill("c", 0);
        s.covered("c", 0);
        s.settle("c");
        assert_eq!(texts(s.end_awaiting()), ["e11", "e12"]);
        assert_eq!(s.live("other", 13, &f(13)), Live::Send(f(13)));
        assert!(!s.awaiting_resume());
    }

    #[test]
    fn a_late_resume_fills_below_what_went_live_before_it() {
        let mut s = Streams::default();
        s.end_awaiting(); // no resume in time
        assert_eq!(s.live("c", 5, &f(5)), Live::Send(f(5)));
        assert_eq!(s.live("c", 6, &f(6)), Live::Send(f(6)));
        let plan = s.begin_fill("c", 2);
        assert_eq!(plan.backfill, Some((2, 5)), "3 and 4 were never sent");
        assert_eq!(plan.from, 6, "5 and 6 are not sent again");
    }

    #[test]
    fn a_cursor_ahead_of_the_socket_is_the_client_s_word() {
        let mut s = Streams::default();
        s.live("c", 4, &f(4));
        let plan = s.begin_fill("c", 10);
        assert_eq!(plan.from, 10);
        s.covered("c", 10);
        assert_eq!(
            s.settle("c"),
            Settle::Live(vec![]),
            "4 is older than the cursor"
        );
    }

    #[test]
    fn too_many_held_frames_overflow() {
        let mut s = Streams::default();
        for seq in 0..MAX_HELD as i64 {
            assert_eq!(s.live("c", seq, &f(seq)), Live::Held);
        }
        assert_eq!(s.live("c", 1 << 40, &f(0)), Live::Overflow);
        assert_eq!(s.end_awaiting().len(), MAX_HELD);
        assert_eq!(s.held, 0, "released frames no longer count");
    }
}
