//! The API server client of cluster mode: a `kube::Client` built from a kubeconfig, with
//! three properties the stock builder does not give:
//!
//! - **A replaceable TLS identity.** The client certificate is not baked into the rustls
//!   config; a resolver hands out whatever [`Identity`] currently holds, so certificate
//!   rotation swaps one value and every new connection (and every clone of the client)
//!   presents the new certificate. Nothing is rebuilt or re-plumbed.
//! - **A request budget.** kubeAPIQPS / kubeAPIBurst as a token bucket in front of every
//!   request, watches included.
//! - **No weak fallbacks.** The cluster CA must be named in the kubeconfig (the system trust
//!   store is never used for the API server), `insecure-skip-tls-verify` is refused, and the
//!   TLS versions and suites are the same strong set the 10250 server uses.
//!
//! Owns reading the kubeconfig and the files it names. Does not decide what to send.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SignatureScheme};

/// How long a TCP connect to the API server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("kubeconfig {path}: {field}: {message}")]
    Field {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
    #[error("client identity: {0}")]
    Identity(String),
}

/// The client certificate and key the API client presents, replaceable at any time.
#[derive(Default)]
pub struct Identity {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// Bumped on every change, so the client knows to stop reusing old connections.
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("has_certificate", &self.has_certs())
            .finish()
    }
}

impl Identity {
    /// Publishes a new certificate chain and key (PEM). The key must match the certificate;
    /// on error the current identity stays.
    pub fn set_pem(&self, cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<(), ApiClientError> {
        let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiClientError::Identity(format!("certificate PEM: {e}")))?;
        if chain.is_empty() {
            return Err(ApiClientError::Identity(
                "no certificate in the PEM data".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| ApiClientError::Identity(format!("private key PEM: {e}")))?;
        let provider = client_policy()?.provider();
        let certified = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| ApiClientError::Identity(format!("certificate and key: {e}")))?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(certified));
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Changes with every new certificate.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The certificate currently presented (leaf first), if any.
    pub fn certificate(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.cert.clone())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn has_certs(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

/// A connected client and the handle that swaps its TLS identity.
#[derive(Clone)]
pub struct ApiClient {
    pub client: kube::Client,
    pub identity: Arc<Identity>,
    /// The API server's base URL, for logs.
    pub server: String,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("server", &self.server)
            .field("identity", &self.identity)
            .finish()
    }
}

/// Reads `path` and builds the client. Fails, naming the field, when the kubeconfig lacks a
/// CA, skips verification, or its credentials cannot be read.
pub async fn connect(path: &Path, qps: f64, burst: u32) -> Result<ApiClient, ApiClientError> {
    let kc_err = |message: String| ApiClientError::Kubeconfig {
        path: path.to_path_buf(),
        message,
    };
    let field_err = |field, message: String| ApiClientError::Field {
        path: path.to_path_buf(),
        field,
        message,
    };
    let kubeconfig = read_kubeconfig(path).map_err(kc_err)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| kc_err(e.to_string()))?;
    if config.accept_invalid_certs {
        return Err(field_err(
            "insecure-skip-tls-verify",
            "the API server's certificate must be verified; remove the field and name the cluster CA".into(),
        ));
    }
    if config.cluster_url.scheme_str() != Some("https") {
        return Err(field_err(
            "server",
            format!("{} must be an https:// URL", config.cluster_url),
        ));
    }
    let mut roots = RootCertStore::empty();
    for der in config.root_cert.iter().flatten() {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| field_err("certificate-authority", e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(field_err(
            "certificate-authority",
            "missing: ironlet trusts only the cluster CA named in the kubeconfig, never the system store".into(),
        ));
    }

    let identity = Arc::new(Identity::default());
    if let Some((cert, key)) = client_pem(path, &config.auth_info)? {
        identity.set_pem(&cert, &key)?;
    }

    let server_name = match &config.tls_server_name {
        Some(name) => Some(
            ServerName::try_from(name.clone())
                .map_err(|e| field_err("tls-server-name", e.to_string()))?,
        ),
        None => None,
    };
    let policy = client_policy()?;
    let provider = Arc::new(policy.provider());
    let versions = policy.versions();
    // Built once, so that making a fresh connection pool later cannot fail.
    let base = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| ApiClientError::Identity(e.to_string()))?;
    let resolver = identity.clone();
    let make: MakeClient = Arc::new(move || {
        let tls = base
            .clone()
            .with_root_certificates(roots.clone())
            .with_client_cert_resolver(resolver.clone() as Arc<dyn ResolvesClientCert>);
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only();
        let builder = match &server_name {
            Some(name) => builder.with_server_name_resolver(
                hyper_rustls::FixedServerNameResolver::new(name.clone()),
            ),
            None => builder,
        };
        let https = builder.enable_http1().wrap_connector(http);
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build::<_, kube::client::Body>(https)
    });
    let http_client = Rotating {
        current: Arc::new(std::sync::Mutex::new((identity.generation(), make()))),
        identity: identity.clone(),
        make,
    };

    use kube::client::ConfigExt;
    let auth = config
        .auth_layer()
        .map_err(|e| field_err("user", e.to_string()))?;
    let service = tower::ServiceBuilder::new()
        // Heartbeat, reviews and the rest each have their own budget (budget.rs).
        .layer(crate::budget::BudgetLayer::new(qps, burst))
        .layer(config.base_uri_layer())
        .option_layer(auth)
        .map_err(tower::BoxError::from)
        .service(http_client);
    let client = kube::Client::new(service, config.default_namespace.clone());
    Ok(ApiClient {
        client,
        identity,
        server: config.cluster_url.to_string(),
    })
}

/// What a kubeconfig says about its cluster and client certificate.
pub struct KubeconfigFacts {
    pub server: String,
    /// The cluster CA, DER.
    pub roots: Vec<CertificateDer<'static>>,
    pub tls_server_name: Option<String>,
    /// The client certificate chain, when the user has one.
    pub client_chain: Option<Vec<CertificateDer<'static>>>,
}

/// Reads `path` as `connect` would, without connecting (bootstrap decisions, the cluster CA
/// for validating issued certificates).
pub async fn inspect(path: &Path) -> Result<KubeconfigFacts, ApiClientError> {
    let kc_err = |message: String| ApiClientError::Kubeconfig {
        path: path.to_path_buf(),
        message,
    };
    let kubeconfig = read_kubeconfig(path).map_err(kc_err)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| kc_err(e.to_string()))?;
    let client_chain = match client_pem(path, &config.auth_info)? {
        Some((cert, _)) => Some(
            CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiClientError::Identity(format!("certificate PEM: {e}")))?,
        ),
        None => None,
    };
    Ok(KubeconfigFacts {
        server: config.cluster_url.to_string(),
        roots: config
            .root_cert
            .iter()
            .flatten()
            .map(|d| CertificateDer::from(d.clone()))
            .collect(),
        tls_server_name: config.tls_server_name.clone(),
        client_chain,
    })
}

