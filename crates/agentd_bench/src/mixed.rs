//! The mixed case of `bench-images`: how much a text turn's time to first event suffers while image turns run
//! beside it on the same agentd, and what an image turn costs agentd in CPU. Windows with and without a
//! background load of image turns alternate (L Q Q L …); in every window text turns go through agentd and
//! straight to the fake in alternation, one at a time, so "added" (agentd − direct) is measured under the
//! same load on both sides. agentd talks to the fake directly here (no timing proxy in the path).
//!
//! "Paired" added TTFE: in each round one agentd turn and one direct turn run next to each other (the order
//! alternating by round), so each agentd turn has a direct turn under the same load moment to be compared
//! with; the percentiles of those differences are a text turn's added TTFE, which the difference of the two
//! sides' p99s over a few hundred samples is too noisy to tell.
//!
//! CPU per image turn = (agentd CPU over the loaded windows − their text turns × the CPU of a text turn
//! measured in the quiet windows) ÷ image turns completed; the same for PostgreSQL.

use std::time::Duration;

use anyhow::Result;

use crate::agentd::{self, Agentd};
use crate::clients::{self, Endpoint};
use crate::db::InstanceDb;
use crate::images::{Env, JWT_SECRET};
use crate::interleave::{self, Arm, Plan};
use crate::load::Load;
use crate::phase::{PhaseResult, Watch};
use crate::s3::S3StandIn;
use crate::stats;

/// How the mixed case runs.
pub struct MixedSpec {
    pub image_clients: usize,
    pub image_message: String,
    pub text_message: String,
    /// Windows in all (half loaded, half quiet).
    pub windows: usize,
    /// Text turns per side in one window.
    pub probes: usize,
}

/// What it measured.
#[derive(Default)]
pub struct Mixed {
    pub loaded_agentd: PhaseResult,
    pub loaded_direct: PhaseResult,
    pub quiet_agentd: PhaseResult,
    pub quiet_direct: PhaseResult,
    /// The background image turns.
    pub load: PhaseResult,
    /// Each agentd text turn's TTFE minus the direct turn's of the same round (run next to it), ms.
    pub loaded_paired: Vec<f64>,
    pub quiet_paired: Vec<f64>,
    pub cpu_loaded: Duration,
    pub cpu_quiet: Duration,
    pub pg_cpu_loaded: Option<Duration>,
    pub pg_cpu_quiet: Option<Duration>,
    pub exited: bool,
}

fn per_turn(total: Duration, n: usize) -> Option<f64> {
    (n > 0).then(|| total.as_secs_f64() * 1000.0 / n as f64)
}

impl Mixed {
    /// (agentd, PostgreSQL) CPU ms of one text turn, from the quiet windows.
    pub fn text_cpu_ms(&self) -> (Option<f64>, Option<f64>) {
        let n = self.quiet_agentd.ok;
        (
            per_turn(self.cpu_quiet, n),
            self.pg_cpu_quiet.and_then(|c| per_turn(c, n)),
        )
    }

    /// (agentd, PostgreSQL) CPU ms of one image turn, from the loaded windows.
    pub fn image_cpu_ms(&self) -> (Option<f64>, Option<f64>) {
        let (text, pg_text) = self.text_cpu_ms();
        let texts = self.loaded_agentd.ok as f64;
        let images = self.load.ok;
        let agentd = text
            .and_then(|t| per_turn(self.cpu_loaded, 1).map(|all| all - texts * t))
            .and_then(|ms| (images > 0).then(|| ms / images as f64));
        let pg = match (self.pg_cpu_loaded, pg_text) {
            (Some(all), Some(t)) => {
                let ms = all.as_secs_f64() * 1000.0 - texts * t;
                (images > 0).then(|| ms / images as f64)
            }
            _ => None,
        };
        (agentd, pg)
    }
}

/// Whether window `w` carries the image load: L Q Q L L Q Q L …
pub fn loaded(w: usize) -> bool {
    matches!(w % 4, 0 | 3)
}

/// Runs the mixed case on a fresh agentd on `s3`.
pub async fn run(env: &Env<'_>, spec: &MixedSpec, s3: &S3StandIn) -> Result<Mixed> {
    (env.progress)(&format!(
        "starting agentd for the mixed case on {}…",
        s3.kind.name()
    ));
    let (mut a, db) = env.start_agentd("mixed", &env.fake_url, s3, "warn", None).await?;
    env.warm(&a, "assistant", &spec.text_message).await?;
    env.warm(&a, "designer", &spec.image_message).await?;
    let reqs = clients::requests(
        &env.endpoint(&a),
        spec.image_clients + 1,
        "designer",
        "draw #fake:image",
    )?;
    interleave::warm_batch(&env.client, reqs, env.turn_timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{e}; agentd log:\n{}", a.log_tail(20)))?;
    let m = windows(env, spec, &a, &db).await?;
    Ok(Mixed {
        exited: !a.alive(),
        ..m
    })
}

/// The text turns' rounds on a runtime and a client of their own, on a thread of their own: the bench reads
/// the image load's multi-MB events on its main runtime, and a text turn's first event must not wait for that
/// (both sides did: paired p99 ~200 → ~160 ms; the rest of the direct turns' rise from ~14 ms alone was the
/// fake building image turns on its async workers, see `FakeConfig::build_images_apart`).
fn rounds_apart(arms: &[Arm<'_>], plan: &Plan) -> Result<Vec<Vec<PhaseResult>>> {
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            s.spawn(|| -> Result<_> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let client = crate::harness::client(arms.len())?;
                Ok(rt.block_on(interleave::alternate_rounds(&client, arms, plan, &|_: &str| {})))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the text turns' thread panicked"))?
        })
    })
}

