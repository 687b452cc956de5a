//! The admin routes and what they answer: health (pikachu shape), Prometheus text,
//! pikachu-shaped JSON metrics, HdrHistogram V2 histograms, tasks, pause/resume.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Value};

use super::server::Request;
use super::Admin;
use crate::delivery::stats::ANSWER_CLASSES;
use crate::metrics::{cumulative_buckets, encode_v2, Stage, BUCKETS};

/// An answer, before it is written.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// Extra header lines, each ending in CRLF.
    extra: String,
    /// The answer still depends on work [`finish`] awaits.
    wait: Option<Box<Deferred>>,
}

/// Work an answer waits for, off the synchronous router.
#[derive(Debug)]
pub(super) enum Deferred {
    /// A write asked of the etcd thread.
    Etcd(Wait),
    /// A test webhook of the task in this slot.
    Test(usize),
}

/// A write asked of the etcd thread, and what to call it in the answer.
#[derive(Debug)]
pub(super) struct Wait {
    answer: crossbeam_channel::Receiver<Result<i64, String>>,
    id: String,
    what: &'static str,
}

/// How long an admin request waits for etcd to answer a write.
const ETCD_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(8);

/// The final answer: `reply`, or once the work it waits for is done.
pub(super) async fn finish(admin: &Admin, mut reply: Reply) -> Reply {
    let Some(deferred) = reply.wait.take() else {
        return reply;
    };
    let wait = match *deferred {
        Deferred::Etcd(wait) => wait,
        Deferred::Test(slot) => return test_webhook(admin, slot).await,
    };
    let until = std::time::Instant::now() + ETCD_WRITE_WAIT;
    loop {
        match wait.answer.try_recv() {
            Ok(Ok(revision)) => {
                return Reply::json(
                    202,
                    &json!({
                        "task_id": wait.id,
                        "written": wait.what,
                        "revision": revision,
                        "applies": "through the etcd watch, at the next transaction boundary",
                    }),
                )
            }
            Ok(Err(e)) if e.starts_with("no key") => return error(404, &e),
            Ok(Err(e)) => return error(503, &format!("etcd: {e}")),
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                return error(503, "the etcd thread is gone")
            }
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
        if std::time::Instant::now() >= until {
            return error(
                503,
                &format!(
                    "etcd did not answer within {ETCD_WRITE_WAIT:?}; the write may still happen"
                ),
            );
        }
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
}

impl Reply {
    fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec_pretty(value).unwrap_or_default(),
            extra: String::new(),
            wait: None,
        }
    }

    /// Length of the body.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The whole response.
    pub fn to_bytes(&self, close: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}{}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            self.extra,
            if close { "Connection: close\r\n" } else { "" },
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// A JSON error answer.
pub(super) fn error(status: u16, message: &str) -> Reply {
    Reply::json(status, &json!({ "error": message }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Answers one request.
pub(super) fn route(admin: &Admin, req: &Request, body: &[u8]) -> Reply {
    let path = req.path.trim_end_matches('/');
    let get = req.method == "GET" || req.method == "HEAD";
    let only_get = |reply: fn(&Admin) -> Reply| {
        if get {
            reply(admin)
        } else {
            not_allowed("GET")
        }
    };
    if path == admin.server.path.trim_end_matches('/') || path == "/health" {
        return only_get(health);
    }
    match path {
        "" | "/index.html" => only_get(console),
        "/health/active" => only_get(health_active),
        "/ha/step-down" => step_down(admin, req),
        "/metrics" => only_get(prometheus),
        "/metrics.json" => only_get(metrics_json),
        "/histograms" => only_get(histograms),
        "/tasks" => only_get(|a| Reply::json(200, &Value::Array(tasks(a)))),
        "/reload" => reload(admin, req),
        _ => task_route(admin, req, path, body),
    }
}

fn not_allowed(allow: &str) -> Reply {
    let mut r = error(405, &format!("method not allowed; use {allow}"));
    r.extra = format!("Allow: {allow}\r\n");
    r
}

/// The 401 answer when the instance has a token and `req` does not carry it.
fn unauthorized(admin: &Admin, req: &Request) -> Option<Reply> {
    let token = admin.server.token.as_ref()?;
    let expected = format!("Bearer {token}");
    let given = req.authorization.as_deref().unwrap_or_default();
    if same_bytes(given, expected.as_bytes()) {
        return None;
    }
    let mut r = error(401, "this route needs Authorization: Bearer <server.token>");
    r.extra = "WWW-Authenticate: Bearer realm=\"rowhook\"\r\n".to_owned();
    Some(r)
}

/// `POST /reload`: reads the configuration files again; 202 with what changes
/// (applied at the next transaction boundary, `tasks_generation` in /health
/// tells when), 200 when nothing changed, 400 with every problem when the new
/// set is rejected (the running one stays).
fn reload(admin: &Admin, req: &Request) -> Reply {
    if req.method != "POST" {
        return not_allowed("POST");
    }
    if let Some(r) = unauthorized(admin, req) {
        return r;
    }
    let progress = admin.progress.clone();
    let mut table = admin.table.borrow_mut();
    let result = table.reload(|slot| crate::control::drained(&progress, slot));
    let generation = table.plan().generation;
    match result {
        Ok(s) if s.is_empty() => Reply::json(
            200,
            &json!({"result": "unchanged", "tasks_generation": generation}),
        ),
        Ok(s) => Reply::json(
            202,
            &json!({
                "result": "accepted",
                "applies_as_generation": generation + 1,
                "added": s.added,
                "changed": s.changed,
                "removed": s.removed,
                "unchanged": s.unchanged,
            }),
        ),
        Err(e) => error(
            400,
            &format!("reload rejected; the running tasks stay:\n{e}"),
        ),
    }
}

/// `/tasks/{id}`, `/tasks/{id}/pause`, `/tasks/{id}/resume`, `/tasks/{id}/snapshot`;
/// `PUT`/`DELETE /tasks/{id}` and `/enable`, `/disable` change definitions.
fn task_route(admin: &Admin, req: &Request, path: &str, body: &[u8]) -> Reply {
    let Some(rest) = path.strip_prefix("/tasks/") else {
        return error(
            404,
            "no such endpoint; see /health, /metrics, /metrics.json, /histograms, /tasks, /reload",
        );
    };
    let (id, action) = match rest.rsplit_once('/') {
        Some((
            id,
            a @ ("pause" | "resume" | "snapshot" | "enable" | "disable" | "test" | "replay"),
        )) => (id, Some(a)),
        _ => (rest, None),
    };
    let id = percent_decode(id);
    let defines = matches!(action, Some("enable" | "disable"))
        || (action.is_none() && matches!(req.method.as_str(), "PUT" | "DELETE"));
    if defines {
        if let Some(r) = unauthorized(admin, req) {
            return r;
        }
        return define(admin, req, &id, action, body);
    }
    let Some(index) = admin.task_index(&id) else {
        return error(404, &format!("no task {id:?}"));
    };
    let Some(action) = action else {
        if req.method == "GET" || req.method == "HEAD" {
            return Reply::json(200, &task(admin, index));
        }
        return not_allowed("GET, PUT, DELETE");
    };
    if action == "replay" {
        return replay_route(admin, req, &id, body);
    }
    let allowed = if action == "snapshot" {
        "POST, DELETE"
    } else {
        "POST"
    };
    if req.method != "POST" && !(action == "snapshot" && req.method == "DELETE") {
        return not_allowed(allowed);
    }
    if let Some(r) = unauthorized(admin, req) {
        return r;
    }
    if action == "snapshot" {
        return snapshot_route(admin, req, index, body);
    }
    if action == "test" {
        let mut reply = error(503, "the test did not run");
        reply.wait = Some(Box::new(Deferred::Test(index)));
        return reply;
    }
    if !admin.info(index).is_some_and(|t| t.enabled) {
        return error(
            409,
            &format!("task {id:?} is disabled in the configuration; nothing to pause or resume"),
        );
    }
    let pause = action == "pause";
    admin.set_paused(index, pause);
    tracing::info!(task = %id, held = admin.progress.task_in_flight.get(index).map_or(0, std::cell::Cell::get), "task {}", if pause { "paused by the admin API" } else { "resumed by the admin API" });
    Reply::json(200, &task(admin, index))
}

/// Longest a test webhook may take (the admin server's request deadline is 10 s).
const TEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// `POST /tasks/{id}/test`: sends a sample payload of the task's table shape to
/// its callback, as a real request of the task is sent (its headers, batch
/// shape and signature, plus `webhook-test: true`), and answers the receiver's
/// status, time and body.
async fn test_webhook(admin: &Admin, slot: usize) -> Reply {
    let (task, plan) = {
        let table = admin.table.borrow();
        let Some(s) = table.slots().get(slot) else {
            return error(404, "the task is gone");
        };
        let Some(plan) = table.plan().tasks.get(slot).cloned() else {
            return error(404, "the task is gone");
        };
        (s.config.clone(), plan)
    };
    let (payload, id) = match crate::snapshot::sample(&admin.database, &task).await {
        Ok(p) => p,
        Err(e) => return error(502, &format!("cannot make a sample row: {e}")),
    };
    let body = if plan.batch_size > 1 {
        let mut b = Vec::with_capacity(payload.len() + 2);
        crate::delivery::request::batch_body(&mut b, std::iter::once(&payload));
        b
    } else {
        payload.clone()
    };
    let mut test_plan = plan.clone();
    test_plan.head.extend_from_slice(b"webhook-test: true\r\n");
    let mut request = Vec::with_capacity(body.len() + 512);
    crate::delivery::request::write(
        &mut request,
        &test_plan,
        id.as_bytes(),
        &body,
        crate::delivery::unix_now(),
        admin.plan.controls.leadership.epoch(),
    );
    let pool = crate::http::Pool::new(plan.endpoint.clone(), admin.plan.tls.clone(), 1);
    let timeout = admin.plan.timeout.min(TEST_TIMEOUT);
    let started = std::time::Instant::now();
    let result = pool.exchange(&request, timeout, false).await;
    let ms = (started.elapsed().as_secs_f64() * 1e4).round() / 10.0;
    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match result {
        Ok(r) => Reply::json(
            200,
            &json!({
                "task_id": task.task_id,
                "url": plan.url,
                "status": r.status,
                "ok": (200..300).contains(&r.status),
                "ms": ms,
                "body": String::from_utf8_lossy(&r.body),
                "sent": sent,
            }),
        ),
        Err(e) => Reply::json(
            200,
            &json!({
                "task_id": task.task_id,
                "url": plan.url,
                "status": Value::Null,
                "ok": false,
                "ms": ms,
                "error": e.to_string(),
                "sent": sent,
            }),
        ),
    }
}

/// `PUT /tasks/{id}`, `DELETE /tasks/{id}`, `POST /tasks/{id}/enable|disable`:
/// definitions live in one place; where that is a file, the change is made
/// there and applied with a reload.
fn define(admin: &Admin, req: &Request, id: &str, action: Option<&str>, body: &[u8]) -> Reply {
    let table = admin.table.borrow();
    let Some(etcd) = table.etcd() else {
        return error(
            409,
            &format!("tasks come from {}; change task {id:?} there and run `rowhook reload` (or send SIGHUP), so the file stays the one source of truth", table.origin()),
        );
    };
    if id.is_empty() || id.contains(['/', '\0']) {
        return error(
            400,
            &format!("{id:?} cannot be a task id (it names an etcd key)"),
        );
    }
    let (tx, answer) = crossbeam_channel::bounded(1);
    let (request, what) = match (req.method.as_str(), action) {
        ("PUT", None) => {
            let Ok(text) = std::str::from_utf8(body) else {
                return error(400, "the body must be UTF-8 YAML or JSON");
            };
            // Validated here, so a bad body is answered with every problem and
            // never reaches etcd (where the watch would reject it again).
            if let Err(e) = table.validate(&format!("PUT /tasks/{id}"), id, text) {
                return error(400, &e);
            }
            let request = crate::control::etcd::Request::Put {
                id: id.to_owned(),
                text: text.to_owned(),
                reply: tx,
            };
            (request, "put")
        }
        ("DELETE", None) => (
            crate::control::etcd::Request::Delete {
                id: id.to_owned(),
                reply: tx,
            },
            "deleted",
        ),
        ("POST", Some(a @ ("enable" | "disable"))) => (
            crate::control::etcd::Request::SetEnabled {
                id: id.to_owned(),
                enabled: a == "enable",
                reply: tx,
            },
            if a == "enable" { "enabled" } else { "disabled" },
        ),
        (_, None) => return not_allowed("GET, PUT, DELETE"),
        _ => return not_allowed("POST"),
    };
    if !etcd.ask(request) {
        return error(503, "the etcd thread is gone");
    }
    tracing::info!(task = %id, what, "task change written to etcd by the admin API");
    let mut reply = error(503, "etcd did not answer");
    reply.wait = Some(Box::new(Deferred::Etcd(Wait {
        answer,
        id: id.to_owned(),
        what,
    })));
    reply
}

/// `POST /tasks/{id}/snapshot` (body: optional `{"table": T, "where": SQL}`) starts
/// a snapshot; `DELETE` cancels the running one.
fn replay_json(s: &super::ReplayStatus) -> Value {
    json!({
        "state": s.state,
        "request": s.request,
        "sent": s.sent,
        "held": s.held,
        "range": s.range.as_ref().map(|(a, b)| json!({"first": a, "last": b})),
        "error": s.error,
    })
}

/// `GET /tasks/{id}/replay` (the last replay's progress) and `POST` (starts
/// one: `{"since" | "from_gtid" | "from", "until", "to"}`).
fn replay_route(admin: &Admin, req: &Request, id: &str, body: &[u8]) -> Reply {
    use crate::commands::spool_replay::{self as sr, From, Until};
    if req.method == "GET" || req.method == "HEAD" {
        return match admin.replay_of(id) {
            Some(s) => Reply::json(200, &replay_json(&s)),
            None => error(404, &format!("no replay of task {id:?} was started")),
        };
    }
    if req.method != "POST" {
        return not_allowed("GET, POST");
    }
    if let Some(r) = unauthorized(admin, req) {
        return r;
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        since: Option<String>,
        from_gtid: Option<String>,
        from: Option<String>,
        until: Option<String>,
        to: Option<String>,
    }
    const SHAPE: &str = "the body must be {\"since\": \"2026-11-30T10:00:00Z\"} or {\"from_gtid\": \"SET\"} or {\"from\": \"FILE:POS\"}, with optional \"until\" (time or FILE:POS) and \"to\" (URL)";
    let b: Body = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return error(400, &format!("{SHAPE}: {e}")),
    };
    let from = match (b.since, b.from_gtid, b.from) {
        (Some(t), None, None) => match sr::parse_time(&t) {
            Some(t) => From::Time(t),
            None => return error(400, &format!("since {t:?}: {SHAPE}")),
        },
        (None, Some(set), None) => From::Gtids(set),
        (None, None, Some(p)) => match sr::parse_position(&p) {
            Some((f, p)) => From::Position(f, p),
            None => return error(400, &format!("from {p:?}: {SHAPE}")),
        },
        _ => return error(400, &format!("give exactly one start: {SHAPE}")),
    };
    let until = match b.until {
        None => None,
        Some(u) => match (sr::parse_time(&u), sr::parse_position(&u)) {
            (Some(t), _) => Some(Until::Time(t)),
            (_, Some((f, p))) => Some(Until::Position(f, p)),
            _ => return error(400, &format!("until {u:?}: {SHAPE}")),
        },
    };
    let request = sr::Request {
        task: id.to_owned(),
        from,
        until,
        to: b.to,
    };
    match admin.start_replay(id, request) {
        Some(s) => {
            tracing::info!(task = %id, "replay started by the admin API");
            let shown = s.lock().map(|s| replay_json(&s)).unwrap_or_default();
            Reply::json(202, &shown)
        }
        None => error(409, &format!("a replay of task {id:?} is running")),
    }
}

fn snapshot_route(admin: &Admin, req: &Request, index: usize, body: &[u8]) -> Reply {
    let Some(snapshots) = admin.snapshots() else {
        return error(409, "snapshots are not available on this instance");
    };
    let id = &admin.info(index).map(|t| t.id).unwrap_or_default();
    if req.method == "DELETE" {
        if !snapshots.cancel(index) {
            return error(409, &format!("no snapshot of task {id:?} is running"));
        }
        tracing::info!(task = %id, "snapshot cancel asked by the admin API");
        return Reply::json(200, &task(admin, index));
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        table: Option<String>,
        #[serde(rename = "where")]
        filter: Option<String>,
    }
    let parsed: Body = if body.iter().all(u8::is_ascii_whitespace) {
        Body {
            table: None,
            filter: None,
        }
    } else {
        match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    400,
                    &format!("the body must be {{\"table\": \"...\", \"where\": \"...\"}} (both optional): {e}"),
                )
            }
        }
    };
    let request = crate::snapshot::Request {
        table: parsed.table.filter(|t| !t.trim().is_empty()),
        filter: parsed.filter.filter(|f| !f.trim().is_empty()),
    };
    match snapshots.start(index, request) {
        Ok(()) => {
            tracing::info!(task = %id, "snapshot started by the admin API");
            Reply::json(202, &task(admin, index))
        }
        Err(e) => error(409, &e.to_string()),
    }
}

