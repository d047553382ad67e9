//! The audit log of the kubelet API: one JSON object per line, its own writer, and a hash
//! chain that makes the file tamper-evident.
//!
//! - **Structured.** Every record is serialized by serde_json, so every field is escaped:
//!   a newline in a certificate CN or a TokenReview user name stays inside its string and
//!   cannot forge a line. Every string is bounded ([`MAX_FIELD`], [`MAX_COMMAND`]).
//! - **Its own writer.** `--audit-log-path` names a file (mode 0600, created if absent,
//!   refused if group or others can read it), rotated by size: `path` → `path.1` → … →
//!   `path.{BACKUPS}`, the oldest dropped. Without a path, records go to stderr.
//! - **Hash chain.** Each record carries `seq` (one more than the previous record's) and
//!   `prev`, the SHA-256 (hex) of the previous record's line. The chain goes on across
//!   rotation and across restarts: at start the writer reads the last line of the newest
//!   file and continues from it, and writes a `start` record. [`verify`] walks files in
//!   order and reports the first gap, edit or reordering. The last line has no successor,
//!   so an edit of it (or its removal) is only visible to a verifier that kept its hash.
//! - **Noise budget.** Unauthenticated requests and failed handshakes are written up to
//!   [`NOISE_BUDGET`] per [`NOISE_INTERVAL`]; the rest are counted and summarised in one
//!   `suppressed` record per interval, so a flood cannot flush real records out of the
//!   rotation.
//!
//! It must not: write a token, a request body or a query string other than the command of
//! exec and run.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Strings in a record (user, groups, path, reasons) are cut to this many characters.
pub const MAX_FIELD: usize = 256;
/// At most this many groups are recorded.
pub const MAX_GROUPS: usize = 32;
/// The command of exec and run is recorded up to this many bytes in total.
pub const MAX_COMMAND: usize = 1024;
/// Rotated files kept next to the live one.
pub const BACKUPS: usize = 5;
/// Default rotation size (`--audit-log-maxsize`, in MiB).
pub const DEFAULT_MAX_MB: u64 = 100;
/// Unauthenticated records written per interval before they are only counted.
pub const NOISE_BUDGET: u64 = 20;
pub const NOISE_INTERVAL: Duration = Duration::from_secs(10);
/// `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Records longer than this are refused by the parser (the writer never makes one).
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("--audit-log-path {path}: {message}")]
    Open { path: PathBuf, message: String },
}

/// What a streaming or command request targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// exec, attach, portForward or run.
    pub kind: String,
    pub namespace: String,
    pub pod: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// One kubelet API request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    pub path: String,
    pub decision: String,
    #[serde(default)]
    pub reason: String,
    pub status: u16,
    pub latency_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// True when the command was cut at [`MAX_COMMAND`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub command_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum Event {
    /// The writer started (agent start): the chain continues from the previous record.
    Start {
        pid: u32,
        version: String,
    },
    Request(Box<RequestEvent>),
    /// A TLS handshake failed (unauthenticated noise).
    Handshake {
        peer: String,
        error: String,
    },
    /// Unauthenticated records counted but not written in the last interval.
    Suppressed {
        count: u64,
        interval_seconds: u64,
    },
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub prev: String,
    /// RFC 3339, UTC.
    pub time: String,
    pub event: Event,
}

/// The hex SHA-256 of one line (without its newline): the next record's `prev`.
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// Why a line is not an audit record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("longer than {MAX_LINE} bytes")]
    TooLong,
    /// Not JSON of the record's shape (serde_json's message).
    #[error("{0}")]
    Json(String),
    #[error("prev: not a lower-case hex SHA-256")]
    BadPrev,
}

/// Parses one line (fuzzed). Unknown fields, oversized lines and malformed `prev` values
/// are errors.
pub fn parse_record(line: &[u8]) -> Result<Record, RecordError> {
    if line.len() > MAX_LINE {
        return Err(RecordError::TooLong);
    }
    let r: Record = serde_json::from_slice(line).map_err(|e| RecordError::Json(e.to_string()))?;
    if r.prev.len() != 64
        || !r
            .prev
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(RecordError::BadPrev);
    }
    Ok(r)
}

