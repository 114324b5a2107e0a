//! Pod subresources: `eviction` (PodDisruptionBudget checks as kube-apiserver does them), `log`
//! (a few made-up lines). `portforward` is in `portforward.rs`.

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderValue, Response};
use serde_json::{Value, json};

use crate::sim::registry::{self, Resource};
use crate::sim::store::StoreError;

use super::error::{ApiError, json_response, success_status};
use super::route::ObjectPath;
use super::select::from_json;
use super::{ApiState, Query};

fn pods_res() -> Result<&'static Resource, ApiError> {
    registry::find("pods").ok_or_else(|| ApiError::internal("pods resource missing"))
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|c| {
        c.iter().any(|c| c.get("type") == Some(&json!("Ready")) && c.get("status") == Some(&json!("True")))
    })
}

fn too_many(msg: String) -> ApiError {
    ApiError::new(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.")
        .with_details(json!({"causes": [{"reason": "DisruptionBudget", "message": msg}]}))
}

/// POST pods/{name}/eviction.
pub fn evict(state: &Arc<ApiState>, p: &ObjectPath, q: &Query, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let store = &state.shared.store;
    let pods = pods_res()?;
    let name = p.name.as_deref().unwrap_or("");
    let ns = p.ns();
    let ev: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the object provided is unrecognized (must be of type Eviction): couldn't get version/kind; json parse error: {e}"))
    })?;
    match (s(&ev, "/apiVersion"), s(&ev, "/kind")) {
        // An empty type means "the endpoint's type", as the real decoder defaults it.
        ("policy/v1" | "policy/v1beta1" | "", "Eviction" | "") => {}
        (av, kind) => {
            return Err(ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type Eviction): apiVersion {av:?} kind {kind:?}"
            )));
        }
    }
    let ev_name = s(&ev, "/metadata/name");
    if !ev_name.is_empty() && ev_name != name {
        return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
    }
    let dry = q.dry_run()
        || ev.pointer("/deleteOptions/dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All"));
    let grace = ev.pointer("/deleteOptions/gracePeriodSeconds").and_then(Value::as_i64);
    let pod = store.get(pods, ns, name).map_err(|e| ApiError::from_store(pods, e))?;
    let delete = || -> Result<Response<Body>, ApiError> {
        if !dry {
            match store.delete(pods, ns, name, grace) {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(ApiError::from_store(pods, e)),
            }
        }
        Ok(json_response(201, &success_status(201)))
    };
    // Terminal, pending and already-terminating pods are evicted without consulting budgets.
    let phase = s(&pod, "/status/phase");
    if matches!(phase, "Succeeded" | "Failed" | "Pending") || pod.pointer("/metadata/deletionTimestamp").is_some() {
        return delete();
    }
    let pdb_res =
        registry::find("policy/poddisruptionbudgets").ok_or_else(|| ApiError::internal("pdb resource missing"))?;
    let (pdbs, _) = store.list(pdb_res, Some(ns));
    let matching: Vec<Arc<Value>> = pdbs
        .into_iter()
        .filter(|pdb| from_json(pdb.pointer("/spec/selector")).ok().flatten().is_some_and(|sel| sel.matches(&pod)))
        .collect();
    if matching.len() > 1 {
        return Err(ApiError::internal(
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    let Some(pdb) = matching.into_iter().next() else { return delete() };
    let pdb_name = s(&pdb, "/metadata/name").to_string();
    let budget_msg = |pdb: &Value| {
        format!(
            "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
            pdb.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0),
            pdb.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0)
        )
    };
    // Unhealthy pods may go when the budget is met anyway (or the policy says so).
    if !pod_ready(&pod) {
        let policy = s(&pdb, "/spec/unhealthyPodEvictionPolicy");
        let healthy = pdb.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0);
        let desired = pdb.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0);
        if policy == "AlwaysAllow" || (desired > 0 && healthy >= desired) {
            return delete();
        }
    }
    let generation = pdb.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    if let Some(observed) = pdb.pointer("/status/observedGeneration").and_then(Value::as_i64)
        && observed < generation
    {
        return Err(too_many(format!("The disruption budget {pdb_name} is still being processed by the server.")));
    }
    let blocked = state.shared.faults.borrow().blocking_pdbs.contains(&(ns.to_string(), pdb_name.clone()));
    let allowed = pdb.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0);
    if allowed < 0 {
        return Err(ApiError::new(403, "Forbidden", "pdb disruptions allowed is negative"));
    }
    if blocked || allowed == 0 {
        return Err(too_many(budget_msg(&pdb)));
    }
    if !dry {
        let now = store.now_string();
        let mut refused = false;
        let res = store.mutate(pdb_res, ns, &pdb_name, |o| {
            let left = o.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0);
            if left <= 0 {
                refused = true;
                return Err(StoreError::Conflict { resource: pdb_res.plural.into(), name: pdb_name.clone() });
            }
            if !o["status"].is_object() {
                o["status"] = json!({});
            }
            o["status"]["disruptionsAllowed"] = json!(left - 1);
            if !o["status"]["disruptedPods"].is_object() {
                o["status"]["disruptedPods"] = json!({});
            }
            o["status"]["disruptedPods"][name] = json!(now);
            Ok(())
        });
        match res {
            Ok(_) => {}
            Err(_) if refused => return Err(too_many(budget_msg(&pdb))),
            Err(e) => return Err(ApiError::from_store(pdb_res, e)),
        }
    }
    delete()
}

