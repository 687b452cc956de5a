//! Reading a binlog file from disk event by event (as `mysqlbinlog` does): the 4-byte
//! magic, then events chained by their sizes. A truncated file is an error naming the
//! byte offset, never a silent end.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::event::{EventHeader, HEADER_LEN};

/// The magic at the start of every binlog file.
pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];

/// Why a binlog file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The first four bytes are not the binlog magic.
    #[error("{path} is not a binlog file (no \\xfebin magic at offset 0)")]
    NotBinlog {
        /// The file.
        path: String,
    },
    /// The file ends inside an event.
    #[error("{path}: truncated at byte offset {offset}: {detail}")]
    Truncated {
        /// The file.
        path: String,
        /// Where the incomplete event starts.
        offset: u64,
        /// What is missing.
        detail: String,
    },
    /// An event header is not valid.
    #[error("{path}: bad event header at byte offset {offset}: {source}")]
    BadHeader {
        /// The file.
        path: String,
        /// Where the event starts.
        offset: u64,
        /// Why.
        source: super::error::DecodeError,
    },
}

/// Reads events one by one from a binlog file.
pub struct BinlogFile {
    path: String,
    reader: BufReader<File>,
    offset: u64,
    buf: Vec<u8>,
}

impl BinlogFile {
    /// Opens `path` and checks the magic.
    pub fn open(path: &Path) -> Result<Self, FileError> {
        let name = path.display().to_string();
        let io = |source| FileError::Io {
            path: name.clone(),
            source,
        };
        let mut reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
        let mut magic = [0u8; 4];
        let n = read_full(&mut reader, &mut magic).map_err(io)?;
        if n < 4 || magic != MAGIC {
            return Err(FileError::NotBinlog { path: name });
        }
        Ok(BinlogFile {
            path: name,
            reader,
            offset: 4,
            buf: Vec::new(),
        })
    }

    /// The path as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The next event as `(offset, whole event bytes)`, or `None` at a clean end.
    pub fn next_event(&mut self) -> Result<Option<(u64, &[u8])>, FileError> {
        let io = |source| FileError::Io {
            path: self.path.clone(),
            source,
        };
        self.buf.resize(HEADER_LEN, 0);
        let got = read_full(&mut self.reader, &mut self.buf[..HEADER_LEN]).map_err(io)?;
        if got == 0 {
            return Ok(None);
        }
        let offset = self.offset;
        if got < HEADER_LEN {
            return Err(FileError::Truncated {
                path: self.path.clone(),
                offset,
                detail: format!("event header has {got} of {HEADER_LEN} bytes"),
            });
        }
        let header = EventHeader::parse(&self.buf).map_err(|source| FileError::BadHeader {
            path: self.path.clone(),
            offset,
            source,
        })?;
        let size = header.event_size as usize;
        self.buf.resize(size, 0);
        let got = read_full(&mut self.reader, &mut self.buf[HEADER_LEN..]).map_err(|source| {
            FileError::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        if got < size - HEADER_LEN {
            return Err(FileError::Truncated {
                path: self.path.clone(),
                offset,
                detail: format!("event of {size} bytes has only {}", HEADER_LEN + got),
            });
        }
        self.offset += size as u64;
        Ok(Some((offset, &self.buf)))
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
