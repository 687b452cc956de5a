//! `run`'s downstream of the follow loop, on the source core: row changes -> payloads -> the shard that owns
//! their key, with the in-flight budget that pauses reading when receivers fall
//! behind. Each task gets its own share of `max_inflight`; a task with a spool
//! sends what goes beyond its share to disk (`crate::spool`), so its receiver
//! being down does not pause the others.

pub mod changes;
pub mod merge;
pub mod payload;
pub mod transaction;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, TrySendError};

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use crate::binlog::event::{kind, EventHeader};
use crate::binlog::PositionedError;
use crate::checkpoint::ledger::{self, Ledger};
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::config::{Ordering, PayloadShape};
use crate::control::TaskTable;
use crate::delivery::stats::Stats;
use crate::delivery::{unix_now, Ack, Delivery, Plan, ToShard};
use crate::metrics::{Latency, Progress, Stage};
use crate::mysql::replica::{BinlogPosition, ServerInfo};
use crate::source::columns::ColumnInfo;
use crate::source::Step;
use changes::Changes;
use payload::{PayloadWriter, Row};

/// The delivery of a `delivery: transaction` part of transaction `txn`: one
/// lane per task (as `ordering: table`), so parts and transactions keep their
/// order.
fn part_delivery(plan: &Plan, txn: u64, part: transaction::Finished, made: Instant) -> Delivery {
    let task = part.task as u32;
    Delivery {
        task,
        generation: plan.generation,
        key: crate::route::routing_key(Ordering::Table, task, b"", 0),
        txn,
        id_len: u16::try_from(part.id_len).unwrap_or(u16::MAX),
        body: Bytes::from(part.body),
        weight: part.rows,
        made,
        spool: 0,
    }
}

/// How long the source sleeps between looks at the ack channel while the budget is
/// spent. Only matters when receivers are the bottleneck.
const ACK_POLL: Duration = Duration::from_micros(200);

