//! The step engine: what each kind of runbook step shows before it runs (its gates, read live,
//! and the exact changes) and what it does when the runner runs it.
//!
//! A step runs as one operation of the [`super::runner::Runner`]: under the cluster lock, its
//! intent journaled first (with the step's id, which is how the position is recomputed after a
//! restart), every Kubernetes request journaled by the write client and every Git write
//! journaled as a `change` before it is made. Steps are idempotent: a commit whose files are
//! already on the branch does nothing, a wait waits again, a refresh is asked again.
//!
//! A step that cannot be carried out here is never pretended: the `node-cutover` step's
//! `node-step-available` gate is red without a usable `ssh`, so the runbook stops there and says
//! what to set; a `validate` step without a relay reads its flow checks as unknown, never green.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::executor::{ExecError, Executor, Progress};
use super::journal::{Entry, Record};
use super::plan::{Gate, GateResult, GateState, Runbook, Stage, Step, StepKind, When, evaluate_gate};
use crate::app::action::Operation;
use crate::checks::snapshot::ClusterSnapshot;
use crate::checks::{Check, Status};
use crate::settings::Settings;

/// What the step engine needs besides the executor's clients.
#[derive(Clone)]
pub struct StepEnv {
    pub settings: Arc<Settings>,
    pub runbook: Arc<Runbook>,
    /// How long an `argo-wait` waits, and how often it looks.
    pub wait_timeout: Duration,
    pub wait_poll: Duration,
    /// Where the `validate` step reads flows (`None`: the flow checks are unknown).
    pub relay: Option<crate::hubble::client::RelayTarget>,
    /// How long the `validate` step reads the flow stream.
    pub validate_window: Duration,
    /// The cluster's journal, read by the node step's preview for its soaks' verdicts (`None`:
    /// the nodes alone say whether the step is done).
    pub journal: Option<super::journal::Journal>,
}

impl std::fmt::Debug for StepEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepEnv")
            .field("wait_timeout", &self.wait_timeout)
            .field("wait_poll", &self.wait_poll)
            .field("relay", &self.relay.is_some())
            .finish_non_exhaustive()
    }
}

fn settings_window(settings: &Settings) -> Duration {
    settings.runbook.validate_window()
}

impl StepEnv {
    pub fn new(settings: Arc<Settings>, runbook: Arc<Runbook>) -> StepEnv {
        let wait_timeout = settings.runbook.wait_timeout();
        let validate_window = settings_window(&settings);
        StepEnv {
            settings,
            runbook,
            wait_timeout,
            wait_poll: Duration::from_secs(3),
            relay: None,
            validate_window,
            journal: None,
        }
    }

    /// The journal whose soak verdicts the node step's preview reads.
    pub fn with_journal(mut self, journal: super::journal::Journal) -> StepEnv {
        self.journal = Some(journal);
        self
    }

    /// The relay the `validate` step reads flows from.
    pub fn with_relay(mut self, relay: crate::hubble::client::RelayTarget) -> StepEnv {
        self.relay = Some(relay);
        self
    }

    /// The stage (or rollback sequence) and the step with this id.
    pub fn find(&self, id: &str) -> Option<(&Stage, &Step)> {
        self.runbook.find(id)
    }

    /// The Application a step's `app` names.
    pub fn app_name(&self, step: &Step) -> String {
        match step.app.as_deref() {
            Some("root") => self.settings.argo.root_app.clone(),
            _ => self.settings.argo.cilium_app.clone(),
        }
    }
}

/// Where the runbook journals what is not a Kubernetes request (the runner's journal hook).
pub trait StepJournal: Send + Sync {
    /// An operator's explicit acknowledgement.
    fn ack(&self, what: &str, by: &str) -> Result<(), String>;
    /// Before a change (a Git commit or push): refuses the change when it cannot be journaled.
    fn change(&self, target: &str, action: &str, detail: &str) -> Result<u64, String>;
    /// How the change journaled as `token` went.
    fn change_done(&self, token: u64, ok: bool, detail: &str);
    /// What the step observed, changing nothing (a soak's figures).
    fn note(&self, target: &str, what: &str, detail: &str) -> Result<(), String>;
}

/// Whether a step needs its id typed to confirm (it deploys, reverts or restarts something).
pub fn is_disruptive(step: &Step) -> bool {
    matches!(step.kind, StepKind::GitCommit | StepKind::ArgoSync | StepKind::NodeCutover)
}

