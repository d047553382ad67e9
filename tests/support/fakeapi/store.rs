//! The in-memory object store: one global resourceVersion counter (as etcd has), objects as
//! the API's JSON, a bounded change history for watches, and the write rules the real API
//! server applies (defaults, preconditions, status subresources, graceful pod deletion).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::patch;

/// The kinds the fixture serves.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Resource {
    Nodes,
    Pods,
    Leases,
    Events,
    EventsV1,
    Csrs,
    Namespaces,
    Services,
    ConfigMaps,
    Secrets,
}

pub struct ResInfo {
    pub group: &'static str,
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Has a status subresource: the main resource ignores .status and /status changes only it.
    pub has_status: bool,
    /// Field selectors the real API server accepts for this kind (beyond metadata.name/namespace).
    pub fields: &'static [&'static str],
}

impl Resource {
    pub const ALL: [Resource; 10] = [
        Resource::Nodes,
        Resource::Pods,
        Resource::Leases,
        Resource::Events,
        Resource::EventsV1,
        Resource::Csrs,
        Resource::Namespaces,
        Resource::Services,
        Resource::ConfigMaps,
        Resource::Secrets,
    ];

    pub fn info(self) -> ResInfo {
        match self {
            Resource::Nodes => ResInfo {
                group: "",
                api_version: "v1",
                kind: "Node",
                plural: "nodes",
                namespaced: false,
                has_status: true,
                fields: &["spec.unschedulable"],
            },
            Resource::Pods => ResInfo {
                group: "",
                api_version: "v1",
                kind: "Pod",
                plural: "pods",
                namespaced: true,
                has_status: true,
                fields: &[
                    "spec.nodeName",
                    "spec.restartPolicy",
                    "spec.schedulerName",
                    "spec.serviceAccountName",
                    "spec.hostNetwork",
                    "status.phase",
                    "status.podIP",
                    "status.nominatedNodeName",
                ],
            },
            Resource::Leases => ResInfo {
                group: "coordination.k8s.io",
                api_version: "coordination.k8s.io/v1",
                kind: "Lease",
                plural: "leases",
                namespaced: true,
                has_status: false,
                fields: &[],
            },
            Resource::Events => ResInfo {
                group: "",
                api_version: "v1",
                kind: "Event",
                plural: "events",
                namespaced: true,
                has_status: false,
                fields: &[
                    "involvedObject.kind",
                    "involvedObject.namespace",
                    "involvedObject.name",
                    "involvedObject.uid",
                    "involvedObject.apiVersion",
                    "involvedObject.resourceVersion",
                    "involvedObject.fieldPath",
                    "reason",
                    "reportingComponent",
                    "source",
                    "type",
                ],
            },
            Resource::EventsV1 => ResInfo {
                group: "events.k8s.io",
                api_version: "events.k8s.io/v1",
                kind: "Event",
                plural: "events",
                namespaced: true,
                has_status: false,
                fields: &[
                    "regarding.kind",
                    "regarding.name",
                    "regarding.namespace",
                    "reason",
                    "type",
                ],
            },
            Resource::Csrs => ResInfo {
                group: "certificates.k8s.io",
                api_version: "certificates.k8s.io/v1",
                kind: "CertificateSigningRequest",
                plural: "certificatesigningrequests",
                namespaced: false,
                has_status: true,
                fields: &["spec.signerName"],
            },
            Resource::Namespaces => ResInfo {
                group: "",
                api_version: "v1",
                kind: "Namespace",
                plural: "namespaces",
                namespaced: false,
                has_status: true,
                fields: &["status.phase"],
            },
            Resource::Services => ResInfo {
                group: "",
                api_version: "v1",
                kind: "Service",
                plural: "services",
                namespaced: true,
                has_status: true,
                fields: &["spec.clusterIP", "spec.type"],
            },
            Resource::ConfigMaps => ResInfo {
                group: "",
                api_version: "v1",
                kind: "ConfigMap",
                plural: "configmaps",
                namespaced: true,
                has_status: false,
                fields: &[],
            },
            Resource::Secrets => ResInfo {
                group: "",
                api_version: "v1",
                kind: "Secret",
                plural: "secrets",
                namespaced: true,
                has_status: false,
                fields: &["type"],
            },
        }
    }

