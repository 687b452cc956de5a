//! Becoming a replica, step by step: read the server's settings and refuse clearly
//! when row-based replication cannot work, negotiate checksums and heartbeats,
//! register, resolve the start position, and ask for the binlog stream.

use std::time::Duration;

use super::conn::Connection;
use super::error::MysqlError;
use crate::binlog::gtid::GtidSet;
use crate::config::{Flavor, StartPosition};

/// A binlog file and byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogPosition {
    /// File name, e.g. `binlog.000042`.
    pub file: String,
    /// Byte offset of an event start.
    pub pos: u64,
}

impl std::fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// `file:pos`, as [`BinlogPosition`] prints it.
impl std::str::FromStr for BinlogPosition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (file, pos) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not file:position"))?;
        let pos = pos
            .parse()
            .map_err(|_| format!("{s:?}: {pos:?} is not a byte position"))?;
        if file.is_empty() {
            return Err(format!("{s:?} names no file"));
        }
        Ok(BinlogPosition {
            file: file.to_owned(),
            pos,
        })
    }
}

impl BinlogPosition {
    /// The file's base name and sequence number (`binlog.000042` -> ("binlog", 42)).
    fn sequence(&self) -> (&str, Option<u64>) {
        match self.file.rsplit_once('.') {
            Some((base, n)) => (base, n.parse().ok()),
            None => (self.file.as_str(), None),
        }
    }
}

/// Stream order: by file sequence number (a seventh digit after `.999999` still
/// sorts later), then by offset.
impl Ord for BinlogPosition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (self.sequence(), other.sequence());
        a.0.cmp(b.0)
            .then(a.1.cmp(&b.1))
            .then_with(|| self.file.cmp(&other.file))
            .then(self.pos.cmp(&other.pos))
    }
}

impl PartialOrd for BinlogPosition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// What rowhook learned about the source at start-up.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Version string.
    pub version: String,
    /// Resolved dialect.
    pub flavor: Flavor,
    /// Whether binlog events carry CRC32.
    pub checksum: bool,
    /// `binlog_row_metadata` (FULL gives column names).
    pub row_metadata: String,
    /// `binlog_row_image`.
    pub row_image: String,
    /// The server's own `server_id`.
    pub server_id: u32,
    /// MySQL's `server_uuid` (MariaDB has none).
    pub server_uuid: Option<String>,
    /// How long the server keeps a binlog file after it is rotated
    /// (`binlog_expire_logs_seconds`, else `expire_logs_days`); `None`: never
    /// purged by age.
    pub binlog_expire: Option<Duration>,
}

/// Settings of the replication session.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// Our server id among the replicas.
    pub server_id: u32,
    /// Heartbeat period asked of the server.
    pub heartbeat: Duration,
}

fn one(rows: Vec<Vec<Option<String>>>) -> Option<String> {
    rows.into_iter().next()?.into_iter().next()?
}

/// Checks that the server can feed row-based replication.
pub async fn inspect(conn: &mut Connection, wanted: Flavor) -> Result<ServerInfo, MysqlError> {
    let version = conn.greeting.server_version.clone();
    let is_mariadb = version.contains("MariaDB");
    let flavor = match (wanted, is_mariadb) {
        (Flavor::Auto, true) => Flavor::Mariadb,
        (Flavor::Auto, false) => Flavor::Mysql,
        (Flavor::Mysql, true) | (Flavor::Mariadb, false) => {
            return Err(MysqlError::NotUsable {
                problem: format!("database.flavor is {wanted:?} but the server says {version}"),
                fix: "set database.flavor: auto (or the right flavor)".into(),
            })
        }
        (f, _) => f,
    };
    let var = |name: &str| format!("SELECT @@GLOBAL.{name}");
    let log_bin = one(conn.query(&var("log_bin")).await?).unwrap_or_default();
    if !matches!(log_bin.as_str(), "1" | "ON") {
        return Err(MysqlError::NotUsable {
            problem: "binary logging is off (log_bin = OFF)".into(),
            fix: "start the server with log-bin (and server-id) in my.cnf, then restart it".into(),
        });
    }
    let format = one(conn.query(&var("binlog_format")).await?).unwrap_or_default();
    if !format.eq_ignore_ascii_case("ROW") {
        return Err(MysqlError::NotUsable {
            problem: format!("binlog_format is {format}; row changes are only in ROW format"),
            fix: "SET GLOBAL binlog_format = 'ROW' and binlog_format=ROW in my.cnf \
                  (sessions already open keep their format until they reconnect)"
                .into(),
        });
    }
    let row_image =
        one(conn.query(&var("binlog_row_image")).await?).unwrap_or_else(|| "FULL".into());
    // binlog_row_metadata exists from MySQL 8.0.1 and MariaDB 10.5.
    let row_metadata = match conn.query(&var("binlog_row_metadata")).await {
        Ok(rows) => one(rows).unwrap_or_else(|| "MINIMAL".into()),
        Err(MysqlError::Server { code: 1193, .. }) => "MINIMAL".into(),
        Err(e) => return Err(e),
    };
    let checksum_alg =
        one(conn.query(&var("binlog_checksum")).await?).unwrap_or_else(|| "NONE".into());
    let server_id = one(conn.query(&var("server_id")).await?)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let server_uuid = match conn.query(&var("server_uuid")).await {
        Ok(rows) => one(rows),
        Err(MysqlError::Server { code: 1193, .. }) => None,
        Err(e) => return Err(e),
    };
    let binlog_expire = binlog_expiry(conn).await?;
    Ok(ServerInfo {
        version,
        flavor,
        checksum: checksum_alg.eq_ignore_ascii_case("CRC32"),
        row_metadata,
        row_image,
        server_id,
        server_uuid,
        binlog_expire,
    })
}

