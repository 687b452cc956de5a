//! TLS to the source: `required` and `verify_ca` against a MariaDB with real
//! certificates (made here with openssl), a user that is refused without TLS, a
//! wrong CA, and a server without TLS. `required` must never fall back to plaintext.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::certs::certificates;
use common::mariadb::{MariaDb, RowMetadata};

/// Runs `rowhook tail` with `tls` settings until it prints a row or exits.
fn tail_once(db: &MariaDb, user: &str, tls: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "database: {{host: 127.0.0.1, port: {}, user: {user}, password: pw, server_id: 77, {tls}}}\n\
             source: {{start: earliest, heartbeat: 1s}}\n\
             tasks:\n  - {{task_id: t, table_name: 'shop.t', events: [insert], callback_url: 'http://127.0.0.1:9/'}}\n",
            db.port
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rowhook"))
        .args(["tail", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `start: earliest` replays the one row; give it a moment, then stop.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let exited = out.status.code();
    (
        exited,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tls_modes_against_a_tls_server() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let p = |f: &str| certs.path().join(f).display().to_string();
    let db = MariaDb::start_with_options(
        RowMetadata::Full,
        &[
            format!("--ssl-ca={}", p("ca.pem")),
            format!("--ssl-cert={}", p("server.pem")),
            format!("--ssl-key={}", p("server.key")),
        ],
    );
    assert_eq!(db.value("SELECT @@have_ssl"), "YES", "{}", db.log());
    db.sql(
        "CREATE USER 'secure'@'%' IDENTIFIED BY 'pw' REQUIRE SSL; \
         GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'secure'@'%'; \
         CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY); INSERT INTO shop.t VALUES (42);",
    );

    // The account refuses plaintext, so a row printed proves the link is encrypted.
    for tls in [
        "tls: required",
        "tls: preferred",
        &format!("tls: verify_ca, ca_file: '{}'", p("ca.pem")),
    ] {
        let (_, out, err) = tail_once(&db, "secure", tls);
        assert!(out.contains("\"primary_id\":42"), "{tls}: no row\n{err}");
    }

    let (code, _, err) = tail_once(&db, "secure", "tls: disabled");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("1045"), "{err}");

    let (code, out, err) = tail_once(
        &db,
        "secure",
        &format!("tls: verify_ca, ca_file: '{}'", p("other-ca.pem")),
    );
    assert_eq!(
        code,
        Some(1),
        "a certificate from another CA must be refused: {out}{err}"
    );
    assert!(
        err.contains("TLS handshake") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[test]
fn required_never_falls_back_to_plaintext() {
    let db = MariaDb::start();
    assert_ne!(db.value("SELECT @@have_ssl"), "YES");
    db.sql("CREATE USER 'secure'@'%' IDENTIFIED BY 'pw'; GRANT ALL ON *.* TO 'secure'@'%'; CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY); INSERT INTO shop.t VALUES (1);");
    let (code, out, err) = tail_once(&db, "secure", "tls: required");
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("does not offer"), "{err}");
    // preferred may go without TLS when the server has none.
    let (_, out, err) = tail_once(&db, "secure", "tls: preferred");
    assert!(out.contains("\"primary_id\":1"), "{err}");
}
