//! Kafka mode: chat events straight onto `chat.events` (Avro, Confluent
//! framing, keyed by conversation), to load the consumer stages alone.
//! Conversation sizes and activity are Zipf-distributed, message sizes
//! log-normal. While it runs and after, it samples every named consumer
//! group's committed offsets: events/s per stage and the lag left.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use schemas::now_millis;
use schemas::{Actor, ChatEvent, Codec, ConversationCreated, MemberSpec, MessagePosted, Payload};
use serde_json::{Value, json};
use streams::{KafkaConfig, Producer, topics};

use crate::dist::{Rng, text};
use crate::report::{histogram, line, summary};

#[derive(Args, Clone, Debug)]
pub struct KafkaArgs {
    /// Bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Conversations to create first.
    #[arg(long, default_value_t = 1000)]
    pub conversations: usize,
    /// People the members are drawn from.
    #[arg(long, default_value_t = 5000)]
    pub users: usize,
    /// The largest conversation (sizes are Zipf between 2 and this).
    #[arg(long, default_value_t = 200)]
    pub max_members: usize,
    /// Messages per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// The longest message body, bytes.
    #[arg(long, default_value_t = 2000)]
    pub max_body: usize,
    /// Consumer groups to watch (the stages); `none` for none.
    #[arg(long, default_values_t = ["persister".to_string(), "router".to_string(), "indexer".to_string()])]
    pub group: Vec<String>,
    /// How long to wait for the stages to catch up afterwards.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Afterwards, read all of chat.events once with a fresh reader and
    /// report the raw consume rate (the broker alone: run it against
    /// `chatflow broker` with `--group` none).
    #[arg(long)]
    pub consume: bool,
    /// Prefix of conversation and user ids.
    #[arg(long, default_value = "lgk")]
    pub prefix: String,
}

fn event(cid: &str, user: &str, payload: Payload) -> ChatEvent {
    ChatEvent {
        event_id: format!("{cid}-{}", now_millis()),
        conversation_id: cid.to_owned(),
        occurred_at: now_millis(),
        actor: Actor {
            user_id: user.to_owned(),
            device_id: "loadgen".into(),
        },
        payload,
    }
}

/// Committed offsets summed over partitions, per group; and the log's end.
fn progress(config: &KafkaConfig, groups: &[String]) -> anyhow::Result<(i64, Vec<i64>)> {
    let infos = streams::ops::topics(config, groups)?;
    let events = infos
        .iter()
        .find(|t| t.topic == topics::EVENTS)
        .context("no chat.events topic")?;
    let end = events.partitions.iter().map(|p| p.end_offset).sum();
    let committed = groups
        .iter()
        .map(|g| {
            events
                .partitions
                .iter()
                .map(|p| {
                    p.groups
                        .iter()
                        .find(|(name, _, _)| name == g)
                        .map_or(p.start_offset, |(_, c, _)| *c)
                })
                .sum()
        })
        .collect();
    Ok((end, committed))
}

