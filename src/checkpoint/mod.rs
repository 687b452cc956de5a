//! The ack window and the durable checkpoint (SPEC section 7): the position up to
//! which every event is delivered or dead-lettered, advanced only to the end of the
//! oldest transaction whose events are all done, and written atomically to
//! `state.dir/checkpoint.json` (temp file, fsync, rename, fsync of the directory).

pub mod ledger;

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::binlog::gtid::GtidSet;
use crate::mysql::replica::{BinlogPosition, ServerInfo};

/// A durable position and the source it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Binlog file.
    pub file: String,
    /// Position in it: the end of a transaction.
    pub pos: u64,
    /// GTID of that transaction, when the server uses GTIDs.
    pub gtid: Option<String>,
    /// Every GTID up to that position (MySQL set or MariaDB domain state), when
    /// known: lets a restart resume on another server of the same cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_set: Option<String>,
    /// `mysql` or `mariadb`.
    pub flavor: String,
    /// The source's `server_id`.
    pub server_id: u32,
    /// The source's `server_uuid` (MySQL).
    pub server_uuid: Option<String>,
    /// When `file` was created (its FORMAT_DESCRIPTION event's timestamp): a file
    /// of the same name written later (RESET MASTER) has another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_created: Option<u32>,
    /// Per task id: how far its snapshot got, as of this position (every row of
    /// the chunks counted here is delivered or dead-lettered).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshots: BTreeMap<String, SnapshotProgress>,
    /// Per task id with a spool: the number of its last spool record that
    /// belongs to a transaction at or before this position. The records after
    /// it are the ones a restart reads again; the spool holds them already.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spools: BTreeMap<String, u64>,
}

/// How far a task's snapshot got.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotProgress {
    /// Names this snapshot run; webhook ids are stable per id and key.
    pub id: String,
    /// The tables it reads, in order (`schema.table`).
    pub tables: Vec<String>,
    /// Index in `tables` of the table being read (`tables.len()` once done).
    pub table: usize,
    /// SQL literals of the last key done in that table; none: from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<String>>,
    /// A condition rows must meet (`rowhook snapshot --where`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Chunks done.
    pub chunks: u64,
    /// Rows sent.
    pub rows: u64,
    /// Every table was read to its end.
    pub done: bool,
}

/// Why a checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a checkpoint.
    #[error("{path}: not a rowhook checkpoint ({reason})\n  fix: restore it from a backup, or delete it to start at source.start (changes since the last run may then be skipped)")]
    Corrupt {
        /// The file.
        path: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The file at the checkpoint's position is not the file it was taken in.
    #[error("{path}: the checkpoint is in {file} created at unix time {saved}, but the server's {file} was created at {now}: the binlog was reset (RESET MASTER) or rewritten since, and resuming at position {pos} would skip or misread events\n  fix: nothing was skipped. To go on from what the server has (the changes in between are lost), move {path} away and set source.start (earliest, {{file, pos}} or {{gtid: ...}}); to lose nothing, point database.host at a server that still has the old binlog")]
    FileReset {
        /// The checkpoint file.
        path: String,
        /// The binlog file name.
        file: String,
        /// The saved position.
        pos: u64,
        /// Its creation time as saved.
        saved: u32,
        /// Its creation time on the server now.
        now: u32,
    },
    /// The shared copy (`ha`: etcd) refused or could not take the checkpoint.
    #[error("cannot write the checkpoint to {reason}")]
    Replica {
        /// Where, and why not.
        reason: String,
    },
    /// The checkpoint was written for another server.
    #[error("{path} was written for {saved}, but the configured source is {now}, and it holds no GTID set to resume by there\n  fix: point database.host at the server the checkpoint came from, or move the file away to start this server at source.start (with GTIDs on, checkpoints carry a gtid_set and resume on any server of the cluster)")]
    OtherSource {
        /// The file.
        path: String,
        /// The source the file names.
        saved: String,
        /// The source connected to.
        now: String,
    },
}

impl Checkpoint {
    /// A checkpoint at `at` on the server described by `info`; `file_created` is
    /// the creation time of `at`'s file, when the stream showed it.
    pub fn new(at: &Done, info: &ServerInfo, file_created: Option<u32>) -> Self {
        Self::with_snapshots(at, info, file_created, BTreeMap::new())
    }