/// Whether the operator may skip `step` after it failed or while it is blocked: the steps that
/// only ask Argo CD, wait or check. A commit or a node cutover is never skipped (half-done, it is
/// retried or rolled back), nor the pre-flight (a `fail` is a hard stop).
pub fn skippable(step: &Step) -> Result<(), String> {
    match step.kind {
        StepKind::ArgoRefresh | StepKind::ArgoSync | StepKind::ArgoWait | StepKind::Validate => Ok(()),
        StepKind::GitCommit | StepKind::NodeCutover => Err(format!(
            "{} ({}) cannot be skipped: retry it (n) or roll the stage back (R)",
            step.id,
            kind_id(step.kind)
        )),
        StepKind::OperatorCheck => {
            Err(format!("{} is an operator check: it cannot be skipped, only confirmed when it holds", step.id))
        }
    }
}

/// The operation that skips `step` (`why`: the state it is in, as the operator saw it).
pub fn skip_operation(step: &Step, why: &str) -> Operation {
    Operation::SkipStep { id: step.id.clone(), why: why.to_string() }
}

/// Runs a skip: journals the acknowledgement; nothing else happens.
pub fn skip(env: &StepEnv, journal: &dyn StepJournal, id: &str, why: &str) -> Result<String, ExecError> {
    let (_, step) = env
        .find(id)
        .ok_or_else(|| ExecError::Refused(format!("skip {id}: no such step in the runbook; nothing was journaled")))?;
    skippable(step).map_err(ExecError::Refused)?;
    journal
        .ack(&format!("skipped {id} ({why})"), "the operator, who typed the step id")
        .map_err(|e| ExecError::Refused(format!("skip {id}: {e}")))?;
    Ok(format!("skipped by the operator ({why}); the runbook goes on after it"))
}

/// The operation that runs `step`.
pub fn operation(step: &Step) -> Operation {
    Operation::Step { id: step.id.clone(), title: step.title.clone(), disruptive: is_disruptive(step) }
}

/// A step's state before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "why", rename_all = "kebab-case")]
pub enum StepState {
    /// It ran, and what is live agrees (the evidence).
    Done(String),
    /// Every gate is green (for a wait: it may start waiting).
    Ready,
    /// Its `when` is false: nothing to do.
    Skip(String),
    /// A gate is red or unknown: it does not run.
    Blocked(String),
    /// This version cannot carry it out; do it by hand.
    Unavailable(String),
}

impl StepState {
    pub fn word(&self) -> &'static str {
        match self {
            StepState::Done(_) => "done",
            StepState::Ready => "ready",
            StepState::Skip(_) => "skip",
            StepState::Blocked(_) => "blocked",
            StepState::Unavailable(_) => "unavailable",
        }
    }

    pub fn why(&self) -> &str {
        match self {
            StepState::Ready => "",
            StepState::Done(w) | StepState::Skip(w) | StepState::Blocked(w) | StepState::Unavailable(w) => w,
        }
    }
}

/// What the operator sees before confirming a step: its gates and the exact changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepPreview {
    pub stage: String,
    pub step: Step,
    pub gates: Vec<GateResult>,
    pub state: StepState,
    /// The exact changes: file diffs, API patches, what a wait waits for.
    pub changes: Vec<String>,
}

impl StepPreview {
    /// The lines of the confirmation dialog (and of the journal's intent).
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("{} — {}", self.step.id, self.step.title)];
        for g in &self.gates {
            let mark = match g.state {
                GateState::Green => "ok ",
                GateState::Red => "RED",
                GateState::Unknown => "?  ",
            };
            out.push(format!("  {mark} {}: {}", gate_id(g.gate), g.evidence));
        }
        if !matches!(self.state, StepState::Ready) {
            out.push(format!("  {}: {}", self.state.word(), self.state.why()));
        }
        out.extend(self.changes.iter().cloned());
        out
    }
}

/// A gate's id as the runbook file spells it.
pub fn gate_id(g: Gate) -> String {
    serde_json::to_value(g).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| format!("{g:?}"))
}

/// A kind's name as the runbook file spells it.
pub fn kind_id(k: StepKind) -> String {
    serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| format!("{k:?}"))
}

/// A wait's gates are what it waits for, not preconditions.
fn gates_are_preconditions(step: &Step) -> bool {
    step.kind != StepKind::ArgoWait
}

