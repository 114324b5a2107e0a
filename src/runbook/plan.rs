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
    /// The stage (or rollback sequence) and the step with this id.
    pub fn find(&self, id: &str) -> Option<(&Stage, &Step)> {
        self.stages.iter().chain(&self.rollbacks).find_map(|st| st.steps.iter().find(|s| s.id == id).map(|s| (st, s)))
    }

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
                if nodes.is_empty() {
                    r(GateState::Red, "the API lists no node".into())
                } else if !not.is_empty() {
                    r(GateState::Red, format!("not Ready: {}", not.join(", ")))
                } else {
                    r(GateState::Green, format!("all {} node(s) Ready", nodes.len()))
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
            r(GateState::Green, "the passive checks run (read-only); armed, the active probe checks run too".into())
        }
    }
}

/// `cutover plan`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// A runbook file that replaces the built-in one (default: `runbook.file` in the settings).
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

/// One file a `git-commit` step would commit, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSummary {
    /// `create` or `change`.
    pub change: String,
    pub path: String,
}

/// One step of `cutover plan`: its state (from the journal, else from its preview), its gates
/// read now and what running it would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanStep {
    pub stage: String,
    pub id: String,
    pub kind: StepKind,
    pub title: String,
    /// `done`, `interrupted`, `ready`, `blocked`, `skip`, `unavailable`.
    pub state: &'static str,
    pub why: String,
    /// The step's last run in the journal, if any (`time`, `outcome`, `message`).
    pub journal: Option<crate::runbook::steps::JournaledStep>,
    pub gates: Vec<GateResult>,
    /// The preview's lines: notes, the commit, the exact file diffs, the API patches, the wait.
    pub changes: Vec<String>,
    /// For a `git-commit` step: each file that would be created or changed.
    pub files: Vec<FileSummary>,
}

impl PlanStep {
    /// The change lines without the diff bodies: one line per changed file.
    pub fn summary(&self) -> Vec<String> {
        summarize(&self.changes)
    }
}

/// Where the journal puts the runbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum PlanPosition {
    /// No step has run (or every run was rolled back).
    NotStarted,
    /// The last step that ended well.
    After { step: String, time: String },
    /// A step has a journaled intent and no result: the process died while it ran.
    Interrupted { step: String, time: String },
    /// The journal cannot be read: the position is not known.
    Unknown { why: String },
}

impl std::fmt::Display for PlanPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanPosition::NotStarted => write!(f, "not started"),
            PlanPosition::After { step, time } => write!(f, "after {step} (done {time})"),
            PlanPosition::Interrupted { step, time } => {
                write!(f, "interrupted at {step} (started {time}); its gates are re-checked before anything continues")
            }
            PlanPosition::Unknown { why } => write!(f, "position unknown: {why}"),
        }
    }
}

/// The whole `cutover plan` answer (its JSON form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanReport {
    /// `built-in` or the runbook file.
    pub runbook: String,
    pub journal: String,
    pub position: PlanPosition,
    pub steps: Vec<PlanStep>,
}

/// The preview's change lines with every diff body left out: what is before the first file,
/// then each `create PATH` / `change PATH` line (an unchanged file is not listed).
fn summarize(changes: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_files = false;
    for l in changes {
        if let Some((word, _)) = file_header(l) {
            in_files = true;
            if word != "unchanged" {
                out.push(l.clone());
            }
        } else if !in_files {
            out.push(l.clone());
        }
    }
    out
}

/// `create PATH`, `change PATH` or `unchanged PATH`: a file line of a Git preview (a diff line
/// starts with `+`, `-`, ` `, `@` or `\`, never with a word).
fn file_header(line: &str) -> Option<(&str, &str)> {
    let (word, path) = line.split_once(' ')?;
    matches!(word, "create" | "change" | "unchanged").then_some((word, path))
}

