//! The cockpit tells the truth per node, half-way through Stage 1 on the simulated homelab: Stage
//! 1 done by hand (Cilium committed, k3s flags written and k3s restarted through the sim's node
//! ops), checked through the library's `cutover status` entry — the per-node state, the header's
//! stage line as the cockpit draws it, and the exit code.
#![cfg(feature = "sim")] // drives the simulated cluster
#![allow(clippy::disallowed_methods)] // tests drive the sim's node-ops hook directly

use std::time::Duration;

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

use cutover::app::migration::NodeMigration;
use cutover::app::readiness::Report;
use cutover::app::state::AppState;
use cutover::cli::GlobalArgs;
use cutover::sim::{Sim, SimOptions, world};
use cutover::status::{EXIT_NOT_READY, Outcome, Output, StatusArgs, collect};

/// Generous: the machine may be loaded; every wait polls a condition.
const WAIT: Duration = Duration::from_secs(120);

async fn start(seed: u64) -> Sim {
    let opts = SimOptions { scenario: "fresh".into(), seed, speed: 20.0, ..Default::default() };
    Sim::start(opts).await.expect("sim starts")
}

async fn admin(sim: &Sim) -> kube::Client {
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

/// `POST /simulator/v1/nodes/{node}/ops`: what the operator does over SSH.
async fn node_op(c: &kube::Client, node: &str, op: Value) -> Value {
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("/simulator/v1/nodes/{node}/ops"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(serde_json::to_vec(&op).expect("json")))
        .expect("request");
    let resp = c.send(req).await.expect("transport");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_eq!(code, 200, "{node} {op}: {body}");
    body
}

async fn nodes(c: &kube::Client) -> Vec<Node> {
    Api::<Node>::all(c.clone()).list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default()
}

fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn node_ready(c: &kube::Client, name: &str) -> bool {
    nodes(c).await.iter().any(|n| n.metadata.name.as_deref() == Some(name) && ready(n))
}

/// Commits the Cilium Application and the Stage 1 values, and waits for a Ready agent everywhere
/// (flannel still on: this is where the header used to say "Cilium is the CNI").
async fn install_cilium(sim: &Sim, c: &kube::Client) {
    let origin = world::git_repo(&sim.shared).expect("the sim exposes its origin");
    let app = world::cilium_app_manifest(
        "https://github.com/rrumana/k8s-homelab",
        "1.16.4",
        "platform/networking/cilium/values.yaml",
    );
    let app = serde_saphyr::to_string(&app).expect("yaml");
    let files = [
        ("platform/gitops/argocd/apps/cilium-app.yaml", app.as_str()),
        ("platform/networking/cilium/values.yaml", world::STAGE1_VALUES),
    ];
    world::git_push_files(&origin, &files, "Add Cilium (Stage 1)").expect("commit and push");
    wait_for("a Ready Cilium agent on every node", || async {
        let pods = Api::<Pod>::namespaced(c.clone(), "kube-system")
            .list(&ListParams::default().labels("k8s-app=cilium"))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let ready_on: std::collections::BTreeSet<String> = pods
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
            .collect();
        ready_on.len() == 3
    })
    .await;
}

/// Writes the Stage 1 flags into the first server's config and restarts k3s there.
async fn switch_first_server(c: &kube::Client) {
    let cfg = node_op(c, "homelab-cp1", json!({"op": "read-k3s-config"})).await;
    let cfg = format!(
        "{}flannel-backend: none\ndisable-network-policy: true\n",
        cfg["result"].as_str().or(cfg.as_str()).expect("config text")
    );
    node_op(c, "homelab-cp1", json!({"op": "write-k3s-config", "config": cfg})).await;
    node_op(c, "homelab-cp1", json!({"op": "restart-k3s"})).await;
    wait_for("homelab-cp1 back Ready with flannel-backend none", || async {
        nodes(c).await.iter().any(|n| {
            n.metadata.name.as_deref() == Some("homelab-cp1")
                && ready(n)
                && n.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("k3s.io/node-args"))
                    .is_some_and(|a| a.contains(r#""--flannel-backend","none""#))
        })
    })
    .await;
}

/// The library's `cutover status` (read-only viewer identity), no relay, no wait.
async fn status(sim: &Sim) -> (u8, Report, Box<AppState>) {
    let args = StatusArgs {
        output: Output::Text,
        wait: false,
        wait_duration: Duration::ZERO,
        cilium_namespace: "kube-system".into(),
        argo_namespace: "argocd".into(),
        cilium_app: "cilium-app".into(),
    };
    let global = GlobalArgs {
        kubeconfig: Some(sim.kubeconfig.clone()),
        context: Some("sim-viewer".into()),
        read_only: true,
        ..Default::default()
    };
    let outcome = collect(&args, &global).await;
    let code = outcome.exit_code();
    match outcome {
        Outcome::Report { report, state } => (code, report, state),
        Outcome::Unreadable(m) => panic!("status could not read the sim: {m}"),
    }
}

/// Polls `cutover status` until `ok` holds for its state (a sim moves on; so may the watchers).
async fn status_until(sim: &Sim, what: &str, ok: impl Fn(&AppState) -> bool) -> (u8, Report, Box<AppState>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (code, report, state) = status(sim).await;
        if ok(&state) {
            return (code, report, state);
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {:#?}", state.migration());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn state_of(state: &AppState, node: &str) -> NodeMigration {
    state.migration().into_iter().find(|v| v.node == node).map(|v| v.state).expect("node has a verdict")
}

/// The header line exactly as the cockpit draws it (wide enough for the whole stage text).
fn header(state: &AppState) -> String {
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(400, 20)).expect("terminal");
    t.draw(|f| {
        cutover::ui::draw(f, state, &cutover::ui::Theme { color: false });
    })
    .expect("draw");
    let buf = t.backend().buffer().clone();
    (0..buf.area.width).map(|x| buf[(x, 0)].symbol().to_string()).collect::<String>().trim_end().to_string()
}

fn item<'a>(report: &'a Report, what: &str) -> &'a cutover::app::readiness::Item {
    report.items.iter().find(|i| i.what == what).unwrap_or_else(|| panic!("no item {what}: {:#?}", report.items))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_switched_agents_not() {
    let sim = start(11).await;
    let c = admin(&sim).await;
    install_cilium(&sim, &c).await;

    // Cilium everywhere, flannel still on: not "Cilium is the CNI".
    let (code, report, state) =
        status_until(&sim, "agents ready", |s| s.nodes.keys().all(|n| s.cilium_agent(n).is_some_and(|p| p.ready)))
            .await;
    assert_eq!(code, EXIT_NOT_READY);
    assert_eq!(report.stage, "1 · 0/3 nodes switched · flannel still on in the servers' node-args");
    assert!(!header(&state).contains("Cilium is the CNI"), "{}", header(&state));
    for n in ["homelab-cp1", "homelab-w1", "homelab-w2"] {
        assert_eq!(state_of(&state, n), NodeMigration::Flannel { awaiting_restart: false }, "{n}");
    }

    // Only the first server restarted with the Stage 1 flags.
    switch_first_server(&c).await;
    let (code, report, state) = status_until(&sim, "homelab-cp1 past its restart", |s| {
        matches!(state_of(s, "homelab-cp1"), NodeMigration::SwitchedPodsPending { .. })
    })
    .await;
    assert_eq!(code, EXIT_NOT_READY, "{:#?}", report.items);
    assert!(!report.ready);
    // The server's k3s runs without flannel; its pods keep the flannel addresses they had.
    let NodeMigration::SwitchedPodsPending { managed, total, old_ip_pods } = state_of(&state, "homelab-cp1") else {
        unreachable!()
    };
    assert!(total > 0 && managed < total && old_ip_pods > 0, "{managed}/{total}, {old_ip_pods} old");
    // The agents have not restarted: they still run embedded flannel.
    for n in ["homelab-w1", "homelab-w2"] {
        assert_eq!(state_of(&state, n), NodeMigration::Flannel { awaiting_restart: true }, "{n}");
        let cni = item(&report, &format!("node {n}: CNI"));
        assert_eq!(cni.status, "not-ready", "{cni:?}");
        assert!(cni.detail.starts_with("flannel still running: not restarted since "), "{cni:?}");
    }
    let stage = &report.stage;
    assert!(stage.starts_with("1 · 0/3 nodes switched · pending: homelab-cp1 ("), "{stage}");
    assert!(
        stage.contains(&format!("homelab-cp1 ({managed}/{total} pods managed, {old_ip_pods} on flannel IPs)")),
        "{stage}"
    );
    assert!(stage.contains("homelab-w1 (flannel still running: not restarted since "), "{stage}");
    assert!(stage.contains("homelab-w2 (flannel still running: not restarted since "), "{stage}");
    let head = header(&state);
    assert!(head.contains(&format!("stage {stage}")), "header: {head}\nstage: {stage}");
    assert!(!head.contains("Cilium is the CNI"));
    // The Nodes pane's flannel column for the agents is the servers' flag, marked as not applied.
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(200, 50)).expect("terminal");
    t.draw(|f| {
        cutover::ui::draw(f, &state, &cutover::ui::Theme { color: false });
    })
    .expect("draw");
    let screen = format!("{}", t.backend());
    let w1 = screen.lines().find(|l| l.contains("homelab-w1 ") && l.contains("agent")).expect("w1 row");
    assert!(w1.contains("restart?") && w1.contains("off*"), "{w1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_nodes_with_old_pods_still_running() {
    let sim = start(12).await;
    let c = admin(&sim).await;
    install_cilium(&sim, &c).await;
    switch_first_server(&c).await;
    // The agents restart after the server (timestamps have second resolution: a human is slower).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for n in ["homelab-w1", "homelab-w2"] {
        node_op(&c, n, json!({"op": "restart-k3s"})).await;
    }
    for n in ["homelab-w1", "homelab-w2"] {
        wait_for(&format!("{n} Ready after its restart"), || node_ready(&c, n)).await;
    }
    // Every k3s runs without flannel now, but the pods were not re-created: still flannel IPs.
    let (code, report, state) = status_until(&sim, "all nodes past their restart", |s| {
        s.migration().iter().all(|v| matches!(v.state, NodeMigration::SwitchedPodsPending { .. }))
    })
    .await;
    assert_eq!(code, EXIT_NOT_READY);
    for v in state.migration() {
        let NodeMigration::SwitchedPodsPending { managed, total, old_ip_pods } = v.state else { unreachable!() };
        assert!(managed < total && old_ip_pods > 0, "{}: {managed}/{total} {old_ip_pods}", v.node);
        assert!(v.reason.contains(&format!("{managed}/{total} pods managed")), "{v:?}");
        let cni = item(&report, &format!("node {}: CNI", v.node));
        assert_eq!(cni.status, "not-ready");
    }
    assert!(report.stage.starts_with("1 · 0/3 nodes switched · pending: homelab-cp1 ("), "{}", report.stage);
    let head = header(&state);
    assert!(head.contains(&format!("stage {}", report.stage)), "{head}");
    // The agents' flannel column is a fact now (they restarted after the servers switched).
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(200, 50)).expect("terminal");
    t.draw(|f| {
        cutover::ui::draw(f, &state, &cutover::ui::Theme { color: false });
    })
    .expect("draw");
    let screen = format!("{}", t.backend());
    let w1 = screen.lines().find(|l| l.contains("homelab-w1 ") && l.contains("agent")).expect("w1 row");
    assert!(!w1.contains("off*") && w1.contains(" off "), "{w1}");

    // A reboot re-creates every sandbox on homelab-w1, now through Cilium: that node has switched.
    node_op(&c, "homelab-w1", json!({"op": "reboot"})).await;
    let (code, report, state) =
        status_until(&sim, "homelab-w1 switched", |s| state_of(s, "homelab-w1") == NodeMigration::Switched).await;
    assert_eq!(code, EXIT_NOT_READY, "the other nodes still have flannel pods");
    assert_eq!(item(&report, "node homelab-w1: CNI").status, "ready");
    assert!(report.stage.starts_with("1 · 1/3 nodes switched · pending: homelab-cp1 ("), "{}", report.stage);
    assert!(!report.stage.contains("homelab-w1"), "{}", report.stage);
    assert!(header(&state).contains(&format!("stage {}", report.stage)));
}
