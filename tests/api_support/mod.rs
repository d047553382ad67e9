//! Shared harness of the kubelet API tests: a PKI made with rcgen (a client CA, a foreign
//! CA, an expired certificate, users the policy allows and denies), the real router served
//! in-process over real TLS by the real listener, and a raw HTTP/1.1 client over rustls so
//! every byte sent and received is under the test's control.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use ironlet::pleg::{PlegHealth, Snapshot};
use ironlet::server::api::{Api, Handles, Options};
use ironlet::server::authn::{ReviewError, TokenAuthenticator, User};
use ironlet::server::authz::{Authorizer, StandalonePolicy};
use ironlet::server::listener::{self, Limits};
use ironlet::tls::TlsPolicy;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

pub type Identity = (CertificateDer<'static>, PrivateKeyDer<'static>);

pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.distinguished_name.push(DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate; `expired` puts its validity entirely in the past.
    pub fn leaf(&self, cn: &str, org: Option<&str>, sans: &[&str], expired: bool) -> Identity {
        let (c, k) = self.leaf_pem(cn, org, sans, expired);
        let cert = CertificateDer::from_pem_slice(c.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap();
        (cert, key)
    }

    pub fn leaf_pem(
        &self,
        cn: &str,
        org: Option<&str>,
        sans: &[&str],
        expired: bool,
    ) -> (String, String) {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        if let Some(o) = org {
            p.distinguished_name.push(DnType::OrganizationName, o);
        }
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

use rustls::pki_types::pem::PemObject;

/// The credentials a request can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cred {
    None,
    ForeignCa,
    Expired,
    CertDenied,
    CertAllowed,
    BadToken,
    TokenDenied,
    TokenAllowed,
}

pub const CREDS: [Cred; 8] = [
    Cred::None,
    Cred::ForeignCa,
    Cred::Expired,
    Cred::CertDenied,
    Cred::CertAllowed,
    Cred::BadToken,
    Cred::TokenDenied,
    Cred::TokenAllowed,
];

pub const ALLOWED_TOKEN: &str = "token-of-admin";
pub const DENIED_TOKEN: &str = "token-of-mallory";

/// A policy that allows user `admin` everything it can name, and nobody else anything.
pub const POLICY: &str = "apiVersion: ironlet.dev/v1alpha1
kind: StandaloneAuthorizationPolicy
rules:
- name: admin-everything
  reason: the test's administrator may use every kubelet API subresource
  users: [admin]
  verbs: [get, create, update, patch, delete]
  subresources: [stats, metrics, log, checkpoint, pods, healthz, configz, proxy]
- name: metrics-reader
  reason: a scraper may read metrics only
  groups: [scrapers]
  verbs: [get]
  subresources: [metrics]
";

/// A token authenticator with two known tokens, standing in for TokenReview: the
/// router's handling of tokens (never anonymous, 401 on invalid) is what is under test.
pub struct KnownTokens;

impl TokenAuthenticator for KnownTokens {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<User>, ReviewError>> {
        let user = match token {
            ALLOWED_TOKEN => Some(User {
                name: "admin".into(),
                groups: vec![],
                ..Default::default()
            }),
            DENIED_TOKEN => Some(User {
                name: "mallory".into(),
                groups: vec!["system:serviceaccounts".into()],
                ..Default::default()
            }),
            _ => None,
        };
        Box::pin(std::future::ready(Ok(user)))
    }
}

pub struct Pki {
    pub ca: Ca,
    pub foreign: Ca,
    pub server: Identity,
    pub allowed: Identity,
    pub denied: Identity,
    pub expired: Identity,
    pub foreign_user: Identity,
    pub scraper: Identity,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = Ca::new("kubelet-client-ca");
        let foreign = Ca::new("someone-else");
        let server_ca = Ca::new("serving-ca");
        Pki {
            server: server_ca.leaf("node", None, &["localhost", "127.0.0.1"], false),
            allowed: ca.leaf("admin", Some("node-admins"), &[], false),
            denied: ca.leaf("mallory", None, &[], false),
            expired: ca.leaf("admin", None, &[], true),
            foreign_user: foreign.leaf("admin", None, &[], false),
            scraper: ca.leaf("prom", Some("scrapers"), &[], false),
            ca,
            foreign,
        }
    }
}

pub struct Server {
    pub port: u16,
    pub api: Arc<Api>,
    /// The audit log file of this server.
    pub audit_path: std::path::PathBuf,
    pub snapshot_tx: watch::Sender<Arc<Snapshot>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct ServerOptions {
    pub tokens: bool,
    pub enable_debugging_handlers: bool,
    pub system_logs: Option<std::path::PathBuf>,
    pub limits: Limits,
    pub streaming_idle_timeout: Duration,
    pub authorizer: Option<Arc<dyn Authorizer>>,
    /// Replaces the known-tokens authenticator (e.g. the TokenReview webhook).
    pub token_authenticator: Option<Arc<dyn TokenAuthenticator>>,
    pub min_version: Option<&'static str>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            tokens: true,
            enable_debugging_handlers: true,
            system_logs: None,
            limits: Limits::default(),
            streaming_idle_timeout: Duration::from_secs(4 * 3600),
            authorizer: None,
            token_authenticator: None,
            min_version: None,
        }
    }
}

