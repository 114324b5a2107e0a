//! What the rendered values and the cutover lean on besides Cilium: the Prometheus Operator CRDs
//! for the ServiceMonitors, the Hubble UI's ClusterIssuer and IngressClass, MetalLB and Longhorn.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::{Check, Status, check, deploy_ready, ds_ready, ns_name, unread};
use crate::checks::snapshot::{ClusterSnapshot, FetchError, FetchErrorKind};
use crate::manifests::render::MONITORING_API;
use crate::settings::{ServiceMonitors, Settings};

pub(super) fn servicemonitor_crds(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("servicemonitor-crds", "Prometheus Operator CRDs for the ServiceMonitors");
    let has = snap.has_crd("servicemonitors.monitoring.coreos.com", MONITORING_API);
    let seen = match (has, &snap.crds, &snap.api_versions) {
        (Some(true), _, _) => "servicemonitors.monitoring.coreos.com is installed".to_string(),
        (Some(false), _, _) => "servicemonitors.monitoring.coreos.com is NOT installed".to_string(),
        (None, Err(a), Err(b)) => format!("could not read the CRDs ({a}) nor discovery ({b})"),
        (None, _, _) => "could not read the CRDs nor discovery".to_string(),
    };
    let evidence = vec![
        seen,
        format!(
            "cilium.service_monitors = \"{}\" ({})",
            s.cilium.service_monitors.as_str(),
            s.origin_of("cilium.service_monitors")
        ),
    ];
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

pub(super) fn cluster_issuer(snap: &ClusterSnapshot, s: &Settings) -> Check {
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

pub(super) fn ingress_class(snap: &ClusterSnapshot, s: &Settings) -> Check {
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
    pick: impl Fn(&ObjectMeta) -> bool,
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

pub(super) fn metallb(snap: &ClusterSnapshot) -> Check {
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

pub(super) fn longhorn(snap: &ClusterSnapshot) -> Check {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::evaluate::evaluate;
    use crate::checks::evaluate::fixtures::*;
    use k8s_openapi::api::core::v1::{Service, ServiceSpec};
    use serde_json::json;

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
}