    /// [`Checkpoint::new`] with the tasks' snapshot progress.
    pub fn with_snapshots(
        at: &Done,
        info: &ServerInfo,
        file_created: Option<u32>,
        snapshots: BTreeMap<String, SnapshotProgress>,
    ) -> Self {
        Checkpoint {
            file: at.position.file.clone(),
            pos: at.position.pos,
            gtid: at.gtid.clone(),
            gtid_set: at
                .gtid_set
                .as_ref()
                .map(ToString::to_string)
                .filter(|s| !s.is_empty()),
            flavor: flavor_name(info),
            server_id: info.server_id,
            server_uuid: info.server_uuid.clone(),
            file_created,
            snapshots,
            spools: BTreeMap::new(),
        }
    }

    /// Where to resume.
    pub fn position(&self) -> BinlogPosition {
        BinlogPosition {
            file: self.file.clone(),
            pos: self.pos,
        }
    }

    /// Whether the checkpoint was taken on the server with these identifiers
    /// (`server_uuid` decides when both sides have one).
    pub fn belongs_to(&self, flavor: &str, server_id: u32, server_uuid: Option<&str>) -> bool {
        self.flavor == flavor
            && match (self.server_uuid.as_deref(), server_uuid) {
                (Some(a), Some(b)) => a == b,
                _ => self.server_id == server_id,
            }
    }

    /// Whether a restart on `info`, another server, can resume from this
    /// checkpoint's GTID set (same flavor, set known).
    pub fn fails_over_to(&self, info: &ServerInfo) -> bool {
        let here = flavor_name(info);
        !self.belongs_to(&here, info.server_id, info.server_uuid.as_deref())
            && self.resumable_by_gtids(&here)
    }

    /// Whether a server of `flavor` can resume from the GTID set alone.
    pub fn resumable_by_gtids(&self, flavor: &str) -> bool {
        self.flavor == flavor
            && self
                .gtid_set
                .as_deref()
                .is_some_and(|s| !s.trim().is_empty())
    }

    /// Refuses a checkpoint taken on another server, unless its GTID set lets the
    /// stream resume there: its positions mean nothing here.
    pub fn check_source(&self, dir: &Path, info: &ServerInfo) -> Result<(), CheckpointError> {
        if self.belongs_to(
            &flavor_name(info),
            info.server_id,
            info.server_uuid.as_deref(),
        ) || self.fails_over_to(info)
        {
            return Ok(());
        }
        let describe = |flavor: &str, id: u32, uuid: &Option<String>| match uuid {
            Some(u) => format!("{flavor} server_uuid {u}"),
            None => format!("{flavor} server_id {id}"),
        };
        Err(CheckpointError::OtherSource {
            path: path(dir).display().to_string(),
            saved: describe(&self.flavor, self.server_id, &self.server_uuid),
            now: describe(&flavor_name(info), info.server_id, &info.server_uuid),
        })
    }
}

fn flavor_name(info: &ServerInfo) -> String {
    match info.flavor {
        crate::config::Flavor::Mariadb => "mariadb".into(),
        _ => "mysql".into(),
    }
}

/// `state.dir/checkpoint.json`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("checkpoint.json")
}

/// Reads the checkpoint in `dir`, if there is one.
pub fn load(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let file = path(dir);
    // Bytes, not text: a file of random bytes is a corrupt checkpoint, not an I/O error.
    let text = match std::fs::read(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: file.display().to_string(),
                source,
            })
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| CheckpointError::Corrupt {
            path: file.display().to_string(),
            reason: e.to_string(),
        })
}

/// A second home for checkpoints, written before the local file: with `ha`,
/// etcd, conditioned on this instance still being the active one.
pub trait Replica: Send + Sync {
    /// Stores `cp`; `Err` says where and why not.
    fn store(&self, cp: &Checkpoint) -> Result<(), String>;
}

/// Writes `cp` to `replica` first, when there is one, then to `dir`: the local
/// file never runs ahead of the shared copy another instance resumes from.
pub fn store_to(
    dir: &Path,
    replica: Option<&dyn Replica>,
    cp: &Checkpoint,
) -> Result<(), CheckpointError> {
    if let Some(r) = replica {
        r.store(cp)
            .map_err(|reason| CheckpointError::Replica { reason })?;
    }
    store(dir, cp)
}

/// Writes `cp` so that a crash at any moment leaves either the old or the new file.
pub fn store(dir: &Path, cp: &Checkpoint) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path(dir).display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join("checkpoint.json.tmp");
    let text = serde_json::to_vec_pretty(cp).map_err(|e| io(std::io::Error::other(e)))?;
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&text).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path(dir)).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

#[derive(Debug)]
struct Txn {
    outstanding: u64,
    end: Option<(BinlogPosition, Option<String>)>,
    /// A snapshot chunk: its task's progress once the chunk is done.
    snapshot: Option<(String, SnapshotProgress)>,
    /// (task, last spool record number) of the tasks that spooled records of it.
    spools: Vec<(std::sync::Arc<str>, u64)>,
}

