//! At most so many of a tenant's requests of one kind at work at once in this process; the rest wait their turn
//! (holding nothing else, a pooled connection least of all) for a while, then are refused. Unlike
//! [`crate::per_tenant::PerTenant`], which refuses at once, a burst of a tenant's own requests is served in
//! order, while another tenant's are never behind it.

use crate::failure::{Code, Failure};
use agentd_db::TenantId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests of one tenant waiting at most, per place: beyond it a request is refused at once.
const WAITING_PER_PLACE: usize = 16;

/// Per-tenant gates. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct TenantGates(Arc<Mutex<HashMap<TenantId, Gate>>>);

struct Gate {
    places: Arc<Semaphore>,
    /// Requests inside or waiting: the gate is forgotten when none is left.
    users: usize,
}

/// A place at a tenant's gate; given back on drop.
pub struct Pass {
    _permit: OwnedSemaphorePermit,
    _user: User,
}

/// Counts as one of the gate's users until dropped.
struct User {
    gates: TenantGates,
    tenant: TenantId,
}

/// Why no place was given.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Too many of the tenant's requests are waiting already.
    Crowded,
    /// None came free within the wait.
    Waited,
}

impl TenantGates {
    /// A place among `places` for `tenant`, waiting at most `wait` for one.
    pub(crate) async fn enter(
        &self,
        tenant: &TenantId,
        places: u32,
        wait: Duration,
    ) -> Result<Pass, Refused> {
        let places = places.max(1) as usize;
        let (sem, user) = {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let gate = map.entry(tenant.clone()).or_insert_with(|| Gate {
                places: Arc::new(Semaphore::new(places)),
                users: 0,
            });
            if gate.users >= places * (1 + WAITING_PER_PLACE) {
                return Err(Refused::Crowded);
            }
            gate.users += 1;
            let user = User {
                gates: self.clone(),
                tenant: tenant.clone(),
            };
            (gate.places.clone(), user)
        };
        match tokio::time::timeout(wait, sem.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Pass {
                _permit: permit,
                _user: user,
            }),
            // The semaphore is never closed.
            _ => Err(Refused::Waited),
        }
    }
}

/// How long a read waits for a place.
const READ_WAIT: Duration = Duration::from_secs(5);

/// See [`crate::Turns::reading`].
pub(crate) async fn reading(
    gates: &TenantGates,
    tenant: &TenantId,
    max: u32,
) -> Result<Option<Pass>, Failure> {
    if max == 0 {
        return Ok(None);
    }
    gates.enter(tenant, max, READ_WAIT).await.map(Some).map_err(|r| {
        let why = match r {
            Refused::Crowded => "too many more are waiting",
            Refused::Waited => "none ended within 5 s",
        };
        let m =
            format!("This tenant has {max} reads in progress on this server (READS_PER_TENANT) and {why}.");
        Failure::new(Code::RateLimited, m).retry_after(1)
    })
}

impl Drop for User {
    fn drop(&mut self) {
        let mut map = self.gates.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(gate) = map.get_mut(&self.tenant) {
            gate.users = gate.users.saturating_sub(1);
            if gate.users == 0 {
                map.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    /// Two places: a third waits and goes in when one is given back; another tenant never waits; a request
    /// that waits too long, or finds too many waiting, is refused; a tenant with nobody inside is forgotten.
    #[tokio::test(start_paused = true)]
    async fn a_tenant_waits_for_its_own_places_only() {
        let gates = TenantGates::default();
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        let wait = Duration::from_secs(5);
        let first = gates.enter(&a, 2, wait).await.unwrap();
        let _second = gates.enter(&a, 2, wait).await.unwrap();
        let other = gates.enter(&b, 2, wait).await;
        assert!(other.is_ok(), "another tenant's places");
        let third = {
            let gates = gates.clone();
            let a = a.clone();
            tokio::spawn(async move { gates.enter(&a, 2, wait).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!third.is_finished(), "it waits");
        drop(first);
        let third = third.await.unwrap().expect("and goes in when a place is free");
        assert_eq!(
            gates.enter(&a, 2, wait).await.map(|_| ()),
            Err(Refused::Waited),
            "none came free within the wait"
        );
        let waiting: Vec<_> = (0..2 * WAITING_PER_PLACE)
            .map(|_| {
                let (gates, a) = (gates.clone(), a.clone());
                tokio::spawn(async move { gates.enter(&a, 2, wait).await.map(|_| ()) })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(
            gates.enter(&a, 2, wait).await.map(|_| ()),
            Err(Refused::Crowded),
            "too many waiting"
        );
        drop((_second, third, other));
        for w in waiting {
            let _ = w.await;
        }
        assert!(gates.0.lock().unwrap().is_empty(), "forgotten when empty");
    }
}
