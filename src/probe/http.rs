//! HTTP GET actions for probes and lifecycle hooks, as upstream's `pkg/probe/http`.
//!
//! One connection per request, no keep-alive, no proxy, no compression (upstream's probe
//! transport). Redirects are followed only to the same hostname (any port or scheme), at
//! most 10 requests in all; a redirect elsewhere is not followed and gives a Warning,
//! which counts as success. HTTPS does not verify the server's certificate. At most
//! [`MAX_OUTPUT`] bytes of a body are read. The caller applies the timeout.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http::header::{ACCEPT, CONNECTION, HOST, LOCATION, REFERER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::HTTPGetAction;
use rustls::ClientConfig;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::handler::{HttpPurpose, error_chain, join_host_port, resolve_port};
use super::{KUBE_MINOR_VERSION, MAX_OUTPUT, ProbeError, ProbeOutcome, Target};
use crate::tls::signatures::HandshakeSignatures;

/// Why a URL, a header or the TLS client could not be made; each becomes the message of
/// a probe Failure, in Go's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("unsupported protocol scheme {0:?}")]
    UnsupportedScheme(String),
    #[error("no host: the pod has no IP")]
    NoPodIp,
    #[error("no host in URL")]
    NoHost,
    #[error("missing ']' in host")]
    UnclosedIpv6,
    #[error("invalid port {0:?}")]
    InvalidPort(String),
    #[error("invalid header field name {0:?}")]
    InvalidHeaderName(String),
    #[error("invalid header field value for {0:?}")]
    InvalidHeaderValue(String),
    #[error("invalid User-Agent")]
    InvalidUserAgent,
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
}

/// Go's client stops at 10 requests: the original and 9 redirects.
const MAX_REQUESTS: usize = 10;

/// Runs one GET (and its same-host redirects). `Err` is a probe error: the named port does
/// not exist, or the body broke off (upstream throws those results away).
pub(super) async fn run(
    action: &HTTPGetAction,
    purpose: HttpPurpose,
    target: &Target,
) -> Result<ProbeOutcome, ProbeError> {
    let port = resolve_port(&action.port, &target.container)?;
    let origin = match start_url(action, target, port) {
        Ok(u) => u,
        Err(e) => return Ok(ProbeOutcome::failure(e.to_string())),
    };
    let (headers, mut host_override) = match request_headers(action, purpose) {
        Ok(h) => h,
        Err(e) => {
            return Ok(ProbeOutcome::failure(format!(
                "Get {:?}: {e}",
                origin.to_string()
            )));
        }
    };

    let mut url = origin.clone();
    let mut previous: Option<Url> = None;
    for requests in 1..=MAX_REQUESTS {
        let mut hop_headers = headers.clone();
        if let Some(prev) = &previous {
            // Go sets Referer on redirects, except from https to http.
            let downgrade = prev.https && !url.https;
            if !downgrade
                && !hop_headers.contains_key(REFERER)
                && let Ok(v) = HeaderValue::from_str(&prev.to_string())
            {
                hop_headers.insert(REFERER, v);
            }
        }
        let host = host_override.clone().unwrap_or_else(|| url.authority());
        let step = match exchange(&url, hop_headers, &host, &origin.host, requests).await {
            Ok(step) => step,
            Err(HopError::Failure(e)) => {
                return Ok(ProbeOutcome::failure(format!(
                    "Get {:?}: {e}",
                    url.to_string()
                )));
            }
            Err(HopError::Body(e)) => return Err(ProbeError::Body(e)),
        };
        match step {
            Step::Follow { next, relative } => {
                // Go keeps a custom Host only across relative redirects.
                if !relative {
                    host_override = None;
                }
                previous = Some(std::mem::replace(&mut url, next));
            }
            Step::Respond { status, body } => return Ok(outcome(purpose, status, &body)),
        }
    }
    // Unreachable: the last allowed request never yields Follow.
    Ok(ProbeOutcome::failure(format!(
        "Get {:?}: stopped after {MAX_REQUESTS} redirects",
        url.to_string()
    )))
}

