//! bench: rowhook's measurements. Today: `bench decode --file BINLOG`, the decode
//! throughput of one pinned core from binlog bytes to finished webhook payloads.
//! The orchestrated end-to-end run (loadgen + rowhook + report) comes with loadgen.

mod decode;
mod run;

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("decode") => decode::main(&args[1..]),
        Some("run") => run::main(&args[1..]),
        _ => {
            eprintln!(
                "usage: bench run [--profile ci|full] [--out DIR]   (needs cargo build --release --workspace)\n\
                 \x20      bench decode --file BINLOG [--seconds N]"
            );
            ExitCode::from(2)
        }
    }
}

/// Seconds since the epoch.
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One line describing this machine: CPU model, cores, memory, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {mem_gb:.0} GB, Linux {}",
        kernel.trim()
    )
}
