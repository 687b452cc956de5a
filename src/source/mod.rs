//! Following the source's binlog: connect, start the dump, hand every event to a
//! downstream, and on a dead link reconnect with backoff from the last transaction
//! boundary the downstream confirmed. Runs on the source core's glommio executor.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::binlog::gtid::GtidSet;
use crate::checkpoint::Checkpoint;
use crate::config::{Config, StartPosition};
use crate::mysql::replica::{self, BinlogPosition, ReplicaOptions, ServerInfo};
use crate::mysql::{Connection, MysqlError};
use crate::net::Backoff;
pub mod columns;
pub mod ddl;

use columns::{ColumnInfo, SchemaCache};

/// Largest packet accepted from the server (rows events of huge BLOBs included).
const MAX_PACKET: usize = 1 << 30;

/// What consumes the binlog stream.
// Downstreams run on one executor and are never boxed, so the future's auto traits do
// not matter.
#[allow(async_fn_in_trait)]
pub trait Downstream {
    /// Why the downstream gives up.
    type Error: std::error::Error;

    /// A (re)connection is about to stream events from `from`; `gtids`, when
    /// known, is every GTID before it. An error stops following.
    fn on_connect(
        &mut self,
        info: &ServerInfo,
        from: &BinlogPosition,
        gtids: Option<&GtidSet>,
    ) -> Result<(), Self::Error>;

    /// The link to the server failed; a reconnect follows after a backoff.
    fn on_disconnect(&mut self, _error: &MysqlError) {}

    /// Column facts from information_schema for the table mapped under `table_id`,
    /// answering [`Step::NeedColumns`]: apply them to this map and every later one
    /// with this id.
    fn on_columns(&mut self, table_id: u64, columns: &[ColumnInfo]);

    /// The tables a [`Step::Describe`] asked about, as information_schema had them
    /// before and after the DDL. The boundary is the downstream's to close here.
    fn on_described(&mut self, _tables: &[Described]) {}

    /// One whole event, as read; the downstream decodes it (the only parse of its
    /// bytes) and says what the follow loop must do about it.
    fn on_event(&mut self, event: &[u8]) -> Result<Step, Self::Error>;

    /// Waits until the downstream can take more events. The socket is not read meanwhile,
    /// so a slow downstream pushes back on the server through TCP.
    async fn ready(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// What an event means to the follow loop, as the decoder saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do: read on.
    Next,
    /// The event ended a transaction: resuming at `end` loses and repeats
    /// nothing. `ddl`: it was a statement that may have changed a table's columns.
    Boundary {
        /// Right after the event.
        end: BinlogPosition,
        /// Cached column facts are stale.
        ddl: bool,
    },
    /// A DDL on tables some task wants schema events for: a boundary like
    /// `Boundary { ddl: true }`, but first look the tables up (the cached columns
    /// as they were, then information_schema now) and answer with
    /// [`Downstream::on_described`] before the next event.
    Describe {
        /// Right after the event.
        end: BinlogPosition,
        /// (schema, table) the statement names.
        tables: Vec<(String, String)>,
    },
    /// A ROTATE: the stream goes on at `at` in the next file.
    Rotated {
        /// Where the next file's events start.
        at: BinlogPosition,
    },
    /// A TABLE_MAP without column names or keys (or any, on MariaDB): look the table
    /// up in information_schema and answer with [`Downstream::on_columns`] before
    /// the next event.
    NeedColumns {
        /// The id the map was stored under.
        table_id: u64,
        /// Its schema.
        schema: String,
        /// Its table.
        table: String,
    },
}

/// A table's columns around a DDL, as rowhook knows them.
#[derive(Debug, Clone)]
pub struct Described {
    /// Schema of the table.
    pub schema: String,
    /// The table.
    pub table: String,
    /// The columns rowhook had cached before the statement (`None`: not known).
    pub before: Option<Vec<ColumnInfo>>,
    /// The columns information_schema shows after it (`None`: the table is gone,
    /// or could not be read).
    pub after: Option<Vec<ColumnInfo>>,
}

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError<E: std::error::Error + 'static> {
    /// The server refused, or the link failed in a way a reconnect cannot fix.
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    /// The downstream failed.
    #[error(transparent)]
    Downstream(E),
}

/// What the follow loop is doing, for the watchdog's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Opening the TCP connection and logging in.
    Connecting = 0,
    /// Reading the server's settings and the start position.
    Inspecting = 1,
    /// Registering as a replica and starting the dump.
    Dumping = 2,
    /// Reading binlog events.
    Streaming = 3,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Inspecting => "reading server settings",
            Phase::Dumping => "starting the dump",
            Phase::Streaming => "streaming",
        }
    }
}

