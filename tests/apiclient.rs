//! The cluster-mode API client against the fake API server over real TLS: certificate and
//! token identities, a client identity swapped under a running client (what rotation will
//! do), the request budget, and the kubeconfigs it refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use support::fakeapi::{FakeApi, Identity};

fn kubeconfig_file(api: &FakeApi, id: &Identity) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    api.write_kubeconfig(f.path(), id);
    f
}

/// The user the fake API server saw on the last request to `path`.
fn last_user(api: &FakeApi, path: &str) -> String {
    api.requests()
        .into_iter()
        .rev()
        .find(|r| r.path == path)
        .map(|r| r.user)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_identity_can_be_swapped_under_a_running_client() {
    let api = FakeApi::start();
    let kc = kubeconfig_file(&api, &Identity::admin());
    let client = ironlet::apiclient::connect(kc.path(), 50.0, 100)
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(client.client.clone());
    nodes.list(&Default::default()).await.unwrap();
    assert_eq!(last_user(&api, "/api/v1/nodes"), "admin");

    // A new certificate for another user, published through the identity handle: the
    // same client (and its clones) presents it on the next connection.
    let (cert, key) = api.issue_client_cert("system:node:swapped", &["system:nodes"]);
    client
        .identity
        .set_pem(cert.as_bytes(), key.as_bytes())
        .unwrap();
    // The very next request uses it, although a pooled connection (and a resumable TLS
    // session) of the old identity exists.
    nodes.list(&Default::default()).await.unwrap();
    assert_eq!(last_user(&api, "/api/v1/nodes"), "system:node:swapped");
    // A bad certificate is refused and the current one stays.
    assert!(client.identity.set_pem(b"not pem", key.as_bytes()).is_err());
    nodes.list(&Default::default()).await.unwrap();
    assert_eq!(last_user(&api, "/api/v1/nodes"), "system:node:swapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_identity_and_request_budget() {
    let api = FakeApi::start();
    api.add_token("node-token-1", "admin", &["system:masters"]);
    let kc = kubeconfig_file(&api, &Identity::token("node-token-1"));
    // 5 requests per second with a burst of 2: 8 requests need at least 1.2 s.
    let client = ironlet::apiclient::connect(kc.path(), 5.0, 2)
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(client.client.clone());
    let start = Instant::now();
    for _ in 0..8 {
        nodes.list(&Default::default()).await.unwrap();
    }
    let took = start.elapsed();
    assert_eq!(last_user(&api, "/api/v1/nodes"), "admin");
    assert!(
        took >= Duration::from_millis(1100),
        "8 requests at 5 qps / burst 2 took only {took:?}"
    );
}

#[tokio::test]
async fn unsafe_kubeconfigs_are_refused_naming_the_field() {
    let api = FakeApi::start();
    let good = api.kubeconfig(&Identity::admin());
    let cases = [
        (
            good.replace(
                "certificate-authority-data:",
                "insecure-skip-tls-verify: true\n    x-unused:",
            ),
            "insecure-skip-tls-verify",
        ),
        (
            good.lines()
                .filter(|l| !l.contains("certificate-authority-data"))
                .collect::<Vec<_>>()
                .join("\n"),
            "certificate-authority",
        ),
        (good.replace("https://", "http://"), "server"),
        (
            good.lines()
                .filter(|l| !l.contains("client-key-data"))
                .collect::<Vec<_>>()
                .join("\n"),
            "client-key",
        ),
    ];
    for (text, field) in cases {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &text).unwrap();
        let err = ironlet::apiclient::connect(f.path(), 50.0, 100)
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{field}: {err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }
}
