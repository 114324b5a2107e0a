//! Test fixtures shared by the check families' tests: today's homelab as a `ClusterSnapshot`
//! (`fresh`) and builders for the objects the tests change.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus, Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Service, ServiceSpec};
use k8s_openapi::api::networking::v1::{IngressClass, IngressClassSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::checks::Check;
use crate::checks::k3s;
use crate::checks::snapshot::ClusterSnapshot;

pub(super) fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: ns.map(String::from), ..Default::default() }
}

/// A k3s node. `args` are the node-args after the role; `flannel` adds flannel's annotations.
pub(super) fn node(name: &str, server: bool, args: &[&str], cidr: &str, flannel: bool) -> Node {
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
        spec: Some(NodeSpec { pod_cidr: Some(cidr.into()), pod_cidrs: Some(vec![cidr.into()]), ..Default::default() }),
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

pub(super) fn ds(ns: &str, name: &str, ready: i32, want: i32) -> DaemonSet {
    DaemonSet {
        metadata: meta(Some(ns), name),
        spec: None,
        status: Some(DaemonSetStatus { number_ready: ready, desired_number_scheduled: want, ..Default::default() }),
    }
}

pub(super) fn deploy(ns: &str, name: &str, ready: i32, want: i32) -> Deployment {
    Deployment {
        metadata: meta(Some(ns), name),
        spec: Some(DeploymentSpec { replicas: Some(want), ..Default::default() }),
        status: Some(DeploymentStatus { ready_replicas: Some(ready), ..Default::default() }),
    }
}

pub(super) fn root_app(include: &str, self_heal: bool) -> Value {
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
pub(super) fn fresh() -> ClusterSnapshot {
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

pub(super) fn by_id<'a>(checks: &'a [Check], id: &str) -> &'a Check {
    checks.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no check {id}"))
}

pub(super) fn ev(c: &Check) -> String {
    c.evidence.join("\n")
}
