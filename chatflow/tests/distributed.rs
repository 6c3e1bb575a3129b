#![allow(clippy::unwrap_used)]
//! Distributed mode on one machine: the broker, a DynamoDB-API server, an
//! OpenSearch-API server and every stage as separate processes, two gateway
//! nodes. The persister, the router and the indexer (and the broker, with
//! NEMESIS_BROKER=1), each killed with SIGKILL mid-stream and started
//! again, lose nothing, duplicate nothing and reorder nothing; the indexer
//! process makes every message searchable from either node.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Api, Ws, dev_token, free_port, run_ok};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The deployment's master key (base64 of 32 bytes).
const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const SECRET: &str = "distributed-test-secret";
const MESSAGES: usize = 2000;
const SENDERS: usize = 4;

fn bin(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_chatflow")).parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: scripts/test runs `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn spawn(name: &str, program: &Path, args: &[String], logs: &Path) -> Proc {
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            name: name.into(),
            child,
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "{} exited",
            self.name
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return; // killed on purpose earlier
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_port(addr: SocketAddr, what: &str) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stage processes join their consumer groups some seconds after they
/// start; until the persister consumes, a send to a new conversation is
/// refused (its membership is not in the store yet).
async fn until_stored(api: &Api, cid: &str) {
    let started = Instant::now();
    while api.get(&format!("/v1/conversations/{cid}")).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the persister never stored {cid}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends until the other side receives one live, proving both presences
/// reached the router; returns that event.
async fn until_live(from: &mut Ws, to: &mut Ws, cid: &str, tag: &str, logs: &Path) -> Value {
    for i in 0..50 {
        from.send(json!({"type": "send", "conversation_id": cid, "client_msg_id": format!("{tag}{i}"), "body": tag})).await;
        from.until("ack").await;
        let got = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                let (e, _) = to.until("event").await;
                if e["kind"] == "message_posted" && e["data"]["body"] == tag {
                    return e;
                }
            }
        })
        .await;
        if let Ok(e) = got {
            return e;
        }
    }
    panic!("{tag}: no live delivery across nodes\n{}", log_tails(logs));
}

