//! Query parsing of the kubelet API: `/containerLogs` (PodLogOptions), `/exec` and
//! `/attach` (stream options), `/run` (cmd) and `/portForward` (ports). Invariants: no
//! panic; accepted values respect upstream's validation.

#![no_main]

use ironlet::server::query::{self, LogQueryError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match query::log_options(&text) {
        Ok(o) => {
            assert!(o.limit_bytes.is_none_or(|n| n >= 1));
            assert!(o.since_seconds.is_none_or(|d| d.as_secs() >= 1));
            assert!(!(o.since_seconds.is_some() && o.since_nanos.is_some()));
        }
        Err(LogQueryError::BadRequest(m) | LogQueryError::Invalid(m)) => assert!(!m.is_empty()),
    }
    for exec in [true, false] {
        if let Ok(o) = query::stream_options(&text, exec) {
            assert!(o.stdin || o.stdout || o.stderr);
            assert!(!(o.tty && o.stderr));
            assert!(!exec || !o.command.is_empty());
        }
    }
    if let Ok(argv) = query::run_command(&text, &text) {
        assert!(!argv.is_empty() && argv.iter().all(|a| !a.is_empty() && !a.contains(' ')));
    }
    if let Ok(ports) = query::forward_ports(&text) {
        assert!(ports.iter().all(|p| (1..=65535).contains(p)));
    }
});
