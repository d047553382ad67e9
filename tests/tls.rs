//! Real TLS handshakes against the server configurations ironlet builds from its policy.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::sync::Arc;

use ironlet::tls::TlsPolicy;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Pki {
            ca: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn leaf(&self, cn: &str, sans: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca).unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), der)
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Serves one connection: echoes the peer certificate count and the negotiated suite.
async fn serve(
    cfg: rustls::ServerConfig,
) -> (u16, tokio::task::JoinHandle<Result<String, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        let info = format!(
            "certs={} suite={:?} version={:?}",
            conn.peer_certificates().map_or(0, |c| c.len()),
            conn.negotiated_cipher_suite().map(|s| s.suite()),
            conn.protocol_version()
        );
        tls.write_all(info.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok(info)
    });
    (port, task)
}

async fn connect(port: u16, client: ClientConfig) -> Result<String, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    tls.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn client(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: Option<Vec<rustls::SupportedCipherSuite>>,
    identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> ClientConfig {
    let mut p = rustls::crypto::ring::default_provider();
    if let Some(s) = suites {
        p.cipher_suites = s;
    }
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der()).unwrap();
    let b = ClientConfig::builder_with_provider(Arc::new(p))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        Some((c, k)) => b.with_client_auth_cert(vec![c], k).unwrap(),
        None => b.with_no_client_auth(),
    }
}

#[tokio::test]
async fn tls13_only_server_refuses_a_tls12_client() {
    let _ = provider();
    let pki = Pki::new("ca");
    let (cert, key) = pki.leaf("node", &["localhost"]);
    let policy = TlsPolicy::from_config(Some("VersionTLS13"), &[]).unwrap();
    let (port, server) = serve(policy.server_config(vec![cert], key, None).unwrap()).await;
    let r = connect(port, client(&pki, &[&rustls::version::TLS12], None, None)).await;
    assert!(r.is_err(), "TLS 1.2 client got through: {r:?}");
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn tls12_negotiates_only_configured_aead_suites() {
    let pki = Pki::new("ca");
    let (cert, key) = pki.leaf("node", &["localhost"]);
    let policy =
        TlsPolicy::from_config(None, &["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into()]).unwrap();
    // A TLS 1.2 client offering only a suite the policy left out: no handshake.
    let (port, _server) = serve(
        policy
            .server_config(vec![cert.clone()], key.clone_key(), None)
            .unwrap(),
    )
    .await;
    let only_128 =
        vec![rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256];
    let r = connect(
        port,
        client(&pki, &[&rustls::version::TLS12], Some(only_128), None),
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    // The configured suite works, over TLS 1.2.
    let (port, server) = serve(policy.server_config(vec![cert], key, None).unwrap()).await;
    let r = connect(port, client(&pki, &[&rustls::version::TLS12], None, None))
        .await
        .unwrap();
    assert!(
        r.contains("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384") && r.contains("TLSv1_2"),
        "{r}"
    );
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn client_certificates_are_optional_but_never_unverified() {
    let pki = Pki::new("ca");
    let stranger = Pki::new("other-ca");
    let (cert, key) = pki.leaf("node", &["localhost"]);
    let policy = TlsPolicy::from_config(None, &[]).unwrap();
    let cfg = || {
        policy
            .server_config(vec![cert.clone()], key.clone_key(), Some(&[pki.ca_der()]))
            .unwrap()
    };

    // No certificate: the handshake completes (a bearer token may follow).
    let (port, server) = serve(cfg()).await;
    let r = connect(port, client(&pki, &[&rustls::version::TLS13], None, None))
        .await
        .unwrap();
    assert!(r.starts_with("certs=0"), "{r}");
    server.await.unwrap().unwrap();

    // A certificate from the trusted CA is verified and visible.
    let (port, server) = serve(cfg()).await;
    let good = pki.leaf("system:node:n1", &[]);
    let r = connect(
        port,
        client(&pki, &[&rustls::version::TLS13], None, Some(good)),
    )
    .await
    .unwrap();
    assert!(r.starts_with("certs=1"), "{r}");
    server.await.unwrap().unwrap();

    // A certificate from another CA is refused: presented-but-invalid is never anonymous.
    let (port, server) = serve(cfg()).await;
    let bad = stranger.leaf("mallory", &[]);
    let _ = connect(
        port,
        client(&pki, &[&rustls::version::TLS13], None, Some(bad)),
    )
    .await;
    let s = server.await.unwrap();
    assert!(
        s.is_err(),
        "server accepted an unverifiable client certificate: {s:?}"
    );
}
