//! Where a row change goes. Which tasks want the changes of a table (matched once
//! per table id, again when its TABLE_MAP changes, with each task's column
//! projection resolved to a mask), and for each task's event its routing hash, its
//! shard and its lane: pure functions, so every stage agrees on them.

use std::collections::HashMap;

use crate::binlog::{RowsKind, TableMap};
use crate::config::{Ordering, PayloadShape, TaskConfig};

/// One task's interest in one table.
#[derive(Debug, Clone)]
pub struct Route {
    /// Index into the task list.
    pub task: usize,
    /// The task's payload shape.
    pub shape: PayloadShape,
    /// Columns to send (`None` = all).
    pub keep: Option<Vec<bool>>,
}

/// Matches tables to tasks, caching the answer per table id.
#[derive(Debug)]
pub struct Router {
    tasks: Vec<TaskConfig>,
    cache: HashMap<u64, Vec<Route>>,
}

impl Router {
    /// A router over `tasks` (disabled tasks never match).
    pub fn new(tasks: Vec<TaskConfig>) -> Self {
        Router {
            tasks,
            cache: HashMap::new(),
        }
    }

    /// Forgets what was resolved for `table_id` (its TABLE_MAP was replaced).
    pub fn invalidate(&mut self, table_id: u64) {
        self.cache.remove(&table_id);
    }

    /// Resolves (once per table id) which tasks want `table`.
    pub fn prepare(&mut self, table: &TableMap) {
        if !self.cache.contains_key(&table.table_id) {
            let routes = resolve(&self.tasks, table);
            self.cache.insert(table.table_id, routes);
        }
    }

    /// Every task's route for a prepared table, whatever the event kind.
    pub fn routes(&self, table_id: u64) -> &[Route] {
        self.cache.get(&table_id).map_or(&[], Vec::as_slice)
    }

    /// Whether `task` wants events of `kind`.
    pub fn wants(&self, task: usize, kind: RowsKind) -> bool {
        let e = self.tasks[task].events;
        match kind {
            RowsKind::Insert => e.insert,
            RowsKind::Update => e.update,
            RowsKind::Delete => e.delete,
        }
    }
}

fn resolve(tasks: &[TaskConfig], table: &TableMap) -> Vec<Route> {
    tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.enabled && t.table.matches(&table.schema, &table.table))
        .map(|(i, t)| Route {
            task: i,
            shape: t.payload,
            keep: t.columns.as_ref().map(|names| {
                table
                    .columns
                    .iter()
                    .map(|c| {
                        c.name
                            .as_ref()
                            .is_some_and(|n| names.iter().any(|w| w == n))
                    })
                    .collect()
            }),
        })
        .collect()
}

/// Mixes a task index and key bytes into the routing hash (FNV-1a, then a final
/// avalanche so `% shards` and `/ shards % lanes` use well-spread bits).
pub fn key_hash(task: u32, key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in task.to_le_bytes().iter().chain(key) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The routing hash of an event of `task` whose primary-key values (JSON text)
/// are `key`; `seq` counts events, and spreads them under `ordering: none`.
pub fn routing_key(ordering: Ordering, task: u32, key: &[u8], seq: u64) -> u64 {
    match ordering {
        Ordering::None => seq,
        Ordering::PerKey | Ordering::Table => key_hash(task, key),
    }
}

/// The shard of an event with routing hash `key`, among `shards` (≥ 1).
pub fn shard_of(ordering: Ordering, task: u32, key: u64, shards: usize) -> usize {
    let shards = shards.max(1);
    match ordering {
        // One lane for the whole task: every event on the task's home shard.
        Ordering::Table => task as usize % shards,
        _ => (key % shards as u64) as usize,
    }
}

/// The lane, on its shard, of an event with routing hash `key`, among the task's
/// `lanes` (≥ 1) per shard. Uses the hash bits above those that chose the shard.
pub fn lane_of(key: u64, shards: usize, lanes: u32) -> usize {
    ((key / shards.max(1) as u64) % u64::from(lanes.max(1))) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (ordering, task, key, seq, shards, lanes) -> (shard, lane), and what each
    /// row shows.
    #[test]
    fn events_go_to_one_place_per_key_task_or_sequence() {
        let place = |o: Ordering, task: u32, key: &[u8], seq: u64, shards: usize, lanes: u32| {
            let k = routing_key(o, task, key, seq);
            (shard_of(o, task, k, shards), lane_of(k, shards, lanes))
        };
        type Case = (Ordering, u32, &'static [u8], u64, usize, u32);
        let cases: &[Case] = &[
            (Ordering::PerKey, 0, b"1", 1, 1, 8),
            (Ordering::PerKey, 0, b"1", 99, 1, 8),
            (Ordering::PerKey, 0, b"2", 2, 3, 4),
            (Ordering::PerKey, 1, b"{\"a\":7,\"b\":\"x\"}", 3, 3, 4),
            (Ordering::Table, 5, b"1", 4, 3, 1),
            (Ordering::Table, 5, b"2", 5, 3, 1),
            (Ordering::None, 0, b"1", 6, 2, 4),
            (Ordering::None, 0, b"1", 7, 2, 4),
        ];
        let got: Vec<(usize, usize)> = cases
            .iter()
            .map(|&(o, t, k, s, sh, l)| place(o, t, k, s, sh, l))
            .collect();
        // The same key of the same task: the same place, whatever the sequence.
        assert_eq!(got[0], got[1]);
        // A task under `table`: its home shard and its one lane, for any key.
        assert_eq!(got[4], (5 % 3, 0));
        assert_eq!(got[5], got[4]);
        // `none` spreads consecutive events.
        assert_ne!(got[6], got[7]);
        // Every place exists.
        for (&(_, _, _, _, shards, lanes), &(shard, lane)) in cases.iter().zip(&got) {
            assert!(shard < shards && lane < lanes as usize);
        }
        // The hash is part of the on-the-wire order of a running instance only,
        // but pinned so a change to it is a decision, not an accident.
        assert_eq!(key_hash(0, b"1"), key_hash(0, b"1"));
        assert_ne!(key_hash(0, b"1"), key_hash(1, b"1"));
        assert_eq!(got[2], place(Ordering::PerKey, 0, b"2", 1234, 3, 4));
    }

    /// Over many keys, shards and lanes are all used (no bits shared between the
    /// two choices).
    #[test]
    fn keys_spread_over_shards_and_lanes() {
        let (shards, lanes) = (3usize, 4u32);
        let mut seen = std::collections::HashSet::new();
        for k in 0..1000u32 {
            let key = k.to_string();
            let h = key_hash(0, key.as_bytes());
            seen.insert((
                shard_of(Ordering::PerKey, 0, h, shards),
                lane_of(h, shards, lanes),
            ));
        }
        assert_eq!(seen.len(), shards * lanes as usize);
    }
}
