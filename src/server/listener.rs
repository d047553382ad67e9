//! The secure listener: TCP accept, rustls handshake (client certificates verified against
//! the client CA, optional so bearer tokens work), then HTTP/1.1 with upgrades.
//!
//! Limits (all constants in [`Limits`]):
//! - at most `max_connections` connections at once, and at most `max_per_source` from one
//!   IP address; more are closed at accept;
//! - `reserved_for_client_certs` more slots are kept for peers with a client certificate
//!   (the API server's, for logs, exec and metrics): a connection that gets one of these
//!   and completes its handshake without a certificate is closed, so a flood of
//!   token-less or anonymous connections cannot lock the API server out;
//! - the ClientHello must arrive whole within `hello_timeout` (2 s) and the whole handshake
//!   must finish within `handshake_timeout` (3 s) of accept, and at most
//!   `max_handshakes_per_source` handshakes from one IP address may be unfinished at once:
//!   a peer's certificate is known only when its handshake ends, so every peer is held to
//!   the deadline of one that has none (SECURITY.md, denial of service);
//! - the request head must arrive within its timeout;
//! - request heads larger than `max_header_bytes` are refused by hyper (431);
//! - a connection with no byte moving either way for `idle_timeout` is closed; streaming
//!   requests raise that to `streamingConnectionIdleTimeout`;
//! - HTTP/2 is not offered (ALPN `http/1.1` only), so HTTP/2 rapid reset does not apply.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_rustls::LazyConfigAcceptor;

use super::api::{self, Api, Conn};
use super::authn;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_source: usize,
    pub reserved_for_client_certs: usize,
    /// Unfinished TLS handshakes one IP address may have at once; more are closed at accept.
    pub max_handshakes_per_source: usize,
    /// From accept until the whole ClientHello has arrived.
    pub hello_timeout: Duration,
    /// From accept until the handshake is done (the ClientHello's time included).
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            max_per_source: 64,
            reserved_for_client_certs: 64,
            max_handshakes_per_source: 16,
            hello_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(3),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// One connection's share of its source's count; dropping it gives the share back.
struct SourceSlot {
    counts: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl SourceSlot {
    fn take(
        counts: &Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        max: usize,
    ) -> Option<SourceSlot> {
        let mut m = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            counts: Arc::clone(counts),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// An I/O stream that fails once nothing has moved for the (adjustable) idle timeout.
pub struct IdleIo<T> {
    inner: T,
    timeout_ms: Arc<AtomicU64>,
    last: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, timeout_ms: Arc<AtomicU64>) -> Self {
        let now = Instant::now();
        let mut io = IdleIo {
            inner,
            timeout_ms,
            last: now,
            sleep: Box::pin(tokio::time::sleep_until(now)),
        };
        io.touch();
        io
    }

    fn deadline(&self) -> Instant {
        let d = Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed));
        self.last
            .checked_add(d)
            .unwrap_or_else(|| self.last + Duration::from_secs(86400 * 365))
    }

    fn touch(&mut self) {
        self.last = Instant::now();
        let deadline = self.deadline();
        self.sleep.as_mut().reset(deadline);
    }

    /// True once the idle deadline (from the last activity, with the current timeout)
    /// has passed; otherwise the timer is armed to wake the task.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        let deadline = self.deadline();
        if deadline <= Instant::now() {
            return true;
        }
        // The timeout was raised after the timer was armed.
        self.sleep.as_mut().reset(deadline);
        self.sleep.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle")
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                self.touch();
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.touch();
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Limits {
    /// The healthz listener's limits: the same code and the same kinds of limit as
    /// 10250, sized for a local prober (plain HTTP, no reserved slots: there are no
    /// certificates).
    pub fn healthz() -> Limits {
        Limits {
            max_connections: 64,
            max_per_source: 64,
            reserved_for_client_certs: 0,
            max_handshakes_per_source: 0,
            hello_timeout: Duration::ZERO,
            handshake_timeout: Duration::ZERO,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
        }
    }

    fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(self.max_header_bytes.max(8192))
            .keep_alive(true);
        builder
    }
}

