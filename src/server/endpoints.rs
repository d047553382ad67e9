//! The small handlers of the kubelet API: health, pods, running pods, metrics, configz and
//! `/run`. Each runs only after authentication and authorization (see `api.rs`).

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::api::{Api, Body, MAX_BODY_BYTES, full, json, text};
use super::metrics::{header, histogram, snake};
use super::routes::{Check, ContainerRef};
use crate::pod::PodUid;
use crate::pod::observed::{ContainerState, ObservedContainer, ObservedPod};
use http::Response;

pub fn healthz(api: &Api, check: Check) -> Response<Body> {
    let h = &api.handles;
    match check {
        Check::Ping | Check::Log => text(StatusCode::OK, "ok"),
        Check::All | Check::Syncloop => {
            if h.health.healthy(h.started) {
                text(StatusCode::OK, "ok")
            } else {
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "[-]syncloop failed: PLEG is not healthy\n",
                )
            }
        }
    }
}

pub fn pods(api: &Api) -> Response<Body> {
    match (api.handles.pods)() {
        Ok(bytes) => json(bytes),
        Err(e) => {
            tracing::warn!(error = %e, "/pods: the pod view is unavailable");
            text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n")
        }
    }
}

/// `/runningpods/`: what the runtime runs, as a v1 PodList (upstream's debug view).
pub fn running_pods(api: &Api) -> Response<Body> {
    let snap = api.handles.snapshots.borrow().clone();
    let mut items: Vec<Pod> = snap
        .pods
        .iter()
        .filter(|(_, p)| p.running_containers().next().is_some())
        .map(|(uid, p)| runtime_pod(uid, p))
        .collect();
    items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let list = k8s_openapi::List::<Pod> {
        items,
        metadata: Default::default(),
    };
    match serde_json::to_vec(&list) {
        Ok(b) => json(b),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, super::api::INTERNAL),
    }
}

