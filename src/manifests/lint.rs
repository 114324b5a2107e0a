//! Cilium Helm values linter. STUB: being written (interface fixed; used by the sim's Argo
//! controller to fail chart renders and crash agents the way the real chart and agent do).

/// What a finding does to the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Impact {
    /// `helm template` fails: Argo shows ComparisonError, nothing is applied.
    RenderFails,
    /// Renders, but the cilium agent exits at start (CrashLoopBackOff).
    AgentCrash,
    /// Accepted but silently ignored (does not do what the author meant).
    Ignored,
    /// Works, but risky or not recommended for this cluster.
    Warning,
}

/// One problem in a values file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Stable id, e.g. `removed-key-tunnel`.
    pub id: &'static str,
    /// Dotted key path, e.g. `hubble.relay.enabled`.
    pub key: String,
    /// 1-based line in the values file, when known.
    pub line: Option<usize>,
    pub impact: Impact,
    /// What is wrong (the chart's or agent's own message where there is one).
    pub message: String,
    /// What to write instead.
    pub fix: String,
}

/// What the linter knows about the target cluster and chart.
#[derive(Debug, Clone, Default)]
pub struct LintContext {
    /// Pinned chart version, e.g. `1.16.4`.
    pub chart_version: String,
    /// API group/versions served by the cluster (e.g. `monitoring.coreos.com/v1`), when known.
    pub api_versions: Option<Vec<String>>,
    /// Schedulable nodes, when known (for `operator.replicas`).
    pub schedulable_nodes: Option<usize>,
}

/// Errors reading a values file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LintError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
}

/// Lints values YAML text against the pinned chart.
pub fn lint_values(text: &str, ctx: &LintContext) -> Result<Vec<Finding>, LintError> {
    let _ = (text, ctx);
    Ok(Vec::new())
}
