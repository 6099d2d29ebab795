//! The checks of an admission that are not about holding anything: the message, the attachment list, which
//! agent a turn talks to, the image budget, the uploads a turn sends as input images, and what a refusal by the
//! limits says.

use crate::context::{Context, rate_limited};
use crate::failure::{Code, Failure};
use agentd_agents::Agent;
use agentd_db::{AttachmentMeta, Opening, RateDecision, TenantId, TurnTx};
use chrono::{Datelike as _, TimeZone as _, Utc};
use std::sync::Arc;
use uuid::Uuid;

/// The user's message, trimmed: not empty, no U+0000 (PostgreSQL's text cannot hold it: a 500 before), not
/// over `max_chars`.
pub(super) fn check_message(message: &str, max_chars: usize) -> Result<&str, Failure> {
    let message = message.trim();
    if message.is_empty() {
        return Err(Failure::invalid("`message` is empty: send the user's text."));
    }
    if message.contains('\0') {
        return Err(Failure::invalid(
            "`message` contains a NUL character (U+0000), which cannot be stored; remove it.",
        ));
    }
    if message.chars().count() > max_chars {
        return Err(Failure::invalid(format!(
            "`message` is over {max_chars} characters (CHAT_MAX_MESSAGE_CHARS); send a shorter one."
        )));
    }
    Ok(message)
}

