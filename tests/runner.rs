//! The one door, armed, against the simulated cluster: cordon and uncordon, drains under
//! PodDisruptionBudgets (recovering, stuck at 0), a pod that never terminates, one operation at
//! a time, the cluster Lease between two operators, cancel and interrupt — and after each, the
//! journal's chain verifies and says what happened.
#![cfg(feature = "sim")] // drives the simulated cluster
#![allow(clippy::disallowed_methods)] // the tests set up their scenario with an admin client

use std::time::Duration;

use cutover::app::action::Operation;
use cutover::cli::GlobalArgs;
use cutover::cluster::client::{ClusterConn, connect};
use cutover::runbook::executor::ExecError;
use cutover::runbook::journal::{Journal, Outcome, Record};
use cutover::runbook::runner::{RunEvent, RunRequest, Runner};
use cutover::sim::{Fault, Sim, SimOptions};
use cutover::tempdir::TempDir;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;

const NS: &str = "cutover-test";

struct Env {
    sim: Sim,
    conn: ClusterConn,
    admin: kube::Client,
    _dir: TempDir,
    journal: Journal,
}

async fn env() -> Env {
    let sim = Sim::start(SimOptions { speed: 4.0, ..Default::default() }).await.expect("sim starts");
    let global =
        GlobalArgs { kubeconfig: Some(sim.kubeconfig.clone()), context: Some("sim".into()), ..Default::default() };
    let conn = connect(&global, |_| false).await.expect("connects");
    assert!(!conn.read_only);
    let kc = kube::config::Kubeconfig::read_from(&sim.kubeconfig).expect("kubeconfig");
    let opts = kube::config::KubeConfigOptions { context: Some("sim".into()), ..Default::default() };
    let cfg = kube::Config::from_custom_kubeconfig(kc, &opts).await.expect("config");
    let admin = kube::Client::try_from(cfg).expect("admin client");
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    let body = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    ns.create(&PostParams::default(), &body.expect("namespace")).await.expect("create namespace");
    let dir = TempDir::new().expect("tmp");
    let journal = Journal::at(dir.path.join("journal").join("sim.jsonl"));
    Env { sim, conn, admin, _dir: dir, journal }
}

impl Env {
    fn runner(&self) -> (Runner, mpsc::UnboundedReceiver<RunEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut r = Runner::new(&self.conn, "argocd", self.journal.clone(), tx).expect("runner");
        if let Some(e) = r.executor_mut() {
            e.drain.retry_delay = Duration::from_millis(400);
            e.drain.poll = Duration::from_millis(200);
            e.drain.timeout = Duration::from_secs(40);
        }
        (r, rx)
    }

    async fn label_node(&self, node: &str, on: bool) {
        let nodes: Api<Node> = Api::all(self.admin.clone());
        let v = if on { json!("yes") } else { serde_json::Value::Null };
        let patch = json!({"metadata": {"labels": {"cutover-test": v}}});
        nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("label node");
    }

