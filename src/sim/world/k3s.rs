//! k3s on each node: the config file, the running process (its `k3s.io/node-args`, the network
//! components it embeds: flannel, kube-proxy, the network-policy controller), restarts and reboots
//! (node ops), the critical-flag check between servers, and the Node object's status, taints and
//! Lease heartbeat.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::objects::{self as o, ids, res};
use super::scenario::{BaseScenario, NodeRole, Scenario};
use super::{NodeOp, World, timing};

pub const K3S_VERSION: &str = "v1.32.6+k3s1";
/// containerd CNI dirs while embedded flannel runs (k3s sets them).
pub const K3S_CNI_CONF_DIR: &str = "/var/lib/rancher/k3s/agent/etc/cni/net.d";
pub const K3S_CNI_BIN_DIR: &str = "/var/lib/rancher/k3s/data/cni";
/// containerd's built-in defaults (what it uses with `flannel-backend: none`).
pub const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";
pub const DEFAULT_CNI_BIN_DIR: &str = "/opt/cni/bin";

const NOT_READY_NETWORK: &str = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized";
const NOT_READY_STARTING: &str = "container runtime status check may not have completed yet";

/// One value of a k3s config key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigValue {
    Bool(bool),
    Scalar(String),
    List(Vec<String>),
}

impl ConfigValue {
    fn as_string(&self) -> String {
        match self {
            ConfigValue::Bool(b) => b.to_string(),
            ConfigValue::Scalar(s) => s.clone(),
            ConfigValue::List(l) => l.join(","),
        }
    }
}

/// `/etc/rancher/k3s/config.yaml`: keys in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct K3sConfig {
    pub entries: Vec<(String, ConfigValue)>,
}

/// Keys whose value k3s masks in `k3s.io/node-args`.
const SECRET_KEYS: &[&str] =
    &["token", "t", "agent-token", "datastore-endpoint", "etcd-s3-access-key", "etcd-s3-secret-key"];

/// Keys `k3s agent` accepts; everything else in an agent's config file is a server flag and ignored.
const AGENT_KEYS: &[&str] = &[
    "server",
    "token",
    "token-file",
    "node-name",
    "with-node-id",
    "node-label",
    "node-taint",
    "node-ip",
    "node-external-ip",
    "node-internal-dns",
    "node-external-dns",
    "kubelet-arg",
    "kube-proxy-arg",
    "data-dir",
    "flannel-iface",
    "flannel-conf",
    "flannel-cni-conf",
    "private-registry",
    "resolv-conf",
    "selinux",
    "lb-server-port",
    "protect-kernel-defaults",
    "container-runtime-endpoint",
    "default-runtime",
    "pause-image",
    "snapshotter",
    "vpn-auth",
    "vpn-auth-file",
    "prefer-bundled-bin",
    "disable-apiserver-lb",
    "disable-default-registry-endpoint",
    "image-credential-provider-bin-dir",
    "image-credential-provider-config",
    "airgap-extra-registry",
    "debug",
    "v",
    "log",
    "alsologtostderr",
];

/// Critical server flags (must match between servers) with their defaults.
const CRITICAL: &[(&str, &str)] = &[
    ("flannel-backend", "vxlan"),
    ("disable-network-policy", "false"),
    ("cluster-cidr", "10.42.0.0/16"),
    ("service-cidr", "10.43.0.0/16"),
    ("cluster-dns", "10.43.0.10"),
    ("cluster-domain", "cluster.local"),
    ("service-node-port-range", "30000-32767"),
    ("egress-selector-mode", "agent"),
    ("flannel-ipv6-masq", "false"),
    ("flannel-external-ip", "false"),
];

/// config.yaml's top level, its keys in file order (a JSON object would sort them, and
/// `k3s.io/node-args` lists the flags as the file has them). Keys read as strings (`1:` is "1").
enum ConfigTop {
    /// An empty file (or only comments, or `null`).
    Empty,
    Flags(Vec<(String, Value)>),
    /// A list or a scalar.
    Other,
}

impl<'de> serde::Deserialize<'de> for ConfigTop {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Top;
        impl<'de> serde::de::Visitor<'de> for Top {
            type Value = ConfigTop;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping of flag names to values")
            }
            fn visit_unit<E>(self) -> Result<ConfigTop, E> {
                Ok(ConfigTop::Empty)
            }
            fn visit_none<E>(self) -> Result<ConfigTop, E> {
                Ok(ConfigTop::Empty)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<ConfigTop, A::Error> {
                let mut flags = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    flags.push(entry);
                }
                Ok(ConfigTop::Flags(flags))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<ConfigTop, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(ConfigTop::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<ConfigTop, E> {
                Ok(ConfigTop::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<ConfigTop, E> {
                Ok(ConfigTop::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<ConfigTop, E> {
                Ok(ConfigTop::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<ConfigTop, E> {
                Ok(ConfigTop::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<ConfigTop, E> {
                Ok(ConfigTop::Other)
            }
        }
        d.deserialize_any(Top)
    }
}

impl K3sConfig {
    /// Parses config.yaml text (a flat mapping of flag names to scalars or lists).
    pub fn parse(text: &str) -> Result<K3sConfig, String> {
        let top: ConfigTop = serde_saphyr::from_str_with_options(text, crate::sim::yaml::options())
            .map_err(|e| format!("invalid YAML: {}", crate::sim::yaml::message(&e)))?;
        let map = match top {
            ConfigTop::Empty => return Ok(K3sConfig::default()),
            ConfigTop::Flags(m) => m,
            ConfigTop::Other => return Err("config must be a mapping of flag names to values".into()),
        };
        let scalar = |v: &Value| -> Option<String> {
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        };
        let mut entries = Vec::new();
        for (key, v) in map {
            let value = match &v {
                Value::Bool(b) => ConfigValue::Bool(*b),
                Value::Null => continue,
                Value::Array(items) => ConfigValue::List(
                    items
                        .iter()
                        .map(|i| scalar(i).ok_or(format!("{key}: list items must be scalars")))
                        .collect::<Result<_, _>>()?,
                ),
                other => {
                    ConfigValue::Scalar(scalar(other).ok_or(format!("{key}: unsupported value (nested mapping)"))?)
                }
            };
            entries.retain(|(k2, _): &(String, ConfigValue)| *k2 != key);
            entries.push((key, value));
        }
        Ok(K3sConfig { entries })
    }

    pub fn get(&self, key: &str) -> Option<&ConfigValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn str_or(&self, key: &str, default: &str) -> String {
        self.get(key).map(ConfigValue::as_string).unwrap_or_else(|| default.to_string())
    }

    pub fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            Some(ConfigValue::Bool(b)) => *b,
            Some(ConfigValue::Scalar(s)) => s == "true",
            _ => false,
        }
    }

    pub fn set(&mut self, key: &str, v: ConfigValue) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = v,
            None => self.entries.push((key.to_string(), v)),
        }
    }

    /// YAML text as an operator would write it.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.entries {
            match v {
                ConfigValue::Bool(b) => out.push_str(&format!("{k}: {b}\n")),
                ConfigValue::Scalar(s) => out.push_str(&format!("{k}: {}\n", yaml_scalar(s))),
                ConfigValue::List(l) => {
                    out.push_str(&format!("{k}:\n"));
                    for i in l {
                        out.push_str(&format!("  - {}\n", yaml_scalar(i)));
                    }
                }
            }
        }
        out
    }

    /// Splits into the keys the role accepts and the ignored ones.
    pub fn for_role(&self, role: NodeRole) -> (K3sConfig, Vec<String>) {
        if role == NodeRole::Server {
            return (self.clone(), Vec::new());
        }
        let mut kept = K3sConfig::default();
        let mut ignored = Vec::new();
        for (k, v) in &self.entries {
            if AGENT_KEYS.contains(&k.as_str()) {
                kept.entries.push((k.clone(), v.clone()));
            } else {
                ignored.push(k.clone());
            }
        }
        (kept, ignored)
    }

    /// The `k3s.io/node-args` array: subcommand, then every key as `--key value` (lists repeat
    /// the flag, booleans from the file keep their value), secrets masked.
    pub fn node_args(&self, role: NodeRole) -> Vec<String> {
        let mut args = vec![if role == NodeRole::Server { "server" } else { "agent" }.to_string()];
        for (k, v) in &self.entries {
            let flag = format!("--{k}");
            let mask = |s: &str| if SECRET_KEYS.contains(&k.as_str()) { "********".to_string() } else { s.to_string() };
            match v {
                ConfigValue::Bool(b) => {
                    args.push(flag);
                    args.push(b.to_string());
                }
                ConfigValue::Scalar(s) => {
                    args.push(flag);
                    args.push(mask(s));
                }
                ConfigValue::List(l) => {
                    for i in l {
                        args.push(flag.clone());
                        args.push(mask(i));
                    }
                }
            }
        }
        args
    }

    /// Critical flags that differ from `other`'s, as "key (ours vs theirs)".
    pub fn critical_mismatch(&self, other: &K3sConfig) -> Vec<(String, String, String)> {
        CRITICAL
            .iter()
            .filter_map(|(k, d)| {
                let a = self.str_or(k, d);
                let b = other.str_or(k, d);
                (a != b).then(|| (k.to_string(), a, b))
            })
            .collect()
    }

    /// What the embedded network components do under this (server) config.
    pub fn net_flags(&self) -> NetFlags {
        let backend = self.str_or("flannel-backend", "vxlan");
        NetFlags {
            flannel_backend: if backend == "none" { None } else { Some(backend) },
            network_policy: !self.flag("disable-network-policy"),
            kube_proxy: !self.flag("disable-kube-proxy"),
        }
    }
}

fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-./:_=".contains(c))
        && !matches!(s, "true" | "false" | "yes" | "no" | "null" | "on" | "off")
        && s.parse::<f64>().is_err();
    if plain { s.to_string() } else { format!("\"{}\"", s.replace('"', "\\\"")) }
}

/// Network components a running k3s process embeds (servers decide; agents ask their server at
/// start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetFlags {
    /// `Some(backend)` while embedded flannel runs.
    pub flannel_backend: Option<String>,
    pub network_policy: bool,
    pub kube_proxy: bool,
}

