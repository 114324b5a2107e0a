//! The runbook as data: stages of steps, each with its gates (preconditions read from live
//! state), its action (one of the kinds the executor knows) and its rollback. The built-in
//! runbook (`assets/runbook.toml`) is the user's plan corrected for Cilium on k3s; a user's own
//! file replaces it. A file with an unknown kind or gate, a missing field or a reference to an
//! unknown step is an error naming the file, the line and the field.
//!
//! `cutover plan` evaluates every gate against the cluster (read-only) and prints each step with
//! its state. Running the steps is built on the runner (`super::runner`) step by step; the kinds
//! it cannot run yet show as `unavailable` with the reason, never as done.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use color_eyre::eyre::{Result, WrapErr};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::checks::{ClusterSnapshot, Status};
use crate::settings::Settings;

/// The built-in runbook.
pub const BUILT_IN: &str = include_str!("../../assets/runbook.toml");
/// No runbook file is larger (the built-in one is a few KiB).
const MAX_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RunbookError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}:{line}: {field}: {message}")]
    Invalid { path: String, line: usize, field: String, message: String },
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    GitCommit,
    ArgoRefresh,
    ArgoSync,
    ArgoWait,
    NodeCutover,
    Validate,
    OperatorCheck,
}

/// A precondition read from live state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    PreflightNoFail,
    CiliumAppAbsent,
    CiliumAppPresent,
    CiliumAppSyncedHealthy,
    CiliumDsOnEveryNode,
    NodesReady,
    CiliumCniOnNoNode,
    NodeStepAvailable,
    ValidateAvailable,
}

