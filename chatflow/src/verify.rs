//! `chatflow verify`: compares a rebuilt read model with the live one,
//! conversation by conversation, and prints the first difference of each
//! conversation that differs. Exits non-zero on any difference.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use cli::DataArgs;
use store::{Message, Page, Store, Tiered};

use crate::replay::Model;

#[derive(Args)]
pub struct VerifyArgs {
    pub model: Model,
    /// The rebuilt target (as given to `replay --into`).
    pub rebuilt: String,
    /// The live model: a store URL, or for the indexer an index URL.
    #[arg(long)]
    pub against: String,
    /// The live store (for the indexer: which messages to compare).
    #[arg(long, env = "CHATFLOW_STORE", default_value = "fjall://store")]
    pub store: String,
    /// The archive behind the live store's cold tier.
    #[arg(long, env = "CHATFLOW_ARCHIVE", default_value = "file://archive")]
    pub archive: String,
    #[command(flatten)]
    pub data: DataArgs,
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    crate::serve::enter_data_dir(&args.data.data_dir)?;
    let archive = archive::open(&args.archive).await?;
    let open_store = |url: String| async move {
        store::open(&url)
            .await
            .with_context(|| format!("opening the store {url}"))
    };
    let (compared, differences) = match args.model {
        Model::Persister => {
            let live: Arc<dyn Store> = Arc::new(Tiered::new(
                open_store(args.against.clone()).await?,
                archive,
            ));
            let rebuilt = open_store(args.rebuilt.clone()).await?;
            stores(&*live, &*rebuilt).await?
        }
        Model::Indexer => {
            let store = Tiered::new(open_store(args.store.clone()).await?, archive);
            let live = search::open(&args.against).await?;
            let rebuilt = search::open(&args.rebuilt).await?;
            indexes(&store, &*live, &*rebuilt).await?
        }
    };
    for d in &differences {
        println!("{d}");
    }
    if !differences.is_empty() {
        bail!(
            "{} of {compared} conversations differ between {} and {}",
            differences.len(),
            args.rebuilt,
            args.against
        );
    }
    println!(
        "{compared} conversations identical in {} and {}",
        args.rebuilt, args.against
    );
    Ok(())
}

/// The first position where two lists differ, described.
fn first_difference<T: PartialEq + Debug>(what: &str, live: &[T], rebuilt: &[T]) -> Option<String> {
    let at = live.iter().zip(rebuilt).position(|(a, b)| a != b);
    match at {
        Some(i) => Some(format!(
            "{what} #{i}: live {:?}, rebuilt {:?}",
            live[i], rebuilt[i]
        )),
        None if live.len() != rebuilt.len() => Some(format!(
            "{what}: live has {}, rebuilt has {}",
            live.len(),
            rebuilt.len()
        )),
        None => None,
    }
}

async fn history(store: &dyn Store, cid: &str) -> anyhow::Result<Vec<Message>> {
    let mut out = Vec::new();
    let mut after = -1;
    loop {
        let page = store
            .messages(
                cid,
                Page {
                    before: None,
                    after: Some(after),
                    limit: 200,
                },
            )
            .await?;
        after = page.messages.last().map_or(after, |m| m.seq);
        out.extend(page.messages);
        if !page.has_more {
            return Ok(out);
        }
    }
}

async fn conversations(a: &dyn Store, b: &dyn Store) -> anyhow::Result<BTreeSet<String>> {
    let mut ids: BTreeSet<String> = a.conversation_ids().await?.into_iter().collect();
    ids.extend(b.conversation_ids().await?);
    Ok(ids)
}

/// Conversation, members (with their receipts) and every message.
async fn stores(live: &dyn Store, rebuilt: &dyn Store) -> anyhow::Result<(usize, Vec<String>)> {
    let ids = conversations(live, rebuilt).await?;
    let mut differences = Vec::new();
    for cid in &ids {
        let (a, b) = (
            live.conversation(cid).await?,
            rebuilt.conversation(cid).await?,
        );
        let found = match (&a, &b) {
            (Some(a), Some(b)) if a.last_seq != b.last_seq => Some(format!(
                "not at the same seq: live applied {}, rebuilt {} (replay again, or wait)",
                a.last_seq, b.last_seq
            )),
            (Some(_), Some(_)) => {
                let mut members = (live.members(cid).await?, rebuilt.members(cid).await?);
                members.0.sort_by(|x, y| x.user_id.cmp(&y.user_id));
                members.1.sort_by(|x, y| x.user_id.cmp(&y.user_id));
                let messages = (history(live, cid).await?, history(rebuilt, cid).await?);
                first_difference("conversation", &[a], &[b])
                    .or_else(|| first_difference("member", &members.0, &members.1))
                    .or_else(|| first_difference("message", &messages.0, &messages.1))
            }
            (Some(_), None) => Some("only in the live store".into()),
            (None, Some(_)) => Some("only in the rebuilt store".into()),
            (None, None) => None,
        };
        if let Some(d) = found {
            differences.push(format!("{cid}: {d}"));
        }
    }
    differences.extend(days(live, rebuilt, &ids).await?);
    Ok((ids.len(), differences))
}

/// The audit log and the analytics of each day from the first
/// conversation's creation to today.
async fn days(
    live: &dyn Store,
    rebuilt: &dyn Store,
    ids: &BTreeSet<String>,
) -> anyhow::Result<Vec<String>> {
    let mut first = schemas::now_millis();
    for cid in ids {
        if let Some(c) = live.conversation(cid).await? {
            first = first.min(c.created_at);
        }
    }
    let mut differences = Vec::new();
    for day in store::day_of(first)..=store::day_of(schemas::now_millis()) {
        let audit = (live.audit_day(day).await?, rebuilt.audit_day(day).await?);
        let mut stats = (live.day_stats(day).await?, rebuilt.day_stats(day).await?);
        stats
            .0
            .sort_by(|x, y| x.conversation_id.cmp(&y.conversation_id));
        stats
            .1
            .sort_by(|x, y| x.conversation_id.cmp(&y.conversation_id));
        let mut active = (
            live.active_users(day).await?,
            rebuilt.active_users(day).await?,
        );
        active.0.sort();
        active.1.sort();
        let found = first_difference("audit entry", &audit.0, &audit.1)
            .or_else(|| first_difference("conversation's messages", &stats.0, &stats.1))
            .or_else(|| first_difference("active user", &active.0, &active.1));
        if let Some(d) = found {
            differences.push(format!("day {day}: {d}"));
        }
    }
    Ok(differences)
}

/// Every message's document, for the messages the live store holds.
async fn indexes(
    store: &dyn Store,
    live: &dyn search::SearchIndex,
    rebuilt: &dyn search::SearchIndex,
) -> anyhow::Result<(usize, Vec<String>)> {
    let ids = store.conversation_ids().await?;
    let mut differences = Vec::new();
    for cid in &ids {
        let mut docs = (Vec::new(), Vec::new());
        for m in history(store, cid).await? {
            docs.0.push(live.get(cid, m.seq).await?);
            docs.1.push(rebuilt.get(cid, m.seq).await?);
        }
        if let Some(d) = first_difference("document", &docs.0, &docs.1) {
            differences.push(format!("{cid}: {d}"));
        }
    }
    Ok((ids.len(), differences))
}
