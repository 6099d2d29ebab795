//! Waiting at startup for what agentd cannot serve without — the database and the object store — when it is
//! not reachable yet: started beside agentd by compose or a pod, or too slow to answer in time (a busy disk
//! once kept SQLite's first connection past the pool's 5 s on CI). Only errors that a later attempt may not
//! repeat are waited out; a refusal (bad credentials, no such database or bucket) stops startup at once.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// How long `serve` keeps starting attempts at a dependency it cannot reach before it gives up (exit 2).
pub const WAIT: Duration = Duration::from_secs(30);

/// Runs `attempt` until it succeeds, fails with an error `transient` does not accept, or no new attempt may start
/// within `wait`; warns at each failed attempt, naming `what`. An attempt in progress is never cut short (a
/// long migration must finish), so the last one may end after `wait`.
pub async fn wait_for<T, E, F, Fut>(
    what: &str,
    wait: Duration,
    transient: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(250);
    let mut attempts = 0_u32;
    loop {
        attempts += 1;
        match attempt().await {
            Err(e) if transient(&e) && tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(
                    attempt = attempts,
                    error = %e,
                    retry_in_ms = pause.as_millis(),
                    "waiting for {what}"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use std::cell::Cell;

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_waited_out_and_others_returned_at_once() {
        let calls = Cell::new(0);
        let ok = wait_for(
            "x",
            WAIT,
            |e: &&str| *e == "later",
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { if n < 4 { Err("later") } else { Ok(n) } }
            },
        )
        .await;
        assert_eq!(ok, Ok(4));

        calls.set(0);
        let refused: Result<(), &str> = wait_for(
            "x",
            WAIT,
            |e: &&str| *e == "later",
            || {
                calls.set(calls.get() + 1);
                async { Err("never") }
            },
        )
        .await;
        assert_eq!((refused, calls.get()), (Err("never"), 1));

        let started = tokio::time::Instant::now();
        let given_up: Result<(), &str> =
            wait_for("x", WAIT, |_: &&str| true, || async { Err("later") }).await;
        assert_eq!(given_up, Err("later"));
        assert!(started.elapsed() <= WAIT, "{:?}", started.elapsed());
        assert!(
            started.elapsed() >= WAIT - Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
