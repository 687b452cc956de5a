//! `rowhook tail`: binlog events -> the payloads tasks would send, as JSON lines.
//! The operator's window into the decoder; also its end-to-end test surface.

use std::io::Write;
use std::path::Path;

use crate::binlog::file::{BinlogFile, FileError};
use crate::binlog::{Decoder, Event, PositionedError};
use crate::config::{PayloadShape, TaskConfig};
use crate::payload::{PayloadWriter, Row, RowPosition};
use crate::route::Router;

/// Why tailing stopped.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The binlog file could not be read to its end.
    #[error(transparent)]
    File(#[from] FileError),
    /// An event could not be decoded.
    #[error(transparent)]
    Decode(#[from] PositionedError),
    /// The replication link failed for good.
    #[error(transparent)]
    Source(#[from] crate::mysql::MysqlError),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Counts of what was printed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TailStats {
    /// Events read.
    pub events: u64,
    /// Payload lines written.
    pub payloads: u64,
}

/// Turns events into payload lines, for every table or only those tasks watch.
pub struct Tail<W: Write> {
    decoder: Decoder,
    router: Option<Router>,
    payloads: PayloadWriter,
    line: Vec<u8>,
    out: W,
    file: String,
    gtid: Option<String>,
    stats: TailStats,
    /// information_schema facts per table id, applied to each new TABLE_MAP.
    columns: std::collections::HashMap<u64, Vec<crate::schema::ColumnInfo>>,
}

impl<W: Write> Tail<W> {
    /// A tail writing to `out`; `tasks` select tables, columns and payload shape.
    pub fn new(tasks: Option<Vec<TaskConfig>>, out: W, file: String) -> Self {
        Tail {
            decoder: Decoder::new(),
            router: tasks.map(Router::new),
            payloads: PayloadWriter::default(),
            line: Vec::with_capacity(4096),
            out,
            file,
            gtid: None,
            stats: TailStats::default(),
            columns: std::collections::HashMap::new(),
        }
    }

    /// What has been printed so far.
    pub fn stats(&self) -> TailStats {
        self.stats
    }

    /// Decodes one whole event starting at binlog position `pos` and prints its rows.
    /// Returns true when the event ends a transaction.
    pub fn feed(&mut self, pos: u64, event: &[u8]) -> Result<bool, TailError> {
        let at = |source| PositionedError {
            file: self.file.clone(),
            pos,
            source,
        };
        let (header, ev) = self.decoder.decode(event).map_err(at)?;
        self.stats.events += 1;
        match ev {
            Event::Rotate { file, .. } => self.file = file,
            Event::Gtid(g) => self.gtid = Some(g),
            Event::TableMap(id) => {
                if let (Some(cols), Some(map)) = (self.columns.get(&id), self.decoder.table_mut(id))
                {
                    if !crate::schema::apply(map, cols) {
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
                self.line.clear();
                let mut printed = 0;
                for (index, change) in rows.rows(table).map_err(at)?.enumerate() {
                    let row = Row {
                        at: RowPosition {
                            file: &self.file,
                            pos,
                            index: index as u32,
                            timestamp: header.timestamp,
                            gtid: self.gtid.as_deref(),
                        },
                        kind: rows.kind,
                        table,
                        change: change.map_err(at)?,
                    };
                    match &mut self.router {
                        None => {
                            self.payloads
                                .write(&mut self.line, PayloadShape::Pikachu, &row, None)
                                .map_err(at)?;
                            self.line.push(b'\n');
                            printed += 1;
                        }
                        Some(router) => {
                            for route in router.routes(table, rows.kind) {
                                self.payloads
                                    .write(&mut self.line, route.shape, &row, route.keep.as_deref())
                                    .map_err(at)?;
                                self.line.push(b'\n');
                                printed += 1;
                            }
                        }
                    }
                }
                self.out.write_all(&self.line)?;
                self.stats.payloads += printed;
            }
            Event::Xid(_) => return Ok(self.end_transaction()),
            // DDL and COMMIT end a transaction; BEGIN starts one.
            Event::Query { sql, .. } if !sql.eq_ignore_ascii_case("BEGIN") => {
                return Ok(self.end_transaction())
            }
            Event::Query { .. } | Event::FormatDescription | Event::Heartbeat | Event::Other(_) => {
            }
        }
        Ok(false)
    }

    fn end_transaction(&mut self) -> bool {
        self.gtid = None;
        true
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> Result<(W, TailStats), TailError> {
        self.out.flush()?;
        Ok((self.out, self.stats))
    }
}

impl<W: Write> crate::source::EventSink for Tail<W> {
    type Error = TailError;

    fn on_connect(
        &mut self,
        info: &crate::mysql::replica::ServerInfo,
        from: &crate::mysql::replica::BinlogPosition,
    ) {
        // Until the stream's FDE arrives, the negotiated checksum setting applies
        // (the fake ROTATE that opens the dump already carries one).
        self.decoder.set_checksum(info.checksum);
        self.file = from.file.clone();
        self.gtid = None;
    }

    fn on_columns(&mut self, table_id: u64, columns: &[crate::schema::ColumnInfo]) {
        self.columns.insert(table_id, columns.to_vec());
    }

    fn on_event(&mut self, file: &str, pos: u64, event: &[u8]) -> Result<bool, TailError> {
        if file != self.file {
            self.file = file.to_owned();
        }
        let boundary = self.feed(pos, event)?;
        if boundary {
            self.out.flush()?;
        }
        Ok(boundary)
    }
}

/// Follows a live server and prints payloads until the link fails for good.
pub fn tail_live<W: Write>(
    config: &crate::config::Config,
    tasks: Option<Vec<TaskConfig>>,
    out: W,
) -> Result<(), TailError> {
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("rowhook-source")
        .make()
        .map_err(|e| {
            TailError::Output(std::io::Error::other(format!(
                "cannot start the io_uring executor: {e}"
            )))
        })?;
    executor.run(async move {
        let mut tail = Tail::new(tasks, out, String::new());
        match crate::source::follow(config, &mut tail, false).await {
            Ok(()) => Ok(()),
            Err(crate::source::SourceError::Sink(e)) => Err(e),
            Err(crate::source::SourceError::Mysql(e)) => Err(TailError::Source(e)),
        }
    })
}

/// Prints the payloads of every row event in the binlog file at `path`.
pub fn tail_file<W: Write>(
    path: &Path,
    tasks: Option<Vec<TaskConfig>>,
    out: W,
) -> Result<TailStats, TailError> {
    let mut file = BinlogFile::open(path)?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut tail = Tail::new(tasks, out, name);
    while let Some((offset, event)) = file.next_event()? {
        tail.feed(offset, event)?;
    }
    tail.finish().map(|(_, stats)| stats)
}
