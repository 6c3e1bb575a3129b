use super::*;

fn vault() -> (tempfile::TempDir, Arc<Vault>) {
    let dir = tempfile::tempdir().unwrap();
    let archive = Arc::new(archive::FileArchive::open(dir.path().join("archive")).unwrap());
    let master = MasterKey::load_or_create(&dir.path().join("master-key")).unwrap();
    (dir, Arc::new(Vault::new(archive, master)))
}

fn posted(body: &str) -> MessagePosted {
    MessagePosted {
        message_id: "m".into(),
        client_msg_id: "c".into(),
        body: body.into(),
        reply_to: None,
        mentions: vec!["bob".into()],
        silent: false,
        attachments: vec![schemas::Attachment {
            id: "u1".into(),
            name: "secret plan.pdf".into(),
            content_type: "image/png".into(),
            size: 10,
            thumbnail: Some("iVBORw0KGgo=".into()),
        }],
        sealed: None,
    }
}

fn event(cid: &str, user: &str, payload: Payload) -> ChatEvent {
    ChatEvent {
        event_id: "e".into(),
        conversation_id: cid.into(),
        occurred_at: 1,
        actor: schemas::Actor {
            user_id: user.into(),
            device_id: "d".into(),
        },
        payload,
    }
}

fn stored(cid: &str, sender: &str, p: &MessagePosted) -> store::Message {
    store::Message {
        conversation_id: cid.into(),
        seq: 1,
        message_id: p.message_id.clone(),
        sender_id: sender.into(),
        client_msg_id: p.client_msg_id.clone(),
        body: Some(p.body.clone()),
        sent_at: 1,
        edited_at: None,
        deleted: false,
        reply_to: None,
        mentions: p.mentions.clone(),
        attachments: p.attachments.clone(),
        sealed: p.sealed.clone(),
        reactions: Default::default(),
        pinned_by: None,
        pinned_at: None,
    }
}

#[tokio::test]
async fn sealed_content_opens_for_readers_until_the_key_is_erased() {
    let (dir, vault) = vault();
    let mut p = posted("meet me at the zebra crossing");
    vault.seal_posted("alice", "g:1", &mut p).await.unwrap();
    assert!(!p.body.contains("zebra"));
    assert!(!p.attachments[0].name.contains("plan"));
    assert_ne!(p.attachments[0].thumbnail.as_deref(), Some("iVBORw0KGgo="));
    let key_id = p.sealed.clone().unwrap();

    // The live event, the stored message.
    let mut e = event("g:1", "alice", Payload::MessagePosted(p.clone()));
    vault.open_event(&mut e).await.unwrap();
    assert_eq!(
        e.payload,
        Payload::MessagePosted(posted("meet me at the zebra crossing"))
    );
    let mut now = event("g:1", "alice", Payload::MessagePosted(p.clone()));
    vault.open_event_now(&mut now);
    assert_eq!(now, e);
    let mut m = stored("g:1", "alice", &p);
    vault.open_message(&mut m).await.unwrap();
    assert_eq!(m.body.as_deref(), Some("meet me at the zebra crossing"));
    assert_eq!(m.attachments[0].name, "secret plan.pdf");
    assert_eq!(m.sealed, None);

    // Another conversation's associated data does not open it.
    let mut moved = stored("g:2", "alice", &p);
    vault.open_message(&mut moved).await.unwrap();
    assert_eq!(moved.body.as_deref(), Some(UNREADABLE));

    // Edits are sealed with the same key.
    let mut edit = MessageEdited {
        seq: 1,
        body: "zebra, no: the bridge".into(),
        sealed: None,
    };
    vault.seal_edited("alice", "g:1", &mut edit).await.unwrap();
    assert_eq!(edit.sealed.as_deref(), Some(key_id.as_str()));
    assert!(!edit.body.contains("zebra"));

    // Erased: everything sealed reads as erased, here and in a new vault
    // (another node, a replay) on the same storage.
    assert!(vault.erase("alice").await.unwrap());
    let mut m = stored("g:1", "alice", &p);
    vault.open_message(&mut m).await.unwrap();
    assert_eq!(m.body.as_deref(), Some(ERASED));
    assert!(m.attachments.is_empty() && m.mentions.is_empty());
    let again = Vault::new(
        Arc::new(archive::FileArchive::open(dir.path().join("archive")).unwrap()),
        MasterKey::load_or_create(&dir.path().join("master-key")).unwrap(),
    );
    let mut e = event("g:1", "alice", Payload::MessagePosted(p.clone()));
    again.open_event(&mut e).await.unwrap();
    let Payload::MessagePosted(opened) = &e.payload else {
        unreachable!()
    };
    assert_eq!(opened.body, ERASED);
    assert!(opened.attachments.is_empty());
    // No new key for an erased user.
    assert!(matches!(
        again.sealing_key("alice").await,
        Err(VaultError::Erased(_))
    ));
    // Nothing of the key is left in storage.
    let record = std::fs::read_to_string(
        dir.path()
            .join("archive/keys")
            .join(format!("{}.json", hex::encode("alice"))),
    )
    .unwrap();
    assert!(!record.contains("wrapped"), "{record}");
}

