//! Rehearsal scaffolding shared by the sim-gated scenario tests (`mod common;`): a simulated
//! cluster, a clone of its Git origin, a settings file pointing at both, and `cutover` run as
//! the operator would run it, with its own state and config directories.
#![allow(dead_code)] // each test file uses its own part of it
#![allow(clippy::disallowed_methods)] // the operator's own hand: deleting the netshoot pod

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use cutover::settings::Settings;
use cutover::sim::{Sim, SimOptions};
use cutover::tempdir::TempDir;

/// Generous: the machine may be loaded; every wait polls a condition.
pub const WAIT: Duration = Duration::from_secs(180);

/// A sim running `scenario` with `seed`, time running `speed` times faster.
pub async fn sim(scenario: &str, seed: u64, speed: f64) -> Sim {
    Sim::start(SimOptions { scenario: scenario.into(), seed, speed, ..Default::default() }).await.expect("sim starts")
}

/// An admin client of the sim (the operator's own hand, not the cockpit's).
pub async fn admin(sim: &Sim) -> kube::Client {
    let kc = Kubeconfig::read_from(&sim.kubeconfig).expect("kubeconfig");
    let opts = KubeConfigOptions { context: Some("sim".into()), ..Default::default() };
    let cfg = kube::Config::from_custom_kubeconfig(kc, &opts).await.expect("config");
    kube::Client::try_from(cfg).expect("client")
}

/// `git -C dir args…`, which must succeed; its stdout trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git").arg("-C").arg(dir).args(args).output().expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every node of the sim.
pub async fn nodes(sim: &Sim) -> Vec<Node> {
    Api::<Node>::all(admin(sim).await).list(&Default::default()).await.expect("nodes").items
}

pub fn node_name(n: &Node) -> String {
    n.metadata.name.clone().unwrap_or_default()
}

pub fn is_cordoned(n: &Node) -> bool {
    n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
}

/// The raw `k3s.io/node-args` annotation ("" when absent).
pub fn node_args_raw(n: &Node) -> String {
    n.metadata.annotations.as_ref().and_then(|a| a.get("k3s.io/node-args")).cloned().unwrap_or_default()
}

/// How the rehearsal reaches the nodes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ssh {
    /// `[ssh] config_file` names a file that does not exist: the node step is unavailable and
    /// no ssh is ever started (the sim's InternalIPs are not loopback without its ssh_config).
    Off,
    /// The sim's ssh_config: every node's name and InternalIP lead to its loopback SSH server.
    Sim,
}

/// What to start: the scenario, the settings, whether the pre-flight fail is fixed first.
pub struct Setup {
    scenario: String,
    seed: u64,
    speed: f64,
    ssh: Ssh,
    runbook: BTreeMap<String, String>,
    extra: String,
    fix_preflight: bool,
}

impl Setup {
    /// The fresh homelab at 20× with the pre-flight fail (the bare netshoot pod) fixed by hand,
    /// short runbook waits, no SSH.
    pub fn fresh(seed: u64) -> Setup {
        Setup::scenario("fresh", seed, 20.0).fix_preflight(true)
    }