/// The state the gates alone give.
fn gate_state(step: &Step, gates: &[GateResult]) -> StepState {
    let unavailable: Vec<&GateResult> = gates
        .iter()
        .filter(|g| matches!(g.gate, Gate::NodeStepAvailable | Gate::ValidateAvailable) && g.state != GateState::Green)
        .collect();
    if let Some(g) = unavailable.first() {
        return StepState::Unavailable(g.evidence.clone());
    }
    if !gates_are_preconditions(step) {
        return StepState::Ready;
    }
    let bad: Vec<String> = gates
        .iter()
        .filter(|g| g.state != GateState::Green)
        .map(|g| {
            let word = if g.state == GateState::Red { "red" } else { "unknown" };
            format!("{} is {word}: {}", gate_id(g.gate), g.evidence)
        })
        .collect();
    if bad.is_empty() { StepState::Ready } else { StepState::Blocked(bad.join("; ")) }
}

/// Whether automated sync is on for the Application (`None`: it cannot be read or is absent).
fn auto_sync(snap: &ClusterSnapshot, app: &str) -> Option<bool> {
    let apps = snap.applications.as_ref().ok()?;
    let a = apps.iter().find(|a| a.pointer("/metadata/name").and_then(|n| n.as_str()) == Some(app))?;
    Some(a.pointer("/spec/syncPolicy/automated").is_some_and(|v| !v.is_null()))
}

/// The preview of `step` against a snapshot read now. Git previews (diffs) read the operator's
/// clone; nothing here writes anything.
pub async fn preview(
    env: &StepEnv,
    read: &kube::Client,
    stage: &str,
    step: &Step,
    snap: &ClusterSnapshot,
    checks: &[Check],
) -> StepPreview {
    let gates: Vec<GateResult> = step.gates.iter().map(|g| evaluate_gate(*g, snap, &env.settings, checks)).collect();
    let mut state = gate_state(step, &gates);
    let mut changes = Vec::new();
    let app = env.app_name(step);
    if let Some(When::AutoSyncOff) = step.when {
        match auto_sync(snap, &app) {
            Some(true) => {
                state = StepState::Skip(format!("automated sync is on for {app}: Argo CD syncs it by itself"))
            }
            Some(false) => {}
            None if matches!(state, StepState::Ready) => {
                state = StepState::Blocked(format!("cannot tell whether automated sync is on for {app}"))
            }
            None => {}
        }
    }
    match step.kind {
        StepKind::OperatorCheck => {
            if let Some(i) = &step.instruction {
                changes.push(format!("Do by hand, then confirm: {i}"));
            }
            if step.gates.contains(&Gate::PreflightNoFail) {
                let warns: Vec<&Check> = checks.iter().filter(|c| c.status == Status::Warn).collect();
                if warns.is_empty() {
                    changes.push("No pre-flight warning to acknowledge.".into());
                } else {
                    changes.push(format!("Confirming acknowledges these {} warning(s), each journaled:", warns.len()));
                    for c in warns {
                        changes.push(format!("  warn {}: {}", c.id, c.title));
                    }
                }
            }
        }
        StepKind::GitCommit => {
            let r = super::steps_git::preview(env, read, step).await;
            merge_kind_preview(r, ("Git", "Git"), &mut state, &mut changes);
        }
        StepKind::ArgoRefresh => changes.push(format!(
            "PATCH Application {}/{app}: metadata.annotations[argocd.argoproj.io/refresh]=normal",
            env.settings.argo.namespace
        )),
        StepKind::ArgoSync => changes.push(format!(
            "PATCH Application {}/{app}: operation.sync (as `argocd app sync {app}`): Argo CD applies what Git says now",
            env.settings.argo.namespace
        )),
        StepKind::ArgoWait => {
            let what: Vec<String> = step.gates.iter().map(|g| gate_id(*g)).collect();
            changes.push(format!(
                "Wait up to {} (looking every {}s) until green: {}",
                crate::duration::format_short(env.wait_timeout),
                env.wait_poll.as_secs().max(1),
                if what.is_empty() { "nothing".to_string() } else { what.join(", ") }
            ));
            changes.push(format!(
                "and {app} reports a revision that contains the branch head read from the remote when the wait starts"
            ));
            changes.push("Nothing is sent: a wait only reads.".into());
        }
        StepKind::Validate => {
            changes.push(format!(
                "Read for {}: the passive checks {}",
                crate::duration::format_short(env.validate_window),
                crate::validate::PassiveCheck::ALL.iter().map(|c| c.id()).collect::<Vec<_>>().join(", ")
            ));
            let v = &env.settings.validate;
            changes.push(format!(
                "Then the active checks {}: CREATE a probe server pod per node, a probe Service and a probe Job per \
                 node in {} (image {}), a {} PVC on storage class {} written by a Job on one node and read back by a \
                 Job on each other node, read their logs and the probe flows, DELETE them (by label) at the end",
                crate::validate::active::runnable(&crate::validate::Selection::all()).join(", "),
                v.namespace,
                v.image,
                crate::validate::probes::VOLUME_SIZE,
                v.storage_class
            ));
            match crate::validate::Leftovers::find(read, v.timeout()).await {
                Ok(left) => changes.extend(left.describe()),
                Err(e) => changes.push(format!(
                    "Probe objects of earlier runs: cannot look now ({e}); idle ones found when it runs are deleted first"
                )),
            }
            changes.push("The runbook stops unless every check that ran is green.".into());
        }
        StepKind::NodeCutover => {
            let r = super::steps_node::preview(
                env,
                read,
                &super::executor::DrainOptions {
                    timeout: env.settings.runbook.drain_timeout(),
                    ..Default::default()
                },
                step,
            ).await;
            merge_kind_preview(r, ("Nodes", "nodes"), &mut state, &mut changes);
        }
    }
    StepPreview { stage: stage.to_string(), step: step.clone(), gates, state, changes }
}

