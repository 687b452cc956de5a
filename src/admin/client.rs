//! `rowhook status`, `tasks` and `snapshot`: blocking requests to a running
//! instance's admin server, printed as readable text.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

/// How long the CLI waits for the admin server.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read.
const MAX_ANSWER: u64 = 16 << 20;

/// Why the admin API could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The `--admin` URL is not usable.
    #[error("--admin {0:?}: {1}")]
    Url(String, String),
    /// Nothing answered.
    #[error("cannot reach the admin server at {url}: {reason} (is `rowhook run` running with server.enabled: true, on this port?)")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// It answered something that is not the admin API.
    #[error("{url} answered something unexpected: {reason}")]
    Answer {
        /// Where.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// GETs `path` from the admin server at `base`: (status, JSON body).
pub fn get(base: &str, path: &str) -> Result<(u16, Value), ClientError> {
    request(base, "GET", path, None, None)
}

/// Sends `method path` (with `token` as a bearer token and `body` as JSON) to the
/// admin server at `base`: (status, JSON body).
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), ClientError> {
    let url =
        url::Url::parse(base).map_err(|e| ClientError::Url(base.to_owned(), e.to_string()))?;
    if url.scheme() != "http" {
        return Err(ClientError::Url(
            base.to_owned(),
            "the admin server speaks plain http://".to_owned(),
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| ClientError::Url(base.to_owned(), "no host".to_owned()))?;
    let port = url.port().unwrap_or(80);
    let full = format!("{}{path}", base.trim_end_matches('/'));
    let unreachable = |reason: String| ClientError::Unreachable {
        url: full.clone(),
        reason,
    };
    let addr = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|e| unreachable(e.to_string()))?
        .next()
        .ok_or_else(|| unreachable("the host name has no address".to_owned()))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| unreachable(e.to_string()))?;
    let io = |e: std::io::Error| ClientError::Unreachable {
        url: full.clone(),
        reason: e.to_string(),
    };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let prefix = url.path().trim_end_matches('/');
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {prefix}{path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(io)?;
    parse_answer(&answer).map_err(|reason| ClientError::Answer { url: full, reason })
}

fn parse_answer(answer: &[u8]) -> Result<(u16, Value), String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Response::new(&mut headers);
    let n = match head.parse(answer) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the answer ended early".to_owned()),
        Err(e) => return Err(format!("not HTTP ({e})")),
    };
    let status = head.code.unwrap_or(0);
    let body = answer.get(n..).unwrap_or_default();
    let value =
        serde_json::from_slice(body).map_err(|e| format!("HTTP {status}, not JSON ({e})"))?;
    Ok((status, value))
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders `/health` and `/metrics.json` as the `status` report; true when UP.
pub fn print_status(
    out: &mut impl Write,
    base: &str,
    health: &Value,
    metrics: &Value,
) -> std::io::Result<bool> {
    let up = health["status"] == "UP";
    let pos = &health["binlog_position"];
    let cp = &health["checkpoint"];
    let m = &metrics["monitor"];
    let d = &metrics["dispatcher"];
    writeln!(
        out,
        "rowhook {} at {base}: {}",
        text(&health["version"]),
        text(&health["status"])
    )?;
    if let Some(reasons) = health["reasons"].as_array() {
        // An UP instance lists problems that do not stop delivery.
        let lead = if up { "note:" } else { "DOWN because" };
        for r in reasons {
            writeln!(out, "  {lead} {}", text(r))?;
        }
    }
    if !health["epoch"].is_null() {
        let active = match (&health["active_id"], &health["active_admin"]) {
            (Value::Null, _) => "unknown".to_owned(),
            (id, Value::Null) => text(id),
            (id, admin) => format!("{} at {}", text(id), text(admin)),
        };
        writeln!(
            out,
            "  ha           {} (this is {}), epoch {}; active: {active}",
            text(&health["role"]),
            text(&health["id"]),
            text(&health["epoch"])
        )?;
    }
    let link = if health["monitor_running"] == true {
        "connected"
    } else {
        "NOT connected"
    };
    writeln!(
        out,
        "  replication  {link} to {} ({} reconnect(s))",
        text(&m["server_version"]),
        text(&m["reconnects"])
    )?;
    let gtid = match &pos["gtid"] {
        Value::Null => String::new(),
        g => format!("  gtid {}", text(g)),
    };
    writeln!(
        out,
        "  read at      {}:{}{gtid}",
        text(&pos["file"]),
        text(&pos["position"])
    )?;
    if cp.is_null() {
        writeln!(out, "  checkpoint   none yet")?;
    } else {
        writeln!(
            out,
            "  checkpoint   {}:{}",
            text(&cp["file"]),
            text(&cp["position"])
        )?;
    }
    writeln!(
        out,
        "  lag          {} s (last event {})",
        text(&health["lag_seconds"]),
        text(&health["last_event_time"])
    )?;
    writeln!(
        out,
        "  in flight    {} of {}",
        text(&d["in_flight"]),
        text(&d["max_inflight"])
    )?;
    writeln!(
        out,
        "  delivered    {}   retries {}   dead-lettered {}",
        text(&d["delivered"]),
        text(&d["retries"]),
        text(&d["dead_lettered"])
    )?;
    writeln!(out, "  uptime       {}", text(&health["uptime"]))?;
    Ok(up)
}

