//! The request pipeline of the secure kubelet API, transport-independent (the listener in
//! `listener.rs` feeds it; the fuzz target and tests call it directly):
//!
//! 1. authenticate (certificate user of the connection, else bearer token) → 401;
//! 2. map the method to a verb (unmapped methods → 405) and the path to subresources
//!    (upstream's mapping, fine-grained first, then `proxy`), and authorize → 403 / 500;
//! 3. only then route: unknown paths → 404, wrong methods → 405, disabled handlers → 405;
//! 4. one audit record (`audit.rs`) and the request metrics, whatever happened.
//!
//! Error bodies are short fixed strings: they never echo the user, verb, resource, path or
//! any internal error.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tokio::sync::{Semaphore, watch};

use super::audit::{self, AuditLog, Event, RequestEvent, Target};
use super::authn::{self, TokenAuthenticator, User};
use super::authz::{self, Authorizer};
use super::metrics::HttpMetrics;
use super::routes::{self, Route};
use crate::cri::Cri;
use crate::pleg::{PlegHealth, Snapshot};

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub const UNAUTHORIZED: &str = "Unauthorized\n";
pub const FORBIDDEN: &str = "Forbidden\n";
pub const NOT_FOUND: &str = "Not Found\n";
pub const METHOD_NOT_ALLOWED: &str = "Method Not Allowed\n";
pub const DEBUG_DISABLED: &str = "Debug endpoints are disabled.\n";
pub const INTERNAL: &str = "Internal Server Error\n";
pub const UNAVAILABLE: &str = "Service Unavailable\n";
/// Request bodies (only `/run` reads one) are capped at this size.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The command a handler actually ran (`/run` reads it from a form body too), attached to
/// its response for the audit record.
#[derive(Debug, Clone)]
pub struct AuditCommand(pub Vec<String>);

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

pub fn json(bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(full(bytes));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// 503 with `Retry-After`: the review budget is exhausted; nothing was queued.
pub fn busy() -> Response<Body> {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE);
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(crate::budget::RETRY_AFTER_SECS),
    );
    r
}

