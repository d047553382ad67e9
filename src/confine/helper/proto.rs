//! The mount helper's wire format, version 2. Fixed layout, big-endian, length-prefixed;
//! pure and fuzzed (`fuzz/fuzz_targets/helper_proto.rs`).
//!
//! Request frame:
//! ```text
//! u32 length of the rest (30 + the three string lengths, at most MAX_FRAME)
//! "ILMH"  u8 version (2)  u8 op (1 mount tmpfs, 2 unmount tmpfs, 3 bind subPath,
//!                                4 unmount subPath)
//! u64 size in bytes (op 1: 0 = kernel default; other ops: must be 0)
//! u32 index of the volumeMount in its container (ops 3 and 4; others: must be 0)
//! u16 path length  u16 container length  u16 subPath length
//! 6 reserved zero bytes
//! u8[] path  u8[] container  u8[] subPath
//! ```
//!
//! The path is relative to the pods directory and must have exactly the shape
//! `<pod uid>/volumes/<plugin>/<volume name>`. Ops 3 and 4 also name the container (a
//! DNS-1123 label) and the index; their target is
//! `<pod uid>/volume-subpaths/<volume name>/<container>/<index>` (upstream's layout). Op 3
//! carries the subPath: relative, no `..`, no empty or `.` component, no NUL. Ops 1 and 2
//! carry no container and no subPath; op 4 no subPath. Anything else is refused here,
//! before the helper resolves anything beneath the pods directory. Only canonical frames
//! decode (a decoded request re-encodes to the same bytes).
//!
//! Response frame: `u32 length`, "ILMH", u8 version, u8 status (0 ok, 1 refused, 2
//! failed), u16 message length, message (UTF-8).

pub const MAGIC: &[u8; 4] = b"ILMH";
/// 2: subPath binds (ops 3 and 4) and their fields. Agent and helper are one binary, so a
/// version mismatch means a stale helper: it is refused, never guessed at.
pub const VERSION: u8 = 2;
pub const MAX_PATH: usize = 512;
/// Container names are DNS-1123 labels.
pub const MAX_CONTAINER: usize = 63;
/// Longer subPaths are refused (upstream has no limit; 1 KiB is far beyond real use).
pub const MAX_SUB_PATH: usize = 1024;
const FIXED: usize = 4 + 1 + 1 + 8 + 4 + 2 + 2 + 2 + 6;
pub const MAX_FRAME: usize = FIXED + MAX_PATH + MAX_CONTAINER + MAX_SUB_PATH;
pub const MAX_MESSAGE: usize = 1024;

/// Volume plugins whose directories the helper may mount on.
pub const PLUGINS: &[&str] = &["kubernetes.io~empty-dir"];

/// The directory below a pod's directory that holds subPath bind targets (upstream's).
pub const SUB_PATHS_DIR: &str = "volume-subpaths";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    MountTmpfs {
        path: VolumePath,
        size: u64,
    },
    Unmount {
        path: VolumePath,
    },
    /// Resolve `sub_path` beneath the volume without following any symlink, then bind it
    /// onto the mount's target.
    BindSubPath {
        mount: SubPathMount,
        sub_path: SubPath,
    },
    /// Detach whatever is mounted on the mount's target (nothing mounted is not an error).
    UnmountSubPath {
        mount: SubPathMount,
    },
}

/// Whether `s` is a DNS-1123 label, as the API requires of volume and container names.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` may name a pod's directory: API UIDs (RFC 4122) and ironlet's hex static
/// UIDs pass; nothing with a `/`, `.` or other separator does.
pub fn is_pod_uid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `<pod uid>/volumes/<plugin>/<volume name>`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePath {
    pub uid: String,
    pub plugin: String,
    pub name: String,
}

