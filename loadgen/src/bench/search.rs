//! `chatflow bench search`: indexes generated messages into a tantivy index
//! (the embedded backend, on disk) through the same `SearchIndex::apply` the
//! indexer uses, then times the queries users make: words, phrases,
//! prefixes (search-as-you-type) and CJK, each over one user's
//! conversations.

use std::time::{Duration, Instant};

use crate::dist::Rng;
use crate::report::{histogram, ms};
use clap::Args;
use search::{IndexOp, MessageDoc, SearchIndex, SearchQuery, TantivyIndex};

#[derive(Args, Clone, Debug)]
pub struct SearchBenchArgs {
    /// Messages to index.
    #[arg(long, default_value_t = 1_000_000)]
    pub docs: usize,
    /// Conversations they are spread over (Zipf: a few are very busy).
    #[arg(long, default_value_t = 20_000)]
    pub conversations: usize,
    /// Messages per `apply` (one commit each).
    #[arg(long, default_value_t = 20_000)]
    pub batch: usize,
    /// Queries of each kind.
    #[arg(long, default_value_t = 500)]
    pub queries: usize,
    /// Conversations each searching user belongs to.
    #[arg(long, default_value_t = 50)]
    pub user_conversations: usize,
    /// Where the index goes (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "the", "a", "to", "and", "you", "i", "it", "is", "we", "on", "for", "at", "in", "of", "that",
    "this", "can", "be", "will", "are", "have", "do", "not", "with", "meeting", "lunch", "today",
    "tomorrow", "deploy", "release", "build", "test", "review", "merge", "branch", "ticket",
    "customer", "invoice", "budget", "report", "slides", "design", "draft", "launch", "weekend",
    "coffee", "dinner", "flight", "hotel", "station", "harbour", "birthday", "party", "gift",
    "photo", "video", "call", "later", "soon", "thanks", "great", "sorry", "please", "maybe",
    "yes", "no", "ok", "sure", "morning", "evening", "night", "office", "home", "remote",
    "kafka", "broker", "partition", "offset", "consumer", "producer", "latency", "throughput",
    "database", "index", "search", "query", "server", "client", "socket", "message", "channel",
    "café", "résumé", "naïve", "zürich", "münchen", "são", "paulo", "crème", "brûlée", "façade",
    "東京", "タワー", "会議", "明日", "北京", "天安门", "我们", "今天", "한국어", "회의", "내일",
    "project", "deadline", "monday", "friday", "update", "status", "blocked", "done", "ready",
];

/// Makes one query text of a kind.
type QueryMaker = fn(&mut Rng) -> String;

fn body(rng: &mut Rng) -> String {
    // Short messages dominate chat; a few are paragraphs.
    let len = match rng.unit() {
        u if u < 0.6 => 2 + rng.below(8),
        u if u < 0.95 => 10 + rng.below(20),
        _ => 30 + rng.below(90),
    };
    let mut out = String::new();
    for i in 0..len {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.zipf(WORDS.len())]);
    }
    out
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub async fn run(args: SearchBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.docs > 0 && args.conversations > 0 && args.batch > 0,
        "--docs, --conversations and --batch must be positive"
    );
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().join("index"));
    let index = TantivyIndex::open(&dir)?;
    let mut rng = Rng::new(42);
    let now = 1_800_000_000_000i64;
    let mut next_seq = vec![0i64; args.conversations];
    let cid = |c: usize| format!("g:{c:06}");

    println!(
        "indexing {} messages over {} conversations into {} (batches of {})",
        args.docs,
        args.conversations,
        dir.display(),
        args.batch
    );
    let started = Instant::now();
    let mut generated = 0;
    let mut generating = Duration::ZERO;
    while generated < args.docs {
        let n = args.batch.min(args.docs - generated);
        let t = Instant::now();
        let ops: Vec<IndexOp> = (0..n)
            .map(|i| {
                let c = rng.zipf(args.conversations);
                let seq = next_seq[c];
                next_seq[c] += 1;
                IndexOp::Post(MessageDoc {
                    conversation_id: cid(c),
                    seq,
                    message_id: format!("m{}", generated + i),
                    sender_id: format!("user{}", rng.below(5000)),
                    // Spread over the last year.
                    sent_at: now - (rng.unit() * 365.0 * 86_400_000.0) as i64,
                    body: body(&mut rng),
                    deleted: false,
                    version: seq,
                })
            })
            .collect();
        generating += t.elapsed();
        index.apply(ops).await?;
        generated += n;
        eprint!("\r  {generated}/{}", args.docs);
    }
    eprintln!();
    let total = started.elapsed();
    let indexing = total.saturating_sub(generating);
    println!(
        "indexed: {:.0} docs/s ({:.1} s, of which {:.1} s generating text); index {} MiB",
        args.docs as f64 / indexing.as_secs_f64(),
        total.as_secs_f64(),
        generating.as_secs_f64(),
        dir_size(&dir) / (1 << 20)
    );

    let kinds: [(&str, QueryMaker); 5] = [
        ("one word", |r| WORDS[24 + r.below(60)].to_owned()),
        ("two words", |r| {
            format!("{} {} ", WORDS[24 + r.below(60)], WORDS[24 + r.below(60)])
        }),
        ("phrase", |r| {
            format!("\"{} {}\"", WORDS[r.below(24)], WORDS[24 + r.below(60)])
        }),
        ("prefix (as you type)", |r| {
            let w = WORDS[24 + r.below(60)];
            w.chars().take(3).collect()
        }),
        ("CJK", |r| WORDS[100 + r.below(11)].to_owned()),
    ];
    println!(
        "queries, each over one user's {} conversations (top 20, snippets):",
        args.user_conversations
    );
    println!(
        "  {:<22} {:>9} {:>9} {:>9} {:>10}",
        "kind", "p50 ms", "p99 ms", "max ms", "avg hits"
    );
    for (name, make) in kinds {
        let mut times = histogram();
        let mut hits = 0usize;
        for _ in 0..args.queries {
            let conversation_ids = (0..args.user_conversations)
                .map(|_| cid(rng.zipf(args.conversations)))
                .collect();
            let query = SearchQuery {
                text: make(&mut rng),
                conversation_ids,
                limit: 20,
                now,
                ..Default::default()
            };
            let t = Instant::now();
            let results = index.search(&query).await?;
            let _ = times.record((t.elapsed().as_micros() as u64).max(1));
            hits += results.hits.len();
        }
        println!(
            "  {:<22} {:>9.2} {:>9.2} {:>9.2} {:>10.1}",
            name,
            ms(times.value_at_quantile(0.5)),
            ms(times.value_at_quantile(0.99)),
            ms(times.max()),
            hits as f64 / args.queries as f64
        );
    }
    Ok(())
}
