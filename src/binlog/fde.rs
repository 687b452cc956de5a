//! FORMAT_DESCRIPTION_EVENT: server version, post-header lengths per event type, and
//! whether events carry a CRC32 trailer.

use super::cursor::Cursor;
use super::error::DecodeError;
use super::event::{kind, HEADER_LEN};

/// What the format description tells about the events that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatDescription {
    /// Binlog format version (4 for everything since MySQL 5.0).
    pub binlog_version: u16,
    /// Server version string, e.g. `10.11.6-MariaDB-log` or `8.0.36`.
    pub server_version: String,
    /// Post-header length of each event type (index = type code - 1).
    post_header_lens: Vec<u8>,
    /// Whether events after this one end in a CRC32.
    pub checksum: bool,
}

impl FormatDescription {
    /// Parses an FDE body. `whole_event` is the full event (header included) so the
    /// FDE's own checksum can be verified: it is present whenever the server knows
    /// about checksums, even when they are switched off for other events.
    pub fn parse(whole_event: &[u8]) -> Result<Self, DecodeError> {
        let body = whole_event
            .get(HEADER_LEN..)
            .ok_or(DecodeError::Truncated {
                what: "format description",
                needed: HEADER_LEN,
            })?;
        let mut c = Cursor::new(body);
        let binlog_version = c.u16("format description version")?;
        let raw_version = c.take(50, "format description server version")?;
        let end = raw_version.iter().position(|&b| b == 0).unwrap_or(50);
        let server_version = String::from_utf8_lossy(&raw_version[..end]).into_owned();
        c.skip(4, "format description timestamp")?;
        let header_len = c.u8("format description header length")?;
        if usize::from(header_len) != HEADER_LEN {
            return Err(DecodeError::malformed(
                "format description",
                format!("event header length {header_len} (only v4's 19 is supported)"),
            ));
        }
        let rest = c.rest();
        let (lens, checksum) = if has_checksum_alg(&server_version) {
            // ... post-header lengths, 1 byte algorithm, 4 bytes CRC32.
            if rest.len() < 5 {
                return Err(DecodeError::Truncated {
                    what: "format description checksum",
                    needed: 5 - rest.len(),
                });
            }
            let alg = rest[rest.len() - 5];
            let checksum = match alg {
                0 => false,
                1 => true,
                other => {
                    return Err(DecodeError::malformed(
                        "format description",
                        format!("unknown checksum algorithm {other}"),
                    ))
                }
            };
            if checksum {
                verify_fde_crc(whole_event)?;
            }
            (&rest[..rest.len() - 5], checksum)
        } else {
            (rest, false)
        };
        Ok(FormatDescription {
            binlog_version,
            server_version,
            post_header_lens: lens.to_vec(),
            checksum,
        })
    }

    /// Post-header length for event type `kind` (0 when the FDE does not list it).
    pub fn post_header_len(&self, kind: u8) -> usize {
        usize::from(kind)
            .checked_sub(1)
            .and_then(|i| self.post_header_lens.get(i))
            .map_or(0, |&n| usize::from(n))
    }

    /// Bytes used for table ids in TABLE_MAP and rows events (4 before MySQL 5.1.4-ish
    /// when the post-header was 6 bytes, 6 otherwise).
    pub fn table_id_len(&self, kind: u8) -> usize {
        if self.post_header_len(kind) == 6 {
            4
        } else {
            6
        }
    }

    /// True for MariaDB servers.
    pub fn is_mariadb(&self) -> bool {
        self.server_version.contains("MariaDB")
    }

    /// A description for servers that send rows without an FDE (tests, synthetic streams).
    pub fn default_v4(checksum: bool) -> Self {
        let mut lens = vec![0u8; 200];
        for k in [
            kind::TABLE_MAP,
            kind::WRITE_ROWS_V1,
            kind::UPDATE_ROWS_V1,
            kind::DELETE_ROWS_V1,
        ] {
            lens[usize::from(k) - 1] = 8;
        }
        for k in [
            kind::WRITE_ROWS,
            kind::UPDATE_ROWS,
            kind::DELETE_ROWS,
            kind::PARTIAL_UPDATE_ROWS,
        ] {
            lens[usize::from(k) - 1] = 10;
        }
        lens[usize::from(kind::QUERY) - 1] = 13;
        lens[usize::from(kind::ROTATE) - 1] = 8;
        FormatDescription {
            binlog_version: 4,
            server_version: "8.0.0".into(),
            post_header_lens: lens,
            checksum,
        }
    }
}

/// The server computes the FDE's CRC with `LOG_EVENT_BINLOG_IN_USE_F` (flags bit 0)
/// cleared, then sets the flag while the file is open; undo it before checking.
fn verify_fde_crc(event: &[u8]) -> Result<(), DecodeError> {
    const FLAGS_OFFSET: usize = 17;
    const BINLOG_IN_USE: u8 = 0x01;
    let split = event.len() - 4;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&event[..FLAGS_OFFSET]);
    hasher.update(&[event[FLAGS_OFFSET] & !BINLOG_IN_USE]);
    hasher.update(&event[FLAGS_OFFSET + 1..split]);
    let actual = hasher.finalize();
    let expected = super::cursor::le(&event[split..]) as u32;
    if expected != actual {
        return Err(DecodeError::Checksum { expected, actual });
    }
    Ok(())
}

/// Servers from MySQL 5.6.1 (and every MariaDB 10+) append the checksum algorithm to the FDE.
fn has_checksum_alg(server_version: &str) -> bool {
    let mut parts = server_version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let v = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    v >= (5, 6, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_alg_by_version() {
        assert!(has_checksum_alg("8.0.36"));
        assert!(has_checksum_alg("10.11.6-MariaDB-log"));
        assert!(has_checksum_alg("5.6.1"));
        assert!(!has_checksum_alg("5.5.27-log"));
        assert!(!has_checksum_alg("5.1.23-rc-debug-log"));
        assert!(!has_checksum_alg(""));
    }
}
