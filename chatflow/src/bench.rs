//! `chatflow bench`: starts a chatflow of its own (this binary, on free
//! ports, temp data dir, no rate limit) and measures send→receive over real
//! WebSockets: one pair of clients, then many concurrent senders.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Another benchmark than the messaging one.
    #[command(subcommand)]
    pub what: Option<Bench>,
    /// Messages the single pair sends.
    #[arg(long, default_value_t = 2000)]
    pub pair_messages: usize,
    /// Concurrent senders (each with its own receiver) in the second run.
    #[arg(long, default_value_t = 100)]
    pub senders: usize,
    /// Messages each concurrent sender sends.
    #[arg(long, default_value_t = 100)]
    pub messages_per_sender: usize,
    /// Extra flags for the chatflow under test.
    #[arg(long, allow_hyphen_values = true)]
    pub server_args: Vec<String>,
}

#[derive(Subcommand, Clone, Debug)]
pub enum Bench {
    /// Index generated messages into tantivy, then time queries.
    Search(crate::bench_search::SearchBenchArgs),
    /// Fan-out: one group, many online devices, deliveries per second.
    Fanout(crate::bench_fanout::FanoutArgs),
}

pub(crate) struct Server {
    child: Child,
    pub(crate) http: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

pub(crate) async fn start_server(extra: &[String]) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let http = free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .args(["--data-dir", &dir.path().join("data").display().to_string()])
        .args(["--http", &http.to_string()])
        .args(["--kafka-listen", &free_port()?.to_string()])
        .args(["--registry", &free_port()?.to_string()])
        .args(["--rate", "1000000", "--rate-burst", "1000000"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting chatflow serve")?;
    let server = Server {
        child,
        http,
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(r) = client.get(format!("http://{http}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("chatflow did not become ready")
}

pub(crate) async fn token(http: SocketAddr, user: &str) -> anyhow::Result<String> {
    let v: Value = reqwest::Client::new()
        .post(format!("http://{http}/v1/dev/token"))
        .json(&json!({"user_id": user}))
        .send()
        .await?
        .json()
        .await?;
    v["token"].as_str().map(str::to_owned).context("no token")
}

async fn direct(http: SocketAddr, token: &str, other: &str) -> anyhow::Result<String> {
    let v: Value = reqwest::Client::new()
        .post(format!("http://{http}/v1/conversations"))
        .bearer_auth(token)
        .json(&json!({"kind": "direct", "members": [other]}))
        .send()
        .await?
        .json()
        .await?;
    v["conversation_id"]
        .as_str()
        .map(str::to_owned)
        .context("no conversation")
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn connect(http: SocketAddr, token: &str, device: &str) -> anyhow::Result<Socket> {
    let url = format!("ws://{http}/v1/ws?device_id={device}&token={token}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.send(Message::Text(
        json!({"type": "resume", "cursors": {}}).to_string().into(),
    ))
    .await?;
    wait_for(&mut ws, "resumed").await?;
    Ok(ws)
}

pub(crate) async fn wait_for(ws: &mut Socket, kind: &str) -> anyhow::Result<Value> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("timed out")?;
        if let Some(Ok(Message::Text(t))) = m {
            let v: Value = serde_json::from_str(&t)?;
            if v["type"] == kind {
                return Ok(v);
            }
            if v["type"] == "error" {
                bail!("error frame: {v}");
            }
        } else if m.is_none() {
            bail!("socket closed");
        }
    }
}

/// Reads `messages` posted messages whose bodies are their send time (µs
/// on `clock`) and returns their send→receive latencies in µs.
pub(crate) async fn latencies(
    ws: &mut Socket,
    messages: usize,
    clock: Instant,
) -> anyhow::Result<Vec<u64>> {
    let mut latencies = Vec::with_capacity(messages);
    while latencies.len() < messages {
        let v = wait_for(ws, "event").await?;
        if v["kind"] != "message_posted" {
            continue;
        }
        let sent: u64 = v["data"]["body"]
            .as_str()
            .and_then(|b| b.parse().ok())
            .context("body")?;
        latencies.push((clock.elapsed().as_micros() as u64).saturating_sub(sent));
    }
    Ok(latencies)
}

/// One sender → one receiver over a direct conversation; the sender waits
/// for each ack (closed loop). Returns send→receive latencies in µs.
async fn pair(
    http: SocketAddr,
    id: usize,
    messages: usize,
    clock: Instant,
) -> anyhow::Result<Vec<u64>> {
    let (s, r) = (format!("bench-s{id}"), format!("bench-r{id}"));
    let (ts, tr) = (token(http, &s).await?, token(http, &r).await?);
    let cid = direct(http, &ts, &r).await?;
    let mut sender = connect(http, &ts, "d").await?;
    let mut receiver = connect(http, &tr, "d").await?;
    let receive = tokio::spawn(async move { latencies(&mut receiver, messages, clock).await });
    for i in 0..messages {
        let now = clock.elapsed().as_micros() as u64;
        let frame = json!({"type": "send", "conversation_id": cid, "client_msg_id": format!("m{i}"), "body": now.to_string()});
        sender.send(Message::Text(frame.to_string().into())).await?;
        wait_for(&mut sender, "ack").await?;
    }
    receive.await?
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

pub(crate) fn report(name: &str, mut latencies: Vec<u64>, elapsed: Duration) -> Value {
    latencies.sort_unstable();
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    let (p50, p99, max) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    println!(
        "{name:<28} {:>7} msgs in {:>6.2} s = {:>8.0} msgs/s   send→receive p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        rate,
        p50,
        p99,
        max
    );
    json!({"name": name, "messages": latencies.len(), "seconds": elapsed.as_secs_f64(), "msgs_per_sec": rate, "p50_ms": p50, "p99_ms": p99, "max_ms": max})
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        Some(Bench::Search(search)) => return crate::bench_search::run(search).await,
        Some(Bench::Fanout(fanout)) => return crate::bench_fanout::run(fanout).await,
        None => {}
    }
    let server = start_server(&args.server_args).await?;
    let http = server.http;
    let clock = Instant::now();
    println!("chatflow under test at http://{http} (release build recommended)");

    let started = Instant::now();
    let latencies = pair(http, 0, args.pair_messages, clock).await?;
    let one = report("1 pair, closed loop", latencies, started.elapsed());

    let started = Instant::now();
    let clock = Arc::new(clock);
    let runs: Vec<_> = (1..=args.senders)
        .map(|id| {
            let clock = clock.clone();
            tokio::spawn(async move { pair(http, id, args.messages_per_sender, *clock).await })
        })
        .collect();
    let mut all = Vec::new();
    for r in runs {
        all.extend(r.await??);
    }
    let many = report(
        &format!("{} concurrent senders", args.senders),
        all,
        started.elapsed(),
    );
    println!("{}", json!({"pair": one, "concurrent": many}));
    drop(server);
    Ok(())
}
