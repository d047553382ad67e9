//! The healthz listener: plain HTTP on healthzBindAddress:healthzPort (upstream default
//! 127.0.0.1:10248), serving `/healthz` and its upstream sub-checks only. It reveals nothing
//! but health, so it needs no authentication; it must not grow other routes.
//!
//! It is served by the same accept loop and HTTP/1.1 stack as 10250
//! (`listener::serve_plain`): a connection cap, a request-head timeout and an idle
//! timeout (`listener::Limits::healthz`). Its address must be loopback (a startup
//! error otherwise).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::pleg::PlegHealth;

#[derive(Clone)]
struct Health {
    pleg: Arc<PlegHealth>,
    started: Instant,
}

async fn ping() -> (StatusCode, &'static str) {
    (StatusCode::OK, "ok")
}

/// Upstream's syncloop check, answered by the PLEG: the loop that drives every pod sync.
async fn syncloop(State(h): State<Health>) -> (StatusCode, String) {
    if h.pleg.healthy(h.started) {
        (StatusCode::OK, "ok".into())
    } else {
        let r = h.pleg.report(h.started);
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "[-]syncloop failed: PLEG is not healthy: last relist at unix {:?}; threshold is {}s\n",
                r.last_relist_unix,
                crate::pleg::UNHEALTHY_AFTER.as_secs()
            ),
        )
    }
}

pub fn router(pleg: Arc<PlegHealth>, started: Instant) -> Router {
    Router::new()
        .route("/healthz", get(syncloop))
        .route("/healthz/ping", get(ping))
        .route("/healthz/log", get(ping))
        .route("/healthz/syncloop", get(syncloop))
        .with_state(Health { pleg, started })
}

/// Binds the listener; the returned future serves until dropped.
pub async fn bind(
    addr: SocketAddr,
    pleg: Arc<PlegHealth>,
    started: Instant,
) -> std::io::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "healthz listening");
    let router = router(pleg, started);
    Ok(async move {
        super::listener::serve_plain(listener, router, super::listener::Limits::healthz()).await;
        Ok(())
    })
}