    /// `scenario` as it starts, short runbook waits, no SSH.
    pub fn scenario(scenario: &str, seed: u64, speed: f64) -> Setup {
        let runbook = [
            ("wait_timeout", "\"3m\""),
            ("lock_duration", "\"2s\""),
            ("validate_window", "\"3s\""),
            ("soak", "\"2s\""),
            // The sim runs 20× faster: 20× the default 120 policy drops a minute.
            ("soak_max_drops_per_minute", "2400"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Setup {
            scenario: scenario.into(),
            seed,
            speed,
            ssh: Ssh::Off,
            runbook,
            extra: String::new(),
            fix_preflight: false,
        }
    }

    pub fn ssh(mut self, ssh: Ssh) -> Setup {
        self.ssh = ssh;
        self
    }

    /// `[runbook] key = value` (`value` in TOML, e.g. `"\"3m\""`), replacing the default.
    pub fn runbook(mut self, key: &str, value: &str) -> Setup {
        self.runbook.insert(key.into(), value.into());
        self
    }

    /// More TOML after the `[ssh]` table's `config_file` (keys of `[ssh]`, then tables).
    pub fn extra(mut self, toml: &str) -> Setup {
        self.extra.push_str(toml);
        self
    }

    /// Whether to delete the bare netshoot pod and wait until pre-flight has no fail.
    pub fn fix_preflight(mut self, fix: bool) -> Setup {
        self.fix_preflight = fix;
        self
    }

    pub async fn start(self) -> Rehearsal {
        let sim = sim(&self.scenario, self.seed, self.speed).await;
        let tmp = TempDir::new().expect("temp dir");
        let clone = sim.clone_origin(&tmp.path.join("k8s-homelab")).expect("clone");
        let mut s = Settings::default();
        sim.point_settings_at(&mut s, clone.clone());
        let ssh_config = match self.ssh {
            Ssh::Off => tmp.path.join("no-ssh_config"),
            Ssh::Sim => sim.ssh.config.clone(),
        };
        let mut toml = format!(
            "[git]\nrepo_path = {:?}\nbranch = \"main\"\nrepo_url = {:?}\napps_path = {:?}\nvalues_path = {:?}\n\n[runbook]\n",
            clone.display().to_string(),
            s.git.repo_url,
            s.git.apps_path,
            s.git.values_path,
        );
        for (k, v) in &self.runbook {
            toml.push_str(&format!("{k} = {v}\n"));
        }
        toml.push_str(&format!("\n[ssh]\nconfig_file = {:?}\n{}", ssh_config.display().to_string(), self.extra));
        let settings = tmp.path.join("cutover.toml");
        std::fs::write(&settings, toml).expect("settings");
        let origin = sim.info().git_repo.expect("origin");
        let r = Rehearsal { sim, tmp, clone, origin, settings };
        if self.fix_preflight {
            r.fix_preflight().await;
        }
        r
    }
}

pub struct Rehearsal {
    pub sim: Sim,
    pub tmp: TempDir,
    /// The operator's clone of the homelab repo.
    pub clone: PathBuf,
    /// The sim's bare origin, which its Argo CD watches.
    pub origin: PathBuf,
    pub settings: PathBuf,
}

impl Rehearsal {
    /// As an operator would: delete the bare netshoot pod, then wait until pre-flight has no
    /// fail (Longhorn's instance-manager PDBs allow no disruption until its volumes settle).
    pub async fn fix_preflight(&self) {
        let pods = Api::<Pod>::namespaced(admin(&self.sim).await, "default");
        pods.delete("netshoot", &DeleteParams::default()).await.expect("delete netshoot");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (code, out, _) = self.run(&["preflight"]).await;
            if code != Some(1) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "pre-flight still fails:\n{out}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `cutover` against the sim with this rehearsal's settings and its own state directory.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.arg("--kubeconfig")
            .arg(&self.sim.kubeconfig)
            .args(["--context", "sim", "--log-file", "/dev/null", "--settings"])
            .arg(&self.settings)
            .arg("--hubble-server")
            .arg(self.sim.relay_addr.to_string())
            .args(args)
            .env("XDG_STATE_HOME", self.tmp.path.join("state"))
            .env("XDG_CONFIG_HOME", self.tmp.path.join("config"))
            .env_remove("CUTOVER_CONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `cutover args…` to its end: exit code, stdout, stderr.
    pub async fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
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

    pub fn origin_head(&self) -> String {
        git(&self.origin, &["rev-parse", "refs/heads/main"])
    }

    pub fn mutating(&self) -> usize {
        self.sim.requests().iter().filter(|r| r.is_mutating()).count()
    }

    /// The journal's text.
    pub async fn journal(&self) -> String {
        self.run(&["journal"]).await.1
    }

    /// `cutover journal --verify` passes.
    pub async fn assert_journal_verifies(&self) {
        let (code, out, err) = self.run(&["journal", "--verify"]).await;
        assert_eq!(code, Some(0), "journal --verify:\n{out}\n{err}");
    }
}
