//! PodDisruptionBudget status (currentHealthy/desiredHealthy/disruptionsAllowed/expectedPods, the
//! `PdbBlocking` fault), and Longhorn's instance managers: one pod per node, guarded by a PDB that
//! Longhorn removes only when the node is cordoned and its replicas are safe elsewhere.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::World;
use super::objects::{self as o, ids, res};

/// `minAvailable`/`maxUnavailable` as an absolute number of pods.
fn resolve(v: &Value, expected: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) if s.ends_with('%') => {
            let p: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let x = expected as f64 * p / 100.0;
            (if round_up { x.ceil() } else { x.floor() }) as i64
        }
        Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

pub fn im_name(node: &str) -> String {
    format!("instance-manager-{}", &o::sha_hex(&format!("instance-manager/{node}"))[..32])
}

impl World {
    pub(crate) fn pdb_tick(&mut self) {
        self.longhorn_tick();
        let (pdbs, _) = self.store.list(res(ids::PDBS), None);
        let now = self.now_str.clone();
        for pdb in pdbs {
            let ns = o::namespace(&pdb).to_string();
            let name = o::name(&pdb).to_string();
            let sel = pdb.pointer("/spec/selector").cloned().unwrap_or(json!({}));
            let (pods, _) = self.store.list(res(ids::PODS), Some(&ns));
            let matching: Vec<_> = pods.iter().filter(|p| o::selector_matches(&sel, &o::labels(p))).collect();
            let healthy = matching.iter().filter(|p| o::pod_ready(p)).count() as i64;
            let (expected, desired) = if let Some(min) = pdb.pointer("/spec/minAvailable") {
                let expected = if min.is_number() { matching.len() as i64 } else { self.expected_scale(&matching) };
                (expected, resolve(min, expected, true))
            } else if let Some(max) = pdb.pointer("/spec/maxUnavailable") {
                let expected = self.expected_scale(&matching);
                (expected, (expected - resolve(max, expected, true)).max(0))
            } else {
                (matching.len() as i64, 0)
            };
            let blocked = self.faults.blocking_pdbs.contains(&(ns.clone(), name.clone()));
            let allowed = if blocked { 0 } else { (healthy - desired).max(0) };
            let generation = o::i64_at(&pdb, "/metadata/generation").unwrap_or(1);
            let _ = self.store.mutate(res(ids::PDBS), &ns, &name, |p| {
                let mut conds = p.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
                if allowed > 0 {
                    o::set_condition(&mut conds, "DisruptionAllowed", "True", "SufficientPods", "", &now);
                } else {
                    o::set_condition(&mut conds, "DisruptionAllowed", "False", "InsufficientPods", "", &now);
                }
                for c in conds.iter_mut() {
                    c["observedGeneration"] = json!(generation);
                }
                p["status"] = json!({
                    "currentHealthy": healthy, "desiredHealthy": desired, "disruptionsAllowed": allowed,
                    "expectedPods": expected, "observedGeneration": generation, "conditions": conds,
                });
                Ok(())
            });
        }
    }

    /// Sum of the scales of the controllers owning these pods (pods without a scalable owner
    /// count as one each).
    fn expected_scale(&self, pods: &[&std::sync::Arc<Value>]) -> i64 {
        let mut seen = BTreeSet::new();
        let mut total = 0;
        for p in pods {
            let Some(owner) = o::controller_of(p) else {
                total += 1;
                continue;
            };
            if !seen.insert(owner.uid.clone()) {
                continue;
            }
            let ns = o::namespace(p);
            let scale = match owner.kind.as_str() {
                "ReplicaSet" => self.store.get(res(ids::REPLICASETS), ns, &owner.name).ok().map(|rs| {
                    // A Deployment's scale is what counts.
                    match o::controller_of(&rs) {
                        Some(d) if d.kind == "Deployment" => self
                            .store
                            .get(res(ids::DEPLOYMENTS), ns, &d.name)
                            .ok()
                            .and_then(|d| o::i64_at(&d, "/spec/replicas"))
                            .unwrap_or(1),
                        _ => o::i64_at(&rs, "/spec/replicas").unwrap_or(1),
                    }
                }),
                "StatefulSet" => self
                    .store
                    .get(res(ids::STATEFULSETS), ns, &owner.name)
                    .ok()
                    .and_then(|s| o::i64_at(&s, "/spec/replicas")),
                _ => None,
            };
            total += scale.unwrap_or(1);
        }
        total
    }

