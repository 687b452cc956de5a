//! Snapshots: the rows a task's tables already hold, read in key order in chunks
//! and merged into the stream (`dispatch::merge`) so that no receiver ever gets a
//! snapshot row after a newer change of the same key. Runs on the source core
//! beside the follow loop, over its own connection, one query at a time.
//!
//! Each chunk is one `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`:
//! MariaDB reports the binlog position the read is consistent with
//! (`binlog_snapshot_file/position`), which is what the merge needs. No locks,
//! nothing written to the source. Progress (the last key done per table) lives in
//! the checkpoint, so a restart resumes at the last chunk whose rows were all
//! delivered.

pub mod render;

use std::time::{Duration, Instant};

use crate::checkpoint::SnapshotProgress;
use crate::config::{Config, SnapshotEvent, TaskConfig};
use crate::dispatch::merge::{Chunk, ChunkRow, Offer, SnapshotPort};
use crate::dispatch::payload::{write_snapshot, SnapshotRow};
use crate::dispatch::DispatchError;
use crate::mysql::replica::BinlogPosition;
use crate::mysql::{Connection, MysqlError};
use crate::source::columns::quote;
use render::{quote_name, Column};

/// Why a snapshot stopped.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The server refused or the link failed.
    #[error("snapshot of task {task}: {source}")]
    Mysql {
        /// The task.
        task: String,
        /// What the server said.
        source: MysqlError,
    },
    /// A table cannot be snapshotted as it is.
    #[error("snapshot of task {task}: table {table}: {problem}\n  fix: {fix}")]
    Table {
        /// The task.
        task: String,
        /// `schema.table`.
        table: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// The dispatcher failed.
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
}

/// One table as the snapshot reads it.
struct Table {
    schema: String,
    name: String,
    columns: Vec<Column>,
    /// Indexes into `columns` of the primary key, in index order (the scan order).
    key_order: Vec<usize>,
    /// Which columns the task sends.
    keep: Vec<bool>,
}

/// Runs [`run`] until the snapshot is done, retrying with a backoff while the
/// server is unreachable (each retry resumes at the last chunk whose rows are all
/// delivered). A snapshot that cannot go on is logged; the task streams on.
pub async fn keep_running(config: Config, index: usize, task: TaskConfig, port: SnapshotPort) {
    let mut backoff = crate::net::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        match run(&config, index, &task, port.clone()).await {
            Ok(()) => return,
            Err(SnapshotError::Mysql { source, .. }) if source.is_transient() => {
                let delay = backoff.next_delay();
                tracing::warn!(task = %task.task_id, error = %source, retry_in = ?delay, "snapshot interrupted; resuming");
                glommio::timer::sleep(delay).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "snapshot stopped; the task streams on without it");
                return;
            }
        }
    }
}

