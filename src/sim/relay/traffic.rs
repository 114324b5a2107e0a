//! Made-up but plausible homelab traffic as Hubble would observe it, generated from the
//! [`Topology`]: DNS to CoreDNS (with L7 DNS for some clients), LAN clients through the HAProxy
//! ingress to apps (L7 HTTP for some apps), Longhorn replication between nodes, Argo CD's
//! repo-server fetching from Git, metrics-server scraping kubelets, egress to the internet,
//! cilium-health probes, policy verdicts and policy drops. Faults shape it: broken node paths drop
//! cross-node packets, broken DNS leaves queries unanswered.
//!
//! Every conversation is emitted as the trace/drop/L7 events of the nodes that see it (both nodes
//! for cross-node traffic), with identities relative to the observing node (host / remote-node).
//! Observation points follow the routing mode ([`RoutingMode`]): in tunnel mode a packet leaving
//! for another node is `to-overlay`; with native routing there is no overlay device, so a pod's
//! packet is `to-stack` (routed by the kernel) and the host's own is `to-network` (the native
//! device). `from-*` points are not emitted: the agent's `monitor-aggregation: medium` (the
//! chart's default, and the sim's ConfigMap) suppresses them.

use pbjson_types::{BoolValue, Timestamp};

use crate::hubble::names::{self, ID_HEALTH, ID_HOST, ID_REMOTE_NODE, ID_WORLD};
use crate::hubble::proto::flow::{
    CiliumEventType, DropReason, Endpoint, Flow, FlowType, Http, Ip, IpVersion, Layer4, Layer7, Service, Tcp, TcpFlags,
    TraceReason, TrafficDirection, Udp, Verdict, Workload, layer4, layer7,
};
use crate::sim::faults::ActiveFaults;
use crate::sim::topology::{RoutingMode, Topology};

/// A node as the generator knows it.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    /// Kubernetes node name.
    pub name: String,
    /// Name as Hubble reports it (`<cluster>/<node>` when the cluster is not `default`).
    pub display: String,
    pub ip: String,
    pub cilium_ready: bool,
}

#[derive(Debug, Clone)]
struct PodInfo {
    namespace: String,
    name: String,
    node: Option<usize>,
    ip: String,
    host_network: bool,
    endpoint: Endpoint,
    /// Hubble L7 visibility (a DNS/HTTP policy) applies to this pod.
    l7: bool,
}

#[derive(Debug, Clone)]
struct App {
    pod: usize,
    port: u16,
    service: Service,
    host: String,
}

/// The topology, indexed for traffic generation.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopoIndex {
    pub cluster: String,
    pub routing: RoutingMode,
    pub nodes: Vec<NodeInfo>,
    pods: Vec<PodInfo>,
    coredns: Vec<usize>,
    dns_service: Option<(Service, String)>,
    ingress: Vec<usize>,
    apps: Vec<App>,
    longhorn: Vec<usize>,
    repo_server: Vec<usize>,
    metrics_server: Vec<usize>,
    clients: Vec<usize>,
    service_names: Vec<String>,
    /// cutover's validation probes (`cutover.io/probe=client|server`).
    probe_clients: Vec<usize>,
    probe_servers: Vec<usize>,
}

impl TopoIndex {
    pub fn new(t: &Topology) -> TopoIndex {
        let cluster = if t.cluster_name.is_empty() { "default".to_string() } else { t.cluster_name.clone() };
        let nodes: Vec<NodeInfo> = t
            .nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                display: display_node_name(&cluster, &n.name),
                ip: n.internal_ip.clone(),
                cilium_ready: n.cilium_ready,
            })
            .collect();
        let node_idx = |name: &str| nodes.iter().position(|n| n.name == name);
        let mut pods = Vec::new();
        for p in &t.pods {
            if p.ip.is_empty() {
                continue;
            }
            let sa = p.workload.as_ref().map_or_else(|| "default".to_string(), |(_, n)| n.clone());
            let mut labels: Vec<String> = p.labels.iter().map(|l| format!("k8s:{l}")).collect();
            labels.push(format!("k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={}", p.namespace));
            labels.push(format!("k8s:io.cilium.k8s.policy.cluster={cluster}"));
            labels.push(format!("k8s:io.cilium.k8s.policy.serviceaccount={sa}"));
            labels.push(format!("k8s:io.kubernetes.pod.namespace={}", p.namespace));
            labels.sort();
            labels.dedup();
            let endpoint = Endpoint {
                id: p.endpoint_id,
                identity: p.identity,
                cluster_name: cluster.clone(),
                namespace: p.namespace.clone(),
                labels,
                pod_name: p.name.clone(),
                workloads: p
                    .workload
                    .iter()
                    .map(|(kind, name)| Workload { name: name.clone(), kind: kind.clone() })
                    .collect(),
            };
            let hash = p.name.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            pods.push(PodInfo {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                node: node_idx(&p.node),
                ip: p.ip.clone(),
                host_network: p.host_network,
                endpoint,
                l7: hash % 3 == 0,
            });
        }
        let has_label =
            |i: usize, l: &str| t.pods.iter().any(|tp| tp.name == pods[i].name && tp.labels.iter().any(|x| x == l));
        let mut idx = TopoIndex { cluster, nodes, routing: t.routing, ..Default::default() };
        for (i, p) in pods.iter().enumerate() {
            let name = p.name.as_str();
            if has_label(i, "k8s-app=kube-dns") || name.starts_with("coredns") {
                idx.coredns.push(i);
            }
            if name.contains("haproxy") || p.namespace.contains("haproxy") || p.namespace.contains("ingress") {
                idx.ingress.push(i);
            }
            if p.namespace == "longhorn-system"
                && (name.starts_with("instance-manager") || name.starts_with("longhorn-manager"))
            {
                idx.longhorn.push(i);
            }
            if name.contains("repo-server") {
                idx.repo_server.push(i);
            }
            if name.starts_with("metrics-server") {
                idx.metrics_server.push(i);
            }
            if !p.host_network && p.node.is_some() {
                idx.clients.push(i);
            }
            if has_label(i, "cutover.io/probe=client") {
                idx.probe_clients.push(i);
            }
            if has_label(i, "cutover.io/probe=server") {
                idx.probe_servers.push(i);
            }
        }
        for s in &t.services {
            let svc = Service { name: s.name.clone(), namespace: s.namespace.clone() };
            idx.service_names.push(format!("{}.{}.svc.cluster.local.", s.name, s.namespace));
            if s.name == "kube-dns" || (s.namespace == "kube-system" && s.ports.iter().any(|(p, _)| *p == 53)) {
                idx.dns_service = Some((svc.clone(), s.cluster_ip.clone()));
                continue;
            }
            if s.namespace == "kube-system" || s.namespace == "longhorn-system" || s.selector.is_empty() {
                continue;
            }
            let Some((port, _)) = s.ports.iter().find(|(_, proto)| proto.eq_ignore_ascii_case("TCP")) else { continue };
            for (i, p) in pods.iter().enumerate() {
                let tp = t.pods.iter().find(|tp| tp.name == p.name && tp.namespace == p.namespace);
                let selected = tp.is_some_and(|tp| {
                    tp.namespace == s.namespace && s.selector.iter().all(|sel| tp.labels.contains(sel))
                });
                if selected && !idx.ingress.contains(&i) && !p.host_network {
                    idx.apps.push(App {
                        pod: i,
                        port: *port,
                        service: svc.clone(),
                        host: format!("{}.{}", s.name, s.namespace),
                    });
                }
            }
        }
        idx.pods = pods;
        idx
    }
}