/// A condition that skips a step when false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum When {
    AutoSyncOff,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStep {
    id: Spanned<String>,
    title: String,
    kind: StepKind,
    #[serde(default)]
    gates: Vec<Gate>,
    #[serde(default)]
    when: Option<When>,
    #[serde(default)]
    instruction: Option<String>,
    #[serde(default)]
    stage: Option<u8>,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    undo: bool,
    rollback: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStage {
    id: String,
    title: String,
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    step: Vec<FileStep>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRunbook {
    version: u32,
    #[serde(default)]
    stage: Vec<FileStage>,
    #[serde(default)]
    rollback: Vec<FileStage>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub id: String,
    pub title: String,
    pub kind: StepKind,
    pub gates: Vec<Gate>,
    pub when: Option<When>,
    pub instruction: Option<String>,
    /// The plan stage a `git-commit` or `node-cutover` step applies (1 or 2).
    pub stage: Option<u8>,
    /// `cilium` (the settings' Cilium app) or `root`, for the Argo steps.
    pub app: Option<String>,
    /// A rollback step (removes what the forward step added).
    pub undo: bool,
    /// The step that undoes this one, if any.
    pub rollback: Option<String>,
}

/// A stage (or a rollback sequence) of steps, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    pub id: String,
    pub title: String,
    pub optional: bool,
    pub steps: Vec<Step>,
}

/// A validated runbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runbook {
    pub stages: Vec<Stage>,
    pub rollbacks: Vec<Stage>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The `stage[0].step[2].kind`-style field a TOML error is about, from the error message.
fn field_of(message: &str) -> String {
    // toml's messages name the key in backticks (`missing field `kind``, `unknown variant …`).
    message.split('`').nth(1).unwrap_or("file").to_string()
}

impl Runbook {
    /// Parses and validates a runbook. `path` names the file in errors.
    pub fn parse(text: &str, path: &str) -> Result<Runbook, RunbookError> {
        let file: FileRunbook = toml::from_str(text).map_err(|e| RunbookError::Invalid {
            path: path.into(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            field: field_of(e.message()),
            message: e.message().lines().next().unwrap_or("invalid").to_string(),
        })?;
        if file.version != 1 {
            return Err(RunbookError::Invalid {
                path: path.into(),
                line: 1,
                field: "version".into(),
                message: format!("version {} is not supported (this cutover reads version 1)", file.version),
            });
        }
        let mut ids: Vec<String> = Vec::new();
        for st in file.stage.iter().chain(&file.rollback) {
            for s in &st.step {
                if ids.contains(s.id.get_ref()) {
                    return Err(RunbookError::Invalid {
                        path: path.into(),
                        line: line_of(text, s.id.span().start),
                        field: "id".into(),
                        message: format!("step id {:?} is used twice", s.id.get_ref()),
                    });
                }
                ids.push(s.id.get_ref().clone());
            }
        }
        let convert = |st: FileStage| -> Result<Stage, RunbookError> {
            let mut steps = Vec::new();
            for s in st.step {
                let rb = s.rollback.get_ref();
                if rb != "none" && !ids.contains(rb) {
                    return Err(RunbookError::Invalid {
                        path: path.into(),
                        line: line_of(text, s.rollback.span().start),
                        field: "rollback".into(),
                        message: format!(
                            "step {:?} names rollback {rb:?}, which is no step of this runbook",
                            s.id.get_ref()
                        ),
                    });
                }
                let needs = |what: &str, ok: bool| -> Result<(), RunbookError> {
                    if ok {
                        Ok(())
                    } else {
                        Err(RunbookError::Invalid {
                            path: path.into(),
                            line: line_of(text, s.id.span().start),
                            field: what.into(),
                            message: format!("a {:?} step needs `{what}`", s.kind),
                        })
                    }
                };
                match s.kind {
                    StepKind::GitCommit | StepKind::NodeCutover => needs("stage", matches!(s.stage, Some(1 | 2)))?,
                    StepKind::ArgoRefresh | StepKind::ArgoSync | StepKind::ArgoWait => {
                        needs("app", matches!(s.app.as_deref(), Some("cilium" | "root")))?
                    }
                    StepKind::OperatorCheck => needs("instruction", s.instruction.is_some())?,
                    StepKind::Validate => {}
                }
                steps.push(Step {
                    id: s.id.into_inner(),
                    title: s.title,
                    kind: s.kind,
                    gates: s.gates,
                    when: s.when,
                    instruction: s.instruction,
                    stage: s.stage,
                    app: s.app,
                    undo: s.undo,
                    rollback: Some(s.rollback.into_inner()).filter(|r| r != "none"),
                });
            }
            Ok(Stage { id: st.id, title: st.title, optional: st.optional, steps })
        };
        Ok(Runbook {
            stages: file.stage.into_iter().map(convert).collect::<Result<_, _>>()?,
            rollbacks: file.rollback.into_iter().map(convert).collect::<Result<_, _>>()?,
        })
    }

    /// The built-in runbook.
    pub fn built_in() -> Runbook {
        // A test proves it parses; a broken built-in is a build defect, not operator input.
        Runbook::parse(BUILT_IN, "assets/runbook.toml").unwrap_or(Runbook { stages: Vec::new(), rollbacks: Vec::new() })
    }

    /// Reads a user's runbook file (bounded).
    pub fn load(path: &Path) -> Result<Runbook, RunbookError> {
        use std::io::Read;
        let shown = path.display().to_string();
        let err = |message: String| RunbookError::Read { path: shown.clone(), message };
        let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        let mut bytes = Vec::new();
        f.take(MAX_BYTES + 1).read_to_end(&mut bytes).map_err(|e| err(e.to_string()))?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(err(format!("larger than {} KiB; a runbook is not that big", MAX_BYTES / 1024)));
        }
        let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()))?;
        Runbook::parse(&text, &shown)
    }
}

/// A gate's answer: green, red or unknown (the data could not be read), with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateState {
    Green,
    Red,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateResult {
    pub gate: Gate,
    pub state: GateState,
    pub evidence: String,
}

fn app<'a>(snap: &'a ClusterSnapshot, name: &str) -> Result<Option<&'a serde_json::Value>, String> {
    match &snap.applications {
        Ok(apps) => Ok(apps.iter().find(|a| a.pointer("/metadata/name").and_then(|n| n.as_str()) == Some(name))),
        Err(e) => Err(format!("applications unreadable: {}", e.message)),
    }
}