pub async fn run(args: KafkaArgs) -> anyhow::Result<Value> {
    let config = KafkaConfig::new(args.brokers.clone());
    // Against a bare broker the topic may not exist yet (chatflow creates
    // it with the same spec).
    topics::ensure(&config, &[topics::TopicSpec::events(2)], 1).await?;
    let producer = Producer::new(&config)?;
    let codec = Codec::new();
    let mut rng = Rng::new(7);
    let groups: Vec<String> = args
        .group
        .iter()
        .filter(|g| g.as_str() != "none")
        .cloned()
        .collect();
    let (end_before, committed_before) = {
        let (c, g) = (config.clone(), groups.clone());
        tokio::task::spawn_blocking(move || progress(&c, &g)).await??
    };

    // Conversations: sizes Zipf between 2 and max_members.
    let mut conversations: Vec<(String, Vec<String>)> = Vec::with_capacity(args.conversations);
    for c in 0..args.conversations {
        let size = (2 + rng.zipf(args.max_members.max(2) - 1)).min(args.users);
        let mut members: Vec<String> = (0..size)
            .map(|_| format!("{}u{}", args.prefix, rng.zipf(args.users)))
            .collect();
        members.sort();
        members.dedup();
        let cid = format!("g:{}{c}-{}", args.prefix, now_millis());
        let payload = Payload::ConversationCreated(ConversationCreated {
            kind: "group".into(),
            name: Some("loadgen".into()),
            description: None,
            members: members
                .iter()
                .enumerate()
                .map(|(i, u)| MemberSpec {
                    user_id: u.clone(),
                    role: if i == 0 { "owner" } else { "member" }.into(),
                })
                .collect(),
        });
        let bytes = codec.encode(&event(&cid, &members[0], payload))?;
        producer
            .send(topics::EVENTS, cid.as_bytes(), &bytes, None)
            .await?;
        conversations.push((cid, members));
    }
    eprintln!("{} conversations created", conversations.len());

    let total = (args.rate * args.duration.as_secs_f64()).round() as u64;
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template("producing {bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let acked = Arc::new(AtomicU64::new(0));
    let mut ack = histogram();
    let mut in_flight = FuturesUnordered::new();
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let started = Instant::now();
    let mut bytes_sent = 0u64;
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        // Collect acknowledgements while waiting for the next send.
        loop {
            let sleep = tokio::time::sleep_until(due.into());
            tokio::select! {
                Some(result) = in_flight.next(), if !in_flight.is_empty() => {
                    let (sent_at, result): (Instant, Result<(i32, i64), streams::KafkaError>) = result;
                    result.context("produce")?;
                    let _ = ack.record((sent_at.elapsed().as_micros() as u64).max(1));
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                _ = sleep => break,
            }
        }
        let (cid, members) = &conversations[rng.zipf(conversations.len())];
        let sender = &members[rng.below(members.len())];
        let len = rng.message_len(args.max_body);
        let payload = Payload::MessagePosted(MessagePosted {
            silent: false,
            attachments: Vec::new(),
            sealed: None,
            message_id: format!("{}m{i}", args.prefix),
            client_msg_id: format!("{}c{i}", args.prefix),
            body: text(&mut rng, len),
            reply_to: None,
            mentions: Vec::new(),
        });
        let bytes = codec.encode(&event(cid, sender, payload))?;
        bytes_sent += bytes.len() as u64;
        let sent_at = Instant::now();
        // A full local queue means the broker is the limit: wait for an
        // acknowledgement, then try again (the offered rate drops).
        let pending = loop {
            match producer.enqueue(topics::EVENTS, cid.as_bytes(), &bytes) {
                Ok(p) => break p,
                Err(e) if in_flight.is_empty() => return Err(e.into()),
                Err(_) => {
                    if let Some((at, result)) = in_flight.next().await {
                        result.context("produce")?;
                        let _ = ack.record((at.elapsed().as_micros() as u64).max(1));
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        };
        in_flight.push(async move { (sent_at, pending.await) });
        if i % 256 == 0 {
            bar.set_position(i);
            bar.set_message(format!("acked {}", acked.load(Ordering::Relaxed)));
        }
    }
    while let Some((sent_at, result)) = in_flight.next().await {
        result.context("produce")?;
        let _ = ack.record((sent_at.elapsed().as_micros() as u64).max(1));
    }
    let producing = started.elapsed();
    bar.finish_and_clear();

    // The stages: sample committed offsets until each group reaches the end
    // of the log (or the drain time is up).
    let mut caught_up: Vec<Option<Duration>> = vec![None; groups.len()];
    let mut last = (0, committed_before.clone());
    while started.elapsed() < producing + args.drain {
        let (c, g) = (config.clone(), groups.clone());
        last = tokio::task::spawn_blocking(move || progress(&c, &g)).await??;
        for (i, committed) in last.1.iter().enumerate() {
            if caught_up[i].is_none() && *committed >= last.0 {
                caught_up[i] = Some(started.elapsed());
            }
        }
        if caught_up.iter().all(Option::is_some) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let produced = (last.0 - end_before).max(0);
    println!(
        "produced {total} messages ({:.1} MB) in {:.1} s = {:.0} events/s (target {}), {} conversations",
        bytes_sent as f64 / 1e6,
        producing.as_secs_f64(),
        total as f64 / producing.as_secs_f64(),
        args.rate,
        conversations.len()
    );
    println!("{}", line("produce→ack", &ack));
    let mut stages = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let done = (last.1[i] - committed_before[i]).max(0);
        let lag = (last.0 - last.1[i]).max(0);
        let took = caught_up[i].unwrap_or(started.elapsed());
        let rate = done as f64 / took.as_secs_f64();
        match caught_up[i] {
            Some(t) => println!(
                "stage {group:<10} caught up after {:.1} s: {done} events = {rate:.0} events/s",
                t.as_secs_f64()
            ),
            None => println!(
                "stage {group:<10} still {lag} behind after {:.1} s: {done} events = {rate:.0} events/s",
                took.as_secs_f64()
            ),
        }
        stages.push(json!({"group": group, "events": done, "seconds": took.as_secs_f64(), "events_per_sec": rate, "lag": lag, "caught_up": caught_up[i].is_some()}));
    }
    let consumed = if args.consume {
        let c = config.clone();
        let (records, bytes, took) =
            tokio::task::spawn_blocking(move || streams::ops::read_all(&c, topics::EVENTS))
                .await??;
        let rate = records as f64 / took.as_secs_f64();
        println!(
            "read all of chat.events: {records} records ({:.1} MB) in {:.2} s = {rate:.0} records/s",
            bytes as f64 / 1e6,
            took.as_secs_f64()
        );
        json!({"records": records, "bytes": bytes, "seconds": took.as_secs_f64(), "records_per_sec": rate})
    } else {
        Value::Null
    };
    Ok(json!({
        "consume": consumed,
        "mode": "kafka",
        "conversations": conversations.len(),
        "target_rate": args.rate,
        "messages": total,
        "log_records": produced,
        "bytes": bytes_sent,
        "produce_seconds": producing.as_secs_f64(),
        "events_per_sec": total as f64 / producing.as_secs_f64(),
        "produce_to_ack": summary(&ack),
        "stages": stages,
    }))
}
