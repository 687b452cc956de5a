//! Checked little-endian reads over a byte slice: every read either returns the
//! value or a `Truncated` error, so no decoder can index past the end.

use super::error::DecodeError;

/// A read position in a byte slice.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Starts at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The unread bytes.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Takes the next `n` bytes.
    #[inline]
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                what,
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        self.take(n, what).map(|_| ())
    }

    /// One byte.
    #[inline]
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// A little-endian unsigned integer of `n` (1..=8) bytes.
    #[inline]
    pub fn uint_le(&mut self, n: usize, what: &'static str) -> Result<u64, DecodeError> {
        Ok(le(self.take(n, what)?))
    }

    /// 2-byte little-endian.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(self.uint_le(2, what)? as u16)
    }

    /// 4-byte little-endian.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(self.uint_le(4, what)? as u32)
    }

    /// 8-byte little-endian.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.uint_le(8, what)
    }

    /// MySQL's length-encoded integer (1, 3, 4 or 9 bytes).
    pub fn lenenc(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        match self.u8(what)? {
            n @ 0..=0xfa => Ok(u64::from(n)),
            0xfc => self.uint_le(2, what),
            0xfd => self.uint_le(3, what),
            0xfe => self.uint_le(8, what),
            other => Err(DecodeError::malformed(
                what,
                format!("{other:#04x} does not start a length-encoded integer"),
            )),
        }
    }

    /// A length-encoded integer used as a length: must fit in what is left.
    pub fn lenenc_len(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.lenenc(what)?;
        if n > self.remaining() as u64 {
            return Err(DecodeError::Truncated {
                what,
                needed: (n - self.remaining() as u64).min(usize::MAX as u64) as usize,
            });
        }
        Ok(n as usize)
    }

    /// Length-encoded bytes.
    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.lenenc_len(what)?;
        self.take(n, what)
    }
}

/// Little-endian unsigned integer of up to 8 bytes.
#[inline]
pub fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Big-endian unsigned integer of up to 8 bytes.
#[inline]
pub fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_refuses_past_end() {
        let mut c = Cursor::new(&[1, 2, 3, 0xfc, 0x10, 0x27, 9]);
        assert_eq!(c.u16("a"), Ok(0x0201));
        assert_eq!(c.u8("b"), Ok(3));
        assert_eq!(c.lenenc("c"), Ok(10_000));
        assert_eq!(c.remaining(), 1);
        assert_eq!(
            c.u32("d"),
            Err(DecodeError::Truncated {
                what: "d",
                needed: 3
            })
        );
        assert_eq!(c.u8("e"), Ok(9));
    }

    #[test]
    fn lenenc_length_must_fit() {
        let mut c = Cursor::new(&[5, b'a', b'b']);
        assert!(matches!(
            c.lenenc_bytes("s"),
            Err(DecodeError::Truncated { .. })
        ));
        let mut c = Cursor::new(&[0xff]);
        assert!(matches!(c.lenenc("x"), Err(DecodeError::Malformed { .. })));
    }
}
