//! Who is waiting for which run: readers of a run's events park here and are woken when new events of it are
//! written — by this process's journal writer directly, and on PostgreSQL by every replica's writes through
//! `LISTEN agentd_run_events` (payload: run id and last id; readers fetch the rows themselves). A missed
//! notification costs a reader at most its poll interval.

use agentd_db::Db;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The registry of runs being followed. Cheap to clone.
#[derive(Clone, Default)]
pub struct RunBus(Arc<Mutex<HashMap<String, watch::Sender<i64>>>>);

/// A reader's interest in one run; wakes on every new last id.
pub struct Subscription {
    bus: RunBus,
    run: String,
    rx: watch::Receiver<i64>,
}

impl RunBus {
    /// Starts listening for other replicas' writes (PostgreSQL only; SQLite has one process).
    pub(crate) fn listen(&self, db: &Db) {
        if !matches!(db, Db::Postgres(_)) {
            return;
        }
        let (bus, db) = (self.clone(), db.clone());
        tokio::spawn(async move {
            loop {
                match db.listen_run_events().await {
                    Ok(Some(mut listener)) => loop {
                        match listener.recv().await {
                            Ok((run, last)) => bus.published(&run, last),
                            Err(e) => {
                                tracing::warn!(error = %e, "run event notifications interrupted; readers poll meanwhile");
                                break;
                            }
                        }
                    },
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for run events; readers poll meanwhile");
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// Follows `run`.
    pub fn subscribe(&self, run: &str) -> Subscription {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = map.entry(run.to_owned()).or_insert_with(|| watch::channel(0).0);
        Subscription {
            bus: self.clone(),
            run: run.to_owned(),
            rx: tx.subscribe(),
        }
    }

    /// Events of `run` up to `last_id` are written.
    pub fn published(&self, run: &str, last_id: i64) {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = map.get(run) {
            tx.send_if_modified(|v| {
                let newer = last_id > *v;
                *v = (*v).max(last_id);
                newer
            });
        }
    }
}

impl Subscription {
    /// Waits until something new was published for the run, or `timeout` passed.
    pub async fn changed(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.rx.changed()).await;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self
            .bus
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Our receiver still counts until this drop ends: 1 means we were the last reader.
        if map.get(&self.run).is_some_and(|tx| tx.receiver_count() <= 1) {
            map.remove(&self.run);
        }
    }
}
