#![allow(clippy::unwrap_used)]
//! kill -9 in a loop under concurrent senders and reconnecting devices, as
//! a container runtime restarts a crashed process: no acknowledged message
//! is lost, duplicated or moved, and every device sees each conversation
//! in strict seq order with no hole. `CHAOS_KILLS` sets how many kills
//! (`scripts/chaos` runs a long form), `CHAOS_SEED` the random points in
//! the send stream where they fall (printed, so a run can be repeated).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Api, Chatflow, send_until_acked};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const USERS: [&str; 4] = ["ana", "ben", "cai", "dev"];
/// Messages per sender, at least: a long run sends more.
const PER_SENDER: usize = 150;

/// What one device received: per conversation, the seqs of its events in
/// arrival order.
#[derive(Default)]
struct Seen {
    events: HashMap<String, Vec<i64>>,
    resumed: usize,
}

type Acked = Arc<Mutex<Vec<(String, String, i64)>>>;

/// Sends each message until acknowledged, re-sending the same
/// client_msg_id across crashes as a client does.
async fn sender(
    http: SocketAddr,
    token: String,
    user: &'static str,
    cids: Vec<String>,
    acked: Acked,
    progress: Arc<AtomicUsize>,
    count: usize,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for i in 0..count {
        let cid = &cids[i % cids.len()];
        let id = format!("{user}-{i:04}");
        let base = format!("http://{http}");
        let seq = send_until_acked(&client, &base, &token, cid, &id, &id).await;
        acked.lock().unwrap().push((cid.clone(), id, seq));
        progress.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A device that reconnects whenever its socket ends and resumes from the
/// last seq it has of each conversation.
async fn device(http: SocketAddr, token: String, seen: Arc<Mutex<Seen>>, done: CancellationToken) {
    let url = format!("ws://{http}/v1/ws?device_id=phone&token={token}");
    while !done.is_cancelled() {
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let cursors: BTreeMap<String, i64> = seen
            .lock()
            .unwrap()
            .events
            .iter()
            .filter_map(|(cid, seqs)| Some((cid.clone(), *seqs.iter().max()?)))
            .collect();
        let resume = json!({"type": "resume", "cursors": cursors}).to_string();
        if ws.send(Message::Text(resume.into())).await.is_err() {
            continue;
        }
        // Pings keep the socket inside the idle timeout however long the
        // test runs.
        let mut ping = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = done.cancelled() => return,
                _ = ping.tick() => {
                    let frame = json!({"type": "ping"}).to_string();
                    if ws.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        let f: Value = serde_json::from_str(&t).unwrap();
                        let mut seen = seen.lock().unwrap();
                        match f["type"].as_str() {
                            Some("event") => seen
                                .events
                                .entry(f["conversation_id"].as_str().unwrap().to_owned())
                                .or_default()
                                .push(f["seq"].as_i64().unwrap()),
                            Some("resumed") => seen.resumed += 1,
                            _ => {}
                        }
                    }
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => break,
                },
            }
        }
    }
}

