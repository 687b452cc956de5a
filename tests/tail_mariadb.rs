//! `rowhook tail --file` over binlogs written by a real MariaDB: every column type of
//! SPEC section 5, compared field by field with what was inserted.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::mariadb::{MariaDb, RowMetadata};
use common::types::{LABELS, ROWS, SCHEMA};
use serde_json::{json, Value};

fn tail(file: &PathBuf, tasks: Option<&str>) -> Vec<Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rowhook"));
    cmd.args(["tail", "--file"]).arg(file);
    let dir = tempfile::tempdir().unwrap();
    if let Some(t) = tasks {
        let path = dir.path().join("tasks.yaml");
        std::fs::write(&path, t).unwrap();
        cmd.arg("--tasks").arg(path);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "tail failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn write_and_rotate(db: &MariaDb) -> PathBuf {
    db.sql(SCHEMA);
    let file = db.sql("SHOW MASTER STATUS")[0][0].clone();
    db.sql(ROWS);
    db.sql("FLUSH BINARY LOGS");
    db.datadir().join(file)
}

fn expected_row1() -> Value {
    json!({
        "id": 1, "ti": -128, "tiu": 255, "si": -32768, "mi": -8388608, "miu": 16777215,
        "i": -2147483648i64, "iu": 4294967295u64, "bi": i64::MIN, "biu": u64::MAX,
        "f": 1.5, "d": -2.25, "dec1": "12.50",
        "dec2": "-12345678901234567890123456789012345.123456789012345678901234567890",
        "dec3": "99999",
        "dt": "2026-01-31", "tm": "-838:59:59", "tm3": "12:34:56.789",
        "dtm": "2026-01-31 13:45:00", "dtm6": "2026-01-31 13:45:00.123456",
        "ts": "2026-01-31 13:45:00.500", "yr": 2026,
        "c": "chars", "vc": "utf8mb4 😀 \"quoted\" \\ back", "tx": "a text\nwith newline", "lat": "café",
        "bn": "AAECAw==", "vb": "/wA=", "bl": "3q2+7w==",
        "js": "{\"a\": 1, \"b\": [true, null]}", "en": "medium", "st": "a,c", "bt": 682,
        // POINT(1 2) as little-endian WKB, without MySQL's 4-byte SRID prefix.
        "geo": "AQEAAAAAAAAAAADwPwAAAAAAAABA",
        // Negative fractional TIMEs: MySQL stores their fraction in reverse order.
        "tn1": "-00:00:01.5", "tn2": "-12:34:56.07", "tn4": "-838:59:58.9999",
    })
}

#[test]
fn every_type_with_full_metadata() {
    let db = MariaDb::start();
    let file = write_and_rotate(&db);
    let rows = tail(&file, None);
    let events: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["table"].as_str().unwrap(), r["event"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        [
            ("all_types", "insert"),
            ("all_types", "insert"),
            ("all_types", "update"),
            ("all_types", "delete"),
            ("order-2024", "insert"),
            ("order-2024", "update"),
            ("nokey", "insert"),
        ]
    );

    let want = expected_row1();
    let got = &rows[0]["data"];
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&got[k], v, "column {k}");
    }
    assert_eq!(
        got.as_object().unwrap().len(),
        want.as_object().unwrap().len()
    );
    assert_eq!(rows[0]["primary_id"], json!(1));
    assert_eq!(rows[0]["database"], "shop");
    let id = rows[0]["id"].as_str().unwrap();
    assert!(
        id.starts_with(&format!("{}:", file.file_name().unwrap().to_string_lossy())),
        "{id}"
    );
    assert!(rows[0]["timestamp"].as_str().unwrap().ends_with('Z'));

    // Zero dates stay zero; columns not given are NULL.
    let zero = &rows[1]["data"];
    assert_eq!(zero["dt"], "0000-00-00");
    assert_eq!(zero["dtm"], "0000-00-00 00:00:00");
    assert_eq!(zero["vc"], Value::Null);
    assert_eq!(zero["geo"], Value::Null);

    // Update: old and new images; delete: the before image.
    assert_eq!(rows[2]["old_data"]["vc"], want["vc"]);
    assert_eq!(rows[2]["new_data"]["vc"], "changed");
    assert_eq!(rows[2]["new_data"]["dec1"], "-0.05");
    assert_eq!(rows[2]["new_data"]["biu"], json!(u64::MAX));
    assert_eq!(rows[3]["data"]["id"], 2);
    assert_eq!(rows[3]["primary_id"], 2);

    // Composite key -> object; no key -> null.
    assert_eq!(rows[4]["primary_id"], json!({"a": 7, "b": "x"}));
    assert_eq!(rows[5]["old_data"]["v"], 1);
    assert_eq!(rows[5]["new_data"]["v"], 2);
    assert_eq!(rows[6]["primary_id"], Value::Null);
    // Ids are unique.
    let mut ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), rows.len());
}