/// Marks a response as the last one on its connection.
pub fn close(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// What the handlers read from the running agent.
pub struct Handles {
    /// The desired pods with status, as a v1 PodList in JSON (upstream's `/pods`).
    pub pods: Box<dyn Fn() -> Result<Vec<u8>, String> + Send + Sync>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub health: Arc<PlegHealth>,
    pub started: Instant,
    pub cri: Cri,
    /// Probe run counts for `/metrics/probes` (none when probes are not wired).
    pub probes: Option<crate::probe::ProbeManager>,
    /// `/configz`: `{"kubeletconfig": …}` of the running configuration.
    pub configz: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub node_name: String,
    pub enable_debugging_handlers: bool,
    pub enable_system_log_handler: bool,
    /// Root of `/logs/` (upstream: /var/log).
    pub system_log_root: std::path::PathBuf,
    pub streaming_idle_timeout: Duration,
    /// Concurrent exec/attach/portForward streams and followed logs.
    pub max_streams: usize,
}

/// The API: who may do what, and the handles to serve it.
pub struct Api {
    pub options: Options,
    pub tokens: Option<Arc<dyn TokenAuthenticator>>,
    pub authorizer: Arc<dyn Authorizer>,
    pub handles: Handles,
    pub metrics: HttpMetrics,
    pub streams: Arc<Semaphore>,
    /// The audit writer (stderr until [`Api::with_audit`] names another).
    pub audit: Arc<AuditLog>,
}

impl Api {
    pub fn new(
        options: Options,
        tokens: Option<Arc<dyn TokenAuthenticator>>,
        authorizer: Arc<dyn Authorizer>,
        handles: Handles,
    ) -> Api {
        Api {
            streams: Arc::new(Semaphore::new(options.max_streams)),
            options,
            tokens,
            authorizer,
            handles,
            metrics: HttpMetrics::default(),
            audit: Arc::new(AuditLog::stderr()),
        }
    }

    /// Sends the audit records to `audit` (the `--audit-log-path` file).
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Api {
        self.audit = audit;
        self
    }
}

/// Per-connection facts: the certificate user (`Err` when a certificate was presented but
/// unreadable) and the connection's idle timeout, which long-running requests raise.
#[derive(Clone, Default)]
pub struct Conn {
    pub peer: Option<Result<User, ()>>,
    pub idle_timeout_ms: Arc<AtomicU64>,
    /// The client's address, for the audit record.
    pub peer_addr: Option<std::net::SocketAddr>,
}

impl Conn {
    /// Lets this connection sit idle up to `d` (long-running requests).
    pub fn raise_idle_timeout(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.idle_timeout_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

/// What happened to a request, for the audit line and the invariant checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub user: Option<User>,
    pub verb: Option<&'static str>,
    pub subresource: Option<&'static str>,
    pub decision: Decision,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Unauthenticated(&'static str),
    MethodNotAllowed,
    Forbidden,
    AuthorizerError,
    /// The review budget was exhausted: 503 with `Retry-After`.
    Busy,
    /// Allowed, and by what (a policy rule name, or "webhook").
    Allow(String),
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Unauthenticated(_) => "unauthenticated",
            Decision::MethodNotAllowed => "method-not-allowed",
            Decision::Forbidden => "forbidden",
            Decision::AuthorizerError => "error",
            Decision::Busy => "busy",
            Decision::Allow(_) => "allow",
        }
    }
}

/// Serves one request and records it (audit line + metrics).
pub async fn handle<B>(api: Arc<Api>, conn: Conn, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let route = routes::route(&path);
    let (mut resp, outcome) = serve(&api, &conn, req, &route).await;
    let status = resp.status().as_u16();
    api.metrics.record(
        &method,
        route.template(),
        status,
        &outcome.decision,
        started.elapsed(),
    );
    let ran = resp.extensions_mut().remove::<AuditCommand>();
    let event = audit_event(
        &conn,
        &method,
        &path,
        &query,
        &route,
        &outcome,
        ran,
        status,
        started.elapsed(),
    );
    if matches!(outcome.decision, Decision::Unauthenticated(_)) {
        api.audit.write_noise(event);
    } else {
        api.audit.write(event);
    }
    resp
}

/// The audit record of one request: who, what, the decision and, for exec, attach,
/// portForward and run, the target and the command (bounded).
#[allow(clippy::too_many_arguments)]
fn audit_event(
    conn: &Conn,
    method: &Method,
    path: &str,
    query: &str,
    route: &Route,
    o: &Outcome,
    ran: Option<AuditCommand>,
    status: u16,
    took: Duration,
) -> Event {
    let b = |s: &str| audit::bound(s, audit::MAX_FIELD);
    let (reason, decision) = match &o.decision {
        Decision::Allow(by) => (b(by), "allow"),
        Decision::Unauthenticated(why) => (b(why), "unauthenticated"),
        d => (String::new(), d.as_str()),
    };
    let target = |kind: &str, ns: &str, pod: &str, uid: &Option<String>, c: Option<&str>| {
        Some(Target {
            kind: kind.into(),
            namespace: b(ns),
            pod: b(pod),
            uid: uid.as_deref().map(b),
            container: c.map(b),
        })
    };
    let (target, command) = match route {
        Route::Exec(c) => (
            target("exec", &c.namespace, &c.pod, &c.uid, Some(&c.container)),
            super::query::stream_options(query, true)
                .ok()
                .map(|o| o.command),
        ),
        Route::Attach(c) => (
            target("attach", &c.namespace, &c.pod, &c.uid, Some(&c.container)),
            None,
        ),
        Route::PortForward(p) => (
            target("portForward", &p.namespace, &p.pod, &p.uid, None),
            None,
        ),
        Route::Run(c) => (
            target("run", &c.namespace, &c.pod, &c.uid, Some(&c.container)),
            ran.map(|r| r.0)
                .or_else(|| super::query::run_command(query, "").ok()),
        ),
        _ => (None, None),
    };
    let (command, command_truncated) = match command {
        Some(argv) => {
            let (argv, cut) = audit::bound_command(&argv);
            (Some(argv), cut)
        }
        None => (None, false),
    };
    Event::Request(Box::new(RequestEvent {
        peer: conn.peer_addr.map(|a| a.to_string()),
        user: o.user.as_ref().map(|u| b(&u.name)),
        uid: o.user.as_ref().and_then(|u| u.uid.as_deref()).map(b),
        groups: o
            .user
            .iter()
            .flat_map(|u| u.groups.iter().take(audit::MAX_GROUPS))
            .map(|g| b(g))
            .collect(),
        method: b(method.as_str()),
        verb: o.verb.map(str::to_owned),
        resource: "nodes".into(),
        subresource: o.subresource.map(str::to_owned),
        path: b(path),
        decision: decision.into(),
        reason,
        status,
        latency_ms: took.as_secs_f64() * 1000.0,
        target,
        command,
        command_truncated,
    }))
}

/// Steps 1–3. Returns the response and the outcome that produced it.
///
/// The CVE-2018-1002105 lesson is enforced here, once for every path and every outcome: a
/// request that asked for an upgrade and was not answered 101 ends its connection, so no
/// byte pipelined after it is ever read as a request.
pub async fn serve<B>(
    api: &Arc<Api>,
    conn: &Conn,
    req: Request<B>,
    route: &Route,
) -> (Response<Body>, Outcome)
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let (resp, outcome) = decide_and_route(api, conn, req, route).await;
    if upgrade && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return (close(resp), outcome);
    }
    (resp, outcome)
}

