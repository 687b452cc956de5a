//! The source core's account of what is in flight: events handed to shards, acks
//! coming back, the ack window they move, and the durable checkpoint it yields.
//! Shared (single-threaded) by the dispatcher and a keeper task, so acks are taken
//! in and the checkpoint advances even while the binlog is quiet.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::binlog::gtid::GtidSet;
use crate::checkpoint::{self, AckWindow, Checkpoint, CheckpointError, Done};
use crate::delivery::Ack;
use crate::metrics::Progress;
use crate::mysql::replica::{BinlogPosition, ServerInfo};

/// How often the keeper takes in acks when no binlog event wakes the source.
pub const KEEP_EVERY: Duration = Duration::from_millis(50);

/// Events in flight, acks, the ack window, and the checkpoint.
pub struct Ledger {
    acks: Receiver<Ack>,
    /// Events handed to shards and not yet acknowledged.
    pub total: u64,
    window: AckWindow,
    durable: Durable,
    progress: Rc<Progress>,
    /// Events in flight per plan generation, oldest first (a live task change
    /// keeps an old generation's plan on the shards while events of it remain).
    by_generation: std::collections::VecDeque<(u32, u64)>,
    /// Acks of deliveries read back from a spool: (task slot, sequence), for
    /// the spools (their transactions were done when they became durable).
    spool_acks: Vec<(u32, u64)>,
    /// Per task slot: (ordinal, parts not yet done) of its transactions with
    /// parts outstanding, oldest first — which binlog file the task still
    /// needs (its retention budget).
    task_txns: Vec<std::collections::VecDeque<(u64, u32)>>,
    /// When the tasks' needed files were last given to [`Progress`].
    shown_needs: Instant,
}

/// How often each task's needed binlog file is given to the admin server.
const SHOW_NEEDS_EVERY: Duration = Duration::from_millis(200);

/// Where and how often the checkpoint is written, and what was written last.
struct Durable {
    dir: PathBuf,
    /// Written before the file (`ha`: etcd).
    replica: Option<std::sync::Arc<dyn checkpoint::Replica>>,
    interval: Duration,
    /// The checkpoint found at start: only its server may be followed.
    saved: Option<Checkpoint>,
    info: Option<ServerInfo>,
    written: Option<BinlogPosition>,
    /// The snapshot progress version last written.
    written_snapshots: u64,
    last_write: Instant,
    writing: Rc<Cell<bool>>,
    /// Creation times of the binlog files the stream passed (their FORMAT
    /// DESCRIPTION events), for the checkpoint; a few at most.
    created: Vec<(String, u32)>,
    /// The saved checkpoint's file has not been seen yet on this run.
    unproven: bool,
}

impl Ledger {
    /// An empty ledger; `saved` is the checkpoint found in `dir` at start.
    pub fn new(
        acks: Receiver<Ack>,
        dir: PathBuf,
        interval: Duration,
        saved: Option<Checkpoint>,
        progress: Rc<Progress>,
    ) -> Self {
        *progress.checkpoint.borrow_mut() = saved.as_ref().map(Checkpoint::position);
        let mut window = AckWindow::default();
        if let Some(cp) = &saved {
            window.seed_snapshots(cp.snapshots.clone());
            window.seed_spools(cp.spools.clone());
        }
        // The saved set is true where the stream resumes: before the first transaction.
        if let Some(cp) = &saved {
            if let Some(text) = &cp.gtid_set {
                match GtidSet::parse(text, cp.flavor == "mariadb") {
                    Ok(set) => window.learn(0, set),
                    Err(e) => {
                        tracing::warn!(error = %e, "the checkpoint's GTID set is unreadable; it is rebuilt once the stream tells it")
                    }
                }
            }
        }
        Ledger {
            acks,
            total: 0,
            window,
            progress,
            by_generation: std::collections::VecDeque::new(),
            spool_acks: Vec::new(),
            task_txns: Vec::new(),
            shown_needs: Instant::now(),
            durable: Durable {
                dir,
                replica: None,
                interval,
                written: saved.as_ref().map(Checkpoint::position),
                written_snapshots: 0,
                unproven: saved.as_ref().is_some_and(|cp| cp.file_created.is_some()),
                saved,
                created: Vec::new(),
                info: None,
                last_write: Instant::now(),
                writing: Rc::new(Cell::new(false)),
            },
        }
    }