#[test]
fn minimal_metadata_names_columns_by_position() {
    let db = MariaDb::start_with(RowMetadata::Minimal);
    let file = write_and_rotate(&db);
    let rows = tail(&file, None);
    assert_eq!(rows.len(), 7);
    let got = &rows[0]["data"];
    // Without names the values are still right, keyed @1.. like mysqlbinlog.
    assert_eq!(got["@1"], 1);
    // MINIMAL still carries signedness and charsets: only names, ENUM/SET members and
    // the primary key are missing.
    assert_eq!(got["@3"], 255);
    assert_eq!(got["@13"], "12.50");
    assert_eq!(got["@16"], "2026-01-31");
    assert_eq!(got["@18"], "12:34:56.789");
    assert_eq!(got["@24"], "utf8mb4 😀 \"quoted\" \\ back");
    assert_eq!(got["@26"], "café");
    // ENUM and SET without member names: the index and the bitmask.
    assert_eq!(got["@31"], 2);
    assert_eq!(got["@32"], 5);
    assert_eq!(rows[0]["primary_id"], Value::Null);
}

#[test]
fn tasks_select_tables_events_and_columns() {
    let db = MariaDb::start();
    let file = write_and_rotate(&db);
    let tasks = "
tasks:
  - task_id: types
    table_name: shop.all_types
    events: [update, delete]
    callback_url: /hook
    columns: [vc, dec1]
  - task_id: orders
    table_name: order-2024
    events: [insert]
    callback_url: /hook
    payload: envelope
";
    let rows = tail(&file, Some(tasks));
    assert_eq!(rows.len(), 3, "{rows:#?}");
    // Projection keeps only the listed columns; primary_id is still the key.
    assert_eq!(rows[0]["event"], "update");
    assert_eq!(
        rows[0]["new_data"],
        json!({"dec1": "-0.05", "vc": "changed"})
    );
    assert_eq!(rows[0]["primary_id"], 1);
    assert_eq!(rows[1]["event"], "delete");
    assert_eq!(rows[1]["data"].as_object().unwrap().len(), 2);
    // Envelope adds the position.
    assert_eq!(rows[2]["table"], "order-2024");
    assert_eq!(
        rows[2]["position"]["file"],
        file.file_name().unwrap().to_string_lossy().as_ref()
    );
    assert!(rows[2]["position"]["pos"].as_u64().unwrap() > 4);
    assert!(rows[2]["ts_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(rows[2]["position"]["gtid"]
        .as_str()
        .unwrap()
        .starts_with("0-1-"));
    // Exactly these fields: none that is always null.
    let mut fields: Vec<&str> = rows[2]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "data",
            "database",
            "event",
            "id",
            "position",
            "primary_id",
            "table",
            "timestamp",
            "ts_ms"
        ]
    );
}

