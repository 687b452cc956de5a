//! `bench run`: rowhook between `loadgen master` and `loadgen sink` at a ladder of
//! rates, one step at a time with fresh processes, plus decode-only throughput.
//! Writes report.json, report.md and the sink's .hgrm/.hdr files per step; fails
//! (exit 1) on any loss or reorder, never on timing.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One rung of the ladder.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// Offered rows/s; 0 = as fast as rowhook takes them (`rows` rows).
    rate: u64,
    seconds: u64,
    batch: u32,
    rows: u64,
    /// The sink stalls (holds every answer) for `.1` s, starting `.0` s in.
    stall: Option<(u64, u64)>,
    /// `runtime.shards` for rowhook; `None` = its default (cores − 1).
    shards: Option<u32>,
    /// No rowhook and no master: `loadgen blast --rate` straight to the sink, a
    /// bare webhook for reference (not a strict lower bound: the same minute's
    /// noise hits it as hard as rowhook). Run next to the rowhook step of the same rate, because the
    /// machine's noise changes by the minute.
    bare: bool,
    /// A second task on the same tables whose receiver refuses every
    /// connection for the whole step, with a spool: the sink's task must keep
    /// its no-fault rate and latency.
    dead_task: bool,
}

/// rowhook's default `runtime.shards` on this machine (see `RuntimeConfig`): 0 on
/// two cores or fewer, else cores − 1.
fn default_shards() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= 2 {
        0
    } else {
        cores as u32 - 1
    }
}

/// The delivery mode the ladder compares the default with.
fn alternative_shards() -> u32 {
    if default_shards() == 0 {
        1
    } else {
        0
    }
}

fn ladder(profile: &str) -> Option<Vec<Step>> {
    let s = |rate: u64, seconds: u64, batch| Step {
        rate,
        seconds,
        batch,
        rows: rate * seconds,
        stall: None,
        shards: None,
        bare: false,
        dead_task: false,
    };
    // The same step in the other delivery mode than this machine's default:
    // a shard thread where the default delivers on the source core, and the
    // source core where the default starts shard threads.
    let other = alternative_shards();
    let alternative = |step: Step| Step {
        shards: Some(other),
        ..step
    };
    let bare = |rate: u64, seconds: u64| Step {
        bare: true,
        ..s(rate, seconds, 1)
    };
    let dead = |rate: u64, seconds: u64| Step {
        dead_task: true,
        ..s(rate, seconds, 1)
    };
    let stalled = |rate: u64, seconds: u64, at, length| Step {
        stall: Some((at, length)),
        ..s(rate, seconds, 1)
    };
    let max = |rows, batch| Step {
        rate: 0,
        seconds: 0,
        batch,
        rows,
        stall: None,
        shards: None,
        bare: false,
        dead_task: false,
    };
    match profile {
        "ci" => Some(vec![
            s(1_000, 8, 1),
            bare(10_000, 8),
            s(10_000, 8, 1),
            dead(10_000, 8),
            alternative(s(10_000, 8, 1)),
            s(10_000, 8, 100),
            max(50_000, 1),
            stalled(5_000, 12, 3, 5),
        ]),
        "full" => Some(vec![
            s(1_000, 30, 1),
            bare(10_000, 30),
            s(10_000, 30, 1),
            dead(10_000, 30),
            alternative(s(10_000, 30, 1)),
            s(25_000, 30, 1),
            s(10_000, 30, 100),
            s(50_000, 30, 100),
            max(300_000, 1),
            alternative(max(300_000, 1)),
            max(1_000_000, 100),
            stalled(10_000, 45, 5, 30),
        ]),
        _ => None,
    }
}

/// A directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn terminate(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `n` distinct free ports: the listeners are held until all are chosen, so the
/// OS cannot hand the same one out twice.
fn free_ports<const N: usize>() -> Result<[u16; N], String> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("no free port: {e}"))?;
    let mut ports = [0u16; N];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l
            .local_addr()
            .map_err(|e| format!("no free port: {e}"))?
            .port();
    }
    Ok(ports)
}

fn spawn(bin: &Path, args: &[String], log: &Path) -> Result<Proc, String> {
    let err = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    Ok(Proc { child })
}

fn wait_port(port: u16, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{what} never listened on {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// GET a JSON document.
fn get(port: u16, path: &str) -> Result<Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).map_err(|e| format!("{path}: {e}"))
}

/// (steal, total) clock ticks of the whole machine so far, from /proc/stat. Steal
/// is time the hypervisor gave this VM's CPUs to someone else: a step with much
/// of it measured the neighbours as much as rowhook.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest
    // time is already inside user.
    let total = ticks.iter().take(8).sum();
    (ticks.get(7).copied().unwrap_or(0), total)
}

/// The hypervisor's share of the machine's CPU time between two `machine_ticks`.
fn steal_pct(before: (u64, u64), after: (u64, u64)) -> f64 {
    100.0 * after.0.saturating_sub(before.0) as f64 / after.1.saturating_sub(before.1).max(1) as f64
}

/// (CPU seconds used, resident KiB) of a process, from /proc.
fn proc_usage(pid: u32) -> (f64, u64) {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14 and 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0);
    (ticks as f64 / hz, rss)
}

struct Bins {
    rowhook: PathBuf,
    loadgen: PathBuf,
}

/// The step's name in reports (and for `--steps`).
fn step_name(step: &Step) -> String {
    if step.bare {
        return format!("bare-webhook-{}", step.rate);
    }
    let mut name = if let Some((_, length)) = step.stall {
        format!("stall-{length}s-rate-{}", step.rate)
    } else if step.dead_task {
        format!("dead-task-rate-{}", step.rate)
    } else if step.rate == 0 {
        format!("max-{}-batch-{}", step.rows, step.batch)
    } else {
        format!("rate-{}-batch-{}", step.rate, step.batch)
    };
    if let Some(n) = step.shards {
        name.push_str(&format!("-shards-{n}"));
    }
    name
}