/// GET pods/{name}/log: a few plausible lines, generated from the pod.
pub fn log(state: &Arc<ApiState>, p: &ObjectPath, q: &Query) -> Result<Response<Body>, ApiError> {
    let pods = pods_res()?;
    let name = p.name.as_deref().unwrap_or("");
    let pod = state.shared.store.get(pods, p.ns(), name).map_err(|e| ApiError::from_store(pods, e))?;
    let containers: Vec<(&str, &str)> = ["/spec/containers", "/spec/initContainers"]
        .iter()
        .flat_map(|ptr| pod.pointer(ptr).and_then(Value::as_array).into_iter().flatten())
        .map(|c| (s(c, "/name"), s(c, "/image")))
        .collect();
    let main: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| s(c, "/name"))
        .collect();
    let container = match q.get("container") {
        Some(c) => c,
        None if main.len() == 1 => main[0],
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                main.join(" ")
            )));
        }
    };
    let Some((_, image)) = containers.iter().find(|(n, _)| *n == container) else {
        return Err(ApiError::bad_request(format!("container {container} is not valid for pod {name}")));
    };
    if s(&pod, "/status/phase") == "Pending" || s(&pod, "/status/phase").is_empty() {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    }
    let limit = q.get("limitBytes").and_then(|t| t.parse::<usize>().ok());
    if crate::sim::probes::is_volume_probe(&pod) {
        // A volume probe's output is what its container printed when it ran (kept after it ends).
        let full = state.shared.volumes.lock().ok().and_then(|v| v.logs.get(s(&pod, "/metadata/uid")).cloned());
        let full = full.unwrap_or_default();
        let lines: Vec<&str> = full.lines().collect();
        let tail = q.get("tailLines").and_then(|t| t.parse::<usize>().ok()).unwrap_or(lines.len());
        let mut text = String::new();
        for l in lines.iter().skip(lines.len().saturating_sub(tail)) {
            text.push_str(l);
            text.push('\n');
        }
        return Ok(text_response(limit_bytes(text, limit)));
    }
    if crate::sim::probes::is_probe_client(&pod) {
        // A probe client's output comes from the network model; logs are kept after it ends.
        let faults = state.shared.faults.borrow().clone();
        let full = crate::sim::probes::probe_log(&state.shared.store, &faults, &pod);
        let lines: Vec<&str> = full.lines().collect();
        let tail = q.get("tailLines").and_then(|t| t.parse::<usize>().ok()).unwrap_or(lines.len());
        let mut text = String::new();
        for l in lines.iter().skip(lines.len().saturating_sub(tail)) {
            text.push_str(l);
            text.push('\n');
        }
        return Ok(text_response(limit_bytes(text, limit)));
    }
    let created = s(&pod, "/metadata/creationTimestamp").parse::<jiff::Timestamp>().unwrap_or(state.shared.store.now());
    let msgs: &[&str] = if image.contains("cilium") {
        &[
            "level=info msg=\"Memory available for map entries\" subsys=config",
            "level=info msg=\"Restored endpoints\" count=4 subsys=daemon",
            "level=info msg=\"Daemon initialization completed\" bootstrapTime=7.2s subsys=daemon",
            "level=info msg=\"Serving cilium health API\" subsys=health-server",
            "level=info msg=\"Compiled new BPF template\" subsys=datapath-loader",
        ]
    } else if image.contains("coredns") {
        &[
            "[INFO] plugin/reload: Running configuration SHA512 = 0b8b",
            "CoreDNS-1.12.0",
            "linux/amd64, go1.23.3",
            "[INFO] 10.42.0.1:51542 - 3011 \"A IN kubernetes.default.svc.cluster.local. udp 54 false 512\" NOERROR qr,aa,rd 106 0.0001s",
        ]
    } else {
        &["starting", "configuration loaded", "listening", "ready to serve requests", "health check ok"]
    };
    let tail = q.get("tailLines").and_then(|t| t.parse::<usize>().ok()).unwrap_or(msgs.len());
    let timestamps = q.flag("timestamps");
    let mut text = String::new();
    for (i, m) in msgs.iter().enumerate().skip(msgs.len().saturating_sub(tail)) {
        if timestamps {
            let t = created.checked_add(jiff::SignedDuration::from_secs(2 * i as i64 + 1)).unwrap_or(created);
            text.push_str(&t.strftime("%Y-%m-%dT%H:%M:%S.000000000Z ").to_string());
        }
        text.push_str(m);
        text.push('\n');
    }
    let body = if q.flag("follow") {
        follow_log(
            state,
            p.ns().to_string(),
            name.to_string(),
            s(&pod, "/metadata/uid").to_string(),
            text,
            msgs,
            timestamps,
        )
    } else {
        Body::from(limit_bytes(text, limit))
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}

