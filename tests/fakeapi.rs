//! The fake API server fixture (tests/support/fakeapi), proven with the real kube client:
//! if these pass, a component that works against the fixture talks the API's real protocol.

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
    let mut cfg = api.config(&Identity::token("x")).await;
    cfg.auth_info = Default::default();
    cfg.auth_info.client_certificate_data = Some(base64_std(&cert));
    cfg.auth_info.client_key_data = Some(base64_std(&key).into());
    let foreign = kube::Client::try_from(cfg).unwrap();
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

    // An unsupported field is refused as by the real API.
    let e = pods
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
    let p = pods
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
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = pods
        .watch(&WatchParams::default().timeout(10), &rv)
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
    pods.delete("u", &DeleteParams::default()).await.unwrap();
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
    assert_eq!(api.token_reviews().len(), 2);
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
