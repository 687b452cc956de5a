//! MySQL packet framing, sans-I/O: bytes from the socket go in, whole payloads come
//! out as `Bytes` split off the read buffer without copying. Payloads of 0xFFFFFF
//! bytes continue in the next packet; those are joined (the only copy), bounded by
//! a maximum size.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::MysqlError;

/// Largest payload of a single wire packet; a payload this long continues.
pub const MAX_CHUNK: usize = 0xff_ffff;

/// Splits a byte stream into packet payloads.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max_payload: usize,
    /// Chunks of a payload that spans several packets.
    partial: Option<BytesMut>,
    /// Where socket reads land, zeroed once: zeroing 64 KiB of the buffer's tail
    /// before every read cost more than copying the few bytes a read brings.
    scratch: Box<[u8]>,
    /// Sequence id of the last packet read.
    pub last_seq: u8,
}

impl Framer {
    /// A framer refusing payloads larger than `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        Framer {
            buf: BytesMut::with_capacity(64 * 1024),
            max_payload,
            partial: None,
            last_seq: 0,
            scratch: vec![0u8; 64 * 1024].into_boxed_slice(),
        }
    }

    /// Reads from `stream` and appends what came. Returns the number of bytes
    /// read; 0 means the peer closed the connection.
    pub async fn fill<S: futures_lite::AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> std::io::Result<usize> {
        use futures_lite::AsyncReadExt;
        let n = stream.read(&mut self.scratch).await?;
        self.buf.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }

    /// Appends bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete payload, `Ok(None)` when more bytes are needed.
    pub fn next_payload(&mut self) -> Result<Option<Bytes>, MysqlError> {
        loop {
            if self.buf.len() < 4 {
                return Ok(None);
            }
            let len = usize::from(self.buf[0])
                | usize::from(self.buf[1]) << 8
                | usize::from(self.buf[2]) << 16;
            let so_far = self.partial.as_ref().map_or(0, BytesMut::len);
            if so_far + len > self.max_payload {
                return Err(MysqlError::PacketTooLarge {
                    size: so_far + len,
                    max: self.max_payload,
                });
            }
            if self.buf.len() < 4 + len {
                // Let the buffer grow to hold the whole packet in one piece.
                self.buf.reserve(4 + len - self.buf.len());
                return Ok(None);
            }
            self.last_seq = self.buf[3];
            self.buf.advance(4);
            let chunk = self.buf.split_to(len);
            if len == MAX_CHUNK {
                self.partial
                    .get_or_insert_with(BytesMut::new)
                    .extend_from_slice(&chunk);
                continue;
            }
            return Ok(Some(match self.partial.take() {
                Some(mut joined) => {
                    joined.extend_from_slice(&chunk);
                    joined.freeze()
                }
                None => chunk.freeze(),
            }));
        }
    }
}

/// Appends `payload` as one or more packets starting at sequence id `seq`;
/// returns the next sequence id.
pub fn write_packets(out: &mut BytesMut, payload: &[u8], mut seq: u8) -> u8 {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_CHUNK);
        out.put_uint_le(n as u64, 3);
        out.put_u8(seq);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        // A payload of exactly k*0xFFFFFF bytes ends with an empty packet.
        if n < MAX_CHUNK {
            return seq;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_across_reads_and_joins_continuations() {
        let big = vec![7u8; MAX_CHUNK + 10];
        let mut wire = BytesMut::new();
        let next = write_packets(&mut wire, b"hello", 0);
        assert_eq!(next, 1);
        write_packets(&mut wire, &big, 1);
        write_packets(&mut wire, &[], 3);
        let mut f = Framer::new(32 << 20);
        // Feed in awkward pieces.
        for piece in wire.chunks(4093) {
            f.push(piece);
        }
        assert_eq!(f.next_payload().unwrap().unwrap(), &b"hello"[..]);
        assert_eq!(f.next_payload().unwrap().unwrap().len(), MAX_CHUNK + 10);
        assert_eq!(f.next_payload().unwrap().unwrap().len(), 0);
        assert!(f.next_payload().unwrap().is_none());
    }

    #[test]
    fn exact_multiple_of_chunk_ends_with_empty_packet() {
        let mut wire = BytesMut::new();
        write_packets(&mut wire, &vec![1u8; MAX_CHUNK], 0);
        assert_eq!(wire.len(), 4 + MAX_CHUNK + 4);
        let mut f = Framer::new(32 << 20);
        f.push(&wire);
        assert_eq!(f.next_payload().unwrap().unwrap().len(), MAX_CHUNK);
    }

    #[test]
    fn oversized_payloads_fail_cleanly() {
        let mut wire = BytesMut::new();
        write_packets(&mut wire, &[0u8; 2000], 0);
        let mut f = Framer::new(1000);
        f.push(&wire[..10]);
        assert!(matches!(
            f.next_payload(),
            Err(MysqlError::PacketTooLarge {
                size: 2000,
                max: 1000
            })
        ));
    }
}
