//! Whether PostgreSQL takes this process's notifications of run events. It refuses every one while its queue
//! is full (a listener anywhere stopped reading while notifications kept coming) and fails the statement that
//! sent it: then the journal writes chunks without them and announces them apart, and until a notification
//! goes through again the other replicas' readers find new events by their look at the run every 5 s. A
//! refusal is logged when it starts (at most once a minute, should it come and go) and, if logged, when it
//! ends — never per batch.

use agentd_db::DbError;
use std::time::Duration;
use tokio::time::Instant;

/// Refusals are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(super) struct Notes {
    /// Notifications are refused: write without them.
    pub refused: bool,
    /// When a refusal was last logged.
    warned: Option<Instant>,
    /// This refusal was logged (so its end is too).
    logged: bool,
}

impl Notes {
    /// A notification was refused for a full queue.
    pub fn refuse(&mut self, e: &DbError) {
        let due = self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if self.refused && (self.logged || !due) {
            return;
        }
        // A new refusal, or one that came back within the minute (quiet then) and has lasted past it.
        self.refused = true;
        self.logged = due;
        if self.logged {
            tracing::warn!(error = %e, "PostgreSQL refuses notifications (its queue is full: a listener stopped \
                reading); run events are written without them, and readers on other replicas poll every 5 s");
            self.warned = Some(Instant::now());
        }
    }

    /// What sending the notifications of `n` chunks gave.
    pub fn sent(&mut self, r: Result<(), DbError>, n: usize) {
        match r {
            Ok(()) if self.refused => {
                self.refused = false;
                if self.logged {
                    tracing::info!("PostgreSQL takes notifications of run events again");
                }
            }
            Ok(()) => {}
            Err(e) if e.is_notify_queue_full() => self.refuse(&e),
            Err(e) => tracing::warn!(error = %e, chunks = n,
                "cannot notify other replicas of run events; their readers poll"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> DbError {
        // Not a database error sqlx can be given from outside; a full queue is checked by its code in the
        // integration test. Here: the transitions, driven through `refuse`.
        DbError::Config("queue full".into())
    }

    /// Refused until a notification goes through; a refusal that comes back within the minute is not logged
    /// again (nor its end), one after it is.
    #[tokio::test(start_paused = true)]
    async fn a_refusal_lasts_until_a_notification_goes_through_and_is_logged_once_a_minute() {
        let mut n = Notes::default();
        n.refuse(&full());
        assert!(n.refused && n.logged);
        n.sent(Ok(()), 1);
        assert!(!n.refused);
        n.refuse(&full());
        assert!(n.refused && !n.logged, "again within the minute: quiet");
        n.sent(Err(DbError::Config("down".into())), 1);
        assert!(
            n.refused,
            "another error is no sign that notifications go through"
        );
        tokio::time::advance(WARN_EVERY).await;
        n.refuse(&full());
        assert!(
            n.refused && n.logged,
            "a quiet refusal that lasts past the minute is logged"
        );
        n.sent(Ok(()), 1);
        tokio::time::advance(WARN_EVERY).await;
        n.refuse(&full());
        assert!(n.refused && n.logged);
    }
}
