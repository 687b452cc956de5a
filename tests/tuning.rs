//! The host tools in tuning/ run on this machine and say what they promise.

mod common;

use std::process::Command;

fn run(script: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new("bash")
        .arg(common::root().join("tuning").join(script))
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
fn check_sh_reports_every_item_and_exits_by_its_failures() {
    let (code, out, err) = run("check.sh", &[]);
    let lines: Vec<&str> = out.lines().collect();
    let (summary, items) = lines.split_last().expect("some output");
    assert!(err.is_empty(), "{err}");
    assert!(items.len() >= 10, "{out}");
    for l in items {
        assert!(
            l.starts_with("ok    ") || l.starts_with("warn  ") || l.starts_with("FAIL  "),
            "unexpected line {l:?}"
        );
    }
    assert!(out.contains("io_uring"), "{out}");
    assert!(out.contains("memlock"), "{out}");
    let fails = items.iter().filter(|l| l.starts_with("FAIL")).count();
    let warns = items.iter().filter(|l| l.starts_with("warn")).count();
    assert_eq!(*summary, format!("{fails} problem(s), {warns} warning(s)"));
    assert_eq!(code, Some(if fails == 0 { 0 } else { 1 }), "{out}");
}

#[test]
fn irq_affinity_previews_and_refuses_bad_cpu_lists() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= 2 {
        let (code, out, err) = run("irq-affinity.sh", &[&(cpus - 1).to_string(), "--dry-run"]);
        assert_eq!(code, Some(0), "{err}");
        // Every listed interrupt moves to the CPUs that are left.
        let left = (0..cpus - 1)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(
            out.lines()
                .all(|l| l.starts_with("irq ") && l.ends_with(&format!("-> {left}"))),
            "{out}"
        );
    }
    let (code, _, err) = run("irq-affinity.sh", &["999", "--dry-run"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("does not exist"), "{err}");
    let (code, _, err) = run("irq-affinity.sh", &["a-b", "--dry-run"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("bad CPU list"), "{err}");
    let all = format!("0-{}", cpus - 1);
    let (code, _, err) = run("irq-affinity.sh", &[&all, "--dry-run"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no CPU left"), "{err}");
}
