//! Interleaved comparisons: the sides ("arms") of a comparison run in alternating batches under the same
//! load — round r runs every arm once, in an order rotated by r (A B, B A, A B … for two arms) — so that the
//! machine's noise falls on every side alike. Each arm's batches are merged into one [`PhaseResult`]. An arm
//! is a set of clients pointed at one endpoint: agentd, the fake directly, or any replica of a multi-replica
//! setup.

use std::time::Duration;

use crate::phase::{self, PhaseResult, PhaseSpec, Watch};
use crate::turns::TurnRequest;

/// One side of a comparison.
pub struct Arm<'a> {
    pub name: String,
    /// One request per client.
    pub requests: Vec<TurnRequest>,
    /// The agentd process behind it (and its database), metered around each of its batches.
    pub watch: Option<Watch<'a>>,
}

/// How the batches of a comparison run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Batches per arm.
    pub rounds: usize,
    /// Sequential turns per client in a batch.
    pub turns_per_client: usize,
    pub turn_timeout: Duration,
    /// No new turn starts this long into a batch.
    pub batch_deadline: Duration,
    /// How often agentd's VmRSS is sampled during a batch.
    pub sample_every: Duration,
    /// Attachment references kept per batch.
    pub keep_attachments: usize,
}

/// Turns per client of a warm-up batch: with 20+ clients, enough for a 16-connection pool to have run every
/// statement of a turn on nearly every connection.
pub const WARM_TURNS: usize = 3;

/// The arms' order in round `round` (`n` arms): rotated by the round.
pub fn order(n: usize, round: usize) -> Vec<usize> {
    (0..n).map(|i| (i + round) % n).collect()
}

/// Runs `plan.rounds` rounds of one batch per arm; returns each arm's merged result, in the arms' order.
pub async fn alternate(
    client: &reqwest::Client,
    arms: &[Arm<'_>],
    plan: &Plan,
    progress: &dyn Fn(&str),
) -> Vec<PhaseResult> {
    let mut merged: Vec<PhaseResult> = arms.iter().map(|_| PhaseResult::default()).collect();
    for round in alternate_rounds(client, arms, plan, progress).await {
        for (acc, r) in merged.iter_mut().zip(round) {
            acc.merge(r);
        }
    }
    merged
}

/// [`alternate`], each round's results kept apart (round by round, each in the arms' order): the batches of
/// one round ran next to each other, under the same load, so they can be compared pairwise.
pub async fn alternate_rounds(
    client: &reqwest::Client,
    arms: &[Arm<'_>],
    plan: &Plan,
    progress: &dyn Fn(&str),
) -> Vec<Vec<PhaseResult>> {
    let mut rounds = Vec::with_capacity(plan.rounds);
    for round in 0..plan.rounds {
        let mut results: Vec<PhaseResult> = arms.iter().map(|_| PhaseResult::default()).collect();
        for i in order(arms.len(), round) {
            let (Some(arm), Some(acc)) = (arms.get(i), results.get_mut(i)) else {
                continue;
            };
            progress(&format!(
                "  round {}/{} {}: {} clients × {} turns",
                round + 1,
                plan.rounds,
                arm.name,
                arm.requests.len(),
                plan.turns_per_client
            ));
            let spec = PhaseSpec {
                requests: arm.requests.clone(),
                turns_per_client: plan.turns_per_client,
                turn_timeout: plan.turn_timeout,
                deadline: plan.batch_deadline,
                sample_every: plan.sample_every,
                keep_attachments: plan.keep_attachments,
            };
            *acc = phase::run(client, spec, arm.watch).await;
        }
        rounds.push(results);
    }
    rounds
}

/// One unmeasured batch of `requests` (concurrently, [`WARM_TURNS`] turns each), so that every connection of
/// agentd's database pool is open and has prepared the statements of a turn before statements and
/// transactions are counted: each statement takes some pooled connection, and a connection prepares a
/// statement (a transaction of its own) the first time it runs it. `Err` when no turn succeeded.
pub async fn warm_batch(
    client: &reqwest::Client,
    requests: Vec<TurnRequest>,
    turn_timeout: Duration,
) -> Result<PhaseResult, String> {
    let spec = PhaseSpec {
        requests,
        turns_per_client: WARM_TURNS,
        turn_timeout,
        deadline: turn_timeout * 3,
        sample_every: Duration::from_secs(1),
        keep_attachments: 0,
    };
    let r = phase::run(client, spec, None).await;
    if r.ok == 0 {
        let why = r.error_samples.first().map_or("no turn ran", |(m, _)| m.as_str());
        return Err(format!("no turn of the warm-up batch succeeded: {why}"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_arms_alternate_abba() {
        let seq: Vec<usize> = (0..4).flat_map(|r| order(2, r)).collect();
        assert_eq!(seq, vec![0, 1, 1, 0, 0, 1, 1, 0]);
        assert_eq!(order(3, 1), vec![1, 2, 0]);
        assert!(order(0, 5).is_empty());
    }
}
