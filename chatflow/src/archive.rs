//! `chatflow archive`: what the event-log archive holds.

use std::time::{Duration, UNIX_EPOCH};

use archive::segment;
use clap::{Args, Subcommand};
use cli::DataArgs;

#[derive(Subcommand)]
pub enum ArchiveCommand {
    /// List the segments of a topic: partition, offset range, records,
    /// bytes, record-time range and object key.
    Ls(LsArgs),
}

#[derive(Args)]
pub struct LsArgs {
    /// The archive: `file://<dir>` (relative to the data dir) or
    /// `s3://bucket[/prefix][?endpoint=<url>]`.
    #[arg(long, env = "CHATFLOW_ARCHIVE", default_value = "file://archive")]
    pub archive: String,
    #[arg(long, default_value = streams::topics::EVENTS)]
    pub topic: String,
    /// Only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    #[command(flatten)]
    pub data: DataArgs,
}

pub async fn run(command: ArchiveCommand) -> anyhow::Result<()> {
    match command {
        ArchiveCommand::Ls(args) => ls(args).await,
    }
}

async fn ls(args: LsArgs) -> anyhow::Result<()> {
    if args.archive.starts_with("file://") {
        crate::serve::enter_data_dir(&args.data.data_dir)?;
    }
    let archive = archive::open(&args.archive).await?;
    let prefix = match args.partition {
        Some(p) => segment::partition_prefix(&args.topic, p),
        None => segment::topic_prefix(&args.topic),
    };
    let listed = segment::list(&*archive, &prefix).await?;
    println!(
        "{:>9} {:>12} {:>12} {:>8} {:>10}  {:24} {:24} key",
        "partition", "first", "last", "records", "bytes", "first record", "last record"
    );
    let (mut records, mut bytes) = (0u64, 0u64);
    for (_, _, key) in &listed {
        let Some(object) = archive.get(key).await? else {
            continue; // removed since the listing
        };
        let info = segment::info(key, &object)?;
        records += info.records;
        bytes += info.bytes;
        println!(
            "{:>9} {:>12} {:>12} {:>8} {:>10}  {:24} {:24} {}",
            info.partition,
            info.first_offset,
            info.last_offset,
            info.records,
            info.bytes,
            time(info.first_timestamp),
            time(info.last_timestamp),
            info.key
        );
    }
    println!(
        "{} segments, {records} records, {bytes} bytes",
        listed.len()
    );
    Ok(())
}

fn time(millis: Option<i64>) -> String {
    match millis.and_then(|m| u64::try_from(m).ok()) {
        Some(m) => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(m)).to_string()
        }
        None => "-".into(),
    }
}