    /// A Deployment of `replicas` pods on nodes labelled `cutover-test=yes`, with a PDB
    /// `minAvailable: min_available` when given.
    async fn workload(&self, name: &str, replicas: i32, min_available: Option<i32>) {
        let labels = json!({"app": name});
        let dep = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {
                    "nodeSelector": {"cutover-test": "yes"},
                    "containers": [{"name": "web", "image": "nginx:1.27"}]}}}
        });
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            self.admin.clone(),
            NS,
            &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk("apps", "v1", "Deployment")),
        );
        api.create(&PostParams::default(), &serde_json::from_value(dep).expect("dep"))
            .await
            .expect("create deployment");
        if let Some(min) = min_available {
            let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"minAvailable": min, "selector": {"matchLabels": labels}}});
            let api: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> = Api::namespaced(self.admin.clone(), NS);
            api.create(&PostParams::default(), &serde_json::from_value(pdb).expect("pdb")).await.expect("create pdb");
        }
        self.wait_ready(name, replicas).await;
    }

    async fn pods_of(&self, app: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.admin.clone(), NS);
        api.list(&ListParams::default().labels(&format!("app={app}"))).await.expect("list pods").items
    }

    async fn wait_ready(&self, app: &str, n: i32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .pods_of(app)
                .await
                .iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            if ready as i32 >= n {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{app}: {ready}/{n} pods ready after 60 s");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn cordoned(&self, node: &str) -> bool {
        let nodes: Api<Node> = Api::all(self.admin.clone());
        nodes.get(node).await.expect("node").spec.and_then(|s| s.unschedulable).unwrap_or(false)
    }

    /// The chain verifies; returns the entries.
    fn verified(&self) -> Vec<cutover::runbook::journal::Entry> {
        let v = self.journal.read().expect("journal reads");
        assert_eq!(v.bad, None, "journal chain");
        v.entries
    }

    fn last_result(&self) -> (Outcome, String) {
        self.verified()
            .iter()
            .rev()
            .find_map(|e| match &e.record {
                Record::Result { outcome, message, .. } => Some((*outcome, message.clone())),
                _ => None,
            })
            .expect("a result entry")
    }
}

fn req(op: Operation) -> RunRequest {
    RunRequest { op, preview: vec!["test preview".into()], confirmed: "test".into(), take_over_stale_lock: false }
}

/// Waits for the operation's end; returns its progress lines and result.
async fn done(
    rx: &mut mpsc::UnboundedReceiver<RunEvent>,
    within: Duration,
) -> (Vec<String>, Result<String, ExecError>) {
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(RunEvent::Progress { text, .. })) => lines.push(text),
            Ok(Some(RunEvent::Done { result, .. })) => return (lines, result),
            Ok(Some(RunEvent::Node { .. } | RunEvent::Report { .. })) => {}
            Ok(None) => panic!("runner channel closed"),
            Err(_) => panic!("no result within {within:?}; progress so far:\n{}", lines.join("\n")),
        }
    }
}