/// Compares without stopping at the first difference, so timing does not tell how
/// much of a guessed token was right.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes `%XX` escapes (task ids may hold any character).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unix seconds as RFC 3339 UTC.
fn time_text(secs: u64) -> String {
    let mut out = Vec::with_capacity(24);
    crate::binlog::temporal::rfc3339(&mut out, u32::try_from(secs).unwrap_or(u32::MAX));
    String::from_utf8_lossy(&out).trim_matches('"').to_owned()
}

/// A duration as Go prints one (`1h2m3s`), as pikachu's `uptime` reads.
fn duration_text(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

fn state(admin: &Admin, t: &super::TaskInfo) -> &'static str {
    let index = t.slot;
    if t.removed {
        "removed"
    } else if !t.enabled {
        "disabled"
    } else if admin.plan.controls.is_paused(index as u32) {
        "paused"
    } else {
        "running"
    }
}

fn task(admin: &Admin, index: usize) -> Value {
    let Some(t) = admin.info(index) else {
        return Value::Null;
    };
    let Some(s) = admin.stats.tasks.get(index) else {
        return Value::Null;
    };
    let answers: serde_json::Map<String, Value> = ANSWER_CLASSES
        .iter()
        .zip(&s.answers)
        .map(|(c, n)| ((*c).to_owned(), json!(n.load(Relaxed))))
        .collect();
    json!({
        "task_id": t.id,
        "name": t.name,
        "table_name": t.table,
        "callback_url": t.url,
        "state": state(admin, &t),
        "in_flight": admin.progress.task_in_flight[index].get(),
        "events_read": s.read.load(Relaxed),
        "delivered": s.delivered.load(Relaxed),
        "requests": s.requests.load(Relaxed),
        "retries": s.retries.load(Relaxed),
        "dead_lettered": s.dead_lettered.load(Relaxed),
        "quarantined": s.quarantined.load(Relaxed),
        "binlog_retention_seconds": admin.progress.task_retention_left(index, crate::delivery::unix_now()),
        "spool": admin.stats.spool(index).map(|s| json!({
            "bytes": s.bytes,
            "records": s.records,
            "oldest_age_s": (s.oldest_ms > 0).then(|| crate::spool::unix_ms().saturating_sub(s.oldest_ms) as f64 / 1000.0),
            "full": s.full,
            "disk_free": s.disk_free,
            "disk_low": s.disk_low,
            "error": s.error,
        })),
        "answers": answers,
        "last_error": admin.stats.last_error(index as u32).map(|(at, error)| json!({"at": time_text(at), "error": error})),
        "snapshot": admin.snapshots().map(|s| snapshot_status(&s.status(index))),
        "replay": admin.replay_of(&t.id).map(|s| replay_json(&s)),
        "source": {"origin": t.origin, "changed": time_text(t.changed_unix)},
    })
}

