//! Query-string parsing for the kubelet API, as pure functions (fuzzed): the
//! `/exec`, `/attach`, `/run` and `/portForward` options and the `/containerLogs` options
//! (v1 PodLogOptions). Bounded: at most [`MAX_PAIRS`] pairs are looked at.

use std::time::Duration;

/// Pairs beyond this are an error, not silently dropped.
pub const MAX_PAIRS: usize = 256;

/// Why a query string was refused (answered 400; the message is logged, never echoed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("invalid percent escape in {0:?}")]
    BadEscape(String),
    #[error("{0:?} is not UTF-8 once decoded")]
    NotUtf8(String),
    #[error("more than {MAX_PAIRS} query parameters")]
    TooManyPairs,
    #[error("{key}: {value:?} is not a boolean")]
    NotBoolean { key: String, value: String },
    /// A parameter the request needs is missing (`command`, `cmd`).
    #[error("{0}: required")]
    Required(&'static str),
    #[error("command: too many arguments")]
    TooManyArguments,
    #[error("you must specify at least one of stdin, stdout, stderr")]
    NoStream,
    #[error("cmd: empty")]
    EmptyCommand,
    #[error("port: {0:?} is not a port number")]
    NotAPort(String),
}

/// Percent-decodes one query component (`+` is a space, as in forms). Invalid escapes
/// and non-UTF-8 results are errors.
pub fn decode(s: &str) -> Result<String, QueryError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| QueryError::BadEscape(s.to_owned()))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| QueryError::NotUtf8(s.to_owned()))
}

/// Decoded `(key, value)` pairs in order.
pub fn pairs(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        if out.len() == MAX_PAIRS {
            return Err(QueryError::TooManyPairs);
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

/// Go's strconv.ParseBool, which upstream's query decoding uses.
fn parse_bool(key: &str, v: &str) -> Result<bool, QueryError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(QueryError::NotBoolean {
            key: key.to_owned(),
            value: v.to_owned(),
        }),
    }
}

/// Options of `/exec` and `/attach` (upstream's remotecommand options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Parses `/exec` (`command_required`) or `/attach` options. At least one stream is
/// required; stderr is dropped with a TTY, as upstream.
pub fn stream_options(query: &str, command_required: bool) -> Result<StreamOptions, QueryError> {
    let mut o = StreamOptions::default();
    for (k, v) in pairs(query)? {
        match k.as_str() {
            "command" => o.command.push(v),
            "stdin" | "input" => o.stdin = parse_bool(&k, &v)?,
            "stdout" | "output" => o.stdout = parse_bool(&k, &v)?,
            "stderr" => o.stderr = parse_bool(&k, &v)?,
            "tty" => o.tty = parse_bool(&k, &v)?,
            _ => {}
        }
    }
    if command_required && o.command.is_empty() {
        return Err(QueryError::Required("command"));
    }
    if o.command.len() > 1024 {
        return Err(QueryError::TooManyArguments);
    }
    if !(o.stdin || o.stdout || o.stderr) {
        return Err(QueryError::NoStream);
    }
    if o.tty {
        o.stderr = false;
    }
    Ok(o)
}

/// `/run`: the command from `cmd`, split on spaces as upstream.
pub fn run_command(query: &str, form_body: &str) -> Result<Vec<String>, QueryError> {
    let mut cmd = None;
    for src in [query, form_body] {
        for (k, v) in pairs(src)? {
            if k == "cmd" {
                cmd = Some(v);
            }
        }
    }
    let cmd = cmd.ok_or(QueryError::Required("cmd"))?;
    let argv: Vec<String> = cmd
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if argv.is_empty() {
        return Err(QueryError::EmptyCommand);
    }
    Ok(argv)
}

/// `/portForward`: the `port` values (each 1..=65535); none means the client names ports
/// in the stream headers, as upstream.
pub fn forward_ports(query: &str) -> Result<Vec<i32>, QueryError> {
    let mut ports = Vec::new();
    for (k, v) in pairs(query)? {
        if k == "port" {
            let p: u16 = v
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or(QueryError::NotAPort(v))?;
            ports.push(i32::from(p));
        }
    }
    Ok(ports)
}

/// v1 PodLogOptions as `/containerLogs` takes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    /// Lines before this (unix nanoseconds) are skipped.
    pub since_nanos: Option<i128>,
    /// From `sinceSeconds`, resolved against the request time by the caller.
    pub since_seconds: Option<Duration>,
}

/// Why a log query was refused: 400 for what cannot be decoded, 422 for invalid values
/// (upstream's split).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogQueryError {
    BadRequest(String),
    Invalid(String),
}

fn int(key: &str, v: &str) -> Result<i64, LogQueryError> {
    v.parse()
        .map_err(|_| LogQueryError::BadRequest(format!("{key}: {v:?} is not an integer")))
}

