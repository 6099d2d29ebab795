//! Retrying the writes that must not be lost silently: a few attempts with backoff (a dropped connection, a
//! restarting database), then an error in the log naming what was lost.

use agentd_db::DbError;
use std::time::Duration;

/// Runs a database write up to three times (a dropped connection, a restarting server), then gives up with
/// an error in the log naming `what`. Lost writes are never silent.
pub(crate) async fn retrying<T, F, Fut>(what: &str, mut op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DbError>>,
{
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=3 {
        match op().await {
            Ok(v) => return Some(v),
            Err(e) if attempt < 3 => {
                tracing::warn!(error = %e, attempt, "could not {what}; retrying");
                tokio::time::sleep(delay).await;
                delay *= 5;
            }
            Err(e) => tracing::error!(error = %e, "could not {what} after {attempt} attempts"),
        }
    }
    None
}
