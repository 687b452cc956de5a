//! Binlog events -> row changes and the tasks that want them: the front half shared by
//! `tail` (prints payloads) and `run` (delivers them). The one place that decodes
//! an event (each is parsed once) and that tracks the current binlog file, the
//! transaction's GTID and the information_schema facts applied to each TABLE_MAP.
//!
//! The caller pulls: [`Changes::feed`] takes an event in, [`Changes::next_rows`]
//! hands out its rows events one by one (several in a compressed transaction),
//! [`RowsOut::next`] each row with the routes that want it, and [`Changes::step`]
//! says what the event means to the follow loop (a boundary to resume from, a
//! rotation, a table whose columns must be looked up). Nothing here calls back
//! into the caller.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use crate::binlog::event::EventHeader;
use crate::binlog::rows::RowIter;
use crate::binlog::{Decoder, Event, PositionedError, RowsEvent, RowsKind, TableMap};
use crate::config::{PayloadShape, TaskConfig};
use crate::dispatch::payload::{Row, RowPosition};
use crate::mysql::replica::BinlogPosition;
use crate::route::{Route, Router};
use crate::source::columns::ColumnInfo;
use crate::source::Step;

/// Decoder state plus routing.
pub struct Changes {
    stream: Stream,
    /// Reused buffer for the inner events of compressed transactions; apart from
    /// `stream`, so rows borrowed from it can be handed out while the stream
    /// state moves on.
    inflated: Vec<u8>,
    /// Events decoded.
    pub events: u64,
}

/// What the event stream has told so far.
struct Stream {
    decoder: Decoder,
    router: Option<Router>,
    /// The route of "every table" when no tasks are given.
    everything: [Route; 1],
    file: String,
    /// End of the last event taken in: where an unreadable header is reported.
    read_to: u64,
    gtid: Option<String>,
    columns: HashMap<u64, Vec<ColumnInfo>>,
    /// Table ids whose columns were asked for (once each, until a DDL).
    asked: HashSet<u64>,
    /// MariaDB marks JSON only in information_schema, so every table is looked up.
    look_up_every_table: bool,
    /// GTID of the transaction that ended last.
    ended_gtid: Option<String>,
    /// A PREVIOUS_GTIDS event's set, until taken.
    previous_gtids: Option<crate::binlog::gtid::GtidSet>,
    /// A transaction has begun and not ended.
    in_transaction: bool,
    /// Where the open transaction's first event starts (its id without a GTID).
    began_at: u64,
    /// The XID of the transaction that ended last (none for a DDL or a
    /// non-transactional COMMIT).
    ended_xid: Option<u64>,
    /// The last DDL statement read, with its default schema, until taken.
    ddl: Option<(String, String)>,
    /// Table ids whose map does not match information_schema and carries no
    /// names: their rows are quarantined, not labelled by guess.
    quarantined: HashSet<u64>,
}

impl Changes {
    /// Routes rows to `tasks`, or every row (pikachu shape) without tasks.
    pub fn new(tasks: Option<Vec<TaskConfig>>, file: String) -> Self {
        Changes {
            stream: Stream {
                decoder: Decoder::new(),
                router: tasks.map(Router::new),
                everything: [Route {
                    task: 0,
                    shape: PayloadShape::Pikachu,
                    keep: None,
                }],
                file,
                read_to: 4,
                gtid: None,
                columns: HashMap::new(),
                asked: HashSet::new(),
                look_up_every_table: false,
                ended_gtid: None,
                previous_gtids: None,
                in_transaction: false,
                began_at: 0,
                ended_xid: None,
                ddl: None,
                quarantined: HashSet::new(),
            },
            inflated: Vec::new(),
            events: 0,
        }
    }

    /// A replication stream starts at `from` with the negotiated checksum setting
    /// (it applies until the stream's own FDE arrives). On MariaDB every table's
    /// columns are asked for (`mariadb`), elsewhere only where a TABLE_MAP lacks
    /// names or keys.
    pub fn on_connect(&mut self, checksum: bool, from: &BinlogPosition, mariadb: bool) {
        self.stream.decoder.set_checksum(checksum);
        self.stream.file.clone_from(&from.file);
        self.stream.read_to = from.pos;
        self.stream.gtid = None;
        self.stream.in_transaction = false;
        self.stream.look_up_every_table = mariadb;
    }

