//! The client's own Prometheus metrics, generic to any Responses API (`agentd_upstream_*`), recorded through
//! the `metrics` facade: a no-op unless the application installed a recorder.

use crate::error::{Error, TimeoutKind};
use ::metrics::{Unit, counter, describe_counter, describe_histogram, histogram};
use std::time::Duration;

pub const UPSTREAM_REQUEST: &str = "agentd_upstream_request_duration_seconds";
pub const UPSTREAM_RETRIES: &str = "agentd_upstream_retries_total";

/// Registers the help texts (call once, after installing the recorder).
pub fn describe() {
    describe_histogram!(
        UPSTREAM_REQUEST,
        Unit::Seconds,
        "One HTTP request to the Responses API until its answer (a stream's headers, an error's body), by status \
         (the HTTP status, or timeout / connect_error); _count is the number of requests."
    );
    describe_counter!(
        UPSTREAM_RETRIES,
        Unit::Count,
        "Requests to the Responses API sent again, by the status of the attempt that failed."
    );
}

/// The `status` label of an attempt's outcome: the HTTP status, or what kept it from having one.
fn status(outcome: Result<u16, &Error>) -> String {
    match outcome {
        Ok(s) | Err(&Error::Api { status: s, .. }) => s.to_string(),
        Err(Error::Timeout(TimeoutKind::Connect)) => "connect_timeout".into(),
        Err(Error::Timeout(_)) => "timeout".into(),
        Err(Error::Connect(_)) => "connect_error".into(),
        Err(_) => "error".into(),
    }
}

/// One attempt answered (or failed) after `took`.
pub(crate) fn request(outcome: Result<u16, &Error>, took: Duration) {
    histogram!(UPSTREAM_REQUEST, "status" => status(outcome)).record(took);
}

/// An attempt that failed with `err` is retried.
pub(crate) fn retry(err: &Error) {
    counter!(UPSTREAM_RETRIES, "status" => status(Err(err))).increment(1);
}
