//! `tasks:` — which tables are watched, which changes are sent, and where.

use std::time::Duration;

use base64::Engine as _;
use serde_yaml::Value;

use super::document::{kind_of, Document};
use super::fields::{Fields, Report};

/// One webhook subscription: a table pattern, the events of interest, a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskConfig {
    /// Unique id, used in metrics, logs and the admin API.
    pub task_id: String,
    /// Free text.
    pub name: String,
    /// Which tables the task watches.
    pub table: TablePattern,
    /// Which row changes it sends.
    pub events: EventKinds,
    /// Absolute http(s) URL the payloads are POSTed to.
    pub callback_url: String,
    /// Events per POST (1 = one object per request, >1 = a JSON array).
    pub batch_size: u32,
    /// How long to wait to fill a batch.
    pub batch_linger: Duration,
    /// Columns to send (`None` = all).
    pub columns: Option<Vec<String>>,
    /// Extra request headers, in file order.
    pub headers: Vec<(String, String)>,
    /// Standard Webhooks signing secret (raw bytes).
    pub secret: Option<Vec<u8>>,
    /// Ordering constraint between events of this task.
    pub ordering: Ordering,
    /// Body shape.
    pub payload: PayloadShape,
    /// Disabled tasks are loaded but receive nothing.
    pub enabled: bool,
    /// Whether the task first sends the rows its tables already hold.
    pub snapshot: SnapshotMode,
    /// Rows per snapshot chunk (one keyset query, one consistent read).
    pub snapshot_chunk: u32,
    /// The `event` of snapshot rows.
    pub snapshot_event: SnapshotEvent,
    /// At most this many snapshot rows per second (`None`: as fast as they go).
    pub snapshot_rate: Option<u32>,
    /// How a snapshot chunk learns where in the binlog its read stands.
    pub snapshot_method: SnapshotMethod,
    /// One POST per row change, or per source transaction.
    pub delivery: DeliveryMode,
    /// Under `delivery: transaction`, a transaction with more of this task's rows
    /// is sent in parts of at most this many.
    pub max_transaction_events: u32,
    /// A DDL on one of the task's tables sends it an `"event": "schema"` webhook.
    pub schema_events: bool,
    /// Where the task's events wait on disk when its receiver falls behind
    /// (`None`: they wait in memory, and a full share pauses reading).
    pub spool: Option<SpoolConfig>,
}

/// A task's disk spool: `state.dir/spool/<task_id>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// At most this many bytes of segments on disk.
    pub max_bytes: u64,
    /// What happens at `max_bytes`.
    pub on_full: SpoolFull,
    /// How long spooled events may wait for their fsync (group commit); the
    /// checkpoint passes them only after it.
    pub fsync_interval: Duration,
    /// Keep delivered records this long for `rowhook replay` (every event of
    /// the task then goes through the spool); `None`: delete once delivered.
    pub retain: Option<Duration>,
    /// The spool stops growing while its file system has less free than this
    /// (whatever `on_full` says: dead letters would fill the same disk); 0: off.
    pub min_disk_free: u64,
}

/// A full spool's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolFull {
    /// Reading pauses (for every task) until the spool shrinks: nothing is lost.
    Block,
    /// The task's new events go to its dead-letter file until the spool shrinks.
    DeadLetter,
}

/// What one POST of a task carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// One row change (or a `batch_size` array of them).
    Event,
    /// The task's rows of one source transaction, with its boundaries.
    Transaction,
}

/// How a snapshot chunk's read is placed in the binlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMethod {
    /// `position` where the server reports one (MariaDB), else `watermarks`.
    Auto,
    /// The consistent read's own binlog position (MariaDB's
    /// `binlog_snapshot_file/position`): exact.
    Position,
    /// The binlog's end read just before and just after the chunk's read (MySQL,
    /// and any server): rows changed in between are left to the stream.
    Watermarks,
}

/// When a task snapshots its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    /// Only on demand.
    Never,
    /// Once, before streaming, unless the checkpoint says it is done.
    Initial,
}

/// What snapshot rows call themselves in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotEvent {
    /// `"event": "snapshot"`.
    Snapshot,
    /// `"event": "insert"`, for receivers that only know insert.
    Insert,
}

