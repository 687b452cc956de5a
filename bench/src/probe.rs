//! Where a step's time went, for every process in it (rowhook, master, sink) and
//! every thread: CPU and run-queue wait from `/proc/<pid>/task/<tid>/schedstat`,
//! context switches from `.../status`, and syscalls by name from `perf stat`
//! tracepoints over the same window. Counts, not latencies: they say whether a
//! tail came from rowhook's own CPU, from the generator or receiver, or from the
//! host (steal, run-queue wait with CPU to spare).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// Syscalls counted by name; the rest is `other` (the total is counted too).
const SYSCALLS: &[&str] = &[
    "io_uring_enter",
    "membarrier",
    "read",
    "write",
    "recvfrom",
    "sendto",
    "readv",
    "writev",
    "futex",
    "epoll_wait",
    "epoll_pwait",
    "poll",
    "ppoll",
    "clock_nanosleep",
    "sched_yield",
    "fdatasync",
    "rt_sigreturn",
];

/// One thread's counters so far.
#[derive(Debug, Clone)]
struct ThreadSample {
    name: String,
    /// Nanoseconds on a CPU.
    on_cpu_ns: u64,
    /// Nanoseconds runnable but waiting for a CPU.
    waiting_ns: u64,
    voluntary: u64,
    involuntary: u64,
}

/// Every thread of `pid`, by thread id.
fn sample(pid: u32) -> BTreeMap<u32, ThreadSample> {
    let mut threads = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        let read = |f: &str| std::fs::read_to_string(path.join(f)).unwrap_or_default();
        let sched: Vec<u64> = read("schedstat")
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let status = read("status");
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        threads.insert(
            tid,
            ThreadSample {
                name: read("comm").trim().to_owned(),
                on_cpu_ns: sched.first().copied().unwrap_or(0),
                waiting_ns: sched.get(1).copied().unwrap_or(0),
                voluntary: field("voluntary_ctxt_switches:"),
                involuntary: field("nonvoluntary_ctxt_switches:"),
            },
        );
    }
    threads
}

/// The tracepoint directory, if the kernel exposes syscall tracepoints.
fn tracepoints() -> Option<PathBuf> {
    [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.join("raw_syscalls/sys_enter").exists())
}

/// An open measurement window over some processes.
pub struct Window {
    processes: Vec<(String, u32, BTreeMap<u32, ThreadSample>)>,
    at: Instant,
    perf: Result<(Child, PathBuf), String>,
    /// The machine's CPU ticks at the start (`/proc/stat`).
    machine: [u64; 8],
}

/// The machine's `cpu` line of `/proc/stat`: user nice system idle iowait irq
/// softirq steal, in clock ticks.
fn machine_ticks() -> [u64; 8] {
    let mut out = [0; 8];
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    if let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) {
        for (o, t) in out.iter_mut().zip(line.split_whitespace().skip(1)) {
            *o = t.parse().unwrap_or(0);
        }
    }
    out
}

impl Window {
    /// Starts counting for `processes` (label, pid); the perf output goes to `dir`.
    pub fn open(processes: &[(&str, u32)], dir: &Path) -> Window {
        let out = dir.join("perf-syscalls.csv");
        let perf = start_perf(processes, &out).map(|c| (c, out));
        Window {
            processes: processes
                .iter()
                .map(|&(label, pid)| (label.to_owned(), pid, sample(pid)))
                .collect(),
            at: Instant::now(),
            perf,
            machine: machine_ticks(),
        }
    }

