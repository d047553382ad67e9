//! Authorization of kubelet API requests: the mapping of a request to the attributes a
//! SubjectAccessReview would carry (upstream's rules, shared by the webhook authorizer), and
//! the standalone policy used when there is no API server to ask.
//!
//! The standalone policy is data (format in policy/README.md): every rule names its users or
//! groups, verbs and subresources explicitly, with a reason. There are no wildcards, so no
//! file can express "allow everything".

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use serde::Deserialize;

/// What a request asks to do, in SubjectAccessReview terms. Resource is always `nodes`, the
/// name is this node, the API group is "".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: &'static str,
    /// The subresources to try in order; access is granted if any is allowed (upstream's
    /// fine-grained checks with their fallback to `proxy`).
    pub subresources: &'static [&'static str],
}

/// Upstream's method → verb mapping. HEAD is `get` (as the documentation says); methods
/// upstream does not map get no verb and are refused before authorization.
pub fn verb(method: &str) -> Option<&'static str> {
    Some(match method {
        "GET" | "HEAD" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => return None,
    })
}

/// True when `path` is `prefix` or lies below it (`/stats` and `/stats/x`, not `/statsx`).
fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Upstream's path → subresource mapping, with the fine-grained checks first.
pub fn subresources(path: &str) -> &'static [&'static str] {
    if under(path, "/stats") {
        &["stats"]
    } else if under(path, "/metrics") {
        &["metrics"]
    } else if under(path, "/logs") {
        &["log"]
    } else if under(path, "/checkpoint") {
        &["checkpoint"]
    } else if under(path, "/pods") || under(path, "/runningpods") {
        &["pods", "proxy"]
    } else if under(path, "/healthz") {
        &["healthz", "proxy"]
    } else if under(path, "/configz") {
        &["configz", "proxy"]
    } else {
        &["proxy"]
    }
}

/// The routes that run something in a container or open a stream into it: `/exec`,
/// `/attach`, `/portForward` and `/run`.
pub fn is_command(path: &str) -> bool {
    ["/exec", "/attach", "/portForward", "/run"]
        .iter()
        .any(|p| under(path, p))
}

/// The verb a request is authorized with. Upstream takes it from the method alone, so
/// `GET /exec/...` (a WebSocket or SPDY upgrade) is `get` and `get nodes/proxy`, a
/// read-only monitoring grant, is enough to run commands in every container of the node.
/// ironlet departs from upstream here on purpose (SECURITY.md): exec, attach, portForward
/// and run are `create` whatever the method. Methods upstream does not map get no verb.
pub fn request_verb(method: &str, path: &str) -> Option<&'static str> {
    let v = verb(method)?;
    Some(if is_command(path) { "create" } else { v })
}

pub fn attributes(method: &str, path: &str) -> Option<Attributes> {
    Some(Attributes {
        verb: request_verb(method, path)?,
        subresources: subresources(path),
    })
}

/// Who is asking, after authentication. `uid` and `extra` come from a TokenReview (a
/// certificate has neither) and are passed on to the SubjectAccessReview, as upstream does,
/// so authorizers that narrow a principal by them see them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

const VERBS: &[&str] = &["get", "create", "update", "patch", "delete"];
const SUBRESOURCES: &[&str] = &[
    "stats",
    "metrics",
    "log",
    "checkpoint",
    "pods",
    "healthz",
    "configz",
    "proxy",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyFile {
    api_version: String,
    kind: String,
    rules: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    reason: String,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    verbs: Vec<String>,
    subresources: Vec<String>,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
    verbs: BTreeSet<String>,
    subresources: BTreeSet<String>,
}

pub const POLICY_API_VERSION: &str = "ironlet.dev/v1alpha1";
pub const POLICY_KIND: &str = "StandaloneAuthorizationPolicy";
const MAX_POLICY_BYTES: usize = 256 * 1024;

/// The standalone authorizer.
#[derive(Debug, Clone)]
pub struct StandalonePolicy {
    rules: Vec<Rule>,
}

/// Where in a policy file a problem is: `rules[i] ("name").field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleField {
    pub index: usize,
    pub name: String,
    pub field: &'static str,
}

impl std::fmt::Display for RuleField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rules[{}] ({:?}).{}", self.index, self.name, self.field)
    }
}