/// Kubeconfig files larger than this are refused before parsing.
pub const MAX_KUBECONFIG_BYTES: u64 = 1024 * 1024;

/// Parses kubeconfig text (pure, fuzzed). Relative file references stay as written.
pub fn parse_kubeconfig(text: &str) -> Result<kube::config::Kubeconfig, String> {
    let kc = kube::config::Kubeconfig::from_yaml(text).map_err(|e| e.to_string())?;
    refuse_credential_plugins(&kc)?;
    Ok(kc)
}

/// Credential plugins run a program to get a credential. The confined agent executes
/// nothing after start (seccomp would kill it at the first API call), so a kubeconfig
/// that names one is refused at load, naming the field.
fn refuse_credential_plugins(kc: &kube::config::Kubeconfig) -> Result<(), String> {
    for (i, u) in kc.auth_infos.iter().enumerate() {
        let Some(ai) = &u.auth_info else { continue };
        let field = if ai.exec.is_some() {
            "exec"
        } else if ai.auth_provider.is_some() {
            "auth-provider"
        } else {
            continue;
        };
        return Err(format!(
            "users[{i}] ({:?}).user.{field}: credential plugins are refused (the confined agent executes no program); \
             use a client certificate or a token",
            u.name
        ));
    }
    Ok(())
}

/// Reads a kubeconfig with a size cap, resolving the files it names relative to its own
/// directory (as kubectl does).
fn read_kubeconfig(path: &Path) -> Result<kube::config::Kubeconfig, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(MAX_KUBECONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_KUBECONFIG_BYTES {
        return Err(format!("larger than the {MAX_KUBECONFIG_BYTES} byte limit"));
    }
    parse_kubeconfig(&text)?;
    // kube's reader resolves relative paths against the file's directory.
    kube::config::Kubeconfig::read_from(path).map_err(|e| e.to_string())
}

