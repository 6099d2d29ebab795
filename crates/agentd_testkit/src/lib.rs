//! Test harness shared by the integration suites: a fresh database per test (PostgreSQL on the cluster that
//! `scripts/test-services.sh` started, or a SQLite file), quiet tracing, and the HTTP app on a loopback port.
//!
//! PostgreSQL is found through `AGENTD_TEST_DATABASE_URL` (an admin URL of the test cluster). When it is unset
//! the PostgreSQL tests fail with instructions; they never pass silently.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod app;
mod db;
mod pg;
mod process;

pub use app::{SseEvent, Streamed, TEST_SECRET, TestApp, TestAppBuilder, parse_sse};
pub use db::{
    TestDb, fresh_postgres, fresh_postgres_at, fresh_postgres_unmigrated, fresh_sqlite, lock_waiters,
    long_conversation, until_lock_waiters,
};
pub use pg::PrivatePostgres;
pub use process::{ServerOptions, ServerProcess, StartFailure, Starting, agent_workdir};

/// Installs a test subscriber once; silent unless `TEST_LOG` is set.
pub fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug,sqlx=warn,hyper=info")
                .with_test_writer()
                .try_init();
        }
    });
}
