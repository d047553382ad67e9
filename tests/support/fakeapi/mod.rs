//! A fake Kubernetes API server for tests: real HTTPS with its own CA and client-certificate
//! or bearer-token authentication, so the real kube client (and the ironlet binary through a
//! kubeconfig) talks to it unchanged. It keeps nodes, pods, leases, events (core and
//! events.k8s.io), certificatesigningrequests, namespaces, services, config maps and secrets
//! in memory with one resourceVersion counter, serves list (limit/continue) and watch
//! (bookmarks, field and label selectors, 410 Expired outside the history window or after
//! `compact()`), status subresources, merge / strategic merge / JSON patches, CSR approval
//! and signing, and TokenReview / SubjectAccessReview from rules the test sets. Failure
//! injection: outages, injected error statuses, latency, dropped watches.
//!
//! Product code never depends on this module. The server runs on its own runtime in a
//! background thread, so a `FakeApi` works from both `#[test]` and `#[tokio::test]`.
//!
//! ```ignore
//! let api = FakeApi::start();
//! api.write_kubeconfig(&dir.join("kubeconfig"), &Identity::node("n1")); // for the binary
//! api.create(&pod("default", "web", "n1"));                              // test-side writes
//! let pods: Api<Pod> = Api::all(api.client(&Identity::admin()).await);   // a real client
//! let p = api.wait_for("running", Duration::from_secs(10), |a| {
//!     let p = a.pod("default", "web")?;
//!     (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
//! }).await;
//! assert_eq!(api.count("PATCH", "/pods/web/status"), 1);
//! ```
//!
//! Kubelet identities (system:node:NAME) are held to the Node authorizer and NodeRestriction
//! (nodeauth.rs); `set_node_authorization(false)` lifts that. Set `FAKEAPI_LOG=1` to print
//! every request. Note that kube's client retries 429/503/504 by itself (up to 15 times,
//! honouring Retry-After): inject 500 to see a failure at the first try.

mod certs;
mod nodeauth;
mod patch;
mod server;
mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;

pub use store::{ApiError, DeleteOpts, Resource};

/// Who a client is: a client certificate from the fixture CA, or a bearer token from
/// `add_token`.
#[derive(Clone, Debug)]
pub enum Identity {
    /// A fresh certificate from the fixture CA for this user and groups.
    Cert { user: String, groups: Vec<String> },
    /// A bearer token (see `add_token`).
    Token(String),
    /// A given certificate and key (PEM), e.g. one signed through a CSR, or a foreign one.
    Pem { cert: String, key: String },
    /// Certificate and key files the kubeconfig points to (as a kubelet's rotated
    /// kubelet-client-current.pem).
    CertFiles {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
    },
}

impl Identity {
    pub fn cert(user: &str, groups: &[&str]) -> Identity {
        Identity::Cert {
            user: user.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
    /// The kubelet's identity for `node`: system:node:NODE in group system:nodes.
    pub fn node(node: &str) -> Identity {
        Identity::cert(&format!("system:node:{node}"), &["system:nodes"])
    }
    /// A cluster administrator.
    pub fn admin() -> Identity {
        Identity::cert("admin", &["system:masters"])
    }
    pub fn token(t: &str) -> Identity {
        Identity::Token(t.to_string())
    }
}

/// An authenticated user as the API server sees it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// For tokens: the audiences the token is valid for (empty: the API server's own).
    pub audiences: Vec<String>,
    /// For tokens: the TokenReview's `user.extra`.
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// One rule for SubjectAccessReview answers (or for the fixture's own authorization, see
/// `set_api_rules`). A `None` field matches anything; the first matching rule decides.
#[derive(Clone, Debug, Default)]
pub struct AccessRule {
    pub user: Option<String>,
    pub group: Option<String>,
    pub verb: Option<String>,
    pub api_group: Option<String>,
    pub resource: Option<String>,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Non-resource requests (e.g. "/healthz"); a rule with a path matches only those.
    pub path: Option<String>,
    pub allowed: bool,
    pub reason: String,
}

impl AccessRule {
    pub fn allow(reason: &str) -> AccessRule {
        AccessRule {
            allowed: true,
            reason: reason.to_string(),
            ..Default::default()
        }
    }
    pub fn deny(reason: &str) -> AccessRule {
        AccessRule {
            allowed: false,
            reason: reason.to_string(),
            ..Default::default()
        }
    }
    pub fn user(mut self, u: &str) -> Self {
        self.user = Some(u.into());
        self
    }
    pub fn group(mut self, g: &str) -> Self {
        self.group = Some(g.into());
        self
    }
    pub fn verb(mut self, v: &str) -> Self {
        self.verb = Some(v.into());
        self
    }
    pub fn resource(mut self, r: &str) -> Self {
        self.resource = Some(r.into());
        self
    }
    pub fn subresource(mut self, s: &str) -> Self {
        self.subresource = Some(s.into());
        self
    }
    pub fn namespace(mut self, n: &str) -> Self {
        self.namespace = Some(n.into());
        self
    }
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.into());
        self
    }
    pub fn path(mut self, p: &str) -> Self {
        self.path = Some(p.into());
        self
    }

