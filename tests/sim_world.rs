//! The simulated homelab over real loopback sockets: what the cockpit sees through the Kubernetes
//! API when the world's controllers run (seed per scenario, Cilium rolled out through the Git
//! repo and the sim's Argo CD, the plan's broken values, node ops via `/simulator/v1`), and that a
//! seed replays the same cluster.
#![cfg(feature = "sim")] // drives the simulated cluster
#![allow(clippy::disallowed_methods)] // tests drive the API directly to set up and check scenarios

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

use cutover::sim::{Sim, SimOptions, world};

/// Generous: the machine may be loaded; every wait polls a condition.
const WAIT: Duration = Duration::from_secs(120);

async fn start(scenario: &str, seed: u64) -> Sim {
    let opts = SimOptions { scenario: scenario.into(), seed, speed: 20.0, ..Default::default() };
    Sim::start(opts).await.expect("sim starts")
}

async fn client(sim: &Sim) -> kube::Client {
    let kc = Kubeconfig::read_from(&sim.kubeconfig).expect("kubeconfig");
    let opts = KubeConfigOptions { context: Some("sim".into()), ..Default::default() };
    let cfg = kube::Config::from_custom_kubeconfig(kc, &opts).await.expect("config");
    kube::Client::try_from(cfg).expect("client")
}