async fn windows(env: &Env<'_>, spec: &MixedSpec, a: &Agentd, db: &InstanceDb) -> Result<Mixed> {
    let to_agentd = Endpoint::Agentd {
        base_url: &a.base_url,
        jwt_secret: JWT_SECRET,
    };
    let to_fake = Endpoint::Direct {
        fake_url: &env.fake_url,
    };
    let pg = env.dbs.stats.as_ref();
    let arms = vec![
        Arm {
            name: "text/agentd".to_owned(),
            requests: clients::requests(&to_agentd, 1, "assistant", &spec.text_message)?,
            // The windows meter agentd and PostgreSQL themselves; a probe batch is one turn.
            watch: Some(Watch {
                pid: a.pid(),
                database_url: &db.url,
                pg: None,
                pg_db: None,
            }),
        },
        Arm {
            name: "text/direct".to_owned(),
            requests: clients::requests(&to_fake, 1, "assistant", &spec.text_message)?,
            watch: None,
        },
    ];
    // The load's clients are numbered after the probe's, so they are other users (other tenants past 10).
    let load_requests: Vec<_> = clients::requests(
        &to_agentd,
        spec.image_clients + 1,
        "designer",
        &spec.image_message,
    )?
    .into_iter()
    .skip(1)
    .collect();
    let plan = Plan {
        rounds: spec.probes,
        turns_per_client: 1,
        turn_timeout: env.turn_timeout,
        batch_deadline: env.batch_deadline,
        sample_every: Duration::from_millis(50),
        keep_attachments: 0,
    };
    let mut m = Mixed::default();
    let cpu = || (agentd::cpu_time(a.pid()), pg.and_then(|p| p.cpu()));
    for w in 0..spec.windows {
        let with_load = loaded(w);
        (env.progress)(&format!(
            "window {}/{}: {}",
            w + 1,
            spec.windows,
            if with_load {
                format!("{} image turns running beside the text turns", spec.image_clients)
            } else {
                "text turns alone".to_owned()
            }
        ));
        let (c0, p0) = cpu();
        let load = with_load.then(|| Load::start(&env.client, load_requests.clone(), env.turn_timeout));
        if load.is_some() {
            // Let every image turn get going before the first text turn.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let rounds = rounds_apart(&arms, &plan)?;
        let (mut text, mut direct) = (PhaseResult::default(), PhaseResult::default());
        for round in rounds {
            let [a, d]: [PhaseResult; 2] = round.try_into().unwrap_or_default();
            if let Some(added) = stats::diff(a.first_delta.p50(), d.first_delta.p50())
                && a.first_delta.len() == 1
                && d.first_delta.len() == 1
            {
                if with_load {
                    m.loaded_paired.push(added);
                } else {
                    m.quiet_paired.push(added);
                }
            }
            text.merge(a);
            direct.merge(d);
        }
        if let Some(load) = load {
            m.load.merge(load.stop().await);
        }
        let (c1, p1) = cpu();
        let spent = c1.zip(c0).map(|(b, a)| b.saturating_sub(a)).unwrap_or_default();
        let pg_spent = p1.zip(p0).map(|(b, a)| b.saturating_sub(a));
        let add =
            |acc: &mut Option<Duration>| *acc = Some(acc.unwrap_or_default() + pg_spent.unwrap_or_default());
        if with_load {
            m.loaded_agentd.merge(text);
            m.loaded_direct.merge(direct);
            m.cpu_loaded += spent;
            if pg_spent.is_some() {
                add(&mut m.pg_cpu_loaded);
            }
        } else {
            m.quiet_agentd.merge(text);
            m.quiet_direct.merge(direct);
            m.cpu_quiet += spent;
            if pg_spent.is_some() {
                add(&mut m.pg_cpu_quiet);
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_alternate_lqql() {
        let w: Vec<bool> = (0..8).map(loaded).collect();
        assert_eq!(w, vec![true, false, false, true, true, false, false, true]);
    }

    #[test]
    fn image_cpu_subtracts_the_text_turns() {
        let mut m = Mixed::default();
        m.quiet_agentd.ok = 100;
        m.cpu_quiet = Duration::from_millis(100); // 1 ms per text turn
        m.loaded_agentd.ok = 50;
        m.load.ok = 10;
        m.cpu_loaded = Duration::from_millis(550); // 50 ms of text + 500 ms of images
        let (agentd, pg) = m.image_cpu_ms();
        assert!(agentd.is_some_and(|v| (v - 50.0).abs() < 1e-9));
        assert_eq!(pg, None);
    }
}