/// Which row changes a task wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventKinds {
    /// INSERTs.
    pub insert: bool,
    /// UPDATEs.
    pub update: bool,
    /// DELETEs.
    pub delete: bool,
}

/// Ordering between a task's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// Events of the same primary key are delivered in binlog order.
    PerKey,
    /// All events of the task are delivered one after another.
    Table,
    /// No constraint.
    None,
}

/// Webhook body shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadShape {
    /// pikachu's object.
    Pikachu,
    /// pikachu's object plus position and ts_ms.
    Envelope,
}

/// A table name or `*` pattern, optionally qualified by a schema (also a pattern).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    /// Schema to match; `None` matches any schema.
    pub schema: Option<String>,
    /// Table to match.
    pub table: String,
}

impl TablePattern {
    /// Parses `table`, `db.table` or a `*` pattern; unqualified names take `default_schema`.
    pub fn parse(text: &str, default_schema: Option<&str>) -> Self {
        match text.split_once('.') {
            Some((schema, table)) => TablePattern {
                schema: Some(schema.to_owned()),
                table: table.to_owned(),
            },
            None => TablePattern {
                schema: default_schema.map(str::to_owned),
                table: text.to_owned(),
            },
        }
    }

    /// Whether `schema.table` is watched. Names compare literally (no quoting rules
    /// apply: keywords, hyphens and leading digits are ordinary characters here).
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        self.schema.as_deref().is_none_or(|s| glob(s, schema)) && glob(&self.table, table)
    }
}

/// `*` matches any run of characters; everything else is literal.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Headers rowhook sets itself; a task may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// What relative `callback_url`s are joined to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CallbackBase<'a> {
    /// `callback_host`, if configured.
    Host(Option<&'a str>),
    /// The tasks only select tables (`tail`); URLs are checked only when absolute.
    Unused,
}

/// Reads the task list at `path` of `items`.
pub(crate) fn read_tasks(
    doc: &Document,
    report: &mut Report,
    items: &Value,
    path: &str,
    default_schema: Option<&str>,
    callback_host: CallbackBase<'_>,
) -> Vec<TaskConfig> {
    let Value::Sequence(items) = items else {
        report.problems.push(doc.problem(
            path,
            format!(
                "expected a list of tasks (- task_id: ...), found {}",
                kind_of(items)
            ),
        ));
        return Vec::new();
    };
    let mut tasks: Vec<TaskConfig> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Value::Mapping(map) = item else {
            report.problems.push(doc.problem(
                &item_path,
                format!(
                    "expected a task (task_id:, table_name:, ...), found {}",
                    kind_of(item)
                ),
            ));
            continue;
        };
        let before = report.problems.len();
        let mut f = Fields::of(doc, report, map, item_path);
        let task = read_task(&mut f, default_schema, callback_host);
        if let Some(t) = &task {
            if tasks.iter().any(|other| other.task_id == t.task_id) {
                f.problem(
                    "task_id",
                    format!(
                        "{:?} is used by an earlier task; task ids must be unique",
                        t.task_id
                    ),
                );
            }
        }
        f.finish();
        // Name the task too: "tasks[7]" alone sends the operator counting.
        if let Some(Value::String(id)) = map.get("task_id") {
            for p in report.problems.iter_mut().skip(before) {
                p.message.push_str(&format!(" (task {id:?})"));
            }
        }
        tasks.extend(task);
    }
    tasks
}

/// Reads one task that is a whole document of its own (an etcd value).
pub(crate) fn read_one(
    doc: &Document,
    report: &mut Report,
    default_schema: Option<&str>,
    callback_host: CallbackBase<'_>,
) -> Option<TaskConfig> {
    let mut f = Fields::of(doc, report, &doc.root, String::new());
    let task = read_task(&mut f, default_schema, callback_host);
    f.finish();
    task
}

