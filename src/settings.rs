//! The settings file (`cutover.toml`): the facts of the user's cluster, Git repo, chart and Argo CD
//! layout that the renderer, the linter and the pre-flight checks share. Every key has a default
//! taken from the user's plan, so a missing file means "the plan as written".
//!
//! Where the file is looked for (first match wins): `--settings PATH`, `$CUTOVER_CONFIG`,
//! `$XDG_CONFIG_HOME/cutover/cutover.toml` (default `~/.config/cutover/cutover.toml`), then
//! `./cutover.toml`. The per-user file is what makes a context's `read_only = true` hold wherever
//! the cockpit is started; the working-directory file is the fallback for a checkout that carries
//! its own (only one file is read: with a per-user file, name that one with `--settings`).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};

/// The settings file's name, in `$XDG_CONFIG_HOME/cutover/` and in the working directory.
pub const DEFAULT_FILE: &str = "cutover.toml";

/// Environment variable naming a settings file (explicit like `--settings`: it must exist).
pub const ENV_VAR: &str = "CUTOVER_CONFIG";

/// Errors loading the settings file. Messages are one line and name the file and, where known,
/// the line and the key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path} ({rule}): {source}")]
    Read { path: PathBuf, rule: &'static str, source: std::io::Error },
    /// A TOML syntax error.
    #[error("{path}:{line}:{column}: {message}")]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: {message}")]
    ParseNoSpan { path: PathBuf, message: String },
    /// A key this version does not know (a typo must not silently fall back to a default).
    #[error("{path}:{line}: unknown key \"{key}\"{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    UnknownKey { path: PathBuf, line: usize, key: String, hint: Option<String> },
    /// A value of the wrong type or outside what the key allows.
    #[error("{path}{}: {key}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid { path: PathBuf, line: Option<usize>, key: String, message: String },
}

/// Where the settings in use were read from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SettingsSource {
    /// `--settings PATH` (must exist).
    Flag(PathBuf),
    /// `$CUTOVER_CONFIG` (must exist).
    Env(PathBuf),
    /// `$XDG_CONFIG_HOME/cutover/cutover.toml`, default `~/.config/cutover/cutover.toml`.
    User(PathBuf),
    /// `cutover.toml` in the working directory.
    WorkingDir(PathBuf),
    /// No file found: the plan as written.
    #[default]
    BuiltIn,
}

impl SettingsSource {
    /// The file, unless the settings are the built-in defaults.
    pub fn path(&self) -> Option<&Path> {
        match self {
            SettingsSource::Flag(p)
            | SettingsSource::Env(p)
            | SettingsSource::User(p)
            | SettingsSource::WorkingDir(p) => Some(p),
            SettingsSource::BuiltIn => None,
        }
    }

    /// Whether the operator named the file (then a missing file is an error, not a skip).
    pub fn is_explicit(&self) -> bool {
        matches!(self, SettingsSource::Flag(_) | SettingsSource::Env(_))
    }

    /// Which rule of the lookup found it, as messages name it.
    pub fn rule(&self) -> &'static str {
        match self {
            SettingsSource::Flag(_) => "--settings",
            SettingsSource::Env(_) => "$CUTOVER_CONFIG",
            SettingsSource::User(_) => "XDG config",
            SettingsSource::WorkingDir(_) => "working directory",
            SettingsSource::BuiltIn => "built-in",
        }
    }
}

/// `~/.config/cutover/cutover.toml (XDG config)`, `built-in defaults (no cutover.toml found)`.
impl std::fmt::Display for SettingsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.path() {
            Some(p) => write!(f, "{} ({})", tilde(p), self.rule()),
            None => write!(f, "built-in defaults (no {DEFAULT_FILE} found)"),
        }
    }
}

/// A path under `$HOME` written with `~`, as operators type it.
fn tilde(path: &Path) -> String {
    let home = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_absolute() && h.parent().is_some());
    match home.as_deref().and_then(|h| path.strip_prefix(h).ok()) {
        Some(rest) if rest.as_os_str().is_empty() => "~".into(),
        Some(rest) => format!("~/{}", rest.display()),
        None => path.display().to_string(),
    }
}

/// What the lookup reads from the process, gathered in one place so that it can be passed in
/// explicitly (tests must not `set_var`: unsafe in edition 2024 and racy between test threads).
#[derive(Debug, Clone, Default)]
pub struct LookupEnv {
    /// `$CUTOVER_CONFIG` (empty = unset).
    pub cutover_config: Option<OsString>,
    /// `$XDG_CONFIG_HOME` (relative or empty = ignored, as the XDG spec says).
    pub xdg_config_home: Option<OsString>,
    pub home: Option<OsString>,
    /// The working directory (`None`: `./cutover.toml` is looked up relative to the process').
    pub cwd: Option<PathBuf>,
}

impl LookupEnv {
    pub fn from_process() -> LookupEnv {
        LookupEnv {
            cutover_config: std::env::var_os(ENV_VAR),
            xdg_config_home: std::env::var_os("XDG_CONFIG_HOME"),
            home: std::env::var_os("HOME"),
            cwd: std::env::current_dir().ok(),
        }
    }
}

/// One place the lookup considered, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A rule that named no file, and why (`$CUTOVER_CONFIG: unset`).
    Unset(String),
    /// A file that was checked.
    File { source: SettingsSource, exists: bool },
}

/// The outcome of the lookup: the source in use and every place considered up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub source: SettingsSource,
    pub places: Vec<Place>,
}

/// Finds the settings file: `flag` (`--settings`), then `$CUTOVER_CONFIG`, then the XDG config
/// file, then `cutover.toml` in the working directory, else the built-in defaults. An explicitly
/// named file is taken whether it exists or not (reading it then reports it missing); the
/// implicit ones are skipped when absent. Reads nothing but file metadata.
pub fn locate(flag: Option<&Path>, env: &LookupEnv) -> Lookup {
    let mut places = Vec::new();
    for candidate in candidates(flag, env) {
        match candidate {
            Err(why) => places.push(Place::Unset(why)),
            Ok(source) => {
                let exists = source.path().is_some_and(present);
                places.push(Place::File { source: source.clone(), exists });
                if exists || source.is_explicit() {
                    return Lookup { source, places };
                }
            }
        }
    }
    Lookup { source: SettingsSource::BuiltIn, places }
}

/// The lookup's rules in order: a file to check, or why the rule names none.
fn candidates(flag: Option<&Path>, env: &LookupEnv) -> Vec<Result<SettingsSource, String>> {
    // Relative names are taken from the working directory the lookup was given, so that the log
    // and `config path` say exactly which file it was.
    let absolute = |p: &Path| match &env.cwd {
        Some(dir) if p.is_relative() => {
            dir.join(p.components().filter(|c| *c != std::path::Component::CurDir).collect::<PathBuf>())
        }
        _ => p.to_path_buf(),
    };
    let mut out = vec![
        flag.map(|p| SettingsSource::Flag(absolute(p))).ok_or_else(|| "--settings: not given".to_string()),
        env.cutover_config
            .as_ref()
            .filter(|v| !v.is_empty())
            .map(|v| SettingsSource::Env(absolute(Path::new(v))))
            .ok_or_else(|| format!("${ENV_VAR}: unset")),
    ];
    if let Some(x) = env.xdg_config_home.as_ref().filter(|x| !x.is_empty() && !Path::new(x).is_absolute()) {
        let x = Path::new(x).display();
        out.push(Err(format!("$XDG_CONFIG_HOME={x}: relative, ignored (XDG base directory spec)")));
    }
    out.push(
        crate::paths::config_dir_from(env.xdg_config_home.as_deref(), env.home.as_deref())
            .map(|d| SettingsSource::User(d.join(DEFAULT_FILE)))
            .ok_or_else(|| "XDG config: no $XDG_CONFIG_HOME and no $HOME".to_string()),
    );
    let here = env.cwd.as_ref().map_or_else(|| PathBuf::from(DEFAULT_FILE), |d| d.join(DEFAULT_FILE));
    out.push(Ok(SettingsSource::WorkingDir(here)));
    out
}