fn run_step(bins: &Bins, out: &Path, step: Step) -> Result<Value, String> {
    let name = step_name(&step);
    let work = out.join(&name);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    // Binlogs and state are big and not part of the report: they live in a scratch
    // directory removed after the step.
    let scratch = std::env::temp_dir().join(format!("rowhook-bench-{}-{name}", std::process::id()));
    let _cleanup = Scratch(scratch.clone());
    let [mport, sport, aport, dport] = free_ports::<4>()?;
    let s = |v: &str| v.to_owned();
    let expected = step.rows;
    let amount = if step.rate == 0 {
        vec![s("--rows"), step.rows.to_string()]
    } else {
        vec![s("--duration"), format!("{}s", step.seconds)]
    };
    let stall_args = step.stall.map_or_else(Vec::new, |(at, length)| {
        vec![
            s("--stall-at"),
            format!("{at}s"),
            s("--stall-for"),
            format!("{length}s"),
        ]
    });
    let mut sink = spawn(
        &bins.loadgen,
        &[
            s("sink"),
            s("--listen"),
            format!("127.0.0.1:{sport}"),
            s("--expect-rows"),
            expected.to_string(),
            s("--out"),
            out.join(&name).display().to_string(),
        ]
        .into_iter()
        .chain(stall_args)
        .collect::<Vec<_>>(),
        &work.join("sink.log"),
    )?;
    let mut master = spawn(
        &bins.loadgen,
        &[
            s("master"),
            s("--listen"),
            format!("127.0.0.1:{mport}"),
            s("--rate"),
            step.rate.to_string(),
            s("--tables"),
            s("4"),
            s("--keys"),
            s("100000"),
            s("--mix"),
            s("70:20:10"),
            s("--dir"),
            scratch.join("binlogs").display().to_string(),
        ]
        .into_iter()
        .chain(amount)
        .collect::<Vec<_>>(),
        &work.join("master.log"),
    )?;
    wait_port(sport, "loadgen sink")?;
    wait_port(mport, "loadgen master")?;
    let config = work.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "database: {{host: 127.0.0.1, port: {mport}, user: bench, password: x, server_id: 4747, tls: disabled}}
source: {{start: earliest, heartbeat: 1s}}
server: {{enabled: true, port: {aport}}}
state: {{dir: '{}'}}
dispatcher: {{worker_count: 16, max_inflight: 10000, timeout: 10s, max_retries: -1, retry_base_delay: 100ms}}
{}tasks:
  - {{task_id: bench, table_name: 'loadgen.*', events: [insert, update, delete], callback_url: 'http://127.0.0.1:{sport}/hook', batch_size: {}, batch_linger: 1ms}}
{}",
            scratch.join("state").display(),
            step.shards
                .map_or_else(String::new, |n| format!("runtime: {{shards: {n}}}\n")),
            step.batch,
            if step.dead_task {
                // Nothing listens on dport: every attempt is refused.
                format!("  - {{task_id: dead, table_name: 'loadgen.*', events: [insert, update, delete], callback_url: 'http://127.0.0.1:{dport}/hook', spool: {{max_bytes: 8GiB}}}}\n")
            } else {
                String::new()
            }
        ),
    )
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let ticks_before = machine_ticks();
    let mut rowhook = spawn(
        &bins.rowhook,
        &[s("run"), s("--config"), config.display().to_string()],
        &work.join("rowhook.log"),
    )?;
    let pid = rowhook.child.id();
    let deadline = started + Duration::from_secs(step.seconds + 60);
    let mut peak_rss = 0u64;
    // Peak RSS before, during and after a sink stall (by time since rowhook started;
    // the sink's stall clock starts at its first request, a moment later).
    let mut phases = [0u64; 3];
    let mut done_at = None;
    // Counted from the first delivery on: start-up is not per-event cost.
    let mut window: Option<(crate::probe::Window, u64)> = None;
    let mut verified = 0;
    while Instant::now() < deadline {
        let rss = proc_usage(pid).1;
        peak_rss = peak_rss.max(rss);
        if let Some((at, length)) = step.stall {
            let t = started.elapsed().as_secs_f64();
            let phase = if t < at as f64 {
                0
            } else if t < (at + length) as f64 + 1.0 {
                1
            } else {
                2
            };
            phases[phase] = phases[phase].max(rss);
        }
        if let Ok(Some(status)) = rowhook.child.try_wait() {
            return Err(format!(
                "rowhook exited ({status}) during {name}; see {}",
                work.join("rowhook.log").display()
            ));
        }
        verified = get(sport, "/report")
            .ok()
            .and_then(|r| r["verified"].as_u64())
            .unwrap_or(verified);
        if window.is_none() && verified > 0 && verified < expected {
            let processes = [
                ("rowhook", pid),
                ("master", master.child.id()),
                ("sink", sink.child.id()),
            ];
            window = Some((crate::probe::Window::open(&processes, &work), verified));
        }
        if verified >= expected {
            done_at = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (cpu, _) = proc_usage(pid);
    let steal_pct = steal_pct(ticks_before, machine_ticks());
    let attribution = window.map_or(Value::Null, |(w, from)| {
        w.close(verified.saturating_sub(from))
    });
    let histograms = get(aport, "/histograms").unwrap_or(Value::Null);
    let spool = if step.dead_task {
        let tasks = get(aport, "/tasks").unwrap_or(Value::Null);
        let dead = tasks
            .as_array()
            .and_then(|t| t.iter().find(|t| t["task_id"] == "dead"))
            .map(|t| t["spool"].clone())
            .unwrap_or(Value::Null);
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        json!({
            "records": dead["records"],
            "bytes": dead["bytes"],
            "write_mb_per_s": f(&dead["bytes"]) / 1e6 / seconds,
            "records_per_s": f(&dead["records"]) / seconds,
        })
    } else {
        Value::Null
    };
    rowhook.terminate();
    sink.terminate();
    master.terminate();
    let mut text = String::new();
    if let Some(mut o) = sink.child.stdout.take() {
        let _ = o.read_to_string(&mut text);
    }
    // The generator's own lateness: the part of the sink's latency that is not
    // rowhook's (absent when it did not finish).
    let mut generated = String::new();
    if let Some(mut o) = master.child.stdout.take() {
        let _ = o.read_to_string(&mut generated);
    }
    let generator: Value = serde_json::from_str(generated.trim()).unwrap_or(Value::Null);
    let report: Value = serde_json::from_str(text.trim())
        .map_err(|e| format!("sink report of {name}: {e}: {text:?}"))?;
    let verified = report["verified"].as_u64().unwrap_or(0);
    let elapsed = done_at.unwrap_or(started.elapsed()).as_secs_f64();
    Ok(json!({
        "step": name,
        "rate": step.rate,
        "seconds": step.seconds,
        "batch_size": step.batch,
        "shards": step.shards,
        "generator": generator,
        "expected": expected,
        "completed": done_at.is_some(),
        "delivered_per_s": verified as f64 / elapsed.max(1e-9),
        "sink": report,
        "rowhook_cpu_us_per_event": cpu * 1e6 / verified.max(1) as f64,
        "steal_pct": steal_pct,
        "rowhook_peak_rss_mb": peak_rss as f64 / 1024.0,
        "attribution": attribution,
        "dead_task": step.dead_task,
        "spool": spool,
        "stall": step.stall.map(|(at, length)| json!({
            "at_s": at, "for_s": length,
            "rss_mb_before": phases[0] as f64 / 1024.0,
            "rss_mb_during": phases[1] as f64 / 1024.0,
            "rss_mb_after": phases[2] as f64 / 1024.0,
        })),
        "rowhook_stages": histograms["stages"].as_object().map(|m| {
            m.iter().map(|(k, v)| (k.clone(), json!({"p50_us": v["p50_us"], "p99_us": v["p99_us"], "p999_us": v["p999_us"]}))).collect::<serde_json::Map<_, _>>()
        }),
    }))
}

/// `loadgen blast` (16 connections, rowhook's body shape; paced at `rate` when it
/// is not 0) against a fresh sink whose log is `{name}-sink.log`, and whose
/// .json/.hgrm/.hdr files are `{name}.*` when `record`: (blast's result, the
/// sink's report, steal % during the blast).
fn blast(
    bins: &Bins,
    out: &Path,
    name: &str,
    rate: u64,
    seconds: u64,
    record: bool,
) -> Result<(Value, Value, f64), String> {
    let [port] = free_ports::<1>()?;
    let mut args = vec![
        "sink".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
    ];
    if record {
        args.extend(["--out".to_owned(), out.join(name).display().to_string()]);
    }
    let mut sink = spawn(&bins.loadgen, &args, &out.join(format!("{name}-sink.log")))?;
    wait_port(port, "loadgen sink")?;
    let ticks_before = machine_ticks();
    let children_before = children_cpu_s();
    let blast = Command::new(&bins.loadgen)
        .args([
            "blast",
            "--target",
            &format!("127.0.0.1:{port}"),
            "--connections",
            "16",
            "--rate",
            &rate.to_string(),
        ])
        .args(["--row-bytes", "64", "--duration", &format!("{seconds}s")])
        .output()
        .map_err(|e| e.to_string())?;
    let steal = steal_pct(ticks_before, machine_ticks());
    // `output` reaped the client, and only it, since the mark (the sink still runs).
    let client_cpu_s = children_cpu_s() - children_before;
    sink.terminate();
    if !blast.status.success() {
        return Err(format!(
            "loadgen blast: {}",
            String::from_utf8_lossy(&blast.stderr)
        ));
    }
    let mut text = String::new();
    if let Some(mut o) = sink.child.stdout.take() {
        let _ = o.read_to_string(&mut text);
    }
    let report: Value = serde_json::from_str(text.trim())
        .map_err(|e| format!("sink report of {name}: {e}: {text:?}"))?;
    let mut client: Value =
        serde_json::from_slice(&blast.stdout).map_err(|e| format!("loadgen blast output: {e}"))?;
    // What one bare POST costs the sending process on this machine, the
    // reference for rowhook's CPU per webhook.
    let requests = report["requests"].as_f64().unwrap_or(0.0);
    if requests > 0.0 {
        client["cpu_us_per_request"] = json!(client_cpu_s * 1e6 / requests);
    }
    Ok((client, report, steal))
}

/// User + system CPU seconds of this process's reaped children.
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given and touches nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) } != 0 {
        return 0.0;
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(u.ru_utime) + s(u.ru_stime)
}

