//! The behaviour every [`Store`] backend must show. Each backend's tests call
//! [`run`] with a fresh, empty store.

#![allow(clippy::unwrap_used)] // test code: a failed call is a failed check

use std::sync::Arc;

mod analytics;
mod audit;
mod cold;
mod push;

use crate::{EventWrite, Mutation, Page, Store};

fn create(cid: &str, seq: i64, members: &[(&str, &str)]) -> EventWrite {
    EventWrite {
        conversation_id: cid.into(),
        seq,
        at: 1_000 + seq,
        mutations: vec![Mutation::CreateConversation {
            kind: "group".into(),
            name: Some("g".into()),
            description: None,
            created_by: members[0].0.into(),
            members: members
                .iter()
                .map(|(u, r)| (u.to_string(), r.to_string()))
                .collect(),
        }],
    }
}

fn post(cid: &str, seq: i64, sender: &str, client_msg_id: &str) -> EventWrite {
    one(
        cid,
        seq,
        Mutation::PostMessage {
            message_id: format!("m{seq}"),
            sender_id: sender.into(),
            client_msg_id: client_msg_id.into(),
            body: format!("body {seq}"),
            reply_to: None,
            mentions: vec![],
            attachments: Vec::new(),
            sealed: None,
        },
    )
}

fn one(cid: &str, seq: i64, mutation: Mutation) -> EventWrite {
    EventWrite {
        conversation_id: cid.into(),
        seq,
        at: 1_000 + seq,
        mutations: vec![mutation],
    }
}

/// Runs every check against `store`.
pub async fn run(store: Arc<dyn Store>) {
    conversations_and_members(&*store).await;
    events_apply_once(&*store).await;
    history_pages(&*store).await;
    retried_sends_are_one_message(&*store).await;
    edits_deletes_reactions(&*store).await;
    receipts_and_cursors(&*store).await;
    events_of_unknown_conversations_leave_nothing(&*store).await;
    cold::cold_tier_items(&*store).await;
    push::devices_and_the_push_ledger(&*store).await;
    audit::the_audit_log(&*store).await;
    analytics::analytics(&*store).await;
}

async fn conversations_and_members(store: &dyn Store) {
    let applied = store
        .apply(vec![create(
            "c1",
            0,
            &[("ann", "owner"), ("bob", "member")],
        )])
        .await
        .unwrap();
    assert_eq!(applied, vec![true]);
    let c = store
        .conversation("c1")
        .await
        .unwrap()
        .expect("conversation");
    assert_eq!(
        (c.kind.as_str(), c.name.as_deref(), c.created_by.as_str()),
        ("group", Some("g"), "ann")
    );
    assert_eq!(c.last_seq, 0);
    let mut members: Vec<_> = store
        .members("c1")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    members.sort();
    assert_eq!(
        members,
        vec![
            ("ann".into(), "owner".into()),
            ("bob".into(), "member".into())
        ]
    );
    assert!(store.member("c1", "eve").await.unwrap().is_none());
    let bobs = store.user_conversations("bob").await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].conversation_id, "c1");

    store
        .apply(vec![one(
            "c1",
            3,
            Mutation::PutMember {
                user_id: "cat".into(),
                role: "admin".into(),
            },
        )])
        .await
        .unwrap();
    assert_eq!(
        store.member("c1", "cat").await.unwrap().unwrap().role,
        "admin"
    );
    store
        .apply(vec![one(
            "c1",
            4,
            Mutation::RemoveMember {
                user_id: "bob".into(),
            },
        )])
        .await
        .unwrap();
    assert!(store.member("c1", "bob").await.unwrap().is_none());
    assert!(store.user_conversations("bob").await.unwrap().is_empty());
    store
        .apply(vec![one(
            "c1",
            5,
            Mutation::UpdateConversation {
                name: Some("renamed".into()),
                description: None,
            },
        )])
        .await
        .unwrap();
    let c = store.conversation("c1").await.unwrap().unwrap();
    assert_eq!((c.name.as_deref(), c.last_seq), (Some("renamed"), 5));
}

