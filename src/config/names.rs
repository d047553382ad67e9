//! Kubernetes name rules (RFC 1123 as upstream applies them): DNS-1123 labels and subdomains.
//! Shared by node-name validation here and by the static pod parser. Pure functions only.

const LABEL_MAX: usize = 63;
const SUBDOMAIN_MAX: usize = 253;

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, with no length limit (the callers apply their own).
fn is_label_shaped(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|&b| alnum(b) || b == b'-')
        }
        _ => false,
    }
}

/// A DNS-1123 label: at most 63 characters, lower-case alphanumerics or '-', starting and
/// ending with an alphanumeric. The error is a problem description without the value.
pub fn validate_dns1123_label(s: &str) -> Result<(), String> {
    if s.len() > LABEL_MAX {
        return Err(format!("must be no more than {LABEL_MAX} characters"));
    }
    if !is_label_shaped(s) {
        return Err(
            "must be a lower-case RFC 1123 label: lower-case alphanumeric characters or '-', \
             starting and ending with an alphanumeric character (e.g. 'my-name' or '123-abc')"
                .to_owned(),
        );
    }
    Ok(())
}

/// A DNS-1123 subdomain: at most 253 characters of dot-separated label-shaped parts.
/// As upstream, the parts themselves are not limited to 63 characters.
pub fn validate_dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > SUBDOMAIN_MAX {
        return Err(format!("must be no more than {SUBDOMAIN_MAX} characters"));
    }
    if !s.split('.').all(is_label_shaped) {
        return Err(
            "must be a lower-case RFC 1123 subdomain: lower-case alphanumeric characters, \
             '-' or '.', starting and ending with an alphanumeric character (e.g. 'example.com')"
                .to_owned(),
        );
    }
    Ok(())
}

/// Label key namespaces and keys a kubelet may set on its own Node (k8s.io/kubelet/pkg/apis
/// KubeletLabelNamespaces and KubeletLabels); NodeRestriction refuses the rest.
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "kubernetes.io/os",
    "kubernetes.io/arch",
];

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters (a qualified name's
/// name part and a label value).
fn is_label_value_shaped(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    let b = s.as_bytes();
    b.len() <= LABEL_MAX
        && match (b.first(), b.last()) {
            (Some(&f), Some(&l)) => {
                alnum(f)
                    && alnum(l)
                    && b.iter()
                        .all(|&c| alnum(c) || matches!(c, b'-' | b'_' | b'.'))
            }
            _ => false,
        }
}

/// A `--node-labels` entry, as upstream's ValidateKubeletFlags: the key is a qualified name,
/// the value a label value, and a key in the kubernetes.io or k8s.io namespaces must be one
/// a kubelet may set (NodeRestriction would refuse the Node otherwise).
pub fn validate_node_label(key: &str, value: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if !is_label_value_shaped(name)
        || prefix.is_some_and(|p| validate_dns1123_subdomain(p).is_err())
    {
        return Err(format!(
            "invalid node label key {key:?}: must be a qualified name ([prefix/]name, name of at most 63 alphanumerics, '-', '_' or '.')"
        ));
    }
    if !value.is_empty() && !is_label_value_shaped(value) {
        return Err(format!(
            "invalid node label value {value:?} for {key:?}: at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ));
    }
    let k8s_namespace = prefix.is_some_and(|p| {
        ["kubernetes.io", "k8s.io"]
            .iter()
            .any(|ns| p == *ns || p.ends_with(&format!(".{ns}")))
    });
    let kubelet_label = KUBELET_LABELS.contains(&key)
        || prefix.is_some_and(|p| {
            KUBELET_LABEL_NAMESPACES
                .iter()
                .any(|ns| p == *ns || p.ends_with(&format!(".{ns}")))
        });
    if k8s_namespace && !kubelet_label {
        return Err(format!(
            "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [{key}]\n--node-labels in the 'kubernetes.io' namespace must begin with an allowed prefix ({}) or be in the specifically allowed set ({})",
            KUBELET_LABEL_NAMESPACES.join(", "),
            KUBELET_LABELS.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "0", "my-name", "123-abc", "a--b", &"a".repeat(63)] {
            assert_eq!(validate_dns1123_label(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a.b",
            "a_b",
            "ä",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(validate_dns1123_label(bad).is_err(), "{bad:?}");
        }
        let long = validate_dns1123_label(&"a".repeat(64)).unwrap_err();
        assert!(long.contains("63"), "{long}");
    }

    #[test]
    fn subdomains() {
        let long_part = "a".repeat(100);
        for ok in [
            "a",
            "node-1",
            "node-1.example.com",
            "1.2.3.4",
            long_part.as_str(),
        ] {
            assert_eq!(validate_dns1123_subdomain(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", ".", "a.", ".a", "a..b", "a.-b", "A.b", "a_b.c", "node 1", "a.b\n",
        ] {
            assert!(validate_dns1123_subdomain(bad).is_err(), "{bad:?}");
        }
        let at_limit = format!("{}.{}", "a".repeat(126), "b".repeat(126));
        assert_eq!(validate_dns1123_subdomain(&at_limit), Ok(()));
        let over = validate_dns1123_subdomain(&format!("{at_limit}c")).unwrap_err();
        assert!(over.contains("253"), "{over}");
    }
}
