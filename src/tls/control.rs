//! The certificate status the agent publishes (`<root-dir>/status/certs.json`, 0600) and the
//! one way to ask it to rotate early: a request file in the cert dir.
//!
//! Why a file and not a signal or an endpoint: it opens no network surface; only root (or
//! the agent's own user) can create it, because the cert dir is 0700 and the agent refuses
//! a request that is not a regular, single-link file owned by root or itself with no group
//! or other permission bits; it carries an id that goes into the audit line and into every
//! rotation it causes, so the evidence ties back to who asked; and a signal could carry
//! neither the id nor which identities to rotate.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::profile::IdentityKind;
use super::validate::CertInfo;

pub const REQUEST_FILE: &str = "rotation-request.json";
pub const STATUS_FILE: &str = "certs.json";
pub const REQUEST_API_VERSION: &str = "ironlet.dev/v1alpha1";
pub const REQUEST_KIND: &str = "CertificateRotationRequest";
/// Request files larger than this are refused unread.
pub const MAX_REQUEST_BYTES: u64 = 4096;
const POLL: Duration = Duration::from_millis(500);
const KEEP_ROTATIONS: usize = 500;
const KEEP_REQUESTS: usize = 100;

/// Unix time in seconds with fractions.
pub fn now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An operator's request to rotate now.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotationRequest {
    pub api_version: String,
    pub kind: String,
    /// Ties the audit line and the resulting rotations to this request.
    pub id: String,
    pub identities: Vec<IdentityKind>,
    /// Free text for the audit line (e.g. "ironlet drill").
    #[serde(default)]
    pub requested_by: String,
}

/// Parses a request file's bytes (pure; fuzzed).
pub fn parse_request(bytes: &[u8]) -> Result<RotationRequest, String> {
    if bytes.len() as u64 > MAX_REQUEST_BYTES {
        return Err(format!("larger than {MAX_REQUEST_BYTES} bytes"));
    }
    let r: RotationRequest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if r.api_version != REQUEST_API_VERSION || r.kind != REQUEST_KIND {
        return Err(format!(
            "apiVersion/kind must be {REQUEST_API_VERSION} {REQUEST_KIND}"
        ));
    }
    if r.id.is_empty()
        || r.id.len() > 64
        || !r
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err("id: 1 to 64 characters of [A-Za-z0-9._-]".into());
    }
    if r.identities.is_empty() {
        return Err("identities: name client, serving or both".into());
    }
    let mut seen = r.identities.clone();
    seen.sort_by_key(|k| k.as_str());
    seen.dedup();
    if seen.len() != r.identities.len() {
        return Err("identities: listed twice".into());
    }
    if r.requested_by.len() > 256 || r.requested_by.chars().any(char::is_control) {
        return Err("requestedBy: at most 256 printable characters".into());
    }
    Ok(r)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityStatus {
    /// "rotation" (CSR-issued, in the cert dir), "file" (tlsCertFile) or "kubeconfig".
    pub source: String,
    pub file: Option<String>,
    pub certificate: Option<CertInfo>,
    /// Unix seconds of the next planned rotation.
    pub next_rotation: Option<i64>,
    pub last_error: Option<String>,
    pub renew_errors: u64,
}

/// One completed rotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationRecord {
    pub identity: IdentityKind,
    /// deadline, request, missing, expired.
    pub trigger: String,
    pub request_id: Option<String>,
    pub old_serial: Option<String>,
    pub new_serial: String,
    pub csr_name: String,
    pub requested_at: f64,
    pub issued_at: f64,
    pub published_at: f64,
    /// Failed attempts before this one succeeded (rejected certificates included).
    pub failed_attempts: u32,
}

/// One request file the agent read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub id: String,
    pub received_at: f64,
    pub owner_uid: u32,
    pub identities: Vec<IdentityKind>,
    pub requested_by: String,
    /// accepted, or why it was refused.
    pub outcome: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertStatus {
    pub pid: u32,
    pub updated_at: f64,
    pub cert_dir: String,
    pub identities: BTreeMap<String, IdentityStatus>,
    pub rotations: Vec<RotationRecord>,
    pub requests: Vec<RequestRecord>,
    /// The node's API server responses since start, and how many were 401.
    pub api_responses: u64,
    pub api_unauthorized: u64,
}

