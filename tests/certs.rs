//! Certificates end to end (issue 13): the confined release agent on a real containerd,
//! the fake API server signing ~1 minute certificates over real HTTPS, real mTLS on 10250.
//! One node goes through every scenario in turn, to keep the suite short:
//!
//! 1. TLS bootstrap from a token kubeconfig: the CSRs' exact shape (signer, usages, CN/O,
//!    SANs, key type, who asked), keys 0600 from creation and never chmod'ed (strace), the
//!    written kubeconfig, and the node then speaking as system:node:testnode.
//! 2. Several client and serving rotations at their deadlines, inside 70–90 % of each
//!    certificate's validity, while a client keeps calling 10250 over a kept-alive
//!    connection and over new connections: zero failures, the served serial changes, the
//!    agent's pid does not.
//! 3. A signer that issues certificates for another node or another key: rejected, retried,
//!    never served or used; the old certificate keeps serving.
//! 4. `ironlet drill cert-rotation`: passes, and its report holds the required fields.
//! 5. `ironlet certs status -o json` and the /metrics certificate series.
//! 6. A restarted agent reuses its certificates: no new bootstrap CSR.
//!
//! Throughout, the node's API requests never get a 401. Needs root (containerd, strace).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::fakeapi::{AccessRule, CsrApproval, CsrMisbehavior, FakeApi, Identity};
use support::{Node, free_port};

const BOOT_TOKEN: &str = "abcdef.0123456789abcdef";
const BOOT_USER: &str = "system:bootstrap:abcdef";
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
const T: Duration = Duration::from_secs(120);

/// A 10250 client with its own certificate (CN drill, O system:masters).
struct Client {
    port: u16,
    tls: Arc<rustls::ClientConfig>,
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

impl Client {
    fn new(port: u16, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let chain: Vec<_> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
        cfg.resumption = rustls::client::Resumption::disabled();
        Client {
            port,
            tls: Arc::new(cfg),
        }
    }

    /// A new connection (full handshake); the serving certificate's serial.
    async fn connect(&self) -> Result<(Sender, String), String> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let serial = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| serial_of(c.as_ref()))
            .unwrap_or_default();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok((sender, serial))
    }

    async fn get(sender: &mut Sender, path: &str) -> Result<String, String> {
        sender.ready().await.map_err(|e| e.to_string())?;
        let req = http::Request::get(path)
            .header("host", "127.0.0.1")
            .body(Empty::new())
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
            .await
            .map_err(|_| "timeout".to_string())?
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let body = String::from_utf8_lossy(&body.to_bytes()).into_owned();
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("HTTP {status}: {body}"))
        }
    }

    async fn get_once(&self, path: &str) -> Result<(String, String), String> {
        let (mut s, serial) = self.connect().await?;
        Ok((Self::get(&mut s, path).await?, serial))
    }
}

fn serial_of(der: &[u8]) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
    c.raw_serial_as_string().replace(':', "")
}

/// Callers that keep hitting /healthz: one kept-alive connection, one new connection per
/// request. Every failure is kept with its reason.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    kept_sent: AtomicU64,
    fresh_sent: AtomicU64,
    failures: Mutex<Vec<String>>,
    serials: Mutex<BTreeSet<String>>,
}