/// The follow loop's heartbeat: a count of steps, the phase it is in, and
/// whether it is waiting on purpose (a backoff, or the downstream pushing back). Shared
/// with a watchdog thread, so a source core that stops moving is seen from
/// outside it. A step is one relaxed add — no clock read on the hot path; each
/// observer ([`Watcher`]) times the count itself.
#[derive(Debug, Default)]
pub struct Liveness {
    steps: AtomicU64,
    phase: AtomicU8,
    idle_on_purpose: AtomicBool,
}

impl Liveness {
    fn beat(&self, phase: Phase) {
        self.steps.fetch_add(1, Relaxed);
        self.phase.store(phase as u8, Relaxed);
    }

    fn idle(&self, on_purpose: bool) {
        self.idle_on_purpose.store(on_purpose, Relaxed);
        self.steps.fetch_add(1, Relaxed);
    }

    /// An `ha` standby reads nothing on purpose until it is elected; the
    /// watchdogs leave it alone meanwhile.
    pub fn standing_by(&self, standby: bool) {
        self.idle(standby);
    }

    fn phase(&self) -> &'static str {
        match self.phase.load(Relaxed) {
            0 => Phase::Connecting,
            1 => Phase::Inspecting,
            2 => Phase::Dumping,
            _ => Phase::Streaming,
        }
        .name()
    }
}

/// One observer's view of a [`Liveness`]: when it last saw the count move.
#[derive(Debug)]
pub struct Watcher {
    live: Arc<Liveness>,
    seen: u64,
    since: Instant,
}

impl Watcher {
    /// Starts watching `live` now.
    pub fn new(live: Arc<Liveness>) -> Self {
        Watcher {
            seen: live.steps.load(Relaxed),
            live,
            since: Instant::now(),
        }
    }

    /// How long the loop has not moved while it should have, and in which phase;
    /// `None` while it waits on purpose.
    pub fn stalled_for(&mut self) -> Option<(Duration, &'static str)> {
        let steps = self.live.steps.load(Relaxed);
        if steps != self.seen || self.live.idle_on_purpose.load(Relaxed) {
            self.seen = steps;
            self.since = Instant::now();
        }
        if self.live.idle_on_purpose.load(Relaxed) {
            return None;
        }
        Some((self.since.elapsed(), self.live.phase()))
    }
}

/// How long the follow loop may make no progress at all before the watchdog
/// reconnects: well past the heartbeat-based dead-link timeout (3 heartbeats) and
/// the 10 s connect and query timeouts, which normally act first.
pub fn stall_limit(heartbeat: Duration) -> Duration {
    (heartbeat * 6).max(Duration::from_secs(30))
}

/// Ends (with an error that reconnects) when `live` shows no progress for `limit`.
async fn watchdog(live: &Arc<Liveness>, limit: Duration) -> MysqlError {
    let mut watcher = Watcher::new(live.clone());
    loop {
        glommio::timer::sleep(limit / 8).await;
        if let Some((since, phase)) = watcher.stalled_for() {
            if since > limit {
                return MysqlError::Stalled {
                    phase: phase.to_owned(),
                    after: since,
                };
            }
        }
    }
}

/// Where the next connection starts.
#[derive(Debug, Clone)]
struct Resume {
    /// The last transaction boundary read (or the checkpoint's position).
    at: Option<BinlogPosition>,
    /// Without `at`: start after this GTID set (`source.start: {gtid}`, or a
    /// checkpoint of another server of the cluster).
    gtids: Option<String>,
}

/// Follows the binlog from the `saved` checkpoint (else `source.start`) until the
/// downstream fails or a non-transient error occurs. `retry_first` decides whether a
/// failing first connection is retried (a service) or reported at once (an
/// interactive tool).
pub async fn follow<S: Downstream>(
    config: &Config,
    downstream: &mut S,
    saved: Option<&Checkpoint>,
    retry_first: bool,
    live: Arc<Liveness>,
) -> Result<(), SourceError<S::Error>>
where
    S::Error: 'static,
{
    let options = ReplicaOptions {
        server_id: config.database.server_id,
        heartbeat: config.source.heartbeat,
    };
    let mut resume = Resume {
        at: saved.map(Checkpoint::position),
        gtids: match &config.source.start {
            StartPosition::Gtid(set) => Some(set.clone()),
            _ => None,
        },
    };
    let mut connected_before = false;
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let started = Instant::now();
        live.idle(false);
        live.beat(Phase::Connecting);
        let streamed = stream_once(
            config,
            &options,
            saved,
            &mut resume,
            &mut connected_before,
            downstream,
            &live,
        );
        let limit = stall_limit(config.source.heartbeat);
        let streamed = futures_lite::future::or(streamed, async {
            Err(SourceError::Mysql(watchdog(&live, limit).await))
        });
        let err = match streamed.await {
            Ok(()) => return Ok(()),
            Err(SourceError::Downstream(e)) => return Err(SourceError::Downstream(e)),
            Err(SourceError::Mysql(e)) => e,
        };
        downstream.on_disconnect(&err);
        if !err.is_transient() || (!connected_before && !retry_first) {
            return Err(err.into());
        }
        // A link that worked for a while starts its backoff over.
        if started.elapsed() > Duration::from_secs(60) {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        let at = match (&resume.at, &resume.gtids) {
            (Some(p), _) => p.to_string(),
            (None, Some(g)) => format!("after GTIDs {g}"),
            (None, None) => "the configured start".to_owned(),
        };
        tracing::warn!(error = %err, retry_in = ?delay, resume = %at, "replication link lost; reconnecting");
        live.idle(true);
        glommio::timer::sleep(delay).await;
    }
}