#[tokio::test]
async fn plaintext_written_before_sealing_reads_as_erased_once_its_sender_is() {
    let (_dir, vault) = vault();
    let p = posted("old plaintext");
    let mut m = stored("g:1", "bob", &p);
    vault.open_message(&mut m).await.unwrap();
    assert_eq!(m.body.as_deref(), Some("old plaintext"));
    vault.erase("bob").await.unwrap();
    let mut m = stored("g:1", "bob", &p);
    vault.open_message(&mut m).await.unwrap();
    assert_eq!(m.body.as_deref(), Some(ERASED));
    // A deleted message stays deleted.
    let mut gone = stored("g:1", "bob", &p);
    gone.deleted = true;
    gone.body = None;
    vault.open_message(&mut gone).await.unwrap();
    assert_eq!(gone.body, None);
}

#[tokio::test]
async fn racing_nodes_agree_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let archive: Arc<dyn Archive> =
        Arc::new(archive::FileArchive::open(dir.path().join("archive")).unwrap());
    let text = B64.encode([7u8; 32]);
    let nodes: Vec<Arc<Vault>> = (0..6)
        .map(|_| {
            Arc::new(Vault::new(
                archive.clone(),
                MasterKey::from_base64(&text).unwrap(),
            ))
        })
        .collect();
    let tasks: Vec<_> = nodes
        .iter()
        .map(|v| {
            let v = v.clone();
            tokio::spawn(async move { v.sealing_key("carol").await.unwrap().id.clone() })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    // What one node sealed, another opens.
    let mut p = posted("hi");
    nodes[0].seal_posted("carol", "d:1", &mut p).await.unwrap();
    let mut e = event("d:1", "carol", Payload::MessagePosted(p));
    nodes[5].open_event(&mut e).await.unwrap();
    assert_eq!(e.payload, Payload::MessagePosted(posted("hi")));
}

#[tokio::test]
async fn another_master_key_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let archive: Arc<dyn Archive> =
        Arc::new(archive::FileArchive::open(dir.path().join("archive")).unwrap());
    let one = Vault::new(
        archive.clone(),
        MasterKey::from_base64(&B64.encode([1u8; 32])).unwrap(),
    );
    one.sealing_key("dave").await.unwrap();
    let other = Vault::new(
        archive,
        MasterKey::from_base64(&B64.encode([2u8; 32])).unwrap(),
    );
    assert!(matches!(
        other.sealing_key("dave").await,
        Err(VaultError::Corrupt { .. })
    ));
    assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
    assert!(MasterKey::from_base64("not base64!").is_err());
}
