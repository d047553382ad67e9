//! The red-team checklist of shared/reference/attack-surface.md §1, item by item, against
//! the real listener and router over real TLS (the items that need the agent binary, 1 and
//! 18, are in tests/api_agent.rs), plus the limits and the audit line.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "api_support/mod.rs"]
mod api_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_support::*;
use ironlet::server::listener::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw(port: u16, cred: Cred, pki: &Pki, bytes: &[u8]) -> Result<Vec<u8>, String> {
    exchange(port, client(cred_identity(pki, cred)), bytes).await
}

fn count_responses(raw: &[u8]) -> usize {
    raw.windows(9).filter(|w| w == b"HTTP/1.1 ").count()
}

#[tokio::test]
async fn item_2_to_10_unauthenticated_requests_get_a_bare_401() {
    let pki = Pki::new();
    let s = serve(&pki, ServerOptions::default()).await;
    let cases: &[(&str, &str, &str, &str)] = &[
        ("GET", "/pods", "", ""),
        ("GET", "/healthz", "", ""),
        ("GET", "/healthz/log", "", ""),
        ("GET", "/healthz/ping", "", ""),
        ("GET", "/healthz/syncloop", "", ""),
        ("GET", "/runningpods/", "", ""),
        ("GET", "/containerLogs/kube-system/etcd/etcd", "", ""),
        ("GET", "/configz", "", ""),
        ("GET", "/spec/", "", ""),
        ("GET", "/stats/summary", "", ""),
        ("GET", "/metrics", "", ""),
        ("GET", "/metrics/cadvisor", "", ""),
        (
            "GET",
            "/exec/ns/p/c?command=id&input=1&output=1&tty=1",
            "X-Stream-Protocol-Version: v2.channel.k8s.io\r\nX-Stream-Protocol-Version: channel.k8s.io\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n",
            "",
        ),
        (
            "POST",
            "/attach/ns/p/c?stdout=1&tty=1",
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "",
        ),
        ("POST", "/run/ns/p/c?cmd=id", "", ""),
        (
            "POST",
            "/run/ns/p/c/",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            "cmd=cat+/var/run/secrets/kubernetes.io/serviceaccount/token",
        ),
        ("GET", "/portForward/ns/p?port=80", "", ""),
        ("GET", "/logs/", "", ""),
        ("GET", "/logs/audit/audit.log", "", ""),
        ("GET", "/logs/../../etc/shadow", "", ""),
        ("GET", "/logs/%2e%2e/%2e%2e/etc/shadow", "", ""),
        ("GET", "/debug/pprof/cmdline", "", ""),
        ("PUT", "/debug/flags/v", "", "10"),
        ("POST", "/checkpoint/ns/p/c", "", ""),
    ];
    for (method, path, headers, body) in cases {
        let a = request(s.port, &pki, Cred::None, method, path, headers, body)
            .await
            .unwrap();
        assert_eq!(a.status, 401, "{method} {path}");
        assert_eq!(a.body, b"Unauthorized\n", "{method} {path}");
        assert!(a.header("location").is_none());
        let text = String::from_utf8_lossy(&a.raw).to_lowercase();
        for leak in ["/cri/", "<", "{", "kubernetes", "version", "server:"] {
            assert!(
                !text.contains(leak),
                "{method} {path} leaks {leak:?}: {text}"
            );
        }
    }
}

#[tokio::test]
async fn item_11_cri_redirect_paths_do_not_exist() {
    let pki = Pki::new();
    let s = serve(&pki, ServerOptions::default()).await;
    for m in ["GET", "POST"] {
        let a = request(
            s.port,
            &pki,
            Cred::CertAllowed,
            m,
            "/cri/exec/x?cmd=id",
            "",
            "",
        )
        .await
        .unwrap();
        assert_eq!(a.status, 404);
    }
}