/// Whether a file is there to be read. Only "not found" counts as absent: a file that exists but
/// cannot be read (permissions, a directory) is taken, so that reading it reports the problem
/// instead of silently using the next one.
fn present(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// All settings. Unknown keys are rejected (a typo must not silently fall back to a default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub cluster: ClusterSettings,
    pub git: GitSettings,
    pub cilium: CiliumSettings,
    pub argo: ArgoSettings,
    pub hubble: HubbleSettings,
    pub runbook: RunbookSettings,
    /// The active checks of `cutover validate` (probe pods, Service and Jobs).
    pub validate: ValidateSettings,
    /// How the runbook reaches the nodes (the system `ssh`).
    pub ssh: SshSettings,
    /// Per kubeconfig-context overrides, e.g. `[contexts."homelab"] read_only = true`.
    pub contexts: BTreeMap<String, ContextSettings>,
    /// Where these settings were read from (not a key of the file).
    #[serde(skip)]
    provenance: Provenance,
}

/// Where the settings came from and which keys the file set. Not part of the settings' value:
/// the same keys and values read from two places are equal settings (tests compare a loaded file
/// with `Settings::default()`).
#[derive(Debug, Clone, Default)]
struct Provenance {
    source: SettingsSource,
    /// Dotted paths of the leaf keys the file sets (`cilium.operator_replicas`).
    keys: BTreeSet<String>,
}

impl PartialEq for Provenance {
    fn eq(&self, _: &Provenance) -> bool {
        true
    }
}

impl Eq for Provenance {}

/// The cluster as the plan describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// Cluster name; also Cilium's `cluster.name` (DNS label, at most 32 characters).
    pub name: String,
    /// k3s version the plan was written for (nodes report it as kubeletVersion).
    pub k3s_version: String,
    /// k3s `cluster-cidr` (pod CIDR; per-node /24 allocated by the controller-manager).
    pub pod_cidr: String,
    /// k3s `service-cidr`.
    pub service_cidr: String,
    /// Address Cilium uses to reach the API server without kube-proxy (`k8sServiceHost`):
    /// k3s' local API load balancer on every node.
    pub api_host: String,
    /// Port of that load balancer (`k8sServicePort`).
    pub api_port: u16,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            name: "homelab".into(),
            k3s_version: "v1.32.6+k3s1".into(),
            pod_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.43.0.0/16".into(),
            api_host: "127.0.0.1".into(),
            api_port: 6444,
        }
    }
}

/// The GitOps repository and where the plan puts each file (paths relative to the repo root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitSettings {
    /// Local checkout of the repo (default target of `cutover render --out`).
    pub repo_path: PathBuf,
    /// The repo as Argo CD knows it (the `$values` source).
    pub repo_url: String,
    pub branch: String,
    /// Directory the root app watches; `cilium-app.yaml` goes here.
    pub apps_path: String,
    /// Cilium Helm values file.
    pub values_path: String,
    /// Standalone Hubble UI Ingress (only with `hubble.ingress = "manifest"`).
    pub ingress_path: String,
    /// k3s server config drop-in (copied to `/etc/rancher/k3s/config.yaml.d/` on every server).
    pub k3s_config_path: String,
}

impl Default for GitSettings {
    fn default() -> Self {
        GitSettings {
            repo_path: PathBuf::from("."),
            repo_url: "https://github.com/rrumana/k8s-homelab".into(),
            branch: "main".into(),
            apps_path: "platform/gitops/argocd/apps".into(),
            values_path: "platform/networking/cilium/values.yaml".into(),
            ingress_path: "platform/networking/cilium/ingress/hubble-ui.yaml".into(),
            k3s_config_path: "infrastructure/k3s/config.yaml.d/50-cilium.yaml".into(),
        }
    }
}

/// Whether the rendered values enable Prometheus Operator ServiceMonitors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMonitors {
    /// Only when the cluster is known to serve `monitoring.coreos.com/v1` (the chart fails to
    /// render otherwise).
    #[default]
    Auto,
    On,
    Off,
}

impl ServiceMonitors {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceMonitors::Auto => "auto",
            ServiceMonitors::On => "on",
            ServiceMonitors::Off => "off",
        }
    }
}

/// Agent container resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resources {
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: String,
    pub memory_limit: String,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu_request: "100m".into(),
            memory_request: "128Mi".into(),
            cpu_limit: "500m".into(),
            memory_limit: "512Mi".into(),
        }
    }
}

/// The Cilium chart and the values the plan chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CiliumSettings {
    pub chart_repo: String,
    pub chart: String,
    /// Pinned chart version. Default: a 1.17 patch release, e2e-tested with Kubernetes 1.32; the
    /// plan's 1.16.4 is accepted, and preflight warns that 1.16 is not (see docs/preflight.md).
    pub chart_version: String,
    pub namespace: String,
    pub release_name: String,
    /// `cluster.id`: only meaningful for ClusterMesh, so 0 (the plan's 1 is harmless).
    pub cluster_id: u32,
    /// `operator.replicas` (the chart's required anti-affinity needs one schedulable node each).
    pub operator_replicas: u32,
    pub service_monitors: ServiceMonitors,
    pub resources: Resources,
}

impl Default for CiliumSettings {
    fn default() -> Self {
        CiliumSettings {
            chart_repo: "https://helm.cilium.io".into(),
            chart: "cilium".into(),
            chart_version: "1.17.18".into(),
            namespace: "kube-system".into(),
            release_name: "cilium".into(),
            cluster_id: 0,
            operator_replicas: 1,
            service_monitors: ServiceMonitors::Auto,
            resources: Resources::default(),
        }
    }
}

/// Argo CD layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArgoSettings {
    pub namespace: String,
    /// The app-of-apps root that watches `git.apps_path`.
    pub root_app: String,
    /// The Cilium Application (file `<cilium_app>.yaml` in the apps path).
    pub cilium_app: String,
    pub project: String,
    pub destination_server: String,
}

impl Default for ArgoSettings {
    fn default() -> Self {
        ArgoSettings {
            namespace: "argocd".into(),
            root_app: "root".into(),
            cilium_app: "cilium-app".into(),
            project: "default".into(),
            destination_server: "https://kubernetes.default.svc".into(),
        }
    }
}

/// Who creates the Hubble UI Ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IngressMode {
    /// The chart (`hubble.ui.ingress.*` in values.yaml).
    #[default]
    Chart,
    /// A standalone manifest at `git.ingress_path`, added to the Cilium app as a third source.
    Manifest,
}

/// How the Hubble TLS certificates are generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TlsMethod {
    /// certgen Job + CronJob: stable under Argo CD.
    #[default]
    #[serde(rename = "cronJob")]
    CronJob,
    /// Chart-generated: new certs on every `helm template` (Argo CD) → needs ignoreDifferences.
    #[serde(rename = "helm")]
    Helm,
}

impl TlsMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMethod::CronJob => "cronJob",
            TlsMethod::Helm => "helm",
        }
    }
}

/// Hubble UI exposure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubbleSettings {
    pub ui_host: String,
    pub ingress_class: String,
    pub cluster_issuer: String,
    /// Source range allowed by HAProxy (`haproxy-ingress.github.io/whitelist-source-range`).
    pub whitelist: String,
    pub tls_secret: String,
    pub ingress: IngressMode,
    pub tls_method: TlsMethod,
}

impl Default for HubbleSettings {
    fn default() -> Self {
        HubbleSettings {
            ui_host: "hubble.rcrumana.xyz".into(),
            ingress_class: "haproxy-restricted".into(),
            cluster_issuer: "letsencrypt-prod".into(),
            whitelist: "192.168.0.0/16".into(),
            tls_secret: "hubble-ui-tls".into(),
            ingress: IngressMode::Chart,
            tls_method: TlsMethod::CronJob,
        }
    }
}

