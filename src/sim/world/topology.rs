//! Builds the [`Topology`] the relay reads (nodes, running pods with IPs and identities,
//! Services) from the store and the kubelet's memory.

use std::collections::BTreeMap;

use serde_json::Value;

use super::World;
use super::cilium::identity_for;
use super::kubelet::Cni;
use super::objects::{self as o, ids, res};
use crate::sim::topology::{RoutingMode, TopoNode, TopoPod, TopoService, Topology};

/// `identity` of host-network pods (Cilium's reserved:host).
pub const HOST_IDENTITY: u32 = 1;

impl World {
    pub(crate) fn topology(&self) -> Topology {
        let (nodes, _) = self.store.list(res(ids::NODES), None);
        let (pods, _) = self.store.list(res(ids::PODS), None);
        let (svcs, _) = self.store.list(res(ids::SERVICES), None);
        let (rss, _) = self.store.list(res(ids::REPLICASETS), None);
        let rs_owner: BTreeMap<(String, String), (String, String)> = rss
            .iter()
            .filter_map(|r| {
                let c = o::controller_of(r)?;
                Some(((o::namespace(r).to_string(), o::name(r).to_string()), (c.kind, c.name)))
            })
            .collect();
        let cilium_ready = Self::cilium_ready_nodes(&pods);
        let topo_nodes = nodes
            .iter()
            .map(|n| TopoNode {
                name: o::name(n).to_string(),
                internal_ip: n
                    .pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().find(|x| o::s(x, "/type") == "InternalIP"))
                    .map(|x| o::s(x, "/address").to_string())
                    .unwrap_or_default(),
                ready: o::node_ready(n),
                cilium_ready: cilium_ready.contains(o::name(n)),
                pod_cidr: o::s(n, "/spec/podCIDR").to_string(),
            })
            .collect();
        let topo_pods = pods
            .iter()
            .filter(|p| {
                o::s(p, "/status/phase") == "Running" && !o::s(p, "/status/podIP").is_empty() && !o::is_terminating(p)
            })
            .map(|p| {
                let labels = o::labels(p);
                let ns = o::namespace(p).to_string();
                let host = o::bool_at(p, "/spec/hostNetwork");
                let rt = self.pods.get(o::uid(p));
                let cilium_ep = rt.and_then(|r| r.sandbox.as_ref()).is_some_and(|s| s.cni == Cni::Cilium);
                let workload = o::controller_of(p).map(|c| {
                    if c.kind == "ReplicaSet" {
                        rs_owner.get(&(ns.clone(), c.name.clone())).cloned().unwrap_or((c.kind, c.name))
                    } else {
                        (c.kind, c.name)
                    }
                });
                TopoPod {
                    namespace: ns.clone(),
                    name: o::name(p).to_string(),
                    node: o::s(p, "/spec/nodeName").to_string(),
                    ip: o::s(p, "/status/podIP").to_string(),
                    host_network: host,
                    labels: labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    identity: if host { HOST_IDENTITY } else { identity_for(&ns, &labels) },
                    endpoint_id: if cilium_ep { rt.map(|r| r.endpoint_id).unwrap_or(0) } else { 0 },
                    workload,
                }
            })
            .collect();
        let topo_svcs = svcs
            .iter()
            .filter(|s| !o::s(s, "/spec/clusterIP").is_empty() && o::s(s, "/spec/clusterIP") != "None")
            .map(|s| TopoService {
                namespace: o::namespace(s).to_string(),
                name: o::name(s).to_string(),
                cluster_ip: o::s(s, "/spec/clusterIP").to_string(),
                ports: s
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map(|ps| {
                        ps.iter()
                            .filter_map(|p| {
                                let port = u16::try_from(o::i64_at(p, "/port")?).ok()?;
                                let proto = match o::s(p, "/protocol") {
                                    "" => "TCP".to_string(),
                                    x => x.to_uppercase(),
                                };
                                Some((port, proto))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                selector: o::string_map(s.pointer("/spec/selector")).iter().map(|(k, v)| format!("{k}={v}")).collect(),
            })
            .collect();
        let (cluster_name, cilium_version, routing) = match &self.cilium.applied {
            Some(c) => (c.cluster_name.clone(), c.chart_version.clone(), RoutingMode::from_config(&c.routing_mode)),
            None => ("default".to_string(), String::new(), RoutingMode::default()),
        };
        Topology { nodes: topo_nodes, pods: topo_pods, services: topo_svcs, cluster_name, cilium_version, routing }
    }
}
