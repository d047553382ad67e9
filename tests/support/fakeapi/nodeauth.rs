//! What the real API server's Node authorizer and NodeRestriction admission allow a kubelet
//! (user system:node:NAME in group system:nodes): its own Node and Lease, status of pods
//! bound to it, mirror pods only (bound to it, with one controller owner reference to its
//! Node and that Node's UID, no secrets or other references), pod list/watch only with spec.nodeName=NAME (the
//! selector-aware node authorizer, Kubernetes 1.32+), secrets and config maps only when a
//! pod bound to it references them, events, its own CSRs, token and access reviews.
//! Everything else a node asks for is 403 Forbidden, as in a real cluster.

use std::collections::HashMap;

use serde_json::Value;

use super::Attributes;
use super::store::{ApiError, ApiResult, Resource, Store};

/// The node name of a kubelet identity.
pub fn node_of(user: &str, groups: &[String]) -> Option<String> {
    let name = user.strip_prefix("system:node:")?;
    groups
        .iter()
        .any(|g| g == "system:nodes")
        .then(|| name.to_string())
}

fn deny(a: &Attributes, node: &str, why: &str) -> ApiError {
    let res = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let target = if a.name.is_empty() {
        res.clone()
    } else {
        format!("{} \"{}\"", a.resource, a.name)
    };
    ApiError::new(
        403,
        "Forbidden",
        format!(
            "{target} is forbidden: User \"system:node:{node}\" cannot {} resource \"{res}\" in API group \"{}\": {why}",
            a.verb, a.api_group
        ),
    )
}

fn bound_to(pod: &Value, node: &str) -> bool {
    pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)
}

/// Names of secrets and config maps a pod refers to: (secrets, configmaps).
fn references(pod: &Value) -> (Vec<String>, Vec<String>) {
    fn walk(v: &Value, secrets: &mut Vec<String>, cms: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let name = || {
                        child
                            .get("name")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    };
                    match k.as_str() {
                        "secretName" => {
                            if let Some(s) = child.as_str() {
                                secrets.push(s.to_string());
                            }
                        }
                        "secret" | "secretKeyRef" | "secretRef" => secrets.extend(name()),
                        "configMap" | "configMapKeyRef" | "configMapRef" => cms.extend(name()),
                        "imagePullSecrets" => {
                            for s in child.as_array().into_iter().flatten() {
                                secrets.extend(
                                    s.get("name").and_then(Value::as_str).map(str::to_string),
                                );
                            }
                        }
                        _ => {}
                    }
                    walk(child, secrets, cms);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, secrets, cms)),
            _ => {}
        }
    }
    let (mut s, mut c) = (Vec::new(), Vec::new());
    if let Some(spec) = pod.get("spec") {
        walk(spec, &mut s, &mut c);
    }
    (s, c)
}

fn field_name(q: &HashMap<String, String>) -> Option<String> {
    q.get("fieldSelector")?
        .split(',')
        .find_map(|t| t.trim().strip_prefix("metadata.name="))
        .map(str::to_string)
}

fn node_field(q: &HashMap<String, String>) -> Option<String> {
    q.get("fieldSelector")?
        .split(',')
        .find_map(|t| t.trim().strip_prefix("spec.nodeName="))
        .map(str::to_string)
}

/// Labels in the kubernetes.io and k8s.io namespaces a kubelet may set on its Node.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];

fn label_allowed(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return true;
    };
    let restricted_domain = |d: &str| prefix == d || prefix.ends_with(&format!(".{d}"));
    if restricted_domain("node-restriction.kubernetes.io") {
        return false;
    }
    if !restricted_domain("kubernetes.io") && !restricted_domain("k8s.io") {
        return true;
    }
    KUBELET_LABELS.contains(&key)
        || prefix == "kubelet.kubernetes.io"
        || prefix.ends_with(".kubelet.kubernetes.io")
        || prefix == "node.kubernetes.io"
        || prefix.ends_with(".node.kubernetes.io")
}

