//! The admin HTTP server on the source core: health, metrics, latency histograms,
//! tasks and pause/resume (SPEC section 6), and the client `rowhook status` /
//! `rowhook tasks` use to read it.

pub mod client;
mod render;
mod server;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, ServerConfig};
use crate::control::TaskTable;
use crate::delivery::stats::Stats;
use crate::delivery::Plan;
use crate::metrics::Latency;
use crate::metrics::Progress;

pub use server::{bind, serve};

/// Parses an admin request head from untrusted bytes: its length once complete,
/// `None` while incomplete, or the error status it is answered with. For fuzzing.
pub fn parse_request_head(buf: &[u8]) -> Result<Option<usize>, u16> {
    server::parse(buf)
        .map(|done| done.map(|(_, len)| len))
        .map_err(|reply| reply.status)
}

/// How long the replication link may be down before `/health` says DOWN: long
/// enough for a reconnect after a blip, short enough that a real outage shows.
const LINK_GRACE: Duration = Duration::from_secs(10);

/// One task as the admin API shows it.
#[derive(Debug, Clone)]
struct TaskInfo {
    slot: usize,
    id: String,
    name: String,
    table: String,
    url: String,
    enabled: bool,
    /// Removed from the set, shown while its events in flight finish.
    removed: bool,
    origin: String,
    changed_unix: u64,
}

/// Everything the admin server reads; lives on the source core.
pub struct Admin {
    server: ServerConfig,
    /// The source server (test webhooks read a sample row there).
    database: crate::config::DatabaseConfig,
    /// The live task set.
    table: Rc<RefCell<TaskTable>>,
    /// The delivery plan at start: its settings and operator controls
    /// (pause/resume), the same in every generation.
    plan: Arc<Plan>,
    stats: Arc<Stats>,
    latency: Arc<Latency>,
    progress: Rc<Progress>,
    started: Instant,
    started_unix: u64,
    max_inflight: u32,
    worker_count: u32,
    shards: usize,
    /// `runtime.shards: 0`: the one shard is a task on the source core's thread.
    on_source_core: bool,
    /// Events waiting this long without any ack mean delivery is stuck.
    stuck_after: Duration,
    /// `monitor.binlog_retention_warning`.
    retention_warning: Duration,
    /// The configuration it started with (replays send with it and the
    /// current tasks).
    config: Config,
    /// Replays started by `POST /tasks/{id}/replay`, by task id.
    replays: RefCell<std::collections::HashMap<String, Arc<std::sync::Mutex<ReplayStatus>>>>,
    /// Snapshots to show, start and cancel (`run` only).
    snapshots: RefCell<Option<Rc<crate::snapshot::Snapshots>>>,
    /// With `ha`: the election state.
    ha: Option<Arc<crate::control::ha::Status>>,
    /// With `ha`: raised by `POST /ha/step-down`; `run` stops and comes back as standby.
    step_down: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// A replay started by the admin API, as `/tasks/{id}/replay` shows it.
#[derive(Debug, Clone, Default)]
pub struct ReplayStatus {
    /// running, done, failed.
    pub state: &'static str,
    /// What was asked, in words.
    pub request: String,
    /// Events sent and acknowledged so far (every 1,000 while running).
    pub sent: u64,
    /// Events the spool holds (when done).
    pub held: u64,
    /// The first and last event the spool holds (when done).
    pub range: Option<(String, String)>,
    /// Why it failed.
    pub error: Option<String>,
}

fn describe_replay(r: &crate::commands::spool_replay::Request) -> String {
    use crate::commands::spool_replay::{From, Until};
    let mut text = match &r.from {
        From::Time(t) => format!("since unix time {t}"),
        From::Gtids(set) => format!("transactions outside {set}"),
        From::Position(f, p) => format!("from {f}:{p}"),
    };
    match &r.until {
        Some(Until::Time(t)) => text.push_str(&format!(" until unix time {t}")),
        Some(Until::Position(f, p)) => text.push_str(&format!(" until {f}:{p}")),
        None => {}
    }
    if let Some(to) = &r.to {
        text.push_str(&format!(" to {to}"));
    }
    text
}

impl Admin {
    /// The admin view of a running instance.
    pub fn new(
        config: &Config,
        table: Rc<RefCell<TaskTable>>,
        stats: Arc<Stats>,
        latency: Arc<Latency>,
        progress: Rc<Progress>,
    ) -> Self {
        let plan = table.borrow().plan().clone();
        Admin {
            server: config.server.clone(),
            database: config.database.clone(),
            table,
            plan: plan.clone(),
            stats,
            latency,
            progress,
            started: Instant::now(),
            started_unix: crate::delivery::unix_now(),
            max_inflight: config.dispatcher.max_inflight,
            worker_count: config.dispatcher.worker_count,
            shards: plan.shards,
            on_source_core: config
                .runtime
                .shard_count(crate::config::RuntimeConfig::usable_cpus().len())
                == 0,
            // A receiver gets its timeout and a retry or two before the instance
            // counts as stuck.
            stuck_after: (plan.timeout * 2).max(Duration::from_secs(60)),
            retention_warning: config.monitor.binlog_retention_warning,
            config: config.clone(),
            replays: RefCell::new(std::collections::HashMap::new()),
            snapshots: RefCell::new(None),
            ha: None,
            step_down: None,
        }
    }

