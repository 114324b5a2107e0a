//! Read-only mode is enforced where requests are made: with `--read-only`, pressing every key in
//! every pane (and confirming every operation) sends no mutating request to the API server —
//! neither as the sim's viewer identity nor even with the admin token.
#![cfg(feature = "sim")] // drives the simulated cluster
#![allow(clippy::disallowed_methods)] // tests drive the API directly to set up and check scenarios

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use cutover::app::action::Operation;
use cutover::app::keymap::KEYMAP;
use cutover::app::state::{AppState, Focus, Mode};
use cutover::app::update::{AppEvent, Command, update};
use cutover::cli::GlobalArgs;
use cutover::cluster::client::{ReadOnlyRefused, connect, user_agent};
use cutover::runbook::executor::ExecError;
use cutover::runbook::journal::Journal;
use cutover::runbook::runner::{RunRequest, Runner};
use cutover::sim::{Sim, SimOptions};
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;

async fn press_everything(context: &str) {
    let sim = Sim::start(SimOptions::default()).await.expect("sim starts");
    let global = GlobalArgs {
        kubeconfig: Some(sim.kubeconfig.clone()),
        context: Some(context.into()),
        read_only: true,
        ..Default::default()
    };
    let conn = connect(&global, |_| false).await.expect("connects");
    assert!(conn.read_only);
    let (tx, mut rx) = mpsc::channel::<AppEvent>(1024);
    let tasks = cutover::cluster::watch::spawn_all(conn.client.clone(), &Default::default(), tx.clone());
    let mut state = AppState::new(jiff::Timestamp::now(), Mode::ReadOnly, 1000);
    // Let the watchers fill the state so selections point at real nodes and apps.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while state.nodes.is_empty() && tokio::time::Instant::now() < deadline {
        if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            update(&mut state, ev);
        }
    }
    let journal_dir = cutover::tempdir::TempDir::new().expect("tmp");
    let (run_tx, _run_rx) = mpsc::unbounded_channel();
    let journal = Journal::at(journal_dir.path.join("sim.jsonl"));
    let mut runner = Runner::new(&conn, "argocd", journal.clone(), run_tx).expect("runner");
    let mut commands = Vec::new();
    for focus in [Focus::Argo, Focus::Nodes, Focus::Flows, Focus::Events] {
        for b in KEYMAP {
            if b.ctrl {
                continue; // Ctrl-C quits; nothing to test there.
            }
            state.ui.focus = focus;
            state.ui.quit = false;
            let mods = if b.code == KeyCode::BackTab { KeyModifiers::SHIFT } else { KeyModifiers::NONE };
            commands.extend(update(&mut state, AppEvent::Key(KeyEvent::new(b.code, mods))));
            commands.extend(update(&mut state, AppEvent::Key(KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE))));
            state.ui.filter_input = None;
            state.ui.help = false;
        }
    }
    // Whatever the keys produced, and every operation there is, goes to the executor.
    let node = state.nodes.keys().next().cloned().unwrap_or_else(|| "homelab-cp1".into());
    let ops = [
        Operation::Cordon { node: node.clone() },
        Operation::Uncordon { node: node.clone() },
        Operation::Drain { node },
        Operation::Sync { app: "root".into() },
        Operation::Refresh { app: "root".into() },
    ];
    let keyed: Vec<Operation> = commands
        .into_iter()
        .filter_map(|c| if let Command::Execute { op, .. } = c { Some(op) } else { None })
        .collect();
    for op in keyed.iter().chain(ops.iter()) {
        let req = RunRequest { op: op.clone(), preview: vec![], confirmed: "test".into(), take_over_stale_lock: true };
        let res = runner.start(req);
        assert!(matches!(res, Err(ExecError::ReadOnly)), "{op:?} -> {res:?}");
    }
    assert!(runner.running().is_none());
    // No write client exists for a read-only connection, and nothing was journaled.
    struct NoJournal;
    impl cutover::cluster::write::RequestJournal for NoJournal {
        fn before(&self, _: &str, _: &str) -> Result<u64, String> {
            Err("unused".into())
        }
        fn after(&self, _: u64, _: u16) {}
    }
    assert!(cutover::cluster::write::WriteClient::new(&conn, std::sync::Arc::new(NoJournal)).is_none());
    assert!(journal.read().expect("journal").entries.is_empty());
    // And the request layer itself refuses what the executor would have sent.
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(conn.client.clone());
    let patch = serde_json::json!({"spec": {"unschedulable": true}});
    let err = nodes
        .patch("homelab-cp1", &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(&patch))
        .await
        .expect_err("read-only layer refuses");
    assert!(cutover::cluster::client::is_read_only_refusal(&err), "{err}");

    let requests = sim.requests();
    assert!(!requests.is_empty(), "the watchers did talk to the API");
    let mutating: Vec<_> = requests.iter().filter(|r| r.is_mutating()).collect();
    assert!(mutating.is_empty(), "mutating requests in read-only mode: {mutating:?}");
    let ua = user_agent();
    let anonymous: Vec<_> = requests.iter().filter(|r| r.user_agent.as_deref() != Some(ua.as_str())).collect();
    assert!(anonymous.is_empty(), "requests without User-Agent {ua:?}: {anonymous:?}");
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_identity_presses_every_key_and_mutates_nothing() {
    press_everything("sim-viewer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_in_read_only_mode_mutates_nothing() {
    press_everything("sim").await;
}

/// The [`ReadOnlyRefused`] somewhere in a kube error's source chain.
fn refusal(err: &kube::Error) -> Option<&ReadOnlyRefused> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = src {
        if let Some(r) = e.downcast_ref::<ReadOnlyRefused>() {
            return Some(r);
        }
        src = e.source();
    }
    None
}

