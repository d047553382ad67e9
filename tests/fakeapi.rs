//! The fake API server fixture (tests/support/fakeapi), proven with the real kube client:
//! if these pass, a component that works against the fixture talks the API's real protocol.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent,
    WatchParams,
};
use serde_json::json;
use support::fakeapi::*;

const NS: &str = "default";

/// (HTTP code, reason) of a kube API error.
fn status_of(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API status error, got {other:?}"),
    }
}

fn rv_of<K: kube::Resource>(o: &K) -> u64 {
    o.meta()
        .resource_version
        .as_deref()
        .expect("resourceVersion set")
        .parse()
        .expect("numeric resourceVersion")
}

#[tokio::test]
async fn crud_with_resource_versions_and_api_errors() {
    let api = FakeApi::start();
    let client = api.client(&Identity::admin()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    let n = nodes
        .create(&PostParams::default(), &node("n1"))
        .await
        .unwrap();
    let uid = n.metadata.uid.clone().expect("uid set");
    assert_eq!(uid.len(), 36);
    assert!(n.metadata.creation_timestamp.is_some());
    assert_eq!(n.metadata.generation, Some(1));
    let rv1 = rv_of(&n);

    let p = pods
        .create(&PostParams::default(), &pod(NS, "p1", "n1"))
        .await
        .unwrap();
    let rv2 = rv_of(&p);
    assert!(rv2 > rv1, "one global counter: {rv2} > {rv1}");
    // Defaults the API server fills in.
    let spec = p.spec.as_ref().unwrap();
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));

    // AlreadyExists, NotFound.
    let e = pods
        .create(&PostParams::default(), &pod(NS, "p1", "n1"))
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (409, "AlreadyExists".into()));
    let e = pods.get("nope").await.unwrap_err();
    assert_eq!(status_of(e), (404, "NotFound".into()));
    let e = pods
        .create(&PostParams::default(), &pod(NS, "Bad_Name", "n1"))
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (422, "Invalid".into()));

    // Update with the current resourceVersion works and moves it; a stale one conflicts.
    let mut n2 = nodes.get("n1").await.unwrap();
    n2.metadata
        .labels
        .get_or_insert_default()
        .insert("role".into(), "worker".into());
    let n3 = nodes
        .replace("n1", &PostParams::default(), &n2)
        .await
        .unwrap();
    assert!(rv_of(&n3) > rv2);
    let e = nodes
        .replace("n1", &PostParams::default(), &n2)
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (409, "Conflict".into()));

    // The list carries the current version; items are the stored objects.
    let list = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let list_rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
    assert_eq!(list_rv, api.resource_version());
    assert_eq!(list_rv, rv_of(&n3));

    // Leases and events, namespaced in their own groups.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "n1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let renewed = leases
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"renewTime": "2026-11-22T23:00:00.000000Z"}})),
        )
        .await
        .unwrap();
    assert!(renewed.spec.unwrap().renew_time.is_some());
    assert!(api.lease("kube-node-lease", "n1").is_some());

    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"generateName": "p1."},
        "involvedObject": {"kind": "Pod", "name": "p1", "namespace": NS},
        "reason": "Started", "message": "started", "type": "Normal"
    }))
    .unwrap();
    let made = events.create(&PostParams::default(), &ev).await.unwrap();
    assert!(made.metadata.name.unwrap().starts_with("p1."));
    assert_eq!(api.events(Some(NS)).len(), 1);

    // Every request was logged with its user and status.
    let log = api.requests();
    assert!(log.iter().all(|r| r.user == "admin"));
    assert!(log.iter().any(|r| r.method == "POST" && r.status == 409));
}

#[tokio::test]
async fn authentication_by_client_cert_or_token_and_401_without() {
    let api = FakeApi::start();
    api.create(&node("n1"));
    api.add_token("tok-123", "system:bootstrap:abc", &["system:bootstrappers"]);
    let by_token = api.client(&Identity::token("tok-123")).await;
    let nodes: Api<Node> = Api::all(by_token);
    nodes.get("n1").await.unwrap();
    assert_eq!(api.requests().last().unwrap().user, "system:bootstrap:abc");

    let by_cert = api.client(&Identity::node("n1")).await;
    Api::<Node>::all(by_cert).get("n1").await.unwrap();
    assert_eq!(api.requests().last().unwrap().user, "system:node:n1");

    let e = Api::<Node>::all(api.client(&Identity::token("wrong")).await)
        .get("n1")
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (401, "Unauthorized".into()));

    // No credentials at all: anonymous is refused.
    let mut cfg = api.config(&Identity::token("x")).await;
    cfg.auth_info = Default::default();
    let anon = kube::Client::try_from(cfg).unwrap();
    let e = Api::<Node>::all(anon).get("n1").await.unwrap_err();
    assert_eq!(status_of(e), (401, "Unauthorized".into()));

    // A certificate from another CA fails the handshake.
    let other = FakeApi::start();
    let (cert, key) = other.issue_client_cert("system:node:n1", &["system:nodes"]);
    let foreign = api.client(&Identity::Pem { cert, key }).await;
    match Api::<Node>::all(foreign).get("n1").await {
        Ok(_) => panic!("a certificate from a foreign CA must not be accepted"),
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 401),
        Err(_) => {} // rejected at the TLS handshake
    }

    // The kubeconfig file is what the binary reads.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    api.write_kubeconfig(&path, &Identity::node("n1"));
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let from_file = kube::Client::try_from(cfg).unwrap();
    Api::<Node>::all(from_file).get("n1").await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