/// Cuts `s` to `n` characters.
pub fn bound(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Bounds a command to [`MAX_COMMAND`] bytes in total; the flag says whether it was cut.
pub fn bound_command(argv: &[String]) -> (Vec<String>, bool) {
    let mut left = MAX_COMMAND;
    let mut out = Vec::new();
    for a in argv {
        if a.len() <= left {
            left -= a.len();
            out.push(a.clone());
        } else {
            let mut cut = String::new();
            for c in a.chars() {
                if c.len_utf8() > left {
                    break;
                }
                left -= c.len_utf8();
                cut.push(c);
            }
            out.push(cut);
            return (out, true);
        }
    }
    (out, false)
}

enum Sink {
    Stderr,
    File {
        path: PathBuf,
        file: File,
        size: u64,
        max_bytes: u64,
    },
}

struct Chain {
    sink: Sink,
    next_seq: u64,
    prev: String,
}

struct Noise {
    window: Instant,
    written: u64,
    suppressed: u64,
}

/// The audit writer. Writes are synchronous and serialised: a record is on its way to the
/// kernel before the response is.
pub struct AuditLog {
    chain: Mutex<Chain>,
    noise: Mutex<Noise>,
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The last complete line of `file` (within its last [`MAX_LINE`] + 1 bytes).
fn last_line(file: &mut File) -> std::io::Result<Option<Vec<u8>>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    let from = len.saturating_sub(MAX_LINE as u64 + 1);
    file.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    file.take(len - from).read_to_end(&mut tail)?;
    let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    Ok(Some(body[start..].to_vec()))
}

fn open_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

impl AuditLog {
    /// Records to stderr (no `--audit-log-path`). The chain starts at genesis.
    pub fn stderr() -> AuditLog {
        AuditLog::with_chain(Chain {
            sink: Sink::Stderr,
            next_seq: 0,
            prev: GENESIS.into(),
        })
    }

    fn with_chain(chain: Chain) -> AuditLog {
        AuditLog {
            chain: Mutex::new(chain),
            noise: Mutex::new(Noise {
                window: Instant::now(),
                written: 0,
                suppressed: 0,
            }),
        }
    }

    /// Opens (or creates, mode 0600) the audit file and continues the chain from its last
    /// record (or from the newest rotated file's, when the live one is empty). Writes a
    /// `start` record.
    pub fn open(path: &Path, max_bytes: u64) -> Result<AuditLog, AuditError> {
        use std::os::unix::fs::MetadataExt;
        let err = |message: String| AuditError::Open {
            path: path.to_path_buf(),
            message,
        };
        let mut file = open_file(path).map_err(|e| err(e.to_string()))?;
        let meta = file.metadata().map_err(|e| err(e.to_string()))?;
        if !meta.is_file() {
            return Err(err("not a regular file".into()));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(err(format!(
                "mode {:o}: the audit log must not be readable by group or others (0600)",
                meta.mode() & 0o777
            )));
        }
        let mut last = last_line(&mut file).map_err(|e| err(e.to_string()))?;
        if last.is_none()
            && let Ok(mut older) = File::open(rotated(path, 1))
        {
            last = last_line(&mut older).map_err(|e| err(e.to_string()))?;
        }
        let (next_seq, prev) = match &last {
            None => (0, GENESIS.to_string()),
            Some(line) => match parse_record(line) {
                Ok(r) => (r.seq.saturating_add(1), line_hash(line)),
                // A torn or foreign last line: chained over as it is, so `verify` shows it.
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "the audit log's last line is not a record; the chain continues after it");
                    (0, line_hash(line))
                }
            },
        };
        if meta.len() > 0 && !ends_with_newline(&mut file) {
            // Terminate a torn line so the next record starts on its own line.
            file.write_all(b"\n").map_err(|e| err(e.to_string()))?;
        }
        let log = AuditLog::with_chain(Chain {
            sink: Sink::File {
                path: path.to_path_buf(),
                size: file.metadata().map(|m| m.len()).unwrap_or(0),
                file,
                max_bytes: max_bytes.max(4096),
            },
            next_seq,
            prev,
        });
        log.start();
        Ok(log)
    }

    /// Writes the `start` record (called by `open`; the stderr writer's owner calls it).
    pub fn start(&self) {
        self.write(Event::Start {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
        });
    }

    /// Appends one record to the chain.
    pub fn write(&self, event: Event) {
        let mut c = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        let record = Record {
            seq: c.next_seq,
            prev: c.prev.clone(),
            time: jiff::Timestamp::now().to_string(),
            event,
        };
        let Ok(line) = serde_json::to_vec(&record) else {
            return;
        };
        if let Err(e) = c.append(&line) {
            // The request is still answered; the failure is loud in the agent's log.
            tracing::error!(error = %e, "audit record not written");
            return;
        }
        c.next_seq += 1;
        c.prev = line_hash(&line);
    }

    /// An unauthenticated record: written within the noise budget, else counted.
    pub fn write_noise(&self, event: Event) {
        let summary = {
            let mut n = self.noise.lock().unwrap_or_else(|p| p.into_inner());
            let summary = n.roll(Instant::now());
            let write = n.written < NOISE_BUDGET;
            if write {
                n.written += 1;
            } else {
                n.suppressed += 1;
            }
            (summary, write)
        };
        if let Some(count) = summary.0 {
            self.write(suppressed(count));
        }
        if summary.1 {
            self.write(event);
        }
    }

    /// Closes the noise window once it is over (called every interval by the server), so
    /// a suppressed count is written even when the flood stops.
    pub fn tick(&self) {
        let summary = self
            .noise
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .roll(Instant::now());
        if let Some(count) = summary {
            self.write(suppressed(count));
        }
    }
}

