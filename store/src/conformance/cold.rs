//! The store's side of the cold tier: the cold index, conditional removal
//! of hot copies, the sweep's list of conversations, and events that
//! change an archived message.

use super::{create, one, post};
use crate::{ColdIndex, ColdSegment, Mutation, Store, StoreError};

pub(super) async fn cold_tier_items(store: &dyn Store) {
    let cid = "c-cold";
    let mut events = vec![create(cid, 100, &[("ann", "owner")])];
    events.extend((101..=104).map(|seq| post(cid, seq, "ann", &format!("k{seq}"))));
    store.apply(events).await.unwrap();

    assert_eq!(store.cold_index(cid).await.unwrap(), None);
    let index = ColdIndex {
        through_seq: 103,
        segments: vec![ColdSegment {
            bucket: 0,
            first_seq: 101,
            last_seq: 103,
            messages: 3,
            version: 1,
        }],
    };
    store.put_cold_index(cid, &index).await.unwrap();
    assert_eq!(store.cold_index(cid).await.unwrap(), Some(index));

    let ids = store.conversation_ids().await.unwrap();
    assert!(
        ids.contains(&cid.to_owned()) && ids.contains(&"c1".to_owned()),
        "{ids:?}"
    );
    assert!(
        !ids.iter()
            .any(|id| id.starts_with("USER#") || id.is_empty())
    );

    // Only unchanged copies go: 102 is edited after it was read.
    let read: Vec<_> = futures::future::join_all((101..=103).map(|s| store.message(cid, s)))
        .await
        .into_iter()
        .map(|m| m.unwrap().unwrap())
        .collect();
    let edit = |seq, target, body: &str| {
        one(
            cid,
            seq,
            Mutation::EditMessage {
                seq: target,
                body: body.into(),
                sealed: None,
            },
        )
    };
    store.apply(vec![edit(105, 102, "changed")]).await.unwrap();
    assert_eq!(store.drop_hot(cid, &read).await.unwrap(), 2);
    assert_eq!(store.message(cid, 101).await.unwrap(), None);
    assert_eq!(
        store
            .message(cid, 102)
            .await
            .unwrap()
            .unwrap()
            .body
            .as_deref(),
        Some("changed")
    );
    assert_eq!(
        store.drop_hot(cid, &read).await.unwrap(),
        0,
        "nothing left to drop"
    );
    // A retried send of an archived message is still recognised.
    assert_eq!(
        store.client_message_seq(cid, "ann", "k101").await.unwrap(),
        Some(101)
    );

    // Changing an archived message asks for it first...
    match store.apply(vec![edit(106, 101, "late edit")]).await {
        Err(StoreError::Cold {
            conversation_id,
            seq,
        }) => {
            assert_eq!((conversation_id.as_str(), seq), (cid, 101));
        }
        other => panic!("expected the message to be cold, got {other:?}"),
    }
    assert_eq!(
        store.conversation(cid).await.unwrap().unwrap().last_seq,
        105
    );
    // ...and applies once it is restored.
    let mut restored = edit(106, 101, "late edit");
    restored.mutations.insert(
        0,
        Mutation::RestoreMessage {
            seq: 101,
            message: Some(Box::new(read[0].clone())),
        },
    );
    assert_eq!(store.apply(vec![restored]).await.unwrap(), vec![true]);
    let m = store.message(cid, 101).await.unwrap().unwrap();
    assert_eq!(
        (m.body.as_deref(), m.message_id.as_str()),
        (Some("late edit"), "m101")
    );
    // A message the archive does not have either: the change is a no-op.
    let mut missing = edit(107, 103, "lost");
    missing.mutations.insert(
        0,
        Mutation::RestoreMessage {
            seq: 103,
            message: None,
        },
    );
    assert_eq!(store.apply(vec![missing]).await.unwrap(), vec![true]);
    assert_eq!(store.message(cid, 103).await.unwrap(), None);
    // Above the index's watermark a missing message is simply missing.
    store.apply(vec![edit(108, 200, "nothing")]).await.unwrap();
}
