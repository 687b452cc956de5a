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

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::checkpoint::SnapshotProgress;
use crate::config::{Config, SnapshotEvent, SnapshotMethod, SnapshotMode, TaskConfig};
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
    /// Indexes into `columns` of the primary key, in index order (the scan order);
    /// without one, of a unique key of NOT NULL columns.
    key_order: Vec<usize>,
    /// `key_order` is a unique key, not the primary key: the stream has no key for
    /// these rows (one lane per task orders them), and matches them by its values.
    unique: bool,
    /// Which columns the task sends.
    keep: Vec<bool>,
    /// Rows per chunk: `snapshot_chunk`, fewer for wide rows so a chunk stays
    /// near [`CHUNK_BYTES`].
    chunk_rows: u32,
}

/// About how many bytes of rows one chunk holds at most (wide rows make smaller
/// chunks): the chunk and its rendered payloads are in memory at once.
const CHUNK_BYTES: u64 = 16 << 20;

/// What an operator asks for (`rowhook snapshot`, `POST /tasks/{id}/snapshot`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Only this table (`table` or `schema.table`) of the task.
    pub table: Option<String>,
    /// Only rows meeting this SQL condition.
    pub filter: Option<String>,
}

/// A task's snapshot as the admin API shows it.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The task it belongs to (a slot may hold another task after a change).
    pub task: String,
    /// `none`, `running`, `done`, `failed` or `cancelled`.
    pub state: &'static str,
    /// The run's id.
    pub id: Option<String>,
    /// The table being read (`schema.table`).
    pub table: Option<String>,
    /// Rows read so far (this run, resumed rows included).
    pub rows: u64,
    /// information_schema's estimate of the rows to read.
    pub estimated_rows: u64,
    /// When this process started (or resumed) it.
    pub started: Option<Instant>,
    /// Rows read when it started here (for the rate).
    pub rows_at_start: u64,
    /// Why it failed.
    pub error: Option<String>,
    cancel: bool,
}

impl Status {
    /// Rows per second since it started here.
    pub fn rate(&self) -> f64 {
        let secs = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        (self.rows.saturating_sub(self.rows_at_start)) as f64 / secs.max(1e-3)
    }
}

/// Why a snapshot cannot start now.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// One is running for the task.
    #[error(
        "a snapshot of task {0:?} is running; cancel it first (DELETE /tasks/{{id}}/snapshot)"
    )]
    Running(String),
    /// The task is disabled.
    #[error("task {0:?} is disabled in the configuration")]
    Disabled(String),
}

/// The snapshots of a running instance: who runs, how far, and the way to start
/// and cancel them. Lives on the source core (the admin server shares it).
pub struct Snapshots {
    config: Config,
    /// The live task set (slot = index).
    tasks: Rc<RefCell<crate::control::TaskTable>>,
    port: SnapshotPort,
    status: RefCell<Vec<Status>>,
}

impl Snapshots {
    /// The snapshots of the tasks in `tasks`, handing chunks to `port`.
    pub fn new(
        config: &Config,
        tasks: Rc<RefCell<crate::control::TaskTable>>,
        port: SnapshotPort,
    ) -> Rc<Self> {
        let me = Rc::new(Snapshots {
            status: RefCell::new(Vec::new()),
            config: config.clone(),
            tasks,
            port,
        });
        me.sync_status();
        me
    }

    /// The task in slot `index`, if it is in the set.
    fn task(&self, index: usize) -> Option<TaskConfig> {
        let tasks = self.tasks.borrow();
        let slot = tasks.slots().get(index)?;
        (!slot.removed).then(|| slot.config.clone())
    }

    /// One status per slot; a slot that holds another task than before starts
    /// from what the checkpoint says of the new one.
    fn sync_status(&self) {
        let tasks = self.tasks.borrow();
        let mut status = self.status.borrow_mut();
        for (i, slot) in tasks.slots().iter().enumerate() {
            let id = &slot.config.task_id;
            if status.get(i).is_some_and(|s| s.task == *id) {
                continue;
            }
            let fresh = Status {
                task: id.clone(),
                state: match self.port.saved_progress(id) {
                    Some(p) if p.done => "done",
                    _ => "none",
                },
                ..Status::default()
            };
            match status.get_mut(i) {
                Some(s) => *s = fresh,
                None => status.push(fresh),
            }
        }
    }