    /// Shows and controls `snapshots` too (set once the data path runs: a
    /// standby serves the admin API before it has one).
    pub fn set_snapshots(&self, snapshots: Rc<crate::snapshot::Snapshots>) {
        *self.snapshots.borrow_mut() = Some(snapshots);
    }

    /// Shows the election state of an `ha` instance.
    pub fn with_ha(
        mut self,
        ha: Arc<crate::control::ha::Status>,
        step_down: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        self.ha = Some(ha);
        self.step_down = Some(step_down);
        self
    }

    /// The snapshots, once the data path runs.
    fn snapshots(&self) -> Option<Rc<crate::snapshot::Snapshots>> {
        self.snapshots.borrow().clone()
    }

    /// The election state, with `ha`.
    fn ha_view(&self) -> Option<crate::control::ha::View> {
        self.ha.as_ref().map(|h| h.view())
    }

    /// An `ha` instance that is not the active one.
    fn is_standby(&self) -> bool {
        self.ha_view()
            .is_some_and(|v| v.role == crate::control::ha::Role::Standby)
    }

    /// Why the instance is DOWN; empty when it is UP.
    fn down_reasons(&self) -> Vec<String> {
        let p = &self.progress;
        let mut reasons = Vec::new();
        // A standby reads nothing and sends nothing: it is well when it can
        // take over, which the election state says (shown as a reason).
        if self.is_standby() {
            return reasons;
        }
        let link_for = p.link_since.get().elapsed();
        if !p.connected.get() && link_for > LINK_GRACE {
            reasons.push(format!("replication link down for {}s", link_for.as_secs()));
        }
        let infos = self.task_infos();
        let waiting: Vec<&str> = infos
            .iter()
            .filter(|t| {
                p.task_in_flight.get(t.slot).is_some_and(|n| n.get() > 0)
                    && !self.plan.controls.is_paused(t.slot as u32)
            })
            .map(|t| t.id.as_str())
            .collect();
        let quiet = p.last_ack.get().elapsed();
        if !waiting.is_empty() && quiet > self.stuck_after {
            reasons.push(format!(
                "delivery stuck: no webhook acknowledged for {}s while task(s) {} have events waiting",
                quiet.as_secs(),
                waiting.join(", ")
            ));
        }
        for t in &infos {
            let Some(spool) = self.stats.spool(t.slot) else {
                continue;
            };
            if let Some(error) = &spool.error {
                reasons.push(format!(
                    "spool of task {}: {error} (reading pauses while its share of max_inflight is full; nothing is lost)",
                    t.id
                ));
            } else if spool.disk_low {
                reasons.push(format!(
                    "spool of task {}: free disk space is {} bytes, below spool.min_disk_free: the spool takes no more events ({}; nothing is lost); free space under state.dir",
                    t.id,
                    spool.disk_free.unwrap_or_default(),
                    if spool.records > 0 { "reading pauses until it rises or the receiver takes the spooled events" } else { "the task's events wait in memory, and reading pauses when its share of max_inflight is full" }
                ));
            } else if spool.full && spool.blocked && spool.records > 0 {
                reasons.push(format!(
                    "spool of task {} is full ({} bytes, spool.max_bytes): reading pauses until its receiver takes events again (or set spool.on_full: dead_letter)",
                    t.id, spool.bytes
                ));
            }
        }
        for t in &infos {
            if let Some(error) = self.stats.dlq_failing(t.slot as u32) {
                reasons.push(format!(
                    "cannot write dead letters of task {}: {error} (its delivery waits; free space under state.dir)",
                    t.id
                ));
            }
        }
        reasons
    }

    /// Problems of the task source (a rejected reload or etcd value, etcd
    /// unreachable) and failed snapshots. Shown with the reasons, but the
    /// instance stays UP: it delivers.
    fn source_reasons(&self) -> Vec<String> {
        let table = self.table.borrow();
        let mut out: Vec<String> = table.rejected().map(str::to_owned).into_iter().collect();
        let left = self
            .progress
            .binlog_retention_left(crate::delivery::unix_now());
        if let Some(left) = left.filter(|l| {
            !self.retention_warning.is_zero() && *l < self.retention_warning.as_secs() as i64
        }) {
            let file = self
                .progress
                .checkpoint
                .borrow()
                .as_ref()
                .map(|c| c.file.clone())
                .unwrap_or_default();
            out.push(if left > 0 {
                format!("binlog retention: the server's expiry may purge {file}, which the checkpoint still needs, in {left}s (below monitor.binlog_retention_warning); deliver the backlog (a spool keeps other tasks moving) or raise binlog_expire_logs_seconds")
            } else {
                format!("binlog retention: {file}, which the checkpoint still needs, is past the server's expiry and may be purged already; a restart would then refuse to start")
            });
        }
        if let Some(e) = self.ha_view().and_then(|v| v.etcd_error) {
            out.push(format!("ha: {e}"));
        }
        out.extend(table.source_reasons());
        drop(table);
        for t in self.task_infos() {
            let n = self.stats.tasks.get(t.slot).map_or(0, |s| {
                s.quarantined.load(std::sync::atomic::Ordering::Relaxed)
            });
            if n > 0 {
                out.push(format!(
                    "task {}: {n} row change(s) quarantined (the table changed since they were written and the binlog names no columns); see `rowhook quarantine list`, re-send with `rowhook quarantine replay --task {} --yes`",
                    t.id, t.id
                ));
            }
        }
        // A failed snapshot leaves its task streaming without its existing rows.
        if let Some(snapshots) = self.snapshots() {
            for t in self.task_infos() {
                let s = snapshots.status(t.slot);
                if s.state == "failed" {
                    out.push(format!(
                        "snapshot of task {} failed: {} (the task streams on; `rowhook snapshot {}` starts it again)",
                        t.id,
                        s.error.as_deref().unwrap_or("unknown error"),
                        t.id
                    ));
                }
            }
        }
        out
    }

