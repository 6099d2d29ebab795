//! Timing an observed run of `bench-resume`: each event's arrival on the original stream, on a follower on the
//! replica running the turn and on a follower on another replica, and (split of the running replica's delay)
//! the moment agentd's journal started writing the event's chunk (`run_events.created_at`, agentd's wall clock
//! on this machine).

use std::collections::HashMap;
use std::time::Instant;

use crate::resume::Setup;
use crate::resume_check::Seen;

/// Arrival delays of one observed run's events, in ms.
#[derive(Debug, Default, Clone)]
pub struct Latency {
    /// Follower on the replica running the turn, minus the original (live) stream.
    pub own: Vec<f64>,
    /// Follower on another replica, minus the original stream.
    pub other: Vec<f64>,
    /// Follower on another replica, minus the follower on the running replica (same event).
    pub other_minus_own: Vec<f64>,
    /// The journal starting the write of the event's batch (`created_at`), minus the original stream.
    pub queued: Vec<f64>,
    /// The follower on the running replica, minus the journal starting the write of the event's batch.
    pub written_to_own: Vec<f64>,
}

/// Splits the running replica's delay at the moment the journal started writing each event (`created_at` of
/// its chunk, agentd's wall clock, the same machine's as ours).
pub(crate) async fn journal_times(
    s: &Setup,
    db: &sqlx::PgPool,
    run: &str,
    live: &[(Seen, Instant)],
    since: Instant,
    own: &[(Seen, Instant)],
    l: &mut Latency,
) {
    let Ok(chunks): Result<Vec<(i64, i64, f64)>, _> = sqlx::query_as(
        "SELECT first_id, last_id, extract(epoch FROM created_at)::float8 FROM run_events WHERE run_id = $1",
    )
    .bind(run)
    .fetch_all(db)
    .await
    else {
        return;
    };
    let own: HashMap<u64, Instant> = own.iter().map(|(e, t)| (e.id, *t)).collect();
    for (e, t) in live.iter().filter(|(_, t)| *t > since) {
        let id = e.id as i64;
        let written = chunks.iter().find(|c| c.0 <= id && id <= c.1).map(|c| c.2);
        if let (Some(w), Some(o)) = (written, own.get(&e.id)) {
            l.queued.push((w - s.epoch(*t)) * 1000.0);
            l.written_to_own.push((s.epoch(*o) - w) * 1000.0);
        }
    }
}

/// Delays per event id emitted after both followers were connected (earlier ones were replayed, not followed).
pub(crate) fn latency(
    live: &[(Seen, Instant)],
    since: Instant,
    own: &[(Seen, Instant)],
    other: &[(Seen, Instant)],
) -> Latency {
    let own: HashMap<u64, Instant> = own.iter().map(|(e, t)| (e.id, *t)).collect();
    let other: HashMap<u64, Instant> = other.iter().map(|(e, t)| (e.id, *t)).collect();
    let ms = |a: Instant, b: Instant| {
        if a >= b {
            (a - b).as_secs_f64() * 1000.0
        } else {
            -((b - a).as_secs_f64() * 1000.0)
        }
    };
    let mut l = Latency::default();
    for (e, t) in live.iter().filter(|(_, t)| *t > since) {
        if let (Some(o), Some(x)) = (own.get(&e.id), other.get(&e.id)) {
            l.own.push(ms(*o, *t));
            l.other.push(ms(*x, *t));
            l.other_minus_own.push(ms(*x, *o));
        }
    }
    l
}