    fn matches(&self, a: &Attributes) -> bool {
        fn m(rule: &Option<String>, v: &str) -> bool {
            rule.as_deref().is_none_or(|r| r == "*" || r == v)
        }
        let who = m(&self.user, &a.user)
            && self
                .group
                .as_deref()
                .is_none_or(|g| a.groups.iter().any(|x| x == g));
        let what = match (&self.path, &a.path) {
            (Some(p), Some(ap)) => {
                p == ap || (p.ends_with('*') && ap.starts_with(&p[..p.len() - 1]))
            }
            (Some(_), None) => false,
            (None, Some(_)) => self.resource.is_none(),
            (None, None) => {
                m(&self.api_group, &a.api_group)
                    && m(&self.resource, &a.resource)
                    && m(&self.subresource, &a.subresource)
                    && m(&self.namespace, &a.namespace)
                    && m(&self.name, &a.name)
            }
        };
        who && what && m(&self.verb, &a.verb)
    }
}

/// The attributes of a request (or of a SubjectAccessReview's spec).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: String,
    pub groups: Vec<String>,
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: Option<String>,
}

/// An injected failure: matching requests get `code` with a Status body.
#[derive(Clone, Debug)]
pub struct FailRule {
    pub method: Option<String>,
    pub path_contains: Option<String>,
    pub code: u16,
    /// How many more requests fail; `None` until `clear_failures`.
    pub remaining: Option<u32>,
}

/// How an outage looks to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutageMode {
    /// Connections are accepted and closed at once: clients fail fast (as with a stopped
    /// API server behind a load balancer, or connection refused).
    Refuse,
    /// Connections are accepted and never answered (a hung or partitioned server): clients
    /// hit their own timeouts.
    Blackhole,
}

/// A condition-based CSR auto-approval rule (as a bootstrap approver would have).
#[derive(Clone, Debug, Default)]
pub struct CsrApproval {
    pub signer: Option<String>,
    pub user: Option<String>,
}

/// One request the fixture answered.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub user: String,
    pub status: u16,
    pub body: String,
    pub at: Instant,
}

/// Everything the tests may set.
pub(crate) struct Control {
    tokens: HashMap<String, UserInfo>,
    sar_rules: Vec<AccessRule>,
    api_rules: Option<Vec<AccessRule>>,
    fail_rules: Vec<FailRule>,
    latency: Duration,
    slow_rules: Vec<(Option<String>, String, Duration)>,
    bookmark_interval: Duration,
    outage_mode: OutageMode,
    csr_auto: Vec<CsrApproval>,
    csr_lifetime: Duration,
    csr_signing: bool,
    /// The next signings misbehave this way, in order.
    csr_misbehave: Vec<CsrMisbehavior>,
    node_authorization: bool,
}

/// A signer gone wrong, for tests of what the node accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsrMisbehavior {
    /// Issues the certificate for system:node:intruder.
    WrongCommonName,
    /// Issues the certificate for another key than the request's.
    WrongKey,
}