    /// The slot of the task named `id`.
    fn task_index(&self, id: &str) -> Option<usize> {
        self.table.borrow().slot_of(id)
    }

    /// The tasks to show: those in the set, and removed ones while their events
    /// in flight finish.
    fn task_infos(&self) -> Vec<TaskInfo> {
        let table = self.table.borrow();
        (0..table.slots().len())
            .filter_map(|slot| self.info_in(&table, slot))
            .collect()
    }

    /// The task in `slot`, if it is shown.
    fn info(&self, slot: usize) -> Option<TaskInfo> {
        self.info_in(&self.table.borrow(), slot)
    }

    fn info_in(&self, table: &TaskTable, slot: usize) -> Option<TaskInfo> {
        let s = table.slots().get(slot)?;
        let in_flight = self
            .progress
            .task_in_flight
            .get(slot)
            .is_some_and(|n| n.get() > 0);
        if s.removed && !in_flight {
            return None;
        }
        let t = &s.config;
        Some(TaskInfo {
            slot,
            id: t.task_id.clone(),
            name: t.name.clone(),
            table: match &t.table.schema {
                Some(s) => format!("{s}.{}", t.table.table),
                None => t.table.table.clone(),
            },
            url: t.callback_url.clone(),
            enabled: t.enabled && !s.removed,
            removed: s.removed,
            origin: s.origin.clone(),
            changed_unix: s.changed_unix,
        })
    }

    /// Starts replaying task `id`'s spool on a thread of its own (it reads
    /// files and waits on a receiver: not on the source core). `None` while one
    /// runs for the task.
    fn start_replay(
        &self,
        id: &str,
        request: crate::commands::spool_replay::Request,
    ) -> Option<Arc<std::sync::Mutex<ReplayStatus>>> {
        let mut replays = self.replays.borrow_mut();
        if replays
            .get(id)
            .is_some_and(|r| r.lock().is_ok_and(|s| s.state == "running"))
        {
            return None;
        }
        let status = Arc::new(std::sync::Mutex::new(ReplayStatus {
            state: "running",
            request: describe_replay(&request),
            ..ReplayStatus::default()
        }));
        replays.insert(id.to_owned(), status.clone());
        let mut config = self.config.clone();
        config.tasks = self
            .table
            .borrow()
            .slots()
            .iter()
            .filter(|s| !s.removed)
            .map(|s| s.config.clone())
            .collect();
        let shared = status.clone();
        let spawned = std::thread::Builder::new()
            .name("rowhook-replay".into())
            .spawn(move || {
                let progress = shared.clone();
                let result = crate::commands::spool_replay::replay(&config, &request, |sent| {
                    if let Ok(mut s) = progress.lock() {
                        s.sent = sent;
                    }
                });
                let Ok(mut s) = shared.lock() else {
                    return;
                };
                match result {
                    Ok(r) => {
                        s.sent = r.sent;
                        s.held = r.held;
                        s.range = r.range.map(|(a, b)| (a.to_string(), b.to_string()));
                        match r.failed {
                            Some((at, error)) => {
                                s.state = "failed";
                                s.error = Some(format!(
                                    "the event at {at} failed ({error}); resume with from {}:{}",
                                    at.file, at.pos
                                ));
                            }
                            None => s.state = "done",
                        }
                    }
                    Err(e) => {
                        s.state = "failed";
                        s.error = Some(e.to_string());
                    }
                }
                tracing::info!(
                    state = s.state,
                    sent = s.sent,
                    "replay by the admin API ended"
                );
            });
        if let Err(e) = spawned {
            if let Ok(mut s) = status.lock() {
                s.state = "failed";
                s.error = Some(format!("cannot start a thread: {e}"));
            }
        }
        Some(status)
    }

    /// The last replay of task `id`, if any.
    fn replay_of(&self, id: &str) -> Option<ReplayStatus> {
        self.replays
            .borrow()
            .get(id)?
            .lock()
            .ok()
            .map(|s| s.clone())
    }

    /// Pauses or resumes task `index`.
    fn set_paused(&self, index: usize, paused: bool) {
        self.plan.controls.set_paused(index, paused);
    }
}