    /// At start: resumes every unfinished snapshot of the checkpoint, and starts
    /// `snapshot: initial` tasks that have none. After a task change: the same
    /// for tasks that are new in the set, and removed tasks' snapshots stop.
    pub fn start_due(self: &Rc<Self>) {
        self.sync_status();
        let slots = self.tasks.borrow().slots().to_vec();
        for (index, slot) in slots.iter().enumerate() {
            let task = &slot.config;
            if slot.removed || !task.enabled {
                self.cancel(index);
                continue;
            }
            if self.status(index).state == "running" {
                continue;
            }
            let due = match self.port.saved_progress(&task.task_id) {
                Some(p) => !p.done && self.status(index).state == "none",
                None => {
                    task.snapshot == SnapshotMode::Initial && self.status(index).state == "none"
                }
            };
            if due {
                self.spawn(index, None);
            }
        }
    }

    /// Starts a new snapshot of task `index` (its previous one, done or not, is
    /// replaced).
    pub fn start(self: &Rc<Self>, index: usize, request: Request) -> Result<(), Refused> {
        self.sync_status();
        let Some(task) = self.task(index) else {
            return Err(Refused::Disabled(format!("slot {index}")));
        };
        if !task.enabled {
            return Err(Refused::Disabled(task.task_id.clone()));
        }
        if self.status(index).state == "running" {
            return Err(Refused::Running(task.task_id.clone()));
        }
        self.spawn(index, Some(request));
        Ok(())
    }

    /// Asks the running snapshot of task `index` to stop after its current chunk;
    /// false when none runs.
    pub fn cancel(&self, index: usize) -> bool {
        let mut status = self.status.borrow_mut();
        match status.get_mut(index) {
            Some(s) if s.state == "running" => {
                s.cancel = true;
                true
            }
            _ => false,
        }
    }

    /// Where task `index`'s snapshot stands.
    pub fn status(&self, index: usize) -> Status {
        self.status.borrow().get(index).cloned().unwrap_or_default()
    }

    fn spawn(self: &Rc<Self>, index: usize, fresh: Option<Request>) {
        {
            let mut status = self.status.borrow_mut();
            let task = status
                .get(index)
                .map(|s| s.task.clone())
                .unwrap_or_default();
            let Some(s) = status.get_mut(index) else {
                return;
            };
            *s = Status {
                task,
                state: "running",
                started: Some(Instant::now()),
                ..Status::default()
            };
        }
        let me = self.clone();
        glommio::spawn_local(async move { me.keep_running(index, fresh).await }).detach();
    }

    fn set(&self, index: usize, f: impl FnOnce(&mut Status)) {
        if let Some(s) = self.status.borrow_mut().get_mut(index) {
            f(s);
        }
    }