fn runtime_pod(uid: &PodUid, p: &ObservedPod) -> Pod {
    let running: Vec<&ObservedContainer> = p.running_containers().collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(p.name.clone()),
            namespace: Some(p.namespace.clone()),
            uid: Some(uid.0.clone()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: running
                .iter()
                .map(|c| Container {
                    name: c.name.clone(),
                    image: Some(c.image.clone()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        status: Some(PodStatus {
            container_statuses: Some(
                running
                    .iter()
                    .map(|c| ContainerStatus {
                        name: c.name.clone(),
                        container_id: Some(format!("containerd://{}", c.id)),
                        image: c.image.clone(),
                        image_id: c.image_ref.clone(),
                        restart_count: i32::try_from(c.attempt).unwrap_or(i32::MAX),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

/// A Prometheus label value, escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn metrics(api: &Api) -> Response<Body> {
    let mut out = String::with_capacity(8192);
    let snap = api.handles.snapshots.borrow().clone();
    let running_pods = snap
        .pods
        .values()
        .filter(|p| p.running_containers().next().is_some())
        .count();
    header(
        &mut out,
        "kubelet_running_pods",
        "gauge",
        "Number of pods that have a running pod sandbox.",
    );
    let _ = writeln!(out, "kubelet_running_pods {running_pods}");
    let mut states = [
        ("created", 0u64),
        ("running", 0),
        ("exited", 0),
        ("unknown", 0),
    ];
    for c in snap.pods.values().flat_map(|p| p.containers.iter()) {
        let i = match c.state {
            ContainerState::Created => 0,
            ContainerState::Running => 1,
            ContainerState::Exited => 2,
            ContainerState::Unknown => 3,
        };
        states[i].1 += 1;
    }
    header(
        &mut out,
        "kubelet_running_containers",
        "gauge",
        "Number of containers currently running.",
    );
    for (s, n) in states {
        let _ = writeln!(
            out,
            "kubelet_running_containers{{container_state=\"{s}\"}} {n}"
        );
    }
    header(
        &mut out,
        "kubelet_pleg_relist_duration_seconds",
        "histogram",
        "Duration in seconds for relisting pods in PLEG.",
    );
    histogram(
        &mut out,
        "kubelet_pleg_relist_duration_seconds",
        "",
        &api.handles.health.relist_durations(),
    );
    header(
        &mut out,
        "kubelet_pod_start_duration_seconds",
        "histogram",
        "Duration in seconds from the kubelet first seeing a pod to all its containers running.",
    );
    histogram(
        &mut out,
        "kubelet_pod_start_duration_seconds",
        "",
        &crate::metrics::pod_start_durations(),
    );
    crate::tls::metrics::encode(&mut out);
    let ops = crate::cri::operations::snapshot();
    header(
        &mut out,
        "kubelet_runtime_operations_total",
        "counter",
        "Cumulative number of runtime operations by operation type.",
    );
    for (op, total, _) in &ops {
        let _ = writeln!(
            out,
            "kubelet_runtime_operations_total{{operation_type=\"{}\"}} {total}",
            snake(op)
        );
    }
    header(
        &mut out,
        "kubelet_runtime_operations_errors_total",
        "counter",
        "Cumulative number of runtime operation errors by operation type.",
    );
    for (op, _, errors) in &ops {
        let _ = writeln!(
            out,
            "kubelet_runtime_operations_errors_total{{operation_type=\"{}\"}} {errors}",
            snake(op)
        );
    }
    api.metrics.encode(&mut out);
    prom(out)
}

fn prom(out: String) -> Response<Body> {
    let mut r = Response::new(full(out));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `/metrics/probes`: upstream's `prober_probe_total`.
pub fn metrics_probes(api: &Api) -> Response<Body> {
    let mut out = String::new();
    header(
        &mut out,
        "prober_probe_total",
        "counter",
        "Cumulative number of a liveness, readiness or startup probe for a container by result.",
    );
    if let Some(probes) = &api.handles.probes {
        let snap = api.handles.snapshots.borrow().clone();
        let mut counts = probes.counts();
        counts.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, c) in counts {
            let pod = snap.pods.get(&PodUid(key.pod_uid.clone()));
            let (name, ns) = pod.map_or((String::new(), String::new()), |p| {
                (p.name.clone(), p.namespace.clone())
            });
            for (result, n) in [
                ("successful", c.successful),
                ("failed", c.failed),
                ("unknown", c.unknown),
            ] {
                let _ = writeln!(
                    out,
                    "prober_probe_total{{container=\"{}\",namespace=\"{}\",pod=\"{}\",pod_uid=\"{}\",probe_type=\"{}\",result=\"{result}\"}} {n}",
                    esc(&key.container),
                    esc(&ns),
                    esc(&name),
                    esc(&key.pod_uid),
                    key.kind.as_str()
                );
            }
        }
    }
    prom(out)
}

pub fn configz(api: &Api) -> Response<Body> {
    match serde_json::to_vec(&api.handles.configz) {
        Ok(b) => json(b),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, super::api::INTERNAL),
    }
}

/// Finds a pod in the runtime's view by namespace, name and (optionally) UID.
pub fn find_pod(
    api: &Api,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> Option<(PodUid, Arc<ObservedPod>)> {
    let snap = api.handles.snapshots.borrow().clone();
    snap.pods
        .iter()
        .filter(|(u, p)| p.namespace == namespace && p.name == name && uid.is_none_or(|x| x == u.0))
        .max_by_key(|(_, p)| p.latest_sandbox().map_or(0, |s| s.created_at))
        .map(|(u, p)| (u.clone(), Arc::clone(p)))
}

/// The running container a streaming or `/run` request names.
pub fn running_container(api: &Api, c: &ContainerRef) -> Option<ObservedContainer> {
    let (_, pod) = find_pod(api, &c.namespace, &c.pod, c.uid.as_deref())?;
    pod.containers
        .iter()
        .find(|x| x.name == c.container && x.state == ContainerState::Running)
        .cloned()
}

/// `POST /run/{ns}/{pod}/{container}?cmd=…` (or a form body `cmd=…`): ExecSync, output
/// returned. Upstream's legacy synchronous exec.
pub async fn run<B>(api: &Api, c: &ContainerRef, query: &str, body: B) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    let form = match tokio::time::timeout(Duration::from_secs(10), limited.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return text(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n"),
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "Request Timeout\n"),
    };
    let form = String::from_utf8_lossy(&form);
    let argv = match super::query::run_command(query, &form) {
        Ok(a) => a,
        Err(_) => return text(StatusCode::BAD_REQUEST, "Bad Request: cmd is required\n"),
    };
    // The audit record carries the command as run, form body included.
    let mut resp = run_argv(api, c, argv.clone()).await;
    resp.extensions_mut().insert(super::api::AuditCommand(argv));
    resp
}

async fn run_argv(api: &Api, c: &ContainerRef, argv: Vec<String>) -> Response<Body> {
    let Some(container) = running_container(api, c) else {
        return text(StatusCode::NOT_FOUND, super::api::NOT_FOUND);
    };
    match api
        .handles
        .cri
        .exec_sync(&container.id, argv, Duration::from_secs(60))
        .await
    {
        Ok(r) => {
            let mut out = r.stdout;
            out.extend_from_slice(&r.stderr);
            let mut resp = Response::new(full(out));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
        Err(e) => {
            tracing::warn!(error = %e, "/run: ExecSync failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, super::api::INTERNAL)
        }
    }
}
