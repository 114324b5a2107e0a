//! The scheduler (binding pending pods to schedulable nodes: cordon, taints and tolerations,
//! node selectors and affinity, required pod anti-affinity, host ports) and taint-based eviction
//! from NotReady/unreachable nodes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::World;
use super::events::involved;
use super::objects::{self as o, ids, res};

/// Whether a toleration list tolerates a taint.
pub fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    let (tk, tv, te) = (o::s(taint, "/key"), o::s(taint, "/value"), o::s(taint, "/effect"));
    tolerations.iter().any(|t| {
        let key = o::s(t, "/key");
        let op = match o::s(t, "/operator") {
            "" => "Equal",
            x => x,
        };
        let effect_ok = o::s(t, "/effect").is_empty() || o::s(t, "/effect") == te;
        let key_ok = (key.is_empty() && op == "Exists") || key == tk;
        let value_ok = op == "Exists" || o::s(t, "/value") == tv;
        effect_ok && key_ok && value_ok
    })
}

fn tolerations(pod: &Value) -> Vec<Value> {
    pod.pointer("/spec/tolerations").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// Whether a node matches the pod's nodeSelector and required node affinity.
pub fn node_matches(pod_spec: &Value, node: &Value) -> bool {
    let labels = o::labels(node);
    let sel = o::string_map(pod_spec.get("nodeSelector"));
    if !o::map_selector_matches(&sel, &labels) {
        return false;
    }
    let Some(terms) = pod_spec
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    else {
        return true;
    };
    terms.iter().any(|term| {
        let exprs_ok = term
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(|es| es.iter().all(|e| o::selector_matches(&json!({"matchExpressions": [e]}), &labels)));
        let fields_ok = term.get("matchFields").and_then(Value::as_array).is_none_or(|fs| {
            fs.iter().all(|f| {
                let v = if o::s(f, "/key") == "metadata.name" { o::name(node) } else { "" };
                let vals: Vec<&str> = f
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match o::s(f, "/operator") {
                    "In" => vals.contains(&v),
                    "NotIn" => !vals.contains(&v),
                    _ => false,
                }
            })
        });
        exprs_ok && fields_ok
    })
}

/// The node a DaemonSet pod is pinned to through `matchFields metadata.name`.
pub fn pinned_node(pod: &Value) -> Option<String> {
    if let Some(n) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")?
        .as_array()?;
    terms.iter().find_map(|t| {
        t.get("matchFields")?.as_array()?.iter().find_map(|f| {
            (o::s(f, "/key") == "metadata.name")
                .then(|| f.pointer("/values/0").and_then(Value::as_str).map(str::to_string))?
        })
    })
}

struct Placed {
    node: String,
    ns: String,
    labels: BTreeMap<String, String>,
    host_ports: Vec<i64>,
}

fn host_ports(pod: &Value) -> Vec<i64> {
    let host = o::bool_at(pod, "/spec/hostNetwork");
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .flat_map(|c| c.get("ports").and_then(Value::as_array).cloned().unwrap_or_default())
                .filter_map(|p| {
                    o::i64_at(&p, "/hostPort").or_else(|| if host { o::i64_at(&p, "/containerPort") } else { None })
                })
                .collect()
        })
        .unwrap_or_default()
}

