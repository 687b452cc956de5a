//! The doorbell a shard sleeps on while its queue is empty. A shard on its own
//! executor is woken through glommio's shared channel (an eventfd write when it
//! sleeps); a shard on the source core (`runtime.shards: 0`) through a local
//! channel, which wakes a task, not a thread.

use glommio::channels::local_channel::{LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{ConnectedReceiver, ConnectedSender};

/// The source core's end: rung after each push.
pub enum Ringer {
    /// The shard runs on another executor.
    Shared(ConnectedSender<()>),
    /// The shard runs on the source core.
    Local(LocalSender<()>),
}

impl Ringer {
    /// Wakes the shard if it sleeps.
    pub fn ring(&self) {
        // The bell holds one token: a full bell already has a wake-up pending.
        match self {
            Ringer::Shared(s) => {
                let _ = s.try_send(());
            }
            Ringer::Local(s) => {
                let _ = s.try_send(());
            }
        }
    }

    /// Whether the shard runs on the ringing thread.
    pub fn is_local(&self) -> bool {
        matches!(self, Ringer::Local(_))
    }
}

/// The shard's end.
pub enum Doorbell {
    /// Rung from another executor.
    Shared(ConnectedReceiver<()>),
    /// Rung from the same executor.
    Local(LocalReceiver<()>),
}

impl Doorbell {
    /// Waits for a ring; false when the source's end is gone.
    pub async fn wait(&self) -> bool {
        match self {
            Doorbell::Shared(r) => r.recv().await.is_some(),
            Doorbell::Local(r) => r.recv().await.is_some(),
        }
    }

    /// A bell for a shard on the source core: (source's end, shard's end).
    pub fn local() -> (Ringer, Doorbell) {
        let (tx, rx) = glommio::channels::local_channel::new_bounded(1);
        (Ringer::Local(tx), Doorbell::Local(rx))
    }
}
