//! The certificate settings of the node: `--bootstrap-kubeconfig`, `--cert-dir`,
//! `rotateCertificates` (`--rotate-certificates`) and `serverTLSBootstrap`
//! (`--rotate-server-certificates`). Pure validation; nothing is read or created here.

use std::path::PathBuf;

use super::error::Source;
use super::file::KubeletConfiguration;
use super::{ConfigError, RunFlags, ServingTls};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificates {
    /// Credentials used once to obtain the node's client certificate (TLS bootstrap).
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// Where issued pairs live; upstream's default `<root-dir>/pki`.
    pub cert_dir: PathBuf,
    /// Rotate the client certificate before it expires.
    pub rotate_certificates: bool,
    /// Get the 10250 serving certificate from the API server and rotate it.
    pub server_tls_bootstrap: bool,
}

pub(super) fn build(
    src: Source,
    raw: &KubeletConfiguration,
    flags: &RunFlags,
    root_dir: &std::path::Path,
    kubeconfig: Option<&std::path::Path>,
    tls: &ServingTls,
) -> Result<Certificates, ConfigError> {
    let abs = |field: &str, p: &Option<PathBuf>| -> Result<Option<PathBuf>, ConfigError> {
        match p {
            Some(p) if !p.is_absolute() => {
                Err(Source::FLAGS.invalid(field, format!("{p:?} must be an absolute path")))
            }
            other => Ok(other.clone()),
        }
    };
    let bootstrap_kubeconfig = abs("--bootstrap-kubeconfig", &flags.bootstrap_kubeconfig)?;
    let cert_dir = abs("--cert-dir", &flags.cert_dir)?.unwrap_or_else(|| root_dir.join("pki"));
    let rotate_certificates = flags
        .rotate_certificates
        .or(raw.rotate_certificates)
        .unwrap_or(false);
    let (server_src, server_field) = if flags.rotate_server_certificates.is_some() {
        (Source::FLAGS, "--rotate-server-certificates")
    } else {
        (src, "serverTLSBootstrap")
    };
    let server_tls_bootstrap = flags
        .rotate_server_certificates
        .or(raw.server_tls_bootstrap)
        .unwrap_or(false);
    if bootstrap_kubeconfig.is_some() && kubeconfig.is_none() {
        return Err(Source::FLAGS.invalid(
            "--bootstrap-kubeconfig",
            "needs --kubeconfig: the issued credentials are written there",
        ));
    }
    if rotate_certificates && kubeconfig.is_none() {
        let (s, f) = if flags.rotate_certificates.is_some() {
            (Source::FLAGS, "--rotate-certificates")
        } else {
            (src, "rotateCertificates")
        };
        return Err(s.invalid(
            f,
            "needs --kubeconfig: certificates are requested from the API server",
        ));
    }
    if server_tls_bootstrap {
        if kubeconfig.is_none() {
            return Err(server_src.invalid(
                server_field,
                "needs --kubeconfig: the serving certificate is requested from the API server",
            ));
        }
        if tls.cert_file.is_some() {
            return Err(server_src.invalid(
                server_field,
                "conflicts with tlsCertFile/tlsPrivateKeyFile: choose the API server's certificate or the files, not both",
            ));
        }
    }
    Ok(Certificates {
        bootstrap_kubeconfig,
        cert_dir,
        rotate_certificates,
        server_tls_bootstrap,
    })
}
