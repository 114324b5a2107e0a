//! Small helpers for reading and building Kubernetes objects held as JSON (labels, selectors,
//! owner references, conditions, quantities), shared by every controller of the world.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::sim::registry::{self, Resource};

/// Store ids of the resources the world writes (checked against the registry in a test).
pub mod ids {
    pub const NAMESPACES: &str = "namespaces";
    pub const NODES: &str = "nodes";
    pub const PODS: &str = "pods";
    pub const SERVICES: &str = "services";
    pub const ENDPOINTS: &str = "endpoints";
    pub const CONFIGMAPS: &str = "configmaps";
    pub const EVENTS: &str = "events";
    pub const PVCS: &str = "persistentvolumeclaims";
    pub const PVS: &str = "persistentvolumes";
    pub const DEPLOYMENTS: &str = "apps/deployments";
    pub const DAEMONSETS: &str = "apps/daemonsets";
    pub const STATEFULSETS: &str = "apps/statefulsets";
    pub const REPLICASETS: &str = "apps/replicasets";
    pub const JOBS: &str = "batch/jobs";
    pub const PDBS: &str = "policy/poddisruptionbudgets";
    pub const INGRESSES: &str = "networking.k8s.io/ingresses";
    pub const INGRESSCLASSES: &str = "networking.k8s.io/ingressclasses";
    pub const CRDS: &str = "apiextensions.k8s.io/customresourcedefinitions";
    pub const APPLICATIONS: &str = "argoproj.io/applications";
    pub const CILIUMNODES: &str = "cilium.io/ciliumnodes";
    pub const CILIUMENDPOINTS: &str = "cilium.io/ciliumendpoints";
    pub const CLUSTERISSUERS: &str = "cert-manager.io/clusterissuers";
    pub const IPADDRESSPOOLS: &str = "metallb.io/ipaddresspools";
    pub const LEASES: &str = "coordination.k8s.io/leases";

    #[cfg(test)]
    pub const ALL: &[&str] = &[
        NAMESPACES,
        NODES,
        PODS,
        SERVICES,
        ENDPOINTS,
        CONFIGMAPS,
        EVENTS,
        PVCS,
        PVS,
        DEPLOYMENTS,
        DAEMONSETS,
        STATEFULSETS,
        REPLICASETS,
        JOBS,
        PDBS,
        INGRESSES,
        INGRESSCLASSES,
        CRDS,
        APPLICATIONS,
        CILIUMNODES,
        CILIUMENDPOINTS,
        CLUSTERISSUERS,
        IPADDRESSPOOLS,
        LEASES,
    ];
}

/// The registry entry for one of the ids in [`ids`]. Those ids are compile-time constants that a
/// unit test checks against the registry, so a miss is a programming error.
pub fn res(id: &str) -> &'static Resource {
    match registry::find(id) {
        Some(r) => r,
        None => panic!("sim registry has no resource {id:?}"),
    }
}

/// String at a JSON pointer, or "".
pub fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

pub fn name(v: &Value) -> &str {
    s(v, "/metadata/name")
}

pub fn namespace(v: &Value) -> &str {
    s(v, "/metadata/namespace")
}

pub fn uid(v: &Value) -> &str {
    s(v, "/metadata/uid")
}

