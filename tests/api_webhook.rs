//! Webhook authentication (TokenReview) and authorization (SubjectAccessReview) of the
//! kubelet API against the fake API server (real HTTPS, the real kube client): the token
//! rows of the matrix, the SubjectAccessReview attributes (upstream's mapping, fine-grained
//! checks falling back to proxy), caching with its TTLs, and failures that never allow.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "api_support/mod.rs"]
mod api_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use api_support::*;
use ironlet::server::webhook::{WebhookAuthenticator, WebhookAuthorizer};
use serde_json::Value;
use support::fakeapi::{AccessRule, FailRule, FakeApi, Identity};

const GOOD: &str = "token-good-admin";
const DENIED: &str = "token-good-nobody";
const PODS_ONLY: &str = "token-pods-reader";
const PROXY_ONLY: &str = "token-proxy-user";

struct Setup {
    fake: FakeApi,
    server: Server,
    pki: Pki,
}

async fn setup(authn_ttl: Duration, allow_ttl: Duration, deny_ttl: Duration) -> Setup {
    let fake = FakeApi::start();
    fake.add_token(GOOD, "admin", &["ops"]);
    fake.add_token(DENIED, "nobody", &[]);
    fake.add_token(PODS_ONLY, "pods-reader", &[]);
    fake.add_token(PROXY_ONLY, "proxy-user", &[]);
    fake.set_access_rules(vec![
        AccessRule::allow("admins may")
            .user("admin")
            .resource("nodes"),
        AccessRule::allow("pods reader")
            .user("pods-reader")
            .resource("nodes")
            .subresource("pods")
            .verb("get"),
        AccessRule::allow("proxy user")
            .user("proxy-user")
            .resource("nodes")
            .subresource("proxy"),
    ]);
    // The kubelet's own client: its node identity.
    let client = fake.client(&Identity::node("node-1")).await;
    let pki = Pki::new();
    let server = serve(
        &pki,
        ServerOptions {
            token_authenticator: Some(Arc::new(WebhookAuthenticator::new(
                client.clone(),
                authn_ttl,
            ))),
            authorizer: Some(Arc::new(WebhookAuthorizer::new(
                client,
                "node-1".into(),
                allow_ttl,
                deny_ttl,
            ))),
            ..Default::default()
        },
    )
    .await;
    Setup { fake, server, pki }
}

async fn with_token(s: &Setup, token: &str, method: &str, path: &str) -> u16 {
    let h = format!("Authorization: Bearer {token}\r\n");
    request(s.server.port, &s.pki, Cred::None, method, path, &h, "")
        .await
        .unwrap()
        .status
}