/// Why dispatching stopped.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// An event could not be decoded.
    #[error(transparent)]
    Decode(#[from] PositionedError),
    /// A delivery shard is gone (its thread ended).
    #[error("delivery shard {0} stopped")]
    ShardGone(usize),
    /// The saved checkpoint cannot be used with this server.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Quarantined rows could not be made durable (nothing past them is
    /// acknowledged).
    #[error("cannot write the quarantine file of task {task} in {dir}: {source}")]
    Quarantine {
        /// The task.
        task: String,
        /// `state.dir/quarantine`.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

pub use crate::delivery::seam::ShardTx;

/// Turns the binlog stream into deliveries.
pub struct Dispatch {
    changes: Changes,
    payloads: PayloadWriter,
    scratch: Vec<u8>,
    /// The applied plan (refreshed from `tasks` after a change).
    plan: Arc<Plan>,
    /// The task set and the change waiting for a boundary, shared with the
    /// control plane.
    tasks: Rc<RefCell<TaskTable>>,
    outbox: Rc<RefCell<Outbox>>,
    ledger: Rc<RefCell<Ledger>>,
    share: u32,
    limit: u64,
    /// Transaction ordinals, routing sequence and the stream's boundary, shared
    /// with snapshot readers.
    merge: Rc<RefCell<merge::Merge>>,
    /// The last rows event handed to shards (file, position).
    sent_upto: Option<(String, u64)>,
    /// A DDL whose schema webhooks wait for the follow loop's lookups.
    pending_ddl: Option<PendingDdl>,
    /// `state.dir/quarantine`: rows whose columns cannot be named.
    quarantine_dir: std::path::PathBuf,
    /// Quarantine lines of the event being read, per task slot.
    quarantine: Vec<(usize, Vec<u8>)>,
    /// The transaction being read: its id, row numbers and open parts.
    open: transaction::OpenTxn,
    progress: Rc<Progress>,
    stats: Arc<Stats>,
    latency: Arc<Latency>,
}

/// What the dispatcher counts into, shared with the admin server.
pub struct Meters {
    /// Per-task delivery counters.
    pub stats: Arc<Stats>,
    /// Latency histograms.
    pub latency: Arc<Latency>,
    /// Positions, link state and in-flight counts (source core only).
    pub progress: Rc<Progress>,
}

impl Dispatch {
    /// A dispatcher over the task set `tasks` sending to `shards`. `saved` is the
    /// checkpoint to resume from.
    pub fn new(
        config: &crate::config::Config,
        tasks: Rc<RefCell<TaskTable>>,
        shards: Vec<ShardTx>,
        acks: Receiver<Ack>,
        saved: Option<Checkpoint>,
        meters: Meters,
    ) -> Self {
        let Meters {
            stats,
            latency,
            progress,
        } = meters;
        let (routed, plan) = {
            let t = tasks.borrow();
            (t.routed(), t.plan().clone())
        };
        let max_inflight = config.dispatcher.max_inflight;
        let dispatch = Dispatch {
            share: share(max_inflight, &plan),
            changes: Changes::new(Some(routed), String::new()),
            payloads: PayloadWriter::default(),
            scratch: Vec::with_capacity(4096),
            outbox: Rc::new(RefCell::new(Outbox {
                pending: shards.iter().map(|_| Vec::new()).collect(),
                ahead: shards.iter().map(|_| VecDeque::new()).collect(),
                shards,
                handed_local: false,
                // One per slot in use; grows with the task table (source core only).
                fences: (0..plan.tasks.len()).map(|_| Fence::default()).collect(),
                progress: progress.clone(),
                spools: Vec::new(),
                plan: plan.clone(),
                share: share(max_inflight, &plan),
                spool_root: config.state.dir.join("spool"),
                source: SourceAt::default(),
                any_spool: plan.tasks.iter().any(|t| t.spool.is_some()),
                shown_at: Instant::now(),
                spool_acks: Vec::new(),
                spool_txns: Vec::new(),
                spool_marks: saved
                    .as_ref()
                    .map(|cp| cp.spools.clone())
                    .unwrap_or_default(),
            })),
            ledger: Rc::new(RefCell::new(Ledger::new(
                acks,
                config.state.dir.clone(),
                config.state.checkpoint_interval,
                saved,
                progress.clone(),
            ))),
            progress,
            plan,
            tasks,
            limit: u64::from(max_inflight.max(1)),
            merge: Rc::new(RefCell::new(merge::Merge::default())),
            sent_upto: None,
            pending_ddl: None,
            quarantine_dir: config.state.dir.join("quarantine"),
            quarantine: Vec::new(),
            open: transaction::OpenTxn::default(),
            stats,
            latency,
        };
        // Records a previous run spooled go out before anything read now.
        dispatch.outbox.borrow_mut().open_spools();
        dispatch
    }

    /// Writes every checkpoint to `replica` (with `ha`: etcd) before the local file.
    pub fn set_checkpoint_replica(&self, replica: std::sync::Arc<dyn crate::checkpoint::Replica>) {
        self.ledger.borrow_mut().set_replica(replica);
    }

    /// Makes the acknowledged position durable now (at shutdown), waiting for the
    /// write. Returns the position written, if any.
    pub async fn store_checkpoint(&mut self) -> Result<Option<BinlogPosition>, CheckpointError> {
        ledger::store_now(&self.ledger).await
    }

    /// The task that takes in acks and writes checkpoints while the binlog is
    /// quiet; run it beside the stream on the source core.
    pub fn keeper(&self) -> impl std::future::Future<Output = ()> {
        let (ledger, outbox) = (self.ledger.clone(), self.outbox.clone());
        let (tasks, merge) = (self.tasks.clone(), self.merge.clone());
        let stats = self.stats.clone();
        async move {
            loop {
                // Events held behind a key change wait for acks that only this
                // task sees while the binlog is quiet: look often then, or a
                // backlog full of key changes drains one fence per tick
                // (~170 events/s measured after a takeover).
                let tick = if outbox.borrow().holding() || outbox.borrow().spooling() {
                    HELD_TICK
                } else {
                    ledger::KEEP_EVERY
                };
                glommio::timer::sleep(tick).await;
                ledger::keep_once(&ledger);
                tend_spools(&outbox, &ledger, &stats, false);
                // A quiet binlog still takes a task change between transactions.
                apply_pending(&tasks, &merge, &outbox);
                forget_generations(&tasks, &ledger, &outbox);
                // Events held behind a key change move on once the change is
                // acknowledged, even when no binlog event wakes the source. A gone
                // shard is reported by the stream's own flush.
                let _ = outbox.borrow_mut().flush();
            }
        }
    }

    /// Waits up to `limit` for events in flight to be acknowledged (shutdown).
    pub async fn drain(&mut self, limit: Duration) -> Result<(), DispatchError> {
        let deadline = Instant::now() + limit;
        loop {
            self.ledger.borrow_mut().drain_acks();
            tend_spools(&self.outbox, &self.ledger, &self.stats, false);
            self.flush()?;
            if self.in_flight() == 0 || Instant::now() >= deadline {
                settle_spools(&self.outbox, &self.ledger, &self.stats);
                return Ok(());
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Where snapshot readers hand in their chunks.
    pub fn snapshot_port(&self) -> merge::SnapshotPort {
        merge::SnapshotPort {
            merge: self.merge.clone(),
            outbox: self.outbox.clone(),
            ledger: self.ledger.clone(),
            tasks: self.tasks.clone(),
            stats: self.stats.clone(),
            limit: self.limit,
        }
    }

    /// The progress counters, for the periodic log line.
    pub fn progress(&self) -> Rc<Progress> {
        self.progress.clone()
    }

    /// Events read and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.ledger.borrow().total
    }

    fn note_time(&self, header: &EventHeader) {
        if header.kind == kind::HEARTBEAT || header.kind == kind::HEARTBEAT_V2 {
            self.progress.event_time.set(unix_now());
        } else if header.timestamp != 0 {
            self.progress.event_time.set(u64::from(header.timestamp));
        }
    }

    fn over_budget(&self) -> bool {
        // A snapshot chunk the stream has passed waits only for room: the stream
        // leaves it that room instead of filling the budget again first.
        let reserved = self.merge.borrow().reserved;
        // Only slots in use: the array is sized for every slot there could be.
        let slots = self
            .plan
            .tasks
            .len()
            .min(self.progress.task_in_flight.len());
        let outbox = self.outbox.borrow();
        self.in_flight() + reserved >= self.limit
            || self.progress.task_in_flight[..slots]
                .iter()
                .enumerate()
                .any(|(task, n)| n.get() >= self.share && !outbox.spool_takes(task))
            || outbox.spool_blocked()
    }

    fn flush(&mut self) -> Result<bool, DispatchError> {
        self.outbox.borrow_mut().flush()
    }

    /// Makes the quarantine lines of this event durable before anything after
    /// them can be acknowledged. Blocking, on the source core: it happens only
    /// for a table that changed under a MINIMAL-metadata stream.
    fn write_quarantine(&mut self) -> Result<(), DispatchError> {
        for (task, lines) in self.quarantine.drain(..) {
            let id = self
                .plan
                .tasks
                .get(task)
                .map(|t| t.id.clone())
                .unwrap_or_default();
            crate::delivery::dlq::append(&self.quarantine_dir, &id, &lines).map_err(|source| {
                DispatchError::Quarantine {
                    task: id.clone(),
                    dir: self.quarantine_dir.display().to_string(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// Ends the stream's current transaction ordinal at `end`.
    fn close_boundary(&mut self, end: BinlogPosition, gtid: Option<String>) {
        let mut m = self.merge.borrow_mut();
        self.ledger
            .borrow_mut()
            .end(m.txn, end.clone(), gtid.clone());
        m.txn += 1;
        m.at = Some(end);
        m.gtid = gtid;
    }

    /// The tables a DDL (default schema, statement) names that some task wants
    /// schema events for; `None` when no task does.
    fn schema_tables(
        &self,
        (schema, statement): &(String, String),
    ) -> Option<Vec<(String, String)>> {
        let tasks = self.tasks.borrow();
        let wanting: Vec<&crate::config::TaskConfig> = tasks
            .slots()
            .iter()
            .filter(|s| !s.removed && s.config.enabled && s.config.schema_events)
            .map(|s| &s.config)
            .collect();
        if wanting.is_empty() {
            return None;
        }
        let tables: Vec<(String, String)> = crate::source::ddl::tables(statement, schema)
            .into_iter()
            .filter(|(s, t)| wanting.iter().any(|task| task.table.matches(s, t)))
            .collect();
        (!tables.is_empty()).then_some(tables)
    }

    /// Sends the schema webhooks of the pending DDL for `described` tables to
    /// every task that wants them, fenced like a key change (nothing of the task
    /// before it is outstanding when it leaves, nothing after it leaves before it
    /// is acknowledged), then closes the DDL's boundary.
    fn send_schema_events(&mut self, described: &[crate::source::Described]) {
        let Some(ddl) = self.pending_ddl.take() else {
            return;
        };
        let unknown: Vec<crate::source::Described>;
        let described = if described.is_empty() {
            unknown = ddl
                .tables
                .iter()
                .map(|(schema, table)| crate::source::Described {
                    schema: schema.clone(),
                    table: table.clone(),
                    before: None,
                    after: None,
                })
                .collect();
            &unknown
        } else {
            described
        };
        let now = Instant::now();
        {
            let tasks = self.tasks.borrow();
            let mut outbox = self.outbox.borrow_mut();
            let mut ledger = self.ledger.borrow_mut();
            let m = self.merge.borrow();
            let mut body = Vec::with_capacity(512);
            for (slot, s) in tasks.slots().iter().enumerate() {
                let task = &s.config;
                if s.removed || !task.enabled || !task.schema_events {
                    continue;
                }
                let Some(task_plan) = self.plan.tasks.get(slot) else {
                    continue;
                };
                for (index, d) in described.iter().enumerate() {
                    if !task.table.matches(&d.schema, &d.table) {
                        continue;
                    }
                    body.clear();
                    let id_len = payload::write_schema(
                        &mut body,
                        task.payload,
                        &payload::SchemaChange {
                            at: payload::RowPosition {
                                file: &ddl.file,
                                pos: ddl.pos,
                                index: index as u32,
                                timestamp: ddl.timestamp,
                                gtid: ddl.gtid.as_deref(),
                            },
                            schema: &d.schema,
                            table: &d.table,
                            statement: &ddl.statement,
                            before: d.before.as_deref(),
                            after: d.after.as_deref(),
                        },
                    );
                    let key =
                        crate::route::routing_key(task_plan.ordering, slot as u32, b"", m.seq);
                    let delivery = Delivery {
                        task: slot as u32,
                        generation: self.plan.generation,
                        key,
                        txn: m.txn,
                        id_len: u16::try_from(id_len).unwrap_or(u16::MAX),
                        body: Bytes::copy_from_slice(&body),
                        weight: 1,
                        made: now,
                        spool: 0,
                    };
                    outbox.hand(
                        &mut ledger,
                        self.plan.shard_of(slot as u32, key),
                        delivery,
                        true,
                    );
                    self.stats.read(slot, 1);
                }
            }
        }
        self.close_boundary(ddl.end, ddl.gtid);
        let between = !self.changes.in_transaction();
        self.merge.borrow_mut().between = between;
        self.progress.in_transaction.set(!between);
    }

    /// Takes a waiting task change when no transaction is open, and brings the
    /// router, plan and budget up to the applied set.
    fn take_change(&mut self) {
        if self.merge.borrow().between {
            apply_pending(&self.tasks, &self.merge, &self.outbox);
        }
        let mut t = self.tasks.borrow_mut();
        if std::mem::take(&mut t.reroute) {
            self.changes.set_tasks(t.routed());
            self.plan = t.plan().clone();
            self.share = share(self.limit as u32, &self.plan);
            self.outbox.borrow_mut().share = self.share;
        }
    }
}

/// Each enabled task's share of `max_inflight`.
fn share(max_inflight: u32, plan: &Plan) -> u32 {
    let enabled = plan.tasks.iter().filter(|t| t.enabled).count().max(1) as u32;
    (max_inflight / enabled).max(1)
}

/// Applies the waiting task change if the stream is between transactions: the
/// shards get the new generation after every event read before it, a task whose
/// ordering changed gets a barrier, and the router is re-read before the next
/// event. Returns whether a change was applied.
pub(crate) fn apply_pending(
    tasks: &RefCell<TaskTable>,
    merge: &RefCell<merge::Merge>,
    outbox: &RefCell<Outbox>,
) -> bool {
    if !merge.borrow().between {
        return false;
    }
    let Some((plan, reordered, _)) = tasks.borrow_mut().take_pending() else {
        return false;
    };
    let mut outbox = outbox.borrow_mut();
    if outbox.fences.len() < plan.tasks.len() {
        outbox.fences.resize_with(plan.tasks.len(), Fence::default);
    }
    for slot in reordered {
        if let Some(f) = outbox.fences.get_mut(slot) {
            f.barrier = true;
        }
    }
    outbox.set_plan(plan.clone());
    outbox.announce(ToShard::Plan(plan));
    true
}

/// Tells the shards which old generations no event in flight was read under.
fn forget_generations(
    tasks: &RefCell<TaskTable>,
    ledger: &RefCell<Ledger>,
    outbox: &RefCell<Outbox>,
) {
    let mut t = tasks.borrow_mut();
    let current = t.plan().generation;
    let oldest = ledger.borrow_mut().oldest_generation().unwrap_or(current);
    if oldest > t.forgotten && !t.reroute {
        t.forgotten = oldest;
        outbox.borrow_mut().announce(ToShard::Forget(oldest));
    }
}

/// Moves the spools along: acks of spooled deliveries, buffered records to
/// their files, finished fsyncs to the ledger (their transactions are done),
/// group fsyncs when due, records back out to the shards as the task's
/// in-flight count falls, delivered segments deleted. Cheap without spools.
pub(crate) fn tend_spools(
    outbox: &RefCell<Outbox>,
    ledger: &RefCell<Ledger>,
    stats: &Stats,
    force_show: bool,
) {
    let mut o = outbox.borrow_mut();
    if o.spools.is_empty() {
        return;
    }
    let mut l = ledger.borrow_mut();
    let now = Instant::now();
    let o = &mut *o;
    l.take_spool_acks(&mut o.spool_acks);
    for (task, seq) in o.spool_acks.drain(..) {
        if let Some(s) = o.spools.get_mut(task as usize).and_then(Option::as_mut) {
            s.acked(seq);
        }
    }
    let plan = o.plan.clone();
    // A mutex per spool: a few times a second is enough for the admin server.
    let show = force_show || now.duration_since(o.shown_at) >= SHOW_SPOOLS_EVERY;
    if show {
        o.shown_at = now;
    }
    for task in 0..o.spools.len() {
        let Some(mut spool) = o.spools[task].take() else {
            continue;
        };
        let sending = plan
            .tasks
            .get(task)
            .is_some_and(|t| t.enabled && t.id == spool.task());
        let room = |o: &Outbox| {
            o.progress
                .task_in_flight
                .get(task)
                .is_some_and(|n| n.get() < o.share)
        };
        spool.write_due(now, sending && room(o));
        spool.retry(now);
        let dead = spool.synced(&mut o.spool_txns);
        for txn in o.spool_txns.drain(..) {
            l.spool_done(task, txn);
        }
        if dead > 0 {
            stats.dead_lettered(task as u32, dead);
        }
        spool.maybe_sync(now);
        while sending && room(o) {
            let Some(fed) = spool.read_back() else {
                break;
            };
            let d = Delivery {
                task: task as u32,
                generation: plan.generation,
                key: fed.key,
                txn: 0,
                id_len: fed.id_len,
                body: fed.body,
                weight: fed.weight,
                made: now,
                spool: fed.seq,
            };
            l.sent_from_spool(task, plan.generation, fed.weight);
            o.push(plan.shard_of(task as u32, fed.key), d, fed.key_change);
        }
        spool.tidy(now);
        if show {
            stats.set_spool(task, spool.status());
        }
        o.spools[task] = Some(spool);
    }
}

/// How often the spools' status is given to `/tasks` and `/metrics`.
const SHOW_SPOOLS_EVERY: Duration = Duration::from_millis(100);

/// Makes every spool's records durable and its head saved now, and lets the
/// ledger count them (a graceful stop, before the last checkpoint write).
fn settle_spools(outbox: &RefCell<Outbox>, ledger: &RefCell<Ledger>, stats: &Stats) {
    let now = Instant::now();
    for s in outbox.borrow_mut().spools.iter_mut().flatten() {
        s.settle(now);
        s.save_head(now);
    }
    tend_spools(outbox, ledger, stats, true);
}

/// Deliveries on their way to the shards, with the fences that hold a task's
/// events behind an update that changed a primary key.
pub(crate) struct Outbox {
    shards: Vec<ShardTx>,
    /// Per shard, messages that go before `pending` (a new generation after the
    /// events read before it).
    ahead: Vec<VecDeque<ToShard>>,
    pending: Vec<Vec<Delivery>>,
    /// A shard on this thread got events it has not had a chance to send.
    handed_local: bool,
    /// Per task (plan order).
    fences: Vec<Fence>,
    progress: Rc<Progress>,
    /// The spools of tasks that have one, by slot (opened when first needed).
    spools: Vec<Option<crate::spool::Spool>>,
    /// The newest plan announced: spooled events are sent under it.
    plan: Arc<Plan>,
    /// Each task's share of `max_inflight`: a task with a spool spools beyond it.
    share: u32,
    /// `state.dir/spool`.
    spool_root: std::path::PathBuf,
    /// Where the event being read stands (spool records carry it), kept
    /// only while some task has a spool.
    source: SourceAt,
    /// Some task of `plan` has a spool (read per event, so kept with the plan).
    any_spool: bool,
    /// When the spools' status was last given to `/tasks` and `/metrics`.
    shown_at: Instant,
    /// Scratch for spool bookkeeping.
    spool_acks: Vec<(u32, u64)>,
    spool_txns: Vec<u64>,
    /// The saved checkpoint's spool marks, each taken when its spool opens.
    spool_marks: std::collections::BTreeMap<String, u64>,
}

/// The binlog event being read: file, position, timestamp, GTID.
#[derive(Default)]
struct SourceAt {
    file: String,
    pos: u64,
    ts: u32,
    gtid: String,
}

/// How often the keeper looks at acks while a fence holds events.
const HELD_TICK: Duration = Duration::from_millis(1);

/// A task's events held back so that an update changing a row's key is ordered
/// with both keys' lanes: it leaves only when nothing earlier of the task is
/// outstanding, and nothing later leaves before it is acknowledged.
#[derive(Default)]
struct Fence {
    /// (shard, delivery, is a key change), in binlog order.
    held: VecDeque<(usize, Delivery, bool)>,
    /// The rows `held` weighs, kept as it changes: summed on every flush it
    /// cost O(held) per hand-off, and a fence holds thousands behind a slow
    /// receiver.
    held_weight: usize,
    /// A key change left: the next event waits until it is acknowledged.
    awaiting_ack: bool,
    /// The task's ordering or lanes changed: its next event is fenced like a key
    /// change, so no event of the old routing is overtaken.
    barrier: bool,
}

impl Outbox {
    /// Takes the newest plan announced.
    fn set_plan(&mut self, plan: Arc<Plan>) {
        self.any_spool = plan.tasks.iter().any(|t| t.spool.is_some());
        self.plan = plan;
    }

    /// Queues `d` for `shard`; `key_change` marks an update whose primary key changed.
    fn push(&mut self, shard: usize, d: Delivery, key_change: bool) {
        let Some(fence) = self.fences.get_mut(d.task as usize) else {
            return;
        };
        let key_change = key_change || std::mem::take(&mut fence.barrier);
        if key_change || !fence.held.is_empty() || fence.awaiting_ack {
            fence.held_weight += d.weight as usize;
            fence.held.push_back((shard, d, key_change));
        } else {
            self.pending[shard].push(d);
        }
    }

    /// Hands `d` (read now) on: to its task's spool when the task has one
    /// (records come back out through the fence as the task's in-flight count
    /// falls below its share), else toward `shard` through the task's fence.
    /// Counts it in the ledger either way.
    pub(crate) fn hand(
        &mut self,
        ledger: &mut Ledger,
        shard: usize,
        d: Delivery,
        key_change: bool,
    ) {
        let task = d.task as usize;
        let spooled = self.plan.tasks.get(task).is_some_and(|t| t.spool.is_some())
            || self.spools.get(task).is_some_and(Option::is_some);
        if spooled && self.spool_of(task).is_some() {
            let Outbox { spools, source, .. } = self;
            if let Some(spool) = spools.get_mut(task).and_then(Option::as_mut) {
                // Every event of a task with a spool goes through it (a durable
                // queue: the checkpoint waits for the fsync, never for the
                // receiver); only an empty spool that cannot be written lets
                // events go straight to memory, bounded by the share.
                let at = &*source;
                let record = crate::spool::record::Record {
                    key_change,
                    weight: d.weight,
                    key: d.key,
                    spooled_ms: crate::spool::unix_ms(),
                    at: crate::spool::record::Source {
                        ts: at.ts,
                        file: &at.file,
                        pos: at.pos,
                        gtid: &at.gtid,
                    },
                    id_len: d.id_len,
                    body: &d.body,
                };
                // Read again after a crash and already in the spool: it goes
                // out from there, in its place.
                if let Some(seq) = spool.known(&record) {
                    ledger.spool_mark(d.txn, spool.name(), seq);
                    return;
                }
                if spool.holds() || !spool.blocked() {
                    let seq = spool.next_seq();
                    if spool.append(d.txn, &record) {
                        ledger.spooled(task, d.txn);
                    }
                    if spool.next_seq() > seq {
                        ledger.spool_mark(d.txn, spool.name(), seq);
                    }
                    return;
                }
            }
        }
        let (txn, generation, weight) = (d.txn, d.generation, d.weight);
        self.push(shard, d, key_change);
        ledger.sent_weighted(task, txn, generation, weight);
    }

    /// The spool of `task`, opened on first use, when the task has one (or
    /// still holds records of one).
    fn spool_of(&mut self, task: usize) -> Option<&mut crate::spool::Spool> {
        let plan = self.plan.tasks.get(task)?;
        let config = plan.spool.as_ref();
        if self.spools.len() <= task {
            config?;
            self.spools.resize_with(task + 1, || None);
        }
        let slot = &mut self.spools[task];
        if slot.as_ref().is_some_and(|s| s.task() != plan.id) {
            // The slot took another task; the old one's records stay on disk
            // for when it comes back.
            *slot = None;
        }
        match (slot.as_mut(), config) {
            (Some(s), Some(config)) => s.reconfigure(config, &plan.url),
            (Some(s), None) if s.holds() => {}
            (Some(_), None) => *slot = None,
            (None, Some(config)) => {
                let mut spool = crate::spool::Spool::open(
                    crate::spool::dir_for(&self.spool_root, &plan.id),
                    &plan.id,
                    config.clone(),
                    self.plan.dlq_dir.clone(),
                );
                spool.reconfigure(config, &plan.url);
                if let Some(through) = self.spool_marks.remove(&plan.id) {
                    spool.expect_after(through);
                }
                *slot = Some(spool);
            }
            (None, None) => {}
        }
        slot.as_mut()
    }

    /// Opens the spools a previous run left records in (at start).
    fn open_spools(&mut self) {
        for task in 0..self.plan.tasks.len() {
            let on_disk = self
                .plan
                .tasks
                .get(task)
                .is_some_and(|t| crate::spool::dir_for(&self.spool_root, &t.id).is_dir());
            if on_disk {
                let _ = self.spool_of(task);
            }
        }
    }

    /// Notes where the event being read stands, when a task has a spool.
    fn note_source(&mut self, file: &str, pos: u64, ts: u32, gtid: Option<&str>) {
        if !self.any_spool {
            return;
        }
        let at = &mut self.source;
        if at.file != file {
            file.clone_into(&mut at.file);
        }
        let gtid = gtid.unwrap_or_default();
        if at.gtid != gtid {
            gtid.clone_into(&mut at.gtid);
        }
        at.pos = pos;
        at.ts = ts;
    }

    /// Whether some spool has records to feed (the keeper looks often then).
    fn spooling(&self) -> bool {
        self.spools.iter().flatten().any(crate::spool::Spool::holds)
    }

    /// Whether `task`'s events go to its spool when its share is full.
    fn spool_takes(&self, task: usize) -> bool {
        self.plan.tasks.get(task).is_some_and(|t| t.spool.is_some())
            && self
                .spools
                .get(task)
                .and_then(Option::as_ref)
                .is_none_or(|s| !s.blocked())
    }

    /// Whether a spool cannot take events (an error, or full under `on_full:
    /// block`) while it holds some: reading pauses.
    fn spool_blocked(&self) -> bool {
        self.spools
            .iter()
            .flatten()
            .any(|s| s.holds() && s.blocked())
    }

    /// Whether some task holds events behind a key change.
    fn holding(&self) -> bool {
        self.fences.iter().any(|f| !f.held.is_empty())
    }

    /// Moves held events whose turn has come to their shards' pending batches.
    fn release(&mut self) {
        for (task, fence) in self.fences.iter_mut().enumerate() {
            if fence.held.is_empty() && !fence.awaiting_ack {
                continue;
            }
            // Handed to shards (or pending for them) and not acknowledged: the
            // ledger counts held events as in flight too.
            let in_flight = self
                .progress
                .task_in_flight
                .get(task)
                .map_or(0, |n| n.get() as usize);
            // In flight counts rows: a held transaction part weighs its rows.
            let mut outstanding = in_flight.saturating_sub(fence.held_weight);
            if fence.awaiting_ack {
                if outstanding > 0 {
                    continue;
                }
                fence.awaiting_ack = false;
            }
            while let Some((_, _, key_change)) = fence.held.front() {
                if *key_change && outstanding > 0 {
                    break;
                }
                let Some((shard, d, key_change)) = fence.held.pop_front() else {
                    break;
                };
                outstanding += d.weight as usize;
                fence.held_weight = fence.held_weight.saturating_sub(d.weight as usize);
                self.pending[shard].push(d);
                if key_change {
                    fence.awaiting_ack = true;
                    break;
                }
            }
        }
    }

    /// Sends `message` to every shard after what is pending for it.
    fn announce(&mut self, message: ToShard) {
        for (i, ahead) in self.ahead.iter_mut().enumerate() {
            let pending = std::mem::take(&mut self.pending[i]);
            if !pending.is_empty() {
                ahead.push_back(ToShard::Events(pending));
            }
            ahead.push_back(match &message {
                ToShard::Plan(p) => ToShard::Plan(p.clone()),
                ToShard::Forget(g) => ToShard::Forget(*g),
                ToShard::Events(_) => continue,
            });
        }
    }

    /// Pushes pending batches to their shards; false if a channel is full.
    fn flush(&mut self) -> Result<bool, DispatchError> {
        self.release();
        let mut all = true;
        for (i, batch) in self.pending.iter_mut().enumerate() {
            let shard = &self.shards[i];
            let ahead = &mut self.ahead[i];
            let mut sent = false;
            while let Some(message) = ahead.pop_front() {
                match shard.events.try_send(message) {
                    Ok(()) => sent = true,
                    Err(TrySendError::Full(m)) => {
                        ahead.push_front(m);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => return Err(DispatchError::ShardGone(i)),
                }
            }
            if !ahead.is_empty() {
                all = false;
            } else if !batch.is_empty() {
                match shard
                    .events
                    .try_send(ToShard::Events(std::mem::take(batch)))
                {
                    Ok(()) => sent = true,
                    Err(TrySendError::Full(ToShard::Events(b))) => {
                        *batch = b;
                        all = false;
                    }
                    Err(TrySendError::Full(_)) => all = false,
                    Err(TrySendError::Disconnected(_)) => return Err(DispatchError::ShardGone(i)),
                }
            }
            if sent {
                shard.bell.ring();
                self.handed_local |= shard.bell.is_local();
            }
        }
        Ok(all)
    }
}

impl crate::source::Downstream for Dispatch {
    type Error = DispatchError;

    fn on_connect(
        &mut self,
        info: &ServerInfo,
        from: &BinlogPosition,
        gtids: Option<&crate::binlog::gtid::GtidSet>,
    ) -> Result<(), DispatchError> {
        let next_txn = self.merge.borrow().txn;
        self.ledger
            .borrow_mut()
            .on_connect(info, from, gtids.cloned(), next_txn)?;
        {
            let mut m = self.merge.borrow_mut();
            m.between = true;
            m.at = (!from.file.is_empty()).then(|| from.clone());
        }
        let p = &self.progress;
        if p.server.borrow().is_some() {
            p.reconnects.set(p.reconnects.get() + 1);
        }
        *p.server.borrow_mut() = Some(info.version.clone());
        p.binlog_expire.set(info.binlog_expire);
        p.connected.set(true);
        p.link_since.set(Instant::now());
        let mariadb = info.flavor == crate::config::Flavor::Mariadb;
        self.changes.on_connect(info.checksum, from, mariadb);
        Ok(())
    }

    fn on_disconnect(&mut self, _error: &crate::mysql::MysqlError) {
        if self.progress.connected.get() {
            self.progress.connected.set(false);
            self.progress.link_since.set(Instant::now());
        }
    }

    fn on_described(&mut self, tables: &[crate::source::Described]) {
        self.send_schema_events(tables);
    }

    fn on_columns(&mut self, table_id: u64, columns: &[ColumnInfo]) {
        self.changes.on_columns(table_id, columns);
    }

    fn on_event(&mut self, event: &[u8]) -> Result<Step, DispatchError> {
        // The follow loop answers a Describe before the next event; if it could
        // not, the schema webhooks go without columns rather than never.
        self.send_schema_events(&[]);
        self.take_change();
        let mut feed = self.changes.feed(event)?;
        let (header, pos) = (*feed.header(), feed.pos());
        if header.kind == kind::FORMAT_DESCRIPTION {
            let file = self.changes.file();
            tracing::debug!(file, created = header.timestamp, "format description");
            self.ledger
                .borrow_mut()
                .format_description(file, header.timestamp)?;
            if header.timestamp != 0 {
                let mut created = self.progress.file_created.borrow_mut();
                if !created.iter().any(|(f, _)| f == file) {
                    if created.len() >= 64 {
                        created.pop_front();
                    }
                    created.push_back((file.to_owned(), header.timestamp));
                }
            }
        }
        self.note_time(&header);
        let began = Instant::now();
        // After a reconnect the server repeats the open transaction from its start;
        // its rows already handed to shards are not sent twice.
        let repeat = self
            .sent_upto
            .as_ref()
            .is_some_and(|(f, p)| f == self.changes.file() && pos <= *p);
        let Dispatch {
            changes,
            payloads,
            scratch,
            plan,
            outbox,
            ledger,
            stats,
            merge,
            open,
            quarantine,
            ..
        } = self;
        let mut m = merge.borrow_mut();
        let mut ledger = ledger.borrow_mut();
        let mut outbox = outbox.borrow_mut();
        outbox.note_source(changes.file(), pos, header.timestamp, changes.gtid());
        let mut routed = false;
        while let Some(mut rows) = changes.next_rows(&mut feed, event)? {
            if repeat {
                continue;
            }
            let quarantined = rows.quarantined();
            while let Some(next) = rows.next() {
                let (row, routes) = next?;
                for route in routes {
                    if quarantined {
                        // Positional names (@1, @2, …): the values as the
                        // binlog has them, for an operator to judge.
                        scratch.clear();
                        let id_len =
                            payloads.write(scratch, route.shape, &row, route.keep.as_deref())?;
                        let task_plan = &plan.tasks[route.task];
                        let line = crate::delivery::dlq::DeadLetter {
                            task: &task_plan.id,
                            url: &task_plan.url,
                            id: scratch.get(7..7 + id_len).unwrap_or_default(),
                            attempts: 0,
                            status: None,
                            error: "quarantined: the table changed since this row was written and the binlog names no columns (MINIMAL metadata)",
                            payload: scratch,
                        }
                        .to_line();
                        match quarantine.iter_mut().find(|(t, _)| *t == route.task) {
                            Some((_, lines)) => lines.extend_from_slice(&line),
                            None => quarantine.push((route.task, line)),
                        }
                        stats.quarantined(route.task, 1);
                        // Not written again if the server repeats the event.
                        routed = true;
                        continue;
                    }
                    routed = true;
                    scratch.clear();
                    let task_plan = &plan.tasks[route.task];
                    let parts = task_plan.transaction_parts;
                    let transaction = (route.shape == PayloadShape::Envelope || parts.is_some())
                        .then(|| open.next_row(m.txn, route.task, || rows.transaction_id()));
                    let id_len = payloads.write(
                        scratch,
                        route.shape,
                        &Row { transaction, ..row },
                        route.keep.as_deref(),
                    )?;
                    let task = route.task as u32;
                    if let Some(max) = parts {
                        // Under `delivery: transaction` the row waits in its
                        // task's part, sent at the boundary or when full.
                        let table = (row.table.schema.as_str(), row.table.table.as_str());
                        if let Some(full) = open.add(route.task, table, scratch, max) {
                            let delivery = part_delivery(plan, m.txn, full, began);
                            let shard = plan.shard_of(task, delivery.key);
                            outbox.hand(&mut ledger, shard, delivery, false);
                            stats.read(route.task, 1);
                        }
                    } else {
                        m.seq += 1;
                        let ordering = task_plan.ordering;
                        let key = crate::route::routing_key(ordering, task, payloads.key(), m.seq);
                        // Under `table` one lane orders everything already.
                        let key_change = ordering == Ordering::PerKey && payloads.key_changed();
                        let delivery = Delivery {
                            task,
                            generation: plan.generation,
                            key,
                            txn: m.txn,
                            id_len: u16::try_from(id_len).unwrap_or(u16::MAX),
                            body: Bytes::copy_from_slice(scratch),
                            weight: 1,
                            // One clock read per binlog event, not per row: it is
                            // when the event was read, for every row in it.
                            made: began,
                            spool: 0,
                        };
                        outbox.hand(&mut ledger, plan.shard_of(task, key), delivery, key_change);
                        stats.read(route.task, 1);
                    }
                    if !m.watches.is_empty() {
                        let at = BinlogPosition {
                            file: row.at.file.to_owned(),
                            pos: row.at.pos,
                        };
                        m.saw(merge::Seen {
                            task: route.task,
                            table: (&row.table.schema, &row.table.table),
                            keys: (payloads.key(), payloads.old_key()),
                            payload: scratch,
                            pos: &at,
                        });
                    }
                }
            }
        }
        if let Some(set) = changes.take_previous_gtids() {
            ledger.previous_gtids(m.txn, set);
        }
        drop(ledger);
        drop(outbox);
        drop(m);
        self.write_quarantine()?;
        let step = self.changes.step(&feed);
        match &step {
            Step::Rotated { at } => self.progress.read(&at.file, at.pos),
            _ => self
                .progress
                .read(self.changes.file(), pos + event.len() as u64),
        }
        if routed {
            self.latency.record_since(0, Stage::Decode, began);
            self.sent_upto = Some((self.changes.file().to_owned(), pos));
        }
        if let Step::Boundary { end, .. } = &step {
            let gtid = self.changes.ended_gtid().map(str::to_owned);
            if gtid.is_some() {
                self.progress.gtid.borrow_mut().clone_from(&gtid);
            }
            let m = self.merge.borrow_mut();
            // The last parts of `delivery: transaction` tasks belong to this
            // transaction's ordinal: the checkpoint passes it only when all are
            // delivered.
            let ended = self.open.end(self.changes.ended_xid(), header.timestamp);
            if !ended.is_empty() {
                let mut outbox = self.outbox.borrow_mut();
                let mut ledger = self.ledger.borrow_mut();
                for part in ended {
                    let task = part.task;
                    let delivery = part_delivery(&self.plan, m.txn, part, began);
                    let shard = self.plan.shard_of(task as u32, delivery.key);
                    outbox.hand(&mut ledger, shard, delivery, false);
                    self.stats.read(task, 1);
                }
            }
            drop(m);
            let ddl = matches!(step, Step::Boundary { ddl: true, .. })
                .then(|| self.changes.take_ddl())
                .flatten();
            if let Some(tables) = ddl.as_ref().and_then(|d| self.schema_tables(d)) {
                // Schema webhooks first (after the lookups the follow loop makes
                // for them), then the boundary: they belong to the DDL's ordinal.
                let (_, statement) = ddl.unwrap_or_default();
                self.pending_ddl = Some(PendingDdl {
                    end: end.clone(),
                    gtid,
                    statement,
                    tables: tables.clone(),
                    file: self.changes.file().to_owned(),
                    pos,
                    timestamp: header.timestamp,
                });
                // Nothing may slip in (a snapshot chunk, a task change) before
                // the boundary closes in `on_described`.
                self.merge.borrow_mut().between = false;
                return Ok(Step::Describe {
                    end: end.clone(),
                    tables,
                });
            }
            self.close_boundary(end.clone(), gtid);
        }
        let between = !self.changes.in_transaction();
        self.progress.in_transaction.set(!between);
        let mut m = self.merge.borrow_mut();
        m.between = between;
        // Outside transactions the stream also passes events that end none (a
        // ROTATE, a new file's FORMAT_DESCRIPTION and GTID list): a snapshot read
        // positioned after them must not wait for the next write. Forward only:
        // a dump that starts mid-file opens with the file's first events.
        let passed = match &step {
            Step::Rotated { at } => Some(at.clone()),
            Step::Next
                if between
                    && header.log_pos != 0
                    && header.kind != kind::HEARTBEAT
                    && header.kind != kind::HEARTBEAT_V2 =>
            {
                Some(BinlogPosition {
                    file: self.changes.file().to_owned(),
                    pos: u64::from(header.log_pos),
                })
            }
            _ => None,
        };
        if let Some(p) = passed.filter(|p| m.at.as_ref().is_none_or(|at| at < p)) {
            m.at = Some(p);
        }
        Ok(step)
    }

    async fn ready(&mut self) -> Result<(), DispatchError> {
        loop {
            // Awake anyway: answers that arrived since are read now.
            crate::http::client::reap_answers();
            {
                let mut l = self.ledger.borrow_mut();
                l.drain_acks();
                l.maybe_checkpoint();
            }
            tend_spools(&self.outbox, &self.ledger, &self.stats, false);
            let flushed = self.flush()?;
            // A graceful stop halts reading between transactions: the checkpoint
            // moves only at commits, so rows of an open transaction sent now
            // would be sent again by whoever resumes from it.
            if self.progress.stop_at_boundary.get() && !self.progress.in_transaction.get() {
                glommio::timer::sleep(ACK_POLL).await;
                continue;
            }
            if flushed && !self.over_budget() {
                if std::mem::take(&mut self.outbox.borrow_mut().handed_local) {
                    // The shard shares this thread and runs only when the source
                    // yields; reading on would decode a fast stream up to the
                    // in-flight bound before the first request went out.
                    futures_lite::future::yield_now().await;
                }
                return Ok(());
            }
            glommio::timer::sleep(ACK_POLL).await;
        }
    }
}

/// A DDL read whose boundary waits for its schema webhooks.
struct PendingDdl {
    end: BinlogPosition,
    gtid: Option<String>,
    statement: String,
    /// What the follow loop was asked to describe.
    tables: Vec<(String, String)>,
    file: String,
    pos: u64,
    timestamp: u32,
}