impl VolumePath {
    pub fn new(uid: &str, plugin: &str, name: &str) -> Result<VolumePath, DecodeError> {
        if !is_pod_uid(uid) {
            return Err(DecodeError::BadPath(format!("pod uid {uid:?}")));
        }
        if !PLUGINS.contains(&plugin) {
            return Err(DecodeError::BadPath(format!("volume plugin {plugin:?}")));
        }
        if !is_dns_label(name) {
            return Err(DecodeError::BadPath(format!("volume name {name:?}")));
        }
        Ok(VolumePath {
            uid: uid.into(),
            plugin: plugin.into(),
            name: name.into(),
        })
    }

    pub fn parse(s: &str) -> Result<VolumePath, DecodeError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [uid, "volumes", plugin, name] => VolumePath::new(uid, plugin, name),
            _ => Err(DecodeError::BadPath(format!(
                "{s:?} is not <pod uid>/volumes/<plugin>/<name>"
            ))),
        }
    }

    /// The path below the pods directory.
    pub fn relative(&self) -> String {
        format!("{}/volumes/{}/{}", self.uid, self.plugin, self.name)
    }
}

/// One subPath mount of one container: the volume, the container (a DNS-1123 label) and
/// the index of the volumeMount in the container's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubPathMount {
    pub volume: VolumePath,
    pub container: String,
    pub index: u32,
}

impl SubPathMount {
    pub fn new(volume: VolumePath, container: &str, index: u32) -> Result<Self, DecodeError> {
        if !is_dns_label(container) {
            return Err(DecodeError::BadPath(format!(
                "container name {container:?}"
            )));
        }
        Ok(SubPathMount {
            volume,
            container: container.into(),
            index,
        })
    }

    /// `<uid>/volume-subpaths/<volume>/<container>`, below the pods directory.
    pub fn target_parent(&self) -> String {
        format!(
            "{}/{SUB_PATHS_DIR}/{}/{}",
            self.volume.uid, self.volume.name, self.container
        )
    }

    /// `<uid>/volume-subpaths/<volume>/<container>/<index>`, below the pods directory.
    pub fn target(&self) -> String {
        format!("{}/{}", self.target_parent(), self.index)
    }
}

/// A subPath: a relative path inside a volume, kept in normal form (components joined by
/// `/`, none empty, `.` or `..`, no NUL). It says nothing about symlinks: those are the
/// resolver's job (openat2 RESOLVE_NO_SYMLINKS), at the moment of use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubPath(String);