    /// The resource for an API path's group/version/plural.
    pub fn from_path(group: &str, version: &str, plural: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| {
            let i = r.info();
            let api_version = if group.is_empty() {
                version.to_string()
            } else {
                format!("{group}/{version}")
            };
            i.group == group && i.plural == plural && i.api_version == api_version
        })
    }
}

/// An API error, rendered as a `Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<(String, &'static str)>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }
    pub fn not_found(res: Resource, name: &str) -> ApiError {
        let i = res.info();
        let what = if i.group.is_empty() {
            i.plural.to_string()
        } else {
            format!("{}.{}", i.plural, i.group)
        };
        ApiError {
            details: Some((name.to_string(), i.plural)),
            ..ApiError::new(404, "NotFound", format!("{what} \"{name}\" not found"))
        }
    }
    pub fn conflict(res: Resource, name: &str, why: &str) -> ApiError {
        let i = res.info();
        ApiError {
            details: Some((name.to_string(), i.plural)),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    i.plural
                ),
            )
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }
    pub fn invalid(res: Resource, name: &str, message: impl Into<String>) -> ApiError {
        let i = res.info();
        ApiError {
            details: Some((name.to_string(), i.plural)),
            ..ApiError::new(
                422,
                "Invalid",
                format!("{} \"{name}\" is invalid: {}", i.kind, message.into()),
            )
        }
    }
    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some((name, kind)) = &self.details {
            s["details"] = json!({"name": name, "kind": kind});
        }
        s
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One committed write, as watches see it.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub res: Resource,
    pub ty: ChangeType,
    pub old: Option<Value>,
    pub new: Value,
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sub {
    Main,
    Status,
    Approval,
}

