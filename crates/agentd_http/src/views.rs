//! JSON views of stored things, exactly as `api-v1.md` shows them.

use agentd_core::{TurnResult, Usage};
use agentd_db::{AttachmentMeta, Conversation, Message};
use serde_json::{Value, json};

/// An attachment with a download URL minted now (never stored).
pub(crate) fn attachment_json(a: &AttachmentMeta) -> Value {
    json!({
        "object_id": a.object_id, "filename": a.filename, "mime_type": a.mime_type, "size_bytes": a.size_bytes,
        "url": Value::Null, "url_expires_at": Value::Null, "tool_call_id": a.tool_call_id,
    })
}

pub(crate) fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id, "role": m.role.as_str(), "content": m.content, "created_at": m.created_at,
        "attachments": m.attachments.iter().map(attachment_json).collect::<Vec<_>>(),
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
pub(crate) fn result_json(r: &TurnResult) -> Value {
    json!({
        "conversation_id": r.conversation_id, "response_id": r.response_id, "model": r.model, "status": r.status,
        "message": message_json(&r.message), "usage": usage_json(&r.usage),
    })
}

pub(crate) fn conversation_json(c: &Conversation) -> Value {
    json!({ "id": c.id, "agent": c.agent, "title": c.title, "created_at": c.created_at, "updated_at": c.updated_at })
}
