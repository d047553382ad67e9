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
