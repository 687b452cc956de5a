//! A task's disk spool, between the dispatcher and the shards: when a task's
//! share of `max_inflight` is full (its receiver is down, slow or the task is
//! paused), its events go to `state.dir/spool/<task_id>/` instead of pausing
//! the binlog for every task. Once anything is spooled, all of the task's later
//! events go behind it, and the dispatcher feeds the shards from the spool's
//! head as the task's in-flight count falls, so per-key order holds across
//! memory and disk.
//!
//! Files: segments `<first seq, 20 digits>.seg` of [`record`]s, appended in
//! sequence order, and `head` (the oldest sequence not yet acknowledged, written
//! now and then; a stale head repeats deliveries, never loses them). A spooled
//! event counts as done for the checkpoint only once its segment is fsynced
//! (group commit every `fsync_interval`), so the binlog position can move past
//! it while it waits on disk.
//!
//! Everything here runs on the source core. Appends and reads are plain
//! `write`/`read` calls that reach the page cache; fsyncs run on glommio's
//! blocking pool.

pub mod record;

use std::cell::Cell;
use std::collections::{BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{SpoolConfig, SpoolFull};
use record::{Decoded, Record};

/// How long after a failed write or open the spool tries again.
const RETRY: Duration = Duration::from_secs(1);
/// How often the head file is rewritten while it moves.
const SAVE_HEAD_EVERY: Duration = Duration::from_millis(200);
/// Bytes read from a segment at a time.
const READ_CHUNK: usize = 256 << 10;
/// While nothing reads the spool back soon (the task's share is full), records
/// are written in batches of this many bytes, or after [`WRITE_WITHIN`]: one
/// `write` per loop pass cost a syscall per event at 10k rows/s.
const WRITE_BATCH: usize = 256 << 10;
/// How long a record may wait in memory for its batch (and never longer than
/// `fsync_interval`).
const WRITE_WITHIN: Duration = Duration::from_millis(10);
/// How often the free space of the spool's file system is read (between
/// reads, the bytes written since count against it).
const DISK_CHECK_EVERY: Duration = Duration::from_millis(500);
/// At most this many records after the checkpoint are matched at a restart
/// (8 bytes each); the events past them are spooled again, as duplicates.
const MAX_EXPECTED: usize = 1 << 20;

/// The spool directory of `task` under `state.dir/spool`.
pub fn dir_for(root: &Path, task: &str) -> PathBuf {
    let name = crate::delivery::dlq::safe_name(task);
    // Not the directory itself or its parent.
    if name.chars().all(|c| c == '.') {
        return root.join(name.replace('.', "_"));
    }
    root.join(name)
}

/// One spooled delivery read back for sending.
pub struct Fed {
    /// Its sequence number (acks name it).
    pub seq: u64,
    /// An update that changed its row's key.
    pub key_change: bool,
    /// Row changes it carries.
    pub weight: u32,
    /// The routing hash.
    pub key: u64,
    /// Length of the id at the start of `body`.
    pub id_len: u16,
    /// The webhook body.
    pub body: Bytes,
}

/// What a task's spool shows to `/tasks`, `/metrics` and `/health`.
#[derive(Debug, Clone, Default)]
pub struct SpoolStatus {
    /// Bytes of segments on disk.
    pub bytes: u64,
    /// Records not yet acknowledged.
    pub records: u64,
    /// Unix milliseconds when the oldest of them was spooled (0: none).
    pub oldest_ms: u64,
    /// At `max_bytes`, or its file system below `min_disk_free`.
    pub full: bool,
    /// Free bytes on the spool's file system at the last look (`None`: not
    /// read yet, or it cannot be).
    pub disk_free: Option<u64>,
    /// Below `min_disk_free`: the spool takes no more events.
    pub disk_low: bool,
    /// It takes no events now (an error, the disk floor, or full under
    /// `on_full: block`).
    pub blocked: bool,
    /// The last write, sync or open error, while it persists.
    pub error: Option<String>,
}

/// Why a spool directory could not be loaded.
enum Scan {
    /// It cannot be listed (not a directory, no permission): may clear.
    Unreadable(std::io::Error),
    /// A segment is damaged or missing: needs an operator.
    Damaged(std::io::Error),
}

struct Segment {
    first: u64,
    path: PathBuf,
    bytes: u64,
    /// When its newest record was spooled (unix ms): retention counts from it.
    last_ms: u64,
}

struct Reader {
    /// The segment being read (its first sequence).
    segment: u64,
    file: File,
    /// Read bytes are `buf[at..end]`; the rest is room, zeroed once when it
    /// grows (a reader following a live spool fills on every pass, and zeroing
    /// the chunk each time cost more than the read).
    buf: Vec<u8>,
    at: usize,
    end: usize,
    /// The sequence of the next record in `buf[at..end]`.
    next: u64,
}

impl Reader {
    fn new(segment: u64, file: File) -> Reader {
        Reader {
            segment,
            file,
            buf: Vec::new(),
            at: 0,
            end: 0,
            next: segment,
        }
    }

    /// The bytes read and not yet taken.
    fn unread(&self) -> &[u8] {
        self.buf.get(self.at..self.end).unwrap_or_default()
    }

    /// Keeps the unread bytes and reads up to [`READ_CHUNK`] more after them;
    /// returns how many (0: the segment's end).
    fn fill(&mut self) -> std::io::Result<usize> {
        self.buf.copy_within(self.at..self.end, 0);
        self.end -= self.at;
        self.at = 0;
        if self.buf.len() < self.end + READ_CHUNK {
            self.buf.resize(self.end + READ_CHUNK, 0);
        }
        let n = self
            .file
            .read(&mut self.buf[self.end..self.end + READ_CHUNK])?;
        self.end += n;
        Ok(n)
    }
}

/// A sync running on the blocking pool: up to which sequence it makes durable.
struct Syncing {
    upto: u64,
    done: Rc<Cell<Option<Result<(), String>>>>,
}

/// One task's spool.
pub struct Spool {
    task: std::sync::Arc<str>,
    dir: PathBuf,
    config: SpoolConfig,
    /// Dead letters of `on_full: dead_letter` go here.
    dlq_dir: PathBuf,
    /// The task's URL, named in those dead letters.
    url: String,
    segment_max: u64,
    segments: VecDeque<Segment>,
    /// Append handle of the last segment.
    file: Option<File>,
    /// Encoded records not yet written (sequences `written..next_seq`).
    buf: Vec<u8>,
    /// When the oldest of them was appended.
    buf_since: Option<Instant>,
    next_seq: u64,
    /// Sequences below this are in the files.
    written: u64,
    /// Sequences below this are durable.
    synced: u64,
    syncing: Option<Syncing>,
    last_sync: Instant,
    /// A segment was created since the last sync: its directory entry needs one.
    dir_dirty: bool,
    /// Transaction ordinals of spooled records waiting for their sync, with the
    /// sequence just past them, oldest first (the ledger counts them done then).
    waiting: VecDeque<(u64, u64)>,
    /// Dead-letter lines of a full `on_full: dead_letter` spool, with their
    /// transaction ordinals.
    dead: Vec<u8>,
    dead_txns: Vec<u64>,
    dead_count: usize,
    reader: Option<Reader>,
    /// The next sequence to feed.
    read: u64,
    /// The oldest sequence not acknowledged.
    head: u64,
    /// Acknowledged sequences above the head.
    acked: BTreeSet<u64>,
    /// (sequence, spooled ms) of a record about every second of spooling,
    /// oldest first: the oldest record's age to within a second, in bounded
    /// memory.
    marks: VecDeque<(u64, u64)>,
    /// The directory could not be read at open: read it again before the
    /// first write (a previous run's records would be numbered over).
    rescan: bool,
    saved_head: u64,
    saved_at: Instant,
    error: Option<String>,
    /// The spool on disk is damaged: only an operator clears this.
    fatal: bool,
    retry_at: Instant,
    /// Free bytes of the file system at the last look, and when.
    disk_free: Option<u64>,
    disk_checked: Option<Instant>,
    /// Bytes written since that look.
    written_since_check: u64,
    /// Fingerprints of the records a previous run spooled after its last
    /// checkpoint, in order from sequence `expected_from`: the events read
    /// again now that match them are not spooled twice.
    expected: VecDeque<u64>,
    expected_from: u64,
}

impl Spool {
    /// Opens (or starts) the spool in `dir`: finds its segments, cuts a torn
    /// last record, and reads the head. Nothing is created until the first
    /// record, so a read-only or missing directory is an error only then.
    pub fn open(dir: PathBuf, task: &str, config: SpoolConfig, dlq_dir: PathBuf) -> Spool {
        let now = Instant::now();
        let mut spool = Spool {
            task: task.into(),
            segment_max: (config.max_bytes / 8).clamp(64 << 10, 64 << 20),
            config,
            dlq_dir,
            url: String::new(),
            segments: VecDeque::new(),
            file: None,
            buf: Vec::new(),
            buf_since: None,
            next_seq: 1,
            written: 1,
            synced: 1,
            syncing: None,
            last_sync: now,
            dir_dirty: false,
            waiting: VecDeque::new(),
            dead: Vec::new(),
            dead_txns: Vec::new(),
            dead_count: 0,
            reader: None,
            read: 1,
            head: 1,
            acked: BTreeSet::new(),
            marks: VecDeque::new(),
            rescan: false,
            saved_head: 1,
            saved_at: now,
            error: None,
            fatal: false,
            retry_at: now,
            disk_free: None,
            disk_checked: None,
            written_since_check: 0,
            expected: VecDeque::new(),
            expected_from: 0,
            dir,
        };
        match spool.scan() {
            Ok(()) => {}
            Err(Scan::Unreadable(e)) => {
                spool.rescan = true;
                spool.fail(format!("cannot open spool {}: {e}", spool.dir.display()));
            }
            Err(Scan::Damaged(e)) => {
                spool.fatal = true;
                spool.fail(format!("cannot read spool {}: {e}", spool.dir.display()));
            }
        }
        spool
    }

    /// Reads what a previous run left: segments, torn tail, head.
    fn scan(&mut self) -> Result<(), Scan> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Scan::Unreadable(e)),
        };
        self.load(entries).map_err(Scan::Damaged)
    }

    fn load(&mut self, entries: std::fs::ReadDir) -> std::io::Result<()> {
        let found = segment_files(entries)?;
        let last = found.len().saturating_sub(1);
        let mut expected = None;
        for (i, (first, path)) in found.into_iter().enumerate() {
            let data = std::fs::read(&path)?;
            let (whole, count) = record::whole_prefix(&data);
            if self.marks.is_empty() {
                if let Decoded::Record(r, _) = record::decode(&data) {
                    // Refined to the head's own record below.
                    self.marks.push_back((first, r.spooled_ms));
                }
            }
            if whole < data.len() {
                if i != last {
                    // Only the last segment is written to; a bad record in an
                    // earlier one is damage, not a crash.
                    return Err(std::io::Error::other(format!(
                        "{} is damaged at byte {whole} (records after it cannot be read); move the spool aside to start without it",
                        path.display()
                    )));
                }
                tracing::warn!(task = %self.task, file = %path.display(), kept = whole, cut = data.len() - whole, "spool: cutting a torn last record (it was never counted as done; the binlog sends it again)");
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(whole as u64)?;
                f.sync_all()?;
            }
            if expected.is_some_and(|e| e != first) {
                return Err(std::io::Error::other(format!(
                    "{} does not continue the segment before it (expected it to start at record {})",
                    path.display(),
                    expected.unwrap_or_default()
                )));
            }
            expected = Some(first + count);
            let mut last_ms = 0;
            let mut at = 0;
            while let Decoded::Record(r, len) = record::decode(&data[at..whole]) {
                last_ms = r.spooled_ms;
                at += len;
            }
            self.segments.push_back(Segment {
                first,
                path,
                bytes: whole as u64,
                last_ms,
            });
        }
        let saved = std::fs::read_to_string(self.dir.join("head"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok());
        let (Some(first), Some(end)) = (self.segments.front().map(|s| s.first), expected) else {
            // Every segment was delivered and deleted: number on from the saved
            // head. Starting again at 1 under a head file of, say, 5000 would
            // make the next start take records 1..5000 for delivered.
            let head = saved.unwrap_or(1).max(1);
            self.set_counters(head, head);
            return Ok(());
        };
        let head = saved.unwrap_or(first).clamp(first, end);
        self.mark_head(head);
        self.set_counters(head, end);
        if end > head {
            tracing::info!(task = %self.task, records = end - head, dir = %self.dir.display(), "spool: resuming with records not yet delivered");
        }
        Ok(())
    }

    /// After a load: records before `head` are delivered, those up to `end`
    /// are on disk (written and synced) and not yet read.
    fn set_counters(&mut self, head: u64, end: u64) {
        self.next_seq = end;
        self.written = end;
        self.synced = end;
        self.head = head;
        self.read = head;
        self.saved_head = head;
    }

    /// The task it belongs to.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// The task it belongs to, shared (the ledger's spool marks).
    pub fn name(&self) -> &std::sync::Arc<str> {
        &self.task
    }

    /// The sequence the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// At start: the checkpoint says records up to `through` belong to
    /// transactions before it, so the records after it are events the binlog
    /// sends again. Keeps their fingerprints for [`Spool::known`]. Only a run
    /// on disk starting right after `through` is kept: were some of them
    /// deleted (delivered), the events read again before the first record
    /// left would be spooled behind the later ones, out of order.
    pub fn expect_after(&mut self, through: u64) {
        self.expected.clear();
        let Some(first) = self.segments.front().map(|s| s.first) else {
            return;
        };
        let from = through.saturating_add(1);
        if self.fatal || self.error.is_some() || from >= self.next_seq {
            return;
        }
        if from < first {
            tracing::info!(task = %self.task, checkpoint_through = through, first_on_disk = first, "spool: records after the checkpoint were delivered and deleted; the events read again are spooled again (duplicates)");
            return;
        }
        if let Err(e) = self.read_expected(from) {
            self.expected.clear();
            tracing::warn!(task = %self.task, error = %e, "spool: cannot read the records after the checkpoint; the events read again are spooled again (duplicates)");
            return;
        }
        self.expected_from = from;
        if !self.expected.is_empty() {
            tracing::info!(task = %self.task, records = self.expected.len(), from, "spool: records after the checkpoint are in the spool already; the events read again are matched to them, not spooled twice");
        }
    }

    fn read_expected(&mut self, from: u64) -> std::io::Result<()> {
        let segments: Vec<(u64, PathBuf)> = self
            .segments
            .iter()
            .zip(
                self.segments
                    .iter()
                    .skip(1)
                    .map(|s| s.first)
                    .chain([u64::MAX]),
            )
            .filter(|(_, next)| *next > from)
            .map(|(s, _)| (s.first, s.path.clone()))
            .collect();
        for (first, path) in segments {
            let file = File::open(&path)?;
            // They count as done once matched: make sure they are on disk,
            // not only in the page cache a kill -9 leaves behind.
            file.sync_all()?;
            let mut data = Vec::new();
            (&file).read_to_end(&mut data)?;
            let (mut at, mut seq) = (0, first);
            while let Decoded::Record(r, len) = record::decode(&data[at..]) {
                if seq >= from {
                    if self.expected.len() >= MAX_EXPECTED {
                        return Ok(());
                    }
                    self.expected.push_back(r.fingerprint());
                }
                at += len;
                seq += 1;
            }
        }
        Ok(())
    }

    /// Whether `r` is the next record a previous run spooled after its last
    /// checkpoint (then its sequence; the caller spools nothing). The first
    /// event that differs ends the matching for good: everything from it on
    /// is spooled again, so nothing goes out of order.
    pub fn known(&mut self, r: &Record<'_>) -> Option<u64> {
        let &fingerprint = self.expected.front()?;
        let seq = self.expected_from;
        if r.fingerprint() == fingerprint {
            self.expected.pop_front();
            self.expected_from += 1;
            return Some(seq);
        }
        tracing::warn!(task = %self.task, record = seq, left = self.expected.len(), "spool: an event read again differs from the spool's record after the checkpoint; it and the events after it are spooled again (duplicates, nothing lost)");
        self.expected.clear();
        None
    }

    /// Takes a changed `spool:` or URL of its task (a live task change).
    pub fn reconfigure(&mut self, config: &SpoolConfig, url: &str) {
        if self.config != *config {
            self.config = config.clone();
        }
        if self.url != url {
            url.clone_into(&mut self.url);
        }
    }

    /// Sets the age mark to the record at `head` (at start).
    fn mark_head(&mut self, head: u64) {
        let Some(segment) = self.segments.iter().rev().find(|s| s.first <= head) else {
            return;
        };
        let Ok(data) = std::fs::read(&segment.path) else {
            return;
        };
        let (mut at, mut seq) = (0, segment.first);
        while let Decoded::Record(r, len) = record::decode(&data[at..]) {
            if seq == head {
                self.marks.clear();
                self.marks.push_back((head, r.spooled_ms));
                return;
            }
            at += len;
            seq += 1;
        }
    }

    /// Whether records wait in the spool: the task's next event must go behind
    /// them.
    pub fn holds(&self) -> bool {
        self.read < self.next_seq
    }

    /// Whether the spool cannot take events now (an error, or full under
    /// `on_full: block`): reading must pause for this task.
    pub fn blocked(&self) -> bool {
        self.error.is_some()
            || self.disk_low()
            || (self.over_max() && self.config.on_full == SpoolFull::Block)
    }

    fn full(&self) -> bool {
        self.over_max() || self.disk_low()
    }

    fn over_max(&self) -> bool {
        self.bytes() >= self.config.max_bytes
    }

    /// Its file system has less free than `min_disk_free` (counting what was
    /// written since the last look).
    fn disk_low(&self) -> bool {
        self.config.min_disk_free > 0
            && self.disk_free.is_some_and(|free| {
                free.saturating_sub(self.written_since_check) < self.config.min_disk_free
            })
    }

    /// Reads the free space of the spool's file system when it is due.
    fn check_disk(&mut self, now: Instant) {
        if self.config.min_disk_free == 0
            || self
                .disk_checked
                .is_some_and(|at| now.duration_since(at) < DISK_CHECK_EVERY)
        {
            return;
        }
        let was_low = self.disk_low();
        self.disk_checked = Some(now);
        self.disk_free = free_bytes(&self.dir);
        self.written_since_check = 0;
        let low = self.disk_low();
        if low && !was_low {
            tracing::warn!(task = %self.task, dir = %self.dir.display(), free = self.disk_free.unwrap_or_default(), min_disk_free = self.config.min_disk_free, "spool: free disk space below spool.min_disk_free; the task's spool takes no more events until it rises");
        } else if was_low && !low {
            tracing::info!(task = %self.task, free = self.disk_free.unwrap_or_default(), "spool: free disk space above spool.min_disk_free again");
        }
    }

    fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum::<u64>() + self.buf.len() as u64
    }

    /// Appends delivery `r` of transaction `txn`. Returns whether the ledger
    /// must count one more outstanding event of `txn` (the first record of a
    /// run of `txn`, or a dead letter), which [`Spool::synced`] gives back once
    /// durable. A full `on_full: dead_letter` spool writes the delivery to the
    /// dead-letter file instead.
    pub fn append(&mut self, txn: u64, r: &Record<'_>) -> bool {
        if self.over_max() && !self.disk_low() && self.config.on_full == SpoolFull::DeadLetter {
            let id = r
                .body
                .get(crate::delivery::ID_AT..crate::delivery::ID_AT + usize::from(r.id_len))
                .unwrap_or_default();
            self.dead.extend_from_slice(
                &crate::delivery::dlq::DeadLetter {
                    task: &self.task,
                    url: &self.url,
                    id,
                    attempts: 0,
                    status: None,
                    error: "spool full (spool.on_full: dead_letter)",
                    payload: r.body,
                }
                .to_line(),
            );
            self.dead_txns.push(txn);
            self.dead_count += 1;
            return true;
        }
        if self.head == self.next_seq {
            self.marks.clear();
        }
        if self
            .marks
            .back()
            .is_none_or(|(_, ms)| r.spooled_ms >= ms + 1000)
            || self.head == self.next_seq
        {
            self.marks.push_back((self.next_seq, r.spooled_ms));
        }
        if self.buf.is_empty() {
            self.buf_since = Some(Instant::now());
        }
        r.encode(&mut self.buf);
        self.next_seq += 1;
        match self.waiting.back_mut() {
            Some((t, end)) if *t == txn => {
                *end = self.next_seq;
                false
            }
            _ => {
                self.waiting.push_back((txn, self.next_seq));
                true
            }
        }
    }

    /// Writes buffered records when they are wanted soon (`eager`: the task
    /// can send now, so they will be read back at once) or their batch is due.
    pub fn write_due(&mut self, now: Instant, eager: bool) {
        let due = eager
            || self.buf.len() >= WRITE_BATCH
            || self.buf_since.is_some_and(|since| {
                now.duration_since(since) >= WRITE_WITHIN.min(self.config.fsync_interval)
            });
        if due {
            self.write(now);
        } else {
            self.check_disk(now);
        }
    }

    /// Writes buffered records to the segment files (a `write` per call, to the
    /// page cache). A failed write is cut back off and kept for the next try.
    pub fn write(&mut self, now: Instant) {
        self.check_disk(now);
        if self.buf.is_empty() || self.fatal || (self.error.is_some() && now < self.retry_at) {
            return;
        }
        match self.write_buffered() {
            Ok(()) => {
                if self.error.take().is_some() {
                    tracing::info!(task = %self.task, "spool writable again");
                }
            }
            Err(e) => {
                self.fail(format!("cannot write spool {}: {e}", self.dir.display()));
                self.retry_at = now + RETRY;
            }
        }
    }

    fn write_buffered(&mut self) -> std::io::Result<()> {
        if self.rescan {
            self.renumber_after_rescan()?;
        }
        let mut at = 0;
        while at < self.buf.len() {
            let room_left = self
                .segments
                .back()
                .is_some_and(|s| s.bytes < self.segment_max)
                && self.file.is_some();
            if !room_left {
                self.roll()?;
            }
            let (Some(file), Some(segment)) = (self.file.as_mut(), self.segments.back_mut()) else {
                return Err(std::io::Error::other("no open segment"));
            };
            // Whole records up to the segment's size (at least one).
            let mut end = at;
            let mut count = 0u64;
            let mut last_ms = segment.last_ms;
            while let Decoded::Record(r, len) = record::decode(&self.buf[end..]) {
                if count > 0 && segment.bytes + (end - at + len) as u64 > self.segment_max {
                    break;
                }
                last_ms = r.spooled_ms;
                end += len;
                count += 1;
            }
            if let Err(e) = file.write_all(&self.buf[at..end]) {
                // Leave no fragment for the next record to glue onto (and no
                // reader holding one in its buffer).
                let _ = file.set_len(segment.bytes);
                let _ = file.seek(SeekFrom::Start(segment.bytes));
                self.reader = None;
                self.buf.drain(..at);
                return Err(e);
            }
            segment.bytes += (end - at) as u64;
            self.written_since_check += (end - at) as u64;
            segment.last_ms = last_ms;
            self.written += count;
            at = end;
        }
        self.buf.clear();
        self.buf_since = None;
        Ok(())
    }

    /// The directory was unreadable at open and records were numbered from 1
    /// meanwhile: read what is there now and number them after it.
    fn renumber_after_rescan(&mut self) -> std::io::Result<()> {
        let pending = self.next_seq - self.written;
        let waiting = std::mem::take(&mut self.waiting);
        let marks = std::mem::take(&mut self.marks);
        let from = self.written;
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                if let Err(e) = self.load(entries) {
                    self.fatal = true;
                    return Err(e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.rescan = false;
        // `load` set next_seq/written/synced/head/read to what is on disk (or
        // left them at 1); the buffered records follow.
        let base = self.written;
        let shift = base - from;
        self.next_seq = base + pending;
        self.waiting = waiting
            .into_iter()
            .map(|(txn, end)| (txn, end + shift))
            .collect();
        self.marks
            .extend(marks.into_iter().map(|(s, ms)| (s + shift, ms)));
        Ok(())
    }

    /// Closes the current segment (durably) and starts the next.
    fn roll(&mut self) -> std::io::Result<()> {
        if let Some(old) = self.file.take() {
            old.sync_data()?;
            self.synced = self.written;
        }
        std::fs::create_dir_all(&self.dir)?;
        if self
            .segments
            .back()
            .is_some_and(|s| s.first == self.written)
        {
            // An empty last segment (its only record was torn): reuse its name.
            self.segments.pop_back();
        }
        let path = self.dir.join(format!("{:020}.seg", self.written));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let bytes = file.metadata()?.len();
        if bytes > 0 {
            // A segment named for this sequence exists (a spool emptied and
            // deleted up to here, then a crash): it holds nothing readable now.
            file.set_len(0)?;
        }
        self.segments.push_back(Segment {
            first: self.written,
            path,
            bytes: 0,
            last_ms: 0,
        });
        self.file = Some(file);
        self.dir_dirty = true;
        Ok(())
    }

    /// Writes and fsyncs everything buffered now, on this thread (a graceful
    /// stop: the checkpoint written next can pass it).
    pub fn settle(&mut self, now: Instant) {
        self.write(now);
        if self.written == self.synced || self.error.is_some() {
            return;
        }
        if let Some(file) = &self.file {
            let dir_synced =
                !self.dir_dirty || File::open(&self.dir).and_then(|d| d.sync_all()).is_ok();
            if dir_synced && file.sync_data().is_ok() {
                self.dir_dirty = false;
                self.synced = self.written;
            }
        }
    }

    /// Starts a group sync when records wait for one and `fsync_interval` has
    /// passed since the last.
    pub fn maybe_sync(&mut self, now: Instant) {
        if self.syncing.is_some()
            || self.written == self.synced
            || now.duration_since(self.last_sync) < self.config.fsync_interval
        {
            return;
        }
        let Some(file) = self.file.as_ref().and_then(|f| f.try_clone().ok()) else {
            return;
        };
        let dir = std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone());
        let done = Rc::new(Cell::new(None));
        self.syncing = Some(Syncing {
            upto: self.written,
            done: done.clone(),
        });
        self.last_sync = now;
        glommio::spawn_local(async move {
            let result = glommio::executor()
                .spawn_blocking(move || {
                    file.sync_data()?;
                    if let Some(dir) = dir {
                        File::open(dir)?.sync_all()?;
                    }
                    Ok::<(), std::io::Error>(())
                })
                .await;
            done.set(Some(result.map_err(|e| e.to_string())));
        })
        .detach();
    }

    /// Adds to `out` the transaction ordinals whose spooled records became
    /// durable since the last call (once per run of records) and those of dead
    /// letters written: the ledger counts them done. Returns how many dead
    /// letters were written.
    pub fn synced(&mut self, out: &mut Vec<u64>) -> usize {
        if let Some(result) = self.syncing.as_ref().and_then(|s| s.done.take()) {
            let upto = self.syncing.take().map_or(0, |s| s.upto);
            match result {
                Ok(()) => self.synced = self.synced.max(upto),
                Err(e) => {
                    // The records stay unacknowledged (the checkpoint does not
                    // pass them); the next sync tries again.
                    self.dir_dirty = true;
                    self.fail(format!("cannot fsync spool {}: {e}", self.dir.display()));
                }
            }
        }
        while let Some(&(txn, end)) = self.waiting.front() {
            if end > self.synced {
                break;
            }
            out.push(txn);
            self.waiting.pop_front();
        }
        if self.dead.is_empty() {
            return 0;
        }
        match crate::delivery::dlq::append(&self.dlq_dir, &self.task, &self.dead) {
            Ok(()) => {
                self.dead.clear();
                out.append(&mut self.dead_txns);
                std::mem::take(&mut self.dead_count)
            }
            Err(e) => {
                self.fail(format!(
                    "spool full and cannot write dead letters in {}: {e}",
                    self.dlq_dir.display()
                ));
                0
            }
        }
    }

    /// The next record to send, when it is in the files.
    pub fn read_back(&mut self) -> Option<Fed> {
        if self.read >= self.written {
            return None;
        }
        match self.read_next() {
            Ok(fed) => fed,
            Err(e) => {
                self.reader = None;
                self.fail(format!("cannot read spool {}: {e}", self.dir.display()));
                None
            }
        }
    }

    fn read_next(&mut self) -> std::io::Result<Option<Fed>> {
        loop {
            if self.reader.as_ref().is_none_or(|r| r.next != self.read) {
                self.open_reader()?;
            }
            let Some(r) = self.reader.as_mut() else {
                return Ok(None);
            };
            match record::decode(r.unread()) {
                Decoded::Record(rec, len) => {
                    let fed = Fed {
                        seq: r.next,
                        key_change: rec.key_change,
                        weight: rec.weight,
                        key: rec.key,
                        id_len: rec.id_len,
                        body: Bytes::copy_from_slice(rec.body),
                    };
                    r.at += len;
                    r.next += 1;
                    self.read = r.next;
                    return Ok(Some(fed));
                }
                Decoded::Corrupt(why) => {
                    return Err(std::io::Error::other(format!(
                        "record {} in segment {:020}.seg: {why}",
                        r.next, r.segment
                    )))
                }
                Decoded::NeedMore(_) => {
                    if r.fill()? == 0 {
                        // The end of this segment: the record is in the next.
                        let next = self
                            .segments
                            .iter()
                            .find(|s| s.first > r.segment)
                            .map(|s| s.first);
                        match next {
                            Some(first) if first == r.next => self.reader = None,
                            _ => return Ok(None),
                        }
                    }
                }
            }
        }
    }

    /// Positions a reader at `read`: the segment holding it, skipping the
    /// records before it.
    fn open_reader(&mut self) -> std::io::Result<()> {
        let Some(segment) = self.segments.iter().rev().find(|s| s.first <= self.read) else {
            self.reader = None;
            return Ok(());
        };
        let mut r = Reader::new(segment.first, File::open(&segment.path)?);
        while r.next < self.read {
            match record::decode(r.unread()) {
                Decoded::Record(_, len) => {
                    r.at += len;
                    r.next += 1;
                }
                Decoded::Corrupt(why) => return Err(std::io::Error::other(why)),
                Decoded::NeedMore(_) => {
                    if r.fill()? == 0 {
                        return Err(std::io::Error::other(format!(
                            "segment {:020}.seg ends before record {}",
                            r.segment, self.read
                        )));
                    }
                }
            }
        }
        self.reader = Some(r);
        Ok(())
    }

    /// The receiver acknowledged (or dead-lettered) record `seq`.
    pub fn acked(&mut self, seq: u64) {
        if seq < self.head {
            return;
        }
        self.acked.insert(seq);
        while self.acked.remove(&self.head) {
            self.head += 1;
        }
        while self.marks.get(1).is_some_and(|(s, _)| *s <= self.head) {
            self.marks.pop_front();
        }
    }

    /// Deletes segments wholly below the head (under `retain`, once their
    /// newest record is older than it, or sooner when `max_bytes` needs the
    /// room) and saves the head now and then.
    pub fn tidy(&mut self, now: Instant) {
        let now_ms = unix_ms();
        while self.segments.len() > 1
            && self
                .segments
                .get(1)
                .is_some_and(|next| next.first <= self.head)
            && self.config.retain.is_none_or(|keep| {
                self.segments
                    .front()
                    .is_some_and(|s| now_ms.saturating_sub(s.last_ms) > keep.as_millis() as u64)
                    || self.bytes() > self.config.max_bytes
            })
        {
            if let Some(old) = self.segments.pop_front() {
                if let Err(e) = std::fs::remove_file(&old.path) {
                    tracing::warn!(task = %self.task, file = %old.path.display(), error = %e, "spool: cannot delete a delivered segment");
                }
                if self.reader.as_ref().is_some_and(|r| r.segment == old.first) {
                    self.reader = None;
                }
            }
        }
        // The last segment, all delivered: start over in a new one when it
        // is at its size, or at once when the disk is short (a full disk would
        // otherwise keep the delivered records and take no new ones).
        if self.head == self.written
            && self.config.retain.is_none()
            && self.segments.back().is_some_and(|s| {
                s.bytes >= self.segment_max
                    || (s.bytes > 0 && (self.error.is_some() || self.disk_low()))
            })
        {
            if let Some(old) = self.segments.pop_back() {
                self.file = None;
                self.reader = None;
                let _ = std::fs::remove_file(&old.path);
            }
        }
        if self.head != self.saved_head && now.duration_since(self.saved_at) >= SAVE_HEAD_EVERY {
            self.save_head(now);
        }
    }

    /// Writes the head file now (also at shutdown).
    pub fn save_head(&mut self, now: Instant) {
        if self.head == self.saved_head || self.segments.is_empty() {
            return;
        }
        let tmp = self.dir.join("head.tmp");
        let saved = std::fs::write(&tmp, format!("{}\n", self.head))
            .and_then(|()| std::fs::rename(&tmp, self.dir.join("head")));
        match saved {
            Ok(()) => self.saved_head = self.head,
            // Only repeats deliveries after a restart; the next tidy tries again.
            Err(e) => tracing::warn!(task = %self.task, error = %e, "spool: cannot save the head"),
        }
        self.saved_at = now;
    }

    fn fail(&mut self, error: String) {
        if self.error.as_deref() != Some(error.as_str()) {
            tracing::error!(task = %self.task, %error, "spool: the task's reading pauses until this clears (nothing is lost)");
        }
        self.error = Some(error);
    }

    /// Clears an open error once the retry time has come (a write retries
    /// itself).
    pub fn retry(&mut self, now: Instant) {
        if self.error.is_some() && !self.fatal && self.buf.is_empty() && now >= self.retry_at {
            self.retry_at = now + RETRY;
            if std::fs::create_dir_all(&self.dir).is_ok() && self.probe_writable() {
                self.error = None;
                tracing::info!(task = %self.task, "spool usable again");
            }
        }
    }

    fn probe_writable(&self) -> bool {
        let probe = self.dir.join(".probe");
        let ok = std::fs::write(&probe, b"").is_ok();
        let _ = std::fs::remove_file(&probe);
        ok
    }

    /// What `/tasks` and `/metrics` show.
    pub fn status(&self) -> SpoolStatus {
        let oldest_ms = if self.head < self.next_seq {
            self.marks.front().map_or(0, |(_, ms)| *ms)
        } else {
            0
        };
        SpoolStatus {
            bytes: self.bytes(),
            records: self.next_seq - self.head,
            oldest_ms,
            full: self.full(),
            disk_free: self
                .disk_free
                .map(|f| f.saturating_sub(self.written_since_check)),
            disk_low: self.disk_low(),
            blocked: self.blocked(),
            error: self.error.clone(),
        }
    }
}

