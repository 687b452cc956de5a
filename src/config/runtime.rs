//! `runtime:` and `state:` — threads and cores, and where durable state lives.

use std::path::PathBuf;
use std::time::Duration;

use super::fields::Fields;

/// Threads and cores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Delivery shards (one pinned thread each); `None` = by core count (0 on two
    /// cores or fewer, else cores − 1); 0 = delivery as a task on the source core.
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
    /// Unset: on two cores or fewer, 0 — delivery on the source core, which there
    /// costs about 60 % of the CPU per event of a second thread and has the
    /// lower tail and the higher one-per-event ceiling (bench report
    /// full-2026-11-30a); above, one per core beside the source core.
    pub fn shard_count(&self, cores: usize) -> u32 {
        self.shards
            .unwrap_or(if cores <= 2 { 0 } else { (cores - 1) as u32 })
    }

    /// The CPUs this process may run on (its affinity mask), in order: the
    /// source core takes the first, shards the following ones.
    pub fn usable_cpus() -> Vec<usize> {
        core_affinity::get_core_ids()
            .map(|ids| ids.into_iter().map(|c| c.id).collect())
            .filter(|ids: &Vec<usize>| !ids.is_empty())
            .unwrap_or_else(|| {
                (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_default_by_core_count() {
        let unset = RuntimeConfig::default();
        assert_eq!([1, 2, 3, 8].map(|c| unset.shard_count(c)), [0, 0, 2, 7]);
        let set = RuntimeConfig {
            shards: Some(1),
            pin: true,
        };
        assert_eq!(set.shard_count(2), 1);
    }
}
