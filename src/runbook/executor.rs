//! The action executor: the only code that sends changes to the cluster. It holds the one
//! [`WriteClient`] (which journals every mutating request before sending it) and runs one
//! confirmed operation at a time for the [`super::runner::Runner`]. It reads through the
//! read-only client. Progress goes to the runner's channel, which never drops a message.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject, EvictParams, GroupVersionKind, ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::action::Operation;
use crate::checks::drain::{self, DrainPlan};
use crate::cluster::client::{api_status, is_read_only_refusal, redact};
use crate::cluster::write::WriteClient;
use crate::runbook::runner::RunEvent;
use crate::runbook::steps::{StepEnv, StepJournal};

/// Why an operation did not complete. [`ExecError::exit_code`] maps each to the headless
/// commands' exit codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("refused: read-only mode (started with --read-only or marked read-only for this context)")]
    ReadOnly,
    #[error("forbidden by RBAC: {0}")]
    Forbidden(String),
    #[error("{kind} {name:?} not found; known: {known}")]
    NotFound { kind: &'static str, name: String, known: String },
    #[error("{0}")]
    Api(String),
    /// The drain would lose pods; nothing was changed.
    #[error("drain of {node} refused, nothing was changed: {reasons}")]
    DrainRefused { node: String, reasons: String },
    /// The deadline passed; `message` says what is true now.
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Cancelled(String),
    /// Refused before any request (another operation runs, the lock is held, the journal).
    #[error("{0}")]
    Refused(String),
    /// The cluster lock is stale (its holder stopped renewing it): taken over only when the
    /// operator confirms.
    #[error("{0}")]
    StaleLock(String),
    /// Something went wrong after changes were made; `message` says what is true now.
    #[error("{0}")]
    Failed(String),
}

impl ExecError {
    /// Exit codes of the headless commands: 1 failed, 3 refused, 4 cancelled or timed out.
    pub fn exit_code(&self) -> u8 {
        match self {
            ExecError::ReadOnly
            | ExecError::Forbidden(_)
            | ExecError::NotFound { .. }
            | ExecError::DrainRefused { .. }
            | ExecError::Refused(_)
            | ExecError::StaleLock(_) => 3,
            ExecError::Timeout(_) | ExecError::Cancelled(_) => 4,
            ExecError::Api(_) | ExecError::Failed(_) => 1,
        }
    }

    /// Whether nothing was sent (the journal's result says `failed` either way).
    pub fn is_refusal(&self) -> bool {
        self.exit_code() == 3
    }
}