/// The server's binlog expiry: `binlog_expire_logs_seconds` (MySQL 8,
/// MariaDB 10.6+) when set, else `expire_logs_days` (a fraction on MariaDB).
async fn binlog_expiry(conn: &mut Connection) -> Result<Option<Duration>, MysqlError> {
    let seconds = match conn
        .query("SELECT @@GLOBAL.binlog_expire_logs_seconds")
        .await
    {
        Ok(rows) => one(rows).and_then(|v| v.trim().parse::<f64>().ok()),
        Err(MysqlError::Server { code: 1193, .. }) => None,
        Err(e) => return Err(e),
    };
    if let Some(s) = seconds.filter(|s| *s > 0.0) {
        return Ok(Some(Duration::from_secs_f64(s)));
    }
    let days = match conn.query("SELECT @@GLOBAL.expire_logs_days").await {
        Ok(rows) => one(rows).and_then(|v| v.trim().parse::<f64>().ok()),
        Err(MysqlError::Server { code: 1193, .. }) => None,
        Err(e) => return Err(e),
    };
    Ok(days
        .filter(|d| *d > 0.0 && d.is_finite())
        .map(|d| Duration::from_secs_f64(d * 86_400.0)))
}

/// Where `start` points on this server right now, and the GTID set executed
/// before that point when the server can tell (MySQL at its current end; MariaDB
/// anywhere, from BINLOG_GTID_POS). MySQL learns it otherwise from the next
/// PREVIOUS_GTIDS event.
pub async fn resolve_start(
    conn: &mut Connection,
    start: &StartPosition,
    info: &ServerInfo,
) -> Result<(BinlogPosition, Option<GtidSet>), MysqlError> {
    let (at, executed) = match start {
        StartPosition::FilePos { file, pos } => (
            BinlogPosition {
                file: file.clone(),
                pos: *pos,
            },
            None,
        ),
        StartPosition::Latest => {
            let rows = match conn.query("SHOW MASTER STATUS").await {
                // MySQL 8.4 renamed it.
                Err(MysqlError::Server { code: 1064, .. }) => {
                    conn.query("SHOW BINARY LOG STATUS").await?
                }
                other => other?,
            };
            let row = rows.into_iter().next().ok_or_else(|| MysqlError::NotUsable {
                problem: "SHOW MASTER STATUS returned nothing (binary logging off, or no REPLICATION CLIENT privilege)".into(),
                fix: "GRANT REPLICATION CLIENT ON *.* TO the rowhook user".into(),
            })?;
            // Executed_Gtid_Set, read with the position: both describe the same point.
            let executed = row.get(4).cloned().flatten();
            (position_of(&row)?, executed)
        }
        StartPosition::Earliest => {
            let file = binlog_files(conn)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| MysqlError::NotUsable {
                    problem: "SHOW BINARY LOGS returned nothing".into(),
                    fix: "check that binary logging is on".into(),
                })?;
            (BinlogPosition { file, pos: 4 }, None)
        }
        // The dump itself carries the GTIDs (see `start_dump`); no file yet.
        StartPosition::Gtid(_) => (
            BinlogPosition {
                file: String::new(),
                pos: 4,
            },
            None,
        ),
    };
    let seed = match info.flavor {
        Flavor::Mariadb => mariadb_gtid_pos(conn, &at).await,
        // An empty Executed_Gtid_Set is a true empty set when GTIDs are on.
        _ if gtid_mode_on(conn).await => executed.and_then(|t| GtidSet::parse_mysql(&t).ok()),
        _ => None,
    };
    Ok((at, seed))
}

