//! What each tenant holds at once in this process — uploads being received, run readers open, admissions using
//! the database — counted per tenant, so that one tenant cannot take all of it: [`PerTenant::take`] gives a
//! [`Held`] that counts until it is dropped (or nothing, past the limit), [`Gates::enter`] waits for its turn.

use agentd_db::TenantId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// A gate per tenant that lets `n` through at once; the others wait in line, holding nothing else.
#[derive(Clone, Default)]
pub(crate) struct Gates(Arc<Mutex<HashMap<TenantId, Arc<Semaphore>>>>);

/// Passage through a tenant's gate; the next in line goes when it is dropped.
pub(crate) struct Passage {
    permit: Option<OwnedSemaphorePermit>,
    gates: Gates,
    tenant: TenantId,
}

impl Gates {
    /// Waits until fewer than `n` (at least 1) of `tenant` are through.
    pub(crate) async fn enter(&self, tenant: &TenantId, n: u32) -> Passage {
        let gate = {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let gate = map.entry(tenant.clone());
            Arc::clone(gate.or_insert_with(|| Arc::new(Semaphore::new(n.max(1) as usize))))
        };
        // The semaphore is never closed.
        let permit = gate.acquire_owned().await.ok();
        Passage {
            permit,
            gates: self.clone(),
            tenant: tenant.clone(),
        }
    }
}

impl Drop for Passage {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut map = self.gates.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Forgotten once nobody is through or waiting: only the map holds the gate (clones are made under the
        // lock, so none is on its way).
        if map.get(&self.tenant).is_some_and(|g| Arc::strong_count(g) == 1) {
            map.remove(&self.tenant);
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

    #[tokio::test]
    async fn a_gate_lets_n_of_a_tenant_through_and_forgets_it_when_empty() {
        let gates = Gates::default();
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        let first = gates.enter(&a, 1).await;
        let waiting = {
            let (gates, a) = (gates.clone(), a.clone());
            tokio::spawn(async move { gates.enter(&a, 1).await })
        };
        tokio::task::yield_now().await;
        let other = gates.enter(&b, 1).await; // another tenant's gate is its own
        assert!(!waiting.is_finished(), "the second of `a` waits");
        drop(first);
        let second = waiting.await.unwrap();
        drop(second);
        drop(other);
        assert!(gates.0.lock().unwrap().is_empty(), "empty gates are forgotten");
    }
}
