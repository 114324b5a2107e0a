//! Rehearsals of the runbook against the simulated cluster with the real `git`: `cutover run`
//! commits and pushes the Stage 1 files to the sim's bare origin, asks Argo CD to refresh, waits
//! until the Cilium app is Synced and Healthy at the pushed revision, and stops at the per-node
//! step, which this version does not carry out. A dry run changes nothing; a dirty clone is
//! refused naming its files; a run killed in the middle of a wait resumes from the journal.
#![cfg(feature = "sim")] // drives the simulated cluster

mod common;

use std::process::Stdio;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use common::{Setup, WAIT, admin, git};
use cutover::sim::faults::Fault;

/// The Cilium app's sync, health and revisions.
async fn cilium_app(c: &kube::Client) -> (String, String, Vec<String>) {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    );
    let a = Api::<DynamicObject>::namespaced_with(c.clone(), "argocd", &ar).get_opt("cilium-app").await.ok().flatten();
    a.map_or((String::new(), String::new(), Vec::new()), |a| {
        let s = |p: &str| a.data.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        let revs = a
            .data
            .pointer("/status/sync/revisions")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        (s("/status/sync/status"), s("/status/health/status"), revs)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage1_commits_pushes_waits_for_argo_and_stops_at_the_node_step() {
    let r = Setup::fresh(5).start().await;
    let seeded = r.origin_head();

    // A dry run of the whole runbook and both rollbacks: every preview, nothing sent or pushed.
    let before = r.mutating();
    let (code, out, err) = r.run(&["run", "--dry-run", "stage0", "stage1", "stage2"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("[ready] stage1\n  stage1-commit"), "{out}");
    assert!(out.contains("create platform/gitops/argocd/apps/cilium-app.yaml"), "{out}");
    assert!(out.contains("+kind: Application"), "the exact diff is shown: {out}");
    assert!(out.contains("[unavailable] stage1\n  stage1-nodes"), "{out}");
    for stage in ["1", "2"] {
        let (code, out, err) = r.run(&["rollback", stage, "--dry-run"]).await;
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("dry run: nothing is sent"), "{out}");
    }
    assert_eq!(r.mutating(), before, "a dry run sends no mutating request");
    assert_eq!(r.origin_head(), seeded, "a dry run pushes nothing");

    // A dirty clone is refused, naming the file; nothing is committed.
    std::fs::write(r.clone.join("notes.txt"), "mine\n").expect("write");
    let (code, out, err) = r.run(&["run", "--yes"]).await;
    assert_eq!(code, Some(3), "{err}");
    assert!(out.contains("ok       preflight"), "the pre-flight step acknowledged the warnings: {out}\n{err}");
    assert!(err.contains("notes.txt") && err.contains("stops at stage1-commit"), "{err}");
    assert_eq!(r.origin_head(), seeded);
    std::fs::remove_file(r.clone.join("notes.txt")).expect("remove");

    // The run: pre-flight acknowledged, the commit pushed, refresh, wait; the node step stops it.
    let (code, out, err) = r.run(&["run", "--yes"]).await;
    assert_eq!(code, Some(3), "stops at the node step\n{out}\n{err}");
    assert!(err.contains("done     preflight"), "{out}\n{err}");
    assert!(out.contains("ok       stage1-commit      pushed"), "{out}\n{err}");
    assert!(out.contains("ok       stage1-wait"), "{out}\n{err}");
    assert!(err.contains("the runbook stops at stage1-nodes") && err.contains("no-ssh_config does not exist"), "{err}");
    let pushed = r.origin_head();
    assert_ne!(pushed, seeded);
    assert_eq!(git(&r.origin, &["rev-parse", "refs/heads/main~1"]), seeded, "one commit on top");
    let tree = git(&r.origin, &["ls-tree", "-r", "--name-only", "refs/heads/main"]);
    assert!(tree.lines().any(|l| l == "platform/gitops/argocd/apps/cilium-app.yaml"), "{tree}");
    assert!(tree.lines().any(|l| l.ends_with("cilium/values.yaml")), "{tree}");
    let msg = git(&r.origin, &["log", "-1", "--format=%B", "refs/heads/main"]);
    assert!(msg.contains("Cutover-Step: stage1-commit") && msg.starts_with("cutover: Stage 1"), "{msg}");
    let (sync, health, revs) = cilium_app(&admin(&r.sim).await).await;
    assert_eq!((sync.as_str(), health.as_str()), ("Synced", "Healthy"));
    assert!(revs.contains(&pushed), "{revs:?} holds {pushed}");

    // Again: every step done is done (the commit is found on the branch), nothing new pushed.
    let (code, out, err) = r.run(&["run", "--yes"]).await;
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(err.contains("done     stage1-commit") && err.contains("the runbook stops at stage1-nodes"), "{err}");
    assert_eq!(r.origin_head(), pushed);

    // The journal verifies; no Application was ever deleted.
    let (code, out, err) = r.run(&["journal", "--verify"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (_, text, _) = r.run(&["journal"]).await;
    assert!(text.contains("change   push git:") && text.contains("ack      pre-flight warning"), "{text}");
    let deletes: Vec<String> = r
        .sim
        .requests()
        .iter()
        .filter(|q| q.method == "DELETE" && q.path.contains("/applications"))
        .map(|q| q.path.clone())
        .collect();
    assert!(deletes.is_empty(), "{deletes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_in_the_middle_of_a_wait_resumes_from_the_journal() {
    let r = Setup::fresh(5).start().await;
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-refresh"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    // A node that is not Ready keeps the Cilium agent there unavailable: the wait waits.
    r.sim.inject(&Fault::NodeNotReady { node: "homelab-w2".into() });
    let mut child = r
        .command(&["run", "--yes", "--until", "stage1-wait"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    let waiting = tokio::time::timeout(WAIT, async {
        while let Ok(Some(l)) = lines.next_line().await {
            seen.push(l.clone());
            if l.contains("stage1-wait waiting") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the wait starts in time");
    assert!(waiting, "the wait said it waits: {}", seen.join("\n"));
    child.start_kill().expect("kill -9");
    let _ = child.wait().await;
    let (_, text, _) = r.run(&["journal"]).await;
    assert!(text.contains("interrupted: step stage1-wait"), "{text}");

    r.sim.inject(&Fault::Clear);
    // The lock of the killed run is stale after twice its 2 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (code, out, err) = r.run(&["run", "--yes", "--take-over-stale-lock", "--until", "stage1-wait"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("interrupted at stage1-wait"), "{err}");
    assert!(err.contains("done     stage1-commit"), "{err}");
    assert!(out.contains("ok       stage1-appear"), "a wait waits again: {out}");
    assert!(out.contains("ok       stage1-wait"), "{out}");
    let (code, _, err) = r.run(&["journal", "--verify"]).await;
    assert_eq!(code, Some(0), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_runbook_file_names_its_line_and_read_only_refuses_to_run() {
    let r = Setup::fresh(5).start().await;
    let bad = r.tmp.path.join("runbook.toml");
    std::fs::write(&bad, "version = 1\n[[stage]]\nid = \"s\"\ntitle = \"t\"\n[[stage.step]]\nid = \"a\"\ntitle = \"x\"\nkind = \"git-commit\"\nstage = 1\nrollback = \"nowhere\"\n")
        .expect("write");
    let (code, _, err) = r.run(&["run", "--runbook", bad.to_str().expect("utf-8")]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("{}:10: rollback:", bad.display())), "{err}");
    let (code, _, err) = r.run(&["run", "stage9"]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("no stage or step \"stage9\""), "{err}");
    let before = (r.mutating(), r.origin_head());
    let (code, _, err) = r.run(&["--read-only", "run", "--yes"]).await;
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("read-only") && err.contains("--dry-run"), "{err}");
    assert_eq!((r.mutating(), r.origin_head()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validate_step_passes_on_a_migrated_cluster_and_stops_the_runbook_on_a_broken_pair() {
    let r = Setup::scenario("migrated", 1, 8.0).start().await;
    let before = r.sim.requests().len();
    let (code, out, err) = r.run(&["run", "--yes", "stage1-validate"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("ok       stage1-validate") && out.contains("5 passive and 7 active check(s) green"), "{out}");
    assert!(!out.contains("not run"), "every check ran, the Longhorn volume's too: {out}");
    r.sim.inject(&Fault::BrokenPath { a: "homelab-w1".into(), b: "homelab-w2".into() });
    let (code, out, err) = r.run(&["run", "--yes", "stage1-validate"]).await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(err.contains("the runbook stops at stage1-validate") && err.contains("cross-node-flows"), "{err}");
    assert!(err.contains("probe-pod-to-pod (homelab-w1 → homelab-w2 red, homelab-w2 → homelab-w1 red)"), "{err}");
    // Besides the cluster lock, only the probe objects were written (in the probe namespace),
    // and none is left.
    let writes: Vec<String> = r
        .sim
        .requests()
        .iter()
        .skip(before)
        .filter(|q| q.is_mutating() && !q.path.contains("/leases"))
        .map(|q| format!("{} {}", q.method, q.path))
        .collect();
    assert!(writes.iter().all(|w| w.contains("/namespaces/default/")), "{writes:?}");
    assert!(writes.iter().any(|w| w.starts_with("POST") && w.ends_with("/jobs")), "{writes:?}");
    let left: Vec<_> = ["pods", "services", "batch/jobs", "persistentvolumeclaims"]
        .iter()
        .flat_map(|id| r.sim.shared.store.list(cutover::sim::registry::find(id).expect("resource"), None).0)
        .filter(|o| o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "cutover")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