/// Where in the send stream (messages acknowledged so far) each kill falls:
/// `kills` random points, ascending, between 5 % and 95 % of it.
fn kill_points(seed: u64, kills: usize, total: usize) -> Vec<usize> {
    let mut state = seed | 1;
    let mut next = || {
        // xorshift64*: enough to scatter kills, and repeatable by seed.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let (low, high) = (total / 20, total * 19 / 20);
    let mut points: Vec<usize> = (0..kills)
        .map(|_| low + (next() % (high - low) as u64) as usize)
        .collect();
    points.sort_unstable();
    points
}

async fn history(api: &Api, cid: &str) -> Vec<(String, i64)> {
    let messages = api.all_messages(cid).await;
    let id = |m: &Value| m["client_msg_id"].as_str().unwrap_or_default().to_owned();
    messages
        .iter()
        .map(|m| (id(m), m["seq"].as_i64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_a_loop_loses_reorders_and_skips_nothing() {
    let kills: usize = std::env::var("CHAOS_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(3);
    let per_sender = PER_SENDER.max(kills * 25);
    let dir = tempfile::tempdir().unwrap();
    let mut cf = Chatflow::start_unlimited(&dir.path().join("data")).await;
    let mut tokens = Vec::new();
    for u in USERS {
        tokens.push(cf.token(u).await);
    }
    let owner = Api::new(&cf, &tokens[0]);
    let everyone = owner.create_group(&USERS[1..]).await;
    let pair = owner.create_group(&USERS[1..2]).await;

    let done = CancellationToken::new();
    let mut devices = Vec::new();
    for (u, token) in USERS.iter().zip(&tokens) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn(device(cf.http, token.clone(), seen.clone(), done.clone()));
        devices.push((*u, seen, task));
    }
    while devices
        .iter()
        .any(|(_, s, _)| s.lock().unwrap().resumed == 0)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let acked: Acked = Arc::default();
    let progress = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for (i, (u, token)) in USERS.iter().zip(&tokens).enumerate() {
        let cids = if i < 2 {
            vec![everyone.clone(), pair.clone()]
        } else {
            vec![everyone.clone()]
        };
        senders.push(tokio::spawn(sender(
            cf.http,
            token.clone(),
            u,
            cids,
            acked.clone(),
            progress.clone(),
            per_sender,
        )));
    }
    let total = USERS.len() * per_sender;
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let started = Instant::now();
    let mut restarts = Vec::new();
    for at in kill_points(seed, kills, total) {
        while progress.load(Ordering::Relaxed) < at {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cf.kill();
        restarts.push(cf.start_again().await);
    }
    for s in senders {
        s.await.unwrap();
    }
    let elapsed = started.elapsed();

    // Every acknowledged message is in history once, at its acked seq.
    let acked = acked.lock().unwrap().clone();
    let (mut lost, mut dup, mut moved) = (0, 0, 0);
    let mut histories = HashMap::new();
    for cid in [&everyone, &pair] {
        let h = history(&owner, cid).await;
        for (_, id, seq) in acked.iter().filter(|(c, _, _)| c == cid) {
            let found: Vec<i64> = h.iter().filter(|(i, _)| i == id).map(|(_, s)| *s).collect();
            match found.as_slice() {
                [] => lost += 1,
                [s] if s == seq => {}
                [_] => moved += 1,
                _ => dup += 1,
            }
        }
        histories.insert(cid.clone(), h);
    }

    // Each device catches up, then: strictly increasing seqs, and every
    // message at or after the first one it saw.
    let last: HashMap<&String, i64> = histories
        .iter()
        .map(|(cid, h)| (cid, h.last().unwrap().1))
        .collect();
    let members = |u: &str, cid: &String| cid == &everyone || USERS[..2].contains(&u);
    let caught_up = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let behind = devices.iter().any(|(u, seen, _)| {
                let seen = seen.lock().unwrap();
                last.iter().any(|(cid, &l)| {
                    members(u, cid)
                        && seen
                            .events
                            .get(*cid)
                            .and_then(|s| s.iter().max().copied())
                            .unwrap_or(-1)
                            < l
                })
            });
            if !behind {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok();
    done.cancel();
    let (mut reorders, mut holes) = (0, 0);
    for (u, seen, task) in devices {
        task.await.unwrap();
        let seen = seen.lock().unwrap();
        for (cid, h) in &histories {
            if !members(u, cid) {
                continue;
            }
            let got = seen.events.get(cid).cloned().unwrap_or_default();
            reorders += got.windows(2).filter(|w| w[1] <= w[0]).count();
            let first = got.first().copied().unwrap_or(i64::MAX);
            let set: std::collections::HashSet<i64> = got.iter().copied().collect();
            let missing: Vec<i64> = h
                .iter()
                .map(|(_, s)| *s)
                .filter(|s| *s >= first && !set.contains(s))
                .collect();
            if !missing.is_empty() {
                eprintln!("{u} misses {} of {cid}: {missing:?}", missing.len());
            }
            holes += missing.len();
        }
    }
    let mut secs: Vec<f64> = restarts.iter().map(Duration::as_secs_f64).collect();
    secs.sort_by(f64::total_cmp);
    // The share of the send phase the server was up and taking writes.
    let availability = 1.0 - secs.iter().sum::<f64>() / elapsed.as_secs_f64();
    let median = secs.get(secs.len() / 2).copied().unwrap_or(0.0);
    let worst = secs.last().copied().unwrap_or(0.0);
    println!(
        "chaos: seed={seed} kills={kills} sent={total} acked={} lost={lost} dup={dup} moved={moved} reorder={reorders} gaps={holes} caught_up={caught_up} availability={:.1}% restart_to_healthy_s(median/max)={median:.2}/{worst:.2} send_phase_s={:.1}",
        acked.len(),
        availability * 100.0,
        elapsed.as_secs_f64()
    );
    if holes + reorders + lost + dup + moved > 0 {
        let kept = dir.keep();
        eprintln!(
            "the server's log is kept: {}",
            kept.join("data.log").display()
        );
    }
    assert_eq!(acked.len(), total);
    assert_eq!((lost, dup, moved), (0, 0, 0), "acknowledged messages");
    assert_eq!((reorders, holes), (0, 0), "deliveries");
    assert!(caught_up, "every device caught up");
    cf.stop().await;
}
