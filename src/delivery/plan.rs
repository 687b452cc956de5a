//! Everything shards need to know about tasks: parsed endpoints, pre-built request
//! heads, lane counts, retry settings. Resolved at start-up, and again for each live
//! change of the task set (a new *generation*; a task keeps its slot across them).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as Mem};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Ordering, TaskConfig};
use crate::http::Endpoint;

/// Headers rowhook writes itself; a task may not set them.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// The most task slots one instance holds. Every per-task counter shared between
/// threads is allocated once at this size, so a live change never reallocates what
/// another thread reads; a removed task's slot is reused once its events are done.
pub const MAX_TASKS: usize = 1024;

/// One task, ready to send.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    /// `task_id`.
    pub id: String,
    /// The absolute callback URL.
    pub url: String,
    /// Where it points.
    pub endpoint: Endpoint,
    /// Request line and fixed headers, ending before the per-request ones.
    pub head: Vec<u8>,
    /// Signing key.
    pub secret: Option<Vec<u8>>,
    /// Events per request (1 = a JSON object, more = an array).
    pub batch_size: usize,
    /// How long a lane waits to fill a batch.
    pub linger: Duration,
    /// Ordering constraint.
    pub ordering: Ordering,
    /// Lanes per shard (requests of this task in flight at once on one shard).
    pub lanes: usize,
    /// Events are routed to it (not disabled, not removed).
    pub enabled: bool,
    /// Under `delivery: transaction`: one POST per source transaction, in parts
    /// of at most this many rows. `None`: one POST per row (or batch).
    pub transaction_parts: Option<u32>,
    /// Its disk spool, if it has one.
    pub spool: Option<crate::config::SpoolConfig>,
}

/// The delivery side of a configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Which task set this is: 0 at start, one more per applied change. Every
    /// delivery carries the generation it was read under, so a change never
    /// alters how an event read before it is sent.
    pub generation: u32,
    /// Tasks by slot (disabled and removed ones included; nothing is routed to them).
    pub tasks: Vec<TaskPlan>,
    /// Number of delivery shards.
    pub shards: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries before dead-lettering; `None` = forever.
    pub max_retries: Option<u32>,
    /// First retry delay.
    pub retry_base_delay: Duration,
    /// Backoff cap.
    pub retry_max_delay: Duration,
    /// Keep-alive connections per origin on one shard.
    pub pool_limit: usize,
    /// Where dead-letter files go.
    pub dlq_dir: PathBuf,
    /// What an operator changes while running (pause/resume), per task.
    pub controls: Arc<Controls>,
    /// TLS for https callbacks.
    pub tls: Arc<rustls::ClientConfig>,
}

impl Plan {
    /// Resolves `config` for `shards` delivery shards.
    pub fn new(config: &Config, shards: usize) -> Result<Plan, PlanError> {
        let shards = shards.max(1);
        let d = &config.dispatcher;
        if config.tasks.len() > MAX_TASKS {
            return Err(PlanError::TooMany(config.tasks.len()));
        }
        let lanes = lane_share(d.worker_count, shards, &config.tasks);
        let tasks = config
            .tasks
            .iter()
            .map(|t| task_plan(t, lanes))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = crate::http::client::tls_config(d.ca_file.as_deref())?;
        Ok(Plan {
            generation: 0,
            tasks,
            shards,
            timeout: d.timeout,
            max_retries: d.max_retries,
            retry_base_delay: d.retry_base_delay,
            retry_max_delay: d.retry_max_delay,
            pool_limit: (d.max_connections as usize / shards).max(1),
            dlq_dir: config.state.dir.join("dlq"),
            controls: Arc::new(Controls {
                paused: (0..MAX_TASKS).map(|_| AtomicBool::new(false)).collect(),
                leadership: Leadership::default(),
            }),
            tls,
        })
    }

    /// The next generation: `slots` (the task of each slot, removed ones disabled)
    /// with this plan's settings. A slot that keeps its ordering keeps its lane
    /// count, so an event's lane does not move under it; new slots get today's
    /// share of `worker_count`.
    pub fn next(&self, slots: &[TaskConfig], worker_count: u32) -> Result<Plan, PlanError> {
        if slots.len() > MAX_TASKS {
            return Err(PlanError::TooMany(slots.len()));
        }
        let lanes = lane_share(worker_count, self.shards, slots);
        let tasks = slots
            .iter()
            .enumerate()
            .map(|(slot, t)| {
                let mut plan = task_plan(t, lanes)?;
                if let Some(old) = self.tasks.get(slot).filter(|o| o.ordering == t.ordering) {
                    plan.lanes = old.lanes;
                }
                Ok(plan)
            })
            .collect::<Result<Vec<_>, PlanError>>()?;
        Ok(Plan {
            generation: self.generation.wrapping_add(1),
            tasks,
            ..self.clone()
        })
    }

