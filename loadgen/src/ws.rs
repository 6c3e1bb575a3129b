//! WebSocket mode: simulated people on real sockets. `users` people with
//! `devices` sockets each, spread over many 127.0.0.x source addresses (one
//! address holds ~28k connections to one server port), in groups of
//! `group_size`; messages go out at `rate` per second from Zipf-chosen
//! senders. Measures send→ack and send→deliver latency, deliveries/s,
//! errors and reconnects.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;

use crate::client;
use crate::dist::{Rng, text};
use crate::report::{histogram, line, summary};

#[derive(Args, Clone, Debug)]
pub struct WsArgs {
    /// The chatflow gateway.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Simulated people.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Sockets (devices) per person.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// People per conversation (2: one-to-one chats).
    #[arg(long, default_value_t = 2)]
    pub group_size: usize,
    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Source addresses 127.0.0.1 … 127.0.0.N the sockets are spread over.
    #[arg(long, default_value_t = 1)]
    pub sources: u8,
    /// The longest message body, bytes (sizes are log-normal around 40).
    #[arg(long, default_value_t = 2000)]
    pub max_body: usize,
    /// Sockets opened at a time while connecting.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// What the load talks to.
    #[arg(long, value_enum, default_value_t = Protocol::Chatflow)]
    pub protocol: Protocol,
    /// Prefix of the user ids (runs with different prefixes do not mix).
    #[arg(long, default_value = "lg")]
    pub prefix: String,
}

/// What the load talks to.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A chatflow gateway (PROTOCOL.md).
    Chatflow,
    /// The Socket.IO peer of `bench/peers/socketio-server.mjs`.
    Socketio,
}

/// A frame from the server, as far as the load cares.
enum Incoming {
    /// The socket is live.
    Ready,
    /// A send was acknowledged; its id.
    Ack(String),
    /// A message was delivered; its body.
    Delivered(String),
    Error,
    /// Answer this (handshakes, pings).
    Reply(&'static str),
    Other,
}

fn classify(protocol: Protocol, text: &str) -> Incoming {
    match protocol {
        Protocol::Chatflow => {
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                return Incoming::Other;
            };
            match v["type"].as_str() {
                Some("resumed") => Incoming::Ready,
                Some("ack") => Incoming::Ack(v["client_msg_id"].as_str().unwrap_or("").into()),
                Some("event") if v["kind"] == "message_posted" => {
                    Incoming::Delivered(v["data"]["body"].as_str().unwrap_or("").into())
                }
                Some("error") => Incoming::Error,
                _ => Incoming::Other,
            }
        }
        // Engine.IO 4 / Socket.IO 5 packets: "0{…}" open, "40{…}" connected,
        // "2" ping, "43<id>[…]" ack, "42[…]" event.
        Protocol::Socketio => {
            if text == "2" {
                Incoming::Reply("3")
            } else if text.starts_with("40") {
                Incoming::Ready
            } else if text.starts_with('0') {
                Incoming::Reply("40")
            } else if let Some(rest) = text.strip_prefix("43") {
                Incoming::Ack(rest.split('[').next().unwrap_or("").into())
            } else if let Some(rest) = text.strip_prefix("42") {
                match serde_json::from_str::<Value>(rest) {
                    Ok(v) if v[0] == "message" => {
                        Incoming::Delivered(v[1]["body"].as_str().unwrap_or("").into())
                    }
                    _ => Incoming::Other,
                }
            } else if text.starts_with("44") {
                Incoming::Error
            } else {
                Incoming::Other
            }
        }
    }
}

/// Counters shared by every socket task.
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub delivered: AtomicU64,
    pub errors: AtomicU64,
    pub reconnects: AtomicU64,
    /// When the latest delivery arrived, µs on the run's clock.
    pub last_delivery_us: AtomicU64,
}

/// What one socket's reader measured.
struct Measured {
    ack: Histogram<u64>,
    deliver: Histogram<u64>,
}

/// One device: its outgoing frames and, at the end, what it measured.
struct Device {
    /// (id to match the ack, frame)
    tx: mpsc::UnboundedSender<(String, String)>,
    done: tokio::task::JoinHandle<Measured>,
}

/// Where a device connects, and from which local address.
struct Endpoint {
    protocol: Protocol,
    server: SocketAddr,
    source: Ipv4Addr,
    path: String,
}

