#![allow(clippy::unwrap_used)]
//! One message's whole path through the real binary, across a restart.

mod common;

use common::{Api, Chatflow, Ws};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn events_of(frames: &[Value], seq: i64) -> usize {
    frames
        .iter()
        .filter(|f| f["type"] == "event" && f["seq"] == seq)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_travels_the_whole_spine_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cf = Chatflow::start(&dir.path().join("data")).await;
    let (ta, tb, tc) = (
        cf.token("alice").await,
        cf.token("bob").await,
        cf.token("carol").await,
    );
    let (a, b, c) = (Api::new(&cf, &ta), Api::new(&cf, &tb), Api::new(&cf, &tc));
    let cid = a.create_group(&["bob", "carol"]).await;

    let mut wa = Ws::connect(&cf, &ta, "a-phone").await;
    let mut wb = Ws::connect(&cf, &tb, "b-phone").await;
    // Both sockets are live once their resume is answered.
    wa.send(json!({"type": "resume", "cursors": {}})).await;
    wa.until("resumed").await;
    wb.send(json!({"type": "resume", "cursors": {}})).await;
    wb.until("resumed").await;

    wa.send(json!({"type": "send", "conversation_id": cid, "client_msg_id": "hello-1", "body": "hello, spine"})).await;
    let (ack, _) = wa.until("ack").await;
    assert_eq!(ack["client_msg_id"], "hello-1");
    let seq = ack["seq"].as_i64().expect("ack carries seq");
    assert!(seq >= 1, "the create event comes first");

    let (event, _) = wb.until("event").await;
    let event = if event["kind"] == "message_posted" {
        event
    } else {
        wb.until("event").await.0
    };
    assert_eq!(event["kind"], "message_posted");
    assert_eq!(
        (event["seq"].as_i64(), event["conversation_id"].as_str()),
        (Some(seq), Some(cid.as_str()))
    );
    assert_eq!(event["actor_id"], "alice");
    assert_eq!(event["data"]["body"], "hello, spine");

    for api in [&a, &b, &c] {
        let history = api.history(&cid).await;
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(
            (history[0]["seq"].as_i64(), history[0]["body"].as_str()),
            (Some(seq), Some("hello, spine"))
        );
        assert_eq!(history[0]["sender_id"], "alice");
    }

    // Carol was offline: she resumes from nothing and gets it exactly once.
    let mut wc = Ws::connect(&cf, &tc, "c-laptop").await;
    wc.send(json!({"type": "resume", "cursors": {cid.clone(): -1}}))
        .await;
    let (_, got) = wc.until("resumed").await;
    wc.send(json!({"type": "ping"})).await;
    let (_, more) = wc.until("pong").await;
    assert_eq!(
        events_of(&got, seq) + events_of(&more, seq),
        1,
        "{got:?} {more:?}"
    );
    assert_eq!(
        got.iter().find(|f| f["seq"] == seq).unwrap()["data"]["body"],
        "hello, spine"
    );

    // Resuming from the message's own seq sends nothing again.
    wc.send(json!({"type": "resume", "cursors": {cid.clone(): seq}}))
        .await;
    let (resumed, got) = wc.until("resumed").await;
    assert_eq!(events_of(&got, seq), 0);
    assert_eq!(resumed["events"], 0);

    // The pipeline reports itself in Prometheus format. The router's own
    // read of the log (its backstop behind the gateway's handover) counts
    // once its consumer group has joined, so this waits for it, bounded.
    let wanted = [
        "chatflow_stage_events_total{stage=\"persister\"}",
        "chatflow_stage_events_total{stage=\"router\"}",
        "chatflow_stage_batch_seconds_count{stage=\"router\"}",
        "chatflow_produce_seconds_count{topic=\"chat.events\"}",
        "chatflow_gateway_sockets_open 3",
        "chatflow_gateway_frames_in_total",
        "chatflow_gateway_frames_out_total",
        "chatflow_router_deliveries_total",
        "chatflow_router_events_total{source=\"ack\"}",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = cf.metrics().await;
        let missing: Vec<&str> = wanted
            .into_iter()
            .filter(|name| !metrics.contains(name))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics lacks {missing:?}:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    drop((wa, wb, wc));
    cf.restart().await;

    let history = Api::new(&cf, &tc).history(&cid).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["body"], "hello, spine");
    // The same send again is the same message, even after a restart.
    let (status, again) = a
        .post(
            &format!("/v1/conversations/{cid}/messages"),
            json!({"client_msg_id": "hello-1", "body": "hello, spine"}),
        )
        .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["seq"].as_i64(), Some(seq));
    assert_eq!(a.history(&cid).await.len(), 1);

    // The Kafka log holds it, read by chatflow tail…
    let tail = cf.cli(&["tail", "chat.events"]);
    let records: Vec<Value> = tail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let posted: Vec<&Value> = records
        .iter()
        .filter(|r| r["value"]["payload"]["type"] == "message_posted")
        .collect();
    assert_eq!(posted.len(), 1, "{tail}");
    assert_eq!(posted[0]["offset"].as_i64(), Some(seq));
    assert_eq!(posted[0]["key"], cid.as_str());
    // Sealed with alice's key before it reached the log (see `vault`):
    // operators' tools see ciphertext and the key's id.
    let payload = &posted[0]["value"]["payload"];
    assert!(payload["sealed"].is_string(), "{payload}");
    assert!(
        !payload["body"].as_str().unwrap().contains("hello"),
        "{payload}"
    );

    // …and by Confluent's own client with the built-in registry.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/confluent_decode.py");
    let out = std::process::Command::new("python3")
        .args([
            script,
            &cf.kafka.to_string(),
            &format!("http://{}", cf.registry),
            "chat.events",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "confluent-kafka: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let bodies: Vec<&Value> = decoded
        .iter()
        .filter_map(|d| d["value"]["payload"].get("body"))
        .collect();
    assert_eq!(bodies, vec![&payload["body"]], "{decoded:?}");

    let status = cf.stop().await;
    assert!(status.success());
}

/// Separate gateway processes receive through `chat.inbox.<node>`; the
/// all-in-one process can be told to take that path too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_travel_through_the_node_inbox_topic() {
    let dir = tempfile::tempdir().unwrap();
    let cf = Chatflow::start_with(&dir.path().join("data"), &["--local-delivery", "false"]).await;
    let (ta, tb) = (cf.token("alice").await, cf.token("bob").await);
    let cid = Api::new(&cf, &ta).create_group(&["bob"]).await;
    let mut wb = Ws::connect(&cf, &tb, "b-web").await;
    wb.send(json!({"type": "resume", "cursors": {}})).await;
    wb.until("resumed").await;
    // Bob's online presence reaches the router through chat.presence; send
    // until a message arrives live, then check it is the last one sent.
    let a = Api::new(&cf, &ta);
    let mut sent = Vec::new();
    let event = loop {
        let (status, ack) = a
            .post(
                &format!("/v1/conversations/{cid}/messages"),
                json!({"client_msg_id": format!("i{}", sent.len()), "body": "via inbox"}),
            )
            .await;
        assert_eq!(status, 201);
        sent.push(ack["seq"].as_i64().unwrap());
        let next = tokio::time::timeout(std::time::Duration::from_millis(1500), async {
            loop {
                let (event, _) = wb.until("event").await;
                if event["kind"] == "message_posted" {
                    return event;
                }
            }
        })
        .await;
        if let Ok(event) = next {
            break event;
        }
        assert!(sent.len() < 20, "no live delivery through the inbox");
    };
    assert_eq!(event["data"]["body"], "via inbox", "{event}");
    assert!(sent.contains(&event["seq"].as_i64().unwrap()));

    let tail = cf.cli(&["tail", "chat.inbox.node-1"]);
    let deliveries: Vec<Value> = tail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let d = deliveries
        .iter()
        .find(|d| d["value"]["seq"] == event["seq"])
        .expect("the delivery is on the inbox topic");
    assert_eq!(d["value"]["devices"], json!(["bob/b-web"]));
    // The inbox topic carries the event sealed; the gateway opened it
    // for the socket.
    assert_eq!(event["data"]["body"], "via inbox");
    assert!(d["value"]["event"]["payload"]["sealed"].is_string(), "{d}");
    assert_ne!(d["value"]["event"]["payload"]["body"], "via inbox");
}
