//! Server-side printing (`meta.k8s.io/v1 Table`) as kubectl asks for it: the usual columns for
//! nodes, pods, namespaces, workloads, PDBs and services, a CRD's `additionalPrinterColumns`
//! (Argo CD Application columns when the CRD object carries none), else NAME and AGE.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::sim::registry::{self, Resource};
use crate::sim::store::Store;

use super::objects::partial;

/// `?includeObject=`: what each row carries besides its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn from_query(v: Option<&str>) -> Include {
        match v {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

struct Col {
    name: String,
    typ: &'static str,
    priority: i64,
    /// How to compute the cell.
    cell: Cell,
}

enum Cell {
    Name,
    Age,
    Path(String),
    Fn(fn(&Value) -> Value),
}

fn col(name: &str, typ: &'static str, priority: i64, cell: Cell) -> Col {
    Col { name: name.to_string(), typ, priority, cell }
}

fn s(v: &Value, p: &str) -> String {
    match v.pointer(p) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn or_none(x: String) -> Value {
    json!(if x.is_empty() { "<none>".to_string() } else { x })
}

/// kubectl's human-readable duration.
pub fn human_age(secs: i64) -> String {
    if secs < 0 {
        return "0s".into();
    }
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", secs % 60) }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 { format!("{d}d") } else { format!("{d}d{}h", h % 24) }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else if d < 365 * 8 {
        format!("{}y{}d", d / 365, d % 365)
    } else {
        format!("{}y", d / 365)
    }
}

fn pod_ready(v: &Value) -> Value {
    let total = v.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
    let ready = v
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |c| c.iter().filter(|c| c.get("ready") == Some(&json!(true))).count());
    json!(format!("{ready}/{total}"))
}

fn pod_status(v: &Value) -> Value {
    if v.pointer("/metadata/deletionTimestamp").is_some() {
        return json!("Terminating");
    }
    let mut reason = s(v, "/status/reason");
    if reason.is_empty() {
        reason = s(v, "/status/phase");
    }
    for c in v.pointer("/status/containerStatuses").and_then(Value::as_array).into_iter().flatten() {
        let w = s(c, "/state/waiting/reason");
        let t = s(c, "/state/terminated/reason");
        if !w.is_empty() {
            reason = w;
        } else if !t.is_empty() && reason == "Running" {
            reason = t;
        }
    }
    json!(reason)
}

fn pod_restarts(v: &Value) -> Value {
    let n: i64 = v
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |c| c.iter().filter_map(|c| c.get("restartCount").and_then(Value::as_i64)).sum());
    json!(n)
}

fn node_status(v: &Value) -> Value {
    let ready = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c.get("type") == Some(&json!("Ready"))))
        .map(|c| s(c, "/status"));
    let mut st = match ready.as_deref() {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if v.pointer("/spec/unschedulable") == Some(&json!(true)) {
        st.push_str(",SchedulingDisabled");
    }
    json!(st)
}

fn node_roles(v: &Value) -> Value {
    let mut roles: Vec<&str> = v
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.keys().filter_map(|k| k.strip_prefix("node-role.kubernetes.io/")).filter(|r| !r.is_empty()).collect()
        })
        .unwrap_or_default();
    roles.sort_unstable();
    or_none(roles.join(","))
}

fn node_ip(v: &Value, typ: &str) -> Value {
    let ip = v
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|a| a.get("type") == Some(&json!(typ))))
        .map(|a| s(a, "/address"))
        .unwrap_or_default();
    or_none(ip)
}

fn ports(v: &Value) -> Value {
    let ps: Vec<String> = v
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = s(p, "/protocol");
            let node = s(p, "/nodePort");
            let base = if node.is_empty() { s(p, "/port") } else { format!("{}:{node}", s(p, "/port")) };
            format!("{base}/{}", if proto.is_empty() { "TCP".into() } else { proto })
        })
        .collect();
    or_none(ps.join(","))
}