fn read_task(
    f: &mut Fields<'_, '_>,
    default_schema: Option<&str>,
    callback_host: CallbackBase<'_>,
) -> Option<TaskConfig> {
    let task_id = f.required_string("task_id", "a unique name for this task, e.g. user_monitor");
    let name = f.string("name").unwrap_or_default();
    let table = f
        .required_string(
            "table_name",
            "the table to watch: users, shop.users or shop.order_*",
        )
        .and_then(|t| read_table(f, &t, default_schema));
    let events = read_events(f);
    let callback_url = f
        .required_string(
            "callback_url",
            "where to POST: /path (joined to callback_host) or https://host/path",
        )
        .and_then(|u| resolve_callback(f, &u, callback_host));
    let batch_size = f.int("batch_size", 1, 100_000).map_or(1, |n| n as u32);
    let batch_linger = f.duration("batch_linger", Duration::from_millis(5), true);
    let columns = f.string_list("columns");
    if columns.as_ref().is_some_and(Vec::is_empty) {
        f.problem(
            "columns",
            "an empty list would send no columns; remove it to send all",
        );
    }
    let headers = read_headers(f);
    let secret = f.string("secret").and_then(|s| read_secret(f, &s));
    let mut ordering = f.choice(
        "ordering",
        Ordering::PerKey,
        &[
            ("per_key", Ordering::PerKey),
            ("table", Ordering::Table),
            ("none", Ordering::None),
        ],
    );
    let payload = f.choice(
        "payload",
        PayloadShape::Pikachu,
        &[
            ("pikachu", PayloadShape::Pikachu),
            ("envelope", PayloadShape::Envelope),
        ],
    );
    let enabled = f.bool("enabled", true);
    let snapshot = f.choice(
        "snapshot",
        SnapshotMode::Never,
        &[
            ("never", SnapshotMode::Never),
            ("initial", SnapshotMode::Initial),
        ],
    );
    let snapshot_chunk = f
        .int("snapshot_chunk", 1, 1_000_000)
        .map_or(10_000, |n| n as u32);
    let snapshot_event = f.choice(
        "snapshot_event",
        SnapshotEvent::Snapshot,
        &[
            ("snapshot", SnapshotEvent::Snapshot),
            ("insert", SnapshotEvent::Insert),
        ],
    );
    let snapshot_rate = f.int("snapshot_rate", 1, 100_000_000).map(|n| n as u32);
    let snapshot_method = f.choice(
        "snapshot_method",
        SnapshotMethod::Auto,
        &[
            ("auto", SnapshotMethod::Auto),
            ("position", SnapshotMethod::Position),
            ("watermarks", SnapshotMethod::Watermarks),
        ],
    );
    let delivery = f.choice(
        "delivery",
        DeliveryMode::Event,
        &[
            ("event", DeliveryMode::Event),
            ("transaction", DeliveryMode::Transaction),
        ],
    );
    let schema_events = f.bool("schema_events", false);
    let spool = read_spool(f);
    let max_transaction_events = f
        .int("max_transaction_events", 1, 1_000_000)
        .map_or(10_000, |n| n as u32);
    if delivery == DeliveryMode::Transaction {
        // Transactions of a task are sent one after the other, in commit order:
        // one lane, as `ordering: table` has.
        if f.has("ordering") && ordering != Ordering::Table {
            f.problem(
                "ordering",
                "delivery: transaction sends a task's transactions one at a time in commit order (as ordering: table); remove ordering or set it to table",
            );
        }
        ordering = Ordering::Table;
        if batch_size > 1 {
            f.problem(
                "batch_size",
                "delivery: transaction sends one POST per transaction (in parts of max_transaction_events); remove batch_size",
            );
        }
    }
    Some(TaskConfig {
        task_id: task_id?,
        name,
        table: table?,
        events: events?,
        callback_url: callback_url?,
        batch_size,
        batch_linger,
        columns,
        headers,
        secret,
        ordering,
        payload,
        enabled,
        snapshot,
        snapshot_chunk,
        snapshot_event,
        snapshot_rate,
        snapshot_method,
        delivery,
        max_transaction_events,
        schema_events,
        spool,
    })
}

