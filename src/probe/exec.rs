//! Exec actions: a command run in the container through the CRI's ExecSync.
//!
//! The CRI call is behind [`Exec`] so this module needs no runtime client and tests use a
//! fake. Exit code 0 is success; the combined output (stdout then stderr, as upstream's
//! `RunInContainer`) is the message, capped at [`MAX_OUTPUT`].

use std::time::Duration;

use futures::future::BoxFuture;

use super::{MAX_OUTPUT, ProbeError, ProbeOutcome};

/// Why a command could not be run at all (the runtime's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExecError(pub String);

/// What [`Exec::exec_sync`] answers: (exit code, stdout, stderr), or why the command could
/// not be run.
pub type ExecResult = Result<(i32, Vec<u8>, Vec<u8>), ExecError>;

/// Runs a command in a container and waits for it: the CRI `ExecSync` call.
///
/// `timeout` is the probe's timeoutSeconds, for the runtime to enforce; the caller
/// also bounds the whole call by it. `Ok` carries (exit code, stdout, stderr); `Err` means
/// the command could not be run at all (runtime unreachable, container gone), which
/// upstream treats as a probe error, not a failure: the result is thrown away.
pub trait Exec: Send + Sync {
    fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'_, ExecResult>;
}

/// Runs `command` once. `Err` is a probe error (see [`Exec`]); the caller applies the
/// timeout.
pub(super) async fn run(
    exec: &dyn Exec,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<ProbeOutcome, ProbeError> {
    let (code, stdout, stderr) = exec
        .exec_sync(container_id, command.to_vec(), timeout)
        .await?;
    let message = capped_output(&stdout, &stderr);
    Ok(if code == 0 {
        ProbeOutcome::success(message)
    } else {
        ProbeOutcome::failure(message)
    })
}

/// stdout followed by stderr, at most [`MAX_OUTPUT`] bytes, lossily decoded.
fn capped_output(stdout: &[u8], stderr: &[u8]) -> String {
    let mut out = Vec::with_capacity((stdout.len() + stderr.len()).min(MAX_OUTPUT));
    for part in [stdout, stderr] {
        let room = MAX_OUTPUT - out.len();
        out.extend_from_slice(&part[..part.len().min(room)]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The failure message for a command that ran out of time, as upstream's CRI client.
pub(super) fn timeout_message(command: &[String], timeout: Duration) -> String {
    format!(
        "command {:?} timed out after {timeout:?}",
        command.join(" ")
    )
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::probe::{ProbeResult, Target, handler::Handler, run_handler};

    /// A fake runtime: answers every exec with a fixed result after a delay, and records
    /// the calls.
    pub struct FakeExec {
        pub answer: ExecResult,
        pub delay: Duration,
        pub calls: Mutex<Vec<(String, Vec<String>, Duration)>>,
    }

    impl FakeExec {
        pub fn new(answer: ExecResult) -> Self {
            FakeExec {
                answer,
                delay: Duration::ZERO,
                calls: Mutex::new(Vec::new()),
            }
        }
    }

    impl Exec for FakeExec {
        fn exec_sync(
            &self,
            container_id: &str,
            cmd: Vec<String>,
            timeout: Duration,
        ) -> BoxFuture<'_, ExecResult> {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push((container_id.to_string(), cmd, timeout));
            }
            Box::pin(async move {
                if !self.delay.is_zero() {
                    tokio::time::sleep(self.delay).await;
                }
                self.answer.clone()
            })
        }
    }

    fn target() -> Target {
        Target {
            pod_ip: "127.0.0.1".into(),
            container_id: "c0ffee".into(),
            container: Default::default(),
        }
    }

    fn handler(cmd: &[&str]) -> Handler {
        Handler::Exec {
            command: cmd.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn exit_zero_is_success_with_output() {
        let fake = FakeExec::new(Ok((0, b"out ".to_vec(), b"err".to_vec())));
        let t = Duration::from_secs(3);
        let o = run_handler(&handler(&["cat", "/ready"]), &target(), &fake, t).await;
        assert_eq!(o, ProbeOutcome::success("out err"));
        let calls = fake.calls.lock().unwrap();
        assert_eq!(
            calls[0],
            ("c0ffee".to_string(), vec!["cat".into(), "/ready".into()], t)
        );
    }

    #[tokio::test]
    async fn non_zero_exit_is_failure() {
        let fake = FakeExec::new(Ok((1, Vec::new(), b"not ready".to_vec())));
        let o = run_handler(
            &handler(&["false"]),
            &target(),
            &fake,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(o, ProbeOutcome::failure("not ready"));
    }

    #[tokio::test]
    async fn output_is_capped() {
        let fake = FakeExec::new(Ok((0, vec![b'a'; MAX_OUTPUT], vec![b'b'; 100])));
        let o = run_handler(&handler(&["x"]), &target(), &fake, Duration::from_secs(1)).await;
        assert_eq!(o.message.len(), MAX_OUTPUT);
        assert!(o.message.bytes().all(|b| b == b'a'));
        assert_eq!(capped_output(b"ab", b"cd"), "abcd");
        assert_eq!(
            capped_output(&vec![b'x'; MAX_OUTPUT - 1], b"yz").len(),
            MAX_OUTPUT
        );
    }

    #[tokio::test]
    async fn timeout_is_failure() {
        let mut fake = FakeExec::new(Ok((0, Vec::new(), Vec::new())));
        fake.delay = Duration::from_secs(30);
        let started = std::time::Instant::now();
        let o = run_handler(
            &handler(&["sleep", "30"]),
            &target(),
            &fake,
            Duration::from_millis(200),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(
            o.message.contains("\"sleep 30\" timed out"),
            "{}",
            o.message
        );
    }

    #[tokio::test]
    async fn runtime_error_is_failure_for_hooks() {
        let fake = FakeExec::new(Err(crate::probe::ExecError("container not found".into())));
        let o = run_handler(&handler(&["x"]), &target(), &fake, Duration::from_secs(1)).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(o.message.contains("container not found"));
    }
}