/// The k3s process on a node.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcState {
    Up,
    /// Just (re)started: the kubelet posts NotReady until `until`.
    Starting {
        until: f64,
    },
    /// Rebooting: nothing runs until `until`, then k3s starts.
    Rebooting {
        until: f64,
    },
    /// k3s exited at start; systemd retries at `retry_at`.
    Failed {
        reason: String,
        retry_at: f64,
    },
}

/// What the sim knows about one node beyond its Node object (the machine and its k3s).
#[derive(Debug, Clone)]
pub struct K3sNode {
    pub name: String,
    pub role: NodeRole,
    pub ip: String,
    /// Index of its /24 inside 10.42.0.0/16.
    pub index: usize,
    pub join: Option<String>,
    /// `/etc/rancher/k3s/config.yaml` as on disk.
    pub file: K3sConfig,
    /// Config the running process started with (after role filtering).
    pub running: K3sConfig,
    pub env: BTreeMap<String, String>,
    pub state: ProcState,
    pub net: NetFlags,
    /// flannel.1 / cni0 / flannel routes still present (cleared by a reboot only).
    pub flannel_leftovers: bool,
    /// KUBE-* iptables chains from kube-proxy still present.
    pub kube_proxy_leftovers: bool,
    /// KUBE-ROUTER-* chains from the network-policy controller still present.
    pub npc_leftovers: bool,
    /// Directories holding Cilium's `05-cilium.conflist` (files survive agent removal and reboots).
    pub cilium_conf_dirs: BTreeSet<String>,
    /// Directories holding the `cilium-cni` binary.
    pub cilium_bin_dirs: BTreeSet<String>,
    pub boot_id: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub kernel: String,
    pub cpus: u32,
    pub memory_kib: u64,
    /// Bumped at every k3s start (containers restart), and at every reboot (new sandboxes).
    pub start_gen: u64,
    pub boot_gen: u64,
    pub starts: u32,
    pub reboots: u32,
    pub last_start: String,
    /// Simulated time of the last status post by the kubelet.
    pub last_post: f64,
    pub last_lease: f64,
    pub flannel_mac: String,
    pub etcd_suffix: String,
    /// `/etc/rancher/k3s/config.yaml.d/<name>` as on disk (raw text: parsed when k3s starts, as
    /// k3s does; a broken drop-in makes k3s exit).
    pub dropins: BTreeMap<String, String>,
    /// The k3s unit's journal on this node (what `journalctl -u k3s` shows), oldest first.
    pub journal: Vec<String>,
    /// PID of the running k3s process (journal lines carry it).
    pub pid: u32,
    /// systemd's restart counter of the unit (automatic restarts after failures).
    pub restart_counter: u32,
}

/// Where k3s reads its configuration drop-ins.
pub const DROPIN_DIR: &str = "/etc/rancher/k3s/config.yaml.d";
/// The journal keeps this many lines per node.
const JOURNAL_MAX: usize = 2000;
/// The commit k3s v1.32.6+k3s1 was built from (printed at start).
const K3S_COMMIT: &str = "eb603acd";

/// Whether `name` is a file name k3s' drop-in directory may hold (no path, no hidden file).
pub fn valid_dropin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

impl K3sNode {
    /// The kubelet posts status (maybe NotReady).
    pub fn posting(&self) -> bool {
        matches!(self.state, ProcState::Up | ProcState::Starting { .. })
    }

    /// Containers can start and stop on this node.
    pub fn kubelet_running(&self) -> bool {
        self.state == ProcState::Up
    }

    pub fn pod_cidr(&self) -> String {
        format!("10.42.{}.0/24", self.index)
    }

