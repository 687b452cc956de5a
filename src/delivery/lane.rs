//! A lane: one task's FIFO of events on one shard, sent one request at a time —
//! batched when the task asks for it, retried with backoff, dead-lettered when
//! retries run out or the answer is permanent — then acked to the source.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;

use super::outcome::{classify, Outcome};
use super::shard::ShardCtx;
use super::{request, unix_now, Delivery, TaskPlan};
use crate::delivery::dlq::DeadLetter;
use crate::metrics::Stage;
use crate::net::Backoff;

/// The longest `Retry-After` obeyed: a receiver may ask for more than
/// `retry_max_delay`, but not park a lane for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How often a paused lane looks whether its task was resumed.
const PAUSE_POLL: Duration = Duration::from_millis(20);

/// Events waiting in one lane.
pub struct Lane {
    queue: RefCell<VecDeque<Delivery>>,
    /// Counts queued events; the lane's worker sleeps on it.
    queued: Semaphore,
    busy: Cell<bool>,
}

impl Default for Lane {
    fn default() -> Self {
        Lane {
            queue: RefCell::new(VecDeque::new()),
            queued: Semaphore::new(0),
            busy: Cell::new(false),
        }
    }
}

impl Lane {
    /// Queues `d` behind the lane's earlier events.
    pub fn push(&self, d: Delivery) {
        if self.busy.get() {
            // Its exchange may be waiting lazily for its answer: `d` waits
            // for that read, which must not wait for another wake-up.
            crate::http::client::hurry_answers();
        }
        self.queue.borrow_mut().push_back(d);
        self.queued.signal(1);
    }

    /// True when nothing is queued or being sent.
    pub fn is_idle(&self) -> bool {
        !self.busy.get() && self.queue.borrow().is_empty()
    }

    fn pop(&self) -> Option<Delivery> {
        self.queue.borrow_mut().pop_front()
    }

    /// The next event if it belongs to `generation` (a batch is sent with one
    /// generation's settings).
    fn pop_same(&self, generation: u32) -> Option<Delivery> {
        let mut queue = self.queue.borrow_mut();
        if queue.front()?.generation != generation {
            return None;
        }
        if !self.queued.try_acquire(1).unwrap_or(false) {
            return None;
        }
        queue.pop_front()
    }

    /// Waits for the next event of `generation`; `None` after `limit` passes
    /// without one, or when the next is of another generation.
    async fn next_within(&self, limit: Duration, generation: u32) -> Option<Delivery> {
        let got = futures_lite::future::or(async { self.queued.acquire(1).await.is_ok() }, async {
            glommio::timer::sleep(limit).await;
            false
        })
        .await;
        if !got {
            return None;
        }
        let mut queue = self.queue.borrow_mut();
        if queue.front().is_some_and(|d| d.generation == generation) {
            queue.pop_front()
        } else {
            // Not ours to take: give the permit back for the next batch.
            self.queued.signal(1);
            None
        }
    }
}

/// The lane's worker: runs for the life of the shard.
pub async fn run(ctx: Rc<ShardCtx>, task: u32, lane: Rc<Lane>) {
    let mut sender = Sender::new(&ctx, task);
    let mut batch: Vec<Delivery> = Vec::new();
    loop {
        if lane.queued.acquire(1).await.is_err() {
            return;
        }
        lane.busy.set(true);
        // A paused task's events stay queued (and unacked, so the checkpoint waits).
        while ctx.plan.controls.is_paused(task) {
            glommio::timer::sleep(PAUSE_POLL).await;
        }
        let Some(first) = lane.pop() else {
            lane.busy.set(false);
            continue;
        };
        // The settings the first event was read under hold for its whole batch.
        let generation = first.generation;
        let plan = ctx.plan_of(generation);
        let Some(t) = plan.tasks.get(task as usize) else {
            ctx.ack(&[first]);
            lane.busy.set(false);
            continue;
        };
        batch.push(first);
        while batch.len() < t.batch_size {
            match lane.pop_same(generation) {
                Some(d) => batch.push(d),
                None => break,
            }
        }
        if batch.len() < t.batch_size && !t.linger.is_zero() {
            let until = Instant::now() + t.linger;
            while batch.len() < t.batch_size {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match lane.next_within(left, generation).await {
                    Some(d) => batch.push(d),
                    None => break,
                }
            }
        }
        // With nothing queued behind it only the ack waits for the answer:
        // read it when the core wakes for the next event (shards on the
        // source core), not in a wake-up of its own.
        let lazy = ctx.lazy_answers
            && lane.queue.borrow().is_empty()
            && crate::http::client::answers_can_wait();
        sender.deliver(t, &batch, lazy).await;
        ctx.ack(&batch);
        batch.clear();
        lane.busy.set(false);
    }
}

