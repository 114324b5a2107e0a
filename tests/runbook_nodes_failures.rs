//! The node step's failures against the simulated cluster through the real `ssh`: each stops the
//! runbook with its own message and leaves every other node untouched — a drain blocked by a
//! PodDisruptionBudget, a node whose SSH is unreachable, a host key that changed, a host key that
//! is unknown (the message shows the key the node offers), and a server restarted before the one
//! it joins through (k3s's critical configuration mismatch: it never comes back, and the message
//! carries its journal).
#![cfg(feature = "sim")] // drives the simulated cluster

mod common;

use std::collections::BTreeSet;

use common::{Rehearsal, Setup, Ssh, admin, is_cordoned, node_name, nodes};
use cutover::checks::k3s;
use cutover::sim::faults::Fault;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// The nodes the step may not have touched: not cordoned, and (servers) flannel still on.
async fn assert_untouched(r: &Rehearsal, except: &[&str]) {
    for n in nodes(&r.sim).await {
        let name = node_name(&n);
        if except.contains(&name.as_str()) {
            continue;
        }
        assert!(!is_cordoned(&n), "{name} is cordoned, but the step never reached it");
        if k3s::is_server(&n) {
            let a = k3s::node_args(&n).expect("node-args").expect("parses");
            assert!(a.flannel_enabled() && !a.bool("disable-network-policy"), "{name} untouched: {a:?}");
        }
    }
}

/// The nodes the journal says a node write was sent to.
async fn written_nodes(r: &Rehearsal) -> BTreeSet<String> {
    r.journal()
        .await
        .lines()
        .filter(|l| l.contains("write-dropin node/"))
        .filter_map(|l| {
            l.split("write-dropin node/")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .map(|n| n.trim_end_matches(':').to_string())
        })
        .collect()
}

