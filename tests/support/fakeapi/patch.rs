//! PATCH bodies as the API server applies them: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902), strategic merge patch with the merge keys of the Kubernetes types the node
//! agent patches, and a simple server-side apply (merge semantics; no field ownership).

use serde_json::{Map, Value};

use super::store::{ApiError, ApiResult, Resource};

pub const MERGE: &str = "application/merge-patch+json";
pub const STRATEGIC: &str = "application/strategic-merge-patch+json";
pub const JSON_PATCH: &str = "application/json-patch+json";
pub const APPLY: &str = "application/apply-patch+yaml";

/// List fields with `patchStrategy:"merge"` and their `patchMergeKey`, by JSON path
/// (list elements do not add a path segment). Lists not named here are replaced whole,
/// as for Kubernetes lists without a patch strategy.
const MERGE_KEYS: &[(&str, &str)] = &[
    ("metadata.ownerReferences", "uid"),
    ("status.conditions", "type"),
    ("status.containerStatuses", "name"),
    ("status.initContainerStatuses", "name"),
    ("status.ephemeralContainerStatuses", "name"),
    ("status.resourceClaimStatuses", "name"),
    ("status.podIPs", "ip"),
    ("status.hostIPs", "ip"),
    ("status.addresses", "type"),
    ("spec.containers", "name"),
    ("spec.initContainers", "name"),
    ("spec.ephemeralContainers", "name"),
    ("spec.containers.env", "name"),
    ("spec.initContainers.env", "name"),
    ("spec.containers.ports", "containerPort"),
    ("spec.containers.volumeMounts", "mountPath"),
    ("spec.initContainers.volumeMounts", "mountPath"),
    ("spec.volumes", "name"),
    ("spec.imagePullSecrets", "name"),
];

/// Lists of scalars with `patchStrategy:"merge"`: the patch's values are added.
const MERGE_SETS: &[&str] = &["metadata.finalizers"];

/// The media type without parameters, lower-cased.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub fn apply(res: Resource, old: &Value, content_type: &str, body: &[u8]) -> ApiResult<Value> {
    let mt = media_type(content_type);
    if ![MERGE, STRATEGIC, JSON_PATCH, APPLY].contains(&mt.as_str()) {
        return Err(unsupported(content_type));
    }
    let patch: Value = if mt == APPLY {
        parse_apply(body)?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
    };
    let mut doc = old.clone();
    let name = old
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    match mt.as_str() {
        MERGE | APPLY => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "merge patch body must be a JSON object",
                ));
            }
            json_patch::merge(&mut doc, &patch);
        }
        STRATEGIC => {
            let Value::Object(p) = &patch else {
                return Err(ApiError::bad_request(
                    "strategic merge patch body must be a JSON object",
                ));
            };
            let Value::Object(d) = &mut doc else {
                return Err(ApiError::bad_request("stored object is not a JSON object"));
            };
            strategic_map(d, p, "").map_err(|e| ApiError::invalid(res, name, e))?;
        }
        _ => {
            let ops: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                ApiError::invalid(
                    res,
                    name,
                    format!("the JSON patch could not be applied: {e}"),
                )
            })?;
        }
    }
    Ok(doc)
}

/// An apply body: YAML or JSON.
pub fn parse_apply(body: &[u8]) -> ApiResult<Value> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the apply body is not UTF-8"))?;
    serde_json::from_str(text)
        .or_else(|_| serde_saphyr::from_str(text))
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

pub fn unsupported(content_type: &str) -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: {JSON_PATCH}, {MERGE}, {APPLY}, {STRATEGIC}; got {content_type:?}"
        ),
    )
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn merge_key(path: &str) -> Option<&'static str> {
    MERGE_KEYS.iter().find(|(p, _)| *p == path).map(|(_, k)| *k)
}

/// Removes patch directives from a value that is inserted whole.
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn strategic_map(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<(), String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = match strip_directives(&Value::Object(patch.clone())) {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            return Ok(());
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type {other:?} at {path}")),
    }
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        let p = join(path, k);
        if v.is_null() {
            target.remove(k);
            continue;
        }
        match v {
            Value::Object(pm) => {
                let entry = target
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(tm) = entry {
                    strategic_map(tm, pm, &p)?;
                }
            }
            Value::Array(pa) => {
                if let Some(mk) = merge_key(&p) {
                    let mut list = match target.remove(k) {
                        Some(Value::Array(a)) => a,
                        _ => Vec::new(),
                    };
                    strategic_list(&mut list, pa, mk, &p)?;
                    target.insert(k.clone(), Value::Array(list));
                } else if MERGE_SETS.contains(&p.as_str()) {
                    let mut list = match target.remove(k) {
                        Some(Value::Array(a)) => a,
                        _ => Vec::new(),
                    };
                    for item in pa {
                        if !list.contains(item) {
                            list.push(item.clone());
                        }
                    }
                    target.insert(k.clone(), Value::Array(list));
                } else {
                    target.insert(k.clone(), strip_directives(v));
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
    // Directives that refer to sibling fields.
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = target.get_mut(field) {
                list.retain(|x| !remove.contains(x));
            }
        } else if let Some(field) = k.strip_prefix("$setElementOrder/") {
            let order = v.as_array().cloned().unwrap_or_default();
            let mk = merge_key(&join(path, field));
            if let Some(Value::Array(list)) = target.get_mut(field) {
                let pos = |item: &Value| {
                    order.iter().position(|o| match mk {
                        Some(mk) => o.get(mk).is_some() && o.get(mk) == item.get(mk),
                        None => o == item,
                    })
                };
                // Stable: elements the order names come in that order; others keep theirs, after.
                list.sort_by_key(|item| pos(item).unwrap_or(usize::MAX));
            }
        } else if k == "$retainKeys" {
            let keep: Vec<&str> = v
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            target.retain(|k, _| keep.contains(&k.as_str()));
        }
    }
    Ok(())
}

fn strategic_list(
    target: &mut Vec<Value>,
    patch: &[Value],
    mk: &str,
    path: &str,
) -> Result<(), String> {
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *target = patch
            .iter()
            .filter(|e| e.get("$patch").is_none())
            .map(strip_directives)
            .collect();
        return Ok(());
    }
    for e in patch {
        let Value::Object(em) = e else {
            return Err(format!("{path}: list element {e} is not an object"));
        };
        let Some(key) = em.get(mk) else {
            return Err(format!(
                "{path}: map: {e} does not contain declared merge key: {mk}"
            ));
        };
        if em.get("$patch").and_then(Value::as_str) == Some("delete") {
            target.retain(|t| t.get(mk) != Some(key));
            continue;
        }
        match target.iter_mut().find(|t| t.get(mk) == Some(key)) {
            Some(Value::Object(tm)) => strategic_map(tm, em, path)?,
            _ => {
                let mut fresh = Map::new();
                strategic_map(&mut fresh, em, path)?;
                target.push(Value::Object(fresh));
            }
        }
    }
    Ok(())
}
