//! The admin server's connections: HTTP/1.1 keep-alive, requests parsed with
//! httparse, answered by the routes in `render`. Bounded in every direction — head
//! size, body size, idle time, connections — because it shares the source core
//! with replication.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use super::render::{self, Reply};
use super::Admin;

/// Largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Largest request body read (and ignored: no route takes one).
const MAX_BODY: usize = 64 * 1024;
/// Connections served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 64;
/// A connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(30);

/// Binds the admin listener, so a taken port fails the start, not later.
pub fn bind(admin: &crate::config::ServerConfig) -> Result<TcpListener, String> {
    let addr = std::net::SocketAddr::new(admin.bind, admin.port);
    TcpListener::bind(addr).map_err(|e| {
        format!("{addr}: {e} (server.bind / server.port; is another instance running?)")
    })
}

/// Accepts connections until the executor ends.
pub async fn serve(listener: TcpListener, admin: Rc<Admin>) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if open.get() >= MAX_CONNECTIONS {
                    continue;
                }
                open.set(open.get() + 1);
                let (admin, open) = (admin.clone(), open.clone());
                glommio::spawn_local(async move {
                    if let Err(e) = connection(stream, &admin).await {
                        tracing::debug!(error = %e, "admin connection ended");
                    }
                    open.set(open.get() - 1);
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin server cannot accept; retrying");
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One parsed request: what the routes need.
#[derive(Debug)]
pub(super) struct Request {
    pub method: String,
    pub path: String,
    pub authorization: Option<Vec<u8>>,
    close: bool,
    body_len: usize,
}

/// Parses a request head from `buf`: `Ok(None)` while incomplete, else the request
/// and the head's length.
fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, Reply> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(render::error(431, "request head too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(render::error(400, &format!("malformed request: {e}"))),
    };
    let mut close = req.version != Some(1);
    let mut body_len = 0usize;
    let mut authorization = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            close = v.contains("close") || (close && !v.contains("keep-alive"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| render::error(400, "bad Content-Length"))?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(render::error(
                411,
                "send a Content-Length, not a chunked body",
            ));
        } else if h.name.eq_ignore_ascii_case("authorization") {
            authorization = Some(h.value.to_vec());
        }
    }
    if body_len > MAX_BODY {
        return Err(render::error(413, "request body too large"));
    }
    let target = req.path.unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/").to_owned();
    Ok(Some((
        Request {
            method: req.method.unwrap_or("").to_owned(),
            path,
            authorization,
            close,
            body_len,
        },
        n,
    )))
}

async fn connection(mut stream: TcpStream, admin: &Admin) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_write_timeout(Some(IDLE))?;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let parsed = loop {
            match parse(&buf) {
                Ok(Some(done)) => break Ok(done),
                Err(reply) => break Err(reply),
                Ok(None) => {}
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let (request, head) = match parsed {
            Ok(p) => p,
            Err(reply) => {
                // The framing is unknown after a bad request: answer and close.
                stream.write_all(&reply.to_bytes(true)).await?;
                return Ok(());
            }
        };
        while buf.len() < head + request.body_len {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head + request.body_len);
        let reply = render::route(admin, &request);
        let mut out = reply.to_bytes(request.close);
        if request.method == "HEAD" {
            out.truncate(out.len() - reply.body_len());
        }
        stream.write_all(&out).await?;
        if request.close {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_auth_and_keep_alive() {
        let raw = b"POST /tasks/a/pause?x=1 HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 2\r\n\r\n{}";
        let (r, n) = parse(raw).unwrap().unwrap();
        assert_eq!(&raw[n..], b"{}");
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/tasks/a/pause")
        );
        assert_eq!(r.authorization.as_deref(), Some(&b"Bearer t"[..]));
        assert_eq!(r.body_len, 2);
        assert!(!r.close);
        let (r, _) = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(r.close);
        let (r, _) = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.close);
    }

    #[test]
    fn refuses_what_it_cannot_frame() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x").unwrap().is_none());
        let status = |b: &[u8]| parse(b).err().map(|r| r.status);
        assert_eq!(status(b"GARBAGE\0\r\n\r\n"), Some(400));
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            Some(413)
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(411)
        );
        let long = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 9000]].concat();
        assert_eq!(status(&long), Some(431));
    }
}
