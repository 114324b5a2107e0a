//! The action executor: the only code that changes the cluster. Every operation arrives here as a
//! confirmed value; in read-only mode it is refused before any request is built (and the client's
//! read-only layer would refuse the request anyway).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, EvictParams, GroupVersionKind, ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::sync::mpsc;

use crate::app::action::Operation;
use crate::app::update::AppEvent;
use crate::cluster::client::{ClusterConn, api_status, is_read_only_refusal};

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("refused: read-only mode (started with --read-only or marked read-only for this context)")]
    ReadOnly,
    #[error("forbidden by RBAC: {0}")]
    Forbidden(String),
    #[error("{0}")]
    Api(String),
    #[error("drain of {node} blocked, nothing was evicted: {reasons}")]
    DrainBlocked { node: String, reasons: String },
    #[error("timed out after {0:?}; the node stays cordoned")]
    Timeout(Duration),
    #[error("{0}")]
    Refused(String),
}

fn api_err(e: kube::Error) -> ExecError {
    if is_read_only_refusal(&e) {
        return ExecError::ReadOnly;
    }
    match (&e, api_status(&e)) {
        (kube::Error::Api(s), Some(403)) => ExecError::Forbidden(s.message.clone()),
        _ => ExecError::Api(crate::cluster::client::redact(&e.to_string())),
    }
}

/// Options for drains (kubectl's defaults where it has them).
#[derive(Debug, Clone)]
pub struct DrainOptions {
    /// Global deadline for evictions and waiting.
    pub timeout: Duration,
    /// Retry delay after a 429 (kubectl: 5 s).
    pub retry_delay: Duration,
    /// How often to check that an evicted pod is gone (kubectl: 1 s).
    pub poll: Duration,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            timeout: Duration::from_secs(600),
            retry_delay: Duration::from_secs(5),
            poll: Duration::from_secs(1),
        }
    }
}

/// Runs operations against one cluster.
#[derive(Clone)]
pub struct Executor {
    pub conn: ClusterConn,
    pub argo_namespace: String,
    pub drain: DrainOptions,
}

impl Executor {
    pub fn new(conn: ClusterConn, argo_namespace: impl Into<String>) -> Self {
        Executor { conn, argo_namespace: argo_namespace.into(), drain: DrainOptions::default() }
    }

    /// Runs one operation; progress lines go to `progress`.
    pub async fn run(&self, op: &Operation, progress: &mpsc::Sender<AppEvent>) -> Result<String, ExecError> {
        if self.conn.read_only {
            return Err(ExecError::ReadOnly);
        }
        match op {
            Operation::Cordon { node } => self.set_unschedulable(node, true).await,
            Operation::Uncordon { node } => self.set_unschedulable(node, false).await,
            Operation::Drain { node } => self.drain(op, node, progress).await,
            Operation::Sync { app } => self.sync(app).await,
            Operation::Refresh { app } => self.refresh(app).await,
        }
    }

    async fn set_unschedulable(&self, node: &str, on: bool) -> Result<String, ExecError> {
        let nodes: Api<Node> = Api::all(self.conn.client.clone());
        let current = nodes.get(node).await.map_err(api_err)?;
        let is_on = current.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        if is_on == on {
            return Ok(format!("node/{node} already {}", if on { "cordoned" } else { "uncordoned" }));
        }
        let patch = json!({ "spec": { "unschedulable": on } });
        nodes.patch(node, &PatchParams::default(), &Patch::Strategic(&patch)).await.map_err(api_err)?;
        Ok(format!("node/{node} {}", if on { "cordoned" } else { "uncordoned" }))
    }

    async fn drain(&self, op: &Operation, node: &str, progress: &mpsc::Sender<AppEvent>) -> Result<String, ExecError> {
        let say = |text: String| {
            let _ = progress.try_send(AppEvent::Progress { op: op.clone(), text });
        };
        self.set_unschedulable(node, true).await?;
        let pods: Api<Pod> = Api::all(self.conn.client.clone());
        let list = pods.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await.map_err(api_err)?;
        let (to_evict, skipped, blockers) = drain_plan(&list.items);
        if !blockers.is_empty() {
            return Err(ExecError::DrainBlocked { node: node.to_string(), reasons: blockers.join("; ") });
        }
        if !skipped.is_empty() {
            say(format!("skipping {} DaemonSet/mirror pods", skipped.len()));
        }
        say(format!("evicting {} pods", to_evict.len()));
        let deadline = tokio::time::Instant::now() + self.drain.timeout;
        let mut tasks = tokio::task::JoinSet::new();
        for (ns, name, uid) in to_evict.clone() {
            let api: Api<Pod> = Api::namespaced(self.conn.client.clone(), &ns);
            let opts = self.drain.clone();
            let progress = progress.clone();
            let op = op.clone();
            tasks.spawn(async move { evict_and_wait(api, ns, name, uid, opts, deadline, progress, op).await });
        }
        let mut failures = Vec::new();
        while let Some(res) = tasks.join_next().await {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(format!("internal: {e}")),
            }
        }
        if failures.is_empty() {
            Ok(format!("node/{node} drained ({} pods evicted)", to_evict.len()))
        } else {
            Err(ExecError::Api(format!("node stays cordoned; {}", failures.join("; "))))
        }
    }

    async fn sync(&self, app: &str) -> Result<String, ExecError> {
        let api = self.apps();
        let current = api.get(app).await.map_err(api_err)?;
        if current.data.pointer("/status/operationState/phase").and_then(|p| p.as_str()) == Some("Running") {
            return Err(ExecError::Refused(format!("{app}: an operation is already running")));
        }
        let patch = json!({
            "operation": {
                "initiatedBy": { "username": "cutover" },
                "info": [{ "name": "reason", "value": "cutover cockpit" }],
                "sync": { "syncStrategy": { "hook": {} } }
            }
        });
        api.patch(app, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(api_err)?;
        Ok(format!("application/{app}: sync requested"))
    }

    async fn refresh(&self, app: &str) -> Result<String, ExecError> {
        let patch = json!({ "metadata": { "annotations": { "argocd.argoproj.io/refresh": "normal" } } });
        self.apps().patch(app, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(api_err)?;
        Ok(format!("application/{app}: refresh requested"))
    }

    fn apps(&self) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
            "applications",
        );
        Api::namespaced_with(self.conn.client.clone(), &self.argo_namespace, &ar)
    }
}

