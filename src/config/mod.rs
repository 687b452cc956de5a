//! config.yaml (+ overlays) and tasks.yaml -> a validated [`Config`], or every
//! problem found, each naming its file and field (SPEC sections 3 and 4).

mod database;
mod dispatcher;
mod document;
mod duration;
mod fields;
mod interpolate;
mod log;
mod problem;
mod runtime;
mod server;
mod source;
mod tasks;
mod tasks_source;

use std::path::{Path, PathBuf};

pub use database::{DatabaseConfig, Flavor, TlsMode};
pub use dispatcher::{DispatcherConfig, MonitorConfig};
pub use duration::parse_duration;
pub use interpolate::{interpolate, InterpolateError};
pub use log::{LogConfig, LogFormat, LogLevel};
pub use problem::{ConfigError, Problem};
pub use runtime::{RuntimeConfig, StateConfig};
pub use server::ServerConfig;
pub use source::{SourceConfig, StartPosition};
pub use tasks::{
    DeliveryMode, EventKinds, Ordering, PayloadShape, SnapshotEvent, SnapshotMethod, SnapshotMode,
    SpoolConfig, SpoolFull, TablePattern, TaskConfig,
};
pub use tasks_source::{EtcdConfig, EtcdTls, HaConfig};

use document::Document;
use fields::{Fields, Report};
use tasks::CallbackBase;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Replication source.
    pub database: DatabaseConfig,
    /// Logging.
    pub log: LogConfig,
    /// Admin server.
    pub server: ServerConfig,
    /// Delivery.
    pub dispatcher: DispatcherConfig,
    /// pikachu compatibility fields.
    pub monitor: MonitorConfig,
    /// Start position and heartbeat.
    pub source: SourceConfig,
    /// Threads and cores.
    pub runtime: RuntimeConfig,
    /// Durable state.
    pub state: StateConfig,
    /// Base URL for relative callback URLs.
    pub callback_host: Option<String>,
    /// The webhook subscriptions.
    pub tasks: Vec<TaskConfig>,
    /// Reload the tasks when the tasks file changes on disk.
    pub tasks_watch: bool,
    /// Task definitions kept in etcd instead of a file (`tasks_source.etcd`).
    pub tasks_etcd: Option<EtcdConfig>,
    /// `ha:`: one active instance among several, elected in etcd.
    pub ha: Option<HaConfig>,
}

/// Which files make up a configuration.
#[derive(Debug, Clone, Default)]
pub struct ConfigFiles {
    /// config.yaml, then overlays layered over it in order.
    pub configs: Vec<PathBuf>,
    /// An explicit tasks file; otherwise `tasks.yaml` beside the first config, else
    /// the `tasks:` list inside config.yaml.
    pub tasks: Option<PathBuf>,
}

/// A loaded configuration plus what deserves a warning but is not wrong.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Human-readable warnings, each naming file and field.
    pub warnings: Vec<String>,
    /// Where the tasks came from.
    pub tasks_source: String,
    /// The file that holds the tasks (tasks.yaml, or config.yaml with `tasks:`).
    pub tasks_file: Option<PathBuf>,
}

const TOP_LEVEL: &[&str] = &[
    "database",
    "log",
    "server",
    "dispatcher",
    "monitor",
    "source",
    "runtime",
    "state",
    "callback_host",
    "tasks",
    "tasks_watch",
    "tasks_source",
];

/// Why a task under `ha` cannot have a spool.
const SPOOL_WITH_HA: &str = "spool is not available with ha: the spool is on this machine's disk, and the checkpoint in etcd moves past spooled events, so an instance taking over elsewhere would never send them; remove spool from the task (or ha)";

/// Loads and validates the configuration named by `files`.
pub fn load(files: &ConfigFiles) -> Result<Loaded, ConfigError> {
    let mut problems = Vec::new();
    let paths: Vec<&Path> = files.configs.iter().map(PathBuf::as_path).collect();
    let config_doc = Document::load(&paths, &mut problems)?;
    let tasks_path = files.tasks.clone().or_else(|| {
        let beside = files.configs.first()?.parent()?.join("tasks.yaml");
        (beside.is_file() && !files.configs.contains(&beside)).then_some(beside)
    });
    let tasks_doc = match &tasks_path {
        Some(p) => Some(Document::load(&[p.as_path()], &mut problems)?),
        None => None,
    };
    let source = tasks_path.as_ref().map_or_else(
        || {
            format!(
                "{} (tasks:)",
                files
                    .configs
                    .first()
                    .map_or("config".into(), |p| p.display().to_string())
            )
        },
        |p| p.display().to_string(),
    );
    let tasks_file = tasks_path.or_else(|| files.configs.first().cloned());
    build(&config_doc, tasks_doc.as_ref(), problems, source).map(|mut l| {
        l.tasks_file = tasks_file;
        l
    })
}

