//! What each tenant holds at once in this process — uploads being received, run readers open, admissions using
//! the database — counted per tenant, so that one tenant cannot take all of it: [`PerTenant::take`] gives a
//! [`Held`] that counts until it is dropped.

use agentd_db::TenantId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Counts per tenant. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct PerTenant(Arc<Mutex<HashMap<TenantId, u32>>>);

/// One of a tenant's count; gives it back on drop.
pub(crate) struct Held {
    of: PerTenant,
    tenant: TenantId,
}

impl PerTenant {
    /// One more for `tenant`, unless it holds `max` already (`max` 0: no limit).
    pub(crate) fn take(&self, tenant: &TenantId, max: u32) -> Option<Held> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(tenant.clone()).or_default();
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(Held {
            of: self.clone(),
            tenant: tenant.clone(),
        })
    }
}

/// A tenant's place among its conversations being sent by this process (see
/// [`crate::Turns::sending_conversation`]); given back on drop.
pub struct SendingPermit(#[expect(dead_code, reason = "held for its drop")] pub(crate) Held);

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.of.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_holds_at_most_max_and_gets_them_back() {
        let counts = PerTenant::default();
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        let first = counts.take(&a, 2).unwrap();
        let _second = counts.take(&a, 2).unwrap();
        assert!(counts.take(&a, 2).is_none(), "a third");
        assert!(counts.take(&b, 2).is_some(), "another tenant's own count");
        drop(first);
        assert!(counts.take(&a, 2).is_some(), "given back on drop");
        let many: Vec<Option<Held>> = (0..100).map(|_| counts.take(&a, 0)).collect();
        assert!(many.iter().all(Option::is_some), "0: no limit");
        let map = counts.0.lock().unwrap();
        assert!(!map.contains_key(&b), "a tenant holding nothing is forgotten");
    }
}
