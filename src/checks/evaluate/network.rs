//! The pod network Cilium takes over: no other CNI DaemonSet, node podCIDRs inside the pod CIDR
//! (it becomes `ipv4NativeRoutingCIDR`), and the service CIDR as the cluster and the servers'
//! node-args have it.

use super::servers::ServerView;
use super::{Check, Status, check, ds_ready, ns_name, unread};
use crate::checks::k3s::node_name;
use crate::checks::snapshot::ClusterSnapshot;
use crate::settings::{Ipv4Cidr, Settings};

pub(super) fn cni_daemonsets(snap: &ClusterSnapshot) -> Check {
    let (id, title) = ("cni-daemonsets", "Other CNI DaemonSets (flannel, calico, weave, cilium)");
    let ds = match &snap.daemonsets {
        Ok(d) => d,
        Err(e) => return unread(id, title, e),
    };
    let mut evidence = Vec::new();
    let mut foreign = false;
    for d in ds {
        let name = d.metadata.name.as_deref().unwrap_or("");
        let label = d
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("k8s-app").or_else(|| l.get("app")))
            .cloned()
            .unwrap_or_default();
        let hay = format!("{name} {label}");
        let Some(cni) = ["flannel", "calico", "weave", "cilium"].into_iter().find(|c| hay.contains(c)) else {
            continue;
        };
        // cilium's own helper DaemonSets (envoy, node-init) are not a second CNI.
        if cni == "cilium" && name != "cilium" {
            continue;
        }
        let (ready, want) = ds_ready(d);
        evidence.push(format!("{} ({cni}): {ready}/{want} ready", ns_name(&d.metadata)));
        foreign |= cni != "cilium";
    }
    if evidence.is_empty() {
        return check(
            id,
            title,
            Status::Pass,
            vec!["no CNI DaemonSet: k3s' flannel is embedded in the k3s process (see k3s-flannel)".into()],
            "",
        );
    }
    if foreign {
        return check(
            id,
            title,
            Status::Fail,
            evidence,
            "remove the other CNI before Cilium takes over (cni.exclusive renames its config)",
        );
    }
    check(id, title, Status::Pass, evidence, "")
}

pub(super) fn pod_cidr(snap: &ClusterSnapshot, s: &Settings, servers: &ServerView) -> Check {
    let (id, title) = ("pod-cidr", "Node podCIDRs inside the cluster pod CIDR");
    let Some(cidr) = s.pod_cidr() else {
        return check(
            id,
            title,
            Status::Fail,
            vec![format!("cluster.pod_cidr {:?} unreadable", s.cluster.pod_cidr)],
            "",
        );
    };
    let nodes = match &snap.nodes {
        Ok(n) => n,
        Err(e) => return unread(id, title, e),
    };
    let mut evidence = Vec::new();
    let mut status = Status::Pass;
    for n in nodes {
        let spec = n.spec.as_ref();
        let mut cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
        if cidrs.is_empty()
            && let Some(c) = spec.and_then(|s| s.pod_cidr.clone())
        {
            cidrs.push(c);
        }
        if cidrs.is_empty() {
            status = Status::Fail;
            evidence.push(format!("{}: no podCIDR (ipam.mode kubernetes needs one per node)", node_name(n)));
            continue;
        }
        for c in cidrs {
            match Ipv4Cidr::parse(&c) {
                Ok(net) if cidr.contains_net(&net) => evidence.push(format!("{}: {c}", node_name(n))),
                Ok(_) => {
                    status = Status::Fail;
                    evidence.push(format!("{}: {c} is OUTSIDE {cidr}", node_name(n)));
                }
                Err(_) if c.contains(':') => evidence.push(format!("{}: {c} (IPv6, not checked)", node_name(n))),
                Err(e) => {
                    status = Status::Fail;
                    evidence.push(format!("{}: {e}", node_name(n)));
                }
            }
        }
    }
    for (name, a) in servers.parsed().0 {
        if let Some(cc) = a.value("cluster-cidr")
            && cc.split(',').next().map(str::trim) != Some(s.cluster.pod_cidr.as_str())
        {
            status = Status::Fail;
            evidence.push(format!(
                "{name}: --cluster-cidr {cc} differs from cluster.pod_cidr {} ({})",
                s.cluster.pod_cidr,
                s.origin_of("cluster.pod_cidr")
            ));
        }
    }
    let summary = if status == Status::Pass {
        format!("all {} node(s) have a podCIDR inside {cidr}", nodes.len())
    } else {
        let bad = ["OUTSIDE", "no podCIDR", "differs", "unreadable"];
        evidence.iter().find(|e| bad.iter().any(|b| e.contains(b))).cloned().unwrap_or_default()
    };
    evidence.insert(0, summary);
    let action = if status == Status::Fail {
        "fix cluster.pod_cidr in cutover.toml (it becomes ipv4NativeRoutingCIDR) or the node allocation"
    } else {
        ""
    };
    check(id, title, status, evidence, action)
}

pub(super) fn service_cidr(snap: &ClusterSnapshot, s: &Settings, servers: &ServerView) -> Check {
    let (id, title) = ("service-cidr", "Service CIDR vs the kubernetes Service and node-args");
    let Some(cidr) = s.service_cidr() else {
        return check(
            id,
            title,
            Status::Fail,
            vec![format!("cluster.service_cidr {:?} unreadable", s.cluster.service_cidr)],
            "",
        );
    };
    let mut evidence = Vec::new();
    let mut status = Status::Pass;
    match &snap.services {
        Ok(svcs) => {
            let k = svcs.iter().find(|v| {
                v.metadata.name.as_deref() == Some("kubernetes") && v.metadata.namespace.as_deref() == Some("default")
            });
            match k.and_then(|v| v.spec.as_ref()).and_then(|sp| sp.cluster_ip.clone()) {
                Some(ip) => match ip.parse() {
                    Ok(addr) if cidr.contains(addr) => {
                        evidence.push(format!("default/kubernetes ClusterIP {ip} is in {cidr}"))
                    }
                    _ => {
                        status = Status::Fail;
                        evidence.push(format!("default/kubernetes ClusterIP {ip} is NOT in {cidr}"));
                    }
                },
                None => {
                    status = Status::Warn;
                    evidence.push("default/kubernetes Service not found".into());
                }
            }
        }
        Err(e) => {
            status = Status::Unknown;
            evidence.push(e.to_string());
        }
    }
    for (name, a) in servers.parsed().0 {
        if let Some(sc) = a.value("service-cidr") {
            if sc.split(',').next().map(str::trim) != Some(s.cluster.service_cidr.as_str()) {
                status = Status::Fail;
                evidence.push(format!(
                    "{name}: --service-cidr {sc} differs from cluster.service_cidr {} ({})",
                    s.cluster.service_cidr,
                    s.origin_of("cluster.service_cidr")
                ));
            } else {
                evidence.push(format!("{name}: --service-cidr {sc}"));
            }
        }
    }
    let action = if status == Status::Fail { "fix cluster.service_cidr in cutover.toml" } else { "" };
    check(id, title, status, evidence, action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::evaluate::evaluate;
    use crate::checks::evaluate::fixtures::*;

    #[test]
    fn other_cni_daemonset_fails() {
        let mut snap = fresh();
        if let Ok(d) = &mut snap.daemonsets {
            d.push(ds("kube-system", "calico-node", 3, 3));
        }
        let c = evaluate(&snap, &Settings::default());
        assert_eq!(by_id(&c, "cni-daemonsets").status, Status::Fail);
    }
}
