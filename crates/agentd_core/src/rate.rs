//! This process's memory of the tenant rate limit's refusals. The limit itself is the database's GCRA cell,
//! shared by every replica; once it refuses a tenant until an instant, every request before that instant would be
//! refused too (the cell's time only moves forward), so this process refuses them without a statement. A
//! tenant flooding past its limit costs one statement per window, not one per request.

use agentd_db::TenantId;
use std::collections::HashMap;
use std::sync::Mutex;

/// Tenants remembered at most; beyond it, lapsed refusals are forgotten first, then all.
const MAX_TENANTS: usize = 10_000;

#[derive(Default)]
pub(crate) struct RefusalMemo(Mutex<HashMap<TenantId, i64>>);

impl RefusalMemo {
    /// Seconds to wait when `tenant` is known to be refused at `now_us` (microseconds since the epoch).
    pub(crate) fn refused(&self, tenant: &TenantId, now_us: i64) -> Option<u64> {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = *map.get(tenant)?;
        (until > now_us).then(|| ((until - now_us) as u64).div_ceil(1_000_000).max(1))
    }

    /// The database refused `tenant` until `until_us`.
    pub(crate) fn remember(&self, tenant: &TenantId, until_us: i64, now_us: i64) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_TENANTS {
            map.retain(|_, until| *until > now_us);
            if map.len() >= MAX_TENANTS {
                map.clear();
            }
        }
        map.insert(tenant.clone(), until_us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_until_the_instant_then_forgets() {
        let memo = RefusalMemo::default();
        let t = TenantId::parse("acme").unwrap();
        assert_eq!(memo.refused(&t, 0), None);
        memo.remember(&t, 2_500_000, 0);
        assert_eq!(memo.refused(&t, 0), Some(3));
        assert_eq!(memo.refused(&t, 2_000_000), Some(1));
        assert_eq!(memo.refused(&t, 2_500_000), None);
        let other = TenantId::parse("other").unwrap();
        assert_eq!(memo.refused(&other, 0), None, "per tenant");
    }
}
