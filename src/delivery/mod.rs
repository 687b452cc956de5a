//! Delivery: what the source core hands to shards, how each task's webhooks are
//! sent (lanes, batches, retries, dead letters), and what comes back (acks).
//!
//! Ordering model: a shard runs, per task, a few *lanes*; each lane sends one
//! request at a time, in arrival order. Events of one key always reach the same
//! shard and lane, so a later event for a key waits while an earlier one is in
//! flight or being retried, and different keys proceed on other lanes.

pub mod bell;
pub mod dlq;
pub mod lane;
pub mod outcome;
pub mod plan;
pub mod request;
pub mod seam;
pub mod shard;
pub mod sign;
pub mod stats;

use bytes::Bytes;

pub use plan::{Plan, TaskPlan};

/// Offset of the id string inside every payload: both shapes start `{"id":"`.
pub(crate) const ID_AT: usize = 7;

/// One webhook body on its way to a shard.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The task's slot in the plan.
    pub task: u32,
    /// The plan generation the event was read under (which URL, batch size and
    /// secret it is sent with).
    pub generation: u32,
    /// Hash of (task, primary key); picks the shard and lane.
    pub key: u64,
    /// Ordinal of the source transaction the row belongs to (for the ack window).
    pub txn: u64,
    /// Length of the (JSON-escaped) id at the start of the body.
    pub id_len: u16,
    /// The JSON object.
    pub body: Bytes,
    /// Row changes it carries, counted against `max_inflight`: 1, or the rows
    /// of a `delivery: transaction` part.
    pub weight: u32,
    /// When the source core made it (hand-off latency is measured from here).
    pub made: std::time::Instant,
    /// Its sequence in its task's spool when it was read back from there (its
    /// transaction is already done for the checkpoint); 0 otherwise.
    pub spool: u64,
}

impl Delivery {
    /// The payload's `id`, also sent as `webhook-id`. JSON escaping never leaves CR or
    /// LF in it, so it is safe in a header.
    pub fn id(&self) -> &[u8] {
        self.body
            .get(ID_AT..ID_AT + usize::from(self.id_len))
            .unwrap_or_default()
    }
}

/// What the source core sends a shard, in order.
#[derive(Debug)]
pub enum ToShard {
    /// Events to queue in their lanes.
    Events(Vec<Delivery>),
    /// A new generation of the task set; events of it follow, events of older
    /// generations may still follow (released by a fence).
    Plan(std::sync::Arc<Plan>),
    /// Generations below this one have no event left anywhere: their plans can go.
    Forget(u32),
}

/// A delivered or dead-lettered event, reported back to the source core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The task's slot.
    pub task: u32,
    /// The plan generation the event was read under.
    pub generation: u32,
    /// The event's transaction ordinal.
    pub txn: u64,
    /// The delivery's weight (see [`Delivery::weight`]).
    pub weight: u32,
    /// See [`Delivery::spool`].
    pub spool: u64,
}

/// Seconds since the epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
