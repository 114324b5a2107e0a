//! Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch (the
//! merge keys of the well-known core types), and server-side apply treated as a strategic merge.

use serde_json::{Map, Value};

/// The patch format, from the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<PatchKind> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" => Some(PatchKind::Apply),
            _ => None,
        }
    }
}

/// Merge key of a list field (by the field name and, where ambiguous, what its items carry),
/// or `None` for lists that are replaced as a whole (atomic, as `taints` and `tolerations` are in
/// the real types).
fn merge_key(field: &str, items: &[&Value]) -> Option<&'static str> {
    let has = |k: &str| items.iter().any(|i| i.get(k).is_some());
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" if has("containerPort") => "containerPort",
        "ports" => "port",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "resourceClaims" | "schedulingGates" => "name",
        _ => return None,
    })
}

/// Primitive lists that merge as sets.
fn set_list(field: &str) -> bool {
    matches!(field, "finalizers")
}

fn directive<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

/// Applies a strategic merge patch to `target` in place.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(pobj) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    match directive(patch, "$patch") {
        Some("replace") => {
            let mut p = pobj.clone();
            p.remove("$patch");
            *target = Value::Object(p);
            return;
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(tobj) = target.as_object_mut() else { return };
    if let Some(keep) = pobj.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        tobj.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, pv) in pobj {
        if k.starts_with('$') {
            if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/")
                && let (Some(list), Some(del)) = (tobj.get_mut(field).and_then(Value::as_array_mut), pv.as_array())
            {
                list.retain(|x| !del.contains(x));
            }
            // `$setElementOrder/...` only orders the result: tolerated, ignored.
            continue;
        }
        match pv {
            Value::Null => {
                tobj.remove(k);
            }
            Value::Object(_) if directive(pv, "$patch") == Some("delete") => {
                tobj.remove(k);
            }
            Value::Object(_) => strategic_merge(tobj.entry(k.clone()).or_insert(Value::Null), pv),
            Value::Array(items) => {
                let merged = merge_list(k, tobj.get(k), items);
                tobj.insert(k.clone(), merged);
            }
            _ => {
                tobj.insert(k.clone(), pv.clone());
            }
        }
    }
}

fn merge_list(field: &str, current: Option<&Value>, patch: &[Value]) -> Value {
    let cur: Vec<Value> = current.and_then(Value::as_array).cloned().unwrap_or_default();
    // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
    if patch.iter().any(|p| directive(p, "$patch") == Some("replace")) {
        return Value::Array(patch.iter().filter(|p| directive(p, "$patch").is_none()).cloned().collect());
    }
    if set_list(field) && patch.iter().all(|p| !p.is_object()) {
        let mut out = cur;
        for p in patch {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        return Value::Array(out);
    }
    let all_items: Vec<&Value> = cur.iter().chain(patch.iter()).collect();
    let Some(key) = merge_key(field, &all_items).filter(|_| patch.iter().all(Value::is_object)) else {
        return Value::Array(patch.to_vec());
    };
    let mut out = cur;
    for p in patch {
        let pk = p.get(key);
        let pos = out.iter().position(|c| c.get(key) == pk && pk.is_some());
        let delete = directive(p, "$patch") == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut out[i], p),
            (None, false) => {
                let mut item = Value::Object(Map::new());
                strategic_merge(&mut item, p);
                out.push(item);
            }
        }
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(mut t: Value, p: Value) -> Value {
        strategic_merge(&mut t, &p);
        t
    }

    #[test]
    fn cordon_and_uncordon() {
        let node = json!({"spec": {"podCIDR": "10.42.0.0/24"}});
        let c = smp(node, json!({"spec": {"unschedulable": true}}));
        assert_eq!(c, json!({"spec": {"podCIDR": "10.42.0.0/24", "unschedulable": true}}));
        let u = smp(c, json!({"spec": {"unschedulable": null}}));
        assert_eq!(u, json!({"spec": {"podCIDR": "10.42.0.0/24"}}));
    }

    #[test]
    fn lists_merge_by_key() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]},
                          "metadata": {"finalizers": ["f1"]},
                          "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        let out = smp(
            pod,
            json!({"spec": {"containers": [{"name": "b", "image": "y:2"}, {"name": "c", "image": "z"}]},
                   "metadata": {"finalizers": ["f2"]},
                   "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(out["spec"]["containers"][0]["image"], "x:1");
        assert_eq!(out["spec"]["containers"][1]["image"], "y:2");
        assert_eq!(out["spec"]["containers"][2]["name"], "c");
        assert_eq!(out["metadata"]["finalizers"], json!(["f1", "f2"]));
        assert_eq!(out["status"]["conditions"], json!([{"type": "Ready", "status": "True"}]));
        let out = smp(
            out,
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]},
                                  "metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"]}}),
        );
        assert_eq!(out["spec"]["containers"].as_array().map(Vec::len), Some(2));
        assert_eq!(out["metadata"]["finalizers"], json!(["f2"]));
    }

    #[test]
    fn atomic_lists_and_directives() {
        let node = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}});
        let out = smp(node, json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}));
        assert_eq!(out["spec"]["taints"], json!([{"key": "b", "effect": "NoSchedule"}]), "taints are atomic");
        let out = smp(out, json!({"spec": {"$patch": "replace", "x": 1}}));
        assert_eq!(out["spec"], json!({"x": 1}));
        let out = smp(json!({"a": {"b": 1, "c": 2}}), json!({"a": {"$retainKeys": ["b"], "b": 3}}));
        assert_eq!(out, json!({"a": {"b": 3}}));
        assert_eq!(PatchKind::from_content_type("application/merge-patch+json; charset=utf-8"), Some(PatchKind::Merge));
        assert_eq!(PatchKind::from_content_type("text/plain"), None);
    }
}
