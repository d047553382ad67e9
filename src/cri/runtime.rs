//! The seam between the agent and its container runtime: every CRI call the agent makes, as
//! one trait. The tonic client [`Cri`] is the production implementation; unit tests use the
//! in-memory [`fake`](super::fake) runtime.
//!
//! Futures are `Send` so that generic workers can be spawned on the multi-threaded runtime;
//! dispatch is static (callers are generic over `R: Runtime`).

use std::future::Future;
use std::time::Duration;

use super::ids::{ContainerId, SandboxId};
use super::{Cri, CriError, api};

/// The CRI runtime.v1 and image service calls the agent makes.
pub trait Runtime: Clone + Send + Sync + 'static {
    fn version(&self) -> impl Future<Output = Result<api::VersionResponse, CriError>> + Send;

    fn status(&self) -> impl Future<Output = Result<api::StatusResponse, CriError>> + Send;

    fn run_pod_sandbox(
        &self,
        config: api::PodSandboxConfig,
    ) -> impl Future<Output = Result<SandboxId, CriError>> + Send;

    fn stop_pod_sandbox(&self, id: &SandboxId)
    -> impl Future<Output = Result<(), CriError>> + Send;

    fn remove_pod_sandbox(
        &self,
        id: &SandboxId,
    ) -> impl Future<Output = Result<(), CriError>> + Send;

    fn pod_sandbox_status(
        &self,
        id: &SandboxId,
    ) -> impl Future<Output = Result<api::PodSandboxStatus, CriError>> + Send;

    fn list_pod_sandbox(
        &self,
    ) -> impl Future<Output = Result<Vec<api::PodSandbox>, CriError>> + Send;

    fn create_container(
        &self,
        sandbox: &SandboxId,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> impl Future<Output = Result<ContainerId, CriError>> + Send;

    fn start_container(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<(), CriError>> + Send;

    /// The runtime sends the stop signal, waits `grace`, then SIGKILLs.
    fn stop_container(
        &self,
        id: &ContainerId,
        grace: Duration,
    ) -> impl Future<Output = Result<(), CriError>> + Send;

    fn remove_container(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<(), CriError>> + Send;

    fn list_containers(&self)
    -> impl Future<Output = Result<Vec<api::Container>, CriError>> + Send;

    fn container_status(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<api::ContainerStatus, CriError>> + Send;

    /// Runs a command in a running container and waits for it (probes and hooks).
    fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> impl Future<Output = Result<api::ExecSyncResponse, CriError>> + Send;

    /// A streaming URL for an exec session.
    fn exec(&self, req: api::ExecRequest) -> impl Future<Output = Result<String, CriError>> + Send;

    /// A streaming URL for attaching to a container.
    fn attach(
        &self,
        req: api::AttachRequest,
    ) -> impl Future<Output = Result<String, CriError>> + Send;

    /// A streaming URL for port forwarding into a sandbox.
    fn port_forward(
        &self,
        req: api::PortForwardRequest,
    ) -> impl Future<Output = Result<String, CriError>> + Send;

    fn reopen_container_log(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<(), CriError>> + Send;

    /// The image's status, or None when the runtime does not have it.
    fn image_status(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<Option<api::Image>, CriError>> + Send;

    /// Pulls an image; returns the runtime's image reference.
    fn pull_image(
        &self,
        image: &str,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> impl Future<Output = Result<String, CriError>> + Send;
}

/// The tonic client, with typed ids at the seam (its inherent methods take the wire strings).
impl Runtime for Cri {
    async fn version(&self) -> Result<api::VersionResponse, CriError> {
        Cri::version(self).await
    }
    async fn status(&self) -> Result<api::StatusResponse, CriError> {
        Cri::status(self).await
    }
    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig) -> Result<SandboxId, CriError> {
        Cri::run_pod_sandbox(self, config)
            .await
            .map(SandboxId::from)
    }
    async fn stop_pod_sandbox(&self, id: &SandboxId) -> Result<(), CriError> {
        Cri::stop_pod_sandbox(self, id.as_str()).await
    }
    async fn remove_pod_sandbox(&self, id: &SandboxId) -> Result<(), CriError> {
        Cri::remove_pod_sandbox(self, id.as_str()).await
    }
    async fn pod_sandbox_status(&self, id: &SandboxId) -> Result<api::PodSandboxStatus, CriError> {
        Cri::pod_sandbox_status(self, id.as_str()).await
    }
    async fn list_pod_sandbox(&self) -> Result<Vec<api::PodSandbox>, CriError> {
        Cri::list_pod_sandbox(self).await
    }
    async fn create_container(
        &self,
        sandbox: &SandboxId,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<ContainerId, CriError> {
        Cri::create_container(self, sandbox.as_str(), config, sandbox_config)
            .await
            .map(ContainerId::from)
    }
    async fn start_container(&self, id: &ContainerId) -> Result<(), CriError> {
        Cri::start_container(self, id.as_str()).await
    }
    async fn stop_container(&self, id: &ContainerId, grace: Duration) -> Result<(), CriError> {
        Cri::stop_container(self, id.as_str(), grace).await
    }
    async fn remove_container(&self, id: &ContainerId) -> Result<(), CriError> {
        Cri::remove_container(self, id.as_str()).await
    }
    async fn list_containers(&self) -> Result<Vec<api::Container>, CriError> {
        Cri::list_containers(self).await
    }
    async fn container_status(&self, id: &ContainerId) -> Result<api::ContainerStatus, CriError> {
        Cri::container_status(self, id.as_str()).await
    }
    async fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<api::ExecSyncResponse, CriError> {
        Cri::exec_sync(self, id.as_str(), cmd, timeout).await
    }
    async fn exec(&self, req: api::ExecRequest) -> Result<String, CriError> {
        Cri::exec(self, req).await
    }
    async fn attach(&self, req: api::AttachRequest) -> Result<String, CriError> {
        Cri::attach(self, req).await
    }
    async fn port_forward(&self, req: api::PortForwardRequest) -> Result<String, CriError> {
        Cri::port_forward(self, req).await
    }
    async fn reopen_container_log(&self, id: &ContainerId) -> Result<(), CriError> {
        Cri::reopen_container_log(self, id.as_str()).await
    }
    async fn image_status(&self, image: &str) -> Result<Option<api::Image>, CriError> {
        Cri::image_status(self, image).await
    }
    async fn pull_image(
        &self,
        image: &str,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String, CriError> {
        Cri::pull_image(self, image, sandbox_config).await
    }
}
