//! `chatflow switch`: points a running chatflow at a rebuilt read model
//! without stopping it. The command leaves a request in the data dir; the
//! running process (see [`watch`]) opens the target, holds the model's
//! writes (reads go on, sends are still acknowledged from the log), catches
//! the target up from its replay checkpoint to the broker's end, serves it
//! from then on, records it in `generations.json` (a restart keeps it) and
//! releases the writes. The live stage then goes on from its own position:
//! what it applies again is at or below each conversation's applied seq,
//! which the target ignores.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use cli::{DataArgs, Node, Switch, write_whole};
use serde::{Deserialize, Serialize};
use streams::Stage;
use tokio_util::sync::CancellationToken;

use crate::replay::{self, Model, Plan};

#[derive(Args)]
pub struct SwitchArgs {
    pub model: Model,
    /// The rebuilt target (as given to `chatflow replay --into`).
    pub into: String,
    /// How long to wait for the running chatflow to switch.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub data: DataArgs,
}

/// What the running process answers.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    ok: bool,
    message: String,
}

fn request_path(dir: &Path, model: Model) -> PathBuf {
    dir.join("replay")
        .join(format!("switch-{model:?}.request").to_lowercase())
}

fn answer_path(dir: &Path, model: Model) -> PathBuf {
    dir.join("replay")
        .join(format!("switch-{model:?}.answer").to_lowercase())
}

/// The command: asks the chatflow running on this data dir to switch and
/// waits for its answer.
pub async fn run(args: SwitchArgs) -> anyhow::Result<()> {
    let dir = crate::serve::enter_data_dir(&args.data.data_dir)?;
    let (request, answer) = (
        request_path(&dir, args.model),
        answer_path(&dir, args.model),
    );
    let _ = std::fs::remove_file(&answer);
    write_whole(&request, args.into.as_bytes())?;
    let started = Instant::now();
    loop {
        if let Ok(bytes) = std::fs::read(&answer) {
            let _ = std::fs::remove_file(&answer);
            let said: Answer = serde_json::from_slice(&bytes)?;
            if said.ok {
                println!("{}", said.message);
                return Ok(());
            }
            bail!("{}", said.message);
        }
        if started.elapsed() > args.timeout {
            let _ = std::fs::remove_file(&request);
            bail!(
                "no answer within {:?}: is chatflow running with the {:?} on {}?",
                args.timeout,
                args.model,
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// In a running chatflow: takes switch requests until `shutdown`.
pub async fn watch(node: Arc<Node>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let dir = node.data_dir().clone();
    let models = [
        (Model::Persister, node.runs("persister")),
        (Model::Indexer, node.runs("indexer")),
    ];
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for (model, runs) in models {
            let request = request_path(&dir, model);
            let Ok(into) = std::fs::read_to_string(&request) else {
                continue;
            };
            let _ = std::fs::remove_file(&request);
            let answer = if runs {
                switch(&node, model, into.trim()).await
            } else {
                Err(anyhow::anyhow!("this chatflow does not run the {model:?}"))
            };
            let answer = match answer {
                Ok(message) => Answer { ok: true, message },
                Err(e) => Answer {
                    ok: false,
                    message: format!("{e:#}"),
                },
            };
            tracing::info!(
                ?model,
                into,
                ok = answer.ok,
                message = answer.message,
                "switch"
            );
            write_whole(&answer_path(&dir, model), &serde_json::to_vec(&answer)?)?;
        }
    }
}

/// Switches `model` to `into`; the message says what was done.
async fn switch(node: &Node, model: Model, into: &str) -> anyhow::Result<String> {
    match model {
        Model::Persister => {
            let switch = node.store_switch().await?;
            let open = async {
                store::open(into)
                    .await
                    .with_context(|| format!("opening the store {into}"))
            };
            let stage = |target| Arc::new(persister::Persister::new(target)) as Arc<dyn Stage>;
            swap(node, model, into, &switch, open, stage).await
        }
        Model::Indexer => {
            let Some(switch) = node.search_switch().await? else {
                bail!("this chatflow has no search index");
            };
            let open = async {
                search::open(into)
                    .await
                    .with_context(|| format!("opening the index {into}"))
            };
            let vault = node.vault().await?;
            let stage = |target| {
                Arc::new(indexer::Indexer::new(target, Some(vault.clone()))) as Arc<dyn Stage>
            };
            swap(node, model, into, &switch, open, stage).await
        }
    }
}

/// Opens the target, holds the model's writes, catches the target up,
/// serves it, records it, and releases the writes (also on an error, with
/// the old model still served).
async fn swap<T: ?Sized>(
    node: &Node,
    model: Model,
    into: &str,
    switch: &Switch<T>,
    open: impl Future<Output = anyhow::Result<Arc<T>>>,
    stage: impl FnOnce(Arc<T>) -> Arc<dyn Stage>,
) -> anyhow::Result<String> {
    let from = switch.url();
    if from == into {
        return Ok(format!("already serving {into}"));
    }
    let target = open.await?;
    let archive = node.archive().await?;
    let plan = Plan {
        model,
        into,
        from: "earliest",
        batch: 2000,
        max_events: None,
        progress: false,
    };
    let stage = stage(target.clone());
    let writes = switch.hold_writes().await;
    let held = Instant::now();
    let outcome = replay::rebuild(&plan, stage, &*archive, &node.kafka).await?;
    // Recorded first: a failure leaves the old model served and recorded.
    let mut generations = node.generations();
    match model {
        Model::Persister => generations.persister = Some(into.to_owned()),
        Model::Indexer => generations.indexer = Some(into.to_owned()),
    }
    generations.save(node.data_dir())?;
    switch.replace(into, target);
    drop(writes);
    Ok(format!(
        "switched the {} from {from} to {into}: caught up {} events, writes held {:.0} ms; {from} is no longer used",
        format!("{model:?}").to_lowercase(),
        outcome.events(),
        held.elapsed().as_secs_f64() * 1000.0,
    ))
}