/// Waits for a progress line containing `needle`.
async fn progress_with(rx: &mut mpsc::UnboundedReceiver<RunEvent>, needle: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(RunEvent::Progress { text, .. })) => {
                let hit = text.contains(needle);
                lines.push(text);
                if hit {
                    return lines;
                }
            }
            Ok(Some(RunEvent::Node { .. } | RunEvent::Report { .. })) => {}
            Ok(Some(RunEvent::Done { result, .. })) => {
                panic!("ended before {needle:?}: {result:?}\n{}", lines.join("\n"))
            }
            Ok(None) | Err(_) => panic!("no progress line with {needle:?}:\n{}", lines.join("\n")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_and_uncordon_are_journaled_and_take_the_lock() {
    let e = env().await;
    let (mut r, mut rx) = e.runner();
    r.start(req(Operation::Cordon { node: "homelab-w1".into() })).expect("starts");
    let (_, res) = done(&mut rx, Duration::from_secs(20)).await;
    assert_eq!(res, Ok("node homelab-w1 cordoned".into()));
    assert!(e.cordoned("homelab-w1").await);
    r.start(req(Operation::Cordon { node: "homelab-w1".into() })).expect("starts");
    let (_, res) = done(&mut rx, Duration::from_secs(20)).await;
    assert!(res.as_deref().is_ok_and(|m| m.contains("already cordoned")), "{res:?}");
    r.start(req(Operation::Uncordon { node: "homelab-w1".into() })).expect("starts");
    let (_, res) = done(&mut rx, Duration::from_secs(20)).await;
    assert_eq!(res, Ok("node homelab-w1 uncordoned".into()));
    assert!(!e.cordoned("homelab-w1").await);
    // An unknown name is refused and lists the known ones.
    r.start(req(Operation::Cordon { node: "homelab-w9".into() })).expect("starts");
    let (_, res) = done(&mut rx, Duration::from_secs(20)).await;
    match res {
        Err(err @ ExecError::NotFound { .. }) => {
            assert_eq!(err.exit_code(), 3);
            assert!(err.to_string().contains("homelab-w1"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    // The journal: intent → lease → patch → release → result, for each; requests have codes.
    let entries = e.verified();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|en| match &en.record {
            Record::Intent { .. } => "intent",
            Record::Request { .. } => "request",
            Record::Response { .. } => "response",
            Record::Result { .. } => "result",
            Record::Ack { .. } => "ack",
            Record::Change { .. } => "change",
            Record::ChangeDone { .. } => "change-done",
            Record::Note { .. } => "note",
        })
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "intent").count(), 4);
    assert_eq!(kinds.iter().filter(|k| **k == "result").count(), 4);
    let patches: Vec<String> = entries
        .iter()
        .filter_map(|en| match &en.record {
            Record::Request { verb, path, .. } => Some(format!("{verb} {path}")),
            _ => None,
        })
        .collect();
    assert!(patches.contains(&"patch /api/v1/nodes/homelab-w1".to_string()), "{patches:?}");
    assert!(
        patches.iter().any(|p| p.contains("/leases")),
        "the Lease is taken through the journaled client: {patches:?}"
    );
    // Every mutating request the sim saw was journaled first.
    let ours = |r: &cutover::sim::RequestRecord| r.user_agent.as_deref().is_some_and(|u| u.starts_with("cutover/"));
    let sent = e.sim.requests().into_iter().filter(|r| r.is_mutating() && ours(r)).count();
    assert_eq!(sent, patches.len(), "sim saw {sent} mutations, the journal has {}", patches.len());
    let text = cutover::runbook::cli::format_text(&entries, true);
    assert!(!text.contains("interrupted"), "{text}");
    e.sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_waits_for_a_pdb_that_recovers_and_for_each_pod_to_be_gone() {
    let e = env().await;
    e.label_node("homelab-w1", true).await;
    e.workload("web", 2, Some(1)).await;
    let before: Vec<String> = e.pods_of("web").await.iter().filter_map(|p| p.metadata.uid.clone()).collect();
    // Replacements may now land on w2.
    e.label_node("homelab-w2", true).await;
    let (mut r, mut rx) = e.runner();
    r.start(req(Operation::Drain { node: "homelab-w1".into() })).expect("starts");
    let (lines, res) = done(&mut rx, Duration::from_secs(60)).await;
    let log = lines.join("\n");
    assert!(res.as_deref().is_ok_and(|m| m.contains("node homelab-w1 drained:")), "{res:?}\n{log}");
    assert!(log.contains("eviction refused by PDB cutover-test/web, retry 1"), "the 429 names its PDB:\n{log}");
    for uid_gone in e.pods_of("web").await.iter().filter_map(|p| p.metadata.name.clone()) {
        assert!(!log.contains(&format!("{uid_gone}: gone")), "a new pod was not evicted: {uid_gone}");
    }
    let web_gone = lines.iter().filter(|l| l.starts_with("cutover-test/web-") && l.contains(": gone (")).count();
    assert_eq!(web_gone, 2, "each evicted pod waited for until gone:\n{log}");
    let after = e.pods_of("web").await;
    assert!(after.iter().all(|p| !before.contains(&p.metadata.uid.clone().unwrap_or_default())), "old pods gone");
    assert!(e.cordoned("homelab-w1").await);
    assert_eq!(e.last_result().0, Outcome::Ok);
    e.sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdb_stuck_at_zero_times_out_leaving_the_node_cordoned_and_naming_the_pod() {
    let e = env().await;
    e.label_node("homelab-w2", true).await;
    e.workload("db", 1, Some(1)).await;
    e.workload("free", 1, None).await;
    let db_pod = e.pods_of("db").await[0].metadata.name.clone().unwrap_or_default();
    let (mut r, mut rx) = e.runner();
    if let Some(x) = r.executor_mut() {
        x.drain.timeout = Duration::from_secs(4);
    }
    r.start(req(Operation::Drain { node: "homelab-w2".into() })).expect("starts");
    let (lines, res) = done(&mut rx, Duration::from_secs(60)).await;
    let err = res.expect_err("times out");
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 4, "{msg}");
    assert!(msg.contains(&format!("{NS}/{db_pod}: blocked by PDB {NS}/db")), "{msg}");
    assert!(msg.contains("node homelab-w2 is left cordoned"), "{msg}");
    assert!(e.cordoned("homelab-w2").await);
    // The other pods were evicted as kubectl does.
    assert!(lines.iter().any(|l| l.contains("free-") && l.contains("gone")), "{lines:?}");
    assert_eq!(e.last_result().0, Outcome::Failed);
    e.sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_never_terminates_is_reported_at_the_deadline() {
    let e = env().await;
    e.label_node("homelab-w2", true).await;
    e.workload("sticky", 1, None).await;
    let pod = e.pods_of("sticky").await[0].metadata.name.clone().unwrap_or_default();
    e.sim.inject(&Fault::StuckPod { namespace: NS.into(), name: pod.clone() });
    let (mut r, mut rx) = e.runner();
    if let Some(x) = r.executor_mut() {
        x.drain.timeout = Duration::from_secs(4);
    }
    r.start(req(Operation::Drain { node: "homelab-w2".into() })).expect("starts");
    let (_, res) = done(&mut rx, Duration::from_secs(60)).await;
    let msg = res.expect_err("times out").to_string();
    assert!(msg.contains(&format!("{NS}/{pod}: evicted, still terminating at the deadline")), "{msg}");
    e.sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operation_at_a_time_then_cancel_stops_the_drain_at_a_safe_point() {
    let e = env().await;
    e.label_node("homelab-w2", true).await;
    e.workload("db", 1, Some(1)).await;
    let (mut r, mut rx) = e.runner();
    r.start(req(Operation::Drain { node: "homelab-w2".into() })).expect("starts");
    progress_with(&mut rx, "eviction refused by PDB").await;
    // While it runs: a second drain, an uncordon of the same node and a sync are all refused.
    for op in [
        Operation::Drain { node: "homelab-w1".into() },
        Operation::Uncordon { node: "homelab-w2".into() },
        Operation::Sync { app: "root".into() },
    ] {
        let err = r.start(req(op.clone())).expect_err("refused while a drain runs");
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains("drain homelab-w2 is running"), "{op:?}: {err}");
    }
    assert!(
        r.start(req(Operation::Uncordon { node: "homelab-w2".into() }))
            .unwrap_err()
            .to_string()
            .contains("same object")
    );
    // A second operator (another identity, another process in real life) is refused by the Lease.
    let (mut other, mut other_rx) = e.runner();
    other.set_identity("alice@bastion-2 pid 4242");
    other.start(req(Operation::Cordon { node: "homelab-w1".into() })).expect("starts");
    let (_, res) = done(&mut other_rx, Duration::from_secs(20)).await;
    let err = res.expect_err("lock held");
    assert_eq!(err.exit_code(), 3);
    assert!(err.to_string().contains("held by") && err.to_string().contains("pid"), "{err}");
    assert!(!e.cordoned("homelab-w1").await, "the second operator changed nothing");
    // And a second process: `cutover cordon` from another terminal is refused with exit 3.
    let state = TempDir::new().expect("tmp");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["--kubeconfig", &e.sim.kubeconfig.display().to_string(), "--context", "sim", "--log-file", "/dev/null"])
        .args(["cordon", "homelab-w1"])
        .env("XDG_STATE_HOME", &state.path)
        .output()
        .await
        .expect("run cutover cordon");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("is held by") && err.contains("renewed"), "{err}");
    assert!(!e.cordoned("homelab-w1").await);
    // Cancel: the drain stops evicting, the node stays cordoned, and the result says so.
    assert_eq!(r.cancel(), Some(Operation::Drain { node: "homelab-w2".into() }));
    let (_, res) = done(&mut rx, Duration::from_secs(20)).await;
    let err = res.expect_err("cancelled");
    assert_eq!(err.exit_code(), 4);
    assert!(matches!(err, ExecError::Cancelled(_)), "{err:?}");
    assert!(err.to_string().contains("not evicted (cancelled)") && err.to_string().contains("left cordoned"), "{err}");
    assert!(e.cordoned("homelab-w2").await);
    assert_eq!(e.last_result().0, Outcome::Cancelled);
    // The lock was released: the other operator may act now.
    other.start(req(Operation::Cordon { node: "homelab-w1".into() })).expect("starts");
    let (_, res) = done(&mut other_rx, Duration::from_secs(20)).await;
    assert!(res.is_ok(), "{res:?}");
    e.sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_mid_drain_is_journaled_as_interrupted() {
    let e = env().await;
    e.label_node("homelab-w2", true).await;
    e.workload("db", 1, Some(1)).await;
    let (mut r, mut rx) = e.runner();
    r.start(req(Operation::Drain { node: "homelab-w2".into() })).expect("starts");
    progress_with(&mut rx, "eviction refused by PDB").await;
    assert_eq!(r.interrupt("the operator quit").await, Some(Operation::Drain { node: "homelab-w2".into() }));
    let (outcome, msg) = e.last_result();
    assert_eq!(outcome, Outcome::Interrupted);
    assert_eq!(msg, "the operator quit");
    // `cutover journal` shows it; a killed process (no result at all) shows as interrupted too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["--log-file", "/dev/null", "journal", "--file", &e.journal.path().display().to_string()])
        .output()
        .expect("run cutover journal");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("result   interrupted: the operator quit"), "{text}");
    let killed = Journal::at(e.journal.path().with_file_name("killed.jsonl"));
    killed
        .append(&Record::Intent {
            op: "1-x".into(),
            title: "drain homelab-w2".into(),
            preview: vec![],
            confirmed_by: "t".into(),
            mode: "armed".into(),
            step: None,
        })
        .expect("append");
    let text = cutover::runbook::cli::format_text(&killed.read().expect("read").entries, true);
    assert!(text.contains("interrupted: drain homelab-w2"), "{text}");
    e.sim.stop();
}

/// The headless twins: same runner, lock and journal, with their exit codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_twins_run_through_the_runner_with_their_exit_codes() {
    let e = env().await;
    let state = TempDir::new().expect("tmp");
    let kubeconfig = e.sim.kubeconfig.display().to_string();
    let run = |args: Vec<&str>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.args(["--kubeconfig", &kubeconfig, "--context", "sim", "--log-file", "/dev/null"])
            .args(args)
            .env("XDG_STATE_HOME", &state.path)
            .stdin(std::process::Stdio::null());
        async move {
            let out = cmd.output().await.expect("run cutover");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (code, out, err) = run(vec!["cordon", "homelab-w1"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "node homelab-w1 cordoned");
    let (code, _, err) = run(vec!["uncordon", "homelab-w9"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not found; known: homelab-cp1, homelab-w1, homelab-w2"), "{err}");
    // A drain without --yes and without a terminal to type the name on is refused.
    let (code, _, err) = run(vec!["drain", "homelab-w1"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not confirmed"), "{err}");
    let (code, _, err) = run(vec!["--read-only", "cordon", "homelab-w2"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("read-only"), "{err}");
    let (code, out, err) = run(vec!["uncordon", "homelab-w1"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(vec!["journal", "--verify"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("chain verifies"), "{out}");
    assert!(state.path.join("cutover/journal/sim.jsonl").exists());
    e.sim.stop();
}

/// A Lease its holder stopped renewing is refused until the operator confirms the take-over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lock_is_taken_over_only_when_confirmed() {
    let e = env().await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(e.admin.clone(), "kube-system");
    let old = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(300)).expect("time");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "cutover-lock", "namespace": "kube-system"},
        "spec": {"holderIdentity": "bob@bastion-old pid 7", "leaseDurationSeconds": 30,
                 "renewTime": old.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}});
    leases.create(&PostParams::default(), &serde_json::from_value(lease).expect("lease")).await.expect("create lease");
    let (mut r, mut rx) = e.runner();
    r.start(req(Operation::Cordon { node: "homelab-w1".into() })).expect("starts");
    let (_, res) = done(&mut rx, Duration::from_secs(20)).await;
    let err = res.expect_err("stale lock refused");
    assert!(matches!(err, ExecError::StaleLock(_)), "{err:?}");
    assert!(err.to_string().contains("bob@bastion-old pid 7") && err.to_string().contains("5m00s"), "{err}");
    assert!(!e.cordoned("homelab-w1").await);
    let mut take = req(Operation::Cordon { node: "homelab-w1".into() });
    take.take_over_stale_lock = true;
    r.start(take).expect("starts");
    let (_, res) = done(&mut rx, Duration::from_secs(20)).await;
    assert!(res.is_ok(), "{res:?}");
    assert!(e.cordoned("homelab-w1").await);
    let holder = leases.get("cutover-lock").await.expect("lease").spec.and_then(|s| s.holder_identity);
    assert_eq!(holder, None, "released after the operation");
    e.sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_is_journaled_as_skipped_with_its_acknowledgement_and_sends_nothing() {
    use cutover::runbook::plan::Runbook;
    use cutover::runbook::steps::{Position, StepEnv};
    let e = env().await;
    let (mut r, mut rx) = e.runner();
    let runbook = std::sync::Arc::new(Runbook::built_in());
    let settings = std::sync::Arc::new(cutover::settings::Settings::default());
    r.enable_runbook(StepEnv::new(settings, runbook.clone()));
    let before = e.sim.requests().into_iter().filter(|q| q.is_mutating()).count();
    let why = "failed: timed out after 10m".to_string();
    r.start(req(Operation::SkipStep { id: "stage1-wait".into(), why: why.clone() })).expect("starts");
    let (_, res) = done(&mut rx, Duration::from_secs(20)).await;
    assert!(res.as_deref().is_ok_and(|m| m.contains("skipped by the operator")), "{res:?}");
    // A commit is refused: a half-done change is retried or rolled back, never skipped.
    r.start(req(Operation::SkipStep { id: "stage1-commit".into(), why: "failed: push rejected".into() }))
        .expect("starts");
    let (_, res) = done(&mut rx, Duration::from_secs(20)).await;
    assert!(matches!(&res, Err(ExecError::Refused(m)) if m.contains("cannot be skipped")), "{res:?}");
    let entries = e.verified();
    assert!(
        entries.iter().any(
            |en| matches!(&en.record, Record::Ack { what, .. } if what == &format!("skipped stage1-wait ({why})"))
        ),
        "the acknowledgement names the step and the state it was in"
    );
    let position = Position::from_journal(&runbook, &entries);
    assert_eq!(position.skipped("stage1-wait").map(|j| j.outcome.as_str()), Some("skipped"));
    assert!(position.done("stage1-wait").is_none(), "skipped is not done");
    assert_eq!(position.last.get("stage1-commit").map(|j| j.outcome.as_str()), Some("failed"));
    // Nothing but the cluster lock was written for either.
    let ours: Vec<String> = e
        .sim
        .requests()
        .into_iter()
        .filter(|q| q.is_mutating())
        .skip(before)
        .map(|q| q.path.clone())
        .filter(|p| !p.contains("/leases"))
        .collect();
    assert!(ours.is_empty(), "{ours:?}");
    e.sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cockpits_active_validation_runs_through_the_runner_reports_and_leaves_nothing() {
    use cutover::runbook::plan::Runbook;
    use cutover::runbook::steps::StepEnv;
    let sim = Sim::start(SimOptions { scenario: "migrated".into(), speed: 8.0, ..Default::default() })
        .await
        .expect("sim starts");
    let global =
        GlobalArgs { kubeconfig: Some(sim.kubeconfig.clone()), context: Some("sim".into()), ..Default::default() };
    let conn = connect(&global, |_| false).await.expect("connects");
    let dir = TempDir::new().expect("tmp");
    let journal = Journal::at(dir.path.join("journal").join("sim.jsonl"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut r = Runner::new(&conn, "argocd", journal.clone(), tx).expect("runner");
    let settings = std::sync::Arc::new(cutover::settings::Settings::default());
    let mut env = StepEnv::new(settings, std::sync::Arc::new(Runbook::built_in()))
        .with_relay(cutover::hubble::client::RelayTarget::Address(sim.relay_addr.to_string()));
    env.validate_window = Duration::from_secs(3);
    r.enable_runbook(env);
    let admin = {
        let kc = kube::config::Kubeconfig::read_from(&sim.kubeconfig).expect("kubeconfig");
        let opts = kube::config::KubeConfigOptions { context: Some("sim".into()), ..Default::default() };
        kube::Client::try_from(kube::Config::from_custom_kubeconfig(kc, &opts).await.expect("config")).expect("client")
    };
    // A probe object of another run, created just now: maybe a `cutover validate` in progress in
    // another session, so this run leaves it alone and says so (an idle one would be deleted
    // first; `validate::split_runs` has the unit test of that split).
    let leftover: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "cutover-probe-dead1", "namespace": "default",
            "labels": {"app.kubernetes.io/managed-by": "cutover", "cutover.io/probe-run": "dead1"}},
        "spec": {"ports": [{"port": 8080}]}
    }))
    .expect("service");
    #[allow(clippy::disallowed_methods)] // the test sets up its scenario
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(admin.clone(), "default")
        .create(&Default::default(), &leftover)
        .await
        .expect("leftover created");
    r.start(req(Operation::Validate)).expect("starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let mut report = None;
    let mut progress = Vec::new();
    let result = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(RunEvent::Report { report: rep, .. })) => report = Some(rep),
            Ok(Some(RunEvent::Progress { text, .. })) => progress.push(text),
            Ok(Some(RunEvent::Done { result, .. })) => break result,
            Ok(Some(_)) => {}
            Ok(None) => panic!("runner channel closed"),
            Err(_) => panic!("no result in time"),
        }
    };
    let report = report.expect("the report comes before the end");
    for id in [
        "probe-pod-to-pod",
        "probe-clusterip",
        "probe-nodeport",
        "probe-loadbalancer",
        "probe-dns-egress",
        "probe-longhorn-volume",
    ] {
        let c = report.checks.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("{id} ran"));
        assert!(!c.results.is_empty(), "{id} has its subjects");
        assert!(c.results.iter().all(|r| !r.evidence.is_empty()), "{id}: every subject with evidence");
    }
    for c in &report.checks {
        eprintln!("{} {}", c.id, c.state.as_str());
    }
    // The end says what the report says.
    let green = report.exit_code() == cutover::validate::EXIT_GREEN;
    assert_eq!(result.is_ok(), green, "{result:?}");
    assert!(
        progress.iter().any(|l| l.contains("Left alone: 1 probe object(s) of run dead1 created less than 4m30s ago")),
        "{progress:#?}"
    );
    #[allow(clippy::disallowed_methods)] // the test removes its own set-up
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(admin.clone(), "default")
        .delete("cutover-probe-dead1", &Default::default())
        .await
        .expect("the other run's Service was left alone");
    // Nothing of the run is left, and the journal has the operation and its probe writes.
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=cutover");
    let pods = Api::<Pod>::all(admin.clone()).list(&lp).await.expect("pods");
    let left: Vec<String> = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert!(left.is_empty(), "probe pods left: {left:?}");
    let jobs = Api::<k8s_openapi::api::batch::v1::Job>::all(admin.clone()).list(&lp).await.expect("jobs");
    assert!(jobs.items.is_empty(), "probe Jobs left");
    let svcs = Api::<k8s_openapi::api::core::v1::Service>::all(admin).list(&lp).await.expect("services");
    assert!(svcs.items.is_empty(), "probe Services left");
    let v = journal.read().expect("journal reads");
    assert_eq!(v.bad, None, "journal chain");
    assert!(
        v.entries.iter().any(|e| matches!(&e.record, Record::Intent { title, .. } if title.starts_with("validate"))),
        "intent journaled"
    );
    assert!(
        !v.entries
            .iter()
            .any(|e| matches!(&e.record, Record::Request { path, .. } if path.contains("cutover-probe-dead1"))),
        "nothing was sent for the other run's object"
    );
    // Read-only: the same operation is refused, nothing sent.
    let ro = connect(&GlobalArgs { read_only: true, ..global }, |_| false).await.expect("connects");
    let (tx, _rx) = mpsc::unbounded_channel();
    let mut r = Runner::new(&ro, "argocd", Journal::at(dir.path.join("ro.jsonl")), tx).expect("runner");
    assert!(r.start(req(Operation::Validate)).is_err(), "read-only refuses it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_pvcs_go_through_the_door_only_with_the_run_labels_and_are_deleted_with_the_run() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let e = env().await;
    let (mut r, mut rx) = e.runner();
    let pvc = |labels: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "cutover-probe-r7-vol", "namespace": NS, "labels": labels},
            "spec": {"storageClassName": "longhorn", "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "16Mi"}}}})
    };
    let ours = json!({"app.kubernetes.io/managed-by": "cutover", "cutover.io/probe-run": "r7"});
    let create = |objects: Vec<serde_json::Value>| {
        req(Operation::ProbeCreate { run: "r7".into(), namespace: NS.into(), what: "volume claim".into(), objects })
    };
    let before = e.sim.requests().into_iter().filter(|q| q.is_mutating() && !q.path.contains("/leases")).count();
    // Refused before anything is sent: another run's claim, an unlabelled one, a PersistentVolume.
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "cutover-probe-r7-pv", "namespace": NS, "labels": ours.clone()}, "spec": {}});
    for objects in [
        vec![pvc(ours.clone()), pvc(json!({"app.kubernetes.io/managed-by": "cutover", "cutover.io/probe-run": "r8"}))],
        vec![pvc(json!({}))],
        vec![pv],
    ] {
        r.start(create(objects)).expect("starts");
        let (_, res) = done(&mut rx, Duration::from_secs(20)).await;
        assert!(matches!(&res, Err(ExecError::Refused(m)) if m.contains("is not a probe object of run r7")), "{res:?}");
    }
    let sent = e.sim.requests().into_iter().filter(|q| q.is_mutating() && !q.path.contains("/leases")).count();
    assert_eq!(sent, before, "nothing was sent for a refused object");
    // Labelled: created (and bound by the sim's provisioner), then deleted with its run.
    r.start(create(vec![pvc(ours)])).expect("starts");
    let (_, res) = done(&mut rx, Duration::from_secs(20)).await;
    assert!(res.as_deref().is_ok_and(|m| m.contains("created 1 probe object(s)")), "{res:?}");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(e.admin.clone(), NS);
    let mut bound = None;
    for _ in 0..100 {
        let c = claims.get("cutover-probe-r7-vol").await.expect("the claim exists");
        if c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
            bound = c.spec.and_then(|s| s.volume_name);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pv_name = bound.expect("the claim is Bound");
    r.start(req(Operation::ProbeDelete { run: Some("r7".into()), why: "test".into() })).expect("starts");
    let (lines, res) = done(&mut rx, Duration::from_secs(60)).await;
    assert!(res.as_deref().is_ok_and(|m| m.contains("none left")), "{res:?}");
    assert!(lines.iter().any(|l| l.contains("1 PVC(s)")), "{lines:?}");
    assert!(claims.get_opt("cutover-probe-r7-vol").await.expect("get").is_none());
    let pvs: Api<PersistentVolume> = Api::all(e.admin.clone());
    assert!(pvs.get_opt(&pv_name).await.expect("get").is_none(), "its volume (reclaim policy Delete) went with it");
    e.sim.stop();
}
