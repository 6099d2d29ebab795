//! Fresh, migrated databases for one test each.

use agentd_db::{Db, DbSettings};
use sqlx::Connection as _;

/// A database for one test; the SQLite file lives as long as this value.
pub struct TestDb {
    pub db: Db,
    pub settings: DbSettings,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// The same database through a pool of its own, for a second app on it (another replica). A SQLite file
    /// lives only as long as the first handle.
    pub async fn replica(&self) -> TestDb {
        TestDb {
            db: Db::connect(&self.settings).await.unwrap(),
            settings: self.settings.clone(),
            _dir: None,
        }
    }
}

/// Writes `messages` messages straight into a conversation of `tenant` on PostgreSQL, each of `md5s` 32-character
/// runs, sorted after everything already in it and `per_instant` to a microsecond: a long conversation without
/// as many turns.
pub async fn long_conversation(
    db: &Db,
    tenant: &str,
    conversation: &str,
    messages: i64,
    md5s: i32,
    per_instant: i64,
) {
    let Db::Postgres(pool) = db else {
        panic!("long_conversation writes on PostgreSQL")
    };
    sqlx::query(
        "INSERT INTO messages (id, tenant_id, conversation_id, role, content, attachments, created_at) \
         SELECT gen_random_uuid(), $1, $2::uuid, 'user', repeat(md5(g::text), $4), '[]', \
                now() + interval '1 hour' + (g / $5) * interval '1 microsecond' \
         FROM generate_series(1, $3) AS g",
    )
    .bind(tenant)
    .bind(conversation)
    .bind(messages)
    .bind(md5s)
    .bind(per_instant)
    .execute(pool)
    .await
    .unwrap();
}

/// A new database on the test PostgreSQL cluster, migrated.
pub async fn fresh_postgres() -> TestDb {
    let t = fresh_postgres_unmigrated().await;
    t.db.migrate().await.unwrap();
    t
}

/// A new, migrated database on the cluster at `admin` (e.g. a [`crate::PrivatePostgres`]).
pub async fn fresh_postgres_at(admin: &str) -> TestDb {
    let t = create_database(admin).await;
    t.db.migrate().await.unwrap();
    t
}

/// A new, empty database on the test PostgreSQL cluster.
pub async fn fresh_postgres_unmigrated() -> TestDb {
    crate::init_tracing();
    let admin = std::env::var("AGENTD_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "AGENTD_TEST_DATABASE_URL is not set: run the suite with `just test` (it starts PostgreSQL), or \
             `eval \"$(scripts/test-services.sh start)\"` first"
        )
    });
    create_database(&admin).await
}

async fn create_database(admin: &str) -> TestDb {
    let name = format!("t_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .expect("connect to the test PostgreSQL cluster");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    let (base, _) = admin
        .rsplit_once('/')
        .expect("AGENTD_TEST_DATABASE_URL ends with /<database>");
    let settings = DbSettings {
        url: format!("{base}/{name}"),
        max_connections: 4,
        ..Default::default()
    };
    let db = Db::connect(&settings).await.unwrap();
    TestDb {
        db,
        settings,
        _dir: None,
    }
}

/// A new SQLite database in a temporary directory, migrated.
pub async fn fresh_sqlite() -> TestDb {
    crate::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let settings = DbSettings {
        url: format!("sqlite://{}/agentd.sqlite", dir.path().display()),
        ..Default::default()
    };
    let db = Db::connect(&settings).await.unwrap();
    db.migrate().await.unwrap();
    TestDb {
        db,
        settings,
        _dir: Some(dir),
    }
}

/// How many connections to `db` (PostgreSQL) wait for a lock now.
pub async fn lock_waiters(db: &Db) -> i64 {
    let Db::Postgres(pool) = db else {
        panic!("lock waiters are counted on PostgreSQL")
    };
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits (10 s at most) until `n` connections to `db` (PostgreSQL) wait for a lock; panics naming `what` if not.
pub async fn until_lock_waiters(db: &Db, n: i64, what: &str) {
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while lock_waiters(db).await != n {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"));
}
