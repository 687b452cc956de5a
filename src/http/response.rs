//! Reading one HTTP/1.1 response from bytes as they arrive (sans-I/O): the head via
//! httparse, 1xx answers skipped, bodies framed by Content-Length, chunked encoding or
//! the end of the connection, kept only up to a small cap and drained up to a larger one.

use std::time::Duration;

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Body bytes read and thrown away to keep a connection reusable; past this the
/// connection is closed instead.
pub const MAX_DRAIN: usize = 64 * 1024;
/// Body bytes kept for error messages and the dead-letter file.
pub const KEPT_BODY: usize = 512;
const MAX_HEADERS: usize = 64;

/// What a receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Retry-After`, when given in seconds (HTTP dates are ignored).
    pub retry_after: Option<Duration>,
    /// `Location`, for the error message of a redirect (never followed).
    pub location: Option<String>,
    /// The start of the body.
    pub body: Vec<u8>,
    /// Whether the connection may carry another request.
    pub reusable: bool,
}

/// A response that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not HTTP, or broken framing.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// The head is larger than [`MAX_HEAD`].
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The connection ended before the response did.
    #[error("connection closed after {0} bytes of the response")]
    Truncated(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Parses one response from `buf`, the bytes read so far. `closed` says the peer
/// has ended the stream (no more bytes will come). Returns `Ok(None)` while more
/// bytes are needed; `Ok(Some((response, consumed)))` when done, where `consumed`
/// tells how far the buffer may be discarded (the body may not be fully read when it
/// is over [`MAX_DRAIN`]; the response is then marked not reusable).
pub fn parse(buf: &[u8], closed: bool) -> Result<Option<(Response, usize)>, ResponseError> {
    let mut start = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Response::new(&mut headers);
        let rest = &buf[start..];
        let head_len = match head.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if rest.len() > MAX_HEAD {
                    return Err(ResponseError::HeadTooLarge);
                }
                if closed {
                    return Err(ResponseError::Truncated(buf.len()));
                }
                return Ok(None);
            }
            Err(e) => return Err(ResponseError::Malformed(e.to_string())),
        };
        let status = head.code.unwrap_or(0);
        // 1xx answers (100 Continue, 103 Early Hints) precede the real one.
        if (100..200).contains(&status) && status != 101 {
            start += head_len;
            continue;
        }
        if status == 101 {
            return Err(ResponseError::Malformed(
                "101 Switching Protocols to a POST".into(),
            ));
        }
        let meta = Head::read(head.version.unwrap_or(1), head.headers)?;
        let framing = if status == 204 || status == 304 {
            Framing::Length(0)
        } else if meta.chunked {
            Framing::Chunked
        } else if let Some(n) = meta.length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        let body_at = start + head_len;
        let Some((body, consumed, complete)) = read_body(buf, body_at, framing, closed)? else {
            return Ok(None);
        };
        let response = Response {
            status,
            retry_after: meta.retry_after,
            location: meta.location,
            body,
            reusable: complete && meta.keep_alive && framing != Framing::UntilClose,
        };
        return Ok(Some((response, consumed)));
    }
}

/// The headers that matter here.
struct Head {
    length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
    retry_after: Option<Duration>,
    location: Option<String>,
}

