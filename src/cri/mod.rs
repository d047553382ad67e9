//! The CRI runtime.v1 client: tonic over the runtime's unix socket.
//!
//! Owns the connection and the per-call deadline (`runtimeRequestTimeout`); knows nothing
//! about pods beyond the CRI messages. The channel connects lazily and reconnects by itself,
//! so a runtime that goes away and comes back costs failed calls, never a crash.

#[cfg(test)]
pub mod fake;
pub mod generated;
pub mod ids;
mod runtime;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use api::image_service_client::ImageServiceClient;
use api::runtime_service_client::RuntimeServiceClient;
pub use generated::runtime::v1 as api;
pub use ids::{ContainerId, SandboxId};
pub use runtime::Runtime;

/// The CRI API version ironlet speaks.
pub const CRI_API_VERSION: &str = "v1";

/// A failed runtime call, sorted by whose fault it is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CriError {
    /// The socket is absent or refused us: the runtime is down or restarting.
    #[error("CRI {op}: runtime unreachable: {message}")]
    Unavailable { op: &'static str, message: String },
    /// The runtime did not answer within the deadline.
    #[error("CRI {op}: no answer within {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// The runtime answered with an error.
    #[error("CRI {op}: {code:?}: {message}")]
    Status {
        op: &'static str,
        code: tonic::Code,
        message: String,
    },
    /// The runtime answered but left out something the API requires.
    #[error("CRI {op}: malformed answer: {message}")]
    Malformed { op: &'static str, message: String },
}

impl CriError {
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            CriError::Status {
                code: tonic::Code::NotFound,
                ..
            }
        )
    }

    fn from_status(op: &'static str, s: tonic::Status) -> Self {
        match s.code() {
            tonic::Code::Unavailable => CriError::Unavailable {
                op,
                message: s.message().to_string(),
            },
            tonic::Code::DeadlineExceeded => CriError::Timeout {
                op,
                after: Duration::ZERO,
            },
            code => CriError::Status {
                op,
                code,
                message: s.message().to_string(),
            },
        }
    }
}

/// Counts of runtime calls by operation, for `kubelet_runtime_operations_total` and
/// `kubelet_runtime_operations_errors_total`. Operation names are the fixed CRI method
/// names, so the series are bounded.
pub mod operations {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    static COUNTS: Mutex<BTreeMap<&'static str, (u64, u64)>> = Mutex::new(BTreeMap::new());

    pub(super) fn record(op: &'static str, failed: bool) {
        let mut m = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(op).or_default();
        e.0 += 1;
        if failed {
            e.1 += 1;
        }
    }

    /// (operation, total, errors), sorted by operation.
    pub fn snapshot() -> Vec<(&'static str, u64, u64)> {
        let m = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, (t, e))| (*k, *t, *e)).collect()
    }
}

/// A handle to the runtime. Cheap to clone; all clones share one connection.
#[derive(Clone, Debug)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
    timeout: Duration,
    socket: PathBuf,
}

