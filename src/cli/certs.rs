//! `ironlet certs`: `status` (the node's client and serving certificates, from the cert dir
//! and the agent's status file; exit 1 when one is expired or inside its profile's minimum)
//! and `dev-pki` (a throwaway CA with serving and client certificates, for trying the
//! secure port on a standalone node; development only).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use serde::Serialize;

use crate::config::DEFAULT_ROOT_DIR;
use crate::tls::control;
use crate::tls::profile::{self, IdentityKind};
use crate::tls::store::{self, Store};
use crate::tls::validate::{self, CertInfo};

#[derive(clap::Args, Debug)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub command: CertsCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum CertsCommand {
    /// The node's client and serving certificates; exit 1 when one is expired or expires
    /// within its profile's minimum.
    Status(StatusArgs),
    /// DEVELOPMENT ONLY: write a throwaway CA, a serving certificate for this host and a
    /// client certificate (CN admin, O system:masters) into DIR.
    DevPki(DevPkiArgs),
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The agent's --root-dir
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT_DIR)]
    pub root_dir: PathBuf,
    /// The agent's --cert-dir [default: <root-dir>/pki]
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Output format: text or json
    #[arg(short = 'o', long, default_value = "text")]
    pub output: String,
}

#[derive(clap::Args, Debug)]
pub struct DevPkiArgs {
    /// Directory to create (0700); existing files are never overwritten
    pub dir: PathBuf,
    /// Name for the serving certificate [default: the machine hostname]
    #[arg(long)]
    pub hostname: Option<String>,
}

pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    match args.command {
        CertsCommand::Status(a) => status(a),
        CertsCommand::DevPki(a) => dev_pki(a),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityReport {
    pub identity: IdentityKind,
    /// ok, expiring, expired or absent.
    pub state: String,
    pub source: Option<String>,
    pub file: Option<String>,
    #[serde(flatten)]
    pub certificate: Option<CertInfo>,
    pub seconds_left: Option<i64>,
    pub next_rotation: Option<i64>,
    pub key_file_mode: Option<String>,
    pub last_error: Option<String>,
}

fn report_for(
    kind: IdentityKind,
    cert_dir: &Path,
    status: Option<&control::CertStatus>,
    now: SystemTime,
) -> IdentityReport {
    let p = profile::profile(kind);
    let st = status.and_then(|s| s.identities.get(kind.as_str()));
    let mut rep = IdentityReport {
        identity: kind,
        state: "absent".into(),
        source: st.map(|s| s.source.clone()).filter(|s| !s.is_empty()),
        file: None,
        certificate: None,
        seconds_left: None,
        next_rotation: st.and_then(|s| s.next_rotation),
        key_file_mode: None,
        last_error: st.and_then(|s| s.last_error.clone()),
    };
    let store = Store::new(cert_dir, &p.file_prefix);
    // The cert dir is read without repairing it: `recover` is the agent's job.
    let stored = std::fs::canonicalize(store.current_path())
        .ok()
        .and_then(|target| {
            use std::os::unix::fs::PermissionsExt;
            let text = std::fs::read_to_string(&target).ok()?;
            let (chain, _, _) = store::split_pem(&target, &text).ok()?;
            let mode = std::fs::metadata(&target).ok()?.permissions().mode() & 0o777;
            Some((target, chain, mode))
        });
    let info = match (&stored, st.and_then(|s| s.certificate.clone())) {
        (Some((target, chain, mode)), _) if rep.source.as_deref() != Some("file") => {
            rep.file = Some(target.display().to_string());
            rep.key_file_mode = Some(format!("{mode:04o}"));
            rep.source.get_or_insert_with(|| "rotation".into());
            chain.first().and_then(|c| validate::inspect(c).ok())
        }
        (_, Some(info)) => {
            rep.file = st.and_then(|s| s.file.clone());
            Some(info)
        }
        _ => None,
    };
    if let Some(info) = info {
        let left = info.remaining(now);
        let minimum = info.lifetime().as_secs_f64() * p.minimum_remaining_fraction;
        rep.state = if left <= 0 {
            "expired"
        } else if (left as f64) < minimum {
            "expiring"
        } else {
            "ok"
        }
        .into();
        rep.seconds_left = Some(left);
        rep.certificate = Some(info);
    }
    rep
}

fn ts(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(|_| unix.to_string(), |t| t.to_string())
}

fn status(a: StatusArgs) -> anyhow::Result<()> {
    let cert_dir = a.cert_dir.clone().unwrap_or_else(|| a.root_dir.join("pki"));
    let st = control::read_status(&a.root_dir).ok();
    let now = SystemTime::now();
    let reports: Vec<IdentityReport> = [IdentityKind::Client, IdentityKind::Serving]
        .into_iter()
        .map(|k| report_for(k, &cert_dir, st.as_ref(), now))
        .collect();
    let bad = reports
        .iter()
        .any(|r| r.state == "expired" || r.state == "expiring");
    if a.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "identities": reports }))?
        );
    } else {
        for r in &reports {
            println!("{} certificate: {}", r.identity.as_str(), r.state);
            if let Some(c) = &r.certificate {
                println!("  source:        {}", r.source.as_deref().unwrap_or("-"));
                println!("  file:          {}", r.file.as_deref().unwrap_or("-"));
                println!("  subject:       {}", c.subject);
                println!(
                    "  SANs:          {}",
                    if c.sans.is_empty() {
                        "-".into()
                    } else {
                        c.sans.join(", ")
                    }
                );
                println!("  issuer:        {}", c.issuer);
                println!("  serial:        {}", c.serial);
                println!(
                    "  key:           {} (file mode {})",
                    c.key_type,
                    r.key_file_mode.as_deref().unwrap_or("-")
                );
                println!("  not before:    {}", ts(c.not_before));
                println!("  not after:     {}", ts(c.not_after));
                println!("  time left:     {}s", r.seconds_left.unwrap_or(0));
                println!(
                    "  next rotation: {}",
                    r.next_rotation.map_or_else(|| "-".into(), ts)
                );
            }
            if let Some(e) = &r.last_error {
                println!("  last error:    {e}");
            }
        }
    }
    if bad {
        anyhow::bail!("a certificate is expired or inside its minimum remaining validity");
    }
    Ok(())
}

