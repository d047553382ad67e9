//! The HTTPS side: TLS accept loop with client-certificate identities, request
//! authentication, failure injection, routing to the store, watch streams, CSR approval and
//! signing, TokenReview and SubjectAccessReview.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

use super::store::{
    ApiError, ApiResult, Change, ChangeType, DeleteOpts, Filter, Resource, Selector, Sub,
};
use super::{Attributes, Inner, OutageMode, RequestRecord, UserInfo, certs, lock, patch};

type Body = BoxBody<Bytes, Infallible>;

/// The real API server's request body limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

pub async fn serve(inner: Arc<Inner>, listener: TcpListener) {
    let tls = tokio_rustls::TlsAcceptor::from(certs::server_config(&inner.pki));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // e.g. out of file descriptors: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let inner = inner.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            // Subscribed before the outage check, so an outage starting now still cuts it.
            let mut kill = inner.conn_gen.subscribe();
            if *inner.outage.borrow() {
                let mode = inner.ctl().outage_mode;
                if mode == OutageMode::Blackhole {
                    // Hold the socket unanswered until the outage ends.
                    let mut out = inner.outage.subscribe();
                    let _ = out.wait_for(|o| !*o).await;
                }
                drop(tcp);
                return;
            }
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await
            else {
                return;
            };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(certs::identity_of);
            let svc_inner = inner.clone();
            let svc = hyper::service::service_fn(move |req| {
                let inner = svc_inner.clone();
                let peer = peer.clone();
                async move { Ok::<_, Infallible>(handle(inner, peer, req).await) }
            });
            // HTTP/1.1 only: what kube's client speaks (it offers no h2), and half the code.
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = kill.changed() => {}
            }
        });
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(v).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.status());
    if e.code == 429 {
        r.headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("1"));
    }
    r
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The API path of a resource request.
#[derive(Debug, Default)]
struct Route {
    res: Option<Resource>,
    group: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        // A namespace's own subresources.
        ["namespaces", _, "status" | "finalize"] => (None, rest.to_vec()),
        ["namespaces", ns, plural, rest @ ..] => (Some(ns.to_string()), {
            let mut r = vec![*plural];
            r.extend_from_slice(rest);
            r
        }),
        other => (None, other.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    Some(Route {
        res: Resource::from_path(group, version, plural),
        group: group.to_string(),
        plural: plural.to_string(),
        namespace,
        name,
        sub,
    })
}

async fn handle(
    inner: Arc<Inner>,
    peer: Option<(String, Vec<String>)>,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if *inner.outage.borrow() {
        // A request that slipped onto a connection the outage is cutting: not answered while
        // the outage lasts (the connection task normally drops it with the connection).
        let mut out = inner.outage.subscribe();
        let _ = out.wait_for(|o| !*o).await;
    }
    let latency = {
        let ctl = inner.ctl();
        let path = req.uri().path();
        let extra: Duration = ctl
            .slow_rules
            .iter()
            .filter(|(m, p, _)| {
                m.as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(req.method().as_str()))
                    && path.contains(p.as_str())
            })
            .map(|(_, _, d)| *d)
            .sum();
        ctl.latency + extra
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let e = ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
            );
            return error_response(&e);
        }
    };
    let user = match (&peer, &bearer) {
        (Some((u, g)), _) => Some(UserInfo {
            username: u.clone(),
            uid: String::new(),
            groups: g.clone(),
            audiences: Vec::new(),
            extra: Default::default(),
        }),
        (None, Some(t)) => inner.ctl().tokens.get(t).cloned(),
        (None, None) => None,
    };
    let resp = match &user {
        None => error_response(&ApiError::new(401, "Unauthorized", "Unauthorized")),
        Some(user) => match injected_failure(&inner, &method, &path) {
            Some(code) => error_response(&injected(code)),
            None => {
                let q = parse_query(&query);
                route(&inner, user, &method, &path, &q, &content_type, &body).await
            }
        },
    };
    let record = RequestRecord {
        method: method.to_string(),
        path,
        query,
        content_type,
        user: user.map(|u| u.username).unwrap_or_default(),
        status: resp.status().as_u16(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: started,
    };
    if std::env::var_os("FAKEAPI_LOG").is_some() {
        eprintln!(
            "fakeapi: {} {}?{} [{}] as {:?} -> {}",
            record.method,
            record.path,
            record.query,
            record.content_type,
            record.user,
            record.status
        );
    }
    lock(&inner.log).push(record);
    resp
}