pub fn is_terminating(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

pub fn bool_at(v: &Value, ptr: &str) -> bool {
    match v.pointer(ptr) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

pub fn i64_at(v: &Value, ptr: &str) -> Option<i64> {
    match v.pointer(ptr) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

/// Labels as an ordered map.
pub fn labels(v: &Value) -> BTreeMap<String, String> {
    string_map(v.pointer("/metadata/labels"))
}

pub fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default()
}

/// Whether a `LabelSelector` (matchLabels + matchExpressions) selects these labels. An empty
/// selector selects everything, as in Kubernetes.
pub fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if labels.get(k).map(String::as_str) != v.as_str() {
                return false;
            }
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = s(e, "/key");
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let have = labels.get(key).map(String::as_str);
            let ok = match s(e, "/operator") {
                "In" => have.is_some_and(|h| values.contains(&h)),
                "NotIn" => have.is_none_or(|h| !values.contains(&h)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

/// A plain `k=v` map selector (Services, nodeSelector).
pub fn map_selector_matches(sel: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The controlling owner reference of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

pub fn controller_of(v: &Value) -> Option<OwnerRef> {
    v.pointer("/metadata/ownerReferences")?.as_array()?.iter().find(|o| bool_at(o, "/controller")).map(|o| OwnerRef {
        api_version: s(o, "/apiVersion").to_string(),
        kind: s(o, "/kind").to_string(),
        name: s(o, "/name").to_string(),
        uid: s(o, "/uid").to_string(),
    })
}

/// An ownerReference entry pointing at `owner` (controller, blocking deletion, as the built-in
/// controllers write them).
pub fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": s(owner, "/apiVersion"),
        "kind": s(owner, "/kind"),
        "name": name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Sets a condition in a `conditions` array, keeping `lastTransitionTime` when the status did not
/// change (as every Kubernetes controller does). Heartbeat/probe fields are left to the caller.
pub fn set_condition(conds: &mut Vec<Value>, ctype: &str, status: &str, reason: &str, message: &str, now: &str) {
    let mut c = Map::new();
    c.insert("type".into(), json!(ctype));
    c.insert("status".into(), json!(status));
    if !reason.is_empty() {
        c.insert("reason".into(), json!(reason));
    }
    if !message.is_empty() {
        c.insert("message".into(), json!(message));
    }
    match conds.iter_mut().find(|x| s(x, "/type") == ctype) {
        Some(old) => {
            let ltt = if s(old, "/status") == status {
                old.get("lastTransitionTime").cloned().unwrap_or_else(|| json!(now))
            } else {
                json!(now)
            };
            c.insert("lastTransitionTime".into(), ltt);
            // Keep extra fields the caller set before (heartbeat, probe time).
            if let Some(o) = old.as_object() {
                for (k, v) in o {
                    if !c.contains_key(k) && k != "reason" && k != "message" {
                        c.insert(k.clone(), v.clone());
                    }
                }
            }
            *old = Value::Object(c);
        }
        None => {
            c.insert("lastTransitionTime".into(), json!(now));
            conds.push(Value::Object(c));
        }
    }
}

/// The condition of a type, if present.
pub fn condition<'a>(v: &'a Value, ptr: &str, ctype: &str) -> Option<&'a Value> {
    v.pointer(ptr)?.as_array()?.iter().find(|c| s(c, "/type") == ctype)
}

pub fn condition_status<'a>(v: &'a Value, ptr: &str, ctype: &str) -> &'a str {
    condition(v, ptr, ctype).map(|c| s(c, "/status")).unwrap_or("")
}

/// Whether a pod is Ready (condition Ready=True) and not terminating.
pub fn pod_ready(p: &Value) -> bool {
    condition_status(p, "/status/conditions", "Ready") == "True" && !is_terminating(p)
}

pub fn node_ready(n: &Value) -> bool {
    condition_status(n, "/status/conditions", "Ready") == "True"
}

/// Hex of SHA-256 over the input (for deterministic ids and digests).
pub fn sha_hex(input: &str) -> String {
    let d = Sha256::digest(input.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stable 64-bit hash (FNV-1a) for deterministic choices that must not depend on HashMap order.
pub fn fnv64(input: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Kubernetes' `SafeEncodeString` alphabet applied to a hash: the pod-template-hash /
/// controller-revision-hash look (`7d9c5b8f6`).
pub fn template_hash(template: &Value) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let text = serde_json::to_string(template).unwrap_or_default();
    let h = fnv64(&text) as u32;
    // SafeEncodeString over the decimal digits, as the controllers do.
    h.to_string().bytes().map(|b| ALPHA[usize::from(b) % ALPHA.len()] as char).collect()
}

/// Whether every field of `want` is present with the same value in `have` (objects compared
/// recursively, arrays element-wise with equal length). This is how the sim's Argo CD decides
/// "in sync": fields the controller or API server added to the live object are ignored.
pub fn is_subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().all(|(k, wv)| match h.get(k) {
            Some(hv) => is_subset(wv, hv),
            None => {
                wv.is_null() || wv.as_object().is_some_and(Map::is_empty) || wv.as_array().is_some_and(Vec::is_empty)
            }
        }),
        (Value::Array(w), Value::Array(h)) => w.len() == h.len() && w.iter().zip(h).all(|(a, b)| is_subset(a, b)),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::Number(b)) | (Value::Number(b), Value::String(a)) => *a == b.to_string(),
        (Value::Null, Value::Object(h)) => h.is_empty(),
        _ => want == have,
    }
}