/// The status, shared by the rotators and written on every change.
#[derive(Clone, Debug)]
pub struct Shared {
    inner: Arc<Mutex<CertStatus>>,
    file: PathBuf,
}

impl Shared {
    pub fn new(root_dir: &Path, cert_dir: &Path) -> Shared {
        let status = CertStatus {
            pid: std::process::id(),
            cert_dir: cert_dir.display().to_string(),
            ..Default::default()
        };
        Shared {
            inner: Arc::new(Mutex::new(status)),
            file: crate::view::status_dir(root_dir).join(STATUS_FILE),
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut CertStatus)) {
        // Held while writing: one writer at a time on the file's temporary name.
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = {
            f(&mut s);
            if s.rotations.len() > KEEP_ROTATIONS {
                let n = s.rotations.len() - KEEP_ROTATIONS;
                s.rotations.drain(..n);
            }
            if s.requests.len() > KEEP_REQUESTS {
                let n = s.requests.len() - KEEP_REQUESTS;
                s.requests.drain(..n);
            }
            s.updated_at = now_f64();
            let (total, unauthorized) = super::metrics::api_responses();
            s.api_responses = total;
            s.api_unauthorized = unauthorized;
            serde_json::to_vec_pretty(&*s).unwrap_or_default()
        };
        if let Some(dir) = self.file.parent() {
            use std::os::unix::fs::DirBuilderExt;
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
        }
        if let Err(e) = crate::atomic_write::write_atomic(&self.file, &bytes) {
            tracing::warn!(file = %self.file.display(), error = %e, "cannot write the certificate status");
        }
    }

    pub fn identity(&self, kind: IdentityKind, f: impl FnOnce(&mut IdentityStatus)) {
        self.update(|s| f(s.identities.entry(kind.as_str().to_owned()).or_default()));
    }

    /// Keeps the API response counters in the file fresh (the drill reads them).
    pub async fn refresh(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last = (u64::MAX, u64::MAX);
        loop {
            tick.tick().await;
            let now = super::metrics::api_responses();
            if now != last {
                last = now;
                self.update(|_| {});
            }
        }
    }
}

/// Reads the status file of the agent under `root_dir`.
pub fn read_status(root_dir: &Path) -> Result<CertStatus, String> {
    let p = crate::view::status_dir(root_dir).join(STATUS_FILE);
    let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))
}