fn injected(code: u16) -> ApiError {
    let reason = match code {
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    ApiError::new(code, reason, format!("fakeapi: injected failure {code}"))
}

fn injected_failure(inner: &Inner, method: &Method, path: &str) -> Option<u16> {
    let mut ctl = inner.ctl();
    let rule = ctl.fail_rules.iter_mut().find(|r| {
        r.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
            && r.path_contains.as_deref().is_none_or(|p| path.contains(p))
            && r.remaining != Some(0)
    })?;
    if let Some(n) = &mut rule.remaining {
        *n -= 1;
    }
    let code = rule.code;
    ctl.fail_rules.retain(|r| r.remaining != Some(0));
    Some(code)
}

fn verb_of(method: &Method, has_name: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET if watch => "watch",
        Method::GET if has_name => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if has_name => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

fn authorize(inner: &Inner, a: &Attributes) -> bool {
    let ctl = inner.ctl();
    match &ctl.api_rules {
        None => true,
        Some(rules) => rules
            .iter()
            .find(|r| r.matches(a))
            .is_some_and(|r| r.allowed),
    }
}

fn forbidden(a: &Attributes) -> ApiError {
    let target = if a.name.is_empty() {
        a.resource.clone()
    } else {
        format!("{} \"{}\"", a.resource, a.name)
    };
    let res = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    ApiError::new(
        403,
        "Forbidden",
        format!(
            "{target} is forbidden: User \"{}\" cannot {} resource \"{res}\" in API group \"{}\" {scope}",
            a.user, a.verb, a.api_group
        ),
    )
}

async fn route(
    inner: &Arc<Inner>,
    user: &UserInfo,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    content_type: &str,
    body: &Bytes,
) -> Response<Body> {
    if path == "/version" {
        return json_response(
            200,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fakeapi", "platform": "linux/amd64"}),
        );
    }
    if path == "/healthz" || path == "/readyz" || path == "/livez" {
        return Response::new(full("ok"));
    }
    let Some(r) = parse_route(path) else {
        return error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    };
    let watch = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let attrs = Attributes {
        user: user.username.clone(),
        groups: user.groups.clone(),
        verb: verb_of(method, r.name.is_some(), watch).to_string(),
        api_group: r.group.clone(),
        resource: r.plural.clone(),
        subresource: r.sub.clone().unwrap_or_default(),
        namespace: r.namespace.clone().unwrap_or_default(),
        name: r.name.clone().unwrap_or_default(),
        path: None,
    };
    if !authorize(inner, &attrs) {
        return error_response(&forbidden(&attrs));
    }
    // Reviews.
    if *method == Method::POST && r.name.is_none() {
        if r.res.is_none()
            && let Some(node) = node_restricted(inner, user)
            && let Err(e) =
                super::nodeauth::check(&inner.store(), &node, None, &attrs, q, content_type, body)
        {
            return error_response(&e);
        }
        if r.group == "authentication.k8s.io" && r.plural == "tokenreviews" {
            return token_review(inner, body);
        }
        if r.group == "authorization.k8s.io" && r.plural == "subjectaccessreviews" {
            return access_review(inner, body);
        }
    }
    let Some(res) = r.res else {
        return error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    };
    let info = res.info();
    if info.namespaced != r.namespace.is_some()
        && !(info.namespaced && r.name.is_none() && *method == Method::GET)
    {
        return error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let ns = r.namespace.clone().unwrap_or_default();
    let sub = match r.sub.as_deref() {
        None => Sub::Main,
        Some("status") if info.has_status => Sub::Status,
        Some("approval") if res == Resource::Csrs => Sub::Approval,
        Some(_) => {
            return error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    };
    if let Some(node) = node_restricted(inner, user) {
        let st = inner.store();
        if let Err(e) = super::nodeauth::check(&st, &node, Some(res), &attrs, q, content_type, body)
        {
            return error_response(&e);
        }
    }
    let result: ApiResult<(u16, Value)> = match (method.clone(), r.name.as_deref()) {
        (Method::GET, None) => {
            let filter = match filter_from(res, r.namespace.clone(), q) {
                Ok(f) => f,
                Err(e) => return error_response(&e),
            };
            if watch {
                return start_watch(inner, res, filter, q);
            }
            list(inner, res, &filter, q).map(|v| (200, v))
        }
        (Method::GET, Some(name)) => inner.store().get(res, &ns, name).map(|v| (200, v)),
        (Method::POST, None) => match parse_body(content_type, body) {
            Err(e) => Err(e),
            Ok(v) => {
                let groups = user.groups.clone();
                let created = inner
                    .store()
                    .create(res, &ns, v, Some((&user.username, &groups)));
                if let Ok(c) = &created
                    && res == Resource::Csrs
                {
                    csr_after_write(
                        inner,
                        c.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                    );
                }
                created.map(|v| (201, v))
            }
        },
        (Method::PUT, Some(name)) => match parse_body(content_type, body) {
            Err(e) => Err(e),
            Ok(v) => {
                let out = inner.store().update(res, &ns, name, v, sub);
                if out.is_ok() && res == Resource::Csrs {
                    csr_after_write(inner, name);
                }
                out.map(|v| (200, v))
            }
        },
        (Method::PATCH, Some(name)) => {
            if patch::media_type(content_type) == patch::APPLY
                && q.get("fieldManager").is_none_or(|f| f.is_empty())
            {
                Err(ApiError::invalid(
                    res,
                    name,
                    "metadata.managedFields.fieldManager: Required value: is required for apply patch",
                ))
            } else {
                let out = inner.store().patch(res, &ns, name, content_type, body, sub);
                let out = match out {
                    // Server-side apply creates what is missing.
                    Err(e)
                        if e.code == 404
                            && sub == Sub::Main
                            && patch::media_type(content_type) == patch::APPLY =>
                    {
                        patch::parse_apply(body)
                            .and_then(|v| {
                                let groups = user.groups.clone();
                                inner
                                    .store()
                                    .create(res, &ns, v, Some((&user.username, &groups)))
                            })
                            .map(|v| (201, v))
                    }
                    other => other.map(|v| (200, v)),
                };
                if out.is_ok() && res == Resource::Csrs {
                    csr_after_write(inner, name);
                }
                out
            }
        }
        (Method::DELETE, Some(name)) => {
            let mut opts = if body.is_empty() {
                DeleteOpts::default()
            } else {
                match serde_json::from_slice::<Value>(body) {
                    Ok(v) => DeleteOpts::from_json(&v),
                    Err(e) => {
                        return error_response(&ApiError::bad_request(format!(
                            "invalid DeleteOptions: {e}"
                        )));
                    }
                }
            };
            if let Some(g) = q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()) {
                opts.grace_period_seconds = Some(g);
            }
            inner
                .store()
                .delete(res, &ns, name, &opts)
                .map(|v| (200, v))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".to_string(),
        )),
    };
    match result {
        Ok((code, v)) => json_response(code, &v),
        Err(e) => error_response(&e),
    }
}

/// The node name when the caller is a kubelet and node authorization is on.
fn node_restricted(inner: &Inner, user: &UserInfo) -> Option<String> {
    if !inner.ctl().node_authorization {
        return None;
    }
    super::nodeauth::node_of(&user.username, &user.groups)
}

fn parse_body(content_type: &str, body: &[u8]) -> ApiResult<Value> {
    let mt = patch::media_type(content_type);
    if mt != "application/json" && !mt.is_empty() {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json; got {content_type:?}"
            ),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body of the request is not valid JSON: {e}"))
    })
}

