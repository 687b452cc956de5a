//! GTID sets: what a server has executed, in the form each flavor resumes from.
//! MySQL: `uuid:1-100:105,uuid2:1-7` (intervals per source UUID), sent in
//! COM_BINLOG_DUMP_GTID. MariaDB: `0-1-100,1-2-7` (the last domain-server-sequence
//! per replication domain), set as `@slave_connect_state`. The checkpoint keeps one
//! so a restart can resume on another server of the same cluster.

use std::collections::BTreeMap;
use std::fmt;

/// The GTIDs executed up to a point of the binlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtidSet {
    /// Source UUID → sorted, disjoint, inclusive intervals of transaction numbers.
    Mysql(BTreeMap<String, Vec<(u64, u64)>>),
    /// Domain → (server id, sequence number) of its last transaction.
    Mariadb(BTreeMap<u32, (u32, u64)>),
}

/// Why a GTID text cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a {flavor} GTID set: {why}")]
pub struct GtidError {
    text: String,
    flavor: &'static str,
    why: String,
}

impl GtidSet {
    /// Parses MySQL's text form (whitespace and newlines allowed, as
    /// `@@gtid_executed` prints it).
    pub fn parse_mysql(text: &str) -> Result<Self, GtidError> {
        let err = |why: String| GtidError {
            text: text.to_owned(),
            flavor: "MySQL",
            why,
        };
        let mut set = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut pieces = part.split(':');
            let uuid = pieces
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if parse_uuid(&uuid).is_none() {
                return Err(err(format!("{uuid:?} is not a UUID")));
            }
            let intervals: &mut Vec<(u64, u64)> = set.entry(uuid).or_default();
            for range in pieces {
                let range = range.trim();
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                let (Ok(a), Ok(b)) = (a.trim().parse::<u64>(), b.trim().parse::<u64>()) else {
                    return Err(err(format!(
                        "{range:?} is not a number or range (tagged GTIDs of MySQL 8.4 are not supported)"
                    )));
                };
                if a == 0 || b < a {
                    return Err(err(format!("{range:?} is not a valid range")));
                }
                insert(intervals, a, b);
            }
        }
        Ok(GtidSet::Mysql(set))
    }

    /// Parses MariaDB's `domain-server-sequence` list.
    pub fn parse_mariadb(text: &str) -> Result<Self, GtidError> {
        let err = |why: String| GtidError {
            text: text.to_owned(),
            flavor: "MariaDB",
            why,
        };
        let mut state = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (domain, server, seq) = mariadb_gtid(part)
                .ok_or_else(|| err(format!("{part:?} is not domain-server-sequence")))?;
            if state.insert(domain, (server, seq)).is_some() {
                return Err(err(format!("domain {domain} appears twice")));
            }
        }
        Ok(GtidSet::Mariadb(state))
    }

    /// Parses `text` in the form of `flavor`.
    pub fn parse(text: &str, mariadb: bool) -> Result<Self, GtidError> {
        if mariadb {
            Self::parse_mariadb(text)
        } else {
            Self::parse_mysql(text)
        }
    }

    /// Adds one transaction's GTID (`uuid:gno` or `domain-server-seq`, as the
    /// decoder reports it). A GTID of the other flavor is ignored (returns false).
    pub fn add(&mut self, gtid: &str) -> bool {
        match self {
            GtidSet::Mysql(set) => {
                let Some((uuid, gno)) = gtid.rsplit_once(':') else {
                    return false;
                };
                let Ok(gno) = gno.parse::<u64>() else {
                    return false;
                };
                if gno == 0 {
                    return false;
                }
                insert(set.entry(uuid.to_ascii_lowercase()).or_default(), gno, gno);
                true
            }
            GtidSet::Mariadb(state) => match mariadb_gtid(gtid) {
                Some((domain, server, seq)) => {
                    state.insert(domain, (server, seq));
                    true
                }
                None => false,
            },
        }
    }

    /// Whether the set holds `gtid` (`uuid:gno` or `domain-server-seq`). A
    /// MariaDB position holds every sequence up to its domain's last one.
    pub fn contains_text(&self, gtid: &str) -> bool {
        match self {
            GtidSet::Mysql(set) => gtid
                .rsplit_once(':')
                .and_then(|(uuid, gno)| Some((uuid.to_ascii_lowercase(), gno.parse::<u64>().ok()?)))
                .is_some_and(|(uuid, gno)| {
                    set.get(&uuid)
                        .is_some_and(|iv| iv.iter().any(|(a, b)| (*a..=*b).contains(&gno)))
                }),
            GtidSet::Mariadb(state) => mariadb_gtid(gtid).is_some_and(|(domain, _, seq)| {
                state.get(&domain).is_some_and(|(_, last)| seq <= *last)
            }),
        }
    }

    /// The data block of COM_BINLOG_DUMP_GTID (MySQL): number of UUIDs, then per
    /// UUID its 16 bytes, the number of intervals and each as [start, end).
    pub fn sid_block(&self) -> Vec<u8> {
        let GtidSet::Mysql(set) = self else {
            return 0u64.to_le_bytes().to_vec();
        };
        let mut out = Vec::with_capacity(8 + set.len() * 40);
        out.extend_from_slice(&(set.len() as u64).to_le_bytes());
        for (uuid, intervals) in set {
            out.extend_from_slice(&parse_uuid(uuid).unwrap_or([0; 16]));
            out.extend_from_slice(&(intervals.len() as u64).to_le_bytes());
            for &(a, b) in intervals {
                out.extend_from_slice(&a.to_le_bytes());
                out.extend_from_slice(&b.saturating_add(1).to_le_bytes());
            }
        }
        out
    }

    /// Reads a PREVIOUS_GTIDS event body (checksum removed): the same layout as
    /// [`GtidSet::sid_block`].
    pub fn from_previous_gtids(body: &[u8]) -> Option<Self> {
        let mut c = body;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, rest) = (c.get(..n)?, c.get(n..)?);
            c = rest;
            Some(head)
        };
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        let n = u64_of(take(8)?);
        if n >> 56 != 0 {
            return None; // tagged format (MySQL 8.4)
        }
        let mut set = BTreeMap::new();
        for _ in 0..n {
            let uuid = uuid_text(take(16)?);
            let count = u64_of(take(8)?);
            let intervals: &mut Vec<(u64, u64)> = set.entry(uuid).or_default();
            for _ in 0..count {
                let (a, b) = (u64_of(take(8)?), u64_of(take(8)?));
                if a == 0 || b <= a {
                    return None;
                }
                insert(intervals, a, b - 1);
            }
        }
        Some(GtidSet::Mysql(set))
    }
}

