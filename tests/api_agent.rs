//! The kubelet API of the real agent binary on a real containerd: the listeners it opens
//! (checklist items 1 and 18), exec through 10250 into a running container, containerLogs
//! following lines as the container writes them, /run, /pods, /runningpods, /metrics, the
//! streaming idle timeout, and audit lines in the agent's log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "api_support/mod.rs"]
mod api_support;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use api_support::{Ca, Pki, client, connect, exchange, parse_answer};
use ironlet::server::audit;
use support::{Node, free_port, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POD: &str = "talker-testnode";

/// Listening TCP ports of `pid` (from its socket inodes and /proc/net/tcp{,6}), with the
/// local address as the kernel prints it.
fn listening(pid: u32) -> BTreeSet<(String, u16)> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let s = l.to_string_lossy().into_owned();
            s.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .collect();
    let mut out = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let (addr, port) = f[1].split_once(':').unwrap();
                out.insert((addr.to_owned(), u16::from_str_radix(port, 16).unwrap()));
            }
        }
    }
    out
}

/// Reads WebSocket frames (server → client, unmasked) until close or EOF; returns the
/// bytes per channel (the first payload byte of each binary message, channel.k8s.io).
async fn read_ws_channels<S: AsyncReadExt + Unpin>(
    s: &mut S,
    mut pre: Vec<u8>,
    within: Duration,
) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        // Parse complete frames from `pre`.
        while pre.len() >= 2 {
            let opcode = pre[0] & 0x0f;
            let mut len = (pre[1] & 0x7f) as usize;
            let mut at = 2;
            if len == 126 {
                if pre.len() < 4 {
                    break;
                }
                len = u16::from_be_bytes([pre[2], pre[3]]) as usize;
                at = 4;
            } else if len == 127 {
                if pre.len() < 10 {
                    break;
                }
                len = u64::from_be_bytes(pre[2..10].try_into().unwrap()) as usize;
                at = 10;
            }
            if pre.len() < at + len {
                break;
            }
            let payload = pre[at..at + len].to_vec();
            pre.drain(..at + len);
            if opcode == 8 {
                return out;
            }
            if (opcode == 2 || opcode == 1) && !payload.is_empty() {
                out.push((payload[0], payload[1..].to_vec()));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => pre.extend_from_slice(&buf[..n]),
            _ => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_serves_the_secure_api_on_a_real_runtime() {
    let pki = Pki::new();
    let serving = Ca::new("serving-ca");
    let (cert_pem, key_pem) = serving.leaf_pem("node", None, &["localhost", "127.0.0.1"], false);
    let port = free_port();
    let healthz = free_port();
    let pki_dir = tempfile::tempdir().unwrap();
    let p = |n: &str| pki_dir.path().join(n).display().to_string();
    std::fs::write(p("server.crt"), cert_pem).unwrap();
    std::fs::write(p("server.key"), key_pem).unwrap();
    std::fs::write(p("ca.crt"), pki.ca.pem()).unwrap();
    std::fs::write(p("policy.yaml"), api_support::POLICY).unwrap();
    let mut node = Node::with_config(&format!(
        "runtimeRequestTimeout: 30s\naddress: 127.0.0.1\nport: {port}\nhealthzPort: {healthz}\n\
         tlsCertFile: {}\ntlsPrivateKeyFile: {}\nauthentication:\n  x509:\n    clientCAFile: {}\n\
         streamingConnectionIdleTimeout: 4s\n",
        p("server.crt"),
        p("server.key"),
        p("ca.crt")
    ));
    node.extra_args = vec!["--authorization-policy-file".into(), p("policy.yaml")];
    let mut manifest = support::pod_manifest(
        "talker",
        "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.3; done",
        "",
    );
    manifest.push_str(&format!(
        "  - name: web\n    image: {}\n    command: [sh, -c, 'mkdir -p /www && echo served-by-web > /www/index.html && exec httpd -f -p 8080 -h /www']\n",
        support::BUSYBOX
    ));
    node.write_manifest("talker.yaml", &manifest);
    node.start_agent();
    node.wait_running("talker", &["main", "web"], Duration::from_secs(90))
        .await;
    let admin = || Some((pki.allowed.0.clone(), pki.allowed.1.clone_key()));
    let get = |path: String| {
        let id = admin();
        async move {
            let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            exchange(port, client(id), raw.as_bytes())
                .await
                .ok()
                .and_then(|o| parse_answer(&o))
        }
    };
    // The PLEG has seen the pod once /runningpods lists it.
    wait_for("the API lists the pod", Duration::from_secs(30), || async {
        let a = get("/runningpods/".into()).await?;
        (a.status == 200 && String::from_utf8_lossy(&a.body).contains(POD)).then_some(())
    })
    .await;

    // Items 1 and 18: exactly two listening sockets, healthz on loopback only.
    let socks = listening(node.agent_pid());
    let ports: BTreeSet<u16> = socks.iter().map(|(_, p)| *p).collect();
    assert_eq!(ports, BTreeSet::from([port, healthz]), "{socks:?}");
    assert!(
        socks.contains(&("0100007F".to_owned(), healthz)),
        "{socks:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", 10255))
            .await
            .is_err(),
        "10255 answers"
    );
    let h = support::http_get("127.0.0.1", healthz, "/pods").unwrap();
    assert!(
        h.starts_with("HTTP/1.1 404") || h.starts_with("HTTP/1.0 404"),
        "{h}"
    );

    // No credentials: 401.
    let a = api_support::request(port, &pki, api_support::Cred::None, "GET", "/pods", "", "")
        .await
        .unwrap();
    assert_eq!(a.status, 401);

    // /pods is the agent's own pod view.
    let a = get("/pods".into()).await.unwrap();
    assert_eq!(a.status, 200);
    assert!(String::from_utf8_lossy(&a.body).contains(POD));

    // /run: ExecSync through 10250.
    let raw = format!(
        "POST /run/default/{POD}/main HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 19\r\nConnection: close\r\n\r\ncmd=echo+run-output"
    );
    let a = parse_answer(
        &exchange(port, client(admin()), raw.as_bytes())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (a.status, String::from_utf8_lossy(&a.body).trim()),
        (200, "run-output")
    );

    // containerLogs with follow: lines arrive as the container writes them.
    let mut tls = connect(port, client(admin())).await.unwrap();
    tls.write_all(format!("GET /containerLogs/default/{POD}/main?follow=true&tailLines=1 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 8192];
    let started = Instant::now();
    let mut arrivals = Vec::new();
    while started.elapsed() < Duration::from_secs(4) {
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), tls.read(&mut buf)).await
        {
            assert!(n > 0, "log stream ended while the container runs");
            seen.extend_from_slice(&buf[..n]);
            arrivals.push(started.elapsed());
        }
    }
    let text = String::from_utf8_lossy(&seen);
    let numbers: Vec<u64> = text
        .split("line-")
        .skip(1)
        .filter_map(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect();
    assert!(numbers.len() >= 8, "followed lines: {text}");
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "lines in order, none lost: {numbers:?}"
    );
    assert!(
        arrivals.last().unwrap() > &Duration::from_secs(2),
        "lines kept arriving: {arrivals:?}"
    );
    drop(tls);

    // tailLines and limitBytes without follow.
    let a = get(format!("/containerLogs/default/{POD}/main?tailLines=2"))
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&a.body).lines().count(),
        2,
        "{:?}",
        String::from_utf8_lossy(&a.body)
    );
    let a = get(format!(
        "/containerLogs/default/{POD}/main?limitBytes=4&timestamps=true"
    ))
    .await
    .unwrap();
    assert_eq!(a.body.len(), 4);
    let a = get(format!("/containerLogs/default/{POD}/main?tailLines=-1"))
        .await
        .unwrap();
    assert_eq!(a.status, 422);

    // exec through 10250 (WebSocket, channel.k8s.io): the command's output comes back.
    let mut tls = connect(port, client(admin())).await.unwrap();
    tls.write_all(
        format!(
            "GET /exec/default/{POD}/main?command=sh&command=-c&command=echo%20exec-output%3B%20id%20-u&stdout=1&stderr=1 HTTP/1.1\r\n\
             Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut b = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed before the upgrade: {}",
            String::from_utf8_lossy(&head)
        );
        head.extend_from_slice(&b[..n]);
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let status = String::from_utf8_lossy(&head[..end]).to_string();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    let frames = read_ws_channels(&mut tls, head[end..].to_vec(), Duration::from_secs(20)).await;
    let stdout: Vec<u8> = frames
        .iter()
        .filter(|(c, _)| *c == 1)
        .flat_map(|(_, d)| d.clone())
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&stdout),
        "exec-output\n0\n",
        "{frames:?}"
    );

    // The runtime's streaming server refuses a request without upgrade headers: its answer
    // is relayed, the connection closes, and the pipelined request is never served.
    let out = exchange(
        port,
        client(admin()),
        format!("GET /exec/default/{POD}/main?command=id&stdout=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /pods HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let a = parse_answer(&out).unwrap();
    assert!(a.status >= 400, "{}", String::from_utf8_lossy(&out));
    assert_eq!(a.header("connection"), Some("close"));
    assert_eq!(
        out.windows(9).filter(|w| w == b"HTTP/1.1 ").count(),
        1,
        "{}",
        String::from_utf8_lossy(&out)
    );

    // The streaming idle timeout (4s here) ends an idle exec session.
    let mut tls = connect(port, client(admin())).await.unwrap();
    tls.write_all(
        format!(
            "GET /exec/default/{POD}/main?command=cat&stdin=1&stdout=1 HTTP/1.1\r\n\
             Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut sink)).await;
    let idle = started.elapsed();
    assert!(String::from_utf8_lossy(&sink).starts_with("HTTP/1.1 101"));
    assert!(
        idle >= Duration::from_secs(3) && idle < Duration::from_secs(15),
        "idle stream closed after {idle:?}"
    );

    // portForward through 10250 (WebSocket): bytes reach the pod's port 8080 and back.
    let mut tls = connect(port, client(admin())).await.unwrap();
    tls.write_all(
        format!(
            "GET /portForward/default/{POD}?port=8080 HTTP/1.1\r\n\
             Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut b = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed before the upgrade: {}",
            String::from_utf8_lossy(&head)
        );
        head.extend_from_slice(&b[..n]);
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Channel 0 carries data for the first port; a masked client frame.
    let payload = [&[0u8][..], b"GET /index.html HTTP/1.0\r\n\r\n"].concat();
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x82, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tls.write_all(&frame).await.unwrap();
    let frames = read_ws_channels(&mut tls, head[end..].to_vec(), Duration::from_secs(5)).await;
    let data: Vec<u8> = frames
        .iter()
        .filter(|(c, _)| *c == 0)
        .flat_map(|(_, d)| d.clone())
        .collect();
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("served-by-web"), "{frames:?}");
    drop(tls);

    // Metrics come from real events.
    let m = String::from_utf8_lossy(&get("/metrics".into()).await.unwrap().body).to_string();
    assert!(m.lines().any(|l| l == "kubelet_running_pods 1"), "{m}");
    assert!(
        m.lines()
            .any(|l| l
                .starts_with("kubelet_runtime_operations_total{operation_type=\"port_forward\"}")),
        "{m}"
    );
    assert!(
        m.lines().any(
            |l| l.starts_with("kubelet_runtime_operations_total{operation_type=\"exec_sync\"}")
        ),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("kubelet_runtime_operations_total{operation_type=\"exec\"}")),
        "{m}"
    );
    assert!(m.contains("kubelet_pleg_relist_duration_seconds_count"));
    assert!(
        m.lines()
            .any(|l| l == "kubelet_pod_start_duration_seconds_count 1"),
        "{m}"
    );

    // Every request was audited: without --audit-log-path, as JSON records on stderr. The
    // records are judged as records (not as substrings another log line could carry): one
    // unbroken chain from the writer's start, holding the requests made above.
    let log = node.agent_log(1);
    let audit_lines: Vec<&str> = log
        .lines()
        .filter(|l| audit::parse_record(l.as_bytes()).is_ok())
        .collect();
    let chain =
        audit::verify_contents(&[("agent stderr".into(), audit_lines.join("\n").into_bytes())])
            .unwrap_or_else(|e| panic!("audit chain on stderr: {e}\n{log}"));
    assert_eq!(chain.first_seq, Some(0), "{log}");
    let records: Vec<audit::Record> = audit_lines
        .iter()
        .filter_map(|l| audit::parse_record(l.as_bytes()).ok())
        .collect();
    assert!(
        matches!(records[0].event, audit::Event::Start { .. }),
        "{:?}",
        records[0]
    );
    let requests: Vec<&audit::RequestEvent> = records
        .iter()
        .filter_map(|r| match &r.event {
            audit::Event::Request(e) => Some(&**e),
            _ => None,
        })
        .collect();
    let audited = |what: &str, hit: &dyn Fn(&audit::RequestEvent) -> bool| {
        assert!(
            requests.iter().any(|e| hit(e)),
            "no audit record of {what} in {requests:#?}"
        );
    };
    audited("the anonymous GET /pods", &|e| {
        e.user.is_none() && e.path == "/pods" && e.decision == "unauthenticated" && e.status == 401
    });
    audited("admin's GET /pods", &|e| {
        e.user.as_deref() == Some("admin")
            && e.method == "GET"
            && e.path == "/pods"
            && e.decision == "allow"
            && e.status == 200
    });
    audited("admin's /run in the pod", &|e| {
        e.user.as_deref() == Some("admin")
            && e.decision == "allow"
            && e.target
                .as_ref()
                .is_some_and(|t| t.kind == "run" && t.pod == POD && t.namespace == "default")
    });
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_tokens_and_decisions_come_from_the_api_server() {
    use support::fakeapi::{AccessRule, FakeApi, Identity};
    let api = FakeApi::start();
    api.add_token("sre-token", "sre", &["sre-team"]);
    api.add_token(
        "pod-sa-token",
        "system:serviceaccount:default:web",
        &["system:serviceaccounts"],
    );
    api.set_access_rules(vec![
        AccessRule::allow("SREs debug nodes")
            .group("sre-team")
            .resource("nodes"),
    ]);
    let serving = Ca::new("serving-ca");
    let (cert_pem, key_pem) = serving.leaf_pem("node", None, &["127.0.0.1"], false);
    let pki_dir = tempfile::tempdir().unwrap();
    let p = |n: &str| pki_dir.path().join(n).display().to_string();
    std::fs::write(p("server.crt"), cert_pem).unwrap();
    std::fs::write(p("server.key"), key_pem).unwrap();
    let port = free_port();
    let mut node = Node::with_config(&format!(
        "healthzPort: 0\nruntimeRequestTimeout: 30s\naddress: 127.0.0.1\nport: {port}\n\
         tlsCertFile: {}\ntlsPrivateKeyFile: {}\n",
        p("server.crt"),
        p("server.key")
    ));
    let kubeconfig = node.dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, &Identity::node(support::NODE));
    node.extra_args = vec!["--kubeconfig".into(), kubeconfig.display().to_string()];
    node.write_manifest(
        "talker.yaml",
        &support::pod_manifest("talker", "while true; do sleep 1; done", ""),
    );
    node.start_agent();
    node.wait_running("talker", &["main"], Duration::from_secs(90))
        .await;
    let call = |token: &'static str, method: &'static str, path: String| async move {
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        exchange(port, client(None), raw.as_bytes())
            .await
            .ok()
            .and_then(|o| parse_answer(&o))
    };
    wait_for(
        "the API answers /runningpods with the pod",
        Duration::from_secs(30),
        || async {
            let a = call("sre-token", "GET", "/runningpods/".into()).await?;
            (a.status == 200 && String::from_utf8_lossy(&a.body).contains(POD)).then_some(())
        },
    )
    .await;
    // The SRE may run commands; the pod's service account may not; garbage is 401.
    let a = call(
        "sre-token",
        "POST",
        format!("/run/default/{POD}/main?cmd=echo%20via-token"),
    )
    .await
    .unwrap();
    assert_eq!(
        (a.status, String::from_utf8_lossy(&a.body).trim()),
        (200, "via-token")
    );
    let a = call(
        "pod-sa-token",
        "POST",
        format!("/run/default/{POD}/main?cmd=id"),
    )
    .await
    .unwrap();
    assert_eq!((a.status, a.body.as_slice()), (403, &b"Forbidden\n"[..]));
    assert_eq!(
        call("no-such-token", "GET", "/pods".into())
            .await
            .unwrap()
            .status,
        401
    );
    // What the API server was asked: TokenReviews for the tokens, SubjectAccessReviews on
    // nodes/testnode/proxy with upstream's verb.
    let sars = api.access_reviews();
    let asked = |user: &str, verb: &str, sub: &str| {
        sars.iter().any(|s| {
            let ra = &s["spec"]["resourceAttributes"];
            s["spec"]["user"] == user
                && ra["verb"] == verb
                && ra["subresource"] == sub
                && ra["resource"] == "nodes"
                && ra["name"] == support::NODE
        })
    };
    assert!(asked("sre", "create", "proxy"), "{sars:#?}");
    assert!(
        asked("system:serviceaccount:default:web", "create", "proxy"),
        "{sars:#?}"
    );
    assert!(asked("sre", "get", "pods"), "{sars:#?}");
    let tokens: Vec<String> = api
        .token_reviews()
        .iter()
        .map(|t| t["spec"]["token"].as_str().unwrap_or("").to_string())
        .collect();
    for t in ["sre-token", "pod-sa-token", "no-such-token"] {
        assert_eq!(
            tokens.iter().filter(|x| *x == t).count(),
            1,
            "{t} reviewed once (cached): {tokens:?}"
        );
    }
    node.cleanup().await;
}
