//! One probe or lifecycle action, whichever mechanism it uses, and running it once under
//! its timeout. The mechanisms live in their own files; this is the dispatch.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, GRPCAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::time::Instant;

use super::{Exec, ProbeError, ProbeOutcome, Target, exec, grpc, http, tcp};

/// What an HTTP GET is for: it changes the User-Agent and what counts as success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpPurpose {
    /// A probe: 200-399 succeeds (`kube-probe/<version>`).
    Probe,
    /// A postStart/preStop hook: any HTTP response succeeds, only a failed request fails,
    /// as upstream's lifecycle handler (`kube-lifecycle/<version>`).
    Lifecycle,
}

/// A probe's or hook's action: exactly one mechanism.
#[derive(Clone, Debug, PartialEq)]
pub enum Handler {
    Exec {
        command: Vec<String>,
    },
    HttpGet {
        action: HTTPGetAction,
        purpose: HttpPurpose,
    },
    TcpSocket(TCPSocketAction),
    Grpc(GRPCAction),
    /// The lifecycle `sleep` action.
    Sleep(Duration),
}

impl Handler {
    /// The handler of a probe: exactly one of exec, httpGet, tcpSocket, grpc.
    pub fn from_probe(probe: &Probe) -> Result<Self, ProbeError> {
        let what = "probe";
        let found = usize::from(probe.exec.is_some())
            + usize::from(probe.http_get.is_some())
            + usize::from(probe.tcp_socket.is_some())
            + usize::from(probe.grpc.is_some());
        if found > 1 {
            return Err(ProbeError::MultipleHandlers { what, found });
        }
        if let Some(e) = &probe.exec {
            return exec_handler(e.command.as_deref());
        }
        if let Some(action) = &probe.http_get {
            return Ok(Handler::HttpGet {
                action: action.clone(),
                purpose: HttpPurpose::Probe,
            });
        }
        if let Some(action) = &probe.tcp_socket {
            return Ok(Handler::TcpSocket(action.clone()));
        }
        if let Some(action) = &probe.grpc {
            return Ok(Handler::Grpc(action.clone()));
        }
        Err(ProbeError::NoHandler { what })
    }

    /// The handler of a postStart/preStop hook: exactly one of exec, httpGet, sleep.
    /// tcpSocket is accepted by the API for compatibility but never runs upstream.
    pub fn from_lifecycle(hook: &LifecycleHandler) -> Result<Self, ProbeError> {
        let what = "lifecycle handler";
        let found = usize::from(hook.exec.is_some())
            + usize::from(hook.http_get.is_some())
            + usize::from(hook.sleep.is_some())
            + usize::from(hook.tcp_socket.is_some());
        if found > 1 {
            return Err(ProbeError::MultipleHandlers { what, found });
        }
        if let Some(e) = &hook.exec {
            return exec_handler(e.command.as_deref());
        }
        if let Some(action) = &hook.http_get {
            return Ok(Handler::HttpGet {
                action: action.clone(),
                purpose: HttpPurpose::Lifecycle,
            });
        }
        if let Some(sleep) = &hook.sleep {
            let secs = u64::try_from(sleep.seconds).unwrap_or(0);
            return Ok(Handler::Sleep(Duration::from_secs(secs)));
        }
        if hook.tcp_socket.is_some() {
            return Err(ProbeError::TcpSocketHook);
        }
        Err(ProbeError::NoHandler { what })
    }
}

fn exec_handler(command: Option<&[String]>) -> Result<Handler, ProbeError> {
    match command {
        Some(c) if !c.is_empty() => Ok(Handler::Exec {
            command: c.to_vec(),
        }),
        _ => Err(ProbeError::EmptyCommand),
    }
}

/// Runs `handler` once against `target`, bounded by `timeout` (a timeout is a Failure).
///
/// For hooks and one-off use. A probe error (the exec could not be started, a named port
/// that does not exist) is a Failure here; the scheduler instead throws such results away,
/// as upstream's prober does.
pub async fn run_handler(
    handler: &Handler,
    target: &Target,
    exec: &dyn Exec,
    timeout: Duration,
) -> ProbeOutcome {
    attempt(handler, target, exec, timeout)
        .await
        .unwrap_or_else(|e| ProbeOutcome::failure(e.to_string()))
}

/// Runs `handler` once. `Err` is a probe error: the probe could not be carried out at all
/// and its result means nothing (upstream's `probe.Unknown` with an error).
pub(super) async fn attempt(
    handler: &Handler,
    target: &Target,
    exec: &dyn Exec,
    timeout: Duration,
) -> Result<ProbeOutcome, ProbeError> {
    let deadline = Instant::now() + timeout;
    let bounded = |what: String| format!("{what} did not complete within {timeout:?}");
    match handler {
        Handler::Exec { command } => {
            let run = exec::run(exec, &target.container_id, command, timeout);
            match tokio::time::timeout_at(deadline, run).await {
                Ok(r) => r,
                Err(_) => Ok(ProbeOutcome::failure(exec::timeout_message(
                    command, timeout,
                ))),
            }
        }
        Handler::HttpGet { action, purpose } => {
            let run = http::run(action, *purpose, target);
            match tokio::time::timeout_at(deadline, run).await {
                Ok(r) => r,
                Err(_) => Ok(ProbeOutcome::failure(bounded(format!(
                    "timeout: HTTP GET {}",
                    http::describe(action, target)
                )))),
            }
        }
        Handler::TcpSocket(action) => {
            let port = resolve_port(&action.port, &target.container)?;
            let host = action.host.as_deref().unwrap_or(&target.pod_ip);
            let addr = join_host_port(host, port);
            match tokio::time::timeout_at(deadline, tcp::run(host, port)).await {
                Ok(outcome) => Ok(outcome),
                Err(_) => Ok(ProbeOutcome::failure(bounded(format!(
                    "timeout: dial tcp {addr}"
                )))),
            }
        }
        Handler::Grpc(action) => Ok(grpc::run(
            &target.pod_ip,
            action.port,
            action.service.as_deref().unwrap_or(""),
            timeout,
            deadline,
        )
        .await),
        Handler::Sleep(d) => {
            match tokio::time::timeout_at(deadline, tokio::time::sleep(*d)).await {
                Ok(()) => Ok(ProbeOutcome::success("")),
                Err(_) => Ok(ProbeOutcome::failure(bounded(format!("sleep of {d:?}")))),
            }
        }
    }
}

