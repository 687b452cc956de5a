//! loadgen: the instrument rowhook's performance and fault claims are measured with
//! (SPEC section 8). Subcommands arrive with the loadgen issue; this prints what exists.

use std::process::ExitCode;

fn main() -> ExitCode {
    let verb = std::env::args().nth(1).unwrap_or_default();
    match verb.as_str() {
        "--version" | "version" => {
            println!("loadgen {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "usage: loadgen <master|sink|sql|binlog> ...\nloadgen: {verb:?} is not built yet"
            );
            ExitCode::from(2)
        }
    }
}