/// Reads one task kept outside the files (an etcd value, an admin API body):
/// `text` is YAML or JSON, named `name` in problems. Its `task_id`, when given,
/// must be `id`; when left out it is `id`. Relative URLs and unqualified tables
/// resolve against the running configuration.
pub fn task_from_text(
    name: &str,
    id: &str,
    text: &str,
    running: &Config,
) -> Result<TaskConfig, ConfigError> {
    let mut problems = Vec::new();
    let mut doc = Document::default();
    doc.add(name, text, &mut problems);
    doc.interpolate(&mut problems);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    let key = serde_yaml::Value::from("task_id");
    match doc.root.get(&key) {
        None => {
            doc.root.insert(key, serde_yaml::Value::from(id));
        }
        Some(serde_yaml::Value::String(given)) if given != id => {
            return Err(ConfigError::Invalid(vec![doc.problem(
                "task_id",
                format!(
                    "{given:?} differs from the task's key {id:?}; leave it out or make them equal"
                ),
            )]));
        }
        Some(_) => {}
    }
    let mut report = Report::default();
    let default_schema = running.database.database.as_deref();
    let task = tasks::read_one(
        &doc,
        &mut report,
        default_schema,
        CallbackBase::Host(running.callback_host.as_deref()),
    );
    if running.ha.is_some() && task.as_ref().is_some_and(|t| t.spool.is_some()) {
        return Err(ConfigError::Invalid(vec![
            doc.problem("spool", SPOOL_WITH_HA.to_owned())
        ]));
    }
    match task {
        Some(t) if report.problems.is_empty() => Ok(t),
        _ => Err(ConfigError::Invalid(report.problems)),
    }
}

/// A config for unit tests: a minimal database section, then `extra` YAML, with
/// `tasks` as tasks.yaml.
#[cfg(test)]
pub(crate) fn for_test(extra: &str, tasks: &str) -> Result<Config, ConfigError> {
    let text = format!("database: {{host: h, user: u, server_id: 1}}\n{extra}");
    load_texts(&[("config.yaml", &text)], Some(("tasks.yaml", tasks))).map(|l| l.config)
}

/// Loads a configuration from in-memory texts (`(file name, YAML)` pairs); for tests
/// and tools that generate configs.
pub fn load_texts(
    configs: &[(&str, &str)],
    tasks: Option<(&str, &str)>,
) -> Result<Loaded, ConfigError> {
    let mut problems = Vec::new();
    let mut config_doc = Document::default();
    for (name, text) in configs {
        config_doc.add(name, text, &mut problems);
    }
    config_doc.interpolate(&mut problems);
    let tasks_doc = tasks.map(|(name, text)| {
        let mut d = Document::default();
        d.add(name, text, &mut problems);
        d.interpolate(&mut problems);
        d
    });
    let source = tasks.map_or("config (tasks:)".to_owned(), |(n, _)| n.to_owned());
    build(&config_doc, tasks_doc.as_ref(), problems, source)
}

/// Loads only a tasks file, for tools that select tables without delivering
/// (`tail --file`): relative callback URLs need no callback_host there.
pub fn load_tasks(path: &Path) -> Result<Vec<TaskConfig>, ConfigError> {
    let mut problems = Vec::new();
    let doc = Document::load(&[path], &mut problems)?;
    let mut report = Report {
        problems,
        warnings: Vec::new(),
    };
    let mut f = Fields::of(&doc, &mut report, &doc.root, String::new());
    let items = f.raw("tasks");
    if items.is_none() {
        f.problem("tasks", "the tasks file has no `tasks:` list");
    }
    f.finish();
    let tasks = items.map_or_else(Vec::new, |items| {
        tasks::read_tasks(
            &doc,
            &mut report,
            items,
            "tasks",
            None,
            CallbackBase::Unused,
        )
    });
    if report.problems.is_empty() {
        Ok(tasks)
    } else {
        Err(ConfigError::Invalid(report.problems))
    }
}

