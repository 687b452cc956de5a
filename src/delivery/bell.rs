//! The doorbell a shard sleeps on while its queue is empty. A shard on its own
//! executor says when it is about to sleep (an atomic flag); the source core
//! rings — one byte on a socket pair, which the shard's executor reads through
//! io_uring — only then. An awake shard costs the source nothing per hand-off, and
//! the shard taking a ring never wakes the source (glommio's shared channel did
//! both: an eventfd write to each side). A shard on the source core
//! (`runtime.shards: 0`) is woken through a local channel, which wakes a task, not
//! a thread.

use std::io::Write;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{fence, AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use glommio::channels::local_channel::{LocalReceiver, LocalSender};

/// The source core's end: rung after each push.
pub enum Ringer {
    /// The shard runs on another executor.
    Shared {
        /// Set by the shard just before it sleeps; cleared by whoever wakes it.
        sleeping: Arc<AtomicBool>,
        /// The write end of the shard's socket pair (non-blocking).
        socket: UnixStream,
    },
    /// The shard runs on the source core.
    Local(LocalSender<()>),
}

impl Ringer {
    /// Wakes the shard if it sleeps (call after the push is visible); true when
    /// this ring sent a wake-up.
    pub fn ring(&self) -> bool {
        match self {
            Ringer::Shared { sleeping, socket } => {
                // Pairs with the fence in `Doorbell::sleep_unless`: either the shard
                // sees the push, or this sees its flag.
                fence(SeqCst);
                let asleep = sleeping.swap(false, SeqCst);
                if asleep {
                    // A full socket already holds a wake-up.
                    let _ = (&*socket).write(&[1]);
                }
                asleep
            }
            // The bell holds one token: a full bell already has a wake-up pending.
            Ringer::Local(s) => s.try_send(()).is_ok(),
        }
    }

    /// Whether the shard runs on the ringing thread.
    pub fn is_local(&self) -> bool {
        matches!(self, Ringer::Local(_))
    }
}

/// The shard's end of a shared bell as it travels to the shard's thread.
pub struct SharedBell {
    sleeping: Arc<AtomicBool>,
    socket: UnixStream,
}

impl SharedBell {
    /// The doorbell, on the shard's executor (its socket joins that executor's ring).
    pub fn into_doorbell(self) -> Doorbell {
        // SAFETY: the descriptor is open and owned by `self.socket`; ownership
        // passes to the glommio stream.
        let reader = unsafe { glommio::net::UnixStream::from_raw_fd(self.socket.into_raw_fd()) };
        Doorbell::Shared {
            sleeping: self.sleeping,
            reader,
        }
    }
}

/// The shard's end.
pub enum Doorbell {
    /// Rung from another executor.
    Shared {
        /// See [`Ringer::Shared`].
        sleeping: Arc<AtomicBool>,
        /// The read end of the socket pair.
        reader: glommio::net::UnixStream,
    },
    /// Rung from the same executor.
    Local(LocalReceiver<()>),
}

impl Doorbell {
    /// A bell for a shard on another executor: (source's end, shard's end).
    pub fn shared() -> std::io::Result<(Ringer, SharedBell)> {
        let (write, read) = UnixStream::pair()?;
        write.set_nonblocking(true)?;
        read.set_nonblocking(true)?;
        let sleeping = Arc::new(AtomicBool::new(false));
        Ok((
            Ringer::Shared {
                sleeping: sleeping.clone(),
                socket: write,
            },
            SharedBell {
                sleeping,
                socket: read,
            },
        ))
    }

    /// A bell for a shard on the source core: (source's end, shard's end).
    pub fn local() -> (Ringer, Doorbell) {
        let (tx, rx) = glommio::channels::local_channel::new_bounded(1);
        (Ringer::Local(tx), Doorbell::Local(rx))
    }

    /// Sleeps until rung, unless `has_work` (checked after the shard has said it
    /// sleeps) finds something queued. False when the source's end is gone.
    pub async fn sleep_unless(&mut self, has_work: impl Fn() -> bool) -> bool {
        match self {
            Doorbell::Shared { sleeping, reader } => {
                sleeping.store(true, SeqCst);
                fence(SeqCst);
                if has_work() {
                    sleeping.store(false, SeqCst);
                    return true;
                }
                let mut rings = [0u8; 64];
                let read = futures_lite::AsyncReadExt::read(reader, &mut rings).await;
                matches!(read, Ok(n) if n > 0)
            }
            Doorbell::Local(r) => {
                if has_work() {
                    return true;
                }
                r.recv().await.is_some()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Rings while the shard is awake write nothing; a ring to a sleeping shard
    /// writes one byte and clears the flag, so the next ring writes nothing again.
    #[test]
    fn only_a_sleeping_shard_costs_a_write() {
        use std::io::Read;
        let (ring, bell) = Doorbell::shared().unwrap();
        let pending = |bell: &SharedBell| {
            let mut buf = [0u8; 8];
            match (&bell.socket).read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                Err(e) => panic!("{e}"),
            }
        };
        assert!(!ring.ring() && !ring.ring());
        assert_eq!(pending(&bell), 0, "an awake shard got a wake-up");
        bell.sleeping.store(true, SeqCst);
        assert!(ring.ring());
        assert!(!bell.sleeping.load(SeqCst), "the ring cleared the flag");
        assert!(!ring.ring());
        assert_eq!(pending(&bell), 1, "one wake-up for one sleep");
    }

    /// A ring reaches a shard asleep on its executor, every time (a lost wake-up
    /// would leave it asleep past the deadline).
    #[test]
    fn rings_wake_a_sleeping_shard() {
        let (ring, bell) = Doorbell::shared().unwrap();
        let Ringer::Shared { sleeping, .. } = &ring else {
            panic!("a shared bell");
        };
        let sleeping = sleeping.clone();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = queued.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let _shard = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let mut bell = bell.into_doorbell();
                let mut done = 0;
                // A stale wake-up only costs a pass; the count is what was queued.
                while done < 3 {
                    if !bell.sleep_unless(|| seen.load(SeqCst) > done).await {
                        break;
                    }
                    done = seen.load(SeqCst);
                    let _ = done_tx.send(done);
                }
            })
            .unwrap();
        for n in 1..=3 {
            // Wait until the shard sleeps, then push and ring once.
            while !sleeping.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            queued.store(n, SeqCst);
            ring.ring();
            let mut got = 0;
            while got < n {
                got = done_rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("the shard woke for what was queued");
            }
        }
        // The source's end gone: a sleeping shard learns it.
        let (ring, bell) = Doorbell::shared().unwrap();
        drop(ring);
        let ended = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move { bell.into_doorbell().sleep_unless(|| false).await })
            .unwrap();
        assert!(!ended.join().unwrap());
    }
}
