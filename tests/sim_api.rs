//! The simulated API server over real loopback sockets, driven by kube-rs exactly as the cockpit
//! drives a real cluster: paging, selectors, watch/reflector recovery, conflicts, patches,
//! eviction against PodDisruptionBudgets, RBAC for the viewer identity, Status errors, faults and
//! port-forward.
//!
//! Every test creates its own namespaces and objects (the world's seed is not relied upon).
#![cfg(feature = "sim")] // drives the simulated cluster
#![allow(clippy::disallowed_methods)] // tests drive the API directly to set up and check scenarios

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, EvictParams, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use cutover::sim::{Fault, Sim, SimOptions};

const WAIT: Duration = Duration::from_secs(60);

async fn start() -> Sim {
    Sim::start(SimOptions::default()).await.expect("sim starts")
}

async fn config(sim: &Sim, context: &str) -> kube::Config {
    let kc = Kubeconfig::read_from(&sim.kubeconfig).expect("kubeconfig readable");
    let opts = KubeConfigOptions { context: Some(context.into()), ..Default::default() };
    kube::Config::from_custom_kubeconfig(kc, &opts).await.expect("kubeconfig valid")
}

/// A client without kube-rs' automatic retries of 429/503, so that those answers are visible.
async fn client_no_retry(sim: &Sim, context: &str) -> kube::Client {
    let mut cfg = config(sim, context).await;
    cfg.default_retry = false;
    kube::Client::try_from(cfg).expect("client")
}

async fn admin(sim: &Sim) -> kube::Client {
    client_no_retry(sim, "sim").await
}

/// The API server alone (no world controllers), for tests of API semantics on pods, nodes, PDBs
/// and CRDs that the world's kubelet, scheduler, PDB controller and seed would otherwise act on.
struct Bare {
    client: kube::Client,
    shared: Arc<cutover::sim::SimShared>,
    server: tokio::task::JoinHandle<()>,
    _dir: cutover::sim::TempDir,
}

impl Drop for Bare {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn bare(relay: Option<std::net::SocketAddr>) -> Bare {
    let mut rng = fastrand::Rng::with_seed(7);
    let relay_addr = std::sync::OnceLock::new();
    if let Some(a) = relay {
        let _ = relay_addr.set(a);
    }
    let shared = Arc::new(cutover::sim::SimShared {
        store: cutover::sim::Store::default(),
        faults: tokio::sync::watch::channel(cutover::sim::ActiveFaults::default()).0,
        topology: tokio::sync::watch::channel(cutover::sim::Topology::default()).0,
        requests: Default::default(),
        tokens: cutover::sim::Tokens::random(&mut rng),
        seed: 7,
        speed: 1.0,
        relay_addr,
        api_ca_pem: std::sync::OnceLock::new(),
        volumes: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = cutover::sim::api::serve(listener, shared.clone());
    let dir = cutover::sim::TempDir::new().expect("tmp");
    let path = dir.path.join("kubeconfig");
    cutover::sim::write_kubeconfig(&path, &format!("http://{addr}"), &shared.tokens).expect("kubeconfig");
    let kc = Kubeconfig::read_from(&path).expect("read");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    cfg.default_retry = false;
    let client = kube::Client::try_from(cfg).expect("client");
    Bare { client, shared, server, _dir: dir }
}

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("namespace created");
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// A raw request through the client's transport (auth included); returns code and body.
async fn raw(client: &kube::Client, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(kube::client::Body::from(body))
        .expect("request");
    let resp = client.send(req).await.expect("transport ok");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)})))
}