async fn decide_and_route<B>(
    api: &Arc<Api>,
    conn: &Conn,
    req: Request<B>,
    route: &Route,
) -> (Response<Body>, Outcome)
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // The attributes are known before authentication, so every audit line carries them.
    let attrs = authz::attributes(req.method().as_str(), req.uri().path());
    let mut outcome = Outcome {
        user: None,
        verb: attrs.as_ref().map(|a| a.verb),
        subresource: authz::subresources(req.uri().path()).first().copied(),
        decision: Decision::Unauthenticated("no credentials"),
    };
    // 1. Authentication. A 401 also ends the connection: unauthenticated clients get no
    //    keep-alive.
    let user =
        match authn::authenticate(conn.peer.as_ref(), req.headers(), api.tokens.as_deref()).await {
            Ok((user, _)) => user,
            Err(authn::Failure::Busy) => {
                outcome.decision = Decision::Unauthenticated(authn::Failure::Busy.as_str());
                return (close(busy()), outcome);
            }
            Err(f) => {
                if let authn::Failure::WebhookError(e) = &f {
                    tracing::warn!(error = %e, "token review failed; request refused");
                }
                outcome.decision = Decision::Unauthenticated(f.as_str());
                return (close(text(StatusCode::UNAUTHORIZED, UNAUTHORIZED)), outcome);
            }
        };
    outcome.user = Some(user.clone());
    // 2. Authorization on upstream's attributes, by the one decider.
    let Some(attrs) = attrs else {
        outcome.decision = Decision::MethodNotAllowed;
        return (
            text(StatusCode::METHOD_NOT_ALLOWED, METHOD_NOT_ALLOWED),
            outcome,
        );
    };
    let decision = authz::decide(api.authorizer.as_ref(), &user, &attrs).await;
    outcome.subresource = Some(decision.subresource());
    let by = match decision {
        authz::Decision::Allow { by, .. } => by,
        authz::Decision::Busy { .. } => {
            outcome.decision = Decision::Busy;
            return (close(busy()), outcome);
        }
        authz::Decision::Failed { .. } => {
            outcome.decision = Decision::AuthorizerError;
            return (text(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL), outcome);
        }
        authz::Decision::Deny { .. } => {
            outcome.decision = Decision::Forbidden;
            return (text(StatusCode::FORBIDDEN, FORBIDDEN), outcome);
        }
    };
    outcome.decision = Decision::Allow(by);
    // 3. Routing, only for allowed requests.
    let resp = route_request(api, conn, req, route).await;
    (resp, outcome)
}

async fn route_request<B>(
    api: &Arc<Api>,
    conn: &Conn,
    req: Request<B>,
    route: &Route,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let o = &api.options;
    let disabled_logs = matches!(route, Route::Logs(_)) && !o.enable_system_log_handler;
    if *route == Route::NotFound || disabled_logs {
        return text(StatusCode::NOT_FOUND, NOT_FOUND);
    }
    if !route.methods().contains(&req.method().as_str()) {
        return text(StatusCode::METHOD_NOT_ALLOWED, METHOD_NOT_ALLOWED);
    }
    if route.is_debugging() && !o.enable_debugging_handlers {
        return text(StatusCode::METHOD_NOT_ALLOWED, DEBUG_DISABLED);
    }
    // Streams (and followed logs, in logs.rs) may sit idle up to the streaming timeout.
    if matches!(
        route,
        Route::Exec(_) | Route::Attach(_) | Route::PortForward(_)
    ) {
        conn.raise_idle_timeout(o.streaming_idle_timeout);
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    match route {
        Route::Healthz(check) => super::endpoints::healthz(api, *check),
        Route::Pods => super::endpoints::pods(api),
        Route::RunningPods => super::endpoints::running_pods(api),
        Route::Metrics => super::endpoints::metrics(api),
        Route::MetricsProbes => super::endpoints::metrics_probes(api),
        Route::Configz => super::endpoints::configz(api),
        Route::Run(c) => super::endpoints::run(api, c, &query, req.into_body()).await,
        Route::ContainerLogs(c) => super::logs::container_logs(api, conn, c, &query).await,
        Route::Logs(rel) => super::logs::node_logs(&o.system_log_root, rel).await,
        Route::Exec(_) | Route::Attach(_) | Route::PortForward(_) => {
            super::stream::proxy(api, route, &query, req).await
        }
        Route::NotFound => text(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}
