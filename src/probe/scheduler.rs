//! The probe scheduler: one task for every probe of every pod.
//!
//! [`Schedule`] is the pure part (no I/O, time passed in): a binary heap of (next due,
//! probe) with lazy deletion, the startup gate, and each probe's [`ProbeState`].
//! [`ProbeManager`] drives it from a single task with one timer (`sleep_until` the
//! earliest due time) and runs due probes as short-lived tasks in a `JoinSet`, at most
//! [`MAX_IN_FLIGHT`] at once, so a slow probe never delays another's schedule. Nothing
//! here sleeps per probe.
//!
//! Semantics are upstream's prober worker, with these differences, each deliberate:
//! - The first run is at container start + initialDelaySeconds exactly, then every
//!   periodSeconds; upstream checks the delay on its ticker, so may run up to one
//!   period later.
//! - A container restart is a new `add` (new container id): the caller tells us, instead
//!   of the worker polling the pod status.
//! - Probe errors (upstream throws these results away) are counted as `unknown`;
//!   upstream counts them nowhere.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::core::v1::Probe;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::handler::{Handler, attempt};
use super::{Exec, ProbeError, ProbeKey, ProbeKind, ProbeOutcome, ProbeResult, Target};
use super::{ProbeSpec, ProbeState};

/// Probe executions in flight at once; further due probes wait their turn in order.
pub const MAX_IN_FLIGHT: usize = 64;

/// A change of a probe's debounced result. Sent only on change; a new container starts
/// from `key.kind.initial_result()` without an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeUpdate {
    pub key: ProbeKey,
    /// The container the result is about: drop updates for a container you replaced.
    pub container_id: String,
    /// Success or Failure (a Warning counts as Success).
    pub result: ProbeResult,
    /// The message of the run that made the change (e.g. the failure's reason).
    pub message: String,
}

/// Runs of one probe by result, as upstream's `prober_probe_total` (result label
/// `successful`, `failed`, `unknown`). Kept while the probe is registered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeCounts {
    pub successful: u64,
    pub failed: u64,
    /// Runs that could not be carried out (see [`super::Exec`]); their result was
    /// thrown away.
    pub unknown: u64,
}

/// The scheduler's own cost counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Probes registered (including finished ones kept for the startup gate).
    pub probes: usize,
    /// Tasks spawned so far: one per probe execution.
    pub executions_spawned: u64,
    /// Executions running now.
    pub in_flight: usize,
    /// Due executions waiting for a free slot.
    pub queued: usize,
}

#[derive(Default)]
struct Stats {
    probes: AtomicUsize,
    spawned: AtomicU64,
    in_flight: AtomicUsize,
    queued: AtomicUsize,
}

type Counts = Arc<Mutex<HashMap<ProbeKey, ProbeCounts>>>;

/// Handle to the scheduler task. Cheap to clone; the task ends (cancelling running
/// probes) when the last handle is dropped.
///
/// The caller's part of upstream's worker loop: `add` each probe when its container is
/// running (again with the new container id after a restart), `remove` it or
/// `remove_pod` when the container or pod stops, and drop updates whose `container_id`
/// is no longer current.
#[derive(Clone)]
pub struct ProbeManager {
    commands: mpsc::UnboundedSender<Command>,
    counts: Counts,
    stats: Arc<Stats>,
}

enum Command {
    Add(Box<NewProbe>),
    Remove(ProbeKey),
    RemovePod(String),
}

struct NewProbe {
    key: ProbeKey,
    probe: Probe,
    handler: Handler,
    target: Target,
    started_at: Instant,
}

impl ProbeManager {
    /// Starts the scheduler task; must be called within a Tokio runtime. Debounced
    /// changes arrive on the returned receiver.
    pub fn new(exec: Arc<dyn Exec>) -> (ProbeManager, mpsc::UnboundedReceiver<ProbeUpdate>) {
        let (commands, rx) = mpsc::unbounded_channel();
        let (updates, updates_rx) = mpsc::unbounded_channel();
        let counts = Counts::default();
        let stats = Arc::<Stats>::default();
        let jitter = || rand::random::<f64>();
        let schedule = Schedule::new(Instant::now(), Box::new(jitter), counts.clone());
        tokio::spawn(drive(schedule, rx, updates, exec, stats.clone()));
        (
            ProbeManager {
                commands,
                counts,
                stats,
            },
            updates_rx,
        )
    }

