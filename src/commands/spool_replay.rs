//! `rowhook replay`: sends a task's spooled events again, from a time, a GTID
//! set or a binlog position, to the task's URL or another (`--to`), one at a
//! time in spool order (so per-key order holds), with their original
//! `webhook-id` and a `webhook-replay: true` header. The spool keeps delivered
//! events for `spool.retain`; without it only events not yet delivered are
//! there. Reads the segment files only: it runs beside a running instance.

use std::path::{Path, PathBuf};

use crate::binlog::gtid::GtidSet;
use crate::config::Config;
use crate::delivery::outcome::{classify, Outcome};
use crate::delivery::{request, Plan};
use crate::http::Pool;
use crate::spool::record::{self, Decoded, Source};

/// Where a replay starts.
#[derive(Debug, Clone)]
pub enum From {
    /// Events committed at or after this unix time.
    Time(u64),
    /// Events of transactions not in this GTID set (as the text was given).
    Gtids(String),
    /// Events at or after this binlog position.
    Position(String, u64),
}

/// Where a replay stops (exclusive).
#[derive(Debug, Clone)]
pub enum Until {
    /// Events committed before this unix time.
    Time(u64),
    /// Events before this binlog position.
    Position(String, u64),
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct Request {
    /// The task.
    pub task: String,
    /// From where.
    pub from: From,
    /// Up to where.
    pub until: Option<Until>,
    /// Another receiver than the task's.
    pub to: Option<String>,
}

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct Replayed {
    /// Events in the spool.
    pub held: u64,
    /// Events that matched and were acknowledged.
    pub sent: u64,
    /// The first and last event the spool holds: (commit time, file, pos, GTID).
    pub range: Option<(Place, Place)>,
    /// The event that failed, if one did (the replay stops there).
    pub failed: Option<(Place, String)>,
}

/// A spooled event's place, for messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    /// Commit time (unix seconds).
    pub ts: u32,
    /// Binlog file.
    pub file: String,
    /// Position of its event.
    pub pos: u64,
    /// GTID of its transaction (empty: none).
    pub gtid: String,
}

impl Place {
    fn of(at: &Source<'_>) -> Place {
        Place {
            ts: at.ts,
            file: at.file.to_owned(),
            pos: at.pos,
            gtid: at.gtid.to_owned(),
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut time = Vec::new();
        crate::binlog::write::rfc3339(&mut time, self.ts);
        write!(
            f,
            "{} {}:{}",
            String::from_utf8_lossy(&time).trim_matches('"'),
            self.file,
            self.pos
        )?;
        if !self.gtid.is_empty() {
            write!(f, " (GTID {})", self.gtid)?;
        }
        Ok(())
    }
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The task is not in the configuration.
    #[error("task {0} is not configured")]
    NoTask(String),
    /// `--to` or the configuration does not make a delivery plan.
    #[error(transparent)]
    Plan(#[from] crate::delivery::plan::PlanError),
    /// The GTID set does not parse.
    #[error("--from-gtid: {0}")]
    Gtids(String),
    /// A spool file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The executor could not start.
    #[error("cannot start the io_uring executor: {0}")]
    Executor(#[from] glommio::GlommioError<()>),
}

/// Replays `req` under `config`, calling `progress(sent)` every 1,000 events.
pub fn replay(
    config: &Config,
    req: &Request,
    progress: impl Fn(u64),
) -> Result<Replayed, ReplayError> {
    let mut config = config.clone();
    let task = config
        .tasks
        .iter_mut()
        .find(|t| t.task_id == req.task)
        .ok_or_else(|| ReplayError::NoTask(req.task.clone()))?;
    if let Some(to) = &req.to {
        task.callback_url = to.clone();
    }
    let mariadb = matches!(config.database.flavor, crate::config::Flavor::Mariadb);
    let gtids = match &req.from {
        From::Gtids(text) => Some(
            GtidSet::parse(text, mariadb)
                .or_else(|_| GtidSet::parse(text, !mariadb))
                .map_err(|e| ReplayError::Gtids(e.to_string()))?,
        ),
        _ => None,
    };
    let plan = Plan::new(&config, 1)?;
    let Some(task) = plan.tasks.iter().find(|t| t.id == req.task).cloned() else {
        return Err(ReplayError::NoTask(req.task.clone()));
    };
    let dir = crate::spool::dir_for(&config.state.dir.join("spool"), &req.task);
    let segments = segments(&dir)?;
    let executor = super::replay_executor()?;
    executor.run(async move {
        let pool = Pool::new(task.endpoint.clone(), plan.tls.clone(), 1);
        let mut done = Replayed::default();
        let mut first: Option<Place> = None;
        let mut last = Place::default();
        let mut req_bytes = Vec::new();
        let mut body = Vec::new();
        for path in segments {
            let data = match std::fs::read(&path) {
                Ok(d) => d,
                // Delivered and deleted by the running instance meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ReplayError::Io {
                        path: path.display().to_string(),
                        source,
                    })
                }
            };
            let mut at = 0;
            while let Decoded::Record(r, len) = record::decode(&data[at..]) {
                at += len;
                done.held += 1;
                if first.is_none() {
                    first = Some(Place::of(&r.at));
                }
                last = Place::of(&r.at);
                if done.failed.is_some()
                    || !wanted(&r.at, &req.from, gtids.as_ref(), req.until.as_ref())
                {
                    continue;
                }
                let id = r
                    .body
                    .get(crate::delivery::ID_AT..crate::delivery::ID_AT + usize::from(r.id_len))
                    .unwrap_or_default();
                body.clear();
                if task.batch_size > 1 {
                    // The task's receiver takes arrays.
                    request::batch_body(&mut body, std::iter::once(r.body));
                } else {
                    body.extend_from_slice(r.body);
                }
                request::write(
                    &mut req_bytes,
                    &task,
                    id,
                    &body,
                    crate::delivery::unix_now(),
                    0,
                );
                let head = task.head.len();
                req_bytes.splice(head..head, b"webhook-replay: true\r\n".iter().copied());
                match classify(&pool.exchange(&req_bytes, plan.timeout, false).await) {
                    Outcome::Delivered => {
                        done.sent += 1;
                        if done.sent % 1000 == 0 {
                            progress(done.sent);
                        }
                    }
                    Outcome::Retry { error, .. } | Outcome::Permanent { error, .. } => {
                        done.failed = Some((Place::of(&r.at), error));
                    }
                }
            }
        }
        done.range = first.map(|f| (f, last));
        Ok(done)
    })
}