/// The end of the last transaction whose events are all done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// Where the next transaction starts.
    pub position: BinlogPosition,
    /// The transaction's GTID.
    pub gtid: Option<String>,
    /// Every GTID up to here, when known.
    pub gtid_set: Option<GtidSet>,
}

/// Transactions in binlog order with their events still in flight; the front ones
/// that are complete make the checkpoint move, and their GTIDs join the set.
#[derive(Debug, Default)]
pub struct AckWindow {
    /// Ordinal of `txns[0]`.
    front: u64,
    txns: VecDeque<Txn>,
    done: Option<Done>,
    /// The GTID set as of `done` (or of the stream's start).
    executed: Option<GtidSet>,
    /// A set learned from the stream, true just before transaction `.0`.
    learned: Option<(u64, GtidSet)>,
    /// Snapshot progress per task as of `done`.
    snapshots: BTreeMap<String, SnapshotProgress>,
    /// Bumped whenever `snapshots` changes.
    snapshot_version: u64,
    /// Per task: its last spool record of a transaction at or before `done`.
    spools: BTreeMap<String, u64>,
}

impl AckWindow {
    /// The entry of `txn`; `open` adds it when it is the next one (ordinals come
    /// in sequence, so nothing else is ever created).
    fn slot(&mut self, txn: u64, open: bool) -> Option<&mut Txn> {
        let index = usize::try_from(txn.checked_sub(self.front)?).ok()?;
        if open && index == self.txns.len() {
            self.txns.push_back(Txn {
                outstanding: 0,
                end: None,
                snapshot: None,
                spools: Vec::new(),
            });
        }
        self.txns.get_mut(index)
    }

    /// One more event of transaction `txn` is in flight.
    pub fn add(&mut self, txn: u64) {
        if let Some(t) = self.slot(txn, true) {
            t.outstanding += 1;
        }
    }

    /// Transaction `txn` ends at `at` (its GTID, if any).
    pub fn end(&mut self, txn: u64, at: BinlogPosition, gtid: Option<String>) {
        if let Some(t) = self.slot(txn, true) {
            t.end = Some((at, gtid));
        }
        self.advance();
    }

    /// Transaction `txn` is a snapshot chunk of `task`: once it is done, the
    /// task's progress is `progress`.
    pub fn mark_snapshot(&mut self, txn: u64, task: &str, progress: SnapshotProgress) {
        if let Some(t) = self.slot(txn, true) {
            t.snapshot = Some((task.to_owned(), progress));
        }
    }

    /// Transaction `txn` put `task`'s spool record `seq` (or one the spool held
    /// already) in the spool: once it is done, the task's spool is through `seq`.
    pub fn mark_spool(&mut self, txn: u64, task: &std::sync::Arc<str>, seq: u64) {
        if let Some(t) = self.slot(txn, true) {
            match t.spools.iter_mut().find(|(name, _)| name == task) {
                Some((_, at)) => *at = (*at).max(seq),
                None => t.spools.push((task.clone(), seq)),
            }
        }
    }

    /// Spool marks saved by an earlier run (a task that spools nothing on this
    /// run keeps its mark).
    pub fn seed_spools(&mut self, saved: BTreeMap<String, u64>) {
        self.spools = saved;
    }

    /// Per task: its last spool record of a transaction at or before the position.
    pub fn spools(&self) -> &BTreeMap<String, u64> {
        &self.spools
    }

    /// Snapshot progress saved by an earlier run.
    pub fn seed_snapshots(&mut self, saved: BTreeMap<String, SnapshotProgress>) {
        self.snapshots = saved;
    }

    /// Snapshot progress per task as of the position, and a version that changes
    /// with it.
    pub fn snapshots(&self) -> (&BTreeMap<String, SnapshotProgress>, u64) {
        (&self.snapshots, self.snapshot_version)
    }

    /// An event of `txn` is delivered or dead-lettered.
    pub fn ack(&mut self, txn: u64) {
        if let Some(t) = self.slot(txn, false) {
            t.outstanding = t.outstanding.saturating_sub(1);
        }
        self.advance();
    }

    /// `set` holds every GTID before transaction `txn` (a start set, or a
    /// PREVIOUS_GTIDS event read just before it).
    pub fn learn(&mut self, txn: u64, set: GtidSet) {
        self.learned = Some((txn, set));
        self.advance();
    }

    /// Whether the GTID set is known or about to be.
    pub fn knows_gtids(&self) -> bool {
        self.executed.is_some() || self.learned.is_some()
    }

