//! The runbook's `node-cutover` step against the simulated cluster through the real `ssh`:
//! Stage 1 over every node, servers first (drop-in written, k3s restarted, flags on, nodes
//! uncordoned, every write journaled), and its rollback bringing the flags back off.
#![cfg(feature = "sim")] // drives the simulated cluster

mod common;

use common::{Setup, Ssh, nodes};

/// A fresh sim with its pre-flight fail fixed, the runbook reaching the nodes over its SSH.
async fn start(seed: u64) -> common::Rehearsal {
    Setup::fresh(seed).ssh(Ssh::Sim).start().await
}

fn server_args(nodes: &[k8s_openapi::api::core::v1::Node]) -> Vec<(String, cutover::checks::k3s::NodeArgs)> {
    nodes
        .iter()
        .filter(|n| cutover::checks::k3s::is_server(n))
        .map(|n| {
            let a = cutover::checks::k3s::node_args(n).expect("node-args").expect("parses");
            (n.metadata.name.clone().unwrap_or_default(), a)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage1_switches_every_node_over_ssh_and_the_rollback_switches_them_back() {
    let r = start(7).await;
    // The preview names the order and the exact commands; nothing is sent.
    let (code, out, err) = r.run(&["run", "--dry-run", "stage1"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Node order (one at a time, servers first):"), "{out}");
    assert!(out.contains("sudo -n tee /etc/rancher/k3s/config.yaml.d/90-cutover-stage1.yaml"), "{out}");
    assert!(out.contains("soak 2s: Hubble flows to and from the node from"), "{out}");
    assert!(out.contains("have CiliumEndpoints"), "{out}");

    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("stage1-nodes") && out.contains("node(s) switched"), "{out}\n{err}");
    let ns = nodes(&r.sim).await;
    for (name, a) in server_args(&ns) {
        assert_eq!(a.value("flannel-backend"), Some("none"), "{name}: {a:?}");
        assert!(a.bool("disable-network-policy"), "{name}: {a:?}");
    }
    for n in &ns {
        assert!(!n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false), "{:?} left cordoned", n.metadata.name);
    }
    // What the cockpit's Nodes pane shows (the same state, read by `cutover status`): every
    // node's CNI is Cilium, from evidence on the node (its k3s start, its pods' addresses).
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let (_, out, err) = r.run(&["status", "-o", "json"]).await;
        let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        let cni: Vec<(String, String, String)> = report["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|i| i["what"].as_str().is_some_and(|w| w.ends_with(": CNI")))
            .map(|i| {
                let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
                (s("what"), s("status"), s("detail"))
            })
            .collect();
        assert_eq!(cni.len(), ns.len(), "one CNI line per node: {cni:?}");
        if cni.iter().all(|(_, status, _)| status == "ready") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not every node reports Cilium: {cni:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let (code, out, err) = r.run(&["journal", "--verify"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (_, text, _) = r.run(&["journal"]).await;
    assert!(text.contains("write-dropin node/"), "{text}");
    assert!(text.lines().filter(|l| l.contains("write-dropin")).count() >= ns.len(), "{text}");
    // Every switched node soaked, its figures journaled.
    assert_eq!(
        text.lines().filter(|l| l.contains("note     soak node/") && l.contains(": passed: ")).count(),
        ns.len(),
        "{text}"
    );

    // Again: every node is done; nothing is written.
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("done     stage1-nodes") || out.contains("done     stage1-nodes"), "{out}\n{err}");

    // The rollback's node step removes the drop-in and restarts: flannel back on every server.
    let (code, out, err) = r.run(&["rollback", "1", "--yes", "--until", "stage1-nodes-back"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    for (name, a) in server_args(&nodes(&r.sim).await) {
        assert!(a.flannel_enabled() && !a.bool("disable-network-policy"), "{name}: {a:?}");
    }
}

/// The first node of the preview's order.
fn first_node(preview: &str) -> String {
    let line = preview.lines().find(|l| l.contains("Node order (one at a time, servers first):")).expect("order line");
    let rest = line.split("servers first): ").nth(1).expect("names");
    rest.split(' ').next().expect("first").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sudo_wanting_a_password_stops_at_the_first_node_and_leaves_the_others_untouched() {
    let r = start(11).await;
    let (code, out, err) = r.run(&["run", "--dry-run", "stage1"]).await;
    assert_eq!(code, Some(0), "{err}");
    let first = first_node(&out);
    r.sim.inject(&cutover::sim::faults::Fault::SudoPassword { node: first.clone() });
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    let all = format!("{out}\n{err}");
    // The SSH/sudo gate stops it before the cordon: a refusal, nothing changed.
    assert_eq!(code, Some(3), "{all}");
    assert!(all.contains(&first) && all.contains("sudo wants a password") && all.contains("NOPASSWD"), "{all}");
    assert!(all.contains(&format!("nothing was changed on {first}")), "says nothing was changed: {all}");
    for n in nodes(&r.sim).await {
        let name = n.metadata.name.clone().unwrap_or_default();
        let cordoned = n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        assert!(!cordoned, "{name}: the gate stops before any cordon");
        if cutover::checks::k3s::is_server(&n) {
            let a = cutover::checks::k3s::node_args(&n).expect("args").expect("parses");
            assert!(a.flannel_enabled(), "{name} untouched: {a:?}");
        }
    }
    let (code, out, err) = r.run(&["journal", "--verify"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_exits_non_zero_stops_after_the_write_and_says_what_was_written() {
    let r = start(13).await;
    let (code, out, err) = r.run(&["run", "--dry-run", "stage1"]).await;
    assert_eq!(code, Some(0), "{err}");
    let first = first_node(&out);
    r.sim.inject(&cutover::sim::faults::Fault::CommandFails {
        node: first.clone(),
        command: "systemctl restart".into(),
    });
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    let all = format!("{out}\n{err}");
    assert!(
        all.contains(&first) && all.contains("cannot restart") && all.contains("90-cutover-stage1.yaml written"),
        "{all}"
    );
    for n in nodes(&r.sim).await {
        let name = n.metadata.name.clone().unwrap_or_default();
        let cordoned = n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        assert_eq!(cordoned, name == first, "{name}: only the node in work is left cordoned");
    }
    let (_, text, _) = r.run(&["journal"]).await;
    assert_eq!(text.lines().filter(|l| l.contains("write-dropin")).count(), 1, "one node written: {text}");
}