    /// Runs the snapshot until it is done, retrying with a backoff while the server
    /// is unreachable (each retry resumes at the last chunk whose rows are all
    /// delivered). A snapshot that cannot go on is logged and shown; the task
    /// streams on.
    async fn keep_running(&self, index: usize, mut fresh: Option<Request>) {
        let Some(task) = self.task(index) else {
            return;
        };
        let task = &task;
        let mut backoff =
            crate::net::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            let ran = self.run(index, task, fresh.take()).await;
            self.port.release();
            match ran {
                Ok(cancelled) => {
                    self.set(index, |s| {
                        s.state = if cancelled { "cancelled" } else { "done" }
                    });
                    return;
                }
                Err(SnapshotError::Mysql { source, .. }) if source.is_transient() => {
                    let delay = backoff.next_delay();
                    tracing::warn!(task = %task.task_id, error = %source, retry_in = ?delay, "snapshot interrupted; resuming");
                    glommio::timer::sleep(delay).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "snapshot stopped; the task streams on without it");
                    self.set(index, |s| {
                        s.state = "failed";
                        s.error = Some(e.to_string());
                    });
                    return;
                }
            }
        }
    }

    /// Reads every table of `task` (index `index` in the plan) from its saved
    /// progress, or from the start for a `fresh` request, chunk by chunk, handing
    /// each chunk to the stream. Ok(true) when cancelled.
    async fn run(
        &self,
        index: usize,
        task: &TaskConfig,
        fresh: Option<Request>,
    ) -> Result<bool, SnapshotError> {
        let port = &self.port;
        let mysql = |source| SnapshotError::Mysql {
            task: task.task_id.clone(),
            source,
        };
        let mut conn = Connection::connect(&self.config.database, 1 << 30, Duration::from_secs(10))
            .await
            .map_err(mysql)?;
        let version = conn.query("SELECT VERSION()").await.map_err(mysql)?;
        let version = version
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_default();
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        let method = match task.snapshot_method {
            SnapshotMethod::Auto if mariadb => SnapshotMethod::Position,
            SnapshotMethod::Auto => SnapshotMethod::Watermarks,
            SnapshotMethod::Position if !mariadb => {
                return Err(SnapshotError::Table {
                    task: task.task_id.clone(),
                    table: task.table.table.clone(),
                    problem: format!("the server is {version}; snapshot_method: position needs MariaDB's binlog_snapshot_position (the binlog position of a consistent read)"),
                    fix: "set snapshot_method: watermarks (or auto) for this task".into(),
                });
            }
            m => m,
        };
        // UTC for TIMESTAMP (as the binlog decoder renders it); backslash escapes on
        // for the key literals.
        conn.exec("SET SESSION time_zone = '+00:00', sql_mode = ''")
            .await
            .map_err(mysql)?;
        let saved = port.saved_progress(&task.task_id);
        let mut progress = match (fresh, saved) {
            (None, Some(p)) => p,
            (request, _) => {
                let request = request.unwrap_or_default();
                let mut tables = tables_of(&mut conn, task).await.map_err(mysql)?;
                if let Some(wanted) = &request.table {
                    tables.retain(|t| {
                        t == wanted || t.split_once('.').is_some_and(|(_, name)| name == wanted)
                    });
                    if tables.is_empty() {
                        return Err(SnapshotError::Table {
                            task: task.task_id.clone(),
                            table: wanted.clone(),
                            problem: "it is not one of the task's tables".into(),
                            fix: format!(
                                "name a table the task's table_name ({}) matches",
                                task.table.table
                            ),
                        });
                    }
                }
                SnapshotProgress {
                    id: format!("{}-{}", task.task_id, crate::delivery::unix_now()),
                    tables,
                    table: 0,
                    after: None,
                    filter: request.filter,
                    chunks: 0,
                    rows: 0,
                    done: false,
                }
            }
        };
        if progress.done {
            return Ok(false);
        }
        let estimated = estimate(&mut conn, &progress.tables).await.map_err(mysql)?;
        self.set(index, |s| {
            s.id = Some(progress.id.clone());
            s.rows = progress.rows;
            s.rows_at_start = progress.rows;
            s.estimated_rows = estimated;
        });
        let placed = match method {
            SnapshotMethod::Watermarks => "watermarks",
            _ => "position",
        };
        tracing::info!(task = %task.task_id, snapshot = %progress.id, tables = ?progress.tables, method = placed,
            from_table = progress.table, resumed = progress.after.is_some() || progress.table > 0,
            "snapshot starting");
        let started = Instant::now();
        let mut logged = Instant::now();
        if progress.tables.is_empty() {
            // A user without SELECT sees no tables at all: say so rather than
            // record an empty snapshot as done.
            return Err(SnapshotError::Table {
                task: task.task_id.clone(),
                table: match &task.table.schema {
                    Some(s) => format!("{s}.{}", task.table.table),
                    None => task.table.table.clone(),
                },
                problem: "no table this user can see matches the task's table_name".into(),
                fix: "check the table exists and GRANT SELECT on it to the configured user".into(),
            });
        }
        while progress.table < progress.tables.len() {
            let qualified = progress.tables[progress.table].clone();
            self.set(index, |s| s.table = Some(qualified.clone()));
            let table = describe(&mut conn, task, &qualified).await?;
            loop {
                if self.status(index).cancel {
                    progress.done = true;
                    self.offer_empty(index, task, &progress).await?;
                    tracing::info!(task = %task.task_id, snapshot = %progress.id, rows = progress.rows, "snapshot cancelled");
                    return Ok(true);
                }
                // Keys the stream delivers from now on are recorded: the read below
                // is consistent with a position after this moment.
                let unique = table.unique.then(|| {
                    table
                        .key_order
                        .iter()
                        .map(|&i| table.columns[i].name.clone())
                        .collect()
                });
                port.watch(index, &table.schema, &table.name, unique);
                let chunk =
                    match read_chunk(&mut conn, method, index, task, &table, &progress).await {
                        Ok(c) => c,
                        Err(e) => {
                            port.unwatch(index, &table.schema, &table.name);
                            return Err(e);
                        }
                    };
                let full = chunk.rows.len() >= table.chunk_rows as usize;
                let mut chunk = chunk;
                let (sent, dropped) = loop {
                    match port.offer(&mut chunk)? {
                        Offer::Taken { sent, dropped } => break (sent, dropped),
                        Offer::NotYet => glommio::timer::sleep(Duration::from_millis(2)).await,
                    }
                };
                progress = chunk.progress;
                self.set(index, |s| s.rows = progress.rows);
                if let Some(rate) = task.snapshot_rate {
                    // Paced over the whole run here: a slow chunk is not made up
                    // for by a burst, and a fast one waits its share.
                    let read_here = progress
                        .rows
                        .saturating_sub(self.status(index).rows_at_start);
                    let due = Duration::from_secs_f64(read_here as f64 / f64::from(rate.max(1)));
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        glommio::timer::sleep(wait).await;
                    }
                }
                tracing::debug!(task = %task.task_id, table = %qualified, sent, dropped, chunk = progress.chunks, "snapshot chunk");
                if logged.elapsed() >= Duration::from_secs(10) {
                    logged = Instant::now();
                    tracing::info!(task = %task.task_id, table = %qualified, rows = progress.rows,
                        estimated_rows = estimated,
                        rate = progress.rows as f64 / started.elapsed().as_secs_f64().max(1e-3), "snapshot running");
                }
                if !full {
                    break;
                }
            }
        }
        tracing::info!(task = %task.task_id, snapshot = %progress.id, rows = progress.rows,
            seconds = started.elapsed().as_secs_f64(), "snapshot done");
        Ok(false)
    }

    /// Records `progress` through the stream with no rows (so it lands in order
    /// with the chunks before it).
    async fn offer_empty(
        &self,
        index: usize,
        task: &TaskConfig,
        progress: &SnapshotProgress,
    ) -> Result<(), SnapshotError> {
        let mut chunk = Chunk {
            task: index,
            task_id: task.task_id.clone(),
            schema: String::new(),
            table: String::new(),
            from: None,
            at: BinlogPosition {
                file: String::new(),
                pos: 0,
            },
            rows: Vec::new(),
            progress: progress.clone(),
        };
        while self.port.offer(&mut chunk)? == Offer::NotYet {
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }
}