async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn dynamic(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

async fn cilium_pods(c: &kube::Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(c.clone(), "kube-system")
        .list(&ListParams::default().labels("k8s-app=cilium"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn node_args(n: &Node) -> Vec<String> {
    let text = n.metadata.annotations.as_ref().and_then(|a| a.get("k3s.io/node-args")).cloned().unwrap_or_default();
    serde_json::from_str(&text).expect("node-args is a JSON array")
}

async fn app(c: &kube::Client, name: &str) -> Option<DynamicObject> {
    let ar = dynamic("argoproj.io", "v1alpha1", "Application", "applications");
    Api::<DynamicObject>::namespaced_with(c.clone(), "argocd", &ar).get_opt(name).await.ok().flatten()
}

fn app_field<'a>(a: &'a DynamicObject, ptr: &str) -> &'a str {
    a.data.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Commits files and pushes them to the sim's bare Git origin, as the cockpit does.
fn commit(sim: &Sim, files: &[(&str, &str)], message: &str) {
    let origin = world::git_repo(&sim.shared).expect("the sim exposes its origin");
    world::git_push_files(&origin, files, message).expect("commit and push");
}

fn cilium_app_yaml() -> String {
    let app = world::cilium_app_manifest(
        "https://github.com/rrumana/k8s-homelab",
        "1.16.4",
        "platform/networking/cilium/values.yaml",
    );
    serde_saphyr::to_string(&app).expect("yaml")
}

async fn node_op(c: &kube::Client, node: &str, op: Value) -> (u16, Value) {
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("/simulator/v1/nodes/{node}/ops"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(serde_json::to_vec(&op).expect("json")))
        .expect("request");
    let resp = c.send(req).await.expect("transport");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_is_flannel_and_committing_cilium_rolls_it_out() {
    let sim = start("fresh", 1).await;
    let c = client(&sim).await;
    assert!(cilium_pods(&c).await.is_empty(), "no Cilium in the fresh homelab");
    let nodes = Api::<Node>::all(c.clone()).list(&ListParams::default()).await.expect("nodes").items;
    assert_eq!(nodes.len(), 3);
    for n in &nodes {
        let args = node_args(n);
        assert!(!args.contains(&"--flannel-backend".to_string()), "{args:?}");
        let ann = n.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get("flannel.alpha.coreos.com/backend-type").map(String::as_str), Some("vxlan"));
    }
    let cp1 = nodes.iter().find(|n| n.metadata.name.as_deref() == Some("homelab-cp1")).expect("cp1");
    assert_eq!(node_args(cp1)[0], "server");
    let crds = dynamic("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions");
    let crd_api = Api::<DynamicObject>::all_with(c.clone(), &crds);
    assert!(crd_api.get_opt("ciliumnodes.cilium.io").await.expect("get").is_none());

    // The cockpit commits the Application and the corrected values; the root app picks it up.
    commit(
        &sim,
        &[
            ("platform/gitops/argocd/apps/cilium-app.yaml", &cilium_app_yaml()),
            ("platform/networking/cilium/values.yaml", world::STAGE1_VALUES),
        ],
        "Add Cilium (Stage 1)",
    );
    wait_for("cilium-app created by the root app", || async { app(&c, "cilium-app").await.is_some() }).await;
    let mut first_ready: BTreeMap<String, tokio::time::Instant> = BTreeMap::new();
    let mut saw_taint = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for p in cilium_pods(&c).await.iter().filter(|p| pod_ready(p)) {
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
            first_ready.entry(node).or_insert_with(tokio::time::Instant::now);
        }
        let nodes = Api::<Node>::all(c.clone()).list(&ListParams::default()).await.expect("nodes").items;
        saw_taint |= nodes.iter().any(|n| {
            n.spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|ts| ts.iter().any(|t| t.key == "node.cilium.io/agent-not-ready"))
        });
        if first_ready.len() == 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "agents Ready on every node: {first_ready:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let distinct: BTreeSet<_> = first_ready.values().collect();
    assert_eq!(distinct.len(), 3, "agents became Ready node by node");
    assert!(saw_taint, "the operator tainted nodes whose agent was not Ready yet");
    wait_for("agent-not-ready taints removed", || async {
        let nodes = Api::<Node>::all(c.clone()).list(&ListParams::default()).await.expect("nodes").items;
        nodes.iter().all(|n| {
            !n.spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|ts| ts.iter().any(|t| t.key == "node.cilium.io/agent-not-ready"))
        })
    })
    .await;
    let cn = dynamic("cilium.io", "v2", "CiliumNode", "ciliumnodes");
    wait_for("a CiliumNode per node", || async {
        Api::<DynamicObject>::all_with(c.clone(), &cn)
            .list(&ListParams::default())
            .await
            .is_ok_and(|l| l.items.len() == 3)
    })
    .await;
    wait_for("cilium-app Synced and Healthy", || async {
        app(&c, "cilium-app").await.is_some_and(|a| {
            app_field(&a, "/status/sync/status") == "Synced" && app_field(&a, "/status/health/status") == "Healthy"
        })
    })
    .await;
    let topo = sim.shared.topology.borrow().clone();
    assert_eq!(topo.cilium_version, "1.16.4");
    assert_eq!(topo.cluster_name, "homelab");
}

/// Needs the values linter (`manifests::lint`): the plan's `tunnel: disabled` and
/// `kubeProxyReplacement: disabled` make the 1.16.4 chart fail to render.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_values_are_a_comparison_error_and_nothing_is_applied() {
    let sim = start("fresh", 2).await;
    let c = client(&sim).await;
    let plan = include_str!("fixtures/plan-values.yaml");
    commit(
        &sim,
        &[
            ("platform/gitops/argocd/apps/cilium-app.yaml", &cilium_app_yaml()),
            ("platform/networking/cilium/values.yaml", plan),
        ],
        "Add Cilium with the plan's values",
    );
    wait_for("cilium-app with ComparisonError", || async {
        app(&c, "cilium-app").await.is_some_and(|a| {
            app_field(&a, "/status/sync/status") == "Unknown"
                && app_field(&a, "/status/conditions/0/type") == "ComparisonError"
        })
    })
    .await;
    let a = app(&c, "cilium-app").await.expect("app");
    let msg = app_field(&a, "/status/conditions/0/message").to_string();
    assert!(msg.contains("helm template") && msg.contains("failed exit status 1"), "{msg}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cilium_pods(&c).await.is_empty(), "nothing applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_mismatched_critical_flags_keeps_the_server_down() {
    let sim = start("ha-servers", 3).await;
    let c = client(&sim).await;
    let (code, body) = node_op(&c, "homelab-cp2", json!({"op": "read-k3s-config"})).await;
    assert_eq!(code, 200, "{body}");
    let cfg =
        format!("{}flannel-backend: none\ndisable-network-policy: true\n", body["result"].as_str().unwrap_or_default());
    let (code, body) = node_op(&c, "homelab-cp2", json!({"op": "write-k3s-config", "config": cfg})).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = node_op(&c, "homelab-cp2", json!({"op": "restart-k3s"})).await;
    assert_eq!(code, 422, "{body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(msg.contains("critical configuration value mismatch between servers"), "{msg}");
    let nodes = Api::<Node>::all(c.clone());
    wait_for("homelab-cp2 NotReady", || async {
        nodes.get("homelab-cp2").await.is_ok_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "Unknown"))
        })
    })
    .await;
    let rt = world::node_runtime(&sim.shared, "homelab-cp2").expect("runtime");
    assert_eq!(rt.state, "failed");
    // It stays down while the mismatch lasts (systemd keeps retrying).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(world::node_runtime(&sim.shared, "homelab-cp2").expect("runtime").state, "failed");
    let n = nodes.get("homelab-cp2").await.expect("node");
    assert!(!node_args(&n).contains(&"none".to_string()), "the failed start never rewrote node-args");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_cluster() {
    async fn pods(seed: u64) -> Vec<(String, String, String)> {
        let sim = start("cilium-installed", seed).await;
        let c = client(&sim).await;
        let mut out: Vec<(String, String, String)> = Api::<Pod>::all(c)
            .list(&ListParams::default())
            .await
            .expect("pods")
            .items
            .into_iter()
            .map(|p| {
                (
                    format!("{}/{}", p.metadata.namespace.unwrap_or_default(), p.metadata.name.unwrap_or_default()),
                    p.metadata.uid.unwrap_or_default(),
                    p.status.and_then(|s| s.pod_ip).unwrap_or_default(),
                )
            })
            .collect();
        out.sort();
        out
    }
    let a = pods(5).await;
    let b = pods(5).await;
    assert!(a.len() > 40);
    assert_eq!(a, b);
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Benchmark, not a test: CPU the running world costs at idle (`--ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints the idle CPU cost of a running sim"]
async fn idle_cpu_cost() {
    for speed in [1.0, 10.0] {
        let sim = Sim::start(SimOptions { scenario: "cilium-installed".into(), seed: 1, speed, ..Default::default() })
            .await
            .expect("sim");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (c0, t0) = (cpu_seconds(), std::time::Instant::now());
        tokio::time::sleep(Duration::from_secs(10)).await;
        let used = cpu_seconds() - c0;
        println!("speed {speed}: {:.1}% of one core", used / t0.elapsed().as_secs_f64() * 100.0);
        drop(sim);
    }
}