/// The runbook: which file, node order, how long waits and the cluster lock last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunbookSettings {
    /// Node restart order. Empty = servers first (the one the others join through first), then
    /// agents, as discovered from the cluster.
    pub node_order: Vec<String>,
    /// A runbook file that replaces the built-in one (`--runbook` on the command line wins).
    pub file: Option<PathBuf>,
    /// How long an `argo-wait` step waits for its conditions (Go duration: `15m`).
    pub wait_timeout: String,
    /// How long the cluster lock lasts without renewal (renewed every third of it; taken over
    /// only when stale: twice this). Go duration.
    pub lock_duration: String,
    /// How long the `validate` step reads the flow stream (Go duration).
    pub validate_window: String,
    /// How long a drain (the node step's, and the cockpit's `d` once the runbook is enabled)
    /// may take before it stops, the node left cordoned (Go duration; kubectl has no default,
    /// this one is `10m`).
    pub drain_timeout: String,
    /// How long the node step watches Hubble flows to and from a node after its uncordon (Go
    /// duration; `0s` turns the soak off, which the journal and the progress say).
    pub soak: String,
    /// Policy-denied drops per minute to or from the node that the soak tolerates (any other
    /// drop reason stops the runbook at once). Default 120 (2/s): policy drops are the cluster's
    /// intent (scans of closed ports), a storm of them after the switch is not.
    pub soak_max_drops_per_minute: u32,
}

impl Default for RunbookSettings {
    fn default() -> Self {
        RunbookSettings {
            node_order: Vec::new(),
            file: None,
            wait_timeout: "15m".into(),
            lock_duration: "30s".into(),
            validate_window: "30s".into(),
            drain_timeout: "10m".into(),
            soak: "2m".into(),
            soak_max_drops_per_minute: 120,
        }
    }
}

impl RunbookSettings {
    /// `wait_timeout` as a duration (validated when the settings are read).
    pub fn wait_timeout(&self) -> std::time::Duration {
        crate::duration::parse_non_negative(&self.wait_timeout).unwrap_or(std::time::Duration::from_secs(900))
    }

    /// `validate_window` as a duration (validated when the settings are read).
    pub fn validate_window(&self) -> std::time::Duration {
        crate::duration::parse_non_negative(&self.validate_window).unwrap_or(std::time::Duration::from_secs(30))
    }

    /// `drain_timeout` as a duration (validated when the settings are read).
    pub fn drain_timeout(&self) -> std::time::Duration {
        crate::duration::parse_non_negative(&self.drain_timeout).unwrap_or(std::time::Duration::from_secs(600))
    }

    /// `soak` as a duration (validated when the settings are read); zero: no soak.
    pub fn soak(&self) -> std::time::Duration {
        crate::duration::parse_non_negative(&self.soak).unwrap_or(std::time::Duration::from_secs(120))
    }

    /// `lock_duration` as a duration (validated when the settings are read).
    pub fn lock_duration(&self) -> std::time::Duration {
        crate::duration::parse_non_negative(&self.lock_duration).unwrap_or(std::time::Duration::from_secs(30))
    }
}

/// `[validate]`: where and how the active checks' probes run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidateSettings {
    /// The namespace the probe pods, Service, Jobs and PVC are created in (it must exist).
    pub namespace: String,
    /// The probes' image: needs sh, socat, ping, nc, nslookup and curl; pinned by tag.
    pub image: String,
    /// Deadline of each phase of a probe run (servers Ready, clients finished), and the client
    /// Jobs' activeDeadlineSeconds. Go duration.
    pub timeout: String,
    /// The external URL every probe fetches (dns-egress); its host is the external name resolved.
    pub url: String,
    /// The cluster name every probe resolves.
    pub cluster_name: String,
    /// `namespace/name` of the ingress LoadBalancer Service probed through its NodePort and its
    /// MetalLB IP.
    pub ingress_service: String,
    /// The storage class of the volume probe's PVC (probe-longhorn-volume).
    pub storage_class: String,
}

impl Default for ValidateSettings {
    fn default() -> Self {
        ValidateSettings {
            namespace: "default".into(),
            image: "nicolaka/netshoot:v0.13".into(),
            timeout: "2m".into(),
            url: "https://example.com/".into(),
            cluster_name: "kubernetes.default.svc.cluster.local".into(),
            ingress_service: "haproxy-ingress/haproxy-ingress".into(),
            storage_class: "longhorn".into(),
        }
    }
}

impl ValidateSettings {
    /// `timeout` as a duration (validated when the settings are read).
    pub fn timeout(&self) -> std::time::Duration {
        crate::duration::parse_non_negative(&self.timeout).unwrap_or(std::time::Duration::from_secs(120))
    }
}

/// How node commands reach the nodes: the operator's system OpenSSH client (`ssh`), so that
/// `~/.ssh/config`, the agent, ProxyJump and known_hosts apply. Unset keys leave the choice to
/// ssh and its config files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshSettings {
    /// `ssh -F FILE` (unset: ssh's own `~/.ssh/config` and `/etc/ssh/ssh_config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
    /// `ssh -l USER` for every node (unset: ssh's default, from its config or the local user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `ssh -p PORT` for every node (unset: ssh's default, from its config or 22).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `ConnectTimeout`, seconds.
    pub connect_timeout: u64,
    /// Longest a node command may run, seconds (ssh is stopped after that).
    pub command_timeout: u64,
    /// `ServerAliveInterval`, seconds (a dead connection is noticed after 3 of them).
    pub server_alive_interval: u64,
    /// Directory of the ControlMaster sockets (0700; one connection per node is reused). Unset:
    /// `ssh/` in the state directory, or a private temp directory when that path is too long for
    /// a socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_dir: Option<PathBuf>,
    /// Reboot the node instead of restarting its k3s unit (recommended: a reboot clears
    /// flannel.1, cni0 and the old iptables rules). The connection dropping during `reboot` is
    /// expected.
    pub reboot: bool,
    /// The command lines sent to the nodes.
    pub commands: SshCommands,
    /// Per-node overrides by Kubernetes node name, e.g. `[ssh.nodes."homelab-w1"] host = "w1.lan"`.
    pub nodes: BTreeMap<String, SshNodeSettings>,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            config_file: None,
            user: None,
            port: None,
            connect_timeout: 10,
            command_timeout: 120,
            server_alive_interval: 15,
            control_dir: None,
            reboot: false,
            commands: SshCommands::default(),
            nodes: BTreeMap::new(),
        }
    }
}

/// The command templates. Placeholders come from a fixed set with values the tool controls:
/// `{stage}` (1 or 2), `{path}` (the drop-in path), `{unit}` (`k3s` or `k3s-agent`), `{lines}` (a
/// number). File content never appears in a command line: it goes to the command's stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshCommands {
    /// The stage's k3s config drop-in (only `{stage}`).
    pub dropin_path: String,
    /// Writes stdin to the drop-in.
    pub write_dropin: String,
    /// Prints the drop-in (compared with what was written).
    pub read_dropin: String,
    /// Removes the drop-in (rollback).
    pub remove_dropin: String,
    /// Restarts k3s so that it reads its configuration again.
    pub restart: String,
    /// Reboots the node (clears flannel.1, cni0 and old iptables rules).
    pub reboot: String,
    /// The k3s unit's last `{lines}` journal lines.
    pub logs: String,
}

impl Default for SshCommands {
    fn default() -> Self {
        SshCommands {
            dropin_path: "/etc/rancher/k3s/config.yaml.d/90-cutover-stage{stage}.yaml".into(),
            write_dropin: "sudo -n tee {path} >/dev/null".into(),
            read_dropin: "sudo -n cat {path}".into(),
            remove_dropin: "sudo -n rm -f {path}".into(),
            restart: "sudo -n systemctl restart {unit}".into(),
            reboot: "sudo -n systemctl reboot".into(),
            logs: "sudo -n journalctl -u {unit} -n {lines} --no-pager".into(),
        }
    }
}