impl Load {
    fn start(client: Arc<Client>) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
        let load = Arc::new(Load::default());
        let (l, c) = (load.clone(), client.clone());
        let kept = tokio::spawn(async move {
            let mut conn: Option<Sender> = None;
            while !l.stop.load(Ordering::Relaxed) {
                if conn.as_ref().is_none_or(|s| s.is_closed()) {
                    conn = match c.connect().await {
                        Ok((s, _)) => Some(s),
                        Err(e) => {
                            l.failures
                                .lock()
                                .unwrap()
                                .push(format!("kept-alive connect: {e}"));
                            None
                        }
                    };
                }
                if let Some(s) = conn.as_mut() {
                    l.kept_sent.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = Client::get(s, "/healthz").await {
                        l.failures
                            .lock()
                            .unwrap()
                            .push(format!("kept-alive request: {e}"));
                        conn = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let (l, c) = (load.clone(), client);
        let fresh = tokio::spawn(async move {
            while !l.stop.load(Ordering::Relaxed) {
                l.fresh_sent.fetch_add(1, Ordering::Relaxed);
                match c.get_once("/healthz").await {
                    Ok((_, serial)) => {
                        l.serials.lock().unwrap().insert(serial);
                    }
                    Err(e) => l
                        .failures
                        .lock()
                        .unwrap()
                        .push(format!("new connection: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        (load, vec![kept, fresh])
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }
}

/// (created at, CSR) of every CSR of `signer`, in creation order, with the creation time
/// taken from the fixture's request log (sub-second) as wall-clock seconds.
fn csrs_of(
    api: &FakeApi,
    signer: &str,
    clock: (Instant, SystemTime),
) -> Vec<(f64, CertificateSigningRequest)> {
    let wall = |at: Instant| {
        let d = at.saturating_duration_since(clock.0);
        (clock.1 + d)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let mut out = Vec::new();
    for r in api.requests() {
        if r.method != "POST" || !r.path.ends_with("/certificatesigningrequests") || r.status != 201
        {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body) else {
            continue;
        };
        let Some(name) = v.pointer("/metadata/name").and_then(|n| n.as_str()) else {
            continue;
        };
        if let Some(c) = api.csr(name)
            && c.spec.signer_name == signer
        {
            out.push((wall(r.at), c));
        }
    }
    out
}

/// notBefore and notAfter (unix seconds) and the serial of an issued CSR.
fn issued(c: &CertificateSigningRequest) -> Option<(i64, i64, String, String)> {
    let pem = &c.status.as_ref()?.certificate.as_ref()?.0;
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let x = p.parse_x509().ok()?;
    let cn = x
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    Some((
        x.validity().not_before.timestamp(),
        x.validity().not_after.timestamp(),
        x.raw_serial_as_string().replace(':', ""),
        cn,
    ))
}

/// Whether an issued CSR's certificate is wrong for the node: another name, or another
/// key than the request's. None until issued.
fn is_bad(c: &CertificateSigningRequest) -> Option<bool> {
    use x509_parser::prelude::FromDer;
    let pem = &c.status.as_ref()?.certificate.as_ref()?.0;
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let x = p.parse_x509().ok()?;
    let (_, rp) = x509_parser::pem::parse_x509_pem(&c.spec.request.0).ok()?;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&rp.contents)
            .ok()?;
    let cn_ok = x
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        == Some("system:node:testnode");
    let key_ok =
        x.tbs_certificate.subject_pki.raw == req.certification_request_info.subject_pki.raw;
    Some(!(cn_ok && key_ok))
}

/// The PKCS#10 request of a CSR: (CN, O, SANs, EC key size).
fn request_of(c: &CertificateSigningRequest) -> (String, Vec<String>, Vec<String>, usize) {
    use x509_parser::prelude::FromDer;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&c.spec.request.0).unwrap();
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .unwrap();
    let info = &req.certification_request_info;
    let cn = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let orgs = info
        .subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_owned))
        .collect();
    let mut sans = Vec::new();
    for ext in req.requested_extensions().into_iter().flatten() {
        if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(s) = ext {
            for n in &s.general_names {
                match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        sans.push(format!("DNS:{d}"))
                    }
                    x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 4 => {
                        sans.push(format!("IP:{}.{}.{}.{}", b[0], b[1], b[2], b[3]))
                    }
                    _ => {}
                }
            }
        }
    }
    let size = match info.subject_pki.parsed().unwrap() {
        x509_parser::public_key::PublicKey::EC(p) => p.key_size(),
        other => panic!("the node's key is not ECDSA: {other:?}"),
    };
    (cn, orgs, sans, size)
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_rotation_rejection_drill_and_restart_on_one_node() {
    let clock = (Instant::now(), SystemTime::now());
    let api = FakeApi::start();
    // The signer's maximum duration: one minute (backdated one more, as the fixture does).
    api.set_csr_cert_lifetime(Duration::from_secs(60));
    api.auto_approve_csrs(CsrApproval {
        signer: None,
        user: None,
    });
    api.add_token(BOOT_TOKEN, BOOT_USER, &["system:bootstrappers"]);
    api.set_access_rules(vec![AccessRule::allow(
        "the test's client may use the kubelet API",
    )]);

    let files = tempfile::Builder::new()
        .prefix("ironlet-certs-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let f = |n: &str| files.path().join(n);
    std::fs::create_dir(f("kube")).unwrap();
    write(&f("cluster-ca.crt"), &api.ca_pem());
    api.write_kubeconfig(&f("bootstrap-kubeconfig"), &Identity::token(BOOT_TOKEN));
    let kubeconfig = f("kube").join("kubeconfig");
    let port = free_port();
    let mut node = Node::with_config(&format!(
        "healthzPort: 0\nruntimeRequestTimeout: 30s\nnodeStatusUpdateFrequency: 1s\n\
         nodeStatusReportFrequency: 1m\nnodeLeaseDurationSeconds: 4\n\
         evictionHard: {{memory.available: 100Mi, nodefs.available: 1%}}\n\
         address: 127.0.0.1\nport: {port}\nrotateCertificates: true\nserverTLSBootstrap: true\n\
         authentication:\n  x509:\n    clientCAFile: {}\n",
        f("cluster-ca.crt").display()
    ));
    node.extra_args = vec![
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--bootstrap-kubeconfig".into(),
        f("bootstrap-kubeconfig").display().to_string(),
    ];
    let trace = f("agent.strace");
    node.wrapper = [
        "strace",
        "-f",
        "-qq",
        "-s",
        "512",
        "-e",
        "trace=%file,fchmod",
        "-o",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([trace.display().to_string(), "--".into()])
    .collect();
    let cert_dir = node.root().join("pki");
    node.start_agent();

    let (cert, key) = api.issue_client_cert("drill", &["system:masters"]);
    write(&f("drill.crt"), &cert);
    write(&f("drill.key"), &key);
    let client = Arc::new(Client::new(port, &api.ca_pem(), &cert, &key));

    // ---- 1. bootstrap ----
    let first_serial = support::wait_for("10250 serving an issued certificate", T, || async {
        client.get_once("/healthz").await.ok().map(|(_, s)| s)
    })
    .await;
    let pid = node.agent_pid();
    let client_csrs = csrs_of(&api, CLIENT_SIGNER, clock);
    let serving_csrs = csrs_of(&api, SERVING_SIGNER, clock);
    let boot = &client_csrs.first().expect("a bootstrap CSR").1;
    assert_eq!(
        boot.spec.username.as_deref(),
        Some(BOOT_USER),
        "made with the bootstrap token"
    );
    assert!(
        boot.metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("node-csr-")
    );
    assert_eq!(
        boot.spec.usages.as_deref().unwrap(),
        ["digital signature", "client auth"]
    );
    let (cn, orgs, sans, bits) = request_of(boot);
    assert_eq!(
        (cn.as_str(), orgs, sans.len(), bits),
        (
            "system:node:testnode",
            vec!["system:nodes".to_string()],
            0,
            256
        )
    );
    let serving = &serving_csrs.first().expect("a serving CSR").1;
    assert_eq!(
        serving.spec.username.as_deref(),
        Some("system:node:testnode"),
        "made with the node's own identity"
    );
    assert_eq!(
        serving.spec.usages.as_deref().unwrap(),
        ["digital signature", "server auth"]
    );
    let (cn, orgs, sans, bits) = request_of(serving);
    assert_eq!(cn, "system:node:testnode");
    assert_eq!(orgs, vec!["system:nodes".to_string()]);
    assert_eq!(
        sans,
        vec!["DNS:testnode".to_string(), "IP:127.0.0.1".to_string()]
    );
    assert_eq!(bits, 256);
    assert_eq!(
        Some(&first_serial),
        issued(serving).map(|i| i.2).as_ref(),
        "10250 serves the issued certificate"
    );
    // The node then speaks as itself.
    api.wait_for("node registered as system:node:testnode", T, |a| {
        a.requests()
            .iter()
            .any(|r| {
                r.user == "system:node:testnode" && r.path.ends_with("/nodes") && r.status == 201
            })
            .then_some(())
    })
    .await;
    // The kubeconfig and the cert dir: 0600 files in a 0700 directory.
    assert_eq!(mode(&kubeconfig), 0o600);
    assert!(
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .contains(&format!(
                "client-certificate: {}",
                cert_dir.join("kubelet-client-current.pem").display()
            ))
    );
    assert_eq!(mode(&cert_dir), 0o700);
    let mut seen_files = 0;
    for e in std::fs::read_dir(&cert_dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_file() {
            seen_files += 1;
            assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
        } else {
            assert!(t.is_symlink(), "{}", e.path().display());
        }
    }
    assert!(seen_files >= 2);
    // From creation: every key file was created by an open(O_CREAT|O_EXCL, 0600), and
    // nothing was chmod'ed.
    let tr = std::fs::read_to_string(&trace).unwrap();
    let creates: Vec<&str> = tr
        .lines()
        .filter(|l| {
            l.contains("O_CREAT")
                && (l.contains("/pki/kubelet-") || l.contains("/kube/.kubeconfig"))
        })
        .collect();
    assert!(
        creates.iter().any(|l| l.contains("kubelet-client.key.tmp")),
        "{tr}"
    );
    assert!(
        creates.iter().any(|l| l.contains("kubelet-server-")),
        "{creates:?}"
    );
    for l in &creates {
        assert!(
            // strace splits a call another thread interrupts: `, 0600 <unfinished ...>`.
            l.contains("O_EXCL") && (l.contains(", 0600)") || l.contains(", 0600 <unfinished")),
            "key file not created 0600 exclusively: {l}"
        );
    }
    let chmods: Vec<&str> = tr
        .lines()
        .filter(|l| {
            l.contains("chmod")
                && (l.contains("fchmod(") || l.contains("/pki") || l.contains("/kube/"))
        })
        .collect();
    assert!(chmods.is_empty(), "chmod after creation: {chmods:?}");

    // ---- 2. rotations at their deadlines, under load ----
    let (load, callers) = Load::start(client.clone());
    api.wait_for(
        "two deadline rotations of each identity",
        Duration::from_secs(180),
        |a| {
            let c = csrs_of(a, CLIENT_SIGNER, clock)
                .iter()
                .filter(|(_, c)| issued(c).is_some())
                .count();
            let s = csrs_of(a, SERVING_SIGNER, clock)
                .iter()
                .filter(|(_, c)| issued(c).is_some())
                .count();
            (c >= 3 && s >= 3).then_some(())
        },
    )
    .await;
    for signer in [CLIENT_SIGNER, SERVING_SIGNER] {
        let list = csrs_of(&api, signer, clock);
        for pair in list.windows(2) {
            let (nb, na, _, _) = issued(&pair[0].1).unwrap();
            let frac = (pair[1].0 - nb as f64) / (na - nb) as f64;
            // 70–90 % of the validity, allowing the seconds of X.509 times.
            assert!(
                (0.68..=0.92).contains(&frac),
                "{signer}: renewed at {frac:.3} of the validity"
            );
        }
    }
    // Wait for the last serving rotation to reach new connections.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        load.failures().is_empty(),
        "10250 calls failed during rotation: {:?}",
        load.failures()
    );
    assert!(
        load.serials.lock().unwrap().len() >= 3,
        "served serials: {:?}",
        load.serials.lock().unwrap()
    );
    assert_eq!(node.agent_pid(), pid, "no restart");
    assert!(
        load.kept_sent.load(Ordering::Relaxed) > 50 && load.fresh_sent.load(Ordering::Relaxed) > 50
    );

    // ---- 3. a misbehaving signer ----
    let before = (
        csrs_of(&api, CLIENT_SIGNER, clock).len(),
        csrs_of(&api, SERVING_SIGNER, clock).len(),
    );
    api.misbehave_csr_signing(&[
        CsrMisbehavior::WrongCommonName,
        CsrMisbehavior::WrongKey,
        CsrMisbehavior::WrongCommonName,
        CsrMisbehavior::WrongKey,
    ]);
    let req = ironlet::tls::control::RotationRequest {
        api_version: ironlet::tls::control::REQUEST_API_VERSION.into(),
        kind: ironlet::tls::control::REQUEST_KIND.into(),
        id: "test-misbehaving-signer".into(),
        identities: vec![
            ironlet::tls::profile::IdentityKind::Client,
            ironlet::tls::profile::IdentityKind::Serving,
        ],
        requested_by: "tests/certs.rs".into(),
    };
    ironlet::tls::control::write_request(&cert_dir, &req).unwrap();
    let bad = api
        .wait_for(
            "bad certificates issued and good ones after them",
            Duration::from_secs(90),
            |a| {
                let mut bad = Vec::new();
                let mut good = 0;
                for signer in [CLIENT_SIGNER, SERVING_SIGNER] {
                    let list = csrs_of(a, signer, clock);
                    let skip = if signer == CLIENT_SIGNER {
                        before.0
                    } else {
                        before.1
                    };
                    let mut last_good = false;
                    for (_, c) in list.iter().skip(skip) {
                        let (_, _, serial, _) = issued(c)?;
                        if is_bad(c)? {
                            bad.push(serial);
                            last_good = false;
                        } else {
                            last_good = true;
                        }
                    }
                    good += usize::from(last_good);
                }
                (good == 2 && !bad.is_empty()).then_some(bad)
            },
        )
        .await;
    let log = node.agent_log(1);
    assert!(log.contains("wrong node name"), "rejection not logged");
    assert!(log.contains("another key"), "key mismatch not logged");
    assert!(
        api.requests()
            .iter()
            .all(|r| r.user != "system:node:intruder")
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    for s in &bad {
        assert!(
            !load.serials.lock().unwrap().contains(s),
            "a rejected certificate was served: {s}"
        );
    }
    assert!(
        load.failures().is_empty(),
        "10250 calls failed while the signer misbehaved: {:?}",
        load.failures()
    );

    // ---- 4. the drill ----
    let reports = f("reports");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ironlet"))
        .args([
            "drill",
            "cert-rotation",
            "--rotations",
            "2",
            "-o",
            "json",
            "--server",
        ])
        .arg(format!("https://127.0.0.1:{port}"))
        .arg("--root-dir")
        .arg(node.root())
        .arg("--ca")
        .arg(f("cluster-ca.crt"))
        .arg("--client-cert")
        .arg(f("drill.crt"))
        .arg("--client-key")
        .arg(f("drill.key"))
        .arg("--report-dir")
        .arg(&reports)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "drill failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["result"], "pass");
    assert_eq!(report["kubeletApiFailed"], 0);
    assert!(report["kubeletApiSent"].as_u64().unwrap() > 10);
    assert_eq!(report["nodeApiUnauthorized"], 0);
    let rotations = report["rotations"].as_array().unwrap();
    assert_eq!(rotations.len(), 4, "{report}");
    for r in rotations {
        for k in [
            "identity",
            "requestId",
            "oldSerial",
            "newSerial",
            "csrName",
            "requestedAt",
            "issuedAt",
            "publishedAt",
        ] {
            assert!(
                r[k].is_string() && !r[k].as_str().unwrap().is_empty(),
                "{k} missing in {r}"
            );
        }
        assert_ne!(r["oldSerial"], r["newSerial"]);
        // The CSR it names exists and carries the new serial.
        let c = api
            .csr(r["csrName"].as_str().unwrap())
            .expect("the CSR the report names");
        assert_eq!(issued(&c).unwrap().2, r["newSerial"].as_str().unwrap());
    }
    let texts: Vec<PathBuf> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        texts
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "txt"))
    );
    assert!(
        texts
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "json"))
    );
    assert!(
        node.agent_log(1).contains("certificate rotation requested"),
        "no audit line"
    );

    load.stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }
    assert!(load.failures().is_empty(), "{:?}", load.failures());

    // ---- 5. status and metrics ----
    let st = node.cli(&["certs", "status", "-o", "json"]);
    let st: serde_json::Value = serde_json::from_str(&st).unwrap();
    for id in st["identities"].as_array().unwrap() {
        assert_eq!(id["state"], "ok", "{id}");
        assert_eq!(id["keyFileMode"], "0600", "{id}");
        assert!(
            id["serial"].is_string() && id["notAfter"].is_i64() && id["nextRotation"].is_i64(),
            "{id}"
        );
    }
    let (metrics, _) = client.get_once("/metrics").await.unwrap();
    for m in [
        "kubelet_certificate_manager_client_ttl_seconds ",
        "kubelet_certificate_manager_server_ttl_seconds ",
        "kubelet_certificate_manager_client_expiration_renew_errors ",
        "kubelet_certificate_manager_server_rotation_seconds_count ",
    ] {
        assert!(metrics.contains(m), "{m} missing");
    }
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kubelet_certificate_manager_client_expiration_renew_errors "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let server_errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kubelet_server_expiration_renew_errors "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        errors + server_errors >= 2,
        "the rejected certificates count as renewal errors"
    );

    // ---- 6. restart: the stored certificates are reused ----
    node.stop_agent();
    node.wrapper.clear();
    let boot_csrs = csrs_of(&api, CLIENT_SIGNER, clock)
        .iter()
        .filter(|(_, c)| c.spec.username.as_deref() == Some(BOOT_USER))
        .count();
    assert_eq!(boot_csrs, 1);
    let restart_at = Instant::now();
    node.start_agent();
    support::wait_for("10250 after restart", T, || async {
        client.get_once("/healthz").await.ok()
    })
    .await;
    let after = csrs_of(&api, CLIENT_SIGNER, clock)
        .iter()
        .filter(|(_, c)| c.spec.username.as_deref() == Some(BOOT_USER))
        .count();
    assert_eq!(after, 1, "no new bootstrap CSR after a restart");
    let first_after = api
        .requests()
        .into_iter()
        .find(|r| r.at > restart_at && !r.user.is_empty())
        .expect("a request after the restart");
    assert_eq!(first_after.user, "system:node:testnode");
    assert!(
        api.requests().iter().all(|r| r.status != 401),
        "the node got a 401"
    );
    node.cleanup().await;
}