pub const PODS_JSON: &str = r#"{"apiVersion":"v1","kind":"PodList","metadata":{},"items":[]}"#;

pub fn empty_snapshot() -> Arc<Snapshot> {
    Arc::new(Snapshot {
        generation: 1,
        relist_started: std::time::Instant::now(),
        pods: Default::default(),
    })
}

/// Serves the real API on 127.0.0.1:<ephemeral> with the standalone test policy.
pub async fn serve(pki: &Pki, o: ServerOptions) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let policy = TlsPolicy::from_config(o.min_version, &[]).unwrap();
    let tls = policy
        .server_config(
            vec![pki.server.0.clone()],
            pki.server.1.clone_key(),
            Some(&[pki.ca.der()]),
        )
        .unwrap();
    let (snapshot_tx, snapshots) = watch::channel(empty_snapshot());
    let handles = Handles {
        pods: Box::new(|| Ok(PODS_JSON.as_bytes().to_vec())),
        snapshots,
        health: Arc::new(PlegHealth::default()),
        started: Instant::now(),
        // No runtime behind it: requests that would reach it are answered before (404).
        cri: ironlet::cri::Cri::new(&dir.path().join("no-runtime.sock"), Duration::from_secs(2)),
        probes: None,
        configz: serde_json::json!({"kubeletconfig": {"port": 10250}}),
    };
    let options = Options {
        node_name: "node-1".into(),
        enable_debugging_handlers: o.enable_debugging_handlers,
        enable_system_log_handler: o.system_logs.is_some(),
        system_log_root: o
            .system_logs
            .clone()
            .unwrap_or_else(|| "/nonexistent".into()),
        streaming_idle_timeout: o.streaming_idle_timeout,
        max_streams: 8,
    };
    let authorizer = o
        .authorizer
        .unwrap_or_else(|| Arc::new(StandalonePolicy::parse(POLICY).unwrap()));
    let tokens: Option<Arc<dyn TokenAuthenticator>> = match (o.token_authenticator, o.tokens) {
        (Some(t), _) => Some(t),
        (None, true) => Some(Arc::new(KnownTokens)),
        (None, false) => None,
    };
    // Audit records go to a file of the test (the production writer, 1 MiB rotation).
    let audit_path = dir.path().join("audit.log");
    let audit = Arc::new(ironlet::server::audit::AuditLog::open(&audit_path, 1 << 20).unwrap());
    let api = Arc::new(Api::new(options, tokens, authorizer, handles).with_audit(audit));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(listener::serve(
        listener,
        Arc::new(tls),
        Arc::clone(&api),
        o.limits,
    ));
    Server {
        port,
        api,
        audit_path,
        snapshot_tx,
        task,
        _dir: dir,
    }
}

/// Accepts any server certificate: these tests are about the server's checks of clients.
#[derive(Debug)]
pub struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub fn client(identity: Option<Identity>) -> rustls::ClientConfig {
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(NoVerify));
    match identity {
        Some((c, k)) => b.with_client_auth_cert(vec![c], k).unwrap(),
        None => b.with_no_client_auth(),
    }
}

/// A parsed HTTP/1.1 response (status, headers, body) or why there was none.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Everything read from the connection.
    pub raw: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the first response in `raw` (Content-Length or chunked or until close).
pub fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = get("content-length").and_then(|l| l.parse::<usize>().ok()) {
        rest[..len.min(rest.len())].to_vec()
    } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Some(Answer {
        status,
        headers,
        body,
        raw: raw.to_vec(),
    })
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let Ok(size) =
            usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap_or("0").trim(), 16)
        else {
            break;
        };
        if size == 0 || b.len() < i + 2 + size {
            out.extend_from_slice(&b[(i + 2).min(b.len())..(i + 2 + size).min(b.len())]);
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[(i + 4 + size).min(b.len())..];
    }
    out
}

