//! Operations that change the cluster, as values. A key never mutates anything directly: it
//! produces a [`Pending`] operation, the confirm dialog shows its text, and only the confirmed
//! value is handed to the runner (`crate::runbook::runner`), which refuses it in read-only mode,
//! while another operation runs, or while someone else holds the cluster lock.

/// One operation the executor can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `kubectl cordon`.
    Cordon { node: String },
    /// `kubectl uncordon`.
    Uncordon { node: String },
    /// `kubectl drain --ignore-daemonsets --delete-emptydir-data`: cordon, then evict through the
    /// eviction API (PDBs respected, 429 retried every 5 s).
    Drain { node: String },
    /// Argo CD sync through the Application's `operation` field.
    Sync { app: String },
    /// Argo CD refresh annotation.
    Refresh { app: String },
    /// One step of the runbook (`assets/runbook.toml`), run by the executor's step engine.
    /// `disruptive` steps (commits that deploy, syncs, node cutovers) need the step id typed.
    Step { id: String, title: String, disruptive: bool },
    /// Skips a runbook step that failed or is blocked: changes nothing anywhere, journals the
    /// operator's acknowledgement (`why`: the state it was in) so the runbook goes on after it.
    /// Always confirmed by typing the step id.
    SkipStep { id: String, why: String },
    /// Creates a validation run's probe objects (Pods, Services, Jobs; each labelled
    /// `app.kubernetes.io/managed-by=cutover` and `cutover.io/probe-run=<run>`, in `namespace`;
    /// the executor refuses anything else). `what` names them for the journal.
    ProbeCreate { run: String, namespace: String, what: String, objects: Vec<serde_json::Value> },
    /// Deletes the probe objects of run `run`, or (`None`) of every run (leftovers), in every
    /// namespace, found by their labels.
    ProbeDelete { run: Option<String>, why: String },
    /// The cockpit's validation with the active checks (`v`, then `a`): the passive checks, then
    /// one probe run (its objects created and deleted inside this one operation, as the
    /// runbook's `validate` step does). Changes nothing but the probe objects.
    Validate,
}

impl Operation {
    /// The object it acts on (`node/w1`, `application/cilium-app`).
    pub fn target(&self) -> String {
        match self {
            Operation::Cordon { node } | Operation::Uncordon { node } | Operation::Drain { node } => {
                format!("node/{node}")
            }
            Operation::Sync { app } | Operation::Refresh { app } => format!("application/{app}"),
            Operation::Step { id, .. } | Operation::SkipStep { id, .. } => format!("step/{id}"),
            Operation::ProbeCreate { run, .. } | Operation::ProbeDelete { run: Some(run), .. } => {
                format!("probes/{run}")
            }
            Operation::ProbeDelete { run: None, .. } => "probes/earlier-runs".into(),
            Operation::Validate => "validation/active".into(),
        }
    }

    /// Disruptive operations need the object's name typed to confirm; the others take `y`.
    pub fn is_disruptive(&self) -> bool {
        matches!(self, Operation::Drain { .. } | Operation::Step { disruptive: true, .. } | Operation::SkipStep { .. })
    }

    /// The name to type for a disruptive operation.
    pub fn object_name(&self) -> &str {
        match self {
            Operation::Cordon { node } | Operation::Uncordon { node } | Operation::Drain { node } => node,
            Operation::Sync { app } | Operation::Refresh { app } => app,
            Operation::Step { id, .. } | Operation::SkipStep { id, .. } => id,
            Operation::ProbeCreate { run, .. } | Operation::ProbeDelete { run: Some(run), .. } => run,
            Operation::ProbeDelete { run: None, .. } => "earlier-runs",
            Operation::Validate => "validation",
        }
    }

    /// Short name for the events pane.
    pub fn title(&self) -> String {
        match self {
            Operation::Cordon { node } => format!("cordon {node}"),
            Operation::Uncordon { node } => format!("uncordon {node}"),
            Operation::Drain { node } => format!("drain {node}"),
            Operation::Sync { app } => format!("sync {app}"),
            Operation::Refresh { app } => format!("refresh {app}"),
            Operation::Step { id, .. } => format!("step {id}"),
            Operation::SkipStep { id, .. } => format!("skip {id}"),
            Operation::ProbeCreate { run, what, .. } => format!("create probes {run} ({what})"),
            Operation::ProbeDelete { run: Some(run), .. } => format!("delete probes {run}"),
            Operation::ProbeDelete { run: None, .. } => "delete probes of earlier runs".into(),
            Operation::Validate => "validate (passive and active checks)".into(),
        }
    }

