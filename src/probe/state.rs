//! A probe's timing with upstream's defaults, and its debounced result: the pure state
//! machine of upstream's prober worker (`pkg/kubelet/prober/worker.go`), without time.

use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;

use super::{ProbeKind, ProbeResult};

/// A probe's timing and thresholds after defaulting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl ProbeSpec {
    /// Upstream's defaults: initialDelaySeconds 0, periodSeconds 10, timeoutSeconds 1,
    /// successThreshold 1, failureThreshold 3; unset or 0 means the default (API
    /// defaulting). Negative values, which API validation rejects, become the minimum
    /// (0 for the delay, 1 for the rest). successThreshold is 1 for liveness and startup,
    /// the only value the API accepts for them.
    pub fn from_probe(kind: ProbeKind, probe: &Probe) -> Self {
        fn value(v: Option<i32>, default: u32) -> u32 {
            match v {
                None | Some(0) => default,
                Some(n) => u32::try_from(n).unwrap_or(1),
            }
        }
        let delay = u64::try_from(probe.initial_delay_seconds.unwrap_or(0)).unwrap_or(0);
        let success_threshold = match kind {
            ProbeKind::Readiness => value(probe.success_threshold, 1),
            ProbeKind::Liveness | ProbeKind::Startup => 1,
        };
        ProbeSpec {
            initial_delay: Duration::from_secs(delay),
            period: Duration::from_secs(u64::from(value(probe.period_seconds, 10))),
            timeout: Duration::from_secs(u64::from(value(probe.timeout_seconds, 1))),
            success_threshold,
            failure_threshold: value(probe.failure_threshold, 3),
        }
    }
}

/// The debounced result of one probe of one container.
///
/// A result takes effect only after `successThreshold` consecutive successes or
/// `failureThreshold` consecutive failures (Warning counts as success). After a liveness
/// or startup failure has taken effect the probe is on hold (the container is going to be
/// restarted); a startup probe that has succeeded is done. Either way it is not run again
/// for this container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeState {
    kind: ProbeKind,
    success_threshold: u32,
    failure_threshold: u32,
    /// The debounced result; `None` is upstream's Unknown (a startup probe before its
    /// first verdict).
    current: Option<ProbeResult>,
    /// The last raw result and how many times in a row it came.
    last: Option<ProbeResult>,
    run: u32,
    on_hold: bool,
}

impl ProbeState {
    pub fn new(kind: ProbeKind, spec: &ProbeSpec) -> Self {
        ProbeState {
            kind,
            success_threshold: spec.success_threshold.max(1),
            failure_threshold: spec.failure_threshold.max(1),
            current: kind.initial_result(),
            last: None,
            run: 0,
            on_hold: false,
        }
    }

    /// Takes one raw result; returns the new debounced result if it changed.
    pub fn observe(&mut self, result: ProbeResult) -> Option<ProbeResult> {
        if self.finished() {
            return None;
        }
        let result = if result.is_success() {
            ProbeResult::Success
        } else {
            ProbeResult::Failure
        };
        if self.last == Some(result) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(result);
            self.run = 1;
        }
        let threshold = match result {
            ProbeResult::Failure => self.failure_threshold,
            _ => self.success_threshold,
        };
        if self.run < threshold {
            return None;
        }
        let changed = self.current != Some(result);
        self.current = Some(result);
        if result == ProbeResult::Failure && self.kind != ProbeKind::Readiness {
            // The container is going to be restarted; probing it more only races with
            // its stop (upstream's onHold, kubernetes#21751).
            self.on_hold = true;
            self.run = 0;
        }
        changed.then_some(result)
    }

    /// The debounced result; `None` until a startup probe's first verdict.
    pub fn current(&self) -> Option<ProbeResult> {
        self.current
    }

    /// For a startup probe: the container has started (the probe succeeded).
    pub fn started(&self) -> bool {
        self.current == Some(ProbeResult::Success)
    }

    /// Not to be run again for this container.
    pub fn finished(&self) -> bool {
        self.on_hold || (self.kind == ProbeKind::Startup && self.started())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProbeResult::{Failure, Success, Warning};

    fn spec(success: u32, failure: u32) -> ProbeSpec {
        ProbeSpec {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn defaults_as_upstream() {
        let s = ProbeSpec::from_probe(ProbeKind::Readiness, &Probe::default());
        assert_eq!(
            s,
            ProbeSpec {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
        let odd = Probe {
            initial_delay_seconds: Some(-5),
            period_seconds: Some(-1),
            timeout_seconds: Some(0),
            success_threshold: Some(4),
            failure_threshold: Some(0),
            ..Default::default()
        };
        let s = ProbeSpec::from_probe(ProbeKind::Liveness, &odd);
        assert_eq!(s.initial_delay, Duration::ZERO);
        assert_eq!(s.period, Duration::from_secs(1));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!(
            s.success_threshold, 1,
            "liveness successThreshold is always 1"
        );
        assert_eq!(s.failure_threshold, 3);
        let s = ProbeSpec::from_probe(ProbeKind::Readiness, &odd);
        assert_eq!(s.success_threshold, 4);
    }

    #[test]
    fn initial_results() {
        let s = spec(1, 3);
        assert_eq!(
            ProbeState::new(ProbeKind::Readiness, &s).current(),
            Some(Failure)
        );
        assert_eq!(
            ProbeState::new(ProbeKind::Liveness, &s).current(),
            Some(Success)
        );
        assert_eq!(ProbeState::new(ProbeKind::Startup, &s).current(), None);
    }

    #[test]
    fn readiness_debounces_both_ways() {
        let mut r = ProbeState::new(ProbeKind::Readiness, &spec(2, 3));
        assert_eq!(r.observe(Success), None, "1 of 2 successes");
        assert_eq!(r.observe(Failure), None, "run broken");
        assert_eq!(r.observe(Success), None);
        assert_eq!(
            r.observe(Warning),
            Some(Success),
            "warning counts as success"
        );
        assert_eq!(r.observe(Success), None, "no change, no update");
        assert_eq!(r.observe(Failure), None);
        assert_eq!(r.observe(Failure), None);
        assert_eq!(r.observe(Failure), Some(Failure));
        assert_eq!(r.observe(Failure), None);
        assert!(!r.finished(), "readiness keeps probing after failing");
        assert_eq!(r.observe(Success), None);
        assert_eq!(r.observe(Success), Some(Success));
    }

    #[test]
    fn liveness_failure_puts_the_probe_on_hold() {
        let mut l = ProbeState::new(ProbeKind::Liveness, &spec(1, 3));
        assert_eq!(l.observe(Success), None, "already success");
        assert_eq!(l.observe(Failure), None);
        assert_eq!(l.observe(Failure), None);
        assert_eq!(l.observe(Failure), Some(Failure));
        assert!(l.finished());
        assert_eq!(l.observe(Success), None, "on hold until a new container");
    }

    #[test]
    fn startup_goes_from_unknown_to_a_verdict() {
        let mut s = ProbeState::new(ProbeKind::Startup, &spec(1, 2));
        assert_eq!(s.observe(Failure), None);
        assert!(!s.started());
        assert_eq!(
            s.observe(Success),
            Some(Success),
            "Unknown -> Success is a change"
        );
        assert!(s.started() && s.finished());

        let mut s = ProbeState::new(ProbeKind::Startup, &spec(1, 2));
        assert_eq!(s.observe(Failure), None);
        assert_eq!(
            s.observe(Failure),
            Some(Failure),
            "Unknown -> Failure is a change"
        );
        assert!(!s.started() && s.finished());
    }
}
