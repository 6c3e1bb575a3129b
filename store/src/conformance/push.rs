//! What the notifier reads and writes: a user's devices, and its ledger of
//! pushes sent.

use super::one;
use crate::{Mutation, Store};

pub(super) async fn devices_and_the_push_ledger(store: &dyn Store) {
    let register = |seq, device: &str, token: Option<&str>| {
        one(
            "user:pat",
            seq,
            Mutation::PutDevice {
                user_id: "pat".into(),
                device_id: device.into(),
                platform: "ios".into(),
                push_token: token.map(str::to_owned),
            },
        )
    };
    store
        .apply(vec![
            register(1, "phone", Some("t1")),
            register(2, "laptop", None),
        ])
        .await
        .unwrap();
    let mut devices = store.devices("pat").await.unwrap();
    devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    let seen: Vec<_> = devices
        .iter()
        .map(|d| (d.device_id.as_str(), d.push_token.as_deref()))
        .collect();
    assert_eq!(seen, vec![("laptop", None), ("phone", Some("t1"))]);
    assert!(store.devices("nobody").await.unwrap().is_empty());

    assert_eq!(store.push_sent("pat", "phone", "g:1").await.unwrap(), None);
    store.set_push_sent("pat", "phone", "g:1", 9).await.unwrap();
    store
        .set_push_sent("pat", "phone", "g:1", 40)
        .await
        .unwrap();
    // Never back: a redelivered older window leaves it where it is.
    store
        .set_push_sent("pat", "phone", "g:1", 12)
        .await
        .unwrap();
    assert_eq!(
        store.push_sent("pat", "phone", "g:1").await.unwrap(),
        Some(40)
    );
    assert_eq!(store.push_sent("pat", "phone", "g:2").await.unwrap(), None);
    assert_eq!(store.push_sent("pat", "laptop", "g:1").await.unwrap(), None);
    // The ledger is not a device.
    assert_eq!(store.devices("pat").await.unwrap().len(), 2);
}
