//! The spool's record format, sans-I/O: what one spooled delivery looks like on
//! disk and how a byte buffer is read back into records.
//!
//! ```text
//! u32 LE  length of what follows the checksum
//! u32 LE  CRC-32 of what follows the checksum
//! u8      format version (1)
//! u8      flags: bit 0 = the update changed the row's key (fenced on the way out)
//! u32 LE  weight (row changes it carries)
//! u64 LE  routing key
//! u64 LE  unix milliseconds when it was spooled
//! u32 LE  binlog event timestamp (unix seconds) of the row change
//! u64 LE  binlog position of its event
//! u16 LE  length of the binlog file name, then the name
//! u16 LE  length of its transaction's GTID (0: none), then the GTID
//! u16 LE  length of the webhook id at the start of the body
//! ...     the webhook body
//! ```
//!
//! A record is written whole or, after a crash mid-write, detected as torn by
//! its length or checksum; the reader stops there and the spool cuts it off.

/// Bytes before the body, without the file name and GTID.
const FIXED: usize = 8 + 1 + 1 + 4 + 8 + 8 + 4 + 8 + 2 + 2 + 2;
/// The only version written.
const VERSION: u8 = 1;
/// A length beyond this is corruption, not a record (transaction parts are
/// capped at 16 MB).
pub const MAX_RECORD: usize = 64 << 20;

/// One spooled delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// An update that changed the row's primary key.
    pub key_change: bool,
    /// Row changes it carries.
    pub weight: u32,
    /// The routing hash (shard and lane).
    pub key: u64,
    /// Unix milliseconds when it was spooled.
    pub spooled_ms: u64,
    /// Where it came from in the binlog (`replay --since/--from/--from-gtid`).
    pub at: Source<'a>,
    /// Length of the id at the start of `body`.
    pub id_len: u16,
    /// The webhook body.
    pub body: &'a [u8],
}

/// A spooled row change's place in the binlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Source<'a> {
    /// Its binlog event's timestamp (unix seconds; the commit time).
    pub ts: u32,
    /// The binlog file.
    pub file: &'a str,
    /// Where its event starts.
    pub pos: u64,
    /// Its transaction's GTID (empty: none).
    pub gtid: &'a str,
}