    /// A (re)connection to `info` streams from `from`, where `gtids` (when known)
    /// holds every GTID before transaction `next_txn`: refuses a server the saved
    /// checkpoint does not belong to (and cannot fail over to), and pins the first
    /// start's position.
    pub fn on_connect(
        &mut self,
        info: &ServerInfo,
        from: &BinlogPosition,
        gtids: Option<GtidSet>,
        next_txn: u64,
    ) -> Result<(), CheckpointError> {
        let d = &mut self.durable;
        if let Some(saved) = &d.saved {
            saved.check_source(&d.dir, info)?;
            // On another server of the cluster the stream resumes by GTIDs; its
            // files of the same names are other files.
            if saved.fails_over_to(info) {
                d.unproven = false;
            }
        }
        d.info = Some(info.clone());
        if let Some(set) = &gtids {
            self.window.learn(next_txn, set.clone());
        }
        // (A GTID start has no file position yet; until its first transaction
        // completes, a restart starts from the same GTIDs.)
        if d.written.is_none() && !from.file.is_empty() {
            // The first start without a checkpoint: pin where it begins, so a crash
            // before the first transaction completes resumes here, not at `latest`.
            let at = Done {
                position: from.clone(),
                gtid: None,
                gtid_set: gtids,
            };
            checkpoint::store_to(
                &d.dir,
                d.replica.as_deref(),
                &Checkpoint::new(&at, info, None),
            )?;
            d.written = Some(from.clone());
            *self.progress.checkpoint.borrow_mut() = Some(from.clone());
            tracing::info!(checkpoint = %from, "initial checkpoint written");
        }
        Ok(())
    }

    /// Writes every checkpoint to `replica` before the local file.
    pub fn set_replica(&mut self, replica: std::sync::Arc<dyn checkpoint::Replica>) {
        self.durable.replica = Some(replica);
    }

    /// The stream passed `file`'s FORMAT_DESCRIPTION event, written at unix time
    /// `created` (0: an artificial one, says nothing). The first time the saved
    /// checkpoint's file shows up, its creation time must be the saved one.
    pub fn format_description(&mut self, file: &str, created: u32) -> Result<(), CheckpointError> {
        let d = &mut self.durable;
        if created == 0 || file.is_empty() {
            return Ok(());
        }
        if d.unproven {
            if let Some(cp) = d.saved.as_ref().filter(|cp| cp.file == file) {
                d.unproven = false;
                match cp.file_created {
                    Some(saved) if saved != created => {
                        return Err(CheckpointError::FileReset {
                            path: checkpoint::path(&d.dir).display().to_string(),
                            file: file.to_owned(),
                            pos: cp.pos,
                            saved,
                            now: created,
                        })
                    }
                    _ => {}
                }
            }
        }
        if let Some(entry) = d.created.iter_mut().find(|(f, _)| f == file) {
            entry.1 = created;
        } else {
            // The checkpoint trails the reader by a few files at most.
            if d.created.len() >= 8 {
                d.created.remove(0);
            }
            d.created.push((file.to_owned(), created));
        }
        Ok(())
    }

    /// An event of transaction `txn` for `task`, read under plan `generation`,
    /// was handed to a shard.
    pub fn sent(&mut self, task: usize, txn: u64, generation: u32) {
        self.sent_weighted(task, txn, generation, 1);
    }

    /// [`Ledger::sent`] for a delivery carrying `weight` row changes (a
    /// transaction part): in-flight counts rows, so `max_inflight` bounds memory.
    pub fn sent_weighted(&mut self, task: usize, txn: u64, generation: u32, weight: u32) {
        self.in_flight(task, generation, weight);
        self.window.add(txn);
        self.task_add(task, txn);
    }

    /// One more part of `txn` is outstanding for `task`.
    fn task_add(&mut self, task: usize, txn: u64) {
        if self.task_txns.len() <= task {
            self.task_txns
                .resize_with(task + 1, std::collections::VecDeque::new);
        }
        let q = &mut self.task_txns[task];
        match q.back_mut() {
            Some((t, n)) if *t == txn => *n += 1,
            _ => q.push_back((txn, 1)),
        }
    }

    /// A part of `txn` for `task` is done.
    fn task_done(&mut self, task: usize, txn: u64) {
        let Some(q) = self.task_txns.get_mut(task) else {
            return;
        };
        if let Ok(i) = q.binary_search_by_key(&txn, |(t, _)| *t) {
            q[i].1 = q[i].1.saturating_sub(1);
        }
        while q.front().is_some_and(|(_, n)| *n == 0) {
            q.pop_front();
        }
    }