pub fn log_options(query: &str) -> Result<LogOptions, LogQueryError> {
    let mut o = LogOptions::default();
    let mut since_time = None;
    let bad = |e: QueryError| LogQueryError::BadRequest(e.to_string());
    for (k, v) in pairs(query).map_err(bad)? {
        match k.as_str() {
            "follow" => o.follow = parse_bool(&k, &v).map_err(bad)?,
            "previous" => o.previous = parse_bool(&k, &v).map_err(bad)?,
            "timestamps" => o.timestamps = parse_bool(&k, &v).map_err(bad)?,
            "tailLines" => {
                let n = int(&k, &v)?;
                o.tail_lines = Some(u64::try_from(n).map_err(|_| {
                    LogQueryError::Invalid(format!(
                        "tailLines: {n} must be greater than or equal to 0"
                    ))
                })?);
            }
            // The legacy form: `tail=N`, `tail=all` (no limit).
            "tail" if v == "all" => o.tail_lines = None,
            "tail" => {
                let n = int(&k, &v)?;
                o.tail_lines = u64::try_from(n).ok();
            }
            "limitBytes" => {
                let n = int(&k, &v)?;
                o.limit_bytes =
                    Some(u64::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                        LogQueryError::Invalid(format!("limitBytes: {n} must be greater than 0"))
                    })?);
            }
            "sinceSeconds" => {
                let n = int(&k, &v)?;
                let s = u64::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                    LogQueryError::Invalid(format!("sinceSeconds: {n} must be greater than 0"))
                })?;
                o.since_seconds = Some(Duration::from_secs(s));
            }
            "sinceTime" => {
                let t: jiff::Timestamp = v.parse().map_err(|_| {
                    LogQueryError::BadRequest(format!("sinceTime: {v:?} is not an RFC 3339 time"))
                })?;
                since_time = Some(t.as_nanosecond());
            }
            _ => {}
        }
    }
    if since_time.is_some() && o.since_seconds.is_some() {
        return Err(LogQueryError::Invalid(
            "at most one of sinceTime or sinceSeconds may be specified".into(),
        ));
    }
    o.since_nanos = since_time;
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(decode("a%20b+c").unwrap(), "a b c");
        assert!(decode("%zz").is_err());
        assert!(decode("%f").is_err());
        assert!(decode("%ff").is_err(), "not UTF-8");
        assert_eq!(
            pairs("command=ls&command=-l&&x").unwrap(),
            [
                ("command".into(), "ls".into()),
                ("command".into(), "-l".into()),
                ("x".into(), String::new())
            ]
        );
        assert!(pairs(&"a=1&".repeat(MAX_PAIRS + 1)).is_err());
    }

    #[test]
    fn exec_options_as_upstream() {
        let o = stream_options(
            "command=sh&command=-c&command=echo%20hi&stdout=1&stderr=true&tty=1",
            true,
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert!(o.stdout && o.tty && !o.stderr, "stderr dropped with a tty");
        assert!(stream_options("command=id", true).is_err(), "no stream");
        assert!(stream_options("stdout=1", true).is_err(), "no command");
        assert!(
            stream_options("stdout=1", false).is_ok(),
            "attach needs none"
        );
        assert!(stream_options("command=id&stdout=yes", true).is_err());
        // kube-hunter's legacy spelling
        assert!(stream_options("command=id&input=1&output=1&tty=1", true).is_ok());
    }

    #[test]
    fn run_and_port_forward() {
        assert_eq!(
            run_command("cmd=ls%20-l%20/", "").unwrap(),
            ["ls", "-l", "/"]
        );
        assert_eq!(run_command("", "cmd=cat+/x").unwrap(), ["cat", "/x"]);
        assert!(run_command("", "").is_err());
        assert!(run_command("cmd=", "").is_err());
        assert_eq!(forward_ports("port=80&port=443").unwrap(), [80, 443]);
        assert!(forward_ports("port=0").is_err());
        assert!(forward_ports("port=70000").is_err());
    }

    #[test]
    fn log_options_validation() {
        let o = log_options("follow=true&tailLines=10&limitBytes=5&timestamps=1&previous=false")
            .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(10), Some(5)));
        assert_eq!(log_options("tail=all").unwrap().tail_lines, None);
        assert_eq!(log_options("tail=3").unwrap().tail_lines, Some(3));
        assert!(matches!(
            log_options("tailLines=-1"),
            Err(LogQueryError::Invalid(_))
        ));
        assert!(matches!(
            log_options("limitBytes=0"),
            Err(LogQueryError::Invalid(_))
        ));
        assert!(matches!(
            log_options("sinceSeconds=0"),
            Err(LogQueryError::Invalid(_))
        ));
        assert!(matches!(
            log_options("tailLines=x"),
            Err(LogQueryError::BadRequest(_))
        ));
        assert!(matches!(
            log_options("follow=maybe"),
            Err(LogQueryError::BadRequest(_))
        ));
        assert!(matches!(
            log_options("sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z"),
            Err(LogQueryError::Invalid(_))
        ));
        let t = log_options("sinceTime=2026-01-01T00:00:00Z").unwrap();
        assert_eq!(t.since_nanos, Some(1_767_225_600_000_000_000));
    }
}
