//! A delivery shard: one glommio executor on its own (pinned) thread, or a task on
//! the source core with `runtime.shards: 0`. It takes batches of events from the
//! source core's crossbeam channel — sleeping on a doorbell when the channel is
//! empty, never spinning — puts each event in its task's lane, and the lanes send
//! and ack.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, TryRecvError};
use hdrhistogram::Histogram;

use super::bell::Doorbell;
use super::lane::{self, Lane};
use super::stats::Stats;
use super::{Ack, Delivery, Plan, ToShard};
use crate::http::{Endpoint, Pool};
use crate::metrics::{new_histogram, Latency, Stage};

pub use super::seam::ShardLink;

/// What a shard's lanes share.
pub struct ShardCtx {
    /// The shard's number.
    pub index: usize,
    /// Settings (the same in every generation; tasks come from [`ShardCtx::plan_of`]).
    pub plan: Arc<Plan>,
    /// The generations events in this shard may still carry, oldest first.
    generations: RefCell<Vec<Rc<Plan>>>,
    /// Counters shared with the other shards.
    pub stats: Arc<Stats>,
    /// Latency histograms shared with the admin server.
    pub latency: Arc<Latency>,
    /// One per origin; a handful at most, so a scan (no origin string per request).
    pools: RefCell<Vec<Rc<Pool>>>,
    acks: Sender<Ack>,
    /// Source core -> this shard, nanoseconds, since the last progress line.
    handoff: RefCell<Histogram<u64>>,
    /// The shard runs on the source core, which wakes for every binlog event
    /// and reaps answers then (`http::client::reap_answers`).
    pub lazy_answers: bool,
}

impl ShardCtx {
    /// The connection pool for `endpoint`'s origin (shared by tasks on one host).
    pub fn pool(&self, endpoint: &Endpoint) -> Rc<Pool> {
        let mut pools = self.pools.borrow_mut();
        if let Some(p) = pools.iter().find(|p| p.serves(endpoint)) {
            return p.clone();
        }
        let p = Rc::new(Pool::new(
            endpoint.clone(),
            self.plan.tls.clone(),
            self.plan.pool_limit,
        ));
        pools.push(p.clone());
        p
    }

    /// The plan of `generation` (the newest when it is unknown, which the source's
    /// ordering of messages rules out).
    pub fn plan_of(&self, generation: u32) -> Rc<Plan> {
        let plans = self.generations.borrow();
        plans
            .iter()
            .rev()
            .find(|p| p.generation == generation)
            .or(plans.last())
            .cloned()
            .unwrap_or_else(|| Rc::new((*self.plan).clone()))
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
                generation: d.generation,
                txn: d.txn,
                weight: d.weight,
                spool: d.spool,
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

/// Starts the lanes `plan` has beyond those running (a new task, or more lanes
/// for a slot whose ordering changed). Lanes are never stopped: a removed task's
/// lanes finish what they hold and then sleep.
fn add_lanes(ctx: &Rc<ShardCtx>, lanes: &mut Vec<Vec<Rc<Lane>>>, plan: &Plan) {
    for (slot, task) in plan.tasks.iter().enumerate() {
        if lanes.len() <= slot {
            lanes.push(Vec::new());
        }
        let have = &mut lanes[slot];
        while have.len() < task.lanes {
            let lane = Rc::new(Lane::default());
            glommio::spawn_local(lane::run(ctx.clone(), slot as u32, lane.clone())).detach();
            have.push(lane);
        }
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
        // A copy per shard: lanes clone it per batch without touching a
        // reference count other threads write.
        generations: RefCell::new(vec![Rc::new((*plan).clone())]),
        stats,
        latency,
        pools: RefCell::new(Vec::new()),
        acks: link.acks,
        handoff: RefCell::new(new_histogram()),
        lazy_answers: matches!(bell, Doorbell::Local(_)),
    });
    glommio::spawn_local(report(ctx.clone())).detach();
    if ctx.lazy_answers {
        glommio::spawn_local(crate::http::client::reaper()).detach();
    }
    let mut lanes: Vec<Vec<Rc<Lane>>> = Vec::new();
    add_lanes(&ctx, &mut lanes, &plan);
    // The newest generation, looked up once per batch rather than per event.
    let mut newest = ctx.plan_of(plan.generation);
    loop {
        match link.events.try_recv() {
            Ok(ToShard::Events(batch)) => {
                if let Some(first) = batch.first() {
                    let nanos = u64::try_from(first.made.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    ctx.handoff.borrow_mut().saturating_record(nanos);
                    ctx.latency.record(ctx.slot(), Stage::Handoff, nanos);
                }
                for d in batch {
                    let lane = if d.generation == newest.generation {
                        newest.lane_of(d.task, d.key)
                    } else {
                        ctx.plan_of(d.generation).lane_of(d.task, d.key)
                    };
                    if let Some(l) = lanes.get(d.task as usize).and_then(|t| t.get(lane)) {
                        l.push(d);
                    }
                }
                glommio::yield_if_needed().await;
            }
            Ok(ToShard::Plan(next)) => {
                add_lanes(&ctx, &mut lanes, &next);
                newest = Rc::new((*next).clone());
                ctx.generations.borrow_mut().push(newest.clone());
            }
            Ok(ToShard::Forget(below)) => {
                // The newest stays whatever its number: events of it are coming.
                let newest_generation = newest.generation;
                ctx.generations
                    .borrow_mut()
                    .retain(|p| p.generation >= below || p.generation == newest_generation);
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
