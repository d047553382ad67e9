//! `/containerLogs` (CRI log files, with follow) and `/logs/` (node log files, off unless
//! enableSystemLogHandler).
//!
//! Memory stays bounded whatever the file size: files are read in [`CHUNK`]-byte pieces
//! into a channel of [`CHANNEL_DEPTH`] chunks (so a slow client slows the reader), a line
//! longer than [`crate::crilog::MAX_LINE_BYTES`] is cut, and `tailLines` is found by
//! scanning backwards from the end, never by loading the file.
//!
//! `/logs/` walks the path one component at a time, each opened relative to its parent
//! directory's open descriptor with `O_NOFOLLOW`: a symlink anywhere fails the request, and
//! `..`, `.` and escaped segments never reach here (the router refuses them).

use std::io::SeekFrom;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::api::{Api, Body, Conn, NOT_FOUND, text};
use super::query::{self, LogOptions, LogQueryError};
use super::routes::ContainerRef;
use crate::crilog;
use crate::pod::observed::ContainerState;

pub const CHUNK: usize = 32 * 1024;
pub const CHANNEL_DEPTH: usize = 4;
/// How often a followed log is polled for new data.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Directory listings stop at this many entries.
const MAX_LISTING: usize = 10_000;

type Tx = mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

fn streaming(
    rx: mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
    content_type: &'static str,
) -> Response<Body> {
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed_unsync();
    let mut r = Response::new(body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

pub async fn container_logs(
    api: &Api,
    conn: &Conn,
    c: &ContainerRef,
    query: &str,
) -> Response<Body> {
    let opts = match query::log_options(query) {
        Ok(o) => o,
        Err(LogQueryError::BadRequest(_)) => return text(StatusCode::BAD_REQUEST, "Bad Request\n"),
        Err(LogQueryError::Invalid(_)) => {
            return text(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unprocessable Entity: invalid log options\n",
            );
        }
    };
    let Some((_, pod)) = super::endpoints::find_pod(api, &c.namespace, &c.pod, c.uid.as_deref())
    else {
        return text(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let container = if opts.previous {
        pod.previous_container(&c.container)
    } else {
        pod.latest_container(&c.container)
    };
    let Some(container) = container.cloned() else {
        return text(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let file = match tokio::fs::File::open(&container.log_path).await {
        Ok(f) => f,
        Err(_) => return text(StatusCode::NOT_FOUND, NOT_FOUND),
    };
    let permit = if opts.follow {
        match api.streams.clone().try_acquire_owned() {
            Ok(p) => {
                conn.raise_idle_timeout(api.options.streaming_idle_timeout);
                Some(p)
            }
            Err(_) => return text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n"),
        }
    } else {
        None
    };
    let since = opts.since_nanos.or_else(|| {
        opts.since_seconds.map(|d| {
            jiff::Timestamp::now().as_nanosecond()
                - i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)
        })
    });
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let snapshots = api.handles.snapshots.clone();
    let id = container.id.clone();
    let running = move || {
        snapshots.borrow().pods.values().any(|p| {
            p.containers
                .iter()
                .any(|c| c.id == id && c.state == ContainerState::Running)
        })
    };
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(e) = stream_log(file, opts, since, running, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    streaming(rx, "text/plain; charset=utf-8")
}

/// The offset from which the last `n` lines of `file` start.
pub async fn tail_offset(file: &mut tokio::fs::File, n: u64) -> std::io::Result<u64> {
    let len = file.seek(SeekFrom::End(0)).await?;
    if n == 0 {
        return Ok(len);
    }
    let mut end = len;
    let mut seen = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let mut first = true;
    while end > 0 {
        let start = end.saturating_sub(CHUNK as u64);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(&mut buf[..size]).await?;
        for i in (0..size).rev() {
            if buf[i] != b'\n' {
                continue;
            }
            if first && start + i as u64 == len - 1 {
                // The file's final newline ends the last line; it does not start one.
                continue;
            }
            seen += 1;
            if seen == n {
                return Ok(start + i as u64 + 1);
            }
        }
        first = false;
        end = start;
    }
    Ok(0)
}

struct Emitter<'a> {
    tx: &'a Tx,
    opts: LogOptions,
    since: Option<i128>,
    left: Option<u64>,
    parser: crilog::Parser,
}

impl Emitter<'_> {
    /// Sends one raw CRI entry; false when the stream should end.
    async fn entry(&mut self, raw: &[u8]) -> bool {
        let Some(line) = self.parser.push(raw) else {
            return true;
        };
        if let Some(since) = self.since {
            let ts = line
                .timestamp
                .parse::<jiff::Timestamp>()
                .map(|t| t.as_nanosecond());
            if ts.is_ok_and(|t| t < since) {
                return true;
            }
        }
        let mut out = Vec::with_capacity(line.content.len() + 40);
        if self.opts.timestamps {
            out.extend_from_slice(line.timestamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&line.content);
        out.push(b'\n');
        let mut last = false;
        if let Some(left) = &mut self.left {
            if (out.len() as u64) >= *left {
                out.truncate(*left as usize);
                last = true;
            }
            *left -= out.len() as u64;
        }
        if self
            .tx
            .send(Ok(Frame::data(Bytes::from(out))))
            .await
            .is_err()
        {
            return false;
        }
        !last
    }
}

async fn stream_log(
    mut file: tokio::fs::File,
    opts: LogOptions,
    since: Option<i128>,
    running: impl Fn() -> bool,
    tx: &Tx,
) -> std::io::Result<()> {
    if let Some(n) = opts.tail_lines {
        let at = tail_offset(&mut file, n).await?;
        file.seek(SeekFrom::Start(at)).await?;
    } else {
        file.seek(SeekFrom::Start(0)).await?;
    }
    let follow = opts.follow;
    let mut em = Emitter {
        tx,
        left: opts.limit_bytes,
        opts,
        since,
        parser: crilog::Parser::default(),
    };
    let mut buf = vec![0u8; CHUNK];
    // Bytes of an unfinished raw line, capped; the rest of an overlong line is dropped.
    let mut pending: Vec<u8> = Vec::new();
    let mut overlong = false;
    let mut last_look = false;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            if !follow || last_look || tx.is_closed() {
                break;
            }
            if !running() {
                // One more read after the container stopped, for what it wrote last.
                last_look = true;
                continue;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
            continue;
        }
        let mut rest = &buf[..n];
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            let part = &rest[..i];
            rest = &rest[i + 1..];
            let keep = crilog::MAX_LINE_BYTES
                .saturating_sub(pending.len())
                .min(part.len());
            pending.extend_from_slice(&part[..keep]);
            overlong = false;
            if !pending.is_empty() && !em.entry(&pending).await {
                return Ok(());
            }
            pending.clear();
        }
        if !overlong {
            let keep = crilog::MAX_LINE_BYTES
                .saturating_sub(pending.len())
                .min(rest.len());
            pending.extend_from_slice(&rest[..keep]);
            overlong = keep < rest.len();
        }
    }
    if !pending.is_empty() {
        em.entry(&pending).await;
    }
    if let Some(line) = em.parser.finish() {
        let mut out = line.content;
        out.push(b'\n');
        let _ = tx.send(Ok(Frame::data(Bytes::from(out)))).await;
    }
    Ok(())
}

/// Opens `rel` below `root` one component at a time without following any symlink.
/// Returns the open file (a directory or a regular file).
pub fn open_beneath(root: &Path, rel: &[String]) -> std::io::Result<std::fs::File> {
    let mut cur = std::fs::File::open(root)?;
    for comp in rel {
        if comp.is_empty()
            || comp == "."
            || comp == ".."
            || comp.contains('/')
            || comp.contains('\0')
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "bad path component",
            ));
        }
        let next = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(format!("/proc/self/fd/{}/{comp}", cur.as_raw_fd()))?;
        cur = next;
    }
    Ok(cur)
}