/// What a probe's GET reports to a human: `scheme://host:port/path`.
pub(super) fn describe(action: &HTTPGetAction, target: &Target) -> String {
    match resolve_port(&action.port, &target.container) {
        Ok(port) => match start_url(action, target, port) {
            Ok(u) => u.to_string(),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    }
}

fn outcome(purpose: HttpPurpose, status: u16, body: &[u8]) -> ProbeOutcome {
    if purpose == HttpPurpose::Lifecycle {
        // Upstream's hook runner fails only when the request fails.
        return ProbeOutcome::success("");
    }
    if (200..400).contains(&status) {
        if status >= 300 {
            return ProbeOutcome::warning(format!(
                "Probe terminated redirects, Response body: {}",
                String::from_utf8_lossy(body)
            ));
        }
        return ProbeOutcome::success("");
    }
    // Upstream keeps the body out of this message (kubernetes#99425): it may hold secrets.
    ProbeOutcome::failure(format!("HTTP probe failed with statuscode: {status}"))
}

/// A parsed http(s) URL: what a request needs to connect and what Go compares.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Url {
    https: bool,
    /// Without brackets, as Go's `URL.Hostname()`.
    host: String,
    port: u16,
    /// Whether the URL spelled out the port (the Host header repeats it then).
    explicit_port: bool,
    /// Path and query, starting with `/`, percent-encoded.
    path: String,
}

impl Url {
    fn authority(&self) -> String {
        if self.explicit_port {
            join_host_port(&self.host, self.port)
        } else if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// `scheme://host:port/path` for an action: host is `host` or the pod IP.
fn start_url(action: &HTTPGetAction, target: &Target, port: u16) -> Result<Url, HttpError> {
    let scheme = action
        .scheme
        .as_deref()
        .unwrap_or("HTTP")
        .to_ascii_lowercase();
    let https = match scheme.as_str() {
        "http" => false,
        "https" => true,
        other => return Err(HttpError::UnsupportedScheme(other.to_owned())),
    };
    let host = match action.host.as_deref() {
        Some(h) if !h.is_empty() => h,
        _ => target.pod_ip.as_str(),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(HttpError::NoPodIp);
    }
    let path = action.path.as_deref().unwrap_or("");
    let path = strip_fragment(path);
    let path = if path.starts_with('/') {
        encode_path(path)
    } else {
        encode_path(&format!("/{path}"))
    };
    Ok(Url {
        https,
        host,
        port,
        explicit_port: true,
        path,
    })
}

/// The headers every request of one probe carries, and the Host header if the user set
/// one. Defaults as upstream: `User-Agent: kube-probe/<version>` and `Accept: */*`, an
/// empty user-set Accept removes Accept, an empty User-Agent sends none.
fn request_headers(
    action: &HTTPGetAction,
    purpose: HttpPurpose,
) -> Result<(HeaderMap, Option<String>), HttpError> {
    let mut headers = HeaderMap::new();
    for h in action.http_headers.iter().flatten() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HttpError::InvalidHeaderName(h.name.clone()))?;
        let value = HeaderValue::from_str(&h.value)
            .map_err(|_| HttpError::InvalidHeaderValue(h.name.clone()))?;
        headers.append(name, value);
    }
    let host = headers
        .remove(HOST)
        .and_then(|v| v.to_str().ok().map(str::to_string))
        .filter(|h| !h.is_empty());
    if !headers.contains_key(USER_AGENT) {
        let fragment = match purpose {
            HttpPurpose::Probe => "probe",
            HttpPurpose::Lifecycle => "lifecycle",
        };
        let ua = format!("kube-{fragment}/{KUBE_MINOR_VERSION}");
        headers.insert(
            USER_AGENT,
            HeaderValue::from_str(&ua).map_err(|_| HttpError::InvalidUserAgent)?,
        );
    } else if headers.get(USER_AGENT).is_some_and(|v| v.is_empty()) {
        headers.remove(USER_AGENT);
    }
    match headers.get(ACCEPT) {
        None => {
            headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        }
        Some(v) if v.is_empty() => {
            headers.remove(ACCEPT);
        }
        Some(_) => {}
    }
    // Upstream's transport disables keep-alive: one connection per probe.
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    Ok((headers, host))
}