impl SshCommands {
    /// Each template with the placeholders it may use, as `(key, template, allowed)`.
    pub fn templates(&self) -> [(&'static str, &str, &'static [&'static str]); 7] {
        const ALL: &[&str] = &["stage", "path", "unit", "lines"];
        [
            ("dropin_path", &self.dropin_path, &["stage"]),
            ("write_dropin", &self.write_dropin, ALL),
            ("read_dropin", &self.read_dropin, ALL),
            ("remove_dropin", &self.remove_dropin, ALL),
            ("restart", &self.restart, ALL),
            ("reboot", &self.reboot, ALL),
            ("logs", &self.logs, ALL),
        ]
    }
}

/// Checks a command template: balanced braces, only the allowed placeholders, one line.
pub fn check_template(template: &str, allowed: &[&str]) -> Result<(), String> {
    if template.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if template.contains(['\n', '\r']) {
        return Err("must be one line".into());
    }
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        if rest[i..].starts_with('}') {
            return Err(format!("unmatched `}}` in {template:?}"));
        }
        let Some(end) = rest[i..].find('}') else { return Err(format!("unclosed `{{` in {template:?}")) };
        let name = &rest[i + 1..i + end];
        if !allowed.contains(&name) {
            let known: Vec<String> = allowed.iter().map(|a| format!("{{{a}}}")).collect();
            return Err(format!("unknown placeholder {{{name}}} (allowed here: {})", known.join(", ")));
        }
        rest = &rest[i + end + 1..];
    }
    Ok(())
}

/// SSH overrides for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SshNodeSettings {
    /// What ssh connects to (a name from `~/.ssh/config`, a DNS name or an address). Unset: the
    /// node's InternalIP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Whether `s` may be given to ssh as a host or user name: not empty, not an option (`-…`), no
/// whitespace, quotes or shell characters.
pub fn check_ssh_word(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.starts_with('-') {
        return Err(format!("{s:?} must not start with `-`"));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-@:[]%".contains(*c))) {
        return Err(format!("{s:?}: character {c:?} is not allowed"));
    }
    Ok(())
}

/// Overrides for one kubeconfig context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ContextSettings {
    /// Refuse every mutating request when this context is used.
    pub read_only: bool,
}

impl Settings {
    /// Loads the settings from the file the lookup finds (see `locate`): `flag` is `--settings`,
    /// the rest comes from the process environment. Logs the source in use.
    pub fn load(flag: Option<&Path>) -> Result<Settings, SettingsError> {
        Settings::load_with(flag, &LookupEnv::from_process())
    }

    /// `load` with the environment given explicitly.
    pub fn load_with(flag: Option<&Path>, env: &LookupEnv) -> Result<Settings, SettingsError> {
        let settings = Settings::read(locate(flag, env).source)?;
        tracing::info!(settings = %settings.source(), "settings in use");
        Ok(settings)
    }

    /// Reads and checks the file `source` names; the built-in defaults for `BuiltIn`.
    pub fn read(source: SettingsSource) -> Result<Settings, SettingsError> {
        let Some(path) = source.path() else {
            return Ok(Settings::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Read {
            path: path.to_path_buf(),
            rule: source.rule(),
            source: e,
        })?;
        let path = path.to_path_buf();
        Settings::parse(&text, &path, source)
    }

    /// Parses settings text as if from the file `path` named by `--settings`; `path` is used in
    /// messages and as the source.
    pub fn from_toml(text: &str, path: &Path) -> Result<Settings, SettingsError> {
        Settings::parse(text, path, SettingsSource::Flag(path.to_path_buf()))
    }

    /// Syntax first, then unknown keys (by walking the document against the keys the defaults
    /// have, so the message can name the dotted key and its line), then types (serde; the key is
    /// found from the error's span), then the values' own rules.
    fn parse(text: &str, path: &Path, source: SettingsSource) -> Result<Settings, SettingsError> {
        let doc = DeTable::parse(text).map_err(|e| match e.span() {
            Some(span) => {
                let (line, column) = line_col(text, span.start);
                SettingsError::Parse { path: path.to_path_buf(), line, column, message: one_line(e.message()) }
            }
            None => SettingsError::ParseNoSpan { path: path.to_path_buf(), message: one_line(e.message()) },
        })?;
        let doc = doc.get_ref();
        if let Some(u) = first_unknown_key(doc) {
            return Err(SettingsError::UnknownKey {
                path: path.to_path_buf(),
                line: line_col(text, u.offset).0,
                key: u.key,
                hint: u.hint,
            });
        }
        let mut settings: Settings = toml::from_str(text).map_err(|e| {
            let message = one_line(e.message());
            let Some(span) = e.span() else {
                return SettingsError::ParseNoSpan { path: path.to_path_buf(), message };
            };
            let (line, column) = line_col(text, span.start);
            match key_at(doc, span.start, "") {
                Some(key) => SettingsError::Invalid { path: path.to_path_buf(), line: Some(line), key, message },
                None => SettingsError::Parse { path: path.to_path_buf(), line, column, message },
            }
        })?;
        settings.validate(text, path)?;
        let mut keys = BTreeSet::new();
        leaf_keys(doc, "", &mut keys);
        settings.provenance = Provenance { source, keys };
        Ok(settings)
    }

    /// Where the settings in use came from.
    pub fn source(&self) -> &SettingsSource {
        &self.provenance.source
    }

    /// Where the value of `key` (`section.key`) comes from, for evidence lines: the file when it
    /// sets the key, else `built-in default`.
    pub fn origin_of(&self, key: &str) -> String {
        let (keys, table) = (&self.provenance.keys, format!("{key}."));
        let set = keys.contains(key) || keys.iter().any(|k| k.starts_with(&table));
        match self.provenance.source.path() {
            Some(p) if set => tilde(p),
            _ => "built-in default".into(),
        }
    }

    /// Whether the given kubeconfig context is configured read-only.
    pub fn read_only_for(&self, context: Option<&str>) -> bool {
        context.and_then(|c| self.contexts.get(c)).is_some_and(|c| c.read_only)
    }

    /// The pod CIDR, parsed (validated at load time; defaults are valid).
    pub fn pod_cidr(&self) -> Option<Ipv4Cidr> {
        Ipv4Cidr::parse(&self.cluster.pod_cidr).ok()
    }

    pub fn service_cidr(&self) -> Option<Ipv4Cidr> {
        Ipv4Cidr::parse(&self.cluster.service_cidr).ok()
    }

    /// File name of the Cilium Application in the apps path.
    pub fn cilium_app_file(&self) -> String {
        format!("{}.yaml", self.argo.cilium_app)
    }

    fn validate_ssh(&self, text: &str, path: &Path) -> Result<(), SettingsError> {
        let invalid = |section: &str, key: &str, message: String| SettingsError::Invalid {
            path: path.to_path_buf(),
            line: find_key_line(text, section, key),
            key: format!("{section}.{key}"),
            message,
        };
        let ssh = &self.ssh;
        if let Some(u) = &ssh.user {
            check_ssh_word(u).map_err(|m| invalid("ssh", "user", m))?;
        }
        if ssh.port == Some(0) {
            return Err(invalid("ssh", "port", "must be a port number (1-65535)".into()));
        }
        for (key, v) in [
            ("connect_timeout", ssh.connect_timeout),
            ("command_timeout", ssh.command_timeout),
            ("server_alive_interval", ssh.server_alive_interval),
        ] {
            if v == 0 || v > 86_400 {
                return Err(invalid("ssh", key, "must be 1-86400 seconds".into()));
            }
        }
        for (key, template, allowed) in ssh.commands.templates() {
            check_template(template, allowed).map_err(|m| invalid("ssh.commands", key, m))?;
        }
        let p = &ssh.commands.dropin_path;
        if !p.starts_with('/')
            || p.contains("..")
            || !p.chars().all(|c| c.is_ascii_alphanumeric() || "/._-{}".contains(c))
        {
            return Err(invalid(
                "ssh.commands",
                "dropin_path",
                format!("{p:?} must be an absolute path of letters, digits and / . _ -"),
            ));
        }
        for (node, n) in &ssh.nodes {
            let section = format!("ssh.nodes.{}", dotted("", node));
            for (key, v) in [("host", &n.host), ("user", &n.user)] {
                if let Some(v) = v {
                    check_ssh_word(v).map_err(|m| invalid(&section, key, m))?;
                }
            }
            if n.port == Some(0) {
                return Err(invalid(&section, "port", "must be a port number (1-65535)".into()));
            }
        }
        Ok(())
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), SettingsError> {
        let invalid = |section: &str, key: &str, message: String| SettingsError::Invalid {
            path: path.to_path_buf(),
            line: find_key_line(text, section, key),
            key: format!("{section}.{key}"),
            message,
        };
        for (key, value) in [("pod_cidr", &self.cluster.pod_cidr), ("service_cidr", &self.cluster.service_cidr)] {
            Ipv4Cidr::parse(value).map_err(|m| invalid("cluster", key, m))?;
        }
        if let Err(m) = check_cluster_name(&self.cluster.name) {
            return Err(invalid("cluster", "name", m));
        }
        if self.cluster.api_port == 0 {
            return Err(invalid("cluster", "api_port", "must be a port number (1-65535)".into()));
        }
        if self.cluster.api_host.trim().is_empty() || self.cluster.api_host == "auto" {
            return Err(invalid(
                "cluster",
                "api_host",
                "must be an address Cilium can reach without kube-proxy (k3s: 127.0.0.1); `auto` needs a kubeadm \
                 ConfigMap and Helm lookup, neither exists on k3s under Argo CD"
                    .into(),
            ));
        }
        if ChartVersion::parse(&self.cilium.chart_version).is_none() {
            return Err(invalid(
                "cilium",
                "chart_version",
                format!("{:?} is not a chart version like 1.17.6", self.cilium.chart_version),
            ));
        }
        if self.cilium.operator_replicas == 0 {
            return Err(invalid("cilium", "operator_replicas", "must be at least 1".into()));
        }
        if self.cilium.cluster_id > 255 {
            return Err(invalid("cilium", "cluster_id", "must be 0-255".into()));
        }
        for cidr in self.hubble.whitelist.split(',') {
            Ipv4Cidr::parse(cidr.trim()).map_err(|m| invalid("hubble", "whitelist", m))?;
        }
        self.validate_ssh(text, path)?;
        for (key, value) in [
            ("apps_path", &self.git.apps_path),
            ("values_path", &self.git.values_path),
            ("ingress_path", &self.git.ingress_path),
            ("k3s_config_path", &self.git.k3s_config_path),
        ] {
            let p = Path::new(value);
            if value.is_empty()
                || p.is_absolute()
                || p.components().any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(invalid("git", key, format!("{value:?} must be a relative path inside the repo")));
            }
        }
        for (key, value, min) in [
            ("wait_timeout", &self.runbook.wait_timeout, std::time::Duration::from_secs(1)),
            ("lock_duration", &self.runbook.lock_duration, std::time::Duration::from_secs(1)),
            ("validate_window", &self.runbook.validate_window, std::time::Duration::from_secs(1)),
            ("drain_timeout", &self.runbook.drain_timeout, std::time::Duration::from_secs(1)),
            ("soak", &self.runbook.soak, std::time::Duration::ZERO),
        ] {
            match crate::duration::parse_non_negative(value) {
                Ok(d) if d >= min => {}
                Ok(_) => return Err(invalid("runbook", key, format!("{value:?} is shorter than 1s"))),
                Err(e) => return Err(invalid("runbook", key, format!("{value:?}: {e}"))),
            }
        }
        match crate::duration::parse_non_negative(&self.validate.timeout) {
            Ok(d) if d >= std::time::Duration::from_secs(5) => {}
            Ok(_) => {
                return Err(invalid("validate", "timeout", format!("{:?} is shorter than 5s", self.validate.timeout)));
            }
            Err(e) => return Err(invalid("validate", "timeout", format!("{:?}: {e}", self.validate.timeout))),
        }
        for (key, value) in [
            ("namespace", &self.validate.namespace),
            ("image", &self.validate.image),
            ("url", &self.validate.url),
            ("cluster_name", &self.validate.cluster_name),
            ("storage_class", &self.validate.storage_class),
        ] {
            if value.trim().is_empty() || value.contains(char::is_whitespace) {
                return Err(invalid("validate", key, format!("{value:?} must be one word, not empty")));
            }
        }
        if !self.validate.ingress_service.split_once('/').is_some_and(|(ns, n)| !ns.is_empty() && !n.is_empty()) {
            return Err(invalid(
                "validate",
                "ingress_service",
                format!("{:?} must be namespace/name", self.validate.ingress_service),
            ));
        }
        Ok(())
    }
}