fn snapshot_status(s: &crate::snapshot::Status) -> Value {
    let rate = s.rate();
    let left = s.estimated_rows.saturating_sub(s.rows);
    json!({
        "state": s.state,
        "id": s.id,
        "table": s.table,
        "rows": s.rows,
        "estimated_rows": s.estimated_rows,
        "rows_per_s": if s.state == "running" { (rate * 10.0).round() / 10.0 } else { 0.0 },
        "eta_s": (s.state == "running" && rate > 0.0).then(|| (left as f64 / rate).ceil()),
        "error": s.error,
    })
}

fn tasks(admin: &Admin) -> Vec<Value> {
    admin
        .task_infos()
        .iter()
        .map(|t| task(admin, t.slot))
        .collect()
}

fn position(admin: &Admin) -> Value {
    let p = &admin.progress;
    let file = p.read_file.borrow();
    json!({
        "file": if file.is_empty() { Value::Null } else { json!(*file) },
        "position": p.read_pos.get(),
        "gtid": *p.gtid.borrow(),
    })
}

fn health(admin: &Admin) -> Reply {
    let p = &admin.progress;
    let mut reasons = admin.down_reasons();
    let up = reasons.is_empty();
    reasons.extend(admin.source_reasons());
    let uptime = admin.started.elapsed().as_secs();
    let checkpoint = p
        .checkpoint
        .borrow()
        .as_ref()
        .map(|c| json!({"file": c.file, "position": c.pos}));
    let body = json!({
        "status": if up { "UP" } else { "DOWN" },
        "reasons": reasons,
        "monitor_running": p.connected.get(),
        // A shard that stops ends `run` (ShardGone): while this answers, delivery runs.
        "dispatcher_running": true,
        "event_queue_size": p.in_flight.get(),
        "last_event_time": (p.event_time.get() > 0).then(|| time_text(p.event_time.get())),
        "uptime": duration_text(uptime),
        "uptime_seconds": uptime,
        "version": env!("CARGO_PKG_VERSION"),
        "binlog_position": position(admin),
        "checkpoint": checkpoint,
        "lag_seconds": p.lag_seconds(),
        "binlog_retention_seconds": p.binlog_retention_left(crate::delivery::unix_now()),
        "tasks_generation": admin.table.borrow().plan().generation,
        "tasks_pending": admin.table.borrow().pending().is_some(),
    });
    let mut body = body;
    let ha = admin.ha_view();
    body["role"] = json!(ha.as_ref().map_or("active", |v| v.role.name()));
    if let Some(v) = ha {
        body["epoch"] = json!(v.epoch);
        body["id"] = json!(v.id);
        body["active_id"] = json!(v.active_id);
        body["active_admin"] = json!(v.active_admin);
    }
    Reply::json(if up { 200 } else { 503 }, &body)
}

