//! Retrying the writes that must not be lost silently: a few attempts with backoff (a dropped connection, a
//! restarting database), then an error in the log naming what was lost — and for a finished turn's save,
//! attempts for as long as a database failover takes while the database is unreachable.

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

/// How long a finished turn's save is retried while the database is unreachable: a managed PostgreSQL fails
/// over in one to two minutes, and the reply the user already read is lost if its save gives up first. The
/// turn holds only its reply meanwhile (new turns are refused while the database is down), and its stream
/// keeps its keep-alives.
pub(crate) const SAVE_THROUGH_OUTAGE: Duration = Duration::from_secs(120);
/// The longest wait between two attempts through an outage: short, because the turn's lease has gone stale in
/// an outage longer than it, and the save should land before anyone else takes the conversation (an attempt
/// while the database is down waits for the pool's connection, 5 s, anyway).
const OUTAGE_STEP: Duration = Duration::from_secs(1);

/// [`retrying`], except that while the database is unreachable ([`DbError::Unavailable`]) it goes on trying
/// until `outage` has passed since the first failure, 1 s apart at most, warning once and then every 30 s.
/// Any other error gets the three attempts of [`retrying`], and a closed pool (shutdown) none more.
pub(crate) async fn retrying_through<T, F, Fut>(what: &str, outage: Duration, mut op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DbError>>,
{
    let start = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    let (mut other_errors, mut warned_at) = (0, None::<tokio::time::Instant>);
    loop {
        let e = match op().await {
            Ok(v) => {
                if warned_at.is_some() {
                    tracing::info!(
                        seconds = start.elapsed().as_secs(),
                        "could {what} after the database came back"
                    );
                }
                return Some(v);
            }
            Err(e) => e,
        };
        let waited = start.elapsed();
        let unavailable = matches!(e, DbError::Unavailable(_)) && !e.is_closed();
        other_errors += u32::from(!unavailable);
        if (unavailable && waited >= outage) || other_errors >= 3 || e.is_closed() {
            tracing::error!(error = %e, seconds = waited.as_secs(), "could not {what}; giving up");
            return None;
        }
        if warned_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(30)) {
            tracing::warn!(error = %e, seconds = waited.as_secs(), "could not {what}; retrying");
            warned_at = Some(tokio::time::Instant::now());
        }
        tokio::time::sleep(delay.min(outage.saturating_sub(waited))).await;
        delay = (delay * 5).min(OUTAGE_STEP);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn unavailable() -> DbError {
        DbError::Unavailable(sqlx::Error::PoolTimedOut)
    }

    /// Through an outage the save is tried until the database answers, however many attempts that takes
    /// within the limit; at the limit it gives up; another error gets three attempts.
    #[tokio::test(start_paused = true)]
    async fn a_save_outlasts_an_outage_but_not_forever_and_not_a_real_error() {
        let calls = AtomicU32::new(0);
        let back_after = |n: u32| {
            let calls = &calls;
            move || async move {
                let k = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if k > n { Ok(k) } else { Err(unavailable()) }
            }
        };
        let start = tokio::time::Instant::now();
        assert_eq!(
            retrying_through("save", Duration::from_secs(120), back_after(20)).await,
            Some(21)
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{:?}",
            start.elapsed()
        );
        // 0.1 s, 0.5 s, then 1 s apart: back within a second of the database.
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(18_600),
            "1 s apart at most"
        );

        calls.store(0, Ordering::SeqCst);
        let start = tokio::time::Instant::now();
        assert_eq!(
            retrying_through("save", Duration::from_secs(120), back_after(u32::MAX)).await,
            None
        );
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(120),
            "it gives up at the limit"
        );

        calls.store(0, Ordering::SeqCst);
        let refused = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(DbError::Conflict("k".into()))
        };
        assert_eq!(
            retrying_through("save", Duration::from_secs(120), refused).await,
            None
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        calls.store(0, Ordering::SeqCst);
        let closed = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(DbError::Unavailable(sqlx::Error::PoolClosed))
        };
        assert_eq!(
            retrying_through("save", Duration::from_secs(120), closed).await,
            None
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a closed pool (shutdown) gets no more attempts"
        );
    }
}
