#![allow(clippy::unwrap_used)]
//! The cold tier over fjall and a directory archive: history reads the same
//! before and after a move, in every direction and page size; changes to
//! archived messages show; a move stopped after any step (as a crash
//! would) loses and duplicates nothing, and the next move finishes it.

use std::sync::Arc;

use archive::Archive;
use store::cold::{self, BUCKET_MS, StopAfter};
use store::{EventWrite, FjallStore, Message, Mutation, Page, Store, Tiered};

const CID: &str = "g:cold";
const DAY: i64 = 86_400_000;
/// Messages 1..=OLD are a day apart from day 0; the rest are recent.
const OLD: i64 = 60;
const ALL: i64 = 80;
const NOW: i64 = 200 * DAY;

fn at(seq: i64) -> i64 {
    if seq <= OLD {
        seq * DAY
    } else {
        NOW - (ALL - seq) * 1_000
    }
}

fn write(seq: i64, mutation: Mutation) -> EventWrite {
    EventWrite {
        conversation_id: CID.into(),
        seq,
        at: at(seq.min(ALL)),
        mutations: vec![mutation],
    }
}

fn post(seq: i64) -> EventWrite {
    write(
        seq,
        Mutation::PostMessage {
            message_id: format!("m{seq}"),
            sender_id: if seq % 3 == 0 { "bob" } else { "ann" }.into(),
            client_msg_id: format!("c{seq}"),
            body: format!("message {seq}"),
            reply_to: None,
            mentions: vec![],
            attachments: Vec::new(),
            sealed: None,
        },
    )
}

struct Tiers {
    _dir: tempfile::TempDir,
    hot: Arc<dyn Store>,
    archive: Arc<dyn Archive>,
    tiered: Tiered,
}

async fn tiers() -> Tiers {
    let dir = tempfile::tempdir().unwrap();
    let hot: Arc<dyn Store> = Arc::new(FjallStore::open(&dir.path().join("store")).unwrap());
    let archive = archive::open(&format!("file://{}", dir.path().join("archive").display()))
        .await
        .unwrap();
    let tiered = Tiered::new(hot.clone(), archive.clone());
    let mut events = vec![EventWrite {
        conversation_id: CID.into(),
        seq: 0,
        at: 0,
        mutations: vec![Mutation::CreateConversation {
            kind: "group".into(),
            name: None,
            description: None,
            created_by: "ann".into(),
            members: vec![
                ("ann".into(), "owner".into()),
                ("bob".into(), "member".into()),
            ],
        }],
    }];
    events.extend((1..=ALL).map(post));
    tiered.apply(events).await.unwrap();
    Tiers {
        _dir: dir,
        hot,
        archive,
        tiered,
    }
}

/// Every way a client pages through history, as (page, has_more) lists.
async fn history(store: &dyn Store) -> Vec<(Vec<Message>, bool)> {
    let mut out = Vec::new();
    for limit in [1, 7, 50, 200] {
        // Newest first, walking back with `before`.
        let mut before = None;
        loop {
            let page = store
                .messages(
                    CID,
                    Page {
                        before,
                        after: None,
                        limit,
                    },
                )
                .await
                .unwrap();
            before = page.messages.first().map(|m| m.seq);
            let done = !page.has_more;
            out.push((page.messages, page.has_more));
            if done {
                break;
            }
        }
        // Oldest first, walking on with `after`.
        let mut after = -1;
        loop {
            let page = store
                .messages(
                    CID,
                    Page {
                        before: None,
                        after: Some(after),
                        limit,
                    },
                )
                .await
                .unwrap();
            after = page.messages.last().map_or(after, |m| m.seq);
            let done = !page.has_more;
            out.push((page.messages, page.has_more));
            if done {
                break;
            }
        }
    }
    // Windows across the boundary.
    for (after, before) in [(10, 70), (59, 62), (0, 61), (55, 81)] {
        let page = Page {
            before: Some(before),
            after: Some(after),
            limit: 200,
        };
        let p = store.messages(CID, page).await.unwrap();
        out.push((p.messages, p.has_more));
    }
    out
}

async fn all(s: &Tiered) -> Vec<Message> {
    s.messages(
        CID,
        Page {
            before: None,
            after: Some(-1),
            limit: 200,
        },
    )
    .await
    .unwrap()
    .messages
}

/// Equal page lists, or a panic naming the first page that differs (by seq
/// ranges, not whole messages).
fn assert_same(got: &[(Vec<Message>, bool)], want: &[(Vec<Message>, bool)], what: &str) {
    let short = |(page, more): &(Vec<Message>, bool)| {
        let seqs: Vec<i64> = page.iter().map(|m| m.seq).collect();
        format!("{seqs:?} has_more={more}")
    };
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w,
            "{what}: page {i} is {}, expected {}",
            short(g),
            short(w)
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: page count");
}

fn hot_seqs(page: store::MessagePage) -> Vec<i64> {
    page.messages.iter().map(|m| m.seq).collect()
}