pub(crate) struct Inner {
    store: Mutex<store::Store>,
    pki: certs::Pki,
    ctl: Mutex<Control>,
    log: Mutex<Vec<RequestRecord>>,
    token_reviews: Mutex<Vec<Value>>,
    access_reviews: Mutex<Vec<Value>>,
    /// true while in an outage.
    outage: watch::Sender<bool>,
    /// Bumped to end every open watch.
    watch_gen: watch::Sender<u64>,
    /// Bumped to cut every open connection.
    conn_gen: watch::Sender<u64>,
    /// Watch streams currently open.
    watches_open: std::sync::atomic::AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn store(&self) -> MutexGuard<'_, store::Store> {
        lock(&self.store)
    }
    fn ctl(&self) -> MutexGuard<'_, Control> {
        lock(&self.ctl)
    }
}

/// A running fake API server. Dropping it stops the server.
pub struct FakeApi {
    inner: Arc<Inner>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The kube typed objects the fixture stores.
pub trait Stored: k8s_openapi::Resource + Serialize + DeserializeOwned {}
impl<K: k8s_openapi::Resource + Serialize + DeserializeOwned> Stored for K {}

fn resource_of<K: k8s_openapi::Resource>() -> Resource {
    let version = K::VERSION;
    Resource::from_path(K::GROUP, version, K::URL_PATH_SEGMENT)
        .unwrap_or_else(|| panic!("fakeapi does not store {}", K::KIND))
}

fn to_typed<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("stored object decodes as its kube type")
}

