//! `drain/<node>`: whether `kubectl drain --ignore-daemonsets` of each node would go through, from
//! the pods and PodDisruptionBudgets (`checks::drain` computes the report; this says what it means).

use super::{Check, Status, check, unread};
use crate::checks::drain;
use crate::checks::k3s::node_name;
use crate::checks::snapshot::ClusterSnapshot;

pub(super) fn drain_checks(snap: &ClusterSnapshot) -> Vec<Check> {
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
            // The drain refuses while they are there (one rule with the executor): fail.
            status = Status::Fail;
            evidence.push(format!(
                "no controller, the drain refuses (evicting would delete them for good): {}",
                r.unmanaged_pods.join(", ")
            ));
            actions.push("recreate pods without a controller under a Deployment, or delete them yourself");
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
        // The worst problem goes first (the cockpit's overlay shows only the first line).
        let worst =
            |e: &String| e.starts_with("no controller") || e.starts_with("PDB ") || e.starts_with("more than one PDB");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::evaluate::evaluate;
    use crate::checks::evaluate::fixtures::*;
    use crate::settings::Settings;
    use k8s_openapi::api::core::v1::{Pod, PodSpec};
    use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

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
}
