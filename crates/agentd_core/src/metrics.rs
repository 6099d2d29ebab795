//! The turn pipeline's Prometheus metrics, recorded through the `metrics` facade: their names and help texts,
//! and one helper per thing measured so that each call site in the pipeline is a one-liner. Labels are the
//! agent key, the outcome and contract codes — never tenant, user, conversation or run ids. Without an
//! installed recorder (the library in tests) every call is a no-op.

use crate::event::{TurnEvent, TurnStatus};
use crate::failure::{Code, Failure};
use ::metrics::{Unit, counter, describe_counter, describe_histogram, histogram};
use std::time::{Duration, Instant};

pub const TURNS_STARTED: &str = "agentd_turns_started_total";
pub const TURNS_FINISHED: &str = "agentd_turns_finished_total";
pub const TURNS_REFUSED: &str = "agentd_turns_refused_total";
pub const TURN_FIRST_EVENT: &str = "agentd_turn_first_event_seconds";
pub const TURN_DURATION: &str = "agentd_turn_duration_seconds";
pub const IMAGES_STORED: &str = "agentd_images_stored_total";
pub const IMAGES_FAILED: &str = "agentd_images_failed_total";
pub const IMAGE_INGEST: &str = "agentd_image_ingest_seconds";
pub const IMAGE_SIZE: &str = "agentd_image_size_bytes";
pub const IMAGE_COST: &str = "agentd_turn_image_cost_usd";

/// Registers the help texts (call once, after installing the recorder).
pub fn describe() {
    describe_counter!(
        TURNS_STARTED,
        Unit::Count,
        "Turns the upstream accepted (run.started sent), by agent."
    );
    describe_counter!(
        TURNS_FINISHED,
        Unit::Count,
        "Turns ended, by agent and outcome (completed, incomplete, failed with its contract code, cut by shutdown)."
    );
    describe_counter!(
        TURNS_REFUSED,
        Unit::Count,
        "Turns refused before they ran, by contract code (rate_limited, budget_exhausted, conversation_busy, \
         upstream_* when the upstream refused, invalid_request, ...)."
    );
    describe_histogram!(
        TURN_FIRST_EVENT,
        Unit::Seconds,
        "From a turn request reaching the turn service to its first event after run.started (text or image)."
    );
    describe_histogram!(
        TURN_DURATION,
        Unit::Seconds,
        "From a turn request reaching the turn service to its terminal event, by agent and outcome."
    );
    describe_counter!(IMAGES_STORED, Unit::Count, "Generated images stored, by agent.");
    describe_counter!(
        IMAGES_FAILED,
        Unit::Count,
        "Generated images not stored, by agent and image.failed code."
    );
    describe_histogram!(
        IMAGE_INGEST,
        Unit::Seconds,
        "Storing one generated image: checks, strict decode, sniff, digest, object store put, metadata row."
    );
    describe_histogram!(
        IMAGE_SIZE,
        Unit::Bytes,
        "Decoded size of each stored image, by agent."
    );
    describe_histogram!(
        IMAGE_COST,
        "Estimated image generation cost of each turn that made images, in USD, by agent (_sum: the total)."
    );
}

/// A turn refused before it ran (the admission or the upstream said no).
pub(crate) fn refused(f: &Failure) {
    counter!(TURNS_REFUSED, "code" => f.code.as_str()).increment(1);
}

/// One running turn's clock and agent label.
pub(crate) struct TurnMeter {
    agent: String,
    since: Instant,
    first_event_seen: bool,
}

impl TurnMeter {
    /// A turn the upstream accepted, whose request reached the service at `since`.
    pub(crate) fn started(agent: &str, since: Instant) -> Self {
        counter!(TURNS_STARTED, "agent" => agent.to_owned()).increment(1);
        Self {
            agent: agent.to_owned(),
            since,
            first_event_seen: false,
        }
    }

    /// An event emitted: the first one after `run.started` sets the time to first event.
    pub(crate) fn event(&mut self, ev: &TurnEvent) {
        if !self.first_event_seen && !matches!(ev, TurnEvent::Started(_)) {
            self.first_event_seen = true;
            histogram!(TURN_FIRST_EVENT, "agent" => self.agent.clone()).record(self.since.elapsed());
        }
    }

    /// The terminal event: outcome counter and duration.
    pub(crate) fn finished(&self, terminal: &TurnEvent) {
        let (outcome, code) = match terminal {
            TurnEvent::Completed(r) if r.status == TurnStatus::Incomplete => ("incomplete", None),
            TurnEvent::Completed(_) => ("completed", None),
            TurnEvent::Failed(e) if e.code == Code::ShuttingDown => ("cut", None),
            TurnEvent::Failed(e) => ("failed", Some(e.code.as_str())),
            _ => return,
        };
        let agent = self.agent.clone();
        match code {
            Some(code) => {
                counter!(TURNS_FINISHED, "agent" => agent.clone(), "outcome" => outcome, "code" => code)
            }
            None => counter!(TURNS_FINISHED, "agent" => agent.clone(), "outcome" => outcome),
        }
        .increment(1);
        histogram!(TURN_DURATION, "agent" => agent, "outcome" => outcome).record(self.since.elapsed());
    }

    /// An image stored: `bytes` decoded, `took` from its result's arrival to its metadata row.
    pub(crate) fn image_stored(&self, bytes: i64, took: Duration) {
        counter!(IMAGES_STORED, "agent" => self.agent.clone()).increment(1);
        histogram!(IMAGE_INGEST, "agent" => self.agent.clone()).record(took);
        histogram!(IMAGE_SIZE, "agent" => self.agent.clone()).record(bytes as f64);
    }

    /// An image not stored, by its `image.failed` code.
    pub(crate) fn image_failed(&self, code: &'static str) {
        counter!(IMAGES_FAILED, "agent" => self.agent.clone(), "code" => code).increment(1);
    }

    /// The turn's estimated image cost, as recorded in its usage.
    pub(crate) fn image_cost(&self, usd: f64) {
        histogram!(IMAGE_COST, "agent" => self.agent.clone()).record(usd);
    }
}
