//! `ironlet drill cert-rotation`: against a running node, force N rotations of both
//! identities while calling 10250 over mTLS (one kept-alive connection and a new connection
//! per request) and watching the node's API responses; then write an evidence report (JSON
//! and text) and exit 1 unless every check passed.
//!
//! The trigger is the agent's request file (`<cert-dir>/rotation-request.json`, see
//! `tls::control`): root-only, audited, no network surface. The drill therefore runs as
//! root on the node.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;

use crate::config::DEFAULT_ROOT_DIR;
use crate::tls::control::{self, RotationRecord, RotationRequest};
use crate::tls::profile::IdentityKind;

#[derive(clap::Args, Debug)]
pub struct DrillArgs {
    #[command(subcommand)]
    pub command: DrillCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum DrillCommand {
    /// Force certificate rotations on a running node and prove nothing dropped.
    CertRotation(CertRotationArgs),
}

#[derive(clap::Args, Debug)]
pub struct CertRotationArgs {
    /// The agent's --root-dir
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT_DIR)]
    pub root_dir: PathBuf,
    /// The agent's --cert-dir [default: <root-dir>/pki]
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Rotations of each identity
    #[arg(long, default_value_t = 3)]
    pub rotations: u32,
    /// The kubelet API, e.g. https://127.0.0.1:10250
    #[arg(long, default_value = "https://127.0.0.1:10250")]
    pub server: String,
    /// CA bundle that verifies the serving certificate (the cluster CA)
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// Client certificate and key for 10250 (mTLS)
    #[arg(long, value_name = "FILE")]
    pub client_cert: PathBuf,
    #[arg(long, value_name = "FILE")]
    pub client_key: PathBuf,
    /// Path requested on 10250
    #[arg(long, default_value = "/healthz")]
    pub path: String,
    /// Pause between requests of each caller (milliseconds)
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Longest wait for one rotation (seconds)
    #[arg(long, default_value_t = 300)]
    pub timeout_seconds: u64,
    /// Where the JSON and text reports are written [default: <root-dir>/drills]
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Output on stdout: text or json
    #[arg(short = 'o', long, default_value = "text")]
    pub output: String,
}

pub fn run(args: DrillArgs) -> anyhow::Result<()> {
    match args.command {
        DrillCommand::CertRotation(a) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(cert_rotation(a))
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    failed: AtomicU64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CallerReport {
    sent: u64,
    failed: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DrillRotation {
    identity: IdentityKind,
    request_id: String,
    old_serial: Option<String>,
    new_serial: String,
    csr_name: String,
    requested_at: String,
    issued_at: String,
    published_at: String,
    failed_attempts: u32,
    /// The new serving certificate was seen by a new connection.
    served: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    kind: &'static str,
    node_root_dir: String,
    server: String,
    started_at: String,
    finished_at: String,
    agent_pid_before: u32,
    agent_pid_after: u32,
    rotations_requested_per_identity: u32,
    identities: Vec<IdentityKind>,
    rotations: Vec<DrillRotation>,
    kubelet_api_kept_alive: CallerReport,
    kubelet_api_new_connections: CallerReport,
    kubelet_api_sent: u64,
    kubelet_api_failed: u64,
    serving_serials_seen: Vec<String>,
    node_api_responses: u64,
    node_api_unauthorized: u64,
    result: &'static str,
    failures: Vec<String>,
}

fn iso(unix: f64) -> String {
    jiff::Timestamp::from_nanosecond((unix * 1e9) as i128)
        .map_or_else(|_| unix.to_string(), |t| t.to_string())
}

fn tls_config(a: &CertRotationArgs) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let policy = crate::tls::TlsPolicy::from_config(None, &[])?;
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::tls::load_certs(&a.ca)? {
        roots.add(c)?;
    }
    let chain = crate::tls::load_certs(&a.client_cert)?;
    let key = crate::tls::load_key(&a.client_key)?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(policy.provider()))
        .with_protocol_versions(policy.versions())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every new connection is a full handshake, so it shows the current certificate.
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

struct Target {
    host: String,
    port: u16,
    name: ServerName<'static>,
    path: String,
    tls: Arc<rustls::ClientConfig>,
}

type Conn = (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    Option<String>,
);

async fn connect(t: &Target) -> anyhow::Result<Conn> {
    let tcp = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((t.host.as_str(), t.port)),
    )
    .await
    .context("connect timed out")??;
    let tls = tokio_rustls::TlsConnector::from(t.tls.clone())
        .connect(t.name.clone(), tcp)
        .await?;
    let serial = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c: &CertificateDer<'_>| crate::tls::validate::inspect(c).ok())
        .map(|i| i.serial);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, serial))
}