    /// Starts probing a container (`started_at`: when it started running), or replaces
    /// the probe under `key`. Adding the same probe for the same container again changes
    /// nothing, so callers may add on every sync.
    pub fn add(
        &self,
        key: ProbeKey,
        probe: Probe,
        target: Target,
        started_at: Instant,
    ) -> Result<(), ProbeError> {
        let handler = Handler::from_probe(&probe)?;
        self.commands
            .send(Command::Add(Box::new(NewProbe {
                key,
                probe,
                handler,
                target,
                started_at,
            })))
            .map_err(|_| ProbeError::SchedulerStopped)
    }

    /// Stops one probe; a run in flight is discarded.
    pub fn remove(&self, key: ProbeKey) {
        let _ = self.commands.send(Command::Remove(key));
    }

    /// Stops every probe of a pod.
    pub fn remove_pod(&self, pod_uid: &str) {
        let _ = self.commands.send(Command::RemovePod(pod_uid.to_string()));
    }

    /// Runs so far of every registered probe, by result.
    pub fn counts(&self) -> Vec<(ProbeKey, ProbeCounts)> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<_> = counts.iter().map(|(k, c)| (k.clone(), *c)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            probes: self.stats.probes.load(Ordering::Relaxed),
            executions_spawned: self.stats.spawned.load(Ordering::Relaxed),
            in_flight: self.stats.in_flight.load(Ordering::Relaxed),
            queued: self.stats.queued.load(Ordering::Relaxed),
        }
    }
}

/// The scheduler task: applies commands, fires due probes, collects their results.
async fn drive(
    mut schedule: Schedule,
    mut commands: mpsc::UnboundedReceiver<Command>,
    updates: mpsc::UnboundedSender<ProbeUpdate>,
    exec: Arc<dyn Exec>,
    stats: Arc<Stats>,
) {
    let mut running: JoinSet<(EntryId, Result<ProbeOutcome, ProbeError>)> = JoinSet::new();
    let mut queued: VecDeque<Run> = VecDeque::new();
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        while running.len() < MAX_IN_FLIGHT {
            let Some(run) = queued.pop_front() else { break };
            if !schedule.is_live(run.id) {
                continue;
            }
            let exec = exec.clone();
            running.spawn(async move {
                let once = attempt(&run.handler, &run.target, &*exec, run.timeout);
                let result = AssertUnwindSafe(once)
                    .catch_unwind()
                    .await
                    .unwrap_or(Err(ProbeError::Panicked));
                (run.id, result)
            });
            stats.spawned.fetch_add(1, Ordering::Relaxed);
        }
        stats.probes.store(schedule.len(), Ordering::Relaxed);
        stats.in_flight.store(running.len(), Ordering::Relaxed);
        stats.queued.store(queued.len(), Ordering::Relaxed);

        let due = schedule.next_due();
        if due != armed {
            if let Some(t) = due {
                timer.as_mut().reset(tokio::time::Instant::from_std(t));
            }
            armed = due;
        }
        tokio::select! {
            command = commands.recv() => match command {
                Some(c) => schedule.apply(c, Instant::now()),
                None => return,
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok((id, result)) = done
                    && let Some(update) = schedule.complete(id, result)
                {
                    let _ = updates.send(update);
                }
            }
            () = &mut timer, if armed.is_some() => {
                armed = None;
                queued.extend(schedule.pop_due(Instant::now()));
            }
        }
    }
}

type EntryId = u64;

/// One registered probe.
struct Entry {
    key: ProbeKey,
    probe: Probe,
    handler: Arc<Handler>,
    target: Arc<Target>,
    spec: ProbeSpec,
    state: ProbeState,
    next_due: Instant,
    in_flight: bool,
}

/// A probe execution to start.
pub(super) struct Run {
    id: EntryId,
    handler: Arc<Handler>,
    target: Arc<Target>,
    timeout: Duration,
}

/// The pure scheduler state: which probe is due when, and what its results mean.
pub(super) struct Schedule {
    entries: HashMap<EntryId, Entry>,
    ids: HashMap<ProbeKey, EntryId>,
    /// (due, id); an item is stale when the entry is gone or due elsewhen.
    heap: BinaryHeap<Reverse<(Instant, EntryId)>>,
    next_id: EntryId,
    created: Instant,
    /// A fraction in [0, 1): spreads first runs after a restart of ironlet.
    jitter: Box<dyn FnMut() -> f64 + Send>,
    counts: Counts,
}

