//! A delivery shard: one glommio executor on its own (pinned) thread, or a task on
//! the source core with `runtime.shards: 0`. It takes batches of events from the
//! source core's crossbeam channel — sleeping on a doorbell when the channel is
//! empty, never spinning — puts each event in its task's lane, and the lanes send
//! and ack.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, TryRecvError};
use hdrhistogram::Histogram;

use super::bell::Doorbell;
use super::lane::{self, Lane};
use super::stats::Stats;
use super::{Ack, Delivery, Plan};
use crate::http::{Endpoint, Pool};
use crate::metrics::{new_histogram, Latency, Stage};

pub use super::seam::ShardLink;

/// What a shard's lanes share.
pub struct ShardCtx {
    /// The shard's number.
    pub index: usize,
    /// Tasks and settings.
    pub plan: Arc<Plan>,
    /// Counters shared with the other shards.
    pub stats: Arc<Stats>,
    /// Latency histograms shared with the admin server.
    pub latency: Arc<Latency>,
    pools: RefCell<HashMap<String, Rc<Pool>>>,
    acks: Sender<Ack>,
    /// Source core -> this shard, nanoseconds, since the last progress line.
    handoff: RefCell<Histogram<u64>>,
}

impl ShardCtx {
    /// The connection pool for `endpoint`'s origin (shared by tasks on one host).
    pub fn pool(&self, endpoint: &Endpoint) -> Rc<Pool> {
        let origin = endpoint.origin();
        self.pools
            .borrow_mut()
            .entry(origin)
            .or_insert_with(|| {
                Rc::new(Pool::new(
                    endpoint.clone(),
                    self.plan.tls.clone(),
                    self.plan.pool_limit,
                ))
            })
            .clone()
    }

    /// This shard's slot in [`Latency`] (the source core has slot 0).
    pub fn slot(&self) -> usize {
        self.index + 1
    }

    /// Reports `batch` as done (delivered or dead-lettered) to the source.
    pub fn ack(&self, batch: &[Delivery]) {
        self.latency
            .record_all_since(self.slot(), Stage::EndToEnd, batch.iter().map(|d| d.made));
        for d in batch {
            // The source outlives the shards; a closed channel means shutdown.
            let _ = self.acks.send(Ack {
                task: d.task,
                txn: d.txn,
            });
        }
    }

    /// Appends `line` to the task's dead-letter file, durably, off the executor
    /// thread. A failing disk is retried: acking an event that is in no file would
    /// lose it.
    pub async fn dead_letter(&self, task_index: u32, task_id: &str, line: Vec<u8>) {
        let line = Arc::new(line);
        let mut delay = Duration::from_millis(100);
        loop {
            let dir = self.plan.dlq_dir.clone();
            let task = task_id.to_owned();
            let bytes = line.clone();
            let written = glommio::executor()
                .spawn_blocking(move || crate::delivery::dlq::append(&dir, &task, &bytes))
                .await;
            match written {
                Ok(()) => {
                    if delay > Duration::from_millis(100) {
                        tracing::info!(task = %task_id, "dead-letter file writable again");
                    }
                    self.stats.dlq_write(task_index, None);
                    return;
                }
                Err(e) => {
                    self.stats.dlq_write(task_index, Some(e.to_string()));
                    tracing::error!(task = %task_id, dir = %self.plan.dlq_dir.display(), error = %e, retry_in = ?delay, "cannot write the dead-letter file; delivery of this task waits until it can");
                    glommio::timer::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// How often a shard logs its hand-off latency.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Logs the hand-off latency (source core -> shard) of the last period.
async fn report(ctx: Rc<ShardCtx>) {
    loop {
        glommio::timer::sleep(REPORT_EVERY).await;
        let mut h = ctx.handoff.borrow_mut();
        if h.is_empty() {
            continue;
        }
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        tracing::info!(
            shard = ctx.index,
            batches = h.len(),
            p50_us = us(0.5),
            p99_us = us(0.99),
            max_us = h.max() as f64 / 1000.0,
            "hand-off latency"
        );
        h.reset();
    }
}

/// Runs shard `index` until the source closes its channel and every lane is idle.
pub async fn serve(
    index: usize,
    plan: Arc<Plan>,
    stats: Arc<Stats>,
    latency: Arc<Latency>,
    link: ShardLink,
    mut bell: Doorbell,
) {
    let ctx = Rc::new(ShardCtx {
        index,
        plan: plan.clone(),
        stats,
        latency,
        pools: RefCell::new(HashMap::new()),
        acks: link.acks,
        handoff: RefCell::new(new_histogram()),
    });
    glommio::spawn_local(report(ctx.clone())).detach();
    let lanes: Vec<Vec<Rc<Lane>>> = plan
        .tasks
        .iter()
        .map(|t| (0..t.lanes).map(|_| Rc::new(Lane::default())).collect())
        .collect();
    for (task, task_lanes) in lanes.iter().enumerate() {
        for lane in task_lanes {
            glommio::spawn_local(lane::run(ctx.clone(), task as u32, lane.clone())).detach();
        }
    }
    loop {
        match link.events.try_recv() {
            Ok(batch) => {
                if let Some(first) = batch.first() {
                    let nanos = u64::try_from(first.made.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    ctx.handoff.borrow_mut().saturating_record(nanos);
                    ctx.latency.record(ctx.slot(), Stage::Handoff, nanos);
                }
                for d in batch {
                    let lane = plan.lane_of(d.task, d.key);
                    if let Some(l) = lanes.get(d.task as usize).and_then(|t| t.get(lane)) {
                        l.push(d);
                    }
                }
                glommio::yield_if_needed().await;
            }
            Err(TryRecvError::Empty) => {
                // The queue is checked again after the shard says it sleeps, so a
                // push between the empty check and the sleep is not lost.
                let events = &link.events;
                if !bell.sleep_unless(|| !events.is_empty()).await {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
            }
            Err(TryRecvError::Disconnected) => break,
        }
    }
    while lanes.iter().flatten().any(|l| !l.is_idle()) {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}