/// The ok runs of the journal that still count: a forward step rolled back does not (the
/// position resets it), and a rollback step counts only after its stage's last forward run.
fn counted_done<'a>(
    runbook: &Runbook,
    position: &'a crate::runbook::steps::Position,
) -> std::collections::BTreeMap<&'a str, &'a crate::runbook::steps::JournaledStep> {
    let mut done: std::collections::BTreeMap<&str, &crate::runbook::steps::JournaledStep> =
        position.last.iter().filter(|(_, j)| j.outcome == "ok").map(|(id, j)| (id.as_str(), j)).collect();
    for st in &runbook.stages {
        let Some(rb) = crate::runbook::steps::rollback_for(runbook, &st.id) else { continue };
        let forward_at = st.steps.iter().filter_map(|s| done.get(s.id.as_str()).map(|j| j.seq)).max();
        if let Some(at) = forward_at {
            for s in &rb.steps {
                if done.get(s.id.as_str()).is_some_and(|j| j.seq < at) {
                    done.remove(s.id.as_str());
                }
            }
        }
    }
    done
}

/// The position line from the journal.
fn plan_position(runbook: &Runbook, position: &crate::runbook::steps::Position) -> PlanPosition {
    if let Some((step, time)) = &position.interrupted {
        return PlanPosition::Interrupted { step: step.clone(), time: time.clone() };
    }
    match counted_done(runbook, position).into_iter().max_by_key(|(_, j)| j.seq) {
        Some((step, j)) => PlanPosition::After { step: step.to_string(), time: j.time.clone() },
        None => PlanPosition::NotStarted,
    }
}

/// A step's row: `interrupted` when the journal has its intent open; `done` when the journal
/// says so (a `git-commit` step: when its commit is on the branch, which the preview reads);
/// else the preview's state.
fn plan_step(
    preview: crate::runbook::steps::StepPreview,
    position: &crate::runbook::steps::Position,
    done: &std::collections::BTreeMap<&str, &crate::runbook::steps::JournaledStep>,
) -> PlanStep {
    use crate::runbook::steps::StepState;
    let id = preview.step.id.clone();
    let journal = position.last.get(&id).cloned();
    let files = preview
        .changes
        .iter()
        .filter_map(|l| file_header(l))
        .filter(|(w, _)| *w != "unchanged")
        .map(|(w, p)| FileSummary { change: w.into(), path: p.into() })
        .collect();
    let mut row = PlanStep {
        stage: preview.stage.clone(),
        id: id.clone(),
        kind: preview.step.kind,
        title: preview.step.title.clone(),
        state: preview.state.word(),
        why: preview.state.why().to_string(),
        journal,
        gates: preview.gates,
        changes: preview.changes,
        files,
    };
    let interrupted = position.interrupted.as_ref().filter(|(s, _)| *s == id);
    if let Some((_, time)) = interrupted {
        row.state = "interrupted";
        row.why = format!(
            "started {time} and has no result in the journal; `cutover run` re-checks its gates and runs it again"
        );
    } else if let Some(j) = position.skipped(&id) {
        row.state = "skipped";
        row.why =
            format!("skipped by the operator (journal {}): {}; `cutover run` goes on after it", j.time, j.message);
        row.changes.clear();
        row.files.clear();
    } else if let Some(j) = done.get(id.as_str()) {
        // As `cutover run` judges it: acknowledgements and Argo requests are done once journaled;
        // waits and validation only read and run again; commits (and node changes) are judged by
        // the branch (and the nodes), which the preview reads.
        if matches!(row.kind, StepKind::OperatorCheck | StepKind::ArgoRefresh | StepKind::ArgoSync) {
            row.state = "done";
            row.why = format!("journal {}: {}", j.time, j.message);
            // It ran: a run sends nothing for it again.
            row.changes.clear();
            row.files.clear();
        } else if matches!(row.kind, StepKind::ArgoWait | StepKind::Validate) {
            row.state = "done";
            row.why = format!("journal {}: {}; it only reads: a run reads it again", j.time, j.message);
        } else if row.kind == StepKind::NodeCutover {
            row.why = format!("the journal says done at {}; the nodes are what count: {}", j.time, row.why);
        } else if matches!(preview.state, StepState::Done(_)) {
            row.why = format!("{} (journal {})", row.why, j.time);
        } else {
            // A commit's truth is the branch: done in the journal, gone from Git (reverted by hand?).
            let said = format!("the journal says done at {}, but Git says otherwise", j.time);
            row.why = if row.why.is_empty() { said } else { format!("{said}; {}", row.why) };
        }
    }
    row
}