async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    t: &Target,
) -> anyhow::Result<()> {
    sender.ready().await?;
    let req = http::Request::get(t.path.as_str())
        .header("host", &t.host)
        .body(Empty::new())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req)).await??;
    let status = resp.status();
    let _ = resp.into_body().collect().await?;
    if !status.is_success() {
        anyhow::bail!("HTTP {status}");
    }
    Ok(())
}

/// A caller on one kept-alive connection (reconnecting only when the server closes it
/// between requests, which counts as a failure if a request was lost).
async fn kept_alive(
    t: Arc<Target>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    interval: Duration,
) {
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.as_ref().is_none_or(|c| c.0.is_closed()) {
            conn = connect(&t).await.ok();
        }
        counts.sent.fetch_add(1, Ordering::Relaxed);
        let ok = match conn.as_mut() {
            Some((s, _)) => get(s, &t).await.is_ok(),
            None => false,
        };
        if !ok {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            conn = None;
        }
        tokio::time::sleep(interval).await;
    }
}

/// A caller making a new connection (a full handshake) per request; records the serials.
async fn new_connections(
    t: Arc<Target>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    interval: Duration,
    serials: Arc<std::sync::Mutex<Vec<String>>>,
) {
    while !stop.load(Ordering::Relaxed) {
        counts.sent.fetch_add(1, Ordering::Relaxed);
        let ok = match connect(&t).await {
            Ok((mut s, serial)) => {
                if let Some(serial) = serial {
                    let mut v = serials.lock().unwrap_or_else(|p| p.into_inner());
                    if !v.contains(&serial) {
                        v.push(serial);
                    }
                }
                get(&mut s, &t).await.is_ok()
            }
            Err(_) => false,
        };
        if !ok {
            counts.failed.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(interval).await;
    }
}

fn agent_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

async fn cert_rotation(a: CertRotationArgs) -> anyhow::Result<()> {
    let started = control::now_f64();
    let cert_dir = a.cert_dir.clone().unwrap_or_else(|| a.root_dir.join("pki"));
    let before = control::read_status(&a.root_dir)
        .map_err(|e| anyhow::anyhow!("is the agent running? {e}"))?;
    if !agent_alive(before.pid) {
        anyhow::bail!(
            "the agent (pid {}) named in the status file is not running",
            before.pid
        );
    }
    let identities: Vec<IdentityKind> = [IdentityKind::Client, IdentityKind::Serving]
        .into_iter()
        .filter(|k| {
            before
                .identities
                .get(k.as_str())
                .is_some_and(|s| s.source == "rotation")
        })
        .collect();
    if identities.is_empty() {
        anyhow::bail!(
            "the agent rotates no certificate (rotateCertificates / serverTLSBootstrap are off)"
        );
    }
    let uri: http::Uri = a.server.parse().context("--server")?;
    let host = uri
        .host()
        .context("--server needs a host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let name = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.clone())?,
    };
    let target = Arc::new(Target {
        port: uri.port_u16().unwrap_or(10250),
        host,
        name,
        path: a.path.clone(),
        tls: tls_config(&a)?,
    });
    // The API is reachable before anything is rotated, or the drill proves nothing.
    let (mut s, first_serial) = connect(&target)
        .await
        .context("kubelet API unreachable before the drill")?;
    get(&mut s, &target)
        .await
        .context("kubelet API refused the drill's client before the drill")?;
    drop(s);

    let stop = Arc::new(AtomicBool::new(false));
    let kept = Arc::new(Counts::default());
    let fresh = Arc::new(Counts::default());
    let serials = Arc::new(std::sync::Mutex::new(
        first_serial.into_iter().collect::<Vec<_>>(),
    ));
    let interval = Duration::from_millis(a.interval_ms.max(10));
    let callers = [
        tokio::spawn(kept_alive(
            target.clone(),
            kept.clone(),
            stop.clone(),
            interval,
        )),
        tokio::spawn(new_connections(
            target.clone(),
            fresh.clone(),
            stop.clone(),
            interval,
            serials.clone(),
        )),
    ];

    let mut failures = Vec::new();
    let mut done: Vec<RotationRecord> = Vec::new();
    for i in 1..=a.rotations {
        let id = format!("drill-{}-{}-{i}", std::process::id(), started as u64);
        let req = RotationRequest {
            api_version: control::REQUEST_API_VERSION.into(),
            kind: control::REQUEST_KIND.into(),
            id: id.clone(),
            identities: identities.clone(),
            requested_by: "ironlet drill cert-rotation".into(),
        };
        control::write_request(&cert_dir, &req)
            .map_err(|e| anyhow::anyhow!("{}: {e}", cert_dir.display()))?;
        let deadline = Instant::now() + Duration::from_secs(a.timeout_seconds);
        loop {
            let st = control::read_status(&a.root_dir).map_err(|e| anyhow::anyhow!(e))?;
            let got: Vec<RotationRecord> = st
                .rotations
                .iter()
                .filter(|r| r.request_id.as_deref() == Some(id.as_str()))
                .cloned()
                .collect();
            if identities
                .iter()
                .all(|k| got.iter().any(|r| r.identity == *k))
            {
                done.extend(got);
                break;
            }
            if Instant::now() > deadline {
                failures.push(format!(
                    "rotation {i} ({id}) did not complete within {}s",
                    a.timeout_seconds
                ));
                done.extend(got);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Let the callers use the new certificates before the next rotation.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        let _ = c.await;
    }
    let after = control::read_status(&a.root_dir).map_err(|e| anyhow::anyhow!(e))?;
    let seen = serials.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let rotations: Vec<DrillRotation> = done
        .iter()
        .map(|r| DrillRotation {
            identity: r.identity,
            request_id: r.request_id.clone().unwrap_or_default(),
            old_serial: r.old_serial.clone(),
            new_serial: r.new_serial.clone(),
            csr_name: r.csr_name.clone(),
            requested_at: iso(r.requested_at),
            issued_at: iso(r.issued_at),
            published_at: iso(r.published_at),
            failed_attempts: r.failed_attempts,
            served: (r.identity == IdentityKind::Serving).then(|| seen.contains(&r.new_serial)),
        })
        .collect();
    for r in &rotations {
        if r.old_serial.as_deref() == Some(r.new_serial.as_str()) {
            failures.push(format!(
                "{} rotation {}: serial did not change",
                r.identity.as_str(),
                r.request_id
            ));
        }
        if r.served == Some(false) {
            failures.push(format!(
                "serving rotation {}: new serial {} never seen by a new connection",
                r.request_id, r.new_serial
            ));
        }
    }
    let (ks, kf) = (
        kept.sent.load(Ordering::Relaxed),
        kept.failed.load(Ordering::Relaxed),
    );
    let (fs, ff) = (
        fresh.sent.load(Ordering::Relaxed),
        fresh.failed.load(Ordering::Relaxed),
    );
    if kf + ff > 0 {
        failures.push(format!("{} kubelet API requests failed", kf + ff));
    }
    let unauthorized = after
        .api_unauthorized
        .saturating_sub(before.api_unauthorized);
    if unauthorized > 0 {
        failures.push(format!(
            "the node got {unauthorized} 401 answers from the API server"
        ));
    }
    if after.pid != before.pid || !agent_alive(after.pid) {
        failures.push("the agent restarted during the drill".into());
    }
    let report = Report {
        kind: "CertificateRotationDrill",
        node_root_dir: a.root_dir.display().to_string(),
        server: a.server.clone(),
        started_at: iso(started),
        finished_at: iso(control::now_f64()),
        agent_pid_before: before.pid,
        agent_pid_after: after.pid,
        rotations_requested_per_identity: a.rotations,
        identities: identities.clone(),
        rotations,
        kubelet_api_kept_alive: CallerReport {
            sent: ks,
            failed: kf,
        },
        kubelet_api_new_connections: CallerReport {
            sent: fs,
            failed: ff,
        },
        kubelet_api_sent: ks + fs,
        kubelet_api_failed: kf + ff,
        serving_serials_seen: seen,
        node_api_responses: after.api_responses.saturating_sub(before.api_responses),
        node_api_unauthorized: unauthorized,
        result: if failures.is_empty() { "pass" } else { "fail" },
        failures,
    };
    let json = serde_json::to_string_pretty(&report)?;
    let text = text_report(&report);
    let dir = a
        .report_dir
        .clone()
        .unwrap_or_else(|| a.root_dir.join("drills"));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
    }
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let base = dir.join(format!("cert-rotation-{stamp}"));
    crate::atomic_write::write_atomic(&base.with_extension("json"), json.as_bytes())?;
    crate::atomic_write::write_atomic(&base.with_extension("txt"), text.as_bytes())?;
    if a.output == "json" {
        println!("{json}");
    } else {
        print!("{text}");
        println!(
            "reports: {} and .txt",
            base.with_extension("json").display()
        );
    }
    if report.result != "pass" {
        anyhow::bail!("cert-rotation drill failed: {}", report.failures.join("; "));
    }
    Ok(())
}

fn text_report(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "Certificate rotation drill: {}", r.result.to_uppercase());
    let _ = writeln!(
        s,
        "node {} (agent pid {} -> {}), kubelet API {}",
        r.node_root_dir, r.agent_pid_before, r.agent_pid_after, r.server
    );
    let _ = writeln!(s, "from {} to {}", r.started_at, r.finished_at);
    let _ = writeln!(
        s,
        "{:<8} {:<34} {:<34} {:<34} {:<24} {:<24} {:<24}",
        "IDENTITY", "OLD SERIAL", "NEW SERIAL", "CSR", "REQUESTED", "ISSUED", "PUBLISHED"
    );
    for x in &r.rotations {
        let _ = writeln!(
            s,
            "{:<8} {:<34} {:<34} {:<34} {:<24} {:<24} {:<24}",
            x.identity.as_str(),
            x.old_serial.as_deref().unwrap_or("-"),
            x.new_serial,
            x.csr_name,
            x.requested_at,
            x.issued_at,
            x.published_at
        );
    }
    let _ = writeln!(
        s,
        "kubelet API requests: {} sent, {} failed (kept-alive {}/{}, new connections {}/{})",
        r.kubelet_api_sent,
        r.kubelet_api_failed,
        r.kubelet_api_kept_alive.sent,
        r.kubelet_api_kept_alive.failed,
        r.kubelet_api_new_connections.sent,
        r.kubelet_api_new_connections.failed
    );
    let _ = writeln!(
        s,
        "serving serials seen by new connections: {}",
        r.serving_serials_seen.join(", ")
    );
    let _ = writeln!(
        s,
        "node API responses: {} ({} unauthorized)",
        r.node_api_responses, r.node_api_unauthorized
    );
    for f in &r.failures {
        let _ = writeln!(s, "FAILURE: {f}");
    }
    s
}
