//! Webhook authentication (TokenReview) and authorization (SubjectAccessReview) against the
//! API server through a `kube::Client`, each behind a bounded TTL cache.
//!
//! Caching follows upstream: token results (valid and invalid alike) for
//! `authentication.webhook.cacheTTL` (2m); allow decisions for `cacheAuthorizedTTL` (5m),
//! deny decisions for `cacheUnauthorizedTTL` (30s). Failed calls are never cached. Tokens are
//! kept in the cache only as SHA-256 digests. Each cache holds at most [`CACHE_ENTRIES`]
//! entries, so a flood of distinct tokens or users cannot grow memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use super::authn::{TokenAuthenticator, User};
use super::authz::{Authorizer, Review, ReviewError, Verdict};
use crate::budget::ReviewBudget;

/// Why a TokenReview or SubjectAccessReview gave no answer (never read as a denial of
/// the credential: the request is refused as a failure).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The API server could not be asked (`review` names TokenReview or SubjectAccessReview).
    #[error("{review}: {source}")]
    Request {
        review: &'static str,
        source: kube::Error,
    },
    #[error("{0}: no status in the answer")]
    NoStatus(&'static str),
}

impl From<WebhookError> for ReviewError {
    fn from(e: WebhookError) -> ReviewError {
        ReviewError::Failed(e.to_string())
    }
}

/// Upper bound on the entries of each cache.
pub const CACHE_ENTRIES: usize = 4096;

