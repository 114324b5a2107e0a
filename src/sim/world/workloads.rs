//! Workload controllers: Deployments (ReplicaSets, rolling/recreate updates), ReplicaSets,
//! DaemonSets (one pod per eligible node, rolling updates with maxUnavailable), StatefulSets
//! (ordered pods and their PVCs), Jobs (cutover's probe Jobs run a pod; others complete at once,
//! no pods), and the garbage collector
//! (dependents of deleted owners go too).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};

use super::World;
use super::objects::{self as o, ids, res};
use super::scheduler::{node_matches, pinned_node, tolerates};
use crate::sim::registry;

/// Tolerations the DaemonSet controller adds to its pods.
fn ds_tolerations(host_network: bool) -> Vec<Value> {
    let mut t = vec![
        json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}),
    ];
    if host_network {
        t.push(json!({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}));
    }
    t
}

/// QoS class from container requests/limits.
pub fn qos_class(spec: &Value) -> &'static str {
    let cs = spec.get("containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut any = false;
    let mut guaranteed = !cs.is_empty();
    for c in &cs {
        let req = c.pointer("/resources/requests");
        let lim = c.pointer("/resources/limits");
        if req.is_some_and(|r| r.as_object().is_some_and(|m| !m.is_empty()))
            || lim.is_some_and(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(r));
            let q = req.and_then(|q| q.get(r)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if guaranteed {
        "Guaranteed"
    } else if any {
        "Burstable"
    } else {
        "BestEffort"
    }
}

fn replicas(obj: &Value) -> i64 {
    o::i64_at(obj, "/spec/replicas").unwrap_or(1).max(0)
}

fn int_or_percent(v: Option<&Value>, total: i64, default: i64, round_up: bool) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(default),
        Some(Value::String(s)) if s.ends_with('%') => {
            let p: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let x = total as f64 * p / 100.0;
            (if round_up { x.ceil() } else { x.floor() }) as i64
        }
        Some(Value::String(s)) => s.parse().unwrap_or(default),
        _ => default,
    }
}

fn owned_by<'a>(items: &'a [Arc<Value>], owner_uid: &str) -> Vec<&'a Arc<Value>> {
    items.iter().filter(|p| o::controller_of(p).is_some_and(|r| r.uid == owner_uid)).collect()
}

/// Non-terminating objects by the uid of their controller.
fn by_controller(items: &[Arc<Value>]) -> BTreeMap<String, Vec<Arc<Value>>> {
    let mut m: BTreeMap<String, Vec<Arc<Value>>> = BTreeMap::new();
    for i in items.iter().filter(|p| !o::is_terminating(p)) {
        if let Some(c) = o::controller_of(i) {
            m.entry(c.uid).or_default().push(i.clone());
        }
    }
    m
}

impl World {
    /// `pod-template-hash` / revision hash of a workload's template, cached per generation.
    fn workload_hash(&mut self, obj: &Value) -> String {
        let key = (o::uid(obj).to_string(), o::i64_at(obj, "/metadata/generation").unwrap_or(0));
        if let Some(h) = self.hashes.get(&key) {
            return h.clone();
        }
        let h = o::template_hash(obj.pointer("/spec/template").unwrap_or(&Value::Null));
        if self.hashes.len() > 4096 {
            self.hashes.clear();
        }
        self.hashes.insert(key, h.clone());
        h
    }

    /// A pod for `owner` from its template, with the defaults the API server and admission add.
    pub(crate) fn pod_from_template(
        &mut self,
        owner: &Value,
        template: &Value,
        extra_labels: &[(&str, String)],
    ) -> Value {
        let mut meta = json!({
            "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
            "ownerReferences": [o::owner_ref(owner)],
        });
        if let Some(a) = template.pointer("/metadata/annotations") {
            meta["annotations"] = a.clone();
        }
        for (k, v) in extra_labels {
            meta["labels"][*k] = json!(v);
        }
        let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
        self.pod_defaults(&mut spec, o::s(owner, "/kind") == "DaemonSet");
        let qos = qos_class(&spec);
        json!({"metadata": meta, "spec": spec, "status": {"phase": "Pending", "qosClass": qos}})
    }

