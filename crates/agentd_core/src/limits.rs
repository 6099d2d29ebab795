//! Per-tenant limits: turns started per minute (a sliding pair of one-minute windows) and turns running at
//! once. In-process: with several replicas each enforces its own share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct TenantState {
    window_start: Option<Instant>,
    current: u32,
    previous: u32,
    running: u32,
}

/// Why a turn may not start now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    PerMinute { retry_after: u64 },
    Concurrent,
}

#[derive(Clone, Default)]
pub(crate) struct Limits {
    state: Arc<Mutex<HashMap<String, TenantState>>>,
}

/// Holds one running-turn slot; released on drop.
pub(crate) struct Slot {
    limits: Limits,
    tenant: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.limits.state.lock()
            && let Some(s) = map.get_mut(&self.tenant)
        {
            s.running = s.running.saturating_sub(1);
        }
    }
}

impl Limits {
    /// Counts a turn start against `per_minute` and takes a running slot under `concurrent` (0 = unlimited).
    pub(crate) fn acquire(&self, tenant: &str, per_minute: u32, concurrent: u32) -> Result<Slot, Refusal> {
        self.acquire_at(tenant, per_minute, concurrent, Instant::now())
    }

    fn acquire_at(
        &self,
        tenant: &str,
        per_minute: u32,
        concurrent: u32,
        now: Instant,
    ) -> Result<Slot, Refusal> {
        let mut map = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = map.entry(tenant.to_owned()).or_default();
        let minute = Duration::from_secs(60);
        let start = *s.window_start.get_or_insert(now);
        let elapsed = now.duration_since(start);
        if elapsed >= minute * 2 {
            (s.previous, s.current, s.window_start) = (0, 0, Some(now));
        } else if elapsed >= minute {
            (s.previous, s.current, s.window_start) = (s.current, 0, Some(start + minute));
        }
        let into_window = now.duration_since(s.window_start.unwrap_or(now)).as_secs_f64() / 60.0;
        let weighted = f64::from(s.previous) * (1.0 - into_window) + f64::from(s.current);
        if per_minute > 0 && weighted + 1.0 > f64::from(per_minute) {
            let retry_after = (60.0 * (1.0 - into_window)).ceil().max(1.0) as u64;
            return Err(Refusal::PerMinute { retry_after });
        }
        if concurrent > 0 && s.running >= concurrent {
            return Err(Refusal::Concurrent);
        }
        s.current += 1;
        s.running += 1;
        drop(map);
        Ok(Slot {
            limits: self.clone(),
            tenant: tenant.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_minute_and_concurrency() {
        let l = Limits::default();
        let t0 = Instant::now();
        let a = l.acquire_at("t", 3, 2, t0).unwrap();
        let _b = l.acquire_at("t", 3, 2, t0).unwrap();
        assert_eq!(l.acquire_at("t", 3, 2, t0).err(), Some(Refusal::Concurrent));
        assert!(l.acquire_at("other", 3, 2, t0).is_ok(), "tenants are independent");
        drop(a);
        let _c = l.acquire_at("t", 3, 0, t0).unwrap();
        assert!(
            matches!(l.acquire_at("t", 3, 0, t0), Err(Refusal::PerMinute { retry_after }) if retry_after <= 60)
        );
        // Two minutes later the windows are empty again.
        assert!(l.acquire_at("t", 3, 0, t0 + Duration::from_secs(121)).is_ok());
        assert!(l.acquire_at("u", 0, 0, t0).is_ok(), "0 = unlimited");
    }
}