/// `cutover config`: where the settings come from.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the settings file in use, or `built-in defaults` and the places looked at, in order.
    Path,
}

/// Runs `cutover config …`; exit 0 (an explicitly named file that is missing is an error).
pub fn run_config(args: ConfigArgs, global: &crate::cli::GlobalArgs) -> color_eyre::Result<ExitCode> {
    use color_eyre::eyre::WrapErr;
    match args.command {
        ConfigCommand::Path => {
            let env = LookupEnv::from_process();
            let text = config_path_text(&locate(global.settings.as_deref(), &env))?;
            crate::cli::write_stdout(&text).wrap_err("writing to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `cutover config path` prints: the file in use as an absolute path on a line of its own
/// (for `$EDITOR "$(cutover config path)"`), or `built-in defaults …` followed by where it looked.
pub fn config_path_text(lookup: &Lookup) -> Result<String, SettingsError> {
    use std::fmt::Write;
    if let Some(path) = lookup.source.path() {
        if lookup.source.is_explicit()
            && let Err(e) = std::fs::metadata(path)
        {
            return Err(SettingsError::Read { path: path.to_path_buf(), rule: lookup.source.rule(), source: e });
        }
        return Ok(format!("{}\n", path.display()));
    }
    let mut out = format!("{}\nlooked in, in order:\n", lookup.source);
    for place in &lookup.places {
        let _ = match place {
            Place::Unset(why) => writeln!(out, "  {why}"),
            Place::File { source, exists } => writeln!(
                out,
                "  {} ({}): {}",
                source.path().map(|p| p.display().to_string()).unwrap_or_default(),
                source.rule(),
                if *exists { "present" } else { "absent" }
            ),
        };
    }
    Ok(out)
}

/// Cilium's `cluster.name` rule: DNS label, at most 32 characters.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 32 {
        return Err(format!("{name:?} is {} characters; Cilium allows at most 32", name.len()));
    }
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok_chars || !ends_ok(name.bytes().next()) || !ends_ok(name.bytes().last()) {
        return Err(format!(
            "{name:?} must consist of lower case alphanumeric characters and '-', and start and end with an \
             alphanumeric character"
        ));
    }
    Ok(())
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Finds the line of `key = …` inside `[section]` (best effort, for validation messages).
fn find_key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            current = h.trim().to_string();
            continue;
        }
        if current == section
            && let Some((k, _)) = t.split_once('=')
            && k.trim() == key
        {
            return Some(i + 1);
        }
    }
    None
}

