//! What the running instance knows about itself, for the progress line and the
//! admin server: latency histograms per stage of the data path, recorded by the
//! thread that sees the stage (each into its own slot, so the locks are
//! uncontended except while a scrape copies them), and the source core's
//! [`Progress`]: positions, link state and in-flight counts, written by the
//! dispatcher and the ledger on that core.

use std::cell::{Cell, RefCell};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::mysql::replica::BinlogPosition;

use hdrhistogram::Histogram;

/// A stage of the data path whose latency is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Turning one binlog rows event into payloads (source core).
    Decode,
    /// Source core -> shard, per batch of events.
    Handoff,
    /// One HTTP request's round trip (every attempt).
    Http,
    /// Row read off the replication socket -> webhook acknowledged.
    EndToEnd,
}

impl Stage {
    /// Every stage, in report order.
    pub const ALL: [Stage; 4] = [Stage::Decode, Stage::Handoff, Stage::Http, Stage::EndToEnd];

    /// The name used in `/metrics` labels and `/histograms` keys.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Handoff => "handoff",
            Stage::Http => "http",
            Stage::EndToEnd => "end_to_end",
        }
    }
}

/// Highest value recorded, in nanoseconds; larger ones are clamped to it.
const HIGHEST: u64 = 3_600_000_000_000;

/// A histogram of nanoseconds, 1 ns .. 1 h at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds: creation cannot fail.
    Histogram::new_with_bounds(1, HIGHEST, 3).unwrap_or_else(|_| unreachable!())
}

/// One histogram per stage for one thread.
type Slot = [Histogram<u64>; 4];

/// Cumulative (since start) latency histograms, one slot per recording thread.
pub struct Latency {
    slots: Vec<Mutex<Slot>>,
}

impl Latency {
    /// Slots for `threads` recording threads (source core = 0, shard i = i + 1).
    pub fn new(threads: usize) -> Self {
        Latency {
            slots: (0..threads)
                .map(|_| Mutex::new(Stage::ALL.map(|_| new_histogram())))
                .collect(),
        }
    }

    /// Records `nanos` for `stage` in `slot`'s histogram.
    pub fn record(&self, slot: usize, stage: Stage, nanos: u64) {
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        // A poisoned lock only means another thread panicked mid-record; the
        // counts are still usable.
        let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
        s[stage as usize].saturating_record(nanos.clamp(1, HIGHEST));
    }

    /// Records the time since each of `starts` for `stage`, under one lock.
    pub fn record_all_since(
        &self,
        slot: usize,
        stage: Stage,
        starts: impl Iterator<Item = std::time::Instant>,
    ) {
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        let now = std::time::Instant::now();
        let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
        for start in starts {
            let nanos = u64::try_from(now.duration_since(start).as_nanos()).unwrap_or(u64::MAX);
            s[stage as usize].saturating_record(nanos.clamp(1, HIGHEST));
        }
    }

    /// Records the time since `since` for `stage`.
    pub fn record_since(&self, slot: usize, stage: Stage, since: std::time::Instant) {
        self.record_all_since(slot, stage, std::iter::once(since));
    }

    /// All threads' histograms of `stage` merged.
    pub fn merged(&self, stage: Stage) -> Histogram<u64> {
        let mut all = new_histogram();
        for s in &self.slots {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&s[stage as usize]);
        }
        all
    }
}

/// Upper bounds (seconds) of the Prometheus buckets made from the HDR histograms.
pub const BUCKETS: [f64; 18] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// Cumulative counts at each of [`BUCKETS`] (values ≤ the bound), then the total.
pub fn cumulative_buckets(h: &Histogram<u64>) -> (Vec<u64>, u64) {
    let mut counts = vec![0u64; BUCKETS.len()];
    for v in h.iter_recorded() {
        let seconds = h.highest_equivalent(v.value_iterated_to()) as f64 / 1e9;
        // An HDR bucket counts for the first bound at or above its top value, so a
        // bucket straddling a bound is counted as slower, never faster.
        let from = BUCKETS.partition_point(|&b| b < seconds);
        for c in counts.iter_mut().skip(from) {
            *c += v.count_at_value();
        }
    }
    (counts, h.len())
}

