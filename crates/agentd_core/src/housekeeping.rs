//! Housekeeping, per process (harmless when every replica does it): idempotency keys older than 24 hours and
//! run events older than `RUN_EVENTS_RETENTION_HOURS` are deleted, every ten minutes.

use crate::TurnSettings;
use agentd_db::Db;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(600);

pub(crate) async fn run(db: Db, settings: TurnSettings, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        sweep(&db, &settings).await;
    }
}

/// One sweep; failures are logged and retried at the next one.
pub(crate) async fn sweep(db: &Db, settings: &TurnSettings) {
    let now = agentd_db::now();
    match db.purge_idempotency(now - agentd_db::IDEMPOTENCY_TTL).await {
        Ok(n) if n > 0 => tracing::info!(deleted = n, "expired idempotency keys purged"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot purge expired idempotency keys"),
    }
    let retention = chrono::Duration::hours(settings.run_events_retention_hours as i64);
    match db.purge_run_events(now - retention).await {
        Ok(n) if n > 0 => tracing::info!(deleted = n, "expired run events purged"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot purge expired run events"),
    }
}
