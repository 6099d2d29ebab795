//! Latency distributions: nearest-rank percentiles over the samples of one side of a comparison (merged over
//! its interleaved batches), the signed difference and the ratio of two distributions' percentiles (agentd
//! vs direct), in milliseconds.

use std::time::Duration;

/// Sorted samples of one measure.
#[derive(Debug, Clone, Default)]
pub struct Dist {
    sorted: Vec<Duration>,
}

impl Dist {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self { sorted: samples }
    }

    /// Nearest-rank percentile (`p` in 0..=100), in ms; `None` without samples.
    pub fn pct(&self, p: f64) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let idx = rank.clamp(1, n) - 1;
        self.sorted.get(idx).map(|d| ms(*d))
    }

    /// Adds another distribution's samples (one more batch of the same side).
    pub fn merge(&mut self, other: &Self) {
        self.sorted.extend_from_slice(&other.sorted);
        self.sorted.sort_unstable();
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    pub fn p50(&self) -> Option<f64> {
        self.pct(50.0)
    }

    pub fn p99(&self) -> Option<f64> {
        self.pct(99.0)
    }
}

/// A duration in fractional milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `a - b` when both exist.
pub fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

/// Nearest-rank percentile (`p` in 0..=100) of signed values (e.g. paired differences, ms); `None` without
/// values.
pub fn signed_pct(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n.max(1)) - 1).copied()
}

/// `a / b` when both exist and `b` is positive.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b > 0.0).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let dist = Dist::new((1..=100).rev().map(d).collect());
        assert_eq!(dist.p50(), Some(50.0));
        assert_eq!(dist.p99(), Some(99.0));
        assert_eq!(dist.pct(100.0), Some(100.0));
        assert_eq!(dist.pct(0.0), Some(1.0));
    }

    #[test]
    fn small_and_empty() {
        let one = Dist::new(vec![d(7)]);
        assert_eq!(one.p50(), Some(7.0));
        assert_eq!(one.p99(), Some(7.0));
        assert_eq!(Dist::default().p50(), None);
        assert_eq!(diff(Some(3.0), None), None);
        assert_eq!(diff(Some(3.0), Some(1.0)), Some(2.0));
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
    }

    #[test]
    fn signed_percentiles() {
        let v: Vec<f64> = (1..=100).rev().map(|i| f64::from(i) - 51.0).collect();
        assert_eq!(signed_pct(&v, 50.0), Some(-1.0));
        assert_eq!(signed_pct(&v, 99.0), Some(48.0));
        assert_eq!(signed_pct(&[], 99.0), None);
        assert_eq!(signed_pct(&[-2.5], 99.0), Some(-2.5));
    }

    #[test]
    fn merged_batches_are_one_distribution() {
        let mut a = Dist::new(vec![d(5), d(1)]);
        a.merge(&Dist::new(vec![d(3), d(2), d(4)]));
        assert_eq!(a.len(), 5);
        assert_eq!(a.p50(), Some(3.0));
        assert_eq!(a.pct(100.0), Some(5.0));
    }
}
