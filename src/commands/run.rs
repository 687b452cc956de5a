//! `rowhook run`: the source core on this thread, delivery shards on their own
//! pinned threads (or one shard as a task on the source core), wired with
//! crossbeam channels and doorbells.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

use glommio::{LocalExecutorBuilder, Placement};

use crate::admin::{self, Admin};
use crate::checkpoint::{self, Checkpoint};
use crate::config::{Config, ConfigFiles, Loaded};
use crate::control::{self, TaskTable};
use crate::delivery::seam;
use crate::delivery::shard;
use crate::delivery::stats::Stats;
use crate::delivery::Plan;
use crate::dispatch::{Dispatch, DispatchError};
use crate::metrics::Latency;
use crate::mysql::replica;
use crate::source::SourceError;

/// io_uring buffer memory per executor. glommio reserves 10 MiB by default for
/// DMA file I/O, which rowhook does not do; sockets need none of it.
pub(crate) const IO_MEMORY: usize = 256 << 10;

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration cannot be turned into a delivery plan.
    #[error("{0}")]
    Plan(#[from] crate::delivery::plan::PlanError),
    /// The ha thread could not start.
    #[error(transparent)]
    Ha(#[from] control::ha::StartError),
    /// Tasks kept in etcd could not be loaded.
    #[error(transparent)]
    Etcd(#[from] control::etcd::StartError),
    /// A thread or executor could not be started.
    #[error("cannot start {what}: {source}")]
    Start {
        /// Which one.
        what: String,
        /// Why.
        source: Box<dyn std::error::Error + Send>,
    },
    /// Replication failed for good.
    #[error(transparent)]
    Source(#[from] crate::mysql::MysqlError),
    /// Decoding or hand-off failed.
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    /// The checkpoint cannot be read.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// The checkpoint's position is no longer on the server.
    #[error("the checkpoint position {at} is no longer on the server (binlogs purged, or RESET MASTER); the server has {has}\n  server said: {server}\n  fix: nothing was skipped. To go on from what the server has (the changes in between are lost), move {path} away and set source.start (earliest, or {{file, pos}}); to lose nothing, restore the missing binlogs on the server first")]
    CheckpointGone {
        /// The saved position.
        at: String,
        /// The server's binlog range.
        has: String,
        /// The server's error.
        server: String,
        /// The checkpoint file.
        path: String,
    },
}

/// Runs until replication fails for good. `files` are read again on a reload.
pub fn run(loaded: &Loaded, files: ConfigFiles) -> Result<(), RunError> {
    // Tasks kept in etcd are loaded before anything starts (or from the cache
    // when etcd does not answer), and the etcd thread keeps them current.
    let mut from_etcd = None;
    let with_etcd_tasks;
    let config = match &loaded.config.tasks_etcd {
        Some(etcd) => {
            let (handle, first) = control::etcd::start(&loaded.config, etcd)?;
            for r in &first.rejected {
                tracing::error!("{r}");
            }
            let mut c = loaded.config.clone();
            c.tasks = first.tasks.iter().map(|(t, _)| t.clone()).collect();
            tracing::info!(
                tasks = c.tasks.len(),
                revision = first.revision,
                cached = first.cached,
                "tasks from etcd"
            );
            from_etcd = Some((handle, first));
            with_etcd_tasks = c;
            &with_etcd_tasks
        }
        None => &loaded.config,
    };
    // The CPUs this process may run on (CPUAffinity=, taskset, cgroup cpusets):
    // the source core takes the first, shards the following ones.
    control::ha::remember_affinity();
    let cpus = crate::config::RuntimeConfig::usable_cpus();
    let cores = cpus.len();
    // 0: one shard, run as a task on the source core (no cross-thread wake-ups).
    let shards = config.runtime.shard_count(cores) as usize;
    let on_source = shards == 0;
    let plan = Arc::new(Plan::new(config, shards.max(1))?);
    if let Err(e) = crate::delivery::dlq::recover(&plan.dlq_dir) {
        tracing::error!(dir = %plan.dlq_dir.display(), error = %e, "cannot recover the dead letters of an unfinished replay; `rowhook dlq list` retries");
    }
    let stats = Arc::new(Stats::new(crate::delivery::plan::MAX_TASKS));
    // Slot 0 is the source core, slot i + 1 shard i.
    let latency = Arc::new(Latency::new(shards.max(1) + 1));
    // Acks never outnumber events in flight, which the budget bounds.
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
    let capacity = config.dispatcher.max_inflight as usize + 64;
    let mut senders = Vec::with_capacity(shards);
    let mut handles = Vec::with_capacity(shards);
    for index in 0..shards {
        let (tx, link, bell_rx) =
            seam::cross_core(capacity, &ack_tx).map_err(|e| RunError::Start {
                what: format!("the doorbell of shard {index}"),
                source: Box::new(e),
            })?;
        let cpu = config.runtime.pin.then_some(cpus[(index + 1) % cores]);
        let (plan, stats, latency) = (plan.clone(), stats.clone(), latency.clone());
        // The start closure may be tried twice (pinned, then not); the link moves
        // into whichever attempt runs.
        let link = Arc::new(std::sync::Mutex::new(Some((link, bell_rx))));
        let handle = spawn(&format!("rowhook-shard-{index}"), cpu, move || async move {
            let link = link.lock().ok().and_then(|mut l| l.take());
            if let Some((link, bell)) = link {
                let bell = bell.into_doorbell();
                shard::serve(index, plan, stats, latency, link, bell).await;
            }
        })?;
        handles.push(handle);
        senders.push(tx);
    }
    // The local channel behind a same-core bell is made on the source core.
    let local_acks = on_source.then(|| ack_tx.clone());
    drop(ack_tx);
    if on_source {
        tracing::info!(tasks = plan.tasks.len(), pinned = config.runtime.pin, cpus = ?cpus, "delivery runs on the source core (runtime.shards: 0)");
    } else {
        tracing::info!(
            shards,
            tasks = plan.tasks.len(),
            pinned = config.runtime.pin,
            cpus = ?cpus,
            "delivery shards started"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        // A second signal while draining exits at once.
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()))
            .map_err(|e| RunError::Start {
                what: "signal handling".into(),
                source: Box::new(e),
            })?;
    }
    // SIGHUP and (tasks_watch) the tasks file on disk ask for a reload; the
    // source core reads the flag.
    let reload = Arc::new(AtomicBool::new(false));
    let start_failed = |what: &str, e: std::io::Error| RunError::Start {
        what: what.into(),
        source: Box::new(e),
    };
    control::watch::on_sighup(&reload).map_err(|e| start_failed("SIGHUP handling", e))?;
    if config.tasks_watch {
        if let Some(file) = &loaded.tasks_file {
            control::watch::on_file_change(file, reload.clone())
                .map_err(|e| start_failed(&format!("watching {}", file.display()), e))?;
            tracing::info!(file = %file.display(), "tasks_watch: a change of the tasks file reloads the tasks");
        }
    }
    // `rowhook ha step-down` (POST /ha/step-down): stop like SIGTERM, give the
    // active role up, come back as standby.
    let step_down = Arc::new(AtomicBool::new(false));
    let ha = match &config.ha {
        Some(settings) => Some(control::ha::start(
            settings,
            admin_address(&config.server),
            plan.controls.clone(),
        )?),
        None => None,
    };
    let live = Arc::new(crate::source::Liveness::default());
    watch_from_outside(live.clone(), config.source.heartbeat, stop.clone())?;
    let source = make_source(config.runtime.pin.then_some(cpus[0]))?;
    let result = source.run(async {
        // Bound on the source core before replication starts, so a taken port
        // stops the start with a clear error.
        let listener = if config.server.enabled {
            let l = admin::bind(&config.server).map_err(|e| RunError::Start {
                what: "the admin server".into(),
                source: Box::new(e),
            })?;
            tracing::info!(listen = %format!("http://{}:{}", config.server.bind, config.server.port), health = %config.server.path, "admin server listening");
            Some(l)
        } else {
            None
        };
        let mut links = senders;
        if let Some(acks) = &local_acks {
            let (tx, link, bell) = seam::same_core(capacity, acks);
            let serve = shard::serve(0, plan.clone(), stats.clone(), latency.clone(), link, bell);
            glommio::spawn_local(serve).detach();
            links.push(tx);
        }
        let mut table = TaskTable::new(
            config,
            plan.clone(),
            stats.clone(),
            Some(files.clone()),
            &loaded.tasks_source,
        );
        if let Some((handle, first)) = from_etcd.take() {
            table = table.with_etcd(handle, &first);
        }
        let tasks = Rc::new(std::cell::RefCell::new(table));
        let progress = Rc::new(crate::metrics::Progress::new(
            crate::delivery::plan::MAX_TASKS,
        ));
        let view = listener.is_some().then(|| {
            let view = Admin::new(
                config,
                tasks.clone(),
                stats.clone(),
                latency.clone(),
                progress.clone(),
            );
            Rc::new(match &ha {
                Some(ha) => view.with_ha(ha.status.clone(), step_down.clone()),
                None => view,
            })
        });
        if let (Some(listener), Some(view)) = (listener, &view) {
            glommio::spawn_local(admin::serve(listener, view.clone())).detach();
        }
        // With `ha`, a standby waits here, admin API up, until it is elected; the
        // checkpoint it resumes from is the shared one in etcd.
        let saved = match &ha {
            Some(ha) => {
                tracing::info!("ha: standby; waiting to be elected");
                live.standing_by(true);
                let elected = loop {
                    if let Some(e) = ha.try_elected() {
                        break e;
                    }
                    if stop.load(Ordering::Relaxed) {
                        ha.resign();
                        return Ok(());
                    }
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                };
                live.standing_by(false);
                match elected.checkpoint {
                    Some(cp) => Some(cp),
                    None => {
                        let local = checkpoint::load(&config.state.dir)?;
                        if let Some(cp) = &local {
                            tracing::info!(checkpoint = %cp.position(), "ha: etcd holds no checkpoint yet; resuming from this instance's local one");
                        }
                        local
                    }
                }
            }
            None => checkpoint::load(&config.state.dir)?,
        };
        let start = saved.as_ref().map(Checkpoint::position);
        let resume_from = saved.clone();
        match &start {
            Some(at) => tracing::info!(checkpoint = %at, "resuming from the checkpoint"),
            None => {
                tracing::info!(start = ?config.source.start, "no checkpoint; starting at source.start")
            }
        }
        let mut downstream = Dispatch::new(
            config,
            tasks.clone(),
            links,
            ack_rx,
            saved,
            crate::dispatch::Meters {
                stats: stats.clone(),
                latency: latency.clone(),
                progress: progress.clone(),
            },
        );
        if let Some(ha) = &ha {
            downstream.set_checkpoint_replica(ha.replica());
        }
        glommio::spawn_local(downstream.keeper()).detach();
        let snapshots =
            crate::snapshot::Snapshots::new(config, tasks.clone(), downstream.snapshot_port());
        snapshots.start_due();
        glommio::spawn_local(control::serve(
            tasks.clone(),
            reload.clone(),
            downstream.progress(),
            snapshots.clone(),
        ))
        .detach();
        glommio::spawn_local(report_progress(downstream.progress(), stats.clone())).detach();
        if let Some(view) = &view {
            view.set_snapshots(snapshots.clone());
        }
        let reading = downstream.progress();
        // The stop watch is a task of its own: raced inside the binlog task,
        // its timer was polled (a clock read and a timer re-insert) on every
        // wake-up of the stream, ~3.5 times per binlog event at 10k rows/s.
        let (stop_seen, step_down_seen) = (stop.clone(), step_down.clone());
        let stopping = glommio::spawn_local(async move {
            while !stop_seen.load(Ordering::Relaxed) && !step_down_seen.load(Ordering::Relaxed) {
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        });
        let followed = futures_lite::future::or(
            async {
                let followed =
                    crate::source::follow(config, &mut downstream, resume_from.as_ref(), true, live);
                Some(followed.await)
            },
            async {
                stopping.await;
                // Read on to the end of an open transaction (bounded: a stalled
                // stream or a huge transaction must not hold the stop), so what
                // was sent of it is covered by the last checkpoint.
                reading.stop_at_boundary.set(true);
                let asked = Instant::now();
                // Once no transaction is open, `Dispatch::ready` holds the source.
                while reading.in_transaction.get() && asked.elapsed() < BOUNDARY_WAIT {
                    glommio::timer::sleep(Duration::from_millis(2)).await;
                }
                if reading.in_transaction.get() {
                    tracing::warn!(waited = ?BOUNDARY_WAIT, "stopping inside a transaction: its rows already sent are sent again after a restart or takeover");
                }
                None
            },
        )
        .await;
        if followed.is_none() {
            tracing::info!(drain = ?DRAIN, "stopping: reading paused, waiting for events in flight");
        }
        // Whatever stopped the stream, deliver what is in flight (bounded) and make
        // the acknowledged position durable.
        downstream.drain(DRAIN).await?;
        let left = downstream.in_flight();
        match downstream.store_checkpoint().await {
            Ok(Some(at)) => tracing::info!(checkpoint = %at, undelivered = left, "checkpoint written"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot write the checkpoint"),
        }
        if let Some(ha) = &ha {
            // A standby takes over now, not a lease TTL later.
            ha.resign();
            if step_down.load(Ordering::Relaxed) {
                tracing::info!("ha: stepped down on request; restarting as standby");
                control::ha::reexec();
            }
        }
        match followed {
            None | Some(Ok(())) => Ok(()),
            Some(Err(SourceError::Downstream(e))) => Err(e.into()),
            Some(Err(SourceError::Mysql(e))) => Err(explain(config, start.as_ref(), e).await),
        }
    });
    // Shards are not joined: a lane may be retrying a receiver that is down; what it
    // holds is not in the checkpoint and is sent again on the next start.
    drop(handles);
    let (delivered, retries, dead) = stats.totals();
    tracing::info!(delivered, retries, dead_lettered = dead, "stopped");
    result
}

/// Starts a thread that watches the source core from outside. The source's own
/// watchdog is a timer on its executor; should the executor sleep through its
/// timers (a start once sat 122 s in io_uring_enter until a debugger's signal woke
/// it), a signal to the thread interrupts the sleep, the executor looks at its
/// timers again, and the source's watchdog reconnects.
fn watch_from_outside(
    live: Arc<crate::source::Liveness>,
    heartbeat: Duration,
    stop: Arc<AtomicBool>,
) -> Result<(), RunError> {
    // A handler (not "ignore") is what makes the signal interrupt io_uring_enter.
    signal_hook::flag::register(
        signal_hook::consts::SIGURG,
        Arc::new(AtomicBool::new(false)),
    )
    .map_err(|e| RunError::Start {
        what: "the source watchdog".into(),
        source: Box::new(e),
    })?;
    // SAFETY: pthread_self has no preconditions; the source executor runs on this
    // thread, which outlives the watchdog (it checks `stop` and the process exits).
    let source_thread = unsafe { libc::pthread_self() };
    let limit = crate::source::stall_limit(heartbeat);
    std::thread::Builder::new()
        .name("rowhook-watchdog".into())
        .spawn(move || {
            let mut poked_at = Duration::ZERO;
            let mut watcher = crate::source::Watcher::new(live);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let Some((since, phase)) = watcher.stalled_for() else {
                    poked_at = Duration::ZERO;
                    continue;
                };
                // The source's own watchdog acts at `limit`; past that plus a margin
                // its timers did not fire. Poke once per stall.
                if since > limit + Duration::from_secs(5) && poked_at.is_zero() {
                    tracing::warn!(stalled_for = ?since, phase, "the source core made no progress and its own watchdog did not act; waking its thread");
                    // SAFETY: the thread is alive (see above); SIGURG has a handler.
                    unsafe { libc::pthread_kill(source_thread, libc::SIGURG) };
                    poked_at = since;
                } else if since < poked_at {
                    poked_at = Duration::ZERO;
                }
            }
        })
        .map(|_| ())
        .map_err(|e| RunError::Start {
            what: "the source watchdog".into(),
            source: Box::new(e),
        })
}

/// This instance's admin address as others should reach it: the bound address,
/// or the host name when bound to every interface.
fn admin_address(server: &crate::config::ServerConfig) -> String {
    let host = if server.bind.is_unspecified() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into())
    } else {
        server.bind.to_string()
    };
    format!("{host}:{}", server.port)
}

/// How often the progress line is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Logs one line of progress every [`PROGRESS_EVERY`]: rate, totals, in flight, lag.
async fn report_progress(progress: Rc<crate::metrics::Progress>, stats: Arc<Stats>) {
    let mut last = stats.totals().0;
    loop {
        glommio::timer::sleep(PROGRESS_EVERY).await;
        let (delivered, retries, dead) = stats.totals();
        let rate = (delivered - last) as f64 / PROGRESS_EVERY.as_secs_f64();
        last = delivered;
        let lag = progress
            .lag_seconds()
            .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        tracing::info!(
            delivered_per_s = rate.round(),
            delivered,
            retries,
            dead_lettered = dead,
            in_flight = progress.in_flight.get(),
            lag_s = %lag,
            "progress"
        );
    }
}

/// How long a stopping instance waits for events in flight.
const DRAIN: Duration = Duration::from_secs(10);
/// How long a graceful stop reads on to reach the end of an open transaction.
const BOUNDARY_WAIT: Duration = Duration::from_secs(2);

/// Turns "position not on the server" after a resume into the operator's options.
async fn explain(
    config: &Config,
    start: Option<&crate::mysql::replica::BinlogPosition>,
    e: crate::mysql::MysqlError,
) -> RunError {
    let (Some(at), crate::mysql::MysqlError::Server { code: 1236, .. }) = (start, &e) else {
        return e.into();
    };
    let has =
        match crate::mysql::Connection::connect(&config.database, 1 << 24, Duration::from_secs(10))
            .await
        {
            Ok(mut conn) => match replica::binlog_files(&mut conn).await {
                Ok(files) => replica::describe_range(&files),
                Err(q) => format!("unknown ({q})"),
            },
            Err(c) => format!("unknown ({c})"),
        };
    RunError::CheckpointGone {
        at: at.to_string(),
        has,
        server: e.to_string(),
        // With ha the checkpoint every instance resumes from is the shared one.
        path: match &config.ha {
            Some(ha) => format!(
                "the etcd key {}state (etcdctl del; every instance resumes from it) and {}",
                ha.etcd.prefix,
                checkpoint::path(&config.state.dir).display()
            ),
            None => checkpoint::path(&config.state.dir).display().to_string(),
        },
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
            source: Box::new(e),
        })
}

fn make_source(cpu: Option<usize>) -> Result<glommio::LocalExecutor, RunError> {
    if let Some(cpu) = cpu {
        match LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name("rowhook-source")
            .io_memory(IO_MEMORY)
            .make()
        {
            Ok(ex) => return Ok(ex),
            Err(e) => {
                tracing::warn!(cpu, error = %e, "cannot pin the source core; running unpinned")
            }
        }
    }
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("rowhook-source")
        .io_memory(IO_MEMORY)
        .make()
        .map_err(|e| RunError::Start {
            what: "the source executor".into(),
            source: Box::new(e),
        })
}