fn base64_std(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

#[tokio::test]
async fn watch_with_field_selector_delivers_only_matching_pods() {
    let api = FakeApi::start();
    let client = api.client(&Identity::node("n1")).await;
    let pods: Api<Pod> = Api::all(client);
    let lp = ListParams::default().fields("spec.nodeName=n1");
    let list = pods.list(&lp).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let wp = WatchParams::default()
        .fields("spec.nodeName=n1")
        .timeout(10);
    let mut stream = pods.watch(&wp, &rv).await.unwrap().boxed();

    api.create(&pod(NS, "other", "n2"));
    api.create(&pod(NS, "mine", "n1"));
    let mut upd = api.pod(NS, "other").unwrap();
    upd.metadata
        .labels
        .get_or_insert_default()
        .insert("x".into(), "y".into());
    api.update(&upd).unwrap();
    api.remove::<Pod>(NS, "mine");

    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .expect("watch event in time")
            .unwrap()
            .expect("stream open")
        {
            WatchEvent::Added(p) => seen.push(format!("ADDED {}", p.metadata.name.unwrap())),
            WatchEvent::Deleted(p) => seen.push(format!("DELETED {}", p.metadata.name.unwrap())),
            WatchEvent::Modified(p) => seen.push(format!("MODIFIED {}", p.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    assert_eq!(seen, ["ADDED mine", "DELETED mine"]);

    // Leaving a label selector is a DELETED (previous content, new resourceVersion);
    // coming back is an ADDED.
    let admin_ns: Api<Pod> = Api::namespaced(api.client(&Identity::admin()).await, NS);
    let mut labelled = pod(NS, "l", "n3");
    labelled.metadata.labels = Some([("app".to_string(), "a".to_string())].into());
    api.create(&labelled);
    let rv = api.resource_version().to_string();
    let mut lw = admin_ns
        .watch(&WatchParams::default().labels("app=a").timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let relabel = |v: &str| Patch::Merge(json!({"metadata": {"labels": {"app": v}}}));
    admin_ns
        .patch("l", &PatchParams::default(), &relabel("b"))
        .await
        .unwrap();
    let moved_rv = api.resource_version().to_string();
    admin_ns
        .patch("l", &PatchParams::default(), &relabel("a"))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match lw.try_next().await.unwrap().unwrap() {
            WatchEvent::Deleted(p) => {
                assert_eq!(p.metadata.labels.as_ref().unwrap()["app"], "a");
                assert_eq!(
                    p.metadata.resource_version.as_deref(),
                    Some(moved_rv.as_str())
                );
                got.push("DELETED");
            }
            WatchEvent::Added(p) => {
                assert_eq!(p.metadata.labels.as_ref().unwrap()["app"], "a");
                got.push("ADDED");
            }
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, ["DELETED", "ADDED"]);

    // An unsupported field is refused as by the real API.
    let admin: Api<Pod> = Api::all(api.client(&Identity::admin()).await);
    let e = admin
        .list(&ListParams::default().fields("spec.hostname=x"))
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (400, "BadRequest".into()));
}

#[tokio::test]
async fn bookmarks_carry_the_current_resource_version() {
    let api = FakeApi::start();
    api.set_bookmark_interval(Duration::from_millis(200));
    let pods: Api<Pod> = Api::all(api.client(&Identity::admin()).await);
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = pods
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&node("unrelated"));
    let after = api.resource_version();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no bookmark with rv {after}");
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let WatchEvent::Bookmark(b) = ev
            && b.metadata.resource_version == after.to_string()
        {
            break;
        }
    }
}

#[tokio::test]
async fn status_patches_merge_conditions_by_type_and_subresources_are_separate() {
    let api = FakeApi::start();
    let created = api.create(&pod(NS, "p", "n1"));
    let uid = created.metadata.uid.clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(api.client(&Identity::node("n1")).await, NS);
    let pp = PatchParams::default();

    // Strategic merge on /status, with the kubelet's UID precondition in the patch.
    let first = json!({
        "metadata": {"uid": uid},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "PodScheduled", "status": "True"}
            ],
            "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0,
                "image": "busybox", "imageID": "", "state": {"waiting": {"reason": "ContainerCreating"}}}]
        }
    });
    pods.patch_status("p", &pp, &Patch::Strategic(first))
        .await
        .unwrap();
    let second = json!({
        "metadata": {"uid": uid},
        "status": {
            "$setElementOrder/conditions": [{"type": "PodScheduled"}, {"type": "Ready"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "c", "ready": true, "state": {"running": {}}}]
        }
    });
    let p = pods
        .patch_status("p", &pp, &Patch::Strategic(second))
        .await
        .unwrap();
    let st = p.status.unwrap();
    let conds: Vec<(String, String)> = st
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    assert_eq!(
        conds,
        [
            ("PodScheduled".to_string(), "True".to_string()),
            ("Ready".to_string(), "True".to_string())
        ],
        "conditions merged by type"
    );
    let cs = &st.container_statuses.unwrap()[0];
    assert!(cs.ready);
    assert_eq!(cs.image, "busybox", "fields absent from the patch are kept");
    assert_eq!(st.phase.as_deref(), Some("Running"));

    // A merge patch replaces lists whole (RFC 7386).
    let p = pods
        .patch_status(
            "p",
            &pp,
            &Patch::Merge(
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(p.status.unwrap().conditions.unwrap().len(), 1);

    // /status changes only status; the main resource ignores status.
    let before = api.pod(NS, "p").unwrap();
    let p = pods
        .patch_status(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}, "status": {"message": "m"}})),
        )
        .await
        .unwrap();
    assert!(p.metadata.labels.is_none());
    assert_eq!(p.status.as_ref().unwrap().message.as_deref(), Some("m"));
    let admin: Api<Pod> = Api::namespaced(api.client(&Identity::admin()).await, NS);
    let p = admin
        .patch(
            "p",
            &pp,
            &Patch::Merge(
                json!({"metadata": {"labels": {"a": "b"}}, "status": {"phase": "Failed"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.labels.unwrap()["a"], "b");
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Running"));
    assert!(rv_of(&api.pod(NS, "p").unwrap()) > rv_of(&before));

    // A no-op patch does not move the resourceVersion.
    let rv = api.resource_version();
    pods.patch_status("p", &pp, &Patch::Merge(json!({"status": {"message": "m"}})))
        .await
        .unwrap();
    assert_eq!(api.resource_version(), rv);

    // Node status: conditions and addresses merge by type.
    let nodes: Api<Node> = Api::all(api.client(&Identity::node("n1")).await);
    api.create(&node("n1"));
    nodes
        .patch_status(
            "n1",
            &pp,
            &Patch::Strategic(json!({"status": {
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "n1"}]
            }})),
        )
        .await
        .unwrap();
    let n = nodes
        .patch_status(
            "n1",
            &pp,
            &Patch::Strategic(json!({"status": {
                "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]
            }})),
        )
        .await
        .unwrap();
    let st = n.status.unwrap();
    assert_eq!(st.conditions.as_ref().unwrap().len(), 2);
    let ready = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(st.addresses.unwrap().len(), 2);

    // Status patches are visible in the request log for tests that count them.
    assert_eq!(api.count("PATCH", "/pods/p/status"), 5);
}

#[tokio::test]
async fn patch_errors_are_the_real_apis() {
    let api = FakeApi::start();
    let created = api.create(&pod(NS, "p", "n1"));
    let client = api.client(&Identity::admin()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pp = PatchParams::default();

    // Wrong content type: 415.
    let req = http::Request::patch("/api/v1/namespaces/default/pods/p/status")
        .header("content-type", "application/json")
        .body(br#"{"status":{"phase":"Running"}}"#.to_vec())
        .unwrap();
    let e = client.request_text(req).await.unwrap_err();
    assert_eq!(status_of(e), (415, "UnsupportedMediaType".into()));

    // Not JSON: 400.
    let req = http::Request::patch("/api/v1/namespaces/default/pods/p")
        .header("content-type", "application/merge-patch+json")
        .body(b"{not json".to_vec())
        .unwrap();
    let e = client.request_text(req).await.unwrap_err();
    assert_eq!(status_of(e).0, 400);

    // Patch to a missing object: 404.
    let e = pods
        .patch_status("missing", &pp, &Patch::Merge(json!({"status": {}})))
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (404, "NotFound".into()));

    // A UID precondition in the patch that fails (the pod was recreated): 409.
    let e = pods
        .patch_status(
            "p",
            &pp,
            &Patch::Strategic(json!({"metadata": {"uid": "00000000-0000-4000-8000-000000000000"}, "status": {"phase": "Running"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (409, "Conflict".into()));

    // A stale resourceVersion in a patch: 409.
    let e = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1", "labels": {"a": "b"}}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (409, "Conflict".into()));

    // A strategic list element without its merge key: 422.
    let e = pods
        .patch_status(
            "p",
            &pp,
            &Patch::Strategic(json!({"status": {"conditions": [{"status": "True"}]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (422, "Invalid".into()));

    // JSON patch (RFC 6902) with a failing test op: 422; a passing one applies.
    let e = pods
        .patch(
            "p",
            &pp,
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "test", "path": "/metadata/uid", "value": "other"},
                    {"op": "add", "path": "/metadata/labels", "value": {"x": "1"}}
                ]))
                .unwrap(),
            ),
        )
        .await;
    assert_eq!(status_of(e.unwrap_err()).0, 422);
    let uid = created.metadata.uid.unwrap();
    let p = pods
        .patch(
            "p",
            &pp,
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "test", "path": "/metadata/uid", "value": uid},
                    {"op": "add", "path": "/metadata/labels", "value": {"x": "1"}}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.labels.unwrap()["x"], "1");

    // Pod spec is immutable but for a few fields: 422.
    let e = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"spec": {"nodeName": "elsewhere"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (422, "Invalid".into()));
}

#[tokio::test]
async fn delete_preconditions_and_graceful_pod_deletion() {
    let api = FakeApi::start();
    let p = api.create(&pod(NS, "p", "n1"));
    let uid = p.metadata.uid.clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(api.client(&Identity::node("n1")).await, NS);

    // UID precondition mismatch: 409 and nothing happens.
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("00000000-0000-4000-8000-000000000000".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let e = pods.delete("p", &dp).await.unwrap_err();
    assert_eq!(status_of(e), (409, "Conflict".into()));
    assert!(
        api.pod(NS, "p")
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );

    // A bound pod deleted with the default grace is only marked (MODIFIED, not DELETED).
    let rv = pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = pods
        .watch(
            &WatchParams::default()
                .fields("spec.nodeName=n1")
                .timeout(10),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let out = pods.delete("p", &DeleteParams::default()).await.unwrap();
    let marked = out.left().expect("the pod comes back, marked");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    assert!(api.pod(NS, "p").is_some());

    // The kubelet's final delete: grace 0 with its UID precondition removes it.
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    pods.delete("p", &dp).await.unwrap();
    assert!(api.pod(NS, "p").is_none());

    let mut types = Vec::new();
    while types.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), w.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Modified(p) => {
                assert!(p.metadata.deletion_timestamp.is_some());
                types.push("MODIFIED")
            }
            WatchEvent::Deleted(_) => types.push("DELETED"),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(types, ["MODIFIED", "DELETED"]);

    // An unbound pod goes at once.
    let mut unbound = pod(NS, "u", "");
    unbound.spec.as_mut().unwrap().node_name = None;
    api.create(&unbound);
    let admin: Api<Pod> = Api::namespaced(api.client(&Identity::admin()).await, NS);
    admin.delete("u", &DeleteParams::default()).await.unwrap();
    assert!(api.pod(NS, "u").is_none());
}

#[tokio::test]
async fn token_and_access_reviews_answer_from_rules_and_are_recorded() {
    let api = FakeApi::start();
    api.add_token("good", "alice", &["devs"]);
    api.set_access_rules(vec![
        AccessRule::allow("nodes may read their metrics")
            .group("system:nodes")
            .verb("get")
            .resource("nodes")
            .subresource("metrics"),
        AccessRule::deny("alice may not exec")
            .user("alice")
            .subresource("exec"),
        AccessRule::allow("alice may read logs")
            .user("alice")
            .verb("get")
            .resource("nodes")
            .subresource("log"),
    ]);
    let client = api.client(&Identity::node("n1")).await;

    let trs: Api<TokenReview> = Api::all(client.clone());
    let review = |token: &str| TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.into()),
            audiences: Some(vec!["https://kubernetes.default.svc".into()]),
        },
        ..Default::default()
    };
    let ok = trs
        .create(&PostParams::default(), &review("good"))
        .await
        .unwrap();
    let st = ok.status.unwrap();
    assert_eq!(st.authenticated, Some(true));
    let user = st.user.unwrap();
    assert_eq!(user.username.as_deref(), Some("alice"));
    assert_eq!(user.groups.unwrap(), ["devs"]);
    let bad = trs
        .create(&PostParams::default(), &review("bad"))
        .await
        .unwrap();
    assert_eq!(bad.status.unwrap().authenticated, Some(false));
    // Audience-bound tokens: only for their audiences.
    api.add_token_for_audiences(
        "sa-token",
        "system:serviceaccount:default:x",
        &[],
        &["vault"],
    );
    let wrong = trs
        .create(&PostParams::default(), &review("sa-token"))
        .await
        .unwrap();
    assert_eq!(wrong.status.unwrap().authenticated, Some(false));
    let mut for_vault = review("sa-token");
    for_vault.spec.audiences = Some(vec!["vault".into(), "other".into()]);
    let right = trs
        .create(&PostParams::default(), &for_vault)
        .await
        .unwrap();
    let st = right.status.unwrap();
    assert_eq!(st.authenticated, Some(true));
    assert_eq!(st.audiences.unwrap(), ["vault"]);

    let sars: Api<SubjectAccessReview> = Api::all(client);
    let ask = |user: &str, groups: &[&str], sub: &str| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some("get".into()),
                resource: Some("nodes".into()),
                subresource: Some(sub.into()),
                name: Some("n1".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let cases = [
        ("system:node:n2", vec!["system:nodes"], "metrics", true),
        ("alice", vec!["devs"], "log", true),
        ("alice", vec!["devs"], "exec", false),
        ("bob", vec![], "log", false),
    ];
    for (user, groups, sub, want) in &cases {
        let r = sars
            .create(&PostParams::default(), &ask(user, groups, sub))
            .await
            .unwrap();
        let st = r.status.unwrap();
        assert_eq!(st.allowed, *want, "{user} {sub}: {:?}", st.reason);
    }
    assert_eq!(api.token_reviews().len(), 4);
    let recorded = api.access_reviews();
    assert_eq!(recorded.len(), 4);
    assert_eq!(
        recorded[0]["spec"]["resourceAttributes"]["subresource"],
        "metrics"
    );
    assert_eq!(recorded[0]["spec"]["user"], "system:node:n2");

    // Reviews need an authenticated caller.
    let mut cfg = api.config(&Identity::token("x")).await;
    cfg.auth_info = Default::default();
    let anon = kube::Client::try_from(cfg).unwrap();
    let e = Api::<TokenReview>::all(anon)
        .create(&PostParams::default(), &review("good"))
        .await
        .unwrap_err();
    assert_eq!(status_of(e).0, 401);
}

/// Events from a kube-runtime watcher, as short strings ("Init", "InitApply a", "Apply b",
/// "Error 410", ...), collected until `until` matches one.
async fn watcher_until<S>(stream: &mut S, until: &str, seen: &mut Vec<String>)
where
    S: futures::Stream<
            Item = Result<kube::runtime::watcher::Event<Pod>, kube::runtime::watcher::Error>,
        > + Unpin,
{
    use kube::runtime::watcher::{Error as WErr, Event as WEv};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let item = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {until:?}; saw {seen:?}"))
            .expect("watcher stream never ends");
        let s = match item {
            Ok(WEv::Init) => "Init".to_string(),
            Ok(WEv::InitApply(p)) => format!("InitApply {}", p.metadata.name.unwrap()),
            Ok(WEv::InitDone) => "InitDone".to_string(),
            Ok(WEv::Apply(p)) => format!("Apply {}", p.metadata.name.unwrap()),
            Ok(WEv::Delete(p)) => format!("Delete {}", p.metadata.name.unwrap()),
            Err(WErr::WatchError(s)) => format!("Error {}", s.code),
            Err(e) => format!("Err {e}"),
        };
        let done = s == until;
        seen.push(s);
        if done {
            return;
        }
    }
}

#[tokio::test]
async fn kube_runtime_watcher_relists_after_410_and_resumes_after_dropped_watch() {
    let api = FakeApi::start();
    api.set_bookmark_interval(Duration::from_millis(100));
    api.create(&pod(NS, "a", "n1"));
    let pods: Api<Pod> = Api::all(api.client(&Identity::node("n1")).await);
    let cfg = kube::runtime::watcher::Config::default().fields("spec.nodeName=n1");
    let mut w = kube::runtime::watcher(pods.clone(), cfg).boxed();
    let mut seen = Vec::new();
    watcher_until(&mut w, "InitDone", &mut seen).await;
    assert_eq!(seen, ["Init", "InitApply a", "InitDone"]);

    api.create(&pod(NS, "b", "n1"));
    api.create(&pod(NS, "x", "n2"));
    seen.clear();
    watcher_until(&mut w, "Apply b", &mut seen).await;
    assert_eq!(seen, ["Apply b"]);

    let lists = |api: &FakeApi| {
        api.requests()
            .iter()
            .filter(|r| {
                r.method == "GET" && r.path == "/api/v1/pods" && !r.query.contains("watch=true")
            })
            .count()
    };
    let watches = |api: &FakeApi| {
        api.requests()
            .iter()
            .filter(|r| r.query.contains("watch=true"))
            .count()
    };

    // A dropped watch resumes from the last resourceVersion without a relist.
    let (l0, w0) = (lists(&api), watches(&api));
    api.drop_watches();
    api.create(&pod(NS, "c", "n1"));
    seen.clear();
    watcher_until(&mut w, "Apply c", &mut seen).await;
    assert_eq!(seen, ["Apply c"], "no event lost or repeated");
    assert_eq!(lists(&api), l0, "no relist after a dropped watch");
    assert!(watches(&api) > w0, "the watch was re-established");

    // History compacted while the watch is down: the rewatch gets 410 Expired, the watcher
    // relists and continues.
    api.wait_for("watch open", Duration::from_secs(5), |a| {
        (a.watches_open() > 0).then_some(())
    })
    .await;
    api.compact();
    api.drop_watches();
    seen.clear();
    watcher_until(&mut w, "InitDone", &mut seen).await;
    assert_eq!(
        seen,
        [
            "Error 410",
            "Init",
            "InitApply a",
            "InitApply b",
            "InitApply c",
            "InitDone"
        ]
    );
    assert_eq!(lists(&api), l0 + 1, "exactly one relist");
    let gone = api
        .requests()
        .into_iter()
        .filter(|r| r.query.contains("watch=true"))
        .count();
    assert!(gone > 0);
    api.create(&pod(NS, "d", "n1"));
    seen.clear();
    watcher_until(&mut w, "Apply d", &mut seen).await;
    assert_eq!(seen, ["Apply d"]);

    // A list from a compacted version with exact match is 410 too; a raw watch from it gets
    // the ERROR event with the Expired status.
    let e = pods
        .list(
            &ListParams::default()
                .fields("spec.nodeName=n1")
                .at("2")
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (410, "Expired".into()));
    let mut raw = pods
        .watch(&WatchParams::default().fields("spec.nodeName=n1"), "2")
        .await
        .unwrap()
        .boxed();
    match raw.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // Streaming lists (sendInitialEvents) end their initial events with the marked bookmark.
    let cfg = kube::runtime::watcher::Config::default()
        .fields("spec.nodeName=n1")
        .streaming_lists();
    let mut s = kube::runtime::watcher(pods, cfg).boxed();
    seen.clear();
    watcher_until(&mut s, "InitDone", &mut seen).await;
    assert_eq!(seen.len(), 6, "{seen:?}");
}

#[tokio::test]
async fn csr_create_approve_sign_and_use_the_certificate() {
    let api = FakeApi::start();
    api.set_csr_cert_lifetime(Duration::from_secs(600));
    api.add_token(
        "bootstrap",
        "system:bootstrap:abcdef",
        &["system:bootstrappers"],
    );
    let csrs: Api<k8s_openapi::api::certificates::v1::CertificateSigningRequest> =
        Api::all(api.client(&Identity::token("bootstrap")).await);

    // The kubelet's client CSR, made with rcgen as a node would.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:node:n1");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let csr: k8s_openapi::api::certificates::v1::CertificateSigningRequest =
        serde_json::from_value(json!({
            "metadata": {"name": "node-csr-1"},
            "spec": {
                "request": base64_std(&csr_pem),
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "usages": ["digital signature", "client auth"],
                "username": "someone-else"
            }
        }))
        .unwrap();
    let made = csrs.create(&PostParams::default(), &csr).await.unwrap();
    let spec = made.spec;
    assert_eq!(
        spec.username.as_deref(),
        Some("system:bootstrap:abcdef"),
        "requester recorded"
    );
    assert_eq!(spec.groups.unwrap(), ["system:bootstrappers"]);
    assert!(made.status.unwrap_or_default().certificate.is_none());

    api.approve_csr("node-csr-1");
    let got = csrs.get("node-csr-1").await.unwrap();
    let status = got.status.unwrap();
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Approved" && c.status == "True")
    );
    let cert_pem = String::from_utf8(status.certificate.unwrap().0).unwrap();

    // It parses, names the node, lives as configured and chains to the fixture CA.
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "system:node:n1"
    );
    let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!((600..=700).contains(&life), "lifetime {life}s");
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(api.ca_pem().as_bytes()).unwrap();
    let ca = ca_pem.parse_x509().unwrap();
    assert_eq!(cert.issuer(), ca.subject());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_pem.contents.clone().into()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    verifier
        .verify_client_cert(
            &pem.contents.clone().into(),
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .expect("signed certificate chains to the fixture CA");

    // And it authenticates as the node, from files as a kubelet keeps them.
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("client.crt"), dir.path().join("client.key"));
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    api.create(&node("n1"));
    let id = Identity::CertFiles {
        cert: cert_path,
        key: key_path,
    };
    Api::<Node>::all(api.client(&id).await)
        .get("n1")
        .await
        .unwrap();
    assert_eq!(api.requests().last().unwrap().user, "system:node:n1");

    // Auto-approval by rule; a denied CSR is never signed.
    api.auto_approve_csrs(CsrApproval {
        signer: Some("kubernetes.io/kube-apiserver-client-kubelet".into()),
        user: None,
    });
    let mut second = csr.clone();
    second.metadata.name = Some("node-csr-2".into());
    // As the real API server: less than ten minutes is invalid.
    second.spec.expiration_seconds = Some(300);
    match csrs.create(&PostParams::default(), &second).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 422, "{s:?}"),
        other => panic!("expirationSeconds 300 accepted: {other:?}"),
    }
    // Longer than the signer's maximum (600 s here): the maximum wins, as
    // --cluster-signing-duration does.
    second.spec.expiration_seconds = Some(700);
    csrs.create(&PostParams::default(), &second).await.unwrap();
    let signed = api
        .wait_for("auto-approved CSR signed", Duration::from_secs(5), |a| {
            a.csr("node-csr-2")?.status?.certificate
        })
        .await;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&signed.0).unwrap();
    let c = pem.parse_x509().unwrap();
    let life = c.validity().not_after.timestamp() - c.validity().not_before.timestamp();
    assert!(
        (600..=660).contains(&life),
        "the signer's maximum duration honoured: {life}s"
    );

    api.set_csr_signing(true);
    let mut third = csr.clone();
    third.metadata.name = Some("node-csr-3".into());
    third.spec.signer_name = "example.com/other".into();
    csrs.create(&PostParams::default(), &third).await.unwrap();
    api.deny_csr("node-csr-3");
    let c3 = api.csr("node-csr-3").unwrap().status.unwrap();
    assert!(c3.certificate.is_none());
    assert!(c3.conditions.unwrap().iter().any(|c| c.type_ == "Denied"));

    // Approval through the API's approval subresource: not by a node, by an approver.
    let mut fourth = csr.clone();
    fourth.metadata.name = Some("node-csr-4".into());
    fourth.spec.signer_name = "example.com/manual".into();
    csrs.create(&PostParams::default(), &fourth).await.unwrap();
    let approve = Patch::Merge(json!({"status": {"conditions": [
        {"type": "Approved", "status": "True", "reason": "Manual", "message": "ok"}
    ]}}));
    let as_node: Api<k8s_openapi::api::certificates::v1::CertificateSigningRequest> =
        Api::all(api.client(&Identity::node("n1")).await);
    let e = as_node
        .patch_approval("node-csr-4", &PatchParams::default(), &approve)
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (403, "Forbidden".into()));
    assert!(
        api.csr("node-csr-4")
            .unwrap()
            .status
            .unwrap()
            .certificate
            .is_none()
    );
    let as_admin: Api<k8s_openapi::api::certificates::v1::CertificateSigningRequest> =
        Api::all(api.client(&Identity::admin()).await);
    as_admin
        .patch_approval("node-csr-4", &PatchParams::default(), &approve)
        .await
        .unwrap();
    assert!(
        api.csr("node-csr-4")
            .unwrap()
            .status
            .unwrap()
            .certificate
            .is_some()
    );
}