fn dev_pki(a: DevPkiArgs) -> anyhow::Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let host = match a.hostname {
        Some(h) => h,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("hostname")?
            .trim()
            .to_lowercase(),
    };
    store::prepare_dir(&a.dir)?;
    let new_key = || KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256);
    let days = |p: &mut CertificateParams, d: i64| {
        let now = jiff::Timestamp::now();
        let to = |t: jiff::Timestamp| {
            rcgen::date_time_ymd(1970, 1, 1)
                + std::time::Duration::from_secs(t.as_second().max(0) as u64)
        };
        p.not_before = to(now - jiff::SignedDuration::from_secs(60));
        p.not_after = to(now + jiff::SignedDuration::from_hours(24 * d));
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("ironlet dev CA ({host}) - development only"),
    );
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    days(&mut ca, 30);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, new_key()?)?;

    let mut server = CertificateParams::new(vec![
        host.clone(),
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
    ])?;
    server
        .distinguished_name
        .push(DnType::CommonName, host.clone());
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    days(&mut server, 30);
    let server_key = new_key()?;
    let server = server.signed_by(&server_key, &ca)?;

    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client.distinguished_name.push(DnType::CommonName, "admin");
    client
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    days(&mut client, 30);
    let client_key = new_key()?;
    let client = client.signed_by(&client_key, &ca)?;

    let files: [(&str, String, bool); 5] = [
        ("ca.crt", ca.pem(), false),
        ("server.crt", server.pem(), false),
        ("server.key", server_key.serialize_pem(), true),
        ("client.crt", client.pem(), false),
        ("client.key", client_key.serialize_pem(), true),
    ];
    for (name, body, _secret) in &files {
        // Every file 0600 at creation; none is overwritten.
        store::create_private(&a.dir.join(name), body.as_bytes())?;
    }
    // The CA key is not written: nothing else can be signed with this CA.
    let d = a.dir.display();
    println!("DEVELOPMENT ONLY: a throwaway CA (its key was not kept), valid 30 days.");
    println!("KubeletConfiguration lines for the secure port:");
    println!("  tlsCertFile: {d}/server.crt\n  tlsPrivateKeyFile: {d}/server.key");
    println!("  authentication:\n    x509:\n      clientCAFile: {d}/ca.crt");
    println!(
        "A client: curl --cacert {d}/ca.crt --cert {d}/client.crt --key {d}/client.key https://127.0.0.1:10250/healthz"
    );
    Ok(())
}
