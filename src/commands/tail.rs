//! `rowhook tail`: binlog events -> the payloads tasks would send, as JSON lines.
//! The operator's window into the decoder; also its end-to-end test surface.

use std::io::Write;
use std::path::Path;

use crate::binlog::file::{BinlogFile, FileError};
use crate::binlog::PositionedError;
use crate::config::TaskConfig;
use crate::dispatch::changes::Changes;
use crate::dispatch::payload::PayloadWriter;
use crate::source::Step;

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
    changes: Changes,
    payloads: PayloadWriter,
    line: Vec<u8>,
    out: W,
    stats: TailStats,
}

impl<W: Write> Tail<W> {
    /// A tail writing to `out`; `tasks` select tables, columns and payload shape.
    pub fn new(tasks: Option<Vec<TaskConfig>>, out: W, file: String) -> Self {
        Tail {
            changes: Changes::new(tasks, file),
            payloads: PayloadWriter::default(),
            line: Vec::with_capacity(4096),
            out,
            stats: TailStats::default(),
        }
    }

    /// What has been printed so far.
    pub fn stats(&self) -> TailStats {
        self.stats
    }

    /// Decodes one whole event and prints its rows; says what it meant to the
    /// follow loop.
    pub fn feed(&mut self, event: &[u8]) -> Result<Step, TailError> {
        self.line.clear();
        let mut printed = 0;
        let mut feed = self.changes.feed(event)?;
        while let Some(mut rows) = self.changes.next_rows(&mut feed, event)? {
            while let Some(next) = rows.next() {
                let (row, routes) = next?;
                for route in routes {
                    self.payloads.write(
                        &mut self.line,
                        route.shape,
                        &row,
                        route.keep.as_deref(),
                    )?;
                    self.line.push(b'\n');
                    printed += 1;
                }
            }
        }
        self.stats.events = self.changes.events;
        self.out.write_all(&self.line)?;
        self.stats.payloads += printed;
        Ok(self.changes.step(&feed))
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> Result<(W, TailStats), TailError> {
        self.out.flush()?;
        Ok((self.out, self.stats))
    }
}

impl<W: Write> crate::source::Downstream for Tail<W> {
    type Error = TailError;

    fn on_connect(
        &mut self,
        info: &crate::mysql::replica::ServerInfo,
        from: &crate::mysql::replica::BinlogPosition,
        _gtids: Option<&crate::binlog::gtid::GtidSet>,
    ) -> Result<(), TailError> {
        let mariadb = info.flavor == crate::config::Flavor::Mariadb;
        self.changes.on_connect(info.checksum, from, mariadb);
        Ok(())
    }

    fn on_columns(&mut self, table_id: u64, columns: &[crate::source::columns::ColumnInfo]) {
        self.changes.on_columns(table_id, columns);
    }

    fn on_event(&mut self, event: &[u8]) -> Result<Step, TailError> {
        let step = self.feed(event)?;
        if let Step::Boundary { .. } = step {
            self.out.flush()?;
        }
        Ok(step)
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
        // Registering glommio's default 10 MiB (pinning, zeroing) cost ~15 ms of
        // every start; sockets use none of it.
        .io_memory(crate::commands::run::IO_MEMORY)
        .make()
        .map_err(|e| {
            TailError::Output(std::io::Error::other(format!(
                "cannot start the io_uring executor: {e}"
            )))
        })?;
    executor.run(async move {
        let mut tail = Tail::new(tasks, out, String::new());
        let live = std::sync::Arc::new(crate::source::Liveness::default());
        match crate::source::follow(config, &mut tail, None, false, live).await {
            Ok(()) => Ok(()),
            Err(crate::source::SourceError::Downstream(e)) => Err(e),
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
    while let Some((_, event)) = file.next_event()? {
        tail.feed(event)?;
    }
    tail.finish().map(|(_, stats)| stats)
}