fn columns(store: &Store, res: &Resource) -> Vec<Col> {
    use Cell::*;
    let name = || col("Name", "string", 0, Name);
    let age = || col("Age", "string", 0, Age);
    let p = |x: &str| Path(x.to_string());
    match res.id {
        "pods" => vec![
            name(),
            col("Ready", "string", 0, Fn(pod_ready)),
            col("Status", "string", 0, Fn(pod_status)),
            col("Restarts", "string", 0, Fn(pod_restarts)),
            age(),
            col("IP", "string", 1, Fn(|v| or_none(s(v, "/status/podIP")))),
            col("Node", "string", 1, Fn(|v| or_none(s(v, "/spec/nodeName")))),
            col("Nominated Node", "string", 1, Fn(|v| or_none(s(v, "/status/nominatedNodeName")))),
            col("Readiness Gates", "string", 1, Fn(|_| json!("<none>"))),
        ],
        "nodes" => vec![
            name(),
            col("Status", "string", 0, Fn(node_status)),
            col("Roles", "string", 0, Fn(node_roles)),
            age(),
            col("Version", "string", 0, p("/status/nodeInfo/kubeletVersion")),
            col("Internal-IP", "string", 1, Fn(|v| node_ip(v, "InternalIP"))),
            col("External-IP", "string", 1, Fn(|v| node_ip(v, "ExternalIP"))),
            col("OS-Image", "string", 1, p("/status/nodeInfo/osImage")),
            col("Kernel-Version", "string", 1, p("/status/nodeInfo/kernelVersion")),
            col("Container-Runtime", "string", 1, p("/status/nodeInfo/containerRuntimeVersion")),
        ],
        "namespaces" => vec![name(), col("Status", "string", 0, p("/status/phase")), age()],
        "apps/deployments" => vec![
            name(),
            col(
                "Ready",
                "string",
                0,
                Fn(|v| {
                    json!(format!(
                        "{}/{}",
                        v.pointer("/status/readyReplicas").and_then(Value::as_i64).unwrap_or(0),
                        v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
                    ))
                }),
            ),
            col(
                "Up-to-date",
                "integer",
                0,
                Fn(|v| json!(v.pointer("/status/updatedReplicas").and_then(Value::as_i64).unwrap_or(0))),
            ),
            col(
                "Available",
                "integer",
                0,
                Fn(|v| json!(v.pointer("/status/availableReplicas").and_then(Value::as_i64).unwrap_or(0))),
            ),
            age(),
        ],
        "apps/daemonsets" => {
            let n = |ptr: &'static str| -> fn(&Value) -> Value {
                match ptr {
                    "d" => |v| json!(v.pointer("/status/desiredNumberScheduled").and_then(Value::as_i64).unwrap_or(0)),
                    "c" => |v| json!(v.pointer("/status/currentNumberScheduled").and_then(Value::as_i64).unwrap_or(0)),
                    "r" => |v| json!(v.pointer("/status/numberReady").and_then(Value::as_i64).unwrap_or(0)),
                    "u" => |v| json!(v.pointer("/status/updatedNumberScheduled").and_then(Value::as_i64).unwrap_or(0)),
                    _ => |v| json!(v.pointer("/status/numberAvailable").and_then(Value::as_i64).unwrap_or(0)),
                }
            };
            vec![
                name(),
                col("Desired", "integer", 0, Fn(n("d"))),
                col("Current", "integer", 0, Fn(n("c"))),
                col("Ready", "integer", 0, Fn(n("r"))),
                col("Up-to-date", "integer", 0, Fn(n("u"))),
                col("Available", "integer", 0, Fn(n("a"))),
                col(
                    "Node Selector",
                    "string",
                    0,
                    Fn(|v| {
                        let sel = v.pointer("/spec/template/spec/nodeSelector").and_then(Value::as_object).map(|m| {
                            m.iter()
                                .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                                .collect::<Vec<_>>()
                                .join(",")
                        });
                        or_none(sel.unwrap_or_default())
                    }),
                ),
                age(),
            ]
        }
        "policy/poddisruptionbudgets" => vec![
            name(),
            col(
                "Min Available",
                "string",
                0,
                Fn(|v| {
                    json!(if s(v, "/spec/minAvailable").is_empty() { "N/A".into() } else { s(v, "/spec/minAvailable") })
                }),
            ),
            col(
                "Max Unavailable",
                "string",
                0,
                Fn(|v| {
                    json!(if s(v, "/spec/maxUnavailable").is_empty() {
                        "N/A".into()
                    } else {
                        s(v, "/spec/maxUnavailable")
                    })
                }),
            ),
            col(
                "Allowed Disruptions",
                "integer",
                0,
                Fn(|v| json!(v.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0))),
            ),
            age(),
        ],
        "services" => vec![
            name(),
            col("Type", "string", 0, p("/spec/type")),
            col("Cluster-IP", "string", 0, Fn(|v| or_none(s(v, "/spec/clusterIP")))),
            col(
                "External-IP",
                "string",
                0,
                Fn(|v| {
                    let ips: Vec<String> = v
                        .pointer("/status/loadBalancer/ingress")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|i| s(i, "/ip"))
                        .collect();
                    or_none(ips.join(","))
                }),
            ),
            col("Port(s)", "string", 0, Fn(ports)),
            age(),
        ],
        _ if res.crd => crd_columns(store, res).unwrap_or_else(|| vec![name(), age()]),
        _ => vec![name(), age()],
    }
}

