//! `rowhook check --offline` on real files: pikachu's configs, our examples, and a table of bad
//! inputs that must each exit 2 with a message naming the file and field.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn rowhook(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rowhook"));
    cmd.args(args).current_dir(common::root());
    // These tests are about the files; no server runs for them.
    if args.first() == Some(&"check") {
        cmd.arg("--offline");
    }
    for var in [
        "ROWHOOK_DB_HOST",
        "ROWHOOK_DB_USER",
        "ROWHOOK_DB_PASSWORD",
        "ROWHOOK_ADMIN_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run rowhook")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn pikachu_files_load_unchanged() {
    let out = rowhook(
        &["check", "--config", "tests/fixtures/pikachu/config.yaml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("5 task(s)"), "{t}");
    assert!(t.contains("http://localhost:3000/webhook/user"), "{t}");
    assert!(
        t.contains("https://external-api.company.com/v1/sync"),
        "{t}"
    );
}

#[test]
fn pikachu_prod_overlay_layers_and_alone_names_missing_fields() {
    let out = rowhook(
        &[
            "check",
            "-config",
            "tests/fixtures/pikachu/config.yaml",
            "-config",
            "tests/fixtures/pikachu/config.prod.yaml",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let out = rowhook(
        &[
            "check",
            "-config",
            "tests/fixtures/pikachu/config.prod.yaml",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    for want in [
        "config.prod.yaml: database.host: required field is missing",
        "database.user",
        "database.server_id",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn example_configs_load() {
    let base = ["check", "--config", "config/config.yaml"];
    let out = rowhook(&base, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("2 task(s)"), "{}", text(&out));

    let out = rowhook(
        &[&base[..], &["--config", "config/config.dev.yaml"]].concat(),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("retry_base_delay"),
        "dev overlay should warn: {}",
        text(&out)
    );

    let prod = [&base[..], &["--config", "config/config.prod.yaml"]].concat();
    let out = rowhook(&prod, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("ROWHOOK_DB_HOST is not set"),
        "{}",
        text(&out)
    );
    let env = [
        ("ROWHOOK_DB_HOST", "db.internal"),
        ("ROWHOOK_DB_USER", "repl"),
        ("ROWHOOK_DB_PASSWORD", "s3cret"),
        ("ROWHOOK_ADMIN_TOKEN", "t0ken"),
    ];
    let out = rowhook(&prod, &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("repl@db.internal:3306"),
        "{}",
        text(&out)
    );
}

#[test]
fn tasks_inline_in_config_when_no_tasks_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "database: {host: h, user: u, server_id: 1}\ntasks:\n  - {task_id: t, table_name: a.b, events: [delete], callback_url: 'http://x/y'}\n",
    )
    .unwrap();
    let out = rowhook(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("(tasks:)"), "{}", text(&out));
}

#[test]
fn missing_file_is_a_usage_error() {
    let out = rowhook(&["check", "--config", "does/not/exist.yaml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("does/not/exist.yaml"), "{}", text(&out));
}

macro_rules! good_db {
    () => {
        "database: {host: h, user: u, server_id: 1}\ncallback_host: http://hooks:3000\n"
    };
}
const GOOD_DB: &str = good_db!();
const GOOD_TASKS: Option<&str> =
    Some("tasks:\n  - {task_id: t, table_name: users, events: [insert], callback_url: /t}\n");

/// (what it is, config.yaml, tasks.yaml beside it, words the message must contain)
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
);

const BAD: &[Case] = &[
    ("unknown top-level section", concat!(good_db!(), "databse: {}\n"), GOOD_TASKS, &["databse", "unknown field", "did you mean `database`"]),
    ("unknown field in section", concat!(good_db!(), "dispatcher: {worker_cont: 3}\n"), GOOD_TASKS, &["dispatcher.worker_cont", "did you mean `worker_count`"]),
    ("missing host", "database: {user: u, server_id: 1}\ncallback_host: http://h\n", GOOD_TASKS, &["database.host", "missing"]),
    ("missing server_id", "database: {host: h, user: u}\ncallback_host: http://h\n", GOOD_TASKS, &["database.server_id", "missing"]),
    ("no database section", "callback_host: http://h\n", GOOD_TASKS, &["database.host", "database.user", "database.server_id"]),
    ("server_id zero", "database: {host: h, user: u, server_id: 0}\ncallback_host: http://h\n", GOOD_TASKS, &["database.server_id", "out of range"]),
    ("port as text", "database: {host: h, user: u, server_id: 1, port: abc}\ncallback_host: http://h\n", GOOD_TASKS, &["database.port", "whole number"]),
    ("port too large", "database: {host: h, user: u, server_id: 1, port: 70000}\ncallback_host: http://h\n", GOOD_TASKS, &["database.port", "between 1 and 65535"]),
    ("section is a list", "database: [h]\ncallback_host: http://h\n", GOOD_TASKS, &["database", "expected a mapping"]),
    ("duration without unit", concat!(good_db!(), "dispatcher: {timeout: 30}\n"), GOOD_TASKS, &["dispatcher.timeout", "no unit"]),
    ("duration bad unit", concat!(good_db!(), "dispatcher: {timeout: 30x}\n"), GOOD_TASKS, &["dispatcher.timeout", "unknown unit"]),
    ("zero timeout", concat!(good_db!(), "dispatcher: {timeout: 0s}\n"), GOOD_TASKS, &["dispatcher.timeout", "greater than zero"]),
    ("negative worker_count", concat!(good_db!(), "dispatcher: {worker_count: -1}\n"), GOOD_TASKS, &["dispatcher.worker_count", "at least 1"]),
    ("zero queue_size", concat!(good_db!(), "dispatcher: {queue_size: 0}\n"), GOOD_TASKS, &["dispatcher.queue_size", "at least 1"]),
    ("max_retries below -1", concat!(good_db!(), "dispatcher: {max_retries: -2}\n"), GOOD_TASKS, &["dispatcher.max_retries", "out of range"]),
    ("fractional count", concat!(good_db!(), "dispatcher: {max_inflight: 1.5}\n"), GOOD_TASKS, &["dispatcher.max_inflight", "whole number"]),
    ("max delay below base", concat!(good_db!(), "dispatcher: {retry_base_delay: 10s, retry_max_delay: 1s}\n"), GOOD_TASKS, &["dispatcher.retry_max_delay", "below retry_base_delay"]),
    ("bad log level", concat!(good_db!(), "log: {level: loud}\n"), GOOD_TASKS, &["log.level", "not one of"]),
    ("bad tls mode", "database: {host: h, user: u, server_id: 1, tls: maybe}\ncallback_host: http://h\n", GOOD_TASKS, &["database.tls", "verify_ca"]),
    ("verify_ca without ca_file", "database: {host: h, user: u, server_id: 1, tls: verify_ca}\ncallback_host: http://h\n", GOOD_TASKS, &["database.ca_file", "verify_ca"]),
    ("unset env var", "database: {host: '${ROWHOOK_TEST_SURELY_UNSET}', user: u, server_id: 1}\ncallback_host: http://h\n", GOOD_TASKS, &["database.host", "ROWHOOK_TEST_SURELY_UNSET is not set"]),
    ("bad start position", concat!(good_db!(), "source: {start: yesterday}\n"), GOOD_TASKS, &["source.start", "not a start position"]),
    ("start with file but no pos", concat!(good_db!(), "source: {start: {file: binlog.000001}}\n"), GOOD_TASKS, &["source.start", "file and pos"]),
    ("bad shards", concat!(good_db!(), "runtime: {shards: 2000}\n"), GOOD_TASKS, &["runtime.shards", "between 0"]),
    ("bad admin bind", concat!(good_db!(), "server: {bind: 'localhost:80'}\n"), GOOD_TASKS, &["server.bind", "not an IP address"]),
    ("bad callback_host", "database: {host: h, user: u, server_id: 1}\ncallback_host: 'hooks:3000'\n", GOOD_TASKS, &["callback_host"]),
    ("not YAML", "database: {host: h\n", GOOD_TASKS, &["config.yaml", "not valid YAML", "line"]),
    ("no tasks at all", GOOD_DB, None, &["tasks", "no tasks configured"]),
    ("duplicate task_id", GOOD_DB, Some("tasks:\n  - {task_id: t, table_name: a, events: [insert], callback_url: /a}\n  - {task_id: t, table_name: b, events: [insert], callback_url: /b}\n"), &["tasks.yaml", "tasks[1].task_id", "unique"]),
    ("unknown event", GOOD_DB, Some("tasks:\n  - {task_id: t, table_name: a, events: [insert, upsert], callback_url: /a}\n"), &["tasks[0].events[1]", "upsert"]),
    ("empty events", GOOD_DB, Some("tasks:\n  - {task_id: t, table_name: a, events: [], callback_url: /a}\n"), &["tasks[0].events", "empty"]),
    ("events missing", GOOD_DB, Some("tasks:\n  - {task_id: t, table_name: a, callback_url: /a}\n"), &["tasks[0].events", "missing"]),
    ("task_id missing", GOOD_DB, Some("tasks:\n  - {table_name: a, events: [insert], callback_url: /a}\n"), &["tasks[0].task_id", "missing"]),
    ("bad callback scheme", GOOD_DB, Some("tasks:\n  - {task_id: t, table_name: a, events: [insert], callback_url: 'ftp://x/y'}\n"), &["tasks[0].callback_url", "scheme"]),
    ("relative url without host", "database: {host: h, user: u, server_id: 1}\n", Some("tasks:\n  - {task_id: t, table_name: a, events: [insert], callback_url: /a}\n"), &["tasks[0].callback_url", "callback_host is not set"]),
    ("zero batch_size", GOOD_DB, Some("tasks:\n  - {task_id: t, table_name: a, events: [insert], callback_url: /a, batch_size: 0}\n"), &["tasks[0].batch_size", "between 1"]),
    ("unknown task field", GOOD_DB, Some("tasks:\n  - {task_id: t, table_name: a, events: [insert], callback_url: /a, callbak: x}\n"), &["tasks[0].callbak", "unknown field"]),
    ("short secret", GOOD_DB, Some("tasks:\n  - {task_id: t, table_name: a, events: [insert], callback_url: /a, secret: short}\n"), &["tasks[0].secret", "24"]),
    ("header injection", GOOD_DB, Some("tasks:\n  - {task_id: t, table_name: a, events: [insert], callback_url: /a, headers: {X-A: \"a\\r\\nX-B: b\"}}\n"), &["tasks[0].headers.X-A", "line break"]),
    ("reserved header", GOOD_DB, Some("tasks:\n  - {task_id: t, table_name: a, events: [insert], callback_url: /a, headers: {Content-Length: '5'}}\n"), &["tasks[0].headers.Content-Length", "cannot be overridden"]),
    ("bad ordering", GOOD_DB, Some("tasks:\n  - {task_id: t, table_name: a, events: [insert], callback_url: /a, ordering: random}\n"), &["tasks[0].ordering", "per_key"]),
    ("tasks not a list", GOOD_DB, Some("tasks: {task_id: t}\n"), &["tasks.yaml", "list of tasks"]),
    ("task is a string", GOOD_DB, Some("tasks:\n  - user_monitor\n"), &["tasks[0]", "expected a task"]),
    ("table with two dots", GOOD_DB, Some("tasks:\n  - {task_id: t, table_name: a.b.c, events: [insert], callback_url: /a}\n"), &["tasks[0].table_name", "db.table"]),
];

#[test]
fn bad_configs_exit_2_naming_the_field() {
    assert!(BAD.len() >= 20);
    let mut failures = Vec::new();
    for (what, config, tasks, words) in BAD {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "config.yaml", config);
        if let Some(tasks) = tasks {
            write(dir.path(), "tasks.yaml", tasks);
        }
        let c = dir.path().join("config.yaml");
        let out = rowhook(&["check", "--config", c.to_str().unwrap()], &[]);
        let t = text(&out);
        if out.status.code() != Some(2) || t.contains("panicked") {
            failures.push(format!("{what}: exit {:?}\n{t}", out.status.code()));
            continue;
        }
        for w in *words {
            if !t.contains(w) {
                failures.push(format!("{what}: message lacks {w:?}:\n{t}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}