/// A parser message on one line (the settings errors are one line each).
fn one_line(message: &str) -> String {
    message.trim().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// `prefix.key`, the key quoted as TOML would need it (context names may hold dots or `@`).
fn dotted(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare { key.to_string() } else { format!("{key:?}") };
    if prefix.is_empty() { key } else { format!("{prefix}.{key}") }
}

/// An unknown key: where it starts, its dotted path and a hint.
struct Unknown {
    offset: usize,
    key: String,
    hint: Option<String>,
}

/// The first key (in file order) that this version does not know. The known keys are those of
/// the serialized defaults (every key has one); `contexts` holds any context name, each with the
/// keys of `ContextSettings`.
fn first_unknown_key(doc: &DeTable<'_>) -> Option<Unknown> {
    // The optional keys have no default value to serialize: the schema takes them from an example.
    let example = Settings {
        ssh: SshSettings {
            config_file: Some(PathBuf::from("x")),
            user: Some("x".into()),
            port: Some(22),
            control_dir: Some(PathBuf::from("x")),
            ..SshSettings::default()
        },
        ..Settings::default()
    };
    let schema = toml::Table::try_from(example).ok()?;
    let maps = Maps {
        context: toml::Table::try_from(ContextSettings::default()).ok()?,
        ssh_node: toml::Table::try_from(SshNodeSettings {
            host: Some("x".into()),
            user: Some("x".into()),
            port: Some(22),
        })
        .ok()?,
    };
    let mut found = Vec::new();
    unknown_keys(doc, &schema, &maps, "", &mut found);
    found.into_iter().min_by_key(|u| u.offset)
}

/// Tables whose keys are names the operator chooses (contexts, nodes), each holding the keys of
/// one schema.
struct Maps {
    context: toml::Table,
    ssh_node: toml::Table,
}

fn unknown_keys(doc: &DeTable<'_>, schema: &toml::Table, maps: &Maps, prefix: &str, out: &mut Vec<Unknown>) {
    for (k, v) in doc {
        let name: &str = k.get_ref();
        let key = dotted(prefix, name);
        match schema.get(name) {
            None => {
                let hint = match closest(name, schema.keys().map(String::as_str)) {
                    Some(near) => format!("did you mean \"{}\"?", dotted(prefix, near)),
                    None => {
                        let mut known: Vec<&str> = schema.keys().map(String::as_str).collect();
                        known.sort_unstable();
                        let section =
                            if prefix.is_empty() { "the top level".to_string() } else { format!("[{prefix}]") };
                        format!("known keys in {section}: {}", known.join(", "))
                    }
                };
                out.push(Unknown { offset: k.span().start, key, hint: Some(hint) });
            }
            Some(toml::Value::Table(sub)) => {
                // A value of another type is a type error, reported by serde with its key.
                let DeValue::Table(table) = v.get_ref() else { continue };
                let named = match (prefix, name) {
                    ("", "contexts") => Some(&maps.context),
                    ("ssh", "nodes") => Some(&maps.ssh_node),
                    _ => None,
                };
                if let Some(entry_schema) = named {
                    for (entry, settings) in table {
                        if let DeValue::Table(t) = settings.get_ref() {
                            unknown_keys(t, entry_schema, maps, &dotted(&key, entry.get_ref()), out);
                        }
                    }
                } else {
                    unknown_keys(table, sub, maps, &key, out);
                }
            }
            Some(_) => {}
        }
    }
}

/// The known key within two edits of `name` (typos such as `chart_verison`), if one is closest.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    use crate::manifests::chart_keys::edit_distance;
    known.map(|k| (edit_distance(name, k), k)).filter(|(d, _)| *d <= 2).min().map(|(_, k)| k)
}

/// The dotted key whose name or value holds byte `offset` (the deepest one), for type errors.
fn key_at(doc: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    for (k, v) in doc {
        let key = dotted(prefix, k.get_ref());
        if let DeValue::Table(t) = v.get_ref()
            && let Some(deeper) = key_at(t, offset, &key)
        {
            return Some(deeper);
        }
        if k.span().contains(&offset) || v.span().contains(&offset) {
            return Some(key);
        }
    }
    None
}

/// Every leaf key the document sets, dotted.
fn leaf_keys(doc: &DeTable<'_>, prefix: &str, out: &mut BTreeSet<String>) {
    for (k, v) in doc {
        let key = dotted(prefix, k.get_ref());
        match v.get_ref() {
            DeValue::Table(t) => leaf_keys(t, &key, out),
            _ => {
                out.insert(key);
            }
        }
    }
}

