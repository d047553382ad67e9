//! The KubeletConfiguration file (an operator's file): `config::file::parse`. Only UTF-8
//! reaches the parser, as `config::file::read` reads the file into a `String`.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ironlet::config::file::parse(Path::new("/etc/ironlet/config.yaml"), text);
});
