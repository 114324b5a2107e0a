//! `cutover status` against the simulated cluster: not ready on the user's cluster today (no
//! Cilium), ready once the Cilium scenario has rolled out; never a mutating request.
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
async fn cilium_installed_becomes_ready_with_wait() {
    let sim = Sim::start(SimOptions { scenario: "cilium-installed".into(), speed: 5.0, ..Default::default() })
        .await
        .expect("sim");
    let (code, out) = status(&sim, &["--wait", "--wait-duration", "120s", "-o", "json"]).await;
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("json report");
    assert_eq!(report["ready"], true, "{out}");
    assert!(report["items"].as_array().is_some_and(|i| i.len() >= 6), "{out}");
}
