//! The pre-flight checks, as a pure function of a `ClusterSnapshot` and the settings. Every check
//! says what it read (evidence) and what to do; a resource that could not be read makes the checks
//! that need it `unknown` with the reason, never a crash.
//!
//! One file per family of checks; a check's id tells the file it lives in:
//! - `cluster`: the API, Kubernetes/k3s versions, the pinned chart, each node's kernel and OS/arch,
//!   cilium-operator replicas vs schedulable nodes (`api-reachable`, `k8s-version`,
//!   `cilium-chart-compat`, `node-kernel`, `node-os-arch`, `operator-replicas`);
//! - `k3s_flags`: the k3s server flags, read from `k3s.io/node-args` (`k3s-*`);
//! - `network`: other CNIs and the pod/service CIDRs (`cni-daemonsets`, `pod-cidr`, `service-cidr`);
//! - `argo`: Argo CD, the root app and the Cilium Application (`argocd-installed`, `argo-*`); `glob`
//!   is the directory include/exclude matcher the root app check uses;
//! - `addons`: what the values and the cutover lean on (`servicemonitor-crds`, `hubble-*`, `metallb`,
//!   `longhorn`);
//! - `drain_readiness`: `drain/<node>`, from `checks::drain`'s report;
//! - `access`: `access/<verb>-<resource>`, from the SelfSubjectAccessReviews.
//!
//! `servers` is the view of the server nodes' node-args that the k3s and CIDR checks share; the
//! small accessors below are shared by several families.

mod access;
mod addons;
mod argo;
mod cluster;
mod drain_readiness;
#[cfg(test)]
mod fixtures;
mod glob;
#[cfg(test)]
mod golden;
mod k3s_flags;
mod network;
mod servers;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};

pub use self::cluster::min_kernel;
pub use self::glob::glob_match;
use self::servers::ServerView;
use super::snapshot::{ClusterSnapshot, FetchError, FetchErrorKind};
use super::{Check, Status};
use crate::settings::Settings;

/// Runs every check.
pub fn evaluate(snap: &ClusterSnapshot, settings: &Settings) -> Vec<Check> {
    let servers = ServerView::new(snap);
    let mut out = vec![
        cluster::api_reachable(snap),
        cluster::k8s_version(snap, settings),
        cluster::chart_compat(snap, settings),
        k3s_flags::k3s_flannel(snap, &servers),
        k3s_flags::k3s_kube_proxy(snap, &servers),
        k3s_flags::k3s_network_policy(&servers),
        k3s_flags::flannel_annotations(snap, &servers),
        k3s_flags::server_flags(&servers),
        network::cni_daemonsets(snap),
        network::pod_cidr(snap, settings, &servers),
        network::service_cidr(snap, settings, &servers),
        cluster::node_kernel(snap, settings),
        cluster::node_os_arch(snap),
        argo::argocd_installed(snap, settings),
        argo::argo_root_app(snap, settings),
        argo::argo_cilium_app(snap, settings),
        addons::servicemonitor_crds(snap, settings),
        addons::cluster_issuer(snap, settings),
        addons::ingress_class(snap, settings),
        addons::metallb(snap),
        addons::longhorn(snap),
        cluster::operator_replicas(snap, settings),
    ];
    out.extend(drain_readiness::drain_checks(snap));
    out.extend(access::access_checks(snap));
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

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::manifests::render::MONITORING_API;
    use crate::settings::ServiceMonitors;
    use k8s_openapi::api::core::v1::Node;

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
        // The default pin (a 1.17 release) is tested on k3s v1.32; the plan's 1.16 pin warns
        // (cluster.rs tests).
        for id in [
            "cilium-chart-compat",
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
        // The chart check still works from the settings / server version (the default pin passes).
        assert_eq!(by_id(&checks, "cilium-chart-compat").status, Status::Pass);
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
        // Decided from the settings' k3s version: the default pin is tested on it.
        let compat = by_id(&checks, "cilium-chart-compat");
        assert_eq!(compat.status, Status::Pass, "{compat:?}");
        assert!(ev(compat).contains("from cluster.k3s_version (built-in default; API server not read)"), "{compat:?}");
        for c in checks.iter().filter(|c| c.id != "api-reachable" && c.id != "cilium-chart-compat") {
            assert_eq!(c.status, Status::Unknown, "{c:?}");
            assert!(ev(c).contains("unreachable"), "{c:?}");
        }
        assert_eq!(crate::checks::exit_code(&checks), 1);
    }

    #[test]
    fn real_k3d_node_fixture() {
        // kdash-rs/kdash test_data/nodes.yaml: a real k3s server node (tests/fixtures/SOURCES.md).
        let text = include_str!("../../../tests/fixtures/k8s/kdash-k3s-node-k3d-server.yaml");
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
}
