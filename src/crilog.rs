//! The CRI container log format the runtime writes under podLogsDir:
//! `<RFC 3339 nano timestamp> <stdout|stderr> <P|F> <content>` per line, where `P` marks a
//! partial line continued by the next entry and `F` a full one. Container output is
//! untrusted: the parser never panics and bounds what it joins (fuzzed).

/// One logical line after joining partial entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub timestamp: String,
    pub stream: Stream,
    pub content: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A joined line is cut at this size (the rest of it is dropped, not buffered).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
struct Entry<'a> {
    timestamp: &'a [u8],
    stream: Stream,
    partial: bool,
    content: &'a [u8],
}

fn parse_entry(raw: &[u8]) -> Option<Entry<'_>> {
    let mut parts = raw.splitn(4, |b| *b == b' ');
    let timestamp = parts.next()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let tag = parts.next()?;
    let partial = tag.split(|b| *b == b':').any(|t| t == b"P");
    let content = parts.next().unwrap_or(b"");
    if timestamp.is_empty() {
        return None;
    }
    Some(Entry {
        timestamp,
        stream,
        partial,
        content,
    })
}

/// Joins entries into logical lines. Malformed entries are skipped and counted.
#[derive(Debug, Default)]
pub struct Parser {
    pending: Option<LogLine>,
    pub malformed: u64,
}

impl Parser {
    /// Feeds one raw line (without its trailing newline); returns a completed line if any.
    pub fn push(&mut self, raw: &[u8]) -> Option<LogLine> {
        let Some(e) = parse_entry(raw) else {
            self.malformed += 1;
            return None;
        };
        let line = self.pending.get_or_insert_with(|| LogLine {
            timestamp: String::from_utf8_lossy(e.timestamp).into_owned(),
            stream: e.stream,
            content: Vec::new(),
        });
        let room = MAX_LINE_BYTES.saturating_sub(line.content.len());
        line.content
            .extend_from_slice(&e.content[..e.content.len().min(room)]);
        if e.partial { None } else { self.pending.take() }
    }

    /// A partial line left at the end of the input.
    pub fn finish(&mut self) -> Option<LogLine> {
        self.pending.take()
    }
}

/// Parses a whole log file's content.
pub fn parse_all(data: &[u8]) -> Vec<LogLine> {
    let mut p = Parser::default();
    let mut out: Vec<LogLine> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| p.push(l))
        .collect();
    out.extend(p.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_partial_lines() {
        let data = b"2026-01-01T00:00:00.000000001Z stdout F hello\n\
2026-01-01T00:00:01Z stderr P part one, \n\
2026-01-01T00:00:02Z stderr F part two\n\
garbage\n\
2026-01-01T00:00:03Z stdout F \n";
        let lines = parse_all(data);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].content, b"hello");
        assert_eq!(lines[0].stream, Stream::Stdout);
        assert_eq!(lines[1].content, b"part one, part two");
        assert_eq!(lines[1].timestamp, "2026-01-01T00:00:01Z");
        assert_eq!(lines[1].stream, Stream::Stderr);
        assert_eq!(lines[2].content, b"");
    }

    #[test]
    fn joined_lines_are_bounded() {
        let chunk = vec![b'x'; 600 * 1024];
        let mut p = Parser::default();
        let mut raw = b"t stdout P ".to_vec();
        raw.extend_from_slice(&chunk);
        assert!(p.push(&raw).is_none());
        assert!(p.push(&raw).is_none());
        let done = p.push(b"t stdout F end").unwrap();
        assert_eq!(done.content.len(), MAX_LINE_BYTES);
        assert_eq!(p.push(b"bad"), None);
        assert_eq!(p.malformed, 1);
    }
}