/// Reads every table of `task` (index `index` in the plan) that its saved
/// progress does not mark done, chunk by chunk, handing each chunk to `port`.
pub async fn run(
    config: &Config,
    index: usize,
    task: &TaskConfig,
    port: SnapshotPort,
) -> Result<(), SnapshotError> {
    let mysql = |source| SnapshotError::Mysql {
        task: task.task_id.clone(),
        source,
    };
    let mut conn = Connection::connect(&config.database, 1 << 30, Duration::from_secs(10))
        .await
        .map_err(mysql)?;
    let version = conn.query("SELECT VERSION()").await.map_err(mysql)?;
    let version = version
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_default();
    if !version.to_ascii_lowercase().contains("mariadb") {
        return Err(SnapshotError::Table {
            task: task.task_id.clone(),
            table: task.table.table.clone(),
            problem: format!("the server is {version}; snapshots need MariaDB's binlog_snapshot_position (a consistent read with its binlog position), and MySQL is not supported yet"),
            fix: "set snapshot: never for this task".into(),
        });
    }
    // UTC for TIMESTAMP (as the binlog decoder renders it); backslash escapes on
    // for the key literals.
    conn.exec("SET SESSION time_zone = '+00:00', sql_mode = ''")
        .await
        .map_err(mysql)?;
    let mut progress = match port.saved_progress(&task.task_id) {
        Some(p) => p,
        None => SnapshotProgress {
            id: format!("{}-{}", task.task_id, crate::delivery::unix_now()),
            tables: tables_of(&mut conn, task).await.map_err(mysql)?,
            table: 0,
            after: None,
            chunks: 0,
            rows: 0,
            done: false,
        },
    };
    if progress.done {
        return Ok(());
    }
    tracing::info!(task = %task.task_id, snapshot = %progress.id, tables = ?progress.tables,
        from_table = progress.table, resumed = progress.after.is_some(), "snapshot starting");
    let started = Instant::now();
    let mut logged = Instant::now();
    while progress.table < progress.tables.len() {
        let qualified = progress.tables[progress.table].clone();
        let table = describe(&mut conn, task, &qualified).await?;
        loop {
            // Keys the stream delivers from now on are recorded: the read below
            // is consistent with a position after this moment.
            port.watch(index, &table.schema, &table.name);
            let chunk = match read_chunk(&mut conn, index, task, &table, &progress).await {
                Ok(c) => c,
                Err(e) => {
                    port.unwatch(index, &table.schema, &table.name);
                    return Err(e);
                }
            };
            let full = chunk.rows.len() >= task.snapshot_chunk as usize;
            let mut chunk = chunk;
            let (sent, dropped) = loop {
                match port.offer(&mut chunk)? {
                    Offer::Taken { sent, dropped } => break (sent, dropped),
                    Offer::NotYet => glommio::timer::sleep(Duration::from_millis(2)).await,
                }
            };
            progress = chunk.progress;
            tracing::debug!(task = %task.task_id, table = %qualified, sent, dropped, chunk = progress.chunks, "snapshot chunk");
            if logged.elapsed() >= Duration::from_secs(10) {
                logged = Instant::now();
                tracing::info!(task = %task.task_id, table = %qualified, rows = progress.rows,
                    rate = progress.rows as f64 / started.elapsed().as_secs_f64().max(1e-3), "snapshot running");
            }
            if !full {
                break;
            }
        }
    }
    tracing::info!(task = %task.task_id, snapshot = %progress.id, rows = progress.rows,
        seconds = started.elapsed().as_secs_f64(), "snapshot done");
    Ok(())
}

/// The base tables `task` watches, `schema.table`, sorted.
async fn tables_of(conn: &mut Connection, task: &TaskConfig) -> Result<Vec<String>, MysqlError> {
    let rows = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys') \
             ORDER BY TABLE_SCHEMA, TABLE_NAME",
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let schema = r.first().cloned().flatten()?;
            let name = r.get(1).cloned().flatten()?;
            task.table
                .matches(&schema, &name)
                .then(|| format!("{schema}.{name}"))
        })
        .collect())
}

