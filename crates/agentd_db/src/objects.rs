//! Stored-object metadata of one tenant: what was stored where, for which conversation, message and tool call,
//! and which conversations use which uploads. Never the bytes.

use crate::tx::{AnyTx, with_tx};
use crate::{AttachmentMeta, Db, DbError, Scoped, TurnTx, now, with_pool};
use agentd_ids::ObjectKey;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The condition on `stored_objects s` of an upload no conversation uses (as the partial indexes of migration
/// `20261201000006` are written: on `kind = 'upload'`).
macro_rules! unused_upload {
    () => {
        "kind = 'upload' AND NOT EXISTS (SELECT 1 FROM object_refs r WHERE r.object_id = s.id)"
    };
}

/// A stored object's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub id: Uuid,
    pub object_key: ObjectKey,
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

impl StoredObject {
    /// What a message records about it.
    pub fn meta(self) -> AttachmentMeta {
        AttachmentMeta {
            object_id: self.id,
            object_key: self.object_key,
            filename: self.filename,
            mime_type: self.mime_type,
            size_bytes: self.size_bytes,
            tool_call_id: self.tool_call_id,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ObjectRow {
    id: Uuid,
    object_key: String,
    conversation_id: Option<Uuid>,
    message_id: Option<Uuid>,
    tool_call_id: Option<String>,
    kind: String,
    filename: String,
    mime_type: String,
    size_bytes: i64,
    sha256: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<ObjectRow> for StoredObject {
    type Error = DbError;
    fn try_from(r: ObjectRow) -> Result<Self, DbError> {
        let object_key = ObjectKey::parse(&r.object_key)
            .map_err(|e| DbError::Corrupt(format!("stored_objects {}: {e}", r.id)))?;
        Ok(Self {
            id: r.id,
            object_key,
            conversation_id: r.conversation_id,
            message_id: r.message_id,
            tool_call_id: r.tool_call_id,
            kind: r.kind,
            filename: r.filename,
            mime_type: r.mime_type,
            size_bytes: r.size_bytes,
            sha256: r.sha256,
            created_at: r.created_at,
        })
    }
}

/// An object about to be recorded.
#[derive(Debug, Clone)]
pub struct NewObject {
    pub id: Uuid,
    pub object_key: ObjectKey,
    pub conversation_id: Option<Uuid>,
    pub tool_call_id: Option<String>,
    pub kind: &'static str,
    pub filename: String,
    pub mime_type: String,
    pub size_bytes: i64,
    pub sha256: String,
}

const COLUMNS: &str = "id, object_key, conversation_id, message_id, tool_call_id, kind, filename, mime_type, size_bytes, sha256, created_at";

impl Scoped<'_> {
    /// Deletes this tenant's object row `id` (its references go with it).
    pub async fn delete_object(&self, id: Uuid) -> Result<(), DbError> {
        let sql = "DELETE FROM stored_objects WHERE id = $1 AND tenant_id = $2";
        with_pool!(self.db, |p| sqlx::query(sql)
            .bind(id)
            .bind(self.t())
            .execute(p)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    pub async fn insert_object(&self, o: &NewObject) -> Result<(), DbError> {
        let sql = "INSERT INTO stored_objects (id, tenant_id, object_key, conversation_id, tool_call_id, kind, filename, \
                   mime_type, size_bytes, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
        let t = now();
        with_pool!(self.db, |p| sqlx::query(sql)
            .bind(o.id)
            .bind(self.t())
            .bind(o.object_key.as_str())
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
        let sql = format!(
            "SELECT {COLUMNS} FROM stored_objects WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
        );
        let row: Option<ObjectRow> = with_pool!(self.db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(self.t())
            .bind(id)
            .fetch_optional(p)
            .await)?;
        row.map(StoredObject::try_from).transpose()
    }

    /// This tenant's uploads made since `since` that no conversation uses.
    pub async fn unused_uploads(&self, since: DateTime<Utc>) -> Result<i64, DbError> {
        let sql = concat!(
            "SELECT COUNT(*) FROM stored_objects s WHERE tenant_id = $1 AND created_at > $2 AND ",
            unused_upload!()
        );
        Ok(with_pool!(self.db, |p| sqlx::query_scalar(sql)
            .bind(self.t())
            .bind(since)
            .fetch_one(p)
            .await)?)
    }

    /// The uploads that only this conversation references (deleted with it).
    pub async fn exclusive_uploads(&self, conversation: Uuid) -> Result<Vec<StoredObject>, DbError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM stored_objects WHERE tenant_id = $1 AND kind = 'upload' AND id IN \
             (SELECT object_id FROM object_refs WHERE tenant_id = $1 AND conversation_id = $2) AND NOT EXISTS \
             (SELECT 1 FROM object_refs r WHERE r.object_id = stored_objects.id AND r.conversation_id <> $2)"
        );
        let rows: Vec<ObjectRow> = with_pool!(self.db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(self.t())
            .bind(conversation)
            .fetch_all(p)
            .await)?;
        rows.into_iter().map(StoredObject::try_from).collect()
    }
}

impl TurnTx {
    /// The live objects of this tenant among `ids`, in any order (one statement). On PostgreSQL their rows are
    /// key-share locked until the transaction ends, so that housekeeping cannot delete an upload between this
    /// read and the reference the turn writes (it waits, or went first and the upload is not found).
    pub async fn objects(&mut self, ids: &[Uuid]) -> Result<Vec<StoredObject>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let t = self.tenant.clone();
        let pg = matches!(self.tx, AnyTx::Postgres(_));
        let rows: Vec<ObjectRow> = with_tx!(self, |c| {
            let mut q =
                sqlx::QueryBuilder::new(format!("SELECT {COLUMNS} FROM stored_objects WHERE tenant_id = "));
            q.push_bind(t.as_str())
                .push(" AND deleted_at IS NULL AND id IN (");
            let mut list = q.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            q.push(")");
            if pg {
                q.push(" FOR KEY SHARE");
            }
            q.build_query_as().fetch_all(c).await
        })?;
        rows.into_iter().map(StoredObject::try_from).collect()
    }

    /// Records that `conversation` uses the uploads `ids` (one statement).
    pub async fn reference_objects(&mut self, conversation: Uuid, ids: &[Uuid]) -> Result<(), DbError> {
        if ids.is_empty() {
            return Ok(());
        }
        let t = self.tenant.clone();
        with_tx!(self, |c| {
            let mut q =
                sqlx::QueryBuilder::new("INSERT INTO object_refs (tenant_id, object_id, conversation_id) ");
            q.push_values(ids, |mut row, id| {
                row.push_bind(t.as_str()).push_bind(*id).push_bind(conversation);
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(c).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// Links stored images to the message that shows them (one statement).
    pub(crate) async fn link_objects(&mut self, ids: &[Uuid], message: Uuid) -> Result<(), DbError> {
        if ids.is_empty() {
            return Ok(());
        }
        let t = self.tenant.clone();
        with_tx!(self, |c| {
            let mut q = sqlx::QueryBuilder::new("UPDATE stored_objects SET message_id = ");
            q.push_bind(message)
                .push(" WHERE tenant_id = ")
                .push_bind(t.as_str())
                .push(" AND id IN (");
            let mut list = q.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            q.push(")");
            q.build().execute(c).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }
}

impl Db {
    /// Uploads no conversation uses, made before `before` (all tenants), oldest first, at most `limit`.
    pub async fn stale_uploads(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<StoredObject>, DbError> {
        let sql = format!(
            concat!(
                "SELECT {COLUMNS} FROM stored_objects s WHERE created_at < $1 AND ",
                unused_upload!(),
                " ORDER BY created_at LIMIT $2"
            ),
            COLUMNS = COLUMNS
        );
        let rows: Vec<ObjectRow> = with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(before)
            .bind(limit)
            .fetch_all(p)
            .await)?;
        rows.into_iter().map(StoredObject::try_from).collect()
    }
}

impl TurnTx {
    /// Locks this tenant's upload `id` for deleting if it was made before `before` and no conversation uses it;
    /// `false` when it is not such an upload (any more). On PostgreSQL the row lock comes first and the check
    /// after it, in a statement of its own (so a snapshot of its own), which sees every reference committed
    /// before the lock was granted — a turn holds its uploads' key share from its read to its commit. On SQLite
    /// the transaction holds the write lock already.
    pub async fn lock_unused_upload(&mut self, id: Uuid, before: DateTime<Utc>) -> Result<bool, DbError> {
        if let AnyTx::Postgres(t) = &mut self.tx {
            self.statements += 1;
            let locked = sqlx::query("SELECT 1 FROM stored_objects WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut **t)
                .await?;
            if locked.is_none() {
                return Ok(false); // gone already
            }
        }
        let sql = concat!(
            "SELECT COUNT(*) FROM stored_objects s WHERE id = $1 AND tenant_id = $2 AND created_at < $3 AND ",
            unused_upload!()
        );
        let t = self.tenant.clone();
        let n: i64 = with_tx!(self, |c| sqlx::query_scalar(sql)
            .bind(id)
            .bind(t.as_str())
            .bind(before)
            .fetch_one(c)
            .await)?;
        Ok(n > 0)
    }

    /// Marks this tenant's object `id` deleted: turns and downloads no longer find it, and nothing uses it any
    /// more, so its bytes can go outside any transaction; then its row ([`Scoped::delete_object`]).
    pub async fn mark_deleted(&mut self, id: Uuid) -> Result<(), DbError> {
        let (t, at) = (self.tenant.clone(), now());
        with_tx!(self, |c| sqlx::query(
            "UPDATE stored_objects SET deleted_at = $3 WHERE id = $1 AND tenant_id = $2"
        )
        .bind(id)
        .bind(t.as_str())
        .bind(at)
        .execute(c)
        .await
        .map(|_| ()))?;
        Ok(())
    }
}