/// `<cluster>/<node>` unless the cluster is `default`.
pub(crate) fn display_node_name(cluster: &str, node: &str) -> String {
    if cluster.is_empty() || cluster == "default" { node.to_string() } else { format!("{cluster}/{node}") }
}

/// An endpoint of a conversation.
#[derive(Debug, Clone, Copy)]
enum Ep {
    Pod(usize),
    /// Outside the cluster: (ip, DNS name or "").
    World(&'static str, &'static str),
    /// A node's host network.
    Host(usize),
    /// The cilium-health endpoint of a node.
    Health(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    Icmp,
}

struct Conv {
    src: Ep,
    dst: Ep,
    proto: Proto,
    sport: u16,
    dport: u16,
    dst_service: Option<Service>,
}

const LAN_CLIENTS: &[&str] = &["192.168.1.23", "192.168.1.42", "192.168.1.57", "192.168.1.61", "192.168.1.88"];
const INTERNET: &[(&str, &str)] = &[
    ("203.0.113.10", "github.com"),
    ("203.0.113.11", "api.github.com"),
    ("203.0.113.20", "ghcr.io"),
    ("198.51.100.7", "registry-1.docker.io"),
    ("198.51.100.9", "quay.io"),
    ("198.51.100.30", "api.themoviedb.org"),
];

/// Flows produced in one step, each with the index of the node that observed it.
pub(crate) type Observed = Vec<(usize, Flow)>;

/// The traffic generator. Deterministic for a seed (apart from wall-clock times).
pub(crate) struct TrafficGen {
    rng: fastrand::Rng,
}

impl TrafficGen {
    pub fn new(seed: u64) -> TrafficGen {
        TrafficGen { rng: fastrand::Rng::with_seed(seed ^ 0x6875_6262_6c65) }
    }

    /// Appends at least `min_flows` flows (whole conversations) to `out`. Flows observed on nodes
    /// without a ready Cilium agent are left out. Times are filled in by the caller.
    pub fn generate(&mut self, t: &TopoIndex, faults: &ActiveFaults, min_flows: usize, out: &mut Observed) {
        let start = out.len();
        // Probe clients that run now ping and connect to the servers on the other nodes.
        if !t.probe_clients.is_empty() {
            self.probes(t, faults, out);
        }
        let mut guard = 0;
        while out.len() - start < min_flows && guard < min_flows * 4 + 16 {
            guard += 1;
            let roll = self.rng.u32(0..100);
            match roll {
                0..=29 => self.dns(t, faults, out),
                30..=49 => self.ingress_http(t, faults, out),
                50..=62 => self.longhorn(t, faults, out),
                63..=70 => self.repo_server(t, faults, out),
                71..=79 => self.metrics(t, faults, out),
                80..=89 => self.egress(t, faults, out),
                90..=93 => self.health(t, faults, out),
                94..=96 => self.policy_drop(t, out),
                _ => self.pod_to_app(t, faults, out),
            }
        }
        // Agents that are not ready record nothing.
        let mut i = start;
        while i < out.len() {
            if t.nodes.get(out[i].0).is_some_and(|n| n.cilium_ready) {
                i += 1;
            } else {
                out.swap_remove(i);
            }
        }
    }

