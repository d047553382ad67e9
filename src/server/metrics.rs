//! Prometheus text exposition for the kubelet API: the request counters kept here and the
//! node metrics gathered at scrape time. Label values never come from request data: the
//! path label is a route template and the method label one of a fixed set, so the number
//! of series is bounded whatever clients send.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use http::Method;

use super::api::Decision;
use crate::metrics::Histogram;

#[derive(Default)]
pub struct HttpMetrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (method, path template, long_running) → count
    requests: BTreeMap<(&'static str, &'static str), u64>,
    /// (decision, code) → count
    decisions: BTreeMap<(&'static str, u16), u64>,
    duration: BTreeMap<&'static str, Histogram>,
}

/// The method label: one of a fixed set.
pub fn method_label(m: &Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

impl HttpMetrics {
    pub fn record(
        &self,
        method: &Method,
        template: &'static str,
        status: u16,
        decision: &Decision,
        took: Duration,
    ) {
        let mut i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *i.requests
            .entry((method_label(method), template))
            .or_default() += 1;
        *i.decisions.entry((decision.as_str(), status)).or_default() += 1;
        i.duration
            .entry(template)
            .or_default()
            .observe(took.as_secs_f64());
    }

    /// Total series held (for the bounded-series tests).
    pub fn series(&self) -> usize {
        let i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        i.requests.len() + i.decisions.len() + i.duration.len()
    }

    pub fn encode(&self, out: &mut String) {
        let i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        header(
            out,
            "kubelet_http_requests_total",
            "counter",
            "Number of HTTP requests received since the server started.",
        );
        for ((method, path), n) in &i.requests {
            let long = matches!(
                *path,
                "/exec/{namespace}/{pod}/{container}"
                    | "/attach/{namespace}/{pod}/{container}"
                    | "/portForward/{namespace}/{pod}"
                    | "/containerLogs/{namespace}/{pod}/{container}"
            );
            let _ = writeln!(
                out,
                "kubelet_http_requests_total{{long_running=\"{long}\",method=\"{method}\",path=\"{path}\",server_type=\"https\"}} {n}"
            );
        }
        header(
            out,
            "kubelet_http_requests_duration_seconds",
            "histogram",
            "Duration in seconds to serve HTTP requests.",
        );
        for (path, h) in &i.duration {
            histogram(
                out,
                "kubelet_http_requests_duration_seconds",
                &format!("path=\"{path}\",server_type=\"https\""),
                h,
            );
        }
        header(
            out,
            "ironlet_http_request_decisions_total",
            "counter",
            "Kubelet API requests by authentication/authorization decision and status code.",
        );
        for ((decision, code), n) in &i.decisions {
            let _ = writeln!(
                out,
                "ironlet_http_request_decisions_total{{code=\"{code}\",decision=\"{decision}\"}} {n}"
            );
        }
    }
}

pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (le, n) in h.buckets() {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
        h.count()
    );
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum());
    let _ = writeln!(out, "{name}_count{braces} {}", h.count());
}

/// `ExecSync` → `exec_sync`, upstream's operation_type spelling.
pub fn snake(op: &str) -> String {
    let mut s = String::with_capacity(op.len() + 4);
    for (i, c) in op.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        let m = HttpMetrics::default();
        for i in 0..2000 {
            let method = Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
            m.record(
                &method,
                "other",
                401,
                &Decision::Unauthenticated("x"),
                Duration::ZERO,
            );
        }
        assert!(m.series() <= 3, "{}", m.series());
        let mut out = String::new();
        m.encode(&mut out);
        assert!(out.contains("method=\"other\",path=\"other\""), "{out}");
        assert_eq!(snake("ExecSync"), "exec_sync");
        assert_eq!(snake("ListPodSandbox"), "list_pod_sandbox");
    }
}