/// Evaluates one gate against a snapshot (and the pre-flight checks evaluated from it).
pub fn evaluate_gate(
    gate: Gate,
    snap: &ClusterSnapshot,
    settings: &Settings,
    checks: &[crate::checks::Check],
) -> GateResult {
    let r = |state, evidence: String| GateResult { gate, state, evidence };
    let cilium_app = settings.argo.cilium_app.as_str();
    match gate {
        Gate::PreflightNoFail => {
            let fails: Vec<&str> = checks.iter().filter(|c| c.status == Status::Fail).map(|c| c.id.as_str()).collect();
            let warns = checks.iter().filter(|c| c.status == Status::Warn).count();
            let unknown = checks.iter().filter(|c| c.status == Status::Unknown).count();
            if !fails.is_empty() {
                r(GateState::Red, format!("{} fail: {}", fails.len(), fails.join(", ")))
            } else if unknown > 0 {
                r(GateState::Unknown, format!("{unknown} check(s) could not be decided; {warns} warning(s)"))
            } else {
                r(GateState::Green, format!("no fail; {warns} warning(s) to acknowledge"))
            }
        }
        Gate::CiliumAppAbsent | Gate::CiliumAppPresent => match app(snap, cilium_app) {
            Err(e) => r(GateState::Unknown, e),
            Ok(found) => {
                let want_present = gate == Gate::CiliumAppPresent;
                let state = if found.is_some() == want_present { GateState::Green } else { GateState::Red };
                let said = if found.is_some() { "exists" } else { "does not exist" };
                r(state, format!("Application {cilium_app} {said}"))
            }
        },
        Gate::CiliumAppSyncedHealthy => match app(snap, cilium_app) {
            Err(e) => r(GateState::Unknown, e),
            Ok(None) => r(GateState::Red, format!("Application {cilium_app} does not exist")),
            Ok(Some(a)) => {
                let s = |p: &str| a.pointer(p).and_then(|v| v.as_str()).unwrap_or("?").to_string();
                let (sync, health) = (s("/status/sync/status"), s("/status/health/status"));
                let revs: Vec<&str> = a
                    .pointer("/status/sync/revisions")
                    .and_then(|v| v.as_array())
                    .map(|v| v.iter().filter_map(|r| r.as_str()).collect())
                    .unwrap_or_default();
                let rev = if revs.is_empty() {
                    s("/status/sync/revision")
                } else {
                    revs.iter().map(|r| crate::runbook::steps::short(r)).collect::<Vec<_>>().join(",")
                };
                let ok = sync == "Synced" && health == "Healthy";
                r(if ok { GateState::Green } else { GateState::Red }, format!("{sync}, {health} at {rev}"))
            }
        },
        Gate::CiliumDsOnEveryNode => match (&snap.daemonsets, &snap.nodes) {
            (Err(e), _) | (_, Err(e)) => r(GateState::Unknown, format!("unreadable: {}", e.message)),
            (Ok(dss), Ok(nodes)) => {
                let ds = dss.iter().find(|d| {
                    d.metadata.name.as_deref() == Some("cilium")
                        && d.metadata.namespace.as_deref() == Some(settings.cilium.namespace.as_str())
                });
                match ds.and_then(|d| d.status.as_ref()) {
                    None => r(GateState::Red, "no cilium DaemonSet".into()),
                    Some(st) => {
                        let n = nodes.len() as i32;
                        let ok = st.desired_number_scheduled == n && st.number_available.unwrap_or(0) == n;
                        r(
                            if ok { GateState::Green } else { GateState::Red },
                            format!(
                                "{} scheduled, {} available, {n} node(s)",
                                st.desired_number_scheduled,
                                st.number_available.unwrap_or(0)
                            ),
                        )
                    }
                }
            }
        },
        Gate::NodesReady => match &snap.nodes {
            Err(e) => r(GateState::Unknown, format!("nodes unreadable: {}", e.message)),
            Ok(nodes) => {
                let not: Vec<String> = nodes
                    .iter()
                    .filter(|n| {
                        !n.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                    })
                    .filter_map(|n| n.metadata.name.clone())
                    .collect();
                if not.is_empty() {
                    r(GateState::Green, format!("all {} node(s) Ready", nodes.len()))
                } else {
                    r(GateState::Red, format!("not Ready: {}", not.join(", ")))
                }
            }
        },
        Gate::CiliumCniOnNoNode => match &snap.nodes {
            Err(e) => r(GateState::Unknown, format!("nodes unreadable: {}", e.message)),
            Ok(nodes) => {
                // Any server that runs without flannel means Cilium carries pod traffic there.
                let off: Vec<String> = nodes
                    .iter()
                    .filter(|n| {
                        crate::checks::k3s::node_args(n).and_then(Result::ok).is_some_and(|a| !a.flannel_enabled())
                    })
                    .filter_map(|n| n.metadata.name.clone())
                    .collect();
                if off.is_empty() {
                    r(GateState::Green, "every server runs flannel (no --flannel-backend none)".into())
                } else {
                    r(
                        GateState::Red,
                        format!("Cilium is the CNI on {}: deleting its app would cut every pod off", off.join(", ")),
                    )
                }
            }
        },
        Gate::NodeStepAvailable => match crate::runbook::steps_node::ssh_available(settings) {
            Ok(e) => r(GateState::Green, e),
            Err(e) => r(GateState::Red, format!("unavailable: {e}")),
        },
        Gate::ValidateAvailable => {
            r(GateState::Red, "unavailable: the automated validation checklist is not built in this version".into())
        }
    }
}

