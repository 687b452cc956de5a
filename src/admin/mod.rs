//! The admin HTTP server on the source core: health, metrics, latency histograms,
//! tasks and pause/resume (SPEC section 6), and the client `rowhook status` /
//! `rowhook tasks` use to read it.

pub mod client;
mod render;
mod server;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, ServerConfig};
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
    id: String,
    name: String,
    table: String,
    url: String,
    enabled: bool,
}

/// Everything the admin server reads; lives on the source core.
pub struct Admin {
    server: ServerConfig,
    tasks: Vec<TaskInfo>,
    /// The delivery plan, for its operator controls (pause/resume).
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
    /// Snapshots to show, start and cancel (`run` only).
    snapshots: Option<Rc<crate::snapshot::Snapshots>>,
}

impl Admin {
    /// The admin view of a running instance.
    pub fn new(
        config: &Config,
        plan: &Arc<Plan>,
        stats: Arc<Stats>,
        latency: Arc<Latency>,
        progress: Rc<Progress>,
    ) -> Self {
        let tasks = config
            .tasks
            .iter()
            .zip(&plan.tasks)
            .map(|(t, p)| TaskInfo {
                id: t.task_id.clone(),
                name: t.name.clone(),
                table: match &t.table.schema {
                    Some(s) => format!("{s}.{}", t.table.table),
                    None => t.table.table.clone(),
                },
                url: p.url.clone(),
                enabled: t.enabled,
            })
            .collect();
        Admin {
            server: config.server.clone(),
            tasks,
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
            snapshots: None,
        }
    }

    /// Shows and controls `snapshots` too.
    pub fn with_snapshots(mut self, snapshots: Rc<crate::snapshot::Snapshots>) -> Self {
        self.snapshots = Some(snapshots);
        self
    }

    /// Why the instance is DOWN; empty when it is UP.
    fn down_reasons(&self) -> Vec<String> {
        let p = &self.progress;
        let mut reasons = Vec::new();
        let link_for = p.link_since.get().elapsed();
        if !p.connected.get() && link_for > LINK_GRACE {
            reasons.push(format!("replication link down for {}s", link_for.as_secs()));
        }
        let waiting: Vec<&str> = self
            .tasks
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                p.task_in_flight.get(*i).is_some_and(|n| n.get() > 0)
                    && !self.plan.controls.is_paused(*i as u32)
            })
            .map(|(_, t)| t.id.as_str())
            .collect();
        let quiet = p.last_ack.get().elapsed();
        if !waiting.is_empty() && quiet > self.stuck_after {
            reasons.push(format!(
                "delivery stuck: no webhook acknowledged for {}s while task(s) {} have events waiting",
                quiet.as_secs(),
                waiting.join(", ")
            ));
        }
        for (i, t) in self.tasks.iter().enumerate() {
            if let Some(error) = self.stats.dlq_failing(i as u32) {
                reasons.push(format!(
                    "cannot write dead letters of task {}: {error} (its delivery waits; free space under state.dir)",
                    t.id
                ));
            }
        }
        reasons
    }

    /// Index of the task named `id`.
    fn task_index(&self, id: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t.id == id)
    }

    /// Pauses or resumes task `index`.
    fn set_paused(&self, index: usize, paused: bool) {
        self.plan.controls.set_paused(index, paused);
    }
}