async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})).expect("cm")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_and_selects() {
    let sim = start().await;
    let client = admin(&sim).await;
    namespace(&client, "t-list").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "t-list");
    for i in 0..7 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        cms.create(&PostParams::default(), &cm(&format!("c{i}"), json!({"tier": tier, "n": i.to_string()})))
            .await
            .expect("create");
    }
    let mut names = Vec::new();
    let mut pages = 0;
    let mut rv = None;
    let mut lp = ListParams::default().limit(2);
    loop {
        let page = cms.list(&lp).await.expect("page");
        pages += 1;
        assert!(page.items.len() <= 2);
        // Every page comes from the same snapshot.
        let page_rv = page.metadata.resource_version.clone();
        assert!(rv.is_none() || rv == page_rv, "consistent snapshot");
        rv = page_rv;
        names.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
        if pages == 1 {
            // Changes after the first page do not show up in later pages.
            cms.create(&PostParams::default(), &cm("c9", json!({}))).await.expect("create during paging");
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = ListParams::default().limit(2).continue_token(&c),
            None => break,
        }
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
    assert_eq!(pages, 4);

    let sel = |s: &str| {
        let cms = cms.clone();
        let s = s.to_string();
        async move {
            let l = cms.list(&ListParams::default().labels(&s)).await.expect("selector list");
            l.items.into_iter().filter_map(|c| c.metadata.name).collect::<Vec<_>>()
        }
    };
    assert_eq!(sel("tier=odd").await, ["c1", "c3", "c5"]);
    assert_eq!(sel("tier!=odd,tier").await, ["c0", "c2", "c4", "c6"]);
    assert_eq!(sel("n in (1,2),tier==even").await, ["c2"]);
    // `notin` also selects objects without the label, as on a real server.
    assert_eq!(sel("n notin (0,1,2,3,4,5),!missing").await, ["c6", "c9"]);
    assert_eq!(sel("!tier").await, ["c9"]);
    let by_name = cms.list(&ListParams::default().fields("metadata.name=c4")).await.expect("field list");
    assert_eq!(by_name.items.len(), 1);
    let not_name = cms.list(&ListParams::default().fields("metadata.name!=c4")).await.expect("field list");
    assert_eq!(not_name.items.len(), 7);
    let bad = cms.list(&ListParams::default().labels("tier in (")).await.expect_err("bad selector");
    assert_eq!(api_code(&bad), Some(400));
    let bad = cms.list(&ListParams::default().fields("spec.nodeName=x")).await.expect_err("unsupported field");
    assert_eq!(api_code(&bad), Some(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_field_selectors() {
    let b = bare(None).await;
    let client = b.client.clone();
    namespace(&client, "t-list").await;
    // Pods by node and phase, across namespaces (what kubectl drain asks).
    let pods: Api<Pod> = Api::namespaced(client.clone(), "t-list");
    for (name, node) in [("p1", "n1"), ("p2", "n2"), ("p3", "n1")] {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}}))
        .expect("pod");
        pods.create(&PostParams::default(), &p).await.expect("pod created");
    }
    let all: Api<Pod> = Api::all(client.clone());
    let on_n1 =
        all.list(&ListParams::default().fields("spec.nodeName=n1,metadata.namespace=t-list")).await.expect("list");
    let names: Vec<_> = on_n1.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, ["p1", "p3"]);
    let pending = all.list(&ListParams::default().fields("status.phase=Pending,metadata.namespace=t-list")).await;
    assert_eq!(pending.expect("list").items.len(), 3, "created pods start Pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_follows_changes_and_recovers_after_410() {
    let sim = start().await;
    let client = admin(&sim).await;
    namespace(&client, "t-watch").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "t-watch");
    cms.create(&PostParams::default(), &cm("before", json!({}))).await.expect("create");

    let (reader, writer) = reflector::store::<ConfigMap>();
    // No bookmarks: the watcher's resourceVersion then stays at its last own event, so that a
    // compaction makes its re-watch answer 410.
    let stream = reflector(writer, watcher(cms.clone(), watcher::Config::default().disable_bookmarks()))
        .default_backoff()
        .touched_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    let has = |name: &'static str, want: Option<&'static str>| {
        let reader = reader.clone();
        move || {
            let reader = reader.clone();
            async move {
                let got = reader.state().into_iter().find(|c| c.metadata.name.as_deref() == Some(name));
                match want {
                    None => got.is_none(),
                    Some(v) => {
                        got.and_then(|c| c.data.as_ref().and_then(|d| d.get("k").cloned())).as_deref() == Some(v)
                    }
                }
            }
        }
    };
    wait_for("initial list", has("before", Some("v"))).await;
    cms.create(&PostParams::default(), &cm("a", json!({}))).await.expect("create");
    wait_for("ADDED", has("a", Some("v"))).await;
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "w"}}))).await.expect("patch");
    wait_for("MODIFIED", has("a", Some("w"))).await;
    cms.delete("before", &DeleteParams::default()).await.expect("delete");
    wait_for("DELETED", has("before", None)).await;

    // Move the cluster's resourceVersion on without touching configmaps, compact, cut watches:
    // the watcher must relist.
    let lists_before = list_calls(&sim, "/api/v1/namespaces/t-watch/configmaps");
    namespace(&client, "t-watch-other").await;
    sim.inject(&Fault::ExpireResourceVersions);
    sim.inject(&Fault::CutWatches);
    cms.create(&PostParams::default(), &cm("after", json!({}))).await.expect("create");
    wait_for("object created after the relist", has("after", Some("v"))).await;
    wait_for("a relist", || async { list_calls(&sim, "/api/v1/namespaces/t-watch/configmaps") > lists_before }).await;
    task.abort();
}

