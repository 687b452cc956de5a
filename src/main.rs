//! The `rowhook` binary: parses the command line and runs one verb.

use std::process::ExitCode;

use clap::Parser;

use rowhook::cli::{
    normalize_args, CheckArgs, Cli, Command, ConfigArgs, DlqAction, DlqArgs, QuarantineAction,
    SnapshotArgs, TailArgs,
};
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
        Command::Run(args) => run(&args),
        Command::Tail(args) => tail(&args),
        Command::Status(args) => status(&args.admin),
        Command::Tasks(args) => match &args.action {
            None | Some(rowhook::cli::TasksAction::List) => tasks(&args.admin),
            Some(action) => change_task(&args, action),
        },
        Command::Snapshot(args) => snapshot(&args),
        Command::Reload(args) => reload(&args),
        Command::Ha {
            action: rowhook::cli::HaAction::StepDown(args),
        } => step_down(&args),
        Command::Dlq { action } => match action {
            DlqAction::List(args) => dlq_list(&args, "dlq"),
            DlqAction::Replay(args) => dlq_replay(&args, "dlq"),
        },
        Command::Replay(args) => spool_replay(&args),
        Command::Quarantine { action } => match action {
            QuarantineAction::List(args) => dlq_list(&args, "quarantine"),
            QuarantineAction::Replay(args) if !args.yes => {
                eprintln!(
                    "error: quarantined rows go to the receiver with positional column names (@1, @2, …), after later changes of the same keys; check them with `rowhook quarantine list`, then confirm with --yes"
                );
                ExitCode::from(EXIT_CONFIG)
            }
            QuarantineAction::Replay(args) => dlq_replay(&args.which, "quarantine"),
        },
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

