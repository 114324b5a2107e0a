//! The whole cutover rehearsed against the simulated homelab through the real `ssh` and `git`:
//! fresh → Stage 1 → Stage 2 → rollback of Stage 2 → rollback of Stage 1, each as the operator
//! runs it headless (`cutover run --yes`, `cutover rollback N --yes`). At the end the nodes'
//! k3s args, the Applications and the Git tree are as they were at the start (the history keeps
//! the commits and their reverts), no node is cordoned, no drop-in is left on any node, and
//! `cutover journal --verify` passes.
#![cfg(feature = "sim")] // drives the simulated cluster

mod common;

use std::collections::BTreeMap;

use common::{Rehearsal, Setup, Ssh, admin, git, is_cordoned, node_args_raw, node_name, nodes};
use cutover::checks::k3s;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

/// Each node's `k3s.io/node-args`.
async fn args(r: &Rehearsal) -> BTreeMap<String, String> {
    nodes(&r.sim).await.iter().map(|n| (node_name(n), node_args_raw(n))).collect()
}

/// The Applications in the argocd namespace, by name.
async fn applications(r: &Rehearsal) -> Vec<String> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(admin(&r.sim).await, "argocd", &ar);
    let mut names: Vec<String> = api
        .list(&Default::default())
        .await
        .expect("applications")
        .items
        .into_iter()
        .filter_map(|a| a.metadata.name)
        .collect();
    names.sort();
    names
}

/// `ssh -F <the sim's ssh_config> NODE sudo -n cat PATH`: the drop-in's content, or `None` when
/// the node has no such file.
fn dropin_on(r: &Rehearsal, node: &str, stage: u8) -> Option<String> {
    let path = format!("/etc/rancher/k3s/config.yaml.d/90-cutover-stage{stage}.yaml");
    let out = std::process::Command::new("ssh")
        .arg("-F")
        .arg(&r.sim.ssh.config)
        .args(["-o", "BatchMode=yes", node, "sudo", "-n", "cat", &path])
        .output()
        .expect("ssh runs");
    if out.status.success() {
        return Some(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No such file"), "{node}: ssh failed otherwise: {err}");
    None
}

/// Runs `cutover args…`, which must exit 0.
async fn ok(r: &Rehearsal, args: &[&str]) -> String {
    let (code, out, err) = r.run(args).await;
    assert_eq!(code, Some(0), "cutover {args:?}:\n{out}\n{err}");
    format!("{out}\n{err}")
}

/// Waits, as the operator watching the cockpit would, until `cutover validate --passive` is
/// green (right after a node's restart its flows can be too few to judge: unknown, never green).
async fn validate_green(r: &Rehearsal) {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let (code, out, err) = r.run(&["validate", "--passive", "--window", "5s"]).await;
        if code == Some(0) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "validation never green:\n{out}\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_stage1_stage2_and_both_rollbacks_end_where_they_started() {
    let r = Setup::fresh(31).ssh(Ssh::Sim).runbook("validate_window", "\"8s\"").start().await;
    let start_args = args(&r).await;
    let start_apps = applications(&r).await;
    let seeded = r.origin_head();
    let start_tree = git(&r.origin, &["rev-parse", "refs/heads/main^{tree}"]);

    // Stage 1: Cilium through Argo CD, then every node without flannel; then, once the flows
    // through the last node restarted are there to judge, the validation step.
    let out = ok(&r, &["run", "--yes", "--until", "stage1-nodes", "stage0", "stage1"]).await;
    assert!(out.contains("stage1-nodes") && out.contains("node(s) switched"), "{out}");
    validate_green(&r).await;
    let out = ok(&r, &["run", "--yes", "stage1"]).await;
    assert!(out.contains("ok       stage1-validate"), "{out}");
    for n in nodes(&r.sim).await {
        if k3s::is_server(&n) {
            let a = k3s::node_args(&n).expect("node-args").expect("parses");
            assert!(!a.flannel_enabled() && a.bool("disable-network-policy"), "{}: {a:?}", node_name(&n));
        }
    }
    let apps = applications(&r).await;
    assert!(apps.contains(&"cilium-app".to_string()), "{apps:?}");

    // Stage 2: kube-proxy replacement, every node without kube-proxy.
    let out = ok(&r, &["run", "--yes", "--until", "stage2-nodes", "stage2"]).await;
    assert!(out.contains("stage2-nodes") && out.contains("node(s) switched"), "{out}");
    validate_green(&r).await;
    let out = ok(&r, &["run", "--yes", "stage2"]).await;
    assert!(out.contains("ok       stage2-validate"), "{out}");
    for n in nodes(&r.sim).await {
        if k3s::is_server(&n) {
            let a = k3s::node_args(&n).expect("node-args").expect("parses");
            assert!(a.bool("disable-kube-proxy"), "{}: {a:?}", node_name(&n));
        }
    }

    // Rollback of Stage 2, then of Stage 1: nodes first, then the reverts.
    ok(&r, &["rollback", "2", "--yes"]).await;
    for n in nodes(&r.sim).await {
        if k3s::is_server(&n) {
            let a = k3s::node_args(&n).expect("node-args").expect("parses");
            assert!(!a.bool("disable-kube-proxy") && !a.flannel_enabled(), "{}: {a:?}", node_name(&n));
        }
    }
    ok(&r, &["rollback", "1", "--yes"]).await;

    // Where it started: the nodes' args, the Applications, the Git tree.
    assert_eq!(args(&r).await, start_args, "every node's k3s.io/node-args as at the start");
    assert_eq!(applications(&r).await, start_apps, "the Applications as at the start");
    assert_eq!(git(&r.origin, &["rev-parse", "refs/heads/main^{tree}"]), start_tree, "the Git tree as at the start");
    let history = git(&r.origin, &["log", "--format=%s", &format!("{seeded}..refs/heads/main")]);
    assert_eq!(history.lines().count(), 4, "two commits and their two reverts: {history}");
    assert_eq!(history.lines().filter(|l| l.starts_with("cutover: roll back Stage")).count(), 2, "{history}");
    for n in nodes(&r.sim).await {
        let name = node_name(&n);
        assert!(!is_cordoned(&n), "{name} left cordoned");
        for stage in [1, 2] {
            assert_eq!(dropin_on(&r, &name, stage), None, "{name}: the stage {stage} drop-in is gone");
        }
    }
    r.assert_journal_verifies().await;
}
