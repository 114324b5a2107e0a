//! Scenarios: the starting state of the simulated homelab (built-in names or a YAML scenario file)
//! and what happens during the run (faults and node operations at given simulated times).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::NodeOp;
use crate::sim::{Fault, SimError};

/// Where the user's cluster stands in the cutover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaseScenario {
    /// Embedded flannel, no Cilium: the cluster today.
    Fresh,
    /// Stage 1 synced: servers run `flannel-backend: none` + `disable-network-policy`, Cilium
    /// agents Ready, workload pods still have the sandboxes (and IPs) flannel gave them.
    CiliumInstalled,
    /// Cilium is the CNI, kube-proxy kept, every pod re-created under Cilium, nodes rebooted.
    Migrated,
    /// Stage 2 done: `disable-kube-proxy`, `kubeProxyReplacement: "true"`.
    Kpr,
}

impl BaseScenario {
    pub fn name(self) -> &'static str {
        match self {
            BaseScenario::Fresh => "fresh",
            BaseScenario::CiliumInstalled => "cilium-installed",
            BaseScenario::Migrated => "migrated",
            BaseScenario::Kpr => "kpr",
        }
    }

    pub fn has_cilium(self) -> bool {
        !matches!(self, BaseScenario::Fresh)
    }

    fn from_name(n: &str) -> Option<Self> {
        [BaseScenario::Fresh, BaseScenario::CiliumInstalled, BaseScenario::Migrated, BaseScenario::Kpr]
            .into_iter()
            .find(|b| b.name() == n)
    }
}

/// k3s role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// `k3s server` (control plane + embedded etcd).
    Server,
    /// `k3s agent`.
    Agent,
}

/// One node of the homelab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScenarioNode {
    pub name: String,
    pub role: NodeRole,
    /// InternalIP (data only, never contacted). Default 192.168.20.(11 + index).
    #[serde(default)]
    pub ip: Option<String>,
    /// Server this node joins through (its `server:` URL). Default: the first server, except for
    /// the first server itself (which runs `cluster-init`).
    #[serde(default)]
    pub join: Option<String>,
    /// Extra node labels (as `node-label` in its k3s config).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub cpus: Option<u32>,
    #[serde(default)]
    pub memory_gib: Option<u32>,
}

/// A fault applied at a simulated time after start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimedFault {
    /// Simulated seconds after start (0 = at start).
    #[serde(default)]
    pub at: f64,
    #[serde(flatten)]
    pub fault: Fault,
}

/// A node operation applied at a simulated time after start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimedNodeOp {
    #[serde(default)]
    pub at: f64,
    pub node: String,
    #[serde(flatten)]
    pub op: NodeOp,
}

/// The simulated Git source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GitOptions {
    /// Use this existing local git repository (branch `main`) instead of a fresh temp repo seeded
    /// with the homelab layout. Relative paths are relative to the scenario file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Directory the root app-of-apps reads (`include: '*-app.yaml'`).
    #[serde(default = "default_apps_path")]
    pub apps_path: String,
    /// Cilium values file (what `$values/...` points at).
    #[serde(default = "default_values_path")]
    pub values_path: String,
    /// repoURL the Applications use for the git source (any non-Helm repoURL maps to the repo).
    #[serde(default = "default_repo_url")]
    pub repo_url: String,
}

impl Default for GitOptions {
    fn default() -> Self {
        GitOptions {
            path: None,
            apps_path: default_apps_path(),
            values_path: default_values_path(),
            repo_url: default_repo_url(),
        }
    }
}

fn default_apps_path() -> String {
    "platform/gitops/argocd/apps".into()
}
fn default_values_path() -> String {
    "platform/networking/cilium/values.yaml".into()
}
fn default_repo_url() -> String {
    "https://github.com/rrumana/k8s-homelab".into()
}

/// Cilium install options for the scenarios that have Cilium.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CiliumOptions {
    /// Chart version (`targetRevision` of the Helm source).
    #[serde(default = "default_chart_version")]
    pub chart_version: String,
    /// Values file content; default: the plan's Stage 1 values, corrected (Stage 2 for `kpr`).
    #[serde(default)]
    pub values: Option<String>,
}

