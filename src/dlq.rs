//! Dead-letter files (SPEC section 7): `state.dir/dlq/<task_id>.jsonl`, one JSON
//! object per line with the payload, task, last error and attempt count.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::binlog::write::{escaped, rfc3339, string, uint};

/// One event (or batch) that could not be delivered.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// `task_id`.
    pub task: &'a str,
    /// Where it was sent.
    pub url: &'a str,
    /// Its `webhook-id`.
    pub id: &'a [u8],
    /// Attempts made.
    pub attempts: u32,
    /// The last HTTP status, if any answer came.
    pub status: Option<u16>,
    /// The last error.
    pub error: &'a str,
    /// The request body (valid JSON).
    pub payload: &'a [u8],
}

impl DeadLetter<'_> {
    /// The JSON line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 256);
        out.extend_from_slice(b"{\"task\":");
        string(&mut out, self.task);
        out.extend_from_slice(b",\"id\":\"");
        escaped(&mut out, self.id);
        out.extend_from_slice(b"\",\"url\":");
        string(&mut out, self.url);
        out.extend_from_slice(b",\"attempts\":");
        uint(&mut out, u64::from(self.attempts));
        out.extend_from_slice(b",\"status\":");
        match self.status {
            Some(s) => uint(&mut out, u64::from(s)),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"error\":");
        string(&mut out, self.error);
        out.extend_from_slice(b",\"dead_at\":");
        rfc3339(
            &mut out,
            u32::try_from(crate::delivery::unix_now()).unwrap_or(u32::MAX),
        );
        out.extend_from_slice(b",\"payload\":");
        out.extend_from_slice(self.payload);
        out.extend_from_slice(b"}\n");
        out
    }
}

/// The dead-letter file of `task` under `dir` (`state.dir/dlq`).
pub fn file_for(dir: &Path, task: &str) -> PathBuf {
    // task ids are free text; keep the file name to safe characters.
    let name: String = task
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{name}.jsonl"))
}

/// Appends `lines` to `task`'s file and makes them durable before returning.
pub fn append(dir: &Path, task: &str, lines: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = file_for(dir, task);
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    // One write per record: O_APPEND keeps records of concurrent shards whole.
    f.write_all(lines)?;
    f.sync_data()?;
    if new {
        // A new file's name is durable only once its directory is synced.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A dead letter read back from its file.
#[derive(Debug, serde::Deserialize)]
pub struct Letter {
    /// `task_id`.
    pub task: String,
    /// Its `webhook-id`.
    pub id: String,
    /// Where it was sent.
    pub url: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last HTTP status.
    pub status: Option<u16>,
    /// The last error.
    pub error: String,
    /// When it was dead-lettered.
    #[serde(default)]
    pub dead_at: String,
    /// The body, byte for byte as first sent.
    pub payload: Box<serde_json::value::RawValue>,
}

/// A line of a dead-letter file that is not a letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: not a dead letter: {reason}")]
pub struct BadLine {
    /// The file.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The parser's complaint.
    pub reason: String,
}

/// The dead-letter files under `dir`, optionally only `task`'s, sorted by name.
pub fn files(dir: &Path, task: Option<&str>) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "jsonl") {
            out.push(path);
        }
    }
    if let Some(t) = task {
        let wanted = file_for(dir, t);
        out.retain(|p| *p == wanted);
    }
    out.sort();
    Ok(out)
}

/// Parses every line of `text` (the content of `file`).
pub fn parse(file: &Path, text: &str) -> Vec<Result<Letter, BadLine>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Letter>(l).map_err(|e| BadLine {
                file: file.display().to_string(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

impl Letter {
    /// Back to a line, after another failed attempt.
    pub fn to_line(&self) -> Vec<u8> {
        DeadLetter {
            task: &self.task,
            url: &self.url,
            id: self.id.as_bytes(),
            attempts: self.attempts,
            status: self.status,
            error: &self.error,
            payload: self.payload.get().as_bytes(),
        }
        .to_line()
    }
}
