//! Live probes, made from outside the agent as an auditor would: the node's listening
//! sockets (/proc/net/tcp, tcp6), TLS handshakes and an anonymous request against the
//! kubelet API, certificates as files, /proc/sys, and the seccomp state of pod processes.
//! Nothing here trusts what the agent says about itself.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, SupportedCipherSuite,
};

const TIMEOUT: Duration = Duration::from_secs(5);

/// One listening TCP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
}

/// Parses a /proc/net/tcp or tcp6 table; only sockets in LISTEN (0A) state.
pub fn parse_tcp_table(text: &str) -> Vec<Listener> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            continue;
        }
        let Some((a, p)) = f[1].split_once(':') else {
            continue;
        };
        let (Ok(port), Ok(inode)) = (u16::from_str_radix(p, 16), f[9].parse()) else {
            continue;
        };
        let Some(addr) = decode_addr(a) else { continue };
        out.push(Listener { addr, port, inode });
    }
    out
}

/// The kernel prints addresses as host-order 32-bit words in hex.
fn decode_addr(hex: &str) -> Option<IpAddr> {
    let words: Option<Vec<u32>> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect();
    let words = words?;
    match (hex.len(), words.as_slice()) {
        (8, [w]) => Some(IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes()))),
        (32, ws) => {
            let mut b = [0u8; 16];
            for (i, w) in ws.iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            let v6 = Ipv6Addr::from(b);
            Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        _ => None,
    }
}

/// Every listening TCP socket in this network namespace.
pub fn listeners() -> Result<Vec<Listener>, String> {
    let mut out = Vec::new();
    for t in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(t) {
            Ok(text) => out.extend(parse_tcp_table(&text)),
            Err(e) if t.ends_with('6') && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{t}: {e}")),
        }
    }
    Ok(out)
}

/// The socket inodes `pid` holds open.
pub fn socket_inodes(pid: u32) -> Result<Vec<u64>, String> {
    let dir = format!("/proc/{pid}/fd");
    let rd = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    Ok(rd
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect())
}

/// Accepts any server certificate but checks the handshake signatures with it. The probe
/// judges what the server offers and sends no credentials, so who the server is does not
/// matter here; the certificate it presents is returned for the expiry check. Used only by
/// the self-audit's probes.
#[derive(Debug)]
struct InsecureProbeVerifier(Arc<CryptoProvider>);

impl ServerCertVerifier for InsecureProbeVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A completed handshake.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub version: String,
    pub suite: String,
    pub peer_cert: Option<Vec<u8>>,
}

fn client_config(
    suites: Vec<SupportedCipherSuite>,
    tls13: bool,
) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(CryptoProvider {
        cipher_suites: suites,
        ..ring::default_provider()
    });
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12]
    };
    let mut cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(InsecureProbeVerifier(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn connect(
    addr: SocketAddr,
    cfg: Arc<ClientConfig>,
) -> Result<(ClientConnection, TcpStream), String> {
    let mut sock =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    sock.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut conn = ClientConnection::new(cfg, ServerName::IpAddress(addr.ip().into()))
        .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
    }
    Ok((conn, sock))
}

/// One handshake offering exactly `suite` (TLS 1.2) or the TLS 1.3 suites.
pub fn handshake(
    addr: SocketAddr,
    suite: Option<SupportedCipherSuite>,
) -> Result<Handshake, String> {
    let (suites, tls13) = match suite {
        Some(s) => (vec![s], false),
        None => (
            ring::default_provider()
                .cipher_suites
                .into_iter()
                .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
                .collect(),
            true,
        ),
    };
    let (conn, _sock) = connect(addr, client_config(suites, tls13)?)?;
    Ok(Handshake {
        version: conn
            .protocol_version()
            .map_or("?".into(), |v| format!("{v:?}")),
        suite: conn
            .negotiated_cipher_suite()
            .map_or("?".into(), |s| format!("{:?}", s.suite())),
        peer_cert: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec()),
    })
}

/// The TLS 1.2 suites a client can offer through rustls (all ECDHE with AEAD).
pub fn tls12_suites() -> Vec<SupportedCipherSuite> {
    ring::default_provider()
        .cipher_suites
        .into_iter()
        .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
        .collect()
}

/// Sends `GET /pods` without credentials and returns the HTTP status code.
pub fn anonymous_status(addr: SocketAddr) -> Result<u16, String> {
    let (mut conn, mut sock) = connect(
        addr,
        client_config(ring::default_provider().cipher_suites, true)?,
    )?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET /pods HTTP/1.1\r\nHost: kubelet\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
        match tls.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if buf.is_empty() => return Err(e.to_string()),
            Err(_) => break,
        }
    }
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "no HTTP status line in {:?}",
                line.lines().next().unwrap_or("")
            )
        })
}