/// The segment files in a spool directory's `entries`, by first sequence.
pub fn segment_files(entries: std::fs::ReadDir) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((first, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// Free bytes (for an unprivileged user) of the file system holding `path`,
/// or its nearest existing parent.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let existing = path.ancestors().find(|p| p.exists())?;
    let c = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only writes the struct it is given; `c` is a valid
    // NUL-terminated path for the call's duration.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Milliseconds since the epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &[u8]) -> Record<'_> {
        Record {
            key_change: false,
            weight: 1,
            key: 7,
            spooled_ms: unix_ms(),
            at: record::Source::default(),
            id_len: 0,
            body,
        }
    }

    fn config() -> SpoolConfig {
        SpoolConfig {
            max_bytes: 1 << 20,
            on_full: SpoolFull::Block,
            fsync_interval: Duration::from_millis(20),
            retain: None,
            min_disk_free: 0,
        }
    }

    #[test]
    fn records_written_after_every_segment_was_deleted_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("t");
        // What an emptied spool leaves: no segment, the head saved far along.
        std::fs::create_dir_all(&spool_dir).unwrap();
        std::fs::write(spool_dir.join("head"), "5000\n").unwrap();
        let mut spool = Spool::open(spool_dir.clone(), "t", config(), dir.path().join("dlq"));
        for i in 0..3u64 {
            spool.append(i, &record(b"{}"));
        }
        spool.write(Instant::now());
        assert_eq!(spool.status().error, None);
        // A crash: nothing saved beyond the files.
        drop(spool);
        let mut again = Spool::open(spool_dir, "t", config(), dir.path().join("dlq"));
        assert_eq!(
            again.status().records,
            3,
            "records written after the last segment went"
        );
        let mut fed = 0;
        while again.read_back().is_some() {
            fed += 1;
        }
        assert_eq!(fed, 3);
    }

    #[test]
    fn records_after_the_checkpoint_are_matched_in_order_until_one_differs() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("t");
        let bodies: Vec<Vec<u8>> = (1..=10)
            .map(|i| format!("{{\"n\":{i}}}").into_bytes())
            .collect();
        let mut spool = Spool::open(spool_dir.clone(), "t", config(), dir.path().join("dlq"));
        for (i, body) in bodies.iter().enumerate() {
            spool.append(i as u64, &record(body));
        }
        spool.write(Instant::now());
        drop(spool);
        let mut again = Spool::open(spool_dir, "t", config(), dir.path().join("dlq"));
        // The checkpoint's mark: records 1..=6 are of transactions before it.
        again.expect_after(6);
        assert_eq!(
            again.known(&record(&bodies[6])),
            Some(7),
            "spooled ms is not compared"
        );
        assert_eq!(again.known(&record(&bodies[7])), Some(8));
        // An event the spool does not hold next: from here on, all is spooled.
        assert_eq!(again.known(&record(b"{\"other\":1}")), None);
        assert_eq!(
            again.known(&record(&bodies[8])),
            None,
            "matching ended for good"
        );
        assert_eq!(again.next_seq(), 11, "nothing was numbered over");
        // A mark at or past the last record expects nothing.
        again.expect_after(10);
        assert_eq!(again.known(&record(&bodies[9])), None);
    }
}