/// Serves a plain-HTTP router (healthz) on `listener` with `limits`: the same accept
/// loop, caps, header and idle timeouts as 10250, minus TLS.
pub async fn serve_plain(listener: TcpListener, router: axum::Router, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let sources = Arc::new(std::sync::Mutex::new(HashMap::new()));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "healthz accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(source) = SourceSlot::take(&sources, peer.ip(), limits.max_per_source) else {
            continue;
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let router = router.clone();
        let builder = limits.http1();
        let idle_ms = Arc::new(AtomicU64::new(
            u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(u64::MAX),
        ));
        tokio::spawn(async move {
            let _slots = (permit, source);
            let io = IdleIo::new(tcp, idle_ms);
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                use tower::ServiceExt;
                router.clone().oneshot(req)
            });
            if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
                tracing::debug!(%peer, error = %e, "healthz connection ended with an error");
            }
        });
    }
}

/// Serves the API on `listener` until the future is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    api: Arc<Api>,
    limits: Limits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let reserved = Arc::new(Semaphore::new(limits.reserved_for_client_certs));
    let sources = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let handshakes = Arc::new(std::sync::Mutex::new(HashMap::new()));
    // Closes the audit log's noise window even when no request comes.
    let mut noise_tick = tokio::time::interval(super::audit::NOISE_INTERVAL);
    noise_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = noise_tick.tick() => {
                api.audit.tick();
                continue;
            }
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(source) = SourceSlot::take(&sources, peer.ip(), limits.max_per_source) else {
            tracing::debug!(%peer, "per-source connection limit reached; connection closed");
            drop(tcp);
            continue;
        };
        let Some(handshake) =
            SourceSlot::take(&handshakes, peer.ip(), limits.max_handshakes_per_source)
        else {
            tracing::debug!(%peer, "per-source handshake limit reached; connection closed");
            drop(tcp);
            continue;
        };
        let (permit, needs_cert) = match Arc::clone(&slots).try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match Arc::clone(&reserved).try_acquire_owned() {
                Ok(p) => (p, true),
                Err(_) => {
                    tracing::debug!(%peer, "connection limit reached; connection closed");
                    drop(tcp);
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let tls = Arc::clone(&tls);
        let api = Arc::clone(&api);
        let limits = limits.clone();
        tokio::spawn(async move {
            let _slots = (permit, source);
            serve_connection(tcp, peer, tls, handshake, api, limits, needs_cert).await;
        });
    }
}

/// The TLS handshake under its two deadlines: the ClientHello within `hello_timeout`, the
/// rest by `handshake_timeout` after accept. `None` when it failed (recorded as noise) or
/// ran out of time.
async fn handshake<IO>(
    io: IO,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    api: &Api,
    limits: &Limits,
) -> Option<tokio_rustls::server::TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + limits.handshake_timeout;
    let failed = |e: std::io::Error| {
        api.audit.write_noise(super::audit::Event::Handshake {
            peer: peer.to_string(),
            error: super::audit::bound(&e.to_string(), super::audit::MAX_FIELD),
        });
    };
    let hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = match tokio::time::timeout(
        limits.hello_timeout.min(limits.handshake_timeout),
        hello,
    )
    .await
    {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            failed(e);
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "no whole ClientHello within the deadline; connection closed");
            return None;
        }
    };
    match tokio::time::timeout_at(deadline, start.into_stream(config)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            failed(e);
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    handshake_slot: SourceSlot,
    api: Arc<Api>,
    limits: Limits,
    needs_cert: bool,
) {
    let idle_ms = Arc::new(AtomicU64::new(
        u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(u64::MAX),
    ));
    let io = IdleIo::new(tcp, Arc::clone(&idle_ms));
    let tls = handshake(io, peer, config, &api, &limits).await;
    // The handshake is over, either way: the source may start another.
    drop(handshake_slot);
    let Some(tls) = tls else { return };
    let peer_user = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| authn::user_from_certificate(c).ok_or(()));
    if needs_cert && !matches!(peer_user, Some(Ok(_))) {
        // A reserved slot is for a verified client certificate only.
        api.audit.write_noise(super::audit::Event::Handshake {
            peer: peer.to_string(),
            error: "reserved connection slot without a client certificate".into(),
        });
        return;
    }
    let conn = Conn {
        peer: peer_user,
        idle_timeout_ms: idle_ms,
        peer_addr: Some(peer),
    };
    let service = service_fn(move |req| {
        let api = Arc::clone(&api);
        let conn = conn.clone();
        async move { Ok::<_, std::convert::Infallible>(api::handle(api, conn, req).await) }
    });
    if let Err(e) = limits
        .http1()
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