fn suppressed(count: u64) -> Event {
    Event::Suppressed {
        count,
        interval_seconds: NOISE_INTERVAL.as_secs(),
    }
}

fn ends_with_newline(file: &mut File) -> bool {
    let mut b = [0u8; 1];
    file.seek(SeekFrom::End(-1)).is_ok() && file.read_exact(&mut b).is_ok() && b[0] == b'\n'
}

impl Noise {
    /// Starts a new window when the current one is over; returns the count to summarise.
    fn roll(&mut self, now: Instant) -> Option<u64> {
        if now.saturating_duration_since(self.window) < NOISE_INTERVAL {
            return None;
        }
        self.window = now;
        self.written = 0;
        let n = std::mem::take(&mut self.suppressed);
        (n > 0).then_some(n)
    }
}

impl Chain {
    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        match &mut self.sink {
            Sink::Stderr => std::io::stderr().lock().write_all(&buf),
            Sink::File {
                path,
                file,
                size,
                max_bytes,
            } => {
                if *size > 0 && *size + buf.len() as u64 > *max_bytes {
                    for n in (1..BACKUPS).rev() {
                        let from = rotated(path, n);
                        if from.exists() {
                            std::fs::rename(&from, rotated(path, n + 1))?;
                        }
                    }
                    std::fs::rename(&*path, rotated(path, 1))?;
                    *file = open_file(path)?;
                    *size = 0;
                }
                file.write_all(&buf)?;
                *size += buf.len() as u64;
                Ok(())
            }
        }
    }
}

/// Where and what [`verify`] found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {problem}")]
pub struct Broken {
    pub file: String,
    pub line: usize,
    pub problem: String,
}

/// What a whole log looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The hash of the last line: keep it to detect a later edit of that line.
    pub last_hash: Option<String>,
}

/// Walks the chain through `inputs` (file names and contents, oldest first) and stops at
/// the first record that is unparseable, out of sequence or whose `prev` is not the hash
/// of the line before it. The first record is the anchor: it must be seq 0 with the
/// genesis `prev`, unless older files were rotated away (then its seq and prev are taken
/// as they are). Pure, so the fuzz target runs it.
pub fn verify_contents(inputs: &[(String, Vec<u8>)]) -> Result<Verified, Broken> {
    let mut state: Option<(u64, String)> = None;
    let mut v = Verified {
        records: 0,
        first_seq: None,
        last_seq: None,
        last_hash: None,
    };
    for (name, bytes) in inputs {
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        if body.is_empty() {
            continue;
        }
        for (i, line) in body.split(|b| *b == b'\n').enumerate() {
            let broken = |problem: String| Broken {
                file: name.clone(),
                line: i + 1,
                problem,
            };
            let r = parse_record(line).map_err(|e| broken(format!("not an audit record: {e}")))?;
            match &state {
                None => {
                    if r.seq == 0 && r.prev != GENESIS {
                        return Err(broken("seq 0 without the genesis prev".into()));
                    }
                }
                Some((seq, hash)) => {
                    let Some(want) = seq.checked_add(1) else {
                        return Err(broken("seq past its maximum".into()));
                    };
                    if r.seq != want {
                        return Err(broken(format!(
                            "gap or reordering: seq {} where {want} was due",
                            r.seq
                        )));
                    }
                    if r.prev != *hash {
                        return Err(broken(format!(
                            "the previous record was edited or replaced: prev {} is not the hash of the line before ({hash})",
                            r.prev
                        )));
                    }
                }
            }
            v.records += 1;
            v.first_seq.get_or_insert(r.seq);
            v.last_seq = Some(r.seq);
            let h = line_hash(line);
            v.last_hash = Some(h.clone());
            state = Some((r.seq, h));
        }
    }
    Ok(v)
}

