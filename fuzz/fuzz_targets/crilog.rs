//! CRI container logs (written by the runtime, content chosen by the container):
//! `crilog::parse_all`, and the streaming `crilog::Parser` over the same lines.

#![no_main]

use ironlet::crilog::{self, MAX_LINE_BYTES, Parser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines = crilog::parse_all(data);
    for l in &lines {
        assert!(
            l.content.len() <= MAX_LINE_BYTES,
            "{} bytes",
            l.content.len()
        );
    }

    // Line by line, as a follower of a growing file feeds it: the same lines come out, and
    // every raw line is either part of a logical line or counted as malformed.
    let raw: Vec<&[u8]> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut parser = Parser::default();
    let mut streamed = Vec::new();
    for r in &raw {
        if let Some(line) = parser.push(r) {
            assert!(line.content.len() <= MAX_LINE_BYTES);
            streamed.push(line);
        }
    }
    streamed.extend(parser.finish());
    assert_eq!(streamed, lines);
    let malformed = usize::try_from(parser.malformed).unwrap_or(usize::MAX);
    assert!(malformed <= raw.len());
    assert!(lines.len() <= raw.len() - malformed);
    let content: usize = lines.iter().map(|l| l.content.len()).sum();
    assert!(content <= data.len());
});