/// NodeRestriction on a kubelet's own Node: no labels outside what a kubelet may set
/// (only labels it adds or changes count), and no taint changes after registration.
fn admit_node(a: &Attributes, node: &str, old: Option<&Value>, new: &Value) -> ApiResult<()> {
    let labels = |v: Option<&Value>| -> serde_json::Map<String, Value> {
        v.and_then(|v| v.pointer("/metadata/labels"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (before, after) = (labels(old), labels(Some(new)));
    let mut bad: Vec<&String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v) && !label_allowed(k))
        .map(|(k, _)| k)
        .collect();
    bad.sort();
    if !bad.is_empty() {
        return Err(deny(
            a,
            node,
            &format!(
                "is not allowed to modify labels: {}",
                bad.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if let Some(old) = old
        && old.pointer("/spec/taints") != new.pointer("/spec/taints")
    {
        return Err(deny(
            a,
            node,
            &format!("node {node:?} is not allowed to modify taints"),
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn check(
    st: &Store,
    node: &str,
    res: Option<Resource>,
    a: &Attributes,
    q: &HashMap<String, String>,
    content_type: &str,
    body: &[u8],
) -> ApiResult<()> {
    let read = matches!(a.verb.as_str(), "get" | "list" | "watch");
    let body_json = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let ok = |cond: bool, why: &str| {
        if cond {
            Ok(())
        } else {
            Err(deny(a, node, why))
        }
    };
    let Some(res) = res else {
        // Reviews a kubelet makes for its own API (delegated authn/authz).
        return ok(
            a.verb == "create"
                && (a.resource == "tokenreviews" || a.resource == "subjectaccessreviews"),
            "not a resource a node may use",
        );
    };
    match res {
        Resource::Nodes => {
            if read {
                return Ok(());
            }
            let name = if a.verb == "create" {
                body_json()
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            } else {
                a.name.clone()
            };
            if name != node {
                return Err(deny(
                    a,
                    node,
                    &format!("node '{node}' cannot modify node '{name}'"),
                ));
            }
            if !a.subresource.is_empty() || a.verb == "delete" {
                return Ok(());
            }
            // What the write would store, to hold labels and taints to NodeRestriction.
            let old = st.get(Resource::Nodes, "", node).ok();
            let new = match (a.verb.as_str(), &old) {
                ("patch", Some(old)) => {
                    match super::patch::apply(Resource::Nodes, old, content_type, body) {
                        Ok(v) => v,
                        Err(_) => return Ok(()), // the store reports the patch error itself
                    }
                }
                _ => body_json(),
            };
            admit_node(a, node, old.as_ref(), &new)
        }
        Resource::Pods => match (a.verb.as_str(), a.subresource.as_str()) {
            ("list" | "watch", "") => ok(
                node_field(q).as_deref() == Some(node),
                &format!(
                    "node '{node}' can only list/watch pods with fieldSelector spec.nodeName={node}"
                ),
            ),
            ("get", _) | ("update" | "patch" | "delete", _) if a.verb != "create" => {
                let pod = st.get(res, &a.namespace, &a.name).ok();
                let bound = pod.as_ref().is_some_and(|p| bound_to(p, node));
                if !bound {
                    return Err(deny(
                        a,
                        node,
                        "no relationship found between node and this object",
                    ));
                }
                match (a.verb.as_str(), a.subresource.as_str()) {
                    ("get", _) | ("delete", "") | (_, "status") => Ok(()),
                    _ => Err(deny(
                        a,
                        node,
                        &format!("node {node:?} can only create and delete mirror pods"),
                    )),
                }
            }
            ("create", "") => {
                let pod = body_json();
                let mirror = pod
                    .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                    .is_some();
                if !mirror {
                    return Err(deny(
                        a,
                        node,
                        &format!(
                            "pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods"
                        ),
                    ));
                }
                if !bound_to(&pod, node) {
                    return Err(deny(
                        a,
                        node,
                        &format!(
                            "node {node:?} can only create pods with spec.nodeName set to itself"
                        ),
                    ));
                }
                // Exactly one owner: this Node, as controller, with its current UID.
                let owners = pod
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let [owner] = owners.as_slice() else {
                    return Err(deny(
                        a,
                        node,
                        &format!(
                            "node {node:?} can only create pods with a single owner reference set to itself"
                        ),
                    ));
                };
                let field = |k: &str| owner.get(k).and_then(Value::as_str).unwrap_or("");
                if field("apiVersion") != "v1" || field("kind") != "Node" || field("name") != node {
                    return Err(deny(
                        a,
                        node,
                        &format!(
                            "node {node:?} can only create pods with an owner reference set to itself"
                        ),
                    ));
                }
                if owner.get("controller").and_then(Value::as_bool) != Some(true) {
                    return Err(deny(
                        a,
                        node,
                        &format!(
                            "node {node:?} can only create pods with a controller owner reference set to itself"
                        ),
                    ));
                }
                if owner.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
                    return Err(deny(
                        a,
                        node,
                        &format!(
                            "node {node:?} must not set blockOwnerDeletion on an owner reference"
                        ),
                    ));
                }
                let node_uid = st.get(Resource::Nodes, "", node).ok().and_then(|n| {
                    n.pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
                if node_uid.as_deref() != Some(field("uid")) {
                    return Err(deny(a, node, &format!("node {node} UID mismatch")));
                }
                let (secrets, cms) = references(&pod);
                let sa = pod
                    .pointer("/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty());
                let pvc = pod.to_string().contains("\"persistentVolumeClaim\"");
                ok(
                    secrets.is_empty() && cms.is_empty() && !sa && !pvc,
                    &format!(
                        "node {node:?} can not create pods that reference secrets, configmaps, service accounts or persistent volume claims"
                    ),
                )
            }
            _ => Err(deny(a, node, "not allowed for nodes")),
        },
        Resource::Leases => ok(
            a.namespace == "kube-node-lease"
                && (a.name == node
                    || (a.verb == "create"
                        && body_json()
                            .pointer("/metadata/name")
                            .and_then(Value::as_str)
                            == Some(node))),
            &format!("node '{node}' may only use its own lease in kube-node-lease"),
        ),
        Resource::Events | Resource::EventsV1 => ok(
            matches!(a.verb.as_str(), "create" | "update" | "patch"),
            "nodes may only write events",
        ),
        Resource::Csrs => ok(
            read || (a.verb == "create" && a.subresource.is_empty()),
            "nodes may only create and read certificate signing requests",
        ),
        Resource::Secrets | Resource::ConfigMaps => {
            let name = if a.name.is_empty() {
                field_name(q).unwrap_or_default()
            } else {
                a.name.clone()
            };
            let referenced = read
                && !name.is_empty()
                && st
                    .list(Resource::Pods, &Default::default())
                    .iter()
                    .any(|p| {
                        bound_to(p, node)
                            && p.pointer("/metadata/namespace").and_then(Value::as_str)
                                == Some(a.namespace.as_str())
                            && {
                                let (s, c) = references(p);
                                if res == Resource::Secrets {
                                    s.contains(&name)
                                } else {
                                    c.contains(&name)
                                }
                            }
                    });
            ok(
                referenced,
                "no relationship found between node and this object",
            )
        }
        Resource::Services | Resource::Namespaces => ok(read, "nodes may only read this"),
    }
}
