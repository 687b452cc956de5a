//! `dispatcher:` and `monitor:` — how webhooks are sent, retried and bounded.

use std::time::Duration;

use super::fields::Fields;

/// Delivery settings shared by every task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Upper bound of concurrent in-flight webhook requests, all shards together.
    pub worker_count: u32,
    /// Events buffered between the binlog reader and delivery.
    pub queue_size: u32,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries after the first attempt before dead-lettering; `None` retries forever.
    pub max_retries: Option<u32>,
    /// First retry delay; doubles each retry (with jitter) up to `retry_max_delay`.
    pub retry_base_delay: Duration,
    /// Cap of the retry backoff.
    pub retry_max_delay: Duration,
    /// Keep-alive connections per callback host, all shards together.
    pub max_connections: u32,
    /// Events read but not yet acknowledged; reading pauses at this bound.
    pub max_inflight: u32,
    /// Extra CA certificates (PEM) trusted for https callbacks, beside the public roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            worker_count: 5,
            queue_size: 100,
            timeout: Duration::from_secs(30),
            max_retries: Some(3),
            retry_base_delay: Duration::from_secs(10),
            retry_max_delay: Duration::from_secs(300),
            max_connections: 100,
            max_inflight: 10_000,
            ca_file: None,
        }
    }
}

impl DispatcherConfig {
    pub(crate) fn read(f: &mut Fields<'_, '_>) -> Self {
        let d = DispatcherConfig::default();
        let worker_count = f.count("worker_count", d.worker_count.into()) as u32;
        let queue_size = f.count("queue_size", d.queue_size.into()) as u32;
        let timeout = f.duration("timeout", d.timeout, false);
        let max_retries = match f.int("max_retries", -1, i64::from(u32::MAX)) {
            Some(-1) => None,
            Some(n) => Some(n as u32),
            None => d.max_retries,
        };
        let retry_base_delay = f.duration("retry_base_delay", d.retry_base_delay, false);
        if retry_base_delay < Duration::from_secs(1) {
            f.warn(
                "retry_base_delay",
                format!("{retry_base_delay:?} is very short; a struggling receiver gets little time to recover"),
            );
        }
        let retry_max_delay = f.duration("retry_max_delay", d.retry_max_delay, false);
        if retry_max_delay < retry_base_delay {
            f.problem(
                "retry_max_delay",
                format!("{retry_max_delay:?} is below retry_base_delay ({retry_base_delay:?}); raise it or lower retry_base_delay"),
            );
        }
        let max_connections = f.count("max_connections", d.max_connections.into()) as u32;
        let max_inflight = f.count("max_inflight", d.max_inflight.into()) as u32;
        let ca_file = f.string("ca_file").map(std::path::PathBuf::from);
        DispatcherConfig {
            worker_count,
            queue_size,
            timeout,
            max_retries,
            retry_base_delay,
            retry_max_delay,
            max_connections,
            max_inflight,
            ca_file,
        }
    }
}

/// pikachu's `monitor:` section, kept so its configs load; rowhook folds it into
/// the in-flight bound instead of an extra queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonitorConfig {
    /// pikachu's event queue length.
    pub event_queue_size: Option<u32>,
    /// pikachu's enqueue timeout (rowhook never drops on a full queue; it waits).
    pub event_queue_timeout: Option<Duration>,
    /// `/health` warns when the binlog the checkpoint needs is purged by the
    /// server's expiry within this long (0: never warns).
    pub binlog_retention_warning: Duration,
}

impl MonitorConfig {
    pub(crate) fn read(f: &mut Fields<'_, '_>) -> Self {
        let event_queue_size = f
            .int("event_queue_size", 1, i64::from(u32::MAX))
            .map(|n| n as u32);
        let event_queue_timeout = f
            .raw("event_queue_timeout")
            .is_some()
            .then(|| f.duration("event_queue_timeout", Duration::ZERO, false));
        let binlog_retention_warning =
            f.duration("binlog_retention_warning", Duration::from_secs(3600), true);
        MonitorConfig {
            event_queue_size,
            event_queue_timeout,
            binlog_retention_warning,
        }
    }
}
