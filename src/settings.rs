//! The settings file (`cutover.toml`): the facts of the user's cluster, Git repo, chart and Argo CD
//! layout that the renderer, the linter and the pre-flight checks share. Every key has a default
//! taken from the user's plan, so a missing file means "the plan as written".

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where `Settings::load(None)` looks.
pub const DEFAULT_FILE: &str = "cutover.toml";

/// Errors loading the settings file. Messages name the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: {message}")]
    ParseNoSpan { path: PathBuf, message: String },
    #[error("{path}{}: {key}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid { path: PathBuf, line: Option<usize>, key: String, message: String },
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
    /// Per kubeconfig-context overrides, e.g. `[contexts."homelab"] read_only = true`.
    pub contexts: BTreeMap<String, ContextSettings>,
}

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

/// Runbook ordering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RunbookSettings {
    /// Node restart order. Empty = servers first (the one the others join through first), then
    /// agents, as discovered from the cluster.
    pub node_order: Vec<String>,
}

/// Overrides for one kubeconfig context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ContextSettings {
    /// Refuse every mutating request when this context is used.
    pub read_only: bool,
}

impl Settings {
    /// Loads `path`, or `./cutover.toml` when `path` is `None` (missing default file = defaults).
    pub fn load(path: Option<&Path>) -> Result<Settings, SettingsError> {
        let (path, must_exist) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_FILE), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "no settings file; using the plan's defaults");
                return Ok(Settings::default());
            }
            Err(source) => return Err(SettingsError::Read { path, source }),
        };
        Settings::from_toml(&text, &path)
    }

    /// Parses settings text; `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Settings, SettingsError> {
        let settings: Settings = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => {
                let (line, column) = line_col(text, span.start);
                SettingsError::Parse { path: path.to_path_buf(), line, column, message: e.message().trim().to_string() }
            }
            None => SettingsError::ParseNoSpan { path: path.to_path_buf(), message: e.message().trim().to_string() },
        })?;
        settings.validate(text, path)?;
        Ok(settings)
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
        Ok(())
    }
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
    fn context_overrides() {
        let text = "[contexts.\"prod\"]\nread_only = true\n";
        let s = Settings::from_toml(text, Path::new("c.toml")).unwrap_or_default();
        assert!(s.read_only_for(Some("prod")));
        assert!(!s.read_only_for(Some("lab")));
        assert!(!s.read_only_for(None));
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
