//! The audit log: entries by day, in order, filtered and paged; a replay
//! adds nothing.

use crate::{AuditQuery, EventWrite, Mutation, Store};

use super::{create, post};

const DAY: i64 = 86_400_000;

fn audited(
    cid: &str,
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    then: Mutation,
) -> EventWrite {
    EventWrite {
        conversation_id: cid.into(),
        seq,
        at,
        mutations: vec![
            Mutation::Audit {
                actor: actor.into(),
                action: action.into(),
                target: Some(target.into()),
                detail: None,
            },
            then,
        ],
    }
}

pub async fn the_audit_log(store: &dyn Store) {
    let cid = "audited";
    store
        .apply(vec![create(cid, 0, &[("ann", "owner"), ("bob", "member")])])
        .await
        .unwrap();
    store
        .apply(vec![post(cid, 1, "bob", "b1"), post(cid, 2, "ann", "a1")])
        .await
        .unwrap();
    let day0 = 20_000 * DAY;
    let events = vec![
        // Bob deleting his own message is not an administrative action.
        audited(
            cid,
            3,
            day0 + 10,
            "bob",
            "message_deleted",
            "1",
            Mutation::DeleteMessage { seq: 1 },
        ),
        audited(
            cid,
            4,
            day0 + 20,
            "ann",
            "role_changed",
            "bob",
            Mutation::PutMember {
                user_id: "bob".into(),
                role: "admin".into(),
            },
        ),
        // Root is not a member: a global admin.
        audited(
            cid,
            5,
            day0 + DAY + 5,
            "root",
            "message_deleted",
            "2",
            Mutation::DeleteMessage { seq: 2 },
        ),
        audited(
            cid,
            6,
            day0 + 3 * DAY,
            "ann",
            "member_removed",
            "bob",
            Mutation::RemoveMember {
                user_id: "bob".into(),
            },
        ),
    ];
    store.apply(events.clone()).await.unwrap();
    // Applied again (a redelivery, a replay): nothing changes.
    store.apply(events).await.unwrap();

    let query = |from: i64, to: i64| AuditQuery {
        from,
        to,
        limit: 10,
        ..AuditQuery::default()
    };
    let all = store.audit(&query(day0, day0 + 3 * DAY)).await.unwrap();
    let rows: Vec<_> = all
        .entries
        .iter()
        .map(|e| {
            (
                e.seq,
                e.actor.as_str(),
                e.action.as_str(),
                e.target.as_deref(),
                e.global_admin,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (4, "ann", "role_changed", Some("bob"), false),
            (5, "root", "message_deleted", Some("2"), true),
            (6, "ann", "member_removed", Some("bob"), false),
        ]
    );
    assert_eq!(all.next, None);
    assert_eq!(all.entries[0].at, day0 + 20);
    assert_eq!(all.entries[0].conversation_id, cid);

    // The range is inclusive at both ends, to the millisecond.
    let edge = store
        .audit(&query(day0 + 21, day0 + DAY + 5))
        .await
        .unwrap();
    assert_eq!(
        edge.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![5]
    );
    // Filters.
    let ann = store
        .audit(&AuditQuery {
            actor: Some("ann".into()),
            ..query(day0, day0 + 3 * DAY)
        })
        .await
        .unwrap();
    assert_eq!(
        ann.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![4, 6]
    );
    let deletes = store
        .audit(&AuditQuery {
            action: Some("message_deleted".into()),
            ..query(day0, day0 + 3 * DAY)
        })
        .await
        .unwrap();
    assert_eq!(
        deletes.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![5]
    );
    // Pages of 2, across days.
    let first = store
        .audit(&AuditQuery {
            limit: 2,
            ..query(day0, day0 + 3 * DAY)
        })
        .await
        .unwrap();
    assert_eq!(
        first.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![4, 5]
    );
    let second = store
        .audit(&AuditQuery {
            limit: 2,
            after: first.next.clone(),
            ..query(day0, day0 + 3 * DAY)
        })
        .await
        .unwrap();
    assert_eq!(
        second.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![6]
    );
    assert_eq!(second.next, None);
    // Nothing outside the range, nothing for an empty one.
    assert!(
        store
            .audit(&query(0, day0 - 1))
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    assert!(
        store
            .audit(&query(day0 + 1, day0))
            .await
            .unwrap()
            .entries
            .is_empty()
    );
}
