//! The node step's soak and its waits against the simulated cluster through the real `ssh`:
//! an injected broken node pair makes the soak stop the runbook with its own message (the next
//! node untouched), an unreachable relay makes the soak unknown (which stops too), a reboot
//! run switches the nodes with CiliumEndpoints for their pods, and a stopped soak of the last node
//! keeps the step from being done until a later run soaks that node again.
#![cfg(feature = "sim")] // drives the simulated cluster

mod common;

use common::{Setup, Ssh, admin, is_cordoned, node_name, nodes};
use cutover::sim::faults::Fault;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

/// The node order the preview shows.
fn order(preview: &str) -> Vec<String> {
    let line = preview.lines().find(|l| l.contains("Node order (one at a time, servers first):")).expect("order line");
    let rest = line.split("servers first): ").nth(1).expect("names");
    rest.split(", ").map(|n| n.split(' ').next().expect("name").to_string()).collect()
}

/// A fresh sim over SSH with Stage 1 done up to the node step; the node order.
async fn before_the_nodes(seed: u64, setup: impl FnOnce(Setup) -> Setup) -> (common::Rehearsal, Vec<String>) {
    let r = setup(Setup::fresh(seed).ssh(Ssh::Sim)).start().await;
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-wait"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (code, out, err) = r.run(&["run", "--dry-run", "stage1"]).await;
    assert_eq!(code, Some(0), "{err}");
    (r, order(&out))
}