async fn stream_once<S: Downstream>(
    config: &Config,
    options: &ReplicaOptions,
    saved: Option<&Checkpoint>,
    resume: &mut Resume,
    connected: &mut bool,
    downstream: &mut S,
    live: &Liveness,
) -> Result<(), SourceError<S::Error>>
where
    S::Error: 'static,
{
    let connect_timeout = Duration::from_secs(10);
    let mut conn = Connection::connect(&config.database, MAX_PACKET, connect_timeout).await?;
    live.beat(Phase::Inspecting);
    let info = replica::inspect(&mut conn, config.database.flavor).await?;
    if !info.row_image.eq_ignore_ascii_case("FULL") {
        tracing::warn!(binlog_row_image = %info.row_image, "old_data and deletes carry only some columns; set binlog_row_image=FULL for whole rows");
    }
    let mariadb = info.flavor == crate::config::Flavor::Mariadb;
    // A checkpoint of another server of the cluster: its file positions mean
    // nothing here, its GTID set does.
    if let Some(cp) = saved.filter(|cp| !*connected && cp.fails_over_to(&info)) {
        tracing::warn!(
            checkpoint_server = %cp.server_uuid.clone().unwrap_or_else(|| cp.server_id.to_string()),
            server_id = info.server_id,
            gtid_set = %cp.gtid_set.as_deref().unwrap_or_default(),
            "the checkpoint was written on another server; resuming here after its GTID set"
        );
        resume.at = None;
        resume.gtids = cp.gtid_set.clone();
    }
    let (from, gtid_start, seed) = match (&resume.at, &resume.gtids) {
        (Some(p), _) => {
            if mariadb {
                // The saved GTID state is known only at the checkpoint itself.
                let expected = saved
                    .filter(|cp| cp.position() == *p)
                    .and_then(|cp| cp.gtid_set.as_deref())
                    .and_then(|t| GtidSet::parse_mariadb(t).ok());
                let path = crate::checkpoint::path(&config.state.dir);
                replica::verify_mariadb_resume(
                    &mut conn,
                    p,
                    expected.as_ref(),
                    &path.display().to_string(),
                )
                .await?;
            }
            (p.clone(), None, None)
        }
        (None, Some(text)) => {
            let set = GtidSet::parse(text, mariadb).map_err(|e| MysqlError::NotUsable {
                problem: e.to_string(),
                fix: if mariadb {
                    "write domain-server-sequence triples, e.g. 0-1-100 or 0-1-100,1-2-7 (see SELECT @@gtid_binlog_pos)".into()
                } else {
                    "write uuid:interval sets, e.g. 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100 (see SELECT @@GLOBAL.gtid_executed)".into()
                },
            })?;
            // The dump names no file; the server's ROTATE tells it.
            let from = BinlogPosition {
                file: String::new(),
                pos: 4,
            };
            (from, Some(set.clone()), Some(set))
        }
        (None, None) => {
            let (from, seed) =
                replica::resolve_start(&mut conn, &config.source.start, &info).await?;
            (from, None, seed)
        }
    };
    // The downstream may refuse this server (a checkpoint from another one) before any
    // position of it is asked for.
    downstream
        .on_connect(&info, &from, seed.as_ref())
        .map_err(SourceError::Downstream)?;
    live.beat(Phase::Dumping);
    replica::start_dump(&mut conn, &info, options, &from, gtid_start.as_ref()).await?;
    live.beat(Phase::Streaming);
    // Heartbeats arrive every `heartbeat` when idle; three missed ones mean dead.
    conn.set_read_timeout(Some(config.source.heartbeat * 3))?;
    let shown = gtid_start
        .as_ref()
        .map_or_else(|| from.to_string(), |g| format!("after GTIDs {g}"));
    tracing::info!(server = %info.version, from = %shown, row_metadata = %info.row_metadata, "streaming binlog");
    // A GTID start has no file yet: until the first boundary, a reconnect starts
    // from the GTIDs again.
    if gtid_start.is_none() {
        resume.at = Some(from.clone());
    }
    *connected = true;
    let mut columns = ColumnLookup::default();
    while let Some(event) = conn.binlog_event().await? {
        live.beat(Phase::Streaming);
        let step = downstream
            .on_event(&event)
            .map_err(SourceError::Downstream)?;
        match &step {
            Step::NeedColumns {
                table_id,
                schema,
                table,
            } => {
                if let Some(cols) = columns.get(config, schema, table).await {
                    downstream.on_columns(*table_id, cols);
                }
            }
            Step::Boundary { ddl: true, .. } => columns.forget(),
            Step::Describe { tables, .. } => {
                let mut described: Vec<Described> = tables
                    .iter()
                    .map(|(schema, table)| Described {
                        schema: schema.clone(),
                        table: table.clone(),
                        before: columns.cache.get(schema, table).map(<[_]>::to_vec),
                        after: None,
                    })
                    .collect();
                columns.forget();
                for d in &mut described {
                    d.after = columns
                        .get(config, &d.schema, &d.table)
                        .await
                        .filter(|cols| !cols.is_empty())
                        .map(<[_]>::to_vec);
                }
                downstream.on_described(&described);
            }
            _ => {}
        }
        // A downstream pushing back (receivers behind) is a wait on purpose.
        live.idle(true);
        let ready = downstream.ready().await;
        live.idle(false);
        ready.map_err(SourceError::Downstream)?;
        match step {
            Step::Boundary { end, .. } | Step::Describe { end, .. } => resume.at = Some(end),
            // Until the first boundary a GTID start resumes from its GTIDs.
            Step::Rotated { at } if resume.at.is_some() || gtid_start.is_none() => {
                resume.at = Some(at)
            }
            _ => {}
        }
    }
    // The dump is blocking: the server ends it only when it shuts down. That is a
    // reconnect, never the end of the work (a supervisor would leave us down).
    Err(MysqlError::StreamEnded.into())
}