/// The query of one chunk: `select` (expressions) of `schema.table` after the key
/// values `after` (SQL literals, in the order of `keys`), meeting `filter`, in key
/// order. The key condition is spelled out (`a > x OR (a = x AND b > y)`), a
/// shape the optimizer turns into a range scan of the primary key.
pub fn chunk_query(
    schema: &str,
    table: &str,
    select: &[String],
    keys: &[String],
    after: Option<&[String]>,
    filter: Option<&str>,
    limit: u32,
) -> String {
    let names: Vec<String> = keys.iter().map(|k| quote_name(k)).collect();
    let mut conditions = Vec::new();
    if let Some(values) = after.filter(|v| v.len() == names.len()) {
        let alternatives: Vec<String> = (0..names.len())
            .map(|i| {
                let mut terms: Vec<String> = (0..i)
                    .map(|j| format!("{} = {}", names[j], values[j]))
                    .collect();
                terms.push(format!("{} > {}", names[i], values[i]));
                format!("({})", terms.join(" AND "))
            })
            .collect();
        conditions.push(format!("({})", alternatives.join(" OR ")));
    }
    if let Some(filter) = filter {
        conditions.push(format!("({filter})"));
    }
    let condition = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    format!(
        "SELECT {} FROM {}.{}{condition} ORDER BY {} LIMIT {limit}",
        select.join(", "),
        quote_name(schema),
        quote_name(table),
        names.join(", "),
    )
}