    pub fn containerd_conf_dir(&self) -> &'static str {
        if self.net.flannel_backend.is_some() { K3S_CNI_CONF_DIR } else { DEFAULT_CNI_CONF_DIR }
    }

    pub fn containerd_bin_dir(&self) -> &'static str {
        if self.net.flannel_backend.is_some() { K3S_CNI_BIN_DIR } else { DEFAULT_CNI_BIN_DIR }
    }

    /// containerd reports NetworkReady: a CNI config is in the directory it reads.
    pub fn network_ready(&self) -> bool {
        self.net.flannel_backend.is_some() || self.cilium_conf_dirs.contains(self.containerd_conf_dir())
    }

    /// Files in the CNI conf dir containerd reads.
    pub fn cni_conf_files(&self) -> Vec<String> {
        let dir = self.containerd_conf_dir();
        let mut files = Vec::new();
        if self.cilium_conf_dirs.contains(dir) {
            files.push(format!("{dir}/05-cilium.conflist"));
        }
        if dir == K3S_CNI_CONF_DIR && (self.net.flannel_backend.is_some() || self.flannel_leftovers) {
            if self.cilium_conf_dirs.contains(dir) {
                files.push(format!("{dir}/10-flannel.conflist.cilium_bak"));
            } else {
                files.push(format!("{dir}/10-flannel.conflist"));
            }
        }
        files
    }

    fn node_env(&self) -> String {
        serde_json::to_string(&self.env).unwrap_or_else(|_| "{}".into())
    }

    fn config_hash(&self, args: &[String]) -> String {
        let text = format!("{}{}", serde_json::to_string(args).unwrap_or_default(), self.node_env());
        base32(&sha2_bytes(&text))
    }

    /// The configuration k3s starts with: config.yaml, then the `*.yaml` / `*.yml` drop-ins in
    /// lexical order, each key replacing the earlier value (`key+:` appends to a list), as k3s'
    /// configfilearg merges them. Err = what k3s prints before exiting.
    pub fn effective_config(&self) -> Result<K3sConfig, String> {
        let mut merged = self.file.clone();
        for (name, text) in &self.dropins {
            if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
                continue;
            }
            let cfg = K3sConfig::parse(text).map_err(|e| format!("failed to parse {DROPIN_DIR}/{name}: {e}"))?;
            for (key, value) in cfg.entries {
                match key.strip_suffix('+') {
                    Some(base) => {
                        let mut items = match merged.get(base) {
                            Some(ConfigValue::List(l)) => l.clone(),
                            Some(other) => vec![other.as_string()],
                            None => Vec::new(),
                        };
                        match value {
                            ConfigValue::List(l) => items.extend(l),
                            other => items.push(other.as_string()),
                        }
                        merged.set(base, ConfigValue::List(items));
                    }
                    None => merged.set(&key, value),
                }
            }
        }
        Ok(merged)
    }

    /// The systemd unit of k3s on this node.
    pub fn unit(&self) -> &'static str {
        if self.role == NodeRole::Server { "k3s" } else { "k3s-agent" }
    }

    /// The last `lines` journal lines of the k3s unit.
    pub fn journal_tail(&self, lines: usize) -> Vec<String> {
        let skip = self.journal.len().saturating_sub(lines);
        self.journal[skip..].to_vec()
    }

    /// Public snapshot.
    pub fn runtime(&self) -> NodeRuntime {
        let (state, failure) = match &self.state {
            ProcState::Up => ("up", None),
            ProcState::Starting { .. } => ("starting", None),
            ProcState::Rebooting { .. } => ("rebooting", None),
            ProcState::Failed { reason, .. } => ("failed", Some(reason.clone())),
        };
        NodeRuntime {
            name: self.name.clone(),
            role: self.role,
            ip: self.ip.clone(),
            state: state.into(),
            failure,
            config_file: self.file.to_yaml(),
            running_args: self.running.node_args(self.role),
            flannel_backend: self.net.flannel_backend.clone(),
            flannel_running: self.net.flannel_backend.is_some() && self.posting(),
            flannel_leftovers: self.flannel_leftovers,
            kube_proxy_running: self.net.kube_proxy && self.posting(),
            kube_proxy_leftovers: self.kube_proxy_leftovers,
            network_policy_running: self.net.network_policy && self.posting(),
            network_policy_leftovers: self.npc_leftovers,
            containerd_cni_conf_dir: self.containerd_conf_dir().into(),
            containerd_cni_bin_dir: self.containerd_bin_dir().into(),
            cni_conf_files: self.cni_conf_files(),
            boot_id: self.boot_id.clone(),
            k3s_starts: self.starts,
            reboots: self.reboots,
            last_start: self.last_start.clone(),
        }
    }
}

/// What an operator would find on a node over SSH (read by the relay, checks and tests through
/// [`super::node_runtime`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRuntime {
    pub name: String,
    pub role: NodeRole,
    /// InternalIP (data only: the sim never contacts it).
    pub ip: String,
    /// `up`, `starting`, `rebooting` or `failed`.
    pub state: String,
    pub failure: Option<String>,
    /// `/etc/rancher/k3s/config.yaml`.
    pub config_file: String,
    /// Args of the running k3s process (what `k3s.io/node-args` says for servers).
    pub running_args: Vec<String>,
    pub flannel_backend: Option<String>,
    pub flannel_running: bool,
    /// `flannel.1`, `cni0` and flannel routes still on the host (only a reboot clears them).
    pub flannel_leftovers: bool,
    pub kube_proxy_running: bool,
    /// `KUBE-*` iptables chains still on the host.
    pub kube_proxy_leftovers: bool,
    pub network_policy_running: bool,
    pub network_policy_leftovers: bool,
    pub containerd_cni_conf_dir: String,
    pub containerd_cni_bin_dir: String,
    pub cni_conf_files: Vec<String>,
    pub boot_id: String,
    pub k3s_starts: u32,
    pub reboots: u32,
    pub last_start: String,
}

fn sha2_bytes(text: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).to_vec()
}