async fn connect_to(sim: &Sim, context: &str, read_only: bool) -> cutover::cluster::client::ClusterConn {
    let global = GlobalArgs {
        kubeconfig: Some(sim.kubeconfig.clone()),
        context: Some(context.into()),
        read_only,
        ..Default::default()
    };
    connect(&global, |_| false).await.expect("connects")
}

/// Exec and proxy are GETs, yet they run commands in a pod or reach whatever the proxy fronts:
/// read-only mode refuses them by verb and resource before they leave the process, even with the
/// admin token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_proxy_are_refused_in_process() {
    let sim = Sim::start(SimOptions::default()).await.expect("sim starts");
    let conn = connect_to(&sim, "sim", true).await;
    let cases = [
        ("GET", "/api/v1/namespaces/kube-system/pods/cilium-x/exec", "?command=true&stdout=true", "pods/exec"),
        ("POST", "/api/v1/namespaces/kube-system/pods/cilium-x/exec", "?command=true&stdout=true", "pods/exec"),
        ("GET", "/api/v1/namespaces/kube-system/pods/cilium-x/attach", "?stdout=true", "pods/attach"),
        ("GET", "/api/v1/namespaces/kube-system/services/hubble-ui/proxy/", "", "services/proxy"),
        ("GET", "/api/v1/nodes/homelab-cp1/proxy/configz", "", "nodes/proxy"),
    ];
    for (method, path, query, target) in cases {
        let req =
            http::Request::builder().method(method).uri(format!("{path}{query}")).body(Vec::new()).expect("request");
        let err = conn.client.request_text(req).await.expect_err("refused");
        let r = refusal(&err).unwrap_or_else(|| panic!("{method} {path}: not a read-only refusal: {err}"));
        assert_eq!((r.method.as_str(), r.path.as_str(), r.target.as_str()), (method, path, target), "{r}");
        assert!(cutover::cluster::client::is_read_only_refusal(&err));
    }
    // The same client does reach the server with reads.
    let version = http::Request::get("/version").body(Vec::new()).expect("request");
    conn.client.request_text(version).await.expect("a read goes through");
    let requests = sim.requests();
    assert!(requests.iter().any(|r| r.path == "/version"), "{requests:?}");
    let leaked: Vec<_> = requests.iter().filter(|r| cases.iter().any(|c| r.path == c.1)).collect();
    assert!(leaked.is_empty(), "refused requests reached the server: {leaked:?}");
}

/// Armed or read-only, every request says it is the cockpit, the port-forward upgrade included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_carries_the_cockpit_user_agent() {
    let sim = Sim::start(SimOptions::default()).await.expect("sim starts");
    for read_only in [false, true] {
        let conn = connect_to(&sim, "sim", read_only).await;
        assert_eq!(conn.read_only, read_only);
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(conn.client.clone());
        nodes.list(&Default::default()).await.expect("list nodes");
        let pods: kube::Api<Pod> = kube::Api::namespaced(conn.client.clone(), "kube-system");
        // No such pod: answered 404, but recorded.
        assert!(pods.portforward("no-such-relay", &[4245]).await.is_err());
    }
    let requests = sim.requests();
    let forwards = requests.iter().filter(|r| r.path.ends_with("/no-such-relay/portforward")).count();
    assert_eq!(forwards, 2, "{requests:?}");
    let ua = user_agent();
    assert!(ua.starts_with(&format!("cutover/{} (", env!("CARGO_PKG_VERSION"))), "{ua}");
    for r in &requests {
        assert_eq!(r.user_agent.as_deref(), Some(ua.as_str()), "{r:?}");
    }
}