enum Step {
    Follow { next: Url, relative: bool },
    Respond { status: u16, body: Vec<u8> },
}

enum HopError {
    /// The request failed (Go's `client.Do` error): a probe Failure.
    Failure(String),
    /// The response body broke off: a probe error.
    Body(String),
}

/// One request on a fresh connection, and what to do with the answer.
async fn exchange(
    url: &Url,
    headers: HeaderMap,
    host: &str,
    origin_host: &str,
    requests: usize,
) -> Result<Step, HopError> {
    let mut request = Request::get(url.path.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| HopError::Failure(format!("invalid request: {e}")))?;
    *request.headers_mut() = headers;
    let host = HeaderValue::from_str(host)
        .map_err(|_| HopError::Failure(format!("invalid Host {host:?}")))?;
    request.headers_mut().insert(HOST, host);

    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| {
            HopError::Failure(format!(
                "dial tcp {}: {e}",
                join_host_port(&url.host, url.port)
            ))
        })?;
    let decide = |response| decide(response, url, origin_host, requests);
    if !url.https {
        return send(tcp, request, decide).await;
    }
    let config = match &*INSECURE_TLS {
        Ok(c) => c.clone(),
        Err(e) => return Err(HopError::Failure(e.to_string())),
    };
    let name = ServerName::try_from(url.host.clone())
        .map_err(|_| HopError::Failure(format!("invalid TLS server name {:?}", url.host)))?;
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| HopError::Failure(format!("TLS handshake: {e}")))?;
    send(tls, request, decide).await
}

/// Sends `request` over `io` and hands the response to `decide`, while driving the
/// connection in this same task (no task is spawned per request).
async fn send<I, D, F>(io: I, request: Request<Empty<Bytes>>, decide: D) -> Result<Step, HopError>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    D: FnOnce(hyper::Response<Incoming>) -> F,
    F: Future<Output = Result<Step, HopError>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| HopError::Failure(error_chain(&e)))?;
    let work = async move {
        sender
            .ready()
            .await
            .map_err(|e| HopError::Failure(error_chain(&e)))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| HopError::Failure(error_chain(&e)))?;
        decide(response).await
    };
    tokio::pin!(conn);
    tokio::pin!(work);
    let mut conn_done = false;
    loop {
        tokio::select! {
            step = &mut work => return step,
            // The connection ending (cleanly or not) is seen by `work` as well; keep
            // polling it only until then.
            _ = &mut conn, if !conn_done => conn_done = true,
        }
    }
}

/// Go's redirect rules with upstream's `RedirectChecker(false)`.
async fn decide(
    response: hyper::Response<Incoming>,
    url: &Url,
    origin_host: &str,
    requests: usize,
) -> Result<Step, HopError> {
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .filter(|l| !l.is_empty());
    if let (true, Some(location)) = (matches!(status, 301 | 302 | 303 | 307 | 308), location) {
        let (next, relative) = resolve(url, &location).map_err(|e| {
            HopError::Failure(format!("failed to parse Location header {location:?}: {e}"))
        })?;
        // Not the same hostname: stop here and report this response (Warning).
        if next.host == origin_host {
            if requests >= MAX_REQUESTS {
                return Err(HopError::Failure(format!(
                    "stopped after {MAX_REQUESTS} redirects"
                )));
            }
            return Ok(Step::Follow { next, relative });
        }
    }
    let body = read_capped(response.into_body())
        .await
        .map_err(|e| HopError::Body(error_chain(&e)))?;
    Ok(Step::Respond { status, body })
}