/// Whether a spooled event at `at` is in the replay's range.
fn wanted(at: &Source<'_>, from: &From, gtids: Option<&GtidSet>, until: Option<&Until>) -> bool {
    let after = |file: &str, pos: u64| (at.file, at.pos) >= (file, pos);
    let start = match from {
        From::Time(t) => u64::from(at.ts) >= *t,
        From::Position(file, pos) => after(file, *pos),
        // Events of transactions the receiver has not seen; events without a
        // GTID (a server without GTIDs) cannot be placed and are left out.
        From::Gtids(_) => {
            !at.gtid.is_empty() && gtids.is_some_and(|set| !set.contains_text(at.gtid))
        }
    };
    let end = match until {
        None => true,
        Some(Until::Time(t)) => u64::from(at.ts) < *t,
        Some(Until::Position(file, pos)) => !after(file, *pos),
    };
    start && end
}

/// The spool's segment files, oldest first.
fn segments(dir: &Path) -> Result<Vec<PathBuf>, ReplayError> {
    let io = |source| ReplayError::Io {
        path: dir.display().to_string(),
        source,
    };
    let found = match std::fs::read_dir(dir) {
        Ok(entries) => crate::spool::segment_files(entries).map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(e)),
    };
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// `2026-11-30T10:00:00Z` (or with `+hh:mm` / `-hh:mm`) as unix seconds.
pub fn parse_time(text: &str) -> Option<u64> {
    let t = text.trim();
    let (date, rest) = t.split_once(['T', ' '])?;
    let mut d = date.split('-');
    let (y, mo, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (clock, offset) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (c, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (
            c,
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
        )
    };
    let mut c = clock.split(':');
    let (h, mi): (i64, i64) = (c.next()?.parse().ok()?, c.next()?.parse().ok()?);
    let s: f64 = c.next().unwrap_or("0").parse().ok()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || s >= 61.0 {
        return None;
    }
    // Days from civil (Howard Hinnant), the inverse of temporal::civil_from_days.
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let unix = days * 86_400 + h * 3600 + mi * 60 + s as i64 - offset;
    u64::try_from(unix).ok()
}

/// `binlog.000042:1234` as (file, position).
pub fn parse_position(text: &str) -> Option<(String, u64)> {
    let (file, pos) = text.trim().rsplit_once(':')?;
    (!file.is_empty()).then(|| Some((file.to_owned(), pos.parse().ok()?)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_positions_parse() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-11-30T10:00:00Z"), Some(1_796_032_800));
        assert_eq!(parse_time("2026-11-30T12:00:00+02:00"), Some(1_796_032_800));
        assert_eq!(parse_time("2024-02-29T00:00:01Z"), Some(1_709_164_801));
        assert_eq!(parse_time("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(
            parse_position("binlog.000042:1234"),
            Some(("binlog.000042".into(), 1234))
        );
        assert_eq!(parse_position(":4"), None);
        assert_eq!(parse_position("binlog.000042"), None);
    }

    #[test]
    fn the_range_is_from_inclusive_until_exclusive() {
        let at = Source {
            ts: 100,
            file: "b.000002",
            pos: 50,
            gtid: "0-1-7",
        };
        let set = GtidSet::parse("0-1-6", true).ok();
        assert!(wanted(&at, &From::Time(100), None, None));
        assert!(!wanted(&at, &From::Time(101), None, None));
        assert!(!wanted(&at, &From::Time(0), None, Some(&Until::Time(100))));
        assert!(wanted(
            &at,
            &From::Position("b.000002".into(), 50),
            None,
            None
        ));
        assert!(wanted(
            &at,
            &From::Position("b.000001".into(), 900),
            None,
            None
        ));
        assert!(!wanted(
            &at,
            &From::Position("b.000002".into(), 51),
            None,
            None
        ));
        assert!(!wanted(
            &at,
            &From::Position("b.000001".into(), 4),
            None,
            Some(&Until::Position("b.000002".into(), 50))
        ));
        assert!(wanted(
            &at,
            &From::Gtids("0-1-6".into()),
            set.as_ref(),
            None
        ));
        let seen = GtidSet::parse("0-1-7", true).ok();
        assert!(!wanted(
            &at,
            &From::Gtids("0-1-7".into()),
            seen.as_ref(),
            None
        ));
    }
}