    /// Defaults and admission: service account token volume, default tolerations, priority.
    pub(crate) fn pod_defaults(&mut self, spec: &mut Value, daemonset: bool) {
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let token_vol: String = (0..5).map(|_| ALPHA[self.rng.usize(0..ALPHA.len())] as char).collect();
        let token_vol = format!("kube-api-access-{token_vol}");
        let Some(m) = spec.as_object_mut() else { return };
        for (k, v) in [
            ("restartPolicy", json!("Always")),
            ("terminationGracePeriodSeconds", json!(30)),
            ("dnsPolicy", json!("ClusterFirst")),
            ("schedulerName", json!("default-scheduler")),
            ("securityContext", json!({})),
            ("enableServiceLinks", json!(true)),
            ("preemptionPolicy", json!("PreemptLowerPriority")),
        ] {
            m.entry(k).or_insert(v);
        }
        let sa = m.get("serviceAccountName").and_then(Value::as_str).unwrap_or("default").to_string();
        m.insert("serviceAccountName".into(), json!(sa));
        m.insert("serviceAccount".into(), json!(sa));
        let prio = match m.get("priorityClassName").and_then(Value::as_str) {
            Some("system-node-critical") => 2_000_001_000,
            Some("system-cluster-critical") => 2_000_000_000,
            _ => 0,
        };
        m.insert("priority".into(), json!(prio));
        let host = m.get("hostNetwork").and_then(Value::as_bool).unwrap_or(false);
        let mut tols = m.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
        let extra = if daemonset {
            ds_tolerations(host)
        } else {
            vec![
                json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
                json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
            ]
        };
        for t in extra {
            if !tols.iter().any(|x| o::s(x, "/key") == o::s(&t, "/key") && o::s(x, "/effect") == o::s(&t, "/effect")) {
                tols.push(t);
            }
        }
        m.insert("tolerations".into(), Value::Array(tols));
        if let Some(Value::Array(cs)) = m.get_mut("containers") {
            for c in cs.iter_mut() {
                if let Some(cm) = c.as_object_mut() {
                    cm.entry("imagePullPolicy").or_insert(json!("IfNotPresent"));
                    cm.entry("terminationMessagePath").or_insert(json!("/dev/termination-log"));
                    cm.entry("terminationMessagePolicy").or_insert(json!("File"));
                    cm.entry("resources").or_insert(json!({}));
                    let mounts = cm.entry("volumeMounts").or_insert(json!([]));
                    if let Some(a) = mounts.as_array_mut() {
                        a.push(json!({"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": token_vol, "readOnly": true}));
                    }
                }
            }
        }
        let vols = m.entry("volumes").or_insert(json!([]));
        if let Some(a) = vols.as_array_mut() {
            a.push(json!({"name": token_vol, "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
                {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}},
            ]}}));
        }
    }

    fn create_pod(&mut self, ns: &str, mut pod: Value, generate_name: Option<&str>, name: Option<&str>) -> bool {
        if let Some(g) = generate_name {
            pod["metadata"]["generateName"] = json!(g);
        }
        if let Some(n) = name {
            pod["metadata"]["name"] = json!(n);
        }
        match self.store.create(res(ids::PODS), ns, pod) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, "sim: pod create failed");
                false
            }
        }
    }

    pub(crate) fn workloads_tick(&mut self) {
        self.deployments_tick();
        self.replicasets_tick();
        self.daemonsets_tick();
        self.statefulsets_tick();
        self.jobs_tick();
        self.pvc_tick();
    }

    fn deployments_tick(&mut self) {
        let (deps, _) = self.store.list(res(ids::DEPLOYMENTS), None);
        let (rss, _) = self.store.list(res(ids::REPLICASETS), None);
        for d in deps.iter().filter(|d| !o::is_terminating(d)) {
            let ns = o::namespace(d).to_string();
            let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let hash = self.workload_hash(d);
            let owned = owned_by(&rss, o::uid(d));
            let desired = replicas(d);
            let revision = owned
                .iter()
                .filter_map(|r| o::s(r, "/metadata/annotations/deployment.kubernetes.io~1revision").parse::<i64>().ok())
                .max()
                .unwrap_or(0);
            let new_rs =
                owned.iter().find(|r| o::labels(r).get("pod-template-hash") == Some(&hash)).map(|r| (*r).clone());
            let new_rs = match new_rs {
                Some(r) => r,
                None => {
                    let mut tmpl = template.clone();
                    tmpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                    let mut sel = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
                    sel["matchLabels"]["pod-template-hash"] = json!(hash);
                    let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
                    labels["pod-template-hash"] = json!(hash);
                    let rs = json!({
                        "metadata": {
                            "name": format!("{}-{hash}", o::name(d)),
                            "labels": labels,
                            "annotations": {
                                "deployment.kubernetes.io/desired-replicas": desired.to_string(),
                                "deployment.kubernetes.io/max-replicas": (desired + 1).to_string(),
                                "deployment.kubernetes.io/revision": (revision + 1).to_string(),
                            },
                            "ownerReferences": [o::owner_ref(d)],
                        },
                        "spec": {"replicas": 0, "selector": sel, "template": tmpl},
                    });
                    match self.store.create(res(ids::REPLICASETS), &ns, rs) {
                        Ok(r) => r,
                        Err(_) => continue,
                    }
                }
            };
            let olds: Vec<&Arc<Value>> = owned.iter().filter(|r| o::uid(r) != o::uid(&new_rs)).copied().collect();
            let old_running: i64 = olds.iter().map(|r| o::i64_at(r, "/status/replicas").unwrap_or(0)).sum();
            let recreate = o::s(d, "/spec/strategy/type") == "Recreate";
            let new_ready = o::i64_at(&new_rs, "/status/readyReplicas").unwrap_or(0);
            // Old pods may go as long as `desired - maxUnavailable` stay available.
            let max_unavail = int_or_percent(
                Some(d.pointer("/spec/strategy/rollingUpdate/maxUnavailable").unwrap_or(&json!("25%"))),
                desired,
                0,
                false,
            );
            let (new_target, mut old_budget) = if recreate {
                if old_running > 0 { (0, 0) } else { (desired, 0) }
            } else {
                (desired, (desired - max_unavail - new_ready).max(0))
            };
            self.scale_rs(&new_rs, new_target);
            let mut olds_sorted = olds.clone();
            olds_sorted.sort_by_key(|r| {
                std::cmp::Reverse(
                    o::s(r, "/metadata/annotations/deployment.kubernetes.io~1revision").parse::<i64>().unwrap_or(0),
                )
            });
            for r in olds_sorted {
                let cur = replicas(r).min(old_budget);
                old_budget -= cur;
                self.scale_rs(r, cur);
            }
            // Status from the ReplicaSets' status (as listed at the start of this tick).
            let sum = |f: &str| owned.iter().map(|r| o::i64_at(r, f).unwrap_or(0)).sum::<i64>();
            let total = sum("/status/replicas");
            let ready = sum("/status/readyReplicas");
            let updated = o::i64_at(&new_rs, "/status/replicas").unwrap_or(0);
            let new_name = o::name(&new_rs).to_string();
            let now = self.now_str.clone();
            let generation = o::i64_at(d, "/metadata/generation").unwrap_or(1);
            {
                let dd = d;
                let mut conds = dd.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
                let max_unavail =
                    int_or_percent(d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"), desired, 0, false);
                if ready >= desired - max_unavail.max(0) {
                    o::set_condition(
                        &mut conds,
                        "Available",
                        "True",
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability.",
                        &now,
                    );
                } else {
                    o::set_condition(
                        &mut conds,
                        "Available",
                        "False",
                        "MinimumReplicasUnavailable",
                        "Deployment does not have minimum availability.",
                        &now,
                    );
                }
                if updated == desired && ready >= desired && total == desired {
                    o::set_condition(
                        &mut conds,
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                        &now,
                    );
                } else {
                    o::set_condition(
                        &mut conds,
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        &format!("ReplicaSet \"{new_name}\" is progressing."),
                        &now,
                    );
                }
                for c in conds.iter_mut() {
                    c["lastUpdateTime"] = c.get("lastTransitionTime").cloned().unwrap_or(json!(now));
                }
                let mut st = json!({"observedGeneration": generation, "replicas": total, "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": ready, "conditions": conds});
                if desired - ready > 0 {
                    st["unavailableReplicas"] = json!(desired - ready);
                }
                if ready == 0
                    && let Some(m) = st.as_object_mut()
                {
                    m.remove("readyReplicas");
                    m.remove("availableReplicas");
                }
                if d.get("status") != Some(&st) {
                    let _ = self.store.mutate(res(ids::DEPLOYMENTS), &ns, o::name(d), |x| {
                        x["status"] = st;
                        Ok(())
                    });
                }
            }
        }
    }

    fn scale_rs(&mut self, rs: &Value, n: i64) {
        if replicas(rs) == n {
            return;
        }
        let _ = self.store.mutate(res(ids::REPLICASETS), o::namespace(rs), o::name(rs), |r| {
            r["spec"]["replicas"] = json!(n);
            Ok(())
        });
    }

    fn replicasets_tick(&mut self) {
        let (rss, _) = self.store.list(res(ids::REPLICASETS), None);
        let (pods, _) = self.store.list(res(ids::PODS), None);
        let owned = by_controller(&pods);
        for rs in rss.iter().filter(|r| !o::is_terminating(r)) {
            let ns = o::namespace(rs).to_string();
            let want = replicas(rs);
            let mut active: Vec<Arc<Value>> = owned.get(o::uid(rs)).cloned().unwrap_or_default();
            let have = active.len() as i64;
            let mut count = have;
            let ready = active.iter().filter(|p| o::pod_ready(p)).count() as i64;
            if have < want {
                let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
                for _ in 0..(want - have) {
                    let pod = self.pod_from_template(rs, &template, &[]);
                    if self.create_pod(&ns, pod, Some(&format!("{}-", o::name(rs))), None) {
                        count += 1;
                    }
                }
            } else if have > want {
                // Delete unscheduled, then not ready, then newest first.
                active.sort_by_key(|p| {
                    (
                        !o::s(p, "/spec/nodeName").is_empty(),
                        o::pod_ready(p),
                        std::cmp::Reverse(o::s(p, "/metadata/resourceVersion").parse::<u64>().unwrap_or(0)),
                    )
                });
                for p in active.iter().take((have - want) as usize) {
                    if self.store.delete(res(ids::PODS), &ns, o::name(p), None).is_ok() {
                        count -= 1;
                    }
                }
            }
            let ready = ready.min(count);
            let generation = o::i64_at(rs, "/metadata/generation").unwrap_or(1);
            let mut st = json!({"observedGeneration": generation, "replicas": count, "fullyLabeledReplicas": count, "readyReplicas": ready, "availableReplicas": ready});
            if let Some(m) = st.as_object_mut() {
                if ready == 0 {
                    m.remove("readyReplicas");
                    m.remove("availableReplicas");
                }
                if count == 0 {
                    m.remove("fullyLabeledReplicas");
                }
            }
            if rs.get("status") != Some(&st) {
                let _ = self.store.mutate(res(ids::REPLICASETS), &ns, o::name(rs), |r| {
                    r["status"] = st;
                    Ok(())
                });
            }
        }
    }

    /// Whether a DaemonSet pod may be placed on / keep running on a node.
    fn ds_node_ok(template_spec: &Value, node: &Value, existing: bool) -> bool {
        if !node_matches(template_spec, node) || o::is_terminating(node) {
            return false;
        }
        let mut tols = template_spec.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
        tols.extend(ds_tolerations(o::bool_at(template_spec, "/hostNetwork")));
        node.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default().iter().all(|t| {
            let e = o::s(t, "/effect");
            let relevant = e == "NoExecute" || (e == "NoSchedule" && !existing);
            !relevant || tolerates(&tols, t)
        })
    }

    fn daemonsets_tick(&mut self) {
        let (dss, _) = self.store.list(res(ids::DAEMONSETS), None);
        let (nodes, _) = self.store.list(res(ids::NODES), None);
        let (pods, _) = self.store.list(res(ids::PODS), None);
        let owned_all = by_controller(&pods);
        for ds in dss.iter().filter(|d| !o::is_terminating(d)) {
            let ns = o::namespace(ds).to_string();
            let template = ds.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let tspec = template.get("spec").cloned().unwrap_or(json!({}));
            let hash = self.workload_hash(ds);
            let generation = o::i64_at(ds, "/metadata/generation").unwrap_or(1);
            let owned = owned_all.get(o::uid(ds)).cloned().unwrap_or_default();
            let mut by_node: BTreeMap<String, Vec<&Arc<Value>>> = BTreeMap::new();
            for p in &owned {
                by_node.entry(pinned_node(p).unwrap_or_default()).or_default().push(p);
            }
            let mut eligible: BTreeSet<String> = BTreeSet::new();
            let mut misscheduled = 0;
            let mut created: BTreeSet<String> = BTreeSet::new();
            let mut deleted: BTreeSet<String> = BTreeSet::new();
            for n in &nodes {
                let name = o::name(n).to_string();
                let has = by_node.get(&name).is_some_and(|v| !v.is_empty());
                if Self::ds_node_ok(&tspec, n, has) {
                    eligible.insert(name.clone());
                    if !has {
                        let pod = self.ds_pod(ds, &template, &name, &hash, generation);
                        if self.create_pod(&ns, pod, Some(&format!("{}-", o::name(ds))), None) {
                            created.insert(name.clone());
                        }
                    }
                }
            }
            for (node, ps) in &by_node {
                if !eligible.contains(node) {
                    misscheduled += ps.len();
                    for p in ps {
                        let _ = self.store.delete(res(ids::PODS), &ns, o::name(p), None);
                        deleted.insert(o::uid(p).to_string());
                    }
                } else if ps.len() > 1 {
                    for p in &ps[1..] {
                        let _ = self.store.delete(res(ids::PODS), &ns, o::name(p), None);
                        deleted.insert(o::uid(p).to_string());
                    }
                }
            }
            // Rolling update: replace outdated pods while staying within maxUnavailable.
            if o::s(ds, "/spec/updateStrategy/type") != "OnDelete" {
                let desired = eligible.len() as i64;
                let max_unavail =
                    int_or_percent(ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"), desired, 1, true)
                        .max(1);
                let unavailable = eligible
                    .iter()
                    .filter(|n| !by_node.get(*n).is_some_and(|ps| ps.iter().any(|p| o::pod_ready(p))))
                    .count() as i64;
                let mut budget = max_unavail - unavailable;
                for n in &eligible {
                    let Some(ps) = by_node.get(n) else { continue };
                    let outdated: Vec<&&Arc<Value>> = ps
                        .iter()
                        .filter(|p| {
                            o::labels(p).get("controller-revision-hash") != Some(&hash) && !deleted.contains(o::uid(p))
                        })
                        .collect();
                    for p in outdated {
                        let ready = o::pod_ready(p);
                        if !ready || budget > 0 {
                            if ready {
                                budget -= 1;
                            }
                            let _ = self.store.delete(res(ids::PODS), &ns, o::name(p), None);
                            deleted.insert(o::uid(p).to_string());
                        }
                    }
                }
            }
            // Status (pods as listed at the start of the tick, minus deletions, plus creations).
            let live = |n: &String| {
                by_node.get(n).map(|ps| ps.iter().filter(|p| !deleted.contains(o::uid(p))).count()).unwrap_or(0)
            };
            let desired = eligible.len() as i64;
            let current = eligible.iter().filter(|n| live(n) > 0 || created.contains(*n)).count() as i64;
            let ready = eligible
                .iter()
                .filter(|n| {
                    by_node.get(*n).is_some_and(|ps| ps.iter().any(|p| o::pod_ready(p) && !deleted.contains(o::uid(p))))
                })
                .count() as i64;
            let updated = owned
                .iter()
                .filter(|p| o::labels(p).get("controller-revision-hash") == Some(&hash) && !deleted.contains(o::uid(p)))
                .count() as i64
                + created.len() as i64;
            let mut st = json!({
                "currentNumberScheduled": current, "desiredNumberScheduled": desired, "numberMisscheduled": misscheduled,
                "numberReady": ready, "numberAvailable": ready, "updatedNumberScheduled": updated, "observedGeneration": generation,
            });
            if desired - ready > 0 {
                st["numberUnavailable"] = json!(desired - ready);
            }
            if ready == 0
                && let Some(m) = st.as_object_mut()
            {
                m.remove("numberAvailable");
            }
            if ds.get("status") != Some(&st) {
                let _ = self.store.mutate(res(ids::DAEMONSETS), &ns, o::name(ds), |d| {
                    d["status"] = st;
                    Ok(())
                });
            }
        }
    }

    fn ds_pod(&mut self, ds: &Value, template: &Value, node: &str, hash: &str, generation: i64) -> Value {
        let mut pod = self.pod_from_template(
            ds,
            template,
            &[("controller-revision-hash", hash.to_string()), ("pod-template-generation", generation.to_string())],
        );
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
        });
        pod
    }

    fn statefulsets_tick(&mut self) {
        let (stss, _) = self.store.list(res(ids::STATEFULSETS), None);
        let (pods, _) = self.store.list(res(ids::PODS), None);
        for sts in stss.iter().filter(|d| !o::is_terminating(d)) {
            let ns = o::namespace(sts).to_string();
            let sname = o::name(sts).to_string();
            let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let rev = format!("{sname}-{}", self.workload_hash(sts));
            let want = replicas(sts);
            let owned: Vec<&Arc<Value>> = owned_by(&pods, o::uid(sts));
            let by_name: BTreeMap<&str, &Arc<Value>> = owned.iter().map(|p| (o::name(p), *p)).collect();
            let parallel = o::s(sts, "/spec/podManagementPolicy") == "Parallel";
            let mut created = 0;
            for i in 0..want {
                let pname = format!("{sname}-{i}");
                match by_name.get(pname.as_str()) {
                    Some(p) if !parallel && !o::pod_ready(p) => break,
                    Some(_) => {}
                    None => {
                        let pod = self.sts_pod(sts, &template, i, &rev);
                        if self.create_pod(&ns, pod, None, Some(&pname)) {
                            created += 1;
                        }
                        if !parallel {
                            break;
                        }
                    }
                }
            }
            // Scale down from the highest ordinal; roll outdated pods from the highest ordinal.
            let mut sorted: Vec<(i64, &Arc<Value>)> = owned
                .iter()
                .filter(|p| !o::is_terminating(p))
                .filter_map(|p| o::name(p).rsplit('-').next()?.parse::<i64>().ok().map(|i| (i, *p)))
                .collect();
            sorted.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
            let mut deleted = None;
            if let Some((_, p)) = sorted.iter().find(|(i, _)| *i >= want) {
                let _ = self.store.delete(res(ids::PODS), &ns, o::name(p), None);
                deleted = Some(o::uid(p).to_string());
            } else if sorted.iter().all(|(_, p)| o::pod_ready(p))
                && let Some((_, p)) =
                    sorted.iter().find(|(_, p)| o::labels(p).get("controller-revision-hash") != Some(&rev))
            {
                let _ = self.store.delete(res(ids::PODS), &ns, o::name(p), None);
                deleted = Some(o::uid(p).to_string());
            }
            let alive: Vec<&&Arc<Value>> =
                sorted.iter().map(|(_, p)| p).filter(|p| deleted.as_deref() != Some(o::uid(p))).collect();
            let count = alive.len() as i64 + created;
            let ready = alive.iter().filter(|p| o::pod_ready(p)).count() as i64;
            let updated = alive.iter().filter(|p| o::labels(p).get("controller-revision-hash") == Some(&rev)).count()
                as i64
                + created;
            let generation = o::i64_at(sts, "/metadata/generation").unwrap_or(1);
            let mut st = json!({
                "observedGeneration": generation, "replicas": count, "readyReplicas": ready, "availableReplicas": ready,
                "currentReplicas": updated, "updatedReplicas": updated, "currentRevision": rev, "updateRevision": rev, "collisionCount": 0,
            });
            if ready == 0
                && let Some(m) = st.as_object_mut()
            {
                m.remove("readyReplicas");
            }
            if sts.get("status") != Some(&st) {
                let _ = self.store.mutate(res(ids::STATEFULSETS), &ns, &sname, |s| {
                    s["status"] = st;
                    Ok(())
                });
            }
        }
    }

    fn sts_pod(&mut self, sts: &Value, template: &Value, i: i64, rev: &str) -> Value {
        let sname = o::name(sts);
        let ns = o::namespace(sts).to_string();
        let pname = format!("{sname}-{i}");
        let mut pod = self.pod_from_template(
            sts,
            template,
            &[
                ("controller-revision-hash", rev.to_string()),
                ("statefulset.kubernetes.io/pod-name", pname.clone()),
                ("apps.kubernetes.io/pod-index", i.to_string()),
            ],
        );
        pod["spec"]["hostname"] = json!(pname);
        if let Some(svc) = sts.pointer("/spec/serviceName").and_then(Value::as_str) {
            pod["spec"]["subdomain"] = json!(svc);
        }
        for vct in sts.pointer("/spec/volumeClaimTemplates").and_then(Value::as_array).cloned().unwrap_or_default() {
            let vname = o::name(&vct).to_string();
            let claim = format!("{vname}-{pname}");
            if self.store.get(res(ids::PVCS), &ns, &claim).is_err() {
                let pvc = json!({"metadata": {"name": claim, "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({}))}, "spec": vct.get("spec").cloned().unwrap_or(json!({}))});
                let _ = self.store.create(res(ids::PVCS), &ns, pvc);
            }
            if let Some(vols) = pod.pointer_mut("/spec/volumes").and_then(Value::as_array_mut) {
                vols.insert(0, json!({"name": vname, "persistentVolumeClaim": {"claimName": claim}}));
            }
        }
        pod
    }

    /// Binds pending PVCs of a known StorageClass to a new PV (the provisioners are instant here).
    /// A deleted PVC goes once no pod uses it (pvc-protection); its PV, reclaim policy Delete,
    /// goes with it (Longhorn deletes the volume and its content).
    fn pvc_tick(&mut self) {
        let (pvcs, _) = self.store.list(res(ids::PVCS), None);
        let (pods, _) = self.store.list(res(ids::PODS), None);
        for pvc in pvcs.iter().filter(|p| o::is_terminating(p)) {
            let ns = o::namespace(pvc);
            let in_use = pods.iter().any(|p| {
                o::namespace(p) == ns
                    && !matches!(o::s(p, "/status/phase"), "Succeeded" | "Failed")
                    && p.pointer("/spec/volumes").and_then(Value::as_array).is_some_and(|vs| {
                        vs.iter().any(|v| o::s(v, "/persistentVolumeClaim/claimName") == o::name(pvc))
                    })
            });
            if !in_use {
                let _ = self.store.mutate(res(ids::PVCS), ns, o::name(pvc), |p| {
                    if let Some(m) = p.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                        m.remove("finalizers");
                    }
                    Ok(())
                });
            }
        }
        let claims: BTreeSet<String> =
            self.store.list(res(ids::PVCS), None).0.iter().map(|p| o::uid(p).to_string()).collect();
        let (pvs, _) = self.store.list(res(ids::PVS), None);
        for pv in pvs.iter() {
            let claim_uid = o::s(pv, "/spec/claimRef/uid");
            if claim_uid.is_empty()
                || claims.contains(claim_uid)
                || o::s(pv, "/spec/persistentVolumeReclaimPolicy") != "Delete"
            {
                continue;
            }
            let name = o::name(pv).to_string();
            let _ = self.store.delete(res(ids::PVS), "", &name, None);
            let _ = self.store.mutate(res(ids::PVS), "", &name, |p| {
                if let Some(m) = p.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                    m.remove("finalizers");
                }
                Ok(())
            });
            if let Ok(mut v) = self.volumes.lock() {
                v.content.remove(&name);
            }
        }
        for pvc in pvcs.iter().filter(|p| o::s(p, "/spec/volumeName").is_empty() && !o::is_terminating(p)) {
            let sc = match o::s(pvc, "/spec/storageClassName") {
                "" => "local-path".to_string(),
                x => x.to_string(),
            };
            let driver = match sc.as_str() {
                "longhorn" => "driver.longhorn.io",
                "local-path" => "rancher.io/local-path",
                _ => continue,
            };
            let ns = o::namespace(pvc).to_string();
            let pv_name = format!("pvc-{}", o::uid(pvc));
            let size = pvc.pointer("/spec/resources/requests/storage").cloned().unwrap_or(json!("1Gi"));
            let modes = pvc.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"]));
            let _ = self.store.create(
                res(ids::PVS),
                "",
                json!({
                    "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": driver}, "finalizers": ["kubernetes.io/pv-protection"]},
                    "spec": {
                        "accessModes": modes, "capacity": {"storage": size}, "persistentVolumeReclaimPolicy": "Delete", "storageClassName": sc, "volumeMode": "Filesystem",
                        "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": o::name(pvc), "namespace": ns, "uid": o::uid(pvc)},
                        "csi": {"driver": driver, "volumeHandle": pv_name, "fsType": "ext4"},
                    },
                    "status": {"phase": "Bound"},
                }),
            );
            let _ = self.store.mutate(res(ids::PVCS), &ns, o::name(pvc), |p| {
                p["spec"]["volumeName"] = json!(pv_name);
                p["spec"]["storageClassName"] = json!(sc);
                p["spec"]["volumeMode"] = json!("Filesystem");
                let a = o::meta_map_mut(p, "annotations");
                a.insert("pv.kubernetes.io/bind-completed".into(), json!("yes"));
                a.insert("pv.kubernetes.io/bound-by-controller".into(), json!("yes"));
                a.insert("volume.kubernetes.io/storage-provisioner".into(), json!(driver));
                p["metadata"]["finalizers"] = json!(["kubernetes.io/pvc-protection"]);
                p["status"] = json!({"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}});
                Ok(())
            });
        }
    }

    /// Jobs labelled `app.kubernetes.io/managed-by=cutover` (the validation probes) run one pod
    /// from their template and complete (or fail) with it, as the Job controller does for
    /// `completions: 1, parallelism: 1`. Other Jobs (the certgen hook) complete at once without
    /// pods.
    fn jobs_tick(&mut self) {
        let (jobs, _) = self.store.list(res(ids::JOBS), None);
        let (pods, _) = self.store.list(res(ids::PODS), None);
        let now = self.now_str.clone();
        for j in jobs.iter().filter(|j| !o::is_terminating(j)) {
            let finished = j.pointer("/status/succeeded").is_some_and(|n| n.as_i64().unwrap_or(0) > 0)
                || j.pointer("/status/failed").is_some_and(|n| n.as_i64().unwrap_or(0) > 0);
            if finished {
                continue;
            }
            if o::labels(j).get("app.kubernetes.io/managed-by").map(String::as_str) != Some("cutover") {
                let _ = self.store.mutate(res(ids::JOBS), o::namespace(j), o::name(j), |x| {
                    x["status"] = json!({"startTime": now, "completionTime": now, "succeeded": 1, "ready": 0, "terminating": 0,
                        "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now}]});
                    Ok(())
                });
                continue;
            }
            let ns = o::namespace(j).to_string();
            let mine = owned_by(&pods, o::uid(j));
            if mine.is_empty() && j.pointer("/status/startTime").is_none() {
                let template = j.pointer("/spec/template").cloned().unwrap_or(json!({}));
                let uid = o::uid(j).to_string();
                let name = o::name(j).to_string();
                let extra = [
                    ("batch.kubernetes.io/controller-uid", uid.clone()),
                    ("batch.kubernetes.io/job-name", name.clone()),
                    ("controller-uid", uid),
                    ("job-name", name.clone()),
                ];
                let pod = self.pod_from_template(j, &template, &extra);
                if self.create_pod(&ns, pod, Some(&format!("{name}-")), None) {
                    let _ = self.store.mutate(res(ids::JOBS), &ns, &name, |x| {
                        x["status"] = json!({"startTime": now, "active": 1, "ready": 0, "terminating": 0});
                        Ok(())
                    });
                }
                continue;
            }
            let phase = |p: &Arc<Value>| o::s(p, "/status/phase").to_string();
            let succeeded = mine.iter().filter(|p| phase(p) == "Succeeded").count();
            let failed = mine.iter().filter(|p| phase(p) == "Failed").count();
            let active = mine.len() - succeeded - failed;
            let start = o::s(j, "/metadata/creationTimestamp").to_string();
            let start = j.pointer("/status/startTime").and_then(Value::as_str).unwrap_or(&start).to_string();
            let status = if succeeded > 0 {
                json!({"startTime": start, "completionTime": now, "succeeded": succeeded, "active": 0, "ready": 0, "terminating": 0,
                    "conditions": [
                        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now},
                        {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now}]})
            } else if failed > 0 {
                json!({"startTime": start, "failed": failed, "active": 0, "ready": 0, "terminating": 0,
                    "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": now, "lastTransitionTime": now}]})
            } else {
                json!({"startTime": start, "active": active, "ready": 0, "terminating": 0})
            };
            if j.get("status") != Some(&status)
                && (succeeded + failed > 0
                    || j.pointer("/status/active").and_then(Value::as_u64) != Some(active as u64))
            {
                let _ = self.store.mutate(res(ids::JOBS), &ns, o::name(j), |x| {
                    x["status"] = status;
                    Ok(())
                });
            }
        }
    }

    /// Deletes dependents whose every known owner is gone (background propagation).
    pub(crate) fn gc_tick(&mut self) {
        let snap = self.store.snapshot();
        let uids: BTreeSet<&str> = snap.iter().map(|(_, v)| o::uid(v)).collect();
        let mut doomed = Vec::new();
        for (key, obj) in &snap {
            let Some(owners) = obj.pointer("/metadata/ownerReferences").and_then(Value::as_array) else { continue };
            let known: Vec<&Value> = owners
                .iter()
                .filter(|r| registry::by_kind(o::s(r, "/apiVersion"), o::s(r, "/kind")).is_some())
                .collect();
            if !known.is_empty() && known.iter().all(|r| !uids.contains(o::s(r, "/uid"))) && !o::is_terminating(obj) {
                doomed.push(key.clone());
            }
        }
        for key in doomed {
            if let Some(r) = registry::find(key.resource) {
                let _ = self.store.delete(r, &key.namespace, &key.name, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos() {
        assert_eq!(qos_class(&json!({"containers": [{}]})), "BestEffort");
        assert_eq!(qos_class(&json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]})), "Burstable");
        assert_eq!(
            qos_class(
                &json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]})
            ),
            "Guaranteed"
        );
    }

    #[test]
    fn percentages() {
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, 1, true), 1);
        assert_eq!(int_or_percent(Some(&json!(2)), 3, 1, true), 2);
        assert_eq!(int_or_percent(None, 3, 1, true), 1);
    }
}
