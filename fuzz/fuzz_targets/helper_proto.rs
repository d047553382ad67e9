//! The mount helper's request decoder (`confine::helper::proto`): the only input of the one
//! ironlet process that keeps CAP_SYS_ADMIN. Whatever the bytes, decoding must not panic,
//! and anything it accepts must be canonical (re-encodes to the same bytes) and name a
//! path of exactly the volume shape (and, for subPath binds, a target of exactly the
//! upstream shape and a normal relative subPath), with no way out of the pods directory.

#![no_main]

use ironlet::confine::helper::proto::{self, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = proto::body_length(data[..4].try_into().unwrap());
    }
    let _ = proto::decode_response(data);
    let Ok(req) = proto::decode_request(data) else {
        return;
    };
    let frame = proto::encode_request(&req);
    assert_eq!(&frame[4..], data, "accepted a non-canonical frame");
    let (path, target) = match &req {
        Request::MountTmpfs { path, .. } | Request::Unmount { path } => (path, None),
        Request::BindSubPath { mount, sub_path } => {
            let sub = sub_path.as_str();
            assert!(!sub.is_empty() && !sub.starts_with('/') && !sub.contains('\0'), "{sub:?}");
            for part in sub.split('/') {
                assert!(!part.is_empty() && part != "." && part != "..", "{sub:?}");
            }
            (&mount.volume, Some(mount.target()))
        }
        Request::UnmountSubPath { mount } => (&mount.volume, Some(mount.target())),
    };
    let rel = path.relative();
    assert_eq!(rel.split('/').count(), 4, "{rel:?}");
    for part in rel.split('/') {
        assert!(!part.is_empty() && part != "." && part != "..", "{rel:?}");
    }
    assert!(proto::PLUGINS.contains(&path.plugin.as_str()));
    // A subPath target is `<uid>/volume-subpaths/<volume>/<container>/<index>` of the
    // same pod and volume, every part a plain name.
    if let Some(t) = target {
        let parts: Vec<&str> = t.split('/').collect();
        assert_eq!(parts.len(), 5, "{t:?}");
        assert_eq!(parts[0], path.uid);
        assert_eq!(parts[1], proto::SUB_PATHS_DIR);
        assert_eq!(parts[2], path.name);
        for part in parts {
            assert!(!part.is_empty() && part != "." && part != "..", "{t:?}");
        }
    }
});