    /// Gives the admin server, per task, the binlog file of its oldest
    /// transaction not yet done (none: the task needs nothing before what is
    /// being read).
    fn show_needs(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.shown_needs) < SHOW_NEEDS_EVERY {
            return;
        }
        self.shown_needs = now;
        let read = self.progress.read_file.borrow();
        let mut needs = self.progress.task_binlog_file.borrow_mut();
        if needs.len() < self.task_txns.len() {
            needs.resize(self.task_txns.len(), String::new());
        }
        for (need, q) in needs.iter_mut().zip(&self.task_txns) {
            let file = match q.front() {
                None => "",
                // Not ended yet: it is in the file being read.
                Some((txn, _)) => self.window.end_file(*txn).unwrap_or(read.as_str()),
            };
            if need != file {
                file.clone_into(need);
            }
        }
    }

    /// A delivery of `task` carrying `weight` row changes, read under
    /// `generation`, is in memory until its ack.
    fn in_flight(&mut self, task: usize, generation: u32, weight: u32) {
        let weight = weight.max(1);
        match self.by_generation.back_mut() {
            Some((g, n)) if *g == generation => *n += 1,
            _ => self.by_generation.push_back((generation, 1)),
        }
        if self.total == 0 {
            // Nothing was waiting: the stuck-delivery clock starts now.
            self.progress.last_ack.set(Instant::now());
        }
        if let Some(n) = self.progress.task_in_flight.get(task) {
            n.set(n.get().saturating_add(weight));
        }
        self.total += u64::from(weight);
    }

    /// Transaction `txn` has one more outstanding part in a spool (done once
    /// it is durable there: [`Ledger::spool_done`]). Not in flight: it holds
    /// no memory.
    pub fn spooled(&mut self, task: usize, txn: u64) {
        self.window.add(txn);
        self.task_add(task, txn);
    }

    /// Transaction `txn` has `task`'s spool record `seq` (appended now, or found
    /// there from before a crash): the checkpoint past `txn` says so.
    pub fn spool_mark(&mut self, txn: u64, task: &std::sync::Arc<str>, seq: u64) {
        self.window.mark_spool(txn, task, seq);
    }

    /// A part counted by [`Ledger::spooled`] is durable in its spool.
    pub fn spool_done(&mut self, task: usize, txn: u64) {
        self.window.ack(txn);
        self.task_done(task, txn);
    }

    /// A delivery read back from `task`'s spool was handed to a shard: in
    /// flight (memory) like any other, but its transaction is done already.
    pub fn sent_from_spool(&mut self, task: usize, generation: u32, weight: u32) {
        self.in_flight(task, generation, weight);
    }

    /// Acks of spooled deliveries taken in since the last call.
    pub fn take_spool_acks(&mut self, into: &mut Vec<(u32, u64)>) {
        into.append(&mut self.spool_acks);
    }

    /// A PREVIOUS_GTIDS event before transaction `txn` told the set, used when
    /// it is not known yet (a start from a file position).
    pub fn previous_gtids(&mut self, txn: u64, set: GtidSet) {
        if !self.window.knows_gtids() {
            self.window.learn(txn, set);
        }
    }

    /// Transaction `txn` is a snapshot chunk of `task`; `progress` holds once
    /// its rows are all done.
    pub fn mark_snapshot(&mut self, txn: u64, task: &str, progress: checkpoint::SnapshotProgress) {
        self.window.mark_snapshot(txn, task, progress);
    }

    /// Snapshot progress per task as of the acknowledged position.
    pub fn snapshots(&self) -> &std::collections::BTreeMap<String, checkpoint::SnapshotProgress> {
        self.window.snapshots().0
    }

    /// Transaction `txn` ended; resuming at `end` repeats none of it.
    pub fn end(&mut self, txn: u64, end: BinlogPosition, gtid: Option<String>) {
        self.window.end(txn, end, gtid);
    }

    /// Takes in every ack that has arrived.
    pub fn drain_acks(&mut self) {
        let mut acked = false;
        while let Ok(ack) = self.acks.try_recv() {
            let weight = u64::from(ack.weight.max(1));
            if let Some(n) = self.progress.task_in_flight.get(ack.task as usize) {
                n.set(n.get().saturating_sub(weight as u32));
            }
            self.total = self.total.saturating_sub(weight);
            if let Some((_, n)) = self
                .by_generation
                .iter_mut()
                .find(|(g, _)| *g == ack.generation)
            {
                *n = n.saturating_sub(1);
            }
            if ack.spool == 0 {
                self.window.ack(ack.txn);
                self.task_done(ack.task as usize, ack.txn);
            } else {
                self.spool_acks.push((ack.task, ack.spool));
            }
            acked = true;
        }
        if acked {
            self.progress.last_ack.set(Instant::now());
        }
        self.progress.in_flight.set(self.total);
    }

    /// The oldest plan generation that events in flight were read under (`None`:
    /// nothing in flight).
    pub fn oldest_generation(&mut self) -> Option<u32> {
        while self.by_generation.front().is_some_and(|(_, n)| *n == 0) {
            self.by_generation.pop_front();
        }
        self.by_generation.front().map(|(g, _)| *g)
    }

    /// Starts a background checkpoint write when the interval has passed and the
    /// position moved. The fsyncs run off the source core's thread.
    pub fn maybe_checkpoint(&mut self) {
        let d = &mut self.durable;
        if d.writing.get() || d.last_write.elapsed() < d.interval {
            return;
        }
        let (Some(done), Some(info)) = (self.window.position(), &d.info) else {
            return;
        };
        let pos = &done.position;
        let (snapshots, version) = self.window.snapshots();
        if d.written.as_ref() == Some(pos) && d.written_snapshots == version {
            return;
        }
        let mut cp =
            Checkpoint::with_snapshots(done, info, d.created_of(&pos.file), snapshots.clone());
        cp.spools = self.window.spools().clone();
        d.written = Some(pos.clone());
        d.written_snapshots = version;
        d.last_write = Instant::now();
        d.writing.set(true);
        let (dir, busy, replica) = (d.dir.clone(), d.writing.clone(), d.replica.clone());
        let (progress, at) = (self.progress.clone(), pos.clone());
        glommio::spawn_local(async move {
            let shown = dir.display().to_string();
            let stored = glommio::executor()
                .spawn_blocking(move || checkpoint::store_to(&dir, replica.as_deref(), &cp))
                .await;
            match stored {
                Ok(()) => *progress.checkpoint.borrow_mut() = Some(at),
                Err(e) => tracing::error!(dir = %shown, error = %e, "cannot write the checkpoint; a restart would repeat more events"),
            }
            busy.set(false);
        })
        .detach();
    }
}