/// information_schema's row estimate for `tables` (`schema.table`).
async fn estimate(conn: &mut Connection, tables: &[String]) -> Result<u64, MysqlError> {
    let mut total = 0;
    for t in tables {
        let (schema, name) = t.split_once('.').unwrap_or(("", t));
        total += table_figure(conn, "TABLE_ROWS", schema, name).await?;
    }
    Ok(total)
}

/// A numeric column of `information_schema.TABLES` for `schema.table` (0 when
/// the server does not know it).
async fn table_figure(
    conn: &mut Connection,
    column: &str,
    schema: &str,
    table: &str,
) -> Result<u64, MysqlError> {
    let rows = conn
        .query(&format!(
            "SELECT {column} FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}",
            quote(schema),
            quote(table)
        ))
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
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
    let columns = columns_of(conn, schema, name)
        .await
        .map_err(mysql)?
        .map_err(|e| {
            problem(
                e.to_string(),
                "leave this table out of the task's table_name, or set snapshot: never",
            )
        })?;
    if columns.is_empty() {
        return Err(problem(
            "information_schema shows no columns for it: it is gone, changed while being read, or the user lacks SELECT on it".into(),
            "check the table exists and GRANT SELECT on it to the configured user, then snapshot again",
        ));
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
    let position = |k: &str| columns.iter().position(|c| c.name == k);
    let mut key_order: Vec<usize> = keys
        .iter()
        .filter_map(|r| r.first().cloned().flatten())
        .filter_map(|k| position(&k))
        .collect();
    let unique = key_order.is_empty();
    if unique {
        key_order = unique_not_null_key(conn, schema, name)
            .await
            .map_err(mysql)?
            .iter()
            .filter_map(|k| position(k))
            .collect();
    }
    if key_order.is_empty() {
        return Err(problem(
            "it has neither a primary key nor a unique key of NOT NULL columns, so its rows cannot be read in key order or matched with the stream's changes".into(),
            "add a primary key, or leave the table out of this task",
        ));
    }
    let keep = kept(task, &columns);
    if unique {
        if let Some(&i) = key_order.iter().find(|&&i| !keep[i]) {
            return Err(problem(
                format!("it has no primary key, and its unique key's column {} is not in the task's columns, so its rows cannot be matched with the stream's changes", columns[i].name),
                "add the unique key's columns to the task's columns list",
            ));
        }
    }
    Ok(Table {
        schema: schema.to_owned(),
        name: name.to_owned(),
        columns,
        key_order,
        unique,
        keep,
        chunk_rows: chunk_rows(
            task.snapshot_chunk,
            table_figure(conn, "AVG_ROW_LENGTH", schema, name)
                .await
                .map_err(mysql)?,
        ),
    })
}

/// Which of `columns` the task sends.
fn kept(task: &TaskConfig, columns: &[Column]) -> Vec<bool> {
    columns
        .iter()
        .map(|c| {
            task.columns
                .as_ref()
                .is_none_or(|names| names.contains(&c.name))
        })
        .collect()
}

/// The columns of `schema.name` as snapshots read them (empty when
/// information_schema shows none, or disagrees with itself mid-change).
async fn columns_of(
    conn: &mut Connection,
    schema: &str,
    name: &str,
) -> Result<Result<Vec<Column>, render::Unsupported>, MysqlError> {
    let facts = crate::source::columns::lookup(conn, schema, name).await?;
    let types = conn
        .query(&format!(
            "SELECT DATA_TYPE, CHARACTER_SET_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
            quote(schema),
            quote(name)
        ))
        .await?;
    if facts.len() != types.len() {
        return Ok(Ok(Vec::new()));
    }
    let mut columns = Vec::with_capacity(facts.len());
    for (f, t) in facts.iter().zip(&types) {
        let data_type = t.first().cloned().flatten().unwrap_or_default();
        let charset = t.get(1).cloned().flatten();
        match Column::new(
            &f.name,
            &data_type,
            charset.as_deref(),
            f.json,
            f.primary_key,
        ) {
            Ok(c) => columns.push(c),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(columns))
}

/// Rows per chunk for rows of `average` bytes: at most `configured`, and about
/// [`CHUNK_BYTES`] of rows.
fn chunk_rows(configured: u32, average: u64) -> u32 {
    let fit = CHUNK_BYTES / average.max(1);
    u32::try_from(fit)
        .unwrap_or(u32::MAX)
        .clamp(1, configured.max(1))
}

/// The columns, in index order, of the first unique index whose columns are all
/// NOT NULL (empty when there is none).
async fn unique_not_null_key(
    conn: &mut Connection,
    schema: &str,
    table: &str,
) -> Result<Vec<String>, MysqlError> {
    let rows = conn
        .query(&format!(
            "SELECT s.INDEX_NAME, s.COLUMN_NAME, c.IS_NULLABLE FROM information_schema.STATISTICS s \
             JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA \
             AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME \
             WHERE s.TABLE_SCHEMA = {} AND s.TABLE_NAME = {} AND s.NON_UNIQUE = 0 \
             ORDER BY s.INDEX_NAME, s.SEQ_IN_INDEX",
            quote(schema),
            quote(table)
        ))
        .await?;
    let mut indexes: Vec<(String, Vec<String>, bool)> = Vec::new();
    for r in rows {
        let (Some(index), Some(column)) =
            (r.first().cloned().flatten(), r.get(1).cloned().flatten())
        else {
            continue;
        };
        let not_null = r.get(2).cloned().flatten().as_deref() == Some("NO");
        match indexes.last_mut() {
            Some((name, cols, ok)) if *name == index => {
                cols.push(column);
                *ok &= not_null;
            }
            _ => indexes.push((index, vec![column], not_null)),
        }
    }
    Ok(indexes
        .into_iter()
        .find(|(_, _, ok)| *ok)
        .map(|(_, cols, _)| cols)
        .unwrap_or_default())
}

/// Reads the chunk after `progress.after` in one consistent read and renders it,
/// placed in the binlog by `method` (`Position` or `Watermarks`).
async fn read_chunk(
    conn: &mut Connection,
    method: SnapshotMethod,
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
    let no_binlog = || SnapshotError::Table {
        task: task.task_id.clone(),
        table: format!("{}.{}", table.schema, table.name),
        problem: "the server reports no binlog position".into(),
        fix: "enable the binary log (log_bin) on the server".into(),
    };
    let select: Vec<String> = table.columns.iter().map(Column::select).collect();
    let key_names: Vec<String> = table
        .key_order
        .iter()
        .map(|&i| table.columns[i].name.clone())
        .collect();
    let sql = chunk_query(
        &table.schema,
        &table.name,
        &select,
        &key_names,
        progress.after.as_deref(),
        progress.filter.as_deref(),
        table.chunk_rows,
    );
    let watermarks = method == SnapshotMethod::Watermarks;
    conn.exec("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(mysql)?;
    let read = async {
        let status = if watermarks {
            Vec::new()
        } else {
            conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?
        };
        let rows = conn.query_bytes(&sql).await?;
        Ok::<_, MysqlError>((status, rows))
    }
    .await;
    // A read-only transaction: ending it can only fail with the link.
    let ended = conn.exec("COMMIT").await;
    let (status, rows) = read.map_err(mysql)?;
    ended.map_err(mysql)?;
    let (from, at) = if watermarks {
        // After the read: it saw nothing that ends past the binlog's end now.
        // What it saw of the changes before (back to when the watch began) is
        // not known, so the merge leaves all of those keys to the stream.
        let high = binlog_end(conn)
            .await
            .map_err(mysql)?
            .ok_or_else(no_binlog)?;
        (None, high)
    } else {
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
        match (
            value("binlog_snapshot_file"),
            value("binlog_snapshot_position"),
        ) {
            (Some(file), Some(pos)) if !file.is_empty() => {
                let at = BinlogPosition {
                    file,
                    pos: pos.parse().unwrap_or(0),
                };
                (Some(at.clone()), at)
            }
            _ => return Err(no_binlog()),
        }
    };
    let full = rows.len() >= table.chunk_rows as usize;
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
    // The stream's key: primary-key values in column order (none without one).
    let key_columns: Vec<usize> = (0..table.columns.len())
        .filter(|&i| table.columns[i].primary_key)
        .collect();
    let unique_names: Vec<String> = table
        .key_order
        .iter()
        .map(|&i| table.columns[i].name.clone())
        .collect();
    for (n, row) in rows.iter().enumerate() {
        render_row(
            &table.columns,
            &table.keep,
            &key_columns,
            row,
            (&mut data, &mut key, &mut primary_id),
        )
        .map_err(bad_value)?;
        // What the stream records for this row: the key, or the unique key's values.
        let matched = if table.unique {
            crate::dispatch::merge::unique_key_of(&data, &unique_names)
        } else {
            key.clone()
        };
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
                key: &matched,
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
            matched,
            body: bytes::Bytes::copy_from_slice(&body),
            id_len: u16::try_from(id_len).unwrap_or(u16::MAX),
        });
    }
    Ok(Chunk {
        task: index,
        task_id: task.task_id.clone(),
        schema: table.schema.clone(),
        table: table.name.clone(),
        from,
        at,
        rows: out,
        progress: next,
    })
}

/// Where the server's binlog ends now (`SHOW MASTER STATUS`, or its MySQL 8.4
/// name `SHOW BINARY LOG STATUS`); `None` when the binary log is off.
async fn binlog_end(conn: &mut Connection) -> Result<Option<BinlogPosition>, MysqlError> {
    let rows = match conn.query("SHOW MASTER STATUS").await {
        Ok(rows) => rows,
        // 1064: a syntax error — MySQL 8.4 removed the old name.
        Err(MysqlError::Server { code: 1064, .. }) => conn.query("SHOW BINARY LOG STATUS").await?,
        Err(e) => return Err(e),
    };
    Ok(rows.first().and_then(|r| {
        let file = r.first().cloned().flatten().filter(|f| !f.is_empty())?;
        let pos = r.get(1).cloned().flatten()?.parse().ok()?;
        Some(BinlogPosition { file, pos })
    }))
}

/// Renders one text-protocol row of `columns` into (`data` object of the kept
/// columns, the stream's key: key values back to back, the `primary_id` value),
/// each cleared first. `key_columns`: indexes of the primary-key columns.
fn render_row(
    columns: &[Column],
    keep: &[bool],
    key_columns: &[usize],
    row: &[Option<bytes::Bytes>],
    (data, key, primary_id): (&mut Vec<u8>, &mut Vec<u8>, &mut Vec<u8>),
) -> Result<(), render::BadValue> {
    data.clear();
    key.clear();
    primary_id.clear();
    data.push(b'{');
    let mut first = true;
    for (i, col) in columns.iter().enumerate() {
        let v = row.get(i).cloned().flatten();
        if keep.get(i).copied().unwrap_or(true) {
            if !first {
                data.push(b',');
            }
            first = false;
            crate::binlog::rows::write_name(data, Some(&col.name), i);
            render::write_value(data, col, v.as_deref())?;
        }
    }
    data.push(b'}');
    let mut spans = Vec::with_capacity(key_columns.len());
    for &i in key_columns {
        let v = row.get(i).cloned().flatten();
        let from = key.len();
        render::write_value(key, &columns[i], v.as_deref())?;
        spans.push((i, from..key.len()));
    }
    match spans.as_slice() {
        [] => primary_id.extend_from_slice(b"null"),
        [(_, r)] => primary_id.extend_from_slice(&key[r.clone()]),
        spans => {
            primary_id.push(b'{');
            for (k, (i, r)) in spans.iter().enumerate() {
                if k > 0 {
                    primary_id.push(b',');
                }
                crate::binlog::rows::write_name(primary_id, Some(&columns[*i].name), *i);
                primary_id.extend_from_slice(&key[r.clone()]);
            }
            primary_id.push(b'}');
        }
    }
    Ok(())
}

/// A sample payload of `task`'s table shape for `POST /tasks/{id}/test`: the
/// first row of its first table (placeholder values when the table is empty),
/// as `event: insert`, with a `test:` id and `"test": true`. Returns (body, id).
pub async fn sample(
    database: &crate::config::DatabaseConfig,
    task: &TaskConfig,
) -> Result<(Vec<u8>, String), SnapshotError> {
    let mysql = |source| SnapshotError::Mysql {
        task: task.task_id.clone(),
        source,
    };
    let mut conn = Connection::connect(database, 1 << 24, Duration::from_secs(10))
        .await
        .map_err(mysql)?;
    conn.exec("SET SESSION time_zone = '+00:00'")
        .await
        .map_err(mysql)?;
    let tables = tables_of(&mut conn, task).await.map_err(mysql)?;
    let Some(qualified) = tables.first() else {
        return Err(SnapshotError::Table {
            task: task.task_id.clone(),
            table: task.table.table.clone(),
            problem: "no table on the server matches the task's table_name".into(),
            fix: "create the table, or correct table_name".into(),
        });
    };
    let (schema, name) = qualified.split_once('.').unwrap_or(("", qualified));
    let table_problem = |problem: String| SnapshotError::Table {
        task: task.task_id.clone(),
        table: qualified.clone(),
        problem,
        fix: "leave this table out of the task's table_name".into(),
    };
    let columns = columns_of(&mut conn, schema, name)
        .await
        .map_err(mysql)?
        .map_err(|e| table_problem(e.to_string()))?;
    let select: Vec<String> = columns.iter().map(Column::select).collect();
    let rows = conn
        .query_bytes(&format!(
            "SELECT {} FROM {}.{} LIMIT 1",
            select.join(", "),
            render::quote_name(schema),
            render::quote_name(name)
        ))
        .await
        .map_err(mysql)?;
    let row = rows.into_iter().next().unwrap_or_else(|| {
        columns
            .iter()
            .map(|c| render::placeholder(c.kind).map(bytes::Bytes::from_static))
            .collect()
    });
    let keep = kept(task, &columns);
    let key_columns: Vec<usize> = (0..columns.len())
        .filter(|&i| columns[i].primary_key)
        .collect();
    let (mut data, mut key, mut primary_id) = (Vec::new(), Vec::new(), Vec::new());
    render_row(
        &columns,
        &keep,
        &key_columns,
        &row,
        (&mut data, &mut key, &mut primary_id),
    )
    .map_err(|e| table_problem(e.to_string()))?;
    let now = crate::delivery::unix_now();
    let id = format!("test:{}:{now}", task.task_id);
    let mut body = Vec::with_capacity(512);
    crate::dispatch::payload::write_sample(
        &mut body,
        task.payload,
        &crate::dispatch::payload::SampleRow {
            id: &id,
            schema,
            table: name,
            data: &data,
            primary_id: &primary_id,
            timestamp: u32::try_from(now).unwrap_or(u32::MAX),
        },
    );
    Ok((body, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_rows_make_smaller_chunks() {
        assert_eq!(
            chunk_rows(10_000, 0),
            10_000,
            "unknown width: as configured"
        );
        assert_eq!(chunk_rows(10_000, 100), 10_000);
        assert_eq!(chunk_rows(10_000, 1 << 20), 16, "1 MB rows: 16 per chunk");
        assert_eq!(chunk_rows(10_000, 1 << 30), 1);
    }
}