fn filter_from(
    res: Resource,
    namespace: Option<String>,
    q: &HashMap<String, String>,
) -> ApiResult<Filter> {
    Ok(Filter {
        namespace,
        labels: Selector::parse_labels(q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
        fields: Selector::parse_fields(
            q.get("fieldSelector").map(String::as_str).unwrap_or(""),
            res,
        )?,
    })
}

/// A continue token: the list's resourceVersion and the last key served.
fn continue_token(rv: u64, ns: &str, name: &str) -> String {
    use base64::Engine;
    let raw = serde_json::to_vec(&json!({"rv": rv, "ns": ns, "name": name})).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn parse_continue(token: &str) -> ApiResult<(u64, String, String)> {
    use base64::Engine;
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Ok((rv, s("ns").ok_or_else(bad)?, s("name").ok_or_else(bad)?))
}

fn key_of(v: &Value) -> (String, String) {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

/// LIST with the real API's resourceVersion rules and limit/continue paging. Later pages
/// come from the current state (the fixture keeps no snapshots) but keep the first page's
/// resourceVersion; a continue token older than the history window is 410 Expired.
fn list(
    inner: &Inner,
    res: Resource,
    filter: &Filter,
    q: &HashMap<String, String>,
) -> ApiResult<Value> {
    let st = inner.store();
    let mut list_rv = st.rv();
    let mut after: Option<(String, String)> = None;
    if let Some(token) = q.get("continue").filter(|c| !c.is_empty()) {
        let (rv, ns, name) = parse_continue(token)?;
        if st.check_watchable(rv).is_err() {
            return Err(ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ));
        }
        list_rv = rv;
        after = Some((ns, name));
    }
    let rv = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    if !rv.is_empty() && after.is_none() {
        let n: u64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
        if q.get("resourceVersionMatch").map(String::as_str) == Some("Exact") {
            // The fixture keeps no snapshots: only the current version can be served exactly.
            if n != st.rv() {
                return Err(ApiError::gone(format!(
                    "too old resource version: {n} ({})",
                    st.rv()
                )));
            }
        } else if n > st.rv() {
            return Err(ApiError::new(
                504,
                "Timeout",
                format!("Too large resource version: {n}, current: {}", st.rv()),
            ));
        }
    }
    let info = res.info();
    let mut items = st.list(res, filter);
    if let Some(last) = &after {
        items.retain(|v| key_of(v) > *last);
    }
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    if let Some(limit) = limit
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let (ns, name) = items.last().map(key_of).unwrap_or_default();
        meta["continue"] = json!(continue_token(list_rv, &ns, &name));
        meta["remainingItemCount"] = json!(remaining);
    }
    Ok(json!({
        "apiVersion": info.api_version,
        "kind": format!("{}List", info.kind),
        "metadata": meta,
        "items": items,
    }))
}

fn event_line(ty: &str, obj: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": ty, "object": obj})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// The watch event a watcher with `filter` gets for a change, if any. Moving into or out of
/// the selector turns MODIFIED into ADDED or DELETED; a DELETED for an object that left the
/// selector carries its previous content at the change's resourceVersion (as the real
/// API server's watch cache sends it).
fn visible(change: &Change, res: Resource, filter: &Filter) -> Option<Bytes> {
    if change.res != res {
        return None;
    }
    let now = filter.matches(&change.new);
    let before = change.old.as_ref().is_some_and(|o| filter.matches(o));
    let left = || {
        let mut old = change.old.clone().unwrap_or_default();
        old["metadata"]["resourceVersion"] = json!(change.rv.to_string());
        event_line("DELETED", &old)
    };
    match change.ty {
        ChangeType::Added => now.then(|| event_line("ADDED", &change.new)),
        ChangeType::Deleted if now => Some(event_line("DELETED", &change.new)),
        ChangeType::Deleted => before.then(left),
        ChangeType::Modified => match (before, now) {
            (true, true) => Some(event_line("MODIFIED", &change.new)),
            (false, true) => Some(event_line("ADDED", &change.new)),
            (true, false) => Some(left()),
            (false, false) => None,
        },
    }
}

fn bookmark(res: Resource, rv: u64, initial_end: bool) -> Bytes {
    let info = res.info();
    let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": info.kind, "apiVersion": info.api_version, "metadata": meta}),
    )
}

fn start_watch(
    inner: &Arc<Inner>,
    res: Resource,
    filter: Filter,
    q: &HashMap<String, String>,
) -> Response<Body> {
    let bookmarks = matches!(
        q.get("allowWatchBookmarks").map(String::as_str),
        Some("true" | "1")
    );
    let send_initial = matches!(
        q.get("sendInitialEvents").map(String::as_str),
        Some("true" | "1")
    );
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let mut initial: Vec<Bytes> = Vec::new();
    let (start_rv, changes) = {
        let st = inner.store();
        let changes = st.tx.subscribe();
        let start_rv = st.rv();
        if rv_param.is_empty() || rv_param == "0" || send_initial {
            for obj in st.list(res, &filter) {
                initial.push(event_line("ADDED", &obj));
            }
            if send_initial && bookmarks {
                initial.push(bookmark(res, start_rv, true));
            }
        } else {
            let n = match rv_param.parse::<u64>() {
                Ok(n) => n,
                Err(_) => {
                    return error_response(&ApiError::bad_request(format!(
                        "invalid resource version: {rv_param}"
                    )));
                }
            };
            if let Err(e) = st.check_watchable(n) {
                // As the real API server: 200, then one ERROR event carrying the 410 Status.
                initial.push(event_line("ERROR", &e.status()));
                let _ = tx.try_send(initial.remove(0));
                drop(tx);
                return stream_response(rx);
            }
            for c in st.changes_since(n) {
                if let Some(line) = visible(&c, res, &filter) {
                    initial.push(line);
                }
            }
        }
        (start_rv, changes)
    };
    let interval = inner.ctl().bookmark_interval;
    let stops = Stops {
        dropped: inner.watch_gen.subscribe(),
        kill: inner.conn_gen.subscribe(),
    };
    let inner = inner.clone();
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        run_watch(
            inner, res, filter, tx, changes, start_rv, bookmarks, interval, timeout, stops,
        )
        .await;
    });
    stream_response(rx)
}

