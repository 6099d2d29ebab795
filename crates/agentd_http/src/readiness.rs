//! What `/readyz` last found of the dependencies, shared by every request for it. The route needs no token, and
//! each check costs a pooled database connection and a call to the object store (billed, and throttled, on a
//! real S3): so the dependencies are asked at most once a second, by one request at a time, and everyone else
//! gets that answer — a flood of `/readyz` cannot take the pool from the turns or become a flood of store calls.

use agentd_db::Db;
use agentd_storage::BlobStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long an answer stands.
const FRESH: Duration = Duration::from_secs(1);
/// How long one dependency may take to answer.
const LIMIT: Duration = Duration::from_secs(3);

/// The last check, for every `/readyz`.
#[derive(Default)]
pub struct Readiness(Arc<Mutex<Option<Checked>>>);

/// One look at the dependencies: `Err` says why one is down.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    at: Instant,
    pub database: Result<(), String>,
    pub object_store: Result<(), String>,
}

impl Readiness {
    /// The dependencies' state, asked now unless it was within the last second; `true` when asked now (what
    /// is worth logging). The look runs in a task of its own: a request that goes away meanwhile (a probe
    /// that timed out) still leaves its answer for the next.
    pub(crate) async fn check(&self, db: &Db, store: &Arc<dyn BlobStore>) -> (Checked, bool) {
        let (last, db, store) = (self.0.clone(), db.clone(), store.clone());
        let look = tokio::spawn(async move {
            let mut last = last.lock_owned().await;
            if let Some(c) = last.as_ref().filter(|c| c.at.elapsed() < FRESH) {
                return (c.clone(), false);
            }
            let (database, object_store) = tokio::join!(
                bounded(async { db.ping().await.map_err(|e| e.to_string()) }),
                bounded(async { store.check().await.map_err(|e| e.to_string()) }),
            );
            let c = Checked {
                at: Instant::now(),
                database,
                object_store,
            };
            *last = Some(c.clone());
            (c, true)
        });
        look.await.unwrap_or_else(|e| {
            let down = Err(format!("the check failed: {e}"));
            let c = Checked {
                at: Instant::now(),
                database: down.clone(),
                object_store: down,
            };
            (c, true)
        })
    }
}

async fn bounded(f: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", LIMIT.as_secs())))
}
