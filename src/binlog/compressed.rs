//! MySQL 8's compressed transactions (`binlog_transaction_compression=ON`): one
//! TRANSACTION_PAYLOAD event holds the transaction's events (BEGIN .. XID, without
//! checksums) compressed with zstd. The decoder hands the body here and decodes the
//! inner events one by one.

use super::cursor::Cursor;
use super::error::DecodeError;
use super::event::HEADER_LEN;

/// Largest transaction rowhook inflates: the server's own packet limit.
pub const MAX_INFLATED: u64 = 1 << 30;

/// The header fields of a TRANSACTION_PAYLOAD body and its data.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    /// 0 = zstd, 255 = none.
    pub algorithm: u64,
    /// Size after inflating, when the server wrote it.
    pub uncompressed_size: Option<u64>,
    /// The (compressed) inner events.
    pub data: &'a [u8],
}

const END_MARK: u64 = 0;
const SIZE: u64 = 1;
const ALGORITHM: u64 = 2;
const UNCOMPRESSED_SIZE: u64 = 3;
const ZSTD: u64 = 0;
const NONE: u64 = 255;

impl<'a> Payload<'a> {
    /// Reads the type-length-value header and the data after it.
    pub fn parse(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(body);
        let (mut size, mut algorithm, mut uncompressed_size) = (None, None, None);
        loop {
            let field = c.lenenc("payload field type")?;
            if field == END_MARK {
                break;
            }
            let value = c.lenenc_bytes("payload field")?;
            let number = || Cursor::new(value).lenenc("payload field value");
            match field {
                SIZE => size = Some(number()?),
                ALGORITHM => algorithm = Some(number()?),
                UNCOMPRESSED_SIZE => uncompressed_size = Some(number()?),
                _ => {} // fields of later versions: skipped by their length
            }
        }
        let (Some(size), Some(algorithm)) = (size, algorithm) else {
            return Err(DecodeError::malformed(
                "transaction payload",
                "header lacks the payload size or compression type",
            ));
        };
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let data = c.take(size, "transaction payload data")?;
        Ok(Payload {
            algorithm,
            uncompressed_size,
            data,
        })
    }

    /// Appends the inner events to `out` (cleared first). A declared or actual size
    /// beyond [`MAX_INFLATED`] is refused rather than allocated.
    pub fn inflate(&self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        use std::io::Read;
        out.clear();
        if self.uncompressed_size.is_some_and(|n| n > MAX_INFLATED) {
            return Err(too_big());
        }
        match self.algorithm {
            NONE => out.extend_from_slice(self.data),
            ZSTD => {
                out.reserve(self.uncompressed_size.unwrap_or(0) as usize);
                let decoder = zstd::stream::read::Decoder::with_buffer(self.data)
                    .map_err(|e| bad_zstd(&e))?;
                decoder
                    .take(MAX_INFLATED + 1)
                    .read_to_end(out)
                    .map_err(|e| bad_zstd(&e))?;
                if out.len() as u64 > MAX_INFLATED {
                    return Err(too_big());
                }
            }
            other => {
                return Err(DecodeError::UnsupportedEvent(format!(
                    "TRANSACTION_PAYLOAD compressed with algorithm {other} (only zstd exists in MySQL 8)"
                )))
            }
        }
        if let Some(n) = self.uncompressed_size {
            if n != out.len() as u64 {
                return Err(DecodeError::malformed(
                    "transaction payload",
                    format!("inflated to {} bytes, header says {n}", out.len()),
                ));
            }
        }
        Ok(())
    }
}

fn too_big() -> DecodeError {
    DecodeError::malformed(
        "transaction payload",
        format!("inflates beyond {MAX_INFLATED} bytes"),
    )
}

fn bad_zstd(e: &std::io::Error) -> DecodeError {
    DecodeError::malformed("transaction payload", format!("zstd: {e}"))
}

/// Splits inflated inner events: yields each whole event, or an error for bytes
/// that do not frame.
pub fn events(mut buf: &[u8]) -> impl Iterator<Item = Result<&[u8], DecodeError>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let size = match buf.get(9..13) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
            None => usize::MAX,
        };
        if size < HEADER_LEN || size > buf.len() {
            buf = &[];
            return Some(Err(DecodeError::malformed(
                "transaction payload",
                "an inner event does not fit in the payload",
            )));
        }
        let (event, rest) = buf.split_at(size);
        buf = rest;
        Some(Ok(event))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(algorithm: u64, data: &[u8], uncompressed: Option<u64>) -> Vec<u8> {
        let mut b = Vec::new();
        let field = |b: &mut Vec<u8>, t: u8, v: u64| {
            let mut value = Vec::new();
            crate::mysql::handshake::put_lenenc(&mut value, v);
            b.push(t);
            b.push(value.len() as u8);
            b.extend_from_slice(&value);
        };
        field(&mut b, SIZE as u8, data.len() as u64);
        field(&mut b, ALGORITHM as u8, algorithm);
        if let Some(n) = uncompressed {
            field(&mut b, UNCOMPRESSED_SIZE as u8, n);
        }
        b.push(0);
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn inflates_zstd_and_checks_sizes() {
        let inner = vec![7u8; 5000];
        let packed = zstd::bulk::compress(&inner, 3).unwrap();
        let b = body(ZSTD, &packed, Some(5000));
        let mut out = Vec::new();
        Payload::parse(&b).unwrap().inflate(&mut out).unwrap();
        assert_eq!(out, inner);
        let lying = body(ZSTD, &packed, Some(4999));
        assert!(Payload::parse(&lying).unwrap().inflate(&mut out).is_err());
        let bomb = body(ZSTD, &packed, Some(MAX_INFLATED + 1));
        assert!(Payload::parse(&bomb).unwrap().inflate(&mut out).is_err());
        let garbage = body(ZSTD, b"not zstd at all", None);
        assert!(Payload::parse(&garbage).unwrap().inflate(&mut out).is_err());
        let mut cut = body(ZSTD, &packed, Some(5000));
        cut.truncate(cut.len() - 10);
        assert!(Payload::parse(&cut).is_err());
    }

    #[test]
    fn inner_events_frame_or_fail() {
        let mut buf = vec![0u8; 19];
        buf[9] = 19;
        buf.extend_from_slice(&buf.clone());
        assert_eq!(events(&buf).filter(Result::is_ok).count(), 2);
        buf[9 + 19] = 200;
        let all: Vec<_> = events(&buf).collect();
        assert!(all[0].is_ok() && all[1].is_err() && all.len() == 2);
    }
}
