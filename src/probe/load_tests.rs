//! What the scheduler costs: 100 and then 1000 TCP probes (period 1 s) against a local
//! listener for 3 s, and the same with exec probes answered at once by a fake runtime (the
//! scheduler's own cost, without sockets). Asserts only that every probe ran about 3
//! times; prints CPU time and task counts so cost per probe can be compared. Run with
//! `--nocapture` to see them.
//!
//! CPU time is read from /proc: for the test runtime's own threads (what the scheduler
//! and the probes cost; other tests run in other threads of this process) and for the
//! whole process (includes whatever else runs meanwhile). Ticks are USER_HZ = 100/s.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ExecAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::exec::tests::FakeExec;
use super::{ProbeKey, ProbeKind, ProbeManager, Target};

const WINDOW: Duration = Duration::from_secs(3);
const MS_PER_TICK: u64 = 10;

/// (utime, stime), in ticks, from a /proc/.../stat file.
fn cpu_ticks(path: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

fn threads_ticks(tids: &[u32]) -> (u64, u64) {
    tids.iter()
        .filter_map(|t| cpu_ticks(&format!("/proc/self/task/{t}/stat")))
        .fold((0, 0), |(u, s), (u1, s1)| (u + u1, s + s1))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    InstantExec,
}

struct Figures {
    kind: Kind,
    probes: usize,
    runs: u64,
    runtime_user_ms: u64,
    runtime_system_ms: u64,
    process_cpu_ms: u64,
    spawned: u64,
    max_alive_tasks: usize,
    elapsed: Duration,
}

fn measure(kind: Kind, n: usize) -> Figures {
    // The target: accepts and drops connections on its own OS thread, outside the runtime.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                drop(conn);
            }
        })
    };

    let tids = Arc::new(Mutex::new(Vec::new()));
    let runtime = {
        let tids = tids.clone();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                if let Some(t) = current_tid() {
                    tids.lock().unwrap().push(t);
                }
            })
            .build()
            .unwrap()
    };

    let figures = runtime.block_on(async {
        let exec = Arc::new(FakeExec::new(Ok((0, Vec::new(), Vec::new()))));
        let (manager, _updates) = ProbeManager::new(exec);
        let probe = match kind {
            Kind::Tcp => Probe {
                tcp_socket: Some(TCPSocketAction {
                    host: None,
                    port: IntOrString::Int(i32::from(addr.port())),
                }),
                period_seconds: Some(1),
                ..Default::default()
            },
            Kind::InstantExec => Probe {
                exec: Some(ExecAction {
                    command: Some(vec!["true".into()]),
                }),
                period_seconds: Some(1),
                ..Default::default()
            },
        };
        let target = Target {
            pod_ip: "127.0.0.1".into(),
            container_id: "c".into(),
            container: Default::default(),
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tids_now = tids.lock().unwrap().clone();
        let (runtime0, process0) = (threads_ticks(&tids_now), cpu_ticks("/proc/self/stat"));
        let started = Instant::now();
        for i in 0..n {
            let key = ProbeKey {
                pod_uid: format!("pod-{i}"),
                container: "app".into(),
                kind: ProbeKind::Readiness,
            };
            manager
                .add(key, probe.clone(), target.clone(), started)
                .unwrap();
        }
        let metrics = tokio::runtime::Handle::current().metrics();
        let mut max_alive = 0;
        while started.elapsed() < WINDOW {
            max_alive = max_alive.max(metrics.num_alive_tasks());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        let counts = manager.counts();
        let stats = manager.stats();
        let tids_now = tids.lock().unwrap().clone();
        let (runtime1, process1) = (threads_ticks(&tids_now), cpu_ticks("/proc/self/stat"));

        assert_eq!(counts.len(), n);
        for (key, c) in &counts {
            assert_eq!(c.failed + c.unknown, 0, "{key:?}: {c:?}");
            assert!(
                (2..=4).contains(&c.successful),
                "{key:?} ran {} times in {elapsed:?}",
                c.successful
            );
        }
        Figures {
            kind,
            probes: n,
            runs: counts.iter().map(|(_, c)| c.successful).sum(),
            runtime_user_ms: runtime1.0.saturating_sub(runtime0.0) * MS_PER_TICK,
            runtime_system_ms: runtime1.1.saturating_sub(runtime0.1) * MS_PER_TICK,
            process_cpu_ms: process1.zip(process0).map_or(0, |(b, a)| {
                (b.0 + b.1).saturating_sub(a.0 + a.1) * MS_PER_TICK
            }),
            spawned: stats.executions_spawned,
            max_alive_tasks: max_alive,
            elapsed,
        }
    });
    drop(runtime);
    stop.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(addr);
    let _ = server.join();
    figures
}

#[test]
fn scheduler_cost_for_100_and_1000_probes() {
    let mut out = std::io::stdout().lock();
    for (kind, n) in [
        (Kind::Tcp, 100),
        (Kind::Tcp, 1000),
        (Kind::InstantExec, 100),
        (Kind::InstantExec, 1000),
    ] {
        let f = measure(kind, n);
        let secs = f.elapsed.as_secs_f64();
        let cpu = f.runtime_user_ms + f.runtime_system_ms;
        let _ = writeln!(
            out,
            "probe load: {:>4} {:?} probes, period 1s, {:.2}s: {} runs; runtime threads CPU \
             {} ms (user {} + sys {}; {:.0} us/run), whole process CPU {} ms; tasks spawned \
             {} ({:.0}/s = {:.2}/s per probe); max alive tasks {}",
            f.probes,
            f.kind,
            secs,
            f.runs,
            cpu,
            f.runtime_user_ms,
            f.runtime_system_ms,
            cpu as f64 * 1000.0 / f.runs.max(1) as f64,
            f.process_cpu_ms,
            f.spawned,
            f.spawned as f64 / secs,
            f.spawned as f64 / secs / f.probes as f64,
            f.max_alive_tasks,
        );
    }
}