/// How often a chatflow device with nothing to send pings its node.
const KEEPALIVE: Duration = Duration::from_secs(25);

/// Opens a device's socket, resumes, and runs its reader and writer until
/// `stop_at` plus a drain period; reconnects if the server closes it.
async fn run_device(
    at: Endpoint,
    clock: Instant,
    counters: Arc<Counters>,
    mut rx: mpsc::UnboundedReceiver<(String, String)>,
    ready: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
    finish: tokio::sync::watch::Receiver<bool>,
) -> Measured {
    let mut measured = Measured {
        ack: histogram(),
        deliver: histogram(),
    };
    let mut ready = Some(ready);
    // client_msg_id → send time (µs), for the ack latency.
    let mut in_flight: std::collections::HashMap<String, u64> = Default::default();
    loop {
        let ws = match client::open(at.server, Some(at.source), &at.path).await {
            Ok(ws) => ws,
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return measured;
                }
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let (mut sink, mut stream) = ws.split();
        if at.protocol == Protocol::Chatflow {
            let resume = json!({"type": "resume", "cursors": {}}).to_string();
            if sink.send(Message::Text(resume.into())).await.is_err() {
                continue;
            }
        }
        let mut finish = finish.clone();
        // A chatflow node closes a socket silent for 60 s; an app pings
        // (PROTOCOL.md), and so does a simulated one that has nothing to
        // say. (Socket.IO's server pings and is answered above.)
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            tokio::select! {
                _ = keepalive.tick(), if at.protocol == Protocol::Chatflow => {
                    let ping = json!({"type": "ping"}).to_string();
                    if sink.send(Message::Text(ping.into())).await.is_err() {
                        break;
                    }
                }
                frame = rx.recv() => {
                    let Some((id, frame)) = frame else { return measured };
                    in_flight.insert(id, clock.elapsed().as_micros() as u64);
                    if sink.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
                m = stream.next() => {
                    let Some(Ok(m)) = m else { break };
                    let Message::Text(t) = m else { continue };
                    let now = clock.elapsed().as_micros() as u64;
                    match classify(at.protocol, &t) {
                        Incoming::Ready => {
                            if let Some(r) = ready.take() {
                                let _ = r.send(Ok(()));
                            }
                        }
                        Incoming::Ack(id) => {
                            counters.acked.fetch_add(1, Ordering::Relaxed);
                            if let Some(sent) = in_flight.remove(&id) {
                                let _ = measured.ack.record(now.saturating_sub(sent).max(1));
                            }
                        }
                        Incoming::Delivered(body) => {
                            counters.delivered.fetch_add(1, Ordering::Relaxed);
                            counters.last_delivery_us.fetch_max(now, Ordering::Relaxed);
                            if let Some(sent) = body.split(' ').next().and_then(|t| t.parse::<u64>().ok()) {
                                let _ = measured.deliver.record(now.saturating_sub(sent).max(1));
                            }
                        }
                        Incoming::Error => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Incoming::Reply(text) => {
                            if sink.send(Message::Text(text.into())).await.is_err() {
                                break;
                            }
                        }
                        Incoming::Other => {}
                    }
                }
                _ = finish.changed() => {
                    let _ = sink.send(Message::Close(None)).await;
                    return measured;
                }
            }
        }
        if *finish.borrow() {
            return measured;
        }
        counters.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn run(args: WsArgs) -> anyhow::Result<Value> {
    if args.users < 2 || args.group_size < 2 || args.devices < 1 || args.sources < 1 {
        bail!("need --users ≥ 2, --group-size ≥ 2, --devices ≥ 1, --sources ≥ 1");
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let server: SocketAddr = {
        let url = url::Url::parse(&base)?;
        let host = url.host_str().context("no host in --url")?;
        let port = url.port_or_known_default().context("no port in --url")?;
        tokio::net::lookup_host((host, port))
            .await?
            .next()
            .context("--url does not resolve")?
    };
    let http = reqwest::Client::new();
    let users: Vec<String> = (0..args.users)
        .map(|i| format!("{}{i}", args.prefix))
        .collect();

    let chunks: Vec<Vec<usize>> = (0..users.len())
        .collect::<Vec<_>>()
        .chunks(args.group_size)
        .filter(|c| c.len() >= 2)
        .map(<[usize]>::to_vec)
        .collect();
    // user → its conversation (each person is in one group)
    let mut room_of = vec![String::new(); users.len()];
    let mut tokens = vec![String::new(); users.len()];
    let mut conversations: Vec<(String, Vec<usize>)> = Vec::new();
    match args.protocol {
        Protocol::Socketio => {
            for (k, chunk) in chunks.into_iter().enumerate() {
                conversations.push((format!("{}room{k}", args.prefix), chunk));
            }
        }
        Protocol::Chatflow => {
            eprintln!("logging in {} users", users.len());
            let limit = Arc::new(Semaphore::new(64));
            let logins: Vec<_> = users
                .iter()
                .map(|u| {
                    let (http, base, u, limit) =
                        (http.clone(), base.clone(), u.clone(), limit.clone());
                    tokio::spawn(async move {
                        let _permit = limit.acquire_owned().await?;
                        client::dev_token(&http, &base, &u).await
                    })
                })
                .collect();
            for (i, l) in logins.into_iter().enumerate() {
                tokens[i] = l.await??;
            }
            // Conversations: consecutive people in groups of `group_size`.
            let creations: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let members: Vec<String> =
                        chunk[1..].iter().map(|&i| users[i].clone()).collect();
                    let kind = if chunk.len() == 2 { "direct" } else { "group" };
                    let (http, base, limit) = (http.clone(), base.clone(), limit.clone());
                    let owner = tokens[chunk[0]].clone();
                    tokio::spawn(async move {
                        let _permit = limit.acquire_owned().await?;
                        let v: Value = http
                            .post(format!("{base}/v1/conversations"))
                            .bearer_auth(&owner)
                            .json(&json!({"kind": kind, "name": "loadgen", "members": members}))
                            .send()
                            .await?
                            .json()
                            .await?;
                        let cid = v["conversation_id"]
                            .as_str()
                            .with_context(|| format!("creating a conversation: {v}"))?;
                        anyhow::Ok((cid.to_owned(), chunk))
                    })
                })
                .collect();
            for c in creations {
                conversations.push(c.await??);
            }
        }
    }
    for (cid, members) in &conversations {
        for &m in members {
            room_of[m] = cid.clone();
        }
    }
    eprintln!(
        "{} conversations of up to {} people",
        conversations.len(),
        args.group_size
    );

    let clock = Instant::now();
    let counters = Arc::new(Counters::default());
    let (finish_tx, finish_rx) = tokio::sync::watch::channel(false);
    let sockets = args.users * args.devices;
    let bar = indicatif::ProgressBar::new(sockets as u64).with_style(
        indicatif::ProgressStyle::with_template("connecting {bar:40} {pos}/{len} sockets")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let connecting = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut devices: Vec<Vec<Device>> = (0..args.users).map(|_| Vec::new()).collect();
    let mut waits = Vec::with_capacity(sockets);
    for (n, (u, token)) in (0..args.users).zip(&tokens).enumerate() {
        for d in 0..args.devices {
            let index = n * args.devices + d;
            let source = Ipv4Addr::new(127, 0, 0, 1 + (index % args.sources as usize) as u8);
            let path = match args.protocol {
                Protocol::Chatflow => format!("/v1/ws?device_id=d{d}&token={token}"),
                Protocol::Socketio => {
                    format!("/socket.io/?EIO=4&transport=websocket&rooms={}", room_of[u])
                }
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let permit = connecting.clone().acquire_owned().await?;
            let at = Endpoint {
                protocol: args.protocol,
                server,
                source,
                path,
            };
            let done = tokio::spawn(run_device(
                at,
                clock,
                counters.clone(),
                rx,
                ready_tx,
                finish_rx.clone(),
            ));
            let bar = bar.clone();
            waits.push(tokio::spawn(async move {
                let r = ready_rx
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("socket task ended")));
                drop(permit);
                bar.inc(1);
                r
            }));
            devices[u].push(Device { tx, done });
        }
    }
    for w in waits {
        w.await?.context("opening a socket")?;
    }
    bar.finish_and_clear();
    let connected_in = clock.elapsed();
    eprintln!(
        "{sockets} sockets open in {:.1} s",
        connected_in.as_secs_f64()
    );

    // Send: an open loop at `rate`, senders Zipf-chosen among the members
    // of Zipf-chosen conversations.
    let total = (args.rate * args.duration.as_secs_f64()).round() as u64;
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template("sending {bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rng = Rng::new(42);
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (cid, members) = &conversations[rng.zipf(conversations.len())];
        let sender = members[rng.below(members.len())];
        let device = &devices[sender][rng.below(args.devices)];
        let now = clock.elapsed().as_micros() as u64;
        let len = rng.message_len(args.max_body);
        let body = format!("{now} {}", text(&mut rng, len));
        let (id, frame) = match args.protocol {
            Protocol::Chatflow => {
                let id = format!("lg{i}");
                let frame = json!({"type": "send", "conversation_id": cid, "client_msg_id": id, "body": body});
                (id, frame.to_string())
            }
            Protocol::Socketio => {
                let event = json!(["send", {"room": cid, "body": body, "id": i}]);
                (i.to_string(), format!("42{i}{event}"))
            }
        };
        if device.tx.send((id, frame)).is_ok() {
            counters.sent.fetch_add(1, Ordering::Relaxed);
        }
        if i % 256 == 0 {
            bar.set_position(i);
            bar.set_message(format!(
                "acked {} delivered {} errors {}",
                counters.acked.load(Ordering::Relaxed),
                counters.delivered.load(Ordering::Relaxed),
                counters.errors.load(Ordering::Relaxed)
            ));
        }
    }
    let sending = started.elapsed();
    bar.finish_and_clear();

    // Drain: wait until every ack is in and deliveries stop growing.
    let mut last = u64::MAX;
    let drain_started = Instant::now();
    while drain_started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let delivered = counters.delivered.load(Ordering::Relaxed);
        let acked = counters.acked.load(Ordering::Relaxed);
        if acked >= counters.sent.load(Ordering::Relaxed) && delivered == last {
            break;
        }
        last = delivered;
    }
    // Deliveries per second over the window they arrived in (the drain
    // wait after the last one does not count).
    let elapsed = Duration::from_micros(counters.last_delivery_us.load(Ordering::Relaxed))
        .saturating_sub(started.duration_since(clock))
        .max(sending);
    let _ = finish_tx.send(true);
    let mut ack = histogram();
    let mut deliver = histogram();
    for d in devices.into_iter().flatten() {
        drop(d.tx);
        let m = d.done.await?;
        ack.add(&m.ack).ok();
        deliver.add(&m.deliver).ok();
    }

    let sent = counters.sent.load(Ordering::Relaxed);
    let delivered = counters.delivered.load(Ordering::Relaxed);
    println!(
        "{:?}: {sockets} sockets ({} people × {} devices, {} source addresses), {} conversations of {}",
        args.protocol,
        args.users,
        args.devices,
        args.sources,
        conversations.len(),
        args.group_size
    );
    println!(
        "sent {sent} in {:.1} s = {:.0} msgs/s (target {}); delivered {delivered} = {:.0} deliveries/s; errors {}; reconnects {}",
        sending.as_secs_f64(),
        sent as f64 / sending.as_secs_f64(),
        args.rate,
        delivered as f64 / elapsed.as_secs_f64(),
        counters.errors.load(Ordering::Relaxed),
        counters.reconnects.load(Ordering::Relaxed)
    );
    println!("{}", line("send→ack", &ack));
    println!("{}", line("send→deliver", &deliver));
    Ok(json!({
        "mode": "ws",
        "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "sockets": sockets,
        "users": args.users,
        "devices": args.devices,
        "sources": args.sources,
        "group_size": args.group_size,
        "conversations": conversations.len(),
        "connect_seconds": connected_in.as_secs_f64(),
        "target_rate": args.rate,
        "sent": sent,
        "send_seconds": sending.as_secs_f64(),
        "msgs_per_sec": sent as f64 / sending.as_secs_f64(),
        "acked": counters.acked.load(Ordering::Relaxed),
        "delivered": delivered,
        "deliveries_per_sec": delivered as f64 / elapsed.as_secs_f64(),
        "errors": counters.errors.load(Ordering::Relaxed),
        "reconnects": counters.reconnects.load(Ordering::Relaxed),
        "send_to_ack": summary(&ack),
        "send_to_deliver": summary(&deliver),
    }))
}