/// `metav1.DeleteOptions` fields the fixture honours.
#[derive(Default, Debug, Clone)]
pub struct DeleteOpts {
    pub grace_period_seconds: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl DeleteOpts {
    pub fn from_json(v: &Value) -> DeleteOpts {
        DeleteOpts {
            grace_period_seconds: v.get("gracePeriodSeconds").and_then(Value::as_i64),
            uid: v
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            resource_version: v
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

/// A parsed label or field selector: terms ANDed.
#[derive(Default, Debug, Clone)]
pub struct Selector {
    terms: Vec<Term>,
}

#[derive(Debug, Clone)]
enum Term {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Splits on commas that are not inside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn set_values(s: &str) -> Option<Vec<String>> {
    let s = s.trim();
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl Selector {
    pub fn parse_labels(s: &str) -> ApiResult<Selector> {
        let mut terms = Vec::new();
        for t in split_terms(s) {
            let term = if let Some((k, v)) = t.split_once("!=") {
                Term::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = t.split_once("==") {
                Term::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = t.split_once('=') {
                Term::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = t.split_once(" notin ") {
                let vals = set_values(v).ok_or_else(|| {
                    ApiError::bad_request(format!("unable to parse requirement: {t}"))
                })?;
                Term::NotIn(k.trim().into(), vals)
            } else if let Some((k, v)) = t.split_once(" in ") {
                let vals = set_values(v).ok_or_else(|| {
                    ApiError::bad_request(format!("unable to parse requirement: {t}"))
                })?;
                Term::In(k.trim().into(), vals)
            } else if let Some(k) = t.strip_prefix('!') {
                Term::NotExists(k.trim().into())
            } else {
                Term::Exists(t.into())
            };
            terms.push(term);
        }
        Ok(Selector { terms })
    }

    pub fn parse_fields(s: &str, res: Resource) -> ApiResult<Selector> {
        let mut terms = Vec::new();
        let allowed = res.info().fields;
        for t in split_terms(s) {
            let term = if let Some((k, v)) = t.split_once("!=") {
                Term::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = t.split_once("==") {
                Term::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = t.split_once('=') {
                Term::Eq(k.trim().into(), v.trim().into())
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: invalid selector: '{s}'; can't understand '{t}'"
                )));
            };
            let (Term::Eq(k, _) | Term::Ne(k, _)) = &term else {
                unreachable!()
            };
            if k != "metadata.name" && k != "metadata.namespace" && !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {k}"
                )));
            }
            terms.push(term);
        }
        Ok(Selector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    fn matches_with(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|t| match t {
            Term::Eq(k, v) => get(k).unwrap_or_default() == *v,
            Term::Ne(k, v) => get(k).unwrap_or_default() != *v,
            Term::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
            Term::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
            Term::Exists(k) => get(k).is_some(),
            Term::NotExists(k) => get(k).is_none(),
        })
    }

    pub fn matches_labels(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.matches_with(|k| {
            labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    }

    pub fn matches_fields(&self, obj: &Value) -> bool {
        self.matches_with(|path| {
            let mut cur = obj;
            for part in path.split('.') {
                match cur.get(part) {
                    Some(v) => cur = v,
                    None => return Some(String::new()),
                }
            }
            Some(match cur {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            })
        })
    }
}

/// What a list or watch asks for.
#[derive(Default, Debug, Clone)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: Selector,
    pub fields: Selector,
}

impl Filter {
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches_labels(obj) && self.fields.matches_fields(obj)
    }
}

type Key = (Resource, String, String);

pub struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    pub history_limit: usize,
    /// CSRs asking for spec.expirationSeconds below this are invalid (the real API server:
    /// 600, ten minutes).
    pub csr_min_expiration_seconds: i64,
    /// Watches and exact lists from a resourceVersion below this get 410 Gone.
    compacted: u64,
    pub tx: broadcast::Sender<Arc<Change>>,
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn rfc3339_in(secs: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    let variant = ["8", "9", "a", "b"][usize::from(b[8] & 3)];
    format!(
        "{}-{}-4{}-{}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        variant,
        &h[17..20],
        &h[20..32]
    )
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Everything but metadata and status: a change here bumps metadata.generation.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

impl Store {
    pub fn new(history_limit: usize) -> Store {
        let (tx, _) = broadcast::channel(4096);
        Store {
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            history_limit,
            csr_min_expiration_seconds: 600,
            compacted: 0,
            tx,
        }
    }

    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Forgets history: watches or exact lists from any resourceVersion issued so far get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv + 1;
        // A fresh revision so that a relist returns a version that is watchable again.
        self.rv += 1;
    }

    /// A resourceVersion from which every change is still in the history.
    pub fn check_watchable(&self, rv: u64) -> ApiResult<()> {
        if rv < self.compacted {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                self.compacted
            )));
        }
        Ok(())
    }

    fn commit(
        &mut self,
        res: Resource,
        ty: ChangeType,
        old: Option<Value>,
        mut new: Value,
    ) -> Value {
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let ns = meta_str(&new, "namespace").unwrap_or("").to_string();
        let key = (res, ns, name_of(&new).to_string());
        if ty == ChangeType::Deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key, new.clone());
        }
        let change = Arc::new(Change {
            rv: self.rv,
            res,
            ty,
            old,
            new: new.clone(),
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(c) = self.history.pop_front() {
                self.compacted = c.rv;
            }
        }
        let _ = self.tx.send(change);
        new
    }

    pub fn get(&self, res: Resource, ns: &str, name: &str) -> ApiResult<Value> {
        self.objects
            .get(&(res, ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    pub fn list(&self, res: Resource, filter: &Filter) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, _, _), v)| *r == res && filter.matches(v))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Changes after `rv`, in order (the caller checked `check_watchable`).
    pub fn changes_since(&self, rv: u64) -> Vec<Arc<Change>> {
        self.history.iter().filter(|c| c.rv > rv).cloned().collect()
    }

    pub fn create(
        &mut self,
        res: Resource,
        ns: &str,
        mut obj: Value,
        requester: Option<(&str, &[String])>,
    ) -> ApiResult<Value> {
        let info = res.info();
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        if obj.get("metadata").is_none_or(Value::is_null) {
            obj["metadata"] = json!({});
        }
        check_shape(res, "", &obj)?;
        if let Some(k) = obj.get("kind").and_then(Value::as_str)
            && k != info.kind
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                k, info.kind
            )));
        }
        obj["apiVersion"] = json!(info.api_version);
        obj["kind"] = json!(info.kind);
        let mut name = name_of(&obj).to_string();
        if name.is_empty()
            && let Some(gen_name) = meta_str(&obj, "generateName")
        {
            let suffix: String = (0..5)
                .map(|_| {
                    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
                    alphabet[rand::random_range(0..alphabet.len())] as char
                })
                .collect();
            name = format!("{gen_name}{suffix}");
            obj["metadata"]["name"] = json!(name);
        }
        if name.is_empty() {
            return Err(ApiError::invalid(
                res,
                "",
                "metadata.name: Required value: name or generateName is required",
            ));
        }
        // As the real API server: any name that is a valid path segment will do for a CSR
        // (upstream's ValidateCertificateRequestName accepts all; kubelets name theirs
        // node-csr-<base64url>).
        let csr_name_ok =
            res == Resource::Csrs && !name.contains(['/', '%']) && name != "." && name != "..";
        if !csr_name_ok && !valid_name(&name) {
            return Err(ApiError::invalid(
                res,
                &name,
                format!(
                    "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
                ),
            ));
        }
        if info.namespaced {
            match meta_str(&obj, "namespace") {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => obj["metadata"]["namespace"] = json!(ns),
            }
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let key = (res, ns.to_string(), name.clone());
        if self.objects.contains_key(&key) {
            let plural = if info.group.is_empty() {
                info.plural.to_string()
            } else {
                format!("{}.{}", info.plural, info.group)
            };
            return Err(ApiError {
                details: Some((name.clone(), info.plural)),
                ..ApiError::new(
                    409,
                    "AlreadyExists",
                    format!("{plural} \"{name}\" already exists"),
                )
            });
        }
        let m = obj["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        m.insert("uid".into(), json!(new_uid()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        m.insert("generation".into(), json!(1));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        match res {
            Resource::Pods => {
                if obj
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .is_none_or(|c| c.is_empty())
                {
                    return Err(ApiError::invalid(
                        res,
                        &name,
                        "spec.containers: Required value",
                    ));
                }
                validate_containers(res, &name, &obj)?;
                pod_defaults(&mut obj);
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
            Resource::Events => {
                // As ValidateEventCreate: the event lives in its object's namespace.
                let involved = obj
                    .pointer("/involvedObject/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !involved.is_empty() && involved != ns {
                    return Err(ApiError::invalid(
                        res,
                        &name,
                        format!(
                            "involvedObject.namespace: Invalid value: \"{involved}\": does not match event.namespace"
                        ),
                    ));
                }
            }
            Resource::Csrs => {
                if obj
                    .pointer("/spec/request")
                    .and_then(Value::as_str)
                    .is_none()
                {
                    return Err(ApiError::invalid(
                        res,
                        &name,
                        "spec.request: Required value",
                    ));
                }
                if obj
                    .pointer("/spec/signerName")
                    .and_then(Value::as_str)
                    .is_none()
                {
                    return Err(ApiError::invalid(
                        res,
                        &name,
                        "spec.signerName: Required value",
                    ));
                }
                if let Some(secs) = obj
                    .pointer("/spec/expirationSeconds")
                    .and_then(Value::as_i64)
                    && secs < self.csr_min_expiration_seconds
                {
                    return Err(ApiError::invalid(
                        res,
                        &name,
                        format!(
                            "spec.expirationSeconds: Invalid value: {secs}: may not specify a duration less than {} seconds",
                            self.csr_min_expiration_seconds
                        ),
                    ));
                }
                // The API server records who asked, not what the body claims.
                if let Some((user, groups)) = requester {
                    obj["spec"]["username"] = json!(user);
                    obj["spec"]["groups"] = json!(groups);
                }
                obj["status"] = json!({});
            }
            Resource::Secrets => secret_string_data(&mut obj),
            _ => {}
        }
        check_types(res, &obj)?;
        Ok(self.commit(res, ChangeType::Added, None, obj))
    }

    /// PUT: replace the object (or only its status / approval conditions).
    pub fn update(
        &mut self,
        res: Resource,
        ns: &str,
        name: &str,
        mut obj: Value,
        sub: Sub,
    ) -> ApiResult<Value> {
        let old = self.get(res, ns, name)?;
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        let body_name = name_of(&obj);
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(rv) = meta_str(&obj, "resourceVersion")
            && !rv.is_empty()
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                res,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if let Some(uid) = meta_str(&obj, "uid")
            && !uid.is_empty()
            && Some(uid) != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or("")
                ),
            ));
        }
        obj["apiVersion"] = old["apiVersion"].clone();
        obj["kind"] = old["kind"].clone();
        self.write(res, old, obj, sub)
    }

    /// PATCH with one of the API's patch content types.
    pub fn patch(
        &mut self,
        res: Resource,
        ns: &str,
        name: &str,
        content_type: &str,
        body: &[u8],
        sub: Sub,
    ) -> ApiResult<Value> {
        let old = self.get(res, ns, name)?;
        let patched = patch::apply(res, &old, content_type, body)?;
        if let Some(uid) = meta_str(&patched, "uid")
            && Some(uid) != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = meta_str(&patched, "resourceVersion")
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                res,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if name_of(&patched) != name {
            return Err(ApiError::bad_request(
                "metadata.name may not be changed by a patch",
            ));
        }
        self.write(res, old, patched, sub)
    }

    /// The common tail of update and patch: subresource rules, bookkeeping, commit.
    fn write(&mut self, res: Resource, old: Value, proposed: Value, sub: Sub) -> ApiResult<Value> {
        let info = res.info();
        let name = name_of(&old).to_string();
        check_shape(res, &name, &proposed)?;
        let mut new = match sub {
            Sub::Main => {
                let mut n = proposed;
                if info.has_status {
                    match old.get("status") {
                        Some(s) => n["status"] = s.clone(),
                        None => {
                            if let Some(m) = n.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                n
            }
            Sub::Status => {
                if !info.has_status {
                    return Err(ApiError::not_found(res, &name));
                }
                let mut n = old.clone();
                n["status"] = proposed.get("status").cloned().unwrap_or(json!({}));
                n
            }
            Sub::Approval => {
                if res != Resource::Csrs {
                    return Err(ApiError::not_found(res, &name));
                }
                let mut n = old.clone();
                n["status"]["conditions"] = proposed
                    .pointer("/status/conditions")
                    .cloned()
                    .unwrap_or(json!([]));
                n
            }
        };
        // Fields the server owns.
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
        ] {
            match old["metadata"].get(f) {
                Some(v) => new["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        if res == Resource::Secrets {
            secret_string_data(&mut new);
        }
        if res == Resource::Pods && sub == Sub::Main {
            pod_defaults(&mut new);
            let immutable_spec_changed = {
                let strip = |v: &Value| {
                    let mut s = v.get("spec").cloned().unwrap_or(json!({}));
                    if let Some(cs) = s.get_mut("containers").and_then(Value::as_array_mut) {
                        for c in cs {
                            if let Some(c) = c.as_object_mut() {
                                c.remove("image");
                            }
                        }
                    }
                    if let Some(m) = s.as_object_mut() {
                        m.remove("activeDeadlineSeconds");
                        m.remove("tolerations");
                        m.remove("terminationGracePeriodSeconds");
                    }
                    s
                };
                strip(&old) != strip(&new)
            };
            if immutable_spec_changed {
                return Err(ApiError::invalid(
                    res,
                    &name,
                    "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`",
                ));
            }
        }
        if spec_part(&old) != spec_part(&new) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        check_types(res, &new)?;
        if new == old {
            // A no-op write does not move the resourceVersion, as in the real API server.
            return Ok(old);
        }
        // Finalizers all gone from an object marked for deletion with no grace left: it goes.
        let finalizers_empty = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty());
        let grace_left = new
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if new.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers_empty
            && grace_left == 0
        {
            return Ok(self.commit(res, ChangeType::Deleted, Some(old), new));
        }
        Ok(self.commit(res, ChangeType::Modified, Some(old), new))
    }

    pub fn delete(
        &mut self,
        res: Resource,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Value> {
        let old = self.get(res, ns, name)?;
        let uid = meta_str(&old, "uid").unwrap_or("");
        if let Some(want) = &opts.uid
            && want != uid
        {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
        let rv = meta_str(&old, "resourceVersion").unwrap_or("");
        if let Some(want) = &opts.resource_version
            && want != rv
        {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
                ),
            ));
        }
        if let Some(g) = opts.grace_period_seconds
            && g < 0
        {
            return Err(ApiError::invalid(
                res,
                name,
                "gracePeriodSeconds: Invalid value: must be >= 0",
            ));
        }
        let has_finalizers = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        let mut grace = 0;
        if res == Resource::Pods {
            let bound = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let phase = old
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("");
            let terminal = phase == "Succeeded" || phase == "Failed";
            grace = opts.grace_period_seconds.unwrap_or_else(|| {
                old.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            });
            if !bound || terminal {
                grace = 0;
            }
        }
        if grace > 0 || has_finalizers {
            let current = old
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            if old.pointer("/metadata/deletionTimestamp").is_some()
                && current.is_some_and(|c| c <= grace)
            {
                // Already terminating with a grace no longer than this one: nothing changes.
                return Ok(old);
            }
            let mut new = old.clone();
            new["metadata"]["deletionTimestamp"] = json!(rfc3339_in(grace));
            new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            if grace == 0 && !has_finalizers {
                return Ok(self.commit(res, ChangeType::Deleted, Some(old), new));
            }
            return Ok(self.commit(res, ChangeType::Modified, Some(old), new));
        }
        let new = old.clone();
        Ok(self.commit(res, ChangeType::Deleted, Some(old), new))
    }
}

/// Containers and init containers need a unique DNS-label name and an image.
fn validate_containers(res: Resource, name: &str, pod: &Value) -> ApiResult<()> {
    let mut seen = Vec::new();
    for list in ["containers", "initContainers"] {
        for (i, c) in pod
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let field = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
            let cname = field("name");
            let label = !cname.is_empty()
                && cname.len() <= 63
                && cname
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
                && !cname.starts_with('-')
                && !cname.ends_with('-');
            if !label {
                return Err(ApiError::invalid(
                    res,
                    name,
                    format!(
                        "spec.{list}[{i}].name: Invalid value: \"{cname}\": a lowercase RFC 1123 label is required"
                    ),
                ));
            }
            if seen.contains(&cname) {
                return Err(ApiError::invalid(
                    res,
                    name,
                    format!("spec.{list}[{i}].name: Duplicate value: \"{cname}\""),
                ));
            }
            seen.push(cname);
            if field("image").trim().is_empty() {
                return Err(ApiError::invalid(
                    res,
                    name,
                    format!("spec.{list}[{i}].image: Required value"),
                ));
            }
        }
    }
    Ok(())
}