/// Renders `/tasks` as a table.
pub fn print_tasks(out: &mut impl Write, tasks: &Value) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<9} {:>9} {:>10} {:>10} {:>8} {:>6}  {:<36}  {:<22}  {:<20}  url  (source)",
        "task",
        "state",
        "in_flight",
        "read",
        "delivered",
        "retries",
        "dlq",
        "snapshot",
        "spool",
        "changed"
    )?;
    for t in tasks.as_array().into_iter().flatten() {
        writeln!(
            out,
            "{:<24} {:<9} {:>9} {:>10} {:>10} {:>8} {:>6}  {:<36}  {:<22}  {:<20}  {}  ({})",
            text(&t["task_id"]),
            text(&t["state"]),
            text(&t["in_flight"]),
            text(&t["events_read"]),
            text(&t["delivered"]),
            text(&t["retries"]),
            text(&t["dead_lettered"]),
            snapshot_text(&t["snapshot"]),
            spool_text(&t["spool"]),
            text(&t["source"]["changed"]),
            text(&t["callback_url"]),
            text(&t["source"]["origin"])
        )?;
    }
    Ok(())
}

/// A task's spool in one cell: `1200 ev 3.1 MB 42s` (records, bytes, oldest
/// age), `FULL …`, `ERROR`, or `-` (none).
fn spool_text(s: &Value) -> String {
    if s.is_null() {
        return "-".to_owned();
    }
    if !s["error"].is_null() {
        return "ERROR (see /health)".to_owned();
    }
    let mut cell = format!(
        "{} ev {:.1} MB",
        s["records"].as_u64().unwrap_or(0),
        s["bytes"].as_u64().unwrap_or(0) as f64 / 1e6
    );
    if let Some(age) = s["oldest_age_s"].as_f64() {
        cell.push_str(&format!(" {}s", age.round()));
    }
    if s["full"].as_bool() == Some(true) {
        cell.insert_str(0, "FULL ");
    }
    cell
}

/// A task's snapshot in one cell: `running 1200/~5000 300/s eta 13s`, `done 5000`,
/// `failed`, or `-`.
fn snapshot_text(s: &Value) -> String {
    let rows = s["rows"].as_u64().unwrap_or(0);
    match s["state"].as_str().unwrap_or("none") {
        "none" => "-".to_owned(),
        "running" => {
            let mut cell = format!(
                "running {rows}/~{} {}/s",
                s["estimated_rows"].as_u64().unwrap_or(0).max(rows),
                s["rows_per_s"].as_f64().unwrap_or(0.0).round()
            );
            if let Some(eta) = s["eta_s"].as_f64() {
                cell.push_str(&format!(" eta {eta}s"));
            }
            cell
        }
        state => format!("{state} {rows}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_that_are_not_the_admin_api_are_errors() {
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n\r\n{\"a\":1}").is_ok());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n\r\n<html>")
            .unwrap_err()
            .contains("not JSON"));
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n")
            .unwrap_err()
            .contains("not HTTP"));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nX: y")
            .unwrap_err()
            .contains("early"));
    }

    #[test]
    fn tasks_show_their_snapshot() {
        let tasks = serde_json::json!([
            {"task_id": "a", "state": "running", "snapshot": {"state": "running", "rows": 1200,
              "estimated_rows": 5000, "rows_per_s": 300.4, "eta_s": 13.0}},
            {"task_id": "b", "state": "running", "snapshot": {"state": "done", "rows": 5000}},
            {"task_id": "c", "state": "paused", "snapshot": {"state": "none", "rows": 0},
              "source": {"origin": "etcd /rowhook/tasks/c@42", "changed": "2026-11-30T19:00:00Z"}},
        ]);
        let mut out = Vec::new();
        print_tasks(&mut out, &tasks).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("running 1200/~5000 300/s eta 13s"), "{out}");
        assert!(out.contains("done 5000"), "{out}");
        assert!(out.lines().nth(3).unwrap().contains(" - "), "{out}");
        assert!(
            out.contains("2026-11-30T19:00:00Z") && out.contains("(etcd /rowhook/tasks/c@42)"),
            "where a task came from and when it changed: {out}"
        );
    }

    #[test]
    fn status_report_names_the_down_reason() {
        let health = serde_json::json!({"status": "DOWN", "reasons": ["replication link down for 31s"],
            "version": "0.1.0", "monitor_running": false, "binlog_position": {"file": "b.000001", "position": 4, "gtid": null},
            "checkpoint": null, "lag_seconds": null});
        let mut out = Vec::new();
        let up = print_status(&mut out, "http://x", &health, &serde_json::json!({})).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!up);
        assert!(
            out.contains("DOWN because replication link down for 31s"),
            "{out}"
        );
        assert!(out.contains("read at      b.000001:4\n"), "{out}");
        assert!(out.contains("NOT connected"), "{out}");
    }
}