    /// What exactly will happen, shown in the confirm dialog.
    pub fn explain(&self) -> Vec<String> {
        match self {
            Operation::Cordon { node } => vec![
                format!("PATCH node {node}: spec.unschedulable=true"),
                "New pods will not be scheduled there; running pods stay.".into(),
            ],
            Operation::Uncordon { node } => vec![format!("PATCH node {node}: spec.unschedulable=false")],
            Operation::Drain { node } => vec![
                format!("Cordon {node}, then evict its pods through the eviction API."),
                "DaemonSet pods (cilium, speaker, longhorn) are skipped; emptyDir data is lost.".into(),
                "A PodDisruptionBudget at 0 blocks: retried every 5 s, shown in Events.".into(),
                "A failed drain leaves the node cordoned.".into(),
            ],
            Operation::Sync { app } => vec![
                format!("PATCH Application {app}: set operation.sync (as `argocd app sync`)."),
                "Argo CD applies what Git says now.".into(),
            ],
            Operation::Refresh { app } => {
                vec![format!("Annotate Application {app}: argocd.argoproj.io/refresh=normal (re-compare with Git).")]
            }
            Operation::Step { title, .. } => vec![title.clone()],
            Operation::SkipStep { id, why } => vec![
                format!("Skip step {id} ({why})."),
                "Nothing is sent, committed or run on a node: the journal records that you skipped it,".into(),
                "and the runbook goes on with the step after it. The steps after it re-check their gates.".into(),
            ],
            Operation::ProbeCreate { namespace, objects, .. } => {
                let mut v = vec![format!("CREATE in namespace {namespace}:")];
                v.extend(objects.iter().map(|o| {
                    let s = |p: &str| o.pointer(p).and_then(serde_json::Value::as_str).unwrap_or("?").to_string();
                    format!("  {} {} (node {})", s("/kind"), s("/metadata/name"), {
                        let n = s("/spec/nodeName");
                        if n == "?" { s("/spec/template/spec/nodeName") } else { n }
                    })
                }));
                v
            }
            Operation::ProbeDelete { run, why } => vec![
                format!(
                    "DELETE the Jobs, Pods, Services and PVCs labelled {} in every namespace ({why}).",
                    crate::validate::probes::selector(run.as_deref())
                ),
                "Nothing else is touched: only objects cutover's validation runs created carry these labels.".into(),
            ],
            Operation::Validate => vec![
                "Read the cluster and the flow stream (the passive checks), then run the active checks:".into(),
                "CREATE one probe server Pod per Ready node, a probe Service and one client Job per node,".into(),
                "and a PVC written by a Job on one node and read back by a Job on each other node".into(),
                format!(
                    "(labelled {}, in [validate] namespace), read the Jobs' logs and the relay,",
                    crate::validate::probes::selector(None)
                ),
                "then DELETE every object of the run, also after a failure or x. Nothing else is changed.".into(),
                "Probe objects earlier runs left behind (idle ones: not a run in progress elsewhere) are DELETED first.".into(),
            ],
        }
    }
}

/// An operation waiting for the operator's confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub op: Operation,
    /// What will be sent, as computed when the dialog opened (for a drain: the plan from the
    /// pods and PDBs read then), shown and journaled as it was shown.
    pub preview: Vec<String>,
    /// For a disruptive operation, the object's name typed so far.
    pub typed: String,
    /// The preview says it would be refused (nothing can be confirmed, only closed).
    pub refused: bool,
    /// Confirming takes over a stale cluster lock (its holder stopped renewing it).
    pub take_over_stale_lock: bool,
}

impl Pending {
    /// A confirmation showing the operation's own explanation.
    pub fn new(op: Operation) -> Pending {
        let preview = op.explain();
        Pending { op, preview, typed: String::new(), refused: false, take_over_stale_lock: false }
    }

    /// A confirmation showing a computed preview.
    pub fn with_preview(op: Operation, preview: Vec<String>, refused: bool) -> Pending {
        Pending { op, preview, typed: String::new(), refused, take_over_stale_lock: false }
    }

    /// Asks whether to take over a stale cluster lock and run `op` (already confirmed once).
    pub fn take_over(op: Operation, why: String) -> Pending {
        let preview = vec![
            why,
            String::new(),
            format!("Take the lock over and run {} now? Only if that cockpit is really gone.", op.title()),
        ];
        Pending { op, preview, typed: String::new(), refused: false, take_over_stale_lock: true }
    }

    /// Whether the object's name must be typed (disruptive operations; a lock take-over of an
    /// operation already confirmed by name takes `y`).
    pub fn needs_name(&self) -> bool {
        self.op.is_disruptive() && !self.take_over_stale_lock
    }

    /// How it was confirmed, for the journal.
    pub fn confirmed_how(&self) -> String {
        match (self.needs_name(), self.take_over_stale_lock) {
            (true, _) => format!("typed {:?} to confirm", self.typed),
            (false, true) => "pressed y to take over a stale cluster lock".into(),
            (false, false) => "pressed y to confirm".into(),
        }
    }
}
