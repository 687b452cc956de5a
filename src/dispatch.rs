//! `run`'s sink on the source core: row changes -> payloads -> the shard that owns
//! their key, with the in-flight budget that pauses reading when receivers fall
//! behind. Each task gets its own share of `max_inflight`, so a task whose receiver
//! is down fills only its share while the others keep flowing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use glommio::channels::shared_channel::ConnectedSender;

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use crate::binlog::PositionedError;
use crate::changes::Changes;
use crate::checkpoint::{self, AckWindow, Checkpoint, CheckpointError};
use crate::config::Ordering;
use crate::delivery::{key_hash, unix_now, Ack, Delivery, Plan};
use crate::mysql::replica::{BinlogPosition, ServerInfo};
use crate::payload::PayloadWriter;
use crate::schema::ColumnInfo;

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
}

/// The source core's end of one shard.
pub struct ShardTx {
    /// Batches of events.
    pub events: Sender<Vec<Delivery>>,
    /// Wakes the shard after a push.
    pub bell: ConnectedSender<()>,
}

/// Turns the binlog stream into deliveries.
pub struct Dispatch {
    changes: Changes,
    payloads: PayloadWriter,
    scratch: Vec<u8>,
    plan: Arc<Plan>,
    shards: Vec<ShardTx>,
    pending: Vec<Vec<Delivery>>,
    acks: Receiver<Ack>,
    inflight: Vec<u32>,
    total: u64,
    share: u32,
    limit: u64,
    txn: u64,
    seq: u64,
    window: AckWindow,
    durable: Durable,
    /// The last rows event handed to shards (file, position).
    sent_upto: Option<(String, u64)>,
    progress: Rc<Progress>,
}

/// What the periodic progress line reports, updated as events pass.
#[derive(Debug, Default)]
pub struct Progress {
    /// Events read and not yet acknowledged.
    pub in_flight: Cell<u64>,
    /// Unix time of the newest event read (a heartbeat counts as "now": caught up).
    pub event_time: Cell<u64>,
}

/// Where and how often the checkpoint is written, and what was written last.
struct Durable {
    dir: PathBuf,
    interval: Duration,
    /// The checkpoint found at start: only its server may be followed.
    saved: Option<Checkpoint>,
    info: Option<ServerInfo>,
    written: Option<BinlogPosition>,
    last_write: Instant,
    writing: Rc<Cell<bool>>,
}

impl Dispatch {
    /// A dispatcher over `tasks` (the config's, in plan order) sending to `shards`.
    /// `saved` is the checkpoint found in `state` at start.
    pub fn new(
        config: &crate::config::Config,
        plan: Arc<Plan>,
        shards: Vec<ShardTx>,
        acks: Receiver<Ack>,
        saved: Option<Checkpoint>,
    ) -> Self {
        let tasks = config.tasks.clone();
        let max_inflight = config.dispatcher.max_inflight;
        let enabled = tasks.iter().filter(|t| t.enabled).count().max(1) as u32;
        Dispatch {
            changes: Changes::new(Some(tasks), String::new()),
            payloads: PayloadWriter::default(),
            scratch: Vec::with_capacity(4096),
            pending: shards.iter().map(|_| Vec::new()).collect(),
            inflight: vec![0; plan.tasks.len()],
            plan,
            shards,
            acks,
            total: 0,
            share: (max_inflight / enabled).max(1),
            limit: u64::from(max_inflight.max(1)),
            txn: 0,
            seq: 0,
            window: AckWindow::default(),
            sent_upto: None,
            progress: Rc::new(Progress::default()),
            durable: Durable {
                dir: config.state.dir.clone(),
                interval: config.state.checkpoint_interval,
                written: saved.as_ref().map(Checkpoint::position),
                saved,
                info: None,
                last_write: Instant::now(),
                writing: Rc::new(Cell::new(false)),
            },
        }
    }

    /// Makes the acknowledged position durable now (at shutdown), waiting for the
    /// write. Returns the position written, if any.
    pub async fn store_checkpoint(&mut self) -> Result<Option<BinlogPosition>, CheckpointError> {
        // Two writers of the same temp file could interleave; let a background
        // write finish first.
        while self.durable.writing.get() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        self.drain_acks();
        let (Some((pos, gtid)), Some(info)) = (self.window.position(), &self.durable.info) else {
            return Ok(None);
        };
        if self.durable.written.as_ref() == Some(pos) {
            return Ok(Some(pos.clone()));
        }
        checkpoint::store(&self.durable.dir, &Checkpoint::new(pos, gtid.clone(), info))?;
        self.durable.written = Some(pos.clone());
        Ok(Some(pos.clone()))
    }

    /// Starts a background checkpoint write when the interval has passed and the
    /// position moved. The fsyncs run off the source core's thread.
    fn maybe_checkpoint(&mut self) {
        let d = &mut self.durable;
        if d.writing.get() || d.last_write.elapsed() < d.interval {
            return;
        }
        let (Some((pos, gtid)), Some(info)) = (self.window.position(), &d.info) else {
            return;
        };
        if d.written.as_ref() == Some(pos) {
            return;
        }
        let cp = Checkpoint::new(pos, gtid.clone(), info);
        d.written = Some(pos.clone());
        d.last_write = Instant::now();
        d.writing.set(true);
        let (dir, busy) = (d.dir.clone(), d.writing.clone());
        glommio::spawn_local(async move {
            let shown = dir.display().to_string();
            let stored = glommio::executor()
                .spawn_blocking(move || checkpoint::store(&dir, &cp))
                .await;
            if let Err(e) = stored {
                tracing::error!(dir = %shown, error = %e, "cannot write the checkpoint; a restart would repeat more events");
            }
            busy.set(false);
        })
        .detach();
    }