/// `spool: true`, `spool: false` or `spool: {max_bytes, on_full, fsync_interval, retain, min_disk_free}`.
fn read_spool(f: &mut Fields<'_, '_>) -> Option<SpoolConfig> {
    let defaults = SpoolConfig {
        max_bytes: 1 << 30,
        on_full: SpoolFull::Block,
        fsync_interval: Duration::from_millis(20),
        retain: None,
        min_disk_free: 256 << 20,
    };
    match f.raw("spool") {
        None | Some(Value::Bool(false)) => return None,
        Some(Value::Bool(true)) => return Some(defaults),
        Some(Value::Mapping(_)) => {}
        Some(other) => {
            let shown = super::document::kind_of(other);
            f.problem(
                "spool",
                format!("expected true, false or a mapping like {{max_bytes: 1GiB, on_full: block}}, found {shown}"),
            );
            return None;
        }
    }
    let mut s = f.nested("spool");
    let enabled = s.bool("enabled", true);
    let max_bytes = s.bytes("max_bytes", defaults.max_bytes, 1 << 20);
    let on_full = s.choice(
        "on_full",
        defaults.on_full,
        &[
            ("block", SpoolFull::Block),
            ("dead_letter", SpoolFull::DeadLetter),
        ],
    );
    let fsync_interval = s.duration("fsync_interval", defaults.fsync_interval, true);
    let retain = s
        .has("retain")
        .then(|| s.duration("retain", Duration::ZERO, true))
        .filter(|d| !d.is_zero());
    let min_disk_free = s.bytes("min_disk_free", defaults.min_disk_free, 0);
    s.finish();
    enabled.then_some(SpoolConfig {
        max_bytes,
        on_full,
        fsync_interval,
        retain,
        min_disk_free,
    })
}

fn read_table(
    f: &mut Fields<'_, '_>,
    text: &str,
    default_schema: Option<&str>,
) -> Option<TablePattern> {
    let text = text.trim();
    if text.split('.').count() > 2 || text.starts_with('.') || text.ends_with('.') {
        f.problem(
            "table_name",
            format!("{text:?} is not `table` or `db.table`"),
        );
        return None;
    }
    Some(TablePattern::parse(text, default_schema))
}