/// Whether a MySQL server writes GTIDs (`gtid_mode` ON).
async fn gtid_mode_on(conn: &mut Connection) -> bool {
    match conn.query("SELECT @@GLOBAL.gtid_mode").await {
        Ok(rows) => one(rows).is_some_and(|m| m.eq_ignore_ascii_case("ON")),
        Err(_) => false,
    }
}

/// MariaDB's GTID position at `at`, if it can say (NULL before GTIDs, or for a
/// file it does not have; a missing privilege only loses the set).
async fn mariadb_gtid_pos(conn: &mut Connection, at: &BinlogPosition) -> Option<GtidSet> {
    if at.file.is_empty() || at.file.contains(['\'', '\\']) {
        return None;
    }
    let sql = format!("SELECT BINLOG_GTID_POS('{}', {})", at.file, at.pos);
    match conn.query(&sql).await {
        Ok(rows) => one(rows).and_then(|t| GtidSet::parse_mariadb(&t).ok()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the GTID position; the checkpoint keeps file positions only");
            None
        }
    }
}

/// Asks the primary to stream everything after the GTIDs in `set`: MariaDB
/// through `@slave_connect_state` (the dump that follows names no file), MySQL
/// with COM_BINLOG_DUMP_GTID. Returns whether the dump command was sent.
async fn start_at_gtid(
    conn: &mut Connection,
    info: &ServerInfo,
    options: &ReplicaOptions,
    set: &GtidSet,
) -> Result<bool, MysqlError> {
    match (info.flavor, set) {
        (Flavor::Mariadb, GtidSet::Mariadb(_)) => {
            // Printed from the parsed set: digits, dashes and commas only.
            conn.exec(&format!("SET @slave_connect_state = '{set}'"))
                .await?;
            conn.exec("SET @slave_gtid_strict_mode = 1").await?;
            conn.exec("SET @slave_gtid_ignore_duplicates = 0").await?;
            Ok(false)
        }
        (Flavor::Mariadb, _) | (_, GtidSet::Mariadb(_)) => Err(MysqlError::NotUsable {
            problem: format!("the GTID set {set} is not of this server's flavor"),
            fix: "give the GTIDs as the server prints them (SELECT @@gtid_binlog_pos on MariaDB, @@GLOBAL.gtid_executed on MySQL)".into(),
        }),
        _ => {
            // flags BINLOG_THROUGH_GTID, no file name, position 4, the sid block.
            let block = set.sid_block();
            let mut dump = vec![0x1e];
            dump.extend_from_slice(&4u16.to_le_bytes());
            dump.extend_from_slice(&options.server_id.to_le_bytes());
            dump.extend_from_slice(&0u32.to_le_bytes());
            dump.extend_from_slice(&4u64.to_le_bytes());
            dump.extend_from_slice(&(block.len() as u32).to_le_bytes());
            dump.extend_from_slice(&block);
            conn.send_command(&dump).await?;
            Ok(true)
        }
    }
}

