//! `cutover status` against the simulated cluster: not ready on the user's cluster today (no
//! Cilium), nor while pods keep their flannel addresses; ready once every pod runs on Cilium;
//! never a mutating request.
#![cfg(feature = "sim")] // drives the simulated cluster

use std::path::PathBuf;
use std::process::Command;

use cutover::sim::{Sim, SimOptions};

/// Runs the real binary as the sim's viewer identity (off the async runtime: it blocks).
async fn status(sim: &Sim, extra: &[&str]) -> (i32, String) {
    let kubeconfig: PathBuf = sim.kubeconfig.clone();
    let relay = sim.relay_addr.to_string();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--context", "sim-viewer", "--log-file", "/dev/null", "--hubble-server", &relay, "status"])
            .args(&extra)
            .output()
            .expect("run cutover status");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_cluster_is_not_ready_and_says_why() {
    let sim = Sim::start(SimOptions { scenario: "fresh".into(), ..Default::default() }).await.expect("sim");
    let (code, out) = status(&sim, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NOT READY"), "{out}");
    assert!(out.contains("FAIL daemonset/cilium"), "{out}");
    assert!(out.contains("not ready:"), "{out}");
    let mutating: Vec<_> = sim.requests().into_iter().filter(|r| r.is_mutating()).collect();
    assert!(mutating.is_empty(), "status mutated: {mutating:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cilium_installed_is_not_ready_while_pods_keep_flannel_addresses() {
    // Every k3s restarted without flannel and the agents are Ready, but the workloads were not
    // re-created: they still have their flannel sandboxes, so no node has switched yet.
    let sim = Sim::start(SimOptions { scenario: "cilium-installed".into(), speed: 5.0, ..Default::default() })
        .await
        .expect("sim");
    let (code, out) = status(&sim, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("stage 1 · 0/3 nodes switched · pending: homelab-cp1 ("), "{out}");
    assert!(out.contains("FAIL node homelab-w1: CNI — "), "{out}");
    assert!(out.contains("pods managed"), "{out}");
    assert!(!out.contains("Cilium is the CNI"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrated_becomes_ready_with_wait() {
    let sim =
        Sim::start(SimOptions { scenario: "migrated".into(), speed: 5.0, ..Default::default() }).await.expect("sim");
    let (code, out) = status(&sim, &["--wait", "--wait-duration", "120s", "-o", "json"]).await;
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("json report");
    assert_eq!(report["ready"], true, "{out}");
    assert_eq!(report["stage"], "1 · Cilium is the CNI", "{out}");
    assert!(report["items"].as_array().is_some_and(|i| i.len() >= 6), "{out}");
}

/// Runs the binary with `args`, killed after `limit` (a hang fails the test instead of the run).
fn run_bounded(args: &[&str], limit: std::time::Duration) -> (i32, String, String) {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cutover");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cutover {args:?} still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read stdout");
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("read stderr");
    (status.code().unwrap_or(-1), out, err)
}

/// A kubeconfig whose API server is a loopback port nothing listens on.
fn kubeconfig_to_closed_port(name: &str) -> PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("status-{name}-{}.kubeconfig", std::process::id()));
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n\
         clusters:\n- name: nowhere\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\n\
         users:\n- name: nobody\n  user:\n    token: not-a-token\n\
         contexts:\n- name: nowhere\n  context:\n    cluster: nowhere\n    user: nobody\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

#[test]
fn unreachable_api_has_its_own_exit_code() {
    let kubeconfig = kubeconfig_to_closed_port("unreachable");
    let kc = kubeconfig.to_str().expect("utf-8 path");
    for output in ["text", "json"] {
        let (code, out, err) = run_bounded(
            &["--kubeconfig", kc, "--log-file", "/dev/null", "status", "-o", output],
            std::time::Duration::from_secs(60),
        );
        assert_eq!(code, 3, "stdout: {out}\nstderr: {err}");
        assert!(out.is_empty(), "no report without a cluster: {out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("cutover status: cannot reach the Kubernetes API at https://127.0.0.1:"), "{err}");
    }
    let _ = std::fs::remove_file(&kubeconfig);
}

#[test]
fn missing_kubeconfig_is_unreadable_too() {
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-no-such.kubeconfig");
    let (code, _, err) = run_bounded(
        &["--kubeconfig", missing.to_str().expect("utf-8"), "--log-file", "/dev/null", "status"],
        std::time::Duration::from_secs(30),
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.starts_with("cutover status: cannot connect to the cluster:") && err.lines().count() == 1, "{err}");
}

#[test]
fn huge_wait_duration_is_refused_not_a_panic() {
    let kubeconfig = kubeconfig_to_closed_port("huge-wait");
    let kc = kubeconfig.to_str().expect("utf-8 path");
    let (code, _, err) = run_bounded(
        &["--kubeconfig", kc, "--log-file", "/dev/null", "status", "--wait", "--wait-duration", "9223372036854775807s"],
        std::time::Duration::from_secs(30),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("duration out of range") && !err.contains("panicked"), "{err}");
    let _ = std::fs::remove_file(&kubeconfig);
}