fn check(args: &CheckArgs) -> ExitCode {
    let loaded = match load(&args.config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let c = &loaded.config;
    let enabled = c.tasks.iter().filter(|t| t.enabled).count();
    println!(
        "ok    configuration: {} task(s), {} enabled (tasks from {})",
        c.tasks.len(),
        enabled,
        loaded.tasks_source
    );
    println!(
        "ok    source: {}@{}:{} as replica server_id {}",
        c.database.user, c.database.host, c.database.port, c.database.server_id
    );
    if let Err(e) = rowhook::delivery::Plan::new(c, 1) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    for t in &c.tasks {
        println!("      task {:<24} -> {}", t.task_id, t.callback_url);
    }
    if args.offline {
        return ExitCode::SUCCESS;
    }
    let findings = rowhook::commands::check::check(c);
    for f in &findings {
        println!("{f}");
    }
    let failed = findings
        .iter()
        .filter(|f| f.level == rowhook::commands::check::Level::Fail)
        .count();
    let warned = findings
        .iter()
        .filter(|f| f.level == rowhook::commands::check::Level::Warn)
        .count();
    if failed > 0 {
        println!("{failed} problem(s) to fix, {warned} warning(s)");
        ExitCode::from(EXIT_RUNTIME)
    } else {
        println!("ready: {warned} warning(s)");
        ExitCode::SUCCESS
    }
}

fn run(args: &ConfigArgs) -> ExitCode {
    let loaded = match load(args) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let files = ConfigFiles {
        configs: args.config.clone(),
        tasks: args.tasks.clone(),
    };
    match rowhook::commands::run::run(&loaded, files) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ rowhook::commands::run::RunError::Plan(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn status(base: &str) -> ExitCode {
    use rowhook::admin::client;
    let answers = client::get(base, "/health")
        .and_then(|(_, health)| Ok((health, client::get(base, "/metrics.json")?.1)));
    let (health, metrics) = match answers {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match client::print_status(&mut std::io::stdout().lock(), base, &health, &metrics) {
        Ok(true) => ExitCode::SUCCESS,
        // DOWN (or stdout gone): scripts see a failure.
        _ => ExitCode::from(EXIT_RUNTIME),
    }
}

/// Prints the admin API's refusal; exit 1 for a server-side failure, 2 for a
/// request it rejected.
fn refused(code: u16, answer: &serde_json::Value) -> ExitCode {
    let why = answer["error"]
        .as_str()
        .map_or_else(|| answer.to_string(), str::to_owned);
    eprintln!("error: {why}");
    ExitCode::from(if code >= 500 {
        EXIT_RUNTIME
    } else {
        EXIT_CONFIG
    })
}

/// A task id as one path segment.
fn escape_id(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `rowhook tasks add|rm|enable|disable`: one request to the admin API.
fn change_task(args: &rowhook::cli::TasksArgs, action: &rowhook::cli::TasksAction) -> ExitCode {
    use rowhook::admin::client;
    use rowhook::cli::TasksAction;
    let (method, id, suffix, body) = match action {
        TasksAction::List => return tasks(&args.admin),
        TasksAction::Add { file, id } => {
            let text = if file.as_os_str() == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t).map(|_| t)
            } else {
                std::fs::read_to_string(file)
            };
            let text = match text {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", file.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let value: serde_json::Value = match serde_yaml::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("error: {}: not YAML or JSON: {e}", file.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let Some(id) = id
                .clone()
                .or_else(|| value["task_id"].as_str().map(str::to_owned))
            else {
                eprintln!("error: {}: no task_id; give --id", file.display());
                return ExitCode::from(EXIT_CONFIG);
            };
            ("PUT", id, "", Some(value))
        }
        TasksAction::Rm { id } => ("DELETE", id.clone(), "", None),
        TasksAction::Enable { id } => ("POST", id.clone(), "/enable", None),
        TasksAction::Disable { id } => ("POST", id.clone(), "/disable", None),
        TasksAction::Test { id } => ("POST", id.clone(), "/test", None),
    };
    let testing = matches!(action, TasksAction::Test { .. });
    let path = format!("/tasks/{}{suffix}", escape_id(&id));
    match client::request(
        &args.admin,
        method,
        &path,
        args.token.as_deref(),
        body.as_ref(),
    ) {
        Ok((200, answer)) if testing => {
            let ok = answer["ok"].as_bool().unwrap_or(false);
            let outcome = match answer["status"].as_u64() {
                Some(status) => format!("HTTP {status}"),
                None => format!("no answer ({})", answer["error"].as_str().unwrap_or("?")),
            };
            println!(
                "task {id}: POST {} -> {outcome} in {} ms",
                answer["url"].as_str().unwrap_or("?"),
                answer["ms"]
            );
            if let Some(body) = answer["body"].as_str().filter(|b| !b.is_empty()) {
                println!("{body}");
            }
            println!("sent: {}", answer["sent"]);
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUNTIME)
            }
        }
        Ok((code, answer)) if (200..300).contains(&code) => {
            println!(
                "task {id}: {} (etcd revision {}); it applies at the next transaction boundary",
                answer["written"].as_str().unwrap_or("done"),
                answer["revision"]
            );
            ExitCode::SUCCESS
        }
        Ok((code, answer)) => refused(code, &answer),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn tasks(base: &str) -> ExitCode {
    use rowhook::admin::client;
    match client::get(base, "/tasks") {
        Ok((_, tasks)) => match client::print_tasks(&mut std::io::stdout().lock(), &tasks) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(EXIT_RUNTIME),
        },
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// How long `rowhook ha step-down` waits for another instance to take over.
const STEP_DOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn step_down(args: &rowhook::cli::TokenArgs) -> ExitCode {
    use rowhook::admin::client;
    let base = &args.admin.admin;
    let (code, answer) =
        match client::request(base, "POST", "/ha/step-down", args.token.as_deref(), None) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
    if code != 202 {
        return refused(code, &answer);
    }
    let epoch = answer["epoch"].as_u64().unwrap_or(0);
    println!("{} is stepping down from epoch {epoch}", answer["id"]);
    // The instance restarts as standby; its /health names the new active one.
    let until = std::time::Instant::now() + STEP_DOWN_WAIT;
    while std::time::Instant::now() < until {
        if let Ok((_, health)) = client::get(base, "/health") {
            if health["epoch"].as_u64().is_some_and(|e| e > epoch) && !health["active_id"].is_null()
            {
                println!(
                    "active now: {} (epoch {}); this instance is {}",
                    health["active_id"], health["epoch"], health["role"]
                );
                return ExitCode::SUCCESS;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    eprintln!("error: no instance took over within {STEP_DOWN_WAIT:?}; see `rowhook status`");
    ExitCode::from(EXIT_RUNTIME)
}

/// How long `rowhook reload` waits for the new set to apply (a transaction
/// boundary; an idle source passes one at once).
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn reload(args: &rowhook::cli::TokenArgs) -> ExitCode {
    use rowhook::admin::client;
    let base = &args.admin.admin;
    let (code, answer) = match client::request(base, "POST", "/reload", args.token.as_deref(), None)
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    if code == 200 {
        println!("tasks unchanged");
        return ExitCode::SUCCESS;
    }
    if code != 202 {
        return refused(code, &answer);
    }
    let list = |k: &str| {
        answer[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "accepted: added {}; changed {}; removed {}; {} unchanged",
        list("added"),
        list("changed"),
        list("removed"),
        answer["unchanged"]
    );
    let target = answer["applies_as_generation"].as_u64().unwrap_or(0);
    let until = std::time::Instant::now() + RELOAD_WAIT;
    while std::time::Instant::now() < until {
        if let Ok((_, health)) = client::get(base, "/health") {
            if health["tasks_generation"]
                .as_u64()
                .is_some_and(|g| g >= target)
            {
                println!("applied at a transaction boundary (tasks generation {target})");
                return ExitCode::SUCCESS;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("error: not applied after {RELOAD_WAIT:?}: the stream is inside a long transaction (it applies when that ends)");
    ExitCode::from(EXIT_RUNTIME)
}

/// `rowhook snapshot TASK`: starts (or cancels) a snapshot on the running
/// instance, then follows it: a progress bar on a terminal, a line every 10 s
/// otherwise. Exit 0 when it is done, 1 when it failed or was cancelled, 2 when
/// the request itself is wrong (unknown task, bad body, refused).
fn snapshot(args: &SnapshotArgs) -> ExitCode {
    use rowhook::admin::client;
    let base = &args.admin.admin;
    let id = escape_id(&args.task);
    let path = format!("/tasks/{id}/snapshot");
    let token = args.token.as_deref();
    let (method, body) = if args.cancel {
        ("DELETE", None)
    } else {
        (
            "POST",
            Some(serde_json::json!({"table": args.table, "where": args.filter})),
        )
    };
    let (code, answer) = match client::request(base, method, &path, token, body.as_ref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    if !(200..300).contains(&code) {
        return refused(code, &answer);
    }
    if args.cancel {
        println!(
            "snapshot of task {} cancelled after its current chunk",
            args.task
        );
        return ExitCode::SUCCESS;
    }
    if args.no_wait {
        println!("snapshot of task {} started", args.task);
        return ExitCode::SUCCESS;
    }
    follow_snapshot(base, &format!("/tasks/{id}"), &args.task)
}

/// Polls the task until its snapshot is no longer running.
fn follow_snapshot(base: &str, path: &str, task: &str) -> ExitCode {
    use std::io::IsTerminal;
    use std::time::{Duration, Instant};
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/~{len} rows, {per_sec}, eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut logged = Instant::now();
    loop {
        let snapshot = match rowhook::admin::client::get(base, path) {
            Ok((200, t)) => t["snapshot"].clone(),
            Ok((code, answer)) => {
                eprintln!("error: HTTP {code}: {answer}");
                return ExitCode::from(EXIT_RUNTIME);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        let rows = snapshot["rows"].as_u64().unwrap_or(0);
        let estimate = snapshot["estimated_rows"].as_u64().unwrap_or(0).max(rows);
        let table = snapshot["table"].as_str().unwrap_or("-").to_owned();
        if let Some(bar) = &bar {
            bar.set_length(estimate);
            bar.set_position(rows);
            bar.set_message(table.clone());
        } else if logged.elapsed() >= Duration::from_secs(10) {
            logged = Instant::now();
            eprintln!("snapshot of {task}: {table}, {rows} of ~{estimate} rows");
        }
        match snapshot["state"].as_str().unwrap_or("none") {
            "running" => std::thread::sleep(Duration::from_millis(500)),
            state => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                let id = snapshot["id"].as_str().unwrap_or("-");
                return match state {
                    "done" => {
                        println!("snapshot {id} of task {task} done: {rows} rows");
                        ExitCode::SUCCESS
                    }
                    _ => {
                        let error = snapshot["error"].as_str().unwrap_or("");
                        eprintln!("snapshot {id} of task {task} {state} after {rows} rows {error}");
                        ExitCode::from(EXIT_RUNTIME)
                    }
                };
            }
        }
    }
}

/// Lists the records of `state.dir/<store>` (`dlq` or `quarantine`).
fn dlq_list(args: &DlqArgs, store: &str) -> ExitCode {
    let loaded = match load(&args.config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let dir = loaded.config.state.dir.join(store);
    if let Err(e) = rowhook::delivery::dlq::recover(&dir) {
        eprintln!(
            "error: {}: cannot recover an unfinished replay: {e}",
            dir.display()
        );
        return ExitCode::from(EXIT_RUNTIME);
    }
    let files = match rowhook::delivery::dlq::files(&dir, args.task.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {}: {e}", dir.display());
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let (mut count, mut unreadable) = (0, 0);
    println!(
        "{:<20} {:<32} {:>8} {:>6}  {:<20}  error",
        "task", "id", "attempts", "status", "dead_at"
    );
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        for letter in rowhook::delivery::dlq::parse(file, &text) {
            match letter {
                Ok(l) => {
                    count += 1;
                    let status = l.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
                    println!(
                        "{:<20} {:<32} {:>8} {:>6}  {:<20}  {}",
                        l.task, l.id, l.attempts, status, l.dead_at, l.error
                    );
                }
                Err(bad) => {
                    unreadable += 1;
                    println!("{:<20} {bad}", "UNREADABLE");
                }
            }
        }
    }
    let what = if store == "dlq" {
        "dead letter(s)"
    } else {
        "quarantined row change(s)"
    };
    println!(
        "{count} {what}, {unreadable} unreadable line(s) in {}",
        dir.display()
    );
    ExitCode::SUCCESS
}

/// Re-sends the records of `state.dir/<store>` (`dlq` or `quarantine`).
fn dlq_replay(args: &DlqArgs, store: &str) -> ExitCode {
    let loaded = match load(&args.config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let dir = loaded.config.state.dir.join(store);
    match rowhook::commands::replay::replay_dir(&loaded.config, &dir, args.task.as_deref()) {
        Ok(r) => {
            println!(
                "replayed: {} delivered, {} failed again (kept), {} unreadable line(s) kept",
                r.delivered, r.failed, r.unreadable
            );
            if r.failed + r.unreadable == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUNTIME)
            }
        }
        Err(e @ rowhook::commands::replay::ReplayError::Plan(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn spool_replay(args: &rowhook::cli::SpoolReplayArgs) -> ExitCode {
    use rowhook::commands::spool_replay::{self as sr, From, Until};
    let bad = |why: String| {
        eprintln!("error: {why}");
        ExitCode::from(EXIT_CONFIG)
    };
    let from = match (&args.since, &args.from_gtid, &args.from) {
        (Some(t), _, _) => match sr::parse_time(t) {
            Some(t) => From::Time(t),
            None => {
                return bad(format!(
                    "--since {t:?}: write a time like 2026-11-30T10:00:00Z"
                ))
            }
        },
        (_, Some(set), _) => From::Gtids(set.clone()),
        (_, _, Some(p)) => match sr::parse_position(p) {
            Some((file, pos)) => From::Position(file, pos),
            None => {
                return bad(format!(
                    "--from {p:?}: write FILE:POS, e.g. binlog.000042:1234"
                ))
            }
        },
        _ => return bad("give --since, --from-gtid or --from".into()),
    };
    let until = match &args.until {
        None => None,
        Some(u) => match (sr::parse_time(u), sr::parse_position(u)) {
            (Some(t), _) => Some(Until::Time(t)),
            (_, Some((file, pos))) => Some(Until::Position(file, pos)),
            _ => {
                return bad(format!(
                    "--until {u:?}: write a time (2026-11-30T10:00:00Z) or FILE:POS"
                ))
            }
        },
    };
    let loaded = match load(&args.config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let req = sr::Request {
        task: args.task.clone(),
        from,
        until,
        to: args.to.clone(),
    };
    let result = sr::replay(&loaded.config, &req, |sent| {
        eprintln!("replay: {sent} events sent");
    });
    match result {
        Ok(r) => {
            match &r.range {
                Some((first, last)) => println!(
                    "spool of task {} holds {} event(s): from {first} to {last}",
                    args.task, r.held
                ),
                None => println!(
                    "spool of task {} holds no events (set spool.retain to keep delivered ones for replay)",
                    args.task
                ),
            }
            println!(
                "replayed {} event(s) to {}",
                r.sent,
                args.to.as_deref().unwrap_or("the task's URL")
            );
            if let Some((at, error)) = &r.failed {
                eprintln!("error: the event at {at} failed ({error}); replay stopped there — run again with --from {}:{}", at.file, at.pos);
                return ExitCode::from(EXIT_RUNTIME);
            }
            if r.sent == 0 && r.held > 0 {
                eprintln!("nothing matched: the spool's range is above");
            }
            ExitCode::SUCCESS
        }
        Err(
            e @ (sr::ReplayError::NoTask(_) | sr::ReplayError::Plan(_) | sr::ReplayError::Gtids(_)),
        ) => bad(e.to_string()),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
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
    match rowhook::commands::tail::tail_file(
        file,
        tasks,
        std::io::BufWriter::with_capacity(1 << 16, stdout),
    ) {
        Ok(_) => ExitCode::SUCCESS,
        // `rowhook tail ... | head` closes the pipe early; that is not a failure.
        Err(rowhook::commands::tail::TailError::Output(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
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
    // A reader behind a pipe wakes once per pipe-full: a 1 MiB pipe (best effort;
    // not a pipe, or over /proc/sys/fs/pipe-max-size, leaves it as it is) cuts the
    // context switches of a fast stream by 16.
    // SAFETY: fcntl on fd 1 with an integer argument touches no memory of ours.
    unsafe { libc::fcntl(1, libc::F_SETPIPE_SZ, 1 << 20) };
    let stdout = std::io::BufWriter::with_capacity(1 << 18, std::io::stdout().lock());
    match rowhook::commands::tail::tail_live(&loaded.config, tasks, stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(rowhook::commands::tail::TailError::Output(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