/// `limitBytes`: the first N bytes of the log, as the kubelet cuts it (may end mid-line).
fn limit_bytes(mut text: String, limit: Option<usize>) -> String {
    if let Some(n) = limit
        && text.len() > n
    {
        let mut cut = n;
        while cut > 0 && !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn text_response(text: String) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// `follow=true`: the lines so far, then a new line every few (simulated) seconds while the pod
/// runs; the stream ends when the container does (the pod is gone, replaced or finished) or the
/// server stops.
fn follow_log(
    state: &Arc<ApiState>,
    ns: String,
    name: String,
    uid: String,
    first: String,
    msgs: &'static [&'static str],
    timestamps: bool,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let shared = state.shared.clone();
    let mut shutdown = state.shutdown.clone();
    let every = std::time::Duration::from_secs_f64((5.0 / shared.speed.max(0.01)).clamp(0.2, 60.0));
    tokio::spawn(async move {
        if tx.send(Ok(first.into())).await.is_err() {
            return;
        }
        let Ok(pods) = pods_res() else { return };
        for i in 0usize.. {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
            }
            let running = shared.store.get(pods, &ns, &name).is_ok_and(|p| {
                s(&p, "/metadata/uid") == uid && !matches!(s(&p, "/status/phase"), "Succeeded" | "Failed")
            });
            if !running {
                return;
            }
            let mut line = String::new();
            if timestamps {
                line.push_str(&shared.store.now().strftime("%Y-%m-%dT%H:%M:%S.000000000Z ").to_string());
            }
            line.push_str(msgs[i % msgs.len()]);
            line.push('\n');
            if tx.send(Ok(line.into())).await.is_err() {
                return;
            }
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}
