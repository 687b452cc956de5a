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

/// Runs Debian's promtool (package `prometheus`, installed by .ci/run).
fn promtool(args: &[&str], stdin: Option<&[u8]>) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(common::root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool (apt install prometheus): {e}"));
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn prometheus_rules_config_alert_tests_and_a_real_scrape_pass_promtool() {
    for args in [
        &["check", "rules", "tuning/prometheus/alerts.yml"][..],
        &["check", "config", "tuning/prometheus/scrape.yml"][..],
        &["test", "rules", "tuning/prometheus/alerts_test.yml"][..],
    ] {
        let (code, out) = promtool(args, None);
        assert_eq!(code, Some(0), "promtool {args:?}:\n{out}");
    }
    // A real scrape of an instance that delivered something (histograms filled).
    let db = common::mariadb::MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY);");
    let receiver = common::receiver::Receiver::ok();
    let port = common::mariadb::free_port();
    let config = format!(
        "{}server: {{enabled: true, port: {port}}}
tasks:
  - {{task_id: t, table_name: shop.t, events: [insert], callback_url: '{}'}}
",
        common::rowhook::source_yaml(&db),
        receiver.url("/t")
    );
    let _rowhook = common::rowhook::Rowhook::run(&config);
    common::rowhook::wait_streaming(&db);
    db.sql("INSERT INTO shop.t VALUES (1), (2)");
    receiver.wait_until(std::time::Duration::from_secs(20), |r| r.len() >= 2);
    let (status, metrics) = common::loadgen::http(port, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("rowhook_events_delivered_total{task=\"t\"} 2"),
        "{metrics}"
    );
    let (code, out) = promtool(&["check", "metrics"], Some(metrics.as_bytes()));
    assert_eq!(code, Some(0), "promtool check metrics:\n{out}");
    assert!(out.trim().is_empty(), "lint findings:\n{out}");
}