async fn events_apply_once(store: &dyn Store) {
    store
        .apply(vec![create("c2", 10, &[("ann", "owner")])])
        .await
        .unwrap();
    let first = store
        .apply(vec![
            post("c2", 11, "ann", "x1"),
            post("c2", 12, "ann", "x2"),
        ])
        .await
        .unwrap();
    assert_eq!(first, vec![true, true]);
    // A redelivered batch, and an older event, change nothing.
    let again = store
        .apply(vec![
            post("c2", 11, "ann", "x1"),
            post("c2", 12, "ann", "x2"),
        ])
        .await
        .unwrap();
    assert_eq!(again, vec![false, false]);
    let older = store
        .apply(vec![one(
            "c2",
            11,
            Mutation::EditMessage {
                seq: 12,
                body: "late".into(),
                sealed: None,
            },
        )])
        .await
        .unwrap();
    assert_eq!(older, vec![false]);
    let page = store
        .messages(
            "c2",
            Page {
                limit: 10,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![11, 12]
    );
    assert_eq!(page.messages[1].body.as_deref(), Some("body 12"));
    assert_eq!(
        store
            .conversation("c2")
            .await
            .unwrap()
            .unwrap()
            .last_message_seq,
        Some(12)
    );
}

async fn history_pages(store: &dyn Store) {
    let mut batch = vec![create("c3", 0, &[("ann", "owner")])];
    // Seqs are not dense: every third offset.
    batch.extend((1..=30).map(|i| post("c3", i * 3, "ann", &format!("h{i}"))));
    store.apply(batch).await.unwrap();
    let seqs = |p: &crate::MessagePage| p.messages.iter().map(|m| m.seq).collect::<Vec<_>>();

    let latest = store
        .messages(
            "c3",
            Page {
                limit: 5,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(seqs(&latest), vec![78, 81, 84, 87, 90]);
    assert!(latest.has_more);
    let older = store
        .messages(
            "c3",
            Page {
                before: Some(78),
                limit: 5,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(seqs(&older), vec![63, 66, 69, 72, 75]);
    let first = store
        .messages(
            "c3",
            Page {
                before: Some(7),
                limit: 5,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((seqs(&first), first.has_more), (vec![3, 6], false));
    let after = store
        .messages(
            "c3",
            Page {
                after: Some(-1),
                limit: 4,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((seqs(&after), after.has_more), (vec![3, 6, 9, 12], true));
    let tail = store
        .messages(
            "c3",
            Page {
                after: Some(84),
                limit: 4,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((seqs(&tail), tail.has_more), (vec![87, 90], false));
    let window = store
        .messages(
            "c3",
            Page {
                after: Some(10),
                before: Some(20),
                limit: 50,
            },
        )
        .await
        .unwrap();
    assert_eq!(seqs(&window), vec![12, 15, 18]);
    let empty = store
        .messages(
            "c3",
            Page {
                after: Some(20),
                before: Some(10),
                limit: 50,
            },
        )
        .await
        .unwrap();
    assert!(empty.messages.is_empty());
    let none = store
        .messages(
            "nope",
            Page {
                limit: 5,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert!(none.messages.is_empty() && !none.has_more);
}

async fn retried_sends_are_one_message(store: &dyn Store) {
    store
        .apply(vec![create(
            "c4",
            0,
            &[("ann", "owner"), ("bob", "member")],
        )])
        .await
        .unwrap();
    store
        .apply(vec![
            post("c4", 1, "ann", "same"),
            post("c4", 2, "ann", "same"),
            post("c4", 3, "bob", "same"),
        ])
        .await
        .unwrap();
    let page = store
        .messages(
            "c4",
            Page {
                limit: 10,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!(
        store
            .message_by_client_id("c4", "ann", "same")
            .await
            .unwrap()
            .unwrap()
            .seq,
        1
    );
    assert_eq!(
        store
            .message_by_client_id("c4", "bob", "same")
            .await
            .unwrap()
            .unwrap()
            .seq,
        3
    );
    assert!(
        store
            .message_by_client_id("c4", "ann", "other")
            .await
            .unwrap()
            .is_none()
    );
    // Ids that contain the separator do not collide.
    store
        .apply(vec![post("c4", 4, "a#b", "c"), post("c4", 5, "a", "b#c")])
        .await
        .unwrap();
    assert_eq!(
        store
            .message_by_client_id("c4", "a", "b#c")
            .await
            .unwrap()
            .unwrap()
            .seq,
        5
    );
}

async fn edits_deletes_reactions(store: &dyn Store) {
    store
        .apply(vec![
            create("c5", 0, &[("ann", "owner"), ("bob", "member")]),
            post("c5", 1, "ann", "e1"),
        ])
        .await
        .unwrap();
    store
        .apply(vec![
            one(
                "c5",
                2,
                Mutation::EditMessage {
                    seq: 1,
                    body: "edited".into(),
                    sealed: None,
                },
            ),
            one(
                "c5",
                3,
                Mutation::AddReaction {
                    seq: 1,
                    emoji: "👍".into(),
                    user_id: "bob".into(),
                },
            ),
            one(
                "c5",
                4,
                Mutation::AddReaction {
                    seq: 1,
                    emoji: "👍".into(),
                    user_id: "ann".into(),
                },
            ),
            one(
                "c5",
                5,
                Mutation::AddReaction {
                    seq: 1,
                    emoji: "🎉".into(),
                    user_id: "bob".into(),
                },
            ),
            one(
                "c5",
                6,
                Mutation::RemoveReaction {
                    seq: 1,
                    emoji: "🎉".into(),
                    user_id: "bob".into(),
                },
            ),
        ])
        .await
        .unwrap();
    let m = store.message("c5", 1).await.unwrap().unwrap();
    assert_eq!(
        (m.body.as_deref(), m.edited_at),
        (Some("edited"), Some(1_002))
    );
    assert_eq!((m.pinned_by, m.pinned_at), (None, None));
    pins(store).await;
    assert_eq!(m.reactions.len(), 1);
    assert_eq!(
        m.reactions["👍"],
        vec!["bob".to_string(), "ann".to_string()]
    );
    store
        .apply(vec![one("c5", 7, Mutation::DeleteMessage { seq: 1 })])
        .await
        .unwrap();
    let m = store.message("c5", 1).await.unwrap().unwrap();
    assert!(m.deleted && m.body.is_none() && m.reactions.is_empty());
    assert_eq!(m.seq, 1, "a tombstone keeps its seq");
    assert_eq!(m.pinned_by, None, "a deleted message is no longer pinned");
    let c = store.conversation("c5").await.unwrap().unwrap();
    assert_eq!(c.pinned, Vec::<i64>::new());
}

fn pin(cid: &str, seq: i64, message: i64, pinned: bool, by: &str) -> EventWrite {
    one(
        cid,
        seq,
        Mutation::PinMessage {
            seq: message,
            pinned,
            user_id: by.into(),
        },
    )
}

/// Pinning and unpinning, in a conversation of its own.
async fn pins(store: &dyn Store) {
    store
        .apply(vec![
            create("c8", 0, &[("ann", "owner"), ("bob", "admin")]),
            post("c8", 1, "ann", "p1"),
            post("c8", 2, "ann", "p2"),
            pin("c8", 3, 1, true, "ann"),
            pin("c8", 4, 2, true, "bob"),
            pin("c8", 5, 1, true, "bob"),
            pin("c8", 6, 99, true, "ann"),
        ])
        .await
        .unwrap();
    let c = store.conversation("c8").await.unwrap().unwrap();
    assert_eq!(
        c.pinned,
        vec![1, 2],
        "most recently pinned first, once each; a missing message is not pinned"
    );
    let m = store.message("c8", 1).await.unwrap().unwrap();
    assert_eq!(
        (m.pinned_by.as_deref(), m.pinned_at),
        (Some("bob"), Some(1_005))
    );
    store
        .apply(vec![pin("c8", 7, 1, false, "ann")])
        .await
        .unwrap();
    let c = store.conversation("c8").await.unwrap().unwrap();
    assert_eq!(c.pinned, vec![2]);
    let m = store.message("c8", 1).await.unwrap().unwrap();
    assert_eq!((m.pinned_by, m.pinned_at), (None, None));
    // Replayed: nothing changes.
    store
        .apply(vec![pin("c8", 4, 2, false, "bob")])
        .await
        .unwrap();
    assert_eq!(
        store.conversation("c8").await.unwrap().unwrap().pinned,
        vec![2]
    );
}

async fn receipts_and_cursors(store: &dyn Store) {
    store
        .apply(vec![
            create("c6", 0, &[("ann", "owner"), ("bob", "member")]),
            post("c6", 1, "ann", "r1"),
        ])
        .await
        .unwrap();
    let bob = store.member("c6", "bob").await.unwrap().unwrap();
    assert_eq!((bob.last_read_seq, bob.last_delivered_seq), (-1, -1));
    store
        .apply(vec![
            one(
                "c6",
                2,
                Mutation::MarkDelivered {
                    user_id: "bob".into(),
                    device_id: "phone".into(),
                    seq: 1,
                },
            ),
            one(
                "c6",
                3,
                Mutation::MarkRead {
                    user_id: "bob".into(),
                    seq: 1,
                },
            ),
            one(
                "c6",
                4,
                Mutation::MarkRead {
                    user_id: "bob".into(),
                    seq: 0,
                },
            ),
        ])
        .await
        .unwrap();
    let bob = store.member("c6", "bob").await.unwrap().unwrap();
    assert_eq!(
        (bob.last_read_seq, bob.last_delivered_seq),
        (1, 1),
        "read never goes backwards"
    );
    let phone = store.device("bob", "phone").await.unwrap().unwrap();
    assert_eq!(phone.cursors.get("c6"), Some(&1));
    assert!(store.device("bob", "laptop").await.unwrap().is_none());
}

async fn events_of_unknown_conversations_leave_nothing(store: &dyn Store) {
    store
        .apply(vec![post("ghost", 5, "ann", "g1")])
        .await
        .unwrap();
    assert!(store.conversation("ghost").await.unwrap().is_none());
    assert!(store.message("ghost", 5).await.unwrap().is_none());
}
