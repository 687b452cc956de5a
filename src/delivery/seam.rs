//! The seam between the source core and the shards, in one place: batches of
//! finished deliveries go one way (a bounded crossbeam channel; the in-flight
//! budget keeps it from filling), acks come back the other (one unbounded channel
//! shared by all shards, bounded by the same budget), and a doorbell wakes a
//! sleeping shard. One constructor per kind of shard returns both ends.

use crossbeam_channel::{Receiver, Sender};

use super::bell::{Doorbell, Ringer, SharedBell};
use super::{Ack, ToShard};

/// The source core's end of one shard.
pub struct ShardTx {
    /// Batches of events and task-set changes.
    pub events: Sender<ToShard>,
    /// Wakes the shard after a push.
    pub bell: Ringer,
}

/// A shard's end: where its events come from and its acks go.
pub struct ShardLink {
    /// Batches of events and task-set changes from the source core.
    pub events: Receiver<ToShard>,
    /// Acks back to the source core.
    pub acks: Sender<Ack>,
}

/// A shard on its own thread: the source core's end, and the shard's end with
/// its bell, to move to that thread (`SharedBell::into_doorbell` there).
pub fn cross_core(
    capacity: usize,
    acks: &Sender<Ack>,
) -> std::io::Result<(ShardTx, ShardLink, SharedBell)> {
    let (events, incoming) = crossbeam_channel::bounded(capacity);
    let (bell, doorbell) = Doorbell::shared()?;
    Ok((
        ShardTx { events, bell },
        ShardLink {
            events: incoming,
            acks: acks.clone(),
        },
        doorbell,
    ))
}

/// A shard run as a task on the source core (`runtime.shards: 0`).
pub fn same_core(capacity: usize, acks: &Sender<Ack>) -> (ShardTx, ShardLink, Doorbell) {
    let (events, incoming) = crossbeam_channel::bounded(capacity);
    let (bell, doorbell) = Doorbell::local();
    (
        ShardTx { events, bell },
        ShardLink {
            events: incoming,
            acks: acks.clone(),
        },
        doorbell,
    )
}
