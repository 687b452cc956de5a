//! The verbs of the command line that do work: `run` (the service), `check`,
//! `tail`, and `dlq replay`. Each wires the stages below (source, dispatch,
//! delivery, checkpoint) for its purpose; `main.rs` only parses arguments and
//! turns results into exit codes.

pub mod check;
pub mod replay;
pub mod run;
pub mod spool_replay;
pub mod tail;

/// The one-thread executor a replay sends from (`dlq replay`, spool replay,
/// `POST /tasks/{id}/replay`): unbound, so it runs beside a running instance.
pub(crate) fn replay_executor() -> Result<glommio::LocalExecutor, glommio::GlommioError<()>> {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("rowhook-replay")
        .io_memory(run::IO_MEMORY)
        .make()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    fn executor() -> glommio::LocalExecutor {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .unwrap()
    }

    /// The patched glommio loop (src/vendor/glommio) leaves an armed 100 ms
    /// preemption timer in place across passes; a shorter timer due before it
    /// must still replace it before the executor sleeps.
    #[test]
    fn a_short_timer_wakes_a_sleeping_executor_on_time() {
        let mut took = executor().run(async {
            let mut took = Vec::new();
            for _ in 0..20 {
                // A few passes first, so the preemption timer is armed.
                for _ in 0..3 {
                    futures_lite::future::yield_now().await;
                }
                let t = Instant::now();
                glommio::timer::sleep(Duration::from_millis(2)).await;
                took.push(t.elapsed());
            }
            took
        });
        took.sort();
        assert!(took[10] < Duration::from_millis(30), "{took:?}");
    }

    /// A result from another thread (glommio's blocking pool, where the
    /// checkpoint's fsyncs run) wakes a sleeping executor at once: the patched
    /// loop pairs fences where upstream issued membarrier(2); a lost wake-up
    /// would wait for the next preemption timer, 100 ms.
    #[test]
    fn a_blocking_pool_result_wakes_a_sleeping_executor() {
        let mut took = executor().run(async {
            let mut took = Vec::new();
            for _ in 0..100 {
                let t = Instant::now();
                glommio::executor()
                    .spawn_blocking(|| std::thread::sleep(Duration::from_millis(1)))
                    .await;
                took.push(t.elapsed());
            }
            took
        });
        took.sort();
        assert!(took[50] < Duration::from_millis(20), "{took:?}");
        assert!(took[90] < Duration::from_millis(80), "{took:?}");
    }

    /// A task that only yields (always runnable, no I/O) keeps running across
    /// the preemption timer's expiries: the patched loop must not take a fired
    /// timer for "nothing to do" and sleep with the task still runnable.
    #[test]
    fn a_runnable_task_is_not_left_asleep_when_the_preemption_timer_fires() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let spun = executor().run(async {
                let t = Instant::now();
                let mut passes = 0u64;
                while t.elapsed() < Duration::from_millis(600) {
                    futures_lite::future::yield_now().await;
                    passes += 1;
                }
                passes
            });
            let _ = tx.send(spun);
        });
        let spun = rx.recv_timeout(Duration::from_secs(10));
        assert!(
            spun.is_ok(),
            "a yielding task stopped running: the executor slept with it runnable"
        );
    }
}