/// The histogram as HdrHistogram V2 compressed (deflate) bytes, base64-encoded:
/// the form `HistogramLogReader`s of every HdrHistogram port decode.
pub fn encode_v2(h: &Histogram<u64>) -> Result<String, String> {
    use base64::Engine as _;
    let mut bytes = Vec::new();
    use hdrhistogram::serialization::Serializer as _;
    hdrhistogram::serialization::V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| format!("{e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_end_at_the_total() {
        let mut h = new_histogram();
        for us in [10u64, 40, 90, 900, 3_000, 2_000_000] {
            h.record(us * 1000).unwrap();
        }
        let (counts, total) = cumulative_buckets(&h);
        assert_eq!(total, 6);
        // ≤ 25 µs: 10; ≤ 50 µs: +40; ≤ 100 µs: +90; ≤ 1 ms: +900; ≤ 5 ms: +3000.
        assert_eq!(&counts[..8], &[1, 2, 3, 3, 3, 4, 4, 5]);
        assert_eq!(counts[BUCKETS.len() - 3], 6); // 2 s ≤ 2.5 s
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn merged_histograms_add_every_slot() {
        let l = Latency::new(3);
        l.record(0, Stage::Http, 1_000);
        l.record(2, Stage::Http, 2_000);
        l.record(1, Stage::Decode, 5);
        l.record(9, Stage::Http, 5); // no such slot: ignored
        assert_eq!(l.merged(Stage::Http).len(), 2);
        assert_eq!(l.merged(Stage::Decode).len(), 1);
        assert_eq!(l.merged(Stage::EndToEnd).len(), 0);
    }

    #[test]
    fn v2_encoding_decodes_to_the_same_counts() {
        use base64::Engine as _;
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1_000).unwrap();
        }
        let text = encode_v2(&h).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let back: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .unwrap();
        assert_eq!(back.len(), 1000);
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
    }
}

/// What the source core knows about the stream, for the progress line and the
/// admin server (both on the source core), updated as events pass.
#[derive(Debug)]
pub struct Progress {
    /// Events read and not yet acknowledged.
    pub in_flight: Cell<u64>,
    /// The same, per task (plan order).
    pub task_in_flight: Vec<Cell<u32>>,
    /// Unix time of the newest event read (a heartbeat counts as "now": caught up).
    pub event_time: Cell<u64>,
    /// Binlog events read since start.
    pub binlog_events: Cell<u64>,
    /// A transaction is open in what was read (its commit not read yet).
    pub in_transaction: Cell<bool>,
    /// Set by a graceful stop: reading halts at the next transaction boundary.
    pub stop_at_boundary: Cell<bool>,
    /// The binlog file being read.
    pub read_file: RefCell<String>,
    /// End of the last event read in it (where the next one starts).
    pub read_pos: Cell<u64>,
    /// GTID of the last transaction read, when the server has GTIDs.
    pub gtid: RefCell<Option<String>>,
    /// The position last made durable.
    pub checkpoint: RefCell<Option<BinlogPosition>>,
    /// Whether the replication link is up.
    pub connected: Cell<bool>,
    /// Since when it is up (or down).
    pub link_since: Cell<Instant>,
    /// Reconnections after the first connection.
    pub reconnects: Cell<u64>,
    /// When an event was last acknowledged (or the stream started).
    pub last_ack: Cell<Instant>,
    /// The source server's version string, once connected.
    pub server: RefCell<Option<String>>,
    /// The server's binlog expiry, once connected (`None`: never by age).
    pub binlog_expire: Cell<Option<Duration>>,
    /// Creation times (unix) of binlog files the stream passed, oldest first
    /// (the last 64): when the file before each was rotated away.
    pub file_created: RefCell<std::collections::VecDeque<(String, u32)>>,
    /// Per task: the binlog file of its oldest transaction not yet done
    /// (delivered, dead-lettered or durable in its spool); empty: none.
    pub task_binlog_file: RefCell<Vec<String>>,
}