impl FakeApi {
    /// Starts a server on 127.0.0.1:0 with a fresh CA.
    pub fn start() -> FakeApi {
        let pki = certs::Pki::new();
        let inner = Arc::new(Inner {
            store: Mutex::new(store::Store::new(1000)),
            pki,
            ctl: Mutex::new(Control {
                tokens: HashMap::new(),
                sar_rules: Vec::new(),
                api_rules: None,
                fail_rules: Vec::new(),
                latency: Duration::ZERO,
                slow_rules: Vec::new(),
                bookmark_interval: Duration::from_secs(1),
                outage_mode: OutageMode::Refuse,
                csr_auto: Vec::new(),
                csr_lifetime: Duration::from_secs(24 * 3600),
                csr_signing: true,
                csr_misbehave: Vec::new(),
                node_authorization: true,
            }),
            log: Mutex::new(Vec::new()),
            token_reviews: Mutex::new(Vec::new()),
            access_reviews: Mutex::new(Vec::new()),
            outage: watch::Sender::new(false),
            watch_gen: watch::Sender::new(0),
            conn_gen: watch::Sender::new(0),
            watches_open: std::sync::atomic::AtomicUsize::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let srv = inner.clone();
        let thread = std::thread::Builder::new()
            .name("fakeapi".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fakeapi runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = server::serve(srv, listener) => {}
                        _ = rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("fakeapi thread");
        FakeApi {
            inner,
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stops the server (also done on drop).
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// https://127.0.0.1:PORT
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    // ---- credentials ----

    pub fn ca_pem(&self) -> String {
        self.inner.pki.ca_pem()
    }

    /// A client certificate from the fixture CA (CN = user, O = groups): (cert PEM, key PEM).
    pub fn issue_client_cert(&self, cn: &str, groups: &[&str]) -> (String, String) {
        self.inner
            .pki
            .client_cert(cn, groups, Duration::from_secs(24 * 3600))
    }

    /// Like `issue_client_cert` with a chosen lifetime (for rotation tests).
    pub fn issue_client_cert_for(
        &self,
        cn: &str,
        groups: &[&str],
        lifetime: Duration,
    ) -> (String, String) {
        self.inner.pki.client_cert(cn, groups, lifetime)
    }

    /// A bearer token that authenticates as `user` (to this API and in TokenReviews).
    pub fn add_token(&self, token: &str, user: &str, groups: &[&str]) {
        self.inner.ctl().tokens.insert(
            token.to_string(),
            UserInfo {
                username: user.to_string(),
                uid: store::new_uid(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                audiences: Vec::new(),
                extra: Default::default(),
            },
        );
    }

    /// A bearer token that authenticates as exactly `user` (uid and extra included).
    pub fn add_token_with(&self, token: &str, user: UserInfo) {
        self.inner.ctl().tokens.insert(token.to_string(), user);
    }

    /// A bearer token bound to audiences: a TokenReview naming other audiences gets
    /// authenticated=false, as with a projected service-account token.
    pub fn add_token_for_audiences(
        &self,
        token: &str,
        user: &str,
        groups: &[&str],
        audiences: &[&str],
    ) {
        self.add_token(token, user, groups);
        if let Some(u) = self.inner.ctl().tokens.get_mut(token) {
            u.audiences = audiences.iter().map(|a| a.to_string()).collect();
        }
    }

    pub fn remove_token(&self, token: &str) {
        self.inner.ctl().tokens.remove(token);
    }

    /// The kubeconfig YAML for `id` (certificate-authority-data plus client certificate/key
    /// data, files or a token).
    pub fn kubeconfig(&self, id: &Identity) -> String {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let user = match id {
            Identity::Cert { user, groups } => {
                let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
                let (cert, key) = self.issue_client_cert(user, &groups);
                format!(
                    "    client-certificate-data: {}\n    client-key-data: {}\n",
                    b64(&cert),
                    b64(&key)
                )
            }
            Identity::Token(t) => format!("    token: {t}\n"),
            Identity::Pem { cert, key } => format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(cert),
                b64(key)
            ),
            Identity::CertFiles { cert, key } => format!(
                "    client-certificate: {}\n    client-key: {}\n",
                cert.display(),
                key.display()
            ),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fakeapi\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: fakeapi\n  context:\n    cluster: fakeapi\n    user: fakeapi-user\ncurrent-context: fakeapi\nusers:\n- name: fakeapi-user\n  user:\n{user}",
            self.url(),
            b64(&self.ca_pem())
        )
    }

    /// Writes `kubeconfig(id)` to `path` (mode 0600).
    pub fn write_kubeconfig(&self, path: &Path, id: &Identity) {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .unwrap_or_else(|e| panic!("cannot write kubeconfig {}: {e}", path.display()));
        std::io::Write::write_all(&mut f, self.kubeconfig(id).as_bytes())
            .expect("write kubeconfig");
    }

    /// A kube client config for `id`, built from the kubeconfig the binary would read.
    pub async fn config(&self, id: &Identity) -> kube::Config {
        let kc =
            kube::config::Kubeconfig::from_yaml(&self.kubeconfig(id)).expect("kubeconfig parses");
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kube config from kubeconfig")
    }

    /// A real kube client for `id` (call inside a tokio runtime).
    pub async fn client(&self, id: &Identity) -> kube::Client {
        kube::Client::try_from(self.config(id).await).expect("kube client")
    }

    // ---- objects, bypassing HTTP ----

    /// Creates an object as an administrator would; returns it as stored.
    pub fn create<K: Stored>(&self, obj: &K) -> K {
        self.try_create(obj)
            .unwrap_or_else(|e| panic!("create failed: {}", e.message))
    }

    pub fn try_create<K: Stored>(&self, obj: &K) -> Result<K, ApiError> {
        let res = resource_of::<K>();
        let v = serde_json::to_value(obj).expect("object serializes");
        let ns = v
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(if res.info().namespaced { "default" } else { "" })
            .to_string();
        let created = self.inner.store().create(
            res,
            &ns,
            v,
            Some(("admin", &["system:masters".to_string()])),
        )?;
        if res == Resource::Csrs {
            server::csr_after_write(&self.inner, name_str(&created));
        }
        Ok(to_typed(created))
    }

    /// The object, or None. `ns` is ignored for cluster-scoped kinds.
    pub fn get<K: Stored>(&self, ns: &str, name: &str) -> Option<K> {
        let res = resource_of::<K>();
        let ns = if res.info().namespaced { ns } else { "" };
        self.inner.store().get(res, ns, name).ok().map(to_typed)
    }

    /// All objects of a kind (in `ns`, or everywhere for None).
    pub fn list<K: Stored>(&self, ns: Option<&str>) -> Vec<K> {
        let filter = store::Filter {
            namespace: ns.map(str::to_string),
            ..Default::default()
        };
        self.inner
            .store()
            .list(resource_of::<K>(), &filter)
            .into_iter()
            .map(to_typed)
            .collect()
    }

    /// Replaces an object (main resource and, for kinds with one, its status), ignoring the
    /// resourceVersion in `obj`.
    pub fn update<K: Stored>(&self, obj: &K) -> Result<K, ApiError> {
        let res = resource_of::<K>();
        let mut v = serde_json::to_value(obj).expect("object serializes");
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        let ns = v
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = name_str(&v).to_string();
        let mut st = self.inner.store();
        let out = st.update(res, &ns, &name, v.clone(), store::Sub::Main)?;
        let out = if res.info().has_status {
            st.update(res, &ns, &name, v, store::Sub::Status)?
        } else {
            out
        };
        Ok(to_typed(out))
    }

    /// Deletes as the API would for a client sending these options (graceful for bound pods).
    pub fn delete<K: Stored>(
        &self,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<K, ApiError> {
        let res = resource_of::<K>();
        let ns = if res.info().namespaced { ns } else { "" };
        self.inner.store().delete(res, ns, name, opts).map(to_typed)
    }

    /// Removes an object at once (grace 0, no preconditions).
    pub fn remove<K: Stored>(&self, ns: &str, name: &str) {
        let opts = DeleteOpts {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        let _ = self.delete::<K>(ns, name, &opts);
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<k8s_openapi::api::core::v1::Pod> {
        self.get(ns, name)
    }
    pub fn node(&self, name: &str) -> Option<k8s_openapi::api::core::v1::Node> {
        self.get("", name)
    }
    pub fn lease(&self, ns: &str, name: &str) -> Option<k8s_openapi::api::coordination::v1::Lease> {
        self.get(ns, name)
    }
    pub fn events(&self, ns: Option<&str>) -> Vec<k8s_openapi::api::core::v1::Event> {
        self.list(ns)
    }
    pub fn csr(
        &self,
        name: &str,
    ) -> Option<k8s_openapi::api::certificates::v1::CertificateSigningRequest> {
        self.get("", name)
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.store().rv()
    }

    /// Polls `f` every 50 ms until it returns Some, or panics after `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&FakeApi) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `wait_for` for plain (non-async) tests.
    pub fn wait_for_blocking<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&FakeApi) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // ---- request log ----

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner.log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.inner.log).clear();
    }

    /// How many logged requests had this method and a path containing `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        lock(&self.inner.log)
            .iter()
            .filter(|r| r.method == method && r.path.contains(path_contains))
            .count()
    }

    // ---- authentication and authorization reviews ----

    /// Rules SubjectAccessReviews are answered from (first match decides; no match = not
    /// allowed, reason "no rule matched").
    pub fn set_access_rules(&self, rules: Vec<AccessRule>) {
        self.inner.ctl().sar_rules = rules;
    }

    /// Authorize the fixture's own API requests by these rules (403 when none allows).
    /// Default: every authenticated user may do everything.
    pub fn set_api_rules(&self, rules: Option<Vec<AccessRule>>) {
        self.inner.ctl().api_rules = rules;
    }

    /// The Node authorizer and NodeRestriction admission for kubelet identities
    /// (system:node:NAME in system:nodes), on by default as in a real cluster: see
    /// nodeauth.rs for what a node may do. Other identities are not affected.
    pub fn set_node_authorization(&self, on: bool) {
        self.inner.ctl().node_authorization = on;
    }

    /// Every TokenReview received (the request objects).
    pub fn token_reviews(&self) -> Vec<Value> {
        lock(&self.inner.token_reviews).clone()
    }

    /// Every SubjectAccessReview received (the request objects).
    pub fn access_reviews(&self) -> Vec<Value> {
        lock(&self.inner.access_reviews).clone()
    }
}

impl FakeApi {
    // ---- watch history ----

    /// Forgets the change history: a watch (or an exact list) from any resourceVersion
    /// issued so far gets 410 Gone (reason Expired); a fresh list works again.
    pub fn compact(&self) {
        self.inner.store().compact();
    }

    /// How many changes watches can replay (default 1000); older starting points get 410.
    pub fn set_history_limit(&self, n: usize) {
        self.inner.store().history_limit = n.max(1);
    }

    /// Bookmark period for watches that allow bookmarks (default 1 s).
    pub fn set_bookmark_interval(&self, d: Duration) {
        self.inner.ctl().bookmark_interval = d;
    }

    // ---- failure injection ----

    /// How many watch streams are open now.
    pub fn watches_open(&self) -> usize {
        self.inner
            .watches_open
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ends every open watch stream (cleanly, as a server-side timeout does).
    pub fn drop_watches(&self) {
        self.inner.watch_gen.send_modify(|g| *g += 1);
    }

    /// Starts or ends an outage. Starting one cuts every open connection (and so every
    /// watch); while it lasts new connections are refused or blackholed (`set_outage_mode`).
    pub fn set_outage(&self, on: bool) {
        self.inner.outage.send_replace(on);
        if on {
            self.inner.conn_gen.send_modify(|g| *g += 1);
        }
    }

    pub fn set_outage_mode(&self, mode: OutageMode) {
        self.inner.ctl().outage_mode = mode;
    }

    /// The next `n` requests (of any kind, watches included) get `code` (e.g. 500, 503, 429).
    pub fn fail_next(&self, n: u32, code: u16) {
        self.fail_matching(FailRule {
            method: None,
            path_contains: None,
            code,
            remaining: Some(n),
        });
    }

    /// Adds a failure rule (method and path filters; count or until cleared).
    pub fn fail_matching(&self, rule: FailRule) {
        self.inner.ctl().fail_rules.push(rule);
    }

    pub fn clear_failures(&self) {
        let mut ctl = self.inner.ctl();
        ctl.fail_rules.clear();
        ctl.slow_rules.clear();
    }

    /// Delay before every answer (and before a watch starts).
    pub fn set_latency(&self, d: Duration) {
        self.inner.ctl().latency = d;
    }

    /// Extra delay for requests with this method (None: any) and a path containing
    /// `path_contains`, e.g. slow lease renewals only. Cleared by `clear_failures`.
    pub fn slow_matching(&self, method: Option<&str>, path_contains: &str, d: Duration) {
        self.inner.ctl().slow_rules.push((
            method.map(str::to_string),
            path_contains.to_string(),
            d,
        ));
    }

    // ---- certificate signing requests ----

    /// Approves a CSR as an approver would (Approved condition via the approval
    /// subresource); the fixture's signer then issues the certificate.
    pub fn approve_csr(&self, name: &str) {
        server::set_csr_condition(
            &self.inner,
            name,
            "Approved",
            "FakeApiApprove",
            "approved by the test",
        )
        .unwrap_or_else(|| panic!("no CSR {name} to approve"));
        server::csr_after_write(&self.inner, name);
    }

    pub fn deny_csr(&self, name: &str) {
        server::set_csr_condition(
            &self.inner,
            name,
            "Denied",
            "FakeApiDeny",
            "denied by the test",
        )
        .unwrap_or_else(|| panic!("no CSR {name} to deny"));
    }

    /// Approve new CSRs matching this rule at once (None fields match anything).
    pub fn auto_approve_csrs(&self, rule: CsrApproval) {
        self.inner.ctl().csr_auto.push(rule);
    }

    /// Lifetime of certificates the signer issues: its maximum duration, as
    /// kube-controller-manager's --cluster-signing-duration (default 24 h here; tests sign
    /// ~60 s certificates for rotation). spec.expirationSeconds shortens it further.
    pub fn set_csr_cert_lifetime(&self, d: Duration) {
        self.inner.ctl().csr_lifetime = d;
    }

    /// The next signings misbehave as listed (one entry per signing).
    pub fn misbehave_csr_signing(&self, how: &[CsrMisbehavior]) {
        self.inner.ctl().csr_misbehave.extend_from_slice(how);
    }

    /// The smallest spec.expirationSeconds a CSR may ask for (default 600 s, as the real
    /// API server's validation); the signer's maximum is `set_csr_cert_lifetime`.
    pub fn set_csr_min_expiration(&self, d: Duration) {
        self.inner.store().csr_min_expiration_seconds =
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    }

    /// Turn the signer off (approved CSRs then stay without a certificate).
    pub fn set_csr_signing(&self, on: bool) {
        self.inner.ctl().csr_signing = on;
    }
}

fn name_str(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal pod bound to `node` with one busybox container.
pub fn pod(ns: &str, name: &str, node: &str) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "localhost/ironlet/busybox:1"}]
        }
    }))
    .expect("pod literal")
}

/// A minimal node object.
pub fn node(name: &str) -> k8s_openapi::api::core::v1::Node {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    }))
    .expect("node literal")
}
