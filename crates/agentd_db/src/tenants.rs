//! Tenants and users: provisioned on their first valid request, suspended and resumed by operators.

use crate::{Db, DbError, TenantId, TenantStatus, now, with_pool};

impl Db {
    /// The tenant's status, creating the tenant (active) on its first request.
    pub async fn provision_tenant(&self, tenant: &TenantId) -> Result<TenantStatus, DbError> {
        let select = "SELECT status FROM tenants WHERE id = $1";
        let found: Option<String> = with_pool!(self, |p| sqlx::query_scalar(select)
            .bind(tenant.as_str())
            .fetch_optional(p)
            .await)?;
        if let Some(s) = found {
            return Ok(TenantStatus::parse(&s));
        }
        let insert = "INSERT INTO tenants (id, status, created_at, updated_at) VALUES ($1, 'active', $2, $2) \
                      ON CONFLICT (id) DO NOTHING";
        let t = now();
        with_pool!(self, |p| sqlx::query(insert)
            .bind(tenant.as_str())
            .bind(t)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        let status: String = with_pool!(self, |p| sqlx::query_scalar(select)
            .bind(tenant.as_str())
            .fetch_one(p)
            .await)?;
        Ok(TenantStatus::parse(&status))
    }

    /// Suspends or resumes a tenant (creating it if unknown, so a tenant can be suspended before first use).
    pub async fn set_tenant_status(&self, tenant: &TenantId, status: TenantStatus) -> Result<(), DbError> {
        let sql = "INSERT INTO tenants (id, status, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                   ON CONFLICT (id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at";
        let t = now();
        with_pool!(self, |p| sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(status.as_str())
            .bind(t)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

impl crate::Scoped<'_> {
    /// Records the user on first sight.
    pub async fn ensure_user(&self, user: &str) -> Result<(), DbError> {
        let sql = "INSERT INTO users (tenant_id, id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        let t = now();
        with_pool!(self.db, |p| sqlx::query(sql)
            .bind(self.t())
            .bind(user)
            .bind(t)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}