/// `rowhook run` delivers, for every type, exactly what `tail` prints for the same
/// binlog — plus what only a live server can tell (MariaDB JSON columns are marked
/// in information_schema, so they arrive as embedded JSON).
#[test]
fn run_delivers_every_type_as_tail_prints_it() {
    use common::receiver::Receiver;
    use common::rowhook::{source_yaml, wait_streaming, Rowhook};

    let db = MariaDb::start();
    db.sql(SCHEMA);
    let receiver = Receiver::ok();
    let config = format!(
        "{}tasks:\n  - {{task_id: all, table_name: 'shop.*', events: [insert, update, delete], callback_url: '{}'}}\n",
        source_yaml(&db),
        receiver.url("/all")
    );
    let _rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    let file = db.sql("SHOW MASTER STATUS")[0][0].clone();
    db.sql(ROWS);
    let delivered = receiver.wait_until(std::time::Duration::from_secs(30), |r| r.len() >= 7);
    db.sql("FLUSH BINARY LOGS");
    let printed = tail(&db.datadir().join(file), None);
    assert_eq!(printed.len(), 7);
    let mut by_id: std::collections::HashMap<String, Value> = delivered
        .iter()
        .map(|r| {
            let p = r.json();
            (p["id"].as_str().unwrap().to_owned(), p)
        })
        .collect();
    assert_eq!(by_id.len(), 7, "each row change delivered once");
    for want in &printed {
        let id = want["id"].as_str().unwrap();
        let mut got = by_id
            .remove(id)
            .unwrap_or_else(|| panic!("{id} not delivered"));
        if want["table"] == "all_types" {
            for image in ["data", "old_data", "new_data"] {
                if let Some(js) = got.get_mut(image).and_then(|i| i.get_mut("js")) {
                    // Text in the binlog, embedded JSON once the schema says JSON.
                    if !js.is_null() {
                        assert_eq!(*js, json!({"a": 1, "b": [true, null]}), "{image}.js");
                        *js = want[image]["js"].clone();
                    }
                }
            }
        }
        assert_eq!(&got, want, "payload {id}");
    }
}

/// What `rowhook run` delivers for SCHEMA + ROWS + LABELS on a server with `mode`,
/// in binlog order, each body with its binlog-position id replaced by its ordinal
/// (FULL TABLE_MAPs are longer, so positions differ; nothing else may).
fn delivered_bodies(mode: RowMetadata) -> Vec<Vec<u8>> {
    use common::receiver::Receiver;
    use common::rowhook::{source_yaml, wait_streaming, Rowhook};

    let db = MariaDb::start_with(mode);
    db.sql(SCHEMA);
    let receiver = Receiver::ok();
    let config = format!(
        "{}tasks:\n  - {{task_id: all, table_name: 'shop.*', events: [insert, update, delete], ordering: table, callback_url: '{}'}}\n",
        source_yaml(&db),
        receiver.url("/all")
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    db.sql(ROWS);
    db.sql(LABELS);
    let delivered = receiver.wait_until(std::time::Duration::from_secs(30), |r| r.len() >= 14);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(receiver.requests().len(), 14, "{}", rowhook.log());
    delivered
        .iter()
        .enumerate()
        .map(|(n, r)| {
            let body = &r.body;
            let id = r.header("webhook-id").unwrap();
            let needle = format!("{{\"id\":\"{id}\"");
            assert!(
                body.starts_with(needle.as_bytes()),
                "{}",
                String::from_utf8_lossy(body)
            );
            let mut out = format!("{{\"id\":\"#{n}\"").into_bytes();
            out.extend_from_slice(&body[needle.len()..]);
            // The two servers may write the same statement in different seconds.
            let field = b",\"timestamp\":\"";
            let at = out
                .windows(field.len())
                .rposition(|w| w == field)
                .expect("a timestamp field")
                + field.len();
            out[at..at + 20].copy_from_slice(b"YYYY-MM-DDThh:mm:ssZ");
            out
        })
        .collect()
}

#[test]
fn minimal_metadata_delivers_byte_identical_payloads_to_full() {
    let (full, minimal) = std::thread::scope(|s| {
        let full = s.spawn(|| delivered_bodies(RowMetadata::Full));
        let minimal = s.spawn(|| delivered_bodies(RowMetadata::Minimal));
        (full.join().unwrap(), minimal.join().unwrap())
    });
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    for (f, m) in full.iter().zip(&minimal) {
        assert_eq!(text(m), text(f), "MINIMAL (left) differs from FULL (right)");
    }
    assert_eq!(full.len(), minimal.len());
    // The labels themselves, as SPEC section 5 gives them.
    let labels: Vec<Value> = full
        .iter()
        .map(|b| serde_json::from_slice::<Value>(b).unwrap())
        .filter(|p| p["table"] == "labels")
        .map(|p| {
            let d = if p["event"] == "update" {
                &p["new_data"]
            } else {
                &p["data"]
            };
            json!([d["e"], d["s"]])
        })
        .collect();
    assert_eq!(
        labels,
        [
            json!(["it's", "x,y,z"]),
            json!(["", ""]),
            json!(["", "y"]),
            json!(["back\\slash", "z"]),
            json!(["c,d", null]),
            json!(["new", "x,w"]),
            json!(["a", "w"]),
        ]
    );
}