/// A map whose entries expire; at most `cap` entries. When full, expired entries are
/// dropped first, then the entry closest to expiry.
pub struct TtlCache<K, V> {
    cap: usize,
    map: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(cap: usize) -> Self {
        TtlCache {
            cap: cap.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, k: &K) -> Option<V> {
        let mut m = self.lock();
        match m.get(k) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                m.remove(k);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, k: K, v: V, ttl: Duration) {
        let now = Instant::now();
        let mut m = self.lock();
        if m.len() >= self.cap && !m.contains_key(&k) {
            m.retain(|_, (_, until)| *until > now);
            if m.len() >= self.cap
                && let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        m.insert(k, (v, now + ttl));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bearer tokens checked with TokenReview.
pub struct WebhookAuthenticator {
    client: kube::Client,
    ttl: Duration,
    cache: TtlCache<[u8; 32], Option<User>>,
    budget: Arc<ReviewBudget>,
}

impl WebhookAuthenticator {
    /// With a review budget of its own; [`Self::with_budget`] shares one.
    pub fn new(client: kube::Client, ttl: Duration) -> Self {
        WebhookAuthenticator {
            client,
            ttl,
            cache: TtlCache::new(CACHE_ENTRIES),
            budget: Arc::new(ReviewBudget::default()),
        }
    }

    /// Draws TokenReviews from `budget` (shared with the SubjectAccessReviews).
    pub fn with_budget(mut self, budget: Arc<ReviewBudget>) -> Self {
        self.budget = budget;
        self
    }

    async fn review(&self, token: &str) -> Result<Option<User>, WebhookError> {
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..Default::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|source| WebhookError::Request {
                review: "TokenReview",
                source,
            })?;
        let Some(status) = answer.status else {
            return Err(WebhookError::NoStatus("TokenReview"));
        };
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        let user = status.user.unwrap_or_default();
        match user.username.filter(|u| !u.is_empty()) {
            Some(name) => Ok(Some(User {
                name,
                groups: user.groups.unwrap_or_default(),
                uid: user.uid.filter(|u| !u.is_empty()),
                extra: user.extra.unwrap_or_default(),
            })),
            None => Ok(None),
        }
    }
}

impl TokenAuthenticator for WebhookAuthenticator {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<User>, ReviewError>> {
        Box::pin(async move {
            let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if let Some(hit) = self.cache.get(&key) {
                return Ok(hit);
            }
            // Held until the review ends, or until the caller hangs up (future dropped).
            let _permit = self.budget.try_acquire().map_err(|_| ReviewError::Busy)?;
            let answer = self.review(token).await?;
            self.cache.insert(key, answer.clone(), self.ttl);
            Ok(answer)
        })
    }
}

/// Authorization with SubjectAccessReview on `nodes/<node>/<subresource>`.
pub struct WebhookAuthorizer {
    client: kube::Client,
    node_name: String,
    allow_ttl: Duration,
    deny_ttl: Duration,
    cache: TtlCache<Review, Verdict>,
    budget: Arc<ReviewBudget>,
}

impl WebhookAuthorizer {
    pub fn new(
        client: kube::Client,
        node_name: String,
        allow_ttl: Duration,
        deny_ttl: Duration,
    ) -> Self {
        WebhookAuthorizer {
            client,
            node_name,
            allow_ttl,
            deny_ttl,
            cache: TtlCache::new(CACHE_ENTRIES),
            budget: Arc::new(ReviewBudget::default()),
        }
    }

    /// Draws SubjectAccessReviews from `budget` (shared with the TokenReviews).
    pub fn with_budget(mut self, budget: Arc<ReviewBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// The SubjectAccessReview sent for `review` (upstream's attributes: group "", version
    /// v1, resource nodes, this node's name, no namespace).
    pub fn request(node_name: &str, review: &Review) -> SubjectAccessReview {
        SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(review.user.clone()),
                groups: Some(review.groups.clone()),
                uid: review.uid.clone(),
                extra: (!review.extra.is_empty()).then(|| review.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(review.subresource.into()),
                    name: Some(node_name.into()),
                    namespace: Some(String::new()),
                    verb: Some(review.verb.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    async fn ask(&self, review: &Review) -> Result<Verdict, WebhookError> {
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api
            .create(
                &PostParams::default(),
                &Self::request(&self.node_name, review),
            )
            .await
            .map_err(|source| WebhookError::Request {
                review: "SubjectAccessReview",
                source,
            })?;
        let status = answer
            .status
            .ok_or(WebhookError::NoStatus("SubjectAccessReview"))?;
        Ok(if status.allowed && status.denied != Some(true) {
            Verdict::Allow("webhook".into())
        } else {
            Verdict::Deny
        })
    }
}

impl Authorizer for WebhookAuthorizer {
    fn authorize<'a>(&'a self, review: &'a Review) -> BoxFuture<'a, Result<Verdict, ReviewError>> {
        Box::pin(async move {
            if let Some(hit) = self.cache.get(review) {
                return Ok(hit);
            }
            let _permit = self.budget.try_acquire().map_err(|_| ReviewError::Busy)?;
            let verdict = self.ask(review).await?;
            let ttl = match verdict {
                Verdict::Allow(_) => self.allow_ttl,
                Verdict::Deny => self.deny_ttl,
            };
            self.cache.insert(review.clone(), verdict.clone(), ttl);
            Ok(verdict)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_expires_and_stays_bounded() {
        let c: TtlCache<u32, u32> = TtlCache::new(3);
        c.insert(1, 10, Duration::from_secs(60));
        c.insert(2, 20, Duration::ZERO);
        assert_eq!(c.get(&1), Some(10));
        assert_eq!(c.get(&2), None, "expired");
        for i in 3..1000 {
            c.insert(i, i, Duration::from_secs(i as u64));
        }
        assert!(c.len() <= 3);
        assert_eq!(c.get(&999), Some(999), "the newest stays");
    }

    #[test]
    fn sar_carries_upstream_attributes() {
        let r = Review {
            user: "alice".into(),
            groups: vec!["g".into()],
            uid: Some("u-1".into()),
            extra: [("scopes".to_string(), vec!["read".to_string()])].into(),
            verb: "get",
            subresource: "pods",
        };
        let sar = WebhookAuthorizer::request("node-1", &r);
        let a = sar.spec.resource_attributes.unwrap();
        assert_eq!(a.resource.as_deref(), Some("nodes"));
        assert_eq!(a.subresource.as_deref(), Some("pods"));
        assert_eq!(a.name.as_deref(), Some("node-1"));
        assert_eq!(a.version.as_deref(), Some("v1"));
        assert_eq!(a.group.as_deref(), Some(""));
        assert_eq!(a.verb.as_deref(), Some("get"));
        assert_eq!(sar.spec.user.as_deref(), Some("alice"));
        assert_eq!(sar.spec.uid.as_deref(), Some("u-1"));
        assert_eq!(sar.spec.extra.unwrap()["scopes"], ["read"]);
    }
}