impl Cri {
    /// A client for the runtime listening on `socket`. Does not connect yet.
    pub fn new(socket: &Path, timeout: Duration) -> Self {
        let path = socket.to_path_buf();
        // The URI is required by tonic but unused: the connector dials the socket.
        let channel = Endpoint::from_static("http://[::1]:50051")
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }));
        Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            image: ImageServiceClient::new(channel),
            timeout,
            socket: socket.to_path_buf(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one call under the deadline (`runtimeRequestTimeout` plus `extra`, which is how
    /// long the call itself is allowed to wait, e.g. StopContainer's grace period).
    async fn call<T, Fut>(&self, op: &'static str, extra: Duration, fut: Fut) -> Result<T, CriError>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let after = self.timeout + extra;
        let result = tokio::time::timeout(after, fut).await;
        operations::record(op, !matches!(result, Ok(Ok(_))));
        match result {
            Err(_) => Err(CriError::Timeout { op, after }),
            Ok(Err(s)) => Err(match CriError::from_status(op, s) {
                CriError::Timeout { op, .. } => CriError::Timeout { op, after },
                e => e,
            }),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    pub async fn version(&self) -> Result<api::VersionResponse, CriError> {
        let req = api::VersionRequest {
            version: CRI_API_VERSION.into(),
        };
        self.call("Version", Duration::ZERO, self.runtime.clone().version(req))
            .await
    }

    pub async fn status(&self) -> Result<api::StatusResponse, CriError> {
        let req = api::StatusRequest { verbose: false };
        self.call("Status", Duration::ZERO, self.runtime.clone().status(req))
            .await
    }

    pub async fn run_pod_sandbox(&self, config: api::PodSandboxConfig) -> Result<String, CriError> {
        let req = api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let r = self
            .call(
                "RunPodSandbox",
                Duration::ZERO,
                self.runtime.clone().run_pod_sandbox(req),
            )
            .await?;
        non_empty("RunPodSandbox", r.pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call(
            "StopPodSandbox",
            Duration::ZERO,
            self.runtime.clone().stop_pod_sandbox(req),
        )
        .await
        .map(drop)
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call(
            "RemovePodSandbox",
            Duration::ZERO,
            self.runtime.clone().remove_pod_sandbox(req),
        )
        .await
        .map(drop)
    }

    pub async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus, CriError> {
        let req = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        let r = self
            .call(
                "PodSandboxStatus",
                Duration::ZERO,
                self.runtime.clone().pod_sandbox_status(req),
            )
            .await?;
        r.status.ok_or(CriError::Malformed {
            op: "PodSandboxStatus",
            message: "no status".into(),
        })
    }

    pub async fn list_pod_sandbox(&self) -> Result<Vec<api::PodSandbox>, CriError> {
        let req = api::ListPodSandboxRequest { filter: None };
        let r = self
            .call(
                "ListPodSandbox",
                Duration::ZERO,
                self.runtime.clone().list_pod_sandbox(req),
            )
            .await?;
        Ok(r.items)
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String, CriError> {
        let req = api::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let r = self
            .call(
                "CreateContainer",
                Duration::ZERO,
                self.runtime.clone().create_container(req),
            )
            .await?;
        non_empty("CreateContainer", r.container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<(), CriError> {
        let req = api::StartContainerRequest {
            container_id: id.into(),
        };
        self.call(
            "StartContainer",
            Duration::ZERO,
            self.runtime.clone().start_container(req),
        )
        .await
        .map(drop)
    }

    /// Stops a container: the runtime sends the stop signal, waits `grace`, then SIGKILLs.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), CriError> {
        let req = api::StopContainerRequest {
            container_id: id.into(),
            timeout: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
        };
        self.call(
            "StopContainer",
            grace,
            self.runtime.clone().stop_container(req),
        )
        .await
        .map(drop)
    }

    pub async fn remove_container(&self, id: &str) -> Result<(), CriError> {
        let req = api::RemoveContainerRequest {
            container_id: id.into(),
        };
        self.call(
            "RemoveContainer",
            Duration::ZERO,
            self.runtime.clone().remove_container(req),
        )
        .await
        .map(drop)
    }

    pub async fn list_containers(&self) -> Result<Vec<api::Container>, CriError> {
        let req = api::ListContainersRequest { filter: None };
        let r = self
            .call(
                "ListContainers",
                Duration::ZERO,
                self.runtime.clone().list_containers(req),
            )
            .await?;
        Ok(r.containers)
    }

    pub async fn container_status(&self, id: &str) -> Result<api::ContainerStatus, CriError> {
        let req = api::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let r = self
            .call(
                "ContainerStatus",
                Duration::ZERO,
                self.runtime.clone().container_status(req),
            )
            .await?;
        r.status.ok_or(CriError::Malformed {
            op: "ContainerStatus",
            message: "no status".into(),
        })
    }

    /// Runs a command in a running container and waits for it (probes and hooks). The
    /// runtime enforces `timeout`; the call's own deadline adds it to the request timeout.
    pub async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<api::ExecSyncResponse, CriError> {
        let req = api::ExecSyncRequest {
            container_id: container_id.into(),
            cmd,
            timeout: i64::try_from(timeout.as_secs().max(1)).unwrap_or(i64::MAX),
        };
        self.call("ExecSync", timeout, self.runtime.clone().exec_sync(req))
            .await
    }

    /// Asks the runtime for a streaming URL for an exec session (the kubelet API proxies it).
    pub async fn exec(&self, req: api::ExecRequest) -> Result<String, CriError> {
        let r = self
            .call("Exec", Duration::ZERO, self.runtime.clone().exec(req))
            .await?;
        Ok(r.url)
    }

    /// Asks the runtime for a streaming URL for attaching to a container.
    pub async fn attach(&self, req: api::AttachRequest) -> Result<String, CriError> {
        let r = self
            .call("Attach", Duration::ZERO, self.runtime.clone().attach(req))
            .await?;
        Ok(r.url)
    }

    /// Asks the runtime for a streaming URL for port forwarding into a sandbox.
    pub async fn port_forward(&self, req: api::PortForwardRequest) -> Result<String, CriError> {
        let r = self
            .call(
                "PortForward",
                Duration::ZERO,
                self.runtime.clone().port_forward(req),
            )
            .await?;
        Ok(r.url)
    }

    /// Asks the runtime to reopen a container's log file (after rotation).
    pub async fn reopen_container_log(&self, container_id: &str) -> Result<(), CriError> {
        let req = api::ReopenContainerLogRequest {
            container_id: container_id.into(),
        };
        self.call(
            "ReopenContainerLog",
            Duration::ZERO,
            self.runtime.clone().reopen_container_log(req),
        )
        .await
        .map(drop)
    }

    /// The image's status, or None when the runtime does not have it.
    pub async fn image_status(&self, image: &str) -> Result<Option<api::Image>, CriError> {
        let req = api::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        let r = self
            .call(
                "ImageStatus",
                Duration::ZERO,
                self.image.clone().image_status(req),
            )
            .await?;
        Ok(r.image)
    }

    /// Pulls an image; returns the runtime's image reference (the imageID).
    pub async fn pull_image(
        &self,
        image: &str,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String, CriError> {
        let req = api::PullImageRequest {
            image: Some(image_spec(image)),
            auth: None,
            sandbox_config,
        };
        let r = self
            .call(
                "PullImage",
                Duration::ZERO,
                self.image.clone().pull_image(req),
            )
            .await?;
        non_empty("PullImage", r.image_ref)
    }
}

fn image_spec(image: &str) -> api::ImageSpec {
    api::ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}

fn non_empty(op: &'static str, id: String) -> Result<String, CriError> {
    if id.is_empty() {
        Err(CriError::Malformed {
            op,
            message: "empty id".into(),
        })
    } else {
        Ok(id)
    }
}

/// Waits until the runtime answers the version handshake, retrying with back-off
/// (0.5 s doubling to 30 s). Never gives up: a node agent without a runtime waits for it.
pub async fn handshake(cri: &Cri) -> api::VersionResponse {
    let mut delay = Duration::from_millis(500);
    loop {
        match cri.version().await {
            Ok(v) => {
                tracing::info!(
                    runtime = %v.runtime_name,
                    runtime_version = %v.runtime_version,
                    cri_version = %v.runtime_api_version,
                    socket = %cri.socket().display(),
                    "connected to the container runtime"
                );
                return v;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "container runtime not ready");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}
