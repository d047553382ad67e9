//! The route table of the kubelet API: request path → [`Route`], a pure function (fuzzed).
//! Path segments are taken as sent: a segment that is empty (except a trailing slash where
//! upstream has one), `.`, `..`, or that carries a `%` escape matches no route, so no
//! normalisation differs between what is authorized and what is served.

/// Which upstream healthz check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    All,
    Ping,
    Log,
    Syncloop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    pub namespace: String,
    pub pod: String,
    pub uid: Option<String>,
    pub container: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub pod: String,
    pub uid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Healthz(Check),
    Pods,
    RunningPods,
    Metrics,
    MetricsProbes,
    Configz,
    ContainerLogs(ContainerRef),
    Run(ContainerRef),
    Exec(ContainerRef),
    Attach(ContainerRef),
    PortForward(PodRef),
    /// `/logs/` and below: node log files (off unless enableSystemLogHandler).
    Logs(Vec<String>),
    NotFound,
}

/// Every route template, for the route registry test and metrics documentation.
pub const TEMPLATES: &[&str] = &[
    "/healthz",
    "/healthz/ping",
    "/healthz/log",
    "/healthz/syncloop",
    "/pods",
    "/runningpods/",
    "/metrics",
    "/metrics/probes",
    "/configz",
    "/containerLogs/{namespace}/{pod}/{container}",
    "/run/{namespace}/{pod}/{container}",
    "/exec/{namespace}/{pod}/{container}",
    "/attach/{namespace}/{pod}/{container}",
    "/portForward/{namespace}/{pod}",
    "/logs/",
    "other",
];

impl Route {
    /// The template used as the `path` label of metrics: never request data.
    pub fn template(&self) -> &'static str {
        match self {
            Route::Healthz(Check::All) => "/healthz",
            Route::Healthz(Check::Ping) => "/healthz/ping",
            Route::Healthz(Check::Log) => "/healthz/log",
            Route::Healthz(Check::Syncloop) => "/healthz/syncloop",
            Route::Pods => "/pods",
            Route::RunningPods => "/runningpods/",
            Route::Metrics => "/metrics",
            Route::MetricsProbes => "/metrics/probes",
            Route::Configz => "/configz",
            Route::ContainerLogs(_) => "/containerLogs/{namespace}/{pod}/{container}",
            Route::Run(_) => "/run/{namespace}/{pod}/{container}",
            Route::Exec(_) => "/exec/{namespace}/{pod}/{container}",
            Route::Attach(_) => "/attach/{namespace}/{pod}/{container}",
            Route::PortForward(_) => "/portForward/{namespace}/{pod}",
            Route::Logs(_) => "/logs/",
            Route::NotFound => "other",
        }
    }

    /// Methods the route answers (HEAD goes with GET).
    pub fn methods(&self) -> &'static [&'static str] {
        match self {
            Route::Run(_) => &["POST"],
            Route::Exec(_) | Route::Attach(_) | Route::PortForward(_) => &["GET", "POST"],
            Route::NotFound => &[],
            _ => &["GET", "HEAD"],
        }
    }

    /// Upstream's debugging handlers (405 when enableDebuggingHandlers is false).
    pub fn is_debugging(&self) -> bool {
        matches!(
            self,
            Route::ContainerLogs(_)
                | Route::Run(_)
                | Route::Exec(_)
                | Route::Attach(_)
                | Route::PortForward(_)
                | Route::RunningPods
        )
    }

    /// Long-running requests (streams); they get the streaming idle timeout.
    pub fn is_long_running(&self) -> bool {
        matches!(
            self,
            Route::Exec(_) | Route::Attach(_) | Route::PortForward(_) | Route::ContainerLogs(_)
        )
    }
}

fn segment_ok(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('%') && s.len() <= 253
}

fn container(rest: &[&str]) -> Option<ContainerRef> {
    let (namespace, pod, uid, container) = match rest {
        [ns, pod, c] => (ns, pod, None, c),
        [ns, pod, uid, c] => (ns, pod, Some(uid), c),
        _ => return None,
    };
    Some(ContainerRef {
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        uid: uid.map(|u| u.to_string()),
        container: container.to_string(),
    })
}