/// The HTTP ceiling: `loadgen blast` as fast as the sink answers.
fn ceiling_step(bins: &Bins, out: &Path, seconds: u64) -> Result<Value, String> {
    Ok(blast(bins, out, "ceiling", 0, seconds, false)?.0)
}

/// A bare webhook for reference: `loadgen blast --rate` (one thread, bodies stamped with
/// their due time) against a fresh sink, nothing else running. The sink's latency
/// is a bare webhook's at `rate`.
fn bare_webhook_step(bins: &Bins, out: &Path, rate: u64, seconds: u64) -> Result<Value, String> {
    let name = format!("bare-webhook-{rate}");
    let (client, report, steal) = blast(bins, out, &name, rate, seconds, true)?;
    Ok(json!({
        "step": name,
        "rate": rate,
        "seconds": seconds,
        "client": client,
        "sink": report,
        "steal_pct": steal,
    }))
}

/// Runs SQL on the sandbox at `port` with the `mariadb` client.
fn mariadb_sql(port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args(["--protocol=tcp", "-h127.0.0.1", "-uroot", "-N", "-B"])
        .arg(format!("-P{port}"))
        .args(["-e", sql])
        .output()
        .map_err(|e| format!("cannot run the mariadb client: {e}"))?;
    if !out.status.success() {
        return Err(format!("{sql}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Snapshot throughput: a throwaway MariaDB (`scripts/mariadb-sandbox`) with
/// `rows` rows of a loadgen-shaped table, `rowhook run` with `snapshot: initial`
/// and `batch_size` 100, and a `loadgen sink` counting what arrives. Rows/s is from
/// rowhook's start to the sink's last row; rowhook's CPU per row from /proc.
fn snapshot_step(bins: &Bins, out: &Path, rows: u64) -> Result<Value, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/mariadb-sandbox");
    let name = format!("snapshot-{rows}");
    let work = out.join(&name);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let scratch = std::env::temp_dir().join(format!("rowhook-bench-{}-{name}", std::process::id()));
    let _cleanup = Scratch(scratch.clone());
    let [port, sport] = free_ports::<2>()?;
    let data = scratch.join("data");
    let mut server = spawn(
        &script,
        &[
            data.display().to_string(),
            port.to_string(),
            "FULL".to_owned(),
        ],
        &work.join("mariadbd.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while mariadb_sql(port, "SELECT 1").is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "MariaDB did not start; see {}",
                work.join("mariadbd.log").display()
            ));
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!(
                "mariadb-sandbox exited ({status}); see {}",
                work.join("mariadbd.log").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let filled = Instant::now();
    mariadb_sql(
        port,
        &format!(
            "CREATE DATABASE loadgen; CREATE TABLE loadgen.t0 (id BIGINT PRIMARY KEY, seq BIGINT NOT NULL,              sent_ns BIGINT NOT NULL, payload VARBINARY(64));              INSERT INTO loadgen.t0 SELECT seq, seq, 0, REPEAT('x', 48) FROM loadgen.seq_1_to_{rows}"
        ),
    )?;
    let fill_s = filled.elapsed().as_secs_f64();
    let mut sink = spawn(
        &bins.loadgen,
        &[
            "sink".to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{sport}"),
            "--expect-rows".to_owned(),
            rows.to_string(),
        ],
        &work.join("sink.log"),
    )?;
    wait_port(sport, "loadgen sink")?;
    let config = work.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "database: {{host: 127.0.0.1, port: {port}, user: root, password: '', server_id: 4848, tls: disabled}}
source: {{start: latest, heartbeat: 1s}}
state: {{dir: '{}'}}
dispatcher: {{worker_count: 16, max_inflight: 10000}}
tasks:
  - {{task_id: snap, table_name: loadgen.t0, events: [insert], callback_url: 'http://127.0.0.1:{sport}/hook', batch_size: 100, snapshot: initial}}
",
            scratch.join("state").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let ticks_before = machine_ticks();
    let mut rowhook = spawn(
        &bins.rowhook,
        &[
            "run".to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
        ],
        &work.join("rowhook.log"),
    )?;
    let pid = rowhook.child.id();
    let deadline = started + Duration::from_secs(120 + rows / 10_000);
    let mut done_at = None;
    let mut peak_rss = 0;
    while Instant::now() < deadline {
        peak_rss = peak_rss.max(proc_usage(pid).1);
        let events = get(sport, "/report")
            .ok()
            .and_then(|r| r["events"].as_u64())
            .unwrap_or(0);
        if events >= rows {
            done_at = Some(started.elapsed());
            break;
        }
        if let Ok(Some(status)) = rowhook.child.try_wait() {
            return Err(format!(
                "rowhook exited ({status}); see {}",
                work.join("rowhook.log").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (cpu, _) = proc_usage(pid);
    let steal = steal_pct(ticks_before, machine_ticks());
    rowhook.terminate();
    sink.terminate();
    server.terminate();
    let Some(took) = done_at else {
        return Err(format!(
            "the snapshot of {rows} rows did not arrive; see {}",
            work.display()
        ));
    };
    Ok(json!({
        "step": name,
        "rows": rows,
        "fill_seconds": fill_s,
        "seconds": took.as_secs_f64(),
        "rows_per_s": rows as f64 / took.as_secs_f64().max(1e-9),
        "rowhook_cpu_us_per_row": cpu * 1e6 / rows.max(1) as f64,
        "rowhook_peak_rss_mb": peak_rss as f64 / 1024.0,
        "steal_pct": steal,
    }))
}

/// Decode-only rows/s on one core over a `loadgen binlog` file.
fn decode_step(bins: &Bins, out: &Path, seconds: u64) -> Result<Value, String> {
    let file = out.join("decode.bin");
    let made = Command::new(&bins.loadgen)
        .args([
            "binlog",
            "--rows",
            "200000",
            "--txn-rows",
            "100",
            "--tables",
            "4",
            "--mix",
            "70:20:10",
            "--rate",
            "0",
            "--out",
        ])
        .arg(&file)
        .output()
        .map_err(|e| e.to_string())?;
    if !made.status.success() {
        return Err(format!(
            "loadgen binlog: {}",
            String::from_utf8_lossy(&made.stderr)
        ));
    }
    let measured = crate::decode::measure(&file, seconds)?;
    let _ = std::fs::remove_file(&file);
    Ok(measured)
}

/// The spool table of the report.
pub fn spool_lines(spool: &Value) -> String {
    let mut md = format!(
        "\nSpool on its own (`bench/src/spool.rs`, one task's spool on one core on this machine's disk, {} B bodies; \"durable\" = appended, written and covered by a finished group fsync, when the checkpoint may pass them; read = read back (from the page cache) and acknowledged, segments deleted). Flat out: {} records, 64 per pass. Paced: {} records/s for {} s, a pass every millisecond:\n\n| fsync_interval | flat out: durable records/s | MB/s | fsyncs | read records/s | read MB/s | paced: fsyncs/s | wait for durability p50 / p99 |\n|---|---|---|---|---|---|---|---|\n",
        spool["body_bytes"], spool["records"], spool["paced_rate"], spool["paced_s"],
    );
    for p in spool["policies"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} ms | {:.0} | {:.1} | {} | {:.0} | {:.1} | {:.1} | {:.2} / {:.2} ms |\n",
            p["fsync_interval_ms"],
            f(&p["durable_records_per_s"]),
            f(&p["durable_mb_per_s"]),
            p["fsyncs"],
            f(&p["read_records_per_s"]),
            f(&p["read_mb_per_s"]),
            f(&p["paced"]["fsyncs_per_s"]),
            f(&p["paced"]["durable_wait_p50_ms"]),
            f(&p["paced"]["durable_wait_p99_ms"]),
        ));
    }
    md
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// What the machine itself allows, measured in the same run.
struct Reference<'a> {
    /// `wake::measure`.
    wake: &'a Value,
    /// `bare_webhook_step`.
    bare: &'a Value,
}

fn markdown(
    steps: &[Value],
    decode: &Value,
    ceiling: &Value,
    reference: &Reference,
    machine: &str,
) -> String {
    let mut md = String::from("# rowhook bench report\n\n");
    let _ = writeln!(md, "Machine: {machine}\n");
    md.push_str("`loadgen master` → `rowhook run` (1 source core + shards, worker_count 16) → `loadgen sink`, all on this machine. Latency: row's scheduled send time → sink parsed the body. *generator p99*: how late the master itself made rows available (part of the latency, not rowhook's); *rowhook p99*: rowhook's own event decoded → webhook acknowledged. *steal %*: share of the machine's CPU time the hypervisor gave to other guests during the step (from /proc/stat); latency from a step with much of it says more about the neighbours than about rowhook. Steps without a `-shards-N` suffix use rowhook's default `runtime.shards` for this machine (0 — delivery on the source core — on two cores or fewer, else cores − 1 shard threads); `-shards-N` steps set it to N, the other mode.\n\n");
    md.push_str("![latency by percentile](latency.svg)\n\n| step | offered rows/s | delivered/s | lost | dups | reorders | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | generator p99 ms | rowhook p99 ms | CPU µs/event | peak RSS MB | steal % |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in steps {
        let l = &s["sink"]["latency_ms"];
        let _ = writeln!(
            md,
            "| {} | {} | {:.0}{} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.3} | {:.1} | {:.1} | {:.0} |",
            s["step"].as_str().unwrap_or("?"),
            if s["rate"] == 0 { "max".to_owned() } else { s["rate"].to_string() },
            f(&s["delivered_per_s"]),
            if s["completed"] == true { "" } else { " (incomplete)" },
            s["sink"]["lost"],
            s["sink"]["duplicates"],
            s["sink"]["reorders"],
            f(&l["p50"]),
            f(&l["p90"]),
            f(&l["p99"]),
            f(&l["p999"]),
            f(&l["max"]),
            s["generator"]["lag_p99_ms"]
                .as_f64()
                .map_or_else(|| "—".to_owned(), |v| format!("{v:.3}")),
            f(&s["rowhook_stages"]["end_to_end"]["p99_us"]) / 1000.0,
            f(&s["rowhook_cpu_us_per_event"]),
            f(&s["rowhook_peak_rss_mb"]),
            f(&s["steal_pct"]),
        );
    }
    md.push_str(&attribution_table(steps));
    // A `--steps` probe measures none of decode, wake-ups or the ceiling: it
    // says nothing about them rather than print zeros as findings.
    if !decode.is_null() {
        let _ = writeln!(md, "\nDecode only (one pinned core, `loadgen binlog` file, 4 tables, mix 70:20:10): **{:.0} rows/s**, {:.1} binlog MB/s.\n", f(&decode["rows_per_s"]), f(&decode["binlog_mb_per_s"]));
    } else {
        md.push_str("\nA probe of the steps above only (`--steps`): no decode, wake-up or ceiling measurement, no verdict on targets they need.\n\n");
    }
    let p99_10k = |shards: Value| {
        steps
            .iter()
            .find(|s| {
                s["rate"] == 10_000
                    && s["batch_size"] == 1
                    && s["stall"].is_null()
                    && s["dead_task"] != true
                    && s["shards"] == shards
            })
            .map(|s| {
                (
                    f(&s["sink"]["latency_ms"]["p99"]),
                    f(&s["generator"]["lag_p99_ms"]),
                )
            })
    };
    let rss = steps
        .iter()
        .map(|s| f(&s["rowhook_peak_rss_mb"]))
        .fold(0.0, f64::max);
    for st in steps.iter().filter(|s| s["dead_task"] == true) {
        let healthy = steps.iter().find(|s| {
            s["rate"] == st["rate"]
                && s["batch_size"] == 1
                && s["stall"].is_null()
                && s["dead_task"] != true
                && s["shards"].is_null()
        });
        let x = &st["spool"];
        let _ = writeln!(
            md,
            "Dead receiver: a second task on the same tables, whose receiver refused every connection for the whole step, spooled its events (`spool:`) while the sink's task went on — at {} rows/s the sink's task delivered {:.0}/s with p99 {:.3} ms{}; the dead task's spool took {} events, {:.1} MB ({:.0} records/s, {:.1} MB/s written, fsync every 20 ms); rowhook peak RSS {:.1} MB; lost {}, reorders {}.\n",
            st["rate"],
            f(&st["delivered_per_s"]),
            f(&st["sink"]["latency_ms"]["p99"]),
            healthy.map_or_else(String::new, |h| format!(
                " (the no-fault step `{}`: {:.0}/s, p99 {:.3} ms)",
                h["step"].as_str().unwrap_or("?"),
                f(&h["delivered_per_s"]),
                f(&h["sink"]["latency_ms"]["p99"])
            )),
            x["records"],
            f(&x["bytes"]) / 1e6,
            f(&x["records_per_s"]),
            f(&x["write_mb_per_s"]),
            f(&st["rowhook_peak_rss_mb"]),
            st["sink"]["lost"],
            st["sink"]["reorders"],
        );
    }
    for st in steps.iter().filter(|s| !s["stall"].is_null()) {
        let x = &st["stall"];
        let _ = writeln!(
            md,
            "Stall: the sink held every answer for {} s at {} rows/s — rowhook RSS {:.1} MB before, {:.1} MB during, {:.1} MB after; lost {}, reorders {}, duplicates {} once it recovered.\n",
            x["for_s"], st["rate"], f(&x["rss_mb_before"]), f(&x["rss_mb_during"]), f(&x["rss_mb_after"]),
            st["sink"]["lost"], st["sink"]["reorders"], st["sink"]["duplicates"]
        );
    }
    let w = reference.wake;
    if !w.is_null() || !reference.bare.is_null() {
        md.push_str("What this machine allows, measured in this run:\n\n");
    }
    if !w.is_null() {
        let _ = writeln!(
        md,
        "- wake-ups, nothing else running, {} a second: a thread sleeping until a due time ran p50 {:.0} µs / p99 {:.0} µs / max {:.0} µs late; a thread blocked on a channel ran p50 {:.0} µs / p99 {:.0} µs / max {:.0} µs after the send. Every hop of a webhook is such a wake-up.",
        w["rate"],
        f(&w["timer"]["p50_us"]),
        f(&w["timer"]["p99_us"]),
        f(&w["timer"]["max_us"]),
        f(&w["thread"]["p50_us"]),
        f(&w["thread"]["p99_us"]),
        f(&w["thread"]["max_us"]),
    );
    }
    let bw = &reference.bare["sink"]["latency_ms"];
    let bare_p99 = (!reference.bare.is_null()).then(|| f(&bw["p99"]));
    if bare_p99.is_some() {
        let _ = writeln!(
            md,
            "- a bare webhook at {} a second, run just before rowhook's step at that rate (`loadgen blast --rate`: one thread, 16 keep-alive connections, the same sink and body shape, no binlog, no rowhook): p50 {:.3} ms, p90 {:.3} ms, **p99 {:.3} ms**, p99.9 {:.3} ms, max {:.3} ms (the sender's own lateness p99 {:.3} ms; its CPU {:.1} µs per request; steal {:.0} %). This is the `{}` curve in the plot. It is a reference from the same minutes, not a bound: the machine's noise hits it as hard as rowhook, and it can come out above rowhook's own p99.",
            reference.bare["rate"],
            f(&bw["p50"]),
            f(&bw["p90"]),
            f(&bw["p99"]),
            f(&bw["p999"]),
            f(&bw["max"]),
            f(&reference.bare["client"]["lag_p99_ms"]),
            f(&reference.bare["client"]["cpu_us_per_request"]),
            f(&reference.bare["steal_pct"]),
            reference.bare["step"].as_str().unwrap_or("bare-webhook"),
        );
    }
    md.push('\n');
    md.push_str("Targets:\n\n");
    let verdict = |ok: bool| if ok { "met" } else { "not met" };
    let other = alternative_shards();
    for (shards, how) in [
        (Value::Null, "default shards".to_owned()),
        (json!(other), format!("`shards: {other}`")),
    ] {
        if let Some((p, lag)) = p99_10k(shards) {
            let _ = writeln!(
                md,
                "- P99 event → ack < 1 ms at 10k events/s ({how}): {p:.3} ms (generator's own p99 lateness {lag:.3} ms{}) — {}",
                bare_p99.map_or_else(String::new, |b| format!(
                    "; a bare webhook at that rate here: p99 {b:.3} ms"
                )),
                verdict(p < 1.0)
            );
        }
    }
    if !decode.is_null() {
        let _ = writeln!(
            md,
            "- decode > 1 M rows/s per core: {:.0} — {}",
            f(&decode["rows_per_s"]),
            verdict(f(&decode["rows_per_s"]) > 1e6)
        );
    }
    let _ = writeln!(
        md,
        "- RSS < 64 MB: peak {rss:.1} MB — {}",
        verdict(rss < 64.0)
    );
    let ceiling_rate = f(&ceiling["requests_per_s"]);
    let best = steps
        .iter()
        .filter(|s| s["batch_size"] == 1 && s["stall"].is_null() && s["dead_task"] != true)
        .map(|s| f(&s["delivered_per_s"]))
        .fold(0.0, f64::max);
    if ceiling.is_null() {
        return md;
    }
    let _ = writeln!(
        md,
        "- one webhook per event vs the raw HTTP ceiling (`loadgen blast`, 16 keep-alive connections, same sink, same body shape): {best:.0} / {ceiling_rate:.0} requests/s = **{:.0} %** (the ceiling run has the two cores to itself; rowhook's shares them with the master)",
        100.0 * best / ceiling_rate.max(1.0)
    );
    md
}

/// The step whose counts the ci profile guards: a moderate rate, one event per
/// webhook, default shards (in both profiles).
const GUARDED_STEP: &str = "rate-10000-batch-1";

/// The committed full report the guard compares with: the newest
/// `bench/reports/full-*/report.json`.
fn committed_full_report() -> Result<(PathBuf, Value), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("reports");
    let newest = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("full-"))
                && p.join("report.json").exists()
        })
        .max()
        .ok_or_else(|| format!("no full-*/report.json under {}", dir.display()))?;
    let path = newest.join("report.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let report = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((path, report))
}

/// Counts of this run against the committed full report's at [`GUARDED_STEP`]:
/// rowhook's CPU µs/event and syscalls/event may be at most twice the committed
/// figure. Counts per event barely move with the machine's noise; latency would.
/// Returns the report lines and whether the guard holds.
fn guard(steps: &[Value]) -> (String, bool) {
    let (path, baseline) = match committed_full_report() {
        Ok(b) => b,
        Err(e) => return (format!("Guard: no baseline ({e}) — FAILED\n"), false),
    };
    let find = |steps: &[Value]| -> Option<Value> {
        steps
            .iter()
            .find(|s| s["step"] == GUARDED_STEP)
            .map(|s| s["attribution"]["processes"]["rowhook"].clone())
    };
    let now = find(steps);
    let then = baseline["steps"].as_array().and_then(|s| find(s));
    let (Some(now), Some(then)) = (now, then) else {
        return (
            format!(
                "Guard: step {GUARDED_STEP} lacks counts here or in {} — FAILED\n",
                path.display()
            ),
            false,
        );
    };
    let mut md = format!(
        "Guard (counts at {GUARDED_STEP} ≤ 2 × the committed full report, {}):\n\n",
        path.display()
    );
    let mut ok = true;
    for (what, key) in [
        ("CPU µs/event", "cpu_us_per_event"),
        ("syscalls/event", "syscalls_per_event"),
    ] {
        let (n, t) = (now[key].as_f64(), then[key].as_f64());
        let (Some(n), Some(t)) = (n, t) else {
            ok = false;
            let why = if n.is_none() {
                "not measured in this run (perf stat needs linux-perf, and root or perf_event_paranoid ≤ 1)"
            } else {
                "the committed full report has no such count (run bench run --profile full and commit its report)"
            };
            let _ = writeln!(md, "- {what}: {why} — FAILED");
            continue;
        };
        let held = n <= 2.0 * t;
        ok &= held;
        let _ = writeln!(
            md,
            "- {what}: {n:.2} vs committed {t:.2} (limit {:.2}) — {}",
            2.0 * t,
            if held { "ok" } else { "FAILED" }
        );
    }
    (md, ok)
}

/// The "where the time went" table: per step, process and rowhook thread.
fn attribution_table(steps: &[Value]) -> String {
    let mut md = String::from("\nWhere the time went (from the first delivery to the last; `/proc/<pid>/task/<tid>/schedstat` and `status`, syscalls from `perf stat` tracepoints over the same window). *CPU share*: cores used; *run-queue wait*: ms per second a runnable thread waited for a CPU, summed over the process's threads.\n\n| step | process / thread | CPU µs/event | CPU share | run-queue wait ms/s | ctx switches/event | syscalls/event | top syscalls/event |\n|---|---|---|---|---|---|---|---|\n");
    let opt = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "—".to_owned(), |x| format!("{x:.2}"))
    };
    for s in steps {
        let a = &s["attribution"];
        let Some(processes) = a["processes"].as_object() else {
            continue;
        };
        for (label, p) in processes {
            let mut top: Vec<(&String, f64)> = p["syscalls"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| k.as_str() != "total")
                        .map(|(k, v)| (k, f(v)))
                        .filter(|(_, v)| *v >= 0.05)
                        .collect()
                })
                .unwrap_or_default();
            top.sort_by(|x, y| y.1.total_cmp(&x.1));
            let top: Vec<String> = top
                .iter()
                .take(5)
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            let _ = writeln!(
                md,
                "| {} | **{label}** | {:.1} | {:.2} | {:.0} | {:.2} | {} | {} |",
                s["step"].as_str().unwrap_or("?"),
                f(&p["cpu_us_per_event"]),
                f(&p["cpu_share"]),
                f(&p["run_queue_wait_ms_per_s"]),
                f(&p["ctx_switches_per_event"]),
                opt(&p["syscalls_per_event"]),
                if top.is_empty() {
                    "—".to_owned()
                } else {
                    top.join(", ")
                },
            );
            if label != "rowhook" {
                continue;
            }
            for t in p["threads"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    md,
                    "| | {} ×{} | {:.1} | | {:.0} | {:.2} | {} | |",
                    t["thread"].as_str().unwrap_or("?"),
                    t["count"],
                    f(&t["cpu_us_per_event"]),
                    f(&t["run_queue_wait_ms_per_s"]),
                    f(&t["ctx_switches_per_event"]),
                    opt(&t["syscalls_per_event"]),
                );
            }
        }
        let m = &a["machine"];
        if m.is_object() {
            let _ = writeln!(
                md,
                "| {} | machine: {:.2} cores busy, {:.2} outside these processes (softirq {:.2}, iowait {:.2}, steal {:.2}) | | | | | | |",
                s["step"].as_str().unwrap_or("?"),
                f(&m["busy_cores"]),
                f(&m["outside_processes_cores"]),
                f(&m["softirq_cores"]),
                f(&m["iowait_cores"]),
                f(&m["steal_cores"]),
            );
        }
        if let Some(why) = a["syscalls_unavailable"].as_str() {
            let _ = writeln!(
                md,
                "| {} | syscalls not counted: {why} | | | | | | |",
                s["step"].as_str().unwrap_or("?")
            );
        }
    }
    md
}

