//! A running turn's lease on its conversation, renewed every third of `RUN_LEASE_SECONDS` while the turn runs
//! — and every second while the database does not answer, so that after an outage longer than the lease the
//! turn has it back before anyone else can take the conversation.

use crate::admission::Admission;
use crate::context::Context;
use std::time::Duration;
use tokio_util::task::AbortOnDropHandle;

/// Renews the turn's lease until dropped.
pub(crate) fn keep(inner: &Context, a: &Admission) -> AbortOnDropHandle<()> {
    let (db, tenant, conversation, run) = (
        inner.db.clone(),
        a.tenant.clone(),
        a.conversation_id,
        a.run_id.clone(),
    );
    let every = inner.settings.heartbeat();
    AbortOnDropHandle::new(tokio::spawn(async move {
        let mut wait = every;
        loop {
            tokio::time::sleep(wait).await;
            match db.scoped(&tenant).renew_lease(conversation, &run).await {
                Ok(true) => wait = every,
                Ok(false) => {
                    tracing::warn!(conversation_id = %conversation, run_id = %run, "the turn lost its lease");
                    return;
                }
                Err(e) => {
                    // Once per outage.
                    if wait == every {
                        tracing::warn!(error = %e, run_id = %run, "cannot renew the turn's lease; retrying every second");
                    }
                    wait = Duration::from_secs(1);
                }
            }
        }
    }))
}