/// The binlog files the server has, oldest first.
pub async fn binlog_files(conn: &mut Connection) -> Result<Vec<String>, MysqlError> {
    Ok(conn
        .query("SHOW BINARY LOGS")
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}

/// "first .. last" of `files`, for messages.
pub fn describe_range(files: &[String]) -> String {
    match (files.first(), files.last()) {
        (Some(a), Some(b)) => format!("{a} .. {b}"),
        _ => "no binlogs".into(),
    }
}

fn position_of(row: &[Option<String>]) -> Result<BinlogPosition, MysqlError> {
    let file = row.first().cloned().flatten().unwrap_or_default();
    let pos = row.get(1).cloned().flatten().and_then(|p| p.parse().ok());
    match (file.is_empty(), pos) {
        (false, Some(pos)) => Ok(BinlogPosition { file, pos }),
        _ => Err(MysqlError::Protocol(format!(
            "unreadable binlog status row {row:?}"
        ))),
    }
}

/// Negotiates checksums, heartbeats and (MariaDB) capabilities, registers as a
/// replica and starts the dump at `from`.
pub async fn start_dump(
    conn: &mut Connection,
    info: &ServerInfo,
    options: &ReplicaOptions,
    from: &BinlogPosition,
    gtid: Option<&GtidSet>,
) -> Result<(), MysqlError> {
    // Tell the server we verify checksums, so it sends them.
    conn.exec("SET @master_binlog_checksum = @@global.binlog_checksum")
        .await?;
    if info.flavor == Flavor::Mariadb {
        // 4 = MARIA_SLAVE_CAPABILITY_GTID: GTID events instead of BEGIN queries.
        conn.exec("SET @mariadb_slave_capability = 4").await?;
    }
    let nanos = options
        .heartbeat
        .as_nanos()
        .min(u128::from(u32::MAX) * 1_000_000_000);
    conn.exec(&format!("SET @master_heartbeat_period = {nanos}"))
        .await?;

    let mut register = vec![0x15];
    register.extend_from_slice(&options.server_id.to_le_bytes());
    register.extend_from_slice(&[0, 0, 0]); // hostname, user, password: empty
    register.extend_from_slice(&0u16.to_le_bytes()); // port
    register.extend_from_slice(&0u32.to_le_bytes()); // rank
    register.extend_from_slice(&0u32.to_le_bytes()); // master id
    conn.send_command(&register).await?;
    let reply = conn.read_payload().await?;
    if reply.first() == Some(&0xff) {
        return Err(MysqlError::from_err_packet(&reply));
    }

    if let Some(set) = gtid {
        if start_at_gtid(conn, info, options, set).await? {
            return Ok(());
        }
    }
    let pos = u32::try_from(from.pos).map_err(|_| MysqlError::NotUsable {
        problem: format!("position {from} is beyond 4 GiB, which COM_BINLOG_DUMP cannot address"),
        fix: "start from a GTID or a later file".into(),
    })?;
    let mut dump = vec![0x12];
    dump.extend_from_slice(&pos.to_le_bytes());
    dump.extend_from_slice(&0u16.to_le_bytes()); // flags: blocking
    dump.extend_from_slice(&options.server_id.to_le_bytes());
    dump.extend_from_slice(from.file.as_bytes());
    conn.send_command(&dump).await
}

/// Proves that `at` on this MariaDB server is the point a checkpoint was taken at:
/// `BINLOG_GTID_POS` there must be an event boundary and, when the checkpoint kept
/// its GTID state, that same state. A RESET MASTER (or a rewritten file) that has
/// since grown past `at` would otherwise be streamed from the middle, silently
/// skipping what comes before. `checkpoint` names the file for the fix line.
pub async fn verify_mariadb_resume(
    conn: &mut Connection,
    at: &BinlogPosition,
    expected: Option<&GtidSet>,
    checkpoint: &str,
) -> Result<(), MysqlError> {
    if at.file.is_empty() || at.file.contains(['\'', '\\']) {
        return Ok(());
    }
    let sizes: Vec<(String, Option<u64>)> = conn
        .query("SHOW BINARY LOGS")
        .await?
        .into_iter()
        .filter_map(|r| {
            let mut r = r.into_iter();
            let name = r.next().flatten()?;
            Some((name, r.next().flatten().and_then(|s| s.parse().ok())))
        })
        .collect();
    let Some(size) = sizes.iter().find(|(f, _)| *f == at.file).map(|(_, s)| *s) else {
        // Not on the server at all: the dump's own error says purged, with the range.
        return Ok(());
    };
    let sql = format!("SELECT BINLOG_GTID_POS('{}', {})", at.file, at.pos);
    let here = match conn.query(&sql).await {
        Ok(rows) => one(rows),
        Err(e @ MysqlError::Server { .. }) => {
            tracing::warn!(error = %e, at = %at, "cannot ask the server which GTIDs precede the checkpoint; resuming without that proof");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let fix = format!(
        "nothing was skipped. The server's binlog was reset (RESET MASTER) or rewritten after the checkpoint was taken, so the events after it are gone from this server. \
         To go on from what the server has (the changes in between are lost), move {checkpoint} away and set source.start (earliest, {{file, pos}} or {{gtid: ...}}); \
         to lose nothing, point database.host at a server that still has the old binlog"
    );
    let problem = match (here, size) {
        (None, Some(size)) if at.pos > size => {
            format!(
                "the position is past the end of the server's {} ({size} bytes)",
                at.file
            )
        }
        (None, _) => format!(
            "the server's {} has no event boundary at position {}",
            at.file, at.pos
        ),
        (Some(text), _) => {
            let Some(expected) = expected else {
                return Ok(());
            };
            match GtidSet::parse_mariadb(&text) {
                Ok(found) if found == *expected => return Ok(()),
                _ => format!(
                    "the checkpoint was taken after GTIDs {expected}, but the server's {} at that position follows GTIDs {}",
                    at.file,
                    if text.is_empty() { "(none)" } else { text.as_str() }
                ),
            }
        }
    };
    Err(MysqlError::ResumeMismatch {
        at: at.to_string(),
        problem,
        fix,
    })
}
