//! Dead-letter files (SPEC section 7): `state.dir/dlq/<task_id>.jsonl`, one JSON
//! object per line with the payload, task, last error and attempt count. A record
//! is in the file whole or not at all: appends hold an exclusive lock, a failed
//! write is cut back off, and a torn tail left by a crash is cut before the next
//! record goes in (its event was never acknowledged, so it is sent again).

use std::io::{Read, Seek, SeekFrom, Write};
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
    dir.join(format!("{}.jsonl", safe_name(task)))
}

/// `task` as a file name: task ids are free text, file names keep to `[A-Za-z0-9._-]`.
pub fn safe_name(task: &str) -> String {
    task.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Appends `lines` (whole records, each ending in a newline) to `task`'s file and
/// makes them durable before returning. On any failure the file is left as it was.
pub fn append(dir: &Path, task: &str, lines: &[u8]) -> std::io::Result<()> {
    append_to(dir, &file_for(dir, task), lines)
}

fn append_to(dir: &Path, path: &Path, lines: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    // Shards of this process and a `dlq replay` beside it append to the same file.
    f.lock()?;
    let good = cut_torn_tail(&mut f)?;
    let written = f.write_all(lines).and_then(|()| f.sync_data());
    if let Err(e) = written {
        // A full disk may have taken part of the record: cut it off, so the next
        // record does not glue onto a fragment.
        if let Err(cut) = f.set_len(good).and_then(|()| f.sync_data()) {
            tracing::error!(file = %path.display(), error = %cut, "cannot cut a failed dead-letter write back off; the next append will");
        }
        return Err(e);
    }
    if new {
        // A new file's name is durable only once its directory is synced.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Cuts anything after the file's last newline (a record torn by a crash or a
/// failed write) and returns the length kept.
fn cut_torn_tail(f: &mut std::fs::File) -> std::io::Result<u64> {
    let len = f.metadata()?.len();
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        tracing::warn!(
            cut = len - end,
            "a dead-letter file ended in a torn record; cut it off"
        );
        f.set_len(end)?;
        f.sync_data()?;
    }
    Ok(end)
}

/// Puts back the letters of replays that did not finish (`<task>.replaying-<pid>`
/// files whose process is gone) into their task's file, skipping letters whose id
/// the file already has. Returns how many letters came back.
pub fn recover(dir: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut back = 0;
    for entry in entries {
        let aside = entry?.path();
        let Some(pid) = aside
            .extension()
            .and_then(|x| x.to_str())
            .and_then(|x| x.strip_prefix("replaying-"))
        else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| p != std::process::id() && Path::new(&format!("/proc/{p}")).exists());
        if alive {
            continue;
        }
        let target = aside.with_extension("jsonl");
        let have: std::collections::HashSet<String> = match std::fs::read(&target) {
            Ok(bytes) => parse(&target, &String::from_utf8_lossy(&bytes))
                .into_iter()
                .filter_map(|l| l.ok().map(|l| l.id))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&std::fs::read(&aside)?).into_owned();
        let mut lines = Vec::new();
        for (line, parsed) in text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .zip(parse(&aside, &text))
        {
            if parsed.as_ref().is_ok_and(|l| have.contains(&l.id)) {
                continue;
            }
            back += usize::from(parsed.is_ok());
            lines.extend_from_slice(line.as_bytes());
            lines.push(b'\n');
        }
        if !lines.is_empty() {
            append_to(dir, &target, &lines)?;
        }
        std::fs::remove_file(&aside)?;
        tracing::warn!(file = %aside.display(), letters = back, "recovered the dead letters of a replay that did not finish");
    }
    Ok(back)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(id: &str) -> Vec<u8> {
        DeadLetter {
            task: "t",
            url: "http://h/x",
            id: id.as_bytes(),
            attempts: 1,
            status: Some(400),
            error: "bad",
            payload: b"{\"k\":1}",
        }
        .to_line()
    }

    fn ids(dir: &Path) -> Vec<Result<String, usize>> {
        let file = file_for(dir, "t");
        let text = std::fs::read_to_string(&file).unwrap();
        parse(&file, &text)
            .into_iter()
            .map(|l| l.map(|l| l.id).map_err(|b| b.line))
            .collect()
    }

    #[test]
    fn a_torn_tail_is_cut_before_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), "t", &letter("a")).unwrap();
        // A crash (or a full disk) in the middle of the second record.
        let torn = letter("b");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(file_for(dir.path(), "t"))
            .unwrap();
        f.write_all(&torn[..torn.len() / 2]).unwrap();
        append(dir.path(), "t", &letter("c")).unwrap();
        assert_eq!(ids(dir.path()), [Ok("a".into()), Ok("c".into())]);
    }

    #[test]
    fn an_unfinished_replay_comes_back_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), "t", &letter("new")).unwrap();
        // pid 0 is never a replay's: the process is gone.
        let aside = dir.path().join("t.replaying-0");
        let mut text = letter("x");
        text.extend_from_slice(&letter("new"));
        text.extend_from_slice(b"not a letter\n");
        text.extend_from_slice(&letter("y"));
        std::fs::write(&aside, text).unwrap();
        assert_eq!(recover(dir.path()).unwrap(), 2);
        assert!(!aside.exists());
        assert_eq!(
            ids(dir.path()),
            [Ok("new".into()), Ok("x".into()), Err(3), Ok("y".into())]
        );
        assert_eq!(recover(dir.path()).unwrap(), 0);
    }
}