/// How often a lane held by `ha` looks again whether it may send.
const HELD_POLL: Duration = Duration::from_millis(20);

/// Sends one request (a single event or a batch) until it is acknowledged or
/// dead-lettered.
struct Sender<'a> {
    ctx: &'a ShardCtx,
    task: u32,
    body: Vec<u8>,
    request: Vec<u8>,
}

impl<'a> Sender<'a> {
    fn new(ctx: &'a ShardCtx, task: u32) -> Self {
        Sender {
            ctx,
            task,
            body: Vec::new(),
            request: Vec::with_capacity(4096),
        }
    }

    async fn deliver(&mut self, t: &TaskPlan, batch: &[Delivery], lazy: bool) {
        let ctx = self.ctx;
        let Some(first) = batch.first() else {
            return;
        };
        let (id, body): (Vec<u8>, &[u8]) = if t.batch_size == 1 {
            (first.id().to_vec(), &first.body)
        } else {
            request::batch_body(&mut self.body, batch.iter().map(|d| &d.body));
            (request::batch_id(first.id(), batch.len()), &self.body)
        };
        let pool = ctx.pool(&t.endpoint);
        let mut backoff = Backoff::new(ctx.plan.retry_base_delay, ctx.plan.retry_max_delay);
        let mut attempts: u32 = 0;
        let leadership = &ctx.plan.controls.leadership;
        loop {
            // With `ha`, nothing is sent outside the lease's safety margin: a
            // deposed or frozen instance holds its events until it restarts as
            // standby, and the new active sends them again from the checkpoint.
            while !leadership.allows() {
                glommio::timer::sleep(HELD_POLL).await;
            }
            attempts = attempts.saturating_add(1);
            request::write(
                &mut self.request,
                t,
                &id,
                body,
                unix_now(),
                leadership.epoch(),
            );
            let sent = Instant::now();
            let result = pool.exchange(&self.request, ctx.plan.timeout, lazy).await;
            ctx.latency.record_since(ctx.slot(), Stage::Http, sent);
            ctx.stats.answered(self.task, &result);
            let (error, status) = match classify(&result) {
                Outcome::Delivered => {
                    ctx.stats.delivered(self.task, batch.len());
                    return;
                }
                Outcome::Permanent { error, status } => {
                    ctx.stats.failed(self.task, error.clone());
                    (error, Some(status))
                }
                Outcome::Retry {
                    error,
                    status,
                    after,
                } => {
                    ctx.stats.failed(self.task, error.clone());
                    let exhausted = ctx.plan.max_retries.is_some_and(|max| attempts > max);
                    if !exhausted {
                        let delay =
                            after.map_or_else(|| backoff.next_delay(), |a| a.min(MAX_RETRY_AFTER));
                        tracing::warn!(task = %t.id, url = %t.url, status, attempt = attempts, retry_in = ?delay, id = %String::from_utf8_lossy(&id), %error, "webhook failed; retrying");
                        ctx.stats.retried(self.task);
                        glommio::timer::sleep(delay).await;
                        continue;
                    }
                    (error, status)
                }
            };
            tracing::error!(task = %t.id, url = %t.url, status, attempts, id = %String::from_utf8_lossy(&id), %error, "webhook dead-lettered");
            let letter = DeadLetter {
                task: &t.id,
                url: &t.url,
                id: &id,
                attempts,
                status,
                error: &error,
                payload: body,
            };
            ctx.dead_letter(self.task, &t.id, letter.to_line()).await;
            ctx.stats.dead_lettered(self.task, batch.len());
            return;
        }
    }
}