/// Why a request file is not acceptable, judged from its metadata alone.
fn refuse_metadata(meta: &std::fs::Metadata, euid: u32) -> Option<String> {
    if !meta.file_type().is_file() {
        return Some("not a regular file (symlinks are refused)".into());
    }
    if meta.uid() != 0 && meta.uid() != euid {
        return Some(format!(
            "owned by uid {}, not root or the agent",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Some(format!(
            "mode {:o}: group or others have access; write it 0600",
            meta.mode() & 0o777
        ));
    }
    if meta.nlink() != 1 {
        return Some("has more than one link".into());
    }
    if meta.len() > MAX_REQUEST_BYTES {
        return Some(format!("larger than {MAX_REQUEST_BYTES} bytes"));
    }
    None
}

/// Watches `<cert_dir>/rotation-request.json`; each acceptable request is audited, removed
/// and handed to the rotators it names.
pub async fn watch_requests(
    cert_dir: PathBuf,
    status: Shared,
    targets: BTreeMap<&'static str, mpsc::UnboundedSender<String>>,
) {
    let path = cert_dir.join(REQUEST_FILE);
    // The agent created the cert dir, so its owner is the agent's user (no getuid call,
    // which the seccomp policy does not need to allow).
    let euid = std::fs::metadata(&cert_dir).map_or(0, |m| m.uid());
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let received_at = now_f64();
        let owner = meta.uid();
        let verdict = match refuse_metadata(&meta, euid) {
            Some(why) => Err(why),
            None => std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .and_then(|f| {
                    use std::io::Read;
                    let mut buf = Vec::new();
                    f.take(MAX_REQUEST_BYTES + 1).read_to_end(&mut buf)?;
                    Ok(buf)
                })
                .map_err(|e| e.to_string())
                .and_then(|b| parse_request(&b)),
        };
        // Consumed either way, so a bad file is not re-read forever.
        let _ = std::fs::remove_file(&path);
        match verdict {
            Err(why) => {
                tracing::warn!(target: "audit", file = %path.display(), owner_uid = owner, decision = "refused", reason = %why, "certificate rotation request refused");
                status.update(|s| {
                    s.requests.push(RequestRecord {
                        id: String::new(),
                        received_at,
                        owner_uid: owner,
                        identities: Vec::new(),
                        requested_by: String::new(),
                        outcome: format!("refused: {why}"),
                    })
                });
            }
            Ok(req) => {
                let mut missing = Vec::new();
                for id in &req.identities {
                    match targets.get(id.as_str()) {
                        Some(tx) if tx.send(req.id.clone()).is_ok() => {}
                        _ => missing.push(id.as_str()),
                    }
                }
                let outcome = if missing.is_empty() {
                    "accepted".to_owned()
                } else {
                    format!(
                        "accepted; not rotated by this agent (no rotation configured): {}",
                        missing.join(", ")
                    )
                };
                tracing::info!(target: "audit", file = %path.display(), owner_uid = owner, request = %req.id, identities = ?req.identities, requested_by = %req.requested_by, decision = %outcome, "certificate rotation requested");
                status.update(|s| {
                    s.requests.push(RequestRecord {
                        id: req.id.clone(),
                        received_at,
                        owner_uid: owner,
                        identities: req.identities.clone(),
                        requested_by: req.requested_by.clone(),
                        outcome,
                    })
                });
            }
        }
    }
}

/// Writes a request file as root would: 0600 from creation, then renamed into place so the
/// agent never reads half of it.
pub fn write_request(cert_dir: &Path, req: &RotationRequest) -> Result<(), String> {
    let bytes = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    let tmp = cert_dir.join(format!(".{REQUEST_FILE}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    super::store::create_private(&tmp, &bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, cert_dir.join(REQUEST_FILE)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_strictly() {
        let ok = br#"{"apiVersion":"ironlet.dev/v1alpha1","kind":"CertificateRotationRequest","id":"drill-1","identities":["client","serving"]}"#;
        let r = parse_request(ok).unwrap();
        assert_eq!(
            r.identities,
            vec![IdentityKind::Client, IdentityKind::Serving]
        );
        for bad in [
            &br#"{"apiVersion":"v1","kind":"CertificateRotationRequest","id":"a","identities":["client"]}"#[..],
            br#"{"apiVersion":"ironlet.dev/v1alpha1","kind":"CertificateRotationRequest","id":"a b","identities":["client"]}"#,
            br#"{"apiVersion":"ironlet.dev/v1alpha1","kind":"CertificateRotationRequest","id":"a","identities":[]}"#,
            br#"{"apiVersion":"ironlet.dev/v1alpha1","kind":"CertificateRotationRequest","id":"a","identities":["client","client"]}"#,
            br#"{"apiVersion":"ironlet.dev/v1alpha1","kind":"CertificateRotationRequest","id":"a","identities":["ca"]}"#,
            br#"{"apiVersion":"ironlet.dev/v1alpha1","kind":"CertificateRotationRequest","id":"a","identities":["client"],"x":1}"#,
            b"not json",
        ] {
            assert!(parse_request(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse_request(&vec![b' '; 5000]).is_err());
    }

    #[test]
    fn request_files_others_could_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let euid = rustix::process::geteuid().as_raw();
        let good = dir.path().join("good");
        super::super::store::create_private(&good, b"{}").unwrap();
        assert_eq!(
            refuse_metadata(&std::fs::symlink_metadata(&good).unwrap(), euid),
            None
        );
        let open = dir.path().join("open");
        std::fs::write(&open, b"{}").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(refuse_metadata(&std::fs::symlink_metadata(&open).unwrap(), euid).is_some());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(refuse_metadata(&std::fs::symlink_metadata(&link).unwrap(), euid).is_some());
        let hard = dir.path().join("hard");
        std::fs::hard_link(&good, &hard).unwrap();
        assert!(refuse_metadata(&std::fs::symlink_metadata(&hard).unwrap(), euid).is_some());
    }
}
