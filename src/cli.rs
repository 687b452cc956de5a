//! Command-line surface (SPEC section 2): verbs, flags, and pikachu's `-config` spelling.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// rowhook: MySQL/MariaDB binlog -> HTTP webhooks.
#[derive(Debug, Parser)]
#[command(name = "rowhook", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: replicate, route, deliver.
    Run(ConfigArgs),
    /// Print the payloads tasks would send, as JSON lines (live, or from a binlog file).
    Tail(TailArgs),
    /// Validate the configuration (and, as it grows, the server and callbacks); exit 0/1/2.
    Check(CheckArgs),
    /// Ask a running instance for its health, lag and counters.
    Status(AdminArgs),
    /// List a running instance's tasks with state and counters; test one; add,
    /// remove, enable or disable one where tasks live in etcd.
    Tasks(TasksArgs),
    /// Make a running instance read its tasks again (as SIGHUP does) and wait
    /// until the new set applies; a rejected set is printed and the old one stays.
    Reload(TokenArgs),
    /// Snapshot a task's tables on a running instance (the rows they hold now),
    /// and follow it to the end.
    Snapshot(SnapshotArgs),
    /// High availability: move the active role on purpose.
    Ha {
        /// step-down.
        #[command(subcommand)]
        action: HaAction,
    },
    /// Inspect or re-send dead-lettered events.
    Dlq {
        /// list or replay.
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Inspect or re-send row changes quarantined because their columns could
    /// not be named (MINIMAL metadata, the table changed since they were written).
    Quarantine {
        /// list or replay.
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// Re-send a task's spooled events (kept for `spool.retain`) from a time,
    /// a GTID set or a binlog position, with their webhook-ids and a
    /// `webhook-replay: true` header.
    Replay(SpoolReplayArgs),
    /// Print the version.
    Version,
}

/// `replay --task T (--since TIME | --from-gtid SET | --from FILE:POS)`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("start").required(true).args(["since", "from_gtid", "from"])))]
pub struct SpoolReplayArgs {
    /// The configuration (its `state.dir` holds `spool/`, its tasks say where to send).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The task whose spool to replay.
    #[arg(long)]
    pub task: String,
    /// Events committed at or after this time, e.g. 2026-11-30T10:00:00Z.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Events of transactions not in this GTID set (what the receiver has).
    #[arg(long, value_name = "SET")]
    pub from_gtid: Option<String>,
    /// Events at or after this binlog position, e.g. binlog.000042:1234.
    #[arg(long, value_name = "FILE:POS")]
    pub from: Option<String>,
    /// Stop before this time or binlog position.
    #[arg(long, value_name = "TIME|FILE:POS")]
    pub until: Option<String>,
    /// Send to this URL instead of the task's.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
}

/// Which configuration files to use.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// config.yaml; give it twice to layer an overlay (e.g. config.prod.yaml) over it.
    #[arg(
        long = "config",
        short = 'c',
        value_name = "PATH",
        default_value = "config/config.yaml"
    )]
    pub config: Vec<PathBuf>,
    /// tasks.yaml (default: tasks.yaml beside the first config, else `tasks:` in it).
    #[arg(long, value_name = "PATH")]
    pub tasks: Option<PathBuf>,
}

/// `tail` reads a live server (via the config) or a binlog file.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// config.yaml of the server to follow (give twice for an overlay).
    #[arg(long = "config", short = 'c', value_name = "PATH")]
    pub config: Vec<PathBuf>,
    /// tasks.yaml selecting tables and columns.
    #[arg(long, value_name = "PATH")]
    pub tasks: Option<PathBuf>,
    /// Decode this binlog file instead of a live server.
    #[arg(long, value_name = "BINLOG", conflicts_with = "config")]
    pub file: Option<PathBuf>,
}

/// Where a running instance's admin API is.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Base URL of the admin server.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub admin: String,
}

/// `tasks [list|add|rm|enable|disable]`.
#[derive(Debug, Clone, Args)]
pub struct TasksArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub action: Option<TasksAction>,
    /// Base URL of the admin server.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub admin: String,
    /// `server.token` of the instance (or set ROWHOOK_ADMIN_TOKEN).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ROWHOOK_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
}

/// Task changes through the admin API (tasks in etcd; a file-based instance
/// answers where to edit instead).
#[derive(Debug, Clone, Subcommand)]
pub enum TasksAction {
    /// The tasks with state and counters.
    List,
    /// Create or replace a task from a YAML or JSON file (`-` reads stdin).
    Add {
        /// The task definition (one task: task_id, table_name, events, callback_url, ...).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The task id, when the file has no task_id.
        #[arg(long)]
        id: Option<String>,
    },
    /// Remove a task: it takes no new events; those in flight are delivered.
    Rm {
        /// The task id.
        id: String,
    },
    /// Enable a task.
    Enable {
        /// The task id.
        id: String,
    },
    /// Disable a task (kept, but routed nothing).
    Disable {
        /// The task id.
        id: String,
    },
    /// Send a sample payload of the task's table shape to its callback (signed
    /// like a real one) and show the answer; exit 0 on a 2xx.
    Test {
        /// The task id.
        id: String,
    },
}

