//! The one drain rule, `kubectl drain --ignore-daemonsets --delete-emptydir-data` without
//! `--force`, shared by pre-flight's drain readiness and the executor's drain: which pods are
//! evicted, which are skipped and why, which make the drain refuse, and which
//! PodDisruptionBudgets will answer evictions with 429 (none allowed now) or 500 (overlap).
//!
//! - DaemonSet pods are skipped (`--ignore-daemonsets`): their controller would recreate them;
//! - mirror (static) pods are skipped: the kubelet owns them;
//! - finished pods (Succeeded/Failed) are evicted whatever their owner (nothing is lost);
//! - pods with an emptyDir volume are evicted and lose that data (`--delete-emptydir-data`);
//! - a running pod without a controller makes the drain refuse before anything is evicted: it
//!   would be gone for good (kubectl needs `--force`, which the cockpit never passes).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One pod, as the plan names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The controller, `Kind/name`, or `none`.
    pub owner: String,
}

impl PodRef {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Why a pod stays on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    DaemonSet,
    Mirror,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::DaemonSet => "DaemonSet pod (--ignore-daemonsets)",
            SkipReason::Mirror => "static (mirror) pod, owned by the kubelet",
        }
    }
}

/// A PodDisruptionBudget covering pods the drain evicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdbCover {
    /// `namespace/name`.
    pub pdb: String,
    /// `status.disruptionsAllowed` now (0: evictions answer 429 until it recovers).
    pub allowed: i32,
    /// The pods it covers (`namespace/name`).
    pub pods: Vec<String>,
}

/// What draining one node will do, computed from the pods on it and every PDB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainPlan {
    pub node: String,
    pub evict: Vec<PodRef>,
    pub skip: Vec<(PodRef, SkipReason)>,
    /// Pods that make the drain refuse (nothing is evicted while any is there).
    pub refuse: Vec<(PodRef, String)>,
    /// Evicted pods that lose emptyDir data.
    pub emptydir: Vec<String>,
    pub pdbs: Vec<PdbCover>,
    /// Pods selected by more than one PDB (eviction answers 500).
    pub multi_pdb: Vec<String>,
}

impl DrainPlan {
    /// The PDBs that allow no disruption now, with the evicted pods they cover.
    pub fn blocking_pdbs(&self) -> impl Iterator<Item = &PdbCover> {
        self.pdbs.iter().filter(|p| p.allowed <= 0)
    }

    /// The PDBs covering one pod.
    pub fn pdbs_of(&self, pod_key: &str) -> Vec<&PdbCover> {
        self.pdbs.iter().filter(|p| p.pods.iter().any(|k| k == pod_key)).collect()
    }
}

fn owner_of(pod: &Pod) -> Option<(String, String)> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.clone(), o.name.clone()))
}

/// The plan for `node` from every pod and PDB in the cluster (pods on other nodes are ignored).
pub fn plan(node: &str, pods: &[Pod], pdbs: &[PodDisruptionBudget]) -> DrainPlan {
    let mut p = DrainPlan { node: node.to_string(), ..Default::default() };
    let mut covers: BTreeMap<String, PdbCover> = BTreeMap::new();
    for pod in pods {
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let controller = owner_of(pod);
        let r = PodRef {
            namespace: ns.clone(),
            name: pod.metadata.name.clone().unwrap_or_else(|| "?".into()),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            owner: controller.as_ref().map_or_else(|| "none".into(), |(k, n)| format!("{k}/{n}")),
        };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        let finished = matches!(phase, "Succeeded" | "Failed");
        if pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror")) {
            p.skip.push((r, SkipReason::Mirror));
            continue;
        }
        if !finished && controller.as_ref().is_some_and(|(k, _)| k == "DaemonSet") {
            p.skip.push((r, SkipReason::DaemonSet));
            continue;
        }
        if !finished && controller.is_none() {
            p.refuse.push((r, "no controller: evicting it deletes it for good (kubectl needs --force)".into()));
            continue;
        }
        let key = r.key();
        if pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).any(|v| v.empty_dir.is_some()) {
            p.emptydir.push(key.clone());
        }
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let covering: Vec<&PodDisruptionBudget> = pdbs
            .iter()
            .filter(|b| b.metadata.namespace.as_deref().unwrap_or("default") == ns)
            .filter(|b| b.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|sel| selects(sel, &labels)))
            .collect();
        if covering.len() > 1 {
            p.multi_pdb.push(key.clone());
        }
        for b in covering {
            let name = format!("{ns}/{}", b.metadata.name.as_deref().unwrap_or("?"));
            let allowed = b.status.as_ref().map_or(0, |s| s.disruptions_allowed);
            covers
                .entry(name.clone())
                .or_insert(PdbCover { pdb: name, allowed, pods: Vec::new() })
                .pods
                .push(key.clone());
        }
        p.evict.push(r);
    }
    p.pdbs = covers.into_values().collect();
    p
}