    /// The shard an event of `task` with routing hash `key` goes to.
    pub fn shard_of(&self, task: u32, key: u64) -> usize {
        let ordering = self
            .tasks
            .get(task as usize)
            .map_or(Ordering::PerKey, |t| t.ordering);
        crate::route::shard_of(ordering, task, key, self.shards)
    }

    /// The lane (on its shard) an event of `task` with routing hash `key` goes to.
    pub fn lane_of(&self, task: u32, key: u64) -> usize {
        let lanes = self.tasks.get(task as usize).map_or(1, |t| t.lanes);
        crate::route::lane_of(key, self.shards, u32::try_from(lanes).unwrap_or(u32::MAX))
    }
}

/// Lanes per task per shard: worker_count bounds concurrent requests over all
/// shards and tasks; each enabled task gets a fixed share of it, so a task whose
/// receiver hangs cannot take the others' slots. At least one lane per task per shard.
fn lane_share(worker_count: u32, shards: usize, tasks: &[TaskConfig]) -> usize {
    let enabled = tasks.iter().filter(|t| t.enabled).count().max(1);
    let per_shard = worker_count as usize / shards.max(1);
    if per_shard < enabled {
        tracing::warn!(
            worker_count,
            shards,
            tasks = enabled,
            "worker_count is below one request per task per shard; each task still gets one"
        );
    }
    (per_shard / enabled).max(1)
}

/// Whether `t` can be sent (its URL parses, its headers can be written): what
/// a plan checks beyond the configuration's own validation.
pub fn check_task(t: &TaskConfig) -> Result<(), PlanError> {
    task_plan(t, 1).map(|_| ())
}

/// One task resolved for sending, with `lanes` lanes unless ordered by table.
fn task_plan(t: &TaskConfig, lanes: usize) -> Result<TaskPlan, PlanError> {
    let endpoint = Endpoint::parse(&t.callback_url).map_err(|source| PlanError::Callback {
        task: t.task_id.clone(),
        source,
    })?;
    let head = request_head(&endpoint, &t.headers).map_err(|source| PlanError::Header {
        task: t.task_id.clone(),
        source,
    })?;
    Ok(TaskPlan {
        id: t.task_id.clone(),
        url: t.callback_url.clone(),
        endpoint,
        head,
        secret: t.secret.clone(),
        batch_size: (t.batch_size as usize).max(1),
        linger: t.batch_linger,
        ordering: t.ordering,
        lanes: if t.ordering == Ordering::Table {
            1
        } else {
            lanes
        },
        enabled: t.enabled,
        transaction_parts: (t.delivery == crate::config::DeliveryMode::Transaction)
            .then_some(t.max_transaction_events),
        spool: t.spool.clone(),
    })
}

/// Operator controls per task, read by the lanes and set by the admin server.
#[derive(Debug, Default)]
pub struct Controls {
    paused: Vec<AtomicBool>,
    /// With `ha`: whether this instance may send, and its epoch.
    pub leadership: Leadership,
}

/// With `ha`, the lanes send only while this instance holds the active role
/// with a safe margin on its etcd lease, and stamp its epoch on every webhook.
/// Without `ha` it never holds anything back and no epoch is sent.
#[derive(Debug)]
pub struct Leadership {
    /// The takeover count, sent as `webhook-epoch`; 0 without `ha`.
    epoch: AtomicU64,
    /// Boot-clock milliseconds until which sending is allowed; `u64::MAX`
    /// without `ha`. The boot clock runs on through SIGSTOP and suspend, so a
    /// frozen instance sees at once that its margin is gone when it wakes.
    until_ms: AtomicU64,
}

impl Default for Leadership {
    fn default() -> Self {
        Leadership {
            epoch: AtomicU64::new(0),
            until_ms: AtomicU64::new(u64::MAX),
        }
    }
}

impl Leadership {
    /// Whether a webhook may be sent now.
    pub fn allows(&self) -> bool {
        let until = self.until_ms.load(Mem::Acquire);
        until == u64::MAX || boot_ms() < until
    }