/// Columns from the installed CRD object; Argo CD's own columns when the object has none.
fn crd_columns(store: &Store, res: &Resource) -> Option<Vec<Col>> {
    let crd_res = registry::find("apiextensions.k8s.io/customresourcedefinitions")?;
    let crd = store.get(crd_res, "", &res.crd_name()).ok();
    let declared: Vec<Col> = crd
        .as_deref()
        .and_then(|c| c.pointer("/spec/versions"))
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().find(|v| v.get("name") == Some(&json!(res.version))))
        .and_then(|v| v.get("additionalPrinterColumns"))
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .map(|c| {
                    let path = s(c, "/jsonPath");
                    let name = s(c, "/name");
                    let typ = if s(c, "/type") == "integer" { "integer" } else { "string" };
                    let priority = c.get("priority").and_then(Value::as_i64).unwrap_or(0);
                    if path == ".metadata.creationTimestamp" {
                        col(&name, "date", priority, Cell::Age)
                    } else {
                        col(&name, typ, priority, Cell::Path(path.replace('.', "/")))
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let mut cols = vec![col("Name", "string", 0, Cell::Name)];
    if !declared.is_empty() {
        cols.extend(declared);
        return Some(cols);
    }
    if res.id == "argoproj.io/applications" {
        cols.extend([
            col("Sync Status", "string", 0, Cell::Path("/status/sync/status".into())),
            col("Health Status", "string", 0, Cell::Path("/status/health/status".into())),
            col("Revision", "string", 10, Cell::Path("/status/sync/revision".into())),
            col("Project", "string", 10, Cell::Path("/spec/project".into())),
        ]);
        return Some(cols);
    }
    None
}

fn age_of(store: &Store, obj: &Value) -> Value {
    let created = s(obj, "/metadata/creationTimestamp");
    match created.parse::<jiff::Timestamp>() {
        Ok(t) => json!(human_age(store.now().duration_since(t).as_secs())),
        Err(_) => json!("<unknown>"),
    }
}

/// Builds a Table for `items`; `with_columns: false` leaves out the column definitions (watch
/// events after the first, as the real server does).
pub fn table(store: &Store, res: &Resource, items: &[Arc<Value>], inc: Include, with_columns: bool) -> Value {
    let cols = columns(store, res);
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = cols
                .iter()
                .map(|c| match &c.cell {
                    Cell::Name => json!(s(obj, "/metadata/name")),
                    Cell::Age => age_of(store, obj),
                    Cell::Path(p) => {
                        let v = obj.pointer(p).cloned().unwrap_or(Value::Null);
                        if v.is_null() { json!("") } else { v }
                    }
                    Cell::Fn(f) => f(obj),
                })
                .collect();
            let mut row = json!({"cells": cells});
            match inc {
                Include::None => {}
                Include::Metadata => row["object"] = partial(obj),
                Include::Object => row["object"] = (**obj).clone(),
            }
            row
        })
        .collect();
    let defs: Vec<Value> = if with_columns {
        cols.iter()
            .map(|c| {
                let format = if matches!(c.cell, Cell::Name) { "name" } else { "" };
                json!({"name": c.name, "type": c.typ, "format": format, "description": "", "priority": c.priority})
            })
            .collect()
    } else {
        Vec::new()
    };
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(150), "2m30s");
        assert_eq!(human_age(3600 * 3 + 60 * 5), "3h5m");
        assert_eq!(human_age(86400 * 3), "3d");
    }

    #[test]
    fn pod_and_node_rows() {
        let store = Store::default();
        let pods = registry::find("pods").unwrap();
        let pod = Arc::new(json!({"metadata": {"name": "p", "creationTimestamp": store.now_string()},
            "spec": {"nodeName": "w1", "containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2}]}}));
        let t = table(&store, pods, &[pod], Include::Metadata, true);
        assert_eq!(t["rows"][0]["cells"][0], "p");
        assert_eq!(t["rows"][0]["cells"][1], "1/1");
        assert_eq!(t["rows"][0]["cells"][2], "Running");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        let nodes = registry::find("nodes").unwrap();
        let node =
            Arc::new(json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": "true"}},
            "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        let t = table(&store, nodes, &[node], Include::None, false);
        assert_eq!(t["rows"][0]["cells"][1], "Ready,SchedulingDisabled");
        assert_eq!(t["rows"][0]["cells"][2], "control-plane");
        assert_eq!(t["columnDefinitions"], json!([]));
    }
}
