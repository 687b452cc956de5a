//! One task definition from an etcd value or an admin API body (YAML or JSON):
//! read, validated and planned, or rejected with problems — never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn running() -> &'static rowhook::config::Config {
    static RUNNING: OnceLock<rowhook::config::Config> = OnceLock::new();
    RUNNING.get_or_init(|| {
        let config = "database: {host: h, user: u, server_id: 1, database: shop}\ncallback_host: http://hooks:3000/\ntasks_source: {etcd: {endpoints: ['http://127.0.0.1:2379']}}\n";
        match rowhook::config::load_texts(&[("config.yaml", config)], None) {
            Ok(l) => l.config,
            Err(e) => panic!("the fuzz target's own config is invalid: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(task) = rowhook::config::task_from_text("etcd /rowhook/tasks/t", "t", text, running()) {
        assert_eq!(task.task_id, "t");
        let _ = rowhook::delivery::plan::check_task(&task);
    }
});
