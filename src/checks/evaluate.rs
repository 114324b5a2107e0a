//! The pre-flight checks, as a pure function of a `ClusterSnapshot` and the settings. Every check
//! says what it read (evidence) and what to do; a resource that could not be read makes the checks
//! that need it `unknown` with the reason, never a crash.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use serde_json::Value;

use super::drain;
use super::k3s::{self, NodeArgs, is_server, node_name};
use super::snapshot::{ClusterSnapshot, FetchError, FetchErrorKind};
use super::{Check, Status};
use crate::manifests::render::MONITORING_API;
use crate::settings::{ChartVersion, Ipv4Cidr, ServiceMonitors, Settings};

/// Runs every check.
pub fn evaluate(snap: &ClusterSnapshot, settings: &Settings) -> Vec<Check> {
    let servers = ServerView::new(snap);
    let mut out = vec![
        api_reachable(snap),
        k8s_version(snap, settings),
        chart_compat(snap, settings),
        k3s_flannel(snap, &servers),
        k3s_kube_proxy(snap, &servers),
        k3s_network_policy(&servers),
        flannel_annotations(snap, &servers),
        server_flags(&servers),
        cni_daemonsets(snap),
        pod_cidr(snap, settings, &servers),
        service_cidr(snap, settings, &servers),
        node_kernel(snap, settings),
        node_os_arch(snap),
        argocd_installed(snap, settings),
        argo_root_app(snap, settings),
        argo_cilium_app(snap, settings),
        servicemonitor_crds(snap, settings),
        cluster_issuer(snap, settings),
        ingress_class(snap, settings),
        metallb(snap),
        longhorn(snap),
        operator_replicas(snap, settings),
    ];
    out.extend(drain_checks(snap));
    out.extend(access_checks(snap));
    out
}

fn check(id: &str, title: &str, status: Status, evidence: Vec<String>, action: impl Into<String>) -> Check {
    Check { id: id.to_string(), title: title.to_string(), status, evidence, action: action.into() }
}

/// `unknown` because a read failed (an unreachable API is a failure of its own check only).
fn unread(id: &str, title: &str, e: &FetchError) -> Check {
    let action = match e.kind {
        FetchErrorKind::Forbidden => {
            format!("grant this identity get/list on {} or run with another context", e.resource)
        }
        FetchErrorKind::Unreachable => "check the kubeconfig context and that the API server is up".to_string(),
        _ => String::new(),
    };
    check(id, title, Status::Unknown, vec![e.to_string()], action)
}

// ---------------------------------------------------------------------------------------------

/// Server name and its parsed `k3s.io/node-args` (None: annotation missing).
type ServerArgs = (String, Option<Result<NodeArgs, String>>);

/// A flag's effective value, as text.
type FlagValue = fn(&NodeArgs) -> String;

/// The server nodes and their parsed `k3s.io/node-args`.
struct ServerView {
    /// Err when nodes could not be read.
    servers: Result<Vec<ServerArgs>, FetchError>,
}

impl ServerView {
    fn new(snap: &ClusterSnapshot) -> Self {
        let servers = snap.nodes.as_ref().map_err(Clone::clone).map(|nodes| {
            nodes.iter().filter(|n| is_server(n)).map(|n| (node_name(n).to_string(), k3s::node_args(n))).collect()
        });
        ServerView { servers }
    }

    /// (server name, args) for servers whose node-args parsed; evidence lines for the others.
    fn parsed(&self) -> (Vec<(&str, &NodeArgs)>, Vec<String>) {
        let mut ok = Vec::new();
        let mut notes = Vec::new();
        if let Ok(servers) = &self.servers {
            for (name, args) in servers {
                match args {
                    Some(Ok(a)) => ok.push((name.as_str(), a)),
                    Some(Err(e)) => notes.push(format!("{name}: {e}")),
                    None => notes.push(format!("{name}: no {} annotation (not a k3s node?)", k3s::NODE_ARGS)),
                }
            }
        }
        (ok, notes)
    }

    /// Unknown check when server args cannot be used.
    fn unusable(&self, id: &str, title: &str) -> Option<Check> {
        match &self.servers {
            Err(e) => Some(unread(id, title, e)),
            Ok(s) if s.is_empty() => Some(check(
                id,
                title,
                Status::Unknown,
                vec!["no server node found (no node-args role `server`, no control-plane label)".into()],
                "check that this is the k3s cluster",
            )),
            Ok(_) => {
                let (ok, notes) = self.parsed();
                ok.is_empty()
                    .then(|| check(id, title, Status::Unknown, notes, "check the k3s.io/node-args annotations"))
            }
        }
    }

    /// Per-server value of a setting, and whether all servers agree.
    fn values<F: Fn(&NodeArgs) -> String>(&self, f: F) -> (Vec<String>, BTreeSet<String>) {
        let (ok, _) = self.parsed();
        let lines = ok.iter().map(|(n, a)| format!("{n}: {}", f(a))).collect();
        let distinct = ok.iter().map(|(_, a)| f(a)).collect();
        (lines, distinct)
    }
}

fn cilium_daemonset(snap: &ClusterSnapshot) -> Option<&DaemonSet> {
    snap.daemonsets.as_ref().ok()?.iter().find(|d| {
        d.metadata.name.as_deref() == Some("cilium")
            || d.metadata.labels.as_ref().and_then(|l| l.get("k8s-app")).is_some_and(|v| v == "cilium")
    })
}

fn ds_ready(d: &DaemonSet) -> (i32, i32) {
    let s = d.status.as_ref();
    (s.map_or(0, |s| s.number_ready), s.map_or(0, |s| s.desired_number_scheduled))
}

fn deploy_ready(d: &Deployment) -> (i32, i32) {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    (d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0), want)
}

fn ns_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or("?"))
}

