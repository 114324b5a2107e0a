//! Drain readiness of one node, following `kubectl drain`'s filters (k8s-drain-eviction.md §2, §5):
//! DaemonSet pods (need --ignore-daemonsets), mirror pods (skipped), emptyDir pods (need
//! --delete-emptydir-data), pods without a controller (need --force), and PodDisruptionBudgets
//! that allow no disruption (evictions answer 429) or overlap (500).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// What draining one node would run into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    pub node: String,
    /// Pods drain would evict.
    pub evictable: usize,
    pub daemonset_pods: Vec<String>,
    pub mirror_pods: Vec<String>,
    pub emptydir_pods: Vec<String>,
    pub unmanaged_pods: Vec<String>,
    /// (pod, PDB) where the PDB allows no disruption now.
    pub blocked_by_pdb: Vec<(String, String)>,
    /// Pods selected by more than one PDB (eviction answers 500).
    pub multi_pdb_pods: Vec<String>,
}

/// Builds the report for `node` from every pod and PDB in the cluster.
pub fn report(node: &str, pods: &[Pod], pdbs: &[PodDisruptionBudget]) -> DrainReport {
    let mut r = DrainReport { node: node.to_string(), ..Default::default() };
    for pod in pods {
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        if matches!(phase, "Succeeded" | "Failed") {
            continue;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = format!("{ns}/{}", pod.metadata.name.as_deref().unwrap_or("?"));
        let controller = pod.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true));
        if controller.is_some_and(|o| o.kind == "DaemonSet") {
            r.daemonset_pods.push(name);
            continue;
        }
        if pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror")) {
            r.mirror_pods.push(name);
            continue;
        }
        r.evictable += 1;
        if pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).any(|v| v.empty_dir.is_some()) {
            r.emptydir_pods.push(name.clone());
        }
        if controller.is_none() {
            r.unmanaged_pods.push(name.clone());
        }
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let covering: Vec<&PodDisruptionBudget> = pdbs
            .iter()
            .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == ns)
            .filter(|p| p.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|sel| selects(sel, &labels)))
            .collect();
        if covering.len() > 1 {
            r.multi_pdb_pods.push(name.clone());
        }
        for pdb in covering {
            let allowed = pdb.status.as_ref().map_or(0, |s| s.disruptions_allowed);
            if allowed <= 0 {
                let pdb_name = format!("{ns}/{}", pdb.metadata.name.as_deref().unwrap_or("?"));
                r.blocked_by_pdb.push((name.clone(), pdb_name));
            }
        }
    }
    r
}

/// Label selector semantics (matchLabels AND matchExpressions; an empty selector selects all).
pub fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, PodSpec, Volume};
    use k8s_openapi::api::policy::v1::{PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta, OwnerReference};

    fn pod(name: &str, node: &str, owner: Option<&str>, labels: &[(&str, &str)], empty_dir: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("apps".into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                owner_references: owner.map(|k| {
                    vec![OwnerReference {
                        kind: k.into(),
                        name: "o".into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                volumes: empty_dir.then(|| {
                    vec![Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pdb(name: &str, app: &str, allowed: i32) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("apps".into()), ..Default::default() },
            spec: Some(PodDisruptionBudgetSpec {
                selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), app.to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(PodDisruptionBudgetStatus { disruptions_allowed: allowed, ..Default::default() }),
        }
    }

    #[test]
    fn classifies_pods_like_kubectl_drain() {
        let pods = vec![
            pod("cilium-x", "n1", Some("DaemonSet"), &[], false),
            pod("web-1", "n1", Some("ReplicaSet"), &[("app", "web")], true),
            pod("debug", "n1", None, &[], false),
            pod("db-0", "n1", Some("StatefulSet"), &[("app", "db")], false),
            pod("elsewhere", "n2", None, &[], false),
        ];
        let pdbs = vec![pdb("db", "db", 0), pdb("web", "web", 1)];
        let r = report("n1", &pods, &pdbs);
        assert_eq!(r.daemonset_pods, vec!["apps/cilium-x"]);
        assert_eq!(r.emptydir_pods, vec!["apps/web-1"]);
        assert_eq!(r.unmanaged_pods, vec!["apps/debug"]);
        assert_eq!(r.blocked_by_pdb, vec![("apps/db-0".to_string(), "apps/db".to_string())]);
        assert_eq!(r.evictable, 3);
        assert!(r.multi_pdb_pods.is_empty());
    }

    #[test]
    fn selector_expressions() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "db".to_string())].into();
        let sel = |op: &str, vals: Option<Vec<&str>>| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: op.into(),
                values: vals.map(|v| v.into_iter().map(String::from).collect()),
            }]),
            ..Default::default()
        };
        assert!(selects(&sel("In", Some(vec!["db"])), &labels));
        assert!(!selects(&sel("NotIn", Some(vec!["db"])), &labels));
        assert!(selects(&sel("Exists", None), &labels));
        assert!(!selects(&sel("DoesNotExist", None), &labels));
        assert!(selects(&LabelSelector::default(), &labels));
    }
}
