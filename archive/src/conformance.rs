//! What every [`Archive`] backend must do, run by each backend's tests:
//! `archive::conformance::run(archive).await`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;

use crate::{Archive, ArchiveError, ObjectInfo};

pub async fn run(archive: Arc<dyn Archive>) {
    round_trip_and_replace(&*archive).await;
    missing_objects(&*archive).await;
    sizes(&*archive).await;
    created_once(archive.clone()).await;
    listing_by_prefix(&*archive).await;
    bad_keys_are_refused(&*archive).await;
    large_and_concurrent(archive).await;
}

const SEGMENT: &str = "topics/chat.events/partition=0/chat.events+0+00000000000000000000.avro";

async fn round_trip_and_replace(a: &dyn Archive) {
    a.put(SEGMENT, Bytes::from_static(b"first")).await.unwrap();
    assert_eq!(
        a.get(SEGMENT).await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    // A rewrite replaces the object whole (a redelivered segment).
    a.put(SEGMENT, Bytes::from_static(b"second, longer"))
        .await
        .unwrap();
    assert_eq!(
        a.get(SEGMENT).await.unwrap().as_deref(),
        Some(&b"second, longer"[..])
    );
    a.put("empty", Bytes::new()).await.unwrap();
    assert_eq!(a.get("empty").await.unwrap().as_deref(), Some(&b""[..]));
    a.delete("empty").await.unwrap();
}

async fn missing_objects(a: &dyn Archive) {
    assert_eq!(a.get("never/written").await.unwrap(), None);
    a.delete("never/written").await.unwrap();
    a.put("gone", Bytes::from_static(b"x")).await.unwrap();
    a.delete("gone").await.unwrap();
    assert_eq!(a.get("gone").await.unwrap(), None);
    a.delete("gone").await.unwrap();
}

async fn sizes(a: &dyn Archive) {
    assert_eq!(a.head("never/written").await.unwrap(), None);
    a.put("sized/object", Bytes::from(vec![7u8; 1234]))
        .await
        .unwrap();
    assert_eq!(a.head("sized/object").await.unwrap(), Some(1234));
    a.put("sized/empty", Bytes::new()).await.unwrap();
    assert_eq!(a.head("sized/empty").await.unwrap(), Some(0));
    assert!(matches!(
        a.head("../etc/passwd").await,
        Err(ArchiveError::InvalidKey(_))
    ));
    a.delete("sized/object").await.unwrap();
    a.delete("sized/empty").await.unwrap();
    assert_eq!(a.head("sized/object").await.unwrap(), None);
}

async fn created_once(a: Arc<dyn Archive>) {
    assert!(
        a.put_if_absent("once/k", Bytes::from_static(b"first"))
            .await
            .unwrap()
    );
    assert!(
        !a.put_if_absent("once/k", Bytes::from_static(b"second"))
            .await
            .unwrap()
    );
    assert_eq!(
        a.get("once/k").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    a.delete("once/k").await.unwrap();
}

/// Racing `put_if_absent` calls: exactly one wins, and the object is the
/// winner's. Run by the directory backend's tests; S3 promises it too,
/// but s3s-fs (the S3 server of the tests) checks and writes in two
/// steps, so against it two racers can both win.
pub async fn created_once_under_a_race(a: Arc<dyn Archive>) {
    let racers: Vec<_> = (0..8u8)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move {
                (
                    i,
                    a.put_if_absent("once/race", Bytes::from(vec![i; 64]))
                        .await
                        .unwrap(),
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for r in racers {
        let (i, won) = r.await.unwrap();
        if won {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        a.get("once/race").await.unwrap().unwrap().to_vec(),
        vec![winners[0]; 64]
    );
    a.delete("once/race").await.unwrap();
}

async fn listing_by_prefix(a: &dyn Archive) {
    let keys = [
        "cold/c2/2026-11.seg",
        "cold/c1/2026-10.seg",
        "cold/c1/2026-11.seg",
        "cold/c10/2026-09.seg",
    ];
    for (i, key) in keys.iter().enumerate() {
        a.put(key, Bytes::from(vec![b'x'; i + 1])).await.unwrap();
    }
    let c1 = a.list("cold/c1/").await.unwrap();
    assert_eq!(
        c1,
        vec![
            ObjectInfo {
                key: "cold/c1/2026-10.seg".into(),
                size: 2
            },
            ObjectInfo {
                key: "cold/c1/2026-11.seg".into(),
                size: 3
            },
        ]
    );
    // A prefix that is not a whole segment matches the start of a key.
    let names: Vec<String> = a
        .list("cold/c1")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        names,
        [
            "cold/c1/2026-10.seg",
            "cold/c1/2026-11.seg",
            "cold/c10/2026-09.seg"
        ]
    );
    let all = a.list("").await.unwrap();
    assert!(all.windows(2).all(|w| w[0].key < w[1].key), "in key order");
    assert!(all.iter().any(|o| o.key == SEGMENT));
    assert!(a.list("nothing/here/").await.unwrap().is_empty());
}

async fn bad_keys_are_refused(a: &dyn Archive) {
    for key in [
        "", "/abs", "a//b", "../up", "a/../b", "a/./b", "sp ace", "a\\b", "ü",
    ] {
        let refused = a.put(key, Bytes::from_static(b"x")).await;
        assert!(
            matches!(refused, Err(ArchiveError::InvalidKey(_))),
            "{key:?}: {refused:?}"
        );
        assert!(matches!(a.get(key).await, Err(ArchiveError::InvalidKey(_))));
    }
    assert!(matches!(
        a.list("../").await,
        Err(ArchiveError::InvalidKey(_))
    ));
}

async fn large_and_concurrent(a: Arc<dyn Archive>) {
    let big = Bytes::from(
        (0..6 * 1024 * 1024)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    a.put("big/object", big.clone()).await.unwrap();
    assert_eq!(a.get("big/object").await.unwrap(), Some(big));
    let writes: Vec<_> = (0..16)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move {
                let key = format!("many/{i:02}");
                a.put(&key, Bytes::from(key.clone().into_bytes())).await
            })
        })
        .collect();
    for w in writes {
        w.await.unwrap().unwrap();
    }
    let many = a.list("many/").await.unwrap();
    assert_eq!(many.len(), 16);
    for o in many {
        let bytes = a.get(&o.key).await.unwrap().unwrap();
        assert_eq!(bytes, o.key.as_bytes());
    }
}