/// Columns, key and kept columns of `qualified` (`schema.table`).
async fn describe(
    conn: &mut Connection,
    task: &TaskConfig,
    qualified: &str,
) -> Result<Table, SnapshotError> {
    let (schema, name) = qualified.split_once('.').unwrap_or(("", qualified));
    let mysql = |source| SnapshotError::Mysql {
        task: task.task_id.clone(),
        source,
    };
    let problem = |problem: String, fix: &str| SnapshotError::Table {
        task: task.task_id.clone(),
        table: qualified.to_owned(),
        problem,
        fix: fix.to_owned(),
    };
    let facts = crate::source::columns::lookup(conn, schema, name)
        .await
        .map_err(mysql)?;
    let types = conn
        .query(&format!(
            "SELECT DATA_TYPE, CHARACTER_SET_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
            quote(schema),
            quote(name)
        ))
        .await
        .map_err(mysql)?;
    if facts.is_empty() || facts.len() != types.len() {
        return Err(problem(
            "it is gone, or changed while being read".into(),
            "check the table exists, then snapshot again",
        ));
    }
    let mut columns = Vec::with_capacity(facts.len());
    for (f, t) in facts.iter().zip(&types) {
        let data_type = t.first().cloned().flatten().unwrap_or_default();
        let charset = t.get(1).cloned().flatten();
        let col = Column::new(
            &f.name,
            &data_type,
            charset.as_deref(),
            f.json,
            f.primary_key,
        )
        .map_err(|e| {
            problem(
                e.to_string(),
                "leave this table out of the task's table_name, or set snapshot: never",
            )
        })?;
        columns.push(col);
    }
    let keys = conn
        .query(&format!(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} AND INDEX_NAME = 'PRIMARY' \
             ORDER BY SEQ_IN_INDEX",
            quote(schema),
            quote(name)
        ))
        .await
        .map_err(mysql)?;
    let key_order: Vec<usize> = keys
        .iter()
        .filter_map(|r| r.first().cloned().flatten())
        .filter_map(|k| columns.iter().position(|c| c.name == k))
        .collect();
    if key_order.is_empty() {
        return Err(problem(
            "it has no primary key, so its rows cannot be read in key order or matched with the stream's changes".into(),
            "add a primary key, or leave the table out of this task",
        ));
    }
    let keep = columns
        .iter()
        .map(|c| {
            task.columns
                .as_ref()
                .is_none_or(|names| names.contains(&c.name))
        })
        .collect();
    Ok(Table {
        schema: schema.to_owned(),
        name: name.to_owned(),
        columns,
        key_order,
        keep,
    })
}