/// Maps a request path (without the query) to its route.
pub fn route(path: &str) -> Route {
    let Some(rest) = path.strip_prefix('/') else {
        return Route::NotFound;
    };
    let mut segs: Vec<&str> = rest.split('/').collect();
    // Trailing slash: allowed where upstream registers one, else part of a bad segment.
    let trailing = segs.len() > 1 && segs.last() == Some(&"");
    if trailing {
        segs.pop();
    }
    if segs.iter().any(|s| !segment_ok(s)) {
        // `/logs/` alone is the listing.
        return Route::NotFound;
    }
    match (segs.as_slice(), trailing) {
        (["healthz"], false) => Route::Healthz(Check::All),
        (["healthz", "ping"], false) => Route::Healthz(Check::Ping),
        (["healthz", "log"], false) => Route::Healthz(Check::Log),
        (["healthz", "syncloop"], false) => Route::Healthz(Check::Syncloop),
        (["pods"], _) => Route::Pods,
        (["runningpods"], _) => Route::RunningPods,
        (["metrics"], false) => Route::Metrics,
        (["metrics", "probes"], false) => Route::MetricsProbes,
        (["configz"], false) => Route::Configz,
        (["containerLogs", rest @ ..], false) if rest.len() == 3 => {
            container(rest).map_or(Route::NotFound, Route::ContainerLogs)
        }
        (["run", rest @ ..], _) => container(rest).map_or(Route::NotFound, Route::Run),
        (["exec", rest @ ..], _) => container(rest).map_or(Route::NotFound, Route::Exec),
        (["attach", rest @ ..], _) => container(rest).map_or(Route::NotFound, Route::Attach),
        (["portForward", ns, pod], _) => Route::PortForward(PodRef {
            namespace: ns.to_string(),
            pod: pod.to_string(),
            uid: None,
        }),
        (["portForward", ns, pod, uid], _) => Route::PortForward(PodRef {
            namespace: ns.to_string(),
            pod: pod.to_string(),
            uid: Some(uid.to_string()),
        }),
        (["logs", rest @ ..], _) => Route::Logs(rest.iter().map(|s| s.to_string()).collect()),
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_routes() {
        assert_eq!(route("/healthz"), Route::Healthz(Check::All));
        assert_eq!(route("/healthz/syncloop"), Route::Healthz(Check::Syncloop));
        assert_eq!(route("/pods"), Route::Pods);
        assert_eq!(route("/pods/"), Route::Pods);
        assert_eq!(route("/runningpods/"), Route::RunningPods);
        assert_eq!(route("/metrics/probes"), Route::MetricsProbes);
        let c = route("/containerLogs/ns/p/c");
        assert!(
            matches!(c, Route::ContainerLogs(ContainerRef { ref container, .. }) if container == "c")
        );
        assert!(matches!(
            route("/exec/ns/p/uid/c"),
            Route::Exec(ContainerRef { uid: Some(_), .. })
        ));
        assert!(matches!(route("/portForward/ns/p"), Route::PortForward(_)));
        assert_eq!(route("/logs/"), Route::Logs(vec![]));
        assert_eq!(route("/logs/syslog"), Route::Logs(vec!["syslog".into()]));
    }

    #[test]
    fn everything_else_is_not_found() {
        for p in [
            "",
            "/",
            "healthz",
            "/healthz/",
            "/healthzx",
            "/cri/exec/x",
            "/debug/pprof/cmdline",
            "/debug/flags/v",
            "/checkpoint/ns/p/c",
            "/stats/summary",
            "/spec/",
            "/logs/../etc/shadow",
            "/logs/%2e%2e/etc/shadow",
            "/logs//etc",
            "/logs/./x",
            "/exec/ns/p",
            "/exec/ns//c",
            "/containerLogs/ns/p/c/extra",
            "/run/ns/p/%63",
            "/metrics/cadvisor",
            "/configz/x",
        ] {
            assert_eq!(route(p), Route::NotFound, "{p}");
        }
    }

    #[test]
    fn every_route_has_a_registered_template_and_authz_mapping() {
        for t in TEMPLATES {
            let path = t
                .replace("{namespace}", "ns")
                .replace("{pod}", "p")
                .replace("{container}", "c");
            let r = route(&path);
            assert_eq!(r.template(), *t, "{path}");
            // Every route maps to at least one subresource for every verb.
            assert!(!super::super::authz::subresources(&path).is_empty());
        }
    }
}
