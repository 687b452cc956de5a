//! How promptly this machine runs a thread that has something to do, measured
//! with nothing else running. Every hop of a webhook is such a wake-up (the
//! master's pacing timer, its dump thread, rowhook's source and shard, the sink's
//! thread, the answer back), so a machine whose wake-ups have a p99 in
//! milliseconds cannot show a sub-millisecond end-to-end p99, whatever runs on it.

use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

fn histogram() -> Result<Histogram<u64>, String> {
    // 1 µs .. 1 h in nanoseconds.
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).map_err(|e| e.to_string())
}

fn summary(h: &Histogram<u64>) -> Value {
    let us = |v: u64| v as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50_us": us(h.value_at_quantile(0.5)),
        "p99_us": us(h.value_at_quantile(0.99)),
        "p999_us": us(h.value_at_quantile(0.999)),
        "max_us": us(h.max()),
    })
}

/// `rate` times a second for `seconds`: a thread sleeps until its due time (how
/// late it runs is `timer`), then hands the time to a thread blocked on a channel
/// (how long that one takes to run is `thread`).
pub fn measure(rate: u64, seconds: u64) -> Result<Value, String> {
    let (tx, rx) = sync_channel::<Instant>(4096);
    let receiver = std::thread::spawn(move || -> Result<Histogram<u64>, String> {
        let mut woken = histogram()?;
        while let Ok(sent) = rx.recv() {
            woken.saturating_record(u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        Ok(woken)
    });
    // The pacer gets its own thread, so the timer slack it sets stays there.
    let pacer = std::thread::spawn(move || -> Result<Histogram<u64>, String> {
        // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no
        // memory. Exact wake-ups, as loadgen's pacers ask for: the default 50 µs
        // slack would be measured as lateness.
        let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
        let mut late = histogram()?;
        let rate = rate.max(1);
        let started = Instant::now();
        for i in 1..=rate * seconds {
            let due = started
                + Duration::from_nanos((u128::from(i) * 1_000_000_000 / u128::from(rate)) as u64);
            let left = due.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                std::thread::sleep(left);
            }
            let now = Instant::now();
            late.saturating_record(u64::try_from((now - due).as_nanos()).unwrap_or(u64::MAX));
            if tx.send(now).is_err() {
                break;
            }
        }
        Ok(late)
    });
    let late = pacer
        .join()
        .map_err(|_| "the wake-up pacer panicked".to_owned())??;
    let woken = receiver
        .join()
        .map_err(|_| "the wake-up receiver panicked".to_owned())??;
    Ok(json!({
        "rate": rate,
        "seconds": seconds,
        "timer": summary(&late),
        "thread": summary(&woken),
    }))
}