    /// Whether a transaction has begun and not ended (nothing may be slipped in
    /// between its events).
    pub fn in_transaction(&self) -> bool {
        self.stream.in_transaction
    }

    /// Routes to `tasks` from now on (a task change, taken between transactions:
    /// every table is matched again at its next rows event).
    pub fn set_tasks(&mut self, tasks: Vec<TaskConfig>) {
        self.stream.router = Some(Router::new(tasks));
    }

    /// information_schema facts for `table_id`: applied to its map now and to every
    /// later TABLE_MAP under this id.
    pub fn on_columns(&mut self, table_id: u64, columns: &[ColumnInfo]) {
        self.stream.columns.insert(table_id, columns.to_vec());
        self.stream.apply_columns(table_id);
    }

    /// The binlog file events come from now.
    pub fn file(&self) -> &str {
        &self.stream.file
    }

    /// Takes in `event` (one whole event); its rows come out of
    /// [`Changes::next_rows`], then [`Changes::step`] tells what it meant.
    pub fn feed(&mut self, event: &[u8]) -> Result<Feed, PositionedError> {
        self.events += 1;
        let header = EventHeader::parse(event).map_err(|source| PositionedError {
            file: self.stream.file.clone(),
            pos: self.stream.read_to,
            source,
        })?;
        // Artificial events (log_pos 0) sit at no position of their own.
        let pos = u64::from(header.log_pos).saturating_sub(u64::from(header.event_size));
        if header.log_pos != 0 {
            self.stream.read_to = u64::from(header.log_pos);
        }
        Ok(Feed {
            header,
            pos,
            stage: Stage::Start,
            rows_out: Cell::new(0),
            ends_transaction: false,
            ddl: false,
            rotated_to: None,
            needs_columns: None,
        })
    }

    /// What the event `feed` took in means to the follow loop; call once
    /// `next_rows` returned `None`.
    pub fn step(&self, feed: &Feed) -> Step {
        if let Some(pos) = feed.rotated_to {
            return Step::Rotated {
                at: BinlogPosition {
                    file: self.stream.file.clone(),
                    pos,
                },
            };
        }
        if feed.ends_transaction {
            return Step::Boundary {
                end: BinlogPosition {
                    file: self.stream.file.clone(),
                    pos: feed.pos + u64::from(feed.header.event_size),
                },
                ddl: feed.ddl,
            };
        }
        if let Some(map) = feed
            .needs_columns
            .and_then(|id| self.stream.decoder.table(id))
        {
            return Step::NeedColumns {
                table_id: map.table_id,
                schema: map.schema.clone(),
                table: map.table.clone(),
            };
        }
        Step::Next
    }

    /// Decodes `event` (the one `feed` took in) up to its next rows event that a
    /// task wants and hands out its rows; `None` once the event is done. A
    /// compressed transaction holds several rows events: call until `None`.
    pub fn next_rows<'a>(
        &'a mut self,
        feed: &'a mut Feed,
        event: &'a [u8],
    ) -> Result<Option<RowsOut<'a>>, PositionedError> {
        let Changes {
            stream, inflated, ..
        } = self;
        if let Stage::Start = feed.stage {
            feed.stage = Stage::Done;
            let (header, ev) = stream
                .decoder
                .decode_after(feed.header, event)
                .map_err(|e| stream.at(feed, e))?;
            let Event::Compressed(payload) = ev else {
                return match stream.apply(feed, ev)? {
                    Some(rows) => stream.rows_out(feed, header, rows).map(Some),
                    None => Ok(None),
                };
            };
            payload.inflate(inflated).map_err(|e| stream.at(feed, e))?;
            feed.stage = Stage::Inner(0);
        }
        let inflated: &'a [u8] = inflated;
        // The inner events of a compressed transaction all sit at the outer event's
        // position; rows are numbered across them.
        let found = loop {
            let Stage::Inner(offset) = feed.stage else {
                return Ok(None);
            };
            let rest = inflated.get(offset..).unwrap_or_default();
            let Some(inner) = crate::binlog::compressed::events(rest).next() else {
                feed.stage = Stage::Done;
                return Ok(None);
            };
            let inner = inner.map_err(|e| stream.at(feed, e))?;
            feed.stage = Stage::Inner(offset + inner.len());
            let (header, ev) = stream
                .decoder
                .decode_inner(inner)
                .map_err(|e| stream.at(feed, e))?;
            if let Some(rows) = stream.apply(feed, ev)? {
                break (header, rows);
            }
        };
        stream.rows_out(feed, found.0, found.1).map(Some)
    }

    /// The set of a PREVIOUS_GTIDS event just fed (MySQL, start of a file).
    pub fn take_previous_gtids(&mut self) -> Option<crate::binlog::gtid::GtidSet> {
        self.stream.previous_gtids.take()
    }

    /// The GTID of the open transaction (when the server has GTIDs).
    pub fn gtid(&self) -> Option<&str> {
        self.stream.gtid.as_deref()
    }

    /// The GTID of the transaction the last boundary ended (when the server has GTIDs).
    pub fn ended_gtid(&self) -> Option<&str> {
        self.stream.ended_gtid.as_deref()
    }

    /// The DDL statement the last `Boundary { ddl: true }` was, with its default
    /// schema: (schema, statement).
    pub fn take_ddl(&mut self) -> Option<(String, String)> {
        self.stream.ddl.take()
    }

    /// The XID of the transaction that ended last, if it had one.
    pub fn ended_xid(&self) -> Option<u64> {
        self.stream.ended_xid
    }
}