/// The operator console: one page, embedded in the binary, no outside
/// resources (the CSP header enforces it); it reads the JSON routes.
const CONSOLE: &str = include_str!("console.html");
/// Where the page's settings go (the default keeps the file valid on its own).
const CONSOLE_SETTINGS: &str =
    r#"/*ROWHOOK_CONSOLE*/{"token_required": false, "read_only": false}"#;

/// `GET /`: the console. Actions ask for the token when one is set; with no
/// token on an admin server bound beyond loopback the page is read-only.
fn console(admin: &Admin) -> Reply {
    let token_required = admin.server.token.is_some();
    let read_only = !token_required && !admin.server.bind.is_loopback();
    let settings = json!({"token_required": token_required, "read_only": read_only}).to_string();
    Reply {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body: CONSOLE.replacen(CONSOLE_SETTINGS, &settings, 1).into_bytes(),
        extra: "Cache-Control: no-store\r\nContent-Security-Policy: default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'\r\n".to_owned(),
        wait: None,
    }
}

/// `/health/active`: `/health` for a load balancer that must reach the active
/// instance only; 503 on a standby.
fn health_active(admin: &Admin) -> Reply {
    let mut reply = health(admin);
    if admin.is_standby() {
        reply.status = 503;
    }
    reply
}

/// `POST /ha/step-down`: the active instance stops like on SIGTERM (drains,
/// writes the checkpoint), resigns, and comes back as standby.
fn step_down(admin: &Admin, req: &Request) -> Reply {
    if req.method != "POST" {
        return not_allowed("POST");
    }
    if let Some(r) = unauthorized(admin, req) {
        return r;
    }
    let (Some(view), Some(flag)) = (admin.ha_view(), &admin.step_down) else {
        return error(
            409,
            "this instance runs without ha; there is no role to give up",
        );
    };
    if view.role != crate::control::ha::Role::Active {
        return error(
            409,
            &format!(
                "this instance is standby; the active one is {} ({})",
                view.active_id.as_deref().unwrap_or("unknown"),
                view.active_admin.as_deref().unwrap_or("address unknown")
            ),
        );
    }
    flag.store(true, Relaxed);
    Reply::json(
        202,
        &json!({"result": "stepping down", "epoch": view.epoch, "id": view.id}),
    )
}

