//! Operators' subcommands: token, tail, topics.

use clap::Args;
use streams::ops::{self, TailOptions};
use tokio_util::sync::CancellationToken;

use cli::{AuthArgs, DataArgs, KafkaArgs};

#[derive(Args)]
pub struct TokenArgs {
    pub user_id: String,
    /// Display name claim.
    #[arg(long)]
    pub name: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    pub ttl: u64,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
}

pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let secret = cli::secret(&args.auth, &args.data.data_dir, false)?;
    let token =
        ingest::auth::Auth::hs256(&secret).issue(&args.user_id, args.name.as_deref(), args.ttl)?;
    println!("{token}");
    Ok(())
}

#[derive(Args)]
pub struct TailArgs {
    pub topic: String,
    /// Keep printing new records until interrupted.
    #[arg(long, short)]
    pub follow: bool,
    /// Only records produced from now on.
    #[arg(long)]
    pub from_end: bool,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub registry: cli::SchemaRegistryArgs,
}

pub async fn tail(args: TailArgs) -> anyhow::Result<()> {
    cli::use_schema_registry(&args.registry).await?;
    let config = args.kafka.config();
    let stop = CancellationToken::new();
    let stop_on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop_on_signal.cancel();
    });
    let opts = TailOptions {
        topic: args.topic,
        from_end: args.from_end,
        follow: args.follow,
        limit: args.limit,
    };
    tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        ops::tail(&config, &opts, &mut out, &stop)
    })
    .await??;
    Ok(())
}

#[derive(Args)]
pub struct TopicsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Consumer groups whose lag to show.
    #[arg(long = "group", default_values_t = [String::from("persister"), String::from("router")])]
    pub groups: Vec<String>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

pub fn topics(args: TopicsArgs) -> anyhow::Result<()> {
    let config = args.kafka.config();
    let topics = ops::topics(&config, &args.groups)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&topics)?);
        return Ok(());
    }
    println!(
        "{:<28} {:>9} {:>12} {:>12}  groups (committed/lag)",
        "topic", "partition", "start", "end"
    );
    for t in topics {
        for p in t.partitions {
            let groups: Vec<String> = p
                .groups
                .iter()
                .map(|(g, off, lag)| format!("{g}={off}/{lag}"))
                .collect();
            println!(
                "{:<28} {:>9} {:>12} {:>12}  {}",
                t.topic,
                p.partition,
                p.start_offset,
                p.end_offset,
                groups.join(" ")
            );
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct BrokerArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Where the broker listens (Kafka protocol).
    #[arg(long, env = "CHATFLOW_KAFKA_LISTEN", default_value = "127.0.0.1:9092")]
    pub kafka_listen: std::net::SocketAddr,
    /// The built-in schema registry; `off` to not serve it.
    #[arg(long, env = "CHATFLOW_REGISTRY", default_value = "127.0.0.1:8081")]
    pub registry: String,
}

/// The embedded broker (and registry) alone, for stages run as separate
/// processes on this machine.
pub async fn broker(args: BrokerArgs) -> anyhow::Result<()> {
    crate::serve::enter_data_dir(&args.data.data_dir)?;
    let registry = crate::serve::bind_registry(&args.registry).await?;
    let broker = crate::serve::start_broker(args.kafka_listen).await?;
    let shutdown = CancellationToken::new();
    println!("chatflow broker on {}", broker.addr());
    let registry = match registry {
        Some(listener) => {
            println!("schema registry on http://{}", listener.local_addr()?);
            let token = shutdown.clone();
            Some(tokio::spawn(crate::serve::serve_registry(listener, token)))
        }
        None => None,
    };
    cli::stop_signal().await;
    shutdown.cancel();
    if let Some(task) = registry {
        task.await??;
    }
    broker.stop().await;
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum Admin {
    /// Create the DynamoDB table the store uses (a no-op if it exists).
    CreateTable(cli::StoreArgs),
}

pub async fn admin(command: Admin) -> anyhow::Result<()> {
    match command {
        Admin::CreateTable(store) => create_table(&store.store).await,
    }
}

async fn create_table(url: &str) -> anyhow::Result<()> {
    if cli::create_table(url).await? {
        println!("table created: {url}");
    } else {
        println!("table already exists: {url}");
    }
    Ok(())
}
