//! `source:` — where in the binary log to begin, and liveness of the link.

use std::time::Duration;

use serde_yaml::Value;

use super::document::kind_of;
use super::fields::Fields;

/// Where to start reading when there is no checkpoint yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The server's current end of log: only changes from now on.
    Latest,
    /// The oldest binlog file the server still has.
    Earliest,
    /// An explicit binlog file and byte offset.
    FilePos {
        /// Binlog file name, e.g. `binlog.000042`.
        file: String,
        /// Byte offset of an event start in that file.
        pos: u64,
    },
    /// A GTID set (MySQL `uuid:1-100` or MariaDB `0-1-100`).
    Gtid(String),
}

/// Replication source behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// Where to begin without a checkpoint.
    pub start: StartPosition,
    /// Heartbeat period asked of the server; silence beyond it marks the link dead.
    pub heartbeat: Duration,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            start: StartPosition::Latest,
            heartbeat: Duration::from_secs(5),
        }
    }
}

impl SourceConfig {
    pub(crate) fn read(f: &mut Fields<'_, '_>) -> Self {
        let d = SourceConfig::default();
        let start = match f.raw("start") {
            None => d.start,
            Some(v) => read_start(f, v).unwrap_or(StartPosition::Latest),
        };
        let heartbeat = f.duration("heartbeat", d.heartbeat, false);
        SourceConfig { start, heartbeat }
    }
}

const START_HINT: &str =
    "use latest, earliest, {file: binlog.000001, pos: 4} or {gtid: \"0-1-100\"}";

fn read_start(f: &mut Fields<'_, '_>, value: &Value) -> Option<StartPosition> {
    match value {
        Value::String(s) => match s.trim() {
            "latest" => Some(StartPosition::Latest),
            "earliest" => Some(StartPosition::Earliest),
            other => {
                f.problem(
                    "start",
                    format!("{other:?} is not a start position: {START_HINT}"),
                );
                None
            }
        },
        Value::Mapping(m) => {
            let text = |k: &str| {
                m.get(k).and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
            };
            let keys: Vec<String> = m.keys().map(super::document::key_text).collect();
            let has = |k: &str| keys.iter().any(|x| x == k);
            if let Some(bad) = keys
                .iter()
                .find(|k| !["file", "pos", "gtid"].contains(&k.as_str()))
            {
                f.problem(
                    &format!("start.{bad}"),
                    format!("unknown field: {START_HINT}"),
                );
                return None;
            }
            match (has("file"), has("pos"), has("gtid")) {
                (true, true, false) => {
                    let file = text("file").filter(|s| !s.is_empty());
                    let pos = text("pos")
                        .and_then(|p| p.parse::<u64>().ok())
                        .filter(|p| *p >= 4);
                    match (file, pos) {
                        (Some(file), Some(pos)) => Some(StartPosition::FilePos { file, pos }),
                        (None, _) => {
                            f.problem("start.file", "must name a binlog file, e.g. binlog.000001");
                            None
                        }
                        (_, None) => {
                            f.problem(
                                "start.pos",
                                "must be a byte offset of at least 4 (4 = start of the file)",
                            );
                            None
                        }
                    }
                }
                (false, false, true) => {
                    match text("gtid").filter(|g| !g.trim().is_empty()) {
                        Some(g) => Some(StartPosition::Gtid(g.trim().to_owned())),
                        None => {
                            f.problem("start.gtid", "must be a GTID set such as 0-1-100 (MariaDB) or uuid:1-100 (MySQL)");
                            None
                        }
                    }
                }
                _ => {
                    f.problem(
                        "start",
                        format!("give either file and pos, or gtid: {START_HINT}"),
                    );
                    None
                }
            }
        }
        other => {
            f.problem(
                "start",
                format!(
                    "expected a word or a mapping, found {}: {START_HINT}",
                    kind_of(other)
                ),
            );
            None
        }
    }
}
