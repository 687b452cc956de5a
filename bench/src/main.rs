//! bench: rowhook's measurements. `bench run` is the orchestrated end-to-end run
//! (loadgen + rowhook + report), `bench plot` redraws a report's latency plot, and
//! `bench decode --file BINLOG` is the decode throughput of one pinned core from
//! binlog bytes to finished webhook payloads.

mod decode;
mod plot;
mod probe;
mod run;
mod spool;
mod wake;

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("decode") => decode::main(&args[1..]),
        Some("run") => run::main(&args[1..]),
        Some("spool") => spool_main(&args[1..]),
        Some("plot") => match args.get(1) {
            Some(dir) => replot(std::path::Path::new(dir)),
            None => {
                eprintln!("usage: bench plot REPORT_DIR");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!(
                "usage: bench run [--profile ci|full] [--out DIR]   (needs cargo build --release --workspace)\n\
                 \x20      bench plot REPORT_DIR\n\
                 \x20      bench decode --file BINLOG [--seconds N]\n\
                 \x20      bench spool [--records N] [--dir DIR]"
            );
            ExitCode::from(2)
        }
    }
}

/// `bench spool [--records N] [--dir DIR]`: the spool's own throughput alone.
fn spool_main(args: &[String]) -> ExitCode {
    let mut records = 200_000u64;
    let mut dir = std::path::PathBuf::from("target");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--records", Some(n)) if n.parse::<u64>().is_ok_and(|n| n > 0) => {
                records = n.parse().unwrap_or(records);
            }
            ("--dir", Some(d)) => dir = d.into(),
            _ => {
                eprintln!("usage: bench spool [--records N] [--dir DIR]");
                return ExitCode::from(2);
            }
        }
    }
    match spool::measure(&dir, records, 3) {
        Ok(v) => {
            print!("{}", run::spool_lines(&v));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench spool: {e}");
            ExitCode::from(1)
        }
    }
}

/// `bench plot DIR`: redraws DIR/latency.svg from DIR/report.json's steps.
fn replot(dir: &std::path::Path) -> ExitCode {
    let report: Result<serde_json::Value, String> =
        std::fs::read_to_string(dir.join("report.json"))
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
    let names: Vec<String> = match &report {
        Ok(r) => r["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .chain([&r["bare_webhook"]])
            .filter_map(|s| s["step"].as_str().map(str::to_owned))
            .collect(),
        Err(e) => {
            eprintln!("bench: {}: {e}", dir.join("report.json").display());
            return ExitCode::from(1);
        }
    };
    match plot::write(dir, &names) {
        Ok(()) => {
            println!("{}", dir.join("latency.svg").display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::from(1)
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
