//! Starting the secure API from a real configuration: it fails closed (no port) without an
//! authorizer or a serving certificate, refuses a bad policy file by name, and serves only
//! authenticated requests when it opens. Insecure settings never get this far.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "api_support/mod.rs"]
mod api_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_support::*;
use ironlet::config::{Config, RunFlags};

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(pki: &Pki) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let serving = Ca::new("serving");
        let (c, k) = serving.leaf_pem("node", None, &["127.0.0.1"], false);
        std::fs::write(dir.path().join("tls.crt"), c).unwrap();
        std::fs::write(dir.path().join("tls.key"), k).unwrap();
        std::fs::write(dir.path().join("ca.crt"), pki.ca.pem()).unwrap();
        std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
        std::fs::write(
            dir.path().join("bad-policy.yaml"),
            POLICY.replace("[admin]", "['*']"),
        )
        .unwrap();
        Files { dir }
    }

    fn path(&self, n: &str) -> std::path::PathBuf {
        self.dir.path().join(n)
    }

    fn config(&self, body: &str, policy: Option<&str>) -> Result<Config, String> {
        let file = self.path("config.yaml");
        std::fs::write(
            &file,
            format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\naddress: 127.0.0.1\n{body}"),
        )
        .unwrap();
        let flags = RunFlags {
            config: Some(file),
            hostname_override: Some("node-1".into()),
            authorization_policy_file: policy.map(|p| self.path(p)),
            ..Default::default()
        };
        Config::load(&flags)
            .map(|l| l.config)
            .map_err(|e| e.to_string())
    }

    fn secured(&self, port: u16) -> String {
        format!(
            "port: {port}\ntlsCertFile: {}\ntlsPrivateKeyFile: {}\nauthentication:\n  x509:\n    clientCAFile: {}\n",
            self.path("tls.crt").display(),
            self.path("tls.key").display(),
            self.path("ca.crt").display()
        )
    }
}

fn handles() -> ironlet::server::api::Handles {
    let (_tx, rx) = tokio::sync::watch::channel(empty_snapshot());
    ironlet::server::api::Handles {
        pods: Box::new(|| Ok(PODS_JSON.as_bytes().to_vec())),
        snapshots: rx,
        health: Arc::new(ironlet::pleg::PlegHealth::default()),
        started: Instant::now(),
        cri: ironlet::cri::Cri::new(
            std::path::Path::new("/nonexistent.sock"),
            Duration::from_secs(1),
        ),
        probes: None,
        configz: serde_json::json!({}),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn closed(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
}

#[tokio::test]
async fn without_a_policy_file_or_api_server_the_port_stays_closed() {
    let pki = Pki::new();
    let f = Files::new(&pki);
    let port = free_port();
    let config = f.config(&f.secured(port), None).unwrap();
    let started = ironlet::server::start(&config, handles(), None)
        .await
        .unwrap();
    assert!(started.is_none());
    assert!(closed(port).await);
}

#[tokio::test]
async fn without_a_serving_certificate_the_port_stays_closed() {
    let pki = Pki::new();
    let f = Files::new(&pki);
    let port = free_port();
    let config = f
        .config(&format!("port: {port}\n"), Some("policy.yaml"))
        .unwrap();
    assert!(
        ironlet::server::start(&config, handles(), None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(closed(port).await);
}

#[tokio::test]
async fn a_policy_that_could_allow_everyone_stops_startup_naming_the_file() {
    let pki = Pki::new();
    let f = Files::new(&pki);
    let port = free_port();
    let config = f.config(&f.secured(port), Some("bad-policy.yaml")).unwrap();
    let e = match ironlet::server::start(&config, handles(), None).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a wildcard policy was accepted"),
    };
    assert!(
        e.contains("--authorization-policy-file")
            && e.contains("bad-policy.yaml")
            && e.contains("wildcards"),
        "{e}"
    );
    assert!(closed(port).await);
}

#[tokio::test]
async fn with_certificate_and_policy_it_serves_authenticated_requests_only() {
    let pki = Pki::new();
    let f = Files::new(&pki);
    let port = free_port();
    let config = f.config(&f.secured(port), Some("policy.yaml")).unwrap();
    let s = ironlet::server::start(&config, handles(), None)
        .await
        .unwrap()
        .expect("opened");
    assert_eq!(s.local_addr.port(), port);
    assert_eq!(
        request(port, &pki, Cred::None, "GET", "/pods", "", "")
            .await
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        request(port, &pki, Cred::CertAllowed, "GET", "/pods", "", "")
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        request(port, &pki, Cred::CertDenied, "GET", "/pods", "", "")
            .await
            .unwrap()
            .status,
        403
    );
    // Standalone has no TokenReview: a token is refused, never anonymous.
    assert_eq!(
        request(port, &pki, Cred::TokenAllowed, "GET", "/pods", "", "")
            .await
            .unwrap()
            .status,
        401
    );
    s.task.abort();
}

#[test]
fn insecure_settings_are_startup_errors_naming_field_and_cis_id() {
    let pki = Pki::new();
    let f = Files::new(&pki);
    for (body, needle) in [
        ("readOnlyPort: 10255\n", "readOnlyPort"),
        (
            "authentication:\n  anonymous:\n    enabled: true\n",
            "4.2.1",
        ),
        ("authorization:\n  mode: AlwaysAllow\n", "4.2.2"),
        ("streamingConnectionIdleTimeout: 0s\n", "4.2.5"),
        ("tlsMinVersion: VersionTLS11\n", "4.2.12"),
        (
            "tlsCipherSuites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n",
            "TLS_RSA_WITH_AES_128_CBC_SHA",
        ),
    ] {
        let e = f.config(body, Some("policy.yaml")).unwrap_err();
        assert!(e.contains(needle), "{body}: {e}");
    }
    let e = Config::load(&RunFlags {
        hostname_override: Some("n".into()),
        authorization_policy_file: Some("relative.yaml".into()),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("--authorization-policy-file"), "{e}");
}