/// RFC 4648 base32 with padding (what k3s uses for the config hash).
pub fn base32(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    for chunk in bytes.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = buf.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < chars {
                out.push(A[((n >> (35 - i * 5)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn hex(rng: &mut fastrand::Rng, n: usize) -> String {
    (0..n).map(|_| char::from_digit(rng.u32(0..16), 16).unwrap_or('0')).collect()
}

pub fn uuid(rng: &mut fastrand::Rng) -> String {
    format!(
        "{}-{}-4{}-{}{}-{}",
        hex(rng, 8),
        hex(rng, 4),
        hex(rng, 3),
        ["8", "9", "a", "b"][rng.usize(0..4)],
        hex(rng, 3),
        hex(rng, 12)
    )
}

fn mac(rng: &mut fastrand::Rng) -> String {
    let mut b: Vec<u8> = (0..6).map(|_| rng.u8(..)).collect();
    b[0] = (b[0] & 0xfe) | 0x02;
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// The config file a node of this scenario has at start.
fn initial_config(
    scenario: &Scenario,
    idx: usize,
    first_server_ip: &str,
    role: NodeRole,
    labels: &BTreeMap<String, String>,
) -> K3sConfig {
    let mut c = K3sConfig::default();
    let node = &scenario.nodes[idx];
    if role == NodeRole::Server {
        if scenario.join_target(&node.name).is_none() {
            c.set("cluster-init", ConfigValue::Bool(true));
        } else {
            c.set("server", ConfigValue::Scalar(format!("https://{first_server_ip}:6443")));
            c.set("token", ConfigValue::Scalar("K10homelab::server:homelab-cluster-secret".into()));
        }
        c.set("write-kubeconfig-mode", ConfigValue::Scalar("0644".into()));
        c.set("tls-san", ConfigValue::List(vec!["k3s.homelab.lan".into()]));
        c.set("disable", ConfigValue::List(vec!["traefik".into(), "servicelb".into()]));
        if scenario.base != BaseScenario::Fresh {
            c.set("flannel-backend", ConfigValue::Scalar("none".into()));
            c.set("disable-network-policy", ConfigValue::Bool(true));
        }
        if scenario.base == BaseScenario::Kpr {
            c.set("disable-kube-proxy", ConfigValue::Bool(true));
        }
    }
    if !labels.is_empty() {
        c.set("node-label", ConfigValue::List(labels.iter().map(|(k, v)| format!("{k}={v}")).collect()));
    }
    c
}

/// Builds the node runtimes of a scenario (deterministic for the rng's seed).
pub fn nodes_from_scenario(scenario: &Scenario, rng: &mut fastrand::Rng) -> BTreeMap<String, K3sNode> {
    let ip_of = |i: usize| scenario.nodes[i].ip.clone().unwrap_or_else(|| format!("192.168.20.{}", 11 + i));
    let first_ip = ip_of(0);
    let data_dir = format!("/var/lib/rancher/k3s/data/{}", o::sha_hex(K3S_VERSION));
    let mut out = BTreeMap::new();
    for (i, n) in scenario.nodes.iter().enumerate() {
        let file = initial_config(scenario, i, &first_ip, n.role, &n.labels);
        let (running, _) = file.for_role(n.role);
        let join = scenario.join_target(&n.name);
        let mut env = BTreeMap::new();
        env.insert("K3S_DATA_DIR".to_string(), data_dir.clone());
        if n.role == NodeRole::Agent {
            let target_ip = join
                .as_ref()
                .and_then(|j| scenario.nodes.iter().position(|m| &m.name == j))
                .map(ip_of)
                .unwrap_or_else(|| first_ip.clone());
            env.insert("K3S_TOKEN".into(), "********".into());
            env.insert("K3S_URL".into(), format!("https://{target_ip}:6443"));
        }
        // Agents take the network flags of the server they join (all servers agree at start).
        let server_cfg = initial_config(scenario, 0, &first_ip, NodeRole::Server, &BTreeMap::new());
        let net = server_cfg.net_flags();
        let migrated = matches!(scenario.base, BaseScenario::Migrated | BaseScenario::Kpr);
        let node = K3sNode {
            name: n.name.clone(),
            role: n.role,
            ip: ip_of(i),
            index: i,
            join,
            file,
            running,
            env,
            state: ProcState::Up,
            net,
            // cilium-installed: the k3s restart that disabled flannel left its devices behind.
            flannel_leftovers: scenario.base == BaseScenario::CiliumInstalled,
            kube_proxy_leftovers: false,
            npc_leftovers: scenario.base == BaseScenario::CiliumInstalled,
            cilium_conf_dirs: BTreeSet::new(),
            cilium_bin_dirs: BTreeSet::new(),
            boot_id: uuid(rng),
            machine_id: hex(rng, 32),
            system_uuid: uuid(rng),
            kernel: format!("6.8.0-{}-generic", [57, 59, 60, 62][rng.usize(0..4)]),
            cpus: n.cpus.unwrap_or(if n.role == NodeRole::Server { 8 } else { 4 }),
            memory_kib: u64::from(n.memory_gib.unwrap_or(if n.role == NodeRole::Server { 32 } else { 16 }))
                * 1024
                * 1024
                - 265_000,
            start_gen: 1,
            boot_gen: 1,
            starts: if migrated {
                3
            } else if scenario.base == BaseScenario::CiliumInstalled {
                2
            } else {
                1
            },
            reboots: if migrated { 1 } else { 0 },
            last_start: String::new(),
            last_post: 0.0,
            last_lease: -100.0,
            flannel_mac: mac(rng),
            etcd_suffix: hex(rng, 8),
            dropins: BTreeMap::new(),
            journal: Vec::new(),
            pid: 800 + rng.u32(0..400),
            restart_counter: 0,
        };
        out.insert(n.name.clone(), node);
    }
    out
}

/// The Node object k3s registers for this node.
pub fn node_object(k: &K3sNode, now: &str) -> Value {
    let mut labels = json!({
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": "k3s",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": k.name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "k3s",
    });
    let mut annotations = json!({
        "alpha.kubernetes.io/provided-node-ip": k.ip,
        "k3s.io/hostname": k.name,
        "k3s.io/internal-ip": k.ip,
        "node.alpha.kubernetes.io/ttl": "0",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
    });
    let mut finalizers = vec![json!("wrangler.cattle.io/node")];
    if k.role == NodeRole::Server {
        for l in
            ["node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master", "node-role.kubernetes.io/etcd"]
        {
            labels[l] = json!("true");
        }
        annotations["etcd.k3s.cattle.io/node-address"] = json!(k.ip);
        annotations["etcd.k3s.cattle.io/node-name"] = json!(format!("{}-{}", k.name, k.etcd_suffix));
        finalizers.push(json!("wrangler.cattle.io/managed-etcd-controller"));
    }
    if let Some(ConfigValue::List(ls)) = k.running.get("node-label") {
        for l in ls {
            if let Some((a, b)) = l.split_once('=') {
                labels[a] = json!(b);
            }
        }
    }
    let mem = format!("{}Ki", k.memory_kib);
    json!({
        "metadata": {"name": k.name, "labels": labels, "annotations": annotations, "finalizers": finalizers},
        "spec": {"podCIDR": k.pod_cidr(), "podCIDRs": [k.pod_cidr()], "providerID": format!("k3s://{}", k.name)},
        "status": {
            "addresses": [{"address": k.ip, "type": "InternalIP"}, {"address": k.name, "type": "Hostname"}],
            "allocatable": {"cpu": k.cpus.to_string(), "ephemeral-storage": "462779621614", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": mem, "pods": "110"},
            "capacity": {"cpu": k.cpus.to_string(), "ephemeral-storage": "475729396Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": mem, "pods": "110"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": k.boot_id,
                "containerRuntimeVersion": "containerd://2.0.5-k3s1",
                "kernelVersion": k.kernel,
                "kubeProxyVersion": K3S_VERSION,
                "kubeletVersion": K3S_VERSION,
                "machineID": k.machine_id,
                "operatingSystem": "linux",
                "osImage": "Ubuntu 24.04.2 LTS",
                "systemUUID": k.system_uuid,
            },
        },
    })
}

impl World {
    /// Restarts k3s (or finishes a reboot) on a node: applies its config file, rewrites node-args,
    /// checks critical flags against the server it joins. Err = k3s exited (systemd will retry).
    fn start_k3s(&mut self, name: &str, reboot: bool) -> Result<String, String> {
        let Some(k) = self.nodes.get(name).cloned() else { return Err(format!("node {name} not found")) };
        let unit = k.unit();
        if reboot {
            self.journal(name, "", &format!("-- Boot {} --", k.boot_id.replace('-', "")));
        }
        self.journal(name, "systemd", &format!("Starting {unit}.service - Lightweight Kubernetes..."));
        let pid = 800 + self.rng.u32(0..60_000);
        if let Some(km) = self.nodes.get_mut(name) {
            km.pid = pid;
        }
        let agent = if k.role == NodeRole::Agent { " agent" } else { "" };
        self.k3s_log(name, "info", &format!("Starting k3s{agent} {K3S_VERSION} ({K3S_COMMIT})"));
        let (cfg, ignored) = k.effective_config()?.for_role(k.role);
        // The server this node talks to at start: its join target, else any other running server.
        let target = k
            .join
            .as_ref()
            .and_then(|j| self.nodes.get(j))
            .filter(|t| t.posting())
            .or_else(|| self.nodes.values().find(|t| t.role == NodeRole::Server && t.name != name && t.posting()))
            .cloned();
        if k.role == NodeRole::Server
            && let Some(join) = &k.join
        {
            let Some(t) = target.as_ref() else {
                return Err(format!(
                    "starting kubernetes: preparing server: failed to get CA certs: Get \"https://{}:6443/cacerts\": dial tcp {}:6443: connect: connection refused",
                    self.nodes.get(join).map(|j| j.ip.clone()).unwrap_or_default(),
                    self.nodes.get(join).map(|j| j.ip.clone()).unwrap_or_default()
                ));
            };
            let mism = cfg.critical_mismatch(&t.running);
            if !mism.is_empty() {
                let detail: Vec<String> = mism
                    .iter()
                    .map(|(key, ours, theirs)| format!("{key} (this server: {ours}, {}: {theirs})", t.name))
                    .collect();
                return Err(format!(
                    "starting kubernetes: preparing server: failed to validate server configuration: critical configuration value mismatch between servers; mismatched: {}",
                    detail.join(", ")
                ));
            }
        }
        let net = match k.role {
            NodeRole::Server => cfg.net_flags(),
            NodeRole::Agent => match &target {
                Some(t) => t.running.net_flags(),
                None => {
                    return Err("failed to get CA certs: no server reachable through the agent load balancer (127.0.0.1:6444): connection refused".into());
                }
            },
        };
        let now = self.now;
        let now_str = self.now_str.clone();
        let boot_id = if reboot { uuid(&mut self.rng) } else { k.boot_id.clone() };
        let Some(km) = self.nodes.get_mut(name) else { return Err(format!("node {name} not found")) };
        let old_net = km.net.clone();
        if old_net.flannel_backend.is_some() && net.flannel_backend.is_none() {
            km.flannel_leftovers = true;
        }
        if old_net.kube_proxy && !net.kube_proxy {
            km.kube_proxy_leftovers = true;
        }
        if old_net.network_policy && !net.network_policy {
            km.npc_leftovers = true;
        }
        if reboot {
            km.flannel_leftovers = false;
            km.kube_proxy_leftovers = false;
            km.npc_leftovers = false;
            km.boot_gen += 1;
            km.reboots += 1;
            km.boot_id = boot_id.clone();
        }
        let args_changed = km.running != cfg;
        km.running = cfg;
        km.net = net.clone();
        km.state = ProcState::Starting { until: now + timing::K3S_START };
        km.start_gen += 1;
        km.starts += 1;
        km.last_start = now_str;
        let role = km.role;
        let kube_proxy = net.kube_proxy;
        let k_after = km.clone();

        // k3s rewrites node-args/hash only when its own args or env changed.
        if args_changed || reboot {
            let args = k_after.running.node_args(role);
            let hash = k_after.config_hash(&args);
            let env = k_after.node_env();
            let args_json = serde_json::to_string(&args).unwrap_or_default();
            let _ = self.store.mutate(res(ids::NODES), "", name, |n| {
                let ann = o::meta_map_mut(n, "annotations");
                ann.insert("k3s.io/node-args".into(), json!(args_json));
                ann.insert("k3s.io/node-config-hash".into(), json!(hash));
                ann.insert("k3s.io/node-env".into(), json!(env));
                Ok(())
            });
        }
        if reboot {
            let _ = self.store.mutate(res(ids::NODES), "", name, |n| {
                n["status"]["nodeInfo"]["bootID"] = json!(boot_id);
                Ok(())
            });
            self.node_event(
                name,
                "Warning",
                "Rebooted",
                &format!("Node {name} has been rebooted, boot id: {boot_id}"),
                "kubelet",
            );
        }
        self.node_event(name, "Normal", "Starting", "Starting kubelet.", "kubelet");
        if kube_proxy {
            self.node_event(name, "Normal", "Starting", "", "kube-proxy");
        }
        if net.flannel_backend.is_some() {
            self.k3s_log(name, "info", &format!("Flannel found PodCIDR assigned for node {name}"));
        }
        if kube_proxy {
            self.k3s_log(
                name,
                "info",
                &format!(
                    "Running kube-proxy --cluster-cidr=10.42.0.0/16 --hostname-override={name} --proxy-mode=iptables"
                ),
            );
        }
        self.journal(name, "systemd", &format!("Started {unit}.service - Lightweight Kubernetes."));
        if let Some(km) = self.nodes.get_mut(name) {
            km.restart_counter = 0;
        }
        let mut line = format!(
            "{name}: k3s{} started ({}); flannel {}, kube-proxy {}, network policy {}",
            if role == NodeRole::Agent { "-agent" } else { "" },
            if reboot { "after reboot" } else { "service restart" },
            net.flannel_backend.as_deref().unwrap_or("none"),
            if net.kube_proxy { "on" } else { "off" },
            if net.network_policy { "on" } else { "off" },
        );
        if !ignored.is_empty() {
            line.push_str(&format!("; ignored server-only keys on agent: {}", ignored.join(", ")));
        }
        Ok(line)
    }

    fn node_event(&mut self, node: &str, etype: &str, reason: &str, message: &str, component: &str) {
        let involved = json!({"kind": "Node", "apiVersion": "v1", "name": node, "uid": node});
        self.events.emit(&self.store, &self.now_str, &involved, "default", etype, reason, message, component, node);
    }

    /// Applies a node operation; returns the operator-facing line.
    pub(crate) fn apply_node_op(&mut self, name: &str, op: &NodeOp) -> Result<String, String> {
        let Some(k) = self.nodes.get(name) else { return Err(format!("node {name:?} not found")) };
        let unit = if k.role == NodeRole::Server { "k3s" } else { "k3s-agent" };
        match op {
            NodeOp::WriteK3sConfig { config } => {
                let cfg = K3sConfig::parse(config)
                    .map_err(|e| format!("{name}: /etc/rancher/k3s/config.yaml not written: {e}"))?;
                let keys: Vec<String> = cfg.entries.iter().map(|(k, _)| k.clone()).collect();
                let role = k.role;
                if let Some(k) = self.nodes.get_mut(name) {
                    k.file = cfg.clone();
                }
                let (_, ignored) = cfg.for_role(role);
                let mut line = format!(
                    "{name}: wrote /etc/rancher/k3s/config.yaml ({} keys: {}); takes effect at the next `systemctl restart {unit}`",
                    keys.len(),
                    keys.join(", ")
                );
                if !ignored.is_empty() {
                    line.push_str(&format!("; k3s agent ignores server flags: {}", ignored.join(", ")));
                }
                Ok(line)
            }
            NodeOp::ReadK3sConfig => Ok(k.file.to_yaml()),
            NodeOp::WriteDropin { name: file, content } => {
                if !valid_dropin_name(file) {
                    return Err(format!("{name}: {DROPIN_DIR}/{file}: not a file name"));
                }
                if content.len() > 1024 * 1024 {
                    return Err(format!("{name}: {DROPIN_DIR}/{file}: No space left on device"));
                }
                let bytes = content.len();
                if let Some(k) = self.nodes.get_mut(name) {
                    k.dropins.insert(file.clone(), content.clone());
                }
                Ok(format!(
                    "{name}: wrote {DROPIN_DIR}/{file} ({bytes} bytes); takes effect at the next `systemctl restart {unit}`"
                ))
            }
            NodeOp::ReadDropin { name: file } => {
                k.dropins.get(file).cloned().ok_or_else(|| format!("{DROPIN_DIR}/{file}: No such file or directory"))
            }
            NodeOp::RemoveDropin { name: file } => {
                let removed = self.nodes.get_mut(name).and_then(|k| k.dropins.remove(file));
                match removed {
                    Some(_) => Ok(format!(
                        "{name}: removed {DROPIN_DIR}/{file}; takes effect at the next `systemctl restart {unit}`"
                    )),
                    None => Err(format!("{DROPIN_DIR}/{file}: No such file or directory")),
                }
            }
            NodeOp::ListDropins => Ok(k.dropins.keys().map(|f| format!("{f}\n")).collect()),
            NodeOp::Journal { lines } => Ok(k.journal_tail(*lines).into_iter().map(|l| format!("{l}\n")).collect()),
            NodeOp::Status => {
                let text = self.unit_status(name);
                if k.posting() { Ok(text) } else { Err(text) }
            }
            NodeOp::Inspect => Ok(self.inspect(name)),
            NodeOp::RestartK3s | NodeOp::Reboot => {
                let reboot = matches!(op, NodeOp::Reboot);
                let only_server = k.role == NodeRole::Server
                    && !self.nodes.values().any(|m| m.role == NodeRole::Server && m.name != name && m.posting());
                self.journal_stop(name);
                if reboot {
                    let until = self.now + timing::REBOOT_DOWN;
                    if let Some(k) = self.nodes.get_mut(name) {
                        k.state = ProcState::Rebooting { until };
                    }
                    if only_server && self.scenario.api_outage_on_server_restart {
                        self.outbox.push(crate::sim::Fault::ApiDown {
                            seconds: (timing::REBOOT_DOWN + timing::K3S_START).ceil() as u64,
                        });
                    }
                    return Ok(format!(
                        "{name}: rebooting; back in about {:.0} simulated seconds (reboot clears flannel/kube-proxy leftovers, pods get new sandboxes)",
                        timing::REBOOT_DOWN + timing::K3S_START
                    ));
                }
                match self.start_k3s(name, false) {
                    Ok(line) => {
                        if only_server && self.scenario.api_outage_on_server_restart {
                            self.outbox.push(crate::sim::Fault::ApiDown { seconds: timing::K3S_START.ceil() as u64 });
                        }
                        Ok(line)
                    }
                    Err(reason) => {
                        self.k3s_failed(name, &reason);
                        if only_server && self.scenario.api_outage_on_server_restart {
                            self.outbox
                                .push(crate::sim::Fault::ApiDown { seconds: timing::SYSTEMD_RESTART.ceil() as u64 });
                        }
                        Err(format!(
                            "{name}: Job for {unit}.service failed because the control process exited with error code. journalctl -u {unit}: level=fatal msg=\"{reason}\""
                        ))
                    }
                }
            }
        }
    }

    /// A journal line of the node's k3s unit, as `journalctl -u` prints it (short format; empty
    /// `ident` = a line of journalctl's own, such as a boot marker).
    pub(crate) fn journal(&mut self, name: &str, ident: &str, text: &str) {
        let stamp = self
            .now_str
            .parse::<jiff::Timestamp>()
            .map(|t| t.strftime("%b %d %H:%M:%S").to_string())
            .unwrap_or_else(|_| self.now_str.clone());
        let Some(k) = self.nodes.get_mut(name) else { return };
        let line = match ident {
            "" => text.to_string(),
            "systemd" => format!("{stamp} {name} systemd[1]: {text}"),
            other => format!("{stamp} {name} {other}[{}]: {text}", k.pid),
        };
        k.journal.push(line);
        if k.journal.len() > JOURNAL_MAX {
            let drop = k.journal.len() - JOURNAL_MAX;
            k.journal.drain(..drop);
        }
    }

    /// A k3s log line (logrus text format, as k3s writes to journald).
    fn k3s_log(&mut self, name: &str, level: &str, msg: &str) {
        let text = format!("time=\"{}\" level={level} msg=\"{}\"", self.now_str, msg.replace('"', "\\\""));
        self.journal(name, "k3s", &text);
    }

    /// systemd stops the k3s unit (restart or shutdown).
    fn journal_stop(&mut self, name: &str) {
        let Some(unit) = self.nodes.get(name).map(K3sNode::unit) else { return };
        if self.nodes.get(name).is_some_and(|k| k.posting()) {
            self.journal(name, "systemd", &format!("Stopping {unit}.service - Lightweight Kubernetes..."));
            self.journal(name, "systemd", &format!("{unit}.service: Deactivated successfully."));
            self.journal(name, "systemd", &format!("Stopped {unit}.service - Lightweight Kubernetes."));
        }
    }

    fn k3s_failed(&mut self, name: &str, reason: &str) {
        let unit = self.nodes.get(name).map(K3sNode::unit).unwrap_or("k3s");
        self.k3s_log(name, "fatal", reason);
        self.journal(name, "systemd", &format!("{unit}.service: Main process exited, code=exited, status=1/FAILURE"));
        self.journal(name, "systemd", &format!("{unit}.service: Failed with result 'exit-code'."));
        self.journal(name, "systemd", &format!("Failed to start {unit}.service - Lightweight Kubernetes."));
        let retry_at = self.now + timing::SYSTEMD_RESTART;
        let first = !matches!(self.nodes.get(name).map(|k| &k.state), Some(ProcState::Failed { .. }));
        if let Some(k) = self.nodes.get_mut(name) {
            k.state = ProcState::Failed { reason: reason.to_string(), retry_at };
        }
        if first {
            // Real k3s only logs this to journald; the sim also records it as a Node Event.
            self.node_event(name, "Warning", "K3sStartFailed", reason, "k3s");
        }
    }

    /// `systemctl status` of the node's k3s unit.
    fn unit_status(&self, name: &str) -> String {
        let Some(k) = self.nodes.get(name) else { return String::new() };
        let unit = k.unit();
        let (active, main) = match &k.state {
            ProcState::Up | ProcState::Starting { .. } => (
                format!("active (running) since {}", k.last_start),
                format!("Main PID: {} (k3s-{})", k.pid, if k.role == NodeRole::Server { "server" } else { "agent" }),
            ),
            ProcState::Failed { .. } => (
                "activating (auto-restart) (Result: exit-code)".to_string(),
                format!(
                    "Process: {} ExecStart=/usr/local/bin/k3s {} (code=exited, status=1/FAILURE)",
                    k.pid,
                    if k.role == NodeRole::Server { "server" } else { "agent" }
                ),
            ),
            ProcState::Rebooting { .. } => ("inactive (dead)".to_string(), String::new()),
        };
        let mut out = format!(
            "\u{25cf} {unit}.service - Lightweight Kubernetes\n     Loaded: loaded (/etc/systemd/system/{unit}.service; enabled; preset: enabled)\n     Active: {active}\n       Docs: https://k3s.io\n"
        );
        if !main.is_empty() {
            out.push_str(&format!("   {main}\n"));
        }
        out.push('\n');
        for l in k.journal_tail(10) {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }

    /// Journal lines of the k3s start every node had before the sim started.
    pub(crate) fn journal_boot(&mut self) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in &names {
            let Some(k) = self.nodes.get(name).cloned() else { continue };
            let unit = k.unit();
            self.journal(name, "", &format!("-- Boot {} --", k.boot_id.replace('-', "")));
            self.journal(name, "systemd", &format!("Starting {unit}.service - Lightweight Kubernetes..."));
            let agent = if k.role == NodeRole::Agent { " agent" } else { "" };
            self.k3s_log(name, "info", &format!("Starting k3s{agent} {K3S_VERSION} ({K3S_COMMIT})"));
            if k.net.flannel_backend.is_some() {
                self.k3s_log(name, "info", &format!("Flannel found PodCIDR assigned for node {name}"));
            }
            self.journal(name, "systemd", &format!("Started {unit}.service - Lightweight Kubernetes."));
        }
    }

    fn inspect(&self, name: &str) -> String {
        let Some(k) = self.nodes.get(name) else { return String::new() };
        let r = k.runtime();
        let mut out = String::new();
        out.push_str(&format!("node {} ({:?}), k3s {}\n", r.name, r.role, r.state));
        if let Some(f) = &r.failure {
            out.push_str(&format!("  last failure: {f}\n"));
        }
        out.push_str(&format!("  running args: {}\n", serde_json::to_string(&r.running_args).unwrap_or_default()));
        out.push_str(&format!(
            "  flannel: {} (backend {}), leftovers flannel.1/cni0: {}\n",
            if r.flannel_running { "running" } else { "off" },
            r.flannel_backend.as_deref().unwrap_or("none"),
            if r.flannel_leftovers { "present" } else { "absent" }
        ));
        out.push_str(&format!(
            "  kube-proxy: {}, KUBE-* chains: {}\n",
            if r.kube_proxy_running { "running" } else { "off" },
            if r.kube_proxy_running || r.kube_proxy_leftovers { "present" } else { "absent" }
        ));
        out.push_str(&format!(
            "  network policy controller: {}, KUBE-ROUTER-* chains: {}\n",
            if r.network_policy_running { "running" } else { "off" },
            if r.network_policy_running || r.network_policy_leftovers { "present" } else { "absent" }
        ));
        out.push_str(&format!(
            "  containerd cni conf_dir {} bin_dir {}\n",
            r.containerd_cni_conf_dir, r.containerd_cni_bin_dir
        ));
        out.push_str(&format!(
            "  ls {}: {}\n",
            r.containerd_cni_conf_dir,
            if r.cni_conf_files.is_empty() { "(empty)".to_string() } else { r.cni_conf_files.join(" ") }
        ));
        out.push_str(&format!("  boot id {}, k3s starts {}, reboots {}\n", r.boot_id, r.k3s_starts, r.reboots));
        out
    }

    /// Advances k3s processes and writes every Node's status, taints and Lease.
    pub(crate) fn k3s_tick(&mut self) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in &names {
            let state = self.nodes.get(name).map(|k| k.state.clone());
            match state {
                Some(ProcState::Starting { until }) if self.now >= until => {
                    if let Some(k) = self.nodes.get_mut(name) {
                        k.state = ProcState::Up;
                    }
                }
                Some(ProcState::Rebooting { until }) if self.now >= until => {
                    if let Err(reason) = self.start_k3s(name, true) {
                        // The machine is up again, k3s is not: new boot either way.
                        let rb = uuid(&mut self.rng);
                        if let Some(k) = self.nodes.get_mut(name) {
                            k.boot_gen += 1;
                            k.reboots += 1;
                            k.boot_id = rb;
                            k.flannel_leftovers = false;
                            k.kube_proxy_leftovers = false;
                            k.npc_leftovers = false;
                        }
                        self.k3s_failed(name, &reason);
                    }
                }
                Some(ProcState::Failed { retry_at, .. }) if self.now >= retry_at => {
                    let (unit, counter) = match self.nodes.get_mut(name) {
                        Some(k) => {
                            k.restart_counter += 1;
                            (k.unit(), k.restart_counter)
                        }
                        None => ("k3s", 0),
                    };
                    self.journal(
                        name,
                        "systemd",
                        &format!("{unit}.service: Scheduled restart job, restart counter is at {counter}."),
                    );
                    if let Err(reason) = self.start_k3s(name, false) {
                        self.k3s_failed(name, &reason);
                        let only_server = self.nodes.get(name).is_some_and(|k| k.role == NodeRole::Server)
                            && !self
                                .nodes
                                .values()
                                .any(|m| m.role == NodeRole::Server && m.name != *name && m.posting());
                        if only_server && self.scenario.api_outage_on_server_restart {
                            self.outbox
                                .push(crate::sim::Fault::ApiDown { seconds: timing::SYSTEMD_RESTART.ceil() as u64 });
                        }
                    }
                }
                _ => {}
            }
        }
        for name in &names {
            self.write_node(name);
        }
    }

    fn write_node(&mut self, name: &str) {
        let Some(k) = self.nodes.get(name).cloned() else { return };
        let Ok(live) = self.store.get(res(ids::NODES), "", name) else { return };
        let now = self.now;
        let now_str = self.now_str.clone();
        let faulted = self.faults.not_ready_nodes.contains(name);
        let posting = k.posting() && !faulted;
        let was_ready = o::node_ready(&live);
        let old_ready = o::condition_status(&live, "/status/conditions", "Ready").to_string();

        let mut conds: Vec<Value> =
            live.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut heartbeat = false;
        if posting {
            let (status, reason, message) = if matches!(k.state, ProcState::Starting { .. }) {
                ("False", "KubeletNotReady", NOT_READY_STARTING)
            } else if !k.network_ready() {
                ("False", "KubeletNotReady", NOT_READY_NETWORK)
            } else {
                ("True", "KubeletReady", "kubelet is posting ready status")
            };
            o::set_condition(
                &mut conds,
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                &now_str,
            );
            o::set_condition(
                &mut conds,
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                &now_str,
            );
            o::set_condition(
                &mut conds,
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                &now_str,
            );
            o::set_condition(&mut conds, "Ready", status, reason, message, &now_str);
            if k.net.flannel_backend.is_some()
                && o::condition(&live, "/status/conditions", "NetworkUnavailable")
                    .is_none_or(|c| o::s(c, "/reason") != "CiliumIsUp")
            {
                o::set_condition(
                    &mut conds,
                    "NetworkUnavailable",
                    "False",
                    "FlannelIsUp",
                    "Flannel is running on this node",
                    &now_str,
                );
            }
            let changed = conds.iter().any(|c| {
                o::condition(&live, "/status/conditions", o::s(c, "/type")).is_none_or(|l| {
                    o::s(l, "/status") != o::s(c, "/status") || o::s(l, "/reason") != o::s(c, "/reason")
                })
            });
            if changed || now - k.last_post >= timing::NODE_STATUS_PERIOD {
                heartbeat = true;
            }
        } else if faulted || now - k.last_post >= timing::NODE_MONITOR_GRACE {
            for t in ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"] {
                o::set_condition(
                    &mut conds,
                    t,
                    "Unknown",
                    "NodeStatusUnknown",
                    "Kubelet stopped posting node status.",
                    &now_str,
                );
            }
        }
        if heartbeat {
            for c in conds.iter_mut() {
                if o::s(c, "/type") != "NetworkUnavailable" {
                    c["lastHeartbeatTime"] = json!(now_str);
                }
            }
            if let Some(km) = self.nodes.get_mut(name) {
                km.last_post = now;
            }
        }
        for c in conds.iter_mut() {
            if o::s(c, "/type") == "NetworkUnavailable" && c.get("lastHeartbeatTime").is_none() {
                c["lastHeartbeatTime"] = c.get("lastTransitionTime").cloned().unwrap_or(json!(now_str));
            }
        }
        // Stable order as the kubelet writes them.
        let order = ["NetworkUnavailable", "MemoryPressure", "DiskPressure", "PIDPressure", "Ready"];
        conds.sort_by_key(|c| order.iter().position(|t| *t == o::s(c, "/type")).unwrap_or(99));

        let ready_status = conds
            .iter()
            .find(|c| o::s(c, "/type") == "Ready")
            .map(|c| o::s(c, "/status").to_string())
            .unwrap_or_default();
        let unschedulable = o::bool_at(&live, "/spec/unschedulable");
        let mut taints: Vec<Value> =
            live.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut want: Vec<(&str, &str)> = Vec::new();
        match ready_status.as_str() {
            "False" => {
                want.push(("node.kubernetes.io/not-ready", "NoSchedule"));
                want.push(("node.kubernetes.io/not-ready", "NoExecute"));
            }
            "Unknown" => {
                want.push(("node.kubernetes.io/unreachable", "NoSchedule"));
                want.push(("node.kubernetes.io/unreachable", "NoExecute"));
            }
            _ => {}
        }
        if unschedulable {
            want.push(("node.kubernetes.io/unschedulable", "NoSchedule"));
        }
        let managed =
            ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable", "node.kubernetes.io/unschedulable"];
        taints.retain(|t| !managed.contains(&o::s(t, "/key")) || want.contains(&(o::s(t, "/key"), o::s(t, "/effect"))));
        for (key, effect) in &want {
            if !taints.iter().any(|t| o::s(t, "/key") == *key && o::s(t, "/effect") == *effect) {
                let mut t = json!({"key": key, "effect": effect});
                if *effect == "NoExecute" || *key == "node.kubernetes.io/unschedulable" {
                    t["timeAdded"] = json!(now_str);
                }
                taints.push(t);
            }
        }
        let flannel = k.net.flannel_backend.clone().filter(|_| posting);
        let mac = k.flannel_mac.clone();
        let ip = k.ip.clone();
        let _ = self.store.mutate(res(ids::NODES), "", name, |n| {
            n["status"]["conditions"] = Value::Array(conds);
            let spec = o::obj_mut(n, "spec");
            if taints.is_empty() {
                spec.remove("taints");
            } else {
                spec.insert("taints".into(), Value::Array(taints));
            }
            if let Some(backend) = &flannel {
                // Written while flannel runs, never removed afterwards (stale after the cutover).
                let a = o::meta_map_mut(n, "annotations");
                a.insert("flannel.alpha.coreos.com/backend-type".into(), json!(backend));
                let data =
                    if backend == "vxlan" { format!("{{\"VNI\":1,\"VtepMAC\":\"{mac}\"}}") } else { "null".into() };
                a.insert("flannel.alpha.coreos.com/backend-data".into(), json!(data));
                a.insert("flannel.alpha.coreos.com/kube-subnet-manager".into(), json!("true"));
                a.insert("flannel.alpha.coreos.com/public-ip".into(), json!(ip));
            }
            Ok(())
        });
        if ready_status == "Unknown" {
            self.mark_pods_not_ready(name);
        }
        let now_ready = ready_status == "True";
        if was_ready != now_ready && !old_ready.is_empty() {
            if now_ready {
                self.node_event(
                    name,
                    "Normal",
                    "NodeReady",
                    &format!("Node {name} status is now: NodeReady"),
                    "kubelet",
                );
            } else if ready_status == "Unknown" {
                self.node_event(name, "Normal", "NodeNotReady", "Node is not ready", "node-controller");
            } else {
                self.node_event(
                    name,
                    "Normal",
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                    "kubelet",
                );
            }
        }
        if posting && now - k.last_lease >= timing::LEASE_RENEW {
            self.renew_lease(name, &live);
            if let Some(km) = self.nodes.get_mut(name) {
                km.last_lease = now;
            }
        }
    }

    /// The node lifecycle controller marks the pods of an unreachable node not Ready.
    fn mark_pods_not_ready(&mut self, node: &str) {
        let (pods, _) = self.store.list(res(ids::PODS), None);
        let now = self.now_str.clone();
        for p in pods.iter().filter(|p| {
            o::s(p, "/spec/nodeName") == node && o::condition_status(p, "/status/conditions", "Ready") == "True"
        }) {
            let _ = self.store.mutate(res(ids::PODS), o::namespace(p), o::name(p), |x| {
                let mut conds = x.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
                o::set_condition(&mut conds, "Ready", "False", "", "", &now);
                x["status"]["conditions"] = Value::Array(conds);
                Ok(())
            });
        }
    }

    fn renew_lease(&mut self, name: &str, node: &Value) {
        let micro = format!("{}.{:06}Z", self.now_str.trim_end_matches('Z'), self.rng.u32(0..1_000_000));
        let r = res(ids::LEASES);
        let updated = self.store.mutate(r, "kube-node-lease", name, |l| {
            l["spec"]["renewTime"] = json!(micro);
            Ok(())
        });
        if updated.is_err() {
            let _ = self.store.create(
                r,
                "kube-node-lease",
                json!({
                    "metadata": {"name": name, "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": o::uid(node)}]},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro},
                }),
            );
        }
    }

    /// Removes Node finalizers of deleted nodes (k3s' node controller does) and forgets them.
    pub(crate) fn k3s_node_deletions(&mut self) {
        let (nodes, _) = self.store.list(res(ids::NODES), None);
        for n in nodes.iter().filter(|n| o::is_terminating(n)) {
            let name = o::name(n).to_string();
            let _ = self.store.mutate(res(ids::NODES), "", &name, |n| {
                if let Some(m) = n.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("finalizers");
                }
                Ok(())
            });
            self.nodes.remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_args_format() {
        let c = K3sConfig::parse(
            "cluster-init: true\nflannel-backend: none\ndisable-network-policy: true\ntoken: secret\ndisable:\n  - traefik\n  - servicelb\n",
        )
        .unwrap();
        assert_eq!(
            c.node_args(NodeRole::Server),
            [
                "server",
                "--cluster-init",
                "true",
                "--flannel-backend",
                "none",
                "--disable-network-policy",
                "true",
                "--token",
                "********",
                "--disable",
                "traefik",
                "--disable",
                "servicelb"
            ]
        );
        let (agent, ignored) = c.for_role(NodeRole::Agent);
        assert_eq!(agent.node_args(NodeRole::Agent), ["agent", "--token", "********"]);
        assert!(ignored.contains(&"flannel-backend".to_string()));
    }

    #[test]
    fn critical_flags() {
        let a = K3sConfig::parse("flannel-backend: none\ndisable-network-policy: true").unwrap();
        let b = K3sConfig::parse("cluster-init: true").unwrap();
        let m = a.critical_mismatch(&b);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, "flannel-backend");
        // disable-kube-proxy is not critical (k3s PR #4781).
        let c = K3sConfig::parse("disable-kube-proxy: true").unwrap();
        assert!(c.critical_mismatch(&b).is_empty());
        assert!(!c.net_flags().kube_proxy);
        assert_eq!(b.net_flags().flannel_backend.as_deref(), Some("vxlan"));
        assert_eq!(a.net_flags().flannel_backend, None);
    }

    #[test]
    fn config_roundtrip_and_errors() {
        let text = "write-kubeconfig-mode: \"0644\"\ntls-san:\n  - k3s.homelab.lan\nflannel-backend: none\n";
        let c = K3sConfig::parse(text).unwrap();
        assert_eq!(K3sConfig::parse(&c.to_yaml()).unwrap(), c);
        assert!(K3sConfig::parse("a: {b: 1}").is_err());
        assert!(K3sConfig::parse("- x").is_err());
        assert!(K3sConfig::parse("just text").is_err());
        assert!(K3sConfig::parse("a: [\n").expect_err("malformed").starts_with("invalid YAML: "));
        // File order (not sorted), YAML 1.2 scalars as the operator wrote them.
        let c = K3sConfig::parse("z-flag: yes\nwrite-kubeconfig-mode: 0644\na-flag: 1\n").unwrap();
        let keys: Vec<&str> = c.entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z-flag", "write-kubeconfig-mode", "a-flag"]);
        assert_eq!(c.str_or("write-kubeconfig-mode", ""), "0644");
        assert_eq!(c.str_or("z-flag", ""), "yes");
        assert_eq!(K3sConfig::parse("").unwrap(), K3sConfig::default());
    }

    #[test]
    fn dropins_merge_in_lexical_order_after_config_yaml() {
        let mut rng = fastrand::Rng::with_seed(1);
        let scenario = Scenario::load("fresh").expect("built-in");
        let mut nodes = nodes_from_scenario(&scenario, &mut rng);
        let k = nodes.get_mut("homelab-cp1").expect("cp1");
        k.dropins
            .insert("90-cutover-stage1.yaml".into(), "flannel-backend: none\ndisable-network-policy: true\n".into());
        k.dropins.insert("50-x.yaml".into(), "flannel-backend: host-gw\ndisable+:\n  - metrics-server\n".into());
        k.dropins.insert("README".into(), "not: yaml: at all: [".into());
        let c = k.effective_config().expect("merges");
        assert_eq!(c.str_or("flannel-backend", ""), "none", "the later file wins");
        assert!(c.flag("disable-network-policy"));
        assert_eq!(
            c.get("disable"),
            Some(&ConfigValue::List(vec!["traefik".into(), "servicelb".into(), "metrics-server".into()]))
        );
        let args = c.node_args(NodeRole::Server);
        assert!(args.windows(2).any(|w| w[0] == "--flannel-backend" && w[1] == "none"), "{args:?}");
        k.dropins.insert("95-broken.yaml".into(), "a: [\n".into());
        let e = k.effective_config().expect_err("k3s exits");
        assert!(e.starts_with("failed to parse /etc/rancher/k3s/config.yaml.d/95-broken.yaml"), "{e}");
        assert!(valid_dropin_name("90-cutover-stage1.yaml") && !valid_dropin_name("../x") && !valid_dropin_name(".x"));
    }

    #[test]
    fn base32_like_k3s() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI======");
        assert_eq!(base32(&[0u8; 32]).len(), 56);
    }
}