/// What ends a watch besides its timeout: `drop_watches()` and connection cuts.
struct Stops {
    dropped: tokio::sync::watch::Receiver<u64>,
    kill: tokio::sync::watch::Receiver<u64>,
}

#[allow(clippy::too_many_arguments)]
async fn run_watch(
    inner: Arc<Inner>,
    res: Resource,
    filter: Filter,
    tx: mpsc::Sender<Bytes>,
    mut changes: broadcast::Receiver<Arc<Change>>,
    start_rv: u64,
    bookmarks: bool,
    interval: Duration,
    timeout: Option<Duration>,
    stops: Stops,
) {
    struct Open<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Open<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    inner
        .watches_open
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _open = Open(&inner.watches_open);
    let mut seen = start_rv;
    let Stops {
        mut dropped,
        mut kill,
    } = stops;
    let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(3600)));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            // Drops first: after drop_watches() returns, an old stream delivers nothing more.
            biased;
            _ = dropped.changed() => return,
            _ = kill.changed() => return,
            _ = tx.closed() => return,
            c = changes.recv() => match c {
                Ok(c) => {
                    if c.rv <= start_rv {
                        continue;
                    }
                    seen = c.rv;
                    if let Some(line) = visible(&c, res, &filter)
                        && tx.send(line).await.is_err()
                    {
                        return;
                    }
                }
                // A watcher that fell this far behind is cut, like a slow client of the real server.
                Err(_) => return,
            },
            _ = tick.tick(), if bookmarks => {
                if tx.send(bookmark(res, seen, false)).await.is_err() {
                    return;
                }
            }
            _ = &mut deadline => return,
        }
    }
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |b| {
        Ok::<_, Infallible>(Frame::data(b))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed())
        .unwrap_or_else(|_| Response::new(full("")))
}

