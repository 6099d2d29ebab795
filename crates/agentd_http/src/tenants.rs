//! A short-lived, in-process cache of tenant statuses: the auth extractor would otherwise read the tenants
//! table on every request. Entries live `TENANT_CACHE_SECONDS`; a suspension reaches every replica within that.

use agentd_db::{Db, DbError, TenantId, TenantStatus};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tenant id → (status, when it was read).
#[derive(Default)]
pub struct TenantCache {
    entries: Mutex<HashMap<String, (TenantStatus, Instant)>>,
}

impl TenantCache {
    /// The tenant's status (provisioning it on first sight), from the cache when fresher than `ttl_seconds`.
    pub async fn status(
        &self,
        db: &Db,
        tenant: &TenantId,
        ttl_seconds: u64,
    ) -> Result<TenantStatus, DbError> {
        let ttl = Duration::from_secs(ttl_seconds);
        if ttl_seconds > 0
            && let Ok(map) = self.entries.lock()
            && let Some((status, at)) = map.get(tenant.as_str())
            && at.elapsed() < ttl
        {
            return Ok(*status);
        }
        let status = db.provision_tenant(tenant).await?;
        if ttl_seconds > 0
            && let Ok(mut map) = self.entries.lock()
        {
            if map.len() > 100_000 {
                map.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            map.insert(tenant.as_str().to_owned(), (status, Instant::now()));
        }
        Ok(status)
    }
}