impl Default for CiliumOptions {
    fn default() -> Self {
        CiliumOptions { chart_version: default_chart_version(), values: None }
    }
}

/// The chart `cutover render` pins by default, so a scenario with Cilium looks like a cluster the
/// cockpit's own defaults set up (`chart-version: 1.16.4` gives the plan's pin).
fn default_chart_version() -> String {
    crate::settings::CiliumSettings::default().chart_version
}

/// A scenario: the starting state of the cluster and what happens during the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub base: BaseScenario,
    pub nodes: Vec<ScenarioNode>,
    /// CRD name (`<plural>.<group>`) → present. Overrides the base scenario's defaults.
    pub crds: BTreeMap<String, bool>,
    pub faults: Vec<TimedFault>,
    pub node_ops: Vec<TimedNodeOp>,
    pub git: GitOptions,
    pub cilium: CiliumOptions,
    /// Argo CD 2.x behaviour: per-resource health stored in `status.resources[].health`.
    /// Default false = Argo CD 3.x (`resourceHealthSource: appTree`).
    pub argocd_persist_resource_health: bool,
    /// Restarting or rebooting the only running server makes the API unavailable meanwhile.
    pub api_outage_on_server_restart: bool,
}

/// The YAML scenario file format (see docs/simulator-scenarios.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ScenarioFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "default_base")]
    base: String,
    #[serde(default)]
    nodes: Option<Vec<ScenarioNode>>,
    #[serde(default)]
    crds: BTreeMap<String, bool>,
    #[serde(default)]
    faults: Vec<TimedFault>,
    #[serde(default)]
    node_ops: Vec<TimedNodeOp>,
    #[serde(default)]
    git: Option<GitOptions>,
    #[serde(default)]
    cilium: Option<CiliumOptions>,
    #[serde(default)]
    argocd: Option<ArgoFileOptions>,
    #[serde(default)]
    api_outage_on_server_restart: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ArgoFileOptions {
    #[serde(default)]
    persist_resource_health: bool,
}

fn default_base() -> String {
    "fresh".into()
}

/// Example scenario files shipped in assets/scenarios, loadable by name.
const EMBEDDED: &[(&str, &str)] = &[
    ("ha-servers", include_str!("../../../assets/scenarios/ha-servers.yaml")),
    ("servicemonitor-crd", include_str!("../../../assets/scenarios/servicemonitor-crd.yaml")),
    ("flaky-homelab", include_str!("../../../assets/scenarios/flaky-homelab.yaml")),
    ("broken-plan-values", include_str!("../../../assets/scenarios/broken-plan-values.yaml")),
];

/// The three nodes of the default homelab: one server (embedded etcd), two agents.
pub fn default_nodes() -> Vec<ScenarioNode> {
    let n = |name: &str, role| ScenarioNode {
        name: name.into(),
        role,
        ip: None,
        join: None,
        labels: BTreeMap::new(),
        cpus: None,
        memory_gib: None,
    };
    vec![n("homelab-cp1", NodeRole::Server), n("homelab-w1", NodeRole::Agent), n("homelab-w2", NodeRole::Agent)]
}

impl Scenario {
    /// A built-in scenario with default options.
    pub fn builtin(base: BaseScenario) -> Scenario {
        Scenario {
            name: base.name().to_string(),
            base,
            nodes: default_nodes(),
            crds: BTreeMap::new(),
            faults: Vec::new(),
            node_ops: Vec::new(),
            git: GitOptions::default(),
            cilium: CiliumOptions::default(),
            argocd_persist_resource_health: false,
            api_outage_on_server_restart: true,
        }
    }

