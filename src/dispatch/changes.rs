//! Binlog events -> row changes and the tasks that want them: the front half shared by
//! `tail` (prints payloads) and `run` (delivers them). Tracks the current binlog file,
//! the transaction's GTID and information_schema facts applied to each TABLE_MAP.

use std::collections::HashMap;

use crate::binlog::{Decoder, Event, PositionedError};
use crate::config::{PayloadShape, TaskConfig};
use crate::dispatch::payload::{Row, RowPosition};
use crate::route::{Route, Router};
use crate::source::columns::ColumnInfo;

/// Decoder state plus routing.
pub struct Changes {
    decoder: Decoder,
    router: Option<Router>,
    /// The route of "every table" when no tasks are given.
    everything: [Route; 1],
    file: String,
    gtid: Option<String>,
    columns: HashMap<u64, Vec<ColumnInfo>>,
    /// GTID of the transaction that ended last.
    ended_gtid: Option<String>,
    /// Events decoded.
    pub events: u64,
    /// Reused buffer for the inner events of compressed transactions.
    inflated: Vec<u8>,
    /// A PREVIOUS_GTIDS event's set, until taken.
    previous_gtids: Option<crate::binlog::gtid::GtidSet>,
}

impl Changes {
    /// Routes rows to `tasks`, or every row (pikachu shape) without tasks.
    pub fn new(tasks: Option<Vec<TaskConfig>>, file: String) -> Self {
        Changes {
            decoder: Decoder::new(),
            router: tasks.map(Router::new),
            everything: [Route {
                task: 0,
                shape: PayloadShape::Pikachu,
                keep: None,
            }],
            file,
            gtid: None,
            columns: HashMap::new(),
            ended_gtid: None,
            events: 0,
            inflated: Vec::new(),
            previous_gtids: None,
        }
    }

    /// A replication stream starts at `file` with the negotiated checksum setting
    /// (it applies until the stream's own FDE arrives).
    pub fn on_connect(&mut self, checksum: bool, file: &str) {
        self.decoder.set_checksum(checksum);
        self.file = file.to_owned();
        self.gtid = None;
    }

    /// information_schema facts for `table_id`, applied to its next TABLE_MAP.
    pub fn on_columns(&mut self, table_id: u64, columns: &[ColumnInfo]) {
        self.columns.insert(table_id, columns.to_vec());
    }

    /// The binlog file events come from.
    pub fn set_file(&mut self, file: &str) {
        if file != self.file {
            self.file = file.to_owned();
        }
    }

    /// Decodes the event at `pos` and calls `each` for every (row, route) pair in
    /// binlog order. Returns true when the event ends a transaction.
    pub fn feed<E: From<PositionedError>>(
        &mut self,
        pos: u64,
        event: &[u8],
        mut each: impl FnMut(&Row<'_>, &Route) -> Result<(), E>,
    ) -> Result<bool, E> {
        let at = |file: &str, source| PositionedError {
            file: file.to_owned(),
            pos,
            source,
        };
        let (header, ev) = self.decoder.decode(event).map_err(|e| at(&self.file, e))?;
        self.events += 1;
        let Event::Compressed(payload) = ev else {
            return self
                .apply(pos, header, ev, 0, &mut each)
                .map(|(end, _)| end);
        };
        // A compressed transaction: its inner events all sit at the outer event's
        // position, so rows are numbered across them to keep webhook ids unique.
        let mut inflated = std::mem::take(&mut self.inflated);
        let result = (|| {
            payload
                .inflate(&mut inflated)
                .map_err(|e| at(&self.file, e))?;
            let (mut ended, mut rows) = (false, 0u32);
            for inner in crate::binlog::compressed::events(&inflated) {
                let inner = inner.map_err(|e| at(&self.file, e))?;
                let (header, ev) = self
                    .decoder
                    .decode_inner(inner)
                    .map_err(|e| at(&self.file, e))?;
                let (end, n) = self.apply(pos, header, ev, rows, &mut each)?;
                ended |= end;
                rows += n;
            }
            Ok(ended)
        })();
        self.inflated = inflated;
        result
    }

    /// Applies one decoded event; rows are numbered from `first_row`. Returns
    /// whether it ends a transaction and how many rows it had.
    fn apply<E: From<PositionedError>>(
        &mut self,
        pos: u64,
        header: crate::binlog::event::EventHeader,
        ev: Event<'_>,
        first_row: u32,
        each: &mut impl FnMut(&Row<'_>, &Route) -> Result<(), E>,
    ) -> Result<(bool, u32), E> {
        let file = &self.file;
        let at = |source| PositionedError {
            file: file.clone(),
            pos,
            source,
        };
        match ev {
            Event::Rotate { file, .. } => self.file = file,
            Event::Gtid(g) => self.gtid = Some(g),
            Event::PreviousGtids(set) => self.previous_gtids = Some(set),
            Event::TableMap(id) => {
                if let (Some(cols), Some(map)) = (self.columns.get(&id), self.decoder.table_mut(id))
                {
                    if !crate::source::columns::apply(map, cols) {
                        tracing::warn!(table = %map.qualified_name(), "table changed since this event was written; columns keep positional names");
                    }
                }
                if let Some(r) = &mut self.router {
                    r.invalidate(id);
                }
            }
            Event::Rows(rows) => {
                let Some(table) = self.decoder.table(rows.table_id) else {
                    return Err(at(crate::binlog::DecodeError::UnknownTable(rows.table_id)).into());
                };
                if let Some(router) = &mut self.router {
                    router.prepare(table);
                }
                let router = self.router.as_ref();
                let routes: &[Route] = match router {
                    None => &self.everything,
                    Some(r) => r.routes(table.table_id),
                };
                let wanted = |r: &&Route| router.is_none_or(|x| x.wants(r.task, rows.kind));
                if !routes.iter().any(|r| wanted(&r)) {
                    return Ok((false, 0));
                }
                let mut count = 0u32;
                for (index, change) in rows.rows(table).map_err(at)?.enumerate() {
                    let row = Row {
                        at: RowPosition {
                            file: &self.file,
                            pos,
                            index: first_row.saturating_add(index as u32),
                            timestamp: header.timestamp,
                            gtid: self.gtid.as_deref(),
                        },
                        kind: rows.kind,
                        table,
                        change: change.map_err(at)?,
                    };
                    for route in routes.iter().filter(wanted) {
                        each(&row, route)?;
                    }
                    count += 1;
                }
                return Ok((false, count));
            }
            Event::Xid(_) => return Ok((self.end_transaction(), 0)),
            // DDL and COMMIT end a transaction; BEGIN starts one.
            Event::Query { sql, .. } if !sql.eq_ignore_ascii_case("BEGIN") => {
                return Ok((self.end_transaction(), 0))
            }
            Event::Compressed(_) => {
                return Err(at(crate::binlog::DecodeError::malformed(
                    "transaction payload",
                    "nested payload",
                ))
                .into())
            }
            Event::Query { .. } | Event::FormatDescription | Event::Heartbeat | Event::Other(_) => {
            }
        }
        Ok((false, 0))
    }

    fn end_transaction(&mut self) -> bool {
        self.ended_gtid = self.gtid.take();
        true
    }

    /// The set of a PREVIOUS_GTIDS event just fed (MySQL, start of a file).
    pub fn take_previous_gtids(&mut self) -> Option<crate::binlog::gtid::GtidSet> {
        self.previous_gtids.take()
    }

    /// The GTID of the transaction the last boundary ended (when the server has GTIDs).
    pub fn ended_gtid(&self) -> Option<&str> {
        self.ended_gtid.as_deref()
    }
}