impl Stream {
    fn at(&self, feed: &Feed, source: crate::binlog::DecodeError) -> PositionedError {
        PositionedError {
            file: self.file.clone(),
            pos: feed.pos,
            source,
        }
    }

    /// Applies one decoded event to the state; a rows event that some task wants
    /// is returned for the caller.
    fn apply<'e>(
        &mut self,
        feed: &mut Feed,
        ev: Event<'e>,
    ) -> Result<Option<RowsEvent<'e>>, PositionedError> {
        let opens = matches!(
            ev,
            Event::Gtid(_) | Event::TableMap(_) | Event::Rows(_) | Event::Query { .. }
        );
        if opens && !self.in_transaction {
            self.began_at = feed.pos;
        }
        match ev {
            Event::Gtid(g) => {
                self.gtid = Some(g);
                self.in_transaction = true;
            }
            Event::PreviousGtids(set) => self.previous_gtids = Some(set),
            Event::TableMap(id) => {
                self.in_transaction = true;
                // Judged again against this map (below, or when its columns come).
                self.quarantined.remove(&id);
                if self.columns.contains_key(&id) {
                    self.apply_columns(id);
                } else if let Some(map) = self.decoder.table(id) {
                    let complete = map.has_names && map.has_primary_key_info;
                    // Inside a compressed transaction the rows follow in the same
                    // event, before any lookup could answer: positional names there.
                    let top_level = matches!(feed.stage, Stage::Done);
                    if top_level && (self.look_up_every_table || !complete) && self.asked.insert(id)
                    {
                        feed.needs_columns = Some(id);
                    }
                }
                if let Some(r) = &mut self.router {
                    r.invalidate(id);
                }
            }
            Event::Rows(rows) => {
                self.in_transaction = true;
                let Some(table) = self.decoder.table(rows.table_id) else {
                    return Err(self.at(
                        feed,
                        crate::binlog::DecodeError::UnknownTable(rows.table_id),
                    ));
                };
                let wanted = match &mut self.router {
                    None => true,
                    Some(router) => {
                        router.prepare(table);
                        router
                            .routes(table.table_id)
                            .iter()
                            .any(|route| router.wants(route.task, rows.kind))
                    }
                };
                return Ok(wanted.then_some(rows));
            }
            Event::Xid(xid) => {
                feed.ends_transaction |= self.end_transaction();
                self.ended_xid = Some(xid);
            }
            // DDL and COMMIT end a transaction; BEGIN starts one.
            Event::Query { sql, schema } if !sql.eq_ignore_ascii_case("BEGIN") => {
                feed.ends_transaction |= self.end_transaction();
                if crate::source::columns::is_ddl(&sql) {
                    // Columns may have changed: ask again on the next TABLE_MAPs.
                    self.columns.clear();
                    self.asked.clear();
                    feed.ddl = true;
                    self.ddl = Some((schema, sql));
                }
            }
            Event::Rotate { file, pos } => {
                self.file = file;
                feed.rotated_to = Some(pos);
            }
            Event::Compressed(_) => {
                return Err(self.at(
                    feed,
                    crate::binlog::DecodeError::malformed("transaction payload", "nested payload"),
                ))
            }
            // BEGIN.
            Event::Query { .. } => self.in_transaction = true,
            Event::FormatDescription | Event::Heartbeat | Event::Other(_) => {}
        }
        Ok(None)
    }

    /// The rows of `rows`, routed.
    fn rows_out<'a>(
        &'a self,
        feed: &'a Feed,
        header: EventHeader,
        rows: RowsEvent<'a>,
    ) -> Result<RowsOut<'a>, PositionedError> {
        let table = self.decoder.table(rows.table_id).ok_or_else(|| {
            self.at(
                feed,
                crate::binlog::DecodeError::UnknownTable(rows.table_id),
            )
        })?;
        let routes: &[Route] = match &self.router {
            None => &self.everything,
            Some(r) => r.routes(table.table_id),
        };
        Ok(RowsOut {
            iter: rows.rows(table).map_err(|e| self.at(feed, e))?,
            kind: rows.kind,
            table,
            routes,
            router: self.router.as_ref(),
            file: &self.file,
            gtid: self.gtid.as_deref(),
            pos: feed.pos,
            timestamp: header.timestamp,
            numbered: &feed.rows_out,
            began_at: self.began_at,
            quarantined: self.quarantined.contains(&rows.table_id),
        })
    }

    /// Applies the saved information_schema facts to the map under `id`.
    fn apply_columns(&mut self, id: u64) {
        self.quarantined.remove(&id);
        if let (Some(cols), Some(map)) = (self.columns.get(&id), self.decoder.table_mut(id)) {
            let columns = map.columns.len();
            if !crate::source::columns::apply(map, cols) {
                if map.has_names {
                    tracing::warn!(table = %map.qualified_name(), "table changed since this event was written; the event's own column names are used");
                } else {
                    // Names from information_schema describe the table now, not
                    // when these rows were written: guessing would mislabel
                    // values, so its rows go to the quarantine until a map matches.
                    tracing::warn!(table = %map.qualified_name(), binlog_columns = columns, information_schema_columns = cols.len(),
                        "table changed since these rows were written and the binlog carries no column names (MINIMAL metadata); quarantining its rows (rowhook quarantine list)");
                    self.quarantined.insert(id);
                }
            }
        }
        if let Some(r) = &mut self.router {
            r.invalidate(id);
        }
    }

    fn end_transaction(&mut self) -> bool {
        self.in_transaction = false;
        self.ended_gtid = self.gtid.take();
        self.ended_xid = None;
        true
    }
}