/// What draining one node would run into (pre-flight's view of [`plan`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    pub node: String,
    /// Pods drain would evict.
    pub evictable: usize,
    pub daemonset_pods: Vec<String>,
    pub mirror_pods: Vec<String>,
    pub emptydir_pods: Vec<String>,
    /// Running pods without a controller: the drain refuses while they are there.
    pub unmanaged_pods: Vec<String>,
    /// (pod, PDB) where the PDB allows no disruption now.
    pub blocked_by_pdb: Vec<(String, String)>,
    /// Pods selected by more than one PDB (eviction answers 500).
    pub multi_pdb_pods: Vec<String>,
}

/// Builds the report for `node` from every pod and PDB in the cluster.
pub fn report(node: &str, pods: &[Pod], pdbs: &[PodDisruptionBudget]) -> DrainReport {
    let p = plan(node, pods, pdbs);
    let skipped = |why: SkipReason| p.skip.iter().filter(|(_, w)| *w == why).map(|(r, _)| r.key()).collect();
    let mut blocked_by_pdb: Vec<(String, String)> =
        p.blocking_pdbs().flat_map(|b| b.pods.iter().map(|pod| (pod.clone(), b.pdb.clone()))).collect();
    blocked_by_pdb.sort();
    DrainReport {
        node: node.to_string(),
        evictable: p.evict.len(),
        daemonset_pods: skipped(SkipReason::DaemonSet),
        mirror_pods: skipped(SkipReason::Mirror),
        emptydir_pods: p.emptydir.clone(),
        unmanaged_pods: p.refuse.iter().map(|(r, _)| r.key()).collect(),
        blocked_by_pdb,
        multi_pdb_pods: p.multi_pdb.clone(),
    }
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
        // The pod without a controller is refused, not evicted: the drain will not start.
        assert_eq!(r.evictable, 2);
        assert!(r.multi_pdb_pods.is_empty());
        let p = plan("n1", &pods, &pdbs);
        assert_eq!(p.refuse.len(), 1);
        assert_eq!(p.evict.iter().map(PodRef::key).collect::<Vec<_>>(), vec!["apps/web-1", "apps/db-0"]);
        assert_eq!(p.evict[0].owner, "ReplicaSet/o");
        assert_eq!(p.blocking_pdbs().map(|b| b.pdb.as_str()).collect::<Vec<_>>(), vec!["apps/db"]);
        assert_eq!(p.pdbs_of("apps/web-1")[0].allowed, 1);
    }

    #[test]
    fn finished_pods_are_evicted_whatever_their_owner() {
        let mut done = pod("job-x", "n1", None, &[], false);
        done.status =
            Some(k8s_openapi::api::core::v1::PodStatus { phase: Some("Succeeded".into()), ..Default::default() });
        let mut ds_done = pod("ds-old", "n1", Some("DaemonSet"), &[], false);
        ds_done.status =
            Some(k8s_openapi::api::core::v1::PodStatus { phase: Some("Failed".into()), ..Default::default() });
        let p = plan("n1", &[done, ds_done], &[]);
        assert_eq!(p.evict.len(), 2);
        assert!(p.refuse.is_empty() && p.skip.is_empty());
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
