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

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The patched glommio timer (ROWHOOK-PATCH.md §9) skips the re-insert
    /// when a timer that has not fired is polled again; the waker of the
    /// latest poll must still be the one woken, and the timer must fire.
    #[test]
    fn a_timer_polled_again_wakes_the_latest_poller_when_it_fires() {
        use std::future::Future;
        use std::sync::{atomic::Ordering, Arc};
        let (first, latest, ready) = executor().run(async {
            let first = Arc::new(Wakes::default());
            let latest = Arc::new(Wakes::default());
            let mut timer = std::pin::pin!(glommio::timer::Timer::new(Duration::from_millis(5)));
            for w in [&first, &first, &latest] {
                let waker = std::task::Waker::from(w.clone());
                let polled = timer
                    .as_mut()
                    .poll(&mut std::task::Context::from_waker(&waker));
                assert!(polled.is_pending());
            }
            let t = Instant::now();
            while latest.0.load(Ordering::SeqCst) == 0 && t.elapsed() < Duration::from_secs(2) {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            let waker = std::task::Waker::from(latest.clone());
            let ready = timer
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
                .is_ready();
            (
                first.0.load(Ordering::SeqCst),
                latest.0.load(Ordering::SeqCst),
                ready,
            )
        });
        assert_eq!((first, latest, ready), (0, 1, true));
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
    /// The executor must not park with a runnable task when a completion
    /// nobody waits for (a fired latency timer, which the patched loop keeps
    /// armed across passes, or the throughput timer's eventfd write) lands
    /// between its I/O poll and its run of the task queues: with no timer or
    /// I/O left, the task never ran again (`bench spool` hung in CI). Hogging
    /// both CPUs deschedules the executors at random points of their loop,
    /// which opens that window; without the fix one of four executors stalls
    /// within about three seconds here, in debug and release builds.
    #[test]
    fn a_task_woken_by_its_timer_runs_though_a_stray_completion_arrives() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let hogs: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    }
                    x
                })
            })
            .collect();
        let progress: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        for count in &progress {
            let (count, stop, done) = (count.clone(), stop.clone(), done_tx.clone());
            std::thread::spawn(move || {
                executor().run(async move {
                    // Results from the blocking pool wake the executor at
                    // random moments, some of them just before a timer is due.
                    let blocking = glommio::spawn_local({
                        let stop = stop.clone();
                        async move {
                            let mut i = 0u64;
                            while !stop.load(Ordering::Relaxed) {
                                i += 1;
                                let us = (i * 7919) % 1000;
                                glommio::executor()
                                    .spawn_blocking(move || {
                                        std::thread::sleep(Duration::from_micros(us))
                                    })
                                    .await;
                            }
                        }
                    });
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let us = 50 + (i * 104_729) % 950;
                        glommio::timer::sleep(Duration::from_micros(us)).await;
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    blocking.await;
                });
                let _ = done.send(());
            });
        }
        let start = Instant::now();
        let mut seen: Vec<(u64, Instant)> = progress.iter().map(|_| (0, start)).collect();
        let mut stalled = None;
        while start.elapsed() < Duration::from_secs(10) && stalled.is_none() {
            std::thread::sleep(Duration::from_millis(100));
            for (i, count) in progress.iter().enumerate() {
                let n = count.load(Ordering::Relaxed);
                if n != seen[i].0 {
                    seen[i] = (n, Instant::now());
                } else if seen[i].1.elapsed() > Duration::from_secs(2) {
                    stalled = Some((i, n, start.elapsed()));
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        for hog in hogs {
            let _ = hog.join();
        }
        assert!(
            stalled.is_none(),
            "an executor parked with its woken task runnable (executor, sleeps done, at): {stalled:?}"
        );
        for _ in &progress {
            assert!(
                done_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
                "an executor did not finish after the stop"
            );
        }
    }

    /// The patched glommio's read-ahead (`TcpStream::enable_read_ahead`, which
    /// the MySQL connection turns on) hands over every byte in order: reads
    /// of 1 byte to 64 KiB take what a finished `RECV` brought across calls,
    /// a peer that pauses makes the executor sleep with a `RECV` in flight
    /// (submitted with the sleep), a burst larger than a read-ahead is read
    /// straight from the socket, reads dropped by a timer leave the `RECV` in
    /// flight, and the peer's close reads as 0. A version that dropped the
    /// in-flight `RECV` on each pending read lost bytes.
    #[test]
    fn a_read_ahead_stream_hands_over_every_byte_in_order() {
        use futures_lite::AsyncReadExt;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sent: Vec<u8> = (0..600_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let peer = {
            let sent = sent.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let (mut s, _) = listener.accept().unwrap();
                s.set_nodelay(true).unwrap();
                let mut at = 0;
                let mut i = 0usize;
                while at < sent.len() {
                    i += 1;
                    // Mostly small writes with pauses, now and then a burst.
                    let n = if i.is_multiple_of(97) {
                        200_000
                    } else {
                        1 + (i * 7919) % 3000
                    };
                    let end = (at + n).min(sent.len());
                    s.write_all(&sent[at..end]).unwrap();
                    at = end;
                    if i.is_multiple_of(5) {
                        std::thread::sleep(Duration::from_micros(300));
                    }
                }
            })
        };
        let got = executor().run(async move {
            glommio::timer::timeout(Duration::from_secs(60), async move {
                let mut stream = glommio::net::TcpStream::connect(addr).await.unwrap();
                stream.enable_read_ahead();
                let mut got = Vec::new();
                let sizes = [1usize, 7, 100, 4096, 65536, 3];
                let mut buf = vec![0u8; 65536];
                for i in 0.. {
                    let want = sizes[i % sizes.len()];
                    // Raced against a short timer, as the binlog stream is
                    // against the stop watcher: reads are polled again, and
                    // dropped, while a read-ahead is in flight.
                    let read = async { Some(stream.read(&mut buf[..want]).await) };
                    let tick = async {
                        glommio::timer::sleep(Duration::from_micros(50)).await;
                        None
                    };
                    let Some(n) = futures_lite::future::or(read, tick).await else {
                        continue;
                    };
                    let n = n?;
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if i % 13 == 0 {
                        // A slow reader: bytes wait in a finished read-ahead.
                        glommio::timer::sleep(Duration::from_micros(200)).await;
                    }
                }
                Ok(got)
            })
            .await
        });
        peer.join().unwrap();
        let got = got.expect("the stream did not reach the peer's close within 60 s");
        assert_eq!(got.len(), sent.len(), "bytes read");
        assert!(got == sent, "bytes differ from what the peer sent");
    }
}
