//! `chatflow bench fanout`: the cost of fan-out. One group of `--members`,
//! `--online` of them connected (one device each) and measured, plus
//! `--senders` more members who send closed-loop (each waits for its ack;
//! their sockets receive everything too, unmeasured). Reports deliveries/s
//! to the measured devices and send→deliver latency.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::{create, latencies, report, send_timed, start_server, token};
use crate::client;

#[derive(Args, Clone, Debug)]
pub struct FanoutArgs {
    /// Members of the group.
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Members online (one socket each) while it runs.
    #[arg(long, default_value_t = 50)]
    pub online: usize,
    /// Further online members who send.
    #[arg(long, default_value_t = 5)]
    pub senders: usize,
    /// Messages in all.
    #[arg(long, default_value_t = 1000)]
    pub messages: usize,
    /// Extra flags for the chatflow under test.
    #[arg(long, allow_hyphen_values = true)]
    pub server_args: Vec<String>,
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.senders >= 1 && args.online + args.senders <= args.members,
        "need --senders ≥ 1 and --online + --senders ≤ --members"
    );
    let server = start_server(&args.server_args).await?;
    let http = server.http;
    println!(
        "chatflow under test at http://{http}: a group of {}, {} online, {} sending",
        args.members, args.online, args.senders
    );
    let users: Vec<String> = (0..args.members).map(|i| format!("fan{i}")).collect();
    let owner = token(http, &users[0]).await?;
    let cid = create(
        http,
        &owner,
        json!({"kind": "group", "name": "fanout", "members": &users[1..]}),
    )
    .await?;

    let clock = Instant::now();
    let per_sender = args.messages / args.senders;
    let expected = per_sender * args.senders;
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for (i, user) in users.iter().take(args.online + args.senders).enumerate() {
        let ws = client::connect(http, &token(http, user).await?, "d").await?;
        if i < args.online {
            receivers.push(ws);
        } else {
            senders.push(ws);
        }
    }
    let online_devices = receivers.len();
    let receiving: Vec<_> = receivers
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { latencies(&mut ws, expected, clock).await }))
        .collect();

    let started = Instant::now();
    let sending: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(s, mut ws)| {
            let cid = cid.clone();
            tokio::spawn(async move {
                send_timed(&mut ws, &cid, &format!("f{s}"), per_sender, clock).await
            })
        })
        .collect();
    for s in sending {
        s.await??;
    }
    let sent_in = started.elapsed();
    let mut all = Vec::new();
    for r in receiving {
        all.extend(tokio::time::timeout(Duration::from_secs(120), r).await???);
    }
    let elapsed = started.elapsed();
    println!(
        "{expected} messages sent in {:.2} s = {:.0} msgs/s",
        sent_in.as_secs_f64(),
        expected as f64 / sent_in.as_secs_f64()
    );
    let deliveries = report(
        &format!(
            "deliveries to {online_devices} devices (+{} senders')",
            args.senders
        ),
        &all,
        elapsed,
    );
    println!(
        "{}",
        json!({"members": args.members, "online_devices": online_devices, "messages": expected, "deliveries": deliveries})
    );
    drop(server);
    Ok(())
}