/// `cutover plan`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// A runbook file that replaces the built-in one.
    #[arg(long, value_name = "PATH")]
    pub runbook: Option<PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = PlanFormat::Text)]
    pub output: PlanFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize)]
struct StepView<'a> {
    stage: &'a str,
    step: &'a Step,
    state: &'static str,
    gates: Vec<GateResult>,
}

/// A step's state from its gates: `ready` (all green), `blocked` (a red gate), `unknown`.
fn step_state(gates: &[GateResult]) -> &'static str {
    if gates.iter().any(|g| {
        (g.gate == Gate::NodeStepAvailable || g.gate == Gate::ValidateAvailable) && g.state != GateState::Green
    }) {
        "unavailable"
    } else if gates.iter().any(|g| g.state == GateState::Red) {
        "blocked"
    } else if gates.iter().any(|g| g.state == GateState::Unknown) {
        "unknown"
    } else {
        "ready"
    }
}

/// Prints the runbook with every gate evaluated against the cluster (read-only).
pub async fn run_plan(args: PlanArgs, global: &crate::cli::GlobalArgs) -> Result<ExitCode> {
    let settings = Settings::load(global.settings.as_deref()).wrap_err("cannot load the settings")?;
    let runbook = match &args.runbook {
        Some(p) => match Runbook::load(p) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("cutover: {e}");
                return Ok(ExitCode::from(2));
            }
        },
        None => Runbook::built_in(),
    };
    let snapshot = match crate::checks::client::build(global).await {
        Ok(c) => crate::checks::gather(&c, &settings).await,
        Err(e) => ClusterSnapshot::failed(crate::checks::FetchErrorKind::Unreachable, &e.to_string()),
    };
    let checks = crate::checks::evaluate(&snapshot, &settings);
    let mut views = Vec::new();
    for st in runbook.stages.iter().chain(&runbook.rollbacks) {
        for step in &st.steps {
            let gates: Vec<GateResult> =
                step.gates.iter().map(|g| evaluate_gate(*g, &snapshot, &settings, &checks)).collect();
            views.push(StepView { stage: &st.id, step, state: step_state(&gates), gates });
        }
    }
    let out = match args.output {
        PlanFormat::Json => serde_json::to_string_pretty(&views).wrap_err("encoding the plan")? + "\n",
        PlanFormat::Text => {
            use std::fmt::Write as _;
            let mut out = String::new();
            for st in runbook.stages.iter().chain(&runbook.rollbacks) {
                let _ = writeln!(out, "{}{}", st.title, if st.optional { " (optional)" } else { "" });
                for v in views.iter().filter(|v| v.stage == st.id) {
                    let _ = writeln!(
                        out,
                        "  {:<12} {:<18} {:<15} {}",
                        v.state,
                        v.step.id,
                        format!("{:?}", v.step.kind),
                        v.step.title
                    );
                    for g in &v.gates {
                        let mark = match g.state {
                            GateState::Green => "ok ",
                            GateState::Red => "RED",
                            GateState::Unknown => "?  ",
                        };
                        let _ = writeln!(out, "      {mark} {:?}: {}", g.gate, g.evidence);
                    }
                    if let Some(i) = &v.step.instruction {
                        let _ = writeln!(out, "      → {i}");
                    }
                }
                out.push('\n');
            }
            out
        }
    };
    crate::cli::write_stdout(&out).wrap_err("writing the plan")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_runbook_is_the_corrected_plan() {
        let rb = Runbook::parse(BUILT_IN, "assets/runbook.toml").expect("built-in parses");
        let ids: Vec<&str> = rb.stages.iter().flat_map(|s| s.steps.iter().map(|s| s.id.as_str())).collect();
        assert_eq!(ids[0], "preflight");
        assert!(ids.iter().position(|i| *i == "stage1-commit") < ids.iter().position(|i| *i == "stage1-nodes"));
        // The Stage 1 rollback brings flannel back on the nodes before it reverts the commit,
        // and the revert is gated on Cilium being the CNI nowhere.
        let rb1 = rb.rollbacks.iter().find(|s| s.id == "rollback-stage1").expect("rollback-stage1");
        let order: Vec<&str> = rb1.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            order,
            vec!["stage1-nodes-back", "stage1-freeze", "stage1-revert", "stage1-revert-wait", "stage1-unfreeze"]
        );
        assert!(rb1.steps[2].gates.contains(&Gate::CiliumCniOnNoNode));
        assert!(rb.stages.iter().find(|s| s.id == "stage2").is_some_and(|s| s.optional));
    }

    #[test]
    fn a_broken_runbook_names_file_line_and_field() {
        let base = "version = 1\n[[stage]]\nid = \"s\"\ntitle = \"t\"\n[[stage.step]]\nid = \"a\"\ntitle = \"x\"\n";
        let unknown_kind = format!("{base}kind = \"teleport\"\nrollback = \"none\"\n");
        match Runbook::parse(&unknown_kind, "my.toml") {
            Err(RunbookError::Invalid { path, line, field, message }) => {
                assert_eq!((path.as_str(), line), ("my.toml", 8), "{message}");
                assert!(message.contains("teleport") || field.contains("teleport"), "{field}: {message}");
            }
            other => panic!("{other:?}"),
        }
        let missing = format!("{base}kind = \"validate\"\n");
        let e = Runbook::parse(&missing, "my.toml").expect_err("missing rollback");
        assert!(e.to_string().starts_with("my.toml:5:") && e.to_string().contains("rollback"), "{e}");
        let unknown_ref = format!("{base}kind = \"validate\"\nrollback = \"nowhere\"\n");
        let e = Runbook::parse(&unknown_ref, "my.toml").expect_err("unknown step");
        assert_eq!(
            e.to_string(),
            "my.toml:9: rollback: step \"a\" names rollback \"nowhere\", which is no step of this runbook"
        );
        let no_app = format!("{base}kind = \"argo-wait\"\nrollback = \"none\"\n");
        let e = Runbook::parse(&no_app, "my.toml").expect_err("argo without app");
        assert!(e.to_string().contains(": app: "), "{e}");
    }

    #[test]
    fn gates_read_the_snapshot_and_say_unknown_when_they_cannot() {
        let settings = Settings::default();
        let snap = ClusterSnapshot::failed(crate::checks::FetchErrorKind::Unreachable, "connection refused");
        let g = evaluate_gate(Gate::CiliumAppAbsent, &snap, &settings, &[]);
        assert_eq!(g.state, GateState::Unknown, "{g:?}");
        let mut snap = ClusterSnapshot::empty();
        snap.applications = Ok(vec![]);
        assert_eq!(evaluate_gate(Gate::CiliumAppAbsent, &snap, &settings, &[]).state, GateState::Green);
        assert_eq!(evaluate_gate(Gate::CiliumAppSyncedHealthy, &snap, &settings, &[]).state, GateState::Red);
        // The per-node step is unavailable (red, saying what to set) when SSH is not usable.
        let mut settings = settings.clone();
        settings.ssh.config_file = Some("/nonexistent/ssh_config".into());
        let g = evaluate_gate(Gate::NodeStepAvailable, &snap, &settings, &[]);
        assert_eq!(g.state, GateState::Red);
        assert_eq!(step_state(&[g]), "unavailable");
    }
}