fn read_events(f: &mut Fields<'_, '_>) -> Option<EventKinds> {
    let Some(list) = f.string_list("events") else {
        if f.raw("events").is_none() {
            f.missing("events", "a list of insert, update, delete");
        }
        return None;
    };
    if list.is_empty() {
        f.problem(
            "events",
            "is empty; list at least one of insert, update, delete",
        );
        return None;
    }
    let mut kinds = EventKinds::default();
    let mut ok = true;
    for (i, name) in list.iter().enumerate() {
        match name.trim().to_ascii_lowercase().as_str() {
            "insert" => kinds.insert = true,
            "update" => kinds.update = true,
            "delete" => kinds.delete = true,
            _ => {
                f.problem(
                    &format!("events[{i}]"),
                    format!("{name:?} is not an event; use insert, update or delete"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(kinds)
}

fn resolve_callback(f: &mut Fields<'_, '_>, text: &str, base: CallbackBase<'_>) -> Option<String> {
    let text = text.trim();
    let full = if text.starts_with('/') {
        let host = match base {
            CallbackBase::Host(h) => h,
            // Nothing is sent (e.g. `tail --file`): keep the path as written.
            CallbackBase::Unused => return Some(text.to_owned()),
        };
        let Some(host) = host else {
            f.problem(
                "callback_url",
                format!("{text:?} is relative but callback_host is not set; set callback_host: http://host:port in config.yaml or give an absolute URL"),
            );
            return None;
        };
        format!("{}{text}", host.trim_end_matches('/'))
    } else {
        text.to_owned()
    };
    match check_http_url(&full) {
        Ok(()) => Some(full),
        Err(why) => {
            f.problem("callback_url", format!("{full:?} {why}"));
            None
        }
    }
}

/// `Ok` when `text` is an absolute http(s) URL with a host; otherwise why not.
pub(crate) fn check_http_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| {
        format!("is not a URL ({e}); write /path (joined to callback_host) or http(s)://host/path")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "uses scheme {:?}; only http and https are supported",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    if url.fragment().is_some() {
        return Err("has a #fragment, which HTTP never sends; remove it".to_owned());
    }
    Ok(())
}

fn read_headers(f: &mut Fields<'_, '_>) -> Vec<(String, String)> {
    let headers = f.string_map("headers").unwrap_or_default();
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let path = format!("headers.{name}");
        let is_token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !is_token {
            f.problem(&path, "is not a valid HTTP header name");
        } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            f.problem(&path, "is set by rowhook itself and cannot be overridden");
        } else if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            f.problem(
                &path,
                "contains a line break or NUL, which would corrupt the request",
            );
        } else {
            out.push((name, value));
        }
    }
    out
}

/// Standard Webhooks secrets: `whsec_<base64>` or raw text of at least 24 bytes.
fn read_secret(f: &mut Fields<'_, '_>, text: &str) -> Option<Vec<u8>> {
    let secret = if let Some(b64) = text.strip_prefix("whsec_") {
        // The Standard Webhooks reference libraries accept the base64 with or
        // without its `=` padding; so does rowhook.
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        match lenient.decode(b64) {
            Ok(bytes) => bytes,
            Err(_) => {
                f.problem(
                    "secret",
                    "starts with whsec_ but the rest is not valid base64",
                );
                return None;
            }
        }
    } else {
        text.as_bytes().to_vec()
    };
    // Short secrets make HMAC signatures guessable; an empty one (an unset
    // ${VAR:-}) would sign with no key at all.
    if secret.len() < 24 {
        f.problem(
            "secret",
            format!(
                "is {} bytes; use at least 24 random bytes (or whsec_<base64>)",
                secret.len()
            ),
        );
        return None;
    }
    Some(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_patterns_match_literally() {
        let p = TablePattern::parse("2024_user-activity_log", Some("app"));
        assert!(p.matches("app", "2024_user-activity_log"));
        assert!(!p.matches("other", "2024_user-activity_log"));
        let p = TablePattern::parse("order", None);
        assert!(p.matches("any", "order"));
        assert!(!p.matches("any", "orders"));
        let p = TablePattern::parse("shop.order_*", Some("ignored"));
        assert!(p.matches("shop", "order_2024"));
        assert!(p.matches("shop", "order_"));
        assert!(!p.matches("shop", "orders"));
        assert!(!p.matches("shop2", "order_1"));
        let p = TablePattern::parse("shop.*", None);
        assert!(p.matches("shop", "anything"));
        let p = TablePattern::parse("*.a*b*c", None);
        assert!(p.matches("x", "abc"));
        assert!(p.matches("x", "aXbYc"));
        assert!(!p.matches("x", "acb"));
        assert!(!p.matches("x", "abcd"));
    }

    #[test]
    fn snapshot_method_defaults_to_auto_and_names_bad_values() {
        let load = |extra: &str| {
            let tasks = format!(
                "tasks:\n  - {{task_id: t, table_name: a, events: [insert], callback_url: 'http://h/a'{extra}}}\n"
            );
            crate::config::for_test("", &tasks).map(|c| c.tasks[0].snapshot_method)
        };
        assert_eq!(load("").ok(), Some(SnapshotMethod::Auto));
        assert_eq!(
            load(", snapshot_method: watermarks").ok(),
            Some(SnapshotMethod::Watermarks)
        );
        assert_eq!(
            load(", snapshot_method: position").ok(),
            Some(SnapshotMethod::Position)
        );
        let err = load(", snapshot_method: dblog")
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("snapshot_method") && e.contains("watermarks")),
            "{err:?}"
        );
    }

    #[test]
    fn delivery_transaction_is_one_lane_and_refuses_batches_and_other_orderings() {
        let load = |extra: &str| {
            let tasks = format!(
                "tasks:\n  - {{task_id: t, table_name: a, events: [insert], callback_url: 'http://h/a', delivery: transaction{extra}}}\n"
            );
            crate::config::for_test("", &tasks).map(|c| {
                let t = &c.tasks[0];
                (t.delivery, t.ordering, t.max_transaction_events)
            })
        };
        assert_eq!(
            load("").ok(),
            Some((DeliveryMode::Transaction, Ordering::Table, 10_000))
        );
        assert_eq!(
            load(", ordering: table, max_transaction_events: 500").ok(),
            Some((DeliveryMode::Transaction, Ordering::Table, 500))
        );
        for (extra, field) in [
            (", batch_size: 10", "batch_size"),
            (", ordering: per_key", "ordering"),
            (", max_transaction_events: 0", "max_transaction_events"),
        ] {
            let err = load(extra).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(field), "{extra}: {err}");
        }
    }

    #[test]
    fn spool_is_off_by_default_and_reads_sizes_choices_and_durations() {
        let load = |extra: &str| {
            let tasks = format!(
                "tasks:\n  - {{task_id: t, table_name: a, events: [insert], callback_url: 'http://h/a'{extra}}}\n"
            );
            crate::config::for_test("", &tasks).map(|c| c.tasks[0].spool.clone())
        };
        assert_eq!(load("").ok(), Some(None));
        assert_eq!(load(", spool: false").ok(), Some(None));
        let default = SpoolConfig {
            max_bytes: 1 << 30,
            on_full: SpoolFull::Block,
            fsync_interval: Duration::from_millis(20),
            retain: None,
            min_disk_free: 256 << 20,
        };
        assert_eq!(load(", spool: true").ok(), Some(Some(default.clone())));
        assert_eq!(
            load(", spool: {enabled: false, max_bytes: 5MiB}").ok(),
            Some(None)
        );
        assert_eq!(
            load(", spool: {max_bytes: 512MiB, on_full: dead_letter, fsync_interval: 5ms}").ok(),
            Some(Some(SpoolConfig {
                max_bytes: 512 << 20,
                on_full: SpoolFull::DeadLetter,
                fsync_interval: Duration::from_millis(5),
                retain: None,
                min_disk_free: 256 << 20,
            }))
        );
        assert_eq!(
            load(", spool: {retain: 24h}").ok(),
            Some(Some(SpoolConfig {
                retain: Some(Duration::from_secs(86_400)),
                ..default.clone()
            }))
        );
        assert_eq!(
            load(", spool: {min_disk_free: 0}").ok(),
            Some(Some(SpoolConfig {
                min_disk_free: 0,
                ..default.clone()
            }))
        );
        assert_eq!(
            load(", spool: {min_disk_free: 2GiB}").ok(),
            Some(Some(SpoolConfig {
                min_disk_free: 2 << 30,
                ..default.clone()
            }))
        );
        assert_eq!(
            load(", spool: {max_bytes: 2000000000}").ok(),
            Some(Some(SpoolConfig {
                max_bytes: 2_000_000_000,
                ..default
            }))
        );
        for (extra, words) in [
            (", spool: {max_bytes: 10}", "too small"),
            (", spool: {max_bytes: 1 gallon}", "not a size"),
            (", spool: {max_bytes: 3XB}", "size unit"),
            (", spool: {on_full: drop}", "dead_letter"),
            (", spool: {fsync_interval: 5}", "no unit"),
            (", spool: yes please", "expected true, false or a mapping"),
            (", spool: {colour: red}", "colour"),
            (", spool: {min_disk_free: lots}", "not a size"),
        ] {
            let err = load(extra).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(words), "{extra}: {err}");
        }
    }

    #[test]
    fn glob_edge_cases() {
        assert!(glob("*", ""));
        assert!(glob("a*a", "aa"));
        assert!(!glob("a*a", "a"));
        assert!(glob("", ""));
        assert!(!glob("", "x"));
    }

    #[test]
    fn whsec_secrets_decode_with_or_without_padding() {
        let load = |secret: &str| {
            let tasks = format!(
                "tasks:\n  - {{task_id: t, table_name: a, events: [insert], callback_url: 'http://h/a', secret: '{secret}'}}\n"
            );
            crate::config::for_test("", &tasks).map(|c| c.tasks[0].secret.clone())
        };
        // 26 bytes: base64 pads them with one `=`.
        let padded = "whsec_MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3A=";
        let want = Some(b"0123456789abcdefghijklmnop".to_vec());
        assert_eq!(
            load("whsec_MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3A").ok(),
            Some(want.clone())
        );
        assert_eq!(load(padded).ok(), Some(want));
        assert!(load("whsec_not*base64*at*all*not*base64*at*all").is_err());
    }

    #[test]
    fn callback_urls() {
        assert!(check_http_url("https://api.example.com/hook").is_ok());
        assert!(check_http_url("http://127.0.0.1:8080/x?y=1").is_ok());
        assert!(check_http_url("ftp://x/y").is_err());
        assert!(check_http_url("http://").is_err());
        assert!(check_http_url("not a url").is_err());
        assert!(check_http_url("http://x/#frag").is_err());
    }
}
