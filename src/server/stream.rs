//! `/exec`, `/attach` and `/portForward`: authorised first (in `api.rs`), then the CRI is
//! asked for a streaming URL, then the client's upgrade request is proxied to the runtime's
//! streaming server (SPDY or WebSocket headers passed through).
//!
//! - The backend's `101` is relayed and both upgraded connections are joined, with the
//!   streaming idle timeout (`streamingConnectionIdleTimeout`) on the pair.
//! - Any other backend answer is relayed with `Connection: close`, so the client
//!   connection ends and no further byte of it is read (the CVE-2018-1002105 lesson).
//! - A backend redirect is never relayed (CVE-2020-8559): it becomes 502.
//! - The client's `Authorization` header never reaches the backend.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::api::{Api, Body, NOT_FOUND, close, full, text};
use super::routes::Route;
use crate::cri::api as cri;

/// Request headers passed to the streaming server; everything else stays behind.
const PASS_REQUEST: &[&str] = &[
    "connection",
    "upgrade",
    "x-stream-protocol-version",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];
/// Response headers relayed from the streaming server.
const PASS_RESPONSE: &[&str] = &[
    "connection",
    "upgrade",
    "x-stream-protocol-version",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-type",
];
/// A non-101 answer's body is relayed up to this size.
const MAX_ERROR_BODY: usize = 16 * 1024;
const BACKEND_TIMEOUT: Duration = Duration::from_secs(30);

fn bad_request() -> Response<Body> {
    text(StatusCode::BAD_REQUEST, "Bad Request\n")
}

fn bad_gateway() -> Response<Body> {
    text(StatusCode::BAD_GATEWAY, "Bad Gateway\n")
}

/// Asks the runtime for the streaming URL of this request.
async fn streaming_url(api: &Api, route: &Route, query: &str) -> Result<String, Response<Body>> {
    let cri = &api.handles.cri;
    let result = match route {
        Route::Exec(c) | Route::Attach(c) => {
            let is_exec = matches!(route, Route::Exec(_));
            let o = super::query::stream_options(query, is_exec).map_err(|_| bad_request())?;
            let container = super::endpoints::running_container(api, c)
                .ok_or_else(|| text(StatusCode::NOT_FOUND, NOT_FOUND))?;
            if is_exec {
                cri.exec(cri::ExecRequest {
                    container_id: container.id.into_string(),
                    cmd: o.command,
                    tty: o.tty,
                    stdin: o.stdin,
                    stdout: o.stdout,
                    stderr: o.stderr,
                    audit_request_id: String::new(),
                })
                .await
            } else {
                cri.attach(cri::AttachRequest {
                    container_id: container.id.into_string(),
                    stdin: o.stdin,
                    tty: o.tty,
                    stdout: o.stdout,
                    stderr: o.stderr,
                    audit_request_id: String::new(),
                })
                .await
            }
        }
        Route::PortForward(p) => {
            let ports = super::query::forward_ports(query).map_err(|_| bad_request())?;
            let (_, pod) = super::endpoints::find_pod(api, &p.namespace, &p.pod, p.uid.as_deref())
                .ok_or_else(|| text(StatusCode::NOT_FOUND, NOT_FOUND))?;
            let sandbox = pod
                .latest_sandbox()
                .filter(|s| s.state == crate::pod::observed::SandboxState::Ready)
                .ok_or_else(|| text(StatusCode::NOT_FOUND, NOT_FOUND))?;
            cri.port_forward(cri::PortForwardRequest {
                pod_sandbox_id: sandbox.id.to_string(),
                port: ports,
            })
            .await
        }
        _ => return Err(text(StatusCode::NOT_FOUND, NOT_FOUND)),
    };
    result.map_err(|e| {
        tracing::warn!(error = %e, "streaming request: the runtime refused");
        if e.is_not_found() {
            text(StatusCode::NOT_FOUND, NOT_FOUND)
        } else {
            text(StatusCode::INTERNAL_SERVER_ERROR, super::api::INTERNAL)
        }
    })
}

/// The authority and path-and-query of an `http://host:port/path` streaming URL.
pub fn parse_backend(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some((authority.to_owned(), path.to_owned()))
}

pub async fn proxy<B>(api: &Api, route: &Route, query: &str, mut req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
{
    // The stream permit comes first: a request refused for want of one (429) never makes
    // the runtime open a streaming session, so none is left behind.
    let permit = match api.streams.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => return text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n"),
    };
    let url = match streaming_url(api, route, query).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let Some((authority, path)) = parse_backend(&url) else {
        tracing::warn!("streaming request: the runtime returned a URL that is not plain http");
        return bad_gateway();
    };
    let mut backend_req = Request::builder()
        .method(req.method().clone())
        .uri(path)
        .header(header::HOST, authority.as_str());
    for name in PASS_REQUEST {
        for v in req.headers().get_all(*name) {
            backend_req = backend_req.header(HeaderName::from_static(name), v.clone());
        }
    }
    let Ok(backend_req) = backend_req.body(Empty::<Bytes>::new()) else {
        return bad_request();
    };
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(&authority).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        sender.send_request(backend_req).await.ok()
    };
    let Ok(Some(mut backend_resp)) = tokio::time::timeout(BACKEND_TIMEOUT, connect).await else {
        tracing::warn!(backend = %authority, "streaming request: the runtime's streaming server did not answer");
        return bad_gateway();
    };
    let status = backend_resp.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        if status.is_redirection() {
            return bad_gateway();
        }
        let body = http_body_util::Limited::new(backend_resp.into_body(), MAX_ERROR_BODY);
        let bytes = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut r = Response::new(full(bytes));
        *r.status_mut() = status;
        return close(r);
    }
    let client_up = hyper::upgrade::on(&mut req);
    let backend_up = hyper::upgrade::on(&mut backend_resp);
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for name in PASS_RESPONSE {
        for v in backend_resp.headers().get_all(*name) {
            resp.headers_mut()
                .append(HeaderName::from_static(name), v.clone());
        }
    }
    let idle = api.options.streaming_idle_timeout;
    tokio::spawn(async move {
        let _permit = permit;
        let (Ok(client), Ok(backend)) = (client_up.await, backend_up.await) else {
            tracing::warn!("streaming request: an upgrade did not complete");
            return;
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        if let Err(e) = join(&mut client, &mut backend, idle).await {
            tracing::debug!(error = %e, "stream ended");
        }
    });
    resp
}

/// Copies both ways until either side closes or nothing moves for `idle`.
async fn join<A, B>(a: &mut A, b: &mut B, idle: Duration) -> std::io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut ab = [0u8; 16 * 1024];
    let mut ba = [0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = a.read(&mut ab) => {
                let n = r?;
                if n == 0 { let _ = b.shutdown().await; return Ok(()); }
                b.write_all(&ab[..n]).await?;
            }
            r = b.read(&mut ba) => {
                let n = r?;
                if n == 0 { let _ = a.shutdown().await; return Ok(()); }
                a.write_all(&ba[..n]).await?;
            }
            _ = tokio::time::sleep(idle) => {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "streamingConnectionIdleTimeout"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_urls() {
        assert_eq!(
            parse_backend("http://127.0.0.1:3456/exec/abc"),
            Some(("127.0.0.1:3456".into(), "/exec/abc".into()))
        );
        assert_eq!(
            parse_backend("http://[::1]:1"),
            Some(("[::1]:1".into(), "/".into()))
        );
        assert_eq!(parse_backend("https://x/y"), None);
        assert_eq!(parse_backend("http://u@x/y"), None);
        assert_eq!(parse_backend("http:///y"), None);
    }
}
