//! bench: runs loadgen and rowhook together and writes a report (SPEC section 8).
//! The orchestration arrives with the bench issue; this prints what exists.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("bench: the benchmark orchestrator is not built yet (needs loadgen)");
    ExitCode::from(2)
}