/// kubectl drain's filters (with `--ignore-daemonsets --delete-emptydir-data`, without
/// `--force`): returns (pods to evict as (ns, name, uid), skipped, blocking reasons).
#[allow(clippy::type_complexity)]
pub fn drain_plan(pods: &[Pod]) -> (Vec<(String, String, String)>, Vec<String>, Vec<String>) {
    let mut evict = Vec::new();
    let mut skipped = Vec::new();
    let mut unmanaged = Vec::new();
    for p in pods {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let key = format!("{ns}/{name}");
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        let finished = phase == "Succeeded" || phase == "Failed";
        let annotations: BTreeMap<String, String> = p.metadata.annotations.clone().unwrap_or_default();
        let controller =
            p.metadata.owner_references.as_ref().and_then(|o| o.iter().find(|o| o.controller == Some(true)));
        if annotations.contains_key("kubernetes.io/config.mirror") {
            skipped.push(key);
            continue;
        }
        if controller.is_some_and(|c| c.kind == "DaemonSet") && !finished {
            skipped.push(key);
            continue;
        }
        if controller.is_none() && !finished {
            unmanaged.push(key);
            continue;
        }
        evict.push((ns, name, p.metadata.uid.clone().unwrap_or_default()));
    }
    let mut blockers = Vec::new();
    if !unmanaged.is_empty() {
        blockers.push(format!(
            "pods without a controller would be lost for good (kubectl needs --force): {}",
            unmanaged.join(", ")
        ));
    }
    (evict, skipped, blockers)
}

#[allow(clippy::too_many_arguments)]
async fn evict_and_wait(
    api: Api<Pod>,
    ns: String,
    name: String,
    uid: String,
    opts: DrainOptions,
    deadline: tokio::time::Instant,
    progress: mpsc::Sender<AppEvent>,
    op: Operation,
) -> Result<(), String> {
    let mut announced_block = false;
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{ns}/{name}: global timeout reached"));
        }
        match api.evict(&name, &EvictParams::default()).await {
            Ok(_) => break,
            Err(e) => match api_status(&e) {
                Some(404) => return Ok(()),
                Some(429) => {
                    if !announced_block {
                        let msg = match &e {
                            kube::Error::Api(s) => s.message.clone(),
                            _ => e.to_string(),
                        };
                        let _ = progress.try_send(AppEvent::Progress {
                            op: op.clone(),
                            text: format!("{ns}/{name}: {msg} (retrying every {:?})", opts.retry_delay),
                        });
                        announced_block = true;
                    }
                    tokio::time::sleep(opts.retry_delay).await;
                }
                _ => return Err(format!("{ns}/{name}: {}", crate::cluster::client::redact(&e.to_string()))),
            },
        }
    }
    // Wait until the pod is gone (or replaced by a new one with the same name).
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{ns}/{name}: evicted but still terminating at the timeout"));
        }
        match api.get_opt(&name).await {
            Ok(None) => return Ok(()),
            Ok(Some(p)) if p.metadata.uid.as_deref() != Some(uid.as_str()) => return Ok(()),
            Ok(Some(_)) => tokio::time::sleep(opts.poll).await,
            Err(e) => return Err(format!("{ns}/{name}: {}", crate::cluster::client::redact(&e.to_string()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, owner: Option<&str>, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": "ns", "uid": name,
                "ownerReferences": owner.map(|k| vec![json!({"apiVersion": "apps/v1", "kind": k, "name": "o", "uid": "u", "controller": true})]),
            },
            "status": { "phase": phase }
        }))
        .unwrap()
    }

    #[test]
    fn drain_plan_follows_kubectl() {
        let pods = vec![
            pod("a", Some("ReplicaSet"), "Running"),
            pod("ds", Some("DaemonSet"), "Running"),
            pod("done", None, "Succeeded"),
        ];
        let (evict, skipped, blockers) = drain_plan(&pods);
        assert_eq!(evict.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(), vec!["a", "done"]);
        assert_eq!(skipped, vec!["ns/ds".to_string()]);
        assert!(blockers.is_empty());
        let (_, _, blockers) = drain_plan(&[pod("bare", None, "Running")]);
        assert!(blockers[0].contains("ns/bare"));
    }
}