impl Schedule {
    fn new(created: Instant, jitter: Box<dyn FnMut() -> f64 + Send>, counts: Counts) -> Self {
        Schedule {
            entries: HashMap::new(),
            ids: HashMap::new(),
            heap: BinaryHeap::new(),
            next_id: 0,
            created,
            jitter,
            counts,
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn apply(&mut self, command: Command, now: Instant) {
        match command {
            Command::Add(p) => {
                let NewProbe {
                    key,
                    probe,
                    handler,
                    target,
                    started_at,
                } = *p;
                self.add(key, probe, handler, target, started_at, now);
            }
            Command::Remove(key) => self.remove(&key),
            Command::RemovePod(uid) => self.remove_pod(&uid),
        }
    }

    fn add(
        &mut self,
        key: ProbeKey,
        probe: Probe,
        handler: Handler,
        target: Target,
        started_at: Instant,
        now: Instant,
    ) {
        if let Some(old) = self.ids.get(&key).and_then(|id| self.entries.get(id))
            && old.probe == probe
            && *old.target == target
        {
            return;
        }
        if let Some(old) = self.ids.remove(&key) {
            self.entries.remove(&old);
        }
        let spec = ProbeSpec::from_probe(key.kind, &probe);
        let mut first = started_at
            .checked_add(spec.initial_delay)
            .unwrap_or(now)
            .max(now);
        // Right after ironlet starts, every adopted container is added at once: spread
        // their first runs over one period, as upstream does.
        if now.saturating_duration_since(self.created) < spec.period {
            let fraction = (self.jitter)().clamp(0.0, 1.0);
            first = first.max(now + spec.period.mul_f64(fraction));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default();
        self.entries.insert(
            id,
            Entry {
                state: ProbeState::new(key.kind, &spec),
                key: key.clone(),
                probe,
                handler: Arc::new(handler),
                target: Arc::new(target),
                spec,
                next_due: first,
                in_flight: false,
            },
        );
        self.ids.insert(key, id);
        self.heap.push(Reverse((first, id)));
    }

    fn remove(&mut self, key: &ProbeKey) {
        if let Some(id) = self.ids.remove(key) {
            self.entries.remove(&id);
        }
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    fn remove_pod(&mut self, pod_uid: &str) {
        let keys: Vec<ProbeKey> = self
            .ids
            .keys()
            .filter(|k| k.pod_uid == pod_uid)
            .cloned()
            .collect();
        for key in keys {
            self.remove(&key);
        }
    }

    fn is_live(&self, id: EntryId) -> bool {
        self.entries.contains_key(&id)
    }

    /// When the earliest probe is due (possibly a stale item: waking for it is harmless).
    fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Whether the container's startup probe exists and has not succeeded yet.
    fn awaiting_startup(&self, key: &ProbeKey) -> bool {
        let startup = ProbeKey {
            kind: ProbeKind::Startup,
            ..key.clone()
        };
        self.ids
            .get(&startup)
            .and_then(|id| self.entries.get(id))
            .is_some_and(|e| !e.state.started())
    }

    /// Takes every probe due by `now`, schedules its next tick, and returns those to run.
    /// A tick is skipped while the previous run is still going (upstream's worker runs
    /// one probe at a time), while liveness/readiness wait for the startup probe, and for
    /// good once the probe is finished for this container.
    fn pop_due(&mut self, now: Instant) -> Vec<Run> {
        let mut runs = Vec::new();
        while let Some(Reverse((due, id))) = self.heap.peek().copied() {
            if due > now {
                break;
            }
            self.heap.pop();
            let gated = match self.entries.get(&id) {
                Some(e) if e.next_due == due => {
                    e.key.kind != ProbeKind::Startup && self.awaiting_startup(&e.key)
                }
                _ => continue,
            };
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            if e.state.finished() {
                continue;
            }
            let mut next = due + e.spec.period;
            if next <= now {
                // Fell behind (a stalled runtime): skip the missed ticks.
                next = now + e.spec.period;
            }
            e.next_due = next;
            self.heap.push(Reverse((next, id)));
            if gated || e.in_flight {
                continue;
            }
            e.in_flight = true;
            runs.push(Run {
                id,
                handler: e.handler.clone(),
                target: e.target.clone(),
                timeout: e.spec.timeout,
            });
        }
        runs
    }

    /// Takes the result of a run; returns the update to send if the debounced result
    /// changed. Results for a probe removed or replaced meanwhile are dropped.
    fn complete(
        &mut self,
        id: EntryId,
        result: Result<ProbeOutcome, ProbeError>,
    ) -> Option<ProbeUpdate> {
        let entry = self.entries.get_mut(&id)?;
        entry.in_flight = false;
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let counts = counts.entry(entry.key.clone()).or_default();
        let outcome = match result {
            Ok(o) => o,
            Err(error) => {
                counts.unknown += 1;
                tracing::debug!(pod_uid = %entry.key.pod_uid, container = %entry.key.container,
                    probe = entry.key.kind.as_str(), %error, "probe errored; result discarded");
                return None;
            }
        };
        if outcome.result.is_success() {
            counts.successful += 1;
        } else {
            counts.failed += 1;
        }
        let changed = entry.state.observe(outcome.result)?;
        Some(ProbeUpdate {
            key: entry.key.clone(),
            container_id: entry.target.container_id.clone(),
            result: changed,
            message: outcome.message,
        })
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ExecAction, TCPSocketAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;
    use crate::probe::exec::tests::FakeExec;
    use ProbeResult::{Failure, Success};

    fn key(kind: ProbeKind) -> ProbeKey {
        ProbeKey {
            pod_uid: "pod-1".into(),
            container: "app".into(),
            kind,
        }
    }

    fn probe(period: i32, delay: i32, success: i32, failure: i32) -> Probe {
        Probe {
            exec: Some(ExecAction {
                command: Some(vec!["check".into()]),
            }),
            period_seconds: Some(period),
            initial_delay_seconds: Some(delay),
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            ..Default::default()
        }
    }

    fn target(container_id: &str) -> Target {
        Target {
            pod_ip: "127.0.0.1".into(),
            container_id: container_id.into(),
            container: Default::default(),
        }
    }

    /// A schedule on a fake clock: `at(s)` is `s` seconds after the base instant. It was
    /// created long before, so there is no start-up jitter unless a test asks for it.
    struct Clock {
        base: Instant,
    }

    impl Clock {
        fn new() -> Self {
            Clock {
                base: Instant::now() + Duration::from_secs(1000),
            }
        }
        fn at(&self, secs: f64) -> Instant {
            let d = Duration::from_secs_f64(secs.abs());
            if secs < 0.0 {
                self.base - d
            } else {
                self.base + d
            }
        }
        fn schedule(&self) -> Schedule {
            Schedule::new(
                self.base - Duration::from_secs(1000),
                Box::new(|| 0.0),
                Counts::default(),
            )
        }
    }

    fn add(
        s: &mut Schedule,
        kind: ProbeKind,
        p: Probe,
        container: &str,
        started: Instant,
        now: Instant,
    ) {
        let handler = Handler::from_probe(&p).unwrap();
        s.add(key(kind), p, handler, target(container), started, now);
    }

    fn kinds(runs: &[Run], s: &Schedule) -> Vec<ProbeKind> {
        runs.iter().map(|r| s.entries[&r.id].key.kind).collect()
    }

    fn ok(result: ProbeResult) -> Result<ProbeOutcome, ProbeError> {
        Ok(ProbeOutcome {
            result,
            message: format!("{result:?}"),
        })
    }

    #[test]
    fn first_run_after_initial_delay_then_every_period() {
        let c = Clock::new();
        let mut s = c.schedule();
        add(
            &mut s,
            ProbeKind::Readiness,
            probe(2, 5, 1, 3),
            "c1",
            c.at(0.0),
            c.at(0.0),
        );
        assert_eq!(s.next_due(), Some(c.at(5.0)));
        assert!(s.pop_due(c.at(4.9)).is_empty());
        let runs = s.pop_due(c.at(5.0));
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].timeout, Duration::from_secs(1));
        assert_eq!(s.next_due(), Some(c.at(7.0)));
        s.complete(runs[0].id, ok(Success));
        assert_eq!(s.pop_due(c.at(7.0)).len(), 1);

        // A container that started long ago is probed at once.
        let mut s = c.schedule();
        add(
            &mut s,
            ProbeKind::Liveness,
            probe(10, 5, 1, 3),
            "c1",
            c.at(0.0),
            c.at(60.0),
        );
        assert_eq!(s.next_due(), Some(c.at(60.0)));
    }

    #[test]
    fn updates_only_on_debounced_change() {
        let c = Clock::new();
        let mut s = c.schedule();
        add(
            &mut s,
            ProbeKind::Readiness,
            probe(1, 0, 2, 2),
            "c1",
            c.at(0.0),
            c.at(0.0),
        );
        let mut results = Vec::new();
        for (i, r) in [
            Success, Success, Success, Failure, Success, Failure, Failure,
        ]
        .into_iter()
        .enumerate()
        {
            let runs = s.pop_due(c.at(i as f64));
            assert_eq!(runs.len(), 1, "tick {i}");
            results.push(s.complete(runs[0].id, ok(r)).map(|u| u.result));
        }
        assert_eq!(
            results,
            [None, Some(Success), None, None, None, None, Some(Failure)]
        );
        let counts = s.counts.lock().unwrap()[&key(ProbeKind::Readiness)];
        assert_eq!(
            (counts.successful, counts.failed, counts.unknown),
            (4, 3, 0)
        );
    }

    #[test]
    fn startup_gates_liveness_and_readiness() {
        let c = Clock::new();
        let mut s = c.schedule();
        let t0 = c.at(0.0);
        add(&mut s, ProbeKind::Startup, probe(1, 0, 1, 30), "c1", t0, t0);
        add(&mut s, ProbeKind::Liveness, probe(1, 0, 1, 3), "c1", t0, t0);
        add(
            &mut s,
            ProbeKind::Readiness,
            probe(1, 0, 1, 3),
            "c1",
            t0,
            t0,
        );

        // Not started: only the startup probe runs.
        for i in 0..3 {
            let runs = s.pop_due(c.at(f64::from(i)));
            assert_eq!(kinds(&runs, &s), [ProbeKind::Startup]);
            assert_eq!(s.complete(runs[0].id, ok(Failure)), None);
        }
        let runs = s.pop_due(c.at(3.0));
        let update = s.complete(runs[0].id, ok(Success)).unwrap();
        assert_eq!(update.key.kind, ProbeKind::Startup);
        assert_eq!(update.result, Success);
        assert_eq!(update.container_id, "c1");

        // Started: the others run, the startup probe never again.
        let mut runs = kinds(&s.pop_due(c.at(4.0)), &s);
        runs.sort();
        assert_eq!(runs, [ProbeKind::Liveness, ProbeKind::Readiness]);
    }

    #[test]
    fn liveness_failure_holds_until_a_new_container() {
        let c = Clock::new();
        let mut s = c.schedule();
        add(
            &mut s,
            ProbeKind::Liveness,
            probe(1, 0, 1, 2),
            "c1",
            c.at(0.0),
            c.at(0.0),
        );
        let mut updates = Vec::new();
        for i in 0..2 {
            let runs = s.pop_due(c.at(f64::from(i)));
            updates.extend(s.complete(runs[0].id, ok(Failure)));
        }
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].result, Failure);
        assert!(s.pop_due(c.at(10.0)).is_empty(), "on hold");
        assert_eq!(s.next_due(), None);

        // The restarted container is probed again, from the initial result.
        add(
            &mut s,
            ProbeKind::Liveness,
            probe(1, 0, 1, 2),
            "c2",
            c.at(11.0),
            c.at(11.0),
        );
        let runs = s.pop_due(c.at(11.0));
        assert_eq!(runs.len(), 1);
        assert_eq!(
            s.complete(runs[0].id, ok(Success)),
            None,
            "initially Success"
        );
    }

    #[test]
    fn a_tick_is_skipped_while_the_previous_run_is_in_flight() {
        let c = Clock::new();
        let mut s = c.schedule();
        add(
            &mut s,
            ProbeKind::Readiness,
            probe(1, 0, 1, 3),
            "c1",
            c.at(0.0),
            c.at(0.0),
        );
        let first = s.pop_due(c.at(0.0));
        assert_eq!(first.len(), 1);
        assert!(s.pop_due(c.at(1.0)).is_empty(), "still running");
        s.complete(first[0].id, ok(Success));
        assert_eq!(s.pop_due(c.at(2.0)).len(), 1);
    }

    #[test]
    fn errors_are_discarded_and_counted_unknown() {
        let c = Clock::new();
        let mut s = c.schedule();
        add(
            &mut s,
            ProbeKind::Liveness,
            probe(1, 0, 1, 1),
            "c1",
            c.at(0.0),
            c.at(0.0),
        );
        let runs = s.pop_due(c.at(0.0));
        assert_eq!(
            s.complete(
                runs[0].id,
                Err(ProbeError::Exec(crate::probe::ExecError(
                    "runtime down".into()
                )))
            ),
            None
        );
        let runs = s.pop_due(c.at(1.0));
        assert_eq!(runs.len(), 1, "an error does not hold the probe");
        assert_eq!(
            s.counts.lock().unwrap()[&key(ProbeKind::Liveness)].unknown,
            1
        );
    }

    #[test]
    fn removed_or_replaced_probes_drop_their_results() {
        let c = Clock::new();
        let mut s = c.schedule();
        add(
            &mut s,
            ProbeKind::Liveness,
            probe(1, 0, 1, 1),
            "c1",
            c.at(0.0),
            c.at(0.0),
        );
        let runs = s.pop_due(c.at(0.0));
        s.remove_pod("pod-1");
        assert_eq!(s.complete(runs[0].id, ok(Failure)), None);
        assert!(s.counts.lock().unwrap().is_empty());
        assert!(s.pop_due(c.at(5.0)).is_empty());

        add(
            &mut s,
            ProbeKind::Liveness,
            probe(1, 0, 1, 1),
            "c1",
            c.at(6.0),
            c.at(6.0),
        );
        let runs = s.pop_due(c.at(6.0));
        add(
            &mut s,
            ProbeKind::Liveness,
            probe(1, 0, 1, 1),
            "c2",
            c.at(6.5),
            c.at(6.5),
        );
        assert_eq!(s.complete(runs[0].id, ok(Failure)), None, "old container");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn adding_the_same_probe_again_changes_nothing() {
        let c = Clock::new();
        let mut s = c.schedule();
        let p = probe(1, 0, 1, 2);
        add(
            &mut s,
            ProbeKind::Liveness,
            p.clone(),
            "c1",
            c.at(0.0),
            c.at(0.0),
        );
        let runs = s.pop_due(c.at(0.0));
        s.complete(runs[0].id, ok(Failure));
        add(&mut s, ProbeKind::Liveness, p, "c1", c.at(0.0), c.at(0.5));
        let runs = s.pop_due(c.at(1.0));
        assert!(
            s.complete(runs[0].id, ok(Failure)).is_some(),
            "the failure run carried on"
        );
    }

    #[test]
    fn first_runs_are_spread_right_after_a_restart() {
        let c = Clock::new();
        let mut s = Schedule::new(c.at(0.0), Box::new(|| 0.5), Counts::default());
        add(
            &mut s,
            ProbeKind::Readiness,
            probe(10, 0, 1, 3),
            "c1",
            c.at(-100.0),
            c.at(1.0),
        );
        assert_eq!(s.next_due(), Some(c.at(6.0)));
        // Later adds are not delayed.
        add(
            &mut s,
            ProbeKind::Liveness,
            probe(10, 0, 1, 3),
            "c1",
            c.at(-100.0),
            c.at(20.0),
        );
        assert_eq!(
            s.entries[&s.ids[&key(ProbeKind::Liveness)]].next_due,
            c.at(20.0)
        );
    }

    /// The real task against real sockets: updates arrive, counts add up.
    #[tokio::test]
    async fn manager_reports_changes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tcp = |port: u16| Probe {
            tcp_socket: Some(TCPSocketAction {
                host: None,
                port: IntOrString::Int(i32::from(port)),
            }),
            period_seconds: Some(1),
            failure_threshold: Some(1),
            ..Default::default()
        };
        let (manager, mut updates) = ProbeManager::new(Arc::new(FakeExec::new(Err(
            crate::probe::ExecError("x".into()),
        ))));
        let now = Instant::now();
        manager
            .add(key(ProbeKind::Readiness), tcp(open), target("c1"), now)
            .unwrap();
        manager
            .add(key(ProbeKind::Liveness), tcp(closed), target("c1"), now)
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            let u = tokio::time::timeout(Duration::from_secs(5), updates.recv())
                .await
                .unwrap()
                .unwrap();
            got.push((u.key.kind, u.result));
        }
        got.sort_by_key(|g| g.0);
        assert_eq!(
            got,
            [
                (ProbeKind::Liveness, Failure),
                (ProbeKind::Readiness, Success)
            ]
        );
        let counts = manager.counts();
        assert_eq!(counts.len(), 2);
        assert!(manager.stats().executions_spawned >= 2);
        assert!(
            manager
                .add(key(ProbeKind::Startup), Probe::default(), target("c1"), now)
                .is_err()
        );
        manager.remove_pod("pod-1");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(manager.counts().is_empty());
    }
}
