//! `rowhook run`: the source core on this thread, delivery shards on their own
//! pinned threads, wired with crossbeam channels and glommio doorbells.

use std::sync::Arc;

use glommio::{LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::delivery::shard::{self, ShardLink};
use crate::delivery::stats::Stats;
use crate::delivery::Plan;
use crate::dispatch::{Dispatch, DispatchError, ShardTx};
use crate::source::SourceError;

/// io_uring buffer memory per executor. glommio reserves 10 MiB by default for
/// DMA file I/O, which rowhook does not do; sockets need none of it.
const IO_MEMORY: usize = 256 << 10;

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration cannot be turned into a delivery plan.
    #[error("{0}")]
    Plan(String),
    /// A thread or executor could not be started.
    #[error("cannot start {what}: {reason}")]
    Start {
        /// Which one.
        what: String,
        /// Why.
        reason: String,
    },
    /// Replication failed for good.
    #[error(transparent)]
    Source(#[from] crate::mysql::MysqlError),
    /// Decoding or hand-off failed.
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
}

/// Runs until replication fails for good.
pub fn run(config: &Config) -> Result<(), RunError> {
    if config.server.enabled {
        tracing::warn!("server.enabled: the admin endpoints (/health, /metrics) are not part of this build yet; nothing listens on the admin port");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = config.runtime.shard_count(cores) as usize;
    let plan = Arc::new(Plan::new(config, shards).map_err(RunError::Plan)?);
    let stats = Arc::new(Stats::new(plan.tasks.len()));
    // Acks never outnumber events in flight, which the budget bounds.
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
    let capacity = config.dispatcher.max_inflight as usize + 64;
    let mut senders = Vec::with_capacity(shards);
    let mut handles = Vec::with_capacity(shards);
    for index in 0..shards {
        let (events_tx, events_rx) = crossbeam_channel::bounded(capacity);
        let (bell_tx, bell_rx) = glommio::channels::shared_channel::new_bounded(1);
        let link = ShardLink {
            events: events_rx,
            bell: bell_rx,
            acks: ack_tx.clone(),
        };
        let cpu = config.runtime.pin.then_some((index + 1) % cores);
        let (plan, stats) = (plan.clone(), stats.clone());
        // The start closure may be tried twice (pinned, then not); the link moves
        // into whichever attempt runs.
        let link = Arc::new(std::sync::Mutex::new(Some(link)));
        let handle = spawn(&format!("rowhook-shard-{index}"), cpu, move || async move {
            let link = link.lock().ok().and_then(|mut l| l.take());
            if let Some(link) = link {
                shard::serve(index, plan, stats, link).await;
            }
        })?;
        handles.push(handle);
        senders.push((events_tx, bell_tx));
    }
    drop(ack_tx);
    tracing::info!(
        shards,
        tasks = plan.tasks.len(),
        pinned = config.runtime.pin,
        "delivery shards started"
    );
    let source = make_source(config.runtime.pin)?;
    let result = source.run(async {
        let mut links = Vec::with_capacity(senders.len());
        for (events, bell) in senders {
            links.push(ShardTx {
                events,
                bell: bell.connect().await,
            });
        }
        let mut sink = Dispatch::new(
            config.tasks.clone(),
            plan.clone(),
            config.dispatcher.max_inflight,
            links,
            ack_rx,
        );
        crate::source::follow(config, &mut sink, true).await
    });
    for h in handles {
        let _ = h.join();
    }
    let (delivered, retries, dead) = stats.totals();
    tracing::info!(delivered, retries, dead_lettered = dead, "stopped");
    match result {
        Ok(()) => Ok(()),
        Err(SourceError::Mysql(e)) => Err(e.into()),
        Err(SourceError::Sink(e)) => Err(e.into()),
    }
}

/// Starts an executor thread pinned to `cpu`, falling back to an unpinned one
/// (with a warning) where pinning is not allowed.
fn spawn<G, F>(
    name: &str,
    cpu: Option<usize>,
    make: G,
) -> Result<glommio::ExecutorJoinHandle<()>, RunError>
where
    G: FnOnce() -> F + Send + Clone + 'static,
    F: std::future::Future<Output = ()> + 'static,
{
    if let Some(cpu) = cpu {
        match LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(name)
            .io_memory(IO_MEMORY)
            .spawn(make.clone())
        {
            Ok(h) => return Ok(h),
            Err(e) => {
                tracing::warn!(thread = name, cpu, error = %e, "cannot pin; running unpinned")
            }
        }
    }
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .io_memory(IO_MEMORY)
        .spawn(make)
        .map_err(|e| RunError::Start {
            what: name.to_owned(),
            reason: e.to_string(),
        })
}

fn make_source(pin: bool) -> Result<glommio::LocalExecutor, RunError> {
    if pin {
        match LocalExecutorBuilder::new(Placement::Fixed(0))
            .name("rowhook-source")
            .io_memory(IO_MEMORY)
            .make()
        {
            Ok(ex) => return Ok(ex),
            Err(e) => {
                tracing::warn!(cpu = 0, error = %e, "cannot pin the source core; running unpinned")
            }
        }
    }
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("rowhook-source")
        .io_memory(IO_MEMORY)
        .make()
        .map_err(|e| RunError::Start {
            what: "the source executor".into(),
            reason: e.to_string(),
        })
}