fn token_review(inner: &Inner, body: &[u8]) -> Response<Body> {
    let review: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return error_response(&ApiError::bad_request(format!("invalid TokenReview: {e}")));
        }
    };
    lock(&inner.token_reviews).push(review.clone());
    let token = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    let wanted: Vec<String> = review
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let status = match inner.ctl().tokens.get(token) {
        Some(u) => {
            // The audiences both sides accept; a token without its own takes the requested ones.
            let granted: Vec<&String> = if u.audiences.is_empty() {
                wanted.iter().collect()
            } else if wanted.is_empty() {
                u.audiences.iter().collect()
            } else {
                wanted.iter().filter(|a| u.audiences.contains(a)).collect()
            };
            if !wanted.is_empty() && granted.is_empty() {
                json!({"authenticated": false, "user": {}, "error": "token audiences are invalid for the target audiences"})
            } else {
                json!({
                    "authenticated": true,
                    "user": {"username": u.username, "uid": u.uid, "groups": u.groups, "extra": u.extra},
                    "audiences": granted,
                })
            }
        }
        None => json!({"authenticated": false, "user": {}, "error": "invalid bearer token"}),
    };
    let mut out = review;
    out["apiVersion"] = json!("authentication.k8s.io/v1");
    out["kind"] = json!("TokenReview");
    out["metadata"] = json!({"creationTimestamp": null});
    out["status"] = status;
    json_response(201, &out)
}

fn access_review(inner: &Inner, body: &[u8]) -> Response<Body> {
    let review: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return error_response(&ApiError::bad_request(format!(
                "invalid SubjectAccessReview: {e}"
            )));
        }
    };
    lock(&inner.access_reviews).push(review.clone());
    let s = |p: &str| {
        review
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let attrs = Attributes {
        user: s("/spec/user"),
        groups: review
            .pointer("/spec/groups")
            .and_then(Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        verb: if review.pointer("/spec/nonResourceAttributes").is_some() {
            s("/spec/nonResourceAttributes/verb")
        } else {
            s("/spec/resourceAttributes/verb")
        },
        api_group: s("/spec/resourceAttributes/group"),
        resource: s("/spec/resourceAttributes/resource"),
        subresource: s("/spec/resourceAttributes/subresource"),
        namespace: s("/spec/resourceAttributes/namespace"),
        name: s("/spec/resourceAttributes/name"),
        path: review
            .pointer("/spec/nonResourceAttributes/path")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    let status = match inner.ctl().sar_rules.iter().find(|r| r.matches(&attrs)) {
        Some(r) if r.allowed => json!({"allowed": true, "reason": r.reason}),
        Some(r) => json!({"allowed": false, "denied": true, "reason": r.reason}),
        None => json!({"allowed": false, "reason": "no rule matched"}),
    };
    let mut out = review;
    out["apiVersion"] = json!("authorization.k8s.io/v1");
    out["kind"] = json!("SubjectAccessReview");
    out["metadata"] = json!({"creationTimestamp": null});
    out["status"] = status;
    json_response(201, &out)
}

fn has_condition(csr: &Value, ty: &str) -> bool {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        })
}