/// One event taken in by [`Changes::feed`].
#[derive(Debug)]
pub struct Feed {
    header: EventHeader,
    pos: u64,
    stage: Stage,
    /// Rows handed out so far: numbers the rows of a compressed transaction's
    /// inner events on, so webhook ids stay unique.
    rows_out: Cell<u32>,
    ends_transaction: bool,
    /// A statement that may have changed columns.
    ddl: bool,
    /// A ROTATE: the position in the next file.
    rotated_to: Option<u64>,
    /// A TABLE_MAP whose columns should be looked up.
    needs_columns: Option<u64>,
}

impl Feed {
    /// Whether the event ended a transaction: resuming right after it loses and
    /// repeats nothing. Final once `next_rows` returned `None`.
    pub fn ends_transaction(&self) -> bool {
        self.ends_transaction
    }

    /// The event's header.
    pub fn header(&self) -> &EventHeader {
        &self.header
    }

    /// Where the event starts in its file (0 for artificial events).
    pub fn pos(&self) -> u64 {
        self.pos
    }
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Start,
    /// Inside a compressed transaction: the offset of the next inner event.
    Inner(usize),
    Done,
}

/// The rows of one rows event, each with every route that wants it.
pub struct RowsOut<'a> {
    iter: RowIter<'a, 'a>,
    kind: RowsKind,
    table: &'a TableMap,
    routes: &'a [Route],
    router: Option<&'a Router>,
    file: &'a str,
    gtid: Option<&'a str>,
    pos: u64,
    timestamp: u32,
    numbered: &'a Cell<u32>,
    began_at: u64,
    quarantined: bool,
}

impl<'a> RowsOut<'a> {
    /// The table's columns could not be named (MINIMAL metadata, the table
    /// changed since): these rows go to the quarantine, not to receivers.
    pub fn quarantined(&self) -> bool {
        self.quarantined
    }