pub(super) fn check_attachment_list(ids: &[Uuid], max: usize) -> Result<(), Failure> {
    if ids.len() > max {
        return Err(Failure::invalid(format!(
            "`attachments` has {} entries; at most {max} are allowed (CHAT_MAX_ATTACHMENTS).",
            ids.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    if let Some(dup) = ids.iter().find(|id| !seen.insert(**id)) {
        return Err(Failure::invalid(format!(
            "`attachments` lists {dup} more than once; reference each upload once."
        )));
    }
    Ok(())
}

pub(super) fn check_image_input(agent: &Agent, attachments: &[Uuid]) -> Result<(), Failure> {
    if attachments.is_empty() || agent.image.is_some() {
        return Ok(());
    }
    Err(Failure::new(
        Code::UnsupportedForAgent,
        format!(
            "Agent {:?} has no image tools and does not take image input; use an agent with image_generation.",
            agent.key
        ),
    ))
}

/// The key asked for is shown cut to 64 characters: a request must not make its error as large as itself.
pub(super) fn agent_not_found(key: &str) -> Failure {
    let shown: String = key.chars().take(64).collect();
    let cut = if shown.len() < key.len() { "…" } else { "" };
    Failure::new(
        Code::AgentNotFound,
        format!("No agent {shown:?}{cut}; GET /v1/agents lists the agents."),
    )
}

pub(super) fn resolve_new(inner: &Context, asked: Option<&str>) -> Result<Arc<Agent>, Failure> {
    match asked {
        Some(k) => inner.agents.get(k).cloned().ok_or_else(|| agent_not_found(k)),
        None => inner.agents.default_agent().cloned().ok_or_else(|| {
            Failure::invalid("`agent` is required to start a conversation (no agent is marked default).")
        }),
    }
}

pub(super) fn resolve_existing(
    inner: &Context,
    asked: Option<&str>,
    owner: &str,
) -> Result<Arc<Agent>, Failure> {
    if let Some(k) = asked
        && k != owner
    {
        return Err(Failure::invalid(format!(
            "This conversation belongs to agent {owner:?}; omit `agent` or send {owner:?}."
        )));
    }
    inner
        .agents
        .get(owner)
        .cloned()
        .ok_or_else(|| agent_not_found(owner))
}

/// 429 `budget_exhausted` when the tenant's estimated image spend this month reached the budget; else the spend.
pub(super) async fn check_budget(tx: &mut TurnTx, budget: f64) -> Result<f64, Failure> {
    let now = Utc::now();
    let spent = tx.image_cost_since(month_start(now)).await?;
    if spent < budget {
        return Ok(spent);
    }
    Err(budget_exhausted(budget, spent, now))
}

pub(super) fn month_start(now: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

pub(super) fn budget_exhausted(budget: f64, spent: f64, now: chrono::DateTime<Utc>) -> Failure {
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let next = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(now);
    Failure::new(
        Code::BudgetExhausted,
        format!(
            "This tenant's image budget for the month (${budget:.2}) is used up (${spent:.2} spent); it renews on {}.",
            next.date_naive()
        ),
    )
    .retry_after((next - now).num_seconds().max(1) as u64)
}

/// The uploads a turn sends as input images: each an object of this tenant, together under the size cap.
pub(super) async fn input_images(
    tx: &mut TurnTx,
    ids: &[Uuid],
    max_mb: u32,
) -> Result<Vec<AttachmentMeta>, Failure> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut found = tx.objects(ids).await?;
    let mut ordered = Vec::with_capacity(ids.len());
    for id in ids {
        let i = found.iter().position(|o| o.id == *id).ok_or_else(|| {
            Failure::new(
                Code::AttachmentNotFound,
                format!("No uploaded image {id}; upload it with POST /v1/uploads."),
            )
        })?;
        ordered.push(found.swap_remove(i).meta());
    }
    let total: i64 = ordered.iter().map(|m| m.size_bytes).sum();
    if total > i64::from(max_mb) * 1024 * 1024 {
        return Err(Failure::invalid(format!(
            "The attached images are {:.1} MB together; at most {max_mb} MB are allowed (CHAT_MAX_INPUT_IMAGE_MB).",
            total as f64 / 1_048_576.0
        )));
    }
    Ok(ordered)
}

/// The refusal an opening answered, if any.
pub(super) fn check_opened(
    inner: &Context,
    tenant: &TenantId,
    opened: Opening,
    now_us: i64,
) -> Result<(), Failure> {
    match opened {
        Opening::Opened => Ok(()),
        Opening::TooMany => Err(too_many(inner.settings.concurrent_limit)),
        Opening::Refused(rate) => check_rate(inner, tenant, rate, now_us),
    }
}

/// The rate limit's refusal, remembered so that this process refuses the tenant without a statement until it
/// lapses.
pub(super) fn check_rate(
    inner: &Context,
    tenant: &TenantId,
    rate: RateDecision,
    now_us: i64,
) -> Result<(), Failure> {
    match rate {
        RateDecision::Admitted => Ok(()),
        RateDecision::Refused {
            retry_after,
            until_us,
        } => {
            inner.refusals.remember(tenant, until_us, now_us);
            Err(rate_limited(inner.settings.rate_limit_per_minute, retry_after))
        }
    }
}

/// The tenant has `limit` admissions using the database in this process already.
pub(super) fn too_many_admitting(limit: u32) -> Failure {
    Failure::new(
        Code::RateLimited,
        format!(
            "This tenant already has {limit} turns being started on this server at once (twice \
             CHAT_STREAM_CONCURRENT_LIMIT); retry in a moment."
        ),
    )
    .retry_after(1)
}

pub(super) fn too_many(limit: u32) -> Failure {
    Failure::new(
        Code::RateLimited,
        format!(
            "This tenant already runs {limit} turns at once (CHAT_STREAM_CONCURRENT_LIMIT); retry when one finishes."
        ),
    )
    .retry_after(2)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unknown_agent_is_named_but_not_echoed_whole() {
        let f = super::agent_not_found("designer");
        assert_eq!(
            f.message,
            "No agent \"designer\"; GET /v1/agents lists the agents."
        );
        let long = "é".repeat(400_000);
        let f = super::agent_not_found(&long);
        assert!(f.message.len() < 300, "{} bytes", f.message.len());
        assert!(f.message.contains("…; GET /v1/agents"), "{}", f.message);
    }
}