fn list_calls(sim: &Sim, path: &str) -> usize {
    sim.requests().iter().filter(|r| r.verb == "list" && r.path == path && r.code == 200).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stream_semantics() {
    let sim = start().await;
    let client = admin(&sim).await;
    namespace(&client, "t-ws").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "t-ws");
    let first = cms.create(&PostParams::default(), &cm("one", json!({"app": "x"}))).await.expect("create");
    let rv = first.metadata.resource_version.clone().expect("rv");

    // From a resourceVersion: only later events, and bookmarks when asked.
    let wp = WatchParams::default().timeout(60);
    let mut stream = cms.watch(&wp, &rv).await.expect("watch").boxed();
    cms.create(&PostParams::default(), &cm("two", json!({"app": "y"}))).await.expect("create");
    let mut saw_added = false;
    let mut saw_bookmark = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(saw_added && saw_bookmark) {
        let ev = tokio::time::timeout_at(deadline, stream.try_next()).await.expect("event in time").expect("ok");
        match ev.expect("stream open") {
            WatchEvent::Added(c) => {
                assert_eq!(c.metadata.name.as_deref(), Some("two"), "nothing before the resourceVersion");
                saw_added = true;
            }
            WatchEvent::Bookmark(b) => {
                assert!(b.metadata.resource_version.parse::<u64>().is_ok());
                saw_bookmark = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    // A label-selected watch sees an object leave its selector as DELETED.
    let mut sel = cms.watch(&WatchParams::default().labels("app=x").timeout(60), "0").await.expect("watch").boxed();
    let ev = tokio::time::timeout(WAIT, sel.try_next()).await.expect("in time").expect("ok").expect("open");
    assert!(matches!(ev, WatchEvent::Added(ref c) if c.metadata.name.as_deref() == Some("one")), "initial ADDED");
    cms.patch("one", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "z"}}})))
        .await
        .expect("relabel");
    let ev = tokio::time::timeout(WAIT, sel.try_next()).await.expect("in time").expect("ok").expect("open");
    assert!(matches!(ev, WatchEvent::Deleted(_)), "left the selector: {ev:?}");

    // Too old a resourceVersion: the stream opens and carries a 410 ERROR event.
    sim.inject(&Fault::ExpireResourceVersions);
    let mut old = cms.watch(&WatchParams::default(), "1").await.expect("watch opens").boxed();
    let ev = tokio::time::timeout(WAIT, old.try_next()).await.expect("in time").expect("ok").expect("open");
    match ev {
        WatchEvent::Error(s) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }

    // timeoutSeconds ends the stream cleanly.
    let mut short = cms.watch(&WatchParams::default().timeout(1), &rv).await.expect("watch").boxed();
    let end = tokio::time::timeout(WAIT, async {
        while let Some(ev) = short.try_next().await.expect("clean end") {
            drop(ev);
        }
    })
    .await;
    assert!(end.is_ok(), "stream ended after timeoutSeconds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_patches() {
    let b = bare(None).await;
    let client = b.client.clone();
    namespace(&client, "t-patch").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "t-patch");
    let c = cms.create(&PostParams::default(), &cm("c", json!({}))).await.expect("create");
    let dup = cms.create(&PostParams::default(), &cm("c", json!({}))).await.expect_err("duplicate");
    assert_eq!(api_code(&dup), Some(409));
    let mut fresh = c.clone();
    fresh.data = Some([("k".to_string(), "new".to_string())].into());
    cms.replace("c", &PostParams::default(), &fresh).await.expect("replace with current rv");
    let stale = cms.replace("c", &PostParams::default(), &fresh).await.expect_err("stale rv");
    match &stale {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(s.message.contains("the object has been modified"));
        }
        other => panic!("{other:?}"),
    }

    // Strategic merge: kubectl cordon / uncordon.
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "t-patch-node", "labels": {"a": "1"}},
        "spec": {"taints": [{"key": "x", "effect": "NoSchedule"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
    .expect("node");
    nodes.create(&PostParams::default(), &node).await.expect("node created");
    let n = nodes
        .patch("t-patch-node", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"unschedulable": true}})))
        .await
        .expect("cordon");
    assert_eq!(n.spec.as_ref().and_then(|s| s.unschedulable), Some(true));
    assert_eq!(n.spec.as_ref().and_then(|s| s.taints.as_ref()).map(Vec::len), Some(1), "rest of spec kept");
    assert!(n.status.is_some(), "node status kept on create and patch");
    let n = nodes
        .patch("t-patch-node", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"unschedulable": null}})))
        .await
        .expect("uncordon");
    assert_eq!(n.spec.as_ref().and_then(|s| s.unschedulable), None);
    // Main-resource patches do not change status (nodes have a status subresource) …
    let n = nodes
        .patch("t-patch-node", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Gone"}})))
        .await
        .expect("merge patch");
    assert_eq!(n.status.as_ref().and_then(|s| s.phase.clone()), None);
    // … the status subresource does, and only status.
    let n = nodes
        .patch_status(
            "t-patch-node",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}, "spec": {"unschedulable": true}})),
        )
        .await
        .expect("status patch");
    assert_eq!(n.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running"));
    assert_eq!(n.spec.as_ref().and_then(|s| s.unschedulable), None);
    // JSON patch, with a failing test op → 422.
    let n = nodes
        .patch(
            "t-patch-node",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "add", "path": "/metadata/labels/b", "value": "2"}]))
                    .expect("patch"),
            ),
        )
        .await
        .expect("json patch");
    assert_eq!(n.metadata.labels.as_ref().and_then(|l| l.get("b")).map(String::as_str), Some("2"));
    let e = nodes
        .patch(
            "t-patch-node",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "test", "path": "/metadata/labels/b", "value": "9"}]))
                    .expect("patch"),
            ),
        )
        .await
        .expect_err("failed test op");
    assert_eq!(api_code(&e), Some(422));
    // Server-side apply (treated as a merge) needs a field manager.
    let applied = cms
        .patch(
            "applied",
            &PatchParams::apply("t"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"x": "1"}})),
        )
        .await
        .expect("apply creates");
    assert_eq!(applied.data.as_ref().and_then(|d| d.get("x")).map(String::as_str), Some("1"));
    // Dry run changes nothing.
    let dry = PatchParams { dry_run: true, ..Default::default() };
    cms.patch("applied", &dry, &Patch::Merge(json!({"data": {"x": "2"}}))).await.expect("dry run");
    assert_eq!(cms.get("applied").await.expect("get").data.and_then(|d| d.get("x").cloned()).as_deref(), Some("1"));

    // Argo CD Applications: served only with their CRD; status through the main resource;
    // no strategic merge for custom resources.
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "applications");
    namespace(&client, "t-argo").await;
    let apps: Api<DynamicObject> = Api::namespaced_with(client.clone(), "t-argo", &ar);
    let missing = apps.list(&ListParams::default()).await.expect_err("no CRD yet");
    assert_eq!(api_code(&missing), Some(404));
    let crd_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    );
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &crd_ar);
    let crd: DynamicObject = serde_json::from_value(json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "applications.argoproj.io"},
        "spec": {"group": "argoproj.io", "names": {"kind": "Application", "plural": "applications"}, "scope": "Namespaced",
                 "versions": [{"name": "v1alpha1", "served": true, "storage": true}]}}))
    .expect("crd");
    crds.create(&PostParams::default(), &crd).await.expect("crd created");
    let app: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "cilium"}, "spec": {"project": "default"}, "status": {"sync": {"status": "OutOfSync"}}}))
        .expect("app");
    apps.create(&PostParams::default(), &app).await.expect("app created");
    let got = apps
        .patch("cilium", &PatchParams::default(), &Patch::Merge(json!({"status": {"health": {"status": "Healthy"}}})))
        .await
        .expect("merge patch on a CR");
    assert_eq!(got.data["status"]["sync"]["status"], "OutOfSync", "status kept on create (no status subresource)");
    assert_eq!(got.data["status"]["health"]["status"], "Healthy");
    let e = apps
        .patch("cilium", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"project": "x"}})))
        .await
        .expect_err("no SMP for CRs");
    assert_eq!(api_code(&e), Some(415));
}

