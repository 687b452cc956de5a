//! `runtime:` and `state:` — threads and cores, and where durable state lives.

use std::path::PathBuf;
use std::time::Duration;

use super::fields::Fields;

/// Threads and cores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Delivery shards (one pinned thread each); `None` = cores − 1, at least 1;
    /// 0 = delivery as a task on the source core.
    pub shards: Option<u32>,
    /// Pin threads to cores.
    pub pin: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shards: None,
            pin: true,
        }
    }
}

impl RuntimeConfig {
    pub(crate) fn read(f: &mut Fields<'_, '_>) -> Self {
        // 1024 is far beyond any core count a single source can feed; it catches typos.
        // 0 runs delivery on the source core.
        let shards = f.int("shards", 0, 1024).map(|n| n as u32);
        let pin = f.bool("pin", true);
        RuntimeConfig { shards, pin }
    }

    /// The number of delivery shards to start on a machine with `cores` cores.
    pub fn shard_count(&self, cores: usize) -> u32 {
        self.shards
            .unwrap_or_else(|| (cores.saturating_sub(1)).max(1) as u32)
    }
}

/// Durable state: checkpoint and dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// Directory for `checkpoint.json` and `dlq/`.
    pub dir: PathBuf,
    /// How often the delivered position is made durable.
    pub checkpoint_interval: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("./state"),
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

impl StateConfig {
    pub(crate) fn read(f: &mut Fields<'_, '_>) -> Self {
        let d = StateConfig::default();
        let dir = match f.string("dir") {
            Some(s) if s.trim().is_empty() => {
                f.problem("dir", "must not be empty (default ./state)");
                d.dir
            }
            Some(s) => PathBuf::from(s),
            None => d.dir,
        };
        let checkpoint_interval = f.duration("checkpoint_interval", d.checkpoint_interval, false);
        StateConfig {
            dir,
            checkpoint_interval,
        }
    }
}
