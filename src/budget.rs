//! Request budgets toward the API server, so that no one kind of traffic can starve another.
//!
//! - **Heartbeat** (the node's Lease and its Node object and status) has a bucket of its own
//!   ([`HEARTBEAT_QPS`], [`HEARTBEAT_BURST`]) that no other request can draw from: a flood
//!   of anything else cannot delay the lease past its duration.
//! - **Reviews** (TokenReview, SubjectAccessReview, made on behalf of kubelet API callers)
//!   are bounded before they are made, by a [`ReviewBudget`]: a token bucket
//!   ([`REVIEW_QPS`], [`REVIEW_BURST`]) and a cap on reviews in flight
//!   ([`REVIEW_IN_FLIGHT`]). When either is exhausted the caller fails at once (the server
//!   answers 503 with `Retry-After`); nothing queues. They do not draw from the general
//!   bucket.
//! - **Everything else** (pods watch, pod status, events, mirror pods) shares the
//!   `kubeAPIQPS`/`kubeAPIBurst` bucket.
//!
//! No bucket goes into debt: a token is taken only when one is there, and a waiter takes
//! nothing while it waits, so a caller that goes away (its future dropped) leaves nothing
//! reserved. A review's in-flight slot is held by its permit and freed when the permit is
//! dropped, including when the kubelet API client hung up mid-review.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub const HEARTBEAT_QPS: f64 = 5.0;
pub const HEARTBEAT_BURST: u32 = 20;
pub const REVIEW_QPS: f64 = 20.0;
pub const REVIEW_BURST: u32 = 100;
pub const REVIEW_IN_FLIGHT: usize = 16;
/// The `Retry-After` (seconds) of a request refused for want of review budget.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A token bucket that never goes into debt: `burst` tokens at most, refilled at `qps`.
#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            qps: if qps > 0.0 { qps } else { 1.0 },
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token if one is there; otherwise takes nothing and says how long until one
    /// will be.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *state;
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.qps).min(self.burst);
        *last = now.max(*last);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.qps))
        }
    }

    /// Waits until a token can be taken, and takes it. Dropping the future takes nothing.
    pub async fn acquire(&self) {
        loop {
            match self.try_take(Instant::now()) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
        }
    }

    /// Tokens available now (for tests and metrics).
    pub fn available(&self, now: Instant) -> f64 {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(state.1).as_secs_f64();
        (state.0 + elapsed * self.qps).min(self.burst)
    }
}

/// Which budget a request to the API server draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Heartbeat,
    Review,
    Other,
}

/// Classifies a request by its path: the node's own Lease (`kube-node-lease`) and a named
/// Node (`/api/v1/nodes/<name>`, its status included) are heartbeat; the two review kinds
/// are reviews; everything else, node lists included, is other.
pub fn classify(path: &str) -> Class {
    if path.starts_with("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/") {
        return Class::Heartbeat;
    }
    if let Some(rest) = path.strip_prefix("/api/v1/nodes/") {
        let mut segs = rest.split('/');
        let name = segs.next().unwrap_or("");
        let sub = segs.next();
        if !name.is_empty() && matches!(sub, None | Some("status")) && segs.next().is_none() {
            return Class::Heartbeat;
        }
    }
    if path == "/apis/authentication.k8s.io/v1/tokenreviews"
        || path == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    {
        return Class::Review;
    }
    Class::Other
}

/// The budgets of one API client, as a tower layer under the kube client.
#[derive(Clone, Debug)]
pub struct BudgetLayer {
    heartbeat: Arc<TokenBucket>,
    other: Arc<TokenBucket>,
}

impl BudgetLayer {
    /// `qps`/`burst` are kubeAPIQPS/kubeAPIBurst, for the general bucket.
    pub fn new(qps: f64, burst: u32) -> Self {
        BudgetLayer {
            heartbeat: Arc::new(TokenBucket::new(HEARTBEAT_QPS, HEARTBEAT_BURST)),
            other: Arc::new(TokenBucket::new(qps, burst)),
        }
    }
}