/// [`verify_contents`] over files read from disk.
pub fn verify(files: &[PathBuf]) -> Result<Verified, Broken> {
    let mut inputs = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| Broken {
            file: f.display().to_string(),
            line: 0,
            problem: e.to_string(),
        })?;
        inputs.push((f.display().to_string(), bytes));
    }
    verify_contents(&inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(user: &str) -> Event {
        Event::Request(Box::new(RequestEvent {
            user: Some(user.into()),
            method: "GET".into(),
            resource: "nodes".into(),
            path: "/pods".into(),
            decision: "allow".into(),
            status: 200,
            ..Default::default()
        }))
    }

    fn files(path: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = (1..=BACKUPS)
            .rev()
            .map(|n| rotated(path, n))
            .filter(|p| p.exists())
            .collect();
        v.push(path.to_path_buf());
        v
    }

    #[test]
    fn a_forged_newline_stays_inside_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, 1 << 20).unwrap();
        log.write(request("eve\n{\"seq\":99,\"forged\":true}"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let r = parse_record(text.lines().nth(1).unwrap().as_bytes()).unwrap();
        let Event::Request(e) = r.event else { panic!() };
        assert_eq!(e.user.as_deref(), Some("eve\n{\"seq\":99,\"forged\":true}"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn the_chain_continues_across_rotation_and_restart_and_catches_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, 4096).unwrap();
        for i in 0..100 {
            log.write(request(&format!("user-{i}")));
        }
        drop(log);
        let log = AuditLog::open(&path, 4096).unwrap();
        log.write(request("after-restart"));
        drop(log);
        let all = files(&path);
        assert!(all.len() > 2, "rotated: {all:?}");
        let v = verify(&all).unwrap();
        assert_eq!(v.last_seq, Some(v.first_seq.unwrap() + v.records - 1));
        // Dropping a middle file is a gap; swapping two is a reordering.
        let mut gap = all.clone();
        gap.remove(1);
        assert!(verify(&gap).unwrap_err().problem.contains("gap"));
        let mut swapped = all.clone();
        swapped.swap(0, 1);
        assert!(verify(&swapped).is_err());
        // The last line has no successor: only the hash a verifier kept shows its edit.
        let kept = v.last_hash.clone();
        let live = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, live.replacen("after-restart", "someone-else", 1)).unwrap();
        assert_ne!(verify(&all).unwrap().last_hash, kept);
        // An edited record breaks the next one's prev.
        let first = std::fs::read_to_string(&all[0]).unwrap();
        let edited = first.replacen("\"status\":200", "\"status\":403", 1);
        assert_ne!(first, edited);
        std::fs::write(&all[0], edited).unwrap();
        let e = verify(&all).unwrap_err();
        assert!(e.problem.contains("edited"), "{e}");
    }

    #[test]
    fn noise_is_budgeted_and_summarised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, 1 << 20).unwrap();
        for i in 0..1000 {
            log.write_noise(Event::Handshake {
                peer: format!("198.18.0.1:{i}"),
                error: "bad".into(),
            });
        }
        log.write(request("real"));
        let text = std::fs::read_to_string(&path).unwrap();
        // start + the budget + the real record.
        assert_eq!(text.lines().count() as u64, 1 + NOISE_BUDGET + 1);
        // The window closes: one summary with the count.
        log.noise.lock().unwrap().window -= NOISE_INTERVAL;
        log.tick();
        let text = std::fs::read_to_string(&path).unwrap();
        let last = parse_record(text.lines().last().unwrap().as_bytes()).unwrap();
        assert_eq!(
            last.event,
            Event::Suppressed {
                count: 1000 - NOISE_BUDGET,
                interval_seconds: NOISE_INTERVAL.as_secs()
            }
        );
        verify(&[path]).unwrap();
    }

    #[test]
    fn commands_are_bounded() {
        let long = vec!["sh".to_string(), "-c".to_string(), "x".repeat(5000)];
        let (cut, truncated) = bound_command(&long);
        assert!(truncated);
        assert_eq!(cut.iter().map(String::len).sum::<usize>(), MAX_COMMAND);
        let short = vec!["id".to_string()];
        assert_eq!(bound_command(&short), (short.clone(), false));
    }

    #[test]
    fn a_readable_audit_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = AuditLog::open(&path, 1 << 20).err().unwrap().to_string();
        assert!(e.contains("0600"), "{e}");
    }
}