/// At most [`MAX_OUTPUT`] bytes of the body; the rest is never read.
async fn read_capped(mut body: Incoming) -> Result<Vec<u8>, hyper::Error> {
    let mut out = Vec::new();
    while out.len() < MAX_OUTPUT {
        match body.frame().await {
            None => break,
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    let room = MAX_OUTPUT - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
    }
    Ok(out)
}

/// Resolves a Location against the URL that answered with it (RFC 3986 §5.2). Also says
/// whether the Location was relative (no scheme or authority).
fn resolve(base: &Url, location: &str) -> Result<(Url, bool), HttpError> {
    let location = strip_fragment(location);
    if let Some((scheme, rest)) = split_scheme(location) {
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            other => return Err(HttpError::UnsupportedScheme(other.to_owned())),
        };
        let rest = rest.strip_prefix("//").ok_or(HttpError::NoHost)?;
        return Ok((absolute(https, rest)?, false));
    }
    if let Some(rest) = location.strip_prefix("//") {
        return Ok((absolute(base.https, rest)?, false));
    }
    let base_path = base.path.split('?').next().unwrap_or("/");
    let path = if location.starts_with('/') {
        location.to_string()
    } else if location.starts_with('?') {
        format!("{base_path}{location}")
    } else {
        let dir = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
        format!("{dir}{location}")
    };
    let next = Url {
        path: encode_path(&remove_dot_segments(&path)),
        ..base.clone()
    };
    Ok((next, true))
}

/// `scheme` and the rest, if `s` starts with a URI scheme (`ALPHA *( ALPHA / DIGIT / "+" /
/// "-" / "." ) ":"`).
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then(|| (scheme, &s[colon + 1..]))
}

/// `authority[/path][?query]` after `scheme://`.
fn absolute(https: bool, rest: &str) -> Result<Url, HttpError> {
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    // Userinfo is dropped: a probe never sends credentials it was redirected to.
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']').ok_or(HttpError::UnclosedIpv6)?;
        (&v6[..close], v6[close + 1..].strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(HttpError::NoHost);
    }
    let default = if https { 443 } else { 80 };
    let (port, explicit_port) = match port {
        None | Some("") => (default, false),
        Some(p) => (
            p.parse::<u16>()
                .map_err(|_| HttpError::InvalidPort(p.to_owned()))?,
            true,
        ),
    };
    let path = if path.starts_with('/') {
        remove_dot_segments(path)
    } else {
        format!("/{path}")
    };
    Ok(Url {
        https,
        host: host.to_string(),
        port,
        explicit_port,
        path: encode_path(&path),
    })
}

fn strip_fragment(s: &str) -> &str {
    s.split('#').next().unwrap_or("")
}

/// RFC 3986 §5.2.4 on the path part; the query is kept as is.
fn remove_dot_segments(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate().skip(1) {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::from("/");
    result.push_str(&out.join("/"));
    if trailing_slash && !result.ends_with('/') {
        result.push('/');
    }
    if let Some(q) = query {
        result.push('?');
        result.push_str(q);
    }
    result
}

/// Percent-encodes what may not appear raw in a request target; `%` is kept, so an
/// already encoded path stays as it is.
fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'?'
                    | b'%'
            );
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The client configuration of HTTPS probes and hooks: TLS without certificate checks.
static INSECURE_TLS: LazyLock<Result<Arc<ClientConfig>, HttpError>> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = InsecureSkipVerifyForProbes {
        signatures: HandshakeSignatures::of(&provider),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::TlsConfig(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
});

/// Accepts any server certificate.
///
/// This is upstream's behaviour for HTTPS probes and hooks (`InsecureSkipVerify: true`):
/// a container serves whatever certificate it likes, usually self-signed or issued for its
/// service name rather than its pod IP, and the kubelet has no trust root for it. A probe
/// asks "does this endpoint answer?", not "who is it?", and sends nothing secret unless the
/// pod's own spec put it in a header. The handshake signature is still checked against the
/// presented key. Used only by this module's probe/hook client; nothing else in ironlet may
/// use it (everything else verifies peers).
#[derive(Debug)]
struct InsecureSkipVerifyForProbes {
    signatures: HandshakeSignatures,
}