/// An IPv4 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn parse(s: &str) -> Result<Ipv4Cidr, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR like 10.42.0.0/16"))?;
        let addr: Ipv4Addr = a.trim().parse().map_err(|_| format!("{s:?}: {a:?} is not an IPv4 address"))?;
        let prefix: u8 = p.trim().parse().map_err(|_| format!("{s:?}: prefix {p:?} is not a number"))?;
        if prefix > 32 {
            return Err(format!("{s:?}: prefix must be 0-32"));
        }
        Ok(Ipv4Cidr { addr, prefix })
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.mask()) == (u32::from(self.addr) & self.mask())
    }

    /// Whether `other` lies entirely inside this network.
    pub fn contains_net(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A chart version `major.minor.patch`; `x`/`*` patch (an Argo CD range) counts as the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChartVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ChartVersion {
    pub fn parse(s: &str) -> Option<ChartVersion> {
        let s = s.trim().trim_start_matches('v');
        let mut it = s.splitn(3, '.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        let patch = match it.next() {
            None | Some("x") | Some("*") => u32::MAX,
            Some(p) => {
                // Drop pre-release/build suffixes (1.17.0-rc.1).
                let digits: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
                digits.parse().ok()?
            }
        };
        Some(ChartVersion { major, minor, patch })
    }

    pub fn minor_is(&self, major: u32, minor: u32) -> bool {
        self.major == major && self.minor == minor
    }

    pub fn at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        (self.major, self.minor, self.patch) >= (major, minor, patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_plan() {
        let s = Settings::default();
        assert_eq!(s.cluster.name, "homelab");
        assert_eq!(s.cluster.pod_cidr, "10.42.0.0/16");
        assert_eq!(s.cluster.api_port, 6444);
        assert_eq!(s.cilium.chart_version, "1.17.18");
        assert_eq!(s.argo.cilium_app, "cilium-app");
        assert_eq!(s.hubble.whitelist, "192.168.0.0/16");
        assert!(s.validate("", Path::new("x")).is_ok());
    }

    #[test]
    fn shipped_file_is_the_defaults() {
        let text = include_str!("../assets/cutover.toml");
        let s = Settings::from_toml(text, Path::new("assets/cutover.toml")).expect("assets/cutover.toml parses");
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn the_soak_takes_a_duration_and_zero_turns_it_off() {
        let s = Settings::from_toml("[runbook]\nsoak = \"0s\"\n", Path::new("c.toml")).expect("0s is valid");
        assert!(s.runbook.soak().is_zero());
        assert_eq!(Settings::default().runbook.soak(), std::time::Duration::from_secs(120));
        let err = Settings::from_toml("[runbook]\nsoak = \"two minutes\"\n", Path::new("c.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("soak"), "{err}");
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(Settings::from_toml("", Path::new("c.toml")).ok(), Some(Settings::default()));
    }

    #[test]
    fn unknown_key_is_rejected_with_line() {
        let text = "[cluster]\nname = \"homelab\"\npod_cdir = \"10.42.0.0/16\"\n";
        let err = Settings::from_toml(text, Path::new("c.toml")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("c.toml:3:"), "{err}");
        assert!(err.contains("pod_cdir"), "{err}");
    }

    #[test]
    fn malformed_reports_file_and_line() {
        let text = "[cluster]\nname = \"homelab\"\napi_port = \"x\"\n";
        let err = Settings::from_toml(text, Path::new("c.toml")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("c.toml:3:"), "{err}");
        let text = "[cluster\nname = 1";
        let err = Settings::from_toml(text, Path::new("c.toml")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("c.toml:1:"), "{err}");
    }

    #[test]
    fn invalid_values_name_key_and_line() {
        let text = "[cluster]\nname = \"Home_Lab\"\n";
        let err = Settings::from_toml(text, Path::new("c.toml")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("c.toml:2: cluster.name:"), "{err}");
        let text = "[cilium]\nchart_version = \"latest\"\n";
        let err = Settings::from_toml(text, Path::new("c.toml")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("cilium.chart_version"), "{err}");
    }

    #[test]
    fn ssh_defaults_and_overrides() {
        let s = Settings::default().ssh;
        assert_eq!((s.config_file, s.user, s.port), (None, None, None));
        assert_eq!((s.connect_timeout, s.command_timeout, s.server_alive_interval), (10, 120, 15));
        assert_eq!(s.commands.dropin_path, "/etc/rancher/k3s/config.yaml.d/90-cutover-stage{stage}.yaml");
        assert_eq!(s.commands.write_dropin, "sudo -n tee {path} >/dev/null");
        assert_eq!(s.commands.read_dropin, "sudo -n cat {path}");
        assert_eq!(s.commands.remove_dropin, "sudo -n rm -f {path}");
        assert_eq!(s.commands.restart, "sudo -n systemctl restart {unit}");
        assert_eq!(s.commands.reboot, "sudo -n systemctl reboot");
        assert_eq!(s.commands.logs, "sudo -n journalctl -u {unit} -n {lines} --no-pager");
        assert!(s.nodes.is_empty());

        let text = "[ssh]\nconfig_file = \"/etc/cutover/ssh_config\"\nuser = \"ops\"\nport = 2222\ncommand_timeout = 300\n\n[ssh.nodes.\"homelab-w1\"]\nhost = \"w1.lan\"\nport = 22\n";
        let s = Settings::from_toml(text, Path::new("c.toml")).expect("parses").ssh;
        assert_eq!(s.config_file.as_deref(), Some(Path::new("/etc/cutover/ssh_config")));
        assert_eq!(
            (s.user.as_deref(), s.port, s.command_timeout, s.connect_timeout),
            (Some("ops"), Some(2222), 300, 10)
        );
        let w1 = &s.nodes["homelab-w1"];
        assert_eq!((w1.host.as_deref(), w1.user.as_deref(), w1.port), (Some("w1.lan"), None, Some(22)));
    }

    #[test]
    fn ssh_settings_are_checked() {
        let e = err("[ssh.nodes.\"homelab-w1\"]\nhots = \"x\"\n");
        assert!(e.starts_with("c.toml:2: unknown key \"ssh.nodes.homelab-w1.hots\""), "{e}");
        let e = err("[ssh]\nconect_timeout = 5\n");
        assert!(e.contains("did you mean \"ssh.connect_timeout\""), "{e}");
        let e = err("[ssh.commands]\nrestart = \"sudo -n systemctl restart {service}\"\n");
        assert!(e.starts_with("c.toml:2: ssh.commands.restart: unknown placeholder {service}"), "{e}");
        let e = err("[ssh.commands]\ndropin_path = \"/etc/x/{unit}.yaml\"\n");
        assert!(e.contains("ssh.commands.dropin_path: unknown placeholder {unit}"), "{e}");
        let e = err("[ssh.commands]\ndropin_path = \"relative/{stage}.yaml\"\n");
        assert!(e.contains("must be an absolute path"), "{e}");
        let e = err("[ssh.nodes.w1]\nhost = \"-oProxyCommand=sh\"\n");
        assert!(e.contains("must not start with `-`"), "{e}");
        let e = err("[ssh]\ncommand_timeout = 0\n");
        assert!(e.starts_with("c.toml:2: ssh.command_timeout:"), "{e}");
        assert_eq!(check_template("a {lines", &["lines"]), Err("unclosed `{` in \"a {lines\"".into()));
    }

    #[test]
    fn context_overrides() {
        let text = "[contexts.\"prod\"]\nread_only = true\n";
        let s = Settings::from_toml(text, Path::new("c.toml")).unwrap_or_default();
        assert!(s.read_only_for(Some("prod")));
        assert!(!s.read_only_for(Some("lab")));
        assert!(!s.read_only_for(None));
    }

    fn err(text: &str) -> String {
        Settings::from_toml(text, Path::new("c.toml")).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn unknown_keys_name_file_line_and_dotted_key() {
        let e = err("# typo\n[cilium]\nchart_verison = \"1.17.6\"\n");
        assert_eq!(e, "c.toml:3: unknown key \"cilium.chart_verison\" (did you mean \"cilium.chart_version\"?)");
        let e = err("[cluster]\nname = \"homelab\"\n\n[clustr]\nname = \"x\"\n");
        assert_eq!(e, "c.toml:4: unknown key \"clustr\" (did you mean \"cluster\"?)");
        // Dotted keys and inline tables are walked like sections.
        let e = err("cilium.resources.cpu_reqest = \"1\"\n");
        assert!(e.starts_with("c.toml:1: unknown key \"cilium.resources.cpu_reqest\""), "{e}");
        let e = err("[cilium]\nresources = { cpu_limit = \"1\", gpu = \"2\" }\n");
        assert!(
            e.starts_with("c.toml:2: unknown key \"cilium.resources.gpu\" (known keys in [cilium.resources]: "),
            "{e}"
        );
        // Any context name is allowed, its keys are not.
        let e = err("[contexts.\"admin@homelab\"]\nread_only = true\n\n[contexts.lab]\nreadonly = true\n");
        assert_eq!(e, "c.toml:5: unknown key \"contexts.lab.readonly\" (did you mean \"contexts.lab.read_only\"?)");
        // The first in the file wins, whatever the map order.
        let e = err("[hubble]\nzzz = 1\n[argo]\naaa = 1\n");
        assert!(e.starts_with("c.toml:2: unknown key \"hubble.zzz\""), "{e}");
    }

    #[test]
    fn bad_value_types_name_file_line_and_key() {
        let e = err("[contexts.\"prod\"]\nread_only = \"yes\"\n");
        assert_eq!(e, "c.toml:2: contexts.prod.read_only: invalid type: string \"yes\", expected a boolean");
        let e = err("[cluster]\nname = \"homelab\"\napi_port = \"x\"\n");
        assert!(e.starts_with("c.toml:3: cluster.api_port: invalid type: string \"x\""), "{e}");
        let e = err("[cilium]\nservice_monitors = \"maybe\"\n");
        assert!(e.starts_with("c.toml:2: cilium.service_monitors: unknown variant `maybe`"), "{e}");
        let e = err("[runbook]\nnode_order = [\n  \"a\",\n  1,\n]\n");
        assert!(e.starts_with("c.toml:4: runbook.node_order: invalid type: integer"), "{e}");
        let e = err("cluster = 3\n");
        assert!(e.starts_with("c.toml:1: cluster: invalid type: integer"), "{e}");
    }

    #[test]
    fn every_settings_error_is_one_line() {
        for text in [
            "[cluster\nname = 1",
            "[cluster]\nname = \"a\"\nname = \"b\"\n",
            "x = \"\n",
            "[cilium]\nchart_verison = 1\n",
            "[cluster]\napi_port = 70000\n",
            "[cluster]\npod_cidr = \"10.42.0.0\"\n",
        ] {
            let e = err(text);
            assert!(e.starts_with("c.toml:") && !e.contains('\n'), "{text:?} -> {e:?}");
        }
    }

    /// A scratch layout: `home/`, `xdg/cutover/`, `cwd/`, each possibly holding a cutover.toml.
    struct Layout {
        tmp: crate::tempdir::TempDir,
    }

    impl Layout {
        fn new() -> Layout {
            let tmp = crate::tempdir::TempDir::new().expect("temp dir");
            for d in ["home", "xdg/cutover", "cwd", "etc"] {
                std::fs::create_dir_all(tmp.path.join(d)).expect("mkdir");
            }
            Layout { tmp }
        }
        fn p(&self, rel: &str) -> PathBuf {
            self.tmp.path.join(rel)
        }
        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.p(rel);
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).expect("mkdir");
            }
            std::fs::write(&p, text).expect("write");
            p
        }
        fn env(&self) -> LookupEnv {
            LookupEnv {
                cutover_config: None,
                xdg_config_home: Some(self.p("xdg").into_os_string()),
                home: Some(self.p("home").into_os_string()),
                cwd: Some(self.p("cwd")),
            }
        }
    }

    #[test]
    fn lookup_order_flag_env_xdg_cwd_builtin() {
        let l = Layout::new();
        let flag = l.write("etc/flag.toml", "");
        let named = l.write("etc/env.toml", "");
        let user = l.write("xdg/cutover/cutover.toml", "");
        let here = l.write("cwd/cutover.toml", "");
        let mut env = l.env();
        env.cutover_config = Some(named.clone().into_os_string());

        assert_eq!(locate(Some(&flag), &env).source, SettingsSource::Flag(flag.clone()));
        assert_eq!(locate(None, &env).source, SettingsSource::Env(named.clone()));
        env.cutover_config = Some(OsString::new());
        assert_eq!(locate(None, &env).source, SettingsSource::User(user.clone()), "empty = unset");
        env.cutover_config = None;
        assert_eq!(locate(None, &env).source, SettingsSource::User(user.clone()));
        std::fs::remove_file(&user).expect("rm");
        assert_eq!(locate(None, &env).source, SettingsSource::WorkingDir(here.clone()));
        std::fs::remove_file(&here).expect("rm");
        let lookup = locate(None, &env);
        assert_eq!(lookup.source, SettingsSource::BuiltIn);
        assert_eq!(
            lookup.places,
            vec![
                Place::Unset("--settings: not given".into()),
                Place::Unset("$CUTOVER_CONFIG: unset".into()),
                Place::File { source: SettingsSource::User(user), exists: false },
                Place::File { source: SettingsSource::WorkingDir(here), exists: false },
            ]
        );
        assert_eq!(Settings::load_with(None, &env).ok(), Some(Settings::default()));
    }

    #[test]
    fn xdg_defaults_to_home_config_and_a_relative_xdg_is_ignored() {
        let l = Layout::new();
        let home_file = l.write("home/.config/cutover/cutover.toml", "");
        let mut env = l.env();
        env.xdg_config_home = None;
        assert_eq!(locate(None, &env).source, SettingsSource::User(home_file.clone()));
        env.xdg_config_home = Some("relative/xdg".into());
        let lookup = locate(None, &env);
        assert_eq!(lookup.source, SettingsSource::User(home_file));
        assert!(lookup.places.iter().any(|p| matches!(p, Place::Unset(w) if w.contains("relative, ignored"))));
        // No home, no XDG: the working directory still counts.
        let here = l.write("cwd/cutover.toml", "");
        env.home = None;
        assert_eq!(locate(None, &env).source, SettingsSource::WorkingDir(here));
    }

    #[test]
    fn explicitly_named_missing_files_are_errors_implicit_ones_are_skipped() {
        let l = Layout::new();
        l.write("xdg/cutover/cutover.toml", "");
        let mut env = l.env();
        let missing = l.p("etc/nope.toml");
        let e = Settings::load_with(Some(&missing), &env).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("nope.toml") && e.contains("(--settings)"), "{e}");
        env.cutover_config = Some(missing.clone().into_os_string());
        let e = Settings::load_with(None, &env).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("nope.toml") && e.contains("($CUTOVER_CONFIG)"), "{e}");
        let lookup = locate(None, &env);
        assert!(config_path_text(&lookup).is_err(), "config path refuses a missing named file");
    }

    #[test]
    fn a_read_only_context_stays_read_only_from_another_directory() {
        let l = Layout::new();
        let user = l.write("xdg/cutover/cutover.toml", "[contexts.\"prod\"]\nread_only = true\n");
        // Started from a directory without a cutover.toml.
        let s = Settings::load_with(None, &l.env()).expect("settings");
        assert_eq!(s.source(), &SettingsSource::User(user));
        assert!(s.read_only_for(Some("prod")));
        assert!(!s.read_only_for(Some("lab")));
    }

    #[test]
    fn origins_name_the_file_only_for_keys_it_sets() {
        let l = Layout::new();
        let user = l.write("xdg/cutover/cutover.toml", "[cilium]\noperator_replicas = 2\n");
        let s = Settings::load_with(None, &l.env()).expect("settings");
        assert_eq!(s.origin_of("cilium.operator_replicas"), tilde(&user));
        assert_eq!(s.origin_of("cilium"), tilde(&user));
        assert_eq!(s.origin_of("cilium.chart_version"), "built-in default");
        assert_eq!(Settings::default().origin_of("cilium.operator_replicas"), "built-in default");
        assert_eq!(
            s,
            Settings { cilium: CiliumSettings { operator_replicas: 2, ..s.cilium.clone() }, ..Settings::default() }
        );
    }

    #[test]
    fn config_path_prints_the_file_or_where_it_looked() {
        let l = Layout::new();
        let env = l.env();
        let text = config_path_text(&locate(None, &env)).expect("text");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("built-in defaults (no cutover.toml found)"));
        assert_eq!(lines.next(), Some("looked in, in order:"));
        assert_eq!(lines.next(), Some("  --settings: not given"));
        assert_eq!(lines.next(), Some("  $CUTOVER_CONFIG: unset"));
        let user = l.p("xdg/cutover/cutover.toml");
        assert_eq!(lines.next(), Some(format!("  {} (XDG config): absent", user.display()).as_str()));
        let here = l.p("cwd/cutover.toml");
        assert_eq!(lines.next(), Some(format!("  {} (working directory): absent", here.display()).as_str()));
        assert_eq!(lines.next(), None);

        l.write("cwd/cutover.toml", "");
        let text = config_path_text(&locate(None, &env)).expect("text");
        assert_eq!(text, format!("{}\n", here.display()));
        // A relative --settings is taken from the working directory and shown absolute.
        l.write("cwd/mine.toml", "");
        let text = config_path_text(&locate(Some(Path::new("./mine.toml")), &env));
        assert_eq!(text.ok(), Some(format!("{}\n", l.p("cwd/mine.toml").display())));
    }

    #[test]
    fn sources_display_as_operators_read_them() {
        assert_eq!(SettingsSource::BuiltIn.to_string(), "built-in defaults (no cutover.toml found)");
        let p = PathBuf::from("/etc/cutover/cutover.toml");
        assert_eq!(SettingsSource::Env(p.clone()).to_string(), "/etc/cutover/cutover.toml ($CUTOVER_CONFIG)");
        assert_eq!(SettingsSource::WorkingDir(p).to_string(), "/etc/cutover/cutover.toml (working directory)");
        if let Some(home) =
            std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_absolute() && h.parent().is_some())
        {
            let user = SettingsSource::User(home.join(".config/cutover/cutover.toml"));
            assert_eq!(user.to_string(), "~/.config/cutover/cutover.toml (XDG config)");
        }
    }

    #[test]
    fn edit_distance_counts_swaps_as_one() {
        use crate::manifests::chart_keys::edit_distance;
        assert_eq!(edit_distance("chart_verison", "chart_version"), 1);
        assert_eq!(edit_distance("readonly", "read_only"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(closest("zzz", ["name", "chart"].into_iter()), None);
    }

    #[test]
    fn cidr_math() {
        let pod = Ipv4Cidr::parse("10.42.0.0/16").unwrap_or(Ipv4Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 32 });
        assert!(pod.contains_net(&Ipv4Cidr::parse("10.42.3.0/24").unwrap_or(pod)));
        assert!(!pod.contains("10.43.0.1".parse().unwrap_or(Ipv4Addr::UNSPECIFIED)));
        assert!(Ipv4Cidr::parse("10.42.0.0").is_err());
        assert!(Ipv4Cidr::parse("10.42.0.0/33").is_err());
    }

    #[test]
    fn chart_versions() {
        let v = ChartVersion::parse("1.16.4");
        assert_eq!(v, Some(ChartVersion { major: 1, minor: 16, patch: 4 }));
        assert!(ChartVersion::parse("1.17.x").is_some_and(|v| v.at_least(1, 17, 100)));
        assert!(ChartVersion::parse("v1.16.1").is_some_and(|v| !v.at_least(1, 16, 2)));
        assert!(ChartVersion::parse("latest").is_none());
    }
}