    /// The epoch to stamp (0: none).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Mem::Relaxed)
    }

    /// Holds every send (an `ha` instance before it is elected, or deposed).
    pub fn hold(&self) {
        self.until_ms.store(0, Mem::Release);
    }

    /// Elected with `epoch`: send until `until_ms` (boot clock).
    pub fn grant(&self, epoch: u64, until_ms: u64) {
        self.epoch.store(epoch, Mem::Relaxed);
        self.until_ms.store(until_ms, Mem::Release);
    }

    /// A renewed lease moves the margin on, never back.
    pub fn extend(&self, until_ms: u64) {
        self.until_ms.fetch_max(until_ms, Mem::AcqRel);
    }

    /// Milliseconds left before sending stops (0 when held; `None` without `ha`).
    pub fn left_ms(&self) -> Option<u64> {
        let until = self.until_ms.load(Mem::Acquire);
        (until != u64::MAX).then(|| until.saturating_sub(boot_ms()))
    }
}

/// Milliseconds on CLOCK_BOOTTIME (monotonic, counts time stopped or suspended).
pub fn boot_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_BOOTTIME exists on every
    // kernel rowhook runs on (io_uring needs a far newer one).
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

impl Controls {
    /// Whether task `task` is paused: its lanes hold their events.
    pub fn is_paused(&self, task: u32) -> bool {
        self.paused
            .get(task as usize)
            .is_some_and(|p| p.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Pauses or resumes the task in slot `task`.
    pub fn set_paused(&self, task: usize, paused: bool) {
        if let Some(p) = self.paused.get(task) {
            p.store(paused, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Why the configuration does not make a delivery plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A task's callback URL is not an http(s) endpoint.
    #[error("task {task}: callback_url {source}")]
    Callback {
        /// The task.
        task: String,
        /// What is wrong with the URL.
        source: crate::http::client::EndpointError,
    },
    /// A task's extra header cannot be sent.
    #[error("task {task}: headers: {source}")]
    Header {
        /// The task.
        task: String,
        /// What is wrong with the header.
        source: HeaderError,
    },
    /// The TLS settings for https callbacks.
    #[error(transparent)]
    Tls(#[from] crate::http::client::TlsConfigError),
    /// More tasks than slots.
    #[error("{0} tasks: one instance holds at most {MAX_TASKS}")]
    TooMany(usize),
}

/// Why a task's extra header cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not an RFC 9110 token.
    #[error("{0:?} is not a valid header name")]
    Name(String),
    /// One of rowhook's own headers.
    #[error("{0} is set by rowhook and cannot be overridden")]
    Reserved(String),
    /// CR, LF or NUL in the value.
    #[error("the value of {0} contains a line break")]
    LineBreak(String),
}

fn request_head(e: &Endpoint, headers: &[(String, String)]) -> Result<Vec<u8>, HeaderError> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"POST ");
    head.extend_from_slice(e.path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    head.extend_from_slice(e.authority.as_bytes());
    head.extend_from_slice(b"\r\nUser-Agent: rowhook/");
    head.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    head.extend_from_slice(b"\r\nContent-Type: application/json\r\n");
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(HeaderError::Name(name.clone()));
        }
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(HeaderError::Reserved(name.clone()));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(HeaderError::LineBreak(name.clone()));
        }
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.trim().as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    Ok(head)
}

/// RFC 9110 token characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(worker_count: u32, shards: usize, tasks: &str) -> Plan {
        let dispatcher = format!("dispatcher: {{worker_count: {worker_count}}}\n");
        let config = crate::config::for_test(&dispatcher, tasks).unwrap();
        Plan::new(&config, shards).unwrap()
    }

    const TWO_TASKS: &str = "tasks:
  - {task_id: a, table_name: t, events: [insert], callback_url: 'http://h/a'}
  - {task_id: b, table_name: t, events: [insert], callback_url: 'http://h/b', ordering: table, headers: {X-Team: blue}}
";

    #[test]
    fn worker_count_is_shared_out_as_lanes_and_every_place_exists() {
        // 16 requests over 2 shards and 2 tasks: 4 lanes per task per shard, but
        // one for the task ordered by table.
        let p = plan(16, 2, TWO_TASKS);
        assert_eq!((p.tasks[0].lanes, p.tasks[1].lanes), (4, 1));
        // Fewer workers than tasks: still one lane each.
        assert_eq!(plan(1, 2, TWO_TASKS).tasks[0].lanes, 1);
        for key in [0u64, 1, 7, u64::MAX] {
            assert!(p.shard_of(0, key) < p.shards && p.lane_of(0, key) < p.tasks[0].lanes);
            assert_eq!(
                p.shard_of(1, key),
                p.shard_of(1, 0),
                "table order: one shard"
            );
            assert_eq!(p.lane_of(1, key), 0);
        }
        // The request head carries the task's own headers after rowhook's.
        let head = String::from_utf8(p.tasks[1].head.clone()).unwrap();
        assert!(
            head.starts_with("POST /b HTTP/1.1\r\nHost: h\r\n"),
            "{head}"
        );
        assert!(head.contains("X-Team: blue\r\n"), "{head}");
    }
}
