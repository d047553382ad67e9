//! Hardening round two (issue 15) on the 10250 server: the attacks that need only the real
//! listener and router over real TLS (and the fake API server for TokenReview and
//! SubjectAccessReview). The attacks that need the agent binary are in
//! tests/harden_agent.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "api_support/mod.rs"]
mod api_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use api_support::*;
use ironlet::server::authz::StandalonePolicy;
use ironlet::server::webhook::{WebhookAuthenticator, WebhookAuthorizer};
use serde_json::Value;
use support::fakeapi::{AccessRule, FakeApi, Identity, UserInfo};

fn count_responses(raw: &[u8]) -> usize {
    raw.windows(9).filter(|w| w == b"HTTP/1.1 ").count()
}

/// Requests the server counted for the route template `path`.
fn requests_to(s: &Server, path: &str) -> u64 {
    let mut out = String::new();
    s.api.metrics.encode(&mut out);
    let label = format!("path=\"{path}\"");
    out.lines()
        .filter(|l| l.starts_with("kubelet_http_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The upgrade headers of a WebSocket exec (kubectl's, channel.k8s.io).
const WS: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n";

/// The streaming requests a read-only identity must not be able to make, each as the
/// method that upstream maps to `get` (GET upgrades) or that the route takes.
const COMMANDS: &[(&str, &str)] = &[
    ("GET", "/exec/default/nopod/c?command=id&stdout=1"),
    ("GET", "/attach/default/nopod/c?stdout=1"),
    ("GET", "/portForward/default/nopod?port=80"),
    ("HEAD", "/exec/default/nopod/c?command=id&stdout=1"),
];

/// A policy that grants the certificate user `mallory` read-only monitoring (`get` on
/// proxy, pods, healthz) and `admin` everything.
const MONITORING: &str = "apiVersion: ironlet.dev/v1alpha1
kind: StandaloneAuthorizationPolicy
rules:
- name: monitoring
  reason: a monitoring identity reads pods, logs and health
  users: [mallory]
  verbs: [get]
  subresources: [proxy, pods, healthz]
- name: admin-everything
  reason: the administrator may run commands
  users: [admin]
  verbs: [get, create]
  subresources: [proxy, pods]
";

/// Finding 2, standalone: `get` on nodes/proxy does not open exec, attach or portForward
/// (today a GET upgrade is authorized as `get` and routed); `create` still does, and
/// `get` still reads logs.
#[tokio::test]
async fn finding_2_get_on_proxy_cannot_exec_attach_or_port_forward_standalone() {
    let pki = Pki::new();
    let s = serve(
        &pki,
        ServerOptions {
            authorizer: Some(Arc::new(StandalonePolicy::parse(MONITORING).unwrap())),
            ..Default::default()
        },
    )
    .await;
    for (method, path) in COMMANDS {
        let a = request(s.port, &pki, Cred::CertDenied, method, path, WS, "")
            .await
            .unwrap();
        assert_eq!(a.status, 403, "monitoring {method} {path}");
        assert_eq!(a.header("connection"), Some("close"));
        // The administrator, allowed `create`, is routed (the pod does not exist: 404).
        let a = request(s.port, &pki, Cred::CertAllowed, method, path, WS, "")
            .await
            .unwrap();
        let want = if *method == "HEAD" { 405 } else { 404 };
        assert_eq!(a.status, want, "admin {method} {path}");
    }
    let a = request(
        s.port,
        &pki,
        Cred::CertDenied,
        "POST",
        "/run/default/nopod/c?cmd=id",
        "",
        "",
    )
    .await
    .unwrap();
    assert_eq!(a.status, 403, "monitoring /run");
    // Good cases: read-only monitoring still reads logs and pods.
    for path in ["/containerLogs/default/nopod/c", "/pods", "/healthz"] {
        let a = request(s.port, &pki, Cred::CertDenied, "GET", path, "", "")
            .await
            .unwrap();
        assert_ne!(a.status, 403, "{path}");
    }
}

fn sar_summary(v: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let ra = &v["spec"]["resourceAttributes"];
    (s(&v["spec"]["user"]), s(&ra["verb"]), s(&ra["subresource"]))
}

struct Cluster {
    fake: FakeApi,
    server: Server,
    pki: Pki,
}

async fn cluster() -> Cluster {
    let fake = FakeApi::start();
    let client = fake.client(&Identity::node("node-1")).await;
    let pki = Pki::new();
    let server = serve(
        &pki,
        ServerOptions {
            token_authenticator: Some(Arc::new(WebhookAuthenticator::new(
                client.clone(),
                Duration::from_secs(120),
            ))),
            authorizer: Some(Arc::new(WebhookAuthorizer::new(
                client,
                "node-1".into(),
                Duration::from_secs(300),
                Duration::from_secs(30),
            ))),
            ..Default::default()
        },
    )
    .await;
    Cluster { fake, server, pki }
}

async fn with_token(c: &Cluster, token: &str, method: &str, path: &str, extra: &str) -> u16 {
    let h = format!("Authorization: Bearer {token}\r\n{extra}");
    request(c.server.port, &c.pki, Cred::None, method, path, &h, "")
        .await
        .unwrap()
        .status
}

/// Finding 2 through SubjectAccessReview: a monitoring identity granted `get` on
/// nodes/proxy by RBAC is asked about `create`, and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_exec_is_asked_as_create_in_subject_access_reviews() {
    let c = cluster().await;
    c.fake.add_token("mon-token", "monitoring", &[]);
    c.fake.add_token("sre-token", "sre", &[]);
    c.fake.set_access_rules(vec![
        AccessRule::allow("monitoring reads nodes/proxy")
            .user("monitoring")
            .resource("nodes")
            .subresource("proxy")
            .verb("get"),
        AccessRule::allow("SREs debug")
            .user("sre")
            .resource("nodes")
            .subresource("proxy"),
    ]);
    for (method, path) in COMMANDS {
        let before = c.fake.access_reviews().len();
        assert_eq!(
            with_token(&c, "mon-token", method, path, WS).await,
            403,
            "{method} {path}"
        );
        let asked: Vec<_> = c.fake.access_reviews()[before..]
            .iter()
            .map(sar_summary)
            .collect();
        // Cached after the first: no new review, or exactly the create one.
        assert!(
            asked.iter().all(|a| a.1 == "create"),
            "{method} {path}: {asked:?}"
        );
        let want = if *method == "HEAD" { 405 } else { 404 };
        assert_eq!(with_token(&c, "sre-token", method, path, WS).await, want);
    }
    let all: Vec<_> = c.fake.access_reviews().iter().map(sar_summary).collect();
    assert!(
        all.contains(&("monitoring".into(), "create".into(), "proxy".into())),
        "{all:?}"
    );
    assert!(
        !all.iter().any(|a| a.0 == "monitoring" && a.1 == "get"),
        "{all:?}"
    );
    // Good case: the monitoring identity still reads container logs (get).
    assert_eq!(
        with_token(&c, "mon-token", "GET", "/containerLogs/default/nopod/c", "").await,
        404
    );
}

/// Finding 3: the TokenReview's uid and extra reach the SubjectAccessReview, and two
/// principals that differ only in them are two cache entries, not one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_3_token_uid_and_extra_reach_the_subject_access_review_and_its_cache_key() {
    let c = cluster().await;
    let extra = |scope: &str| [("scopes".to_string(), vec![scope.to_string()])].into();
    c.fake.add_token_with(
        "token-a",
        UserInfo {
            username: "svc".into(),
            uid: "uid-a".into(),
            groups: vec!["team".into()],
            extra: extra("read"),
            ..Default::default()
        },
    );
    c.fake.add_token_with(
        "token-b",
        UserInfo {
            username: "svc".into(),
            uid: "uid-b".into(),
            groups: vec!["team".into()],
            extra: extra("write"),
            ..Default::default()
        },
    );
    c.fake.set_access_rules(vec![
        AccessRule::allow("svc reads metrics")
            .user("svc")
            .resource("nodes")
            .subresource("metrics"),
    ]);
    for _ in 0..3 {
        assert_eq!(with_token(&c, "token-a", "GET", "/metrics", "").await, 200);
        assert_eq!(with_token(&c, "token-b", "GET", "/metrics", "").await, 200);
    }
    let sars = c.fake.access_reviews();
    let seen: Vec<(String, String)> = sars
        .iter()
        .map(|s| {
            (
                s["spec"]["uid"].as_str().unwrap_or("").to_string(),
                s["spec"]["extra"]["scopes"][0]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("uid-a".to_string(), "read".to_string()),
            ("uid-b".to_string(), "write".to_string())
        ],
        "one review per principal, each carrying its uid and extra: {sars:#?}"
    );
}

/// Finding 5: every request with `Upgrade` that is not answered 101 closes the connection,
/// whatever the path, method or outcome; the request pipelined after it never runs.
/// (Control: tests/api_redteam.rs item 16 shows pipelining without an upgrade is served.)
#[tokio::test]
async fn finding_5_every_refused_upgrade_closes_the_connection() {
    let pki = Pki::new();
    let s = serve(&pki, ServerOptions::default()).await;
    for (method, path) in [
        // An unmapped method: refused before authorization (405), kept open today.
        ("OPTIONS", "/exec/default/nopod/c?command=id&stdout=1"),
        ("TRACE", "/pods"),
        ("FOO", "/healthz"),
        // Mapped methods, routed answers that are not 101.
        ("GET", "/healthz"),
        ("PUT", "/pods"),
        ("GET", "/no/such/path"),
        ("POST", "/run/default/nopod/c?cmd=id"),
    ] {
        let pipelined = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n{WS}\r\nGET /configz HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let before = requests_to(&s, "/configz");
        let out = exchange(
            s.port,
            client(cred_identity(&pki, Cred::CertAllowed)),
            pipelined.as_bytes(),
        )
        .await
        .unwrap();
        let a = parse_answer(&out).unwrap();
        assert_ne!(a.status, 101);
        assert_eq!(
            count_responses(&out),
            1,
            "{method} {path}: {}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(a.header("connection"), Some("close"), "{method} {path}");
        assert_eq!(
            requests_to(&s, "/configz"),
            before,
            "{method} {path}: the pipelined /configz ran"
        );
    }
}

/// Finding 6: the stream permit is taken before the runtime is asked for a streaming
/// session, so a request refused for want of one (429) leaves no session behind. With
/// every permit held, an allowed exec is refused before any pod lookup or CRI call (the
/// pod does not even exist: today's order answers 404 from the lookup).
#[tokio::test]
async fn finding_6_the_stream_permit_comes_before_the_streaming_session() {
    let pki = Pki::new();
    let s = serve(&pki, ServerOptions::default()).await;
    let held = s.api.streams.clone().acquire_many_owned(8).await.unwrap();
    for path in [
        "/exec/default/nopod/c?command=id&stdout=1",
        "/attach/default/nopod/c?stdout=1",
        "/portForward/default/nopod?port=80",
    ] {
        let a = request(s.port, &pki, Cred::CertAllowed, "GET", path, WS, "")
            .await
            .unwrap();
        assert_eq!(a.status, 429, "{path}");
        assert_eq!(a.header("connection"), Some("close"));
    }
    drop(held);
    // Permits free again: the request goes on to the pod lookup.
    let a = request(
        s.port,
        &pki,
        Cred::CertAllowed,
        "GET",
        "/exec/default/nopod/c?command=id&stdout=1",
        WS,
        "",
    )
    .await
    .unwrap();
    assert_eq!(a.status, 404);
    assert_eq!(s.api.streams.available_permits(), 8, "no permit leaked");
}

/// A TLS connection from a chosen loopback source address, one request, the answer.
async fn request_from(
    source: &str,
    port: u16,
    cfg: rustls::ClientConfig,
    raw: &str,
) -> Result<Answer, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(format!("{source}:0").parse().unwrap())
        .map_err(|e| e.to_string())?;
    let tcp = sock
        .connect(([127, 0, 0, 1], port).into())
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(raw.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    parse_answer(&out).ok_or_else(|| "no answer".into())
}

async fn hold_from(source: &str, port: u16, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
        held.push(sock.connect(([127, 0, 0, 1], port).into()).await.unwrap());
    }
    held
}

/// Finding 6: one host cannot take every slot (per-source cap), and when the general
/// slots are full, the reserved ones still admit a client certificate (the API server's)
/// and nothing else.
#[tokio::test]
async fn finding_6_per_source_cap_and_slots_reserved_for_client_certificates() {
    let pki = Pki::new();
    let limits = ironlet::server::listener::Limits {
        max_connections: 8,
        max_per_source: 4,
        reserved_for_client_certs: 2,
        // The held connections never send a ClientHello: they must outlast this test.
        hello_timeout: Duration::from_secs(30),
        handshake_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let s = serve(
        &pki,
        ServerOptions {
            limits,
            ..Default::default()
        },
    )
    .await;
    let get = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let with_token = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALLOWED_TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let cert = || client(cred_identity(&pki, Cred::CertAllowed));
    // One source holds its four: its fifth connection is refused, even with a certificate.
    let a = hold_from("127.0.0.1", s.port, 4).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        request_from("127.0.0.1", s.port, cert(), get)
            .await
            .is_err(),
        "a fifth connection from one source was served"
    );
    // Another source is still served.
    assert_eq!(
        request_from("127.0.0.2", s.port, cert(), get)
            .await
            .unwrap()
            .status,
        200
    );
    // Two sources fill the eight general slots; the reserved two admit a certificate only.
    let b = hold_from("127.0.0.2", s.port, 4).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        request_from("127.0.0.3", s.port, client(None), &with_token)
            .await
            .is_err(),
        "a reserved slot served a token-only client"
    );
    assert_eq!(
        request_from("127.0.0.4", s.port, cert(), get)
            .await
            .unwrap()
            .status,
        200,
        "the client certificate was locked out"
    );
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        request_from("127.0.0.3", s.port, client(None), &with_token)
            .await
            .unwrap()
            .status,
        200
    );
}