    fn take_learned(&mut self) {
        if self.learned.as_ref().is_some_and(|(t, _)| *t == self.front) {
            self.executed = self.learned.take().map(|(_, s)| s);
        }
    }

    fn advance(&mut self) {
        self.take_learned();
        while let Some(t) = self.txns.front() {
            if t.outstanding > 0 || t.end.is_none() {
                break;
            }
            if let Some(Txn {
                end: Some((position, gtid)),
                snapshot,
                spools,
                ..
            }) = self.txns.pop_front()
            {
                for (task, seq) in spools {
                    match self.spools.get_mut(&*task) {
                        Some(at) => *at = seq,
                        None => {
                            self.spools.insert(task.to_string(), seq);
                        }
                    }
                }
                if let Some((task, progress)) = snapshot {
                    self.snapshots.insert(task, progress);
                    self.snapshot_version += 1;
                }
                if let (Some(set), Some(g)) = (&mut self.executed, &gtid) {
                    set.add(g);
                }
                self.done = Some(Done {
                    position,
                    gtid,
                    gtid_set: self.executed.clone(),
                });
            }
            self.front += 1;
            self.take_learned();
        }
    }

    /// The binlog file transaction `txn` ended in, once it ended and while it
    /// is not done.
    pub fn end_file(&self, txn: u64) -> Option<&str> {
        let index = usize::try_from(txn.checked_sub(self.front)?).ok()?;
        let (at, _) = self.txns.get(index)?.end.as_ref()?;
        Some(&at.file)
    }

    /// The end of the last transaction whose events are all done.
    pub fn position(&self) -> Option<&Done> {
        self.done.as_ref()
    }

    /// Transactions not yet complete.
    pub fn pending(&self) -> usize {
        self.txns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pos: u64) -> BinlogPosition {
        BinlogPosition {
            file: "binlog.000001".into(),
            pos,
        }
    }

    #[test]
    fn advances_only_over_complete_transactions_in_order() {
        let mut w = AckWindow::default();
        w.add(0);
        w.add(0);
        w.end(0, at(100), None);
        w.add(1);
        w.end(1, at(200), Some("0-1-2".into()));
        w.end(2, at(300), None); // nothing routed: complete at once, but behind 0 and 1
        assert_eq!(w.position(), None);
        w.ack(1);
        assert_eq!(w.position(), None, "txn 1 done, but txn 0 is not");
        w.ack(0);
        assert_eq!(w.position(), None);
        w.ack(0);
        assert_eq!(w.position().map(|p| p.position.pos), Some(300));
        assert_eq!(w.pending(), 0);
        // An event of a transaction still being read keeps it open.
        w.add(3);
        w.ack(3);
        assert_eq!(w.position().map(|p| p.position.pos), Some(300));
        w.end(3, at(400), None);
        assert_eq!(w.position().map(|p| p.position.pos), Some(400));
        // Late or foreign ordinals are ignored, not panics.
        w.ack(1);
        w.ack(u64::MAX);
    }

    #[test]
    fn spool_marks_count_only_once_their_transaction_is_done() {
        let task: std::sync::Arc<str> = "dead".into();
        let mut w = AckWindow::default();
        w.seed_spools([("dead".to_owned(), 3), ("gone".to_owned(), 9)].into());
        w.add(0);
        w.mark_spool(0, &task, 4);
        w.mark_spool(0, &task, 5);
        w.mark_spool(1, &task, 6);
        w.end(0, at(100), None);
        assert_eq!(
            w.spools().get("dead"),
            Some(&3),
            "transaction 0 is not done"
        );
        w.ack(0);
        assert_eq!(w.spools().get("dead"), Some(&5));
        w.end(1, at(200), None);
        assert_eq!(w.spools().get("dead"), Some(&6));
        assert_eq!(
            w.spools().get("gone"),
            Some(&9),
            "a task that spooled nothing keeps its mark"
        );
    }

    #[test]
    fn snapshot_progress_counts_only_once_its_chunk_is_done() {
        let progress = |chunks: u64| SnapshotProgress {
            id: "s".into(),
            tables: vec!["d.t".into()],
            table: 0,
            after: Some(vec![chunks.to_string()]),
            filter: None,
            chunks,
            rows: chunks * 10,
            done: false,
        };
        let mut w = AckWindow::default();
        w.add(0);
        w.end(0, at(100), None);
        // A chunk of two rows slipped in after transaction 0, at the same position.
        w.add(1);
        w.add(1);
        w.mark_snapshot(1, "task", progress(1));
        w.end(1, at(100), None);
        w.ack(0);
        assert_eq!(w.position().map(|p| p.position.pos), Some(100));
        assert!(
            w.snapshots().0.is_empty(),
            "rows of the chunk are in flight"
        );
        let before = w.snapshots().1;
        w.ack(1);
        w.ack(1);
        assert_eq!(w.snapshots().0.get("task"), Some(&progress(1)));
        assert_ne!(w.snapshots().1, before, "a changed progress is written");
    }