/// The files a kubeconfig names (CA, client certificates and keys,
/// token file), resolved against the kubeconfig's directory. Empty when it cannot be read:
/// the agent then fails at connect with the real error.
pub fn referenced_files(path: &Path) -> Vec<PathBuf> {
    let Ok(kc) = read_kubeconfig(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &kc.clusters {
        if let Some(ca) = c
            .cluster
            .as_ref()
            .and_then(|c| c.certificate_authority.clone())
        {
            out.push(PathBuf::from(ca));
        }
    }
    for a in &kc.auth_infos {
        if let Some(ai) = &a.auth_info {
            for f in [&ai.client_certificate, &ai.client_key, &ai.token_file]
                .into_iter()
                .flatten()
            {
                out.push(PathBuf::from(f));
            }
        }
    }
    let base = path.parent().unwrap_or(Path::new("/"));
    out.into_iter()
        .map(|p| if p.is_absolute() { p } else { base.join(p) })
        .collect()
}

/// The TLS versions and suites of outbound connections: the same data as the server's.
fn client_policy() -> Result<crate::tls::TlsPolicy, ApiClientError> {
    crate::tls::TlsPolicy::from_config(None, &[])
        .map_err(|e| ApiClientError::Identity(format!("TLS policy: {e}")))
}

/// A certificate chain and its key, PEM.
type PemPair = (Vec<u8>, Vec<u8>);

/// The client certificate and key of the kubeconfig's user, as PEM, if it uses one.
fn client_pem(
    path: &Path,
    auth: &kube::config::AuthInfo,
) -> Result<Option<PemPair>, ApiClientError> {
    use secrecy::ExposeSecret;
    let field_err = |field, message: String| ApiClientError::Field {
        path: path.to_path_buf(),
        field,
        message,
    };
    let read = |field, file: &str| {
        std::fs::read(file).map_err(|e| field_err(field, format!("{file}: {e}")))
    };
    let decode = |field, data: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| field_err(field, format!("not base64: {e}")))
    };
    let cert = match (&auth.client_certificate_data, &auth.client_certificate) {
        (Some(d), _) => Some(decode("client-certificate-data", d)?),
        (None, Some(f)) => Some(read("client-certificate", f)?),
        (None, None) => None,
    };
    let key = match (&auth.client_key_data, &auth.client_key) {
        (Some(d), _) => Some(decode("client-key-data", d.expose_secret())?),
        (None, Some(f)) => Some(read("client-key", f)?),
        (None, None) => None,
    };
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(field_err(
            "client-key",
            "missing; the client certificate needs its key".into(),
        )),
        (None, Some(_)) => Err(field_err(
            "client-certificate",
            "missing; the client key needs its certificate".into(),
        )),
    }
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    kube::client::Body,
>;
type MakeClient = Arc<dyn Fn() -> HttpsClient + Send + Sync>;

/// The HTTP client under the kube client. Pooled connections (and TLS sessions, which
/// would resume without a new client certificate) belong to one identity generation: when
/// the identity changes, new requests go through a fresh pool and so handshake with the
/// new certificate; requests already running finish on their old connections.
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

#[derive(Clone)]
struct Rotating {
    identity: Arc<Identity>,
    make: MakeClient,
    current: Arc<std::sync::Mutex<(u64, HttpsClient)>>,
}

impl tower::Service<http::Request<kube::client::Body>> for Rotating {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let generation = self.identity.generation();
        let client = {
            let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if cur.0 != generation {
                tracing::info!("client identity changed: new connections to the API server");
                *cur = (generation, (self.make)());
            }
            cur.1.clone()
        };
        let response = client.request(req);
        Box::pin(async move {
            let r = response.await;
            // Counted for the rotation evidence: a rotation must never cost a 401.
            if let Ok(resp) = &r {
                crate::tls::metrics::api_response(resp.status().as_u16());
            }
            r
        })
    }
}

/// The no-debt token bucket (events use it; the API client's budgets are in `budget.rs`).
pub use crate::budget::TokenBucket;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_plugins_are_refused_naming_the_field() {
        let base = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:6443'}\ncontexts:\n- name: x\n  context: {cluster: c, user: node}\ncurrent-context: x\nusers:\n- name: node\n  user:\n";
        let exec = format!(
            "{base}    exec: {{apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, id]}}\n"
        );
        let e = parse_kubeconfig(&exec).unwrap_err();
        assert!(e.contains("users[0] (\"node\").user.exec"), "{e}");
        let provider =
            format!("{base}    auth-provider: {{name: gcp, config: {{cmd-path: /bin/sh}}}}\n");
        let e = parse_kubeconfig(&provider).unwrap_err();
        assert!(e.contains("user.auth-provider"), "{e}");
        parse_kubeconfig(&format!("{base}    token: abc\n")).unwrap();
    }

    #[test]
    fn identity_rejects_mismatched_key_and_keeps_the_old_one() {
        let key_a = rcgen::KeyPair::generate().unwrap();
        let key_b = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["node".into()])
            .unwrap()
            .self_signed(&key_a)
            .unwrap();
        let id = Identity::default();
        assert!(!id.has_certs());
        id.set_pem(cert.pem().as_bytes(), key_a.serialize_pem().as_bytes())
            .unwrap();
        assert!(id.has_certs());
        let err = id
            .set_pem(cert.pem().as_bytes(), key_b.serialize_pem().as_bytes())
            .unwrap_err();
        assert!(err.to_string().contains("certificate and key"), "{err}");
        assert_eq!(id.certificate().unwrap()[0].as_ref(), cert.der().as_ref());
        assert!(id.set_pem(b"garbage", b"garbage").is_err());
    }
}
