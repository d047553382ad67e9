//! TLS of the kubelet API against a real client configured to be weak: `openssl s_client`
//! offering TLS 1.0, TLS 1.1, or TLS 1.2 with non-AEAD suites must fail the handshake (the
//! server's alert proves it was the server that refused), while TLS 1.2 with a CIS 4.2.12
//! suite and TLS 1.3 succeed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "api_support/mod.rs"]
mod api_support;

use api_support::*;

async fn s_client(port: u16, args: &[&str]) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), cmd.output())
        .await
        .expect("openssl s_client hung")
        .expect("openssl is installed (xtask prerequisites)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A completed handshake prints the negotiated protocol and cipher.
    let ok = text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
    (ok, text)
}

#[tokio::test]
async fn weak_protocols_and_suites_fail_the_handshake() {
    let pki = Pki::new();
    let s = serve(&pki, ServerOptions::default()).await;
    // SECLEVEL=0 so that OpenSSL 3 actually sends these ClientHellos.
    for (what, args, alert) in [
        (
            "TLS 1.0",
            &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"][..],
            "alert handshake failure",
        ),
        (
            "TLS 1.1",
            &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"][..],
            "alert handshake failure",
        ),
        (
            "TLS 1.2 CBC",
            &[
                "-tls1_2",
                "-cipher",
                "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA@SECLEVEL=0",
            ][..],
            "alert handshake failure",
        ),
        (
            "TLS 1.2 static RSA",
            &[
                "-tls1_2",
                "-cipher",
                "AES128-GCM-SHA256:AES256-GCM-SHA384@SECLEVEL=0",
            ][..],
            "alert handshake failure",
        ),
    ] {
        let (ok, text) = s_client(s.port, args).await;
        assert!(!ok, "{what} handshake succeeded:\n{text}");
        assert!(
            text.contains(alert),
            "{what}: no '{alert}' alert from the server:\n{text}"
        );
    }
    let (ok, text) = s_client(
        s.port,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
    )
    .await;
    assert!(
        ok && text.contains("ECDHE-ECDSA-AES128-GCM-SHA256"),
        "{text}"
    );
    let (ok, text) = s_client(s.port, &["-tls1_3"]).await;
    assert!(ok && text.contains("TLSv1.3"), "{text}");
}

#[tokio::test]
async fn tls13_only_refuses_tls12() {
    let pki = Pki::new();
    let s = serve(
        &pki,
        ServerOptions {
            min_version: Some("VersionTLS13"),
            ..Default::default()
        },
    )
    .await;
    let (ok, text) = s_client(s.port, &["-tls1_2"]).await;
    assert!(!ok && text.contains(" alert "), "{text}");
    let (ok, _) = s_client(s.port, &["-tls1_3"]).await;
    assert!(ok);
}

#[tokio::test]
async fn client_certificates_are_requested_but_optional() {
    let pki = Pki::new();
    let s = serve(&pki, ServerOptions::default()).await;
    // No certificate: the handshake completes and HTTP answers 401.
    let a = request(s.port, &pki, Cred::None, "GET", "/healthz", "", "")
        .await
        .unwrap();
    assert_eq!(a.status, 401);
    let (ok, text) = s_client(s.port, &["-tls1_3"]).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("Acceptable client certificate CA names")
            && text.contains("kubelet-client-ca"),
        "{text}"
    );
}