fn api_err(e: kube::Error) -> ExecError {
    if is_read_only_refusal(&e) {
        return ExecError::ReadOnly;
    }
    match (&e, api_status(&e)) {
        (kube::Error::Api(s), Some(403)) => ExecError::Forbidden(s.message.clone()),
        _ => ExecError::Api(redact(&e.to_string())),
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

/// Where an operation's progress lines go (the runner's unbounded channel: never dropped).
#[derive(Clone)]
pub struct Progress {
    tx: mpsc::UnboundedSender<RunEvent>,
    op: Operation,
    /// The node the node step works on (its phases go to [`RunEvent::Node`]).
    node: Option<String>,
}

impl Progress {
    pub fn new(tx: mpsc::UnboundedSender<RunEvent>, op: Operation) -> Self {
        Progress { tx, op, node: None }
    }

    pub fn say(&self, text: impl Into<String>) {
        let _ = self.tx.send(RunEvent::Progress { op: self.op.clone(), text: text.into() });
    }

    /// A validation report, for the cockpit's overlay.
    pub fn report(&self, report: crate::validate::Report) {
        let _ = self.tx.send(RunEvent::Report { op: self.op.clone(), report: Box::new(report) });
    }

    /// The same progress, reporting the phases of work on `node`.
    pub fn for_node(&self, node: &str) -> Progress {
        Progress { node: Some(node.to_string()), ..self.clone() }
    }

    /// The node in work and its phase (`None`: no node is in work any more).
    pub fn work(&self, work: Option<super::node_work::NodeWork>) {
        let _ = self.tx.send(RunEvent::Node { op: self.op.clone(), work });
    }

    /// The phase of the node this progress is for (nothing without one).
    pub fn phase(&self, phase: super::node_work::NodePhase) {
        if let Some(node) = &self.node {
            self.work(Some(super::node_work::NodeWork { node: node.clone(), phase }));
        }
    }
}

/// `5s`, `400ms` — a retry delay in messages.
fn delay(d: Duration) -> String {
    if d >= Duration::from_secs(1) { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

/// `1:05` — elapsed time in progress lines.
fn mmss(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

/// Runs operations against one cluster.
#[derive(Clone)]
pub struct Executor {
    write: WriteClient,
    read: kube::Client,
    pub argo_namespace: String,
    pub drain: DrainOptions,
    /// The runbook's steps (set by [`super::runner::Runner::enable_runbook`]).
    steps: Option<(Arc<StepEnv>, Arc<dyn StepJournal>)>,
}

impl Executor {
    /// `read` is the connection's read-only client, `write` the journaled write client.
    pub fn new(write: WriteClient, read: kube::Client, argo_namespace: impl Into<String>) -> Self {
        Executor { write, read, argo_namespace: argo_namespace.into(), drain: DrainOptions::default(), steps: None }
    }

    pub fn write_client(&self) -> &WriteClient {
        &self.write
    }

    /// The read-only client (every read of the executor and its steps goes through it).
    pub fn read_client(&self) -> &kube::Client {
        &self.read
    }

    /// Lets this executor run runbook steps; `journal` records what is not a Kubernetes request.
    pub fn set_steps(&mut self, env: Arc<StepEnv>, journal: Arc<dyn StepJournal>) {
        self.steps = Some((env, journal));
    }

    /// Runs one operation. `cancel` stops it at its next safe point.
    pub async fn run(
        &self,
        op: &Operation,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<String, ExecError> {
        match op {
            Operation::Cordon { node } => self.set_unschedulable(node, true).await,
            Operation::Uncordon { node } => self.set_unschedulable(node, false).await,
            Operation::Drain { node } => self.drain(node, progress, cancel).await,
            Operation::Sync { app } => self.sync(app).await,
            Operation::Refresh { app } => self.refresh(app).await,
            Operation::Step { id, .. } => match &self.steps {
                Some((env, journal)) => super::steps::run(self, env, journal.as_ref(), id, progress, cancel).await,
                None => Err(ExecError::Refused(format!("step {id}: this runner has no runbook; nothing was sent"))),
            },
            Operation::SkipStep { id, why } => match &self.steps {
                Some((env, journal)) => super::steps::skip(env, journal.as_ref(), id, why),
                None => {
                    Err(ExecError::Refused(format!("skip {id}: this runner has no runbook; nothing was journaled")))
                }
            },
            Operation::ProbeCreate { run, namespace, objects, .. } => {
                self.probe_create(run, namespace, objects, progress, cancel).await
            }
            Operation::ProbeDelete { run, .. } => self.probe_delete(run.as_deref(), progress, cancel).await,
            Operation::Validate => match &self.steps {
                Some((env, _)) => {
                    let (summary, report) =
                        super::steps::validate_all(self, env, "validate", false, progress, cancel).await?;
                    progress.report(report);
                    summary
                }
                None => {
                    Err(ExecError::Refused("validate: this runner has no runbook settings; nothing was sent".into()))
                }
            },
        }
    }

    /// Creates probe objects, refusing (before sending anything) any object that is not a Pod,
    /// Service, PersistentVolumeClaim or Job of this run in `namespace`, labelled as cutover's.
    #[allow(clippy::disallowed_methods)]
    async fn probe_create(
        &self,
        run: &str,
        namespace: &str,
        objects: &[serde_json::Value],
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<String, ExecError> {
        use crate::validate::probes::{MANAGED_BY, RUN_LABEL};
        use k8s_openapi::api::batch::v1::Job;
        use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
        let s =
            |o: &serde_json::Value, p: &str| o.pointer(p).and_then(serde_json::Value::as_str).unwrap_or("").to_string();
        for o in objects {
            let label = |k: &str| o.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(|v| v.as_str());
            let ok_kind = matches!(
                (s(o, "/apiVersion").as_str(), s(o, "/kind").as_str()),
                ("v1", "Pod" | "Service" | "PersistentVolumeClaim") | ("batch/v1", "Job")
            );
            if !ok_kind
                || s(o, "/metadata/namespace") != namespace
                || label(MANAGED_BY.0) != Some(MANAGED_BY.1)
                || label(RUN_LABEL) != Some(run)
            {
                return Err(ExecError::Refused(format!(
                    "refused: {} {:?} is not a probe object of run {run} in {namespace}; nothing was sent",
                    s(o, "/kind"),
                    s(o, "/metadata/name")
                )));
            }
        }
        let client = self.write.kube().clone();
        let mut created: Vec<String> = Vec::new();
        let pp = kube::api::PostParams::default();
        for o in objects {
            if cancel.is_cancelled() {
                return Err(ExecError::Cancelled(format!(
                    "cancelled after creating {} of {} object(s): {}",
                    created.len(),
                    objects.len(),
                    created.join(", ")
                )));
            }
            let what = format!("{}/{}", s(o, "/kind").to_lowercase(), s(o, "/metadata/name"));
            let bad = |e: serde_json::Error| ExecError::Failed(format!("{what}: not a valid object: {e}"));
            let res = match s(o, "/kind").as_str() {
                "Pod" => {
                    let v: Pod = serde_json::from_value(o.clone()).map_err(bad)?;
                    Api::<Pod>::namespaced(client.clone(), namespace).create(&pp, &v).await.map(|_| ())
                }
                "Service" => {
                    let v: Service = serde_json::from_value(o.clone()).map_err(bad)?;
                    Api::<Service>::namespaced(client.clone(), namespace).create(&pp, &v).await.map(|_| ())
                }
                "PersistentVolumeClaim" => {
                    let v: PersistentVolumeClaim = serde_json::from_value(o.clone()).map_err(bad)?;
                    Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
                        .create(&pp, &v)
                        .await
                        .map(|_| ())
                }
                _ => {
                    let v: Job = serde_json::from_value(o.clone()).map_err(bad)?;
                    Api::<Job>::namespaced(client.clone(), namespace).create(&pp, &v).await.map(|_| ())
                }
            };
            if let Err(e) = res {
                let so_far = if created.is_empty() { "nothing".to_string() } else { created.join(", ") };
                return Err(ExecError::Failed(format!(
                    "creating {what} failed: {}; created before it: {so_far} (the run's cleanup deletes them by label)",
                    api_err(e)
                )));
            }
            progress.say(format!("created {what}"));
            created.push(what);
        }
        Ok(format!("created {} probe object(s) in {namespace}", created.len()))
    }

    /// Deletes the Jobs (their pods with them), Pods, Services and PersistentVolumeClaims (after
    /// the pods that mount them) carrying the probe labels of `run` (or of every run), in every
    /// namespace, and waits (up to 60 s) until they are gone.
    async fn probe_delete(
        &self,
        run: Option<&str>,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<String, ExecError> {
        use k8s_openapi::api::batch::v1::Job;
        use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
        use kube::api::DeleteParams;
        let sel = crate::validate::probes::selector(run);
        let lp = ListParams::default().labels(&sel);
        let read = &self.read;
        let write = self.write.kube();
        let jobs = labelled::<Job>(read, &lp).await?;
        let pods = labelled::<Pod>(read, &lp).await?;
        let svcs = labelled::<Service>(read, &lp).await?;
        let pvcs = labelled::<PersistentVolumeClaim>(read, &lp).await?;
        let background = DeleteParams::background();
        let now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::background() };
        let mut deleted = delete_each::<Job>(write, &jobs, &background).await?;
        deleted += delete_each::<Pod>(write, &pods, &now).await?;
        deleted += delete_each::<Service>(write, &svcs, &background).await?;
        // A PVC in use stays until its pods are gone (pvc-protection); then its volume goes too.
        deleted += delete_each::<PersistentVolumeClaim>(write, &pvcs, &background).await?;
        progress.say(format!(
            "deleted {} Job(s), {} Pod(s), {} Service(s), {} PVC(s) labelled {sel}",
            jobs.len(),
            pods.len(),
            svcs.len(),
            pvcs.len()
        ));
        // Wait until nothing with the labels is left (pods terminate, Job pods are collected).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = labelled::<Pod>(read, &lp).await?.len()
                + labelled::<Job>(read, &lp).await?.len()
                + labelled::<Service>(read, &lp).await?.len()
                + labelled::<PersistentVolumeClaim>(read, &lp).await?.len();
            if left == 0 {
                return Ok(format!("deleted {deleted} probe object(s) labelled {sel}; none left"));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ExecError::Timeout(format!(
                    "deleted {deleted} probe object(s) labelled {sel}; {left} still terminating after 60s"
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = cancel.cancelled() => {
                    return Err(ExecError::Cancelled(format!(
                        "deleted {deleted} probe object(s) labelled {sel}; {left} still terminating (not waited for)"
                    )));
                }
            }
        }
    }

    async fn known_nodes(&self) -> String {
        let nodes: Api<Node> = Api::all(self.read.clone());
        match nodes.list_metadata(&ListParams::default()).await {
            Ok(l) => l.items.iter().filter_map(|n| n.metadata.name.clone()).collect::<Vec<_>>().join(", "),
            Err(_) => "(cannot list nodes)".into(),
        }
    }

    async fn get_node(&self, node: &str) -> Result<Node, ExecError> {
        let nodes: Api<Node> = Api::all(self.read.clone());
        match nodes.get_opt(node).await.map_err(api_err)? {
            Some(n) => Ok(n),
            None => Err(ExecError::NotFound { kind: "node", name: node.into(), known: self.known_nodes().await }),
        }
    }

    /// Whether the node is cordoned now (`None`: cannot tell).
    async fn is_cordoned(&self, node: &str) -> Option<bool> {
        let nodes: Api<Node> = Api::all(self.read.clone());
        nodes.get(node).await.ok().map(|n| n.spec.and_then(|s| s.unschedulable).unwrap_or(false))
    }

    /// What a message may say about the node's cordon, read now.
    async fn cordon_state(&self, node: &str) -> String {
        match self.is_cordoned(node).await {
            Some(true) => format!("node {node} is left cordoned"),
            Some(false) => format!("node {node} is not cordoned (someone uncordoned it)"),
            None => format!("node {node}: cordon state unknown (cannot read it now)"),
        }
    }

    #[allow(clippy::disallowed_methods)] // the executor's own write, journaled by the write client
    pub(crate) async fn set_unschedulable(&self, node: &str, on: bool) -> Result<String, ExecError> {
        let current = self.get_node(node).await?;
        let word = if on { "cordoned" } else { "uncordoned" };
        if current.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) == on {
            return Ok(format!("node {node} already {word}; nothing sent"));
        }
        let nodes: Api<Node> = Api::all(self.write.kube().clone());
        let patch = json!({ "spec": { "unschedulable": on } });
        let after = nodes.patch(node, &PatchParams::default(), &Patch::Strategic(&patch)).await.map_err(api_err)?;
        let now_on = after.spec.and_then(|s| s.unschedulable).unwrap_or(false);
        if now_on != on {
            return Err(ExecError::Failed(format!(
                "node {node}: the API accepted the patch but the node is not {word}"
            )));
        }
        Ok(format!("node {node} {word}"))
    }

    /// The drain plan for `node` now (lists through the read-only client).
    pub async fn drain_plan(&self, node: &str) -> Result<DrainPlan, ExecError> {
        plan_drain(&self.read, node).await
    }

    pub(crate) async fn drain(
        &self,
        node: &str,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<String, ExecError> {
        self.get_node(node).await?;
        let first = self.drain_plan(node).await?;
        if !first.refuse.is_empty() {
            return Err(drain_refused(&first));
        }
        self.set_unschedulable(node, true).await?;
        progress.say(format!("node {node} cordoned"));
        // List again after the cordon, as kubectl does: nothing new is scheduled there now.
        let plan = match self.drain_plan(node).await {
            Ok(p) => p,
            Err(e) => return Err(ExecError::Failed(format!("{e}; {}", self.cordon_state(node).await))),
        };
        if !plan.refuse.is_empty() {
            return Err(ExecError::Failed(format!("{}; {}", drain_refused(&plan), self.cordon_state(node).await)));
        }
        let total = plan.evict.len();
        if !plan.skip.is_empty() {
            let names: Vec<String> = plan.skip.iter().map(|(p, _)| p.key()).collect();
            progress.say(format!("skipping {} pod(s) (DaemonSet/static): {}", plan.skip.len(), names.join(", ")));
        }
        for b in plan.blocking_pdbs() {
            progress.say(format!("PDB {} allows 0 disruptions now; {} will wait for it", b.pdb, b.pods.join(", ")));
        }
        progress.say(format!("evicting {total} pod(s), deadline {}", mmss(self.drain.timeout)));
        progress.phase(super::node_work::NodePhase::Draining { gone: 0, total });
        let pods: Vec<(drain::PodRef, Vec<String>)> = plan
            .evict
            .iter()
            .map(|p| (p.clone(), plan.pdbs_of(&p.key()).iter().map(|b| b.pdb.clone()).collect()))
            .collect();
        let (started, evicted, left) = self
            .evict_all(pods, |gone, total| super::node_work::NodePhase::Draining { gone, total }, progress, cancel)
            .await;
        if left.is_empty() {
            let skipped = if plan.skip.is_empty() { String::new() } else { format!(", {} skipped", plan.skip.len()) };
            return Ok(format!(
                "node {node} drained: {evicted} pod(s) evicted{skipped} in {}",
                mmss(started.elapsed())
            ));
        }
        let details = left.iter().map(|f| format!("{}: {}", f.pod, f.why)).collect::<Vec<_>>().join("; ");
        let state = self.cordon_state(node).await;
        let summary = format!("{evicted} of {total} pod(s) evicted; not evicted: {details}; {state}");
        if left.iter().any(|f| matches!(f.why, Why::Error(_))) {
            Err(ExecError::Failed(format!("drain of {node} failed: {summary}")))
        } else if left.iter().any(|f| matches!(f.why, Why::Deadline { .. })) {
            Err(ExecError::Timeout(format!("drain of {node} timed out after {}: {summary}", mmss(self.drain.timeout))))
        } else {
            Err(ExecError::Cancelled(format!("drain of {node} cancelled: {summary}")))
        }
    }

    /// Evicts each pod (with the PDBs that cover it, for messages) and waits until it is gone,
    /// all at once, under the drain's deadline: (when it started, how many went, the others).
    async fn evict_all(
        &self,
        pods: Vec<(drain::PodRef, Vec<String>)>,
        phase: fn(usize, usize) -> super::node_work::NodePhase,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> (tokio::time::Instant, usize, Vec<EvictFailure>) {
        let total = pods.len();
        let started = tokio::time::Instant::now();
        let deadline = started + self.drain.timeout;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for (pod, pdbs) in pods {
            let ctx = EvictCtx {
                read: Api::namespaced(self.read.clone(), &pod.namespace),
                write: Api::namespaced(self.write.kube().clone(), &pod.namespace),
                pdbs,
                opts: self.drain.clone(),
                started,
                deadline,
                progress: progress.clone(),
                cancel: cancel.clone(),
                done: done.clone(),
                total,
                phase,
            };
            tasks.spawn(async move { ctx.evict_and_wait(pod).await });
        }
        let mut left: Vec<EvictFailure> = Vec::new();
        while let Some(res) = tasks.join_next().await {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(f)) => left.push(f),
                Err(e) => left.push(EvictFailure { pod: "?".into(), why: Why::Error(format!("internal: {e}")) }),
            }
        }
        left.sort_by(|a, b| a.pod.cmp(&b.pod));
        (started, done.load(std::sync::atomic::Ordering::SeqCst), left)
    }

    /// The node step's re-creation: evicts pods that a drain leaves on the node (DaemonSet pods)
    /// and that still hold an address of the old network, so that their controllers create them
    /// again on the new one. Evictions respect PodDisruptionBudgets and the drain's deadline;
    /// each is journaled by the write client.
    pub(crate) async fn recreate(
        &self,
        node: &str,
        pods: Vec<drain::PodRef>,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<String, ExecError> {
        let total = pods.len();
        progress.phase(super::node_work::NodePhase::Recreating { gone: 0, total });
        let (started, evicted, left) = self
            .evict_all(
                pods.into_iter().map(|p| (p, Vec::new())).collect(),
                |gone, total| super::node_work::NodePhase::Recreating { gone, total },
                progress,
                cancel,
            )
            .await;
        if left.is_empty() {
            return Ok(format!("{evicted} pod(s) on {node} re-created in {}", mmss(started.elapsed())));
        }
        let details = left.iter().map(|f| format!("{}: {}", f.pod, f.why)).collect::<Vec<_>>().join("; ");
        let summary = format!("{evicted} of {total} pod(s) on {node} evicted for re-creation; not evicted: {details}");
        if left.iter().any(|f| matches!(f.why, Why::Cancelled { .. })) {
            Err(ExecError::Cancelled(summary))
        } else if left.iter().any(|f| matches!(f.why, Why::Deadline { .. })) {
            Err(ExecError::Timeout(summary))
        } else {
            Err(ExecError::Failed(summary))
        }
    }

    #[allow(clippy::disallowed_methods)]
    pub(crate) async fn sync(&self, app: &str) -> Result<String, ExecError> {
        let current = self.get_app(app).await?;
        if current.data.pointer("/status/operationState/phase").and_then(|p| p.as_str()) == Some("Running") {
            return Err(ExecError::Refused(format!("{app}: an Argo CD operation is already running")));
        }
        let patch = json!({
            "operation": {
                "initiatedBy": { "username": "cutover" },
                "info": [{ "name": "reason", "value": "cutover cockpit" }],
                "sync": { "syncStrategy": { "hook": {} } }
            }
        });
        self.apps(&self.write.kube().clone())
            .patch(app, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err)?;
        Ok(format!("application {app}: sync requested"))
    }

    #[allow(clippy::disallowed_methods)]
    pub(crate) async fn refresh(&self, app: &str) -> Result<String, ExecError> {
        self.get_app(app).await?;
        let patch = json!({ "metadata": { "annotations": { "argocd.argoproj.io/refresh": "normal" } } });
        self.apps(&self.write.kube().clone())
            .patch(app, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err)?;
        Ok(format!("application {app}: refresh requested"))
    }

    async fn get_app(&self, app: &str) -> Result<DynamicObject, ExecError> {
        let api = self.apps(&self.read);
        match api.get_opt(app).await.map_err(api_err)? {
            Some(a) => Ok(a),
            None => {
                let known = match api.list_metadata(&ListParams::default()).await {
                    Ok(l) => l.items.iter().filter_map(|a| a.metadata.name.clone()).collect::<Vec<_>>().join(", "),
                    Err(_) => "(cannot list applications)".into(),
                };
                Err(ExecError::NotFound { kind: "application", name: app.into(), known })
            }
        }
    }

    fn apps(&self, client: &kube::Client) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
            "applications",
        );
        Api::namespaced_with(client.clone(), &self.argo_namespace, &ar)
    }
}

/// Lists the pods on `node` and every PDB, and plans the drain (read-only).
pub async fn plan_drain(read: &kube::Client, node: &str) -> Result<DrainPlan, ExecError> {
    let pods: Api<Pod> = Api::all(read.clone());
    let list = pods.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await.map_err(api_err)?;
    let pdbs: Api<PodDisruptionBudget> = Api::all(read.clone());
    let pdbs = pdbs.list(&ListParams::default()).await.map_err(api_err)?;
    Ok(drain::plan(node, &list.items, &pdbs.items))
}

fn drain_refused(plan: &DrainPlan) -> ExecError {
    let pods = plan.refuse.iter().map(|(p, why)| format!("{} ({why})", p.key())).collect::<Vec<_>>().join(", ");
    ExecError::DrainRefused { node: plan.node.clone(), reasons: pods }
}

/// The confirmation text of a drain: exactly what will be evicted, skipped and waited for.
pub fn drain_preview(plan: &DrainPlan, opts: &DrainOptions) -> Vec<String> {
    let mut out = Vec::new();
    if !plan.refuse.is_empty() {
        out.push(format!("REFUSED: {} pod(s) would be lost for good; nothing will be sent:", plan.refuse.len()));
        out.extend(plan.refuse.iter().map(|(p, why)| format!("  {} — {why}", p.key())));
        return out;
    }
    out.push(format!("PATCH node {}: spec.unschedulable=true (cordon)", plan.node));
    out.push(format!("POST pods/eviction for {} pod(s) (PodDisruptionBudgets respected):", plan.evict.len()));
    out.extend(plan.evict.iter().map(|p| format!("  evict {}  ({})", p.key(), p.owner)));
    if !plan.skip.is_empty() {
        out.push(format!("skip {} pod(s):", plan.skip.len()));
        out.extend(plan.skip.iter().map(|(p, why)| format!("  {} — {}", p.key(), why.as_str())));
    }
    if !plan.emptydir.is_empty() {
        out.push(format!("emptyDir data is lost: {}", plan.emptydir.join(", ")));
    }
    for b in &plan.pdbs {
        let note = if b.allowed <= 0 { " — blocks: evictions answer 429 and are retried" } else { "" };
        out.push(format!("PDB {} allows {} disruption(s) now{note}", b.pdb, b.allowed));
    }
    if !plan.multi_pdb.is_empty() {
        out.push(format!("more than one PDB selects {} (eviction answers 500)", plan.multi_pdb.join(", ")));
    }
    out.push(format!(
        "429 retried every {}; each evicted pod waited for until gone; deadline {}; a drain that stops leaves the node cordoned",
        delay(opts.retry_delay),
        mmss(opts.timeout)
    ));
    out
}

enum Why {
    Deadline { retries: u32, pdbs: Vec<String>, evicted: bool },
    Cancelled { evicted: bool },
    Error(String),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Deadline { evicted: true, .. } => f.write_str("evicted, still terminating at the deadline"),
            Why::Deadline { retries, pdbs, .. } if !pdbs.is_empty() => {
                write!(f, "blocked by PDB {} (429 retried {retries} times until the deadline)", pdbs.join(", "))
            }
            Why::Deadline { retries, .. } => write!(f, "not evicted by the deadline ({retries} retries)"),
            Why::Cancelled { evicted: true } => f.write_str("evicted, not waited for (cancelled)"),
            Why::Cancelled { evicted: false } => f.write_str("not evicted (cancelled)"),
            Why::Error(e) => f.write_str(e),
        }
    }
}

struct EvictFailure {
    pod: String,
    why: Why,
}

struct EvictCtx {
    read: Api<Pod>,
    write: Api<Pod>,
    pdbs: Vec<String>,
    opts: DrainOptions,
    started: tokio::time::Instant,
    deadline: tokio::time::Instant,
    progress: Progress,
    cancel: CancellationToken,
    done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    total: usize,
    /// The node phase each pod gone reports (the drain's, or the re-creation's).
    phase: fn(usize, usize) -> super::node_work::NodePhase,
}

impl EvictCtx {
    /// Sleeps, or returns false at once when cancelled.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.cancel.cancelled() => false,
        }
    }

    #[allow(clippy::disallowed_methods)]
    async fn evict_and_wait(self, pod: drain::PodRef) -> Result<(), EvictFailure> {
        let key = pod.key();
        let fail = |why: Why| EvictFailure { pod: key.clone(), why };
        let mut retries = 0u32;
        loop {
            // Safe point: nothing is half-done between two eviction attempts.
            if self.cancel.is_cancelled() {
                return Err(fail(Why::Cancelled { evicted: false }));
            }
            if tokio::time::Instant::now() >= self.deadline {
                return Err(fail(Why::Deadline { retries, pdbs: self.pdbs.clone(), evicted: false }));
            }
            match self.write.evict(&pod.name, &EvictParams::default()).await {
                Ok(_) => {
                    self.progress.say(format!("{key}: evicted, waiting until it is gone"));
                    break;
                }
                Err(e) => match api_status(&e) {
                    Some(404) => break,
                    Some(429) => {
                        retries += 1;
                        let by = if self.pdbs.is_empty() {
                            "the API (429)".to_string()
                        } else {
                            format!("PDB {}", self.pdbs.join(", "))
                        };
                        self.progress.say(format!(
                            "{key}: eviction refused by {by}, retry {retries} in {} ({} of {})",
                            delay(self.opts.retry_delay),
                            mmss(self.started.elapsed()),
                            mmss(self.opts.timeout)
                        ));
                        if !self.pause(self.opts.retry_delay).await {
                            return Err(fail(Why::Cancelled { evicted: false }));
                        }
                    }
                    _ => return Err(fail(Why::Error(redact(&api_err(e).to_string())))),
                },
            }
        }
        // Wait until the pod is gone (or replaced by a new one with the same name).
        loop {
            match self.read.get_opt(&pod.name).await {
                Ok(None) => break,
                Ok(Some(p)) if p.metadata.uid.as_deref() != Some(pod.uid.as_str()) => break,
                Ok(Some(_)) => {}
                Err(e) => return Err(fail(Why::Error(redact(&api_err(e).to_string())))),
            }
            if tokio::time::Instant::now() >= self.deadline {
                return Err(fail(Why::Deadline { retries, pdbs: Vec::new(), evicted: true }));
            }
            if !self.pause(self.opts.poll).await {
                return Err(fail(Why::Cancelled { evicted: true }));
            }
        }
        let n = self.done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.progress.say(format!("{key}: gone ({n}/{} evicted, {})", self.total, mmss(self.started.elapsed())));
        self.progress.phase((self.phase)(n, self.total));
        Ok(())
    }
}

/// `(namespace, name)` of every object of kind `K` matching `lp`, in every namespace, read with
/// the read client (metadata only).
async fn labelled<K>(read: &kube::Client, lp: &ListParams) -> Result<Vec<(String, String)>, ExecError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let list = Api::<K>::all(read.clone()).list_metadata(lp).await.map_err(api_err)?;
    Ok(list
        .items
        .into_iter()
        .map(|o| (o.metadata.namespace.unwrap_or_default(), o.metadata.name.unwrap_or_default()))
        .collect())
}

/// Deletes each of `objects` of kind `K` with the write client; one already gone counts as
/// deleted. How many were deleted.
#[allow(clippy::disallowed_methods)]
async fn delete_each<K>(
    write: &kube::Client,
    objects: &[(String, String)],
    params: &kube::api::DeleteParams,
) -> Result<usize, ExecError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    for (ns, name) in objects {
        match Api::<K>::namespaced(write.clone(), ns).delete(name, params).await {
            Ok(_) => {}
            Err(e) if api_status(&e) == Some(404) => {}
            Err(e) => return Err(api_err(e)),
        }
    }
    Ok(objects.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::drain::{PdbCover, PodRef, SkipReason};

    fn pod(ns: &str, name: &str, owner: &str) -> PodRef {
        PodRef { namespace: ns.into(), name: name.into(), uid: name.into(), owner: owner.into() }
    }

    #[test]
    fn the_drain_preview_names_every_pod_pdb_and_request() {
        let plan = DrainPlan {
            node: "w1".into(),
            evict: vec![pod("media", "jellyfin-0", "StatefulSet/jellyfin"), pod("web", "a-1", "ReplicaSet/a")],
            skip: vec![(pod("kube-system", "cilium-x", "DaemonSet/cilium"), SkipReason::DaemonSet)],
            pdbs: vec![PdbCover { pdb: "media/jellyfin".into(), allowed: 0, pods: vec!["media/jellyfin-0".into()] }],
            ..Default::default()
        };
        let text = drain_preview(&plan, &DrainOptions::default()).join("\n");
        for want in [
            "PATCH node w1",
            "evict media/jellyfin-0  (StatefulSet/jellyfin)",
            "evict web/a-1",
            "kube-system/cilium-x — DaemonSet pod",
            "PDB media/jellyfin allows 0 disruption(s) now — blocks",
            "deadline 10:00",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn a_refused_drain_preview_says_nothing_will_be_sent() {
        let plan = DrainPlan {
            node: "w1".into(),
            refuse: vec![(pod("default", "debug", "none"), "no controller".into())],
            evict: vec![pod("web", "a-1", "ReplicaSet/a")],
            ..Default::default()
        };
        let text = drain_preview(&plan, &DrainOptions::default()).join("\n");
        assert!(text.starts_with("REFUSED"), "{text}");
        assert!(text.contains("default/debug"));
        assert!(!text.contains("PATCH"));
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(ExecError::ReadOnly.exit_code(), 3);
        assert_eq!(ExecError::Refused("lock".into()).exit_code(), 3);
        assert_eq!(ExecError::NotFound { kind: "node", name: "x".into(), known: "a".into() }.exit_code(), 3);
        assert_eq!(ExecError::Timeout("t".into()).exit_code(), 4);
        assert_eq!(ExecError::Cancelled("c".into()).exit_code(), 4);
        assert_eq!(ExecError::Failed("f".into()).exit_code(), 1);
    }
}
