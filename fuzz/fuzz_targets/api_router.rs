//! The whole kubelet API router in-process (`server::api::serve`): arbitrary method,
//! request target, headers and body, as one of four callers (no credentials, a user the
//! standalone policy denies, one it allows, a bearer token). Invariants: never a panic;
//! never a 2xx without an allow decision; never a 101 (there is no runtime to upgrade to);
//! 401 and 403 bodies are the fixed strings.
//!
//! Input: byte 0 picks the caller; then `METHOD SP TARGET LF (NAME: VALUE LF)* LF BODY`.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use ironlet::pleg::{PlegHealth, Snapshot};
use ironlet::server::api::{self, Api, Conn, Decision, Handles, Options};
use ironlet::server::authn::{ReviewError, TokenAuthenticator, User};
use ironlet::server::authz::StandalonePolicy;
use ironlet::server::routes;
use libfuzzer_sys::fuzz_target;

const POLICY: &str = "apiVersion: ironlet.dev/v1alpha1
kind: StandaloneAuthorizationPolicy
rules:
- name: admin
  reason: fuzzing
  users: [admin]
  verbs: [get, create, update, patch, delete]
  subresources: [stats, metrics, log, checkpoint, pods, healthz, configz, proxy]
";

struct Tokens;
impl TokenAuthenticator for Tokens {
    fn authenticate<'a>(&'a self, t: &'a str) -> BoxFuture<'a, Result<Option<User>, ReviewError>> {
        let u = (t == "admin-token").then(|| User { name: "admin".into(), groups: vec![], ..Default::default() });
        Box::pin(std::future::ready(Ok(u)))
    }
}

struct World {
    rt: tokio::runtime::Runtime,
    api: Arc<Api>,
    _tx: tokio::sync::watch::Sender<Arc<Snapshot>>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (api, tx) = rt.block_on(async {
            let (tx, rx) = tokio::sync::watch::channel(Arc::new(Snapshot {
                generation: 1,
                relist_started: Instant::now(),
                pods: Default::default(),
            }));
            let handles = Handles {
                pods: Box::new(|| Ok(b"{\"items\":[]}".to_vec())),
                snapshots: rx,
                health: Arc::new(PlegHealth::default()),
                started: Instant::now(),
                cri: ironlet::cri::Cri::new(std::path::Path::new("/nonexistent/fuzz.sock"), Duration::from_millis(50)),
                probes: None,
                configz: serde_json::json!({"kubeletconfig": {}}),
            };
            let options = Options {
                node_name: "fuzz".into(),
                enable_debugging_handlers: true,
                enable_system_log_handler: false,
                system_log_root: "/nonexistent".into(),
                streaming_idle_timeout: Duration::from_secs(60),
                max_streams: 4,
            };
            let api = Api::new(options, Some(Arc::new(Tokens)), Arc::new(StandalonePolicy::parse(POLICY).unwrap()), handles);
            // Audit records to a scratch file (the production writer, 1 MiB rotation).
            let audit = std::env::temp_dir().join(format!("ironlet-fuzz-audit-{}.log", std::process::id()));
            let api = api.with_audit(Arc::new(ironlet::server::audit::AuditLog::open(&audit, 1 << 20).unwrap()));
            (Arc::new(api), tx)
        });
        World { rt, api, _tx: tx }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&who, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let Some((method, target)) = lines.next().and_then(|l| l.split_once(' ')) else { return };
    let mut b = http::Request::builder().method(method).uri(target);
    for l in lines {
        if let Some((k, v)) = l.split_once(": ") {
            b = b.header(k, v);
        }
    }
    let Ok(req) = b.body(Full::new(bytes::Bytes::from(body.to_owned()))) else { return };
    let w = world();
    let user = |n: &str| Some(Ok(User { name: n.into(), groups: vec!["system:authenticated".into()], ..Default::default() }));
    let conn = match who % 4 {
        0 => Conn::default(),
        1 => Conn { peer: user("mallory"), ..Default::default() },
        2 => Conn { peer: user("admin"), ..Default::default() },
        _ => Conn { peer: Some(Err(())), ..Default::default() },
    };
    let route = routes::route(req.uri().path());
    let upgrade = req.headers().contains_key(http::header::UPGRADE);
    w.rt.block_on(async {
        let (resp, outcome) = tokio::time::timeout(Duration::from_secs(5), api::serve(&w.api, &conn, req, &route))
            .await
            .expect("the router answers");
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            assert!(matches!(outcome.decision, Decision::Allow(_)), "{status} without allow: {outcome:?}");
        }
        assert_ne!(status, 101);
        if upgrade {
            // A refused upgrade always ends its connection, whatever the path or outcome.
            assert_eq!(resp.headers().get(http::header::CONNECTION).map(|v| v.as_bytes()), Some(&b"close"[..]));
        }
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        match status {
            401 => assert_eq!(&body[..], b"Unauthorized\n"),
            403 => assert_eq!(&body[..], b"Forbidden\n"),
            _ => {}
        }
    });
});