/// What a kind's own preview (Git, nodes) adds: its lines, and whether it is done already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindPreview {
    pub lines: Vec<String>,
    pub done: Option<String>,
}

/// Folds a kind's preview into the step's: its lines, `done` unless the step is unavailable, and
/// an error as a blocking reason (`labels`: how the change line and the reason name the source).
fn merge_kind_preview(
    result: Result<KindPreview, String>,
    labels: (&str, &str),
    state: &mut StepState,
    changes: &mut Vec<String>,
) {
    match result {
        Ok(p) => {
            changes.extend(p.lines);
            if let Some(done) = p.done
                && !matches!(state, StepState::Unavailable(_))
            {
                *state = StepState::Done(done);
            }
        }
        Err(e) => {
            changes.push(format!("{}: {e}", labels.0));
            if matches!(state, StepState::Ready) {
                *state = StepState::Blocked(format!("{}: {e}", labels.1));
            }
        }
    }
}

/// Runs one step for the runner (the lock is held, the intent journaled).
pub(crate) async fn run(
    exec: &Executor,
    env: &StepEnv,
    journal: &dyn StepJournal,
    id: &str,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<String, ExecError> {
    let Some((stage, step)) = env.find(id) else {
        return Err(ExecError::NotFound { kind: "runbook step", name: id.into(), known: known_steps(env) });
    };
    let read = exec.read_client();
    // Gates are re-read now, under the lock: what the operator confirmed may have changed.
    let snap = crate::checks::gather(read, &env.settings).await;
    let checks = crate::checks::evaluate(&snap, &env.settings);
    let pre = preview(env, read, &stage.id, step, &snap, &checks).await;
    match &pre.state {
        StepState::Ready => {}
        StepState::Done(why) => return Ok(format!("{id}: already done ({why}); nothing sent")),
        StepState::Skip(why) => return Ok(format!("{id}: skipped: {why}; nothing sent")),
        StepState::Blocked(why) => return Err(ExecError::Refused(format!("{id} blocked, nothing was changed: {why}"))),
        StepState::Unavailable(why) => {
            return Err(ExecError::Refused(format!("{id} stops the runbook, nothing was changed: {why}")));
        }
    }
    let app = env.app_name(step);
    match step.kind {
        StepKind::OperatorCheck => {
            let mut acked = 0;
            if step.gates.contains(&Gate::PreflightNoFail) {
                for c in checks.iter().filter(|c| c.status == Status::Warn) {
                    journal
                        .ack(&format!("pre-flight warning {}: {}", c.id, c.title), "the step's confirmation")
                        .map_err(|e| ExecError::Refused(format!("{e}; nothing acknowledged")))?;
                    acked += 1;
                }
            }
            if let Some(i) = &step.instruction {
                journal
                    .ack(&format!("{id}: {i}"), "the step's confirmation")
                    .map_err(|e| ExecError::Refused(format!("{e}; nothing acknowledged")))?;
            }
            Ok(format!(
                "{id}: acknowledged{}",
                if acked > 0 { format!(" ({acked} pre-flight warning(s))") } else { String::new() }
            ))
        }
        StepKind::GitCommit => super::steps_git::run(env, read, step, journal, progress).await,
        StepKind::ArgoRefresh => exec.refresh(&app).await,
        StepKind::ArgoSync => exec.sync(&app).await,
        StepKind::ArgoWait => wait(env, read, step, progress, cancel).await,
        StepKind::Validate => validate(exec, env, step, progress, cancel).await,
        StepKind::NodeCutover => super::steps_node::run(exec, env, step, journal, progress, cancel).await,
    }
}

fn known_steps(env: &StepEnv) -> String {
    env.runbook
        .stages
        .iter()
        .chain(&env.runbook.rollbacks)
        .flat_map(|s| s.steps.iter().map(|s| s.id.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The revisions an Application reports (`status.sync.revision` or `revisions`).
pub fn app_revisions(snap: &ClusterSnapshot, app: &str) -> Vec<String> {
    let Ok(apps) = &snap.applications else { return Vec::new() };
    let Some(a) = apps.iter().find(|a| a.pointer("/metadata/name").and_then(|n| n.as_str()) == Some(app)) else {
        return Vec::new();
    };
    let mut revs: Vec<String> = a
        .pointer("/status/sync/revisions")
        .and_then(|v| v.as_array())
        .map(|v| v.iter().filter_map(|r| r.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if let Some(r) = a.pointer("/status/sync/revision").and_then(|v| v.as_str()) {
        revs.push(r.to_string());
    }
    revs.retain(|r| !r.is_empty());
    revs.dedup();
    revs
}

/// `argo-wait`: reads until every gate is green and the app is at (or past) the branch head
/// read when the wait starts. Sends nothing.
async fn wait(
    env: &StepEnv,
    read: &kube::Client,
    step: &Step,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<String, ExecError> {
    let app = env.app_name(step);
    let target = super::steps_git::wait_target(env).await;
    match &target {
        Ok(rev) => progress.say(format!("waiting for {app} at {} or later", short(rev))),
        Err(e) => progress.say(format!("the revision is not checked ({e}); waiting for the gates only")),
    }
    let started = Instant::now();
    let mut last_said = String::new();
    loop {
        let snap = crate::checks::gather(read, &env.settings).await;
        let gates: Vec<GateResult> = step.gates.iter().map(|g| evaluate_gate(*g, &snap, &env.settings, &[])).collect();
        let red: Vec<String> = gates
            .iter()
            .filter(|g| g.state != GateState::Green)
            .map(|g| format!("{}: {}", gate_id(g.gate), g.evidence))
            .collect();
        let revs = app_revisions(&snap, &app);
        let at_target = match &target {
            Err(_) => Ok(true),
            Ok(want) => super::steps_git::contains(env, &revs, want).await,
        };
        let rev_note = match (&target, &at_target) {
            (Err(_), _) => String::new(),
            (Ok(want), Ok(true)) => format!(
                "; at {} (contains {})",
                revs.iter().map(|r| short(r)).collect::<Vec<_>>().join(","),
                short(want)
            ),
            (Ok(want), Ok(false)) => format!(
                "; {app} is at {}, not yet at {}",
                if revs.is_empty() {
                    "no revision".to_string()
                } else {
                    revs.iter().map(|r| short(r)).collect::<Vec<_>>().join(",")
                },
                short(want)
            ),
            (Ok(_), Err(e)) => format!("; revision unknown: {e}"),
        };
        let evidence: Vec<String> = gates.iter().map(|g| format!("{}: {}", gate_id(g.gate), g.evidence)).collect();
        if red.is_empty() && matches!(at_target, Ok(true)) {
            return Ok(format!(
                "{} green after {}: {}{rev_note}",
                step.id,
                crate::duration::format_short(started.elapsed()),
                evidence.join("; ")
            ));
        }
        let now = format!("{}{rev_note}", if red.is_empty() { "gates green".to_string() } else { red.join("; ") });
        if now != last_said {
            progress.say(format!("{} waiting ({}): {now}", step.id, crate::duration::format_short(started.elapsed())));
            last_said = now.clone();
        }
        if started.elapsed() >= env.wait_timeout {
            return Err(ExecError::Timeout(format!(
                "{} not green after {} (the runbook stops; nothing was changed): {now}",
                step.id,
                crate::duration::format_short(env.wait_timeout)
            )));
        }
        tokio::select! {
            () = cancel.cancelled() => {
                return Err(ExecError::Cancelled(format!("{} stopped waiting; nothing was changed: {now}", step.id)));
            }
            () = tokio::time::sleep(env.wait_poll) => {}
        }
    }
}

/// The executor as the active checks' door inside a step: the step's intent is journaled and
/// the cluster lock held; each request is journaled by the write client before it is sent.
struct StepDoor<'a> {
    exec: &'a Executor,
    progress: &'a Progress,
    cancel: &'a CancellationToken,
}

/// The executor's future, boxed: the executor runs this step, which runs the executor again.
type ExecFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, ExecError>> + Send + 'a>>;

impl crate::validate::active::Door for StepDoor<'_> {
    #[allow(refining_impl_trait)]
    fn run(&mut self, op: crate::app::action::Operation) -> ExecFuture<'_> {
        Box::pin(async move {
            self.progress.say(op.title());
            // Cleanup must run even after the step is cancelled: deletes get a fresh token.
            let fresh = CancellationToken::new();
            let cancel =
                if matches!(op, crate::app::action::Operation::ProbeDelete { .. }) { &fresh } else { self.cancel };
            self.exec.run(&op, self.progress, cancel).await
        })
    }
}

/// `validate`: the passive checks, then (armed: this runs in the executor) the active probe
/// checks; anything not green stops the runbook.
async fn validate(
    exec: &Executor,
    env: &StepEnv,
    step: &Step,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<String, ExecError> {
    let (summary, _) = validate_all(exec, env, &step.id, true, progress, cancel).await?;
    summary
}

/// The passive checks, then one probe run of the active checks through the executor (its
/// objects created and deleted inside this operation): the summary (`Err` when not every check
/// is green) and the report. `Err` outside: nothing could be judged (no relay, no reads).
pub(crate) async fn validate_all(
    exec: &Executor,
    env: &StepEnv,
    what: &str,
    in_runbook: bool,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<(Result<String, ExecError>, crate::validate::Report), ExecError> {
    use crate::validate::{ActiveSkip, PassiveOptions, State};
    let read = exec.read_client();
    let Some(relay) = &env.relay else {
        return Err(ExecError::Refused(format!(
            "{what}: no hubble-relay to read flows from (give --hubble-server or let the cockpit port-forward); nothing was changed"
        )));
    };
    progress.say(format!(
        "{what}: reading the cluster and {} of flows",
        crate::duration::format_short(env.validate_window)
    ));
    let opts = PassiveOptions { window: env.validate_window, active_skip: ActiveSkip::Ran, ..Default::default() };
    let mut report = crate::validate::run_passive(read, relay, &opts)
        .await
        .map_err(|e| ExecError::Failed(format!("{what}: {e}")))?;
    let passive = report.checks.len();
    let cfg = crate::validate::probe_config(&env.settings);
    let run = crate::validate::probes::new_run_id();
    let say = |m: String| progress.say(format!("{what}: {m}"));
    let mut door = StepDoor { exec, progress, cancel };
    // What an interrupted earlier run left (its confirmation listed them): deleted first, under
    // this operation's lock and journal entry. Nothing of this run exists yet.
    // A run with recent objects may be in progress in another session: left alone.
    match crate::validate::Leftovers::find(read, cfg.timeout).await {
        Ok(left) => {
            for line in left.describe() {
                say(line);
            }
            for old in &left.idle {
                let why = format!(
                    "left by validation run {old}, idle for over {}",
                    crate::duration::format_short(left.quiet)
                );
                let op = Operation::ProbeDelete { run: Some(old.clone()), why };
                crate::validate::active::Door::run(&mut door, op).await.map_err(|e| {
                    ExecError::Failed(format!(
                        "{what}: deleting the probe objects of earlier run {old}: {e}; no probe of this run was created"
                    ))
                })?;
            }
        }
        Err(e) => say(format!("cannot look for probe objects of earlier runs: {e}")),
    }
    let outcome = crate::validate::active::run_active(
        read,
        &mut door,
        relay,
        &cfg,
        &crate::validate::Selection::all(),
        &run,
        &say,
        cancel,
    )
    .await;
    let cleaned = match &outcome.cleanup {
        Ok(_) => "cleaned up".to_string(),
        Err(e) => {
            progress.say(format!("{what}: cleanup of run {run}: {e}"));
            format!("cleanup incomplete: {e}; the next `cutover validate --yes` removes what is left")
        }
    };
    report.checks.extend(outcome.checks);
    let active = report.checks.len() - passive;
    let summary = |c: &crate::validate::CheckResult| {
        let bad: Vec<String> = c
            .results
            .iter()
            .filter(|r| r.state != State::Green)
            .map(|r| format!("{} {}", r.subject, if r.state == State::Red { "red" } else { "unknown" }))
            .collect();
        format!("{} ({})", c.id, bad.join(", "))
    };
    let not_green: Vec<String> = report.checks.iter().filter(|c| c.state != State::Green).map(summary).collect();
    let skipped = report.skipped.len();
    let result = if report.exit_code() == crate::validate::EXIT_GREEN {
        let not_run = if skipped == 0 {
            String::new()
        } else {
            format!(
                "; {skipped} not run ({})",
                report.skipped.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ")
            )
        };
        Ok(format!(
            "{what}: {passive} passive and {active} active check(s) green (probe run {run}, {cleaned}){not_run}"
        ))
    } else {
        Err(ExecError::Failed(format!(
            "{what}: not green{} (probe run {run}, {cleaned}; `cutover validate` shows the evidence): {}",
            if in_runbook { ", the runbook stops" } else { "" },
            if not_green.is_empty() { "no check ran".to_string() } else { not_green.join("; ") }
        )))
    };
    Ok((result, report))
}

/// The first 12 characters of a commit id (a chart version stays whole).
pub fn short(rev: &str) -> &str {
    if rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()) { &rev[..12] } else { rev }
}

// ---------------------------------------------------------------------------------------------
// The position: recomputed from the journal at every start.

/// What the journal says of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournaledStep {
    pub seq: u64,
    pub time: String,
    pub outcome: String,
    pub message: String,
}

/// The runbook position the journal gives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Each step's last ended run (after the last completed rollback of its stage).
    pub last: std::collections::BTreeMap<String, JournaledStep>,
    /// A step whose run has an intent and no result (the process died mid-step), if any.
    pub interrupted: Option<(String, String)>,
}

impl Position {
    /// Reads the journal's entries against `runbook`. A forward step counts as done when its
    /// last run ended `ok` after the last `ok` run of any step of the rollback that undoes it.
    pub fn from_journal(runbook: &Runbook, entries: &[Entry]) -> Position {
        use std::collections::BTreeMap;
        let mut step_of_op: BTreeMap<&str, &str> = BTreeMap::new();
        let mut last: BTreeMap<String, JournaledStep> = BTreeMap::new();
        let mut open: Vec<(&str, &str, &str)> = Vec::new();
        for e in entries {
            match &e.record {
                Record::Intent { op, step: Some(step), .. } => {
                    step_of_op.insert(op, step);
                    open.push((op, step, &e.time));
                }
                Record::Result { op, outcome, message } => {
                    open.retain(|(o, _, _)| o != op);
                    if let Some(step) = step_of_op.get(op.as_str()) {
                        last.insert(
                            step.to_string(),
                            JournaledStep {
                                seq: e.seq,
                                time: e.time.clone(),
                                outcome: outcome.as_str().into(),
                                message: message.clone(),
                            },
                        );
                    }
                }
                _ => {}
            }
        }
        // A completed rollback resets the stage it undoes.
        for rb in &runbook.rollbacks {
            let undone =
                rb.steps.iter().filter_map(|s| last.get(&s.id).filter(|j| j.outcome == "ok").map(|j| j.seq)).max();
            let Some(undone_at) = undone else { continue };
            let forward: Vec<String> = forward_steps_undone_by(runbook, rb);
            for id in forward {
                if last.get(&id).is_some_and(|j| j.seq < undone_at) {
                    last.remove(&id);
                }
            }
        }
        let interrupted = open.last().map(|(_, step, time)| (step.to_string(), time.to_string()));
        Position { last, interrupted }
    }

    /// Whether the journal says `step` is done.
    pub fn done(&self, step: &str) -> Option<&JournaledStep> {
        self.last.get(step).filter(|j| j.outcome == "ok")
    }

    /// Whether the journal's last word on `step` is that the operator skipped it.
    pub fn skipped(&self, step: &str) -> Option<&JournaledStep> {
        self.last.get(step).filter(|j| j.outcome == "skipped")
    }
}

/// The steps of the forward stage that the rollback `rb` undoes (the stage one of whose steps
/// names a step of `rb` as its rollback).
fn forward_steps_undone_by(runbook: &Runbook, rb: &Stage) -> Vec<String> {
    let ids: Vec<&str> = rb.steps.iter().map(|s| s.id.as_str()).collect();
    runbook
        .stages
        .iter()
        .filter(|st| st.steps.iter().any(|s| s.rollback.as_deref().is_some_and(|r| ids.contains(&r))))
        .flat_map(|st| st.steps.iter().map(|s| s.id.clone()))
        .collect()
}

/// The rollback sequence that undoes stage `stage` (`stage1` or `1`).
pub fn rollback_for<'a>(runbook: &'a Runbook, stage: &str) -> Option<&'a Stage> {
    let want = if stage.chars().all(|c| c.is_ascii_digit()) { format!("stage{stage}") } else { stage.to_string() };
    let st = runbook.stages.iter().find(|s| s.id == want)?;
    let rb_ids: Vec<&str> = st.steps.iter().filter_map(|s| s.rollback.as_deref()).collect();
    runbook.rollbacks.iter().find(|rb| rb.steps.iter().any(|s| rb_ids.contains(&s.id.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::journal::Outcome;

    fn entry(seq: u64, record: Record) -> Entry {
        Entry { seq, time: format!("t{seq}"), prev: String::new(), record }
    }

    fn intent(op: &str, step: &str) -> Record {
        Record::Intent {
            op: op.into(),
            title: format!("step {step}"),
            preview: vec![],
            confirmed_by: "t".into(),
            mode: "armed".into(),
            step: Some(step.into()),
        }
    }

    fn result(op: &str, outcome: Outcome) -> Record {
        Record::Result { op: op.into(), outcome, message: "m".into() }
    }

    #[test]
    fn the_position_comes_from_the_journal_and_a_rollback_resets_its_stage() {
        let rb = Runbook::built_in();
        let e = vec![
            entry(1, intent("a", "preflight")),
            entry(2, result("a", Outcome::Ok)),
            entry(3, intent("b", "stage1-commit")),
            entry(4, result("b", Outcome::Ok)),
            entry(5, intent("c", "stage1-wait")),
        ];
        let p = Position::from_journal(&rb, &e);
        assert!(p.done("preflight").is_some() && p.done("stage1-commit").is_some());
        assert_eq!(p.interrupted.as_ref().map(|(s, _)| s.as_str()), Some("stage1-wait"));
        // A failed run is not done; an interrupted one ended by a result is no longer open.
        let mut e2 = e.clone();
        e2.push(entry(6, result("c", Outcome::Interrupted)));
        let p = Position::from_journal(&rb, &e2);
        assert!(p.interrupted.is_none() && p.done("stage1-wait").is_none());
        // The Stage 1 revert done after the commit: Stage 1 is no longer done.
        e2.push(entry(7, intent("d", "stage1-revert")));
        e2.push(entry(8, result("d", Outcome::Ok)));
        let p = Position::from_journal(&rb, &e2);
        assert!(p.done("stage1-commit").is_none(), "{p:?}");
        assert!(p.done("preflight").is_some());
    }

    #[test]
    fn rollbacks_are_found_by_stage() {
        let rb = Runbook::built_in();
        assert_eq!(rollback_for(&rb, "stage1").map(|s| s.id.as_str()), Some("rollback-stage1"));
        assert_eq!(rollback_for(&rb, "2").map(|s| s.id.as_str()), Some("rollback-stage2"));
        assert!(rollback_for(&rb, "stage9").is_none());
    }

    #[test]
    fn unavailable_gates_stop_and_waits_do_not_need_their_gates_green() {
        let rb = Runbook::built_in();
        let mut settings = Settings::default();
        // SSH not usable as configured: the node step is unavailable.
        settings.ssh.config_file = Some("/nonexistent/ssh_config".into());
        let mut snap = ClusterSnapshot::empty();
        snap.applications = Ok(vec![]);
        let find = |id: &str| rb.stages.iter().flat_map(|s| &s.steps).find(|s| s.id == id).cloned().expect("step");
        let nodes = find("stage1-nodes");
        let g: Vec<GateResult> = nodes.gates.iter().map(|g| evaluate_gate(*g, &snap, &settings, &[])).collect();
        let validate = find("stage1-validate");
        let gv: Vec<GateResult> = validate.gates.iter().map(|g| evaluate_gate(*g, &snap, &settings, &[])).collect();
        assert_eq!(gate_state(&validate, &gv), StepState::Ready, "the passive checks are available");
        assert!(matches!(gate_state(&nodes, &g), StepState::Unavailable(_)));
        let wait = find("stage1-wait");
        let g: Vec<GateResult> = wait.gates.iter().map(|g| evaluate_gate(*g, &snap, &settings, &[])).collect();
        assert!(g.iter().any(|g| g.state == GateState::Red));
        assert_eq!(gate_state(&wait, &g), StepState::Ready);
        assert!(is_disruptive(&find("stage1-commit")) && !is_disruptive(&wait));
        assert_eq!(gate_id(Gate::CiliumCniOnNoNode), "cilium-cni-on-no-node");
        assert_eq!(kind_id(StepKind::GitCommit), "git-commit");
    }

    #[test]
    fn revisions_read_single_and_multi_source_apps() {
        let mut snap = ClusterSnapshot::empty();
        snap.applications = Ok(vec![
            serde_json::json!({"metadata": {"name": "a"}, "status": {"sync": {"revision": "abc"}}}),
            serde_json::json!({"metadata": {"name": "b"}, "status": {"sync": {"revisions": ["1.16.5", "def"]}}}),
        ]);
        assert_eq!(app_revisions(&snap, "a"), vec!["abc"]);
        assert_eq!(app_revisions(&snap, "b"), vec!["1.16.5", "def"]);
        assert!(app_revisions(&snap, "c").is_empty());
    }
}