/// `v1.32.6+k3s1` → (1, 32).
fn k8s_minor(v: &str) -> Option<(u32, u32)> {
    let v = v.trim().trim_start_matches('v');
    let mut it = v.split(['.', '+', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Kubernetes minors listed as e2e-tested for a Cilium minor (cilium-helm-1.16.md §4).
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

// ---------------------------------------------------------------------------------------------

fn api_reachable(snap: &ClusterSnapshot) -> Check {
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

fn k8s_version(snap: &ClusterSnapshot, s: &Settings) -> Check {
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
        evidence.push(format!("cutover.toml cluster.k3s_version is {}", s.cluster.k3s_version));
        action = "update cluster.k3s_version in cutover.toml (the plan was written for another version)".into();
    }
    if !non_k3s.is_empty() {
        status = Status::Warn;
        evidence.push(format!("not k3s: {} (the k3s checks below may not apply)", non_k3s.join(", ")));
    }
    check(id, title, status, evidence, action)
}

fn chart_compat(snap: &ClusterSnapshot, s: &Settings) -> Check {
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
        Ok(v) => (v.clone(), "API server"),
        Err(_) => (s.cluster.k3s_version.clone(), "cutover.toml (API server not read)"),
    };
    let Some((_, minor)) = k8s_minor(&k8s) else {
        return check(id, title, Status::Unknown, vec![format!("cannot read Kubernetes version {k8s:?}")], "");
    };
    let mut evidence = vec![format!("chart {} pinned (cutover.toml cilium.chart_version)", s.cilium.chart_version)];
    evidence.push(format!("Kubernetes {k8s} from the {source}"));
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

fn k3s_flannel(snap: &ClusterSnapshot, servers: &ServerView) -> Check {
    let (id, title) = ("k3s-flannel", "Embedded flannel (k3s server flag flannel-backend)");
    if let Some(c) = servers.unusable(id, title) {
        return c;
    }
    let (mut evidence, distinct) = servers.values(|a| match a.value("flannel-backend") {
        Some(b) => format!("--flannel-backend {b}"),
        None => "no --flannel-backend → embedded flannel runs (vxlan)".into(),
    });
    evidence.push(format!(
        "read from the servers' {} annotation: flannel runs inside the k3s process, so there is no flannel Pod or \
         DaemonSet to look for",
        k3s::NODE_ARGS
    ));
    let (_, notes) = servers.parsed();
    evidence.extend(notes);
    let on: BTreeSet<bool> = servers.parsed().0.iter().map(|(_, a)| a.flannel_enabled()).collect();
    if distinct.len() > 1 || on.len() > 1 {
        return check(
            id,
            title,
            Status::Fail,
            evidence,
            "make flannel-backend the same on every server (k3s refuses to start a server whose critical flags differ)",
        );
    }
    if on.contains(&false) {
        return check(id, title, Status::Pass, evidence, "");
    }
    if let Some(ds) = cilium_daemonset(snap) {
        evidence.push(format!("Cilium DaemonSet {} exists while embedded flannel is on", ns_name(&ds.metadata)));
        return check(
            id,
            title,
            Status::Fail,
            evidence,
            "Cilium cannot share the nodes with embedded flannel on the same pod CIDR: set flannel-backend: none on \
             every server and restart the servers first",
        );
    }
    check(
        id,
        title,
        Status::Warn,
        evidence,
        "Stage 1 needs flannel-backend: none (and disable-network-policy: true) on every server, restarting \
         servers first: `cutover render --stage 1` writes the k3s drop-in",
    )
}

fn k3s_kube_proxy(snap: &ClusterSnapshot, servers: &ServerView) -> Check {
    let (id, title) = ("k3s-kube-proxy", "Embedded kube-proxy (k3s server flag disable-kube-proxy)");
    if let Some(c) = servers.unusable(id, title) {
        return c;
    }
    let (mut evidence, _) = servers.values(|a| {
        if a.bool("disable-kube-proxy") {
            "--disable-kube-proxy → no kube-proxy".into()
        } else {
            "no --disable-kube-proxy → embedded kube-proxy runs".into()
        }
    });
    evidence.push(
        "k3s runs kube-proxy inside the k3s process on every node: there is no kube-proxy DaemonSet or Pod, so \
         `kubectl -n kube-system get ds kube-proxy` answers NotFound even while kube-proxy is active; the servers' \
         k3s.io/node-args are the evidence"
            .into(),
    );
    if let Ok(ds) = &snap.daemonsets
        && let Some(kp) = ds.iter().find(|d| d.metadata.name.as_deref() == Some("kube-proxy"))
    {
        evidence.push(format!("a kube-proxy DaemonSet {} exists too (not k3s' embedded one)", ns_name(&kp.metadata)));
    }
    let disabled: BTreeSet<bool> = servers.parsed().0.iter().map(|(_, a)| a.bool("disable-kube-proxy")).collect();
    if disabled.len() > 1 {
        return check(
            id,
            title,
            Status::Warn,
            evidence,
            "servers disagree on disable-kube-proxy (not a critical flag, but agents follow whichever server they \
             ask at start): make it the same everywhere",
        );
    }
    if disabled.contains(&true) {
        return match cilium_daemonset(snap) {
            Some(_) => {
                check(id, title, Status::Pass, evidence, "Cilium must run with kubeProxyReplacement \"true\" (Stage 2)")
            }
            None => check(
                id,
                title,
                Status::Fail,
                evidence,
                "kube-proxy is off and Cilium is not installed: Services have no proxy; remove disable-kube-proxy or \
                 install Cilium with kubeProxyReplacement \"true\"",
            ),
        };
    }
    check(id, title, Status::Pass, evidence, "")
}

fn k3s_network_policy(servers: &ServerView) -> Check {
    let (id, title) = ("k3s-network-policy", "Embedded network-policy controller (disable-network-policy)");
    if let Some(c) = servers.unusable(id, title) {
        return c;
    }
    let (evidence, _) = servers.values(|a| {
        if a.bool("disable-network-policy") {
            "--disable-network-policy".into()
        } else {
            "no --disable-network-policy → kube-router network policy runs".into()
        }
    });
    let disabled: BTreeSet<bool> = servers.parsed().0.iter().map(|(_, a)| a.bool("disable-network-policy")).collect();
    if disabled.len() > 1 {
        return check(
            id,
            title,
            Status::Fail,
            evidence,
            "make disable-network-policy the same on every server (critical flag)",
        );
    }
    if disabled.contains(&true) {
        return check(id, title, Status::Pass, evidence, "");
    }
    check(
        id,
        title,
        Status::Warn,
        evidence,
        "Stage 1 needs disable-network-policy: true on every server, together with flannel-backend: none",
    )
}

fn flannel_annotations(snap: &ClusterSnapshot, servers: &ServerView) -> Check {
    let (id, title) = ("k3s-flannel-annotations", "flannel.alpha.coreos.com annotations");
    let nodes = match &snap.nodes {
        Ok(n) => n,
        Err(e) => return unread(id, title, e),
    };
    let mut evidence = Vec::new();
    for n in nodes {
        let a = k3s::flannel_annotations(n);
        if !a.is_empty() {
            let backend = a.get("backend-type").map_or("?", String::as_str);
            let ip = a.get("public-ip").map_or("?", String::as_str);
            evidence.push(format!("{}: backend-type {backend}, public-ip {ip}", node_name(n)));
        }
    }
    if evidence.is_empty() {
        return check(id, title, Status::Pass, vec!["no node carries flannel annotations".into()], "");
    }
    let (parsed, _) = servers.parsed();
    let flannel_on: BTreeSet<bool> = parsed.iter().map(|(_, a)| a.flannel_enabled()).collect();
    if flannel_on == BTreeSet::from([false]) {
        evidence.push(
            "STALE: the servers run with flannel-backend none and flannel never removes its annotations; they do not \
             mean flannel is running"
                .into(),
        );
        check(id, title, Status::Pass, evidence, "nothing to do (they may be removed by hand)")
    } else if flannel_on == BTreeSet::from([true]) {
        evidence.push("consistent with embedded flannel running (see k3s-flannel)".into());
        check(id, title, Status::Pass, evidence, "")
    } else {
        evidence
            .push("cannot tell from node-args whether flannel still runs: the annotations alone prove nothing".into());
        check(id, title, Status::Warn, evidence, "check the servers' k3s.io/node-args")
    }
}

fn server_flags(servers: &ServerView) -> Check {
    let (id, title) = ("k3s-server-flags", "k3s flags identical on every server");
    if let Some(c) = servers.unusable(id, title) {
        return c;
    }
    let (parsed, notes) = servers.parsed();
    if parsed.len() < 2 {
        let mut ev = vec![format!("{} server(s) with readable node-args: nothing to compare", parsed.len())];
        ev.extend(notes);
        return check(id, title, Status::Pass, ev, "");
    }
    // Critical: a restarting server whose value differs refuses to start.
    let critical: [(&str, FlagValue); 4] = [
        ("flannel-backend", |a| a.flannel_backend()),
        ("disable-network-policy", |a| a.bool("disable-network-policy").to_string()),
        ("cluster-cidr", |a| a.value("cluster-cidr").unwrap_or("10.42.0.0/16").to_string()),
        ("service-cidr", |a| a.value("service-cidr").unwrap_or("10.43.0.0/16").to_string()),
    ];
    let mut evidence = Vec::new();
    let mut status = Status::Pass;
    for (flag, f) in critical {
        let vals: BTreeSet<String> = parsed.iter().map(|(_, a)| f(a)).collect();
        if vals.len() > 1 {
            status = Status::Fail;
            let per: Vec<String> = parsed.iter().map(|(n, a)| format!("{n}={}", f(a))).collect();
            evidence.push(format!("CRITICAL mismatch {flag}: {}", per.join(", ")));
        } else {
            evidence.push(format!(
                "{flag}: {} on all {} servers",
                vals.into_iter().next().unwrap_or_default(),
                parsed.len()
            ));
        }
    }
    let kp: BTreeSet<bool> = parsed.iter().map(|(_, a)| a.bool("disable-kube-proxy")).collect();
    if kp.len() > 1 {
        if status == Status::Pass {
            status = Status::Warn;
        }
        evidence.push("disable-kube-proxy differs between servers (not a critical flag)".into());
    }
    evidence.extend(notes);
    let action = match status {
        Status::Fail => {
            "write the same k3s config on every server before restarting any of them (critical configuration value mismatch)"
        }
        Status::Warn => "make disable-kube-proxy the same on every server",
        _ => "",
    };
    check(id, title, status, evidence, action)
}

fn cni_daemonsets(snap: &ClusterSnapshot) -> Check {
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

fn pod_cidr(snap: &ClusterSnapshot, s: &Settings, servers: &ServerView) -> Check {
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
            evidence.push(format!("{name}: --cluster-cidr {cc} differs from cutover.toml {}", s.cluster.pod_cidr));
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

fn service_cidr(snap: &ClusterSnapshot, s: &Settings, servers: &ServerView) -> Check {
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
                evidence
                    .push(format!("{name}: --service-cidr {sc} differs from cutover.toml {}", s.cluster.service_cidr));
            } else {
                evidence.push(format!("{name}: --service-cidr {sc}"));
            }
        }
    }
    let action = if status == Status::Fail { "fix cluster.service_cidr in cutover.toml" } else { "" };
    check(id, title, status, evidence, action)
}

/// `6.8.0-45-generic` → (6, 8).
fn kernel_version(k: &str) -> Option<(u32, u32)> {
    let mut it = k.split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn node_kernel(snap: &ClusterSnapshot, s: &Settings) -> Check {
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

fn node_os_arch(snap: &ClusterSnapshot) -> Check {
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

fn argocd_installed(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("argocd-installed", "Argo CD installed");
    match &snap.applications {
        Ok(apps) => {
            let mut evidence = vec![format!("{} Application(s) in namespace {}", apps.len(), s.argo.namespace)];
            if let Ok(deps) = &snap.deployments {
                for d in deps.iter().filter(|d| d.metadata.namespace.as_deref() == Some(s.argo.namespace.as_str())) {
                    let (r, w) = deploy_ready(d);
                    evidence.push(format!("{}: {r}/{w} ready", ns_name(&d.metadata)));
                }
            }
            check(id, title, Status::Pass, evidence, "")
        }
        Err(e) if e.kind == FetchErrorKind::NotFound => check(
            id,
            title,
            Status::Fail,
            vec![format!("applications.argoproj.io is not served ({e})")],
            "install Argo CD first: the plan rolls Cilium out through it",
        ),
        Err(e) => unread(id, title, e),
    }
}

fn app_named<'a>(apps: &'a [Value], name: &str) -> Option<&'a Value> {
    apps.iter().find(|a| a.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
}

fn app_sources(app: &Value) -> Vec<&Value> {
    let mut v: Vec<&Value> =
        app.pointer("/spec/sources").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    if let Some(s) = app.pointer("/spec/source") {
        v.push(s);
    }
    v
}

fn norm_repo(u: &str) -> String {
    u.trim().trim_end_matches('/').trim_end_matches(".git").to_ascii_lowercase()
}

fn norm_path(p: &str) -> &str {
    p.trim().trim_start_matches("./").trim_matches('/')
}

/// Glob as Argo CD's directory include/exclude: `*`, `?`, `{a,b}`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if let (Some(open), Some(close)) = (pattern.find('{'), pattern.find('}'))
        && open < close
    {
        let (pre, rest) = pattern.split_at(open);
        let alts = &rest[1..close - open];
        let post = &rest[close - open + 1..];
        return alts.split(',').any(|alt| glob_match(&format!("{pre}{alt}{post}"), name));
    }
    fn m(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => m(&p[1..], n) || (!n.is_empty() && n[0] != '/' && m(p, &n[1..])),
            (Some('?'), Some(c)) if *c != '/' => m(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
}

fn argo_root_app(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("argo-root-app", "Root app watches the apps path");
    let apps = match &snap.applications {
        Ok(a) => a,
        Err(e) if e.kind == FetchErrorKind::NotFound => {
            return check(id, title, Status::Fail, vec![e.to_string()], "install Argo CD and the root app first");
        }
        Err(e) => return unread(id, title, e),
    };
    let want_path = norm_path(&s.git.apps_path);
    let file = s.cilium_app_file();
    let Some(root) = app_named(apps, &s.argo.root_app) else {
        let watchers: Vec<String> = apps
            .iter()
            .filter(|a| {
                app_sources(a)
                    .iter()
                    .any(|src| src.get("path").and_then(Value::as_str).map(norm_path) == Some(want_path))
            })
            .filter_map(|a| a.pointer("/metadata/name").and_then(Value::as_str).map(String::from))
            .collect();
        let mut evidence = vec![format!("no Application {:?} in {}", s.argo.root_app, s.argo.namespace)];
        let action = if watchers.is_empty() {
            format!("create the root app watching {want_path}, or {file} is never picked up")
        } else {
            evidence.push(format!("watching {want_path}: {}", watchers.join(", ")));
            format!("set argo.root_app = {:?} in cutover.toml", watchers[0])
        };
        return check(id, title, Status::Fail, evidence, action);
    };
    let mut evidence = Vec::new();
    let mut status = Status::Pass;
    let mut actions: Vec<String> = Vec::new();
    let srcs = app_sources(root);
    let watching = srcs.iter().find(|src| src.get("path").and_then(Value::as_str).map(norm_path) == Some(want_path));
    match watching {
        None => {
            let paths: Vec<String> = srcs
                .iter()
                .map(|src| src.get("path").and_then(Value::as_str).unwrap_or("<no path>").to_string())
                .collect();
            evidence.push(format!("{} watches {}, not {want_path}", s.argo.root_app, paths.join(", ")));
            status = Status::Fail;
            actions.push(format!("point the root app at {want_path} or fix git.apps_path"));
        }
        Some(src) => {
            let repo = src.get("repoURL").and_then(Value::as_str).unwrap_or("");
            let rev = src.get("targetRevision").and_then(Value::as_str).unwrap_or("HEAD");
            evidence.push(format!("source {repo} @ {rev}, path {want_path}"));
            if norm_repo(repo) != norm_repo(&s.git.repo_url) {
                status = Status::Warn;
                evidence.push(format!("repoURL differs from cutover.toml git.repo_url {}", s.git.repo_url));
                actions.push("check git.repo_url".into());
            }
            let include = src.pointer("/directory/include").and_then(Value::as_str).unwrap_or("");
            let exclude = src.pointer("/directory/exclude").and_then(Value::as_str).unwrap_or("");
            if !include.is_empty() {
                if glob_match(include, &file) {
                    evidence.push(format!("directory.include {include:?} matches {file}"));
                } else {
                    status = Status::Fail;
                    evidence.push(format!("directory.include {include:?} does NOT match {file}"));
                    actions.push(format!("name the file to match {include:?} (argo.cilium_app) or widen the include"));
                }
            }
            if !exclude.is_empty() && glob_match(exclude, &file) {
                status = Status::Fail;
                evidence.push(format!("directory.exclude {exclude:?} matches {file}"));
                actions.push("narrow the root app's exclude".into());
            }
        }
    }
    let automated = root.pointer("/spec/syncPolicy/automated").filter(|a| !a.is_null());
    let enabled = automated.is_some_and(|a| a.get("enabled").and_then(Value::as_bool) != Some(false));
    if enabled {
        let flag = |k: &str| automated.and_then(|a| a.get(k)).and_then(Value::as_bool).unwrap_or(false);
        evidence.push(format!("automated sync on (prune {}, selfHeal {})", flag("prune"), flag("selfHeal")));
        if flag("selfHeal") {
            evidence.push(format!(
                "selfHeal: a live change to {} (e.g. turning off its auto-sync for a rollback) is reverted from git \
                 within seconds: freeze the root first or make the change in git",
                s.argo.cilium_app
            ));
        }
        if flag("prune") {
            evidence.push(format!(
                "prune: removing {file} from git deletes {} and, through its finalizer, Cilium itself",
                s.argo.cilium_app
            ));
        }
    } else {
        status = status.max(Status::Warn);
        evidence.push("automated sync off: a commit to the apps path does nothing until the root is synced".into());
        actions.push(format!("sync {} by hand after each commit (or enable automated sync)", s.argo.root_app));
    }
    check(id, title, status, evidence, actions.join("; "))
}

fn argo_cilium_app(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("argo-cilium-app", "Cilium Application");
    let apps = match &snap.applications {
        Ok(a) => a,
        Err(e) => return unread(id, title, e),
    };
    let Some(app) = app_named(apps, &s.argo.cilium_app) else {
        return check(
            id,
            title,
            Status::Pass,
            vec![format!("{} does not exist yet: the Stage 1 commit creates it", s.argo.cilium_app)],
            "",
        );
    };
    let text = |p: &str| app.pointer(p).and_then(Value::as_str).unwrap_or("?").to_string();
    let mut evidence = vec![format!(
        "{}: sync {}, health {}",
        s.argo.cilium_app,
        text("/status/sync/status"),
        text("/status/health/status")
    )];
    let mut status = Status::Pass;
    let mut action = String::new();
    if let Some(chart) = app_sources(app).into_iter().find(|src| src.get("chart").is_some()) {
        let rev = chart.get("targetRevision").and_then(Value::as_str).unwrap_or("?");
        evidence.push(format!("chart {} {rev}", chart.get("chart").and_then(Value::as_str).unwrap_or("?")));
        if rev != s.cilium.chart_version {
            status = Status::Warn;
            action = format!("cutover.toml pins {}; render and commit to align", s.cilium.chart_version);
        }
    }
    for c in app.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten() {
        let t = c.get("type").and_then(Value::as_str).unwrap_or("");
        let m = c.get("message").and_then(Value::as_str).unwrap_or("");
        evidence.push(format!("condition {t}: {m}"));
        if t == "ComparisonError" || t == "InvalidSpecError" {
            status = Status::Fail;
            action = "the chart does not render: run `cutover lint` on the values file".into();
        }
    }
    check(id, title, status, evidence, action)
}

fn servicemonitor_crds(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("servicemonitor-crds", "Prometheus Operator CRDs for the ServiceMonitors");
    let has = snap.has_crd("servicemonitors.monitoring.coreos.com", MONITORING_API);
    let seen = match (has, &snap.crds, &snap.api_versions) {
        (Some(true), _, _) => "servicemonitors.monitoring.coreos.com is installed".to_string(),
        (Some(false), _, _) => "servicemonitors.monitoring.coreos.com is NOT installed".to_string(),
        (None, Err(a), Err(b)) => format!("could not read the CRDs ({a}) nor discovery ({b})"),
        (None, _, _) => "could not read the CRDs nor discovery".to_string(),
    };
    let evidence =
        vec![seen, format!("cutover.toml cilium.service_monitors = \"{}\"", s.cilium.service_monitors.as_str())];
    match (s.cilium.service_monitors, has) {
        (ServiceMonitors::Off, _) => check(id, title, Status::Pass, evidence, ""),
        (_, Some(true)) => check(id, title, Status::Pass, evidence, ""),
        (ServiceMonitors::On, Some(false)) => check(
            id,
            title,
            Status::Fail,
            evidence,
            "the chart fails to render (\"Service Monitor requires monitoring.coreos.com/v1 CRDs\"): install the \
             Prometheus Operator CRDs or set cilium.service_monitors = \"auto\"",
        ),
        (ServiceMonitors::Auto, Some(false)) => check(
            id,
            title,
            Status::Pass,
            evidence,
            "ServiceMonitors stay off in the rendered values (the plan wanted them: install the CRDs to get them)",
        ),
        (_, None) => check(id, title, Status::Unknown, evidence, "render with ServiceMonitors off until this is known"),
    }
}

fn cluster_issuer(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("hubble-cluster-issuer", "ClusterIssuer for the Hubble UI certificate");
    let name = &s.hubble.cluster_issuer;
    match &snap.cluster_issuers {
        Ok(list) => match list.iter().find(|i| i.pointer("/metadata/name").and_then(Value::as_str) == Some(name)) {
            Some(i) => {
                let ready = i
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
                let ok = ready.and_then(|c| c.get("status")).and_then(Value::as_str) == Some("True");
                let msg = ready.and_then(|c| c.get("message")).and_then(Value::as_str).unwrap_or("");
                let ev = vec![format!("ClusterIssuer {name}: Ready {} {msg}", if ok { "True" } else { "not True" })];
                if ok {
                    check(id, title, Status::Pass, ev, "")
                } else {
                    check(id, title, Status::Warn, ev, "fix the ClusterIssuer, or the Hubble UI gets no certificate")
                }
            }
            None => {
                let names: Vec<&str> =
                    list.iter().filter_map(|i| i.pointer("/metadata/name").and_then(Value::as_str)).collect();
                check(
                    id,
                    title,
                    Status::Warn,
                    vec![format!(
                        "no ClusterIssuer {name}; present: {}",
                        if names.is_empty() { "none".into() } else { names.join(", ") }
                    )],
                    "set hubble.cluster_issuer in cutover.toml to an existing issuer",
                )
            }
        },
        Err(e) if e.kind == FetchErrorKind::NotFound => check(
            id,
            title,
            Status::Warn,
            vec![format!("cert-manager is not installed ({e})")],
            "install cert-manager or provide the TLS secret yourself; Cilium itself does not need it",
        ),
        Err(e) => unread(id, title, e),
    }
}

fn ingress_class(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("hubble-ingress-class", "IngressClass for the Hubble UI");
    let classes = match &snap.ingress_classes {
        Ok(c) => c,
        Err(e) => return unread(id, title, e),
    };
    let want = &s.hubble.ingress_class;
    match classes.iter().find(|c| c.metadata.name.as_deref() == Some(want.as_str())) {
        Some(c) => {
            let ctrl = c.spec.as_ref().and_then(|s| s.controller.clone()).unwrap_or_default();
            check(id, title, Status::Pass, vec![format!("IngressClass {want} (controller {ctrl})")], "")
        }
        None => {
            let names: Vec<&str> = classes.iter().filter_map(|c| c.metadata.name.as_deref()).collect();
            check(
                id,
                title,
                Status::Warn,
                vec![format!(
                    "no IngressClass {want}; present: {}",
                    if names.is_empty() { "none".into() } else { names.join(", ") }
                )],
                "set hubble.ingress_class in cutover.toml",
            )
        }
    }
}

/// Workloads of a component: (name, ready, wanted) for DaemonSets and Deployments matching `pick`.
fn workloads(
    snap: &ClusterSnapshot,
    pick: impl Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool,
) -> Result<Vec<(String, i32, i32)>, FetchError> {
    let mut out = Vec::new();
    for d in snap.daemonsets.as_ref().map_err(Clone::clone)? {
        if pick(&d.metadata) {
            let (r, w) = ds_ready(d);
            out.push((format!("DaemonSet {}", ns_name(&d.metadata)), r, w));
        }
    }
    for d in snap.deployments.as_ref().map_err(Clone::clone)? {
        if pick(&d.metadata) {
            let (r, w) = deploy_ready(d);
            out.push((format!("Deployment {}", ns_name(&d.metadata)), r, w));
        }
    }
    Ok(out)
}

fn readiness_check(
    id: &str,
    title: &str,
    found: Vec<(String, i32, i32)>,
    absent: (Status, &str),
    unready_action: &str,
) -> Check {
    if found.is_empty() {
        return check(
            id,
            title,
            absent.0,
            vec![absent.1.to_string()],
            if absent.0 == Status::Pass { "" } else { unready_action },
        );
    }
    let mut status = Status::Pass;
    let evidence = found
        .into_iter()
        .map(|(n, r, w)| {
            if r < w {
                status = Status::Warn;
            }
            format!("{n}: {r}/{w} ready")
        })
        .collect();
    check(id, title, status, evidence, if status == Status::Pass { "" } else { unready_action })
}

fn metallb(snap: &ClusterSnapshot) -> Check {
    let (id, title) = ("metallb", "MetalLB (LoadBalancer IPs)");
    let found = workloads(snap, |m| {
        m.namespace.as_deref().is_some_and(|n| n.contains("metallb"))
            || m.labels.as_ref().is_some_and(|l| {
                l.get("app.kubernetes.io/name").is_some_and(|v| v == "metallb")
                    || l.get("app").is_some_and(|v| v == "metallb")
            })
    });
    match found {
        Ok(f) => readiness_check(
            id,
            title,
            f,
            (Status::Warn, "no MetalLB controller/speaker found: LoadBalancer Services (HAProxy) get no external IP"),
            "fix MetalLB before the cutover: a drain must not be confused with an LB outage",
        ),
        Err(e) => unread(id, title, &e),
    }
}

fn longhorn(snap: &ClusterSnapshot) -> Check {
    let (id, title) = ("longhorn", "Longhorn healthy");
    match workloads(snap, |m| m.namespace.as_deref() == Some("longhorn-system")) {
        Ok(f) => readiness_check(
            id,
            title,
            f,
            (Status::Pass, "no workloads in longhorn-system: Longhorn not installed"),
            "let Longhorn become healthy first: draining a node that holds the last healthy replica loops on its PDB",
        ),
        Err(e) => unread(id, title, &e),
    }
}

fn schedulable(nodes: &[Node]) -> Vec<&Node> {
    nodes.iter().filter(|n| k3s::is_schedulable(n)).collect()
}

fn operator_replicas(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("operator-replicas", "cilium-operator replicas vs schedulable nodes");
    let nodes = match &snap.nodes {
        Ok(n) => n,
        Err(e) => return unread(id, title, e),
    };
    let sched = schedulable(nodes);
    let n = sched.len();
    let r = s.cilium.operator_replicas as usize;
    let mut evidence = vec![
        format!("cutover.toml cilium.operator_replicas = {r}"),
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

fn drain_checks(snap: &ClusterSnapshot) -> Vec<Check> {
    let nodes = match &snap.nodes {
        Ok(n) => n,
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for node in nodes {
        let name = node_name(node);
        let id = format!("drain/{name}");
        let title = "Drain readiness (kubectl drain --ignore-daemonsets)".to_string();
        let (pods, pdbs) = match (&snap.pods, &snap.pdbs) {
            (Ok(p), Ok(d)) => (p, d),
            (Err(e), _) | (_, Err(e)) => {
                out.push(unread(&id, &title, e));
                continue;
            }
        };
        let r = drain::report(name, pods, pdbs);
        let mut evidence = vec![format!("{} pod(s) to evict", r.evictable)];
        let mut status = Status::Pass;
        let mut actions = Vec::new();
        if !r.daemonset_pods.is_empty() {
            evidence.push(format!(
                "{} DaemonSet pod(s) stay (drain needs --ignore-daemonsets): {}",
                r.daemonset_pods.len(),
                r.daemonset_pods.join(", ")
            ));
        }
        if !r.mirror_pods.is_empty() {
            evidence.push(format!("static/mirror pods skipped: {}", r.mirror_pods.join(", ")));
        }
        if !r.emptydir_pods.is_empty() {
            status = Status::Warn;
            evidence.push(format!("emptyDir data is lost (--delete-emptydir-data): {}", r.emptydir_pods.join(", ")));
            actions.push("accept losing their emptyDir data");
        }
        if !r.unmanaged_pods.is_empty() {
            status = Status::Warn;
            evidence.push(format!("no controller, deleted for good (--force): {}", r.unmanaged_pods.join(", ")));
            actions.push("recreate or move pods without a controller yourself");
        }
        let (longhorn, other): (Vec<_>, Vec<_>) =
            r.blocked_by_pdb.iter().partition(|(_, pdb)| pdb.starts_with("longhorn-system/instance-manager"));
        for (pod, pdb) in &other {
            status = Status::Fail;
            evidence.push(format!(
                "PDB {pdb} allows 0 disruptions and covers {pod}: evictions answer 429 until it allows one"
            ));
        }
        if !other.is_empty() {
            actions.push("scale up or wait until the PDB allows a disruption");
        }
        for (pod, pdb) in &longhorn {
            status = status.max(Status::Warn);
            evidence.push(format!(
                "Longhorn PDB {pdb} allows 0 disruptions (covers {pod}): the drain retries on 429 until Longhorn has \
                 rebuilt this node's replicas elsewhere and removes the PDB (its node drain policy decides)"
            ));
        }
        if !longhorn.is_empty() {
            actions.push("expect the drain to wait for Longhorn; check volume health and the node drain policy first");
        }
        if !r.multi_pdb_pods.is_empty() {
            status = Status::Fail;
            evidence.push(format!("more than one PDB selects {} (eviction answers 500)", r.multi_pdb_pods.join(", ")));
            actions.push("make each pod covered by at most one PDB");
        }
        // The worst problem goes first (the table shows the first line).
        let worst = |e: &String| e.starts_with("PDB ") || e.starts_with("more than one PDB");
        if let Some(i) =
            evidence.iter().position(worst).or_else(|| evidence.iter().position(|e| e.starts_with("Longhorn PDB")))
        {
            let line = evidence.remove(i);
            evidence.insert(0, line);
        }
        out.push(check(&id, &title, status, evidence, actions.join("; ")));
    }
    out
}

fn access_checks(snap: &ClusterSnapshot) -> Vec<Check> {
    snap.access
        .iter()
        .map(|a| {
            let res =
                if a.subresource.is_empty() { a.resource.clone() } else { format!("{}-{}", a.resource, a.subresource) };
            let id = format!("access/{}-{res}", a.verb);
            let title = format!("May {}", a.what());
            match &a.result {
                Ok(d) if d.allowed => {
                    check(&id, &title, Status::Pass, vec![format!("allowed: {} (to {})", a.what(), a.purpose)], "")
                }
                Ok(d) => {
                    let mut ev = vec![format!("REFUSED: {} (needed to {})", a.what(), a.purpose)];
                    if !d.reason.is_empty() {
                        ev.push(d.reason.clone());
                    }
                    check(
                        &id,
                        &title,
                        Status::Warn,
                        ev,
                        format!(
                            "the cockpit cannot {} with this identity (watching still works); use a context that may",
                            a.purpose
                        ),
                    )
                }
                Err(e) => unread(&id, &title, e),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::snapshot::{AccessDecision, AccessReview};
    use k8s_openapi::api::apps::v1::{DaemonSetStatus, DeploymentSpec, DeploymentStatus};
    use k8s_openapi::api::core::v1::{
        NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Pod, PodSpec, Service, ServiceSpec,
    };
    use k8s_openapi::api::networking::v1::{IngressClass, IngressClassSpec};
    use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta { name: Some(name.into()), namespace: ns.map(String::from), ..Default::default() }
    }

    /// A k3s node. `args` are the node-args after the role; `flannel` adds flannel's annotations.
    fn node(name: &str, server: bool, args: &[&str], cidr: &str, flannel: bool) -> Node {
        let mut argv = vec![if server { "server" } else { "agent" }.to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut ann = BTreeMap::new();
        ann.insert(k3s::NODE_ARGS.to_string(), serde_json::to_string(&argv).unwrap_or_default());
        if flannel {
            ann.insert("flannel.alpha.coreos.com/backend-type".into(), "vxlan".into());
            ann.insert("flannel.alpha.coreos.com/public-ip".into(), "192.168.1.10".into());
        }
        let mut labels = BTreeMap::new();
        if server {
            labels.insert("node-role.kubernetes.io/control-plane".to_string(), "true".to_string());
        }
        Node {
            metadata: ObjectMeta { annotations: Some(ann), labels: Some(labels), ..meta(None, name) },
            spec: Some(NodeSpec {
                pod_cidr: Some(cidr.into()),
                pod_cidrs: Some(vec![cidr.into()]),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                node_info: Some(NodeSystemInfo {
                    kubelet_version: "v1.32.6+k3s1".into(),
                    kernel_version: "6.8.0-45-generic".into(),
                    os_image: "Ubuntu 24.04.1 LTS".into(),
                    operating_system: "linux".into(),
                    architecture: "amd64".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    fn ds(ns: &str, name: &str, ready: i32, want: i32) -> DaemonSet {
        DaemonSet {
            metadata: meta(Some(ns), name),
            spec: None,
            status: Some(DaemonSetStatus { number_ready: ready, desired_number_scheduled: want, ..Default::default() }),
        }
    }

    fn deploy(ns: &str, name: &str, ready: i32, want: i32) -> Deployment {
        Deployment {
            metadata: meta(Some(ns), name),
            spec: Some(DeploymentSpec { replicas: Some(want), ..Default::default() }),
            status: Some(DeploymentStatus { ready_replicas: Some(ready), ..Default::default() }),
        }
    }

    fn root_app(include: &str, self_heal: bool) -> Value {
        json!({
            "metadata": {"name": "root", "namespace": "argocd"},
            "spec": {
                "source": {
                    "repoURL": "https://github.com/rrumana/k8s-homelab.git",
                    "targetRevision": "main",
                    "path": "platform/gitops/argocd/apps",
                    "directory": {"include": include}
                },
                "syncPolicy": {"automated": {"prune": true, "selfHeal": self_heal}}
            }
        })
    }

    /// Today's homelab: one server and two agents on embedded flannel, Argo CD, MetalLB, Longhorn.
    fn fresh() -> ClusterSnapshot {
        let mut s = ClusterSnapshot::empty();
        s.nodes = Ok(vec![
            node("cp-1", true, &["--cluster-init", "--disable", "traefik"], "10.42.0.0/24", true),
            node("worker-1", false, &["--server", "https://192.168.1.10:6443"], "10.42.1.0/24", true),
            node("worker-2", false, &["--server", "https://192.168.1.10:6443"], "10.42.2.0/24", true),
        ]);
        s.services = Ok(vec![Service {
            metadata: meta(Some("default"), "kubernetes"),
            spec: Some(ServiceSpec { cluster_ip: Some("10.43.0.1".into()), ..Default::default() }),
            status: None,
        }]);
        s.daemonsets = Ok(vec![ds("metallb-system", "speaker", 3, 3), ds("longhorn-system", "longhorn-manager", 3, 3)]);
        s.deployments = Ok(vec![
            deploy("metallb-system", "controller", 1, 1),
            deploy("longhorn-system", "longhorn-driver-deployer", 1, 1),
            deploy("argocd", "argocd-server", 1, 1),
        ]);
        s.ingress_classes = Ok(vec![IngressClass {
            metadata: meta(None, "haproxy-restricted"),
            spec: Some(IngressClassSpec {
                controller: Some("haproxy-ingress.github.io/controller".into()),
                ..Default::default()
            }),
        }]);
        s.crds = Ok(vec!["applications.argoproj.io".into(), "clusterissuers.cert-manager.io".into()]);
        s.applications = Ok(vec![root_app("*-app.yaml", true)]);
        s.cluster_issuers = Ok(vec![json!({
            "metadata": {"name": "letsencrypt-prod"},
            "status": {"conditions": [{"type": "Ready", "status": "True", "message": "ACME account registered"}]}
        })]);
        s
    }

    fn by_id<'a>(checks: &'a [Check], id: &str) -> &'a Check {
        checks.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no check {id}"))
    }

    fn ev(c: &Check) -> String {
        c.evidence.join("\n")
    }

    #[test]
    fn fresh_flannel_cluster() {
        let checks = evaluate(&fresh(), &Settings::default());
        let flannel = by_id(&checks, "k3s-flannel");
        assert_eq!(flannel.status, Status::Warn, "{flannel:?}");
        assert!(ev(flannel).contains("cp-1: no --flannel-backend"), "{flannel:?}");
        assert!(flannel.action.contains("flannel-backend: none"));
        let kp = by_id(&checks, "k3s-kube-proxy");
        assert_eq!(kp.status, Status::Pass);
        assert!(ev(kp).contains("get ds kube-proxy` answers NotFound"), "{kp:?}");
        assert_eq!(by_id(&checks, "k3s-network-policy").status, Status::Warn);
        let ann = by_id(&checks, "k3s-flannel-annotations");
        assert_eq!(ann.status, Status::Pass);
        assert!(ev(ann).contains("consistent with embedded flannel running"));
        let compat = by_id(&checks, "cilium-chart-compat");
        assert_eq!(compat.status, Status::Warn);
        assert!(compat.action.contains("1.17.x"), "{compat:?}");
        for id in [
            "api-reachable",
            "k8s-version",
            "k3s-server-flags",
            "cni-daemonsets",
            "pod-cidr",
            "service-cidr",
            "node-kernel",
            "node-os-arch",
            "argocd-installed",
            "argo-root-app",
            "argo-cilium-app",
            "servicemonitor-crds",
            "hubble-cluster-issuer",
            "hubble-ingress-class",
            "metallb",
            "longhorn",
            "operator-replicas",
            "drain/cp-1",
            "drain/worker-2",
        ] {
            assert_eq!(by_id(&checks, id).status, Status::Pass, "{:?}", by_id(&checks, id));
        }
        let root = by_id(&checks, "argo-root-app");
        assert!(ev(root).contains("directory.include \"*-app.yaml\" matches cilium-app.yaml"), "{root:?}");
        assert!(ev(root).contains("selfHeal: a live change to cilium-app"), "{root:?}");
        assert_eq!(crate::checks::exit_code(&checks), 2);
    }

    #[test]
    fn chart_1_17_on_1_32_passes() {
        let mut s = Settings::default();
        s.cilium.chart_version = "1.17.6".into();
        assert_eq!(by_id(&evaluate(&fresh(), &s), "cilium-chart-compat").status, Status::Pass);
    }

    #[test]
    fn half_migrated_servers_disagree() {
        let mut snap = fresh();
        snap.nodes = Ok(vec![
            node(
                "cp-1",
                true,
                &["--cluster-init", "--flannel-backend", "none", "--disable-network-policy"],
                "10.42.0.0/24",
                true,
            ),
            node("cp-2", true, &["--server", "https://192.168.1.10:6443"], "10.42.1.0/24", true),
            node("worker-1", false, &[], "10.42.2.0/24", true),
        ]);
        let checks = evaluate(&snap, &Settings::default());
        let flags = by_id(&checks, "k3s-server-flags");
        assert_eq!(flags.status, Status::Fail, "{flags:?}");
        assert!(ev(flags).contains("CRITICAL mismatch flannel-backend: cp-1=none, cp-2=vxlan"), "{flags:?}");
        assert!(ev(flags).contains("CRITICAL mismatch disable-network-policy"));
        assert_eq!(by_id(&checks, "k3s-flannel").status, Status::Fail);
        assert_eq!(by_id(&checks, "k3s-network-policy").status, Status::Fail);
        assert_eq!(by_id(&checks, "k3s-flannel-annotations").status, Status::Warn);
        assert_eq!(crate::checks::exit_code(&checks), 1);
    }

    #[test]
    fn migrated_cluster_reports_stale_annotations() {
        let mut snap = fresh();
        let args = ["--flannel-backend", "none", "--disable-network-policy", "--disable-kube-proxy", "true"];
        snap.nodes = Ok(vec![
            node("cp-1", true, &args, "10.42.0.0/24", true),
            node("worker-1", false, &[], "10.42.1.0/24", true),
        ]);
        if let Ok(d) = &mut snap.daemonsets {
            d.push(DaemonSet {
                metadata: ObjectMeta {
                    labels: Some([("k8s-app".to_string(), "cilium".to_string())].into()),
                    ..meta(Some("kube-system"), "cilium")
                },
                spec: None,
                status: Some(DaemonSetStatus { number_ready: 2, desired_number_scheduled: 2, ..Default::default() }),
            });
        }
        let checks = evaluate(&snap, &Settings::default());
        assert_eq!(by_id(&checks, "k3s-flannel").status, Status::Pass);
        let ann = by_id(&checks, "k3s-flannel-annotations");
        assert_eq!(ann.status, Status::Pass);
        assert!(ev(ann).contains("STALE") && ev(ann).contains("do not mean flannel is running"), "{ann:?}");
        let kp = by_id(&checks, "k3s-kube-proxy");
        assert_eq!(kp.status, Status::Pass);
        assert!(kp.action.contains("kubeProxyReplacement"));
        let cni = by_id(&checks, "cni-daemonsets");
        assert_eq!(cni.status, Status::Pass);
        assert!(ev(cni).contains("kube-system/cilium (cilium): 2/2 ready"));
    }

    #[test]
    fn kube_proxy_off_without_cilium_fails() {
        let mut snap = fresh();
        snap.nodes = Ok(vec![node("cp-1", true, &["--disable-kube-proxy"], "10.42.0.0/24", false)]);
        assert_eq!(by_id(&evaluate(&snap, &Settings::default()), "k3s-kube-proxy").status, Status::Fail);
    }

    #[test]
    fn flannel_on_with_cilium_installed_fails() {
        let mut snap = fresh();
        if let Ok(d) = &mut snap.daemonsets {
            d.push(ds("kube-system", "cilium", 3, 3));
        }
        assert_eq!(by_id(&evaluate(&snap, &Settings::default()), "k3s-flannel").status, Status::Fail);
    }

    #[test]
    fn other_cni_daemonset_fails() {
        let mut snap = fresh();
        if let Ok(d) = &mut snap.daemonsets {
            d.push(ds("kube-system", "calico-node", 3, 3));
        }
        let c = evaluate(&snap, &Settings::default());
        assert_eq!(by_id(&c, "cni-daemonsets").status, Status::Fail);
    }

    #[test]
    fn crds_missing() {
        let mut snap = fresh();
        snap.applications = Err(FetchError::new(
            "applications.argoproj.io",
            FetchErrorKind::NotFound,
            "the server could not find the requested resource",
        ));
        snap.cluster_issuers = Err(FetchError::new("clusterissuers.cert-manager.io", FetchErrorKind::NotFound, ""));
        let mut s = Settings::default();
        s.cilium.service_monitors = ServiceMonitors::On;
        let checks = evaluate(&snap, &s);
        assert_eq!(by_id(&checks, "argocd-installed").status, Status::Fail);
        assert_eq!(by_id(&checks, "argo-root-app").status, Status::Fail);
        assert_eq!(by_id(&checks, "hubble-cluster-issuer").status, Status::Warn);
        let sm = by_id(&checks, "servicemonitor-crds");
        assert_eq!(sm.status, Status::Fail, "{sm:?}");
        assert!(sm.action.contains("Service Monitor requires monitoring.coreos.com/v1 CRDs"));
        // Default "auto" just leaves them off.
        assert_eq!(by_id(&evaluate(&snap, &Settings::default()), "servicemonitor-crds").status, Status::Pass);
        // Installed CRD, seen through discovery when the CRD list is forbidden.
        snap.crds =
            Err(FetchError::new("customresourcedefinitions.apiextensions.k8s.io", FetchErrorKind::Forbidden, ""));
        snap.api_versions = Ok(vec!["v1".into(), MONITORING_API.into()]);
        assert_eq!(by_id(&evaluate(&snap, &s), "servicemonitor-crds").status, Status::Pass);
    }

    #[test]
    fn forbidden_reads_become_unknown_with_the_reason() {
        let mut snap = fresh();
        let forbidden = |r: &str| {
            FetchError::new(r, FetchErrorKind::Forbidden, format!("{r} is forbidden: User \"viewer\" cannot list"))
        };
        snap.nodes = Err(forbidden("nodes"));
        snap.applications = Err(forbidden("applications.argoproj.io"));
        let checks = evaluate(&snap, &Settings::default());
        for id in [
            "k8s-version",
            "k3s-flannel",
            "k3s-kube-proxy",
            "pod-cidr",
            "node-kernel",
            "operator-replicas",
            "argo-root-app",
        ] {
            let c = by_id(&checks, id);
            assert_eq!(c.status, Status::Unknown, "{c:?}");
            assert!(ev(c).starts_with("forbidden: "), "{c:?}");
        }
        assert!(!checks.iter().any(|c| c.id.starts_with("drain/")), "no nodes, no drain checks");
        // The chart check still works from the settings / server version.
        assert_eq!(by_id(&checks, "cilium-chart-compat").status, Status::Warn);
        assert_eq!(crate::checks::exit_code(&checks), 2);

        let mut snap = fresh();
        snap.pods = Err(forbidden("pods"));
        let c = evaluate(&snap, &Settings::default());
        assert_eq!(by_id(&c, "drain/worker-1").status, Status::Unknown);
    }

    #[test]
    fn unreachable_cluster_never_panics() {
        let snap = ClusterSnapshot::failed(FetchErrorKind::Unreachable, "connection refused");
        let checks = evaluate(&snap, &Settings::default());
        assert_eq!(by_id(&checks, "api-reachable").status, Status::Fail);
        assert_eq!(by_id(&checks, "cilium-chart-compat").status, Status::Warn);
        for c in checks.iter().filter(|c| c.id != "api-reachable" && c.id != "cilium-chart-compat") {
            assert_eq!(c.status, Status::Unknown, "{c:?}");
            assert!(ev(c).contains("unreachable"), "{c:?}");
        }
        assert_eq!(crate::checks::exit_code(&checks), 1);
    }

    #[test]
    fn access_reviews() {
        let mut snap = fresh();
        let review = |verb: &str, res: &str, sub: &str, allowed: bool| AccessReview {
            verb: verb.into(),
            group: String::new(),
            resource: res.into(),
            subresource: sub.into(),
            namespace: None,
            purpose: "drain nodes (evict pods)".into(),
            result: Ok(AccessDecision { allowed, reason: String::new() }),
        };
        snap.access = vec![
            review("patch", "nodes", "", true),
            review("create", "pods", "eviction", false),
            AccessReview {
                result: Err(FetchError::new(
                    "selfsubjectaccessreviews.authorization.k8s.io",
                    FetchErrorKind::Forbidden,
                    "",
                )),
                ..review("get", "pods", "portforward", false)
            },
        ];
        let checks = evaluate(&snap, &Settings::default());
        assert_eq!(by_id(&checks, "access/patch-nodes").status, Status::Pass);
        let ev_ = by_id(&checks, "access/create-pods-eviction");
        assert_eq!(ev_.status, Status::Warn);
        assert!(ev(ev_).contains("REFUSED: create pods/eviction"), "{ev_:?}");
        assert_eq!(by_id(&checks, "access/get-pods-portforward").status, Status::Unknown);
    }

    #[test]
    fn drain_blockers() {
        let mut snap = fresh();
        let pod = Pod {
            metadata: ObjectMeta {
                labels: Some([("app".to_string(), "db".to_string())].into()),
                owner_references: Some(vec![OwnerReference {
                    kind: "StatefulSet".into(),
                    name: "db".into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..meta(Some("apps"), "db-0")
            },
            spec: Some(PodSpec { node_name: Some("worker-1".into()), ..Default::default() }),
            status: None,
        };
        snap.pods = Ok(vec![pod]);
        snap.pdbs = Ok(vec![PodDisruptionBudget {
            metadata: meta(Some("apps"), "db"),
            spec: Some(PodDisruptionBudgetSpec {
                selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), "db".to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(PodDisruptionBudgetStatus { disruptions_allowed: 0, ..Default::default() }),
        }]);
        let checks = evaluate(&snap, &Settings::default());
        let d = by_id(&checks, "drain/worker-1");
        assert_eq!(d.status, Status::Fail);
        assert!(ev(d).contains("PDB apps/db allows 0 disruptions and covers apps/db-0"), "{d:?}");
        assert_eq!(by_id(&checks, "drain/worker-2").status, Status::Pass);

        // Longhorn's instance-manager PDBs are expected: the drain waits, it is not stuck for good.
        if let Ok(pdbs) = &mut snap.pdbs {
            pdbs[0].metadata = meta(Some("apps"), "instance-manager-abc");
        }
        assert_eq!(by_id(&evaluate(&snap, &Settings::default()), "drain/worker-1").status, Status::Fail);
        if let (Ok(pdbs), Ok(pods)) = (&mut snap.pdbs, &mut snap.pods) {
            pdbs[0].metadata = meta(Some("longhorn-system"), "instance-manager-abc");
            pods[0].metadata.namespace = Some("longhorn-system".into());
        }
        let d = evaluate(&snap, &Settings::default());
        let d = by_id(&d, "drain/worker-1");
        assert_eq!(d.status, Status::Warn, "{d:?}");
        assert!(d.evidence[0].starts_with("Longhorn PDB longhorn-system/instance-manager-abc"), "{d:?}");
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
    fn root_app_include_that_misses_the_file() {
        let mut snap = fresh();
        snap.applications = Ok(vec![root_app("*-application.yaml", false)]);
        let c = evaluate(&snap, &Settings::default());
        let root = by_id(&c, "argo-root-app");
        assert_eq!(root.status, Status::Fail);
        assert!(ev(root).contains("does NOT match cilium-app.yaml"), "{root:?}");
    }

    #[test]
    fn real_k3d_node_fixture() {
        // kdash-rs/kdash test_data/nodes.yaml: a real k3s server node (tests/fixtures/SOURCES.md).
        let text = include_str!("../../tests/fixtures/k8s/kdash-k3s-node-k3d-server.yaml");
        let list: serde_json::Value = serde_saphyr::from_str(text).expect("fixture parses");
        let nodes: Vec<Node> = serde_json::from_value(list["items"].clone()).expect("nodes");
        let mut snap = fresh();
        snap.nodes = Ok(nodes);
        let checks = evaluate(&snap, &Settings::default());
        let f = by_id(&checks, "k3s-flannel");
        assert_eq!(f.status, Status::Warn);
        assert!(ev(f).contains("gke-hello-hipster-default-pool-9e6f6ffb-q16l: no --flannel-backend"), "{f:?}");
        // v1.20 kubelet, not the plan's version.
        assert_eq!(by_id(&checks, "k8s-version").status, Status::Warn);
        assert_eq!(by_id(&checks, "node-kernel").status, Status::Pass);
        // Ready=True but cordon-free: one schedulable node.
        assert_eq!(by_id(&checks, "operator-replicas").status, Status::Pass);
    }

    #[test]
    fn add_ons_and_cilium_app() {
        let mut snap = fresh();
        snap.daemonsets = Ok(vec![ds("longhorn-system", "longhorn-manager", 2, 3)]);
        snap.deployments = Ok(Vec::new());
        snap.ingress_classes = Ok(Vec::new());
        snap.cluster_issuers = Ok(vec![json!({
            "metadata": {"name": "letsencrypt-prod"},
            "status": {"conditions": [{"type": "Ready", "status": "False", "message": "ACME server unreachable"}]}
        })]);
        snap.services = Ok(vec![Service {
            metadata: meta(Some("default"), "kubernetes"),
            spec: Some(ServiceSpec { cluster_ip: Some("10.96.0.1".into()), ..Default::default() }),
            status: None,
        }]);
        if let Ok(nodes) = &mut snap.nodes
            && let Some(info) = nodes[2].status.as_mut().and_then(|s| s.node_info.as_mut())
        {
            info.kubelet_version = "v1.31.9+k3s1".into();
        }
        if let Ok(apps) = &mut snap.applications {
            apps.push(json!({
                "metadata": {"name": "cilium-app"},
                "spec": {"sources": [{"repoURL": "https://helm.cilium.io", "chart": "cilium", "targetRevision": "1.16.4"}]},
                "status": {
                    "sync": {"status": "Unknown"},
                    "health": {"status": "Healthy"},
                    "conditions": [{"type": "ComparisonError", "message": "tunnel was deprecated in v1.14 and has been removed in v1.15"}]
                }
            }));
        }
        let checks = evaluate(&snap, &Settings::default());
        assert_eq!(by_id(&checks, "metallb").status, Status::Warn);
        let lh = by_id(&checks, "longhorn");
        assert_eq!(lh.status, Status::Warn);
        assert!(ev(lh).contains("DaemonSet longhorn-system/longhorn-manager: 2/3 ready"), "{lh:?}");
        assert_eq!(by_id(&checks, "hubble-ingress-class").status, Status::Warn);
        assert_eq!(by_id(&checks, "hubble-cluster-issuer").status, Status::Warn);
        assert_eq!(by_id(&checks, "service-cidr").status, Status::Fail);
        let v = by_id(&checks, "k8s-version");
        assert_eq!(v.status, Status::Warn);
        assert!(v.evidence[0].starts_with("versions differ"), "{v:?}");
        let app = by_id(&checks, "argo-cilium-app");
        assert_eq!(app.status, Status::Fail, "{app:?}");
        assert!(ev(app).contains("ComparisonError: tunnel was deprecated"), "{app:?}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("*-app.yaml", "cilium-app.yaml"));
        assert!(!glob_match("*-app.yaml", "values.yaml"));
        assert!(glob_match("{cilium-app.yaml,other.yaml}", "cilium-app.yaml"));
        assert!(glob_match("*.{yaml,yml}", "cilium-app.yml"));
        assert!(!glob_match("*.json", "cilium-app.yaml"));
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