/// Why a standalone authorization policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: larger than {MAX_POLICY_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: {source}", path.display())]
    NotUtf8 {
        path: PathBuf,
        source: std::string::FromUtf8Error,
    },
    /// The file's content is refused; `source` says why.
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        source: Box<PolicyError>,
    },
    /// Not YAML or JSON of the policy's shape (the parser's first lines).
    #[error("{0}")]
    Syntax(String),
    #[error(
        "apiVersion {api_version:?}, kind {kind:?}: expected {POLICY_API_VERSION:?}, {POLICY_KIND:?}"
    )]
    WrongKind { api_version: String, kind: String },
    #[error("rules: at least one rule is required")]
    NoRules,
    #[error("rules[{0}].name: required")]
    NoName(usize),
    #[error("{0}: every rule states why it exists")]
    NoReason(RuleField),
    #[error("{0}: name at least one user or group")]
    NoPrincipal(RuleField),
    #[error(
        "{at}: {name:?}: wildcards and empty names are not allowed; name principals explicitly"
    )]
    NotExplicit { at: RuleField, name: String },
    #[error("{at}: {group:?} would admit anonymous callers")]
    Anonymous { at: RuleField, group: String },
    #[error("{0}: at least one is required")]
    Empty(RuleField),
    #[error("{at}: {value:?} is not one of {}", known.join(", "))]
    Unknown {
        at: RuleField,
        value: String,
        known: &'static [&'static str],
    },
}

impl StandalonePolicy {
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = String::from_utf8(bytes).map_err(|source| PolicyError::NotUtf8 {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| PolicyError::InFile {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// Parses and validates a policy (YAML or JSON).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let f: PolicyFile = serde_saphyr::from_str(text).map_err(|e| {
            PolicyError::Syntax(
                e.to_string()
                    .lines()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | "),
            )
        })?;
        if f.api_version != POLICY_API_VERSION || f.kind != POLICY_KIND {
            return Err(PolicyError::WrongKind {
                api_version: f.api_version,
                kind: f.kind,
            });
        }
        if f.rules.is_empty() {
            return Err(PolicyError::NoRules);
        }
        let mut rules = Vec::new();
        for (i, r) in f.rules.into_iter().enumerate() {
            let at = |field: &'static str| RuleField {
                index: i,
                name: r.name.clone(),
                field,
            };
            if r.name.trim().is_empty() {
                return Err(PolicyError::NoName(i));
            }
            if r.reason.trim().is_empty() {
                return Err(PolicyError::NoReason(at("reason")));
            }
            if r.users.is_empty() && r.groups.is_empty() {
                return Err(PolicyError::NoPrincipal(at("users")));
            }
            for (field, list) in [("users", &r.users), ("groups", &r.groups)] {
                if let Some(bad) = list.iter().find(|u| u.is_empty() || u.contains('*')) {
                    return Err(PolicyError::NotExplicit {
                        at: at(field),
                        name: bad.clone(),
                    });
                }
            }
            if let Some(bad) = r.groups.iter().find(|g| *g == "system:unauthenticated") {
                return Err(PolicyError::Anonymous {
                    at: at("groups"),
                    group: bad.clone(),
                });
            }
            for (field, list, known) in [
                ("verbs", &r.verbs, VERBS),
                ("subresources", &r.subresources, SUBRESOURCES),
            ] {
                if list.is_empty() {
                    return Err(PolicyError::Empty(at(field)));
                }
                if let Some(bad) = list.iter().find(|v| !known.contains(&v.as_str())) {
                    return Err(PolicyError::Unknown {
                        at: at(field),
                        value: bad.clone(),
                        known,
                    });
                }
            }
            rules.push(Rule {
                name: r.name,
                users: r.users.into_iter().collect(),
                groups: r.groups.into_iter().collect(),
                verbs: r.verbs.into_iter().collect(),
                subresources: r.subresources.into_iter().collect(),
            });
        }
        Ok(StandalonePolicy { rules })
    }
}

/// One SubjectAccessReview-shaped question: may `user` do `verb` on `nodes/<node>/<subresource>`?
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Review {
    pub user: String,
    pub groups: Vec<String>,
    /// The TokenReview's uid and extra (part of the cache key of webhook decisions).
    pub uid: Option<String>,
    pub extra: BTreeMap<String, Vec<String>>,
    pub verb: &'static str,
    pub subresource: &'static str,
}

/// Why an authenticator or authorizer could not answer. Either way nothing is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// The review budget (budget.rs) is exhausted: answered 503 with `Retry-After`.
    #[error("review budget exhausted")]
    Busy,
    /// The review failed (answered 401 for tokens, 500 for authorization).
    #[error("{0}")]
    Failed(String),
}