/// information_schema facts for the tables the decoder asks about, cached by name
/// until a DDL, over a second connection opened on first need.
#[derive(Default)]
struct ColumnLookup {
    cache: SchemaCache,
    conn: Option<Connection>,
    warned: bool,
}

impl ColumnLookup {
    /// The columns of `schema`.`table`, or `None` when they cannot be read (warned
    /// once; the decoder then keeps positional names).
    async fn get(&mut self, config: &Config, schema: &str, table: &str) -> Option<&[ColumnInfo]> {
        if self.cache.get(schema, table).is_none() {
            match self.fetch(config, schema, table).await {
                Ok(cols) => self.cache.insert(schema, table, cols),
                Err(e) => {
                    if !self.warned {
                        tracing::warn!(error = %e, table = %format!("{schema}.{table}"),
                            "cannot read information_schema; columns are named @1, @2, ... and primary_id may be null (grant SELECT, or set binlog_row_metadata=FULL)");
                        self.warned = true;
                    }
                    return None;
                }
            }
        }
        self.cache.get(schema, table)
    }

    /// Drops every cached table: a DDL may have changed any of them.
    fn forget(&mut self) {
        self.cache.clear();
    }

    async fn fetch(
        &mut self,
        config: &Config,
        schema_name: &str,
        table: &str,
    ) -> Result<Vec<ColumnInfo>, MysqlError> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(
                Connection::connect(&config.database, 1 << 24, Duration::from_secs(10)).await?,
            ),
        };
        let result = columns::lookup(conn, schema_name, table).await;
        if result.is_err() {
            // A broken side connection is reopened on the next need.
            self.conn = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_fires_on_a_stall_but_not_while_idle_on_purpose() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .unwrap();
        ex.run(async {
            let live = Arc::new(Liveness::default());
            let limit = Duration::from_millis(80);
            // Waiting on purpose (backoff, downstream pushing back) is never a stall.
            live.idle(true);
            let quiet =
                futures_lite::future::or(async { Some(watchdog(&live, limit).await) }, async {
                    glommio::timer::sleep(limit * 4).await;
                    None
                });
            assert!(quiet.await.is_none());
            live.idle(false);
            live.beat(Phase::Dumping);
            let started = Instant::now();
            let err = watchdog(&live, limit).await;
            assert!(started.elapsed() >= limit);
            assert!(err.is_transient());
            assert!(err.to_string().contains("while starting the dump"), "{err}");
        });
    }
}
