//! A minimal HTTP/1.0 GET over std's TcpStream, enough to prove a pod serves.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: the status line and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status_line: String,
    pub body: String,
}

/// `GET path HTTP/1.0` to `addr`; reads until the server closes (HTTP/1.0) or 64 KiB.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    // One write: some servers read the request with a single read.
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: xtask\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.take(64 * 1024)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading from {addr}"))?;
    Ok(parse_response(&String::from_utf8_lossy(&buf)))
}

fn parse_response(text: &str) -> Response {
    let status_line = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string();
    let body = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Response { status_line, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_status_and_body() {
        let r = parse_response("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\nhello\n");
        assert_eq!(r.status_line, "HTTP/1.0 200 OK");
        assert_eq!(r.body, "hello\n");
    }

    #[test]
    fn talks_to_a_loopback_server() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().expect("accept");
            let mut req = Vec::new();
            let mut buf = [0u8; 512];
            while !req.ends_with(b"\r\n\r\n") {
                let n = c.read(&mut buf).expect("read");
                assert!(n > 0, "client closed early");
                req.extend_from_slice(&buf[..n]);
            }
            assert!(String::from_utf8_lossy(&req).starts_with("GET /x HTTP/1.0\r\n"));
            c.write_all(b"HTTP/1.0 200 OK\r\n\r\nhi").expect("write");
        });
        let r = get(addr, "/x", Duration::from_secs(5)).expect("get");
        t.join().expect("server");
        assert_eq!(r.status_line, "HTTP/1.0 200 OK");
        assert_eq!(r.body, "hi");
    }
}
