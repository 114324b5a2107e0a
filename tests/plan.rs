//! `cutover plan` against the simulated cluster: the runbook with every gate evaluated, read-only;
//! the per-node step is an explicit unavailable gate; a broken runbook file names file:line.
#![cfg(feature = "sim")] // drives the simulated cluster

use cutover::sim::{Sim, SimOptions};
use cutover::tempdir::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_shows_each_step_with_its_live_gates_and_changes_nothing() {
    let sim = Sim::start(SimOptions::default()).await.expect("sim starts");
    let kubeconfig = sim.kubeconfig.display().to_string();
    let tmp = TempDir::new().expect("tmp");
    let run = |extra: Vec<String>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.args(["--kubeconfig", &kubeconfig, "--context", "sim", "--log-file", "/dev/null", "plan"])
            .args(extra)
            .env("XDG_CONFIG_HOME", &tmp.path)
            .env_remove("CUTOVER_CONFIG");
        async move {
            let out = cmd.output().await.expect("run cutover plan");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let before = sim.requests().iter().filter(|r| r.is_mutating()).count();
    let (code, out, err) = run(vec![]).await;
    assert_eq!(code, Some(0), "{err}");
    // Fresh cluster: the bare netshoot pod fails pre-flight, so Stage 1's commit is blocked.
    assert!(out.contains("RED PreflightNoFail: 1 fail: drain/homelab-cp1"), "{out}");
    assert!(out.lines().any(|l| l.trim_start().starts_with("blocked") && l.contains("stage1-commit")), "{out}");
    assert!(out.contains("ok  CiliumAppAbsent: Application cilium-app does not exist"), "{out}");
    assert!(out.lines().any(|l| l.trim_start().starts_with("unavailable") && l.contains("stage1-nodes")), "{out}");
    assert!(
        out.contains("RED CiliumCniOnNoNode") || out.contains("ok  CiliumCniOnNoNode: every server runs flannel"),
        "{out}"
    );
    let (code, json, _) = run(vec!["-o".into(), "json".into()]).await;
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert!(v.as_array().is_some_and(|a| a.len() >= 15), "{json}");
    assert_eq!(sim.requests().iter().filter(|r| r.is_mutating()).count(), before, "the plan changed nothing");

    let bad = tmp.path.join("runbook.toml");
    std::fs::write(&bad, "version = 1\n[[stage]]\nid = \"s\"\ntitle = \"t\"\n[[stage.step]]\nid = \"a\"\ntitle = \"x\"\nkind = \"teleport\"\nrollback = \"none\"\n")
        .expect("write");
    let (code, _, err) = run(vec!["--runbook".into(), bad.display().to_string()]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains(&format!("{}:8:", bad.display())), "{err}");
    sim.stop();
}