    /// Longhorn's instance managers and their PDBs.
    fn longhorn_tick(&mut self) {
        let (pods, _) = self.store.list(res(ids::PODS), Some("longhorn-system"));
        let (nodes, _) = self.store.list(res(ids::NODES), None);
        let manager_ready: BTreeSet<String> = pods
            .iter()
            .filter(|p| o::labels(p).get("app").map(String::as_str) == Some("longhorn-manager") && o::pod_ready(p))
            .map(|p| o::s(p, "/spec/nodeName").to_string())
            .collect();
        let im_ready: BTreeSet<String> = pods
            .iter()
            .filter(|p| {
                o::labels(p).get("longhorn.io/component").map(String::as_str) == Some("instance-manager")
                    && o::pod_ready(p)
            })
            .map(|p| o::s(p, "/spec/nodeName").to_string())
            .collect();
        for n in &nodes {
            let node = o::name(n).to_string();
            let im = im_name(&node);
            let exists = pods.iter().any(|p| o::name(p) == im);
            if !exists && manager_ready.contains(&node) {
                let pod = self.im_pod(&node, &im);
                let _ = self.store.create(res(ids::PODS), "longhorn-system", pod);
            }
            let cordoned = o::bool_at(n, "/spec/unschedulable");
            // Safe to drain: another schedulable node runs a Ready instance manager (replicas there).
            let safe = nodes
                .iter()
                .any(|m| o::name(m) != node && !o::bool_at(m, "/spec/unschedulable") && im_ready.contains(o::name(m)));
            let pdb_exists = self.store.get(res(ids::PDBS), "longhorn-system", &im).is_ok();
            if cordoned && safe && pdb_exists {
                let _ = self.store.delete(res(ids::PDBS), "longhorn-system", &im, None);
            } else if !cordoned && !pdb_exists && (exists || manager_ready.contains(&node)) {
                let _ = self.store.create(
                    res(ids::PDBS),
                    "longhorn-system",
                    json!({
                        "metadata": {"name": im, "labels": {"longhorn.io/managed-by": "longhorn-manager"}},
                        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"longhorn.io/component": "instance-manager", "longhorn.io/node": node}}},
                    }),
                );
            }
        }
    }

    fn im_pod(&mut self, node: &str, name: &str) -> Value {
        let uid = format!(
            "{}-{}-4{}-8{}-{}",
            &o::sha_hex(name)[..8],
            &o::sha_hex(name)[8..12],
            &o::sha_hex(name)[12..15],
            &o::sha_hex(name)[15..18],
            &o::sha_hex(name)[18..30]
        );
        let mut spec = json!({
            "nodeName": node,
            "serviceAccountName": "longhorn-service-account",
            "priorityClassName": "longhorn-critical",
            "containers": [{
                "name": "instance-manager",
                "image": "longhornio/longhorn-instance-manager:v1.9.0",
                "args": ["instance-manager", "--debug", "daemon", "--listen", "0.0.0.0:8500"],
                "ports": [{"containerPort": 8500, "name": "im", "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "1200m"}},
                "securityContext": {"privileged": true},
            }],
            "tolerations": [{"key": "kubernetes.io/arch", "operator": "Equal", "value": "amd64", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 30,
        });
        self.pod_defaults(&mut spec, false);
        json!({
            "metadata": {
                "name": name,
                "labels": {
                    "longhorn.io/component": "instance-manager",
                    "longhorn.io/instance-manager-type": "aio",
                    "longhorn.io/instance-manager-image": "imi-6b8e3c8f",
                    "longhorn.io/managed-by": "longhorn-manager",
                    "longhorn.io/node": node,
                },
                "ownerReferences": [{"apiVersion": "longhorn.io/v1beta2", "kind": "InstanceManager", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": spec,
            "status": {"phase": "Pending", "qosClass": "Burstable"},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_budget_values() {
        assert_eq!(resolve(&json!(1), 3, true), 1);
        assert_eq!(resolve(&json!("50%"), 3, true), 2);
        assert_eq!(resolve(&json!("50%"), 3, false), 1);
        assert!(im_name("homelab-w1").starts_with("instance-manager-"));
        assert_eq!(im_name("homelab-w1").len(), "instance-manager-".len() + 32);
    }
}
