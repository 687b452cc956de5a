//! `run`'s sink on the source core: row changes -> payloads -> the shard that owns
//! their key, with the in-flight budget that pauses reading when receivers fall
//! behind. Each task gets its own share of `max_inflight`, so a task whose receiver
//! is down fills only its share while the others keep flowing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use glommio::channels::shared_channel::ConnectedSender;

use crate::binlog::PositionedError;
use crate::changes::Changes;
use crate::config::Ordering;
use crate::delivery::{key_hash, Ack, Delivery, Plan};
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
}

impl Dispatch {
    /// A dispatcher over `tasks` (the config's, in plan order) sending to `shards`.
    pub fn new(
        tasks: Vec<crate::config::TaskConfig>,
        plan: Arc<Plan>,
        max_inflight: u32,
        shards: Vec<ShardTx>,
        acks: Receiver<Ack>,
    ) -> Self {
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
        }
    }

    /// Events read and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.total
    }

    fn drain_acks(&mut self) {
        while let Ok(ack) = self.acks.try_recv() {
            if let Some(n) = self.inflight.get_mut(ack.task as usize) {
                *n = n.saturating_sub(1);
            }
            self.total = self.total.saturating_sub(1);
        }
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

    fn on_connect(&mut self, info: &ServerInfo, from: &BinlogPosition) {
        self.changes.on_connect(info.checksum, &from.file);
    }

    fn on_columns(&mut self, table_id: u64, columns: &[ColumnInfo]) {
        self.changes.on_columns(table_id, columns);
    }

    fn on_event(&mut self, file: &str, pos: u64, event: &[u8]) -> Result<bool, DispatchError> {
        self.changes.set_file(file);
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
            ..
        } = self;
        let boundary = changes.feed(pos, event, |row, route| {
            scratch.clear();
            let id_len = payloads
                .write(scratch, route.shape, row, route.keep.as_deref())
                .map_err(|source| PositionedError {
                    file: row.at.file.to_owned(),
                    pos,
                    source,
                })?;
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
            Ok::<(), DispatchError>(())
        })?;
        if boundary {
            self.txn += 1;
        }
        Ok(boundary)
    }

    async fn ready(&mut self) -> Result<(), DispatchError> {
        loop {
            self.drain_acks();
            if self.flush()? && !self.over_budget() {
                return Ok(());
            }
            glommio::timer::sleep(ACK_POLL).await;
        }
    }
}