    /// Loads a built-in scenario by name (`fresh`, `cilium-installed`, `migrated`, `kpr`, or one of
    /// the example files shipped in assets/scenarios by file stem), or a scenario file by path.
    pub fn load(name_or_path: &str) -> Result<Scenario, SimError> {
        if let Some(b) = BaseScenario::from_name(name_or_path) {
            return Ok(Scenario::builtin(b));
        }
        if let Some((n, text)) = EMBEDDED.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::parse(text, Path::new(&format!("assets/scenarios/{n}.yaml")), None);
        }
        let path = Path::new(name_or_path);
        if path.is_file() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| SimError::ScenarioFile { path: path.to_path_buf(), message: e.to_string() })?;
            return Scenario::parse(&text, path, path.parent());
        }
        Err(SimError::UnknownScenario(name_or_path.to_string()))
    }

    /// Parses scenario file text. `base_dir` resolves a relative `git.path`.
    pub fn parse(text: &str, path: &Path, base_dir: Option<&Path>) -> Result<Scenario, SimError> {
        let err = |message: String| SimError::ScenarioFile { path: path.to_path_buf(), message };
        let f: ScenarioFile = serde_saphyr::from_str_with_options(text, crate::sim::yaml::options())
            .map_err(|e| err(crate::sim::yaml::message(&e)))?;
        let base = BaseScenario::from_name(&f.base)
            .ok_or_else(|| err(format!("unknown base {:?} (fresh, cilium-installed, migrated, kpr)", f.base)))?;
        let mut s = Scenario::builtin(base);
        s.name =
            f.name.unwrap_or_else(|| path.file_stem().map(|x| x.to_string_lossy().into_owned()).unwrap_or_default());
        if let Some(nodes) = f.nodes {
            s.nodes = nodes;
        }
        s.crds = f.crds;
        s.faults = f.faults;
        s.node_ops = f.node_ops;
        if let Some(mut g) = f.git {
            if let (Some(p), Some(dir)) = (&g.path, base_dir)
                && p.is_relative()
            {
                g.path = Some(dir.join(p));
            }
            s.git = g;
        }
        if let Some(c) = f.cilium {
            s.cilium = c;
        }
        if let Some(a) = f.argocd {
            s.argocd_persist_resource_health = a.persist_resource_health;
        }
        if let Some(o) = f.api_outage_on_server_restart {
            s.api_outage_on_server_restart = o;
        }
        s.validate().map_err(err)?;
        Ok(s)
    }

    /// Checks node names, roles and join targets.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("nodes: at least one node is needed".into());
        }
        if self.nodes.len() > 200 {
            return Err("nodes: at most 200 nodes (one /24 each inside 10.42.0.0/16)".into());
        }
        if self.nodes[0].role != NodeRole::Server {
            return Err("nodes: the first node must be a server (it runs cluster-init)".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in &self.nodes {
            let ok = !n.name.is_empty()
                && n.name.len() <= 63
                && n.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !n.name.starts_with('-')
                && !n.name.ends_with('-');
            if !ok {
                return Err(format!("nodes: {:?} is not a valid node name (lowercase RFC 1123 label)", n.name));
            }
            if !seen.insert(n.name.clone()) {
                return Err(format!("nodes: duplicate node {:?}", n.name));
            }
        }
        for n in &self.nodes {
            if let Some(j) = &n.join {
                match self.nodes.iter().find(|m| &m.name == j) {
                    Some(m) if m.role == NodeRole::Server && m.name != n.name => {}
                    _ => return Err(format!("nodes: {:?} joins {:?}, which is not another server", n.name, j)),
                }
            }
        }
        for tf in &self.node_ops {
            if !self.nodes.iter().any(|n| n.name == tf.node) {
                return Err(format!("node-ops: unknown node {:?}", tf.node));
            }
        }
        Ok(())
    }

    /// The server a node joins through (None for the first server).
    pub fn join_target(&self, node: &str) -> Option<String> {
        let n = self.nodes.iter().find(|n| n.name == node)?;
        if let Some(j) = &n.join {
            return Some(j.clone());
        }
        let first = &self.nodes[0];
        if first.name == node { None } else { Some(first.name.clone()) }
    }

    /// Whether a CRD (`<plural>.<group>`) exists at start, after overrides.
    pub fn crd_present(&self, crd: &str, default: bool) -> bool {
        self.crds.get(crd).copied().unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load() {
        for n in ["fresh", "cilium-installed", "migrated", "kpr"] {
            let s = Scenario::load(n).unwrap();
            assert_eq!(s.name, n);
            assert_eq!(s.nodes.len(), 3);
        }
        assert!(matches!(Scenario::load("nope"), Err(SimError::UnknownScenario(_))));
    }

    #[test]
    fn embedded_examples_parse() {
        for (n, _) in EMBEDDED {
            let s = Scenario::load(n).unwrap_or_else(|e| panic!("{n}: {e}"));
            s.validate().unwrap();
        }
    }

    #[test]
    fn file_format() {
        let text = r#"
name: lab
base: cilium-installed
nodes:
  - {name: cp1, role: server}
  - {name: cp2, role: server, join: cp1}
  - {name: w1, role: agent, labels: {disk: ssd}}
crds:
  servicemonitors.monitoring.coreos.com: true
faults:
  - {at: 5, fault: node-not-ready, node: w1}
  - {fault: pdb-blocking, namespace: blog, name: blog}
  - {fault: ssh-unreachable, node: w1}
  - {fault: ssh-host-key-changed, node: cp2}
  - {fault: sudo-password, node: cp1}
  - {fault: command-fails, node: w1, command: systemctl restart}
node-ops:
  - {at: 10, node: cp2, op: restart-k3s}
git:
  path: repo
cilium:
  chart-version: 1.16.19
"#;
        let s = Scenario::parse(text, Path::new("/x/lab.yaml"), Some(Path::new("/x"))).unwrap();
        assert_eq!(s.base, BaseScenario::CiliumInstalled);
        assert_eq!(s.nodes.len(), 3);
        assert_eq!(s.join_target("w1").as_deref(), Some("cp1"));
        assert_eq!(s.join_target("cp1"), None);
        assert_eq!(s.faults[0].fault, Fault::NodeNotReady { node: "w1".into() });
        assert_eq!(s.faults[1].at, 0.0);
        assert_eq!(s.faults[2].fault, Fault::SshUnreachable { node: "w1".into() });
        assert_eq!(s.faults[3].fault, Fault::SshHostKeyChanged { node: "cp2".into() });
        assert_eq!(s.faults[4].fault, Fault::SudoPassword { node: "cp1".into() });
        assert_eq!(s.faults[5].fault, Fault::CommandFails { node: "w1".into(), command: "systemctl restart".into() });
        assert_eq!(s.node_ops[0].op, NodeOp::RestartK3s);
        assert_eq!(s.git.path.as_deref(), Some(Path::new("/x/repo")));
        assert_eq!(s.cilium.chart_version, "1.16.19");
        assert!(s.crd_present("servicemonitors.monitoring.coreos.com", false));
    }

    #[test]
    fn validation_faults_in_files() {
        let text = "base: migrated\nfaults:\n  - {at: 5, fault: load-balancer-ip-lost}\n  - {fault: longhorn-csi-not-ready, node: homelab-w1}\n  - {fault: dns-broken}\n";
        let s = Scenario::parse(text, Path::new("v.yaml"), None).unwrap();
        assert_eq!(
            s.faults[0].fault,
            Fault::LoadBalancerIpLost { namespace: "haproxy-ingress".into(), name: "haproxy-ingress".into() }
        );
        assert_eq!(s.faults[1].fault, Fault::LonghornCsiNotReady { node: "homelab-w1".into() });
        assert_eq!(s.faults[2].fault, Fault::DnsBroken);
    }

    #[test]
    fn bad_files_say_why() {
        let e = Scenario::parse("base: nope", Path::new("a.yaml"), None).unwrap_err().to_string();
        assert!(e.contains("unknown base"), "{e}");
        let e = Scenario::parse("nodes: [{name: w, role: agent}]", Path::new("a.yaml"), None).unwrap_err().to_string();
        assert!(e.contains("first node must be a server"), "{e}");
        let e = Scenario::parse("colour: red", Path::new("a.yaml"), None).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