impl World {
    /// Why `pod` cannot run on `node` (the scheduler's reason strings), or Ok.
    fn fits(&self, pod: &Value, node: &Value, placed: &[Placed]) -> Result<(), String> {
        let tols = tolerations(pod);
        let nname = o::name(node);
        if o::is_terminating(node) {
            return Err("node(s) were being deleted".into());
        }
        if o::bool_at(node, "/spec/unschedulable")
            && !tolerates(&tols, &json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}))
        {
            return Err("node(s) were unschedulable".into());
        }
        let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
        if !node_matches(&spec, node) {
            return Err("node(s) didn't match Pod's node affinity/selector".into());
        }
        for t in node.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default() {
            let effect = o::s(&t, "/effect");
            if (effect == "NoSchedule" || effect == "NoExecute")
                && o::s(&t, "/key") != "node.kubernetes.io/unschedulable"
                && !tolerates(&tols, &t)
            {
                return Err(format!("node(s) had untolerated taint {{{}: {}}}", o::s(&t, "/key"), o::s(&t, "/value")));
            }
        }
        let ns = o::namespace(pod);
        if let Some(terms) = pod
            .pointer("/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
        {
            let node_labels = o::labels(node);
            for term in terms {
                let key = o::s(term, "/topologyKey");
                let domain = node_labels.get(key);
                let sel = term.get("labelSelector").cloned().unwrap_or(json!({}));
                let conflict = placed.iter().any(|p| {
                    p.ns == ns
                        && o::selector_matches(&sel, &p.labels)
                        && self.node_labels(&p.node).is_some_and(|l| domain.is_some() && l.get(key) == domain)
                });
                if conflict {
                    return Err("node(s) didn't match pod anti-affinity rules".into());
                }
            }
        }
        let ports = host_ports(pod);
        if !ports.is_empty() && placed.iter().any(|p| p.node == nname && p.host_ports.iter().any(|x| ports.contains(x)))
        {
            return Err("node(s) didn't have free ports for the requested pod ports".into());
        }
        Ok(())
    }

    fn node_labels(&self, node: &str) -> Option<BTreeMap<String, String>> {
        self.store.get(res(ids::NODES), "", node).ok().map(|n| o::labels(&n))
    }

    /// Binds pending pods.
    pub(crate) fn schedule_tick(&mut self) {
        let (nodes, _) = self.store.list(res(ids::NODES), None);
        let (pods, _) = self.store.list(res(ids::PODS), None);
        let mut placed: Vec<Placed> = pods
            .iter()
            .filter(|p| !o::is_terminating(p))
            .filter_map(|p| {
                let node = o::s(p, "/spec/nodeName");
                (!node.is_empty()).then(|| Placed {
                    node: node.to_string(),
                    ns: o::namespace(p).to_string(),
                    labels: o::labels(p),
                    host_ports: host_ports(p),
                })
            })
            .collect();
        for pod in pods.iter().filter(|p| o::s(p, "/spec/nodeName").is_empty() && !o::is_terminating(p)) {
            self.schedule_one(pod, &nodes, &mut placed);
        }
    }

    fn schedule_one(&mut self, pod: &Arc<Value>, nodes: &[Arc<Value>], placed: &mut Vec<Placed>) {
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<(usize, String)> = None;
        for n in nodes {
            match self.fits(pod, n, placed) {
                Ok(()) => {
                    let load = placed.iter().filter(|p| p.node == o::name(n)).count();
                    if best.as_ref().is_none_or(|(l, _)| load < *l) {
                        best = Some((load, o::name(n).to_string()));
                    }
                }
                Err(r) => *reasons.entry(r).or_default() += 1,
            }
        }
        let (ns, name) = (o::namespace(pod).to_string(), o::name(pod).to_string());
        let now = self.now_str.clone();
        match best {
            Some((_, node)) => {
                let uid = o::uid(pod).to_string();
                let bound = self.store.mutate(res(ids::PODS), &ns, &name, |p| {
                    if o::uid(p) != uid || !o::s(p, "/spec/nodeName").is_empty() {
                        return Ok(());
                    }
                    p["spec"]["nodeName"] = json!(node);
                    let mut conds =
                        p.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
                    o::set_condition(&mut conds, "PodScheduled", "True", "", "", &now);
                    p["status"]["conditions"] = Value::Array(conds);
                    Ok(())
                });
                if bound.is_ok() {
                    placed.push(Placed {
                        node: node.clone(),
                        ns: ns.clone(),
                        labels: o::labels(pod),
                        host_ports: host_ports(pod),
                    });
                    self.events.emit(
                        &self.store,
                        &self.now_str,
                        &involved(pod),
                        &ns,
                        "Normal",
                        "Scheduled",
                        &format!("Successfully assigned {ns}/{name} to {node}"),
                        "default-scheduler",
                        "",
                    );
                }
            }
            None => {
                let total = nodes.len();
                let mut parts: Vec<String> = reasons.iter().map(|(r, c)| format!("{c} {r}")).collect();
                parts.sort();
                let msg = format!(
                    "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
                    parts.join(", ")
                );
                let uid = o::uid(pod).to_string();
                let m2 = msg.clone();
                let _ = self.store.mutate(res(ids::PODS), &ns, &name, |p| {
                    if o::uid(p) != uid {
                        return Ok(());
                    }
                    let mut conds =
                        p.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
                    o::set_condition(&mut conds, "PodScheduled", "False", "Unschedulable", &m2, &now);
                    for c in conds.iter_mut() {
                        if let Some(m) = c.as_object_mut() {
                            m.entry("lastProbeTime").or_insert(Value::Null);
                        }
                    }
                    p["status"]["conditions"] = Value::Array(conds);
                    p["status"]["phase"] = json!("Pending");
                    Ok(())
                });
                self.events.emit(
                    &self.store,
                    &self.now_str,
                    &involved(pod),
                    &ns,
                    "Warning",
                    "FailedScheduling",
                    &msg,
                    "default-scheduler",
                    "",
                );
            }
        }
    }

    /// NoExecute taints evict pods that do not tolerate them (after `tolerationSeconds`).
    pub(crate) fn taint_eviction_tick(&mut self) {
        let (nodes, _) = self.store.list(res(ids::NODES), None);
        let mut active: BTreeMap<(String, String), f64> = BTreeMap::new();
        let mut by_node: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for n in &nodes {
            for t in n.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default() {
                if o::s(&t, "/effect") == "NoExecute" {
                    let key = (o::name(n).to_string(), o::s(&t, "/key").to_string());
                    let since = self.taint_since.get(&key).copied().unwrap_or(self.now);
                    active.insert(key, since);
                    by_node.entry(o::name(n).to_string()).or_default().push(t);
                }
            }
        }
        self.taint_since = active;
        if by_node.is_empty() {
            return;
        }
        let (pods, _) = self.store.list(res(ids::PODS), None);
        for p in pods.iter().filter(|p| !o::is_terminating(p)) {
            let node = o::s(p, "/spec/nodeName");
            let Some(taints) = by_node.get(node) else { continue };
            let tols = tolerations(p);
            let evict = taints.iter().any(|t| {
                let matching: Vec<&Value> = tols.iter().filter(|x| tolerates(std::slice::from_ref(*x), t)).collect();
                if matching.is_empty() {
                    return true;
                }
                // Tolerated forever unless every matching toleration has a deadline that passed.
                let since =
                    self.taint_since.get(&(node.to_string(), o::s(t, "/key").to_string())).copied().unwrap_or(self.now);
                matching
                    .iter()
                    .all(|x| o::i64_at(x, "/tolerationSeconds").is_some_and(|s| self.now - since >= s as f64))
            });
            if evict {
                let (ns, name) = (o::namespace(p).to_string(), o::name(p).to_string());
                if self.store.delete(res(ids::PODS), &ns, &name, None).is_ok() {
                    self.events.emit(
                        &self.store,
                        &self.now_str,
                        &involved(p),
                        &ns,
                        "Normal",
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {ns}/{name}"),
                        "taint-eviction-controller",
                        "",
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toleration_matching() {
        let taint = json!({"key": "node.cilium.io/agent-not-ready", "effect": "NoSchedule"});
        assert!(tolerates(&[json!({"operator": "Exists"})], &taint));
        assert!(!tolerates(&[json!({"key": "x", "operator": "Exists"})], &taint));
        assert!(tolerates(
            &[json!({"key": "node.cilium.io/agent-not-ready", "operator": "Exists", "effect": "NoSchedule"})],
            &taint
        ));
        assert!(!tolerates(
            &[json!({"key": "node.cilium.io/agent-not-ready", "operator": "Exists", "effect": "NoExecute"})],
            &taint
        ));
    }

    #[test]
    fn daemonset_pinning() {
        let pod = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}});
        assert_eq!(pinned_node(&pod).as_deref(), Some("n1"));
        assert!(node_matches(&pod["spec"], &json!({"metadata": {"name": "n1"}})));
        assert!(!node_matches(&pod["spec"], &json!({"metadata": {"name": "n2"}})));
    }
}
