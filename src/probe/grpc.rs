//! gRPC actions: `grpc.health.v1.Health/Check` over plaintext HTTP/2 to podIP:port, as
//! upstream's `pkg/probe/grpc`. SERVING is success; anything else, an error status or no
//! answer within the timeout is a failure. Messages follow upstream's wording.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tonic::transport::{Endpoint, Uri};

use super::handler::{error_chain, join_host_port};
use super::{KUBE_MINOR_VERSION, ProbeOutcome};

/// The generated `grpc.health.v1` messages, client and server (the server for tests).
#[allow(dead_code, missing_docs, clippy::pedantic)]
pub(super) mod health {
    tonic::include_proto!("grpc.health.v1");
}

use health::health_check_response::ServingStatus;
use health::{HealthCheckRequest, health_client::HealthClient};

pub(super) async fn run(
    pod_ip: &str,
    port: i32,
    service: &str,
    timeout: Duration,
    deadline: Instant,
) -> ProbeOutcome {
    let Some(port) = u16::try_from(port).ok().filter(|p| *p > 0) else {
        return ProbeOutcome::failure(format!("error: invalid port number: {port}"));
    };
    let addr = join_host_port(pod_ip, port);
    let endpoint = match Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent(format!("kube-probe/{KUBE_MINOR_VERSION}")))
    {
        Ok(e) => e.connect_timeout(timeout),
        Err(e) => {
            return ProbeOutcome::failure(format!(
                "error: failed to connect service at {addr:?}: {}",
                error_chain(&e)
            ));
        }
    };
    // Dial the pod IP directly: no resolver, no proxy.
    let host = pod_ip.to_string();
    let connector = tower::service_fn(move |_: Uri| {
        let host = host.clone();
        async move {
            TcpStream::connect((host.as_str(), port))
                .await
                .map(TokioIo::new)
        }
    });
    let channel =
        match tokio::time::timeout_at(deadline, endpoint.connect_with_connector(connector)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return ProbeOutcome::failure(format!(
                    "error: failed to connect service at {addr:?}: {}",
                    error_chain(&e)
                ));
            }
            Err(_) => {
                return ProbeOutcome::failure(format!(
                    "timeout: failed to connect service {addr:?} within {timeout:?}"
                ));
            }
        };

    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_string(),
    });
    request.set_timeout(deadline.saturating_duration_since(Instant::now()));
    let mut client = HealthClient::new(channel);
    let rpc_timeout = || {
        ProbeOutcome::failure(format!(
            "timeout: health rpc did not complete within {timeout:?}"
        ))
    };
    let response = match tokio::time::timeout_at(deadline, client.check(request)).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => {
            // tonic enforces the request's grpc-timeout itself and reports it as
            // Cancelled; upstream's client reports DeadlineExceeded. Both are a timeout.
            if Instant::now() >= deadline {
                return rpc_timeout();
            }
            return match status.code() {
                tonic::Code::Unimplemented => ProbeOutcome::failure(format!(
                    "error: this server does not implement the grpc health protocol \
                     (grpc.health.v1.Health): {}",
                    status.message()
                )),
                tonic::Code::DeadlineExceeded => rpc_timeout(),
                _ => ProbeOutcome::failure(format!(
                    "error: health rpc probe failed: {}",
                    error_chain(&status)
                )),
            };
        }
        Err(_) => return rpc_timeout(),
    };
    match ServingStatus::try_from(response.status) {
        Ok(ServingStatus::Serving) => ProbeOutcome::success("service healthy"),
        Ok(other) => ProbeOutcome::failure(format!(
            "service unhealthy (responded with {:?})",
            other.as_str_name()
        )),
        Err(_) => ProbeOutcome::failure(format!(
            "service unhealthy (responded with {:?})",
            response.status.to_string()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::stream::BoxStream;
    use k8s_openapi::api::core::v1::GRPCAction;
    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response, Status};

    use super::health::health_server::{Health, HealthServer};
    use super::health::{HealthCheckRequest, HealthCheckResponse};
    use super::*;
    use crate::probe::exec::tests::FakeExec;
    use crate::probe::{Handler, ProbeResult, Target, run_handler};

    /// Serves "" and "up" as SERVING, "down" as NOT_SERVING, stalls on "slow", has no
    /// health protocol for "legacy", and does not know other services.
    struct TestHealth;

    #[tonic::async_trait]
    impl Health for TestHealth {
        async fn check(
            &self,
            request: Request<HealthCheckRequest>,
        ) -> Result<Response<HealthCheckResponse>, Status> {
            let status = match request.get_ref().service.as_str() {
                "" | "up" => ServingStatus::Serving,
                "down" => ServingStatus::NotServing,
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    ServingStatus::Serving
                }
                "legacy" => return Err(Status::unimplemented("unknown service")),
                _ => return Err(Status::not_found("unknown service")),
            };
            Ok(Response::new(HealthCheckResponse {
                status: status.into(),
            }))
        }

        type WatchStream = BoxStream<'static, Result<HealthCheckResponse, Status>>;

        async fn watch(
            &self,
            _: Request<HealthCheckRequest>,
        ) -> Result<Response<Self::WatchStream>, Status> {
            Err(Status::unimplemented("watch"))
        }
    }

    async fn start() -> (u16, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(HealthServer::new(TestHealth))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        (port, server)
    }

    async fn probe(port: u16, service: Option<&str>, timeout: Duration) -> ProbeOutcome {
        let fake = FakeExec::new(Err(crate::probe::ExecError("unused".into())));
        let h = Handler::Grpc(GRPCAction {
            port: i32::from(port),
            service: service.map(str::to_string),
        });
        let target = Target {
            pod_ip: "127.0.0.1".into(),
            container_id: "c".into(),
            container: Default::default(),
        };
        run_handler(&h, &target, &fake, timeout).await
    }

    #[tokio::test]
    async fn health_check_results() {
        let (port, server) = start().await;
        let t = Duration::from_secs(5);
        assert_eq!(
            probe(port, None, t).await,
            ProbeOutcome::success("service healthy")
        );
        assert_eq!(
            probe(port, Some("up"), t).await.result,
            ProbeResult::Success
        );
        assert_eq!(
            probe(port, Some("down"), t).await,
            ProbeOutcome::failure("service unhealthy (responded with \"NOT_SERVING\")")
        );
        let o = probe(port, Some("other"), t).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(
            o.message.starts_with("error: health rpc probe failed"),
            "{}",
            o.message
        );
        let o = probe(port, Some("legacy"), t).await;
        assert!(
            o.message
                .starts_with("error: this server does not implement"),
            "{}",
            o.message
        );
        let o = probe(port, Some("slow"), Duration::from_millis(300)).await;
        assert_eq!(
            o,
            ProbeOutcome::failure("timeout: health rpc did not complete within 300ms")
        );
        server.abort();
    }

    #[tokio::test]
    async fn unreachable_server_fails() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let o = probe(closed, None, Duration::from_secs(2)).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(
            o.message.starts_with("error: failed to connect service at"),
            "{}",
            o.message
        );
        // A port that is open but speaks something else never answers the RPC.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let o = probe(port, None, Duration::from_millis(300)).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(o.message.starts_with("timeout"), "{}", o.message);
        drop(listener);
    }
}
