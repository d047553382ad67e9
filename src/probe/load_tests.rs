//! The scheduler under load: 100 and then 1000 TCP probes (period 1 s) against a local
//! listener for 3 s, and the same with exec probes answered at once by a fake runtime.
//! Every probe must run about 3 times without a failure, and the scheduler must not keep a
//! task per probe alive between runs (ARCHITECTURE.md: one scheduler task for all probes).
//! What the scheduler costs in CPU, and how that cost grows from 100 to 1000 probes, is
//! measured by the bench (`cargo xtask bench -- --phases probes`), not judged here.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ExecAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::exec::tests::FakeExec;
use super::{ProbeKey, ProbeKind, ProbeManager, Target};

const WINDOW: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    InstantExec,
}

struct Figures {
    /// Tasks alive on the runtime at the quietest sample: between rounds of runs.
    min_alive_tasks: usize,
    max_alive_tasks: usize,
    spawned: u64,
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

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

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
        let (mut min_alive, mut max_alive) = (usize::MAX, 0);
        while started.elapsed() < WINDOW {
            let alive = metrics.num_alive_tasks();
            min_alive = min_alive.min(alive);
            max_alive = max_alive.max(alive);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        let counts = manager.counts();
        let stats = manager.stats();

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
            min_alive_tasks: min_alive,
            max_alive_tasks: max_alive,
            spawned: stats.executions_spawned,
        }
    });
    drop(runtime);
    stop.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(addr);
    let _ = server.join();
    figures
}

#[test]
fn every_probe_runs_on_time_without_a_task_per_probe() {
    for (kind, n) in [
        (Kind::Tcp, 100),
        (Kind::Tcp, 1000),
        (Kind::InstantExec, 100),
        (Kind::InstantExec, 1000),
    ] {
        let f = measure(kind, n);
        // One execution task per run: about 3 per probe in the window, never a standing
        // task per probe.
        assert!(
            (2 * n as u64..=5 * n as u64).contains(&f.spawned),
            "{kind:?} x{n}: {} executions spawned",
            f.spawned
        );
        assert!(
            f.min_alive_tasks < n / 2,
            "{kind:?} x{n}: at least {} tasks alive at every sample, as if each probe kept one (max {})",
            f.min_alive_tasks,
            f.max_alive_tasks
        );
    }
}
