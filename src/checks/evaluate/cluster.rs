//! What the cluster offers Cilium: a reachable API, the Kubernetes/k3s version per node and the
//! pinned chart's tested range, each node's kernel and OS/architecture, and room for the
//! cilium-operator replicas.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;

use super::{Check, Status, check, unread};
use crate::checks::k3s::{self, is_server, node_name};
use crate::checks::snapshot::{ClusterSnapshot, FetchErrorKind};
use crate::settings::{ChartVersion, Settings};

/// `v1.32.6+k3s1` → (1, 32).
fn k8s_minor(v: &str) -> Option<(u32, u32)> {
    let v = v.trim().trim_start_matches('v');
    let mut it = v.split(['.', '+', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Kubernetes minors listed as e2e-tested for a Cilium minor (the "Kubernetes Compatibility" page
/// of each release's docs, docs.cilium.io/en/v1.NN/network/kubernetes/compatibility/).
fn tested_k8s(chart: ChartVersion) -> Option<(u32, u32)> {
    match (chart.major, chart.minor) {
        (1, 16) => Some((27, 30)),
        (1, 17) => Some((29, 32)),
        (1, 18) => Some((30, 33)),
        _ => None,
    }
}

/// Minimum kernel for a Cilium minor (docs system requirements; docs/preflight.md).
pub fn min_kernel(chart: ChartVersion) -> (u32, u32) {
    if chart.at_least(1, 18, 0) {
        (5, 10)
    } else if chart.at_least(1, 16, 0) {
        (5, 4)
    } else {
        (4, 19)
    }
}

pub(super) fn api_reachable(snap: &ClusterSnapshot) -> Check {
    let (id, title) = ("api-reachable", "Kubernetes API reachable");
    match &snap.server_version {
        Ok(v) => check(id, title, Status::Pass, vec![format!("API server reports {v}")], ""),
        Err(e) if e.kind == FetchErrorKind::Unreachable => check(
            id,
            title,
            Status::Fail,
            vec![e.to_string()],
            "check the kubeconfig context and that the API server is up",
        ),
        Err(e) => unread(id, title, e),
    }
}

pub(super) fn k8s_version(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("k8s-version", "Kubernetes / k3s version per node");
    let nodes = match &snap.nodes {
        Ok(n) => n,
        Err(e) => return unread(id, title, e),
    };
    let mut evidence = Vec::new();
    let mut versions = BTreeSet::new();
    let mut non_k3s = Vec::new();
    for n in nodes {
        let v =
            n.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| i.kubelet_version.clone()).unwrap_or_default();
        let role = if is_server(n) { "server" } else { "agent" };
        evidence.push(format!("{}: kubelet {v} ({role})", node_name(n)));
        if !v.contains("+k3s") {
            non_k3s.push(node_name(n).to_string());
        }
        versions.insert(v);
    }
    if nodes.is_empty() {
        return check(id, title, Status::Unknown, vec!["no nodes listed".into()], "");
    }
    let summary = if versions.len() == 1 {
        format!("all {} node(s) run {}", nodes.len(), versions.iter().next().map_or("", String::as_str))
    } else {
        format!("versions differ: {}", versions.iter().cloned().collect::<Vec<_>>().join(", "))
    };
    evidence.insert(0, summary);
    let mut status = Status::Pass;
    let mut action = String::new();
    if versions.len() > 1 {
        status = Status::Warn;
        action = "finish the k3s upgrade on every node before the cutover (version skew)".into();
    } else if !versions.contains(&s.cluster.k3s_version) {
        status = Status::Warn;
        evidence.push(format!(
            "cluster.k3s_version is {} ({})",
            s.cluster.k3s_version,
            s.origin_of("cluster.k3s_version")
        ));
        action = "update cluster.k3s_version in cutover.toml (the plan was written for another version)".into();
    }
    if !non_k3s.is_empty() {
        status = Status::Warn;
        evidence.push(format!("not k3s: {} (the k3s checks below may not apply)", non_k3s.join(", ")));
    }
    check(id, title, status, evidence, action)
}

pub(super) fn chart_compat(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("cilium-chart-compat", "Pinned Cilium chart vs Kubernetes version");
    let Some(chart) = ChartVersion::parse(&s.cilium.chart_version) else {
        return check(
            id,
            title,
            Status::Fail,
            vec![format!("chart version {:?} unreadable", s.cilium.chart_version)],
            "",
        );
    };
    let (k8s, source) = match &snap.server_version {
        Ok(v) => (v.clone(), "from the API server".to_string()),
        Err(_) => (
            s.cluster.k3s_version.clone(),
            format!("from cluster.k3s_version ({}; API server not read)", s.origin_of("cluster.k3s_version")),
        ),
    };
    let Some((_, minor)) = k8s_minor(&k8s) else {
        return check(id, title, Status::Unknown, vec![format!("cannot read Kubernetes version {k8s:?}")], "");
    };
    let mut evidence = vec![format!(
        "chart {} pinned (cilium.chart_version, {})",
        s.cilium.chart_version,
        s.origin_of("cilium.chart_version")
    )];
    evidence.push(format!("Kubernetes {k8s} {source}"));
    let recommend = if minor <= 32 { "1.17.x" } else { "1.18.x" };
    match tested_k8s(chart) {
        Some((lo, hi)) if (lo..=hi).contains(&minor) => {
            evidence.insert(
                0,
                format!(
                    "Cilium {}.{} is e2e-tested on Kubernetes 1.{lo}–1.{hi}, 1.{minor} included",
                    chart.major, chart.minor
                ),
            );
            check(id, title, Status::Pass, evidence, "")
        }
        Some((lo, hi)) => {
            evidence.insert(
                0,
                format!(
                    "chart {} is e2e-tested on Kubernetes 1.{lo}–1.{hi} only, the cluster runs 1.{minor} (Helm does \
                     not refuse it, the chart allows >= 1.21: it rests on Kubernetes' backward compatibility)",
                    s.cilium.chart_version
                ),
            );
            check(
                id,
                title,
                Status::Warn,
                evidence,
                format!(
                    "pin chart {recommend} (tested with Kubernetes 1.{minor}): set cilium.chart_version in \
                     cutover.toml and render again; the stage values are the same"
                ),
            )
        }
        None => {
            evidence.push(format!("no compatibility data for Cilium {}.{}", chart.major, chart.minor));
            check(id, title, Status::Warn, evidence, format!("check the Cilium docs; {recommend} is known to work"))
        }
    }
}

/// `6.8.0-45-generic` → (6, 8).
fn kernel_version(k: &str) -> Option<(u32, u32)> {
    let mut it = k.split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

pub(super) fn node_kernel(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("node-kernel", "Kernel version per node vs Cilium's minimum");
    let nodes = match &snap.nodes {
        Ok(n) => n,
        Err(e) => return unread(id, title, e),
    };
    let chart = ChartVersion::parse(&s.cilium.chart_version).unwrap_or(ChartVersion { major: 1, minor: 16, patch: 0 });
    let (kmaj, kmin) = min_kernel(chart);
    let mut evidence = Vec::new();
    let mut status = Status::Pass;
    for n in nodes {
        let info = n.status.as_ref().and_then(|s| s.node_info.as_ref());
        let k = info.map(|i| i.kernel_version.clone()).unwrap_or_default();
        let os = info.map(|i| i.os_image.clone()).unwrap_or_default();
        match kernel_version(&k) {
            Some(v) if v >= (kmaj, kmin) => evidence.push(format!("{}: {k} ({os}) ≥ {kmaj}.{kmin}", node_name(n))),
            Some((4, 18)) if k.contains(".el8") => {
                status = status.max(Status::Warn);
                evidence.push(format!("{}: {k} ({os}) is a RHEL 8 kernel: supported from RHEL 8.6", node_name(n)));
            }
            Some(_) => {
                status = Status::Fail;
                evidence.push(format!("{}: {k} ({os}) is below {kmaj}.{kmin}", node_name(n)));
            }
            None => {
                status = status.max(Status::Unknown);
                evidence.push(format!("{}: kernel version {k:?} unreadable", node_name(n)));
            }
        }
    }
    let summary = if status == Status::Pass {
        format!("all {} node(s) at or above Linux {kmaj}.{kmin} (Cilium {}.{})", nodes.len(), chart.major, chart.minor)
    } else {
        let bad: Vec<&String> = evidence.iter().filter(|e| !e.contains(" ≥ ")).collect();
        format!("{} of {} node(s) need attention: {}", bad.len(), nodes.len(), bad.first().map_or("", |s| s.as_str()))
    };
    evidence.insert(0, summary);
    let action = match status {
        Status::Fail => format!(
            "upgrade the kernel to ≥ {kmaj}.{kmin} on those nodes before Cilium {}.{}",
            chart.major, chart.minor
        ),
        Status::Warn => "confirm RHEL ≥ 8.6 on those nodes".into(),
        _ => String::new(),
    };
    check(id, title, status, evidence, action)
}

pub(super) fn node_os_arch(snap: &ClusterSnapshot) -> Check {
    let (id, title) = ("node-os-arch", "OS and architecture per node (Cilium: linux amd64/arm64)");
    let nodes = match &snap.nodes {
        Ok(n) => n,
        Err(e) => return unread(id, title, e),
    };
    let mut evidence = Vec::new();
    let mut status = Status::Pass;
    for n in nodes {
        let info = n.status.as_ref().and_then(|s| s.node_info.as_ref());
        let arch = info.map(|i| i.architecture.as_str()).unwrap_or("");
        let os = info.map(|i| i.operating_system.as_str()).unwrap_or("");
        let image = info.map(|i| i.os_image.as_str()).unwrap_or("");
        let ok = os == "linux" && matches!(arch, "amd64" | "arm64");
        if !ok {
            status = Status::Fail;
        }
        evidence.push(format!("{}: {os}/{arch}, {image}{}", node_name(n), if ok { "" } else { " — NOT SUPPORTED" }));
    }
    let bad: Vec<&String> = evidence.iter().filter(|e| e.ends_with("NOT SUPPORTED")).collect();
    let summary = match bad.first() {
        None => format!("all {} node(s) run linux on amd64/arm64", nodes.len()),
        Some(first) => format!("{} node(s) unsupported: {first}", bad.len()),
    };
    evidence.insert(0, summary);
    let action = if status == Status::Fail { "Cilium images exist for linux/amd64 and linux/arm64 only" } else { "" };
    check(id, title, status, evidence, action)
}

fn schedulable(nodes: &[Node]) -> Vec<&Node> {
    nodes.iter().filter(|n| k3s::is_schedulable(n)).collect()
}

pub(super) fn operator_replicas(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("operator-replicas", "cilium-operator replicas vs schedulable nodes");
    let nodes = match &snap.nodes {
        Ok(n) => n,
        Err(e) => return unread(id, title, e),
    };
    let sched = schedulable(nodes);
    let n = sched.len();
    let r = s.cilium.operator_replicas as usize;
    let mut evidence = vec![
        format!("cilium.operator_replicas = {r} ({})", s.origin_of("cilium.operator_replicas")),
        format!(
            "{n} schedulable node(s) (Ready, not cordoned): {}",
            sched.iter().map(|n| node_name(n)).collect::<Vec<_>>().join(", ")
        ),
    ];
    if r > n {
        evidence.push("required pod anti-affinity on kubernetes.io/hostname: one replica per node".into());
        return check(
            id,
            title,
            Status::Fail,
            evidence,
            format!(
                "{} replica(s) would stay Pending; set operator_replicas ≤ {n} (render caps it when run with --cluster)",
                r - n
            ),
        );
    }
    if r >= 2 && r == n {
        return check(
            id,
            title,
            Status::Warn,
            evidence,
            "while a node is drained one operator replica is Pending (one keeps working)",
        );
    }
    if r == 1 && n >= 3 {
        evidence.push("one replica: while its node drains there is briefly no operator (agents keep working)".into());
    }
    check(id, title, Status::Pass, evidence, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::evaluate::evaluate;
    use crate::checks::evaluate::fixtures::*;
    use k8s_openapi::api::core::v1::NodeSpec;

    #[test]
    fn chart_1_17_on_1_32_passes() {
        let mut s = Settings::default();
        s.cilium.chart_version = "1.17.6".into();
        assert_eq!(by_id(&evaluate(&fresh(), &s), "cilium-chart-compat").status, Status::Pass);
        // The default pin is a 1.17 release.
        let compat = evaluate(&fresh(), &Settings::default());
        let compat = by_id(&compat, "cilium-chart-compat");
        assert_eq!(compat.status, Status::Pass, "{compat:?}");
        assert!(compat.evidence[0].starts_with("Cilium 1.17 is e2e-tested on Kubernetes 1.29–1.32"), "{compat:?}");
    }

    #[test]
    fn the_plans_1_16_pin_is_accepted_with_a_warning() {
        let mut s = Settings::default();
        s.cilium.chart_version = "1.16.4".into();
        let checks = evaluate(&fresh(), &s);
        let compat = by_id(&checks, "cilium-chart-compat");
        assert_eq!(compat.status, Status::Warn, "{compat:?}");
        assert!(compat.evidence[0].contains("chart 1.16.4 is e2e-tested on Kubernetes 1.27–1.30 only"), "{compat:?}");
        assert!(compat.action.contains("1.17.x"), "{compat:?}");
    }

    #[test]
    fn nodes_kernel_arch_cidr_and_replicas() {
        let mut snap = fresh();
        if let Ok(nodes) = &mut snap.nodes {
            if let Some(info) = nodes[1].status.as_mut().and_then(|s| s.node_info.as_mut()) {
                info.kernel_version = "4.19.0-27-amd64".into();
                info.architecture = "riscv64".into();
            }
            nodes[2].spec = Some(NodeSpec { pod_cidrs: Some(vec!["10.99.0.0/24".into()]), ..Default::default() });
            nodes[0].spec = Some(NodeSpec { unschedulable: Some(true), ..nodes[0].spec.clone().unwrap_or_default() });
        }
        let mut s = Settings::default();
        s.cilium.operator_replicas = 3;
        let checks = evaluate(&snap, &s);
        assert_eq!(by_id(&checks, "node-kernel").status, Status::Fail);
        assert!(
            ev(by_id(&checks, "node-kernel")).contains("worker-1: 4.19.0-27-amd64 (Ubuntu 24.04.1 LTS) is below 5.4")
        );
        assert_eq!(by_id(&checks, "node-os-arch").status, Status::Fail);
        assert_eq!(by_id(&checks, "pod-cidr").status, Status::Fail);
        let op = by_id(&checks, "operator-replicas");
        assert_eq!(op.status, Status::Fail, "{op:?}");
        assert!(ev(op).contains("2 schedulable node(s)"));
    }

    #[test]
    fn versions() {
        assert_eq!(k8s_minor("v1.32.6+k3s1"), Some((1, 32)));
        assert_eq!(kernel_version("6.8.0-45-generic"), Some((6, 8)));
        assert_eq!(kernel_version("5.11.13-100.fc32.x86_64"), Some((5, 11)));
        assert_eq!(min_kernel(ChartVersion { major: 1, minor: 16, patch: 4 }), (5, 4));
        assert_eq!(min_kernel(ChartVersion { major: 1, minor: 18, patch: 0 }), (5, 10));
    }
}