fn metrics_json(admin: &Admin) -> Reply {
    let p = &admin.progress;
    let (delivered, retries, dead) = admin.stats.totals();
    let uptime = admin.started.elapsed().as_secs();
    let read: u64 = admin.stats.tasks.iter().map(|t| t.read.load(Relaxed)).sum();
    let body = json!({
        "system": {
            "version": env!("CARGO_PKG_VERSION"),
            "start_time": time_text(admin.started_unix),
            "uptime": duration_text(uptime),
            "uptime_seconds": uptime,
            "memory_rss_bytes": rss_bytes(),
            "cpu_cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        "monitor": {
            "running": p.connected.get(),
            "server_version": *p.server.borrow(),
            "binlog_position": position(admin),
            "binlog_events": p.binlog_events.get(),
            "events_read": read,
            "last_event_time": (p.event_time.get() > 0).then(|| time_text(p.event_time.get())),
            "lag_seconds": p.lag_seconds(),
            "reconnects": p.reconnects.get(),
        },
        "dispatcher": {
            "running": true,
            "shards": admin.shards,
            "shards_on_source_core": admin.on_source_core,
            "worker_count": admin.worker_count,
            "max_inflight": admin.max_inflight,
            "in_flight": p.in_flight.get(),
            "delivered": delivered,
            "retries": retries,
            "dead_lettered": dead,
        },
        "tasks": tasks(admin),
    });
    Reply::json(200, &body)
}

