//! The `rowhook` binary: parses the command line and runs one verb.

use std::process::ExitCode;

use clap::Parser;

use rowhook::cli::{normalize_args, Cli, Command, ConfigArgs, TailArgs};
use rowhook::config::{self, ConfigError, ConfigFiles, Loaded};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for bad usage or invalid configuration (SPEC section 2).
const EXIT_CONFIG: u8 = 2;
/// Exit code for a runtime failure.
const EXIT_RUNTIME: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args(std::env::args_os()));
    match cli.command {
        Command::Version => {
            println!("rowhook {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check(args) => check(&args),
        Command::Run(args) => match load(&args) {
            Ok(loaded) => not_yet("run", "replication and webhook delivery", &loaded),
            Err(code) => code,
        },
        Command::Tail(args) => tail(&args),
        Command::Status(_) | Command::Tasks(_) => {
            eprintln!("rowhook: the admin API this command reads is not part of this build yet");
            ExitCode::from(EXIT_RUNTIME)
        }
        Command::Dlq { .. } => {
            eprintln!("rowhook dlq: dead-lettering is not part of this build yet");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Loads the config, installs logging, prints warnings; on failure prints the
/// problems and returns the exit code.
fn load(args: &ConfigArgs) -> Result<Loaded, ExitCode> {
    let files = ConfigFiles {
        configs: args.config.clone(),
        tasks: args.tasks.clone(),
    };
    match config::load(&files) {
        Ok(loaded) => {
            rowhook::logging::init(&loaded.config.log);
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            Ok(loaded)
        }
        Err(e @ (ConfigError::Invalid(_) | ConfigError::Read { .. })) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn check(args: &ConfigArgs) -> ExitCode {
    let loaded = match load(args) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let c = &loaded.config;
    let enabled = c.tasks.iter().filter(|t| t.enabled).count();
    println!(
        "ok  configuration: {} task(s), {} enabled (tasks from {})",
        c.tasks.len(),
        enabled,
        loaded.tasks_source
    );
    println!(
        "ok  source: {}@{}:{} as replica server_id {}",
        c.database.user, c.database.host, c.database.port, c.database.server_id
    );
    for t in &c.tasks {
        println!("    task {:<24} -> {}", t.task_id, t.callback_url);
    }
    ExitCode::SUCCESS
}

fn not_yet(verb: &str, what: &str, loaded: &Loaded) -> ExitCode {
    tracing::error!(
        tasks = loaded.config.tasks.len(),
        "rowhook {verb}: configuration is valid, but {what} are not part of this build yet"
    );
    ExitCode::from(EXIT_RUNTIME)
}

fn tail(args: &TailArgs) -> ExitCode {
    let Some(file) = &args.file else {
        return tail_live(args);
    };
    let tasks = match &args.tasks {
        None => None,
        Some(path) => match config::load_tasks(path) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let stdout = std::io::stdout().lock();
    match rowhook::tail::tail_file(
        file,
        tasks,
        std::io::BufWriter::with_capacity(1 << 16, stdout),
    ) {
        Ok(_) => ExitCode::SUCCESS,
        // `rowhook tail ... | head` closes the pipe early; that is not a failure.
        Err(rowhook::tail::TailError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn tail_live(args: &TailArgs) -> ExitCode {
    let configs = if args.config.is_empty() {
        vec!["config/config.yaml".into()]
    } else {
        args.config.clone()
    };
    let loaded = match load(&ConfigArgs {
        config: configs,
        tasks: args.tasks.clone(),
    }) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let tasks = Some(loaded.config.tasks.clone());
    let stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    match rowhook::tail::tail_live(&loaded.config, tasks, stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(rowhook::tail::TailError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
