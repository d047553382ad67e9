//! Container probes (liveness, readiness, startup), lifecycle hook actions, and the one
//! task that schedules every probe.
//!
//! Owns: the four probe mechanisms (exec over the CRI, HTTP(S) GET, TCP connect, gRPC
//! health), their timeouts and output caps as upstream's `pkg/probe`, the threshold
//! debouncing and startup gate as upstream's prober worker, and the per-probe counters.
//! Must not: decide what a result means for a container (killing on liveness failure,
//! readiness in the pod status). Callers get debounced [`ProbeUpdate`]s and act on them.
//! Exec goes through the [`Exec`] seam, so nothing here holds a CRI client.

mod exec;
mod grpc;
mod handler;
mod http;
mod scheduler;
mod state;
mod tcp;

#[cfg(test)]
mod load_tests;
#[cfg(test)]
mod testserver;

use k8s_openapi::api::core::v1::Container;

pub use exec::{Exec, ExecError, ExecResult};
pub use handler::{Handler, HttpPurpose, resolve_port, run_handler};
pub use scheduler::{ProbeCounts, ProbeManager, ProbeUpdate, SchedulerStats};
pub use state::{ProbeSpec, ProbeState};

/// Output kept from a probe (exec output, HTTP body): upstream's `maxReadLength` of 10 KiB.
pub const MAX_OUTPUT: usize = 10 * 1024;

/// `<major>.<minor>` in the User-Agent of probe and hook requests (`kube-probe/1.33`).
pub const KUBE_MINOR_VERSION: &str = "1.33";

/// The result of one probe run, as upstream's `probe.Result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    Success,
    /// Succeeded with a caveat (an HTTP redirect that was not followed). Counts as
    /// success; upstream records a `ProbeWarning` event with the message.
    Warning,
    Failure,
}

impl ProbeResult {
    /// Warning counts as success everywhere past the handler.
    pub fn is_success(self) -> bool {
        !matches!(self, ProbeResult::Failure)
    }
}

/// One handler run: its result and a human-readable message (exec output, HTTP body of a
/// terminated redirect, the reason for a failure). Bounded by [`MAX_OUTPUT`] plus a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub result: ProbeResult,
    pub message: String,
}

impl ProbeOutcome {
    pub fn success(message: impl Into<String>) -> Self {
        ProbeOutcome {
            result: ProbeResult::Success,
            message: message.into(),
        }
    }

    pub fn warning(message: impl Into<String>) -> Self {
        ProbeOutcome {
            result: ProbeResult::Warning,
            message: message.into(),
        }
    }

    pub fn failure(message: impl Into<String>) -> Self {
        ProbeOutcome {
            result: ProbeResult::Failure,
            message: message.into(),
        }
    }
}

/// Which probe of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// The result a new container starts with, before any probe ran (upstream's
    /// `initialValue`): readiness fails, liveness succeeds, startup is unknown (`None`;
    /// the container counts as not started until the probe succeeds).
    pub fn initial_result(self) -> Option<ProbeResult> {
        match self {
            ProbeKind::Liveness => Some(ProbeResult::Success),
            ProbeKind::Readiness => Some(ProbeResult::Failure),
            ProbeKind::Startup => None,
        }
    }

    /// The `probe_type` label upstream's metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// Names one probe: a pod, one of its containers, and which probe.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeKey {
    pub pod_uid: String,
    pub container: String,
    pub kind: ProbeKind,
}

/// What a handler runs against: one running container of a pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The pod IP: the host for HTTP and TCP actions without `host`, and for gRPC.
    pub pod_ip: String,
    /// The CRI container id exec actions run in.
    pub container_id: String,
    /// The container spec, for named ports.
    pub container: Container,
}

/// A probe or lifecycle handler ironlet cannot run; a configuration error of the pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("{what} must specify exactly one handler, found none")]
    NoHandler { what: &'static str },
    #[error("{what} must specify exactly one handler, found {found}")]
    MultipleHandlers { what: &'static str, found: usize },
    #[error("exec action without a command")]
    EmptyCommand,
    #[error("tcpSocket is not supported as a lifecycle handler")]
    TcpSocketHook,
    #[error("the probe scheduler has stopped")]
    SchedulerStopped,
    /// The exec could not be started (runtime unreachable, container gone).
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("port {port:?} not found in container {container:?}")]
    PortNotFound { port: String, container: String },
    #[error("invalid port number: {0}")]
    InvalidPort(i64),
    /// The HTTP response body broke off.
    #[error("reading the response body: {0}")]
    Body(String),
    #[error("probe handler panicked")]
    Panicked,
}