#[tokio::test]
async fn injected_failures_reach_the_client() {
    let api = FakeApi::start();
    api.create(&node("n1"));
    api.create(&pod(NS, "p", "n1"));
    let client = api.client(&Identity::node("n1")).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    // kube retries 503 (and 429, 504) by itself: two injected 503s are absorbed, and the
    // log shows them.
    api.fail_next(2, 503);
    nodes.get("n1").await.unwrap();
    let answers: Vec<u16> = api
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/nodes/n1")
        .map(|r| r.status)
        .collect();
    assert_eq!(answers, [503, 503, 200]);
    // A client without that retry sees the 503.
    let mut cfg = api.config(&Identity::node("n1")).await;
    cfg.default_retry = false;
    let no_retry = Api::<Node>::all(kube::Client::try_from(cfg).unwrap());
    api.fail_next(1, 503);
    assert_eq!(
        status_of(no_retry.get("n1").await.unwrap_err()),
        (503, "ServiceUnavailable".into())
    );
    no_retry.get("n1").await.unwrap();

    // Path- and method-filtered failures until cleared.
    api.fail_matching(FailRule {
        method: Some("PATCH".into()),
        path_contains: Some("/status".into()),
        code: 500,
        remaining: None,
    });
    for _ in 0..2 {
        let e = pods
            .patch_status(
                "p",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running"}})),
            )
            .await
            .unwrap_err();
        assert_eq!(status_of(e), (500, "InternalError".into()));
    }
    pods.get("p").await.unwrap();
    api.clear_failures();
    pods.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    // 429 carries Retry-After: 1, which the client honours before retrying.
    api.fail_next(1, 429);
    let t = Instant::now();
    pods.get("p").await.unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    api.fail_next(1, 429);
    assert_eq!(
        status_of(no_retry.get("n1").await.unwrap_err()),
        (429, "TooManyRequests".into())
    );

    // Latency.
    api.set_latency(Duration::from_millis(300));
    let t = Instant::now();
    nodes.get("n1").await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    api.set_latency(Duration::ZERO);
    api.slow_matching(Some("GET"), "/api/v1/nodes/", Duration::from_millis(1000));
    let t = Instant::now();
    pods.get("p").await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    nodes.get("n1").await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    api.clear_failures();

    // An outage cuts open watches and refuses requests; the client recovers after it.
    let mut watch = pods
        .watch(
            &WatchParams::default()
                .fields("spec.nodeName=n1")
                .timeout(30),
            "0",
        )
        .await
        .unwrap()
        .boxed();
    match watch.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(p) => assert_eq!(p.metadata.name.as_deref(), Some("p")),
        other => panic!("{other:?}"),
    }
    api.set_outage(true);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match watch.try_next().await {
                Ok(Some(WatchEvent::Bookmark(_))) => continue,
                Ok(Some(other)) => panic!("unexpected {other:?}"),
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the watch ends when the server goes away");
    let t = Instant::now();
    let e = nodes.get("n1").await.unwrap_err();
    assert!(
        !matches!(e, kube::Error::Api(_)),
        "no answer, not an API status: {e:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "refused fast: {:?}",
        t.elapsed()
    );
    api.set_outage(false);
    nodes.get("n1").await.unwrap();

    // A blackholed server is never answered: only the client's own timeout ends the call.
    api.set_outage_mode(OutageMode::Blackhole);
    api.set_outage(true);
    let mut cfg = api.config(&Identity::node("n1")).await;
    cfg.connect_timeout = Some(Duration::from_millis(500));
    cfg.read_timeout = Some(Duration::from_millis(500));
    let impatient = Api::<Node>::all(kube::Client::try_from(cfg).unwrap());
    let t = Instant::now();
    let e = impatient.get("n1").await.unwrap_err();
    assert!(!matches!(e, kube::Error::Api(_)), "{e:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "{:?}",
        t.elapsed()
    );
    api.set_outage(false);
    impatient.get("n1").await.unwrap();
}

