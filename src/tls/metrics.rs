//! Certificate metrics under upstream's names, encoded into the 10250 `/metrics` page:
//!
//! - `kubelet_certificate_manager_client_ttl_seconds`, `..._server_ttl_seconds`: seconds
//!   until the current certificate expires (negative once expired), at scrape time;
//! - `kubelet_certificate_manager_client_expiration_renew_errors`,
//!   `kubelet_server_expiration_renew_errors`: failed renewals;
//! - `kubelet_certificate_manager_server_rotation_seconds`: how long each replaced serving
//!   certificate had lived.
//!
//! Also the node's own API responses by class, which the rotation drill reads (a rotation
//! must never cost a 401).

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::SystemTime;

use rustls::pki_types::CertificateDer;

use super::profile::IdentityKind;

static CLIENT_NOT_AFTER: AtomicI64 = AtomicI64::new(i64::MIN);
static SERVER_NOT_AFTER: AtomicI64 = AtomicI64::new(i64::MIN);
static CLIENT_RENEW_ERRORS: AtomicU64 = AtomicU64::new(0);
static SERVER_RENEW_ERRORS: AtomicU64 = AtomicU64::new(0);
/// Upstream's buckets for the rotation histogram (10 minutes to ~4 years).
const ROTATION_BUCKETS: [f64; 11] = [
    600.0,
    1800.0,
    3600.0,
    14400.0,
    86400.0,
    604800.0,
    2592000.0,
    7776000.0,
    15552000.0,
    31104000.0,
    124416000.0,
];
/// (cumulative bucket counts, count, sum)
static SERVER_ROTATION: Mutex<([u64; 11], u64, f64)> = Mutex::new(([0; 11], 0, 0.0));
static API_RESPONSES: AtomicU64 = AtomicU64::new(0);
static API_UNAUTHORIZED: AtomicU64 = AtomicU64::new(0);

fn not_after(kind: IdentityKind) -> &'static AtomicI64 {
    match kind {
        IdentityKind::Client => &CLIENT_NOT_AFTER,
        IdentityKind::Serving => &SERVER_NOT_AFTER,
    }
}

pub fn set_not_after(kind: IdentityKind, unix: i64) {
    not_after(kind).store(unix, Ordering::Relaxed);
}

/// From a chain (leaf first), or cleared when there is none.
pub fn set_ttl_from_chain(kind: IdentityKind, chain: Option<&[CertificateDer<'static>]>) {
    let na = chain
        .and_then(|c| c.first())
        .and_then(|c| super::validate::inspect(c).ok())
        .map_or(i64::MIN, |i| i.not_after);
    set_not_after(kind, na);
}

pub fn renew_error(kind: IdentityKind) {
    match kind {
        IdentityKind::Client => &CLIENT_RENEW_ERRORS,
        IdentityKind::Serving => &SERVER_RENEW_ERRORS,
    }
    .fetch_add(1, Ordering::Relaxed);
}

pub fn renew_errors(kind: IdentityKind) -> u64 {
    match kind {
        IdentityKind::Client => &CLIENT_RENEW_ERRORS,
        IdentityKind::Serving => &SERVER_RENEW_ERRORS,
    }
    .load(Ordering::Relaxed)
}

/// A serving certificate that lived `secs` was replaced.
pub fn server_rotated(secs: f64) {
    let mut h = SERVER_ROTATION.lock().unwrap_or_else(|p| p.into_inner());
    for (b, le) in h.0.iter_mut().zip(ROTATION_BUCKETS) {
        if secs <= le {
            *b += 1;
        }
    }
    h.1 += 1;
    h.2 += secs;
}

/// Counts one API server response of the node's client.
pub fn api_response(status: u16) {
    API_RESPONSES.fetch_add(1, Ordering::Relaxed);
    if status == 401 {
        API_UNAUTHORIZED.fetch_add(1, Ordering::Relaxed);
    }
}

/// (responses, of which 401) since start.
pub fn api_responses() -> (u64, u64) {
    (
        API_RESPONSES.load(Ordering::Relaxed),
        API_UNAUTHORIZED.load(Ordering::Relaxed),
    )
}

/// Appends the certificate metrics in Prometheus text format.
pub fn encode(out: &mut String) {
    use crate::server::metrics::header;
    let now = super::validate::unix(SystemTime::now());
    for (kind, name, help) in [
        (
            IdentityKind::Client,
            "kubelet_certificate_manager_client_ttl_seconds",
            "Gauge of the TTL (time-to-live) of the Kubelet's client certificate. The value is in seconds until certificate expiry (negative if already expired).",
        ),
        (
            IdentityKind::Serving,
            "kubelet_certificate_manager_server_ttl_seconds",
            "Gauge of the shortest TTL (time-to-live) of the Kubelet's serving certificate. The value is in seconds until certificate expiry (negative if already expired).",
        ),
    ] {
        let na = not_after(kind).load(Ordering::Relaxed);
        if na != i64::MIN {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {}", na - now);
        }
    }
    header(
        out,
        "kubelet_certificate_manager_client_expiration_renew_errors",
        "counter",
        "Counter of certificate renewal errors.",
    );
    let _ = writeln!(
        out,
        "kubelet_certificate_manager_client_expiration_renew_errors {}",
        renew_errors(IdentityKind::Client)
    );
    header(
        out,
        "kubelet_server_expiration_renew_errors",
        "counter",
        "Counter of certificate renewal errors.",
    );
    let _ = writeln!(
        out,
        "kubelet_server_expiration_renew_errors {}",
        renew_errors(IdentityKind::Serving)
    );
    header(
        out,
        "kubelet_certificate_manager_server_rotation_seconds",
        "histogram",
        "Histogram of the number of seconds the previous certificate lived before being rotated.",
    );
    let (buckets, count, sum) = *SERVER_ROTATION.lock().unwrap_or_else(|p| p.into_inner());
    let name = "kubelet_certificate_manager_server_rotation_seconds";
    for (le, n) in ROTATION_BUCKETS.iter().zip(buckets) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {count}");
}
