//! TCP socket actions: success if a connection to host:port completes (upstream's
//! `DoTCPProbe`). Nothing is sent; the socket is closed at once. Dialled from the host's
//! network namespace, as upstream. The caller applies the timeout.

use tokio::net::TcpStream;

use super::ProbeOutcome;
use super::handler::join_host_port;

pub(super) async fn run(host: &str, port: u16) -> ProbeOutcome {
    match TcpStream::connect((host, port)).await {
        Ok(stream) => {
            drop(stream);
            ProbeOutcome::success("")
        }
        Err(e) => ProbeOutcome::failure(format!("dial tcp {}: {e}", join_host_port(host, port))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::TCPSocketAction;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use crate::probe::exec::tests::FakeExec;
    use crate::probe::{Handler, ProbeResult, Target, run_handler};

    fn tcp(port: u16) -> Handler {
        Handler::TcpSocket(TCPSocketAction {
            host: None,
            port: IntOrString::Int(i32::from(port)),
        })
    }

    fn target() -> Target {
        Target {
            pod_ip: "127.0.0.1".into(),
            container_id: "c".into(),
            container: Default::default(),
        }
    }

    #[tokio::test]
    async fn open_port_succeeds_closed_port_fails() {
        let fake = FakeExec::new(Err(crate::probe::ExecError("unused".into())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        let o = run_handler(&tcp(open), &target(), &fake, Duration::from_secs(1)).await;
        assert_eq!(o.result, ProbeResult::Success);

        // A port that was free a moment ago: bound, then released.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let o = run_handler(&tcp(closed), &target(), &fake, Duration::from_secs(1)).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(
            o.message.starts_with("dial tcp 127.0.0.1:"),
            "{}",
            o.message
        );
    }

    #[tokio::test]
    async fn unknown_named_port_is_a_probe_error() {
        let fake = FakeExec::new(Err(crate::probe::ExecError("unused".into())));
        let h = Handler::TcpSocket(TCPSocketAction {
            host: None,
            port: IntOrString::String("metrics".into()),
        });
        let r = crate::probe::handler::attempt(&h, &target(), &fake, Duration::from_secs(1)).await;
        assert!(r.is_err());
    }
}