impl<S> tower::Layer<S> for BudgetLayer {
    type Service = Budgeted<S>;
    fn layer(&self, inner: S) -> Budgeted<S> {
        Budgeted {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Budgeted<S> {
    inner: S,
    layer: BudgetLayer,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Budgeted<S>
where
    S: tower::Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The clone that was polled ready goes with the request (tower's usual pattern).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let bucket = match classify(req.uri().path()) {
            Class::Heartbeat => Some(self.layer.heartbeat.clone()),
            // Bounded before the call by the ReviewBudget of the kubelet API.
            Class::Review => None,
            Class::Other => Some(self.layer.other.clone()),
        };
        Box::pin(async move {
            if let Some(b) = bucket {
                b.acquire().await;
            }
            inner.call(req).await
        })
    }
}

/// The budget of TokenReviews and SubjectAccessReviews made for kubelet API callers.
#[derive(Debug)]
pub struct ReviewBudget {
    bucket: TokenBucket,
    in_flight: Arc<Semaphore>,
}

/// Held for the duration of one review; dropping it frees the in-flight slot.
#[derive(Debug)]
pub struct ReviewPermit {
    _slot: OwnedSemaphorePermit,
}

/// The review budget is exhausted: the caller is refused at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("review budget exhausted")]
pub struct Busy;

impl Default for ReviewBudget {
    fn default() -> Self {
        ReviewBudget::new(REVIEW_QPS, REVIEW_BURST, REVIEW_IN_FLIGHT)
    }
}

impl ReviewBudget {
    pub fn new(qps: f64, burst: u32, in_flight: usize) -> Self {
        ReviewBudget {
            bucket: TokenBucket::new(qps, burst),
            in_flight: Arc::new(Semaphore::new(in_flight.max(1))),
        }
    }

    /// A permit for one review, or [`Busy`]. A token is taken only when a slot is free.
    pub fn try_acquire(&self) -> Result<ReviewPermit, Busy> {
        let slot = Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        self.bucket.try_take(Instant::now()).map_err(|_| Busy)?;
        Ok(ReviewPermit { _slot: slot })
    }

    /// Reviews in flight now.
    pub fn in_flight(&self, cap: usize) -> usize {
        cap.saturating_sub(self.in_flight.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_take_only_what_is_there() {
        let b = TokenBucket::new(10.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        // Empty: refused, and the refusal takes nothing (no debt).
        for _ in 0..1000 {
            assert!(b.try_take(t0).is_err());
        }
        let wait = b.try_take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        // A tenth of a second later exactly one token is back, not minus a thousand.
        let later = t0 + Duration::from_millis(100);
        assert_eq!(b.try_take(later), Ok(()));
        assert!(b.try_take(later).is_err());
        // Refill is capped at the burst.
        let much_later = t0 + Duration::from_secs(60);
        assert!((b.available(much_later) - 3.0).abs() < 1e-9);
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_nothing_reserved() {
        let b = Arc::new(TokenBucket::new(1.0, 1));
        b.acquire().await;
        // Many waiters give up; none of them holds a token afterwards.
        for _ in 0..100 {
            let b = b.clone();
            let _ =
                tokio::time::timeout(Duration::from_millis(1), async move { b.acquire().await })
                    .await;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(b.try_take(Instant::now()), Ok(()));
    }

    #[test]
    fn heartbeat_and_reviews_are_told_apart() {
        for p in [
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1",
            "/api/v1/nodes/node-1",
            "/api/v1/nodes/node-1/status",
        ] {
            assert_eq!(classify(p), Class::Heartbeat, "{p}");
        }
        for p in [
            "/apis/authentication.k8s.io/v1/tokenreviews",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        ] {
            assert_eq!(classify(p), Class::Review, "{p}");
        }
        for p in [
            "/api/v1/nodes",
            "/api/v1/nodes/node-1/proxy",
            "/api/v1/pods",
            "/api/v1/namespaces/default/pods/p/status",
            "/api/v1/namespaces/default/events",
            "/apis/coordination.k8s.io/v1/namespaces/other/leases/x",
        ] {
            assert_eq!(classify(p), Class::Other, "{p}");
        }
    }

    #[test]
    fn reviews_fail_fast_past_the_budget_and_the_in_flight_cap() {
        let budget = ReviewBudget::new(1.0, 5, 2);
        let a = budget.try_acquire().unwrap();
        let b = budget.try_acquire().unwrap();
        assert_eq!(budget.try_acquire().err(), Some(Busy), "in-flight cap");
        assert_eq!(budget.in_flight(2), 2);
        drop(a);
        let c = budget.try_acquire().unwrap();
        drop((b, c));
        // Two of five tokens left; then refused, with nothing taken by the refusals.
        assert!(budget.try_acquire().is_ok());
        assert!(budget.try_acquire().is_ok());
        assert_eq!(budget.try_acquire().err(), Some(Busy), "token budget");
        assert_eq!(budget.in_flight(2), 0);
    }
}