/// The first flight of a real TLS client (its ClientHello), as bytes.
fn client_hello() -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(
        Arc::new(client(None)),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    assert!(out.len() > 40, "a ClientHello of {} bytes", out.len());
    out
}

/// How a flooding peer holds its handshake.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stall {
    /// TCP open, not a byte sent.
    Silent,
    /// Part of a ClientHello, then nothing.
    PartialHello,
    /// A whole ClientHello, the server's flight read, and no answer to it.
    AfterHello,
}

/// Opens `n` connections from `source` that stall as `how`, each read until the server
/// closes it (or `limit` passes); returns how long each one lasted, measured here.
async fn stall_from(
    source: &'static str,
    port: u16,
    n: usize,
    how: Stall,
) -> Vec<tokio::task::JoinHandle<Duration>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hello = client_hello();
    let mut tasks = Vec::new();
    for mut tcp in hold_from(source, port, n).await {
        let started = std::time::Instant::now();
        let hello = hello.clone();
        tasks.push(tokio::spawn(async move {
            let sent: &[u8] = match how {
                Stall::Silent => &[],
                Stall::PartialHello => &hello[..hello.len() / 2],
                Stall::AfterHello => &hello,
            };
            let _ = tcp.write_all(sent).await;
            let mut buf = vec![0u8; 16 * 1024];
            let limit = Duration::from_secs(15);
            let _ = tokio::time::timeout(limit, async {
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            started.elapsed()
        }));
    }
    tasks
}

/// Issue 15's open item: a peer without a client certificate cannot hold handshakes. With
/// the deadlines the agent runs with (`Limits::default()`: the ClientHello in 2 s, the
/// handshake in 3 s) and a cap of two unfinished handshakes per source, four flooding
/// sources that open TCP and send nothing, half a ClientHello, or a whole one and then
/// nothing, each keep only two connections, and each of those is closed by the server
/// within its deadline (measured from outside). The API server's client certificate gets
/// a slot during the flood; a token-only client does not get a reserved one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_6_certless_peers_cannot_hold_handshakes() {
    let pki = Pki::new();
    let defaults = ironlet::server::listener::Limits::default();
    let limits = ironlet::server::listener::Limits {
        max_connections: 8,
        max_per_source: 8,
        reserved_for_client_certs: 2,
        max_handshakes_per_source: 2,
        ..ironlet::server::listener::Limits::default()
    };
    assert!(defaults.hello_timeout <= Duration::from_secs(2));
    assert!(defaults.handshake_timeout <= Duration::from_secs(3));
    let s = serve(
        &pki,
        ServerOptions {
            limits,
            ..Default::default()
        },
    )
    .await;
    let get = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let with_token = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALLOWED_TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let cert = || client(cred_identity(&pki, Cred::CertAllowed));
    // Four sources try eight stalled handshakes each: 32 for 8 + 2 slots.
    let flood = [
        ("127.0.0.1", Stall::Silent),
        ("127.0.0.2", Stall::PartialHello),
        ("127.0.0.3", Stall::AfterHello),
        ("127.0.0.4", Stall::AfterHello),
    ];
    let mut held = Vec::new();
    for (source, how) in flood {
        held.push((how, stall_from(source, s.port, 8, how).await));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // During the flood: the general slots are full (two per source), the reserved ones
    // still admit the API server's certificate, and only that.
    let during = std::time::Instant::now();
    assert_eq!(
        request_from("127.0.0.9", s.port, cert(), get)
            .await
            .expect("the client certificate was locked out by the flood")
            .status,
        200
    );
    assert!(
        request_from("127.0.0.10", s.port, client(None), &with_token)
            .await
            .is_err(),
        "a reserved slot served a token-only client"
    );
    assert!(
        during.elapsed() < Duration::from_millis(1500),
        "the checks during the flood took {:?}: the flood may have ended before them",
        during.elapsed()
    );
    // Each source kept two; the rest were closed at accept; the kept ones were closed by
    // the server within their deadline.
    for (how, tasks) in held {
        let mut lasted = Vec::new();
        for t in tasks {
            lasted.push(t.await.unwrap());
        }
        lasted.sort();
        let deadline = match how {
            Stall::Silent | Stall::PartialHello => defaults.hello_timeout,
            Stall::AfterHello => defaults.handshake_timeout,
        };
        let kept: Vec<_> = lasted
            .iter()
            .filter(|d| **d >= Duration::from_millis(1000))
            .collect();
        assert_eq!(kept.len(), 2, "{how:?}: {lasted:?}");
        for d in kept {
            assert!(
                *d < deadline + Duration::from_millis(1500),
                "{how:?}: a stalled handshake held its slot {d:?} (deadline {deadline:?})"
            );
            assert!(
                *d >= deadline - Duration::from_millis(500),
                "{how:?}: closed after {d:?}, before its deadline {deadline:?}"
            );
        }
    }
    // The slots came back: the flooding sources are served again.
    for source in ["127.0.0.1", "127.0.0.3"] {
        assert_eq!(
            request_from(source, s.port, client(None), &with_token)
                .await
                .unwrap()
                .status,
            200,
            "{source}"
        );
    }
}

/// Finding 6: healthz (plain HTTP on loopback) has the same kinds of limit as 10250: a
/// silent connection is closed after the request-head timeout, and past the connection
/// cap a connection is closed at accept, so local idle connections cannot pile up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_6_healthz_has_a_header_timeout_and_a_connection_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = support::free_port();
    let serve = ironlet::server::healthz::bind(
        ([127, 0, 0, 1], port).into(),
        Arc::new(ironlet::pleg::PlegHealth::default()),
        std::time::Instant::now(),
    )
    .await
    .unwrap();
    let task = tokio::spawn(serve);
    let limits = ironlet::server::listener::Limits::healthz();
    // Good case: it answers.
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    c.write_all(b"GET /healthz/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // The cap: every slot held by a silent connection, one more is closed at once.
    let mut held = Vec::new();
    for _ in 0..limits.max_connections {
        held.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "a connection past the cap was kept: {r:?}"
    );
    // The silent ones are closed (request-head or idle timeout, whichever fires first).
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(
        limits.header_timeout.max(limits.idle_timeout) + Duration::from_secs(5),
        held[0].read(&mut buf),
    )
    .await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "a silent connection was kept {:?}: {r:?}",
        started.elapsed()
    );
    task.abort();
}