    /// Ends the window; `events` is how many webhook events the sink verified in
    /// it. Per process: CPU µs/event, run-queue wait ms/s, context switches/event,
    /// syscalls/event by name, and the same per thread name.
    pub fn close(self, events: u64) -> Value {
        let seconds = self.at.elapsed().as_secs_f64();
        let after: Vec<_> = self
            .processes
            .iter()
            .map(|(_, pid, _)| sample(*pid))
            .collect();
        let (syscalls, syscall_error) = match self.perf {
            Ok((child, out)) => match stop_perf(child, &out) {
                Ok(counts) => (Some(counts), None),
                Err(e) => (None, Some(e)),
            },
            Err(e) => (None, Some(e)),
        };
        let per_event = |v: f64| v / events.max(1) as f64;
        let per_s = |v: f64| v / seconds.max(1e-9);
        let mut processes = Map::new();
        for ((label, _, before), after) in self.processes.iter().zip(&after) {
            // Per thread name (a pool of like threads adds up under one name).
            let mut threads: BTreeMap<String, [f64; 5]> = BTreeMap::new();
            for (tid, now) in after {
                let was = before.get(tid);
                let d =
                    |f: fn(&ThreadSample) -> u64| f(now).saturating_sub(was.map_or(0, f)) as f64;
                let calls = syscalls
                    .as_ref()
                    .and_then(|s: &BTreeMap<u32, BTreeMap<String, u64>>| s.get(tid))
                    .and_then(|c| c.get("total"))
                    .copied()
                    .unwrap_or(0) as f64;
                let t = threads.entry(now.name.clone()).or_default();
                t[0] += d(|s| s.on_cpu_ns);
                t[1] += d(|s| s.waiting_ns);
                t[2] += d(|s| s.voluntary) + d(|s| s.involuntary);
                t[3] += calls;
                t[4] += 1.0;
            }
            let total = threads.values().fold([0.0; 5], |mut a, t| {
                for (x, y) in a.iter_mut().zip(t) {
                    *x += y;
                }
                a
            });
            let mut by_name = Map::new();
            if let Some(s) = &syscalls {
                let mut sums: BTreeMap<&str, u64> = BTreeMap::new();
                for counts in after.keys().filter_map(|tid| s.get(tid)) {
                    for (name, n) in counts {
                        *sums.entry(name.as_str()).or_default() += n;
                    }
                }
                for (name, n) in sums {
                    by_name.insert(name.to_owned(), json!(per_event(n as f64)));
                }
            }
            let thread_rows: Vec<Value> = threads
                .iter()
                .map(|(name, t)| {
                    json!({
                        "thread": name,
                        "count": t[4] as u64,
                        "cpu_us_per_event": per_event(t[0] / 1e3),
                        "run_queue_wait_ms_per_s": per_s(t[1] / 1e6),
                        "ctx_switches_per_event": per_event(t[2]),
                        "syscalls_per_event": syscalls.as_ref().map(|_| per_event(t[3])),
                    })
                })
                .collect();
            processes.insert(
                label.clone(),
                json!({
                    "cpu_us_per_event": per_event(total[0] / 1e3),
                    "cpu_share": per_s(total[0] / 1e9),
                    "run_queue_wait_ms_per_s": per_s(total[1] / 1e6),
                    "ctx_switches_per_event": per_event(total[2]),
                    "syscalls_per_event": syscalls.as_ref().map(|_| per_event(total[3])),
                    "syscalls": if syscalls.is_some() { Value::Object(by_name) } else { Value::Null },
                    "threads": thread_rows,
                }),
            );
        }
        // The machine's busy CPU over the same window, and how much of it none of
        // the measured processes' threads account for (kernel threads, softirq
        // work not charged to a task, perf itself, anything else running).
        let ticks = machine_ticks();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let cores = |i: usize| per_s(ticks[i].saturating_sub(self.machine[i]) as f64 / hz);
        let busy: f64 = [0, 1, 2, 5, 6].iter().map(|&i| cores(i)).sum();
        let measured: f64 = processes
            .values()
            .map(|p| p["cpu_share"].as_f64().unwrap_or(0.0))
            .sum();
        json!({
            "events": events,
            "seconds": seconds,
            "machine": {
                "busy_cores": busy,
                "outside_processes_cores": (busy - measured).max(0.0),
                "softirq_cores": cores(6),
                "iowait_cores": cores(4),
                "steal_cores": cores(7),
            },
            "processes": processes,
            "syscalls_unavailable": syscall_error,
        })
    }
}

/// `perf stat` counting syscalls per thread of `processes` until stopped.
fn start_perf(processes: &[(&str, u32)], out: &Path) -> Result<Child, String> {
    let Some(events_dir) = tracepoints() else {
        return Err("no syscall tracepoints (tracefs not mounted? as root: mount -t tracefs nodev /sys/kernel/tracing)".into());
    };
    let mut events = vec!["raw_syscalls:sys_enter".to_owned()];
    events.extend(
        SYSCALLS
            .iter()
            .filter(|s| events_dir.join(format!("syscalls/sys_enter_{s}")).exists())
            .map(|s| format!("syscalls:sys_enter_{s}")),
    );
    let pids: Vec<String> = processes.iter().map(|(_, p)| p.to_string()).collect();
    let child = Command::new("perf")
        .args(["stat", "-x", ",", "--per-thread", "-o"])
        .arg(out)
        .args(["-e", &events.join(","), "-p", &pids.join(",")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run perf ({e}); install linux-perf"))?;
    // perf opens its counters in a moment; events before that are not counted,
    // and neither are the sink's that the window's count includes — a few ms.
    std::thread::sleep(Duration::from_millis(100));
    Ok(child)
}

/// Stops `perf stat` and reads its per-thread counts: tid → syscall → count,
/// with `total` for every syscall.
fn stop_perf(mut child: Child, out: &Path) -> Result<BTreeMap<u32, BTreeMap<String, u64>>, String> {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(out).map_err(|e| format!("perf output: {e}"))?;
    let mut counts: BTreeMap<u32, BTreeMap<String, u64>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        // comm-tid,count,unit,event,...
        let f: Vec<&str> = line.split(',').collect();
        let (Some(who), Some(count), Some(event)) = (f.first(), f.get(1), f.get(3)) else {
            continue;
        };
        let Some(tid) = who.rsplit_once('-').and_then(|(_, t)| t.parse().ok()) else {
            continue;
        };
        let Ok(n) = count.parse::<u64>() else {
            continue;
        };
        let name = match event.strip_prefix("syscalls:sys_enter_") {
            Some(s) => s.to_owned(),
            None if *event == "raw_syscalls:sys_enter" => "total".to_owned(),
            None => continue,
        };
        *counts.entry(tid).or_default().entry(name).or_default() += n;
    }
    if counts.is_empty() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        return Err(format!(
            "perf stat counted nothing ({status}): {}",
            err.trim().lines().last().unwrap_or("no message")
        ));
    }
    // What was not counted by name.
    for c in counts.values_mut() {
        let named: u64 = c
            .iter()
            .filter(|(k, _)| k.as_str() != "total")
            .map(|(_, v)| v)
            .sum();
        let total = c.get("total").copied().unwrap_or(0);
        c.insert("other".to_owned(), total.saturating_sub(named));
    }
    Ok(counts)
}
