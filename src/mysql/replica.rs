//! Becoming a replica, step by step: read the server's settings and refuse clearly
//! when row-based replication cannot work, negotiate checksums and heartbeats,
//! register, resolve the start position, and ask for the binlog stream.

use std::time::Duration;

use super::conn::Connection;
use super::error::MysqlError;
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
    Ok(ServerInfo {
        version,
        flavor,
        checksum: checksum_alg.eq_ignore_ascii_case("CRC32"),
        row_metadata,
        row_image,
        server_id,
        server_uuid,
    })
}

/// Where `start` points on this server right now.
pub async fn resolve_start(
    conn: &mut Connection,
    start: &StartPosition,
) -> Result<BinlogPosition, MysqlError> {
    match start {
        StartPosition::FilePos { file, pos } => Ok(BinlogPosition {
            file: file.clone(),
            pos: *pos,
        }),
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
            position_of(&row)
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
            Ok(BinlogPosition { file, pos: 4 })
        }
        // The dump itself carries the GTIDs (see `start_dump`); no file yet.
        StartPosition::Gtid(_) => Ok(BinlogPosition {
            file: String::new(),
            pos: 4,
        }),
    }
}

/// Asks a MariaDB primary to stream from just after the GTIDs in `set` (the dump
/// that follows names no file). MySQL's COM_BINLOG_DUMP_GTID is not built yet.
async fn start_at_gtid(
    conn: &mut Connection,
    info: &ServerInfo,
    set: &str,
) -> Result<(), MysqlError> {
    if info.flavor != Flavor::Mariadb {
        return Err(MysqlError::NotUsable {
            problem: "source.start: {gtid: ...} is only supported on MariaDB in this build".into(),
            fix: "start from latest, earliest or {file, pos} on MySQL".into(),
        });
    }
    // Domain-server-sequence triples: digits, dashes, commas. Anything else would
    // also be unsafe inside the SQL string below.
    if set.is_empty()
        || !set
            .bytes()
            .all(|b| b.is_ascii_digit() || b"-, ".contains(&b))
    {
        return Err(MysqlError::NotUsable {
            problem: format!("source.start.gtid {set:?} is not a MariaDB GTID list"),
            fix: "write domain-server-sequence triples, e.g. 0-1-100 or 0-1-100,1-2-7 (see SELECT @@gtid_binlog_pos)".into(),
        });
    }
    conn.exec(&format!("SET @slave_connect_state = '{set}'"))
        .await?;
    conn.exec("SET @slave_gtid_strict_mode = 1").await?;
    conn.exec("SET @slave_gtid_ignore_duplicates = 0").await
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
    gtid: Option<&str>,
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
        start_at_gtid(conn, info, set).await?;
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
