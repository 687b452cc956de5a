//! The loadgen command line: bad usage is refused with a message and exit 2, a
//! binlog without a row count is refused, and `binlog` writes a file that starts
//! like a binlog. (Also makes `cargo test --workspace` build the loadgen binary
//! that rowhook's integration tests drive.)

use std::process::Command;

fn loadgen(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_usage_is_refused() {
    assert_eq!(loadgen(&[]).0, Some(2));
    assert_eq!(loadgen(&["master", "--rate", "x"]).0, Some(2));
    let (code, _, err) = loadgen(&["master", "--mix", "1:2"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--mix"), "{err}");
    let (code, _, err) = loadgen(&["binlog", "--out", "/tmp/never-written.bin"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--rows"), "{err}");
}

#[test]
fn binlog_writes_a_binlog() {
    let dir = std::env::temp_dir().join(format!("loadgen-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("x.bin");
    let (code, out, err) = loadgen(&["binlog", "--out", file.to_str().unwrap(), "--rows", "10"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"rows\":10"), "{out}");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..4], b"\xfebin");
    assert_eq!(bytes[4 + 4], 15, "a FORMAT_DESCRIPTION event comes first");
    let _ = std::fs::remove_dir_all(&dir);
}
