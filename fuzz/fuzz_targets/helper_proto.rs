//! The mount helper's request decoder (`confine::helper::proto`): the only input of the one
//! ironlet process that keeps CAP_SYS_ADMIN. Whatever the bytes, decoding must not panic,
//! and anything it accepts must be canonical (re-encodes to the same bytes) and name a
//! path of exactly the volume shape, with no way out of the pods directory.

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
    let path = match &req {
        Request::MountTmpfs { path, .. } | Request::Unmount { path } => path,
    };
    let rel = path.relative();
    assert_eq!(rel.split('/').count(), 4, "{rel:?}");
    for part in rel.split('/') {
        assert!(!part.is_empty() && part != "." && part != "..", "{rel:?}");
    }
    assert!(proto::PLUGINS.contains(&path.plugin.as_str()));
});
