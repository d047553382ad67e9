//! Summaries of latency samples. Pure.

use serde::Serialize;

/// Nearest-rank quantile of sorted samples (q in 0..=1); 0 for no samples.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50/p99/max of one set of per-pod latencies, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
    /// Every sample, sorted, for re-analysis and the plot.
    pub samples_s: Vec<f64>,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Summary {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        Summary {
            count: s.len(),
            p50_s: quantile(&s, 0.5),
            p99_s: quantile(&s, 0.99),
            max_s: s.last().copied().unwrap_or(0.0),
            samples_s: s,
        }
    }
}

/// `a / b`, or None when `b` is 0 (no samples).
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}
