//! `cutover plan` against the simulated cluster, through the same step engine as `cutover run`:
//! the position from the journal, every step's state and live gates, the Stage 1 commit's files
//! read from a clone of the sim's Git origin (fetched, never written); read-only throughout. The
//! per-node step is an explicit unavailable gate; a broken runbook file names file:line.
#![cfg(feature = "sim")] // drives the simulated cluster

mod common;

use common::{Setup, git};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_shows_each_step_with_its_live_gates_and_changes_nothing() {
    // The fresh homelab as it starts (the netshoot pod's pre-flight fail not fixed), no SSH.
    let r = Setup::scenario("fresh", 1, 1.0).start().await;
    let (sim, clone, origin) = (&r.sim, &r.clone, &r.origin);
    let before = sim.requests().iter().filter(|r| r.is_mutating()).count();
    let (origin_head, clone_head) =
        (git(origin, &["rev-parse", "refs/heads/main"]), git(clone, &["rev-parse", "HEAD"]));

    let (code, out, err) = r.run(&["plan"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("runbook: not started\n"), "{out}");
    // Fresh cluster: the bare netshoot pod fails pre-flight, so Stage 1's commit is blocked.
    assert!(out.contains("RED preflight-no-fail: 1 fail: drain/homelab-cp1"), "{out}");
    assert!(out.lines().any(|l| l.trim_start().starts_with("blocked") && l.contains("stage1-commit")), "{out}");
    assert!(out.contains("ok  cilium-app-absent: Application cilium-app does not exist"), "{out}");
    // What the commit would hold, read from the clone: one line per file, not the diff.
    assert!(out.lines().any(|l| l.trim() == "create platform/gitops/argocd/apps/cilium-app.yaml"), "{out}");
    assert!(!out.contains("+kind: Application"), "the text plan leaves the diff out: {out}");
    assert!(out.lines().any(|l| l.trim_start().starts_with("unavailable") && l.contains("stage1-nodes")), "{out}");
    assert!(out.contains("ok  cilium-cni-on-no-node: every server runs flannel"), "{out}");
    assert!(!out.contains("PreflightNoFail"), "gates are named by their ids: {out}");

    let (code, json, err) = r.run(&["plan", "-o", "json"]).await;
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["position"]["state"], "not-started", "{json}");
    let steps = v["steps"].as_array().expect("steps");
    assert!(steps.len() >= 15, "{json}");
    let commit = steps.iter().find(|s| s["id"] == "stage1-commit").expect("stage1-commit");
    assert_eq!(commit["state"], "blocked");
    assert!(commit["why"].as_str().is_some_and(|w| w.contains("preflight-no-fail is red")), "{commit}");
    assert!(
        commit["files"].as_array().is_some_and(|f| f
            .iter()
            .any(|f| f["change"] == "create" && f["path"] == "platform/gitops/argocd/apps/cilium-app.yaml")),
        "{commit}"
    );
    assert!(
        commit["changes"].as_array().is_some_and(|c| c.iter().any(|l| l == "+kind: Application")),
        "JSON holds the exact diff: {commit}"
    );
    assert_eq!(commit["gates"][0]["gate"], "preflight-no-fail");

    // Read-only: no mutating request, nothing committed or pushed, the clone untouched.
    assert_eq!(sim.requests().iter().filter(|r| r.is_mutating()).count(), before, "the plan changed nothing");
    assert_eq!(git(origin, &["rev-parse", "refs/heads/main"]), origin_head);
    assert_eq!(git(clone, &["rev-parse", "HEAD"]), clone_head);
    assert_eq!(git(clone, &["status", "--porcelain"]), "");

    // A step run: the plan's position and the step's state come from the journal.
    let (code, out, err) = r.run(&["run", "--yes", "stage1-refresh"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (code, out, err) = r.run(&["plan"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("runbook: after stage1-refresh (done "), "{out}");
    assert!(out.lines().any(|l| l.trim_start().starts_with("done") && l.contains("stage1-refresh")), "{out}");
    assert!(out.contains("done: journal "), "{out}");

    let bad = r.tmp.path.join("runbook.toml");
    std::fs::write(&bad, "version = 1\n[[stage]]\nid = \"s\"\ntitle = \"t\"\n[[stage.step]]\nid = \"a\"\ntitle = \"x\"\nkind = \"teleport\"\nrollback = \"none\"\n")
        .expect("write");
    let (code, _, err) = r.run(&["plan", "--runbook", &bad.display().to_string()]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains(&format!("{}:8:", bad.display())), "{err}");
}
