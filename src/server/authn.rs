//! Authentication on the kubelet API, in upstream's order: an x509 client certificate (its
//! chain was already verified against `authentication.x509.clientCAFile` during the TLS
//! handshake, which fails for a foreign CA or an expired certificate), then a bearer token
//! checked by a [`TokenAuthenticator`] (TokenReview in cluster mode).
//!
//! There is no anonymous user: no credentials, or credentials that do not check out, are
//! both "not authenticated" (401). Presented-but-invalid credentials are never downgraded.

use futures::future::BoxFuture;
use http::HeaderMap;
use rustls::pki_types::CertificateDer;

pub use super::authz::{ReviewError, User};

/// Every authenticated user is also in this group, as upstream.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Checks bearer tokens. `Ok(None)` means the token is not valid; `Err` means the check
/// itself failed (the request is refused either way, and errors are not cached).
pub trait TokenAuthenticator: Send + Sync {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<User>, ReviewError>>;
}

/// How a request was authenticated (for the audit line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Certificate,
    Token,
}

/// Why a request was not authenticated (for the audit line; never sent to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    NoCredentials,
    /// A bearer token was sent but no token authenticator is configured.
    TokenNotAccepted,
    InvalidToken,
    MalformedHeader,
    CertificateUnreadable,
    WebhookError(String),
    /// The review budget is exhausted (503 with `Retry-After`, not 401).
    Busy,
}

impl Failure {
    pub fn as_str(&self) -> &'static str {
        match self {
            Failure::NoCredentials => "no credentials",
            Failure::TokenNotAccepted => "bearer tokens not accepted (no token authenticator)",
            Failure::InvalidToken => "invalid token",
            Failure::MalformedHeader => "malformed Authorization header",
            Failure::CertificateUnreadable => "client certificate unreadable",
            Failure::WebhookError(_) => "token review failed",
            Failure::Busy => "review budget exhausted",
        }
    }
}

/// The user named by a verified client certificate: CN is the user, each O a group.
/// `None` when the certificate cannot be parsed or has no CN.
pub fn user_from_certificate(cert: &CertificateDer<'_>) -> Option<User> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = x509.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    if name.is_empty() {
        return None;
    }
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    groups.push(AUTHENTICATED_GROUP.into());
    Some(User {
        name,
        groups,
        ..Default::default()
    })
}

/// The bearer token of an `Authorization` header. `Ok(None)` when there is no header;
/// `Err` when there is one that is not a well-formed bearer token (never anonymous).
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, Failure> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Failure::MalformedHeader);
    }
    let v = v.to_str().map_err(|_| Failure::MalformedHeader)?;
    let (scheme, token) = v.split_once(' ').ok_or(Failure::MalformedHeader)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(Failure::MalformedHeader);
    }
    Ok(Some(token))
}

/// Authenticates one request: the connection's certificate user first, then a token.
pub async fn authenticate(
    peer: Option<&Result<User, ()>>,
    headers: &HeaderMap,
    tokens: Option<&dyn TokenAuthenticator>,
) -> Result<(User, Method), Failure> {
    match peer {
        Some(Ok(user)) => return Ok((user.clone(), Method::Certificate)),
        Some(Err(())) => return Err(Failure::CertificateUnreadable),
        None => {}
    }
    let token = bearer_token(headers)?.ok_or(Failure::NoCredentials)?;
    let Some(tokens) = tokens else {
        return Err(Failure::TokenNotAccepted);
    };
    match tokens.authenticate(token).await {
        Ok(Some(mut user)) => {
            if !user.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
                user.groups.push(AUTHENTICATED_GROUP.into());
            }
            Ok((user, Method::Token))
        }
        Ok(None) => Err(Failure::InvalidToken),
        Err(ReviewError::Busy) => Err(Failure::Busy),
        Err(ReviewError::Failed(e)) => Err(Failure::WebhookError(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in v {
            h.append(http::header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer_token(&headers(&[])), Ok(None));
        assert_eq!(bearer_token(&headers(&["Bearer abc"])), Ok(Some("abc")));
        assert_eq!(bearer_token(&headers(&["bearer abc"])), Ok(Some("abc")));
        for bad in [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "abc",
        ] {
            assert_eq!(
                bearer_token(&headers(&[bad])),
                Err(Failure::MalformedHeader),
                "{bad}"
            );
        }
        assert_eq!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(Failure::MalformedHeader)
        );
    }

    #[test]
    fn certificate_subject_gives_user_and_groups() {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "node-operators");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let u = user_from_certificate(cert.der()).unwrap();
        assert_eq!(u.name, "alice");
        assert_eq!(u.groups, ["node-operators", AUTHENTICATED_GROUP]);
        assert!(user_from_certificate(&CertificateDer::from(vec![1, 2, 3])).is_none());
    }
}