impl Progress {
    /// Nothing read yet, link down, for `tasks` tasks.
    pub fn new(tasks: usize) -> Self {
        let now = Instant::now();
        Progress {
            in_flight: Cell::new(0),
            task_in_flight: (0..tasks).map(|_| Cell::new(0)).collect(),
            event_time: Cell::new(0),
            binlog_events: Cell::new(0),
            in_transaction: Cell::new(false),
            stop_at_boundary: Cell::new(false),
            read_file: RefCell::new(String::new()),
            read_pos: Cell::new(0),
            gtid: RefCell::new(None),
            checkpoint: RefCell::new(None),
            connected: Cell::new(false),
            link_since: Cell::new(now),
            reconnects: Cell::new(0),
            last_ack: Cell::new(now),
            server: RefCell::new(None),
            binlog_expire: Cell::new(None),
            file_created: RefCell::new(std::collections::VecDeque::new()),
            task_binlog_file: RefCell::new(Vec::new()),
        }
    }

    /// Seconds until the server's expiry may purge the binlog file the
    /// checkpoint needs (negative: it may be gone already), at unix time
    /// `now`. A lower bound: while the stream is still in that file, it counts
    /// as rotated at the newest event read. `None`: no expiry, no checkpoint
    /// yet, or the file's rotation is no longer known.
    pub fn binlog_retention_left(&self, now: u64) -> Option<i64> {
        let needed = self.checkpoint.borrow().as_ref()?.file.clone();
        self.retention_left_of(&needed, now)
    }

    /// [`Progress::binlog_retention_left`] for one task: counted from the file
    /// of its oldest transaction not yet done, or from the file being read when
    /// it has none — which task holds the binlog back.
    pub fn task_retention_left(&self, task: usize, now: u64) -> Option<i64> {
        let needed = match self.task_binlog_file.borrow().get(task) {
            Some(f) if !f.is_empty() => f.clone(),
            _ => self.read_file.borrow().clone(),
        };
        if needed.is_empty() {
            return None;
        }
        self.retention_left_of(&needed, now)
    }

    fn retention_left_of(&self, needed: &str, now: u64) -> Option<i64> {
        let expire = self.binlog_expire.get()?;
        let rotated = if *self.read_file.borrow() == needed {
            match self.event_time.get() {
                0 => now,
                t => t.min(now),
            }
        } else {
            let created = self.file_created.borrow();
            // The file after the needed one was created when it was rotated.
            let number = |f: &str| f.rsplit('.').next()?.parse::<u64>().ok();
            let next = number(needed)? + 1;
            u64::from(
                created
                    .iter()
                    .find(|(f, _)| {
                        f.starts_with(needed.rsplit_once('.').map_or("", |(b, _)| b))
                            && number(f) == Some(next)
                    })?
                    .1,
            )
        };
        let left = rotated as i64 + expire.as_secs() as i64 - now as i64;
        Some(left)
    }

    /// Seconds the newest event read is behind the clock, when known.
    pub fn lag_seconds(&self) -> Option<u64> {
        let seen = self.event_time.get();
        (seen > 0).then(|| crate::delivery::unix_now().saturating_sub(seen))
    }

    /// One binlog event of `file` was read, ending at `end`.
    pub fn read(&self, file: &str, end: u64) {
        self.binlog_events.set(self.binlog_events.get() + 1);
        self.read_pos.set(end);
        if *self.read_file.borrow() != file {
            *self.read_file.borrow_mut() = file.to_owned();
        }
    }
}