#[tokio::test]
async fn api_rules_forbid_with_403() {
    let api = FakeApi::start();
    api.create(&node("n1"));
    api.set_api_rules(Some(vec![
        AccessRule::allow("node reads itself")
            .user("system:node:n1")
            .verb("get")
            .resource("nodes")
            .name("n1"),
    ]));
    let client = api.client(&Identity::node("n1")).await;
    Api::<Node>::all(client.clone()).get("n1").await.unwrap();
    let e = Api::<Pod>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (403, "Forbidden".into()));
}

#[test]
fn usable_from_a_plain_test() {
    let api = FakeApi::start();
    api.create(&node("n1"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = rt.block_on(async {
        let nodes: Api<Node> = Api::all(api.client(&Identity::admin()).await);
        nodes.get("n1").await.unwrap().metadata.name.unwrap()
    });
    assert_eq!(name, "n1");
    api.wait_for_blocking("node", Duration::from_secs(1), |a| a.node("n1"));
    drop(api);
}

#[tokio::test]
async fn node_authorization_limits_a_kubelet_to_its_own_objects() {
    use k8s_openapi::api::core::v1::Secret;
    let api = FakeApi::start();
    let client = api.client(&Identity::node("n1")).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let all_pods: Api<Pod> = Api::all(client.clone());
    let forbidden = |r: Result<_, kube::Error>| status_of(r.map(|_: ()| ()).unwrap_err());
    let pp = PatchParams::default();
    let fb = (403, "Forbidden".to_string());

    // Nodes: its own, not another's.
    nodes
        .create(&PostParams::default(), &node("n1"))
        .await
        .unwrap();
    let e = nodes
        .create(&PostParams::default(), &node("n2"))
        .await
        .map(|_| ());
    assert_eq!(forbidden(e), fb);
    api.create(&node("n2"));
    let e = nodes
        .patch_status("n2", &pp, &Patch::Merge(json!({"status": {"phase": "x"}})))
        .await
        .map(|_| ());
    assert_eq!(forbidden(e), fb);
    nodes.get("n2").await.unwrap();

    // NodeRestriction on its own Node: no restricted labels, no taint changes.
    let label = |k: &str| Patch::Merge(json!({"metadata": {"labels": {k: "x"}}}));
    nodes
        .patch("n1", &pp, &label("example.com/team"))
        .await
        .unwrap();
    nodes
        .patch(
            "n1",
            &pp,
            &label("node.kubernetes.io/exclude-from-external-load-balancers"),
        )
        .await
        .unwrap();
    nodes
        .patch("n1", &pp, &label("topology.kubernetes.io/zone"))
        .await
        .unwrap();
    for k in [
        "node-role.kubernetes.io/worker",
        "node-restriction.kubernetes.io/pool",
        "kubernetes.io/role",
    ] {
        let e = nodes.patch("n1", &pp, &label(k)).await.map(|_| ());
        assert_eq!(forbidden(e), fb, "{k}");
    }
    let e = nodes
        .patch(
            "n1",
            &pp,
            &Patch::Merge(json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}})),
        )
        .await
        .map(|_| ());
    assert_eq!(forbidden(e), fb, "taints");
    let mut tainted = node("n3");
    tainted
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("node-role.kubernetes.io/control-plane".into(), "".into());
    let e = Api::<Node>::all(api.client(&Identity::node("n3")).await)
        .create(&PostParams::default(), &tainted)
        .await
        .map(|_| ());
    assert_eq!(forbidden(e), fb, "restricted label at registration");

    // Pods: list/watch only with its own selector; only pods bound to it.
    api.create(&pod(NS, "mine", "n1"));
    api.create(&pod(NS, "theirs", "n2"));
    let e = all_pods.list(&ListParams::default()).await.map(|_| ());
    assert_eq!(forbidden(e), fb);
    let e = all_pods
        .list(&ListParams::default().fields("spec.nodeName=n2"))
        .await
        .map(|_| ());
    assert_eq!(forbidden(e), fb);
    all_pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    pods.get("mine").await.unwrap();
    for name in ["theirs", "missing"] {
        assert_eq!(forbidden(pods.get(name).await.map(|_| ())), fb, "{name}");
    }
    let status = Patch::Merge(json!({"status": {"phase": "Running"}}));
    pods.patch_status("mine", &pp, &status).await.unwrap();
    let e = pods.patch_status("theirs", &pp, &status).await.map(|_| ());
    assert_eq!(forbidden(e), fb);
    let e = pods
        .patch(
            "mine",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .map(|_| ());
    assert_eq!(forbidden(e), fb);
    let e = pods
        .delete("theirs", &DeleteParams::default())
        .await
        .map(|_| ());
    assert_eq!(forbidden(e), fb);

    // Only mirror pods, bound to itself, owned by its Node, referencing no secrets.
    let e = pods
        .create(&PostParams::default(), &pod(NS, "plain", "n1"))
        .await
        .map(|_| ());
    assert_eq!(forbidden(e), fb);
    let n1_uid = api.node("n1").unwrap().metadata.uid.unwrap();
    let mirror = |name: &str, node: &str, extra: serde_json::Value| -> Pod {
        let mut v = json!({
            "metadata": {
                "name": name, "namespace": NS,
                "annotations": {"kubernetes.io/config.mirror": "hash", "kubernetes.io/config.source": "file"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": n1_uid, "controller": true}]
            },
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
        });
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    };
    pods.create(
        &PostParams::default(),
        &mirror("static-n1", "n1", json!({})),
    )
    .await
    .unwrap();
    let e = pods
        .create(
            &PostParams::default(),
            &mirror("static-n2", "n2", json!({})),
        )
        .await
        .map(|_| ());
    assert_eq!(forbidden(e), fb);
    for (what, owners) in [
        ("no owner", json!([])),
        (
            "wrong uid",
            json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "x", "controller": true}]),
        ),
        (
            "not controller",
            json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": n1_uid}]),
        ),
    ] {
        let mut p = mirror("static-o", "n1", json!({}));
        p.metadata.owner_references = serde_json::from_value(owners).unwrap();
        let e = pods.create(&PostParams::default(), &p).await.map(|_| ());
        assert_eq!(forbidden(e), fb, "{what}");
    }
    let with_secret = json!({"spec": {"volumes": [{"name": "s", "secret": {"secretName": "db"}}]}});
    let e = pods
        .create(
            &PostParams::default(),
            &mirror("static-s", "n1", with_secret),
        )
        .await
        .map(|_| ());
    assert_eq!(forbidden(e), fb);

    // Leases: its own in kube-node-lease.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = |n: &str| -> Lease {
        serde_json::from_value(json!({"metadata": {"name": n, "namespace": "kube-node-lease"}, "spec": {"holderIdentity": n}}))
            .unwrap()
    };
    leases
        .create(&PostParams::default(), &lease("n1"))
        .await
        .unwrap();
    let e = leases
        .create(&PostParams::default(), &lease("n2"))
        .await
        .map(|_| ());
    assert_eq!(forbidden(e), fb);

    // Secrets: only those a pod bound to it references.
    let secret = |n: &str| -> Secret {
        serde_json::from_value(
            json!({"metadata": {"name": n, "namespace": NS}, "stringData": {"k": "v"}}),
        )
        .unwrap()
    };
    api.create(&secret("db"));
    api.create(&secret("other"));
    let mut uses_db = pod(NS, "uses-db", "n1");
    uses_db.spec.as_mut().unwrap().volumes = Some(vec![
        serde_json::from_value(json!({"name": "s", "secret": {"secretName": "db"}})).unwrap(),
    ]);
    api.create(&uses_db);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let db = secrets.get("db").await.unwrap();
    assert_eq!(db.data.unwrap()["k"].0, b"v", "stringData stored as data");
    assert_eq!(forbidden(secrets.get("other").await.map(|_| ())), fb);

    // Off: the same list is allowed.
    api.set_node_authorization(false);
    all_pods.list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn malformed_writes_get_a_status_and_the_server_keeps_serving() {
    let api = FakeApi::start();
    api.create(&pod(NS, "p", "n1"));
    api.create(&node("n1"));
    let client = api.client(&Identity::admin()).await;
    let cases: &[(&str, &str, &str, &str, u16)] = &[
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/p/status",
            "application/merge-patch+json",
            r#"{"status":"x"}"#,
            422,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/p",
            "application/merge-patch+json",
            r#"{"metadata":"x"}"#,
            400,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/p/status",
            "application/strategic-merge-patch+json",
            r#"{"status":{"conditions":"x"}}"#,
            400,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/p/status",
            "application/strategic-merge-patch+json",
            r#"{"status":{"containerStatuses":[{"name":"c","restartCount":"many"}]}}"#,
            400,
        ),
        (
            "PATCH",
            "/api/v1/nodes/n1",
            "application/merge-patch+json",
            r#"[1,2]"#,
            400,
        ),
        (
            "PATCH",
            "/api/v1/nodes/n1",
            "application/json-patch+json",
            r#"{"op":"add"}"#,
            400,
        ),
        (
            "PATCH",
            "/api/v1/nodes/n1",
            "application/apply-patch+yaml",
            "metadata: {labels: {a: b}}",
            422,
        ),
        (
            "PUT",
            "/api/v1/nodes/n1",
            "application/json",
            r#"{"metadata":{"name":"other"}}"#,
            400,
        ),
        (
            "PUT",
            "/api/v1/nodes/n1",
            "application/yaml",
            "metadata: {name: n1}",
            415,
        ),
        (
            "POST",
            "/api/v1/nodes",
            "application/json",
            r#"{"metadata":{"name":"n2"},"spec":{"unschedulable":"yes"}}"#,
            400,
        ),
        ("POST", "/api/v1/nodes", "application/json", "null", 400),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            r#"{"metadata":{"name":"q","namespace":"other"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            r#"{"metadata":{"name":"q"},"spec":{"containers":[]}}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            r#"{"metadata":{"name":"q"},"spec":{"containers":[{"name":"c","image":"i"},{"name":"c","image":"i"}]}}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            r#"{"metadata":{"name":"q"},"spec":{"containers":[{"name":"C","image":"i"}]}}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            r#"{"metadata":{"name":"q"},"spec":{"containers":[{"name":"c"}]}}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/events",
            "application/json",
            r#"{"metadata":{"name":"e"},"involvedObject":{"kind":"Pod","name":"p","namespace":"other"}}"#,
            422,
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/pods/p",
            "application/json",
            "{",
            400,
        ),
        (
            "GET",
            "/api/v1/pods?fieldSelector=spec.nodeName",
            "",
            "",
            400,
        ),
        ("GET", "/api/v1/widgets", "", "", 404),
        ("GET", "/apis/coordination.k8s.io/v2/leases", "", "", 404),
        ("POST", "/api/v1/pods", "application/json", "{}", 404),
    ];
    for (method, path, ct, body, want) in cases {
        let mut req = http::Request::builder().method(*method).uri(*path);
        if !ct.is_empty() {
            req = req.header("content-type", *ct);
        }
        let req = req.body(body.as_bytes().to_vec()).unwrap();
        let e = client.request_text(req).await.unwrap_err();
        let (code, _) = status_of(e);
        assert_eq!(code, *want, "{method} {path} {body}");
    }
    // Still serving, and the pod is intact and decodes.
    let p = Api::<Pod>::namespaced(client, NS).get("p").await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
}

