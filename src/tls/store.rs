//! The certificate store in `--cert-dir`, in upstream's layout:
//!
//! - `<prefix>-YYYY-MM-DD-HH-MM-SS.pem`: one issued pair, the chain then the key, mode 0600;
//! - `<prefix>-current.pem`: a symlink to the pair in use, replaced crash-safely (a new
//!   `<prefix>-updated.pem` symlink renamed over it; a leftover `-updated` link is promoted
//!   at start);
//! - `<prefix>.key.tmp`: the private key of a request still in flight, kept across restarts
//!   so a restarted agent asks for the same CSR instead of a new one.
//!
//! Every file holding a private key is created with mode 0600 by the `open(2)` that creates
//! it (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600; the umask can only remove bits), and is never
//! chmod'ed. The directory is created 0700.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Timestamped pairs kept besides the current one (older ones are removed).
const KEEP_OLD: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Content { path: PathBuf, problem: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the cert dir (0700) if missing. Run before confinement: landlock rules need the
/// directory to exist.
pub fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

/// Writes a new file holding secret material: created 0600 and exclusively (an existing
/// file or a symlink in its place is an error), then flushed to disk.
pub fn create_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Replaces `path` with `bytes` crash-safely: a 0600 temporary file beside it, renamed over.
pub fn replace_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    create_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(path);
    Ok(())
}

fn sync_dir(path: &Path) {
    if let Some(d) = path.parent()
        && let Ok(f) = std::fs::File::open(d)
    {
        let _ = f.sync_all();
    }
}

/// A certificate chain and its private key as read from the store.
#[derive(Clone)]
pub struct Pair {
    pub chain: Vec<CertificateDer<'static>>,
    pub chain_pem: String,
    pub key_pem: String,
    /// The timestamped file the pair was read from.
    pub file: PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("file", &self.file)
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Splits one PEM file into the certificate chain (PEM and DER) and the key PEM.
pub fn split_pem(
    path: &Path,
    text: &str,
) -> Result<(Vec<CertificateDer<'static>>, String, String), StoreError> {
    let bad = |problem: String| StoreError::Content {
        path: path.to_path_buf(),
        problem,
    };
    let chain = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad("no certificate".into()));
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| bad(format!("private key: {e}")))?;
    let mut cert_pem = String::new();
    let mut key_pem = String::new();
    let mut in_key = false;
    let mut in_cert = false;
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            in_key = line.contains("PRIVATE KEY");
            in_cert = line.contains("CERTIFICATE");
        }
        if in_key {
            key_pem.push_str(line);
            key_pem.push('\n');
        } else if in_cert {
            cert_pem.push_str(line);
            cert_pem.push('\n');
        }
        if line.starts_with("-----END ") {
            in_key = false;
            in_cert = false;
        }
    }
    Ok((chain, cert_pem, key_pem))
}

/// One identity's files in the cert dir.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    prefix: String,
}

