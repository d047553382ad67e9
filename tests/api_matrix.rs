//! The full matrix of the kubelet API: every route × GET, POST, PUT, PATCH, DELETE, HEAD,
//! OPTIONS × {no credentials, certificate from a foreign CA, expired certificate, valid
//! certificate denied, valid certificate allowed, bad token, valid token denied, valid
//! token allowed}, each over a real TLS connection to the real listener and router.
//!
//! Expected "status" for a foreign-CA or expired certificate is a failed handshake: the
//! client CA verifier rejects the certificate before any HTTP is spoken.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "api_support/mod.rs"]
mod api_support;

use api_support::*;

fn expected(cred: Cred, method: &str, route: &(&str, &[&str], u16)) -> Option<u16> {
    let (_, methods, status) = route;
    Some(match cred {
        Cred::ForeignCa | Cred::Expired => return None,
        Cred::None | Cred::BadToken => 401,
        _ if method == "OPTIONS" => 405,
        Cred::CertDenied | Cred::TokenDenied => 403,
        Cred::CertAllowed | Cred::TokenAllowed => {
            if methods.is_empty() || methods.contains(&method) {
                *status
            } else {
                405
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_method_and_credential() {
    let pki = Pki::new();
    let server = serve(&pki, ServerOptions::default()).await;
    let mut checked = 0;
    let mut failures = Vec::new();
    for route in ROUTES {
        for method in METHODS {
            for cred in CREDS {
                let want = expected(cred, method, route);
                let got = request(server.port, &pki, cred, method, route.0, "", "").await;
                let ok = match (&got, want) {
                    (Err(_), None) => true,
                    (Ok(a), Some(s)) => a.status == s,
                    _ => false,
                };
                if !ok {
                    failures.push(format!(
                        "{method} {} {cred:?}: want {want:?}, got {:?}",
                        route.0,
                        got.as_ref().map(|a| a.status)
                    ));
                }
                if let Ok(a) = &got {
                    // Fixed bodies that echo nothing; no redirects, ever.
                    assert!(
                        !(300..400).contains(&a.status),
                        "{method} {} redirected",
                        route.0
                    );
                    assert!(a.header("location").is_none());
                    let body = String::from_utf8_lossy(&a.body);
                    match a.status {
                        401 if method != "HEAD" => assert_eq!(body, "Unauthorized\n"),
                        403 if method != "HEAD" => assert_eq!(body, "Forbidden\n"),
                        _ => {}
                    }
                    assert!(
                        !body.contains("mallory") && !body.contains("/cri/"),
                        "{body}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, ROUTES.len() * METHODS.len() * CREDS.len());
}

#[tokio::test]
async fn the_same_request_always_gets_the_same_answer() {
    let pki = Pki::new();
    let server = serve(&pki, ServerOptions::default()).await;
    for (cred, path) in [
        (Cred::CertDenied, "/pods"),
        (Cred::None, "/exec/a/b/c"),
        (Cred::TokenAllowed, "/configz"),
    ] {
        let first = request(server.port, &pki, cred, "GET", path, "", "")
            .await
            .unwrap()
            .status;
        for _ in 0..5 {
            assert_eq!(
                request(server.port, &pki, cred, "GET", path, "", "")
                    .await
                    .unwrap()
                    .status,
                first
            );
        }
    }
}

#[tokio::test]
async fn a_scraper_reads_metrics_and_nothing_else() {
    let pki = Pki::new();
    let server = serve(&pki, ServerOptions::default()).await;
    let ident = (pki.scraper.0.clone(), pki.scraper.1.clone_key());
    let get = |path: &'static str| {
        let ident = (ident.0.clone(), ident.1.clone_key());
        async move {
            let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            parse_answer(
                &exchange(server.port, client(Some(ident)), raw.as_bytes())
                    .await
                    .unwrap(),
            )
            .unwrap()
        }
    };
    let m = get("/metrics").await;
    assert_eq!(m.status, 200);
    let text = String::from_utf8_lossy(&m.body);
    for name in [
        "kubelet_running_pods",
        "kubelet_running_containers",
        "kubelet_pleg_relist_duration_seconds_bucket",
        "kubelet_runtime_operations_total",
        "kubelet_runtime_operations_errors_total",
        "kubelet_http_requests_total",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert_eq!(get("/metrics/probes").await.status, 200);
    assert_eq!(get("/pods").await.status, 403);
    assert_eq!(get("/healthz").await.status, 403);
}
