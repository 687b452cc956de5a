//! A future polled only when its own waker fired.
//!
//! `futures_lite::future::or(busy, timer)` polls both futures every time
//! either is woken. For a glommio timer beside the binlog stream or an HTTP
//! exchange that meant a clock read and a timer-wheel insert per event (the
//! timer re-registers itself on every poll). Wrapped in [`quiet`], the timer
//! is polled once to register, then again only when it fires.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Wraps `inner` so that polls caused by other futures skip it.
pub fn quiet<F: Future>(inner: F) -> Quiet<F> {
    Quiet {
        inner: Box::pin(inner),
        signal: Arc::new(Signal {
            woken: AtomicBool::new(true),
            outer: Mutex::new(None),
        }),
        waker: None,
    }
}

/// See [`quiet`].
pub struct Quiet<F> {
    inner: Pin<Box<F>>,
    signal: Arc<Signal>,
    /// The waker handed to `inner` (made once).
    waker: Option<Waker>,
}

/// What `inner`'s waker does: note the wake, then wake the task that polls
/// the `Quiet`.
struct Signal {
    woken: AtomicBool,
    outer: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        // A poisoned lock only means a panic elsewhere; the waker is still good.
        let outer = match self.outer.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        if let Some(w) = outer {
            w.wake();
        }
    }
}

impl<F: Future> Future for Quiet<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        {
            let mut outer = match this.signal.outer.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if !outer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *outer = Some(cx.waker().clone());
            }
        }
        if !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = this
            .waker
            .get_or_insert_with(|| Waker::from(this.signal.clone()));
        this.inner.as_mut().poll(&mut Context::from_waker(waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    /// Counts its polls; ready on the `ready_at`-th.
    struct Counted {
        polls: Rc<Cell<u32>>,
        ready_at: u32,
    }

    impl Future for Counted {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.set(self.polls.get() + 1);
            if self.polls.get() >= self.ready_at {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    #[test]
    fn the_inner_future_is_polled_only_after_its_own_wake() {
        let polls = Rc::new(Cell::new(0));
        let mut q = quiet(Counted {
            polls: polls.clone(),
            ready_at: 3,
        });
        let outer = Waker::noop();
        let mut cx = Context::from_waker(outer);
        // First poll: polled (woken starts set); it wakes itself each time.
        assert!(Pin::new(&mut q).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut q).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut q).poll(&mut cx).is_ready());
        assert_eq!(polls.get(), 3);
    }

    /// Counts the polls of the future it wraps.
    struct PollCount<F> {
        inner: Pin<Box<F>>,
        polls: Rc<Cell<u32>>,
    }

    impl<F: Future> Future for PollCount<F> {
        type Output = F::Output;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            self.polls.set(self.polls.get() + 1);
            self.inner.as_mut().poll(cx)
        }
    }

    /// A future woken 200 times beside a 50 ms glommio timer; how often the
    /// timer was polled, with and without `quiet`.
    fn timer_polls_beside_a_busy_future(wrap: bool) -> u32 {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .unwrap();
        ex.run(async move {
            let started = Instant::now();
            let busy = async {
                for _ in 0..200 {
                    futures_lite::future::yield_now().await;
                }
                glommio::timer::sleep(Duration::from_secs(5)).await;
                false
            };
            let polls = Rc::new(Cell::new(0u32));
            let timer = PollCount {
                inner: Box::pin(async {
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                    true
                }),
                polls: polls.clone(),
            };
            let fired = if wrap {
                futures_lite::future::or(busy, quiet(timer)).await
            } else {
                futures_lite::future::or(busy, timer).await
            };
            assert!(fired, "the timer did not fire");
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(50) && took < Duration::from_secs(4),
                "{took:?}"
            );
            polls.get()
        })
    }

    #[test]
    fn polls_caused_by_others_skip_a_pending_timer_until_it_fires() {
        let plain = timer_polls_beside_a_busy_future(false);
        let quieted = timer_polls_beside_a_busy_future(true);
        assert!(plain > 200, "plain: {plain}");
        assert!(quieted <= 3, "quiet: {quieted}");
    }
}