/// What the cluster does after a CSR write: auto-approval by rule, then signing an
/// approved request (the controller-manager's signer).
pub fn csr_after_write(inner: &Inner, name: &str) {
    let (auto, lifetime, signing) = {
        let c = inner.ctl();
        (c.csr_auto.clone(), c.csr_lifetime, c.csr_signing)
    };
    let mut st = inner.store();
    let Ok(csr) = st.get(Resource::Csrs, "", name) else {
        return;
    };
    let approved = has_condition(&csr, "Approved");
    let denied = has_condition(&csr, "Denied") || has_condition(&csr, "Failed");
    if !approved && !denied {
        let signer = csr
            .pointer("/spec/signerName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let user = csr
            .pointer("/spec/username")
            .and_then(Value::as_str)
            .unwrap_or("");
        let hit = auto.iter().any(|r| {
            r.signer.as_deref().is_none_or(|s| s == signer)
                && r.user.as_deref().is_none_or(|u| u == user)
        });
        if hit {
            drop(st);
            set_csr_condition(
                inner,
                name,
                "Approved",
                "AutoApproved",
                "approved by fakeapi rule",
            );
            return csr_after_write(inner, name);
        }
        return;
    }
    if !approved || denied || !signing || csr.pointer("/status/certificate").is_some() {
        return;
    }
    let result = (|| -> Result<String, String> {
        let req: k8s_openapi::ByteString =
            serde_json::from_value(csr["spec"]["request"].clone())
                .map_err(|e| format!("spec.request is not base64: {e}"))?;
        let pem =
            String::from_utf8(req.0).map_err(|_| "spec.request is not PEM text".to_string())?;
        let usages: Vec<String> = csr
            .pointer("/spec/usages")
            .and_then(Value::as_array)
            .map(|u| {
                u.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        // As kube-controller-manager: the signer's maximum duration
        // (--cluster-signing-duration), shortened by spec.expirationSeconds.
        let mut life = lifetime;
        if let Some(s) = csr
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_u64)
        {
            life = life.min(Duration::from_secs(s));
        }
        let misbehave = {
            let mut c = inner.ctl();
            if c.csr_misbehave.is_empty() {
                None
            } else {
                Some(c.csr_misbehave.remove(0))
            }
        };
        inner.pki.sign_csr(&pem, &usages, life, misbehave)
    })();
    let mut new = csr.clone();
    match result {
        Ok(cert) => {
            new["status"]["certificate"] =
                serde_json::to_value(k8s_openapi::ByteString(cert.into_bytes()))
                    .unwrap_or(Value::Null);
        }
        Err(why) => {
            let conds = new["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut conds = conds;
            conds.push(json!({
                "type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                "message": why, "lastUpdateTime": super::store::now_rfc3339(),
                "lastTransitionTime": super::store::now_rfc3339(),
            }));
            new["status"]["conditions"] = json!(conds);
        }
    }
    let _ = st.update(Resource::Csrs, "", name, new, Sub::Status);
}

/// Adds an Approved/Denied condition through the approval subresource.
pub fn set_csr_condition(
    inner: &Inner,
    name: &str,
    ty: &str,
    reason: &str,
    message: &str,
) -> Option<Value> {
    let mut st = inner.store();
    let mut csr = st.get(Resource::Csrs, "", name).ok()?;
    let mut conds = csr
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now = super::store::now_rfc3339();
    conds.push(json!({
        "type": ty, "status": "True", "reason": reason, "message": message,
        "lastUpdateTime": now, "lastTransitionTime": now,
    }));
    csr["status"]["conditions"] = json!(conds);
    st.update(Resource::Csrs, "", name, csr, Sub::Approval).ok()
}
