//! Where snapshot chunks join the stream, on the source core. A chunk is a
//! consistent read of some rows that saw no transaction after binlog position
//! `at`. It goes in between two transactions, once the stream has read at least
//! up to `at`; rows whose key the stream changed while the chunk was being read
//! or since are dropped, because the receiver already has (or is about to get,
//! in order) something as new or newer for them. The stream records those keys
//! from the moment the reader says it is about to read until the chunk goes in.
//! Where the server reports the read's exact position (MariaDB), `from == at` and
//! only keys changed at or after it are dropped; with watermarks (`at` = the
//! binlog's end just after the read) every key recorded since the watch began
//! is, as the read may or may not have seen those changes.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::checkpoint::ledger::Ledger;
use crate::checkpoint::SnapshotProgress;
use crate::delivery::stats::Stats;
use crate::delivery::Delivery;
use crate::mysql::replica::BinlogPosition;

use super::{DispatchError, Outbox};

/// What the stream and the snapshot readers share.
#[derive(Debug, Default)]
pub(crate) struct Merge {
    /// Ordinal of the next transaction given to the ledger (stream transactions
    /// and snapshot chunks share the sequence).
    pub txn: u64,
    /// Events routed so far (spreads `ordering: none`).
    pub seq: u64,
    /// No transaction is open in the stream.
    pub between: bool,
    /// The end of the last transaction read (or where the stream started).
    pub at: Option<BinlogPosition>,
    /// Its GTID.
    pub gtid: Option<String>,
    /// Keys of watched tables the stream delivered, with the last position.
    pub watches: Vec<Watch>,
    /// Rows of a chunk that waits only for in-flight room (the stream reads no
    /// further until it fits).
    pub reserved: u64,
}

/// A table whose delivered keys are being recorded for a chunk.
#[derive(Debug)]
pub(crate) struct Watch {
    task: usize,
    schema: String,
    table: String,
    /// For a table without a primary key: the unique key's columns, whose values
    /// (read from the payload) identify a row instead.
    unique: Option<Vec<String>>,
    keys: HashMap<Vec<u8>, BinlogPosition>,
}

impl Watch {
    fn record(&mut self, key: &[u8], pos: &BinlogPosition) {
        match self.keys.get_mut(key) {
            Some(p) => p.clone_from(pos),
            None => {
                self.keys.insert(key.to_vec(), pos.clone());
            }
        }
    }
}

/// The values of `columns` in a payload's row object (JSON), canonically
/// written: how a row of a table without a primary key is recognised on both
/// sides of the merge.
pub fn unique_key_of(row: &[u8], columns: &[String]) -> Vec<u8> {
    let row: serde_json::Value = serde_json::from_slice(row).unwrap_or_default();
    unique_key(&row, columns)
}

fn unique_key(row: &serde_json::Value, columns: &[String]) -> Vec<u8> {
    let values: Vec<&serde_json::Value> = columns
        .iter()
        .map(|c| row.get(c).unwrap_or(&serde_json::Value::Null))
        .collect();
    serde_json::to_vec(&values).unwrap_or_default()
}

/// The stream's side of one delivered row, as the watches need it.
pub(crate) struct Seen<'a> {
    /// Index of the task.
    pub task: usize,
    /// Schema and table.
    pub table: (&'a str, &'a str),
    /// Its key values, and the old ones of an update that changed them.
    pub keys: (&'a [u8], Option<&'a [u8]>),
    /// The payload.
    pub payload: &'a [u8],
    /// The rows event's position.
    pub pos: &'a BinlogPosition,
}

impl Merge {
    /// The stream delivered a row: record it where a chunk of its table waits.
    pub fn saw(&mut self, seen: Seen<'_>) {
        for w in &mut self.watches {
            if w.task != seen.task || (w.schema.as_str(), w.table.as_str()) != seen.table {
                continue;
            }
            match &w.unique {
                None => {
                    w.record(seen.keys.0, seen.pos);
                    if let Some(old) = seen.keys.1 {
                        w.record(old, seen.pos);
                    }
                }
                Some(columns) => {
                    let body: serde_json::Value =
                        serde_json::from_slice(seen.payload).unwrap_or_default();
                    let keys: Vec<Vec<u8>> = ["data", "new_data", "old_data"]
                        .iter()
                        .filter_map(|image| body.get(image))
                        .map(|row| unique_key(row, columns))
                        .collect();
                    for k in keys {
                        w.record(&k, seen.pos);
                    }
                }
            }
        }
    }
}

/// One rendered row of a chunk.
#[derive(Debug)]
pub struct ChunkRow {
    /// The key values (JSON text), as the stream routes the table's rows (empty
    /// without a primary key).
    pub key: Vec<u8>,
    /// What the stream records for the same row: `key`, or the unique key's values.
    pub matched: Vec<u8>,
    /// The payload.
    pub body: Bytes,
    /// Length of the payload's id.
    pub id_len: u16,
}

/// A consistent read of some rows of one table of one task.
#[derive(Debug)]
pub struct Chunk {
    /// Index of the task in the plan.
    pub task: usize,
    /// The task's id.
    pub task_id: String,
    /// Schema of the table.
    pub schema: String,
    /// The table.
    pub table: String,
    /// The read's exact position, where the server reports one: the stream's
    /// changes before it are in the rows. `None`: every change recorded since the
    /// watch began may or may not be.
    pub from: Option<BinlogPosition>,
    /// The read saw no transaction that ends after this position.
    pub at: BinlogPosition,
    /// The rows, in key order.
    pub rows: Vec<ChunkRow>,
    /// The task's snapshot progress once these rows are done.
    pub progress: SnapshotProgress,
}

