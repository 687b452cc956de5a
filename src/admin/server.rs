//! The admin server's connections: HTTP/1.1 keep-alive, requests parsed with
//! httparse, answered by the routes in `render`. Bounded in every direction — head
//! size, body size, idle time, the whole time a request may take to arrive,
//! connections — because it shares the source core with replication. When every
//! slot is taken, a new connection evicts the one that has waited longest for its
//! request, so a flood of slow clients cannot keep a health probe out.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use super::render::{self, Reply};
use super::Admin;

/// Largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Largest request body read (and ignored: no route takes one).
const MAX_BODY: usize = 64 * 1024;
/// Connections served at once; past this a new one evicts the longest-waiting.
const MAX_CONNECTIONS: usize = 64;
/// Evicted connections close at once, but never hold more than this many sockets.
const HARD_LIMIT: usize = 2 * MAX_CONNECTIONS;
/// A keep-alive connection without a new request this long is closed.
const IDLE: Duration = Duration::from_secs(30);
/// From a request's first byte to its last: a client trickling bytes is cut off.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The admin port cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("{addr}: {reason} (server.bind / server.port; is another instance running?)")]
pub struct BindError {
    /// The address asked for.
    pub addr: std::net::SocketAddr,
    /// glommio's complaint.
    pub reason: String,
}

/// Binds the admin listener, so a taken port fails the start, not later.
pub fn bind(admin: &crate::config::ServerConfig) -> Result<TcpListener, BindError> {
    let addr = std::net::SocketAddr::new(admin.bind, admin.port);
    TcpListener::bind(addr).map_err(|e| BindError {
        addr,
        reason: e.to_string(),
    })
}

/// Accepts connections until the executor ends.
pub async fn serve(listener: TcpListener, admin: Rc<Admin>) {
    let slots = Rc::new(RefCell::new(Slots::default()));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let Some(slot) = Slots::open(&slots) else {
                    continue;
                };
                // Let an evicted connection close before the next accept, so a
                // burst of new ones cannot pile up sockets.
                futures_lite::future::yield_now().await;
                let admin = admin.clone();
                glommio::spawn_local(async move {
                    if let Err(e) = connection(stream, &admin, &slot).await {
                        tracing::debug!(error = %e, "admin connection ended");
                    }
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

/// The open connections and, for those waiting for a request, since when.
#[derive(Default)]
struct Slots {
    next: u64,
    open: HashMap<u64, Rc<Eviction>>,
    waiting: HashMap<u64, Instant>,
}

impl Slots {
    /// Takes a slot for a new connection, evicting the connection that has waited
    /// longest for a request when all are taken; `None` past the hard limit.
    fn open(slots: &Rc<RefCell<Slots>>) -> Option<Slot> {
        let mut s = slots.borrow_mut();
        if s.open.len() >= HARD_LIMIT {
            return None;
        }
        if s.open.len() >= MAX_CONNECTIONS {
            let oldest = s
                .waiting
                .iter()
                .min_by_key(|(_, since)| **since)
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                s.waiting.remove(&id);
                // Its slot is free now; its socket closes when its task next runs.
                if let Some(e) = s.open.remove(&id) {
                    e.fire();
                }
            }
        }
        let id = s.next;
        s.next += 1;
        let eviction = Rc::new(Eviction::default());
        s.open.insert(id, eviction.clone());
        Some(Slot {
            id,
            slots: slots.clone(),
            eviction,
        })
    }
}

/// One connection's place in [`Slots`]; given back on drop.
struct Slot {
    id: u64,
    slots: Rc<RefCell<Slots>>,
    eviction: Rc<Eviction>,
}

impl Slot {
    /// The connection waits for a request (it may be evicted) or not.
    fn waiting(&self, yes: bool) {
        let mut s = self.slots.borrow_mut();
        if yes {
            s.waiting.insert(self.id, Instant::now());
        } else {
            s.waiting.remove(&self.id);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.borrow_mut();
        s.open.remove(&self.id);
        s.waiting.remove(&self.id);
    }
}

/// Set when a connection must give its slot up; wakes its pending read.
#[derive(Default)]
struct Eviction {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Eviction {
    fn fire(&self) {
        self.fired.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    async fn wait(&self) {
        futures_lite::future::poll_fn(|cx| {
            if self.fired.get() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

/// Reads into `chunk` unless `deadline` passes or the slot is evicted first
/// (then `None`).
async fn read_until(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    deadline: Instant,
    eviction: &Eviction,
) -> std::io::Result<Option<usize>> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() || eviction.fired.get() {
        return Ok(None);
    }
    futures_lite::future::or(async { stream.read(chunk).await.map(Some) }, async {
        futures_lite::future::or(glommio::timer::sleep(left), eviction.wait()).await;
        Ok(None)
    })
    .await
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
pub(super) fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, Reply> {
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
    let mut body_len: Option<usize> = None;
    let mut authorization = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            close = v.contains("close") || (close && !v.contains("keep-alive"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| render::error(400, "bad Content-Length"))?;
            // RFC 9112 section 6.3: differing lengths leave the framing unknown.
            if body_len.is_some_and(|l| l != len) {
                return Err(render::error(400, "conflicting Content-Length headers"));
            }
            body_len = Some(len);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(render::error(
                411,
                "send a Content-Length, not a chunked body",
            ));
        } else if h.name.eq_ignore_ascii_case("authorization") {
            authorization = Some(h.value.to_vec());
        }
    }
    let body_len = body_len.unwrap_or(0);
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

async fn connection(mut stream: TcpStream, admin: &Admin, slot: &Slot) -> std::io::Result<()> {
    stream.set_write_timeout(Some(IDLE))?;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        slot.waiting(true);
        let mut deadline = Instant::now() + IDLE;
        if !buf.is_empty() {
            deadline = Instant::now() + REQUEST_DEADLINE;
        }
        let parsed = loop {
            match parse(&buf) {
                Ok(Some(done)) => break Ok(done),
                Err(reply) => break Err(reply),
                Ok(None) => {}
            }
            let Some(n) = read_until(&mut stream, &mut chunk, deadline, &slot.eviction).await?
            else {
                return Ok(());
            };
            if n == 0 {
                return Ok(());
            }
            if buf.is_empty() {
                deadline = deadline.min(Instant::now() + REQUEST_DEADLINE);
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
            let Some(n) = read_until(&mut stream, &mut chunk, deadline, &slot.eviction).await?
            else {
                return Ok(());
            };
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        slot.waiting(false);
        let body: Vec<u8> = buf.drain(..head + request.body_len).skip(head).collect();
        let reply = render::finish(admin, render::route(admin, &request, &body)).await;
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
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n"),
            Some(400)
        );
        // The same length twice is one length.
        assert!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}").is_ok()
        );
        let long = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 9000]].concat();
        assert_eq!(status(&long), Some(431));
    }
}