/// A running instance's admin API and its token.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The admin server.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// `server.token` of the instance (or set ROWHOOK_ADMIN_TOKEN).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ROWHOOK_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// `snapshot TASK`: what to read, and the running instance to ask.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// The task whose tables to read.
    #[arg(value_name = "TASK")]
    pub task: String,
    /// Only this table of the task (`table` or `schema.table`).
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,
    /// Only rows meeting this SQL condition, e.g. "updated_at > '2026-01-01'".
    #[arg(long = "where", value_name = "SQL")]
    pub filter: Option<String>,
    /// Cancel the task's running snapshot instead.
    #[arg(long, conflicts_with_all = ["table", "filter"])]
    pub cancel: bool,
    /// Start it and return; do not follow its progress.
    #[arg(long)]
    pub no_wait: bool,
    /// The admin server.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// `server.token` of the instance (or set ROWHOOK_ADMIN_TOKEN).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ROWHOOK_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// `check`: the configuration, then (unless offline) the server and callbacks.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Validate the files only; do not connect anywhere.
    #[arg(long)]
    pub offline: bool,
}

/// `ha` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum HaAction {
    /// Make the active instance stop (drain, checkpoint), give up its role so a
    /// standby takes over at once, and come back as standby.
    StepDown(TokenArgs),
}

/// Dead-letter actions.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqAction {
    /// Show dead-lettered events.
    List(DlqArgs),
    /// Re-send dead-lettered events; those that fail again stay in the file.
    Replay(DlqArgs),
}

/// Quarantine actions.
#[derive(Debug, Clone, Subcommand)]
pub enum QuarantineAction {
    /// Show quarantined row changes.
    List(DlqArgs),
    /// Re-send quarantined row changes as they are (positional column names
    /// `@1`, `@2`, …); those that fail stay in the file.
    Replay(QuarantineReplayArgs),
}

/// Which quarantined changes, and the operator's go-ahead.
#[derive(Debug, Clone, Args)]
pub struct QuarantineReplayArgs {
    /// The configuration and task.
    #[command(flatten)]
    pub which: DlqArgs,
    /// Confirms the rows may go to the receivers with positional column names,
    /// after their original order (later changes of the same keys were sent).
    #[arg(long)]
    pub yes: bool,
}

/// Which dead letters.
#[derive(Debug, Clone, Args)]
pub struct DlqArgs {
    /// The configuration (its `state.dir` holds `dlq/`, its tasks say where to send).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Only this task's dead letters.
    #[arg(long)]
    pub task: Option<String>,
}

/// Rewrites pikachu's single-dash long flags (`-config x`, `-config=x`, `-tasks x`)
/// to the double-dash form clap understands.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            let Some(text) = arg.to_str().filter(|_| i > 0) else {
                return arg;
            };
            for flag in ["-config", "-tasks"] {
                if text == flag || text.strip_prefix(flag).is_some_and(|r| r.starts_with('=')) {
                    return OsString::from(format!("-{text}"));
                }
            }
            arg
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(normalize_args(args.iter().map(OsString::from))).unwrap()
    }

    #[test]
    fn pikachu_single_dash_config() {
        let Command::Check(a) = parse(&["rowhook", "check", "-config", "a.yaml"]).command else {
            panic!()
        };
        assert_eq!(a.config.config, [PathBuf::from("a.yaml")]);
        assert!(!a.offline);
        let Command::Run(a) = parse(&[
            "rowhook",
            "run",
            "-config=a.yaml",
            "--config",
            "b.yaml",
            "-tasks",
            "t.yaml",
        ])
        .command
        else {
            panic!()
        };
        assert_eq!(a.config, [PathBuf::from("a.yaml"), PathBuf::from("b.yaml")]);
        assert_eq!(a.tasks, Some(PathBuf::from("t.yaml")));
    }

    #[test]
    fn config_defaults_to_config_dir() {
        let Command::Run(a) = parse(&["rowhook", "run"]).command else {
            panic!()
        };
        assert_eq!(a.config, [PathBuf::from("config/config.yaml")]);
    }

    #[test]
    fn flag_values_are_not_rewritten() {
        let out = normalize_args(["rowhook", "tail", "--file", "-config"].map(OsString::from));
        // Only flags are rewritten, but a value that looks exactly like a pikachu flag
        // is ambiguous by nature; the program name is never touched.
        assert_eq!(out[0], "rowhook");
        assert_eq!(out[2], "--file");
    }
}