impl Head {
    fn read(version: u8, headers: &[httparse::Header<'_>]) -> Result<Head, ResponseError> {
        let mut h = Head {
            length: None,
            chunked: false,
            // HTTP/1.1 keeps the connection unless told otherwise; 1.0 closes it.
            keep_alive: version >= 1,
            retry_after: None,
            location: None,
        };
        for header in headers {
            let value = std::str::from_utf8(header.value).unwrap_or("").trim();
            let name = header.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = value
                    .parse::<usize>()
                    .map_err(|_| ResponseError::Malformed(format!("Content-Length {value:?}")))?;
                if h.length.is_some_and(|m| m != n) {
                    return Err(ResponseError::Malformed(
                        "conflicting Content-Length headers".into(),
                    ));
                }
                h.length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                h.chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        h.keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") && version == 0 {
                        h.keep_alive = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("retry-after") {
                h.retry_after = value.parse::<u64>().ok().map(Duration::from_secs);
            } else if name.eq_ignore_ascii_case("location") {
                h.location = Some(value.chars().take(256).collect());
            }
        }
        Ok(h)
    }
}

/// Returns the kept body start, how many buffer bytes the response used, and
/// whether the body was read to its end; `None` when more bytes are needed.
fn read_body(
    buf: &[u8],
    at: usize,
    framing: Framing,
    closed: bool,
) -> Result<Option<(Vec<u8>, usize, bool)>, ResponseError> {
    let available = &buf[at..];
    let keep = |b: &[u8]| b[..b.len().min(KEPT_BODY)].to_vec();
    match framing {
        Framing::Length(n) => {
            if available.len() >= n {
                Ok(Some((keep(&available[..n]), at + n, true)))
            } else if available.len() >= MAX_DRAIN {
                Ok(Some((keep(available), buf.len(), false)))
            } else if closed {
                Err(ResponseError::Truncated(buf.len()))
            } else {
                Ok(None)
            }
        }
        Framing::UntilClose => {
            if closed || available.len() >= MAX_DRAIN {
                Ok(Some((keep(available), buf.len(), closed)))
            } else {
                Ok(None)
            }
        }
        Framing::Chunked => match dechunk(available)? {
            Some((body, used)) => Ok(Some((body, at + used, true))),
            None if available.len() >= MAX_DRAIN => Ok(Some((keep(available), buf.len(), false))),
            None if closed => Err(ResponseError::Truncated(buf.len())),
            None => Ok(None),
        },
    }
}

/// Decodes a complete chunked body from the start of `b`: the kept start of the
/// data and the bytes used (trailers included), or `None` if incomplete.
fn dechunk(b: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ResponseError> {
    let mut body = Vec::new();
    let mut i = 0;
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&b[i..]) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ResponseError::Malformed("bad chunk size line".into())),
        };
        i += size_len;
        if size == 0 {
            break;
        }
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s <= MAX_DRAIN * 16)
            .ok_or_else(|| ResponseError::Malformed(format!("chunk of {size} bytes")))?;
        let Some(data) = b.get(i..i + size) else {
            return Ok(None);
        };
        let room = KEPT_BODY.saturating_sub(body.len());
        body.extend_from_slice(&data[..data.len().min(room)]);
        i += size;
        match b.get(i..i + 2) {
            None | Some([b'\r']) => return Ok(None),
            Some(b"\r\n") => i += 2,
            Some(_) => return Err(ResponseError::Malformed("chunk not ended by CRLF".into())),
        }
    }
    // Trailer fields, then an empty line.
    loop {
        let rest = &b[i..];
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        i += eol + 2;
        if eol == 0 {
            return Ok(Some((body, i)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(text: &[u8]) -> Response {
        let (r, used) = parse(text, false).unwrap().unwrap();
        assert_eq!(
            used,
            text.len(),
            "consumed all of {:?}",
            String::from_utf8_lossy(text)
        );
        r
    }

    #[test]
    fn content_length_body() {
        let r = whole(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(
            (r.status, r.body.as_slice(), r.reusable),
            (200, &b"hello"[..], true)
        );
    }

    #[test]
    fn partial_until_complete_at_every_split() {
        let text = b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n3;x=y\r\n!!!\r\n0\r\nTrailer: t\r\n\r\n";
        for cut in 0..text.len() {
            assert_eq!(parse(&text[..cut], false).unwrap(), None, "cut at {cut}");
        }
        let r = whole(text);
        assert_eq!(r.status, 503);
        assert_eq!(r.body, b"busy!!!");
        assert_eq!(r.retry_after, Some(Duration::from_secs(7)));
        assert!(r.reusable);
    }

    #[test]
    fn informational_answers_are_skipped() {
        let r = whole(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(r.status, 204);
    }

    #[test]
    fn connection_close_and_http10() {
        assert!(
            !whole(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").reusable
        );
        assert!(!whole(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").reusable);
        assert!(
            whole(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
                .reusable
        );
    }

    #[test]
    fn body_until_close() {
        let text = b"HTTP/1.1 200 OK\r\n\r\nstream";
        assert_eq!(parse(text, false).unwrap(), None);
        let (r, _) = parse(text, true).unwrap().unwrap();
        assert_eq!((r.body.as_slice(), r.reusable), (&b"stream"[..], false));
    }

    #[test]
    fn oversized_body_is_cut_and_not_reused() {
        let mut text = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n".to_vec();
        text.resize(text.len() + MAX_DRAIN, b'x');
        let (r, _) = parse(&text, false).unwrap().unwrap();
        assert_eq!(r.body.len(), KEPT_BODY);
        assert!(!r.reusable);
    }

    #[test]
    fn truncated_and_malformed_are_errors() {
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", true),
            Err(ResponseError::Truncated(41))
        );
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false).is_err());
        assert!(parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
        assert!(parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            false
        )
        .is_err());
        let huge = vec![b'a'; MAX_HEAD + 10];
        let mut text = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        text.extend_from_slice(&huge);
        assert_eq!(parse(&text, false), Err(ResponseError::HeadTooLarge));
    }
}