    #[test]
    fn the_gtid_set_follows_the_checkpoint_not_the_reader() {
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut w = AckWindow::default();
        // A start from a file position: the set is unknown until PREVIOUS_GTIDS,
        // which arrives before transaction 1 while transaction 0 is in flight.
        w.add(0);
        w.end(0, at(100), Some(format!("{u}:10")));
        w.learn(1, GtidSet::parse_mysql(&format!("{u}:1-10")).unwrap());
        w.add(1);
        w.end(1, at(200), Some(format!("{u}:11")));
        w.add(2);
        w.end(2, at(300), Some(format!("{u}:12")));
        assert_eq!(w.position(), None);
        w.ack(0);
        assert_eq!(w.position().unwrap().gtid_set, None, "set not known at 100");
        w.ack(2);
        assert_eq!(w.position().unwrap().position.pos, 100);
        w.ack(1);
        let done = w.position().unwrap();
        assert_eq!(done.position.pos, 300);
        assert_eq!(
            done.gtid_set.as_ref().unwrap().to_string(),
            format!("{u}:1-12")
        );
    }

    /// Checkpoint files written by earlier releases load to the same position
    /// and source (tests/fixtures/checkpoint/README.md).
    #[test]
    fn frozen_checkpoint_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = [
            (
                include_str!("../../tests/fixtures/checkpoint/2026-11-mariadb.json"),
                "binlog.000001:2406025",
                Some("0-1-10155"),
                None,
            ),
            (
                include_str!("../../tests/fixtures/checkpoint/2026-11-mysql.json"),
                "binlog.000003:1650975",
                Some("10ad9e00-0000-4000-8000-000000000001:1-1500"),
                Some(1_796_045_000),
            ),
        ];
        for (text, at, set, created) in fixtures {
            std::fs::write(path(dir.path()), text).unwrap();
            let cp = load(dir.path()).unwrap().unwrap();
            assert_eq!(cp.position(), at.parse().unwrap());
            assert_eq!(cp.position().to_string(), at);
            assert_eq!(cp.gtid_set.as_deref(), set);
            assert_eq!(cp.file_created, created);
            // What this version writes for it loads back the same.
            store(dir.path(), &cp).unwrap();
            assert_eq!(load(dir.path()).unwrap(), Some(cp));
        }
    }

    #[test]
    fn positions_parse_print_and_order_as_the_stream_goes() {
        let p = |s: &str| s.parse::<BinlogPosition>().unwrap();
        let ordered = [
            "binlog.000009:4",
            "binlog.000009:1200",
            "binlog.000010:4",
            "binlog.999999:77",
            "binlog.1000000:4",
        ];
        for w in ordered.windows(2) {
            assert!(p(w[0]) < p(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(p("my:host-bin.000002:9").file, "my:host-bin.000002");
        for bad in ["binlog.000001", "binlog.000001:x", ":4"] {
            assert!(bad.parse::<BinlogPosition>().is_err(), "{bad}");
        }
    }

    #[test]
    fn store_then_load_round_trips_and_corruption_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let cp = Checkpoint {
            file: "binlog.000007".into(),
            pos: 1234,
            gtid: Some("0-1-99".into()),
            gtid_set: Some("0-1-99,1-2-7".into()),
            flavor: "mariadb".into(),
            server_id: 1,
            server_uuid: None,
            file_created: Some(1_764_000_000),
            snapshots: [(
                "items".to_owned(),
                SnapshotProgress {
                    id: "items-1764000000".into(),
                    tables: vec!["shop.items".into(), "shop.more".into()],
                    table: 1,
                    after: Some(vec!["42".into(), "'a\\'b'".into()]),
                    filter: Some("v > 3".into()),
                    chunks: 3,
                    rows: 30_000,
                    done: false,
                },
            )]
            .into(),
            spools: [("dead".to_owned(), 4321)].into(),
        };
        store(dir.path(), &cp).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(cp));
        // Truncated JSON, and random bytes that are not even UTF-8.
        for bytes in [&b"{\"file\": "[..], &[0xff, 0xfe, 0x00, 0x9c, 0x12][..]] {
            std::fs::write(path(dir.path()), bytes).unwrap();
            let err = load(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("not a rowhook checkpoint") && err.contains("fix:"),
                "{err}"
            );
        }
    }
}
