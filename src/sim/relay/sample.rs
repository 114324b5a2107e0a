//! A hand-made homelab [`Topology`] (three nodes, CoreDNS, HAProxy ingress, media apps, Longhorn,
//! Argo CD, metrics-server) for relay tests and benchmarks, independent of the world controllers.

use crate::sim::topology::{RoutingMode, TopoNode, TopoPod, TopoService, Topology};

#[allow(clippy::too_many_arguments)]
fn pod(
    ns: &str,
    name: &str,
    node: &str,
    ip: &str,
    labels: &[&str],
    identity: u32,
    ep: u32,
    workload: (&str, &str),
) -> TopoPod {
    TopoPod {
        namespace: ns.into(),
        name: name.into(),
        node: node.into(),
        ip: ip.into(),
        host_network: false,
        labels: labels.iter().map(|s| s.to_string()).collect(),
        identity,
        endpoint_id: ep,
        workload: Some((workload.0.into(), workload.1.into())),
    }
}

fn svc(ns: &str, name: &str, ip: &str, ports: &[(u16, &str)], selector: &[&str]) -> TopoService {
    TopoService {
        namespace: ns.into(),
        name: name.into(),
        cluster_ip: ip.into(),
        ports: ports.iter().map(|(p, proto)| (*p, proto.to_string())).collect(),
        selector: selector.iter().map(|s| s.to_string()).collect(),
    }
}

/// Three Cilium-ready nodes (`homelab-cp1`, `homelab-w1`, `homelab-w2`) with typical workloads,
/// native routing (set `routing` for tunnel mode).
/// `cluster_name` is the Helm `cluster.name` (`default` = no node name prefix).
pub fn homelab_topology(cluster_name: &str) -> Topology {
    let nodes = [
        ("homelab-cp1", "10.0.20.11", "10.42.0.0/24"),
        ("homelab-w1", "10.0.20.21", "10.42.1.0/24"),
        ("homelab-w2", "10.0.20.22", "10.42.2.0/24"),
    ];
    let mut pods = vec![
        pod(
            "kube-system",
            "coredns-6799fbcd5-9vzl2",
            "homelab-cp1",
            "10.42.0.12",
            &["k8s-app=kube-dns", "pod-template-hash=6799fbcd5"],
            3129,
            1433,
            ("Deployment", "coredns"),
        ),
        pod(
            "kube-system",
            "metrics-server-54fd9b65b-x7d2k",
            "homelab-w1",
            "10.42.1.5",
            &["k8s-app=metrics-server"],
            8817,
            2201,
            ("Deployment", "metrics-server"),
        ),
        pod(
            "haproxy-controller",
            "haproxy-kubernetes-ingress-7d8f9c6b4-k2m9p",
            "homelab-w1",
            "10.42.1.20",
            &["app.kubernetes.io/name=kubernetes-ingress"],
            40211,
            311,
            ("Deployment", "haproxy-kubernetes-ingress"),
        ),
        pod(
            "haproxy-controller",
            "haproxy-kubernetes-ingress-7d8f9c6b4-z8q4r",
            "homelab-w2",
            "10.42.2.21",
            &["app.kubernetes.io/name=kubernetes-ingress"],
            40211,
            312,
            ("Deployment", "haproxy-kubernetes-ingress"),
        ),
        pod(
            "media",
            "jellyfin-7c9f8d-x2k4q",
            "homelab-w2",
            "10.42.2.7",
            &["app=jellyfin"],
            21877,
            987,
            ("Deployment", "jellyfin"),
        ),
        pod(
            "media",
            "sonarr-5b6c7d8e9-h4j5k",
            "homelab-w1",
            "10.42.1.9",
            &["app=sonarr"],
            21911,
            654,
            ("Deployment", "sonarr"),
        ),
        pod(
            "media",
            "radarr-6c7d8e9f0-m6n7p",
            "homelab-cp1",
            "10.42.0.33",
            &["app=radarr"],
            21935,
            655,
            ("Deployment", "radarr"),
        ),
        pod(
            "argocd",
            "argocd-repo-server-6b8f9c7d5-q2w4e",
            "homelab-w1",
            "10.42.1.14",
            &["app.kubernetes.io/name=argocd-repo-server"],
            30412,
            778,
            ("Deployment", "argocd-repo-server"),
        ),
        pod(
            "argocd",
            "argocd-server-5f6g7h8j9-r3t5y",
            "homelab-cp1",
            "10.42.0.18",
            &["app.kubernetes.io/name=argocd-server"],
            30455,
            779,
            ("Deployment", "argocd-server"),
        ),
    ];
    for (i, (node, _, cidr)) in nodes.iter().enumerate() {
        let net = cidr.trim_end_matches(".0/24");
        let suffix = ["b7x2q", "c8y3r", "d9z4s"][i];
        pods.push(pod(
            "longhorn-system",
            &format!("longhorn-manager-{suffix}"),
            node,
            &format!("{net}.40"),
            &["app=longhorn-manager"],
            51234,
            400 + i as u32,
            ("DaemonSet", "longhorn-manager"),
        ));
        pods.push(pod(
            "longhorn-system",
            &format!("instance-manager-{suffix}0a1b2c3d"),
            node,
            &format!("{net}.41"),
            &["longhorn.io/component=instance-manager"],
            51240,
            420 + i as u32,
            ("Pod", "instance-manager"),
        ));
        let mut agent = pod(
            "kube-system",
            &format!("cilium-{suffix}"),
            node,
            nodes[i].1,
            &["k8s-app=cilium"],
            1,
            0,
            ("DaemonSet", "cilium"),
        );
        agent.host_network = true;
        pods.push(agent);
    }
    Topology {
        nodes: nodes
            .iter()
            .map(|(name, ip, cidr)| TopoNode {
                name: name.to_string(),
                internal_ip: ip.to_string(),
                ready: true,
                cilium_ready: true,
                pod_cidr: cidr.to_string(),
            })
            .collect(),
        pods,
        services: vec![
            svc("kube-system", "kube-dns", "10.43.0.10", &[(53, "UDP"), (53, "TCP")], &["k8s-app=kube-dns"]),
            svc("kube-system", "metrics-server", "10.43.0.88", &[(443, "TCP")], &["k8s-app=metrics-server"]),
            svc(
                "haproxy-controller",
                "haproxy-kubernetes-ingress",
                "10.43.20.5",
                &[(80, "TCP"), (443, "TCP")],
                &["app.kubernetes.io/name=kubernetes-ingress"],
            ),
            svc("media", "jellyfin", "10.43.12.7", &[(8096, "TCP")], &["app=jellyfin"]),
            svc("media", "sonarr", "10.43.12.8", &[(8989, "TCP")], &["app=sonarr"]),
            svc("media", "radarr", "10.43.12.9", &[(7878, "TCP")], &["app=radarr"]),
            svc("argocd", "argocd-server", "10.43.30.2", &[(8080, "TCP")], &["app.kubernetes.io/name=argocd-server"]),
            svc("longhorn-system", "longhorn-backend", "10.43.40.3", &[(9500, "TCP")], &["app=longhorn-manager"]),
        ],
        cluster_name: cluster_name.to_string(),
        cilium_version: "1.16.6".to_string(),
        // The homelab's plan: native routing over the LAN (ipv4NativeRoutingCIDR 10.42.0.0/16).
        routing: RoutingMode::Native,
    }
}