/// What the front of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole record, `len` bytes long.
    Record(Record<'a>, usize),
    /// The buffer ends inside a record: at least this many bytes are needed.
    NeedMore(usize),
    /// Not a record (torn or corrupt): why.
    Corrupt(&'static str),
}

impl Record<'_> {
    /// Bytes this record takes on disk.
    pub fn encoded_len(&self) -> usize {
        FIXED + self.at.file.len() + self.at.gtid.len() + self.body.len()
    }

    /// A hash of everything but when it was spooled: the same event read and
    /// rendered again has the same fingerprint.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (
            self.key_change,
            self.weight,
            self.key,
            self.at,
            self.id_len,
            self.body,
        )
            .hash(&mut h);
        h.finish()
    }

    /// Appends the encoded record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let file = &self.at.file.as_bytes()[..self.at.file.len().min(u16::MAX as usize)];
        let gtid = &self.at.gtid.as_bytes()[..self.at.gtid.len().min(u16::MAX as usize)];
        let len = (FIXED - 8 + file.len() + gtid.len() + self.body.len()) as u32;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push(VERSION);
        out.push(u8::from(self.key_change));
        out.extend_from_slice(&self.weight.to_le_bytes());
        out.extend_from_slice(&self.key.to_le_bytes());
        out.extend_from_slice(&self.spooled_ms.to_le_bytes());
        out.extend_from_slice(&self.at.ts.to_le_bytes());
        out.extend_from_slice(&self.at.pos.to_le_bytes());
        out.extend_from_slice(&(file.len() as u16).to_le_bytes());
        out.extend_from_slice(file);
        out.extend_from_slice(&(gtid.len() as u16).to_le_bytes());
        out.extend_from_slice(gtid);
        out.extend_from_slice(&self.id_len.to_le_bytes());
        out.extend_from_slice(self.body);
        let crc = crc32fast::hash(&out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Reads the record at the front of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some(head) = buf.get(..8) else {
        return Decoded::NeedMore(8);
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len < FIXED - 8 {
        return Decoded::Corrupt("record length shorter than its header");
    }
    if len > MAX_RECORD {
        return Decoded::Corrupt("record length beyond the largest record");
    }
    let Some(rest) = buf.get(8..8 + len) else {
        return Decoded::NeedMore(8 + len);
    };
    if crc32fast::hash(rest) != crc {
        return Decoded::Corrupt("checksum mismatch");
    }
    if rest[0] != VERSION {
        return Decoded::Corrupt("unknown record version");
    }
    if rest[1] > 1 {
        return Decoded::Corrupt("unknown record flags");
    }
    let mut r = Fields { rest, at: 2 };
    let (Some(weight), Some(key), Some(spooled_ms), Some(ts), Some(pos)) =
        (r.u32(), r.u64(), r.u64(), r.u32(), r.u64())
    else {
        return Decoded::Corrupt("record shorter than its fields");
    };
    let (Some(file), Some(gtid)) = (r.text(), r.text()) else {
        return Decoded::Corrupt("binlog file or GTID not text, or past the record");
    };
    let id_len = r.u16();
    let (Some(id_len), Some(body)) = (id_len, rest.get(r.at..)) else {
        return Decoded::Corrupt("record shorter than its fields");
    };
    let record = Record {
        key_change: rest[1] & 1 != 0,
        weight,
        key,
        spooled_ms,
        at: Source {
            ts,
            file,
            pos,
            gtid,
        },
        id_len,
        body,
    };
    if usize::from(record.id_len) > record.body.len() {
        return Decoded::Corrupt("id longer than the body");
    }
    Decoded::Record(record, 8 + len)
}

/// A cursor over a record's fields.
struct Fields<'a> {
    rest: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.rest.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn text(&mut self) -> Option<&'a str> {
        let n = usize::from(self.u16()?);
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// The length of the whole records at the front of `buf` and how many there
/// are; what follows them (if anything) is a torn or corrupt tail.
pub fn whole_prefix(buf: &[u8]) -> (usize, u64) {
    let (mut at, mut count) = (0, 0);
    while let Decoded::Record(_, len) = decode(&buf[at..]) {
        at += len;
        count += 1;
    }
    (at, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body: &[u8]) -> Record<'_> {
        Record {
            key_change: true,
            weight: 3,
            key: 0xDEAD_BEEF_0102_0304,
            spooled_ms: 1_764_000_000_123,
            at: Source {
                ts: 1_764_000_000,
                file: "binlog.000042",
                pos: 1234,
                gtid: "0-1-77",
            },
            id_len: body.len().min(4) as u16,
            body,
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let mut buf = Vec::new();
        let r = sample(b"{\"id\":\"x\"}");
        r.encode(&mut buf);
        assert_eq!(buf.len(), r.encoded_len());
        assert_eq!(decode(&buf), Decoded::Record(r, buf.len()));
    }

    #[test]
    fn every_cut_of_a_record_needs_more_and_every_flipped_byte_is_caught() {
        let mut buf = Vec::new();
        sample(b"abcdefgh").encode(&mut buf);
        for cut in 0..buf.len() {
            assert!(
                matches!(decode(&buf[..cut]), Decoded::NeedMore(n) if n > cut),
                "cut {cut}"
            );
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                !matches!(decode(&bad), Decoded::Record(ref r, _) if *r == sample(b"abcdefgh")),
                "flip at {i} went unnoticed"
            );
        }
    }

    #[test]
    fn the_whole_prefix_stops_at_a_torn_tail() {
        let mut buf = Vec::new();
        sample(b"one").encode(&mut buf);
        sample(b"two").encode(&mut buf);
        let whole = buf.len();
        sample(b"three").encode(&mut buf);
        buf.truncate(buf.len() - 2);
        assert_eq!(whole_prefix(&buf), (whole, 2));
    }
}