impl Store {
    pub fn new(dir: &Path, prefix: &str) -> Store {
        Store {
            dir: dir.to_path_buf(),
            prefix: prefix.to_owned(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<prefix>-current.pem`, the path kubeconfigs and configs point at.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(format!("{}-current.pem", self.prefix))
    }

    fn updated_path(&self) -> PathBuf {
        self.dir.join(format!("{}-updated.pem", self.prefix))
    }

    /// `<prefix>.key.tmp`: the key of the request in flight.
    pub fn pending_key_path(&self) -> PathBuf {
        self.dir.join(format!("{}.key.tmp", self.prefix))
    }

    /// Finishes a symlink swap a crash interrupted: a `-updated` link whose target exists
    /// becomes current.
    pub fn recover(&self) {
        let updated = self.updated_path();
        if std::fs::symlink_metadata(&updated).is_ok() {
            if std::fs::metadata(&updated).is_ok() {
                match std::fs::rename(&updated, self.current_path()) {
                    Ok(()) => {
                        tracing::info!(file = %self.current_path().display(), "certificate store: promoted the -updated link left by an interrupted swap")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "certificate store: cannot promote the -updated link")
                    }
                }
            } else {
                let _ = std::fs::remove_file(&updated);
            }
        }
    }

    /// The current pair, if the symlink exists.
    pub fn load_current(&self) -> Result<Option<Pair>, StoreError> {
        self.recover();
        let current = self.current_path();
        let target = match std::fs::canonicalize(&current) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&current)(e)),
        };
        let meta = std::fs::metadata(&target).map_err(io(&target))?;
        let text = std::fs::read_to_string(&target).map_err(io(&target))?;
        let (chain, chain_pem, key_pem) = split_pem(&target, &text)?;
        Ok(Some(Pair {
            chain,
            chain_pem,
            key_pem,
            file: target,
            mode: meta.permissions().mode() & 0o7777,
        }))
    }

    /// Stores a new pair: a fresh timestamped 0600 file, then the symlink swap. Returns the
    /// file written.
    pub fn write(&self, chain_pem: &str, key_pem: &str) -> Result<PathBuf, StoreError> {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y-%m-%d-%H-%M-%S")
            .to_string();
        let mut body = String::with_capacity(chain_pem.len() + key_pem.len() + 1);
        body.push_str(chain_pem.trim_end());
        body.push('\n');
        body.push_str(key_pem.trim_end());
        body.push('\n');
        // Two rotations within one second get a suffix instead of overwriting.
        let mut file = None;
        for n in 0..100 {
            let name = if n == 0 {
                format!("{}-{stamp}.pem", self.prefix)
            } else {
                format!("{}-{stamp}-{n}.pem", self.prefix)
            };
            let path = self.dir.join(name);
            match create_private(&path, body.as_bytes()) {
                Ok(()) => {
                    file = Some(path);
                    break;
                }
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let file = file.ok_or_else(|| StoreError::Content {
            path: self.dir.clone(),
            problem: "no free file name for the new certificate".into(),
        })?;
        let updated = self.updated_path();
        let _ = std::fs::remove_file(&updated);
        let target = file.file_name().map(PathBuf::from).unwrap_or_default();
        std::os::unix::fs::symlink(&target, &updated).map_err(io(&updated))?;
        sync_dir(&updated);
        std::fs::rename(&updated, self.current_path()).map_err(io(&updated))?;
        sync_dir(&file);
        self.prune(&file);
        Ok(file)
    }

    /// Removes all but the newest KEEP_OLD timestamped pairs besides `keep`.
    fn prune(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let head = format!("{}-", self.prefix);
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let stamped = name.starts_with(&head)
                    && name.ends_with(".pem")
                    && name
                        .as_bytes()
                        .get(head.len())
                        .is_some_and(u8::is_ascii_digit);
                if !stamped {
                    return None;
                }
                let meta = e.metadata().ok()?;
                if !meta.is_file() {
                    return None;
                }
                Some((meta.modified().ok()?, e.path()))
            })
            .filter(|(_, p)| p != keep)
            .collect();
        files.sort();
        let excess = files.len().saturating_sub(KEEP_OLD);
        for (_, p) in files.into_iter().take(excess) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The key of the request in flight: read back if a previous attempt (or a previous run)
    /// left one, otherwise generated (ECDSA P-256) and written 0600 at creation.
    pub fn pending_key(&self) -> Result<rcgen::KeyPair, StoreError> {
        let path = self.pending_key_path();
        match std::fs::read_to_string(&path) {
            Ok(pem) => {
                if let Ok(k) = rcgen::KeyPair::from_pem(&pem) {
                    tracing::info!(file = %path.display(), "reusing the private key of the pending certificate request");
                    return Ok(k);
                }
                tracing::warn!(file = %path.display(), "pending key unreadable; replacing it");
                let _ = std::fs::remove_file(&path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| {
            StoreError::Content {
                path: path.clone(),
                problem: format!("key generation: {e}"),
            }
        })?;
        create_private(&path, key.serialize_pem().as_bytes())?;
        Ok(key)
    }

    /// Forgets the pending key (after the pair is stored, or when its request failed for
    /// good so the next attempt asks with a new key).
    pub fn clear_pending_key(&self) {
        let _ = std::fs::remove_file(self.pending_key_path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["n".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn write_swaps_the_current_link_and_keys_are_0600_under_any_umask() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "kubelet-client");
        assert!(store.load_current().unwrap().is_none());
        // A permissive umask cannot widen a mode given at creation.
        let old = rustix::process::umask(rustix::fs::Mode::empty());
        let key = store.pending_key().unwrap();
        let (c1, k1) = pair();
        let f1 = store.write(&c1, &k1).unwrap();
        rustix::process::umask(old);
        let meta = std::fs::metadata(store.pending_key_path()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&f1).unwrap().mode() & 0o777, 0o600);
        // The same key comes back for the pending request.
        let again = store.pending_key().unwrap();
        assert_eq!(again.serialize_der(), key.serialize_der());
        let cur = store.load_current().unwrap().unwrap();
        assert_eq!(cur.file, std::fs::canonicalize(&f1).unwrap());
        assert_eq!(cur.key_pem.trim(), k1.trim());
        let (c2, k2) = pair();
        let f2 = store.write(&c2, &k2).unwrap();
        assert_ne!(f1, f2);
        let cur = store.load_current().unwrap().unwrap();
        assert_eq!(cur.chain_pem.trim(), c2.trim());
        assert!(
            std::fs::symlink_metadata(store.current_path())
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn an_interrupted_swap_is_finished_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "kubelet-server");
        let (c, k) = pair();
        let f = store.write(&c, &k).unwrap();
        // Crash between the new link and the rename: only -updated exists.
        std::fs::remove_file(store.current_path()).unwrap();
        std::os::unix::fs::symlink(f.file_name().unwrap(), store.updated_path()).unwrap();
        let cur = store.load_current().unwrap().unwrap();
        assert_eq!(cur.chain_pem.trim(), c.trim());
        assert!(std::fs::symlink_metadata(store.updated_path()).is_err());
    }

    #[test]
    fn create_private_refuses_existing_files_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "x").unwrap();
        let link = dir.path().join("k.key.tmp");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_private(&link, b"secret").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "x");
    }
}