/// The last lines of each process's log, for a failure's message (the
/// logs go with the test's directory).
fn log_tails(logs: &Path) -> String {
    let mut out = String::new();
    let mut names: Vec<_> = std::fs::read_dir(logs)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    for path in names
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
    {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("--- {}\n", path.display()));
        for line in &lines[lines.len().saturating_sub(25)..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_as_processes_on_two_nodes_survive_each_stage_killed_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let (kafka, dynamo, n1, n2) = (free_port(), free_port(), free_port(), free_port());
    let opensearch = free_port();

    let dynoxide = std::env::var("DYNOXIDE").unwrap_or_else(|_| "dynoxide".into());
    let _dynamo = Proc::spawn(
        "dynoxide",
        Path::new(&dynoxide),
        &["serve".into(), "--port".into(), dynamo.port().to_string()],
        logs,
    );
    let broker_args = [
        "broker",
        "--data-dir",
        &logs.join("broker").display().to_string(),
        "--kafka-listen",
        &kafka.to_string(),
        "--registry",
        "off",
    ]
    .map(String::from)
    .to_vec();
    let broker = Proc::spawn("broker", &bin("chatflow"), &broker_args, logs);
    let _osmem = Proc::spawn(
        "osmem-server",
        Path::new(&osmem_binary()),
        &[
            "-addr".into(),
            opensearch.to_string(),
            "-no-stdin-watch".into(),
            "-parent-pid".into(),
            std::process::id().to_string(),
        ],
        logs,
    );
    let search = format!("opensearch+http://{opensearch}/chatflow-messages");
    wait_port(opensearch, "osmem-server").await;
    wait_port(dynamo, "dynoxide").await;
    wait_port(kafka, "broker").await;
    let store = format!("dynamodb://chatflow?endpoint=http://{dynamo}");
    run_ok(Command::new(bin("chatflow")).args(["admin", "create-table", "--store", &store]));

    // Every process shares the users' keys: one archive, one master key.
    let archive = format!("file://{}", logs.join("archive").display());
    let common = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--kafka",
            &kafka.to_string(),
            "--store",
            &store,
            "--archive",
            &archive,
            "--master-key",
            MASTER_KEY,
        ]
        .map(String::from)
        .to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let node = |id: &str, http: SocketAddr| {
        common(&[
            "--node-id",
            id,
            "--http",
            &http.to_string(),
            "--jwt-secret",
            SECRET,
            "--rate",
            "100000",
            "--rate-burst",
            "100000",
            "--search",
            &search,
        ])
    };
    let mut _n1 = Proc::spawn("ingest-n1", &bin("ingest"), &node("n1", n1), logs);
    let mut n2_proc = Proc::spawn("ingest-n2", &bin("ingest"), &node("n2", n2), logs);
    // Static membership: a persister restarted under the same instance id
    // takes its predecessor's place in the group at once, as a supervisor
    // (systemd, a StatefulSet) restarts it.
    let persister_args = common(&["--kafka-option", "group.instance.id=persister-0"]);
    let persister = Proc::spawn("persister", &bin("persister"), &persister_args, logs);
    // The router as a service of `chatflow serve`, the same code path as
    // its own binary (the other stages run as theirs).
    let router_data = logs.join("router-data").display().to_string();
    let mut router_args = ["serve", "--service", "router", "--data-dir", &router_data]
        .map(String::from)
        .to_vec();
    router_args.extend(common(&["--kafka-option", "group.instance.id=router-0"]));
    let router = Proc::spawn("router", &bin("chatflow"), &router_args, logs);
    // The indexer opens sealed messages with the users' keys.
    let indexer_args = common(&[
        "--search",
        &search,
        "--kafka-option",
        "group.instance.id=indexer-0",
    ]);
    let indexer = Proc::spawn("indexer", &bin("indexer"), &indexer_args, logs);
    wait_port(n1, "ingest n1").await;
    wait_port(n2, "ingest n2").await;

    let (ta, tb) = (dev_token(n1, "alice").await, dev_token(n2, "bob").await);
    let cid = Api::at(n1, &ta).create_group(&["bob"]).await;
    until_stored(&Api::at(n1, &ta), &cid).await;

    let connect = |node: SocketAddr, token: String, device: &'static str| async move {
        let mut ws = Ws::connect_to(node, &token, device).await;
        ws.send(json!({"type": "resume", "cursors": {}})).await;
        ws.until("resumed").await;
        ws
    };
    let mut alice = connect(n1, ta.clone(), "a-main").await;
    let mut bob = connect(n2, tb.clone(), "b-main").await;
    // Both ways across nodes.
    let e = until_live(&mut alice, &mut bob, &cid, "hello-bob", logs).await;
    assert_eq!(e["actor_id"], "alice");
    let e = until_live(&mut bob, &mut alice, &cid, "hello-alice", logs).await;
    assert_eq!(e["actor_id"], "bob");

    // A stream of 2000 from node 1, with bob on node 2 recording every
    // event in arrival order; when his socket drops (a stage or the broker
    // killed under his node) he reconnects and resumes from what he holds.
    let counter = {
        let (cid, tb) = (cid.clone(), tb.clone());
        tokio::spawn(async move {
            let mut seen: Vec<i64> = Vec::new();
            let mut last = -1i64;
            let mut resumes = 0usize;
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut bob = Some(bob);
            while seen.len() < MESSAGES && Instant::now() < deadline {
                let mut ws = match bob.take() {
                    Some(ws) => ws,
                    None => {
                        let url = format!("ws://{n2}/v1/ws?device_id=b-main&token={tb}");
                        let Ok((stream, _)) = tokio_tungstenite::connect_async(url).await else {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        };
                        let mut ws = Ws { stream };
                        ws.send(json!({"type": "resume", "cursors": {cid.clone(): last}}))
                            .await;
                        resumes += 1;
                        ws
                    }
                };
                // Pings keep bob inside the idle timeout however long this takes.
                let mut ping = tokio::time::interval(Duration::from_secs(10));
                loop {
                    let next = tokio::select! {
                        _ = ping.tick() => None,
                        m = tokio::time::timeout(Duration::from_secs(30), ws.stream.next()) => Some(m),
                    };
                    let Some(next) = next else {
                        if ws
                            .stream
                            .send(Message::Text(json!({"type": "ping"}).to_string().into()))
                            .await
                            .is_err()
                        {
                            break;
                        }
                        continue;
                    };
                    let Ok(Some(Ok(Message::Text(t)))) = next else {
                        break; // closed or silent: reconnect
                    };
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "event" && v["conversation_id"] == cid.as_str() {
                        let seq = v["seq"].as_i64().unwrap();
                        if v["data"]["body"]
                            .as_str()
                            .is_some_and(|b| b.starts_with("stream "))
                        {
                            seen.push(seq);
                        }
                        last = last.max(seq);
                    }
                    if seen.len() >= MESSAGES {
                        break;
                    }
                }
            }
            (seen, resumes)
        })
    };
    // Senders re-send an unanswered or refused send with the same
    // client_msg_id, reconnecting when their socket drops, as apps do.
    let acks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (cid, ta, acks) = (cid.clone(), ta.clone(), acks.clone());
            tokio::spawn(async move {
                let url = format!("ws://{n1}/v1/ws?device_id=a-send{s}&token={ta}");
                let mut ws = None;
                let mut acked = HashMap::new();
                let mut retries = 0usize;
                let deadline = Instant::now() + Duration::from_secs(300);
                for i in (s..MESSAGES).step_by(SENDERS) {
                    let id = format!("s{i:05}");
                    let frame = json!({"type": "send", "conversation_id": cid, "client_msg_id": id, "body": format!("stream {i}")});
                    'send: loop {
                        assert!(Instant::now() < deadline, "{id} not acknowledged within 300 s");
                        if ws.is_none() {
                            match tokio_tungstenite::connect_async(&url).await {
                                Ok((stream, _)) => ws = Some(stream),
                                Err(_) => {
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                    continue;
                                }
                            }
                        }
                        let socket = ws.as_mut().unwrap();
                        if socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                            ws = None;
                            continue;
                        }
                        loop {
                            let next = tokio::time::timeout(Duration::from_secs(15), socket.next()).await;
                            let Ok(Some(Ok(Message::Text(t)))) = next else {
                                ws = None; // dropped or stuck: reconnect and re-send
                                retries += 1;
                                continue 'send;
                            };
                            let v: Value = serde_json::from_str(&t).unwrap();
                            if v["type"] == "ack" && v["client_msg_id"] == id.as_str() {
                                acked.insert(id.clone(), v["seq"].as_i64().unwrap());
                                acks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                break 'send;
                            }
                            if v["type"] == "error" {
                                assert_eq!(v["code"], "unavailable", "{v}");
                                retries += 1;
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue 'send;
                            }
                        }
                    }
                }
                (acked, retries)
            })
        })
        .collect();

    // The nemesis: as the stream passes each mark, SIGKILL one process and
    // start it again at once: the persister, the router, the indexer.
    let bob_api = Api::at(n2, &tb);
    let history = |after: i64| {
        let (api, path) = (
            &bob_api,
            format!("/v1/conversations/{cid}/messages?after={after}&limit=200"),
        );
        async move { api.get(&path).await.1 }
    };
    let mut victims: Vec<(usize, &str, Proc, PathBuf, Vec<String>)> = vec![
        (
            300,
            "persister",
            persister,
            bin("persister"),
            persister_args,
        ),
        (700, "router", router, bin("chatflow"), router_args),
        (1100, "indexer", indexer, bin("indexer"), indexer_args),
    ];
    // The broker too with NEMESIS_BROKER=1: tansu 0.6 loses its idempotent
    // producers' state when it restarts, and a batch in flight can land
    // twice (README, Reliability), so this is not yet part of scripts/test.
    let mut _broker_kept = None;
    if std::env::var("NEMESIS_BROKER").is_ok_and(|v| v == "1") {
        victims.push((1500, "broker", broker, bin("chatflow"), broker_args));
    } else {
        _broker_kept = Some(broker);
    }
    let kills = victims.len();
    let mut restarted = Vec::new();
    for (mark, name, mut proc, program, args) in victims.drain(..) {
        let started = Instant::now();
        while acks.load(std::sync::atomic::Ordering::Relaxed) < mark {
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "the stream stalled before {mark} acks (next victim: {name})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proc.kill9();
        let killed = Instant::now();
        let again = Proc::spawn(&format!("{name}-restarted"), &program, &args, logs);
        // Progress again: 100 more acknowledged sends.
        while acks.load(std::sync::atomic::Ordering::Relaxed) < mark + 100 {
            assert!(
                killed.elapsed() < Duration::from_secs(120),
                "no progress after the {name} was killed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "nemesis: {name} killed at {mark} acks; 100 more acked {:?} later",
            killed.elapsed()
        );
        restarted.push(again);
    }

    let mut acked = HashMap::new();
    let mut retries = 0;
    for s in senders {
        let (a, r) = s.await.unwrap();
        acked.extend(a);
        retries += r;
    }
    assert_eq!(acked.len(), MESSAGES);

    // The store ends up with each acknowledged message exactly once, in order.
    let started = Instant::now();
    let stored = loop {
        let mut stored: Vec<(i64, String)> = Vec::new();
        let mut after = -1;
        loop {
            let page = history(after).await;
            for m in page["messages"].as_array().unwrap() {
                after = m["seq"].as_i64().unwrap();
                if m["body"].as_str().is_some_and(|b| b.starts_with("stream ")) {
                    stored.push((after, m["client_msg_id"].as_str().unwrap().to_owned()));
                }
            }
            if page["has_more"] != true {
                break;
            }
        }
        if stored.len() >= MESSAGES || started.elapsed() > Duration::from_secs(120) {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for proc in &mut restarted {
        proc.assert_running();
    }
    assert_eq!(
        stored.len(),
        MESSAGES,
        "every acknowledged message is stored once"
    );
    assert!(
        stored.windows(2).all(|w| w[0].0 < w[1].0),
        "history is in seq order"
    );
    for (seq, id) in &stored {
        assert_eq!(
            acked.get(id),
            Some(seq),
            "{id} stored at the seq it was acknowledged with"
        );
    }

    // No delivery lost, none twice, none out of order: bob, on the other
    // node, saw every one (live, or in a resume after his socket dropped).
    let (seen, resumes) = counter.await.unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "bob's device got a duplicate or a reorder"
    );
    let seen: BTreeSet<i64> = seen.into_iter().collect();
    let expected: BTreeSet<i64> = acked.values().copied().collect();
    assert_eq!(seen, expected, "deliveries on node 2");
    eprintln!(
        "nemesis: {kills} kills, {MESSAGES} acked, 0 lost, 0 dup, 0 reorder; {retries} re-sends, {resumes} resumes"
    );

    // The indexer process put every message into OpenSearch; bob finds any
    // of them from node 2, and nobody outside the conversation does.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in [0, 777, MESSAGES - 1] {
        let want = acked[&format!("s{i:05}")];
        loop {
            let (status, body) = bob_api
                .get(&format!("/v1/search?q=%22stream%20{i}%22"))
                .await;
            assert_eq!(status, 200, "{body}");
            let hits: Vec<i64> = body["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["seq"].as_i64().unwrap())
                .collect();
            if hits == [want] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "stream {i}: {hits:?}, want [{want}]"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let carol = Api::at(n2, &dev_token(n2, "carol").await);
    let (status, body) = carol.get("/v1/search?q=stream").await;
    assert_eq!(
        (status, body["hits"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    // Node liveness: node 2 dies without a word. Bob's device there turns
    // offline for everyone once the node has been silent for the timeout.
    let alice_api = Api::at(n1, &ta);
    let _bob_again = connect(n2, tb.clone(), "b-laptop").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while alice_api.get("/v1/users/bob/presence").await.1["online"] != true {
        assert!(Instant::now() < deadline, "node 1 never saw bob online");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    n2_proc.kill9();
    let killed = Instant::now();
    loop {
        let (status, p) = alice_api.get("/v1/users/bob/presence").await;
        assert_eq!(status, 200, "{p}");
        if p["online"] == false {
            assert!(p["last_seen"].is_string(), "{p}");
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "bob still online 60 s after his node died"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("bob offline {:?} after his node died", killed.elapsed());
}

fn osmem_binary() -> String {
    if let Ok(bin) = std::env::var("OSMEM_SERVER_BIN") {
        return bin;
    }
    let script = "import osmem_server, os; print(os.path.join(os.path.dirname(osmem_server.__file__), 'bin', 'osmem-server'))";
    let out = run_ok(Command::new("python3").args(["-c", script]));
    out.trim().to_owned()
}