#[tokio::test]
async fn strategic_merge_directives_and_merge_keys() {
    let api = FakeApi::start();
    let nodes: Api<Node> = Api::all(api.client(&Identity::admin()).await);
    let pp = PatchParams::default();
    let mut n = node("n1");
    n.metadata.finalizers = Some(vec!["a".into()]);
    n.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "X", "name": "x1", "uid": "u1"}))
            .unwrap(),
    ]);
    api.create(&n);
    let smp = |v: serde_json::Value| Patch::Strategic(v);

    // Maps merge, null deletes; ownerReferences merge by uid; finalizers are a set.
    let n = nodes
        .patch(
            "n1",
            &pp,
            &smp(json!({"metadata": {
                "labels": {"kubernetes.io/hostname": null, "role": "w"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Y", "name": "y1", "uid": "u2"},
                                    {"uid": "u1", "name": "x1-renamed", "apiVersion": "v1", "kind": "X"}],
                "finalizers": ["b", "a"]
            }})),
        )
        .await
        .unwrap();
    let m = n.metadata;
    assert_eq!(
        m.labels.unwrap().into_iter().collect::<Vec<_>>(),
        [("role".to_string(), "w".to_string())]
    );
    let owners: Vec<(String, String)> = m
        .owner_references
        .unwrap()
        .into_iter()
        .map(|o| (o.uid, o.name))
        .collect();
    assert_eq!(
        owners,
        [
            ("u1".into(), "x1-renamed".into()),
            ("u2".into(), "y1".into())
        ]
    );
    assert_eq!(m.finalizers.unwrap(), ["a", "b"]);

    // $deleteFromPrimitiveList, element $patch: delete, list $patch: replace.
    nodes
        .patch_status(
            "n1",
            &pp,
            &smp(json!({"status": {"conditions": [
                {"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}
            ], "addresses": [{"type": "Hostname", "address": "n1"}]}})),
        )
        .await
        .unwrap();
    let n = nodes
        .patch(
            "n1",
            &pp,
            &smp(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})),
        )
        .await
        .unwrap();
    assert_eq!(n.metadata.finalizers.unwrap(), ["b"]);
    let n = nodes
        .patch_status(
            "n1",
            &pp,
            &smp(json!({"status": {"conditions": [{"type": "DiskPressure", "$patch": "delete"}]}})),
        )
        .await
        .unwrap();
    let types: Vec<String> = n
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert_eq!(types, ["Ready"]);
    let n = nodes
        .patch_status(
            "n1",
            &pp,
            &smp(json!({"status": {"addresses": [
                {"$patch": "replace"}, {"type": "InternalIP", "address": "127.0.0.1"}
            ]}})),
        )
        .await
        .unwrap();
    let addrs: Vec<String> = n
        .status
        .unwrap()
        .addresses
        .unwrap()
        .into_iter()
        .map(|a| a.type_)
        .collect();
    assert_eq!(addrs, ["InternalIP"]);

    // Lists without a merge key (taints) are replaced whole, as in the real API.
    nodes
        .patch(
            "n1",
            &pp,
            &smp(json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}})),
        )
        .await
        .unwrap();
    let n = nodes
        .patch(
            "n1",
            &pp,
            &smp(json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}})),
        )
        .await
        .unwrap();
    let taints: Vec<String> = n
        .spec
        .unwrap()
        .taints
        .unwrap()
        .into_iter()
        .map(|t| t.key)
        .collect();
    assert_eq!(taints, ["b"]);
}

