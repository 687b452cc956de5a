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
//! u16 LE  length of the webhook id at the start of the body
//! ...     the webhook body
//! ```
//!
//! A record is written whole or, after a crash mid-write, detected as torn by
//! its length or checksum; the reader stops there and the spool cuts it off.

/// Bytes before the body.
const FIXED: usize = 8 + 1 + 1 + 4 + 8 + 8 + 2;
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
    /// Length of the id at the start of `body`.
    pub id_len: u16,
    /// The webhook body.
    pub body: &'a [u8],
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
        FIXED + self.body.len()
    }

    /// Appends the encoded record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let len = (FIXED - 8 + self.body.len()) as u32;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push(VERSION);
        out.push(u8::from(self.key_change));
        out.extend_from_slice(&self.weight.to_le_bytes());
        out.extend_from_slice(&self.key.to_le_bytes());
        out.extend_from_slice(&self.spooled_ms.to_le_bytes());
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
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&rest[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let record = Record {
        key_change: rest[1] & 1 != 0,
        weight: u32::from_le_bytes([rest[2], rest[3], rest[4], rest[5]]),
        key: u64_at(6),
        spooled_ms: u64_at(14),
        id_len: u16::from_le_bytes([rest[22], rest[23]]),
        body: &rest[24..],
    };
    if usize::from(record.id_len) > record.body.len() {
        return Decoded::Corrupt("id longer than the body");
    }
    Decoded::Record(record, 8 + len)
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
