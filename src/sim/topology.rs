//! What the simulated hubble-relay needs to know about the cluster to make up realistic traffic:
//! nodes (and whether Cilium runs on them), pods with IPs, labels and security identities,
//! Services. Published by the world (`sim::world`) from the store whenever it changes, read by
//! the relay (`sim::relay`). Plain data so that relay tests can build one by hand.

/// A node as the relay sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopoNode {
    pub name: String,
    pub internal_ip: String,
    /// Kubernetes Ready condition.
    pub ready: bool,
    /// A cilium agent pod runs on this node and is Ready: only such nodes produce flows.
    pub cilium_ready: bool,
    pub pod_cidr: String,
}

/// A running pod with an IP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopoPod {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub ip: String,
    pub host_network: bool,
    /// `k=v` labels as Kubernetes has them (the relay prefixes `k8s:`).
    pub labels: Vec<String>,
    /// Cilium security identity (>= 256 for workloads), stable per label set.
    pub identity: u32,
    /// Cilium endpoint id on its node.
    pub endpoint_id: u32,
    /// Owner workload (kind, name), e.g. ("Deployment", "coredns").
    pub workload: Option<(String, String)>,
}

/// A Service with a ClusterIP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopoService {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: String,
    /// (port, protocol) pairs, protocol upper-case (`TCP`, `UDP`).
    pub ports: Vec<(u16, String)>,
    /// `k=v` selector; pods matching all of them back the Service.
    pub selector: Vec<String>,
}

/// Snapshot of the cluster for traffic generation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    pub nodes: Vec<TopoNode>,
    pub pods: Vec<TopoPod>,
    pub services: Vec<TopoService>,
    /// Helm `cluster.name` of the Cilium install; when not `default`, Hubble prefixes node names
    /// with `<cluster>/`.
    pub cluster_name: String,
    /// Cilium version string reported by the relay (`ServerStatus.version`).
    pub cilium_version: String,
    /// How the agents carry pod traffic between nodes (`routing-mode` in `cilium-config`): it
    /// decides the trace observation points of cross-node flows.
    pub routing: RoutingMode,
}

/// Cilium's `routing-mode` (with `tunnel-protocol` in tunnel mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingMode {
    /// Encapsulation between nodes (the chart's default): cross-node packets are `to-overlay` on
    /// the sender, `from-overlay` on the receiver.
    #[default]
    Tunnel,
    /// Native routing: packets go through the Linux stack and the network device (`to-stack`,
    /// `to-network`, `from-network`); there is no overlay device.
    Native,
}

impl RoutingMode {
    /// From `routing-mode` as the ConfigMap (or the values' `routingMode`) has it; an empty or
    /// unknown value is tunnel, as the chart and the agent read it.
    pub fn from_config(value: &str) -> RoutingMode {
        if value.eq_ignore_ascii_case("native") { RoutingMode::Native } else { RoutingMode::Tunnel }
    }
}