    /// A burst of Longhorn rebuild traffic (used for perf ring overflows).
    pub fn burst(&mut self, t: &TopoIndex, faults: &ActiveFaults, min_flows: usize, out: &mut Observed) {
        let start = out.len();
        let mut guard = 0;
        while out.len() - start < min_flows && guard < min_flows + 16 {
            guard += 1;
            if t.longhorn.len() >= 2 {
                self.longhorn(t, faults, out);
            } else {
                self.pod_to_app(t, faults, out);
            }
        }
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> Option<T> {
        if v.is_empty() { None } else { Some(v[self.rng.usize(0..v.len())]) }
    }

    fn ephemeral(&mut self) -> u16 {
        self.rng.u16(32768..61000)
    }

    fn uuid(&mut self) -> String {
        let a = self.rng.u64(..);
        let b = self.rng.u64(..);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            (a as u16) & 0x0fff,
            ((b >> 48) as u16 & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    fn node_of(t: &TopoIndex, ep: Ep) -> Option<usize> {
        match ep {
            Ep::Pod(i) => t.pods[i].node,
            Ep::Host(n) | Ep::Health(n) => Some(n),
            Ep::World(..) => None,
        }
    }

    fn ip_of(t: &TopoIndex, ep: Ep) -> String {
        match ep {
            Ep::Pod(i) => t.pods[i].ip.clone(),
            Ep::Host(n) => t.nodes[n].ip.clone(),
            Ep::Health(n) => health_ip(&t.nodes[n].ip),
            Ep::World(ip, _) => ip.to_string(),
        }
    }

    /// The endpoint as seen from node `at`.
    fn endpoint(t: &TopoIndex, ep: Ep, at: usize) -> Endpoint {
        let host = |n: usize| {
            let (id, label) =
                if n == at { (ID_HOST, "reserved:host") } else { (ID_REMOTE_NODE, "reserved:remote-node") };
            Endpoint { identity: id, labels: vec![label.to_string()], ..Default::default() }
        };
        match ep {
            Ep::Pod(i) if t.pods[i].host_network => t.pods[i].node.map_or_else(Endpoint::default, host),
            Ep::Pod(i) => t.pods[i].endpoint.clone(),
            Ep::Host(n) => host(n),
            Ep::Health(n) => Endpoint {
                id: 100 + u32::try_from(n).unwrap_or(0),
                identity: ID_HEALTH,
                labels: vec!["reserved:health".to_string()],
                ..Default::default()
            },
            Ep::World(..) => {
                Endpoint { identity: ID_WORLD, labels: vec!["reserved:world".to_string()], ..Default::default() }
            }
        }
    }

    fn names_of(ep: Ep) -> Vec<String> {
        match ep {
            Ep::World(_, name) if !name.is_empty() => vec![name.to_string()],
            _ => Vec::new(),
        }
    }

    /// One L3/L4 event of `c` observed on `at`. `reply` swaps the direction.
    #[allow(clippy::too_many_arguments)]
    fn l34(
        &mut self,
        t: &TopoIndex,
        c: &Conv,
        at: usize,
        point: u8,
        reply: Option<bool>,
        flags: Option<TcpFlags>,
        drop: Option<DropReason>,
        direction: TrafficDirection,
    ) -> Flow {
        let is_reply = reply == Some(true);
        let (src, dst, sport, dport) =
            if is_reply { (c.dst, c.src, c.dport, c.sport) } else { (c.src, c.dst, c.sport, c.dport) };
        let l4 = match c.proto {
            Proto::Tcp => {
                layer4::Protocol::Tcp(Tcp { source_port: u32::from(sport), destination_port: u32::from(dport), flags })
            }
            Proto::Udp => {
                layer4::Protocol::Udp(Udp { source_port: u32::from(sport), destination_port: u32::from(dport) })
            }
            Proto::Icmp => layer4::Protocol::IcmPv4(crate::hubble::proto::flow::IcmPv4 {
                r#type: if is_reply { 0 } else { 8 },
                code: 0,
            }),
        };
        let summary = match c.proto {
            Proto::Tcp => tcp_summary(flags.unwrap_or_default()),
            Proto::Udp => "UDP".to_string(),
            Proto::Icmp => if is_reply { "ICMPv4 EchoReply" } else { "ICMPv4 EchoRequest" }.to_string(),
        };
        let (verdict, event_type, drop_code) = match drop {
            Some(r) => (Verdict::Dropped, CiliumEventType { r#type: names::MSG_DROP, sub_type: r as i32 }, r as i32),
            None => (Verdict::Forwarded, CiliumEventType { r#type: names::MSG_TRACE, sub_type: i32::from(point) }, 0),
        };
        let trace_reason = match (drop, reply, flags) {
            (Some(_), _, _) => TraceReason::Unknown,
            (None, Some(true), _) => TraceReason::Reply,
            (None, _, Some(f)) if f.syn && !f.ack => TraceReason::New,
            _ => TraceReason::Established,
        };
        let service = if is_reply { (c.dst_service.clone(), None) } else { (None, c.dst_service.clone()) };
        Flow {
            time: None,
            uuid: self.uuid(),
            verdict: verdict as i32,
            drop_reason: u32::try_from(drop_code).unwrap_or(0),
            drop_reason_desc: drop_code,
            ip: Some(Ip {
                source: Self::ip_of(t, src),
                destination: Self::ip_of(t, dst),
                ip_version: IpVersion::IPv4 as i32,
                ..Default::default()
            }),
            l4: Some(Layer4 { protocol: Some(l4) }),
            source: Some(Self::endpoint(t, src, at)),
            destination: Some(Self::endpoint(t, dst, at)),
            r#type: FlowType::L3L4 as i32,
            node_name: t.nodes[at].display.clone(),
            source_names: Self::names_of(src),
            destination_names: Self::names_of(dst),
            reply: is_reply,
            event_type: Some(event_type),
            source_service: service.0,
            destination_service: service.1,
            traffic_direction: direction as i32,
            trace_observation_point: if drop.is_some() { 0 } else { trace_point_enum(point) },
            trace_reason: trace_reason as i32,
            is_reply: reply.map(|value| BoolValue { value }),
            summary,
            ..Default::default()
        }
    }

    /// A whole conversation: request (and reply unless `no_reply`) on every node that sees it.
    fn conversation(&mut self, t: &TopoIndex, faults: &ActiveFaults, c: &Conv, out: &mut Observed) {
        let sn = Self::node_of(t, c.src);
        let dn = Self::node_of(t, c.dst);
        let src_managed = matches!(c.src, Ep::Pod(i) if !t.pods[i].host_network);
        let dst_managed = matches!(c.dst, Ep::Pod(i) if !t.pods[i].host_network) || matches!(c.dst, Ep::Health(_));
        let cross = matches!((sn, dn), (Some(a), Some(b)) if a != b);
        let broken = match (sn, dn) {
            (Some(a), Some(b)) if a != b => faults.path_broken(&t.nodes[a].name, &t.nodes[b].name),
            _ => false,
        };
        let steps: &[(Option<bool>, TcpFlags)] = match c.proto {
            Proto::Tcp => &[
                (Some(false), TcpFlags { syn: true, ..NOFLAGS }),
                (Some(true), TcpFlags { syn: true, ack: true, ..NOFLAGS }),
                (Some(false), TcpFlags { ack: true, fin: true, ..NOFLAGS }),
                (Some(true), TcpFlags { ack: true, fin: true, ..NOFLAGS }),
            ],
            _ => &[(Some(false), NOFLAGS), (Some(true), NOFLAGS)],
        };
        if broken {
            // The path to the peer node is broken: retransmitted requests are dropped, no replies.
            if let Some(a) = sn {
                let flags = (c.proto == Proto::Tcp).then_some(TcpFlags { syn: true, ..NOFLAGS });
                for _ in 0..2 {
                    let f = self.l34(
                        t,
                        c,
                        a,
                        4,
                        None,
                        flags,
                        Some(DropReason::StaleOrUnroutableIp),
                        TrafficDirection::Egress,
                    );
                    out.push((a, f));
                }
            }
            return;
        }
        for (reply, flags) in steps {
            let is_reply = *reply == Some(true);
            let flags = (c.proto == Proto::Tcp).then_some(*flags);
            // Sender side of this packet, receiver side.
            let (from_node, to_node, from_managed, to_managed) =
                if is_reply { (dn, sn, dst_managed, src_managed) } else { (sn, dn, src_managed, dst_managed) };
            // Direction is the one of the connection at the endpoint that owns the policy.
            let egress_dir = if is_reply { TrafficDirection::Ingress } else { TrafficDirection::Egress };
            let ingress_dir = if is_reply { TrafficDirection::Egress } else { TrafficDirection::Ingress };
            if let Some(a) = from_node
                && (from_managed || cross)
                && (cross || to_node.is_none() || !to_managed)
            {
                let point = if cross { cross_node_point(t.routing, from_managed) } else { TO_STACK };
                let f = self.l34(t, c, a, point, *reply, flags, None, egress_dir);
                out.push((a, f));
            }
            if let Some(b) = to_node
                && to_managed
            {
                let f = self.l34(t, c, b, 0, *reply, flags, None, ingress_dir);
                out.push((b, f));
            } else if let Some(b) = to_node
                && cross
            {
                let f = self.l34(t, c, b, 3, *reply, flags, None, ingress_dir);
                out.push((b, f));
            }
        }
    }

    /// The request packet of `c` only (UDP), as every node that sees it observes it: no reply.
    fn one_way(&mut self, t: &TopoIndex, faults: &ActiveFaults, c: &Conv, out: &mut Observed) {
        let sn = Self::node_of(t, c.src);
        let dn = Self::node_of(t, c.dst);
        let cross = matches!((sn, dn), (Some(a), Some(b)) if a != b);
        if self.path_broken_between(t, faults, c.src, c.dst) {
            if let Some(a) = sn {
                let f =
                    self.l34(t, c, a, 4, None, None, Some(DropReason::StaleOrUnroutableIp), TrafficDirection::Egress);
                out.push((a, f));
            }
            return;
        }
        if let Some(a) = sn
            && cross
        {
            let f =
                self.l34(t, c, a, cross_node_point(t.routing, true), Some(false), None, None, TrafficDirection::Egress);
            out.push((a, f));
        }
        if let Some(b) = dn {
            let f = self.l34(t, c, b, 0, Some(false), None, None, TrafficDirection::Ingress);
            out.push((b, f));
        }
    }

    fn dns(&mut self, t: &TopoIndex, faults: &ActiveFaults, out: &mut Observed) {
        let (Some(client), Some(server)) = (self.pick(&t.clients), self.pick(&t.coredns)) else { return };
        let external = self.rng.u32(0..4) == 0;
        let (query, answer) = if external || t.service_names.is_empty() {
            let (ip, name) = INTERNET[self.rng.usize(0..INTERNET.len())];
            (format!("{name}."), ip.to_string())
        } else {
            let i = self.rng.usize(0..t.service_names.len());
            (t.service_names[i].clone(), format!("10.43.{}.{}", self.rng.u8(0..255), self.rng.u8(1..255)))
        };
        let c = Conv {
            src: Ep::Pod(client),
            dst: Ep::Pod(server),
            proto: Proto::Udp,
            sport: self.ephemeral(),
            dport: 53,
            dst_service: t.dns_service.as_ref().map(|(s, _)| s.clone()),
        };
        let Some(at) = t.pods[client].node else { return };
        let l7 = t.pods[client].l7;
        if faults.dns_broken {
            // CoreDNS does not answer: the query is delivered (and retried), no reply comes back.
            if l7 {
                let f = self.dns_l7(t, &c, at, &query, None);
                out.push((at, f));
            }
            self.one_way(t, faults, &c, out);
            self.one_way(t, faults, &c, out);
            return;
        }
        if l7 {
            let f = self.dns_l7(t, &c, at, &query, None);
            out.push((at, f));
        }
        self.conversation(t, faults, &c, out);
        if l7 && !self.path_broken_between(t, faults, c.src, c.dst) {
            let f = self.dns_l7(t, &c, at, &query, Some(&answer));
            out.push((at, f));
        }
    }

    fn path_broken_between(&self, t: &TopoIndex, faults: &ActiveFaults, a: Ep, b: Ep) -> bool {
        match (Self::node_of(t, a), Self::node_of(t, b)) {
            (Some(x), Some(y)) if x != y => faults.path_broken(&t.nodes[x].name, &t.nodes[y].name),
            _ => false,
        }
    }

    /// An L7 DNS event (request when `answer` is None) seen by the DNS proxy on the client's node.
    fn dns_l7(&mut self, t: &TopoIndex, c: &Conv, at: usize, query: &str, answer: Option<&str>) -> Flow {
        let mut f = self.l34(t, c, at, 0, Some(answer.is_some()), None, None, TrafficDirection::Egress);
        f.r#type = FlowType::L7 as i32;
        f.event_type = Some(CiliumEventType { r#type: names::MSG_ACCESS_LOG, sub_type: 0 });
        f.trace_observation_point = 0;
        f.trace_reason = 0;
        let nx = answer.is_some() && query.matches('.').count() > 5;
        let dns = crate::hubble::proto::flow::Dns {
            query: query.to_string(),
            ips: match answer {
                Some(ip) if !nx => vec![ip.to_string()],
                _ => Vec::new(),
            },
            ttl: if answer.is_some() { 30 } else { 0 },
            cnames: Vec::new(),
            observation_source: "proxy".into(),
            rcode: if nx { 3 } else { 0 },
            qtypes: vec!["A".into()],
            rrtypes: if answer.is_some() && !nx { vec!["A".into()] } else { Vec::new() },
        };
        f.summary = match answer {
            None => format!("DNS Query {query} A"),
            Some(_) if nx => format!("DNS Answer RCode: Non-Existent Domain TTL: 4294967295 (Proxy {query} A)"),
            Some(ip) => format!("DNS Answer \"{ip}\" TTL: 30 (Proxy {query} A)"),
        };
        f.l7 = Some(Layer7 {
            r#type: if answer.is_some() { 2 } else { 1 },
            latency_ns: if answer.is_some() { u64::from(self.rng.u32(200_000..3_000_000)) } else { 0 },
            record: Some(layer7::Record::Dns(dns)),
        });
        f
    }

    fn ingress_http(&mut self, t: &TopoIndex, faults: &ActiveFaults, out: &mut Observed) {
        let Some(app) = self.pick_app(t) else { return };
        let lan = LAN_CLIENTS[self.rng.usize(0..LAN_CLIENTS.len())];
        let ingress = self.pick(&t.ingress);
        // LAN client → ingress (or straight to the app when there is no ingress pod).
        let first_hop = ingress.map_or(Ep::Pod(app.pod), Ep::Pod);
        let port = if ingress.is_some() { if self.rng.bool() { 443 } else { 80 } } else { app.port };
        let c1 = Conv {
            src: Ep::World(lan, ""),
            dst: first_hop,
            proto: Proto::Tcp,
            sport: self.ephemeral(),
            dport: port,
            dst_service: None,
        };
        self.conversation(t, faults, &c1, out);
        if let Some(ing) = ingress {
            let c2 = Conv {
                src: Ep::Pod(ing),
                dst: Ep::Pod(app.pod),
                proto: Proto::Tcp,
                sport: self.ephemeral(),
                dport: app.port,
                dst_service: Some(app.service.clone()),
            };
            if self.rng.u32(0..10) < 3
                && !self.path_broken_between(t, faults, c2.src, c2.dst)
                && let Some(at) = t.pods[app.pod].node
            {
                // A policy verdict for the new connection at the app's node.
                let mut f = self.l34(
                    t,
                    &c2,
                    at,
                    0,
                    Some(false),
                    Some(TcpFlags { syn: true, ..NOFLAGS }),
                    None,
                    TrafficDirection::Ingress,
                );
                f.event_type = Some(CiliumEventType { r#type: names::MSG_POLICY_VERDICT, sub_type: 0 });
                f.policy_match_type = 3;
                f.trace_observation_point = 0;
                f.trace_reason = 0;
                out.push((at, f));
            }
            self.conversation(t, faults, &c2, out);
            if t.pods[app.pod].l7
                && !self.path_broken_between(t, faults, c2.src, c2.dst)
                && let Some(at) = t.pods[app.pod].node
            {
                let path = ["/", "/web/index.html", "/api/v1/status", "/health", "/favicon.ico"][self.rng.usize(0..5)];
                let url = format!("http://{}:{}{path}", app.host, app.port);
                let code = [200, 200, 200, 304, 404][self.rng.usize(0..5)];
                let req = self.http_l7(t, &c2, at, &url, None);
                out.push((at, req));
                let resp = self.http_l7(t, &c2, at, &url, Some(code));
                out.push((at, resp));
            }
        }
    }

    fn http_l7(&mut self, t: &TopoIndex, c: &Conv, at: usize, url: &str, code: Option<u32>) -> Flow {
        let mut f = self.l34(t, c, at, 0, Some(code.is_some()), None, None, TrafficDirection::Ingress);
        f.r#type = FlowType::L7 as i32;
        f.event_type = Some(CiliumEventType { r#type: names::MSG_ACCESS_LOG, sub_type: 0 });
        f.trace_observation_point = 0;
        f.trace_reason = 0;
        let latency_ms = self.rng.u32(1..40);
        f.summary = match code {
            None => format!("HTTP/1.1 GET {url}"),
            Some(c) => format!("HTTP/1.1 {c} {latency_ms}ms (GET {url})"),
        };
        f.l7 = Some(Layer7 {
            r#type: if code.is_some() { 2 } else { 1 },
            latency_ns: if code.is_some() { u64::from(latency_ms) * 1_000_000 } else { 0 },
            record: Some(layer7::Record::Http(Http {
                code: code.unwrap_or(0),
                method: "GET".into(),
                url: url.to_string(),
                protocol: "HTTP/1.1".into(),
                headers: Vec::new(),
            })),
        });
        f
    }

    fn pick_app(&mut self, t: &TopoIndex) -> Option<App> {
        if t.apps.is_empty() { None } else { Some(t.apps[self.rng.usize(0..t.apps.len())].clone()) }
    }

    fn pod_to_app(&mut self, t: &TopoIndex, faults: &ActiveFaults, out: &mut Observed) {
        let (Some(client), Some(app)) = (self.pick(&t.clients), self.pick_app(t)) else { return };
        if client == app.pod {
            return;
        }
        let c = Conv {
            src: Ep::Pod(client),
            dst: Ep::Pod(app.pod),
            proto: Proto::Tcp,
            sport: self.ephemeral(),
            dport: app.port,
            dst_service: Some(app.service.clone()),
        };
        self.conversation(t, faults, &c, out);
    }

    /// Each running probe client: ICMP echo and TCP 8080 to a probe server on every other node.
    fn probes(&mut self, t: &TopoIndex, faults: &ActiveFaults, out: &mut Observed) {
        for &client in &t.probe_clients {
            for &server in &t.probe_servers {
                if t.pods[client].node == t.pods[server].node {
                    continue;
                }
                for (proto, dport) in [(Proto::Icmp, 0), (Proto::Tcp, 8080)] {
                    let sport = if proto == Proto::Tcp { self.ephemeral() } else { 0 };
                    let c = Conv { src: Ep::Pod(client), dst: Ep::Pod(server), proto, sport, dport, dst_service: None };
                    self.conversation(t, faults, &c, out);
                }
            }
        }
    }

    fn longhorn(&mut self, t: &TopoIndex, faults: &ActiveFaults, out: &mut Observed) {
        if t.longhorn.len() < 2 {
            return self.pod_to_app(t, faults, out);
        }
        let (Some(a), Some(b)) = (self.pick(&t.longhorn), self.pick(&t.longhorn)) else { return };
        if a == b || t.pods[a].node == t.pods[b].node {
            return;
        }
        let manager = t.pods[b].name.starts_with("longhorn-manager");
        let dport = if manager { 9500 } else { 10000 + self.rng.u16(0..30) };
        let c = Conv {
            src: Ep::Pod(a),
            dst: Ep::Pod(b),
            proto: Proto::Tcp,
            sport: self.ephemeral(),
            dport,
            dst_service: None,
        };
        self.conversation(t, faults, &c, out);
    }

    fn repo_server(&mut self, t: &TopoIndex, faults: &ActiveFaults, out: &mut Observed) {
        let Some(p) = self.pick(&t.repo_server) else { return self.egress(t, faults, out) };
        let c = Conv {
            src: Ep::Pod(p),
            dst: Ep::World(INTERNET[0].0, INTERNET[0].1),
            proto: Proto::Tcp,
            sport: self.ephemeral(),
            dport: 443,
            dst_service: None,
        };
        self.conversation(t, faults, &c, out);
    }

    fn metrics(&mut self, t: &TopoIndex, faults: &ActiveFaults, out: &mut Observed) {
        let Some(p) = self.pick(&t.metrics_server) else { return self.health(t, faults, out) };
        if t.nodes.is_empty() {
            return;
        }
        let n = self.rng.usize(0..t.nodes.len());
        let c = Conv {
            src: Ep::Pod(p),
            dst: Ep::Host(n),
            proto: Proto::Tcp,
            sport: self.ephemeral(),
            dport: 10250,
            dst_service: None,
        };
        self.conversation(t, faults, &c, out);
    }

    fn egress(&mut self, t: &TopoIndex, faults: &ActiveFaults, out: &mut Observed) {
        let Some(p) = self.pick(&t.clients) else { return };
        let (ip, name) = INTERNET[self.rng.usize(0..INTERNET.len())];
        let c = Conv {
            src: Ep::Pod(p),
            dst: Ep::World(ip, name),
            proto: Proto::Tcp,
            sport: self.ephemeral(),
            dport: 443,
            dst_service: None,
        };
        self.conversation(t, faults, &c, out);
    }

    fn health(&mut self, t: &TopoIndex, faults: &ActiveFaults, out: &mut Observed) {
        if t.nodes.len() < 2 {
            return;
        }
        let a = self.rng.usize(0..t.nodes.len());
        let b = (a + 1 + self.rng.usize(0..t.nodes.len() - 1)) % t.nodes.len();
        let c =
            Conv { src: Ep::Host(a), dst: Ep::Health(b), proto: Proto::Icmp, sport: 0, dport: 0, dst_service: None };
        self.conversation(t, faults, &c, out);
    }

    fn policy_drop(&mut self, t: &TopoIndex, out: &mut Observed) {
        let Some(p) = self.pick(&t.clients) else { return };
        let Some(at) = t.pods[p].node else { return };
        let lan = LAN_CLIENTS[self.rng.usize(0..LAN_CLIENTS.len())];
        let dport = [22, 3306, 5432, 8080][self.rng.usize(0..4)];
        let c = Conv {
            src: Ep::World(lan, ""),
            dst: Ep::Pod(p),
            proto: Proto::Tcp,
            sport: self.ephemeral(),
            dport,
            dst_service: None,
        };
        for _ in 0..self.rng.usize(1..4) {
            let f = self.l34(
                t,
                &c,
                at,
                0,
                None,
                Some(TcpFlags { syn: true, ..NOFLAGS }),
                Some(DropReason::PolicyDenied),
                TrafficDirection::Ingress,
            );
            out.push((at, f));
        }
    }
}

const NOFLAGS: TcpFlags = TcpFlags {
    fin: false,
    syn: false,
    rst: false,
    psh: false,
    ack: false,
    urg: false,
    ece: false,
    cwr: false,
    ns: false,
};

/// `TCP Flags: SYN, ACK` in Cilium's order.
fn tcp_summary(f: TcpFlags) -> String {
    let mut s = String::from("TCP Flags:");
    let mut first = true;
    for (set, name) in [
        (f.syn, "SYN"),
        (f.ack, "ACK"),
        (f.rst, "RST"),
        (f.fin, "FIN"),
        (f.psh, "PSH"),
        (f.urg, "URG"),
        (f.ece, "ECE"),
        (f.cwr, "CWR"),
        (f.ns, "NS"),
    ] {
        if set {
            s.push_str(if first { " " } else { ", " });
            s.push_str(name);
            first = false;
        }
    }
    s
}

/// Monitor trace sub types (`TRACE_TO_*` in Cilium's datapath) the generator emits.
const TO_STACK: u8 = 3;
const TO_OVERLAY: u8 = 4;
const TO_NETWORK: u8 = 11;

/// Where the sending node observes a packet leaving for another node: the overlay device in tunnel
/// mode; with native routing the kernel stack for a pod's packet (legacy host routing, as with
/// `kubeProxyReplacement: false`) and the native device for the host's own.
fn cross_node_point(routing: RoutingMode, from_pod: bool) -> u8 {
    match routing {
        RoutingMode::Tunnel => TO_OVERLAY,
        RoutingMode::Native if from_pod => TO_STACK,
        RoutingMode::Native => TO_NETWORK,
    }
}

/// The proto TraceObservationPoint for a monitor sub type.
fn trace_point_enum(sub: u8) -> i32 {
    if sub == 0 { 101 } else { i32::from(sub) }
}

/// The cilium-health endpoint address of a node (its IP + 100 in the last octet, for show).
fn health_ip(node_ip: &str) -> String {
    match node_ip.rsplit_once('.') {
        Some((net, last)) => {
            let n: u16 = last.parse().unwrap_or(1);
            format!("{net}.{}", (n + 100) % 250 + 1)
        }
        None => node_ip.to_string(),
    }
}

/// A timestamp from Unix nanoseconds.
pub(crate) fn ts(nanos: i128) -> Timestamp {
    crate::hubble::time::timestamp_from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::relay::sample::homelab_topology;

    #[test]
    fn generates_plausible_flows() {
        let idx = TopoIndex::new(&homelab_topology("default"));
        assert!(!idx.coredns.is_empty() && !idx.apps.is_empty() && idx.longhorn.len() >= 2);
        let mut g = TrafficGen::new(1);
        let mut out = Vec::new();
        g.generate(&idx, &ActiveFaults::default(), 2000, &mut out);
        assert!(out.len() >= 2000);
        let mut kinds = std::collections::BTreeSet::new();
        for (node, f) in &out {
            assert_eq!(idx.nodes[*node].display, f.node_name);
            let mut line = String::new();
            crate::hubble::format::write_flow_type(&mut line, f);
            kinds.insert(line);
        }
        for k in [
            "to-endpoint",
            "to-stack",
            "to-network",
            "Policy denied",
            "dns-request proxy",
            "dns-response proxy",
            "http-request",
            "policy-verdict:L4-Only INGRESS",
        ] {
            assert!(kinds.contains(k), "missing {k}: {kinds:?}");
        }
        assert!(out.iter().any(|(_, f)| f.destination.as_ref().is_some_and(|d| d.identity == ID_REMOTE_NODE)));
        assert!(out.iter().any(|(_, f)| f.destination.as_ref().is_some_and(|d| d.identity == ID_WORLD)));
        // Deterministic for a seed.
        let mut again = Vec::new();
        TrafficGen::new(1).generate(&idx, &ActiveFaults::default(), 2000, &mut again);
        assert_eq!(out.len(), again.len());
        assert_eq!(out[17].1, again[17].1);
    }

    /// The flow-type texts (`to-overlay`, `Policy denied`, …) of `n` generated flows.
    fn kinds(topo: &Topology, n: usize) -> std::collections::BTreeSet<String> {
        let idx = TopoIndex::new(topo);
        let mut out = Vec::new();
        TrafficGen::new(5).generate(&idx, &ActiveFaults::default(), n, &mut out);
        out.iter()
            .map(|(_, f)| {
                let mut line = String::new();
                crate::hubble::format::write_flow_type(&mut line, f);
                line
            })
            .collect()
    }

    #[test]
    fn observation_points_follow_the_routing_mode() {
        let mut topo = homelab_topology("default");
        topo.routing = RoutingMode::Native;
        let native = kinds(&topo, 3000);
        for k in ["to-overlay", "from-overlay"] {
            assert!(!native.contains(k), "native routing has no overlay, yet {k}: {native:?}");
        }
        for k in ["to-stack", "to-endpoint", "to-network"] {
            assert!(native.contains(k), "native routing: missing {k}: {native:?}");
        }
        topo.routing = RoutingMode::Tunnel;
        let tunnel = kinds(&topo, 3000);
        for k in ["to-overlay", "to-stack", "to-endpoint"] {
            assert!(tunnel.contains(k), "tunnel mode: missing {k}: {tunnel:?}");
        }
        assert!(!tunnel.contains("to-network"), "in tunnel mode the host reaches other nodes through the overlay");
        // The ConfigMap value decides; an unset routing mode is the chart's tunnel.
        assert_eq!(RoutingMode::from_config("native"), RoutingMode::Native);
        assert_eq!(RoutingMode::from_config("tunnel"), RoutingMode::Tunnel);
        assert_eq!(RoutingMode::from_config(""), RoutingMode::Tunnel);
    }

    #[test]
    fn faults_shape_traffic() {
        let topo = homelab_topology("homelab");
        let idx = TopoIndex::new(&topo);
        let mut faults = ActiveFaults::default();
        faults.broken_paths.insert(("homelab-w1".into(), "homelab-w2".into()));
        faults.dns_broken = true;
        let mut out = Vec::new();
        TrafficGen::new(3).generate(&idx, &faults, 3000, &mut out);
        assert!(out.iter().all(|(_, f)| f.node_name.starts_with("homelab/")));
        let w1 = idx.nodes.iter().position(|n| n.name == "homelab-w1").unwrap();
        let w2 = idx.nodes.iter().position(|n| n.name == "homelab-w2").unwrap();
        let pod_node = |ip: &str| topo.pods.iter().find(|p| p.ip == ip).map(|p| p.node.clone());
        let mut dropped_cross = 0;
        for (_, f) in &out {
            let ip = f.ip.as_ref().unwrap();
            let (a, b) = (pod_node(&ip.source), pod_node(&ip.destination));
            let dns = f.l4.as_ref().is_some_and(|l| matches!(l.protocol, Some(layer4::Protocol::Udp(_))));
            if let (Some(a), Some(b), false, None) = (a, b, dns, f.l7.as_ref()) {
                let pair = [a.as_str(), b.as_str()];
                if pair.contains(&"homelab-w1") && pair.contains(&"homelab-w2") && a != b {
                    assert_eq!(f.verdict, Verdict::Dropped as i32, "{f:?}");
                    assert!(f.is_reply.as_ref().is_none_or(|r| !r.value));
                    dropped_cross += 1;
                }
            }
            if let Some(layer7::Record::Dns(_)) = f.l7.as_ref().and_then(|l| l.record.as_ref()) {
                assert_eq!(f.l7.as_ref().unwrap().r#type, 1, "no DNS responses while DNS is broken");
            }
        }
        assert!(dropped_cross > 0);
        let _ = (w1, w2);
        // A node without a ready agent records nothing.
        let mut topo2 = topo.clone();
        topo2.nodes[0].cilium_ready = false;
        let idx2 = TopoIndex::new(&topo2);
        let mut out2 = Vec::new();
        TrafficGen::new(3).generate(&idx2, &ActiveFaults::default(), 500, &mut out2);
        assert!(out2.iter().all(|(n, _)| *n != 0));
    }

    #[test]
    fn summaries_and_names() {
        assert_eq!(tcp_summary(TcpFlags { syn: true, ack: true, ..NOFLAGS }), "TCP Flags: SYN, ACK");
        assert_eq!(tcp_summary(TcpFlags { fin: true, ack: true, ..NOFLAGS }), "TCP Flags: ACK, FIN");
        assert_eq!(display_node_name("default", "n1"), "n1");
        assert_eq!(display_node_name("", "n1"), "n1");
        assert_eq!(display_node_name("homelab", "n1"), "homelab/n1");
    }
}
