//! The runbook's `node-cutover` step against the simulated cluster through the real `ssh`:
//! Stage 1 over every node, servers first (drop-in written, k3s restarted, flags on, nodes
//! uncordoned, every write journaled), and its rollback bringing the flags back off.
#![cfg(feature = "sim")] // drives the simulated cluster
#![allow(clippy::disallowed_methods)] // the test deletes a pod as the operator would, by hand
#![allow(dead_code)] // the rehearsal helpers are shared in spirit with tests/runbook.rs

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use cutover::settings::Settings;
use cutover::sim::{Sim, SimOptions};
use cutover::tempdir::TempDir;

/// Generous: the machine may be loaded; every wait polls a condition.
const WAIT: Duration = Duration::from_secs(180);

struct Rehearsal {
    sim: Sim,
    tmp: TempDir,
    clone: PathBuf,
    #[allow(dead_code)]
    origin: PathBuf,
    settings: PathBuf,
}

impl Rehearsal {
    /// A fresh sim whose pre-flight fail (the bare netshoot pod) the operator has fixed, a
    /// clone of its origin and a settings file pointing at it.
    async fn start(seed: u64) -> Rehearsal {
        let sim = Sim::start(SimOptions { scenario: "fresh".into(), seed, speed: 20.0, ..Default::default() })
            .await
            .expect("sim starts");
        let c = admin(&sim).await;
        Api::<Pod>::namespaced(c, "default")
            .delete("netshoot", &DeleteParams::default())
            .await
            .expect("delete netshoot");
        let tmp = TempDir::new().expect("temp dir");
        let clone = sim.clone_origin(&tmp.path.join("k8s-homelab")).expect("clone");
        let mut s = Settings::default();
        sim.point_settings_at(&mut s, clone.clone());
        let settings = tmp.path.join("cutover.toml");
        let toml = format!(
            "[git]\nrepo_path = {:?}\nbranch = \"main\"\nrepo_url = {:?}\napps_path = {:?}\nvalues_path = {:?}\n\n[runbook]\nwait_timeout = \"3m\"\nlock_duration = \"2s\"\n\n[ssh]\nconfig_file = {:?}\n",
            clone.display().to_string(),
            s.git.repo_url,
            s.git.apps_path,
            s.git.values_path,
            // The sim's ssh_config: every node's name and InternalIP lead to its loopback port.
            sim.ssh.config.display().to_string()
        );
        std::fs::write(&settings, toml).expect("settings");
        let origin = sim.info().git_repo.expect("origin");
        let r = Rehearsal { sim, tmp, clone, origin, settings };
        // As an operator would: wait until pre-flight has no fail (Longhorn's instance-manager
        // PDBs allow no disruption until its volumes settle).
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (code, out, _) = r.run(&["preflight"]).await;
            if code != Some(1) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "pre-flight still fails:\n{out}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        r
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.arg("--kubeconfig")
            .arg(&self.sim.kubeconfig)
            .args(["--context", "sim", "--log-file", "/dev/null", "--settings"])
            .arg(&self.settings)
            .args(args)
            .env("XDG_STATE_HOME", self.tmp.path.join("state"))
            .env("XDG_CONFIG_HOME", self.tmp.path.join("config"))
            .env_remove("CUTOVER_CONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = tokio::time::timeout(WAIT, self.command(args).output())
            .await
            .expect("cutover ends in time")
            .expect("cutover runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn origin_head(&self) -> String {
        git(&self.origin, &["rev-parse", "refs/heads/main"])
    }

    fn mutating(&self) -> usize {
        self.sim.requests().iter().filter(|r| r.is_mutating()).count()
    }
}

async fn admin(sim: &Sim) -> kube::Client {
    let kc = Kubeconfig::read_from(&sim.kubeconfig).expect("kubeconfig");
    let opts = KubeConfigOptions { context: Some("sim".into()), ..Default::default() };
    let cfg = kube::Config::from_custom_kubeconfig(kc, &opts).await.expect("config");
    kube::Client::try_from(cfg).expect("client")
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git").arg("-C").arg(dir).args(args).output().expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
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

async fn nodes(sim: &Sim) -> Vec<k8s_openapi::api::core::v1::Node> {
    Api::<k8s_openapi::api::core::v1::Node>::all(admin(sim).await).list(&Default::default()).await.expect("nodes").items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage1_switches_every_node_over_ssh_and_the_rollback_switches_them_back() {
    let r = Rehearsal::start(7).await;
    // The preview names the order and the exact commands; nothing is sent.
    let (code, out, err) = r.run(&["run", "--dry-run", "stage1"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Node order (one at a time, servers first):"), "{out}");
    assert!(out.contains("sudo -n tee /etc/rancher/k3s/config.yaml.d/90-cutover-stage1.yaml"), "{out}");
    assert!(out.contains("soak: not carried out in this version"), "{out}");

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
    let (code, out, err) = r.run(&["journal", "--verify"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (_, text, _) = r.run(&["journal"]).await;
    assert!(text.contains("write-dropin node/"), "{text}");
    assert!(text.lines().filter(|l| l.contains("write-dropin")).count() >= ns.len(), "{text}");

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
    let r = Rehearsal::start(11).await;
    let (code, out, err) = r.run(&["run", "--dry-run", "stage1"]).await;
    assert_eq!(code, Some(0), "{err}");
    let first = first_node(&out);
    r.sim.inject(&cutover::sim::faults::Fault::SudoPassword { node: first.clone() });
    let (code, out, err) = r.run(&["run", "--yes", "--until", "stage1-nodes"]).await;
    assert_ne!(code, Some(0), "{out}\n{err}");
    let all = format!("{out}\n{err}");
    assert!(all.contains(&first) && all.contains("sudo"), "{all}");
    assert!(all.contains("nothing written on"), "says nothing was written: {all}");
    for n in nodes(&r.sim).await {
        let name = n.metadata.name.clone().unwrap_or_default();
        let cordoned = n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        assert_eq!(cordoned, name == first, "{name}: only the node in work is left cordoned");
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
    let r = Rehearsal::start(13).await;
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
