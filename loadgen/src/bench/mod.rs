//! `chatflow bench`: starts a chatflow of its own (the binary this runs in,
//! on free ports, temp data dir, no rate limit) and measures send→receive
//! over real WebSockets: one pair of clients, then many concurrent senders.

mod fanout;
#[cfg(feature = "search")]
mod search;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{self, Socket};
use crate::report::{histogram, summary};

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
    #[cfg(feature = "search")]
    Search(search::SearchBenchArgs),
    /// Fan-out: one group, many online devices, deliveries per second.
    Fanout(fanout::FanoutArgs),
}

/// A chatflow under test, stopped (SIGTERM) when dropped.
struct Server {
    child: Child,
    http: SocketAddr,
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

async fn start_server(extra: &[String]) -> anyhow::Result<Server> {
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

async fn token(http: SocketAddr, user: &str) -> anyhow::Result<String> {
    client::dev_token(&reqwest::Client::new(), &format!("http://{http}"), user).await
}

/// Creates a conversation as `token`'s user and returns its id.
async fn create(http: SocketAddr, token: &str, body: Value) -> anyhow::Result<String> {
    let v: Value = reqwest::Client::new()
        .post(format!("http://{http}/v1/conversations"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    v["conversation_id"]
        .as_str()
        .map(str::to_owned)
        .context("no conversation")
}

/// Sends `count` messages to `cid`, each body its send time (µs on
/// `clock`), waiting for each ack (closed loop).
async fn send_timed(
    ws: &mut Socket,
    cid: &str,
    id: &str,
    count: usize,
    clock: Instant,
) -> anyhow::Result<()> {
    for i in 0..count {
        let now = clock.elapsed().as_micros() as u64;
        let frame = json!({"type": "send", "conversation_id": cid, "client_msg_id": format!("{id}-{i}"), "body": now.to_string()});
        client::send(ws, &frame).await?;
        client::wait_for(ws, "ack").await?;
    }
    Ok(())
}

/// Reads `messages` posted messages whose bodies are their send time (µs
/// on `clock`) and returns their send→receive latencies in µs.
async fn latencies(ws: &mut Socket, messages: usize, clock: Instant) -> anyhow::Result<Vec<u64>> {
    let mut latencies = Vec::with_capacity(messages);
    while latencies.len() < messages {
        let v = client::wait_for(ws, "event").await?;
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

/// One sender → one receiver over a direct conversation, closed loop.
/// Returns send→receive latencies in µs.
async fn pair(
    http: SocketAddr,
    id: usize,
    messages: usize,
    clock: Instant,
) -> anyhow::Result<Vec<u64>> {
    let (s, r) = (format!("bench-s{id}"), format!("bench-r{id}"));
    let (ts, tr) = (token(http, &s).await?, token(http, &r).await?);
    let cid = create(http, &ts, json!({"kind": "direct", "members": [r]})).await?;
    let mut sender = client::connect(http, &ts, "d").await?;
    let mut receiver = client::connect(http, &tr, "d").await?;
    let receive = tokio::spawn(async move { latencies(&mut receiver, messages, clock).await });
    send_timed(&mut sender, &cid, "m", messages, clock).await?;
    receive.await?
}

/// Prints one line for a run and returns it as JSON.
fn report(name: &str, latencies_us: &[u64], elapsed: Duration) -> Value {
    let mut h = histogram();
    for &us in latencies_us {
        let _ = h.record(us.max(1));
    }
    let rate = latencies_us.len() as f64 / elapsed.as_secs_f64();
    let s = summary(&h);
    println!(
        "{name:<28} {:>7} msgs in {:>6.2} s = {:>8.0} msgs/s   send→receive p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms",
        latencies_us.len(),
        elapsed.as_secs_f64(),
        rate,
        s["p50_ms"].as_f64().unwrap_or_default(),
        s["p99_ms"].as_f64().unwrap_or_default(),
        s["max_ms"].as_f64().unwrap_or_default(),
    );
    json!({"name": name, "messages": latencies_us.len(), "seconds": elapsed.as_secs_f64(), "msgs_per_sec": rate, "send_to_receive": s})
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        #[cfg(feature = "search")]
        Some(Bench::Search(search)) => return search::run(search).await,
        Some(Bench::Fanout(fanout)) => return fanout::run(fanout).await,
        None => {}
    }
    let server = start_server(&args.server_args).await?;
    let http = server.http;
    let clock = Instant::now();
    println!("chatflow under test at http://{http} (release build recommended)");

    let started = Instant::now();
    let latencies = pair(http, 0, args.pair_messages, clock).await?;
    let one = report("1 pair, closed loop", &latencies, started.elapsed());

    let started = Instant::now();
    let runs: Vec<_> = (1..=args.senders)
        .map(|id| tokio::spawn(pair(http, id, args.messages_per_sender, clock)))
        .collect();
    let mut all = Vec::new();
    for r in runs {
        all.extend(r.await??);
    }
    let name = format!("{} concurrent senders", args.senders);
    let many = report(&name, &all, started.elapsed());
    println!("{}", json!({"pair": one, "concurrent": many}));
    drop(server);
    Ok(())
}
