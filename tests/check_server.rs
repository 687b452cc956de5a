//! `rowhook check` against real servers: a healthy setup passes; a misconfigured
//! server, a weak account, a clashing server_id, a vanished checkpoint position and
//! an unreachable receiver are each named with the fix.

mod common;

use std::process::Command;

use common::mariadb::{MariaDb, RowMetadata};
use common::receiver::Receiver;

fn check(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let mut text = config.to_owned();
    if !text.contains("state:") {
        text.push_str(&format!(
            "state: {{dir: '{}'}}\n",
            dir.path().join("state").display()
        ));
    }
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rowhook"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn config(db: &MariaDb, user: &str, server_id: u32, url: &str, extra: &str) -> String {
    format!(
        "database: {{host: 127.0.0.1, port: {}, user: {user}, password: pw, server_id: {server_id}, tls: disabled}}
{extra}tasks:
  - {{task_id: t, table_name: shop.t, events: [insert], callback_url: '{url}'}}
",
        db.port
    )
}

#[test]
fn a_healthy_setup_passes() {
    let db = MariaDb::start();
    db.sql("CREATE USER 'rh'@'%' IDENTIFIED BY 'pw'; GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'rh'@'%';");
    let receiver = Receiver::ok();
    let (code, out) = check(&config(&db, "rh", 777, &receiver.url("/x"), ""));
    assert_eq!(code, Some(0), "{out}");
    for want in [
        "ok    log_bin = ON",
        "ok    binlog_format = ROW",
        "ok    binlog_row_metadata = FULL",
        "ok    privileges",
        "ok    server_id 777",
        "accepts connections",
        "ready: 0 warning(s)",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
}

#[test]
fn every_problem_is_named_with_its_fix() {
    let db = MariaDb::start_with(RowMetadata::Minimal);
    db.sql("SET GLOBAL binlog_format = 'STATEMENT'; SET GLOBAL binlog_row_image = 'MINIMAL';");
    db.sql("CREATE USER 'weak'@'%' IDENTIFIED BY 'pw';");
    let own_id: u32 = db.value("SELECT @@server_id").parse().unwrap();
    // A receiver that was there and is gone: its port refuses connections.
    let gone = Receiver::ok().url("/x");
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        state.path().join("checkpoint.json"),
        format!(r#"{{"file": "binlog.000099", "pos": 4, "gtid": null, "flavor": "mariadb", "server_id": {own_id}, "server_uuid": null}}"#),
    )
    .unwrap();
    let extra = format!("state: {{dir: '{}'}}\n", state.path().display());
    let (code, out) = check(&config(&db, "weak", own_id, &gone, &extra));
    assert_eq!(code, Some(1), "{out}");
    for want in [
        "FAIL  binlog_format = STATEMENT",
        "warn  binlog_row_image = MINIMAL",
        "warn  binlog_row_metadata = MINIMAL",
        &format!("FAIL  database.server_id {own_id} is the source's own server_id"),
        "FAIL  missing privileges: REPLICATION SLAVE, REPLICATION CLIENT",
        "FAIL  checkpoint binlog.000099:4 is no longer on the server",
        "does not accept connections now",
        "fix: GRANT REPLICATION SLAVE",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }

    let (code, out) = check(&config(&db, "nobody", 5, &gone, ""));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL  connect to nobody@127.0.0.1") && out.contains("1045"),
        "{out}"
    );
}
