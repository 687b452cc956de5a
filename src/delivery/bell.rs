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
    /// Wakes the shard if it sleeps (call after the push is visible).
    pub fn ring(&self) {
        match self {
            Ringer::Shared { sleeping, socket } => {
                // Pairs with the fence in `Doorbell::sleep_unless`: either the shard
                // sees the push, or this sees its flag.
                fence(SeqCst);
                if sleeping.swap(false, SeqCst) {
                    // A full socket already holds a wake-up.
                    let _ = (&*socket).write(&[1]);
                }
            }
            Ringer::Local(s) => {
                // The bell holds one token: a full bell already has a wake-up pending.
                let _ = s.try_send(());
            }
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

    /// A ring reaches a sleeping shard; rings while it is awake cost no write and
    /// leave no stale wake-up behind.
    #[test]
    fn rings_wake_a_sleeping_shard_and_only_then_write() {
        let (ring, bell) = Doorbell::shared().unwrap();
        let Ringer::Shared { sleeping, .. } = &ring else {
            panic!("a shared bell");
        };
        let sleeping = sleeping.clone();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = queued.clone();
        let shard = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let mut bell = bell.into_doorbell();
                let mut woke = 0;
                while woke < 3 {
                    if bell.sleep_unless(|| seen.load(SeqCst) > woke).await {
                        woke += 1;
                    } else {
                        return None;
                    }
                }
                Some(woke)
            })
            .unwrap();
        for n in 1..=3 {
            // Wait until the shard sleeps, then push and ring once.
            while !sleeping.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            queued.store(n, SeqCst);
            ring.ring();
            assert!(!sleeping.load(SeqCst), "the ring cleared the flag");
            // Awake now or soon: more rings while the flag is clear write nothing.
            ring.ring();
        }
        assert_eq!(shard.join().unwrap(), Some(3));
        // The source's end gone: a sleeping shard learns it.
        let (ring, bell) = Doorbell::shared().unwrap();
        drop(ring);
        let ended = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move { bell.into_doorbell().sleep_unless(|| false).await })
            .unwrap();
        assert!(!ended.join().unwrap());
    }
}