async fn hot_count(hot: &dyn Store) -> usize {
    hot_seqs(
        hot.messages(
            CID,
            Page {
                before: None,
                after: Some(-1),
                limit: 1000,
            },
        )
        .await
        .unwrap(),
    )
    .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_the_same_across_the_move_and_changes_to_cold_messages_show() {
    let t = tiers().await;
    let before = history(&t.tiered).await;
    let cutoff = NOW - 30 * DAY;
    let report = cold::move_conversation(&*t.hot, &*t.archive, CID, cutoff, StopAfter::Nothing)
        .await
        .unwrap();
    assert_eq!(
        (report.archived, report.dropped),
        (OLD as usize, OLD as usize)
    );
    // 60 days of messages in 10-day buckets.
    assert_eq!(report.segments, (OLD * DAY / BUCKET_MS + 1) as usize);
    assert_eq!(hot_count(&*t.hot).await, (ALL - OLD) as usize);
    assert_same(&history(&t.tiered).await, &before, "across the move");
    // A second move has nothing to do.
    let again = cold::move_conversation(&*t.hot, &*t.archive, CID, cutoff, StopAfter::Nothing)
        .await
        .unwrap();
    assert_eq!(again.archived, 0);

    // Single messages and retried sends find archived messages.
    assert_eq!(
        t.tiered.message(CID, 5).await.unwrap().unwrap().message_id,
        "m5"
    );
    let retried = t
        .tiered
        .message_by_client_id(CID, "ann", "c7")
        .await
        .unwrap();
    assert_eq!(retried.unwrap().seq, 7);

    // Edit, react to and delete archived messages through events.
    let changes = vec![
        write(
            81,
            Mutation::EditMessage {
                seq: 5,
                body: "edited later".into(),
                sealed: None,
            },
        ),
        write(
            82,
            Mutation::AddReaction {
                seq: 6,
                emoji: "👍".into(),
                user_id: "bob".into(),
            },
        ),
        write(83, Mutation::DeleteMessage { seq: 7 }),
        write(
            84,
            Mutation::AddReaction {
                seq: 5,
                emoji: "🎉".into(),
                user_id: "ann".into(),
            },
        ),
    ];
    assert_eq!(t.tiered.apply(changes).await.unwrap(), vec![true; 4]);
    let check = |h: &[Message]| {
        let by_seq = |s: i64| h.iter().find(|m| m.seq == s).unwrap().clone();
        assert_eq!(by_seq(5).body.as_deref(), Some("edited later"));
        assert!(by_seq(5).edited_at.is_some() && by_seq(5).reactions.contains_key("🎉"));
        assert_eq!(by_seq(6).reactions["👍"], vec!["bob".to_owned()]);
        assert!(by_seq(7).deleted && by_seq(7).body.is_none());
        assert_eq!(h.len(), ALL as usize);
        assert!(h.windows(2).all(|w| w[0].seq < w[1].seq));
    };
    check(&all(&t.tiered).await);
    // The changed copies are hot again until the next move archives them.
    assert_eq!(hot_count(&*t.hot).await, (ALL - OLD) as usize + 3);
    let merged = cold::move_conversation(&*t.hot, &*t.archive, CID, cutoff, StopAfter::Nothing)
        .await
        .unwrap();
    assert_eq!(merged.dropped, 3);
    assert_eq!(hot_count(&*t.hot).await, (ALL - OLD) as usize);
    // A fresh reader (no cache) sees the changes in the archive.
    check(&all(&Tiered::new(t.hot.clone(), t.archive.clone())).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_stopped_after_any_step_loses_and_duplicates_nothing() {
    for stop in [StopAfter::Segments, StopAfter::Index] {
        let t = tiers().await;
        let before = history(&t.tiered).await;
        let cutoff = NOW - 30 * DAY;
        cold::move_conversation(&*t.hot, &*t.archive, CID, cutoff, stop)
            .await
            .unwrap();
        assert_eq!(
            hot_count(&*t.hot).await,
            ALL as usize,
            "{stop:?}: nothing dropped yet"
        );
        let fresh = Tiered::new(t.hot.clone(), t.archive.clone());
        assert_same(
            &history(&fresh).await,
            &before,
            &format!("{stop:?}: between steps"),
        );
        // An edit between the steps lands on the hot copy and survives.
        let edit = write(
            81,
            Mutation::EditMessage {
                seq: 3,
                body: "mid-move edit".into(),
                sealed: None,
            },
        );
        fresh.apply(vec![edit]).await.unwrap();
        let finished =
            cold::move_conversation(&*t.hot, &*t.archive, CID, cutoff, StopAfter::Nothing)
                .await
                .unwrap();
        assert_eq!(finished.dropped, OLD as usize, "{stop:?}");
        let after = Tiered::new(t.hot.clone(), t.archive.clone());
        let third = after.message(CID, 3).await.unwrap().unwrap();
        assert_eq!(third.body.as_deref(), Some("mid-move edit"), "{stop:?}");
        let mut expected = before.clone();
        for (page, _) in &mut expected {
            for m in page.iter_mut().filter(|m| m.seq == 3) {
                m.body = Some("mid-move edit".into());
                m.edited_at = Some(at(ALL));
            }
        }
        let what = format!("{stop:?}: after the move finished");
        assert_same(&history(&after).await, &expected, &what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_copy_changed_while_the_move_runs_is_kept() {
    let t = tiers().await;
    let stale = t.hot.message(CID, 4).await.unwrap().unwrap();
    t.tiered
        .apply(vec![write(
            81,
            Mutation::EditMessage {
                seq: 4,
                body: "newer".into(),
                sealed: None,
            },
        )])
        .await
        .unwrap();
    // The move read the old copy; its removal is refused for the new one.
    assert_eq!(t.hot.drop_hot(CID, &[stale]).await.unwrap(), 0);
    assert_eq!(
        t.hot
            .message(CID, 4)
            .await
            .unwrap()
            .unwrap()
            .body
            .as_deref(),
        Some("newer")
    );
}