/// `/logs/…`: a directory lists its entry names (plain text), a regular file is streamed.
pub async fn node_logs(root: &Path, rel: &[String]) -> Response<Body> {
    let root = root.to_path_buf();
    let rel = rel.to_vec();
    let opened =
        tokio::task::spawn_blocking(move || -> std::io::Result<Result<Vec<u8>, std::fs::File>> {
            let f = open_beneath(&root, &rel)?;
            let meta = f.metadata()?;
            if meta.is_dir() {
                let mut names: Vec<String> =
                    std::fs::read_dir(format!("/proc/self/fd/{}", f.as_raw_fd()))?
                        .take(MAX_LISTING)
                        .filter_map(|e| e.ok())
                        .map(|e| {
                            let name = e.file_name().to_string_lossy().into_owned();
                            if e.file_type().is_ok_and(|t| t.is_dir()) {
                                format!("{name}/")
                            } else {
                                name
                            }
                        })
                        .collect();
                names.sort();
                let mut out = names.join("\n");
                out.push('\n');
                Ok(Ok(out.into_bytes()))
            } else if meta.is_file() {
                Ok(Err(f))
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a regular file",
                ))
            }
        })
        .await;
    match opened {
        Ok(Ok(Ok(listing))) => {
            let mut r = Response::new(super::api::full(listing));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
        Ok(Ok(Err(file))) => {
            let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
            tokio::spawn(async move {
                let mut f = tokio::fs::File::from_std(file);
                let mut buf = vec![0u8; CHUNK];
                loop {
                    match f.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            if tx
                                .send(Ok(Frame::data(Bytes::copy_from_slice(&buf[..n]))))
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            break;
                        }
                    }
                }
            });
            streaming(rx, "text/plain; charset=utf-8")
        }
        _ => text(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tail_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut content = String::new();
        for i in 0..10_000 {
            content.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&p, &content).unwrap();
        let mut f = tokio::fs::File::open(&p).await.unwrap();
        let at = tail_offset(&mut f, 2).await.unwrap() as usize;
        assert_eq!(&content[at..], "line 9998\nline 9999\n");
        assert_eq!(
            tail_offset(&mut f, 0).await.unwrap() as usize,
            content.len()
        );
        assert_eq!(tail_offset(&mut f, 20_000).await.unwrap(), 0);
        std::fs::write(&p, "a\nb").unwrap();
        let mut f = tokio::fs::File::open(&p).await.unwrap();
        assert_eq!(tail_offset(&mut f, 1).await.unwrap(), 2);
    }

    async fn collect(content: &[u8], opts: LogOptions, since: Option<i128>) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, content).unwrap();
        let file = tokio::fs::File::open(&p).await.unwrap();
        let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
        let task = tokio::spawn(async move { stream_log(file, opts, since, || false, &tx).await });
        let mut out = Vec::new();
        while let Some(f) = rx.recv().await {
            out.extend_from_slice(&f.unwrap().into_data().unwrap());
        }
        task.await.unwrap().unwrap();
        out
    }

    #[tokio::test]
    async fn options_shape_the_stream() {
        let log = b"2026-01-01T00:00:01.000000000Z stdout F one\n\
                    2026-01-01T00:00:02.000000000Z stderr P tw\n\
                    2026-01-01T00:00:02.100000000Z stderr F o\n\
                    garbage\n\
                    2026-01-01T00:00:03.000000000Z stdout F three\n";
        let all = collect(log, LogOptions::default(), None).await;
        assert_eq!(all, b"one\ntwo\nthree\n");
        let ts = collect(
            log,
            LogOptions {
                timestamps: true,
                tail_lines: Some(1),
                ..Default::default()
            },
            None,
        )
        .await;
        assert_eq!(ts, b"2026-01-01T00:00:03.000000000Z three\n");
        let since = "2026-01-01T00:00:02Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_nanosecond();
        assert_eq!(
            collect(log, LogOptions::default(), Some(since)).await,
            b"two\nthree\n"
        );
        let limited = collect(
            log,
            LogOptions {
                limit_bytes: Some(6),
                ..Default::default()
            },
            None,
        )
        .await;
        assert_eq!(limited, b"one\ntw");
    }

    #[tokio::test]
    async fn an_endless_line_is_cut_not_buffered() {
        let mut log = b"2026-01-01T00:00:01Z stdout F ".to_vec();
        log.extend(std::iter::repeat_n(b'x', 3 * crilog::MAX_LINE_BYTES));
        log.extend_from_slice(b"\n2026-01-01T00:00:02Z stdout F after\n");
        let out = collect(&log, LogOptions::default(), None).await;
        assert!(out.len() <= crilog::MAX_LINE_BYTES + 16, "{}", out.len());
        assert!(out.ends_with(b"after\n"));
    }

    #[test]
    fn open_beneath_refuses_symlinks_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/ok.log"), "ok").unwrap();
        std::fs::write(dir.path().join("secret"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("dirlink")).unwrap();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(open_beneath(&root, &s(&["sub", "ok.log"])).is_ok());
        assert!(open_beneath(&root, &s(&["link"])).is_err());
        assert!(open_beneath(&root, &s(&["dirlink", "secret"])).is_err());
        assert!(open_beneath(&root, &s(&["..", "secret"])).is_err());
        assert!(open_beneath(&root, &s(&["sub/../../secret"])).is_err());
    }
}