/// A weak client that rustls cannot be: `openssl s_client` with TLS 1.0, 1.1, CBC or static
/// RSA suites. Ok(true) when the handshake completed.
pub fn openssl_handshake(addr: SocketAddr, args: &[&str]) -> Result<bool, String> {
    let mut child = std::process::Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("openssl: {e}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("openssl s_client did not finish within 15 s".into());
            }
        }
    }
    let mut text = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut text);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut text);
    }
    Ok(text.contains("Cipher is ") && !text.contains("Cipher is (NONE)"))
}

/// The weak handshakes to try, by name, with their s_client arguments.
pub const WEAK_CLIENTS: &[(&str, &[&str])] = &[
    ("TLS 1.0", &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]),
    ("TLS 1.1", &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]),
    (
        "TLS 1.2 CBC",
        &[
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA@SECLEVEL=0",
        ],
    ),
    (
        "TLS 1.2 static RSA",
        &[
            "-tls1_2",
            "-cipher",
            "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA@SECLEVEL=0",
        ],
    ),
];

/// A certificate's validity window (unix seconds) and subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertValidity {
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
}

/// The first certificate of DER bytes.
pub fn cert_validity_der(der: &[u8]) -> Result<CertValidity, String> {
    let (_, c) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    Ok(CertValidity {
        subject: c.subject().to_string(),
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
    })
}

/// The first certificate of PEM text.
pub fn cert_validity_pem(pem: &[u8]) -> Result<CertValidity, String> {
    let (_, p) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    if p.label != "CERTIFICATE" {
        return Err(format!(
            "first PEM block is {:?}, not a CERTIFICATE",
            p.label
        ));
    }
    cert_validity_der(&p.contents)
}

/// The sysctls upstream's protectKernelDefaults requires, with their values.
pub const KERNEL_DEFAULTS: &[(&str, &str)] = &[
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// (sysctl, wanted, actual) for each of [`KERNEL_DEFAULTS`].
pub fn kernel_defaults(proc_sys: &Path) -> Vec<(String, &'static str, Result<String, String>)> {
    KERNEL_DEFAULTS
        .iter()
        .map(|(k, want)| {
            let p = proc_sys.join(k);
            let got = std::fs::read_to_string(&p)
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("{}: {e}", p.display()));
            (k.replace('/', "."), *want, got)
        })
        .collect()
}

/// Whether a /proc/<pid>/cgroup text puts the process below `prefix` (e.g. "/kubepods").
pub fn in_cgroup(cgroup_text: &str, prefix: &str) -> bool {
    cgroup_text.lines().any(|l| {
        l.splitn(3, ':').nth(2).is_some_and(|p| {
            p == prefix
                || p.strip_prefix(prefix)
                    .is_some_and(|r| r.starts_with('/') || r.starts_with('.'))
        })
    })
}

/// (pid, Seccomp mode) of every process whose cgroup is below `prefix`.
pub fn pod_processes(prefix: &str) -> Result<Vec<(u32, Option<u32>)>, String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc")
        .map_err(|e| format!("/proc: {e}"))?
        .flatten()
    {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cg) = std::fs::read_to_string(e.path().join("cgroup")) else {
            continue;
        };
        if !in_cgroup(&cg, prefix) {
            continue;
        }
        let Ok(st) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        out.push((pid, crate::confine::inspect::parse_status(pid, &st).seccomp));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_tables_decode() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:2838 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n\
   1: 00000000:280A 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0\n\
   2: 0100007F:2838 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4244 1 0000000000000000 100 0 0 10 0\n";
        let l = parse_tcp_table(v4);
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].addr, l[0].port, l[0].inode),
            ("127.0.0.1".parse().unwrap(), 10296, 4242)
        );
        assert_eq!((l[1].addr, l[1].port), ("0.0.0.0".parse().unwrap(), 10250));
        let v6 = "header\n   0: 00000000000000000000000001000000:2838 00000000000000000000000000000000:0000 0A 0 0 0 0 0 0 77 1\n\
   1: 0000000000000000FFFF00000100007F:2838 00000000000000000000000000000000:0000 0A 0 0 0 0 0 0 78 1\n";
        let l = parse_tcp_table(v6);
        assert_eq!(l[0].addr, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(l[1].addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert!(l.iter().all(|l| l.addr.is_loopback()));
    }

    #[test]
    fn cgroup_membership() {
        assert!(in_cgroup(
            "0::/ironlet-x/kubepods/besteffort/pod1/abc\n",
            "/ironlet-x/kubepods"
        ));
        assert!(in_cgroup("4:memory:/kubepods.slice/x\n", "/kubepods"));
        assert!(!in_cgroup(
            "0::/ironlet-x/kubepodsfoo\n",
            "/ironlet-x/kubepods"
        ));
        assert!(!in_cgroup("0::/system.slice\n", "/kubepods"));
    }
}
