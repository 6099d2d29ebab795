//! The open-files limit of `agentd serve`, in a test binary of its own: the test lowers its own process's limit
//! for the child to inherit, which no other test may share.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
#![cfg(target_os = "linux")]

use agentd_testkit::{ServerOptions, ServerProcess};
use std::time::Duration;

/// Every connection is a file descriptor, and the usual soft limit (1024 under systemd and recent container
/// runtimes) would let a thousand idle clients stop every other from being accepted. Started with a soft limit
/// of 256, the server raises it to the hard limit and accepts 400 idle connections and a `/healthz` beside them
/// within 5 s (before: it stopped accepting at about 220, and the rest waited until the idle ones were cut off
/// after `HTTP_HEADER_TIMEOUT_SECONDS`).
#[tokio::test]
async fn a_low_open_files_limit_is_raised_so_idle_clients_cannot_crowd_out_the_rest() {
    use rlimit::Resource;
    let (soft, hard) = Resource::NOFILE.get().unwrap();
    assert!(hard >= 1024, "this machine's hard open-files limit is {hard}");
    // The child inherits the limit; this process gets its own back at once.
    Resource::NOFILE.set(256, hard).unwrap();
    let started = ServerProcess::try_start(ServerOptions::new(env!("CARGO_BIN_EXE_agentd"))).await;
    Resource::NOFILE.set(soft, hard).unwrap();
    let server = started.unwrap_or_else(|e| panic!("{e}"));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let figures: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(figures, vec![hard, hard], "{line}");
    // Within 5 s (the idle connections are cut after HTTP_HEADER_TIMEOUT_SECONDS, 10, which would free room).
    let (idle, res) = tokio::time::timeout(Duration::from_secs(5), async {
        let mut idle = Vec::new();
        for _ in 0..400 {
            idle.push(tokio::net::TcpStream::connect(server.addr()).await.unwrap());
        }
        let res = server.http().get(server.url("/healthz")).send().await.unwrap();
        (idle, res)
    })
    .await
    .expect("400 idle connections are accepted and /healthz answers beside them");
    assert_eq!(res.status(), 200);
    drop(idle);
}