impl Durable {
    /// When `file` was created, if the stream showed it on this run (every dump
    /// starts with its file's FORMAT_DESCRIPTION event).
    fn created_of(&self, file: &str) -> Option<u32> {
        self.created
            .iter()
            .find(|(f, _)| f == file)
            .map(|(_, t)| *t)
    }
}

/// Takes in acks and writes a checkpoint when due; the source core's keeper runs
/// it every [`KEEP_EVERY`].
pub fn keep_once(ledger: &RefCell<Ledger>) {
    let mut l = ledger.borrow_mut();
    l.drain_acks();
    l.maybe_checkpoint();
    l.show_needs();
}

/// Makes the acknowledged position durable now (at shutdown), waiting for a
/// background write first. Returns the position written, if any.
pub async fn store_now(
    ledger: &RefCell<Ledger>,
) -> Result<Option<BinlogPosition>, CheckpointError> {
    // Two writers of the same temp file could interleave.
    loop {
        let writing = ledger.borrow().durable.writing.clone();
        if !writing.get() {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let mut l = ledger.borrow_mut();
    l.drain_acks();
    let Ledger {
        window,
        durable,
        progress,
        ..
    } = &mut *l;
    let (Some(done), Some(info)) = (window.position(), &durable.info) else {
        return Ok(None);
    };
    let pos = &done.position;
    let (snapshots, version) = window.snapshots();
    if durable.written.as_ref() != Some(pos) || durable.written_snapshots != version {
        let created = durable.created_of(&pos.file);
        let mut cp = Checkpoint::with_snapshots(done, info, created, snapshots.clone());
        cp.spools = window.spools().clone();
        checkpoint::store_to(&durable.dir, durable.replica.as_deref(), &cp)?;
        durable.written = Some(pos.clone());
        durable.written_snapshots = version;
        *progress.checkpoint.borrow_mut() = Some(pos.clone());
    }
    Ok(Some(pos.clone()))
}
