//! Delivery counters per task, shared by all shards (relaxed atomics: each counter
//! is written by few threads and read only for reports).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of one task.
#[derive(Debug, Default)]
pub struct TaskStats {
    /// Events acknowledged by the receiver.
    pub delivered: AtomicU64,
    /// Requests that got a 2xx.
    pub requests: AtomicU64,
    /// Failed attempts that were retried.
    pub retries: AtomicU64,
    /// Events written to the dead-letter file.
    pub dead_lettered: AtomicU64,
}

/// Counters of every task, indexed like the plan.
#[derive(Debug, Default)]
pub struct Stats {
    /// Per task.
    pub tasks: Vec<TaskStats>,
}

impl Stats {
    /// Zeroed counters for `tasks` tasks.
    pub fn new(tasks: usize) -> Self {
        Stats {
            tasks: (0..tasks).map(|_| TaskStats::default()).collect(),
        }
    }

    /// `events` events of `task` acknowledged.
    pub fn delivered(&self, task: u32, events: usize) {
        if let Some(t) = self.tasks.get(task as usize) {
            t.delivered.fetch_add(events as u64, Relaxed);
            t.requests.fetch_add(1, Relaxed);
        }
    }

    /// One failed attempt of `task` will be retried.
    pub fn retried(&self, task: u32) {
        if let Some(t) = self.tasks.get(task as usize) {
            t.retries.fetch_add(1, Relaxed);
        }
    }

    /// `events` events of `task` dead-lettered.
    pub fn dead_lettered(&self, task: u32, events: usize) {
        if let Some(t) = self.tasks.get(task as usize) {
            t.dead_lettered.fetch_add(events as u64, Relaxed);
        }
    }

    /// Totals over all tasks: (delivered, retries, dead-lettered).
    pub fn totals(&self) -> (u64, u64, u64) {
        self.tasks.iter().fold((0, 0, 0), |(d, r, x), t| {
            (
                d + t.delivered.load(Relaxed),
                r + t.retries.load(Relaxed),
                x + t.dead_lettered.load(Relaxed),
            )
        })
    }
}
