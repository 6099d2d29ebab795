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

/// A server on a fresh PostgreSQL database and a conversation of one turn in it, tenant `demo`, read once.
struct Chatted {
    db: agentd_testkit::TestDb,
    server: ServerProcess,
    token: String,
    conversation: String,
}

impl Chatted {
    /// `GET` the conversation, unread.
    async fn get(&self) -> reqwest::Response {
        let path = format!("/v1/conversations/{}", self.conversation);
        self.server
            .http()
            .get(self.server.url(&path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }
}

async fn chatted() -> Chatted {
    let db = agentd_testkit::fresh_postgres().await;
    let server =
        ServerProcess::start(ServerOptions::new(env!("CARGO_BIN_EXE_agentd")).database(&db.settings.url))
            .await;
    let token = server.token("demo", "dev");
    let first: serde_json::Value = server
        .http()
        .post(server.url("/v1/chat"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"agent": "assistant", "message": "hello"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    let c = Chatted {
        db,
        server,
        token,
        conversation,
    };
    // Warm: a first read of the conversation, short yet.
    assert_eq!(c.get().await.status(), 200);
    c
}

/// A long conversation is sent a page of messages at a time: reading one of ~51 MB raises the server's peak
/// memory by a few MB, not by the conversation's size several times over (rows, views and JSON text were each
/// held whole: a few such requests at once could take the process's memory). The body is the same JSON, every
/// message once, oldest first — messages written in the same microsecond too.
#[tokio::test]
async fn a_long_conversation_is_sent_without_being_held_whole() {
    const MESSAGES: i64 = 1_600;
    const CHARS: usize = 32_000;
    let c = chatted().await;
    let (server, conversation) = (&c.server, &c.conversation);
    // 32,000 characters each; three to an instant.
    agentd_testkit::long_conversation(&c.db.db, "demo", conversation, MESSAGES, 1000, 3).await;
    let before = server.peak_rss_kb();
    let res = c.get().await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body = res.bytes().await.unwrap();
    let grew_mb = (server.peak_rss_kb() - before) as f64 / 1024.0;
    eprintln!("peak RSS +{grew_mb:.1} MB for {} bytes", body.len());
    assert!(body.len() > MESSAGES as usize * CHARS, "{} bytes", body.len());
    assert!(
        grew_mb < 24.0,
        "reading a {:.0} MB conversation raised the peak RSS by {grew_mb:.1} MB",
        body.len() as f64 / 1e6
    );
    let detail: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(detail["id"], conversation.as_str());
    assert!(detail["active_run"].is_null());
    let messages = detail["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2 + MESSAGES as usize);
    assert_eq!(messages[0]["content"], "hello");
    let ids: std::collections::HashSet<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), messages.len(), "every message once");
    let mut order: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m["created_at"].as_str().unwrap(), m["id"].as_str().unwrap()))
        .collect();
    let as_read = order.clone();
    order.sort_by_key(|(at, id)| (chrono::DateTime::parse_from_rfc3339(at).unwrap(), *id));
    assert_eq!(as_read, order, "oldest first");
    assert!(
        messages[2..]
            .iter()
            .all(|m| m["content"].as_str().unwrap().len() == CHARS)
    );
}

/// Clients that read nothing cannot make the server hold long conversations: each detail being sent holds one
/// page — at most 32 messages, those before its last under 1 MiB together — and a tenant has at most
/// twice `READS_PER_TENANT` (2 × 8) being sent at once. Here sixteen unread reads of a conversation of 3 MB
/// messages, then a seventeenth refused. (With pages of 32 such messages, each read held ~100 MB; with no limit
/// on their number, as many as a client opened.)
#[tokio::test]
async fn unread_conversations_hold_a_bounded_page_each() {
    const MESSAGES: i64 = 40;
    const MB: i32 = 3;
    let c = chatted().await;
    let server = &c.server;
    agentd_testkit::long_conversation(&c.db.db, "demo", &c.conversation, MESSAGES, MB * 32_768, 1).await;
    let before = server.peak_rss_kb();
    let mut unread = Vec::new();
    for _ in 0..16 {
        let res = c.get().await;
        assert_eq!(res.status(), 200);
        unread.push(res);
    }
    let refused = c.get().await;
    assert_eq!(refused.status(), 429);
    // Until the sixteen have filled their sockets and stalled: the peak holds still for half a second (10 s at
    // most), so that a slow machine does not measure it before it is reached.
    let mut peak = server.peak_rss_kb();
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = server.peak_rss_kb();
        if now == peak {
            break;
        }
        peak = now;
    }
    let grew_mb = (peak - before) as f64 / 1024.0;
    eprintln!("peak RSS +{grew_mb:.1} MB with 16 unread reads of {MESSAGES} × {MB} MB messages");
    assert!(grew_mb < 300.0, "peak RSS grew by {grew_mb:.1} MB");
    drop(unread);
}