fn histograms(admin: &Admin) -> Reply {
    let mut stages = serde_json::Map::new();
    for stage in Stage::ALL {
        let h = admin.latency.merged(stage);
        let encoded = match encode_v2(&h) {
            Ok(e) => e,
            Err(e) => {
                return error(
                    500,
                    &format!("cannot encode the {} histogram: {e}", stage.name()),
                )
            }
        };
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        stages.insert(
            stage.name().to_owned(),
            json!({
                "count": h.len(),
                "p50_us": us(0.5), "p99_us": us(0.99), "p999_us": us(0.999), "max_us": h.max() as f64 / 1000.0,
                "hdr": encoded,
            }),
        );
    }
    let body = json!({
        "unit": "nanoseconds",
        "encoding": "HdrHistogram V2 compressed, base64",
        "since_seconds_ago": admin.started.elapsed().as_secs(),
        "stages": stages,
    });
    Reply::json(200, &body)
}

/// Resident memory from /proc (Linux), when readable.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn prometheus(admin: &Admin) -> Reply {
    let p = &admin.progress;
    let mut o = String::with_capacity(8192);
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(&mut o, "rowhook_info", "gauge", "Build information.");
    let _ = writeln!(
        o,
        "rowhook_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    family(&mut o, "rowhook_up", "gauge", "1 when /health says UP.");
    let _ = writeln!(
        o,
        "rowhook_up {}",
        u8::from(admin.down_reasons().is_empty())
    );
    family(
        &mut o,
        "rowhook_uptime_seconds",
        "gauge",
        "Seconds since start.",
    );
    let _ = writeln!(
        o,
        "rowhook_uptime_seconds {}",
        admin.started.elapsed().as_secs()
    );
    if let Some(v) = admin.ha_view() {
        let gauges = [
            (
                "rowhook_ha_active",
                "gauge",
                "1 when this instance is the active one (ha).",
                u64::from(v.role == crate::control::ha::Role::Active),
            ),
            (
                "rowhook_ha_epoch",
                "gauge",
                "The epoch this instance runs under, or the last it saw (ha).",
                v.epoch,
            ),
            (
                "rowhook_ha_takeovers_total",
                "counter",
                "Times this process became the active instance (ha).",
                v.takeovers,
            ),
        ];
        for (name, kind, help, value) in gauges {
            family(&mut o, name, kind, help);
            let _ = writeln!(o, "{name} {value}");
        }
    }
    {
        let table = admin.table.borrow();
        let gauges = [
            (
                "rowhook_tasks_generation",
                "Applied task set: 0 at start, one more per live change.",
                u64::from(table.plan().generation),
            ),
            (
                "rowhook_tasks_rejected",
                "Task definitions rejected right now (a bad reload counts one; etcd: per key).",
                (table.rejected_definitions() + usize::from(table.rejected().is_some())) as u64,
            ),
            (
                "rowhook_tasks_source_connected",
                "1 while the task source (etcd) answers; files always do.",
                u64::from(table.source_connected()),
            ),
        ];
        for (name, help, value) in gauges {
            family(&mut o, name, "gauge", help);
            let _ = writeln!(o, "{name} {value}");
        }
    }
    family(
        &mut o,
        "rowhook_replication_connected",
        "gauge",
        "1 while the replication link is up.",
    );
    let _ = writeln!(
        o,
        "rowhook_replication_connected {}",
        u8::from(p.connected.get())
    );
    family(
        &mut o,
        "rowhook_reconnects_total",
        "counter",
        "Reconnections to the source server.",
    );
    let _ = writeln!(o, "rowhook_reconnects_total {}", p.reconnects.get());
    family(
        &mut o,
        "rowhook_binlog_events_total",
        "counter",
        "Binlog events read.",
    );
    let _ = writeln!(o, "rowhook_binlog_events_total {}", p.binlog_events.get());
    family(
        &mut o,
        "rowhook_binlog_lag_seconds",
        "gauge",
        "How far the newest event read is behind the clock.",
    );
    if let Some(lag) = p.lag_seconds() {
        let _ = writeln!(o, "rowhook_binlog_lag_seconds {lag}");
    }
    family(
        &mut o,
        "rowhook_read_position",
        "gauge",
        "Position of the last event read, labelled with its binlog file.",
    );
    let file = p.read_file.borrow();
    if !file.is_empty() {
        let _ = writeln!(
            o,
            "rowhook_read_position{{file=\"{}\"}} {}",
            label(&file),
            p.read_pos.get()
        );
    }
    family(
        &mut o,
        "rowhook_checkpoint_position",
        "gauge",
        "Position made durable in checkpoint.json, labelled with its binlog file.",
    );
    if let Some(c) = p.checkpoint.borrow().as_ref() {
        let _ = writeln!(
            o,
            "rowhook_checkpoint_position{{file=\"{}\"}} {}",
            label(&c.file),
            c.pos
        );
    }
    if let Some(left) = admin
        .progress
        .binlog_retention_left(crate::delivery::unix_now())
    {
        family(
            &mut o,
            "rowhook_binlog_retention_seconds",
            "gauge",
            "Seconds until the server's binlog expiry may purge the file the checkpoint needs (a lower bound; negative: past it).",
        );
        let _ = writeln!(o, "rowhook_binlog_retention_seconds {left}");
    }
    family(
        &mut o,
        "rowhook_max_inflight",
        "gauge",
        "Bound on events read but not acknowledged.",
    );
    let _ = writeln!(o, "rowhook_max_inflight {}", admin.max_inflight);
    if let Some(rss) = rss_bytes() {
        family(
            &mut o,
            "rowhook_resident_memory_bytes",
            "gauge",
            "Resident memory.",
        );
        let _ = writeln!(o, "rowhook_resident_memory_bytes {rss}");
    }
    type Counter = fn(&crate::delivery::stats::TaskStats) -> u64;
    let per_task: [(&str, &str, &str, Counter); 7] = [
        (
            "rowhook_events_read_total",
            "counter",
            "Row changes routed to the task.",
            |s| s.read.load(Relaxed),
        ),
        (
            "rowhook_events_delivered_total",
            "counter",
            "Events acknowledged by the receiver.",
            |s| s.delivered.load(Relaxed),
        ),
        (
            "rowhook_retries_total",
            "counter",
            "Failed attempts that were retried.",
            |s| s.retries.load(Relaxed),
        ),
        (
            "rowhook_dead_lettered_total",
            "counter",
            "Events written to the dead-letter file.",
            |s| s.dead_lettered.load(Relaxed),
        ),
        (
            "rowhook_quarantined_total",
            "counter",
            "Row changes written to the quarantine: their table changed since they were written and the binlog names no columns (MINIMAL metadata).",
            |s| s.quarantined.load(Relaxed),
        ),
        (
            "rowhook_dlq_write_errors_total",
            "counter",
            "Failed writes of the dead-letter file (full disk, I/O error); each is retried.",
            |s| s.dlq_write_errors.load(Relaxed),
        ),
        (
            "rowhook_dlq_writable",
            "gauge",
            "0 while writes of the task's dead-letter file keep failing.",
            |s| u64::from(s.dlq_failing.lock().map_or(true, |f| f.is_none())),
        ),
    ];
    let infos = admin.task_infos();
    let with_stats = || {
        infos
            .iter()
            .filter_map(|t| Some((t, admin.stats.tasks.get(t.slot)?)))
    };
    for (name, kind, help, value) in per_task {
        family(&mut o, name, kind, help);
        for (t, s) in with_stats() {
            let _ = writeln!(o, "{name}{{task=\"{}\"}} {}", label(&t.id), value(s));
        }
    }
    let spools: Vec<_> = infos
        .iter()
        .filter_map(|t| Some((t, admin.stats.spool(t.slot)?)))
        .collect();
    if !spools.is_empty() {
        type Gauge = fn(&crate::spool::SpoolStatus) -> f64;
        let now_ms = crate::spool::unix_ms();
        let gauges: [(&str, &str, Gauge); 5] = [
            ("rowhook_spool_bytes", "Bytes of the task's spool segments on disk.", |s| s.bytes as f64),
            ("rowhook_spool_records", "Spooled events not yet acknowledged by the receiver.", |s| s.records as f64),
            ("rowhook_spool_full", "1 while the spool is at spool.max_bytes or its disk below spool.min_disk_free.", |s| f64::from(u8::from(s.full))),
            ("rowhook_spool_disk_free_bytes", "Free bytes of the file system holding the task's spool (-1: not read).", |s| s.disk_free.map_or(-1.0, |b| b as f64)),
            ("rowhook_spool_writable", "0 while the spool cannot be written, synced or read (reading pauses for the task).", |s| f64::from(u8::from(s.error.is_none()))),
        ];
        for (name, help, value) in gauges {
            family(&mut o, name, "gauge", help);
            for (t, s) in &spools {
                let _ = writeln!(o, "{name}{{task=\"{}\"}} {}", label(&t.id), value(s));
            }
        }
        family(
            &mut o,
            "rowhook_spool_oldest_age_seconds",
            "gauge",
            "Age of the oldest spooled event not yet acknowledged (0: none).",
        );
        for (t, s) in &spools {
            let age = if s.oldest_ms == 0 {
                0.0
            } else {
                now_ms.saturating_sub(s.oldest_ms) as f64 / 1000.0
            };
            let _ = writeln!(
                o,
                "rowhook_spool_oldest_age_seconds{{task=\"{}\"}} {age}",
                label(&t.id)
            );
        }
    }
    family(
        &mut o,
        "rowhook_events_in_flight",
        "gauge",
        "Events read and not yet acknowledged.",
    );
    for t in &infos {
        let _ = writeln!(
            o,
            "rowhook_events_in_flight{{task=\"{}\"}} {}",
            label(&t.id),
            p.task_in_flight.get(t.slot).map_or(0, std::cell::Cell::get)
        );
    }
    let now = crate::delivery::unix_now();
    let per_task: Vec<(&str, i64)> = infos
        .iter()
        .filter_map(|t| Some((t.id.as_str(), p.task_retention_left(t.slot, now)?)))
        .collect();
    if !per_task.is_empty() {
        family(
            &mut o,
            "rowhook_task_binlog_retention_seconds",
            "gauge",
            "Per task: seconds until the server's binlog expiry may purge the file of the task's oldest event not yet delivered, dead-lettered or spooled (the lowest task holds the checkpoint back).",
        );
        for (task, left) in per_task {
            let _ = writeln!(
                o,
                "rowhook_task_binlog_retention_seconds{{task=\"{}\"}} {left}",
                label(task)
            );
        }
    }
    family(
        &mut o,
        "rowhook_task_paused",
        "gauge",
        "1 while the task is paused.",
    );
    for t in &infos {
        let _ = writeln!(
            o,
            "rowhook_task_paused{{task=\"{}\"}} {}",
            label(&t.id),
            u8::from(admin.plan.controls.is_paused(t.slot as u32))
        );
    }
    if let Some(snapshots) = admin.snapshots() {
        let all: Vec<_> = infos.iter().map(|t| snapshots.status(t.slot)).collect();
        type Gauge = (
            &'static str,
            &'static str,
            fn(&crate::snapshot::Status) -> u64,
        );
        let gauges: [Gauge; 3] = [
            (
                "rowhook_snapshot_running",
                "1 while a snapshot of the task runs.",
                |s| u64::from(s.state == "running"),
            ),
            (
                "rowhook_snapshot_rows",
                "Rows read by the task's current (or last) snapshot.",
                |s| s.rows,
            ),
            (
                "rowhook_snapshot_estimated_rows",
                "information_schema's estimate of the rows that snapshot reads.",
                |s| s.estimated_rows,
            ),
        ];
        for (name, help, value) in gauges {
            family(&mut o, name, "gauge", help);
            for (t, s) in infos.iter().zip(&all) {
                let _ = writeln!(o, "{name}{{task=\"{}\"}} {}", label(&t.id), value(s));
            }
        }
    }
    family(
        &mut o,
        "rowhook_http_responses_total",
        "counter",
        "Webhook attempts by answer class (error = no answer: connection failure, timeout).",
    );
    for (t, s) in with_stats() {
        for (class, n) in ANSWER_CLASSES.iter().zip(&s.answers) {
            let _ = writeln!(
                o,
                "rowhook_http_responses_total{{task=\"{}\",class=\"{class}\"}} {}",
                label(&t.id),
                n.load(Relaxed)
            );
        }
    }
    let name = "rowhook_latency_seconds";
    family(&mut o, name, "histogram", "Latency per stage: decode (rows event -> payloads), handoff (source -> shard), http (one attempt), end_to_end (row read -> acknowledged).");
    for stage in Stage::ALL {
        let h = admin.latency.merged(stage);
        let (counts, total) = cumulative_buckets(&h);
        let stage = stage.name();
        for (bound, n) in BUCKETS.iter().zip(&counts) {
            let _ = writeln!(o, "{name}_bucket{{stage=\"{stage}\",le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(o, "{name}_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {total}");
        // HDR keeps no exact sum; its mean is within the 3-digit precision.
        let _ = writeln!(
            o,
            "{name}_sum{{stage=\"{stage}\"}} {}",
            h.mean() * total as f64 / 1e9
        );
        let _ = writeln!(o, "{name}_count{{stage=\"{stage}\"}} {total}");
    }
    Reply {
        status: 200,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body: o.into_bytes(),
        extra: String::new(),
        wait: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(duration_text(59), "59s");
        assert_eq!(duration_text(3725), "1h2m5s");
        assert_eq!(time_text(0), "1970-01-01T00:00:00Z");
        assert!(same_bytes(b"Bearer x", b"Bearer x"));
        assert!(!same_bytes(b"Bearer y", b"Bearer x"));
        assert!(!same_bytes(b"Bearer", b"Bearer x"));
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
