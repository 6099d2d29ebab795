//! How the `agentd serve` process holds its memory, read from `/proc` while it runs (Linux).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
#![cfg(target_os = "linux")]

use agentd_testkit::{ServerOptions, ServerProcess};

/// The value of a `Name:   value` line of a `/proc/<pid>/…` file; `None` when this kernel has no such file or
/// line (`smaps_rollup` is Linux 4.14+, `THP_enabled` 5.0+).
fn proc_field(pid: u32, file: &str, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = text.lines().find(|l| l.split(':').next() == Some(name))?;
    Some(line[name.len() + 1..].trim().to_owned())
}

/// Transparent huge pages are off for the server process, and none of its memory is in them after a few turns.
/// A 2 MiB page that holds a few live objects counts whole in the RSS: before, mimalloc asked for them on its
/// arenas, and on a kernel in `madvise` mode (Debian's and Ubuntu's default) the idle server already had 12 MB
/// in huge pages and 200 text streams peaked at 104–109 MB of RSS instead of 64–66 MB.
#[tokio::test]
async fn the_heap_is_kept_in_small_pages() {
    let server = ServerProcess::start(ServerOptions::new(env!("CARGO_BIN_EXE_agentd"))).await;
    let token = server.token("demo", "dev");
    for i in 0..5 {
        let res = server
            .http()
            .post(server.url("/v1/chat"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"agent": "assistant", "message": format!("hello {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
    let pid = server.pid();
    let (Some(thp), Some(huge)) = (
        proc_field(pid, "status", "THP_enabled"),
        proc_field(pid, "smaps_rollup", "AnonHugePages"),
    ) else {
        eprintln!("skipped: this kernel has no THP_enabled in status or no smaps_rollup");
        return;
    };
    assert_eq!(thp, "0");
    assert_eq!(huge, "0 kB");
}