/// Opens a TLS connection (Err: the handshake or connection failed).
pub async fn connect(
    port: u16,
    cfg: rustls::ClientConfig,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())
}

/// Sends `raw` bytes on a fresh connection and reads until the server closes (or 10 s).
/// Err when the TLS handshake fails or the connection breaks before any response.
pub async fn exchange(port: u16, cfg: rustls::ClientConfig, raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut tls = connect(port, cfg).await?;
    tls.write_all(raw).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    match r {
        Ok(Ok(_)) => Ok(out),
        Ok(Err(e)) if out.is_empty() => Err(e.to_string()),
        Ok(Err(_)) => Ok(out),
        Err(_) => Err(format!("timed out; read {} bytes", out.len())),
    }
}

pub fn cred_identity(pki: &Pki, c: Cred) -> Option<Identity> {
    let clone = |i: &Identity| (i.0.clone(), i.1.clone_key());
    match c {
        Cred::ForeignCa => Some(clone(&pki.foreign_user)),
        Cred::Expired => Some(clone(&pki.expired)),
        Cred::CertDenied => Some(clone(&pki.denied)),
        Cred::CertAllowed => Some(clone(&pki.allowed)),
        _ => None,
    }
}

pub fn cred_header(c: Cred) -> String {
    match c {
        Cred::BadToken => "Authorization: Bearer not-a-valid-token\r\n".into(),
        Cred::TokenDenied => format!("Authorization: Bearer {DENIED_TOKEN}\r\n"),
        Cred::TokenAllowed => format!("Authorization: Bearer {ALLOWED_TOKEN}\r\n"),
        _ => String::new(),
    }
}

/// One request with `Connection: close`; Ok(answer) or Err(handshake/connection failure).
pub async fn request(
    port: u16,
    pki: &Pki,
    cred: Cred,
    method: &str,
    target: &str,
    extra_headers: &str,
    body: &str,
) -> Result<Answer, String> {
    let raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\n{}{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        cred_header(cred),
        body.len()
    );
    let out = exchange(port, client(cred_identity(pki, cred)), raw.as_bytes()).await?;
    parse_answer(&out)
        .ok_or_else(|| format!("no HTTP response; got {:?}", String::from_utf8_lossy(&out)))
}

pub fn private_key_der(k: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.serialize_der()))
}

/// Every method the matrix tries.
pub const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Every route the kubelet API knows or must refuse: (request target, methods answered when allowed, status when allowed and routed)
pub const ROUTES: &[(&str, &[&str], u16)] = &[
    ("/healthz", &["GET", "HEAD"], 200),
    ("/healthz/ping", &["GET", "HEAD"], 200),
    ("/healthz/log", &["GET", "HEAD"], 200),
    ("/healthz/syncloop", &["GET", "HEAD"], 200),
    ("/pods", &["GET", "HEAD"], 200),
    ("/runningpods/", &["GET", "HEAD"], 200),
    ("/metrics", &["GET", "HEAD"], 200),
    ("/metrics/probes", &["GET", "HEAD"], 200),
    ("/configz", &["GET", "HEAD"], 200),
    // Unknown pod: routed, then not found.
    ("/containerLogs/default/nopod/c", &["GET", "HEAD"], 404),
    ("/run/default/nopod/c?cmd=id", &["POST"], 404),
    (
        "/exec/default/nopod/c?command=id&stdout=1",
        &["GET", "POST"],
        404,
    ),
    ("/attach/default/nopod/c?stdout=1", &["GET", "POST"], 404),
    ("/portForward/default/nopod?port=80", &["GET", "POST"], 404),
    // Not served (or disabled): 404 for every method once authorized.
    ("/logs/", &[], 404),
    ("/logs/audit/audit.log", &[], 404),
    ("/debug/pprof/cmdline", &[], 404),
    ("/debug/flags/v", &[], 404),
    ("/checkpoint/default/p/c", &[], 404),
    ("/stats/summary", &[], 404),
    ("/spec/", &[], 404),
    ("/metrics/cadvisor", &[], 404),
    ("/cri/exec/x?cmd=id", &[], 404),
    ("/", &[], 404),
];
