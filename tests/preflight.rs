//! `cutover preflight` against the simulated homelab over real loopback sockets: the fresh
//! scenario (embedded flannel and kube-proxy, k8s 1.32) as admin, and the same
//! cluster seen by the read-only viewer identity (access checks say what will be refused).
#![cfg(feature = "sim")] // drives the simulated cluster

use std::process::{Command, Stdio};
use std::time::Duration;

use cutover::checks::{self, Check, ClusterSnapshot, Status};
use cutover::cli::GlobalArgs;
use cutover::settings::Settings;
use cutover::sim::{Sim, SimOptions};

async fn start() -> Sim {
    Sim::start(SimOptions { scenario: "fresh".into(), ..Default::default() }).await.expect("sim starts")
}

fn global(sim: &Sim, context: &str) -> GlobalArgs {
    GlobalArgs { kubeconfig: Some(sim.kubeconfig.clone()), context: Some(context.into()), ..Default::default() }
}

/// Gathers until the sim's world has seeded its nodes (generous deadline for a loaded machine).
async fn snapshot(sim: &Sim, context: &str) -> ClusterSnapshot {
    let client = checks::client::build(&global(sim, context)).await.expect("client");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let snap = checks::gather(&client, &Settings::default()).await;
        if snap.nodes.as_ref().is_ok_and(|n| !n.is_empty()) && snap.applications.is_ok() {
            return snap;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sim never showed nodes and Argo CD: nodes {:?}, applications {:?}",
            snap.nodes.as_ref().map(Vec::len),
            snap.applications.as_ref().map(Vec::len)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn by_id<'a>(checks: &'a [Check], id: &str) -> &'a Check {
    checks.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no check {id} in {checks:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_cluster_as_admin() {
    let sim = start().await;
    let snap = snapshot(&sim, "sim").await;
    let checks = checks::evaluate(&snap, &Settings::default());
    let table = checks::format_table(&checks);
    if std::env::var_os("SHOW_PREFLIGHT").is_some() {
        eprintln!("{table}");
    }

    assert_eq!(by_id(&checks, "api-reachable").status, Status::Pass, "{table}");
    let flannel = by_id(&checks, "k3s-flannel");
    assert_eq!(flannel.status, Status::Warn, "{table}");
    assert!(flannel.evidence.iter().any(|e| e.contains("embedded flannel runs")), "{flannel:#?}");
    let kp = by_id(&checks, "k3s-kube-proxy");
    assert_eq!(kp.status, Status::Pass, "{kp:#?}");
    assert!(kp.evidence.iter().any(|e| e.contains("embedded kube-proxy runs")), "{kp:#?}");
    assert!(kp.evidence.iter().any(|e| e.contains("get ds kube-proxy` answers NotFound")), "{kp:#?}");
    // The default pin (1.17) is tested on k8s 1.32; the plan's 1.16.4 is accepted with a warning.
    assert_eq!(by_id(&checks, "cilium-chart-compat").status, Status::Pass, "{table}");
    let mut plan = Settings::default();
    plan.cilium.chart_version = "1.16.4".into();
    assert_eq!(by_id(&checks::evaluate(&snap, &plan), "cilium-chart-compat").status, Status::Warn);
    assert_eq!(by_id(&checks, "k3s-server-flags").status, Status::Pass, "{table}");
    assert_eq!(by_id(&checks, "argocd-installed").status, Status::Pass, "{table}");
    assert_eq!(by_id(&checks, "argo-root-app").status, Status::Pass, "{table}");
    assert_eq!(by_id(&checks, "pod-cidr").status, Status::Pass, "{table}");
    assert_eq!(by_id(&checks, "service-cidr").status, Status::Pass, "{table}");
    // The admin may do everything the cockpit needs.
    let access: Vec<&Check> = checks.iter().filter(|c| c.id.starts_with("access/")).collect();
    assert_eq!(access.len(), 5, "{table}");
    assert!(access.iter().all(|c| c.status == Status::Pass), "{table}");
    // Nothing was forbidden or unreachable.
    assert!(
        checks.iter().all(|c| !c.evidence.iter().any(|e| e.starts_with("forbidden:") || e.starts_with("unreachable:"))),
        "{table}"
    );
    // Longhorn's instance-manager PDBs make drains wait, they do not block them for good; the
    // seed's bare `default/netshoot` pod makes the drain of its node refuse (one rule with the
    // executor), and the check names it.
    let drains: Vec<&Check> = checks.iter().filter(|c| c.id.starts_with("drain/")).collect();
    assert!(!drains.is_empty(), "{table}");
    for c in drains {
        if c.evidence.iter().any(|e| e.contains("default/netshoot")) {
            assert_eq!(c.status, Status::Fail, "{c:#?}");
            assert!(c.evidence[0].contains("the drain refuses"), "{c:#?}");
        } else {
            assert_ne!(c.status, Status::Fail, "{c:#?}");
        }
    }

    // Pre-flight only reads (the access reviews are creates that store nothing).
    for r in sim.requests() {
        if r.is_mutating() {
            assert!(r.path.contains("selfsubjectaccessreviews"), "pre-flight changed something: {r:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_identity_sees_what_will_be_refused() {
    let sim = start().await;
    let snap = snapshot(&sim, "sim-viewer").await;
    let checks = checks::evaluate(&snap, &Settings::default());
    let table = checks::format_table(&checks);
    for id in [
        "access/patch-nodes",
        "access/create-pods-eviction",
        "access/patch-applications",
        "access/create-pods-portforward",
    ] {
        let c = by_id(&checks, id);
        assert_eq!(c.status, Status::Warn, "{c:#?}");
        assert!(c.evidence[0].starts_with("REFUSED: "), "{c:#?}");
    }
    // Reads still work for the viewer: the cluster checks are decided, not unknown.
    assert_eq!(by_id(&checks, "k3s-flannel").status, Status::Warn, "{table}");
    assert_eq!(by_id(&checks, "api-reachable").status, Status::Pass, "{table}");
    // The bare netshoot pod's node fails drain readiness: exit 1.
    assert_eq!(checks::exit_code(&checks), 1, "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_context_from_the_cluster() {
    let sim = start().await;
    let _ = snapshot(&sim, "sim").await;
    let client = checks::client::build(&global(&sim, "sim")).await.expect("client");
    let ctx = checks::gather::render_context(&client).await;
    assert!(ctx.schedulable_nodes.is_some_and(|n| n >= 1), "{ctx:?}");
    assert!(!ctx.servers.is_empty(), "{ctx:?}");
    assert!(ctx.api_versions.as_ref().is_some_and(|v| v.iter().any(|a| a == "apps/v1")), "{ctx:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_context_and_dead_server_are_errors_not_panics() {
    let sim = start().await;
    let Err(err) = checks::client::build(&global(&sim, "no-such-context")).await else {
        panic!("an unknown context must be an error");
    };
    assert!(err.to_string().contains("no-such-context"), "{err}");
    assert!(!err.to_string().contains("sim-admin.") && !err.to_string().contains("sim-viewer."), "token leaked: {err}");

    // A server that went away: every read is `unreachable`, the evaluation still completes.
    let client = checks::client::build(&global(&sim, "sim")).await.expect("client");
    sim.stop();
    let snap = checks::gather(&client, &Settings::default()).await;
    let checks = checks::evaluate(&snap, &Settings::default());
    assert_eq!(by_id(&checks, "api-reachable").status, Status::Fail);
    assert_eq!(checks::exit_code(&checks), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_entry_points_against_the_sim() {
    let sim = start().await;
    let _ = snapshot(&sim, "sim").await;
    let g = global(&sim, "sim-viewer");
    let code = checks::run(checks::PreflightArgs { output: cutover::manifests::lint::OutputFormat::Json }, &g)
        .await
        .expect("preflight runs");
    assert_eq!(code, std::process::ExitCode::from(1), "a drain readiness fails on the bare netshoot pod");

    // render --cluster --out: the viewer context is not read-only in the settings, so it writes.
    let tmp = cutover::sim::TempDir::new().expect("tmp");
    let args = cutover::manifests::render::RenderArgs {
        stage: cutover::manifests::render::Stage::One,
        out: Some(tmp.path.clone()),
        cluster: true,
    };
    let code = cutover::manifests::render::run(args.clone(), &g).await.expect("render runs");
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let values = std::fs::read_to_string(tmp.path.join("platform/networking/cilium/values.yaml")).expect("written");
    assert!(values.contains("schedulable nodes"), "{values}");
    // --read-only refuses to write.
    let ro = GlobalArgs { read_only: true, ..g.clone() };
    assert!(cutover::manifests::render::run(args, &ro).await.is_err());
}

/// The other scenarios: what changes between the user's cluster today, a migrated cluster, the
/// kube-proxy-free one, and one where the Prometheus Operator CRDs exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrated_kpr_and_crd_scenarios() {
    let cases: [(&str, &[(&str, Status)]); 4] = [
        // Half-way: k3s flags set, the Cilium app synced, kube-proxy still embedded.
        ("cilium-installed", &[("k3s-flannel", Status::Pass), ("argo-cilium-app", Status::Pass)]),
        (
            "migrated",
            &[
                ("k3s-flannel", Status::Pass),
                ("k3s-network-policy", Status::Pass),
                ("k3s-kube-proxy", Status::Pass),
                ("argo-cilium-app", Status::Pass),
                ("cilium-chart-compat", Status::Pass),
            ],
        ),
        ("kpr", &[("k3s-flannel", Status::Pass), ("k3s-kube-proxy", Status::Pass), ("cni-daemonsets", Status::Pass)]),
        ("servicemonitor-crd", &[("k3s-flannel", Status::Warn), ("servicemonitor-crds", Status::Pass)]),
    ];
    for (scenario, expect) in cases {
        let sim = Sim::start(SimOptions { scenario: scenario.into(), ..Default::default() }).await.expect("sim starts");
        let snap = snapshot(&sim, "sim").await;
        let checks = checks::evaluate(&snap, &Settings::default());
        for (id, status) in expect {
            assert_eq!(by_id(&checks, id).status, *status, "{scenario}: {:#?}", by_id(&checks, id));
        }
        let evidence = by_id(&checks, "k3s-kube-proxy").evidence.join(" ");
        match scenario {
            "kpr" => assert!(evidence.contains("--disable-kube-proxy"), "{evidence}"),
            _ => assert!(evidence.contains("embedded kube-proxy runs"), "{scenario}: {evidence}"),
        }
        if scenario == "migrated" {
            let cni = by_id(&checks, "cni-daemonsets").evidence.join(" ");
            assert!(cni.contains("kube-system/cilium"), "{cni}");
        }
    }
}

/// `cutover preflight | head -1`: the reader is gone before anything is written. The command
/// still exits with the checks' code (1: no cluster to reach, `api-reachable` fails), quietly,
/// not with a panic (`print!` on a closed pipe, exit 101). Both output formats.
#[test]
fn closed_stdout_is_the_exit_code_not_a_panic() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let tmp = cutover::sim::TempDir::new().expect("tmp");
    for output in ["text", "json"] {
        let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .current_dir(&tmp.path)
            .arg("--kubeconfig")
            .arg(tmp.path.join("no-such-kubeconfig"))
            .args(["--log-file", "/dev/null", "preflight", "-o", output])
            .stdin(Stdio::null())
            .stdout(writer.try_clone().expect("dup pipe"))
            .output()
            .expect("run cutover preflight");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{output}: {stderr}");
        assert!(stderr.is_empty(), "{output}: {stderr}");
    }
}