fn build(
    doc: &Document,
    tasks_doc: Option<&Document>,
    problems: Vec<Problem>,
    tasks_source: String,
) -> Result<Loaded, ConfigError> {
    let mut report = Report {
        problems,
        warnings: Vec::new(),
    };
    let root = &doc.root;

    let mut f = Fields::section(doc, &mut report, root, "", "database");
    let database = DatabaseConfig::read(&mut f);
    f.finish();
    let mut f = Fields::section(doc, &mut report, root, "", "log");
    let log = LogConfig::read(&mut f);
    f.finish();
    let mut f = Fields::section(doc, &mut report, root, "", "server");
    let server = ServerConfig::read(&mut f);
    f.finish();
    let mut f = Fields::section(doc, &mut report, root, "", "dispatcher");
    let dispatcher = DispatcherConfig::read(&mut f);
    f.finish();
    let mut f = Fields::section(doc, &mut report, root, "", "monitor");
    let monitor = MonitorConfig::read(&mut f);
    f.finish();
    let mut f = Fields::section(doc, &mut report, root, "", "source");
    let source = SourceConfig::read(&mut f);
    f.finish();
    let mut f = Fields::section(doc, &mut report, root, "", "runtime");
    let runtime = RuntimeConfig::read(&mut f);
    f.finish();
    let mut f = Fields::section(doc, &mut report, root, "", "state");
    let state = StateConfig::read(&mut f);
    f.finish();

    let mut top = Fields::of(doc, &mut report, root, String::new());
    for section in &TOP_LEVEL[..8] {
        top.raw(section);
    }
    let callback_host = top.string("callback_host").and_then(|h| {
        let h = h.trim().to_owned();
        match tasks::check_http_url(&h) {
            Ok(()) => Some(h),
            Err(why) => {
                top.problem("callback_host", format!("{h:?} {why}"));
                None
            }
        }
    });
    let inline_tasks = top.raw("tasks");
    let tasks_watch = top.bool("tasks_watch", false);
    let tasks_etcd = if top.has("tasks_source") {
        let mut source = top.nested("tasks_source");
        let etcd = if source.has("etcd") {
            let mut e = source.nested("etcd");
            let etcd = EtcdConfig::read(&mut e, "/rowhook/tasks/");
            e.finish();
            etcd
        } else {
            source.problem("etcd", "the only tasks source besides files is etcd: tasks_source: {etcd: {endpoints: [...], prefix: /rowhook/tasks/}}");
            None
        };
        source.finish();
        etcd
    } else {
        None
    };
    let ha = if top.has("ha") {
        let mut h = top.nested("ha");
        let ha = HaConfig::read(&mut h);
        h.finish();
        ha
    } else {
        None
    };
    top.finish();
    if tasks_etcd.is_some() && (tasks_doc.is_some() || inline_tasks.is_some()) {
        report.problems.push(doc.problem(
            "tasks_source",
            format!("tasks come from etcd, but {tasks_source} defines tasks too; keep one source of truth: remove the file (or the tasks: list), or tasks_source"),
        ));
    }

    let default_schema = database.as_ref().and_then(|d| d.database.as_deref());
    let tasks = match (tasks_doc, inline_tasks) {
        (Some(td), inline) => {
            if inline.is_some() {
                report.warnings.push(format!(
                    "{}: tasks: ignored because {tasks_source} is used",
                    doc.origin("tasks")
                ));
            }
            let mut tf = Fields::of(td, &mut report, &td.root, String::new());
            let items = tf.raw("tasks");
            if items.is_none() {
                tf.problem("tasks", "the tasks file has no `tasks:` list");
            }
            tf.finish();
            items.map_or_else(Vec::new, |items| {
                tasks::read_tasks(
                    td,
                    &mut report,
                    items,
                    "tasks",
                    default_schema,
                    CallbackBase::Host(callback_host.as_deref()),
                )
            })
        }
        (None, Some(items)) => tasks::read_tasks(
            doc,
            &mut report,
            items,
            "tasks",
            default_schema,
            CallbackBase::Host(callback_host.as_deref()),
        ),
        (None, None) if tasks_etcd.is_some() => Vec::new(),
        (None, None) => {
            report.problems.push(doc.problem(
                "tasks",
                "no tasks configured: put a tasks.yaml beside config.yaml, pass --tasks FILE, or add a tasks: list",
            ));
            Vec::new()
        }
    };
    if ha.is_some() {
        for t in tasks.iter().filter(|t| t.spool.is_some()) {
            report
                .problems
                .push(doc.problem("tasks", format!("task {}: {SPOOL_WITH_HA}", t.task_id)));
        }
    }
    if let Some(size) = monitor.event_queue_size {
        if size > dispatcher.max_inflight {
            report.warnings.push(format!(
                "{}: monitor.event_queue_size: {size} exceeds dispatcher.max_inflight ({}); the in-flight bound applies",
                doc.origin("monitor.event_queue_size"),
                dispatcher.max_inflight
            ));
        }
    }

    match database {
        Some(database) if report.problems.is_empty() => Ok(Loaded {
            config: Config {
                database,
                log,
                server,
                dispatcher,
                monitor,
                source,
                runtime,
                state,
                callback_host,
                tasks,
                tasks_watch,
                tasks_etcd,
                ha,
            },
            warnings: report.warnings,
            tasks_source,
            tasks_file: None,
        }),
        _ => Err(ConfigError::Invalid(report.problems)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
database: {host: db, user: repl, server_id: 7}
callback_host: http://hooks:3000/
tasks:
  - {task_id: a, table_name: users, events: [insert], callback_url: /a}
";

    #[test]
    fn a_task_from_etcd_is_read_like_a_file_task_and_named_by_its_key() {
        let running = load_texts(&[("c.yaml", MINIMAL)], None).unwrap().config;
        let t = task_from_text(
            "etcd /p/a",
            "a",
            r#"{"table_name": "users", "events": ["insert"], "callback_url": "/a"}"#,
            &running,
        )
        .unwrap();
        assert_eq!(
            (t.task_id.as_str(), t.callback_url.as_str()),
            ("a", "http://hooks:3000/a")
        );
        let bad = |text: &str| {
            task_from_text("etcd /p/a", "a", text, &running)
                .unwrap_err()
                .to_string()
        };
        let e = bad("task_id: b\ntable_name: users\nevents: [insert]\ncallback_url: /a\n");
        assert!(
            e.contains("etcd /p/a: task_id") && e.contains("differs"),
            "{e}"
        );
        let e = bad("table_name: users\nevents: [insert]\ncallback_url: /a\nbatch_sise: 3\n");
        assert!(
            e.contains("etcd /p/a: batch_sise") && e.contains("batch_size"),
            "{e}"
        );
        let e = bad("[1, 2]");
        assert!(e.contains("etcd /p/a") && e.contains("mapping"), "{e}");
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let loaded = load_texts(&[("c.yaml", MINIMAL)], None).unwrap();
        let c = loaded.config;
        assert_eq!(c.database.port, 3306);
        assert_eq!(c.database.charset, "utf8mb4");
        assert_eq!(c.database.tls, TlsMode::Preferred);
        assert_eq!(c.dispatcher, DispatcherConfig::default());
        assert_eq!(c.source.start, StartPosition::Latest);
        assert_eq!(c.tasks[0].callback_url, "http://hooks:3000/a");
        assert_eq!(c.tasks[0].ordering, Ordering::PerKey);
        assert_eq!(c.tasks[0].batch_size, 1);
        assert!(c.tasks[0].events.insert && !c.tasks[0].events.update);
    }

    #[test]
    fn all_problems_are_reported_together() {
        let bad = "
database: {host: db, user: repl, server_id: 0, prot: 1}
dispatcher: {timeout: 30, worker_count: -1}
tasks:
  - {task_id: a, table_name: users, events: [insrt], callback_url: /a}
  - {task_id: a, table_name: users, events: [insert], callback_url: 'ftp://x/'}
";
        let Err(ConfigError::Invalid(problems)) = load_texts(&[("c.yaml", bad)], None) else {
            panic!("expected invalid config");
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "database.server_id",
            "database.prot",
            "dispatcher.timeout",
            "dispatcher.worker_count",
            "tasks[0].events[0]",
            "tasks[0].callback_url",
            "tasks[1].callback_url",
        ] {
            assert!(paths.contains(&want), "missing {want} in {problems:#?}");
        }
        let prot = problems.iter().find(|p| p.path == "database.prot").unwrap();
        assert!(prot.message.contains("did you mean `port`"), "{prot}");
    }

    #[test]
    fn overlay_layers_over_base() {
        let overlay = "log: {level: warn}\ndispatcher: {worker_count: 10}";
        let loaded = load_texts(&[("c.yaml", MINIMAL), ("prod.yaml", overlay)], None).unwrap();
        assert_eq!(loaded.config.log.level, LogLevel::Warn);
        assert_eq!(loaded.config.dispatcher.worker_count, 10);
        assert_eq!(loaded.config.database.host, "db");
    }

    #[test]
    fn overlay_alone_names_genuinely_missing_fields() {
        let overlay = "log: {level: warn}\ndispatcher: {worker_count: 10}";
        let Err(ConfigError::Invalid(problems)) = load_texts(&[("prod.yaml", overlay)], None)
        else {
            panic!("expected invalid config");
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "database.host",
                "database.user",
                "database.server_id",
                "tasks"
            ],
            "{problems:#?}"
        );
        assert!(problems.iter().all(|p| p.file == "prod.yaml"));
    }

    #[test]
    fn tasks_file_problems_name_the_tasks_file() {
        let config = "database: {host: db, user: repl, server_id: 7}";
        let tasks = "tasks:\n  - {task_id: a, table_name: t, events: [insert], callback_url: /a}";
        let Err(ConfigError::Invalid(problems)) =
            load_texts(&[("c.yaml", config)], Some(("tasks.yaml", tasks)))
        else {
            panic!("expected invalid config");
        };
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].file, "tasks.yaml");
        assert_eq!(problems[0].path, "tasks[0].callback_url");
        assert!(problems[0].message.contains("callback_host"));
    }
}
