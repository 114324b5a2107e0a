//! Operations that change the cluster, as values. A key never mutates anything directly: it
//! produces a [`Pending`] operation, the confirm dialog shows its text, and only the confirmed
//! value is handed to the executor (`crate::runbook::executor`), which is where read-only mode
//! refuses it.

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
}

impl Operation {
    /// Short name for the events pane.
    pub fn title(&self) -> String {
        match self {
            Operation::Cordon { node } => format!("cordon {node}"),
            Operation::Uncordon { node } => format!("uncordon {node}"),
            Operation::Drain { node } => format!("drain {node}"),
            Operation::Sync { app } => format!("sync {app}"),
            Operation::Refresh { app } => format!("refresh {app}"),
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
        }
    }
}

/// An operation waiting for the operator's confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub op: Operation,
}
