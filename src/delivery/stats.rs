//! Delivery counters per task, shared by all shards (relaxed atomics: each counter
//! is written by few threads and read only for reports).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::http::{HttpError, Response};

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
    /// Row changes routed to the task (read off the binlog).
    pub read: AtomicU64,
    /// Row changes written to the quarantine instead (their columns could not
    /// be named).
    pub quarantined: AtomicU64,
    /// Attempts answered 2xx, 3xx, 4xx, 5xx, and attempts without an answer
    /// (connection failure, timeout, malformed response).
    pub answers: [AtomicU64; 5],
    /// Failed attempts to write a dead letter (full disk, I/O error).
    pub dlq_write_errors: AtomicU64,
    /// The last dead-letter write error, while writes keep failing.
    pub dlq_failing: std::sync::Mutex<Option<String>>,
    /// The last failed attempt: (unix time, what failed). Written only when an
    /// attempt fails, so the success path takes no lock.
    pub last_error: std::sync::Mutex<Option<(u64, String)>>,
    /// The task's spool as last tended (`None`: it has none open).
    pub spool: std::sync::Mutex<Option<crate::spool::SpoolStatus>>,
}

impl TaskStats {
    /// Zeroes every counter (a slot that takes a new task).
    pub fn reset(&self) {
        for c in [
            &self.delivered,
            &self.requests,
            &self.retries,
            &self.dead_lettered,
            &self.read,
            &self.quarantined,
            &self.dlq_write_errors,
        ]
        .into_iter()
        .chain(&self.answers)
        {
            c.store(0, Relaxed);
        }
        if let Ok(mut f) = self.dlq_failing.lock() {
            *f = None;
        }
        if let Ok(mut f) = self.last_error.lock() {
            *f = None;
        }
    }
}

/// Labels of [`TaskStats::answers`], in order.
pub const ANSWER_CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "error"];

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

    /// A dead-letter write of `task` failed with `error` (`None`: one succeeded).
    pub fn dlq_write(&self, task: u32, error: Option<String>) {
        if let Some(t) = self.tasks.get(task as usize) {
            if error.is_some() {
                t.dlq_write_errors.fetch_add(1, Relaxed);
            }
            if let Ok(mut failing) = t.dlq_failing.lock() {
                *failing = error;
            }
        }
    }

    /// Why `task`'s dead letters cannot be written right now, if they cannot.
    pub fn dlq_failing(&self, task: u32) -> Option<String> {
        let t = self.tasks.get(task as usize)?;
        t.dlq_failing.lock().ok()?.clone()
    }

    /// An attempt of `task` failed with `error` (retried or dead-lettered).
    pub fn failed(&self, task: u32, error: String) {
        if let Some(t) = self.tasks.get(task as usize) {
            if let Ok(mut last) = t.last_error.lock() {
                *last = Some((super::unix_now(), error));
            }
        }
    }

    /// The last failed attempt of `task`: (unix time, what failed).
    pub fn last_error(&self, task: u32) -> Option<(u64, String)> {
        let t = self.tasks.get(task as usize)?;
        t.last_error.lock().ok()?.clone()
    }

    /// One failed attempt of `task` will be retried.
    pub fn retried(&self, task: u32) {
        if let Some(t) = self.tasks.get(task as usize) {
            t.retries.fetch_add(1, Relaxed);
        }
    }

    /// `events` row changes of `task` went to the quarantine.
    pub fn quarantined(&self, task: usize, events: u64) {
        if let Some(t) = self.tasks.get(task) {
            t.quarantined.fetch_add(events, Relaxed);
        }
    }

    /// What `task`'s spool holds now.
    pub fn set_spool(&self, task: usize, status: crate::spool::SpoolStatus) {
        if let Some(t) = self.tasks.get(task) {
            if let Ok(mut s) = t.spool.lock() {
                *s = Some(status);
            }
        }
    }

    /// `task`'s spool as last tended.
    pub fn spool(&self, task: usize) -> Option<crate::spool::SpoolStatus> {
        self.tasks.get(task)?.spool.lock().ok()?.clone()
    }

    /// `events` of `task` were dead-lettered.
    pub fn dead_lettered(&self, task: u32, events: usize) {
        if let Some(t) = self.tasks.get(task as usize) {
            t.dead_lettered.fetch_add(events as u64, Relaxed);
        }
    }

    /// One attempt of `task` ended with `result`.
    pub fn answered(&self, task: u32, result: &Result<Response, HttpError>) {
        let class = match result {
            Ok(r) => match r.status {
                200..=299 => 0,
                300..=399 => 1,
                400..=499 => 2,
                500..=599 => 3,
                _ => 4,
            },
            Err(_) => 4,
        };
        if let Some(t) = self.tasks.get(task as usize) {
            t.answers[class].fetch_add(1, Relaxed);
        }
    }

    /// `events` row changes routed to `task`.
    pub fn read(&self, task: usize, events: u64) {
        if let Some(t) = self.tasks.get(task) {
            t.read.fetch_add(events, Relaxed);
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
