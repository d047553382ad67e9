//! The mount helper's wire format, version 1. Fixed layout, big-endian, length-prefixed;
//! pure and fuzzed (`fuzz/fuzz_targets/helper_proto.rs`).
//!
//! Request frame:
//! ```text
//! u32 length of the rest (26 + path length, at most MAX_FRAME)
//! "ILMH"  u8 version (1)  u8 op (1 = mount tmpfs, 2 = unmount)
//! u64 size in bytes (mount: 0 = kernel default; unmount: must be 0)
//! u16 path length  u8[] path
//! ```
//! (the 26 counts 4 magic + 1 version + 1 op + 8 size + 2 path length + 10 reserved zero
//! bytes that follow the path length, keeping room for later fields in version 1 frames).
//!
//! The path is relative to the pods directory and must have exactly the shape
//! `<pod uid>/volumes/<plugin>/<volume name>`; anything else is refused here, before the
//! helper resolves it beneath the pods directory.
//!
//! Response frame: `u32 length`, "ILMH", u8 version, u8 status (0 ok, 1 refused, 2
//! failed), u16 message length, message (UTF-8).

pub const MAGIC: &[u8; 4] = b"ILMH";
pub const VERSION: u8 = 1;
pub const MAX_PATH: usize = 512;
const FIXED: usize = 4 + 1 + 1 + 8 + 2 + 10;
pub const MAX_FRAME: usize = FIXED + MAX_PATH;
pub const MAX_MESSAGE: usize = 1024;

/// Volume plugins whose directories the helper may mount on.
pub const PLUGINS: &[&str] = &["kubernetes.io~empty-dir"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    MountTmpfs { path: VolumePath, size: u64 },
    Unmount { path: VolumePath },
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
        let ok_uid = !uid.is_empty()
            && uid.len() <= 64
            && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok_uid {
            return Err(DecodeError::BadPath(format!("pod uid {uid:?}")));
        }
        if !PLUGINS.contains(&plugin) {
            return Err(DecodeError::BadPath(format!("volume plugin {plugin:?}")));
        }
        // A DNS-1123 label, as the API requires of volume names.
        let ok_name = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !ok_name {
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
    #[error("trailing bytes after the path")]
    Trailing,
    #[error("unmount takes no size")]
    SizeOnUnmount,
    #[error("path is not UTF-8")]
    NotUtf8,
    #[error("refused path: {0}")]
    BadPath(String),
}

/// Encodes a request as a whole frame (length prefix included).
pub fn encode_request(req: &Request) -> Vec<u8> {
    let (op, size, path) = match req {
        Request::MountTmpfs { path, size } => (1u8, *size, path.relative()),
        Request::Unmount { path } => (2u8, 0, path.relative()),
    };
    let body_len = FIXED + path.len();
    let mut out = Vec::with_capacity(4 + body_len);
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(op);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&(path.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0; 10]);
    out.extend_from_slice(path.as_bytes());
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
    let size = u64::from_be_bytes(body[6..14].try_into().expect("8 bytes"));
    let path_len = u16::from_be_bytes([body[14], body[15]]) as usize;
    if body[16..FIXED].iter().any(|b| *b != 0) {
        return Err(DecodeError::Reserved);
    }
    let rest = &body[FIXED..];
    if rest.len() < path_len {
        return Err(DecodeError::Truncated);
    }
    if rest.len() > path_len {
        return Err(DecodeError::Trailing);
    }
    let path = std::str::from_utf8(rest).map_err(|_| DecodeError::NotUtf8)?;
    let path = VolumePath::parse(path)?;
    match op {
        1 => Ok(Request::MountTmpfs { path, size }),
        2 if size != 0 => Err(DecodeError::SizeOnUnmount),
        2 => Ok(Request::Unmount { path }),
        other => Err(DecodeError::Op(other)),
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
        b[4] = 2;
        assert_eq!(decode_request(&b), Err(DecodeError::Version(2)));
        let mut b = body.to_vec();
        b[5] = 9;
        assert_eq!(decode_request(&b), Err(DecodeError::Op(9)));
        let mut b = body.to_vec();
        b[13] = 1;
        assert_eq!(decode_request(&b), Err(DecodeError::SizeOnUnmount));
        let mut b = body.to_vec();
        b[20] = 1;
        assert_eq!(decode_request(&b), Err(DecodeError::Reserved));
        let mut b = body.to_vec();
        b.push(b'x');
        assert_eq!(decode_request(&b), Err(DecodeError::Trailing));
        assert!(matches!(
            body_length(u32::MAX.to_be_bytes()),
            Err(DecodeError::TooLong(_))
        ));
    }
}
