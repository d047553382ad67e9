//! A minimal HTTP/1.1 server for the probe tests: records each request head and answers
//! with canned bytes, over plain TCP or TLS (the self-signed identity in testdata/). Binds
//! loopback addresses only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

const CERT_PEM: &str = include_str!("testdata/cert.pem");
const KEY_PEM: &str = include_str!("testdata/key.pem");

/// One request head as received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    /// Every value of a header, in order (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

type Respond = Arc<dyn Fn(&Recorded) -> Vec<u8> + Send + Sync>;

#[derive(Clone, Copy)]
enum Mode {
    Respond,
    /// Answer 200 with a body that never ends.
    Endless,
    /// Accept and never answer.
    Silent,
}

pub struct TestServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl TestServer {
    pub async fn start(
        ip: &str,
        tls: Option<TlsAcceptor>,
        respond: impl Fn(&Recorded) -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        Self::spawn(ip, tls, Arc::new(respond), Mode::Respond).await
    }

    pub async fn start_endless(ip: &str) -> Self {
        Self::spawn(ip, None, Arc::new(|_: &Recorded| Vec::new()), Mode::Endless).await
    }

    pub async fn start_silent(ip: &str) -> Self {
        Self::spawn(ip, None, Arc::new(|_: &Recorded| Vec::new()), Mode::Silent).await
    }

    async fn spawn(ip: &str, tls: Option<TlsAcceptor>, respond: Respond, mode: Mode) -> Self {
        assert!(ip.starts_with("127."), "tests bind loopback only");
        let listener = TcpListener::bind((ip, 0)).await.expect("bind test server");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (reqs, conns) = (requests.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                let (tls, respond, reqs) = (tls.clone(), respond.clone(), reqs.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                serve(s, mode, &respond, &reqs).await;
                            }
                        }
                        None => serve(stream, mode, &respond, &reqs).await,
                    }
                });
            }
        });
        TestServer {
            addr,
            requests,
            connections,
            accept,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    mode: Mode,
    respond: &Respond,
    requests: &Mutex<Vec<Recorded>>,
) {
    if let Mode::Silent = mode {
        let mut sink = [0u8; 1024];
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
        return;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let recorded = Recorded {
        method: request_line.next().unwrap_or("").to_string(),
        path: request_line.next().unwrap_or("").to_string(),
        headers: lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect(),
    };
    let answer = respond(&recorded);
    requests.lock().unwrap().push(recorded);
    match mode {
        Mode::Endless => {
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n";
            if s.write_all(head).await.is_err() {
                return;
            }
            let block = vec![b'y'; 16384];
            while s.write_all(&block).await.is_ok() {}
        }
        _ => {
            let _ = s.write_all(&answer).await;
            let _ = s.shutdown().await;
        }
    }
}

/// A complete response with Content-Length and `Connection: close`.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} Test\r\n").into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// Serves the self-signed test identity.
pub fn tls_acceptor() -> TlsAcceptor {
    let cert = CertificateDer::from_pem_slice(CERT_PEM.as_bytes()).expect("test cert");
    let key = PrivateKeyDer::from_pem_slice(KEY_PEM.as_bytes()).expect("test key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    TlsAcceptor::from(Arc::new(config))
}
