//! How the `agentd serve` process holds its memory, read from `/proc` while it runs (Linux).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
#![cfg(target_os = "linux")]

use agentd_testkit::{ServerOptions, ServerProcess};

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
    let (Some(thp), Some(huge)) = (
        server.proc_field("status", "THP_enabled"),
        server.proc_field("smaps_rollup", "AnonHugePages"),
    ) else {
        eprintln!("skipped: this kernel has no THP_enabled in status or no smaps_rollup");
        return;
    };
    assert_eq!(thp, "0");
    assert_eq!(huge, "0 kB");
}