    /// The id of the transaction these rows belong to: its GTID, else
    /// `file:pos` of its first event (stable across restarts, as positions are).
    pub fn transaction_id(&self) -> String {
        match self.gtid {
            Some(g) => g.to_owned(),
            None => format!("{}:{}", self.file, self.began_at),
        }
    }

    /// The next row and the routes (tasks) that want it; `None` at the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(
        &mut self,
    ) -> Option<Result<(Row<'a>, impl Iterator<Item = &'a Route> + 'a), PositionedError>> {
        let change = self.iter.next()?;
        let index = self.numbered.get();
        self.numbered.set(index.saturating_add(1));
        let change = match change {
            Ok(c) => c,
            Err(source) => {
                return Some(Err(PositionedError {
                    file: self.file.to_owned(),
                    pos: self.pos,
                    source,
                }))
            }
        };
        let row = Row {
            at: RowPosition {
                file: self.file,
                pos: self.pos,
                index,
                timestamp: self.timestamp,
                gtid: self.gtid,
            },
            kind: self.kind,
            table: self.table,
            change,
            transaction: None,
        };
        let (router, kind) = (self.router, self.kind);
        let routes = self
            .routes
            .iter()
            .filter(move |r| router.is_none_or(|x| x.wants(r.task, kind)));
        Some(Ok((row, routes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::file::BinlogFile;
    use crate::dispatch::payload::PayloadWriter;

    /// Every (row, route) a recorded binlog yields with `tasks`, as payload lines,
    /// and how many transactions ended.
    fn pull(fixture: &str, tasks: Option<Vec<TaskConfig>>) -> (Vec<String>, usize) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/binlog")
            .join(fixture);
        let mut file = BinlogFile::open(&path).unwrap();
        let mut changes = Changes::new(tasks, fixture.to_owned());
        let mut payloads = PayloadWriter::default();
        let (mut lines, mut ended) = (Vec::new(), 0);
        while let Some((offset, event)) = file.next_event().unwrap() {
            let mut feed = changes.feed(event).unwrap();
            assert_eq!(feed.pos(), offset, "the header's position is the file's");
            while let Some(mut rows) = changes.next_rows(&mut feed, event).unwrap() {
                while let Some(next) = rows.next() {
                    let (row, routes) = next.unwrap();
                    for route in routes {
                        let mut out = Vec::new();
                        payloads.write(&mut out, route.shape, &row, None).unwrap();
                        lines.push(String::from_utf8(out).unwrap());
                    }
                }
            }
            ended += usize::from(feed.ends_transaction());
        }
        (lines, ended)
    }

    fn task(table: &str) -> TaskConfig {
        let text = format!(
            "tasks:\n  - {{task_id: t, table_name: '{table}', events: [insert, update, delete], callback_url: 'http://h/x'}}\n"
        );
        crate::config::for_test("", &text).unwrap().tasks.remove(0)
    }

    #[test]
    fn rows_come_out_in_binlog_order_with_unique_ids() {
        let (lines, ended) = pull("mysql-binlog-connector-java__mysql-bin.sakila", None);
        assert!(lines.len() > 40_000, "{}", lines.len());
        assert_eq!(ended, 53, "the recording commits 53 transactions");
        let ids: std::collections::HashSet<&str> =
            lines.iter().map(|l| l.split('"').nth(3).unwrap()).collect();
        assert_eq!(ids.len(), lines.len(), "every row has its own id");
    }

    #[test]
    fn tasks_pick_tables_and_a_compressed_transaction_yields_its_inner_rows() {
        let (all, _) = pull("mysql-binlog-connector-java__mysql-bin.sakila", None);
        let (actors, _) = pull(
            "mysql-binlog-connector-java__mysql-bin.sakila",
            Some(vec![task("actor")]),
        );
        assert!(!actors.is_empty() && actors.len() < all.len());
        assert!(actors.iter().all(|l| l.contains("\"table\":\"actor\"")));
        let (none, _) = pull(
            "mysql-binlog-connector-java__mysql-bin.sakila",
            Some(vec![task("no_such_table")]),
        );
        assert!(none.is_empty());
        // TRANSACTION_PAYLOAD: BEGIN, TABLE_MAP, WRITE_ROWS, XID inside one event.
        let (inner, ended) = pull("rust_mysql_common__transaction_compression.000001", None);
        assert_eq!(inner.len(), 1, "{inner:?}");
        assert!(ended >= 1);
    }
}
