//! The spool's own throughput, per fsync policy: records appended, written and
//! made durable by the group fsync (the point where the checkpoint may pass
//! them), then read back and acknowledged, on the file system under the report
//! directory. One task's spool on one core, as in `rowhook run`.

use std::path::Path;
use std::time::{Duration, Instant};

use rowhook::config::{SpoolConfig, SpoolFull};
use rowhook::spool::record::{Record, Source};
use rowhook::spool::Spool;
use serde_json::{json, Value};

/// Records handed to the spool per pass of the loop (a dispatcher tend at
/// about 10k rows/s sees tens).
const PER_PASS: u64 = 64;

/// A webhook body of the size `payload: envelope` gives a small row.
const BODY: &[u8] = br#"{"id":"binlog.000042:123456789:0","event":"update","database":"shop","table":"orders","primary_id":184467,"before":{"id":184467,"status":"paid","amount":"129.90","customer":5511,"updated_at":"2026-12-01T10:00:00Z"},"after":{"id":184467,"status":"shipped","amount":"129.90","customer":5511,"updated_at":"2026-12-01T10:00:01Z"},"ts_ms":1764583201000,"position":{"file":"binlog.000042","pos":123456789,"gtid":"0-1-7781234"},"transaction":{"id":"0-1-7781234","seq":0}}"#;

/// The paced run's rate: the bench's moderate step.
const PACED_RATE: u64 = 10_000;

/// Measures `records` records through a spool in `dir` for each fsync policy,
/// as fast as they go; then `PACED_RATE` records/s for `paced_s` seconds, for
/// the fsyncs per second and the wait for durability each policy costs.
pub fn measure(dir: &Path, records: u64, paced_s: u64) -> Result<Value, String> {
    let mut policies = Vec::new();
    for ms in [0u64, 20, 100] {
        let path = dir.join(format!("spool-bench-{ms}ms"));
        let mut both = Vec::new();
        for pace in [None, Some(PACED_RATE)] {
            let _ = std::fs::remove_dir_all(&path);
            let n = pace.map_or(records, |r| r * paced_s);
            let result = one(&path, n, Duration::from_millis(ms), pace);
            let _ = std::fs::remove_dir_all(&path);
            both.push(result?);
        }
        let mut p = both[0].clone();
        p["paced"] = both[1].clone();
        policies.push(p);
    }
    Ok(
        json!({"records": records, "body_bytes": BODY.len(), "paced_rate": PACED_RATE, "paced_s": paced_s, "policies": policies}),
    )
}

fn one(
    path: &Path,
    records: u64,
    fsync_interval: Duration,
    pace: Option<u64>,
) -> Result<Value, String> {
    let config = SpoolConfig {
        max_bytes: 1 << 40,
        on_full: SpoolFull::Block,
        fsync_interval,
        retain: None,
        min_disk_free: 0,
    };
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("bench-spool")
        .make()
        .map_err(|e| format!("cannot start an executor: {e}"))?;
    let path = path.to_path_buf();
    executor.run(async move {
        let mut spool = Spool::open(path.clone(), "bench", config, path.join("dlq"));
        let mut done = Vec::new();
        let (mut appended, mut durable, mut syncs) = (0u64, 0u64, 0u64);
        let mut bytes = 0u64;
        // (records appended up to here, when): the wait for durability.
        let mut passes: std::collections::VecDeque<(u64, Instant)> = Default::default();
        let mut waits = hdrhistogram::Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
        let start = Instant::now();
        while durable < records {
            let due = match pace {
                Some(rate) => {
                    let by_now = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                    by_now.min(records).saturating_sub(appended)
                }
                None => PER_PASS.min(records - appended),
            };
            for _ in 0..due {
                let r = Record {
                    key_change: false,
                    weight: 1,
                    key: appended.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    spooled_ms: rowhook::spool::unix_ms(),
                    at: Source {
                        ts: 1_764_583_201,
                        file: "binlog.000042",
                        pos: 4 + appended * 400,
                        gtid: "0-1-7781234",
                    },
                    id_len: 0,
                    body: BODY,
                };
                bytes += r.encoded_len() as u64;
                // Each record its own transaction: the ledger hears of each.
                spool.append(appended, &r);
                appended += 1;
            }
            let now = Instant::now();
            if due > 0 {
                passes.push_back((appended, now));
            }
            spool.write(now);
            spool.synced(&mut done);
            if !done.is_empty() {
                syncs += 1;
                durable += done.len() as u64;
                done.clear();
                while passes.front().is_some_and(|(upto, _)| *upto <= durable) {
                    if let Some((_, at)) = passes.pop_front() {
                        let _ = waits.record(now.duration_since(at).as_micros() as u64);
                    }
                }
            }
            if let Some(error) = spool.status().error {
                return Err(error);
            }
            spool.maybe_sync(now);
            if appended == records || pace.is_some() {
                // Waiting for the fsync or the next due records: no spinning
                // (the dispatcher's keeper looks every millisecond too).
                glommio::timer::sleep(Duration::from_micros(if pace.is_some() {
                    1000
                } else {
                    200
                }))
                .await;
            } else {
                glommio::executor().yield_now().await;
            }
        }
        let write_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut read = 0u64;
        while let Some(fed) = spool.read_back() {
            spool.acked(fed.seq);
            read += 1;
            if read.is_multiple_of(4096) {
                spool.tidy(Instant::now());
            }
        }
        spool.tidy(Instant::now());
        let read_s = start.elapsed().as_secs_f64();
        if read != records {
            return Err(format!("read back {read} of {records} records"));
        }
        let mb = bytes as f64 / 1e6;
        if pace.is_some() {
            return Ok(json!({
                "records_per_s": records as f64 / write_s,
                "fsyncs_per_s": syncs as f64 / write_s,
                "durable_wait_p50_ms": waits.value_at_quantile(0.5) as f64 / 1000.0,
                "durable_wait_p99_ms": waits.value_at_quantile(0.99) as f64 / 1000.0,
                "read_records_per_s": records as f64 / read_s,
            }));
        }
        Ok(json!({
            "fsync_interval_ms": fsync_interval.as_millis() as u64,
            "record_bytes": bytes / records.max(1),
            "durable_records_per_s": records as f64 / write_s,
            "durable_mb_per_s": mb / write_s,
            "fsyncs": syncs,
            "read_records_per_s": records as f64 / read_s,
            "read_mb_per_s": mb / read_s,
        }))
    })
}
