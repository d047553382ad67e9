//! The audit log's record parser and chain verifier (`server::audit::parse_record`,
//! `verify_contents`), as `ironlet audit verify` runs them on files an attacker may have
//! edited. Invariants: no panic; a parsed record serializes and parses back to itself; the
//! verifier accepts a chain only when every link holds.

#![no_main]

use ironlet::server::audit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|b| *b == b'\n') {
        if let Ok(r) = audit::parse_record(line) {
            let again = serde_json::to_vec(&r).expect("a record serializes");
            assert_eq!(audit::parse_record(&again).as_ref(), Ok(&r));
        }
    }
    let split = data.len() / 2;
    let inputs = vec![
        ("a".to_string(), data[..split].to_vec()),
        ("b".to_string(), data[split..].to_vec()),
    ];
    if let Ok(v) = audit::verify_contents(&inputs) {
        if let (Some(first), Some(last)) = (v.first_seq, v.last_seq) {
            assert_eq!(last - first + 1, v.records);
        }
    }
});