/// The top-level shape every kind here shares: metadata, spec and status are objects when
/// present. Anything else is refused before it can reach the store.
fn check_shape(res: Resource, name: &str, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the object is not a JSON object"));
    }
    for field in ["metadata", "spec", "status"] {
        match obj.get(field) {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(_) => {
                return Err(ApiError::invalid(
                    res,
                    name,
                    format!("{field}: Invalid value: must be an object"),
                ));
            }
        }
    }
    if obj.get("metadata").is_some_and(Value::is_null) {
        return Err(ApiError::invalid(res, name, "metadata: Required value"));
    }
    Ok(())
}

/// Decodes the object as its Kubernetes type, as the real API server does before anything
/// is stored: a wrong type for a known field is a 400 with the decoder's message.
fn check_types(res: Resource, obj: &Value) -> ApiResult<()> {
    use k8s_openapi::api::{certificates, coordination, core, events};
    fn decode<K: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(), String> {
        serde_json::from_slice::<K>(bytes)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    let bytes = serde_json::to_vec(obj).unwrap_or_default();
    let r = match res {
        Resource::Nodes => decode::<core::v1::Node>(&bytes),
        Resource::Pods => decode::<core::v1::Pod>(&bytes),
        Resource::Leases => decode::<coordination::v1::Lease>(&bytes),
        Resource::Events => decode::<core::v1::Event>(&bytes),
        Resource::EventsV1 => decode::<events::v1::Event>(&bytes),
        Resource::Csrs => decode::<certificates::v1::CertificateSigningRequest>(&bytes),
        Resource::Namespaces => decode::<core::v1::Namespace>(&bytes),
        Resource::Services => decode::<core::v1::Service>(&bytes),
        Resource::ConfigMaps => decode::<core::v1::ConfigMap>(&bytes),
        Resource::Secrets => decode::<core::v1::Secret>(&bytes),
    };
    r.map_err(|e| {
        ApiError::bad_request(format!(
            "the object could not be decoded as a {}: {e}",
            res.info().kind
        ))
    })
}

/// A secret's write-only stringData becomes base64 data, as the API server does.
fn secret_string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(m) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(sd)) = m.remove("stringData") else {
        return;
    };
    let data = m.entry("data").or_insert_with(|| json!({}));
    for (k, v) in sd {
        if let Some(text) = v.as_str() {
            data[k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
}

fn set_default(m: &mut Map<String, Value>, k: &str, v: Value) {
    if m.get(k).is_none_or(Value::is_null) {
        m.insert(k.to_string(), v);
    }
}

/// The defaults the real API server fills into a pod (the ones a kubelet reads).
fn pod_defaults(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(spec, "priority", json!(0));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let last = image.rsplit('/').next().unwrap_or("");
                let pull = if !last.contains(':') || image.ends_with(":latest") {
                    if image.contains('@') {
                        "IfNotPresent"
                    } else {
                        "Always"
                    }
                } else {
                    "IfNotPresent"
                };
                set_default(c, "imagePullPolicy", json!(pull));
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "resources", json!({}));
            }
        }
    }
}