#[tokio::test]
async fn bounded_history_expires_old_watch_starts_and_events_v1_work() {
    let api = FakeApi::start();
    api.set_history_limit(3);
    let client = api.client(&Identity::admin()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let start = api.resource_version().to_string();
    for i in 0..5 {
        api.create(&pod(NS, &format!("p{i}"), "n1"));
    }
    // The start point fell out of the 3-change window: 410 as an ERROR event.
    let mut w = pods
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    match w.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
    // Inside the window: the missed changes are replayed in order.
    let from = (api.resource_version() - 2).to_string();
    let mut w = pods
        .watch(&WatchParams::default().timeout(5), &from)
        .await
        .unwrap()
        .boxed();
    let mut names = Vec::new();
    while names.len() < 2 {
        if let WatchEvent::Added(p) = w.try_next().await.unwrap().unwrap() {
            names.push(p.metadata.name.unwrap());
        }
    }
    assert_eq!(names, ["p3", "p4"]);

    // events.k8s.io/v1 is served too, apart from core events.
    let ev: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, NS);
    let e: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "e1"},
        "eventTime": "2026-11-22T23:00:00.000000Z",
        "reportingController": "ironlet", "reportingInstance": "n1",
        "action": "Started", "reason": "Started", "type": "Normal",
        "regarding": {"kind": "Pod", "name": "p1", "namespace": NS}
    }))
    .unwrap();
    ev.create(&PostParams::default(), &e).await.unwrap();
    assert_eq!(
        ev.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    assert!(api.events(Some(NS)).is_empty(), "core events are separate");
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    let api = FakeApi::start();
    for i in 0..5 {
        api.create(&pod(NS, &format!("p{i}"), "n1"));
    }
    api.create(&pod(NS, "elsewhere", "n2"));
    let pods: Api<Pod> = Api::all(api.client(&Identity::node("n1")).await);
    let lp = ListParams::default().fields("spec.nodeName=n1").limit(2);
    let first = pods.list(&lp).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().unwrap();
    let second = pods.list(&lp.clone().continue_token(&token)).await.unwrap();
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    let third = pods
        .list(
            &lp.clone()
                .continue_token(second.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert!(third.metadata.continue_.is_none());
    let names: Vec<String> = [first.items, second.items, third.items]
        .concat()
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"]);

    // kube-runtime's watcher pages through the initial list.
    let cfg = kube::runtime::watcher::Config::default()
        .fields("spec.nodeName=n1")
        .page_size(2);
    let mut w = kube::runtime::watcher(pods.clone(), cfg).boxed();
    let mut seen = Vec::new();
    watcher_until(&mut w, "InitDone", &mut seen).await;
    assert_eq!(seen.len(), 7, "{seen:?}");

    // A token from before compaction has expired.
    api.compact();
    let e = pods.list(&lp.continue_token(&token)).await.unwrap_err();
    assert_eq!(status_of(e), (410, "Expired".into()));
}