    /// Waits up to `limit` for events in flight to be acknowledged (shutdown).
    pub async fn drain(&mut self, limit: Duration) -> Result<(), DispatchError> {
        let deadline = Instant::now() + limit;
        loop {
            self.drain_acks();
            self.flush()?;
            if self.total == 0 || Instant::now() >= deadline {
                return Ok(());
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The progress counters, for the periodic log line.
    pub fn progress(&self) -> Rc<Progress> {
        self.progress.clone()
    }

    /// Events read and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.total
    }

    fn note_time(&self, event: &[u8]) {
        use crate::binlog::event::kind;
        let (Some(ts), Some(&k)) = (event.get(..4), event.get(4)) else {
            return;
        };
        let ts = u64::from(u32::from_le_bytes([ts[0], ts[1], ts[2], ts[3]]));
        if k == kind::HEARTBEAT || k == kind::HEARTBEAT_V2 {
            self.progress.event_time.set(unix_now());
        } else if ts != 0 {
            self.progress.event_time.set(ts);
        }
    }

    fn drain_acks(&mut self) {
        while let Ok(ack) = self.acks.try_recv() {
            if let Some(n) = self.inflight.get_mut(ack.task as usize) {
                *n = n.saturating_sub(1);
            }
            self.total = self.total.saturating_sub(1);
            self.window.ack(ack.txn);
        }
        self.progress.in_flight.set(self.total);
    }

    fn over_budget(&self) -> bool {
        self.total >= self.limit || self.inflight.iter().any(|&n| n >= self.share)
    }

    /// Pushes pending batches to their shards; false if a channel is full.
    fn flush(&mut self) -> Result<bool, DispatchError> {
        let mut all = true;
        for (i, batch) in self.pending.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let shard = &self.shards[i];
            match shard.events.try_send(std::mem::take(batch)) {
                Ok(()) => {
                    // A full bell already has a wake-up pending.
                    let _ = shard.bell.try_send(());
                }
                Err(TrySendError::Full(b)) => {
                    *batch = b;
                    all = false;
                }
                Err(TrySendError::Disconnected(_)) => return Err(DispatchError::ShardGone(i)),
            }
        }
        Ok(all)
    }
}

impl crate::source::EventSink for Dispatch {
    type Error = DispatchError;

    fn on_connect(
        &mut self,
        info: &ServerInfo,
        from: &BinlogPosition,
    ) -> Result<(), DispatchError> {
        if let Some(saved) = &self.durable.saved {
            saved.check_source(&self.durable.dir, info)?;
        }
        self.durable.info = Some(info.clone());
        // (A GTID start has no file position yet; until its first transaction
        // completes, a restart starts from the same GTIDs.)
        if self.durable.written.is_none() && !from.file.is_empty() {
            // The first start without a checkpoint: pin where it begins, so a crash
            // before the first transaction completes resumes here, not at `latest`.
            let cp = Checkpoint::new(from, None, info);
            checkpoint::store(&self.durable.dir, &cp)?;
            self.durable.written = Some(from.clone());
            tracing::info!(checkpoint = %from, "initial checkpoint written");
        }
        self.changes.on_connect(info.checksum, &from.file);
        Ok(())
    }

    fn on_columns(&mut self, table_id: u64, columns: &[ColumnInfo]) {
        self.changes.on_columns(table_id, columns);
    }

    fn on_event(&mut self, file: &str, pos: u64, event: &[u8]) -> Result<bool, DispatchError> {
        self.changes.set_file(file);
        self.note_time(event);
        // After a reconnect the server repeats the open transaction from its start;
        // its rows already handed to shards are not sent twice.
        let repeat = self
            .sent_upto
            .as_ref()
            .is_some_and(|(f, p)| f == file && pos <= *p);
        let Dispatch {
            changes,
            payloads,
            scratch,
            plan,
            pending,
            inflight,
            total,
            txn,
            seq,
            window,
            ..
        } = self;
        let mut routed = false;
        let boundary = changes.feed(pos, event, |row, route| {
            if repeat {
                return Ok(());
            }
            routed = true;
            scratch.clear();
            let id_len = payloads.write(scratch, route.shape, row, route.keep.as_deref())?;
            let task = route.task as u32;
            *seq += 1;
            let key = match plan.tasks[route.task].ordering {
                Ordering::None => *seq,
                Ordering::PerKey | Ordering::Table => key_hash(task, payloads.key()),
            };
            pending[plan.shard_of(task, key)].push(Delivery {
                task,
                key,
                txn: *txn,
                id_len: u16::try_from(id_len).unwrap_or(u16::MAX),
                body: Bytes::copy_from_slice(scratch),
                made: std::time::Instant::now(),
            });
            inflight[route.task] += 1;
            *total += 1;
            window.add(*txn);
            Ok::<(), DispatchError>(())
        })?;
        if routed {
            self.sent_upto = Some((file.to_owned(), pos));
        }
        if boundary {
            let end = BinlogPosition {
                file: file.to_owned(),
                pos: pos + event.len() as u64,
            };
            let gtid = self.changes.ended_gtid().map(str::to_owned);
            self.window.end(self.txn, end, gtid);
            self.txn += 1;
        }
        Ok(boundary)
    }

    async fn ready(&mut self) -> Result<(), DispatchError> {
        loop {
            self.drain_acks();
            self.maybe_checkpoint();
            if self.flush()? && !self.over_budget() {
                return Ok(());
            }
            glommio::timer::sleep(ACK_POLL).await;
        }
    }
}