impl ServerCertVerifier for InsecureSkipVerifyForProbes {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    crate::tls::signatures::delegate_handshake_signatures!(signatures);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use k8s_openapi::api::core::v1::HTTPHeader;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;
    use crate::probe::exec::tests::FakeExec;
    use crate::probe::testserver::{TestServer, response, tls_acceptor};
    use crate::probe::{Handler, ProbeResult, run_handler};

    fn action(port: u16, path: &str) -> HTTPGetAction {
        HTTPGetAction {
            port: IntOrString::Int(i32::from(port)),
            path: Some(path.into()),
            ..Default::default()
        }
    }

    fn target() -> Target {
        Target {
            pod_ip: "127.0.0.1".into(),
            container_id: "c".into(),
            container: Default::default(),
        }
    }

    async fn probe(a: HTTPGetAction) -> ProbeOutcome {
        probe_for(a, HttpPurpose::Probe, Duration::from_secs(5)).await
    }

    async fn probe_for(a: HTTPGetAction, purpose: HttpPurpose, t: Duration) -> ProbeOutcome {
        let fake = FakeExec::new(Err(crate::probe::ExecError("unused".into())));
        let h = Handler::HttpGet { action: a, purpose };
        run_handler(&h, &target(), &fake, t).await
    }

    #[tokio::test]
    async fn status_codes() {
        let server = TestServer::start("127.0.0.1", None, |req| match req.path.as_str() {
            "/ok" => response(200, &[], b"fine"),
            "/missing" => response(404, &[], b"nope"),
            "/broken" => response(500, &[], b"secret stack trace"),
            "/choices" => response(300, &[], b"pick one"),
            _ => response(400, &[], b""),
        })
        .await;
        let port = server.addr.port();
        assert_eq!(probe(action(port, "/ok")).await, ProbeOutcome::success(""));
        let o = probe(action(port, "/missing")).await;
        assert_eq!(
            o,
            ProbeOutcome::failure("HTTP probe failed with statuscode: 404")
        );
        let o = probe(action(port, "/broken")).await;
        assert_eq!(
            o,
            ProbeOutcome::failure("HTTP probe failed with statuscode: 500")
        );
        let o = probe(action(port, "/choices")).await;
        assert_eq!(
            o,
            ProbeOutcome::warning("Probe terminated redirects, Response body: pick one")
        );
        // A hook succeeds on any response.
        let o = probe_for(
            action(port, "/broken"),
            HttpPurpose::Lifecycle,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(o.result, ProbeResult::Success);
        assert_eq!(server.requests().len(), 5);
    }

    #[tokio::test]
    async fn default_and_user_headers_are_sent() {
        let server = TestServer::start("127.0.0.1", None, |_| response(200, &[], b"")).await;
        let port = server.addr.port();
        probe(action(port, "/a b?x=1")).await;
        let mut custom = action(port, "healthz");
        custom.http_headers = Some(vec![
            HTTPHeader {
                name: "X-Custom".into(),
                value: "one".into(),
            },
            HTTPHeader {
                name: "x-custom".into(),
                value: "two".into(),
            },
            HTTPHeader {
                name: "Accept".into(),
                value: "".into(),
            },
            HTTPHeader {
                name: "Host".into(),
                value: "example.test".into(),
            },
            HTTPHeader {
                name: "User-Agent".into(),
                value: "mine".into(),
            },
        ]);
        assert_eq!(probe(custom).await.result, ProbeResult::Success);
        probe_for(
            action(port, "/hook"),
            HttpPurpose::Lifecycle,
            Duration::from_secs(5),
        )
        .await;

        let reqs = server.requests();
        assert_eq!(reqs.len(), 3);
        let first = &reqs[0];
        assert_eq!(first.method, "GET");
        assert_eq!(first.path, "/a%20b?x=1");
        assert_eq!(first.header("user-agent"), vec!["kube-probe/1.33"]);
        assert_eq!(first.header("accept"), vec!["*/*"]);
        assert_eq!(first.header("host"), vec![format!("127.0.0.1:{port}")]);
        assert_eq!(first.header("connection"), vec!["close"]);
        assert!(first.header("accept-encoding").is_empty());

        let second = &reqs[1];
        assert_eq!(second.path, "/healthz");
        assert_eq!(second.header("x-custom"), vec!["one", "two"]);
        assert!(second.header("accept").is_empty());
        assert_eq!(second.header("host"), vec!["example.test"]);
        assert_eq!(second.header("user-agent"), vec!["mine"]);

        assert_eq!(reqs[2].header("user-agent"), vec!["kube-lifecycle/1.33"]);
    }

    #[tokio::test]
    async fn body_read_is_capped() {
        // A 300 (never followed) reports its body: only the first 10 KiB of it.
        let big = vec![b'x'; 4 * MAX_OUTPUT];
        let server = TestServer::start("127.0.0.1", None, move |_| response(300, &[], &big)).await;
        let o = probe(action(server.addr.port(), "/")).await;
        assert_eq!(o.result, ProbeResult::Warning);
        let body = o
            .message
            .strip_prefix("Probe terminated redirects, Response body: ")
            .unwrap();
        assert_eq!(body.len(), MAX_OUTPUT);

        // A 200 whose body never ends still answers at once.
        let endless = TestServer::start_endless("127.0.0.1").await;
        let started = Instant::now();
        let o = probe_for(
            action(endless.addr.port(), "/"),
            HttpPurpose::Probe,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(o.result, ProbeResult::Success, "{}", o.message);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn https_skips_certificate_verification() {
        let server = TestServer::start("127.0.0.1", Some(tls_acceptor()), |_| {
            response(200, &[], b"")
        })
        .await;
        let mut a = action(server.addr.port(), "/tls");
        a.scheme = Some("HTTPS".into());
        assert_eq!(probe(a).await, ProbeOutcome::success(""));
        assert_eq!(server.requests()[0].path, "/tls");

        // Plain HTTP to a TLS port fails, it does not hang.
        let o = probe(action(server.addr.port(), "/")).await;
        assert_eq!(o.result, ProbeResult::Failure);
    }

    #[tokio::test]
    async fn same_host_redirects_are_followed() {
        let other_port = TestServer::start("127.0.0.1", None, |req| match req.path.as_str() {
            "/final" => response(200, &[], b""),
            _ => response(404, &[], b""),
        })
        .await;
        let elsewhere = format!("http://127.0.0.1:{}/final", other_port.addr.port());
        let server = TestServer::start("127.0.0.1", None, move |req| match req.path.as_str() {
            "/start" => response(302, &[("Location", "next/../step")], b""),
            "/step" => response(301, &[("Location", elsewhere.as_str())], b""),
            "/keep-host" => response(307, &[("Location", "/echo")], b""),
            "/echo" => response(200, &[], b""),
            _ => response(404, &[], b""),
        })
        .await;
        let port = server.addr.port();
        // Same hostname, another port: followed, as Go compares hostnames only.
        assert_eq!(
            probe(action(port, "/start")).await,
            ProbeOutcome::success("")
        );
        let reqs = server.requests();
        assert_eq!(
            reqs.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["/start", "/step"]
        );
        assert_eq!(
            reqs[1].header("referer"),
            vec![format!("http://127.0.0.1:{port}/start")]
        );
        assert_eq!(other_port.requests()[0].path, "/final");

        // A custom Host survives a relative redirect.
        let mut a = action(port, "/keep-host");
        a.http_headers = Some(vec![HTTPHeader {
            name: "Host".into(),
            value: "svc.test".into(),
        }]);
        assert_eq!(probe(a).await.result, ProbeResult::Success);
        let reqs = server.requests();
        assert_eq!(reqs[3].path, "/echo");
        assert_eq!(reqs[3].header("host"), vec!["svc.test"]);
    }

    #[tokio::test]
    async fn cross_host_redirect_is_not_followed() {
        let other = TestServer::start("127.0.0.2", None, |_| response(200, &[], b"")).await;
        let location = format!("http://127.0.0.2:{}/elsewhere", other.addr.port());
        let server = TestServer::start("127.0.0.1", None, move |_| {
            response(302, &[("Location", location.as_str())], b"moved")
        })
        .await;
        let o = probe(action(server.addr.port(), "/")).await;
        assert_eq!(
            o,
            ProbeOutcome::warning("Probe terminated redirects, Response body: moved")
        );
        assert!(o.result.is_success());
        assert_eq!(server.requests().len(), 1);
        // Give a stray connection time to arrive before checking none did.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(other.connections(), 0);
    }

    #[tokio::test]
    async fn redirect_loop_stops_after_ten_requests() {
        let server = TestServer::start("127.0.0.1", None, |_| {
            response(302, &[("Location", "/loop")], b"")
        })
        .await;
        let o = probe(action(server.addr.port(), "/loop")).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(
            o.message.ends_with("stopped after 10 redirects"),
            "{}",
            o.message
        );
        assert_eq!(server.requests().len(), MAX_REQUESTS);
    }

    #[tokio::test]
    async fn bad_location_and_refused_connection_fail() {
        let server = TestServer::start("127.0.0.1", None, |_| {
            response(302, &[("Location", "ftp://127.0.0.1/x")], b"")
        })
        .await;
        let o = probe(action(server.addr.port(), "/")).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(
            o.message.contains("unsupported protocol scheme"),
            "{}",
            o.message
        );

        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let o = probe(action(closed, "/")).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(o.message.contains("dial tcp 127.0.0.1:"), "{}", o.message);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let server = TestServer::start_silent("127.0.0.1").await;
        let started = Instant::now();
        let o = probe_for(
            action(server.addr.port(), "/"),
            HttpPurpose::Probe,
            Duration::from_millis(300),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(
            o.message.starts_with("timeout: HTTP GET http://127.0.0.1:"),
            "{}",
            o.message
        );
        assert!(
            o.message.ends_with("did not complete within 300ms"),
            "{}",
            o.message
        );
    }

    #[test]
    fn locations_resolve_like_a_browser() {
        let base = Url {
            https: false,
            host: "10.0.0.1".into(),
            port: 8080,
            explicit_port: true,
            path: "/a/b/c?q=1".into(),
        };
        let path = |loc: &str| resolve(&base, loc).unwrap().0.path;
        assert_eq!(path("/x"), "/x");
        assert_eq!(path("d"), "/a/b/d");
        assert_eq!(path("../d?z"), "/a/d?z");
        assert_eq!(path("./"), "/a/b/");
        assert_eq!(path("?r=2"), "/a/b/c?r=2");
        assert_eq!(path("/x#frag"), "/x");
        assert_eq!(path("/sp ace"), "/sp%20ace");
        assert!(resolve(&base, "/x").unwrap().1);

        let (u, relative) = resolve(&base, "https://user:pw@Other:9443/p").unwrap();
        assert!(!relative);
        assert_eq!(
            u,
            Url {
                https: true,
                host: "Other".into(),
                port: 9443,
                explicit_port: true,
                path: "/p".into(),
            }
        );
        let (u, _) = resolve(&base, "//[fd00::2]/v6").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.https), ("fd00::2", 80, false));
        assert_eq!(u.authority(), "[fd00::2]");
        let (u, _) = resolve(&base, "http://h").unwrap();
        assert_eq!(u.path, "/");
        assert!(resolve(&base, "http://h:99999/").is_err());
        assert!(resolve(&base, "http:///nohost").is_err());
        assert!(resolve(&base, "mailto:x@y").is_err());
    }
}
