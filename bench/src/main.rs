//! bench: rowhook's measurements. Today: `bench decode --file BINLOG`, the decode
//! throughput of one pinned core from binlog bytes to finished webhook payloads.
//! The orchestrated end-to-end run (loadgen + rowhook + report) comes with loadgen.

mod decode;

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("decode") => decode::main(&args[1..]),
        _ => {
            eprintln!(
                "usage: bench decode --file BINLOG [--seconds N]\n\
                 (the end-to-end benchmark with loadgen is not built yet)"
            );
            ExitCode::from(2)
        }
    }
}