/// Adds [a, b] to sorted disjoint intervals, merging neighbours.
fn insert(intervals: &mut Vec<(u64, u64)>, a: u64, b: u64) {
    // The common case: the next transaction of the last interval.
    if let Some(last) = intervals.last_mut() {
        if a >= last.0 && a <= last.1.saturating_add(1) {
            last.1 = last.1.max(b);
            return;
        }
    }
    intervals.push((a, b));
    intervals.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
    for &(a, b) in intervals.iter() {
        match merged.last_mut() {
            Some(m) if a <= m.1.saturating_add(1) => m.1 = m.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    *intervals = merged;
}

fn mariadb_gtid(text: &str) -> Option<(u32, u32, u64)> {
    let mut it = text.trim().split('-');
    let domain = it.next()?.parse().ok()?;
    let server = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    it.next().is_none().then_some((domain, server, seq))
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    if text.len() != 36 || hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// The text form of a 16-byte UUID.
pub fn uuid_text(b: &[u8]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    if hex.len() != 32 {
        return hex;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidSet::Mysql(set) => {
                let mut first = true;
                for (uuid, intervals) in set.iter().filter(|(_, i)| !i.is_empty()) {
                    if !first {
                        f.write_str(",")?;
                    }
                    first = false;
                    f.write_str(uuid)?;
                    for &(a, b) in intervals {
                        if a == b {
                            write!(f, ":{a}")?;
                        } else {
                            write!(f, ":{a}-{b}")?;
                        }
                    }
                }
                Ok(())
            }
            GtidSet::Mariadb(state) => {
                let parts: Vec<String> = state
                    .iter()
                    .map(|(d, (s, n))| format!("{d}-{s}-{n}"))
                    .collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn mysql_sets_parse_merge_and_print() {
        let text = format!("{U}:1-5:7,\n{}:3", U.to_uppercase().replace("3E", "4E"));
        let mut s = GtidSet::parse_mysql(&text).unwrap();
        assert!(s.add(&format!("{U}:6")));
        assert_eq!(
            s.to_string(),
            format!("{U}:1-7,4e11fa47-71ca-11e1-9e33-c80aa9429562:3")
        );
        assert!(s.add(&format!("{U}:9")));
        assert!(s.add(&format!("{U}:8")));
        assert_eq!(s.to_string().split(',').next().unwrap(), format!("{U}:1-9"));
        assert_eq!(GtidSet::parse_mysql("").unwrap().to_string(), "");
        for bad in [
            "nope:1",
            &format!("{U}:0"),
            &format!("{U}:5-3"),
            &format!("{U}:tag:1"),
        ] {
            assert!(GtidSet::parse_mysql(bad).is_err(), "{bad}");
        }
        assert!(!s.add("0-1-5"), "a MariaDB GTID is not a MySQL one");
    }

    #[test]
    fn mariadb_state_keeps_the_last_per_domain() {
        let mut s = GtidSet::parse_mariadb("0-1-100, 1-2-7").unwrap();
        assert!(s.add("0-3-101"));
        assert!(s.add("2-1-1"));
        assert_eq!(s.to_string(), "0-3-101,1-2-7,2-1-1");
        for bad in ["0-1", "a-b-c", "0-1-2-3", "0-1-5,0-2-6"] {
            assert!(GtidSet::parse_mariadb(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sid_block_matches_mysql_common_and_round_trips_through_previous_gtids() {
        use mysql_common::packets::{ComBinlogDumpGtid, GnoInterval, Sid};
        use mysql_common::proto::MySerialize;
        let s = GtidSet::parse_mysql(&format!("{U}:1-5:7-9")).unwrap();
        let sid = Sid::new(parse_uuid(U).unwrap())
            .with_interval(GnoInterval::new(1, 6))
            .with_interval(GnoInterval::new(7, 10));
        let mut theirs = Vec::new();
        ComBinlogDumpGtid::new(1)
            .with_sid(sid)
            .serialize(&mut theirs);
        // Theirs ends with the data size (4 bytes) and the same block.
        let ours = s.sid_block();
        assert_eq!(&theirs[theirs.len() - ours.len()..], &ours[..]);
        assert_eq!(GtidSet::from_previous_gtids(&ours), Some(s));
        assert_eq!(GtidSet::from_previous_gtids(&ours[..20]), None);
    }
}
