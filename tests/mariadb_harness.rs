//! The test harness itself: a real MariaDB with a row-based binlog comes up, takes
//! writes, and shows them in its binary log.

mod common;

use common::mariadb::{MariaDb, RowMetadata};

#[test]
fn full_metadata_server_logs_rows() {
    let db = MariaDb::start();
    assert_eq!(db.value("SELECT @@log_bin"), "1");
    assert_eq!(db.value("SELECT @@binlog_format"), "ROW");
    assert_eq!(db.value("SELECT @@binlog_row_metadata"), "FULL");
    assert_eq!(db.value("SELECT @@server_id"), "1");
    db.sql(
        "CREATE DATABASE shop; \
         CREATE TABLE shop.users (id INT PRIMARY KEY, name VARCHAR(50)); \
         INSERT INTO shop.users VALUES (1, 'ana'), (2, 'björn'); \
         UPDATE shop.users SET name = 'ana maria' WHERE id = 1;",
    );
    let rows = db.sql("SELECT id, name FROM shop.users ORDER BY id");
    assert_eq!(rows, [["1", "ana maria"], ["2", "björn"]]);

    let file = db.sql("SHOW MASTER STATUS")[0][0].clone();
    let events = db.sql(&format!("SHOW BINLOG EVENTS IN '{file}'"));
    let types: Vec<&str> = events.iter().map(|e| e[2].as_str()).collect();
    assert!(types.contains(&"Table_map"), "{types:?}");
    assert!(types.contains(&"Write_rows_v1"), "{types:?}");
    assert!(types.contains(&"Update_rows_v1"), "{types:?}");
    assert!(db.datadir().join(&file).is_file());
}

#[test]
fn minimal_metadata_mode() {
    let db = MariaDb::start_with(RowMetadata::Minimal);
    assert_eq!(db.value("SELECT @@binlog_row_metadata"), "MINIMAL");
    db.sql("CREATE DATABASE t; CREATE TABLE t.x (a INT); INSERT INTO t.x VALUES (42);");
    assert_eq!(db.value("SELECT a FROM t.x"), "42");
}

#[test]
fn servers_are_independent_and_stop_on_drop() {
    let a = MariaDb::start();
    let port = {
        let b = MariaDb::start();
        assert_ne!(a.port, b.port);
        b.sql("CREATE DATABASE only_in_b");
        assert!(a.sql("SHOW DATABASES LIKE 'only_in_b'").is_empty());
        b.port
    };
    // Dropping the handle killed the server: nothing accepts on its port any more.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
