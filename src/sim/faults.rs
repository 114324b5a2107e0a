//! Faults injected into the simulated cluster on demand (library API, scenario files, the
//! `/simulator` HTTP hook). Each component reads the part that concerns it from `ActiveFaults`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A fault to inject. Durations are in (simulated) seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// The API server refuses connections (503 to every request) for N seconds.
    ApiDown { seconds: u64 },
    /// Every open watch stream is cut now (clients must re-watch).
    CutWatches,
    /// History is compacted: every watch resuming from an old resourceVersion gets 410 Gone.
    ExpireResourceVersions,
    /// Every API response is delayed.
    SlowResponses { millis: u64 },
    /// This share of API requests (0–100) fails with 500.
    ErrorRate { percent: u8 },
    /// The next `count` list and watch requests of `resource` (`pods`, `ciliumnodes.cilium.io`,
    /// or the store id `cilium.io/ciliumnodes`) get 429 `storage is (re)initializing` with
    /// `Retry-After: 1`, as kube-apiserver answers while its watch cache for a new CRD fills.
    TooManyRequests { resource: String, count: u32 },
    /// hubble-relay refuses connections and ends open streams for N seconds.
    RelayDown { seconds: u64 },
    /// The relay reports this node as unavailable (no flows from it).
    RelayNodeUnavailable { node: String },
    /// The node's kubelet stops reporting: Ready becomes Unknown/False.
    NodeNotReady { node: String },
    /// The named PDB allows no disruptions (evictions of its pods get 429).
    PdbBlocking { namespace: String, name: String },
    /// The named pod never finishes terminating.
    StuckPod { namespace: String, name: String },
    /// Traffic between pods on these two nodes is dropped (shows as drops in Hubble).
    BrokenPath { a: String, b: String },
    /// CoreDNS stops answering (its upstream or plugin chain is broken): queries reach it, no
    /// answer comes back. No drops: the packets are delivered.
    DnsBroken,
    /// MetalLB withdraws the LoadBalancer IP of this Service (`status.loadBalancer.ingress`
    /// emptied, not assigned again while the fault lasts). Default: the HAProxy ingress.
    LoadBalancerIpLost {
        #[serde(default = "haproxy_namespace")]
        namespace: String,
        #[serde(default = "haproxy_namespace")]
        name: String,
    },
    /// Longhorn's CSI plugin pod on this node is not Ready (its containers keep failing their
    /// probes).
    LonghornCsiNotReady { node: String },
    /// The node's SSH server refuses connections (its listener is closed, open sessions end).
    SshUnreachable { node: String },
    /// The node's SSH server presents a different host key (a reinstalled machine, or a
    /// man-in-the-middle): known_hosts no longer matches. Open sessions end.
    SshHostKeyChanged { node: String },
    /// sudo on the node wants a password (no NOPASSWD rule for the SSH user).
    SudoPassword { node: String },
    /// Commands on the node that start with `command` (the words after `sudo`, e.g.
    /// `systemctl restart`) exit 1 with that command's own failure message.
    CommandFails { node: String, command: String },
    /// Removes every active fault.
    Clear,
}

/// The HAProxy ingress's namespace and Service name in the homelab.
fn haproxy_namespace() -> String {
    "haproxy-ingress".into()
}

/// Faults in force right now. Components subscribe through a `tokio::sync::watch` channel.
#[derive(Debug, Clone, Default)]
pub struct ActiveFaults {
    pub api_down_until: Option<Instant>,
    /// Bumped by `CutWatches`: watch streams end when they see it change.
    pub watch_cut_generation: u64,
    pub slow: Duration,
    pub error_percent: u8,
    /// List/watch requests still to answer with 429, by resource as named in the fault.
    pub too_many_requests: BTreeMap<String, u32>,
    pub relay_down_until: Option<Instant>,
    pub relay_unavailable_nodes: BTreeSet<String>,
    pub not_ready_nodes: BTreeSet<String>,
    pub blocking_pdbs: BTreeSet<(String, String)>,
    pub stuck_pods: BTreeSet<(String, String)>,
    /// Node pairs, stored with the smaller name first.
    pub broken_paths: BTreeSet<(String, String)>,
    pub dns_broken: bool,
    /// LoadBalancer Services (namespace, name) whose MetalLB IP is withdrawn.
    pub lb_ip_lost: BTreeSet<(String, String)>,
    /// Nodes whose Longhorn CSI plugin pod is not Ready.
    pub longhorn_csi_not_ready: BTreeSet<String>,
    pub ssh_unreachable: BTreeSet<String>,
    pub ssh_host_key_changed: BTreeSet<String>,
    pub sudo_password: BTreeSet<String>,
    /// (node, command prefix) pairs.
    pub failing_commands: BTreeSet<(String, String)>,
}