fn gate_mark(g: &GateResult) -> &'static str {
    match g.state {
        GateState::Green => "ok ",
        GateState::Red => "RED",
        GateState::Unknown => "?  ",
    }
}

/// The text form: the position, then each stage with its steps, gates and change summaries.
fn format_text(report: &PlanReport, runbook: &Runbook) -> String {
    use crate::runbook::steps::{gate_id, kind_id};
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "runbook: {}", report.position);
    let _ = writeln!(out, "  ({}; journal {})", report.runbook, report.journal);
    out.push('\n');
    for st in runbook.stages.iter().chain(&runbook.rollbacks) {
        let optional = st.optional && !st.title.contains("(optional)");
        let _ = writeln!(out, "{}{}", st.title, if optional { " (optional)" } else { "" });
        for v in report.steps.iter().filter(|v| v.stage == st.id) {
            let _ = writeln!(out, "  {:<12} {:<18} {:<15} {}", v.state, v.id, kind_id(v.kind), v.title);
            if !v.why.is_empty() {
                // An unavailable gate's evidence already starts with the word.
                let why = v.why.strip_prefix(&format!("{}: ", v.state)).unwrap_or(&v.why);
                let _ = writeln!(out, "      {}: {why}", v.state);
            }
            if let Some(j) = v.journal.as_ref().filter(|j| j.outcome != "ok") {
                let _ = writeln!(out, "      last run {}: {}: {}", j.time, j.outcome, j.message);
            }
            for g in &v.gates {
                let _ = writeln!(out, "      {} {}: {}", gate_mark(g), gate_id(g.gate), g.evidence);
            }
            for l in v.summary() {
                let _ = writeln!(out, "      {l}");
            }
        }
        out.push('\n');
    }
    out
}