/// Only `first` was worked on: the others are not cordoned and their drop-in is not written.
async fn only_first_touched(r: &common::Rehearsal, first: &str) {
    for n in nodes(&r.sim).await {
        let name = node_name(&n);
        if name != first {
            assert!(!is_cordoned(&n), "{name} untouched");
        }
        if cutover::checks::k3s::is_server(&n) && name != first {
            let a = cutover::checks::k3s::node_args(&n).expect("args").expect("parses");
            assert!(a.flannel_enabled(), "{name} untouched: {a:?}");
        }
    }
    let text = r.journal().await;
    let written: Vec<&str> = text.lines().filter(|l| l.contains("write-dropin node/")).collect();
    assert_eq!(written.len(), 1, "one node written: {text}");
    assert!(written[0].contains(&format!("node/{first}")), "{text}");
    r.assert_journal_verifies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_between_a_broken_node_pair_stop_the_soak_and_the_next_node_is_untouched() {
    let (r, order) = before_the_nodes(21, |s| s).await;
    let (first, second) = (order[0].clone(), order[1].clone());
    r.sim.inject(&Fault::BrokenPath { a: first.clone(), b: second.clone() });
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    let all = format!("{out}\n{err}");
    assert!(all.contains(&format!("{first}: the soak stopped the runbook: ")), "{all}");
    assert!(all.contains("drop(s) other than policy-denied"), "{all}");
    assert!(all.contains("STALE_OR_UNROUTABLE_IP"), "the drop reason is named: {all}");
    assert!(all.contains("flows to/from the node in"), "the figures: {all}");
    let text = r.journal().await;
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("note     soak node/{first}: stopped: "))
                && l.contains("STALE_OR_UNROUTABLE_IP")),
        "the soak's figures are journaled: {text}"
    );
    only_first_touched(&r, &first).await;
    // Run again, the pair still broken: the switched node soaks again before the next one is
    // touched, and stops the runbook again.
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    let all = format!("{out}\n{err}");
    assert!(
        all.contains(&format!("{first}: switched before this run; it soaks again before {second} is touched")),
        "{all}"
    );
    assert!(all.contains(&format!("{first}: the soak stopped the runbook: ")), "{all}");
    assert!(all.contains(&format!("{second} is not touched")), "{all}");
    only_first_touched(&r, &first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_relay_makes_the_soak_unknown_and_it_stops_the_runbook() {
    let (r, order) = before_the_nodes(23, |s| s).await;
    let first = order[0].clone();
    r.sim.inject(&Fault::RelayDown { seconds: 1_000_000 });
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    let all = format!("{out}\n{err}");
    assert!(all.contains(&format!("{first}: the soak is unknown (never green): ")), "{all}");
    assert!(all.contains("hubble-relay"), "says what to look at: {all}");
    let text = r.journal().await;
    assert!(text.contains(&format!("note     soak node/{first}: unknown: ")), "{text}");
    only_first_touched(&r, &first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_run_switches_the_nodes_and_their_new_pods_have_cilium_endpoints() {
    let (r, order) = before_the_nodes(25, |s| s.extra("reboot = true\n")).await;
    let (code, out, err) = r.run(&["run", "--dry-run", "stage1"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("'sudo -n systemctl reboot'  # recommended over a restart"), "{out}");
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let text = r.journal().await;
    for n in &order {
        assert!(text.contains(&format!("change   reboot node/{n}: sudo -n systemctl reboot")), "{n} rebooted: {text}");
        assert!(text.contains(&format!("note     soak node/{n}: passed: ")), "{n} soaked: {text}");
    }
    assert!(!text.contains("change   restart node/"), "no restart with [ssh] reboot: {text}");
    // The sim's node drops the connection under the reboot (ssh exits 255): expected, not a failure.
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("→ ok: exit 0; stderr: connection dropped (ssh exit 255) (the node is rebooting)"))
            .count(),
        order.len(),
        "{text}"
    );
    let ns = nodes(&r.sim).await;
    for n in &ns {
        assert!(!is_cordoned(n), "{} uncordoned", node_name(n));
        if cutover::checks::k3s::is_server(n) {
            let a = cutover::checks::k3s::node_args(n).expect("args").expect("parses");
            assert_eq!(a.value("flannel-backend"), Some("none"), "{}: {a:?}", node_name(n));
        }
    }
    // A reboot restarts every pod in a new sandbox: each Running pod that is not hostNetwork
    // has its CiliumEndpoint (a pod started just now may wait for its agent a moment).
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let missing = pods_without_endpoints(&r).await;
        if missing.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "without a CiliumEndpoint: {missing:?}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    r.assert_journal_verifies().await;
}

/// Running pods (not hostNetwork) without a CiliumEndpoint of the same namespace/name.
async fn pods_without_endpoints(r: &common::Rehearsal) -> Vec<(String, String)> {
    let client = admin(&r.sim).await;
    let pods = Api::<Pod>::all(client.clone()).list(&Default::default()).await.expect("pods").items;
    let gvk = GroupVersionKind::gvk("cilium.io", "v2", "CiliumEndpoint");
    let ceps = Api::<DynamicObject>::all_with(client, &ApiResource::from_gvk_with_plural(&gvk, "ciliumendpoints"))
        .list(&Default::default())
        .await
        .expect("ciliumendpoints")
        .items;
    let have: std::collections::BTreeSet<(String, String)> = ceps
        .iter()
        .map(|c| (c.metadata.namespace.clone().unwrap_or_default(), c.metadata.name.clone().unwrap_or_default()))
        .collect();
    let managed: Vec<(String, String)> = pods
        .iter()
        .filter(|p| !p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false))
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.metadata.namespace.clone().unwrap_or_default(), p.metadata.name.clone().unwrap_or_default()))
        .collect();
    assert!(!managed.is_empty());
    managed.into_iter().filter(|k| !have.contains(k)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_stops_the_soak_and_says_what_was_seen() {
    let (r, order) = before_the_nodes(27, |s| s.runbook("soak", "\"10m\"")).await;
    let first = order[0].clone();
    let (code, rest) = interrupt_at(&r, &format!("{first}: soaking 0:")).await;
    assert_eq!(code, Some(4), "cancelled exits 4:\n{rest}");
    assert!(rest.contains(&format!("{first}: soak stopped by the operator after ")), "{rest}");
    let text = r.journal().await;
    assert!(text.contains(&format!("note     soak node/{first}: stopped by the operator: ")), "{text}");
    only_first_touched(&r, &first).await;
}

/// Runs `cutover run --yes --until stage1-nodes`, and interrupts it (what `x` does in the cockpit:
/// stop at the next safe point) once its progress has a line with `needle`: its exit code and
/// what it printed after the interrupt.
async fn interrupt_at(r: &common::Rehearsal, needle: &str) -> (Option<i32>, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = r
        .command(&["run", "--yes", "--until", "stage1-nodes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cutover runs");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(common::WAIT, async {
        while let Ok(Some(l)) = lines.next_line().await {
            let hit = l.contains(needle);
            seen.push(l);
            if hit {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "{needle:?} in the progress:\n{}", seen.join("\n"));
    let pid = child.id().expect("pid").to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let mut rest = String::new();
    while let Ok(Ok(Some(l))) = tokio::time::timeout(common::WAIT, lines.next_line()).await {
        rest.push_str(&l);
        rest.push('\n');
    }
    let status = tokio::time::timeout(common::WAIT, child.wait()).await.expect("ends").expect("status");
    (status.code(), rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_of_0s_is_off_and_the_preview_progress_and_journal_say_so() {
    let (r, order) = before_the_nodes(29, |s| s.runbook("soak", "\"0s\"")).await;
    let (code, out, err) = r.run(&["run", "--dry-run", "stage1"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("soak: off ([runbook] soak = \"0s\")"), "{out}");
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("soak off ([runbook] soak = \"0s\"): no flows were watched"), "{err}");
    let text = r.journal().await;
    for n in &order {
        assert!(text.contains(&format!("note     soak node/{n}: off ([runbook] soak = \"0s\")")), "{n}: {text}");
    }
    assert!(!text.contains(": passed: "), "no soak passed without one: {text}");
}

/// The last node's soak is stopped (the operator's `x`): every node is switched, but the step is
/// not done. The next run soaks that node again (and only that) before it says the step is done;
/// the run after that finds it done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_soak_of_the_last_node_is_soaked_again_before_the_step_is_done() {
    let (r, order) = before_the_nodes(31, |s| s.runbook("soak", "\"8s\"")).await;
    let last = order.last().expect("nodes").clone();
    let (code, rest) = interrupt_at(&r, &format!("{last}: back; soaking ")).await;
    assert_eq!(code, Some(4), "cancelled exits 4:\n{rest}");
    assert!(rest.contains(&format!("{last}: soak stopped by the operator after ")), "{rest}");

    // Every node is switched now; the preview still has the step to do, and says why.
    let (code, out, err) = r.run(&["run", "--dry-run", "stage1"]).await;
    assert_eq!(code, Some(0), "{err}");
    let all_switched = format!("done: all {} node(s) switched", order.len());
    assert!(!out.contains(&all_switched), "not done while the last soak did not pass:\n{out}");
    assert!(out.contains(&format!("{last}: switched; its soak at ")), "{out}");
    assert!(out.contains("did not pass: stopped by the operator"), "{out}");
    assert!(out.contains("it soaks again before the step is done"), "{out}");

    // The next run touches no node and soaks the last one again.
    let before = r.mutating();
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    let all = format!("{out}\n{err}");
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains(&format!("{last}: switched; its soak at ")), "{all}");
    assert!(all.contains(&format!("{last}: soak passed: ")), "{all}");
    assert!(all.contains(&format!("{last} soaked again and passed")), "{all}");
    for n in &order {
        assert!(!all.contains(&format!("{n}: cordoning")), "no node is worked on again: {all}");
    }
    // Only the cluster lock's Lease was written.
    let writes: Vec<String> =
        r.sim.requests()[..].iter().filter(|q| q.is_mutating()).skip(before).map(|q| q.path.clone()).collect();
    assert!(writes.iter().all(|p| p.contains("/leases")), "{writes:?}");
    let text = r.journal().await;
    let soaks = text.lines().filter(|l| l.contains(&format!("note     soak node/{last}: "))).count();
    assert_eq!(soaks, 2, "two soaks of {last} journaled: {text}");

    // Now it is done.
    let (code, out, err) = r.run(&["run", "--dry-run", "stage1"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&all_switched), "{out}");
    r.assert_journal_verifies().await;
}