impl ActiveFaults {
    pub fn api_down(&self) -> bool {
        self.api_down_until.is_some_and(|t| Instant::now() < t)
    }

    pub fn relay_down(&self) -> bool {
        self.relay_down_until.is_some_and(|t| Instant::now() < t)
    }

    /// Takes one 429 owed to a list/watch of the resource known by these names, if any.
    pub fn take_too_many_requests(&mut self, names: &[&str]) -> bool {
        let Some(left) = self.too_many_requests.iter_mut().find(|(k, n)| **n > 0 && names.contains(&k.as_str())) else {
            return false;
        };
        *left.1 -= 1;
        true
    }

    pub fn path_broken(&self, a: &str, b: &str) -> bool {
        let key = if a <= b { (a.to_string(), b.to_string()) } else { (b.to_string(), a.to_string()) };
        self.broken_paths.contains(&key)
    }

    /// Applies a fault. `speed` scales simulated seconds to wall time.
    pub fn apply(&mut self, fault: &Fault, speed: f64) {
        let wall = |s: u64| Duration::from_secs_f64(s as f64 / speed.max(0.001));
        match fault {
            Fault::ApiDown { seconds } => self.api_down_until = Some(Instant::now() + wall(*seconds)),
            Fault::CutWatches => self.watch_cut_generation += 1,
            Fault::ExpireResourceVersions => {}
            Fault::SlowResponses { millis } => self.slow = Duration::from_millis(*millis),
            Fault::ErrorRate { percent } => self.error_percent = (*percent).min(100),
            Fault::TooManyRequests { resource, count } => {
                let left = self.too_many_requests.entry(resource.clone()).or_default();
                *left = left.saturating_add(*count);
            }
            Fault::RelayDown { seconds } => self.relay_down_until = Some(Instant::now() + wall(*seconds)),
            Fault::RelayNodeUnavailable { node } => {
                self.relay_unavailable_nodes.insert(node.clone());
            }
            Fault::NodeNotReady { node } => {
                self.not_ready_nodes.insert(node.clone());
            }
            Fault::PdbBlocking { namespace, name } => {
                self.blocking_pdbs.insert((namespace.clone(), name.clone()));
            }
            Fault::StuckPod { namespace, name } => {
                self.stuck_pods.insert((namespace.clone(), name.clone()));
            }
            Fault::BrokenPath { a, b } => {
                let key = if a <= b { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) };
                self.broken_paths.insert(key);
            }
            Fault::DnsBroken => self.dns_broken = true,
            Fault::LoadBalancerIpLost { namespace, name } => {
                self.lb_ip_lost.insert((namespace.clone(), name.clone()));
            }
            Fault::LonghornCsiNotReady { node } => {
                self.longhorn_csi_not_ready.insert(node.clone());
            }
            Fault::SshUnreachable { node } => {
                self.ssh_unreachable.insert(node.clone());
            }
            Fault::SshHostKeyChanged { node } => {
                self.ssh_host_key_changed.insert(node.clone());
            }
            Fault::SudoPassword { node } => {
                self.sudo_password.insert(node.clone());
            }
            Fault::CommandFails { node, command } => {
                self.failing_commands.insert((node.clone(), command.clone()));
            }
            Fault::Clear => {
                let generation = self.watch_cut_generation;
                *self = ActiveFaults { watch_cut_generation: generation, ..Default::default() };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_faults_parse_with_defaults_and_clear() {
        let f: Fault = serde_json::from_str(r#"{"fault":"load-balancer-ip-lost"}"#).unwrap();
        assert_eq!(
            f,
            Fault::LoadBalancerIpLost { namespace: "haproxy-ingress".into(), name: "haproxy-ingress".into() }
        );
        let g: Fault = serde_json::from_str(r#"{"fault":"longhorn-csi-not-ready","node":"w1"}"#).unwrap();
        let mut a = ActiveFaults::default();
        a.apply(&f, 1.0);
        a.apply(&g, 1.0);
        assert!(a.lb_ip_lost.contains(&("haproxy-ingress".into(), "haproxy-ingress".into())));
        assert!(a.longhorn_csi_not_ready.contains("w1"));
        a.apply(&Fault::Clear, 1.0);
        assert!(a.lb_ip_lost.is_empty() && a.longhorn_csi_not_ready.is_empty());
    }
}
