//! JSON views of stored things, exactly as `api-v1.md` shows them. Download URLs are minted here, on every
//! read, and never stored.

use crate::AppState;
use agentd_core::{TurnResult, Usage};
use agentd_db::{AttachmentMeta, Conversation, Message};
use agentd_storage::{ObjectKey, UrlOptions};
use serde_json::{Value, json};

/// An attachment with a fresh time-limited URL (null, and logged, if the store cannot sign one now).
pub(crate) async fn attachment_json(state: &AppState, a: &AttachmentMeta) -> Value {
    let options = UrlOptions::new(state.url_ttl)
        .with_filename(a.filename.clone())
        .with_content_type(a.mime_type.clone());
    let signed = match ObjectKey::parse(&a.object_key) {
        Ok(key) => state
            .store
            .signed_url(&key, &options)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (url, expires) = match signed {
        Ok(s) => (Value::String(s.url), json!(s.expires_at)),
        Err(e) => {
            tracing::warn!(object_id = %a.object_id, error = %e, "attachment.presign_failed");
            (Value::Null, Value::Null)
        }
    };
    json!({
        "object_id": a.object_id, "filename": a.filename, "mime_type": a.mime_type, "size_bytes": a.size_bytes,
        "url": url, "url_expires_at": expires, "tool_call_id": a.tool_call_id,
    })
}

pub(crate) async fn message_json(state: &AppState, m: &Message) -> Value {
    let mut attachments = Vec::with_capacity(m.attachments.len());
    for a in &m.attachments {
        attachments.push(attachment_json(state, a).await);
    }
    json!({
        "id": m.id, "role": m.role.as_str(), "content": m.content, "created_at": m.created_at,
        "attachments": attachments,
    })
}

pub(crate) fn usage_json(u: &Usage) -> Value {
    let mut v = json!({ "input_tokens": u.input_tokens, "output_tokens": u.output_tokens });
    if let Some(img) = &u.image {
        v["image"] = json!({ "images": img.images, "output_tokens": img.output_tokens, "estimated_cost_usd": img.estimated_cost_usd });
    }
    v
}

/// The body of `POST /v1/chat` and the data of `run.completed`.
pub(crate) async fn result_json(state: &AppState, r: &TurnResult) -> Value {
    json!({
        "conversation_id": r.conversation_id, "response_id": r.response_id, "model": r.model, "status": r.status,
        "message": message_json(state, &r.message).await, "usage": usage_json(&r.usage),
    })
}

pub(crate) fn conversation_json(c: &Conversation) -> Value {
    json!({ "id": c.id, "agent": c.agent, "title": c.title, "created_at": c.created_at, "updated_at": c.updated_at })
}