/// What became of an offered chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// The stream has not read up to the chunk's position yet, is inside a
    /// transaction, or the in-flight budget is spent: offer it again shortly.
    NotYet,
    /// Handed to the shards: `sent` rows, `dropped` because the stream had newer.
    Taken {
        /// Rows handed on.
        sent: u64,
        /// Rows the stream had newer changes for.
        dropped: u64,
    },
}

/// A snapshot reader's way into the stream (same thread; cloned from the dispatcher).
#[derive(Clone)]
pub struct SnapshotPort {
    pub(super) merge: Rc<RefCell<Merge>>,
    pub(super) outbox: Rc<RefCell<Outbox>>,
    pub(super) ledger: Rc<RefCell<Ledger>>,
    pub(super) tasks: Rc<RefCell<crate::control::TaskTable>>,
    pub(super) stats: Arc<Stats>,
    pub(super) limit: u64,
}

impl SnapshotPort {
    /// Starts recording the keys the stream delivers for `task` on
    /// `schema.table`; call before the chunk's read begins.
    pub fn watch(&self, task: usize, schema: &str, table: &str, unique: Option<Vec<String>>) {
        let mut m = self.merge.borrow_mut();
        if !m
            .watches
            .iter()
            .any(|w| w.task == task && w.schema == schema && w.table == table)
        {
            m.watches.push(Watch {
                task,
                schema: schema.to_owned(),
                table: table.to_owned(),
                unique,
                keys: HashMap::new(),
            });
        }
    }

    /// Stops recording for `task` on `schema.table` (a read that failed).
    pub fn unwatch(&self, task: usize, schema: &str, table: &str) {
        self.merge
            .borrow_mut()
            .watches
            .retain(|w| !(w.task == task && w.schema == schema && w.table == table));
    }

    /// Gives back in-flight room a chunk reserved (its reader stopped).
    pub fn release(&self) {
        self.merge.borrow_mut().reserved = 0;
    }

    /// Snapshot progress saved by the last checkpoint.
    pub fn saved_progress(&self, task_id: &str) -> Option<SnapshotProgress> {
        self.ledger.borrow().snapshots().get(task_id).cloned()
    }

    /// Hands `chunk` to the shards if the stream allows it now.
    pub fn offer(&self, chunk: &mut Chunk) -> Result<Offer, DispatchError> {
        let mut m = self.merge.borrow_mut();
        let Some(at) = m.at.clone().filter(|at| m.between && *at >= chunk.at) else {
            return Ok(Offer::NotYet);
        };
        let mut ledger = self.ledger.borrow_mut();
        ledger.drain_acks();
        let n = chunk.rows.len() as u64;
        // The chunk needs room for itself, or half the budget when it is larger
        // (in flight may then pass the budget by at most one chunk). Under a
        // steady stream that room would rarely come: reserve it, so the stream
        // stops reading until it has. Never more than half, so a reservation
        // left behind cannot stop the stream.
        let room = n.min(self.limit / 2);
        if ledger.total + room > self.limit {
            m.reserved = room;
            return Ok(Offer::NotYet);
        }
        m.reserved = 0;
        let newer: HashSet<Vec<u8>> = match m.watches.iter().position(|w| {
            w.task == chunk.task && w.schema == chunk.schema && w.table == chunk.table
        }) {
            Some(i) => m
                .watches
                .swap_remove(i)
                .keys
                .into_iter()
                .filter(|(_, p)| chunk.from.as_ref().is_none_or(|from| p >= from))
                .map(|(k, _)| k)
                .collect(),
            None => HashSet::new(),
        };
        let txn = m.txn;
        m.txn += 1;
        let task = chunk.task as u32;
        let plan = self.tasks.borrow().plan().clone();
        let Some(ordering) = plan
            .tasks
            .get(chunk.task)
            .filter(|t| t.enabled)
            .map(|t| t.ordering)
        else {
            return Ok(Offer::Taken {
                sent: 0,
                dropped: chunk.rows.len() as u64,
            });
        };
        let made = Instant::now();
        let mut outbox = self.outbox.borrow_mut();
        let (mut sent, mut dropped) = (0, 0);
        for row in chunk.rows.drain(..) {
            if newer.contains(&row.matched) {
                dropped += 1;
                continue;
            }
            m.seq += 1;
            let key = crate::route::routing_key(ordering, task, &row.key, m.seq);
            let delivery = Delivery {
                task,
                generation: plan.generation,
                key,
                txn,
                id_len: row.id_len,
                body: row.body,
                weight: 1,
                made,
                spool: 0,
            };
            outbox.hand(&mut ledger, plan.shard_of(task, key), delivery, false);
            self.stats.read(chunk.task, 1);
            sent += 1;
        }
        ledger.mark_snapshot(txn, &chunk.task_id, chunk.progress.clone());
        let gtid = m.gtid.clone();
        ledger.end(txn, at, gtid);
        outbox.flush()?;
        Ok(Offer::Taken { sent, dropped })
    }
}
