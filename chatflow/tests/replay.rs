#![allow(clippy::unwrap_used)]
//! Rebuilding read models from the log: traffic of every kind, part of the
//! log in the event-log archive, then `chatflow replay` of the store and of
//! the index into fresh targets (archive first, then the broker), one of
//! them stopped halfway and resumed, one killed with SIGKILL and run again;
//! `chatflow verify` finds them identical to the live models, and finds a
//! deliberately changed target different. Part of the log was written by
//! a producer of the previous release (ChatEvent v1): it decodes and
//! replays to the same model.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Api, Chatflow, chatflow, post, text};
use serde_json::json;

/// A conversation as a producer of the previous release writes it:
/// ChatEvent v1 records (framed with id 1), straight onto `chat.events`.
async fn write_v1_conversation(kafka: std::net::SocketAddr, cid: &str) {
    use schemas::{
        Actor, ChatEvent, Codec, ConversationCreated, MemberSpec, MessagePosted, Payload,
        ReactionAdded, ReadUpTo, VERSIONS,
    };
    let producer = streams::Producer::new(&streams::KafkaConfig::new(kafka.to_string())).unwrap();
    let by = |user: &str, payload| ChatEvent {
        event_id: ulid::Ulid::new().to_string(),
        conversation_id: cid.into(),
        occurred_at: schemas::now_millis(),
        actor: Actor {
            user_id: user.into(),
            device_id: "old-app".into(),
        },
        payload,
    };
    let member = |user: &str, role: &str| MemberSpec {
        user_id: user.into(),
        role: role.into(),
    };
    let created = by(
        "ann",
        Payload::ConversationCreated(ConversationCreated {
            kind: "group".into(),
            name: Some("from v1".into()),
            description: None,
            members: vec![member("ann", "owner"), member("bob", "member")],
        }),
    );
    let codec = Codec::new();
    let v1 = VERSIONS[0];
    let send = |event: ChatEvent| {
        let bytes = codec.encode_version(&event, v1).unwrap();
        assert_eq!(bytes[..5], [0, 0, 0, 0, 1]);
        let producer = &producer;
        async move {
            producer
                .send("chat.events", cid.as_bytes(), &bytes, None)
                .await
                .unwrap()
                .1
        }
    };
    send(created).await;
    let posted = send(by(
        "ann",
        Payload::MessagePosted(MessagePosted {
            message_id: ulid::Ulid::new().to_string(),
            client_msg_id: "v1-m1".into(),
            body: "written by v1".into(),
            reply_to: None,
            mentions: vec![],
            silent: false,
            attachments: Vec::new(),
            sealed: None,
        }),
    ))
    .await;
    send(by(
        "bob",
        Payload::ReactionAdded(ReactionAdded {
            seq: posted,
            emoji: "🎉".into(),
        }),
    ))
    .await;
    // {seq} like MessageDeleted: it must stay a read receipt.
    send(by("bob", Payload::ReadUpTo(ReadUpTo { seq: posted }))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_store_and_index_verify_identical_to_live() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let extra = [
        "--rate",
        "10000",
        "--rate-burst",
        "10000",
        "--archive-segment-records",
        "25",
        "--archive-flush",
        "100ms",
    ];
    let mut cf = Chatflow::start_with(&data, &extra).await;
    let (ann, bob) = (
        Api::new(&cf, &cf.token("ann").await),
        Api::new(&cf, &cf.token("bob").await),
    );
    // Every kind of event: conversations, members and roles, posts,
    // edits, deletes, reactions, receipts, renames, leaving.
    let group = ann.create_group(&["bob", "cy"]).await;
    let (status, direct) = ann
        .post(
            "/v1/conversations",
            json!({"kind": "direct", "members": ["bob"]}),
        )
        .await;
    assert_eq!(status, 201, "{direct}");
    let direct = direct["conversation_id"].as_str().unwrap().to_owned();
    write_v1_conversation(cf.kafka, "v1-era").await;
    let mut seqs = Vec::new();
    for i in 0..60 {
        let (api, cid) = if i % 3 == 0 {
            (&bob, &direct)
        } else {
            (&ann, &group)
        };
        seqs.push((
            cid.clone(),
            post(
                api,
                cid,
                &format!("m{i}"),
                json!({"body": format!("message {i} über ☕")}),
            )
            .await,
        ));
    }
    let calls = [
        (
            "PATCH",
            format!("/v1/conversations/{group}/messages/{}", seqs[1].1),
            Some(json!({"body": "edited"})),
        ),
        (
            "DELETE",
            format!("/v1/conversations/{group}/messages/{}", seqs[2].1),
            None,
        ),
        (
            "PUT",
            format!(
                "/v1/conversations/{group}/messages/{}/reactions/%F0%9F%91%8D",
                seqs[4].1
            ),
            None,
        ),
        (
            "POST",
            format!("/v1/conversations/{group}/read"),
            Some(json!({"seq": seqs[10].1})),
        ),
        (
            "PUT",
            format!("/v1/conversations/{group}/members/bob/role"),
            Some(json!({"role": "admin"})),
        ),
        (
            "PATCH",
            format!("/v1/conversations/{group}"),
            Some(json!({"name": "renamed"})),
        ),
        (
            "DELETE",
            format!("/v1/conversations/{group}/members/cy"),
            None,
        ),
        // v2: a pin, and a silent message.
        (
            "PUT",
            format!("/v1/conversations/{group}/messages/{}/pin", seqs[7].1),
            None,
        ),
        (
            "POST",
            format!("/v1/conversations/{group}/messages"),
            Some(json!({"client_msg_id": "quiet", "body": "shh", "silent": true})),
        ),
        (
            "POST",
            "/v1/conversations/v1-era/messages".into(),
            Some(json!({"client_msg_id": "v2-m1", "body": "written by v2"})),
        ),
    ];
    for (method, path, body) in calls {
        let (status, answer) = ann.call(method, &path, body).await;
        assert!(status < 300, "{method} {path}: {status} {answer}");
    }
    let (status, answer) = bob
        .post(
            &format!("/v1/conversations/{direct}/read"),
            json!({"seq": seqs[57].1}),
        )
        .await;
    assert!(status < 300, "{answer}");
    // The v1 records, as the live model has them.
    let (status, history) = bob.get("/v1/conversations/v1-era/messages").await;
    assert_eq!(status, 200, "{history}");
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{history}");
    assert_eq!(messages[0]["body"], "written by v1");
    assert_eq!(messages[0]["reactions"]["🎉"], json!(["bob"]));
    assert_eq!(
        messages[0]["deleted"], false,
        "a v1 read receipt is not a delete"
    );
    let (_, details) = ann.get(&format!("/v1/conversations/{group}")).await;
    assert_eq!(details["pinned"], json!([seqs[7].1]), "{details}");

    // Part of the log is in the archive (segments of 25).
    let started = Instant::now();
    while chatflow(&["archive", "ls"], &data, None).stdout.is_empty()
        || !text(&chatflow(&["archive", "ls"], &data, None)).contains("+00000000000000000025.avro")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing archived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The store, in two runs: stopped after 40 events, then resumed.
    let first = chatflow(
        &[
            "replay",
            "persister",
            "--into",
            "fjall://rebuilt-store",
            "--batch",
            "10",
            "--max-events",
            "40",
        ],
        &data,
        Some(cf.kafka),
    );
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("stopped at --max-events"),
        "{}",
        text(&first)
    );
    let second = chatflow(
        &["replay", "persister", "--into", "fjall://rebuilt-store"],
        &data,
        Some(cf.kafka),
    );
    assert!(second.status.success(), "{}", text(&second));
    assert!(text(&second).contains("resuming"), "{}", text(&second));
    assert!(
        text(&second).contains("from the archive"),
        "{}",
        text(&second)
    );

    // The index, killed with SIGKILL once it has a checkpoint, then again.
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatflow"))
        .args([
            "replay",
            "indexer",
            "--into",
            "tantivy://rebuilt-search",
            "--batch",
            "1",
        ])
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--kafka-listen",
            &cf.kafka.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let checkpoint = data.join("replay/indexer-tantivy___rebuilt_search.json");
    let started = Instant::now();
    while !checkpoint.exists() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let again = chatflow(
        &["replay", "indexer", "--into", "tantivy://rebuilt-search"],
        &data,
        Some(cf.kafka),
    );
    assert!(again.status.success(), "{}", text(&again));

    // The live store and index are this process's: stop it to compare.
    assert!(cf.stop().await.success());
    let verify = |model: &'static str, rebuilt: &'static str, live: &'static str| {
        let out = chatflow(&["verify", model, rebuilt, "--against", live], &data, None);
        (out.status.success(), text(&out))
    };
    let (ok, report) = verify("persister", "fjall://rebuilt-store", "fjall://store");
    assert!(
        ok && report.contains("3 conversations identical"),
        "{report}"
    );
    let (ok, report) = verify("indexer", "tantivy://rebuilt-search", "tantivy://search");
    assert!(ok, "{report}");

    // A target changed behind the log's back is caught, naming the message.
    {
        let rebuilt = store::open(&format!("fjall://{}", data.join("rebuilt-store").display()))
            .await
            .unwrap();
        // A message lost from the target (its seq stays applied).
        let lost = rebuilt.message(&group, seqs[5].1).await.unwrap().unwrap();
        assert_eq!(rebuilt.drop_hot(&group, &[lost]).await.unwrap(), 1);
    }
    let (ok, report) = verify("persister", "fjall://rebuilt-store", "fjall://store");
    assert!(!ok, "{report}");
    assert!(report.contains(&format!("{group}: message #")), "{report}");
    // (Bodies are sealed: the report names the message by its ids.)
    assert!(report.contains("client_msg_id: \"m5\""), "{report}");
}