/// Reads the chunk after `progress.after` in one consistent read and renders it.
async fn read_chunk(
    conn: &mut Connection,
    index: usize,
    task: &TaskConfig,
    table: &Table,
    progress: &SnapshotProgress,
) -> Result<Chunk, SnapshotError> {
    let mysql = |source| SnapshotError::Mysql {
        task: task.task_id.clone(),
        source,
    };
    let bad_value = |e: render::BadValue| SnapshotError::Table {
        task: task.task_id.clone(),
        table: format!("{}.{}", table.schema, table.name),
        problem: e.to_string(),
        fix: "report this value; set snapshot: never to go on without the snapshot".into(),
    };
    let select: Vec<String> = table.columns.iter().map(Column::select).collect();
    let key_names: Vec<String> = table
        .key_order
        .iter()
        .map(|&i| quote_name(&table.columns[i].name))
        .collect();
    let after = match &progress.after {
        Some(values) if values.len() == key_names.len() => format!(
            " WHERE ({}) > ({})",
            key_names.join(", "),
            values.join(", ")
        ),
        _ => String::new(),
    };
    let sql = format!(
        "SELECT {} FROM {}.{}{after} ORDER BY {} LIMIT {}",
        select.join(", "),
        quote_name(&table.schema),
        quote_name(&table.name),
        key_names.join(", "),
        task.snapshot_chunk
    );
    conn.exec("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(mysql)?;
    let read = async {
        let status = conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
        let rows = conn.query_bytes(&sql).await?;
        Ok::<_, MysqlError>((status, rows))
    }
    .await;
    // A read-only transaction: ending it can only fail with the link.
    let ended = conn.exec("COMMIT").await;
    let (status, rows) = read.map_err(mysql)?;
    ended.map_err(mysql)?;
    let value = |name: &str| {
        status
            .iter()
            .find(|r| {
                r.first()
                    .cloned()
                    .flatten()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .and_then(|r| r.get(1).cloned().flatten())
    };
    let at = match (
        value("binlog_snapshot_file"),
        value("binlog_snapshot_position"),
    ) {
        (Some(file), Some(pos)) if !file.is_empty() => BinlogPosition {
            file,
            pos: pos.parse().unwrap_or(0),
        },
        _ => {
            return Err(SnapshotError::Table {
                task: task.task_id.clone(),
                table: format!("{}.{}", table.schema, table.name),
                problem: "the server reports no binlog_snapshot_file/position".into(),
                fix: "enable the binary log (log_bin) on the server".into(),
            })
        }
    };
    let full = rows.len() >= task.snapshot_chunk as usize;
    let mut next = progress.clone();
    next.chunks += 1;
    next.rows += rows.len() as u64;
    if full {
        let last = rows.last().map(Vec::as_slice).unwrap_or_default();
        let mut literals = Vec::with_capacity(table.key_order.len());
        for &i in &table.key_order {
            let v = last.get(i).cloned().flatten().unwrap_or_default();
            literals.push(render::literal(&table.columns[i], &v).map_err(bad_value)?);
        }
        next.after = Some(literals);
    } else {
        next.table += 1;
        next.after = None;
        next.done = next.table >= next.tables.len();
    }
    let event = match task.snapshot_event {
        SnapshotEvent::Snapshot => "snapshot",
        SnapshotEvent::Insert => "insert",
    };
    let now = crate::delivery::unix_now() as u32;
    let mut out = Vec::with_capacity(rows.len());
    let (mut data, mut key, mut primary_id, mut body) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::with_capacity(512));
    let key_columns: Vec<usize> = (0..table.columns.len())
        .filter(|&i| table.columns[i].primary_key)
        .collect();
    for (n, row) in rows.iter().enumerate() {
        data.clear();
        key.clear();
        primary_id.clear();
        data.push(b'{');
        let mut first = true;
        for (i, col) in table.columns.iter().enumerate() {
            let v = row.get(i).cloned().flatten();
            if table.keep[i] {
                if !first {
                    data.push(b',');
                }
                first = false;
                crate::binlog::rows::write_name(&mut data, Some(&col.name), i);
                render::write_value(&mut data, col, v.as_deref()).map_err(bad_value)?;
            }
        }
        data.push(b'}');
        // The key as the stream writes it: values back to back, in column order.
        let mut spans = Vec::with_capacity(key_columns.len());
        for &i in &key_columns {
            let v = row.get(i).cloned().flatten();
            let from = key.len();
            render::write_value(&mut key, &table.columns[i], v.as_deref()).map_err(bad_value)?;
            spans.push((i, from..key.len()));
        }
        match spans.as_slice() {
            [(_, r)] => primary_id.extend_from_slice(&key[r.clone()]),
            spans => {
                primary_id.push(b'{');
                for (k, (i, r)) in spans.iter().enumerate() {
                    if k > 0 {
                        primary_id.push(b',');
                    }
                    crate::binlog::rows::write_name(
                        &mut primary_id,
                        Some(&table.columns[*i].name),
                        *i,
                    );
                    primary_id.extend_from_slice(&key[r.clone()]);
                }
                primary_id.push(b'}');
            }
        }
        body.clear();
        let id_len = write_snapshot(
            &mut body,
            task.payload,
            &SnapshotRow {
                snapshot: &progress.id,
                schema: &table.schema,
                table: &table.name,
                data: &data,
                primary_id: &primary_id,
                key: &key,
                event,
                file: &at.file,
                pos: at.pos,
                chunk: next.chunks,
                last: next.done && n + 1 == rows.len(),
                timestamp: now,
            },
        );
        out.push(ChunkRow {
            key: key.clone(),
            body: bytes::Bytes::copy_from_slice(&body),
            id_len: u16::try_from(id_len).unwrap_or(u16::MAX),
        });
    }
    Ok(Chunk {
        task: index,
        task_id: task.task_id.clone(),
        schema: table.schema.clone(),
        table: table.name.clone(),
        at,
        rows: out,
        progress: next,
    })
}
