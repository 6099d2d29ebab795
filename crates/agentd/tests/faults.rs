//! Crashes, deploys and outages strand nothing (issue 8, points 6–11), proven against the real `agentd` binary
//! on PostgreSQL and the S3 stand-in, with a fake upstream run by the test:
//!
//! | point | test |
//! |---|---|
//! | 6 leases with a heartbeat | `crash::after_kill_9_the_conversation_takes_a_new_turn_once_the_lease_expired` |
//! | 7 idempotency after a crash | `crash::an_idempotency_key_whose_request_died_is_free_once_its_lease_expired`, `crash::idempotency_keys_older_than_a_day_are_purged` |
//! | 8 shutdown | `shutdown::sigterm_saves_a_turn_still_running_when_the_grace_ends`, `shutdown::a_turn_that_ends_within_the_grace_completes` |
//! | 9 lost writes / database restart | `outages::turns_after_a_database_restart_succeed_and_none_is_half_written` |
//! | 10 delete vs a running turn | `conversations::deleting_a_conversation_takes_its_images_uploads_keys_and_run_log` |
//! | 11 the stale context race | `conversations::a_turn_continues_from_the_response_current_when_it_took_the_lease` |
//! | object store outage | `outages::an_object_store_outage_mid_turn_saves_the_text_and_orphans_nothing` |
//! | started before its database or object store | `startup::a_server_started_before_its_database_waits_for_it`, `startup::a_server_waits_for_a_sqlite_file_another_process_holds`, `startup::a_server_started_before_its_database_and_object_store_waits_for_both_at_once` |
//!
//! The database and object-store restarts use servers of their own (`support::services`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

#[path = "faults/conversations.rs"]
mod conversations;
#[path = "faults/crash.rs"]
mod crash;
#[path = "faults/outages.rs"]
mod outages;
#[path = "faults/shutdown.rs"]
mod shutdown;
#[path = "faults/startup.rs"]
mod startup;

use agentd_testkit::SseEvent;

/// The run id of a `run.started` event.
fn run_id(started: &SseEvent) -> String {
    assert_eq!(started.event, "run.started", "{started:?}");
    started.data["run_id"].as_str().unwrap().to_owned()
}

/// The conversation id of a `run.started` event.
fn conversation_id(started: &SseEvent) -> String {
    started.data["conversation_id"].as_str().unwrap().to_owned()
}

/// The roles of a conversation's messages, in order.
fn roles(conversation: &serde_json::Value) -> Vec<String> {
    conversation["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages: {conversation}"))
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_owned())
        .collect()
}