impl SubPath {
    /// Normalises `s` (drops empty and `.` components) and refuses what could leave the
    /// volume: an absolute path, a `..` component, a NUL, or nothing left at all.
    pub fn parse(s: &str) -> Result<SubPath, DecodeError> {
        if s.starts_with('/') {
            return Err(DecodeError::BadPath(format!(
                "subPath {s:?} must be a relative path"
            )));
        }
        if s.contains('\0') {
            return Err(DecodeError::BadPath("subPath contains a NUL byte".into()));
        }
        let mut parts = Vec::new();
        for c in s.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    return Err(DecodeError::BadPath(format!(
                        "subPath {s:?} must not contain '..'"
                    )));
                }
                c => parts.push(c),
            }
        }
        let norm = parts.join("/");
        if norm.is_empty() {
            return Err(DecodeError::BadPath(format!(
                "subPath {s:?} names no path inside the volume"
            )));
        }
        if norm.len() > MAX_SUB_PATH {
            return Err(DecodeError::BadPath(format!(
                "subPath is {} bytes; at most {MAX_SUB_PATH} are allowed",
                norm.len()
            )));
        }
        Ok(SubPath(norm))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is {0} bytes; at most {MAX_FRAME} are allowed")]
    TooLong(usize),
    #[error("frame is truncated")]
    Truncated,
    #[error("bad magic")]
    BadMagic,
    #[error("unsupported version {0}")]
    Version(u8),
    #[error("unknown operation {0}")]
    Op(u8),
    #[error("reserved bytes are not zero")]
    Reserved,
    #[error("trailing bytes after the strings")]
    Trailing,
    #[error("operation {0} takes no size")]
    UnexpectedSize(u8),
    #[error("operation {0} takes no {1}")]
    UnexpectedField(u8, &'static str),
    #[error("operation {0} needs a {1}")]
    MissingField(u8, &'static str),
    #[error("string is not UTF-8")]
    NotUtf8,
    #[error("refused path: {0}")]
    BadPath(String),
}

/// Encodes a request as a whole frame (length prefix included).
pub fn encode_request(req: &Request) -> Vec<u8> {
    let (op, size, index, path, container, sub): (u8, u64, u32, String, &str, &str) = match req {
        Request::MountTmpfs { path, size } => (1, *size, 0, path.relative(), "", ""),
        Request::Unmount { path } => (2, 0, 0, path.relative(), "", ""),
        Request::BindSubPath { mount, sub_path } => (
            3,
            0,
            mount.index,
            mount.volume.relative(),
            &mount.container,
            sub_path.as_str(),
        ),
        Request::UnmountSubPath { mount } => (
            4,
            0,
            mount.index,
            mount.volume.relative(),
            &mount.container,
            "",
        ),
    };
    let body_len = FIXED + path.len() + container.len() + sub.len();
    let mut out = Vec::with_capacity(4 + body_len);
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(op);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&index.to_be_bytes());
    for s in [path.as_str(), container, sub] {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&[0; 6]);
    for s in [path.as_str(), container, sub] {
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// Checks a frame's length prefix; returns the body length to read next.
pub fn body_length(prefix: [u8; 4]) -> Result<usize, DecodeError> {
    let n = u32::from_be_bytes(prefix) as usize;
    if n > MAX_FRAME {
        return Err(DecodeError::TooLong(n));
    }
    if n < FIXED {
        return Err(DecodeError::Truncated);
    }
    Ok(n)
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_be_bytes([b[at], b[at + 1]]) as usize
}

/// Decodes a request body (the bytes after the length prefix).
pub fn decode_request(body: &[u8]) -> Result<Request, DecodeError> {
    if body.len() > MAX_FRAME {
        return Err(DecodeError::TooLong(body.len()));
    }
    if body.len() < FIXED {
        return Err(DecodeError::Truncated);
    }
    if &body[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if body[4] != VERSION {
        return Err(DecodeError::Version(body[4]));
    }
    let op = body[5];
    if !(1..=4).contains(&op) {
        return Err(DecodeError::Op(op));
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&body[6..14]);
    let size = u64::from_be_bytes(size);
    let index = u32::from_be_bytes([body[14], body[15], body[16], body[17]]);
    let (path_len, container_len, sub_len) = (u16_at(body, 18), u16_at(body, 20), u16_at(body, 22));
    if body[24..FIXED].iter().any(|b| *b != 0) {
        return Err(DecodeError::Reserved);
    }
    let rest = &body[FIXED..];
    let total = path_len + container_len + sub_len;
    if rest.len() < total {
        return Err(DecodeError::Truncated);
    }
    if rest.len() > total {
        return Err(DecodeError::Trailing);
    }
    let text = |from: usize, len: usize| {
        std::str::from_utf8(&rest[from..from + len]).map_err(|_| DecodeError::NotUtf8)
    };
    let path = VolumePath::parse(text(0, path_len)?)?;
    let container = text(path_len, container_len)?;
    let sub = text(path_len + container_len, sub_len)?;
    if op != 1 && size != 0 {
        return Err(DecodeError::UnexpectedSize(op));
    }
    match op {
        1 | 2 => {
            if index != 0 {
                return Err(DecodeError::UnexpectedField(op, "index"));
            }
            if !container.is_empty() {
                return Err(DecodeError::UnexpectedField(op, "container"));
            }
            if !sub.is_empty() {
                return Err(DecodeError::UnexpectedField(op, "subPath"));
            }
            Ok(if op == 1 {
                Request::MountTmpfs { path, size }
            } else {
                Request::Unmount { path }
            })
        }
        _ => {
            if container.is_empty() {
                return Err(DecodeError::MissingField(op, "container"));
            }
            let mount = SubPathMount::new(path, container, index)?;
            if op == 4 {
                if !sub.is_empty() {
                    return Err(DecodeError::UnexpectedField(op, "subPath"));
                }
                return Ok(Request::UnmountSubPath { mount });
            }
            if sub.is_empty() {
                return Err(DecodeError::MissingField(op, "subPath"));
            }
            let sub_path = SubPath::parse(sub)?;
            if sub_path.as_str() != sub {
                return Err(DecodeError::BadPath(format!(
                    "subPath {sub:?} is not in normal form"
                )));
            }
            Ok(Request::BindSubPath { mount, sub_path })
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    Refused = 1,
    Failed = 2,
}

pub fn encode_response(status: Status, message: &str) -> Vec<u8> {
    let mut msg = message.as_bytes();
    if msg.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        msg = &msg[..end];
    }
    let body_len = 4 + 1 + 1 + 2 + msg.len();
    let mut out = Vec::with_capacity(4 + body_len);
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(status as u8);
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// Decodes a response body; returns the status and message.
pub fn decode_response(body: &[u8]) -> Result<(Status, String), DecodeError> {
    if body.len() < 8 {
        return Err(DecodeError::Truncated);
    }
    if body.len() > 8 + MAX_MESSAGE {
        return Err(DecodeError::TooLong(body.len()));
    }
    if &body[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if body[4] != VERSION {
        return Err(DecodeError::Version(body[4]));
    }
    let status = match body[5] {
        0 => Status::Ok,
        1 => Status::Refused,
        2 => Status::Failed,
        other => return Err(DecodeError::Op(other)),
    };
    let n = u16::from_be_bytes([body[6], body[7]]) as usize;
    if body.len() != 8 + n {
        return Err(DecodeError::Trailing);
    }
    let msg = std::str::from_utf8(&body[8..]).map_err(|_| DecodeError::NotUtf8)?;
    Ok((status, msg.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp() -> VolumePath {
        VolumePath::new("0a1b-2c", "kubernetes.io~empty-dir", "cache").unwrap()
    }

    #[test]
    fn requests_round_trip() {
        for req in [
            Request::MountTmpfs {
                path: vp(),
                size: 16 << 20,
            },
            Request::Unmount { path: vp() },
            Request::BindSubPath {
                mount: SubPathMount::new(vp(), "web", 3).unwrap(),
                sub_path: SubPath::parse("a/b.conf").unwrap(),
            },
            Request::UnmountSubPath {
                mount: SubPathMount::new(vp(), "web", 0).unwrap(),
            },
        ] {
            let frame = encode_request(&req);
            let n = body_length(frame[..4].try_into().unwrap()).unwrap();
            assert_eq!(n, frame.len() - 4);
            assert_eq!(decode_request(&frame[4..]).unwrap(), req);
        }
        let r = encode_response(Status::Refused, "no");
        assert_eq!(
            decode_response(&r[4..]).unwrap(),
            (Status::Refused, "no".to_string())
        );
    }

    #[test]
    fn paths_outside_the_volume_shape_are_refused() {
        for bad in [
            "../etc/volumes/kubernetes.io~empty-dir/x",
            "uid/volumes/kubernetes.io~empty-dir/..",
            "uid/volumes/kubernetes.io~empty-dir/x/y",
            "/abs/volumes/kubernetes.io~empty-dir/x",
            "uid/volumes/kubernetes.io~host-path/x",
            "uid/plugins/kubernetes.io~empty-dir/x",
            "uid/volumes/kubernetes.io~empty-dir/",
            "uid/volumes/kubernetes.io~empty-dir/Upper",
            "u.d/volumes/kubernetes.io~empty-dir/x",
        ] {
            assert!(VolumePath::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            VolumePath::parse("0a1b-2c/volumes/kubernetes.io~empty-dir/cache").unwrap(),
            vp()
        );
    }

    #[test]
    fn malformed_frames_are_refused_not_panicked_on() {
        let good = encode_request(&Request::Unmount { path: vp() });
        let body = &good[4..];
        assert_eq!(decode_request(&body[..10]), Err(DecodeError::Truncated));
        let mut b = body.to_vec();
        b[0] = b'X';
        assert_eq!(decode_request(&b), Err(DecodeError::BadMagic));
        let mut b = body.to_vec();
        b[4] = 1;
        assert_eq!(decode_request(&b), Err(DecodeError::Version(1)));
        let mut b = body.to_vec();
        b[5] = 9;
        assert_eq!(decode_request(&b), Err(DecodeError::Op(9)));
        let mut b = body.to_vec();
        b[13] = 1;
        assert_eq!(decode_request(&b), Err(DecodeError::UnexpectedSize(2)));
        let mut b = body.to_vec();
        b[17] = 1;
        assert_eq!(
            decode_request(&b),
            Err(DecodeError::UnexpectedField(2, "index"))
        );
        let mut b = body.to_vec();
        b[26] = 1;
        assert_eq!(decode_request(&b), Err(DecodeError::Reserved));
        let mut b = body.to_vec();
        b.push(b'x');
        assert_eq!(decode_request(&b), Err(DecodeError::Trailing));
        assert!(matches!(
            body_length(u32::MAX.to_be_bytes()),
            Err(DecodeError::TooLong(_))
        ));
    }

    #[test]
    fn sub_paths_are_normalised_and_never_leave_the_volume() {
        assert_eq!(SubPath::parse("a/./b//c/").unwrap().as_str(), "a/b/c");
        assert_eq!(SubPath::parse("./x").unwrap().as_str(), "x");
        for bad in ["/etc", "..", "a/../b", "a/..", ".", "", "//", "a\0b"] {
            assert!(SubPath::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SubPath::parse(&"a/".repeat(600)).is_err());
        // `..` inside a name is just a name.
        assert_eq!(SubPath::parse("a..b").unwrap().as_str(), "a..b");
    }

    #[test]
    fn sub_path_frames_name_the_upstream_target_and_refuse_odd_fields() {
        let m = SubPathMount::new(vp(), "web", 7).unwrap();
        assert_eq!(m.target(), "0a1b-2c/volume-subpaths/cache/web/7");
        assert!(SubPathMount::new(vp(), "../x", 0).is_err());
        assert!(SubPathMount::new(vp(), "Web", 0).is_err());
        let bind = encode_request(&Request::BindSubPath {
            mount: m.clone(),
            sub_path: SubPath::parse("d").unwrap(),
        });
        // A subPath that is not in normal form is not canonical: refused.
        let mut b = bind[4..].to_vec();
        let n = b.len();
        b[n - 1] = b'.';
        assert!(matches!(decode_request(&b), Err(DecodeError::BadPath(_))));
        // `..` as the subPath.
        let mut b = bind[4..].to_vec();
        b[23] = 2;
        b.push(b'.');
        let n = b.len();
        b[n - 2] = b'.';
        assert!(
            matches!(decode_request(&b), Err(DecodeError::BadPath(_))),
            "{b:?}"
        );
        // An unmount of a subPath carries no subPath; a bind needs one.
        let unbind = encode_request(&Request::UnmountSubPath { mount: m.clone() });
        let mut b = unbind[4..].to_vec();
        b[5] = 3;
        assert_eq!(
            decode_request(&b),
            Err(DecodeError::MissingField(3, "subPath"))
        );
        let mut b = bind[4..].to_vec();
        b[5] = 4;
        assert_eq!(
            decode_request(&b),
            Err(DecodeError::UnexpectedField(4, "subPath"))
        );
        // A tmpfs mount carries no container.
        let mut b = bind[4..].to_vec();
        b[5] = 1;
        assert!(matches!(
            decode_request(&b),
            Err(DecodeError::UnexpectedField(1, _))
        ));
    }
}
