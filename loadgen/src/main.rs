//! loadgen: the instrument rowhook's performance and fault claims are measured with
//! (SPEC section 8). `sink` exists; `master`, `sql` and `binlog` come with the
//! loadgen issue.

mod sink;

use std::process::ExitCode;

const USAGE: &str = "usage: loadgen sink [--listen ADDR] [--print]\n       loadgen version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "version") => {
            println!("loadgen {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("sink") => {
            let mut sink = sink::SinkArgs {
                listen: "127.0.0.1:18080".into(),
                print: false,
            };
            let mut rest = args[1..].iter();
            while let Some(a) = rest.next() {
                match a.as_str() {
                    "--listen" => match rest.next() {
                        Some(v) => sink.listen = v.clone(),
                        None => return usage("--listen needs an address"),
                    },
                    "--print" => sink.print = true,
                    other => return usage(&format!("unknown option {other}")),
                }
            }
            match sink::run(&sink) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("loadgen sink: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Some(other @ ("master" | "sql" | "binlog")) => {
            eprintln!("loadgen {other}: not built yet (see the loadgen issue)");
            ExitCode::from(1)
        }
        _ => usage("a subcommand is needed"),
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("loadgen: {problem}\n{USAGE}");
    ExitCode::from(2)
}