/// The answer to one [`Review`], with what decided it (a rule name, or "webhook").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(String),
    Deny,
}

/// Decides one review. The router tries a request's subresources in order (fine-grained
/// first, then `proxy`), so an authorizer answers one subresource at a time, as a
/// SubjectAccessReview does. `Err` is a failure to decide (answered 500, never allowed).
pub trait Authorizer: Send + Sync {
    fn authorize<'a>(&'a self, review: &'a Review) -> BoxFuture<'a, Result<Verdict, ReviewError>>;
}

/// How the authorization of one request ended, and on which subresource (the one that
/// allowed it, the one whose review was refused for want of budget, or the last one asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, and by what (a policy rule name, or "webhook").
    Allow {
        by: String,
        subresource: &'static str,
    },
    /// Every subresource was denied.
    Deny { subresource: &'static str },
    /// The review budget was exhausted; the remaining subresources were not asked.
    Busy { subresource: &'static str },
    /// No subresource was allowed and at least one review failed (answered 500).
    Failed { subresource: &'static str },
}

impl Decision {
    /// The subresource the decision names (for the audit line).
    pub fn subresource(&self) -> &'static str {
        match self {
            Decision::Allow { subresource, .. }
            | Decision::Deny { subresource }
            | Decision::Busy { subresource }
            | Decision::Failed { subresource } => subresource,
        }
    }
}

/// The one authorization decider: asks `authorizer` about `user` doing `attrs.verb` on each
/// of `attrs.subresources` in order (fine-grained first, then `proxy`) and stops at the
/// first allow. A failed review does not stop the walk (a later subresource may still
/// allow); an exhausted budget does. The request pipeline (`api.rs`), the unit tests and
/// the fuzz target all call this.
pub async fn decide(authorizer: &dyn Authorizer, user: &User, attrs: &Attributes) -> Decision {
    let mut failed = false;
    let mut last = "proxy";
    for &subresource in attrs.subresources {
        last = subresource;
        let review = Review {
            user: user.name.clone(),
            groups: user.groups.clone(),
            uid: user.uid.clone(),
            extra: user.extra.clone(),
            verb: attrs.verb,
            subresource,
        };
        match authorizer.authorize(&review).await {
            Ok(Verdict::Allow(by)) => return Decision::Allow { by, subresource },
            Ok(Verdict::Deny) => {}
            Err(ReviewError::Busy) => return Decision::Busy { subresource },
            Err(ReviewError::Failed(e)) => {
                tracing::warn!(error = %e, "authorizer failed; request refused");
                failed = true;
            }
        }
    }
    if failed {
        Decision::Failed { subresource: last }
    } else {
        Decision::Deny { subresource: last }
    }
}

impl StandalonePolicy {
    /// The first rule that allows `review`, if any.
    pub fn check(&self, review: &Review) -> Verdict {
        for r in &self.rules {
            let who = r.users.contains(&review.user)
                || review.groups.iter().any(|g| r.groups.contains(g));
            if who && r.verbs.contains(review.verb) && r.subresources.contains(review.subresource) {
                return Verdict::Allow(r.name.clone());
            }
        }
        Verdict::Deny
    }
}

impl Authorizer for StandalonePolicy {
    fn authorize<'a>(&'a self, review: &'a Review) -> BoxFuture<'a, Result<Verdict, ReviewError>> {
        Box::pin(std::future::ready(Ok(self.check(review))))
    }
}

/// Cluster mode with `--authorization-policy-file`: both must allow. The local policy is
/// asked first (no network call), so a request it denies never becomes a
/// SubjectAccessReview; what it allows is then asked of the API server. The policy can
/// only narrow what the cluster grants, never widen it.
pub struct Both {
    pub local: StandalonePolicy,
    pub remote: std::sync::Arc<dyn Authorizer>,
}

impl Authorizer for Both {
    fn authorize<'a>(&'a self, review: &'a Review) -> BoxFuture<'a, Result<Verdict, ReviewError>> {
        Box::pin(async move {
            let Verdict::Allow(rule) = self.local.check(review) else {
                return Ok(Verdict::Deny);
            };
            Ok(match self.remote.authorize(review).await? {
                Verdict::Allow(by) => Verdict::Allow(format!("{rule}+{by}")),
                Verdict::Deny => Verdict::Deny,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "apiVersion: ironlet.dev/v1alpha1\nkind: StandaloneAuthorizationPolicy\nrules:\n- name: monitoring\n  reason: Prometheus scrapes metrics\n  users: [prometheus]\n  verbs: [get]\n  subresources: [metrics, healthz]\n- name: operators\n  reason: node operators read pods and logs\n  groups: [node-admins]\n  verbs: [get, create]\n  subresources: [pods, proxy, log]\n";

    fn decide_now(p: &StandalonePolicy, u: &User, a: &Attributes) -> Decision {
        futures::executor::block_on(decide(p, u, a))
    }

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn upstream_path_and_verb_mapping() {
        assert_eq!(verb("GET"), Some("get"));
        assert_eq!(verb("HEAD"), Some("get"));
        assert_eq!(verb("POST"), Some("create"));
        assert_eq!(verb("PUT"), Some("update"));
        assert_eq!(verb("PATCH"), Some("patch"));
        assert_eq!(verb("DELETE"), Some("delete"));
        assert_eq!(verb("OPTIONS"), None);
        assert_eq!(subresources("/stats/summary"), ["stats"]);
        assert_eq!(subresources("/stats"), ["stats"]);
        assert_eq!(subresources("/statsx"), ["proxy"]);
        assert_eq!(subresources("/metrics/probes"), ["metrics"]);
        assert_eq!(subresources("/logs/syslog"), ["log"]);
        assert_eq!(subresources("/pods"), ["pods", "proxy"]);
        assert_eq!(subresources("/runningpods/"), ["pods", "proxy"]);
        assert_eq!(subresources("/healthz/ping"), ["healthz", "proxy"]);
        assert_eq!(subresources("/configz"), ["configz", "proxy"]);
        assert_eq!(subresources("/exec/ns/pod/c"), ["proxy"]);
        assert_eq!(subresources("/containerLogs/ns/pod/c"), ["proxy"]);
        assert_eq!(subresources("/checkpoint/ns/p/c"), ["checkpoint"]);
    }

    #[test]
    fn commands_are_create_whatever_the_method() {
        for path in [
            "/exec/ns/p/c",
            "/exec/ns/p/uid/c",
            "/attach/ns/p/c",
            "/portForward/ns/p",
            "/run/ns/p/c",
            "/exec",
        ] {
            for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
                assert_eq!(
                    request_verb(method, path),
                    Some("create"),
                    "{method} {path}"
                );
            }
            assert_eq!(request_verb("OPTIONS", path), None);
        }
        assert_eq!(request_verb("GET", "/execx/ns/p/c"), Some("get"));
        assert_eq!(request_verb("GET", "/containerLogs/ns/p/c"), Some("get"));
        assert_eq!(request_verb("DELETE", "/pods"), Some("delete"));
        let get_proxy = StandalonePolicy::parse(
            "apiVersion: ironlet.dev/v1alpha1\nkind: StandaloneAuthorizationPolicy\nrules:\n- name: monitoring\n  reason: read-only monitoring\n  users: [mon]\n  verbs: [get]\n  subresources: [proxy]\n",
        )
        .unwrap();
        let mon = user("mon", &[]);
        assert!(matches!(
            decide_now(
                &get_proxy,
                &mon,
                &attributes("GET", "/exec/ns/p/c").unwrap()
            ),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            decide_now(
                &get_proxy,
                &mon,
                &attributes("GET", "/containerLogs/ns/p/c").unwrap()
            ),
            Decision::Allow { .. }
        ));
    }

    #[test]
    fn standalone_policy_allows_only_what_it_names() {
        let p = StandalonePolicy::parse(POLICY).unwrap();
        let prom = user("prometheus", &["system:authenticated"]);
        let get_metrics = attributes("GET", "/metrics").unwrap();
        assert!(matches!(
            decide_now(&p, &prom, &get_metrics),
            Decision::Allow { .. }
        ));
        assert!(matches!(
            decide_now(&p, &prom, &attributes("GET", "/pods").unwrap()),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            decide_now(&p, &prom, &attributes("POST", "/metrics").unwrap()),
            Decision::Deny { .. }
        ));
        let admin = user("alice", &["node-admins"]);
        // /pods: the fine-grained `pods` subresource allows it first.
        assert_eq!(
            decide_now(&p, &admin, &attributes("GET", "/pods").unwrap()),
            Decision::Allow {
                by: "operators".into(),
                subresource: "pods"
            }
        );
        // /healthz falls back to proxy, which operators have.
        assert_eq!(
            decide_now(&p, &admin, &attributes("GET", "/healthz").unwrap()),
            Decision::Allow {
                by: "operators".into(),
                subresource: "proxy"
            }
        );
        assert!(matches!(
            decide_now(&p, &admin, &attributes("DELETE", "/pods").unwrap()),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            decide_now(&p, &user("mallory", &[]), &get_metrics),
            Decision::Deny { .. }
        ));
    }

    /// Answers each subresource from a script and records what it was asked.
    struct Scripted {
        answers: Vec<(&'static str, Result<Verdict, ReviewError>)>,
        asked: std::sync::Mutex<Vec<&'static str>>,
    }

    impl Authorizer for Scripted {
        fn authorize<'a>(
            &'a self,
            review: &'a Review,
        ) -> BoxFuture<'a, Result<Verdict, ReviewError>> {
            self.asked.lock().unwrap().push(review.subresource);
            let answer = self
                .answers
                .iter()
                .find(|(s, _)| *s == review.subresource)
                .map(|(_, a)| a.clone())
                .unwrap_or(Ok(Verdict::Deny));
            Box::pin(std::future::ready(answer))
        }
    }

    fn walk(
        path: &str,
        answers: Vec<(&'static str, Result<Verdict, ReviewError>)>,
    ) -> (Decision, Vec<&'static str>) {
        let a = Scripted {
            answers,
            asked: Default::default(),
        };
        let d = futures::executor::block_on(decide(
            &a,
            &user("u", &[]),
            &attributes("GET", path).unwrap(),
        ));
        (d, a.asked.into_inner().unwrap())
    }

    #[test]
    fn the_decider_walks_subresources_as_the_pipeline_needs() {
        let failed = || Err(ReviewError::Failed("sar: 500".into()));
        // A failed fine-grained review falls through to proxy, which may still allow.
        let (d, asked) = walk(
            "/pods",
            vec![
                ("pods", failed()),
                ("proxy", Ok(Verdict::Allow("webhook".into()))),
            ],
        );
        assert_eq!(
            d,
            Decision::Allow {
                by: "webhook".into(),
                subresource: "proxy"
            }
        );
        assert_eq!(asked, ["pods", "proxy"]);
        // An allow stops the walk.
        let (d, asked) = walk("/pods", vec![("pods", Ok(Verdict::Allow("r".into())))]);
        assert_eq!(d.subresource(), "pods");
        assert_eq!(asked, ["pods"]);
        // An exhausted budget stops it too, and names the subresource it stopped on.
        let (d, asked) = walk("/pods", vec![("pods", Err(ReviewError::Busy))]);
        assert_eq!(
            d,
            Decision::Busy {
                subresource: "pods"
            }
        );
        assert_eq!(asked, ["pods"]);
        // Nothing allowed and a failure on the way: a failure, not a plain deny.
        let (d, _) = walk("/healthz", vec![("proxy", failed())]);
        assert_eq!(
            d,
            Decision::Failed {
                subresource: "proxy"
            }
        );
        let (d, asked) = walk("/healthz", vec![]);
        assert_eq!(
            d,
            Decision::Deny {
                subresource: "proxy"
            }
        );
        assert_eq!(asked, ["healthz", "proxy"]);
    }

    #[test]
    fn policies_that_could_allow_everyone_are_refused() {
        let bad = [
            (POLICY.replace("[prometheus]", "['*']"), "wildcards"),
            (POLICY.replace("[node-admins]", "[system:unauthenticated]"), "anonymous"),
            (POLICY.replace("verbs: [get]\n", "verbs: ['*']\n"), "not one of"),
            (POLICY.replace("  reason: Prometheus scrapes metrics\n", "  reason: ''\n"), "why"),
            (POLICY.replace("  users: [prometheus]\n", ""), "at least one user or group"),
            (POLICY.replace("kind: StandaloneAuthorizationPolicy", "kind: Other"), "expected"),
            (format!("{POLICY}  extra: 1\n"), "unknown field"),
            ("apiVersion: ironlet.dev/v1alpha1\nkind: StandaloneAuthorizationPolicy\nrules: []\n".to_string(), "at least one rule"),
        ];
        for (text, needle) in bad {
            let e = StandalonePolicy::parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}

#[cfg(test)]
mod example_tests {
    #[test]
    fn the_shipped_example_policy_is_valid() {
        let text = include_str!("../../policy/standalone-authz.example.yaml");
        super::StandalonePolicy::parse(text).unwrap();
    }
}