/// A probe's port as a number: an integer, the name of one of the container's ports, or a
/// number written as a string; 1-65535 (upstream's `ResolveContainerPort`).
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, ProbeError> {
    let n = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            let named = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| i64::from(p.container_port));
            match named {
                Some(n) => n,
                None => name.parse::<i64>().map_err(|_| ProbeError::PortNotFound {
                    port: name.clone(),
                    container: container.name.clone(),
                })?,
            }
        }
    };
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ProbeError::InvalidPort(n)),
    }
}

/// `host:port`, with brackets around an IPv6 address (Go's `net.JoinHostPort`).
pub(super) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An error with its causes, `outer: inner: innermost`.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerPort, ExecAction, SleepAction};

    use super::*;
    use crate::probe::ProbeResult;
    use crate::probe::exec::tests::FakeExec;

    fn container_with_ports() -> Container {
        Container {
            name: "app".into(),
            ports: Some(vec![
                ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    ..Default::default()
                },
                ContainerPort {
                    name: Some("zero".into()),
                    container_port: 0,
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn ports_resolve_by_number_name_or_numeric_string() {
        let c = container_with_ports();
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("9090".into()), &c),
            Ok(9090)
        );
        assert!(resolve_port(&IntOrString::String("nope".into()), &c).is_err());
        assert!(resolve_port(&IntOrString::String("zero".into()), &c).is_err());
        assert!(resolve_port(&IntOrString::Int(0), &c).is_err());
        assert!(resolve_port(&IntOrString::Int(65536), &c).is_err());
        assert!(resolve_port(&IntOrString::Int(-1), &c).is_err());
    }

    #[test]
    fn a_probe_has_exactly_one_handler() {
        let none = Probe::default();
        assert_eq!(
            Handler::from_probe(&none),
            Err(ProbeError::NoHandler { what: "probe" })
        );
        let two = Probe {
            exec: Some(ExecAction {
                command: Some(vec!["true".into()]),
            }),
            tcp_socket: Some(TCPSocketAction::default()),
            ..Default::default()
        };
        assert!(matches!(
            Handler::from_probe(&two),
            Err(ProbeError::MultipleHandlers { found: 2, .. })
        ));
        let empty = Probe {
            exec: Some(ExecAction { command: None }),
            ..Default::default()
        };
        assert_eq!(Handler::from_probe(&empty), Err(ProbeError::EmptyCommand));
        let grpc = Probe {
            grpc: Some(GRPCAction {
                port: 9000,
                service: None,
            }),
            ..Default::default()
        };
        assert!(matches!(Handler::from_probe(&grpc), Ok(Handler::Grpc(_))));
    }

    #[test]
    fn lifecycle_handlers() {
        let http = LifecycleHandler {
            http_get: Some(HTTPGetAction::default()),
            ..Default::default()
        };
        assert!(matches!(
            Handler::from_lifecycle(&http),
            Ok(Handler::HttpGet {
                purpose: HttpPurpose::Lifecycle,
                ..
            })
        ));
        let sleep = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 2 }),
            ..Default::default()
        };
        assert_eq!(
            Handler::from_lifecycle(&sleep),
            Ok(Handler::Sleep(Duration::from_secs(2)))
        );
        let tcp = LifecycleHandler {
            tcp_socket: Some(TCPSocketAction::default()),
            ..Default::default()
        };
        assert_eq!(
            Handler::from_lifecycle(&tcp),
            Err(ProbeError::TcpSocketHook)
        );
    }

    #[tokio::test]
    async fn sleep_hook_is_bounded_by_the_timeout() {
        let fake = FakeExec::new(Err(crate::probe::ExecError("unused".into())));
        let target = Target {
            pod_ip: "127.0.0.1".into(),
            container_id: "c".into(),
            container: Default::default(),
        };
        let short = Handler::Sleep(Duration::from_millis(10));
        let o = run_handler(&short, &target, &fake, Duration::from_secs(1)).await;
        assert_eq!(o.result, ProbeResult::Success);
        let long = Handler::Sleep(Duration::from_secs(60));
        let o = run_handler(&long, &target, &fake, Duration::from_millis(50)).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(
            o.message.contains("did not complete within"),
            "{}",
            o.message
        );
    }

    #[test]
    fn host_port_joining() {
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
    }
}