fn pod_json(name: &str, labels: Value, ready: bool) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": "t-evict-node", "terminationGracePeriodSeconds": 30,
                 "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}))
    .expect("pod")
}

async fn running_pod(pods: &Api<Pod>, name: &str, labels: Value) {
    let p = pod_json(name, labels, true);
    pods.create(&PostParams::default(), &p).await.expect("pod created");
    let status = json!({"status": serde_json::to_value(&p.status).expect("status")});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.expect("pod status");
}

async fn pdb(pdbs: &Api<PodDisruptionBudget>, name: &str, app: &str, allowed: i32) {
    let spec = if allowed > 0 { json!({"maxUnavailable": allowed}) } else { json!({"maxUnavailable": 0}) };
    let mut obj = json!({"metadata": {"name": name}, "spec": spec});
    obj["spec"]["selector"] = json!({"matchLabels": {"app": app}});
    let p: PodDisruptionBudget = serde_json::from_value(obj).expect("pdb");
    pdbs.create(&PostParams::default(), &p).await.expect("pdb created");
    let status = json!({"status": {"disruptionsAllowed": allowed, "currentHealthy": 2, "desiredHealthy": 2 - allowed, "expectedPods": 2}});
    pdbs.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.expect("pdb status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_honours_disruption_budgets() {
    let b = bare(None).await;
    let client = b.client.clone();
    namespace(&client, "t-evict").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "t-evict");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "t-evict");
    running_pod(&pods, "web-1", json!({"app": "web"})).await;
    running_pod(&pods, "web-2", json!({"app": "web"})).await;
    running_pod(&pods, "db-1", json!({"app": "db"})).await;
    running_pod(&pods, "both-1", json!({"app": "both", "tier": "x"})).await;
    running_pod(&pods, "free-1", json!({"app": "free"})).await;
    pdb(&pdbs, "web", "web", 1).await;
    pdb(&pdbs, "db", "db", 0).await;
    pdb(&pdbs, "both-a", "both", 1).await;
    let two: PodDisruptionBudget = serde_json::from_value(
        json!({"metadata": {"name": "both-b"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"tier": "x"}}}}),
    )
    .expect("pdb");
    pdbs.create(&PostParams::default(), &two).await.expect("second pdb");

    // Allowed: 201 Success, the pod terminates gracefully, the budget is spent.
    let st = pods.evict("web-1", &EvictParams::default()).await.expect("eviction allowed");
    assert_eq!(st.code, 201);
    let p = pods.get("web-1").await.expect("pod still terminating");
    assert!(p.metadata.deletion_timestamp.is_some());
    let budget = pdbs.get("web").await.expect("pdb");
    let status = budget.status.expect("pdb status");
    assert_eq!(status.disruptions_allowed, 0);
    assert!(status.disrupted_pods.is_some_and(|d| d.contains_key("web-1")));
    // Already terminating: allowed again.
    pods.evict("web-1", &EvictParams::default()).await.expect("terminating pod");
    // Budget exhausted: 429 with the real body.
    for name in ["web-2", "db-1"] {
        let e = pods.evict(name, &EvictParams::default()).await.expect_err("budget exhausted");
        let kube::Error::Api(s) = e else { panic!("{e:?}") };
        assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests"));
        assert_eq!(s.message, "Cannot evict pod as it would violate the pod's disruption budget.");
        let causes = s.details.expect("details").causes;
        assert_eq!(causes[0].reason, "DisruptionBudget");
    }
    // Two budgets: 500.
    let e = pods.evict("both-1", &EvictParams::default()).await.expect_err("two pdbs");
    let kube::Error::Api(s) = e else { panic!("{e:?}") };
    assert_eq!(s.code, 500);
    assert!(s.message.contains("This pod has more than one PodDisruptionBudget"));
    // No budget: allowed; a missing pod is 404.
    // (kube-rs 5 serializes `EvictParams::delete_options` as `delete_options`, which a real
    // server ignores, and so does the sim: send the Eviction body kubectl sends.)
    let body = br#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"free-1","namespace":"t-evict"},"deleteOptions":{"gracePeriodSeconds":0}}"#;
    let (code, st) =
        raw(&client, "POST", "/api/v1/namespaces/t-evict/pods/free-1/eviction", "application/json", body.to_vec())
            .await;
    assert_eq!((code, st["status"].as_str()), (201, Some("Success")));
    assert_eq!(api_code(&pods.get("free-1").await.expect_err("grace 0 deletes now")), Some(404));
    assert_eq!(api_code(&pods.evict("nope", &EvictParams::default()).await.expect_err("missing")), Some(404));
    // The PdbBlocking fault makes a budget refuse.
    running_pod(&pods, "api-1", json!({"app": "api"})).await;
    pdb(&pdbs, "api", "api", 1).await;
    b.shared.inject(&Fault::PdbBlocking { namespace: "t-evict".into(), name: "api".into() });
    let e = pods.evict("api-1", &EvictParams::default()).await.expect_err("blocked");
    assert_eq!(api_code(&e), Some(429));
    b.shared.inject(&Fault::Clear);
    pods.evict("api-1", &EvictParams::default()).await.expect("unblocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_reads_but_cannot_write() {
    let sim = start().await;
    let client = admin(&sim).await;
    namespace(&client, "t-rbac").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "t-rbac");
    cms.create(&PostParams::default(), &cm("c", json!({}))).await.expect("create");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "t-rbac");
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .expect("pod");
    pods.create(&PostParams::default(), &p).await.expect("pod created");

    let viewer = client_no_retry(&sim, "sim-viewer").await;
    let vcms: Api<ConfigMap> = Api::namespaced(viewer.clone(), "t-rbac");
    assert_eq!(vcms.list(&ListParams::default()).await.expect("viewer lists").items.len(), 1);
    let mut w = vcms.watch(&WatchParams::default().timeout(30), "0").await.expect("viewer watches").boxed();
    let ev = tokio::time::timeout(WAIT, w.try_next()).await.expect("in time").expect("ok");
    assert!(matches!(ev, Some(WatchEvent::Added(_))));
    let forbidden = |e: kube::Error| match e {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
            s.message
        }
        other => panic!("{other:?}"),
    };
    forbidden(vcms.create(&PostParams::default(), &cm("d", json!({}))).await.expect_err("create"));
    forbidden(vcms.patch("c", &PatchParams::default(), &Patch::Merge(json!({}))).await.expect_err("patch"));
    forbidden(vcms.delete("c", &DeleteParams::default()).await.expect_err("delete"));
    let vpods: Api<Pod> = Api::namespaced(viewer.clone(), "t-rbac");
    let msg = forbidden(vpods.evict("p", &EvictParams::default()).await.expect_err("evict"));
    assert_eq!(
        msg,
        "pods \"p\" is forbidden: User \"system:serviceaccount:cutover:viewer\" cannot create resource \"pods/eviction\" in API group \"\" in the namespace \"t-rbac\""
    );
    assert!(vpods.portforward("p", &[4245]).await.is_err(), "no port-forward for the viewer");
    assert!(pods.get("p").await.expect("still there").metadata.deletion_timestamp.is_none());

    // Access reviews tell each identity the truth.
    let review = |verb: &str, sub: Option<&str>| SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                resource: Some("pods".into()),
                subresource: sub.map(Into::into),
                namespace: Some("t-rbac".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let ask = |c: &kube::Client, r: SelfSubjectAccessReview| {
        let api: Api<SelfSubjectAccessReview> = Api::all(c.clone());
        async move { api.create(&PostParams::default(), &r).await.expect("review").status.expect("status").allowed }
    };
    assert!(!ask(&viewer, review("create", Some("eviction"))).await);
    assert!(ask(&viewer, review("list", None)).await);
    assert!(ask(&client, review("create", Some("eviction"))).await);
    // Reviews are not mutating; the viewer sent nothing that changed the cluster.
    let viewer_mutations: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.identity == Some(cutover::sim::Identity::Viewer) && r.is_mutating() && r.code < 400)
        .collect();
    assert!(viewer_mutations.is_empty(), "{viewer_mutations:?}");
    assert!(sim.requests().iter().any(|r| r.verb == "review" && r.code == 201));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_status_objects_and_the_server_keeps_serving() {
    let sim = start().await;
    let client = admin(&sim).await;
    namespace(&client, "t-err").await;
    let base = "/api/v1/namespaces/t-err/configmaps";
    let (code, body) = raw(&client, "POST", base, "application/json", b"{not json".to_vec()).await;
    assert_eq!(code, 400);
    assert_eq!(
        (body["kind"].as_str(), body["status"].as_str(), body["code"].as_u64()),
        (Some("Status"), Some("Failure"), Some(400))
    );
    assert_eq!(body["reason"], "BadRequest");
    let (code, _) = raw(&client, "GET", base, "application/json", vec![]).await;
    assert_eq!(code, 200, "still serving after a bad request");
    let (code, body) = raw(&client, "GET", "/api/v1/widgets", "application/json", vec![]).await;
    assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")));
    let (code, body) = raw(&client, "GET", &format!("{base}/nope"), "application/json", vec![]).await;
    assert_eq!((code, body["message"].as_str()), (404, Some("configmaps \"nope\" not found")));
    let (code, _) = raw(&client, "PUT", base, "application/json", b"{}".to_vec()).await;
    assert_eq!(code, 405);
    let (code, body) = raw(&client, "POST", base, "application/json", vec![b' '; 4 * 1024 * 1024]).await;
    assert_eq!((code, body["reason"].as_str()), (413, Some("RequestEntityTooLarge")));
    let (code, body) =
        raw(&client, "POST", base, "application/json", br#"{"metadata":{"name":"Bad_Name"}}"#.to_vec()).await;
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));
    let (code, _) = raw(&client, "POST", base, "application/json", br#"{"metadata":{"name":"ok"}}"#.to_vec()).await;
    assert_eq!(code, 201);
    let (code, body) = raw(&client, "PATCH", &format!("{base}/ok"), "text/plain", b"{}".to_vec()).await;
    assert_eq!((code, body["reason"].as_str()), (415, Some("UnsupportedMediaType")));
    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/t-missing/configmaps",
        "application/json",
        br#"{"metadata":{"name":"x"}}"#.to_vec(),
    )
    .await;
    assert_eq!((code, body["message"].as_str()), (404, Some("namespaces \"t-missing\" not found")));

    // No token: 401 (version stays public).
    let anon = kube::Client::try_from(kube::Config::new(sim.api_url().parse().expect("url"))).expect("client");
    let (code, body) = raw(&anon, "GET", "/api/v1/namespaces", "application/json", vec![]).await;
    assert_eq!((code, body["reason"].as_str()), (401, Some("Unauthorized")));
    let (code, body) = raw(&anon, "GET", "/version", "application/json", vec![]).await;
    assert_eq!((code, body["gitVersion"].as_str()), (200, Some("v1.32.6+k3s1")));

    // The request log has verbs and codes, never tokens.
    let log = sim.requests();
    assert!(log.iter().any(|r| r.verb == "create" && r.code == 400 && r.path == base));
    assert!(log.iter().any(|r| r.verb == "list" && r.code == 200 && r.path == base));
    assert!(log.iter().any(|r| r.code == 401 && r.identity.is_none()));
    let dump = serde_json::to_string(&log).expect("json");
    assert!(!dump.contains(&sim.shared.tokens.admin) && !dump.contains("sim-admin."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_down_is_visible_then_recovers() {
    let sim = start().await;
    let client = admin(&sim).await;
    // Through the control surface, as a scenario script would.
    let (code, _) = raw(
        &client,
        "POST",
        "/simulator/v1/faults",
        "application/json",
        br#"{"fault":"api-down","seconds":2}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 200);
    let nodes: Api<Node> = Api::all(client.clone());
    let e = nodes.list(&ListParams::default()).await.expect_err("api down");
    assert_eq!(api_code(&e), Some(503));
    wait_for("API back", || {
        let nodes = nodes.clone();
        async move { nodes.list(&ListParams::default()).await.is_ok() }
    })
    .await;
    // The control surface is admin-only.
    let viewer = client_no_retry(&sim, "sim-viewer").await;
    let (code, _) =
        raw(&viewer, "POST", "/simulator/v1/faults", "application/json", br#"{"fault":"clear"}"#.to_vec()).await;
    assert_eq!(code, 403);
    let (code, body) = raw(&client, "GET", "/simulator/v1/requests", "application/json", vec![]).await;
    assert_eq!(code, 200);
    assert!(body.as_array().is_some_and(|a| a.iter().any(|r| r["code"] == 503)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_tables_for_kubectl() {
    let sim = start().await;
    let client = admin(&sim).await;
    let (code, body) = raw(&client, "GET", "/api/v1", "application/json", vec![]).await;
    assert_eq!(code, 200);
    let names: Vec<&str> =
        body["resources"].as_array().expect("resources").iter().filter_map(|r| r["name"].as_str()).collect();
    for n in ["pods", "pods/eviction", "pods/log", "pods/portforward", "pods/status", "nodes", "nodes/status"] {
        assert!(names.contains(&n), "{n} in discovery");
    }
    let eviction =
        body["resources"].as_array().and_then(|r| r.iter().find(|r| r["name"] == "pods/eviction")).expect("eviction");
    assert_eq!((eviction["group"].as_str(), eviction["version"].as_str()), (Some("policy"), Some("v1")));
    {
        let b = bare(None).await;
        let (_, groups) = raw(&b.client, "GET", "/apis", "application/json", vec![]).await;
        let has_argo =
            |g: &Value| g["groups"].as_array().is_some_and(|gs| gs.iter().any(|g| g["name"] == "argoproj.io"));
        assert!(!has_argo(&groups), "CRD-backed groups hidden without their CRD");
        assert!(groups["groups"].as_array().is_some_and(|gs| gs.iter().any(|g| g["name"] == "apps")));
    }

    let req = http::Request::get("/api/v1/nodes")
        .header(http::header::ACCEPT, "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
        .body(kube::client::Body::empty())
        .expect("req");
    let resp = client.send(req).await.expect("send");
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let t: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> =
        t["columnDefinitions"].as_array().expect("cols").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(&cols[..5], ["Name", "Status", "Roles", "Age", "Version"]);

    // The same port speaks TLS (kubectl sends tokens only over https); kube-rs trusts the CA.
    let tls_path = sim.kubeconfig.with_file_name("kubeconfig-tls");
    cutover::sim::api::tls::write_kubeconfig(&tls_path, sim.api_addr, &sim.shared).expect("tls kubeconfig");
    let kc = Kubeconfig::read_from(&tls_path).expect("read");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    assert!(cfg.cluster_url.to_string().starts_with("https://"));
    let tls_client = kube::Client::try_from(cfg).expect("client");
    let ns = Api::<Namespace>::all(tls_client).list(&ListParams::default()).await.expect("list over TLS");
    assert!(ns.metadata.resource_version.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portforward_reaches_the_relay_pod() {
    // Own server with an echo service standing in for the relay.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let echo_addr = echo.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let b = bare(Some(echo_addr)).await;
    let client = b.client.clone();
    namespace(&client, "kube-system").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    running_pod(&pods, "hubble-relay-abc", json!({"k8s-app": "hubble-relay"})).await;
    let mut pf = pods.portforward("hubble-relay-abc", &[4245, 80]).await.expect("upgrade");
    let mut s = pf.take_stream(4245).expect("stream");
    s.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut buf)).await.expect("in time").expect("read");
    assert_eq!(&buf, b"ping");
    let err = pf.take_error(80).expect("error future");
    let msg = tokio::time::timeout(WAIT, err).await.expect("in time").expect("an error for port 80");
    assert!(msg.contains("error forwarding port 80"), "{msg}");
    drop(s);
    pf.abort();
    // Not running / unknown pods are refused before the upgrade.
    assert!(pods.portforward("nope", &[4245]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portforward_refuses_what_kubelet_refuses() {
    let b = bare(None).await;
    let client = b.client.clone();
    namespace(&client, "kube-system").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    running_pod(&pods, "hubble-relay-abc", json!({"k8s-app": "hubble-relay"})).await;
    let path = "/api/v1/namespaces/kube-system/pods/hubble-relay-abc/portforward";
    let send = |headers: Vec<(&'static str, &'static str)>| {
        let client = client.clone();
        async move {
            let mut req = http::Request::post(path);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = client.send(req.body(kube::client::Body::empty()).expect("request")).await.expect("answer");
            let code = resp.status().as_u16();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            (code, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let ws = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "base64.channel.k8s.io"),
    ];
    type Headers = Vec<(&'static str, &'static str)>;
    let cases: [(&str, Headers, u16, &str); 3] = [
        ("no upgrade at all", vec![], 400, "Upgrade request required"),
        (
            "SPDY with a stream protocol the server does not speak",
            vec![
                ("connection", "Upgrade"),
                ("upgrade", "SPDY/3.1"),
                ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ],
            403,
            "unable to negotiate protocol",
        ),
        ("a WebSocket asking for no known subprotocol", ws.to_vec(), 400, "SPDY/3.1+portforward.k8s.io"),
    ];
    for (what, headers, want, needle) in cases {
        let (code, body) = send(headers).await;
        assert_eq!(code, want, "{what}: {body}");
        assert!(body.contains(needle), "{what}: {body}");
    }
}