fn attrs(sar: &Value) -> (String, String, String, String, String, Vec<String>) {
    let spec = &sar["spec"];
    let ra = &spec["resourceAttributes"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&ra["verb"]),
        s(&ra["resource"]),
        s(&ra["subresource"]),
        s(&ra["name"]),
        s(&spec["user"]),
        spec["groups"]
            .as_array()
            .map(|g| {
                g.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_rows_of_the_matrix_through_the_api_server() {
    let s = setup(
        Duration::from_secs(120),
        Duration::from_secs(300),
        Duration::from_secs(30),
    )
    .await;
    let mut failures = Vec::new();
    let mut n = 0;
    for (path, methods, status) in ROUTES {
        for method in METHODS {
            for (token, want) in [
                ("not-a-token", 401),
                (DENIED, if method == "OPTIONS" { 405 } else { 403 }),
                (
                    GOOD,
                    if method == "OPTIONS" {
                        405
                    } else if methods.is_empty() || methods.contains(&method) {
                        *status
                    } else {
                        405
                    },
                ),
            ] {
                let got = with_token(&s, token, method, path).await;
                n += 1;
                if got != want {
                    failures.push(format!("{method} {path} {token}: want {want}, got {got}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Caching: three distinct tokens (one invalid) were presented over and over, each
    // reviewed once (the cache TTL is 2m; invalid answers are cached too, as upstream).
    assert_eq!(s.fake.token_reviews().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_access_reviews_carry_upstream_attributes_and_fall_back_to_proxy() {
    let s = setup(
        Duration::from_secs(120),
        Duration::from_secs(300),
        Duration::from_secs(30),
    )
    .await;
    // pods-reader: /pods allowed by the fine-grained `pods` check alone.
    assert_eq!(with_token(&s, PODS_ONLY, "GET", "/pods").await, 200);
    let sars = s.fake.access_reviews();
    assert_eq!(sars.len(), 1);
    let (verb, resource, sub, name, user, groups) = attrs(&sars[0]);
    assert_eq!(
        (
            verb.as_str(),
            resource.as_str(),
            sub.as_str(),
            name.as_str(),
            user.as_str()
        ),
        ("get", "nodes", "pods", "node-1", "pods-reader")
    );
    assert!(
        groups.contains(&"system:authenticated".to_string()),
        "{groups:?}"
    );
    assert_eq!(sars[0]["spec"]["resourceAttributes"]["version"], "v1");
    // ... but not exec (proxy), after asking for `proxy`.
    assert_eq!(
        with_token(&s, PODS_ONLY, "POST", "/exec/ns/p/c?command=id&stdout=1").await,
        403
    );
    let last = attrs(s.fake.access_reviews().last().unwrap());
    assert_eq!((last.0.as_str(), last.2.as_str()), ("create", "proxy"));
    // proxy-user: /pods, /healthz and /configz via the fallback; the fine-grained check
    // comes first each time, and the `proxy` allow is cached after its first answer.
    for (path, asked) in [
        ("/pods", &["pods", "proxy"][..]),
        ("/healthz", &["healthz"][..]),
        ("/configz", &["configz"][..]),
    ] {
        let before = s.fake.access_reviews().len();
        assert_eq!(with_token(&s, PROXY_ONLY, "GET", path).await, 200, "{path}");
        let new: Vec<String> = s.fake.access_reviews()[before..]
            .iter()
            .map(|v| attrs(v).2)
            .collect();
        assert_eq!(new, asked, "{path}");
    }
    // Methods map to verbs; /metrics and /logs map to their own subresources.
    for (method, path, verb, sub) in [
        ("PUT", "/metrics", "update", "metrics"),
        ("PATCH", "/logs/x", "patch", "log"),
        ("DELETE", "/stats/summary", "delete", "stats"),
        ("POST", "/checkpoint/a/b/c", "create", "checkpoint"),
        ("HEAD", "/spec/", "get", "proxy"),
    ] {
        let before = s.fake.access_reviews().len();
        assert_eq!(with_token(&s, DENIED, method, path).await, 403);
        let a = attrs(&s.fake.access_reviews()[before]);
        assert_eq!(
            (a.0.as_str(), a.2.as_str(), a.4.as_str()),
            (verb, sub, "nobody"),
            "{method} {path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_and_tokens_are_cached_for_their_ttls() {
    let s = setup(
        Duration::from_secs(2),
        Duration::from_secs(4),
        Duration::from_secs(2),
    )
    .await;
    for _ in 0..5 {
        assert_eq!(with_token(&s, GOOD, "GET", "/metrics").await, 200);
        assert_eq!(with_token(&s, DENIED, "GET", "/metrics").await, 403);
    }
    assert_eq!(s.fake.token_reviews().len(), 2, "one TokenReview per token");
    assert_eq!(
        s.fake.access_reviews().len(),
        2,
        "one SAR per (user, verb, subresource)"
    );
    // After the deny TTL (2s), the deny is asked again; the allow (4s) is still cached.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(with_token(&s, GOOD, "GET", "/metrics").await, 200);
    assert_eq!(with_token(&s, DENIED, "GET", "/metrics").await, 403);
    assert_eq!(
        s.fake.token_reviews().len(),
        4,
        "token cache expired after 2s"
    );
    let users: Vec<String> = s.fake.access_reviews()[2..]
        .iter()
        .map(|v| attrs(v).4)
        .collect();
    assert_eq!(users, ["nobody"], "only the deny was asked again");
    // A revoked token keeps working only until its cache entry expires.
    s.fake.remove_token(GOOD);
    assert_eq!(with_token(&s, GOOD, "GET", "/metrics").await, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(with_token(&s, GOOD, "GET", "/metrics").await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_failures_never_allow_and_are_not_cached() {
    let s = setup(
        Duration::from_secs(120),
        Duration::from_secs(300),
        Duration::from_secs(30),
    )
    .await;
    // TokenReview fails: 401 (never anonymous), and the failure is not cached.
    s.fake.fail_matching(FailRule {
        method: None,
        path_contains: Some("tokenreviews".into()),
        code: 500,
        remaining: Some(1),
    });
    assert_eq!(with_token(&s, GOOD, "GET", "/pods").await, 401);
    assert_eq!(with_token(&s, GOOD, "GET", "/pods").await, 200);
    // SubjectAccessReview fails: 500 with a fixed body, then works.
    s.fake.fail_matching(FailRule {
        method: None,
        path_contains: Some("subjectaccessreviews".into()),
        code: 500,
        remaining: Some(2),
    });
    let h = format!("Authorization: Bearer {GOOD}\r\n");
    let a = request(s.server.port, &s.pki, Cred::None, "GET", "/configz", &h, "")
        .await
        .unwrap();
    assert_eq!(
        (a.status, a.body.as_slice()),
        (500, &b"Internal Server Error\n"[..])
    );
    assert_eq!(with_token(&s, GOOD, "GET", "/configz").await, 200);
    // The API server away: nothing is allowed that is not already cached.
    s.fake.set_outage(true);
    assert_eq!(with_token(&s, PODS_ONLY, "GET", "/pods").await, 401);
    s.fake.set_outage(false);
}
