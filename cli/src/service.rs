//! One way to start any part of chatflow: a [`Service`] says which topics it
//! needs and how it starts; [`run`] starts the chosen ones in one process
//! under one root token, and stops them all, in order, when a stop signal
//! comes or any of them fails (exiting non-zero then).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use futures::future::BoxFuture;
use streams::topics::{self, TopicSpec};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::node::{Node, NodeArgs};

/// A running service: ends with `Ok` when its token is cancelled, with
/// `Err` when it fails.
pub type Running = BoxFuture<'static, anyhow::Result<()>>;

#[async_trait::async_trait]
pub trait Service: Send {
    /// Its name in `--service` and in logs.
    fn name(&self) -> &'static str;
    /// The topics it needs; every service's are created before any starts.
    fn topics(&self, node: &Node) -> Vec<TopicSpec>;
    /// Serves clients: stops first, and the stages go on until its last
    /// answer is out.
    fn front(&self) -> bool {
        false
    }
    /// Wires the service to what the process shares; the future it returns
    /// runs it until `shutdown`.
    async fn start(
        self: Box<Self>,
        node: Arc<Node>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Running>;
}

/// The services of one process, started and stopped together.
pub struct Supervisor {
    node: Arc<Node>,
    front: Tier,
    stages: Tier,
    last: Tier,
}

/// Tasks that stop together.
struct Tier {
    token: CancellationToken,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
}

impl Tier {
    fn new() -> Tier {
        Tier {
            token: CancellationToken::new(),
            tasks: JoinSet::new(),
        }
    }

    fn spawn(&mut self, name: &'static str, running: Running) {
        self.tasks.spawn(async move { (name, running.await) });
    }

    /// Cancels the tier and waits for all its tasks; false if any failed.
    async fn stop(&mut self) -> bool {
        self.token.cancel();
        let mut ok = true;
        while let Some(joined) = self.tasks.join_next().await {
            ok &= report(joined, "while stopping");
        }
        ok
    }

    /// The first task that ends, if it ended with an error or before its
    /// token was cancelled; pending forever while all run.
    async fn failure(&mut self) -> (&'static str, anyhow::Error) {
        loop {
            match self.tasks.join_next().await {
                None => std::future::pending::<()>().await,
                Some(Ok((name, Ok(())))) if !self.token.is_cancelled() => {
                    return (name, anyhow::anyhow!("{name} ended on its own"));
                }
                Some(Ok((_, Ok(())))) => {}
                Some(Ok((name, Err(e)))) => return (name, e),
                Some(Err(e)) => return ("task", e.into()),
            }
        }
    }
}

fn report(
    joined: Result<(&'static str, anyhow::Result<()>), tokio::task::JoinError>,
    when: &str,
) -> bool {
    match joined {
        Ok((_, Ok(()))) => true,
        Ok((name, Err(e))) => {
            error!(service = name, error = format!("{e:#}"), "failed {when}");
            false
        }
        Err(e) => {
            error!(error = %e, "task panicked {when}");
            false
        }
    }
}

impl Supervisor {
    /// Creates every service's topics, then starts the services in the
    /// order given (a service may use what an earlier one set up).
    pub async fn start(args: NodeArgs, services: Vec<Box<dyn Service>>) -> anyhow::Result<Self> {
        crate::use_schema_registry(&args.schema_registry).await?;
        args.topics.validate()?;
        let metrics = crate::install_metrics().context("installing the metrics recorder")?;
        let mut last = Tier::new();
        if let Some(addr) = args.metrics.metrics {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics listener {addr}"))?;
            let (route, token) = (crate::metrics_route(metrics.clone()), last.token.clone());
            last.spawn(
                "metrics",
                Box::pin(async move {
                    axum::serve(listener, route)
                        .with_graceful_shutdown(token.cancelled_owned())
                        .await
                        .context("serving /metrics")
                }),
            );
        }
        let names = services.iter().map(|s| s.name()).collect();
        let node = Arc::new(Node::new(args, names, metrics, last.token.child_token()));
        let mut specs: Vec<TopicSpec> = Vec::new();
        for spec in services.iter().flat_map(|s| s.topics(&node)) {
            if !specs.iter().any(|s| s.name == spec.name) {
                specs.push(spec);
            }
        }
        if !specs.is_empty() {
            topics::ensure(&node.kafka, &specs, node.args.topics.replication)
                .await
                .context("creating topics")?;
        }
        let mut supervisor = Supervisor {
            node: node.clone(),
            front: Tier::new(),
            stages: Tier::new(),
            last,
        };
        // Nothing is ready before every service has added its conditions.
        let starting = Arc::new(AtomicBool::new(true));
        node.require({
            let starting = starting.clone();
            move || {
                let starting = starting.load(Ordering::Relaxed);
                starting.then(|| "the services are starting".into())
            }
        });
        for service in services {
            let (name, front) = (service.name(), service.front());
            let tier = if front {
                &mut supervisor.front
            } else {
                &mut supervisor.stages
            };
            let running = service
                .start(node.clone(), tier.token.child_token())
                .await
                .with_context(|| format!("starting {name}"))?;
            info!(service = name, "started");
            tier.spawn(name, running);
        }
        starting.store(false, Ordering::Relaxed);
        Ok(supervisor)
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Runs `task` until everything else has stopped (e.g. a registry the
    /// services' clients use).
    pub fn spawn_last(
        &mut self,
        name: &'static str,
        task: impl FnOnce(CancellationToken) -> Running,
    ) {
        let running = task(self.last.token.clone());
        self.last.spawn(name, running);
    }

    /// Runs until a stop signal or a failure, then stops the front, the
    /// stages and the rest in that order. Errs if anything failed.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let failed = tokio::select! {
            _ = crate::stop_signal() => { info!("shutting down"); None }
            (name, e) = self.front.failure() => Some((name, e)),
            (name, e) = self.stages.failure() => Some((name, e)),
            (name, e) = self.last.failure() => Some((name, e)),
        };
        if let Some((name, e)) = &failed {
            error!(
                service = name,
                error = format!("{e:#}"),
                "failed; stopping everything"
            );
        }
        let mut ok = failed.is_none();
        ok &= self.front.stop().await;
        ok &= self.stages.stop().await;
        if let Err(e) = self.node.close().await {
            error!(error = format!("{e:#}"), "closing");
            ok = false;
        }
        ok &= self.last.stop().await;
        info!("stopped");
        if !ok {
            bail!("stopped after a failure");
        }
        Ok(())
    }
}

/// Starts `services` in this process and runs them until a stop signal.
pub async fn run(args: NodeArgs, services: Vec<Box<dyn Service>>) -> anyhow::Result<()> {
    Supervisor::start(args, services).await?.run().await
}

/// Runs `parts` of one service side by side until `shutdown`; the first to
/// fail cancels the others, and its error is the result.
pub async fn together(parts: Vec<Running>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut set = JoinSet::new();
    for part in parts {
        set.spawn(part);
    }
    let mut first = None;
    while let Some(joined) = set.join_next().await {
        let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = result {
            shutdown.cancel();
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}