/// The first node of the step's order, from the dry run's preview.
async fn first_node(r: &Rehearsal) -> String {
    let (code, out, err) = r.run(&["run", "--dry-run", "stage1"]).await;
    assert_eq!(code, Some(0), "{err}");
    let line = out.lines().find(|l| l.contains("Node order (one at a time, servers first):")).expect("order line");
    line.split("servers first): ").nth(1).and_then(|r| r.split(' ').next()).expect("a first node").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_blocked_by_a_pdb_stops_with_the_node_cordoned_and_nothing_written() {
    // The blog pod's node goes first; the blog PDB allows no disruption.
    let r = Setup::fresh(21).ssh(Ssh::Sim).runbook("drain_timeout", "\"4s\"").start().await;
    let pods = Api::<Pod>::namespaced(admin(&r.sim).await, "blog");
    let list = pods.list(&ListParams::default()).await.expect("blog pods");
    let node = list
        .items
        .iter()
        .find_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .expect("a blog pod is scheduled");
    let mut order: Vec<String> = nodes(&r.sim).await.iter().map(node_name).filter(|n| *n != node).collect();
    order.insert(0, node.clone());
    let order_toml = format!("[{}]", order.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", "));
    let text = std::fs::read_to_string(&r.settings).expect("settings");
    std::fs::write(&r.settings, text.replacen("[runbook]\n", &format!("[runbook]\nnode_order = {order_toml}\n"), 1))
        .expect("settings");
    assert_eq!(first_node(&r).await, node);
    // Up to the node step first: pre-flight would see the blocking PDB (its drain check).
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-wait"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    r.sim.inject(&Fault::PdbBlocking { namespace: "blog".into(), name: "blog".into() });
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    let all = format!("{out}\n{err}");
    assert_eq!(code, Some(4), "a drain deadline is a timeout: {all}");
    assert!(all.contains(&format!("drain of {node} timed out after")), "{all}");
    assert!(
        all.contains("blog/") && all.contains("no drop-in written"),
        "names the pod, says nothing was written: {all}"
    );
    let n = nodes(&r.sim).await.into_iter().find(|n| node_name(n) == node).expect("node");
    assert!(is_cordoned(&n), "{node} is left cordoned, as the message says");
    assert_untouched(&r, &[&node]).await;
    assert!(written_nodes(&r).await.is_empty(), "no node write journaled");
    r.assert_journal_verifies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_or_a_changed_host_key_stops_before_the_cordon() {
    let r = Setup::fresh(23).ssh(Ssh::Sim).start().await;
    let first = first_node(&r).await;

    r.sim.inject(&Fault::SshUnreachable { node: first.clone() });
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    let all = format!("{out}\n{err}");
    assert_eq!(code, Some(3), "refused: nothing was changed: {all}");
    assert!(all.contains(&first) && all.contains("cannot connect (connection refused)"), "{all}");
    assert!(all.contains(&format!("nothing was changed on {first}")), "{all}");
    assert_untouched(&r, &[]).await;

    r.sim.inject(&Fault::Clear);
    r.sim.inject(&Fault::SshHostKeyChanged { node: first.clone() });
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    let all = format!("{out}\n{err}");
    assert_eq!(code, Some(3), "{all}");
    assert!(all.contains("HOST KEY CHANGED") && all.contains("it now offers SHA256:"), "{all}");
    assert_untouched(&r, &[]).await;
    assert!(written_nodes(&r).await.is_empty(), "no node write journaled");
    r.assert_journal_verifies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_key_stops_and_shows_the_key_the_node_offers() {
    let r = Setup::fresh(25).ssh(Ssh::Sim).start().await;
    let first = first_node(&r).await;
    // The operator's known_hosts lacks the first node's key.
    let node = r.sim.ssh.nodes.iter().find(|n| n.name == first).expect("first node's ssh").clone();
    let kh = std::fs::read_to_string(&r.sim.ssh.known_hosts).expect("known_hosts");
    let prefix = format!("[127.0.0.1]:{} ", node.port);
    assert!(kh.contains(&prefix), "{kh}");
    let kept: String = kh.lines().filter(|l| !l.starts_with(&prefix)).map(|l| format!("{l}\n")).collect();
    std::fs::write(&r.sim.ssh.known_hosts, kept).expect("write known_hosts");

    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    let all = format!("{out}\n{err}");
    assert_eq!(code, Some(3), "{all}");
    assert!(all.contains("host key not in known_hosts"), "{all}");
    assert!(all.contains(&node.host_key_fingerprint), "shows the fingerprint the node offers: {all}");
    assert!(all.contains(&format!("ssh-keyscan -p {} 127.0.0.1 >>", node.port)), "{all}");
    assert!(!std::fs::read_to_string(&r.sim.ssh.known_hosts).expect("read").contains(&prefix), "nothing accepted");
    assert_untouched(&r, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_before_the_one_it_joins_never_comes_back_and_the_others_are_untouched() {
    // ha-servers: cp2 and cp3 join through cp1; cp2 first is the plan's restart-order mistake.
    let order = r#"["homelab-cp2", "homelab-cp1", "homelab-cp3", "homelab-w1"]"#;
    let r = Setup::scenario("ha-servers", 27, 20.0)
        .fix_preflight(true)
        .ssh(Ssh::Sim)
        .runbook("node_order", order)
        .runbook("wait_timeout", "\"20s\"")
        .start()
        .await;
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    let all = format!("{out}\n{err}");
    assert!(matches!(code, Some(1) | Some(4)), "{all}");
    assert!(all.contains("homelab-cp2"), "{all}");
    assert!(all.contains("critical configuration value mismatch"), "the k3s journal says why: {all}");
    assert!(all.contains("journalctl -u k3s"), "says what to look with: {all}");
    assert!(all.contains("the next node is not touched"), "{all}");
    assert_eq!(written_nodes(&r).await, BTreeSet::from(["homelab-cp2".to_string()]), "only cp2 was written");
    assert_untouched(&r, &["homelab-cp2"]).await;
    r.assert_journal_verifies().await;
}