#[tokio::test]
async fn item_12_plain_http_gets_no_http_answer() {
    let pki = Pki::new();
    let s = serve(&pki, ServerOptions::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    tcp.write_all(b"GET /pods HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    assert!(
        !out.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

#[tokio::test]
async fn item_13_foreign_and_expired_certificates_fail_the_handshake() {
    let pki = Pki::new();
    let s = serve(&pki, ServerOptions::default()).await;
    for cred in [Cred::ForeignCa, Cred::Expired] {
        let r = request(s.port, &pki, cred, "GET", "/healthz", "", "").await;
        assert!(r.is_err(), "{cred:?}: {r:?}");
    }
    // And a presented-but-refused certificate never falls back to a token.
    let r = request(
        s.port,
        &pki,
        Cred::ForeignCa,
        "GET",
        "/healthz",
        &format!("Authorization: Bearer {ALLOWED_TOKEN}\r\n"),
        "",
    )
    .await;
    assert!(r.is_err(), "{r:?}");
}

#[tokio::test]
async fn item_14_a_valid_token_without_rights_gets_a_403_that_echoes_nothing() {
    let pki = Pki::new();
    let s = serve(&pki, ServerOptions::default()).await;
    let a = request(s.port, &pki, Cred::TokenDenied, "GET", "/pods", "", "")
        .await
        .unwrap();
    assert_eq!(a.status, 403);
    assert_eq!(a.body, b"Forbidden\n");
    // Without a token authenticator a token is refused, never anonymous.
    let s = serve(
        &pki,
        ServerOptions {
            tokens: false,
            ..Default::default()
        },
    )
    .await;
    let a = request(s.port, &pki, Cred::TokenAllowed, "GET", "/pods", "", "")
        .await
        .unwrap();
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn item_16_a_failed_upgrade_closes_the_connection_and_nothing_pipelined_runs() {
    let pki = Pki::new();
    let s = serve(&pki, ServerOptions::default()).await;
    let pipelined = "GET /exec/default/nopod/c?command=id&stdout=1 HTTP/1.1\r\nHost: x\r\n\
                     X-Stream-Protocol-Version: v4.channel.k8s.io\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n\r\n\
                     GET /pods HTTP/1.1\r\nHost: x\r\n\r\n";
    for (cred, status) in [
        (Cred::CertAllowed, 404),
        (Cred::CertDenied, 403),
        (Cred::None, 401),
    ] {
        let before = pods_requests(&s);
        let out = raw(s.port, cred, &pki, pipelined.as_bytes()).await.unwrap();
        let a = parse_answer(&out).unwrap();
        assert_eq!(a.status, status, "{cred:?}");
        assert_eq!(
            count_responses(&out),
            1,
            "{cred:?}: {}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(a.header("connection"), Some("close"));
        assert_eq!(
            pods_requests(&s),
            before,
            "the pipelined /pods was dispatched"
        );
    }
    // Control: the same pipelining without an upgrade is served twice.
    let out = raw(
        s.port,
        Cred::CertAllowed,
        &pki,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /pods HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(count_responses(&out), 2);
}

fn pods_requests(s: &Server) -> u64 {
    let mut out = String::new();
    s.api.metrics.encode(&mut out);
    out.lines()
        .filter(|l| l.starts_with("kubelet_http_requests_total{") && l.contains("path=\"/pods\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_17_random_paths_methods_and_hosts_keep_series_and_memory_flat() {
    use http_body_util::Empty;
    use ironlet::server::api::{Conn, handle};
    let pki = Pki::new();
    let s = serve(&pki, ServerOptions::default()).await;
    let allowed = Conn {
        peer: Some(Ok(ironlet::server::authn::User {
            name: "admin".into(),
            groups: vec![],
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut rss_after_warmup = 0;
    let n = 100_000u32;
    for i in 0..n {
        let method = match i % 4 {
            0 => format!("M{i}"),
            1 => "GET".into(),
            2 => "DELETE".into(),
            _ => "POST".into(),
        };
        let req = http::Request::builder()
            .method(method.as_str())
            .uri(format!("/r{i}/{}/x?q={i}", i * 7919))
            .header("host", format!("h{i}.example"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let conn = if i % 2 == 0 {
            allowed.clone()
        } else {
            Conn::default()
        };
        let resp = handle(Arc::clone(&s.api), conn, req).await;
        assert!(!resp.status().is_success());
        if i == 10_000 {
            rss_after_warmup = rss_kib();
        }
    }
    let series = s.api.metrics.series();
    assert!(series <= 20, "{series} series after {n} random requests");
    let grown = rss_kib().saturating_sub(rss_after_warmup);
    assert!(
        grown < 16 * 1024,
        "RSS grew by {grown} KiB over {n} requests"
    );
    eprintln!(
        "item 17: {n} requests, {series} metric series, RSS growth after warm-up {grown} KiB"
    );
}

#[tokio::test]
async fn item_17_http2_is_not_spoken_so_rapid_reset_cannot_apply() {
    let pki = Pki::new();
    let s = serve(&pki, ServerOptions::default()).await;
    // A client offering only h2 is refused at the handshake (no common protocol).
    let mut cfg = client(Some((pki.allowed.0.clone(), pki.allowed.1.clone_key())));
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    assert!(connect(s.port, cfg).await.is_err());
    // The h2 preface plus a burst of HEADERS/RST_STREAM frames on an http/1.1 connection
    // ends that connection without a dispatch; the server keeps serving.
    let mut flood = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    for sid in (1u32..2000).step_by(2) {
        flood.extend_from_slice(&[0, 0, 0, 1, 0x5]);
        flood.extend_from_slice(&sid.to_be_bytes());
        flood.extend_from_slice(&[0, 0, 4, 3, 0]);
        flood.extend_from_slice(&sid.to_be_bytes());
        flood.extend_from_slice(&[0, 0, 0, 8]);
    }
    let started = Instant::now();
    let out = raw(s.port, Cred::CertAllowed, &pki, &flood)
        .await
        .unwrap_or_default();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        !out.starts_with(b"HTTP/1.1 2"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(
        request(s.port, &pki, Cred::CertAllowed, "GET", "/healthz", "", "")
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn item_8_authorized_node_logs_neither_traverse_nor_follow_symlinks() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("log");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("ok.log"), "fine\n").unwrap();
    std::fs::write(root.join("sub/deep.log"), "deep\n").unwrap();
    std::fs::write(dir.path().join("shadow"), "root:secret\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("shadow"), root.join("link")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("dirlink")).unwrap();
    let s = serve(
        &pki,
        ServerOptions {
            system_logs: Some(root.clone()),
            ..Default::default()
        },
    )
    .await;
    let get = |p: &'static str| request(s.port, &pki, Cred::CertAllowed, "GET", p, "", "");
    let listing = get("/logs/").await.unwrap();
    assert_eq!(listing.status, 200);
    assert!(String::from_utf8_lossy(&listing.body).contains("ok.log"));
    assert_eq!(get("/logs/ok.log").await.unwrap().body, b"fine\n");
    assert_eq!(get("/logs/sub/deep.log").await.unwrap().body, b"deep\n");
    for p in [
        "/logs/link",
        "/logs/dirlink/shadow",
        "/logs/../shadow",
        "/logs/%2e%2e/shadow",
        "/logs/sub/../../shadow",
        "/logs//shadow",
    ] {
        let a = get(p).await.unwrap();
        assert_eq!(a.status, 404, "{p}");
        assert!(!String::from_utf8_lossy(&a.body).contains("secret"), "{p}");
    }
    // A denied user never gets that far.
    let a = request(
        s.port,
        &pki,
        Cred::CertDenied,
        "GET",
        "/logs/ok.log",
        "",
        "",
    )
    .await
    .unwrap();
    assert_eq!(a.status, 403);
}

#[tokio::test]
async fn debugging_handlers_disabled_answer_405() {
    let pki = Pki::new();
    let s = serve(
        &pki,
        ServerOptions {
            enable_debugging_handlers: false,
            ..Default::default()
        },
    )
    .await;
    for (m, p) in [
        ("GET", "/containerLogs/a/b/c"),
        ("POST", "/run/a/b/c?cmd=id"),
        ("GET", "/exec/a/b/c?command=id&stdout=1"),
        ("GET", "/runningpods/"),
    ] {
        let a = request(s.port, &pki, Cred::CertAllowed, m, p, "", "")
            .await
            .unwrap();
        assert_eq!(a.status, 405, "{p}");
        assert_eq!(a.body, b"Debug endpoints are disabled.\n");
    }
    assert_eq!(
        request(s.port, &pki, Cred::CertAllowed, "GET", "/pods", "", "")
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn limits_header_size_slow_clients_idle_connections_and_connection_cap() {
    let pki = Pki::new();
    let limits = Limits {
        max_connections: 4,
        max_per_source: 4,
        reserved_for_client_certs: 0,
        // Above the connection cap, so the cap is what refuses the fifth connection below.
        max_handshakes_per_source: 8,
        hello_timeout: Duration::from_secs(1),
        handshake_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        max_header_bytes: 16 * 1024,
    };
    let s = serve(
        &pki,
        ServerOptions {
            limits,
            ..Default::default()
        },
    )
    .await;
    let ident = || Some((pki.allowed.0.clone(), pki.allowed.1.clone_key()));
    // Oversized header: refused, never served.
    let big = format!(
        "GET /pods HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let out = exchange(s.port, client(ident()), big.as_bytes())
        .await
        .unwrap_or_default();
    assert!(
        !out.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&out[..out.len().min(100)])
    );
    // Slow client: half a request head, then silence: closed after the header timeout.
    let mut tls = connect(s.port, client(ident())).await.unwrap();
    tls.write_all(b"GET /pods HTTP/1.1\r\nHo").await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slow client kept for {:?}",
        started.elapsed()
    );
    // An idle keep-alive connection is closed after the idle timeout.
    let mut tls = connect(s.port, client(ident())).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    assert!(buf.starts_with(b"HTTP/1.1 200"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "idle connection kept for {:?}",
        started.elapsed()
    );
    // Connection cap: 4 idle connections hold every slot; a fifth is closed at accept.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            tokio::net::TcpStream::connect(("127.0.0.1", s.port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        connect(s.port, client(ident())).await.is_err(),
        "a fifth connection was accepted"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        request(s.port, &pki, Cred::CertAllowed, "GET", "/healthz", "", "")
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_yields_one_audit_line() {
    let pki = Pki::new();
    let s = serve(&pki, ServerOptions::default()).await;
    let marker = "/audit-marker-path";
    let cases = [
        (Cred::None, "unauthenticated", 401),
        (Cred::CertDenied, "forbidden", 403),
        (Cred::CertAllowed, "allow", 404),
        (Cred::TokenAllowed, "allow", 404),
    ];
    for (cred, _, status) in cases {
        let a = request(s.port, &pki, cred, "GET", marker, "", "")
            .await
            .unwrap();
        assert_eq!(a.status, status);
    }
    let text = std::fs::read_to_string(&s.audit_path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["event"]["path"] == marker)
        .collect();
    assert_eq!(lines.len(), cases.len(), "{text}");
    for ((cred, decision, status), v) in cases.iter().zip(&lines) {
        let e = &v["event"];
        assert_eq!(e["kind"], "request", "{cred:?}: {v}");
        assert_eq!(e["decision"], *decision, "{cred:?}: {v}");
        assert_eq!(e["status"], *status, "{cred:?}: {v}");
        assert_eq!(
            (&e["verb"], &e["resource"], &e["subresource"]),
            (&"get".into(), &"nodes".into(), &"proxy".into()),
            "{cred:?}: {v}"
        );
        assert!(e["latencyMs"].is_number() && e["peer"].is_string(), "{v}");
    }
    assert!(
        !text.contains(ALLOWED_TOKEN),
        "token material in the audit log"
    );
    assert_eq!(lines[1]["event"]["user"], "mallory");
    assert_eq!(lines[2]["event"]["user"], "admin");
    assert_eq!(lines[2]["event"]["reason"], "admin-everything");
}

/// A snapshot with one running pod `default/p` whose container `c` logs to `log`.
fn snapshot_with_logger(log: &std::path::Path) -> Arc<ironlet::pleg::Snapshot> {
    use ironlet::pod::observed::{ContainerState, ObservedContainer, ObservedPod};
    let c = ObservedContainer {
        id: "cid".into(),
        sandbox_id: "sid".into(),
        name: "c".into(),
        attempt: 0,
        state: ContainerState::Running,
        created_at: 1,
        started_at: 1,
        finished_at: 0,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        image: "img".into(),
        image_ref: "img".into(),
        hash: None,
        grace_seconds: None,
        log_path: log.display().to_string(),
    };
    let pod = ObservedPod {
        name: "p".into(),
        namespace: "default".into(),
        containers: vec![c],
        ..Default::default()
    };
    let mut pods = std::collections::HashMap::new();
    pods.insert(ironlet::pod::PodUid("uid-1".into()), Arc::new(pod));
    Arc::new(ironlet::pleg::Snapshot {
        generation: 2,
        relist_started: Instant::now(),
        pods,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_logs_stream_and_are_capped_in_number() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    std::fs::write(&log, "2026-01-01T00:00:00Z stdout F first\n").unwrap();
    let s = serve(&pki, ServerOptions::default()).await;
    s.snapshot_tx.send(snapshot_with_logger(&log)).unwrap();
    let ident = || Some((pki.allowed.0.clone(), pki.allowed.1.clone_key()));
    // The harness allows 8 concurrent streams: 8 follows hold them all.
    let mut follows = Vec::new();
    for _ in 0..8 {
        let mut tls = connect(s.port, client(ident())).await.unwrap();
        tls.write_all(b"GET /containerLogs/default/p/c?follow=true HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tls.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        follows.push(tls);
    }
    let a = request(
        s.port,
        &pki,
        Cred::CertAllowed,
        "GET",
        "/containerLogs/default/p/c?follow=true",
        "",
        "",
    )
    .await
    .unwrap();
    assert_eq!(a.status, 429);
    // Not following does not need a stream slot.
    let a = request(
        s.port,
        &pki,
        Cred::CertAllowed,
        "GET",
        "/containerLogs/default/p/c",
        "",
        "",
    )
    .await
    .unwrap();
    assert_eq!((a.status, a.body.as_slice()), (200, &b"first\n"[..]));
    // A line appended now reaches a follower.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"2026-01-01T00:00:01Z stdout F second\n")
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains("second") && Instant::now() < deadline {
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), follows[0].read(&mut buf)).await
        {
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert!(
        String::from_utf8_lossy(&got).contains("second"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // Closing the followers frees the slots.
    drop(follows);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut tls = connect(s.port, client(ident())).await.unwrap();
    tls.write_all(b"GET /containerLogs/default/p/c?follow=true HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}
