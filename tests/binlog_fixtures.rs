//! Every recorded binlog in tests/fixtures/binlog (real MySQL 5.1-9.x and MariaDB
//! files, see its README) through `rowhook tail --file`, checked against
//! mysql_common's own decoding of the same files.

mod common;

use common::oracle::agrees;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::EventData;
use mysql_common::binlog::value::BinlogValue;
use mysql_common::binlog::BinlogFile;
use serde_json::Value;

fn fixtures() -> Vec<PathBuf> {
    let dir = common::root().join("tests/fixtures/binlog");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_none_or(|e| e != "md") && !p.to_string_lossy().contains("plaintext")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 28, "fixtures missing: {files:?}");
    files
}

fn tail(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rowhook"))
        .args(["tail", "--file"])
        .arg(path)
        .output()
        .unwrap()
}

/// Deliberately broken files and the offset their error must name.
const TRUNCATED: &[(&str, &str)] = &[
    (
        "rust_mysql_common__binlog_truncated_event.000001",
        "truncated at byte offset 4",
    ),
    (
        "rust_mysql_common__binlog_truncated_prev_gtid_event.000001",
        "truncated at byte offset 120",
    ),
];

#[test]
fn every_fixture_decodes_or_fails_clearly() {
    let mut report = Vec::new();
    for path in fixtures() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let out = tail(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{name} panicked:\n{stderr}");
        let expected_failure = TRUNCATED.iter().find(|(f, _)| *f == name);
        match expected_failure {
            Some((_, words)) => {
                assert_eq!(out.status.code(), Some(1), "{name} should fail");
                assert!(stderr.contains(words), "{name}: {stderr}");
            }
            None => assert!(out.status.success(), "{name}: {stderr}"),
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("{name}: invalid JSON ({e}): {line}"));
        }
        if name == "rust_mysql_common__json.binlog.000001" {
            // Its PARTIAL_UPDATE_ROWS event was logged with a MINIMAL before image:
            // the diffs come as they are (README: partial JSON updates).
            let text = String::from_utf8_lossy(&out.stdout);
            let partial: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|v| v["new_data"]["@2"].get("$json_diff").is_some())
                .collect();
            assert_eq!(partial.len(), 6, "{text}");
            for v in &partial {
                let diff = &v["new_data"]["@2"]["$json_diff"][0];
                assert_eq!(diff["op"], "replace", "{v}");
                assert_eq!(diff["path"], "$.age", "{v}");
                // The generated column age = json_col->'$.age' shows the same value.
                assert_eq!(diff["value"], v["new_data"]["@4"], "{v}");
            }
        }
        report.push(format!(
            "{name}: {} payloads",
            out.stdout.iter().filter(|&&b| b == b'\n').count()
        ));
    }
    eprintln!("{}", report.join("\n"));
}

/// Flattens payloads to images in binlog order: insert/delete `data`, update old then new.
fn our_images(stdout: &[u8]) -> Vec<Vec<Value>> {
    let mut images = Vec::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        for key in ["data", "old_data", "new_data"] {
            if let Some(obj) = v.get(key).and_then(Value::as_object) {
                images.push(obj.values().cloned().collect());
            }
        }
    }
    images
}

fn oracle_images(path: &Path) -> Vec<Vec<Option<BinlogValue<'static>>>> {
    let file = std::fs::File::open(path).unwrap();
    let mut binlog =
        BinlogFile::new(BinlogVersion::Version4, std::io::BufReader::new(file)).unwrap();
    let mut images = Vec::new();
    while let Some(Ok(event)) = binlog.next() {
        // A compressed transaction's inner events are read through the same reader.
        if let Ok(Some(EventData::TransactionPayloadEvent(payload))) = event.read_data() {
            let mut inner = payload.decompressed().unwrap();
            while let Some(e) = binlog.reader_mut().read_decompressed(&mut inner).unwrap() {
                rows_of(&binlog, &e, &mut images);
            }
            continue;
        }
        rows_of(&binlog, &event, &mut images);
    }
    images
}

fn rows_of<R: std::io::BufRead>(
    binlog: &BinlogFile<R>,
    event: &mysql_common::binlog::events::Event,
    images: &mut Vec<Vec<Option<BinlogValue<'static>>>>,
) {
    let Ok(Some(EventData::RowsEvent(rows))) = event.read_data() else {
        return;
    };
    let Some(tme) = binlog.reader().get_tme(rows.table_id()) else {
        return;
    };
    for row in rows.rows(tme) {
        let (before, after) = row.unwrap();
        for image in [before, after].into_iter().flatten() {
            let n = image.len();
            let mut image = image;
            images.push(
                (0..n)
                    .map(|i| image.take(i).map(BinlogValue::into_owned))
                    .collect(),
            );
        }
    }
}

#[test]
fn values_agree_with_mysql_common() {
    let mut compared = 0usize;
    let mut mismatches = Vec::new();
    for path in fixtures() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if TRUNCATED.iter().any(|(f, _)| *f == name) {
            continue;
        }
        let ours = our_images(&tail(&path).stdout);
        let theirs = oracle_images(&path);
        assert_eq!(ours.len(), theirs.len(), "{name}: image count");
        for (row, (o, t)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(o.len(), t.len(), "{name} row {row}: column count");
            for (col, (ov, tv)) in o.iter().zip(t).enumerate() {
                match agrees(ov, tv) {
                    Some(true) => compared += 1,
                    Some(false) => {
                        mismatches.push(format!("{name} row {row} col {col}: ours {ov} vs {tv:?}"))
                    }
                    None => {}
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(30)].join("\n")
    );
    // The sakila file alone has ~47k rows; a vacuous comparison must not pass.
    assert!(compared > 200_000, "only {compared} values compared");
    eprintln!("{compared} values agree");
}
