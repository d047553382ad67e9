//! Measurements the agent keeps about itself. A later change exposes them in Prometheus
//! text with upstream names; for now they feed the local status report and benchmarks.

use std::collections::VecDeque;

/// How many recent samples a histogram keeps for exact quantiles.
const RECENT: usize = 2048;

/// Upstream's default Prometheus buckets (seconds), used for relist and operation latency.
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Cumulative bucket counts (for export) plus a bounded window of recent samples (for
/// quantiles). Memory is fixed whatever the number of observations.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: [u64; DEFAULT_BUCKETS.len()],
    count: u64,
    sum: f64,
    recent: VecDeque<f64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: [0; DEFAULT_BUCKETS.len()],
            count: 0,
            sum: 0.0,
            recent: VecDeque::with_capacity(64),
        }
    }
}

impl Histogram {
    pub fn observe(&mut self, v: f64) {
        for (b, le) in self.buckets.iter_mut().zip(DEFAULT_BUCKETS) {
            if v <= le {
                *b += 1;
            }
        }
        self.count += 1;
        self.sum += v;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(v);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// (upper bound, cumulative count) pairs.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        DEFAULT_BUCKETS
            .iter()
            .copied()
            .zip(self.buckets.iter().copied())
    }

    /// The q-quantile (nearest rank) of the recent samples; 0 when there are none.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.recent.is_empty() {
            return 0.0;
        }
        let mut v: Vec<f64> = self.recent.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }
}

/// Pod start latency (first sight to every app container running), for
/// `kubelet_pod_start_duration_seconds`.
static POD_START: std::sync::Mutex<Option<Histogram>> = std::sync::Mutex::new(None);

pub fn record_pod_start(took: std::time::Duration) {
    let mut h = POD_START.lock().unwrap_or_else(|p| p.into_inner());
    h.get_or_insert_with(Histogram::default)
        .observe(took.as_secs_f64());
}

pub fn pod_start_durations() -> Histogram {
    POD_START
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_buckets() {
        let mut h = Histogram::default();
        for i in 1..=100 {
            h.observe(i as f64 / 1000.0);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile(0.5), 0.05);
        assert_eq!(h.quantile(0.99), 0.099);
        let b: Vec<_> = h.buckets().collect();
        assert_eq!(b[0], (0.005, 5));
        assert_eq!(b[1], (0.01, 10));
        assert_eq!(b[4], (0.1, 100));
        assert!((h.sum() - 5.05).abs() < 1e-9);
    }

    #[test]
    fn window_is_bounded() {
        let mut h = Histogram::default();
        for _ in 0..(RECENT * 2) {
            h.observe(1.0);
        }
        assert_eq!(h.recent.len(), RECENT);
        assert_eq!(h.count(), (RECENT * 2) as u64);
    }
}