/// Converts YAML text (one document) into JSON. Errors carry the parser's message.
pub fn yaml_to_json(text: &str) -> Result<Value, String> {
    crate::sim::yaml::to_json(text)
}

/// Splits a multi-document YAML text and converts each non-empty document into JSON.
pub fn yaml_docs_to_json(text: &str) -> Result<Vec<Value>, String> {
    crate::sim::yaml::docs_to_json(text)
}

/// Store key of an object (`resource id`, namespace, name), from its apiVersion/kind.
pub fn key_of(obj: &Value, default_ns: &str) -> Option<(&'static Resource, String, String)> {
    let r = registry::by_kind(s(obj, "/apiVersion"), s(obj, "/kind"))?;
    let ns = if r.namespaced {
        let n = namespace(obj);
        if n.is_empty() { default_ns.to_string() } else { n.to_string() }
    } else {
        String::new()
    };
    Some((r, ns, name(obj).to_string()))
}

/// Ensures `obj[field]` is a JSON object and returns it.
pub fn obj_mut<'a>(v: &'a mut Value, field: &str) -> &'a mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    let Value::Object(map) = v else { unreachable!("just made an object") };
    let e = map.entry(field.to_string()).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    match e {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// `metadata.<field>` (labels, annotations) as a mutable map, created when missing.
pub fn meta_map_mut<'a>(v: &'a mut Value, field: &str) -> &'a mut Map<String, Value> {
    let meta = obj_mut(v, "metadata");
    let e = meta.entry(field.to_string()).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    match e {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_ids_exist_in_registry() {
        for id in ids::ALL {
            assert!(registry::find(id).is_some(), "{id}");
        }
    }

    #[test]
    fn selectors() {
        let l: BTreeMap<String, String> = [("app".to_string(), "x".to_string())].into();
        assert!(selector_matches(&json!({"matchLabels": {"app": "x"}}), &l));
        assert!(!selector_matches(&json!({"matchLabels": {"app": "y"}}), &l));
        assert!(selector_matches(
            &json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]}),
            &l
        ));
        assert!(selector_matches(&json!({"matchExpressions": [{"key": "b", "operator": "DoesNotExist"}]}), &l));
        assert!(selector_matches(&json!({}), &l));
    }

    #[test]
    fn subset_compare() {
        assert!(is_subset(&json!({"a": 1, "b": {"c": [1, 2]}}), &json!({"a": 1, "b": {"c": [1, 2], "d": 3}, "e": 1})));
        assert!(!is_subset(&json!({"a": 1}), &json!({"a": 2})));
        assert!(!is_subset(&json!({"a": {"x": 1}}), &json!({})));
        assert!(is_subset(&json!({"a": "80"}), &json!({"a": 80})));
    }

    #[test]
    fn conditions_keep_transition_time() {
        let mut c = Vec::new();
        set_condition(&mut c, "Ready", "True", "R", "m", "t1");
        set_condition(&mut c, "Ready", "True", "R", "m2", "t2");
        assert_eq!(c[0]["lastTransitionTime"], "t1");
        set_condition(&mut c, "Ready", "False", "R", "m", "t3");
        assert_eq!(c[0]["lastTransitionTime"], "t3");
    }
}
