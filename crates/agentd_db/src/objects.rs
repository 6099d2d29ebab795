//! Stored-object metadata of one tenant: what was stored where, for which conversation, message and tool call.
//! Never the bytes.

use crate::{DbError, Scoped, now, with_pool};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A stored object's metadata.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredObject {
    pub id: Uuid,
    pub object_key: String,
    pub conversation_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub tool_call_id: Option<String>,
    /// `generated` or `upload`.
    pub kind: String,
    pub filename: String,
    pub mime_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

/// An object about to be recorded.
#[derive(Debug, Clone)]
pub struct NewObject {
    pub id: Uuid,
    pub object_key: String,
    pub conversation_id: Option<Uuid>,
    pub tool_call_id: Option<String>,
    pub kind: &'static str,
    pub filename: String,
    pub mime_type: String,
    pub size_bytes: i64,
    pub sha256: String,
}

macro_rules! object_columns {
    () => {
        "id, object_key, conversation_id, message_id, tool_call_id, kind, filename, mime_type, size_bytes, sha256, created_at"
    };
}

impl Scoped<'_> {
    pub async fn insert_object(&self, o: &NewObject) -> Result<(), DbError> {
        let sql = "INSERT INTO stored_objects (id, tenant_id, object_key, conversation_id, tool_call_id, kind, filename, \
                   mime_type, size_bytes, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
        let t = now();
        with_pool!(self.db, |p| sqlx::query(sql)
            .bind(o.id)
            .bind(self.tenant)
            .bind(&o.object_key)
            .bind(o.conversation_id)
            .bind(&o.tool_call_id)
            .bind(o.kind)
            .bind(&o.filename)
            .bind(&o.mime_type)
            .bind(o.size_bytes)
            .bind(&o.sha256)
            .bind(t)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// A live object of this tenant.
    pub async fn object(&self, id: Uuid) -> Result<Option<StoredObject>, DbError> {
        let sql = concat!(
            "SELECT ",
            object_columns!(),
            " FROM stored_objects WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
        );
        Ok(with_pool!(self.db, |p| sqlx::query_as(sql)
            .bind(self.tenant)
            .bind(id)
            .fetch_optional(p)
            .await)?)
    }

    /// The conversation's objects.
    pub async fn conversation_objects(&self, conversation: Uuid) -> Result<Vec<StoredObject>, DbError> {
        let sql = concat!(
            "SELECT ",
            object_columns!(),
            " FROM stored_objects WHERE tenant_id = $1 AND conversation_id = $2"
        );
        Ok(with_pool!(self.db, |p| sqlx::query_as(sql)
            .bind(self.tenant)
            .bind(conversation)
            .fetch_all(p)
            .await)?)
    }

    /// Links objects to the message that shows them.
    pub async fn link_objects(&self, ids: &[Uuid], message: Uuid) -> Result<(), DbError> {
        let sql = "UPDATE stored_objects SET message_id = $3 WHERE tenant_id = $1 AND id = $2";
        for id in ids {
            with_pool!(self.db, |p| sqlx::query(sql)
                .bind(self.tenant)
                .bind(id)
                .bind(message)
                .execute(p)
                .await
                .map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// Forgets one object's row (its bytes are gone or never arrived).
    pub async fn delete_object(&self, id: Uuid) -> Result<(), DbError> {
        let sql = "DELETE FROM stored_objects WHERE tenant_id = $1 AND id = $2";
        with_pool!(self.db, |p| sqlx::query(sql)
            .bind(self.tenant)
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Forgets the rows of a conversation's objects (after their bytes were deleted).
    pub async fn delete_conversation_objects(&self, conversation: Uuid) -> Result<u64, DbError> {
        let sql = "DELETE FROM stored_objects WHERE tenant_id = $1 AND conversation_id = $2";
        Ok(with_pool!(self.db, |p| sqlx::query(sql)
            .bind(self.tenant)
            .bind(conversation)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?)
    }
}
