//! Analytics: messages per day per conversation kind, active users per day
//! and over a range, the busiest conversations; a replay adds nothing.

use crate::{EventWrite, Mutation, Store};

use super::create;

const DAY: i64 = 86_400_000;

fn at(cid: &str, seq: i64, at: i64, mutation: Mutation) -> EventWrite {
    EventWrite {
        conversation_id: cid.into(),
        seq,
        at,
        mutations: vec![mutation],
    }
}

fn post(cid: &str, seq: i64, when: i64, sender: &str) -> EventWrite {
    at(
        cid,
        seq,
        when,
        Mutation::PostMessage {
            message_id: format!("{cid}-{seq}"),
            sender_id: sender.into(),
            client_msg_id: format!("{cid}-{seq}"),
            body: "hi".into(),
            reply_to: None,
            mentions: vec![],
            attachments: Vec::new(),
            sealed: None,
        },
    )
}

pub async fn analytics(store: &dyn Store) {
    let d = 20_100;
    let t = d * DAY;
    let mut direct = create("stats-d", 0, &[("ann", "owner"), ("bob", "owner")]);
    if let Mutation::CreateConversation { kind, .. } = &mut direct.mutations[0] {
        *kind = "direct".into();
    }
    let events = vec![
        create(
            "stats-g",
            0,
            &[("ann", "owner"), ("bob", "member"), ("cy", "member")],
        ),
        direct,
        post("stats-g", 1, t + 1, "ann"),
        post("stats-g", 2, t + 2, "bob"),
        post("stats-d", 1, t + 3, "ann"),
        // A retried send (same client_msg_id) is one message.
        at(
            "stats-g",
            3,
            t + 4,
            Mutation::PostMessage {
                message_id: "x".into(),
                sender_id: "bob".into(),
                client_msg_id: "stats-g-2".into(),
                body: "hi".into(),
                reply_to: None,
                mentions: vec![],
                attachments: Vec::new(),
                sealed: None,
            },
        ),
        // The next day: cy reads, ann posts twice in the group.
        at(
            "stats-g",
            4,
            t + DAY,
            Mutation::MarkRead {
                user_id: "cy".into(),
                seq: 2,
            },
        ),
        post("stats-g", 5, t + DAY + 1, "ann"),
        post("stats-g", 6, t + DAY + 2, "ann"),
    ];
    store.apply(events.clone()).await.unwrap();
    store.apply(events).await.unwrap();

    let a = store.analytics(d, d + 1, 10).await.unwrap();
    let day = |i: usize| {
        (
            a.days[i].day,
            a.days[i].active_users,
            a.days[i].messages.clone().into_iter().collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        day(0),
        (
            d,
            2,
            vec![("direct".to_owned(), 1), ("group".to_owned(), 2)]
        )
    );
    assert_eq!(day(1), (d + 1, 2, vec![("group".to_owned(), 2)]));
    assert_eq!(a.active_users, 3, "ann, bob, cy");
    let top: Vec<_> = a
        .top_conversations
        .iter()
        .map(|c| (c.conversation_id.as_str(), c.kind.as_str(), c.messages))
        .collect();
    assert_eq!(top, vec![("stats-g", "group", 4), ("stats-d", "direct", 1)]);
    assert_eq!(
        store
            .analytics(d, d + 1, 1)
            .await
            .unwrap()
            .top_conversations
            .len(),
        1
    );
    let empty = store.analytics(d + 5, d + 6, 10).await.unwrap();
    assert_eq!(empty.active_users, 0);
    assert!(empty.days.iter().all(|d| d.messages.is_empty()));
}