/// Writes `report.md` and `report.json` into `out`.
fn write_report(out: &Path, md: &str, report: &Value) -> Result<(), String> {
    std::fs::write(out.join("report.md"), md)
        .and_then(|_| {
            std::fs::write(
                out.join("report.json"),
                serde_json::to_string_pretty(report).unwrap_or_default(),
            )
        })
        .map_err(|e| format!("{}: {e}", out.display()))
}

/// `bench run [--profile ci|full] [--out DIR] [--steps NAME,...]`.
pub fn main(args: &[String]) -> ExitCode {
    let mut profile = "ci".to_owned();
    let mut out = None;
    let mut only: Option<Vec<String>> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--profile", Some(p)) => profile = p.clone(),
            ("--out", Some(o)) => out = Some(PathBuf::from(o)),
            ("--steps", Some(n)) => only = Some(n.split(',').map(str::to_owned).collect()),
            _ => {
                eprintln!("usage: bench run [--profile ci|full] [--out DIR] [--steps NAME,...]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(mut steps) = ladder(&profile) else {
        eprintln!("bench: --profile is ci or full, not {profile:?}");
        return ExitCode::from(2);
    };
    if let Some(names) = &only {
        // A probe of a few steps while working on one cost: their rows and
        // attribution, without the reference, ceiling, snapshot, decode and spool parts.
        steps.retain(|s| names.iter().any(|n| *n == step_name(s)));
        if steps.is_empty() {
            let all: Vec<String> = ladder(&profile)
                .unwrap_or_default()
                .iter()
                .map(step_name)
                .collect();
            eprintln!(
                "bench: no step of --profile {profile} is named {names:?}; the steps are {all:?}"
            );
            return ExitCode::from(2);
        }
    }
    let here = std::env::current_exe().unwrap_or_default();
    let bins = Bins {
        rowhook: here.with_file_name("rowhook"),
        loadgen: here.with_file_name("loadgen"),
    };
    for b in [&bins.rowhook, &bins.loadgen] {
        if !b.exists() {
            eprintln!(
                "bench: {} is missing; build first: cargo build --release --workspace",
                b.display()
            );
            return ExitCode::from(2);
        }
    }
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!("bench/reports/{profile}-{}", crate::unix_seconds()))
    });
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("bench: {}: {e}", out.display());
        return ExitCode::from(1);
    }
    let mut results = Vec::new();
    // Before the decode step pins this thread to one core.
    let machine = crate::machine();
    let ci = profile == "ci";
    let wake = if only.is_some() {
        Value::Null
    } else {
        eprintln!("bench: wake-up latency of this machine, nothing else running ...");
        match crate::wake::measure(10_000, if ci { 3 } else { 10 }) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("bench: wake-up latency: {e}");
                return ExitCode::from(1);
            }
        }
    };
    let mut bare = Value::Null;
    for step in &steps {
        if step.bare {
            eprintln!(
                "bench: a bare webhook at {} /s for {} s (loadgen blast --rate, no rowhook), for reference ...",
                step.rate, step.seconds
            );
            match bare_webhook_step(&bins, &out, step.rate, step.seconds) {
                Ok(b) => bare = b,
                Err(e) => {
                    eprintln!("bench: bare webhook: {e}");
                    return ExitCode::from(1);
                }
            }
            continue;
        }
        if step.dead_task {
            eprintln!(
                "bench: {} rows/s for {} s, a second task's receiver down (spooled) ...",
                step.rate, step.seconds
            );
        } else if let Some((at, length)) = step.stall {
            eprintln!(
                "bench: {} rows/s for {} s, the sink stalls {length} s after {at} s ...",
                step.rate, step.seconds
            );
        } else if step.rate == 0 {
            eprintln!(
                "bench: {} rows as fast as they go, batch_size {} ...",
                step.rows, step.batch
            );
        } else {
            eprintln!(
                "bench: {} rows/s for {} s, batch_size {} ...",
                step.rate, step.seconds, step.batch
            );
        }
        match run_step(&bins, &out, *step) {
            Ok(r) => results.push(r),
            Err(e) => {
                eprintln!("bench: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if only.is_some() {
        let md = markdown(
            &results,
            &Value::Null,
            &Value::Null,
            &Reference {
                wake: &wake,
                bare: &bare,
            },
            &machine,
        );
        let report =
            json!({"profile": profile, "machine": machine, "steps": results, "bare_webhook": bare});
        if let Err(e) = write_report(&out, &md, &report) {
            eprintln!("bench: {e}");
            return ExitCode::from(1);
        }
        println!("{}", out.join("report.md").display());
        return ExitCode::SUCCESS;
    }
    let ceiling = match ceiling_step(&bins, &out, if ci { 5 } else { 15 }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench: HTTP ceiling: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("bench: snapshot of a MariaDB table into the sink, batch_size 100 ...");
    let snapshot = match snapshot_step(&bins, &out, if ci { 200_000 } else { 1_000_000 }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench: snapshot: {e}");
            return ExitCode::from(1);
        }
    };
    let decode = match decode_step(&bins, &out, if ci { 3 } else { 10 }) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench: decode: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("bench: the spool's own append/fsync/read throughput ...");
    let spool = match crate::spool::measure(
        &out,
        if ci { 100_000 } else { 500_000 },
        if ci { 2 } else { 5 },
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench: spool: {e}");
            return ExitCode::from(1);
        }
    };
    let mut md = markdown(
        &results,
        &decode,
        &ceiling,
        &Reference {
            wake: &wake,
            bare: &bare,
        },
        &machine,
    );
    md.push_str(&format!(
        "\nSnapshot (`snapshot: initial`, a real MariaDB on this machine, {} rows of (BIGINT id, BIGINT, BIGINT, 48-byte VARBINARY), batch_size 100, into `loadgen sink`): **{:.0} rows/s** ({:.2} s from rowhook's start to the last row; rowhook CPU {:.2} µs/row, peak RSS {:.1} MB, steal {:.0} %). Target ≥ 200,000 rows/s — {}.\n",
        snapshot["rows"],
        f(&snapshot["rows_per_s"]),
        f(&snapshot["seconds"]),
        f(&snapshot["rowhook_cpu_us_per_row"]),
        f(&snapshot["rowhook_peak_rss_mb"]),
        f(&snapshot["steal_pct"]),
        if f(&snapshot["rows_per_s"]) >= 200_000.0 { "met" } else { "not met" },
    ));
    md.push_str(&spool_lines(&spool));
    // The full profile is the baseline; the ci profile is held to it.
    let guarded = ci.then(|| guard(&results));
    if let Some((lines, _)) = &guarded {
        md.push('\n');
        md.push_str(lines);
    }
    let report = json!({"profile": profile, "machine": machine, "steps": results, "decode": decode, "http_ceiling": ceiling, "wake": wake, "bare_webhook": bare, "snapshot": snapshot, "spool": spool});
    if let Err(e) = write_report(&out, &md, &report) {
        eprintln!("bench: {e}");
        return ExitCode::from(1);
    }
    let names: Vec<String> = results
        .iter()
        .chain([&bare])
        .filter_map(|s| s["step"].as_str().map(str::to_owned))
        .collect();
    // The plot is a view of the numbers above; without it the report still stands.
    if let Err(e) = crate::plot::write(&out, &names) {
        eprintln!("bench: no latency plot: {e}");
    }
    println!("{md}");
    println!("report: {}", out.join("report.md").display());
    let broken: Vec<String> = results
        .iter()
        .filter(|s| s["sink"]["lost"] != 0 || s["sink"]["reorders"] != 0 || s["completed"] != true)
        .map(|s| {
            format!(
                "{}: lost {}, reorders {}, completed {}",
                s["step"], s["sink"]["lost"], s["sink"]["reorders"], s["completed"]
            )
        })
        .collect();
    if !broken.is_empty() {
        eprintln!("bench: correctness failed:\n  {}", broken.join("\n  "));
        return ExitCode::from(1);
    }
    if let Some((lines, false)) = &guarded {
        eprintln!("bench: a per-event count doubled:\n{lines}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