/// Prints the runbook through the step engine, read-only: the position from the journal, each
/// step's state, its gates read now and what running it would change (Git fetched, never
/// written; no lock, no journal entry, no mutating request).
pub async fn run_plan(args: PlanArgs, global: &crate::cli::GlobalArgs) -> Result<ExitCode> {
    use crate::runbook::journal::Journal;
    use crate::runbook::steps::{self, Position, StepEnv};
    use std::sync::Arc;
    let settings = Settings::load(global.settings.as_deref()).wrap_err("cannot load the settings")?;
    let runbook = match crate::runbook::run_cli::load_runbook(args.runbook.as_deref(), &settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cutover: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let source = match args.runbook.as_deref().or(settings.runbook.file.as_deref()) {
        Some(p) => p.display().to_string(),
        None => "built-in runbook".to_string(),
    };
    // Read-only whatever the settings say: the plan only reads.
    let conn = match crate::cluster::client::connect(global, |_| true).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cutover: cannot connect to the cluster: {e}");
            return Ok(ExitCode::from(3));
        }
    };
    let journal = Journal::for_cluster(&conn.cluster).wrap_err("cannot place the journal")?;
    let (position, plan_pos) = match journal.read() {
        Ok(v) => {
            let p = Position::from_journal(&runbook, &v.entries);
            let mut pos = plan_position(&runbook, &p);
            if let Some(bad) = v.bad {
                pos = PlanPosition::Unknown {
                    why: format!(
                        "the journal does not verify from line {} ({}); `cutover journal --verify`",
                        bad.line, bad.reason
                    ),
                };
            }
            (p, pos)
        }
        Err(e) => (Position::default(), PlanPosition::Unknown { why: format!("cannot read the journal: {e}") }),
    };
    let settings = Arc::new(settings);
    let env = StepEnv::new(settings.clone(), Arc::new(runbook.clone())).with_journal(journal.clone());
    let snapshot = crate::checks::gather(&conn.client, &settings).await;
    let checks = crate::checks::evaluate(&snapshot, &settings);
    let done = counted_done(&runbook, &position);
    let mut rows = Vec::new();
    for st in runbook.stages.iter().chain(&runbook.rollbacks) {
        for step in &st.steps {
            let pre = steps::preview(&env, &conn.client, &st.id, step, &snapshot, &checks).await;
            rows.push(plan_step(pre, &position, &done));
        }
    }
    let report =
        PlanReport { runbook: source, journal: journal.path().display().to_string(), position: plan_pos, steps: rows };
    let out = match args.output {
        PlanFormat::Json => serde_json::to_string_pretty(&report).wrap_err("encoding the plan")? + "\n",
        PlanFormat::Text => format_text(&report, &runbook),
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
        assert!(g.evidence.starts_with("unavailable"), "{g:?}");
    }

    fn node(name: &str, ready: bool) -> k8s_openapi::api::core::v1::Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .expect("node")
    }

    #[test]
    fn nodes_ready_is_green_only_when_every_node_is_ready() {
        let settings = Settings::default();
        let mut snap = ClusterSnapshot::empty();
        snap.nodes = Ok(vec![node("cp1", true), node("w1", true)]);
        let g = evaluate_gate(Gate::NodesReady, &snap, &settings, &[]);
        assert_eq!((g.state, g.evidence.as_str()), (GateState::Green, "all 2 node(s) Ready"));
        snap.nodes = Ok(vec![node("cp1", true), node("w1", false)]);
        let g = evaluate_gate(Gate::NodesReady, &snap, &settings, &[]);
        assert_eq!((g.state, g.evidence.as_str()), (GateState::Red, "not Ready: w1"));
        snap.nodes = Ok(vec![]);
        assert_eq!(evaluate_gate(Gate::NodesReady, &snap, &settings, &[]).state, GateState::Red);
    }

    use crate::runbook::journal::{Entry, Outcome, Record};
    use crate::runbook::steps::{Position, StepPreview, StepState};

    fn entry(seq: u64, record: Record) -> Entry {
        Entry { seq, time: format!("t{seq}"), prev: String::new(), record }
    }

    fn ran(seq: u64, step: &str, outcome: Option<Outcome>) -> Vec<Entry> {
        let op = format!("op{seq}");
        let mut v = vec![entry(
            seq,
            Record::Intent {
                op: op.clone(),
                title: step.into(),
                preview: vec![],
                confirmed_by: "t".into(),
                mode: "armed".into(),
                step: Some(step.into()),
            },
        )];
        if let Some(outcome) = outcome {
            v.push(entry(seq + 1, Record::Result { op, outcome, message: format!("{step} went") }));
        }
        v
    }

    fn preview_of(rb: &Runbook, id: &str, state: StepState, changes: &[&str]) -> StepPreview {
        let (st, step) = rb
            .stages
            .iter()
            .chain(&rb.rollbacks)
            .find_map(|st| st.steps.iter().find(|s| s.id == id).map(|s| (st, s)))
            .expect("step");
        StepPreview {
            stage: st.id.clone(),
            step: step.clone(),
            gates: vec![],
            state,
            changes: changes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_position_line_comes_from_the_journal() {
        let rb = Runbook::built_in();
        assert_eq!(plan_position(&rb, &Position::from_journal(&rb, &[])), PlanPosition::NotStarted);
        let mut e = ran(1, "preflight", Some(Outcome::Ok));
        e.extend(ran(3, "stage1-commit", Some(Outcome::Ok)));
        e.extend(ran(5, "stage1-refresh", Some(Outcome::Failed)));
        let p = Position::from_journal(&rb, &e);
        let pos = plan_position(&rb, &p);
        assert_eq!(pos, PlanPosition::After { step: "stage1-commit".into(), time: "t4".into() });
        assert_eq!(pos.to_string(), "after stage1-commit (done t4)");
        e.extend(ran(7, "stage1-wait", None));
        let p = Position::from_journal(&rb, &e);
        assert!(plan_position(&rb, &p).to_string().starts_with("interrupted at stage1-wait (started t7)"));
        // A rollback done before the stage ran again no longer counts; the forward steps do.
        let mut e = ran(1, "stage1-freeze", Some(Outcome::Ok));
        e.extend(ran(3, "preflight", Some(Outcome::Ok)));
        e.extend(ran(5, "stage1-refresh", Some(Outcome::Ok)));
        let p = Position::from_journal(&rb, &e);
        let done = counted_done(&rb, &p);
        assert!(done.contains_key("stage1-refresh") && !done.contains_key("stage1-freeze"), "{done:?}");
    }

    #[test]
    fn a_step_is_done_from_the_journal_interrupted_from_an_open_intent_else_as_previewed() {
        let rb = Runbook::built_in();
        let mut e = ran(1, "stage1-refresh", Some(Outcome::Ok));
        e.extend(ran(3, "stage1-wait", None));
        let p = Position::from_journal(&rb, &e);
        let done = counted_done(&rb, &p);
        let patch = ["PATCH Application argocd/root: refresh"];
        let row = plan_step(preview_of(&rb, "stage1-refresh", StepState::Ready, &patch), &p, &done);
        assert_eq!((row.state, row.why.as_str()), ("done", "journal t2: stage1-refresh went"));
        assert!(row.changes.is_empty(), "a done step plans no change: {row:?}");
        let row = plan_step(preview_of(&rb, "stage1-wait", StepState::Ready, &[]), &p, &done);
        assert_eq!(row.state, "interrupted");
        let blocked = StepState::Blocked("preflight-no-fail is red: 1 fail".into());
        let row = plan_step(preview_of(&rb, "stage1-commit", blocked, &[]), &p, &done);
        assert_eq!((row.state, row.why.as_str()), ("blocked", "preflight-no-fail is red: 1 fail"));
        assert!(row.journal.is_none());
    }

    #[test]
    fn the_text_plan_lists_each_changed_file_once_without_its_diff() {
        let rb = Runbook::built_in();
        let lines = [
            "commit on main: \"cutover: Stage 1\"",
            "  trailers Cutover-Step: stage1-commit, Cutover-Stage: 1",
            "then push to origin/main (never forced)",
            "create platform/gitops/argocd/apps/cilium-app.yaml",
            "--- /dev/null",
            "+++ b/platform/gitops/argocd/apps/cilium-app.yaml",
            "@@ -0,0 +1 @@",
            "+kind: Application",
            "unchanged README.md",
            "change platform/cilium/values.yaml",
            " create: context line",
            "-old",
        ];
        let p = Position::default();
        let row = plan_step(preview_of(&rb, "stage1-commit", StepState::Ready, &lines), &p, &counted_done(&rb, &p));
        assert_eq!(row.summary(), vec![lines[0], lines[1], lines[2], lines[3], "change platform/cilium/values.yaml"]);
        assert_eq!(
            row.files,
            vec![
                FileSummary { change: "create".into(), path: "platform/gitops/argocd/apps/cilium-app.yaml".into() },
                FileSummary { change: "change".into(), path: "platform/cilium/values.yaml".into() },
            ]
        );
        assert_eq!(row.changes.len(), lines.len(), "JSON keeps the exact diff");
        let report = PlanReport {
            runbook: "built-in runbook".into(),
            journal: "/j".into(),
            position: PlanPosition::NotStarted,
            steps: vec![row],
        };
        let text = format_text(&report, &rb);
        assert!(text.starts_with("runbook: not started\n"), "{text}");
        assert!(text.contains("  ready        stage1-commit      git-commit      Commit the Stage 1"), "{text}");
        assert!(!text.contains("+kind: Application"), "{text}");
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["position"]["state"], "not-started");
        assert_eq!(json["steps"][0]["files"][0]["change"], "create");
    }
}
