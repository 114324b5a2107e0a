//! The update function: every event goes through [`update`], which changes the state and returns
//! the commands for the outside world (run an operation, quit). Keys go through the keymap.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use jiff::Timestamp;

use super::action::{Operation, Pending};
use super::keymap::{self, Action};
use super::lists::{self, ArgoRow, Drawn, FlowDetail};
use super::state::{AppState, Focus, Level, Mode};
use crate::cluster::watch::{KubeEvent, SourceId};
use crate::hubble::client::HubbleEvent;
use crate::hubble::proto::observer::get_flows_response::ResponseTypes;
use crate::hubble::proto::relay::NodeState;

/// Everything that can happen to the cockpit.
#[derive(Debug, Clone)]
pub enum AppEvent {
    Key(KeyEvent),
    /// Housekeeping tick with the current time.
    Tick(Timestamp),
    Kube(Box<KubeEvent>),
    /// From the Hubble flow source (`hubble::client`).
    Relay(Box<HubbleEvent>),
    /// From the runner: progress of the running operation, or its end.
    Run(crate::runbook::runner::RunEvent),
    /// The runner accepted the confirmed operation and started it.
    Started(Operation),
    /// The runner refused it before sending anything (busy, read-only, journal).
    Refused {
        op: Operation,
        reason: String,
    },
    /// A drain plan computed for the confirmation (read-only lists of pods and PDBs).
    DrainPlanned {
        node: String,
        result: Result<Vec<String>, String>,
        refused: bool,
    },
    /// Text pasted into the terminal (bracketed paste): never keystrokes.
    Paste(String),
    /// A pre-flight run finished.
    Preflight(Result<Vec<crate::checks::Check>, String>),
    /// A manifest preview was rendered for a stage: (path, contents) per file.
    Rendered {
        stage: u8,
        result: Result<Vec<(String, String)>, String>,
    },
    /// A frame was drawn: what it showed (offsets, highlighted rows), fed back after each frame.
    Drawn(Box<Drawn>),
    /// The runbook was read: every step's preview and the journal's position.
    Runbook(Result<Box<super::runbook::RunbookRead>, String>),
    /// A validation run (`v`) finished.
    Validated(Result<Box<crate::validate::Report>, String>),
    /// The probe objects earlier validation runs left behind, listed by `v` (reads only).
    ProbeLeftovers(Result<Box<crate::validate::Leftovers>, String>),
    /// One step's preview, read for its confirmation.
    StepPreviewed {
        id: String,
        result: Result<Box<crate::runbook::steps::StepPreview>, String>,
    },
}

impl From<HubbleEvent> for AppEvent {
    fn from(e: HubbleEvent) -> Self {
        AppEvent::Relay(Box::new(e))
    }
}

impl From<KubeEvent> for AppEvent {
    fn from(e: KubeEvent) -> Self {
        AppEvent::Kube(Box::new(e))
    }
}

/// What the event loop must do after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Hand a confirmed operation to the runner.
    Execute {
        op: Operation,
        preview: Vec<String>,
        confirmed: String,
        take_over_stale_lock: bool,
    },
    /// Ask the running operation to stop at its next safe point.
    Cancel,
    /// Compute the drain plan of a node for its confirmation.
    PlanDrain(String),
    /// Run the read-only pre-flight checks in the background.
    RunPreflight,
    /// Render the manifests of a stage for the preview (writes nothing).
    RenderPreview(u8),
    /// Read the runbook's state in the background (journal, gates, previews; writes nothing).
    ReadRunbook,
    /// Read one step's preview for its confirmation.
    PreviewStep(String),
    /// Run the passive validation checks in the background (reads only).
    RunValidate,
    Quit,
}

/// Applies one event. Returns the commands to run.
pub fn update(state: &mut AppState, ev: AppEvent) -> Vec<Command> {
    match ev {
        AppEvent::Tick(now) => {
            state.now = now;
            Vec::new()
        }
        AppEvent::Kube(k) => {
            // The selection stays on the object it was on, wherever the change moves it.
            let lists_change = matches!(k.source(), SourceId::Nodes | SourceId::Applications);
            let anchor = lists_change.then(|| Anchor::take(state));
            state.on_kube(*k);
            if let Some(anchor) = anchor {
                anchor.restore(state);
            }
            Vec::new()
        }
        AppEvent::Drawn(d) => {
            on_drawn(state, *d);
            Vec::new()
        }
        AppEvent::Relay(r) => {
            on_relay(state, *r);
            Vec::new()
        }
        AppEvent::Run(crate::runbook::runner::RunEvent::Done { op, result }) => {
            use crate::runbook::executor::ExecError;
            match result {
                Ok(msg) => state.log(Level::Info, format!("{}: {msg}", op.title())),
                Err(e @ ExecError::Cancelled(_)) => state.log(Level::Warn, format!("{}: {e}", op.title())),
                Err(ExecError::StaleLock(why)) => {
                    state.log(Level::Warn, format!("{}: {why}", op.title()));
                    if state.ui.confirm.is_none() {
                        state.ui.confirm = Some(Pending::take_over(op.clone(), why));
                    }
                }
                Err(e) => state.log(Level::Error, format!("{} failed: {e}", op.title())),
            }
            if state.running.as_ref().is_some_and(|r| r.op == op) {
                state.running = None;
            }
            if op == Operation::Validate {
                // It deleted what earlier runs left (or failed trying): the last listing is stale.
                state.probe_leftovers = None;
            }
            if matches!(op, Operation::Step { .. } | Operation::SkipStep { .. }) || state.runbook.open {
                state.runbook.reading = true;
                return vec![Command::ReadRunbook];
            }
            Vec::new()
        }
        AppEvent::Run(crate::runbook::runner::RunEvent::Progress { op, text }) => {
            state.log(Level::Info, format!("{}: {text}", op.title()));
            if let Some(r) = state.running.as_mut().filter(|r| r.op == op) {
                r.last = Some(text);
            }
            Vec::new()
        }
        AppEvent::Run(crate::runbook::runner::RunEvent::Report { report, .. }) => {
            // The active validation's report: the overlay shows it like a passive one.
            update(state, AppEvent::Validated(Ok(report)))
        }
        AppEvent::Run(crate::runbook::runner::RunEvent::Node { op, work }) => {
            if let Some(r) = state.running.as_mut().filter(|r| r.op == op) {
                r.node_work = work;
            }
            Vec::new()
        }
        AppEvent::Started(op) => {
            state.log(Level::Info, format!("{}: running (x cancels)", op.title()));
            if op == Operation::Validate {
                // Its live progress is in the overlay.
                state.ui.validate_open = true;
                state.ui.validate_scroll = 0;
            }
            state.running = Some(crate::app::state::RunningOp {
                op,
                started: state.now,
                last: None,
                cancelling: false,
                node_work: None,
            });
            Vec::new()
        }
        AppEvent::Refused { op, reason } => {
            state.log(Level::Warn, format!("{}: {reason}", op.title()));
            Vec::new()
        }
        AppEvent::DrainPlanned { node, result, refused } => {
            if state.planning.as_deref() == Some(node.as_str()) {
                state.planning = None;
                match result {
                    // Only if nothing else took the screen meanwhile; the dialog names the node.
                    Ok(preview) if state.ui.confirm.is_none() => {
                        state.ui.confirm = Some(Pending::with_preview(Operation::Drain { node }, preview, refused));
                    }
                    Ok(_) => {}
                    Err(e) => state.log(Level::Error, format!("drain {node}: cannot compute the plan: {e}")),
                }
            }
            Vec::new()
        }
        AppEvent::Paste(text) => {
            on_paste(state, &text);
            Vec::new()
        }
        AppEvent::Preflight(result) => {
            state.preflight_running = false;
            match &result {
                Ok(checks) => {
                    let fails = checks.iter().filter(|c| c.status == crate::checks::Status::Fail).count();
                    let warns = checks.iter().filter(|c| c.status == crate::checks::Status::Warn).count();
                    state.log(Level::Info, format!("pre-flight: {} checks, {fails} fail, {warns} warn", checks.len()));
                }
                Err(e) => state.log(Level::Error, format!("pre-flight failed: {e}")),
            }
            state.preflight = Some((state.now, result));
            Vec::new()
        }
        AppEvent::Rendered { stage, result } => {
            if let Err(e) = &result {
                state.log(Level::Error, format!("render stage {stage}: {e}"));
            }
            state.preview = Some((stage, result));
            Vec::new()
        }
        AppEvent::Runbook(result) => {
            state.runbook.reading = false;
            if let Err(e) = &result {
                state.log(Level::Error, format!("runbook: cannot read it: {e}"));
            }
            state.runbook.read = Some(result.map(|b| *b));
            Vec::new()
        }
        AppEvent::ProbeLeftovers(result) => {
            match &result {
                Ok(left) if !left.objects.is_empty() => state.log(
                    Level::Warn,
                    format!(
                        "validation: {} probe object(s) of earlier runs are left (run {})",
                        left.objects.len(),
                        left.idle.iter().chain(&left.recent).cloned().collect::<Vec<_>>().join(", ")
                    ),
                ),
                Ok(_) => {}
                Err(e) => {
                    state.log(Level::Warn, format!("validation: cannot look for probe objects of earlier runs: {e}"))
                }
            }
            state.probe_leftovers = Some(result.map(|b| *b));
            Vec::new()
        }
        AppEvent::Validated(result) => {
            state.validating = None;
            match &result {
                Ok(r) => {
                    let red = r.checks.iter().filter(|c| c.state == crate::validate::State::Red).count();
                    let unknown = r.checks.iter().filter(|c| c.state == crate::validate::State::Unknown).count();
                    let level = if red > 0 {
                        Level::Error
                    } else if unknown > 0 {
                        Level::Warn
                    } else {
                        Level::Info
                    };
                    state.log(level, format!("validation: {} checks, {red} red, {unknown} unknown", r.checks.len()));
                }
                Err(e) => state.log(Level::Error, format!("validation failed: {e}")),
            }
            state.validation = Some((state.now, result.map(|b| *b)));
            Vec::new()
        }
        AppEvent::StepPreviewed { id, result } => {
            if state.runbook.previewing.as_deref() != Some(id.as_str()) {
                return Vec::new();
            }
            state.runbook.previewing = None;
            match result {
                // Only if nothing else took the screen meanwhile; the dialog names the step.
                Ok(pre) if state.ui.confirm.is_none() => {
                    let ready = pre.state == crate::runbook::steps::StepState::Ready;
                    let mut lines = pre.lines();
                    if !ready {
                        lines.push(format!("{} cannot run now: {}", pre.step.id, pre.state.why()));
                    }
                    if state.runbook.dry_run {
                        lines.push("DRY RUN: confirming sends nothing, commits nothing.".into());
                    }
                    let op = crate::runbook::steps::operation(&pre.step);
                    state.ui.confirm = Some(Pending::with_preview(op, lines, !ready));
                }
                Ok(_) => {}
                Err(e) => state.log(Level::Error, format!("step {id}: cannot read its preview: {e}")),
            }
            Vec::new()
        }
        AppEvent::Key(key) => on_key(state, key),
    }
}

/// The id of the running step, if a step runs.
fn running_step(state: &AppState) -> Option<String> {
    match state.running.as_ref().map(|r| &r.op) {
        Some(Operation::Step { id, .. }) => Some(id.clone()),
        _ => None,
    }
}

/// `n` / `R`: highlights the runbook's next step (or the rollback's) and reads its preview; the
/// confirmation opens when it arrives and names that step.
fn preview_step(state: &mut AppState, rollback: bool) -> Vec<Command> {
    if state.runbook.read.is_none() {
        state.runbook.open = true;
        state.runbook.reading = true;
        state.log(Level::Info, "runbook: reading it first; press the key again when it shows");
        return vec![Command::ReadRunbook];
    }
    state.runbook.open = true;
    let running = running_step(state);
    let row =
        if rollback { state.runbook.rollback_next(running.as_deref()) } else { state.runbook.next(running.as_deref()) };
    let Some(row) = row else {
        let what = if rollback { "nothing to roll back: no stage has a step done" } else { "no step left to run" };
        state.log(Level::Info, format!("runbook: {what}"));
        return Vec::new();
    };
    if let Some(i) = state.runbook.rows(running.as_deref()).iter().position(|r| r.id == row.id) {
        state.runbook.selected = i;
    }
    state.log(Level::Info, format!("step {}: reading its gates and changes for the confirmation", row.id));
    state.runbook.previewing = Some(row.id.clone());
    vec![Command::PreviewStep(row.id)]
}

/// `S` in the runbook view: skip the highlighted step (only one that failed or is blocked, and
/// of a kind that may be skipped), after its id is typed.
fn skip_selected(state: &mut AppState) -> Vec<Command> {
    let running = running_step(state);
    if let Some(r) = &running {
        state.log(Level::Warn, format!("runbook: {r} is running; a step is skipped only once nothing runs"));
        return Vec::new();
    }
    // The step the last frame showed highlighted, as it was: never one the screen has not shown.
    let shown = state.ui.view.drawn.as_ref().and_then(|d| d.runbook_step.clone());
    let Some(row) = shown.and_then(|id| state.runbook.rows(None).into_iter().find(|r| r.id == id)) else {
        state.log(Level::Info, "runbook: no step is highlighted");
        return Vec::new();
    };
    let Some((_, step)) = state.runbook.runbook.as_ref().and_then(|rb| rb.find(&row.id)) else {
        return Vec::new();
    };
    if let Err(why) = crate::runbook::steps::skippable(step) {
        state.log(Level::Warn, format!("runbook: {why}"));
        return Vec::new();
    }
    if !row.stopped() {
        state.log(
            Level::Warn,
            format!("runbook: {} is {}; only a step that failed or is blocked can be skipped", row.id, row.state),
        );
        return Vec::new();
    }
    let why = format!("{}: {}", row.state, row.why);
    let op = crate::runbook::steps::skip_operation(step, &why);
    let preview = op.explain();
    state.ui.confirm = Some(Pending::with_preview(op, preview, false));
    Vec::new()
}

/// Keys while the runbook view is open.
fn on_runbook_key(state: &mut AppState, key: KeyEvent) -> Vec<Command> {
    let running = running_step(state);
    let n = state.runbook.rows(running.as_deref()).len();
    let mv = |state: &mut AppState, delta: i64| {
        let cur = state.runbook.selected as i64;
        state.runbook.selected = (cur + delta).clamp(0, n.saturating_sub(1) as i64) as usize;
    };
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => mv(state, -1),
        KeyCode::Down | KeyCode::Char('j') => mv(state, 1),
        KeyCode::PageUp => mv(state, -10),
        KeyCode::PageDown => mv(state, 10),
        KeyCode::Home => mv(state, i64::MIN / 2),
        KeyCode::End => mv(state, i64::MAX / 2),
        KeyCode::Char('q') => return request_quit(state),
        KeyCode::Esc | KeyCode::Char('b') => state.runbook.open = false,
        KeyCode::Char('r') if !state.runbook.reading => {
            state.runbook.reading = true;
            return vec![Command::ReadRunbook];
        }
        KeyCode::Char(c @ ('n' | 'R' | 'S' | 'x' | '?' | 'e' | 'p' | 'v')) => {
            // The runbook's own keys and the global ones that still make sense here.
            let Some(binding) = keymap::lookup(&KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE), state.ui.focus)
            else {
                return Vec::new();
            };
            if binding.mutating && state.mode == Mode::ReadOnly {
                state.log(Level::Warn, "runbook: disabled in read-only mode; `cutover run --dry-run` shows every step");
                return Vec::new();
            }
            match binding.action {
                Action::NextStep => return preview_step(state, false),
                Action::Rollback => return preview_step(state, true),
                Action::SkipStep => return skip_selected(state),
                other => return overlay_action(state, other),
            }
        }
        _ => {}
    }
    Vec::new()
}

/// The keys that open an overlay or stop the running operation, wherever they are pressed.
fn overlay_action(state: &mut AppState, action: Action) -> Vec<Command> {
    match action {
        Action::Cancel => return cancel_running(state),
        Action::Help => {
            state.ui.help = true;
            state.ui.view.help_scroll = 0;
        }
        Action::Events => state.ui.view.events_open = true,
        Action::Validate => {
            state.ui.validate_open = true;
            state.ui.validate_scroll = 0;
            if state.validating.is_none() {
                state.validating = Some(state.now);
                return vec![Command::RunValidate];
            }
        }
        Action::Preflight => {
            state.ui.preflight_open = true;
            state.ui.preflight_scroll = 0;
            if !state.preflight_running {
                state.preflight_running = true;
                return vec![Command::RunPreflight];
            }
        }
        _ => {}
    }
    Vec::new()
}

/// `x`: asks the running operation to stop at its next safe point.
fn cancel_running(state: &mut AppState) -> Vec<Command> {
    let title = state.running.as_mut().map(|r| {
        r.cancelling = true;
        r.op.title()
    });
    match title {
        Some(t) => {
            state.log(Level::Warn, format!("{t}: cancelling at the next safe point"));
            vec![Command::Cancel]
        }
        None => {
            state.log(Level::Info, "nothing is running");
            Vec::new()
        }
    }
}

fn on_relay(state: &mut AppState, r: HubbleEvent) {
    match r {
        HubbleEvent::Connected { target, .. } => state.on_relay_connected(&target),
        HubbleEvent::Disconnected { error, attempt, retry_in } => {
            state.on_relay_disconnected(&error, attempt, retry_in)
        }
        HubbleEvent::Flow(resp) => {
            if let Some(ResponseTypes::Flow(f)) = resp.response_types {
                state.on_flow(f);
            }
        }
        HubbleEvent::Lost { count, node_name, source, time, .. } => state.on_lost(count, &node_name, source, time),
        HubbleEvent::NodeStatus { state: st, nodes, message, .. } => {
            let st = NodeState::try_from(st).unwrap_or(NodeState::UnknownNodeState);
            for n in &nodes {
                state.relay.nodes.insert(crate::app::state::strip_cluster_prefix(n).to_string(), st);
            }
            let level = if st == NodeState::NodeConnected { Level::Info } else { Level::Warn };
            let what = if message.is_empty() { st.as_str_name().to_string() } else { message };
            state.log(level, format!("hubble: {}: {what}", nodes.join(", ")));
        }
        HubbleEvent::Gap { from, to, reason } => state.on_gap(from, to, &reason),
        HubbleEvent::ClientDropped { total, .. } => state.relay.dropped_locally = total,
        HubbleEvent::ServerStatus(s) => state.relay.version = s.version,
        HubbleEvent::Nodes(nodes) => state.on_relay_nodes(&nodes),
        HubbleEvent::Ended => state.log(Level::Info, "hubble: the relay ended the stream"),
        HubbleEvent::Failed { error } => {
            state.relay.last_error = Some(error.clone());
            state.relay.connected_since = None;
            state.log(Level::Error, format!("hubble: {error} (not retrying)"));
        }
    }
}

fn on_key(state: &mut AppState, key: KeyEvent) -> Vec<Command> {
    if key.kind == KeyEventKind::Release {
        return Vec::new();
    }
    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
    // Quitting while an operation runs asks first; `y` (or a second Ctrl-C) quits anyway.
    if state.ui.quit_confirm {
        state.ui.quit_confirm = false;
        if ctrl_c || key.code == KeyCode::Char('y') {
            state.ui.quit = true;
            return vec![Command::Quit];
        }
        state.log(Level::Info, "quit cancelled; the operation goes on");
        return Vec::new();
    }
    // Ctrl-C quits whatever is open (asking first while an operation runs).
    if ctrl_c {
        return request_quit(state);
    }
    if state.ui.confirm.is_some() {
        return on_confirm_key(state, key);
    }
    if let Some(input) = state.ui.filter_input.as_mut() {
        match key.code {
            KeyCode::Enter => {
                let text = state.ui.filter_input.take().unwrap_or_default();
                set_filter(state, text);
            }
            KeyCode::Esc => state.ui.filter_input = None,
            KeyCode::Backspace => {
                input.pop();
            }
            KeyCode::Char(c) => input.push(c),
            _ => {}
        }
        return Vec::new();
    }
    if let Some(detail) = state.ui.view.flow_detail.as_mut() {
        let max = state.ui.view.drawn.as_ref().map_or(usize::MAX, |d| d.detail_max_scroll);
        match scroll_key(key.code) {
            Some(delta) => detail.scroll = scroll_by(detail.scroll, delta, max),
            None if key.code == KeyCode::Char('q') => return request_quit(state),
            None => state.ui.view.flow_detail = None,
        }
        return Vec::new();
    }
    if state.runbook.open
        && !state.ui.view.events_open
        && !state.ui.preflight_open
        && !state.ui.validate_open
        && !state.ui.help
    {
        return on_runbook_key(state, key);
    }
    if state.ui.view.events_open {
        let page = lists::page(state.ui.view.drawn.as_ref().map(|d| d.events_view_rows));
        match (key.code, scroll_key(key.code)) {
            (KeyCode::PageUp, _) => move_event(state, -page),
            (KeyCode::PageDown, _) => move_event(state, page),
            (_, Some(delta)) => move_event(state, delta),
            (KeyCode::Char('q'), None) => return request_quit(state),
            (_, None) => state.ui.view.events_open = false,
        }
        return Vec::new();
    }
    if let Some(stage) = state.ui.preview_stage {
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => state.ui.preview_scroll = state.ui.preview_scroll.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => state.ui.preview_scroll += 1,
            KeyCode::PageUp => state.ui.preview_scroll = state.ui.preview_scroll.saturating_sub(20),
            KeyCode::PageDown => state.ui.preview_scroll += 20,
            KeyCode::Char(c @ ('1' | '2')) => {
                let want = if c == '1' { 1 } else { 2 };
                state.ui.preview_scroll = 0;
                if want != stage {
                    state.ui.preview_stage = Some(want);
                    return vec![Command::RenderPreview(want)];
                }
            }
            KeyCode::Char('q') => {
                return request_quit(state);
            }
            _ => state.ui.preview_stage = None,
        }
        return Vec::new();
    }
    if state.ui.validate_open {
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => state.ui.validate_scroll = state.ui.validate_scroll.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => state.ui.validate_scroll += 1,
            KeyCode::PageUp => state.ui.validate_scroll = state.ui.validate_scroll.saturating_sub(10),
            KeyCode::PageDown => state.ui.validate_scroll += 10,
            // Again: runs once more, unless it is reading now.
            KeyCode::Char('v') => {
                if state.validating.is_none() {
                    state.validating = Some(state.now);
                    return vec![Command::RunValidate];
                }
            }
            // The active checks too: they create probe objects, so armed only, confirmed.
            KeyCode::Char('a') => {
                if state.mode == Mode::ReadOnly {
                    state.log(
                        Level::Warn,
                        "read-only: the active checks create probe pods, a Service and Jobs; not in read-only mode",
                    );
                } else if state.running.is_some() {
                    state.log(Level::Warn, "an operation is running: the active checks wait until it ends");
                } else {
                    state.ui.validate_open = false;
                    let mut preview = Operation::Validate.explain();
                    if let Some(Ok(left)) = &state.probe_leftovers {
                        preview.extend(left.describe());
                    }
                    state.ui.confirm = Some(Pending::with_preview(Operation::Validate, preview, false));
                }
            }
            KeyCode::Char('q') => return request_quit(state),
            _ => state.ui.validate_open = false,
        }
        return Vec::new();
    }
    if state.ui.preflight_open {
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => state.ui.preflight_scroll = state.ui.preflight_scroll.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => state.ui.preflight_scroll += 1,
            KeyCode::PageUp => state.ui.preflight_scroll = state.ui.preflight_scroll.saturating_sub(10),
            KeyCode::PageDown => state.ui.preflight_scroll += 10,
            KeyCode::Char('p') if !state.preflight_running => {
                state.preflight_running = true;
                return vec![Command::RunPreflight];
            }
            KeyCode::Char('q') => {
                return request_quit(state);
            }
            _ => state.ui.preflight_open = false,
        }
        return Vec::new();
    }
    if state.ui.help {
        // ↑↓ PgUp PgDn Home End scroll; any other key closes help (q still quits).
        if let Some(delta) = scroll_key(key.code) {
            let max = state.ui.view.drawn.as_ref().map_or(usize::MAX, |d| d.help_max_scroll);
            state.ui.view.help_scroll = scroll_by(state.ui.view.help_scroll, delta, max);
            return Vec::new();
        }
        state.ui.help = false;
        if key.code != KeyCode::Char('q') {
            return Vec::new();
        }
    }
    let Some(binding) = keymap::lookup(&key, state.ui.focus) else { return Vec::new() };
    if binding.mutating && state.mode == Mode::ReadOnly {
        state.log(Level::Warn, format!("{}: disabled in read-only mode (started with --read-only)", binding.help));
        return Vec::new();
    }
    match binding.action {
        Action::Quit => return request_quit(state),
        Action::Cancel | Action::Validate | Action::Help | Action::Events | Action::Preflight => {
            return overlay_action(state, binding.action);
        }
        Action::Runbook => {
            state.runbook.open = true;
            if !state.runbook.reading {
                state.runbook.reading = true;
                return vec![Command::ReadRunbook];
            }
        }
        Action::NextStep => return preview_step(state, false),
        Action::Rollback => return preview_step(state, true),
        Action::SkipStep => {
            // It acts on the step highlighted in the runbook view, so that view must be showing.
            state.runbook.open = true;
            state.log(Level::Info, "runbook: highlight the step that failed, then press S to skip it");
            if state.runbook.read.is_none() && !state.runbook.reading {
                state.runbook.reading = true;
                return vec![Command::ReadRunbook];
            }
        }
        Action::FlowDetail => {
            // The flow the last frame drew highlighted, exactly as it was.
            match state.ui.view.drawn.as_ref().and_then(|d| d.flow.clone()) {
                Some(flow) => state.ui.view.flow_detail = Some(FlowDetail { flow, scroll: 0 }),
                None => state.log(Level::Info, "no flow is highlighted"),
            }
        }
        Action::RenderPreview => {
            // Start with the stage the cluster is heading to.
            let stage = if state.apps.contains_key(&state.cilium_app) { 2 } else { 1 };
            state.ui.preview_stage = Some(stage);
            state.ui.preview_scroll = 0;
            return vec![Command::RenderPreview(stage)];
        }
        Action::FocusNext => state.ui.focus = state.ui.focus.next(),
        Action::FocusPrev => state.ui.focus = state.ui.focus.prev(),
        Action::Up => move_selection(state, -1),
        Action::Down => move_selection(state, 1),
        Action::PageUp => move_selection(state, -page(state)),
        Action::PageDown => move_selection(state, page(state)),
        Action::Top => move_selection(state, i64::MIN / 2),
        Action::Bottom => move_selection(state, i64::MAX / 2),
        Action::Expand => {
            let anchor = Anchor::take(state);
            match selected_row(state) {
                Some(ArgoRow::App(app)) => {
                    state.ui.expanded_app =
                        if state.ui.expanded_app.as_deref() == Some(app.as_str()) { None } else { Some(app) };
                }
                // On one of its resources: collapse, and the selection goes back to the app.
                Some(ArgoRow::Resource { .. }) => state.ui.expanded_app = None,
                None => {}
            }
            anchor.restore(state);
        }
        Action::Pause => {
            // Pausing keeps the rows on screen where they are; resuming goes back to the newest.
            state.flows.toggle_pause();
            if !state.flows.paused() {
                state.ui.flow_scroll = 0;
            }
        }
        Action::Filter => state.ui.filter_input = Some(state.ui.filter_text.clone()),
        Action::ClearFilter => {
            state.ui.follow_node = None;
            state.ui.flow_scroll = 0;
            set_filter(state, String::new());
        }
        Action::FollowNode => {
            state.ui.follow_node = match state.ui.focus {
                Focus::Nodes => node_on_screen(state),
                _ => None,
            };
            state.ui.flow_scroll = 0;
        }
        Action::Drain => {
            if let Some(node) = node_on_screen(state) {
                // The confirmation shows the plan computed from the pods and PDBs read now.
                state.log(Level::Info, format!("drain {node}: reading its pods and PDBs for the plan"));
                state.planning = Some(node.clone());
                return vec![Command::PlanDrain(node)];
            }
        }
        Action::Cordon | Action::Uncordon => {
            if let Some(node) = node_on_screen(state) {
                let op = if binding.action == Action::Cordon {
                    Operation::Cordon { node }
                } else {
                    Operation::Uncordon { node }
                };
                state.ui.confirm = Some(Pending::new(op));
            }
        }
        Action::Sync | Action::Refresh => {
            if let Some(app) = app_on_screen(state, binding.label) {
                let op =
                    if binding.action == Action::Sync { Operation::Sync { app } } else { Operation::Refresh { app } };
                state.ui.confirm = Some(Pending::new(op));
            }
        }
    }
    Vec::new()
}

/// `q` / Ctrl-C: quits, unless an operation runs — then asks first.
fn request_quit(state: &mut AppState) -> Vec<Command> {
    if let Some(r) = &state.running {
        state.log(
            Level::Warn,
            format!(
                "{} is running: y quits anyway (it is stopped and journaled as interrupted); any other key stays",
                r.op.title()
            ),
        );
        state.ui.quit_confirm = true;
        return Vec::new();
    }
    state.ui.quit = true;
    vec![Command::Quit]
}

/// Keys while a confirmation is open. A `y` confirmation: `y` runs, anything else cancels. A
/// typed one (disruptive): characters go into the field, Enter runs only when the field holds
/// the object's name exactly, Esc cancels.
fn on_confirm_key(state: &mut AppState, key: KeyEvent) -> Vec<Command> {
    let Some(pending) = state.ui.confirm.as_mut() else { return Vec::new() };
    if pending.refused || !pending.needs_name() {
        let Some(pending) = state.ui.confirm.take() else { return Vec::new() };
        if key.code == KeyCode::Char('y') && !pending.refused {
            state.log(Level::Info, format!("{}: confirmed", pending.op.title()));
            return confirmed(state, pending);
        }
        state.log(Level::Info, format!("{}: cancelled", pending.op.title()));
        return Vec::new();
    }
    match key.code {
        KeyCode::Esc => {
            if let Some(p) = state.ui.confirm.take() {
                state.log(Level::Info, format!("{}: cancelled", p.op.title()));
            }
        }
        KeyCode::Backspace => {
            pending.typed.pop();
        }
        // A node name is at most 253 characters; more is never a match.
        KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) && pending.typed.chars().count() < 253 => {
            pending.typed.push(c);
        }
        KeyCode::Enter if pending.typed == pending.op.object_name() => {
            if let Some(p) = state.ui.confirm.take() {
                state.log(Level::Info, format!("{}: confirmed by name", p.op.title()));
                return confirmed(state, p);
            }
        }
        KeyCode::Enter => {
            let want = pending.op.object_name().to_string();
            state.log(Level::Warn, format!("type {want:?} exactly to confirm (Esc cancels)"));
        }
        _ => {}
    }
    Vec::new()
}

fn execute(p: Pending) -> Command {
    let confirmed = p.confirmed_how();
    Command::Execute { op: p.op, preview: p.preview, confirmed, take_over_stale_lock: p.take_over_stale_lock }
}

/// A confirmed operation: run it, or in a dry run say what would have run.
fn confirmed(state: &mut AppState, p: Pending) -> Vec<Command> {
    if state.runbook.dry_run {
        state.log(Level::Info, format!("dry run: {} would run now; nothing sent, nothing committed", p.op.title()));
        return Vec::new();
    }
    vec![execute(p)]
}

/// Pasted text never becomes keystrokes: it may only fill the typed-confirmation field or the
/// filter prompt (without line breaks); anywhere else it is dropped, and the Events pane says so.
fn on_paste(state: &mut AppState, text: &str) {
    let clean: String = text.chars().filter(|c| !c.is_control()).take(1024).collect();
    if let Some(p) = state.ui.confirm.as_mut().filter(|p| p.needs_name() && !p.refused) {
        p.typed.push_str(&clean);
    } else if let Some(input) = state.ui.filter_input.as_mut() {
        input.push_str(&clean);
    } else {
        state.log(
            Level::Info,
            format!("ignored pasted text ({} characters): paste only into a prompt", text.chars().count()),
        );
    }
}

fn set_filter(state: &mut AppState, text: String) {
    let text = text.trim().to_string();
    if text.is_empty() {
        state.set_flow_filter(None);
        state.ui.filter_text.clear();
        state.ui.filter_error = None;
        return;
    }
    match crate::app::flowview::ViewFilter::parse(&text) {
        Ok(f) => {
            state.set_flow_filter(Some(f));
            state.ui.filter_text = text;
            state.ui.filter_error = None;
            state.ui.flow_scroll = 0;
        }
        Err(e) => {
            // Keep the previous filter: a typo loses nothing.
            state.ui.filter_error = Some(e.clone());
            state.log(Level::Warn, format!("flow filter {text:?}: {e}"));
        }
    }
}

fn selected_node(state: &AppState) -> Option<String> {
    state.nodes.keys().nth(state.ui.selected_node).cloned()
}

/// The selected row of the Argo pane.
fn selected_row(state: &AppState) -> Option<ArgoRow> {
    lists::argo_rows(state).into_iter().nth(state.ui.selected_app)
}

/// The selected node, if it is the one the last frame drew highlighted. Before any frame (tests,
/// headless use) the selection is all there is.
fn node_on_screen(state: &mut AppState) -> Option<String> {
    let node = selected_node(state)?;
    match state.ui.view.drawn.as_ref() {
        Some(d) if d.node.as_deref() != Some(node.as_str()) => {
            screen_behind(state, &format!("node {node}"));
            None
        }
        _ => Some(node),
    }
}

/// The selected Application for `s` / `r`: only an app row, and only the one drawn highlighted.
fn app_on_screen(state: &mut AppState, key: &str) -> Option<String> {
    let row = selected_row(state)?;
    let ArgoRow::App(app) = &row else {
        state.log(Level::Info, format!("{key} acts on an Application: move the selection to the app's row"));
        return None;
    };
    match state.ui.view.drawn.as_ref() {
        Some(d) if d.argo.as_ref() != Some(&row) => {
            screen_behind(state, &format!("application {app}"));
            None
        }
        _ => Some(app.clone()),
    }
}

fn screen_behind(state: &mut AppState, what: &str) {
    state.log(
        Level::Warn,
        format!("{what} is not the row the screen shows highlighted (it changed): nothing done; look and press again"),
    );
}

/// Keeps the selections on their objects across a change of the lists (an app or node added
/// before the selected one, the expanded app collapsed).
struct Anchor {
    argo: Option<ArgoRow>,
    node: Option<String>,
}

impl Anchor {
    fn take(state: &AppState) -> Anchor {
        Anchor { argo: selected_row(state), node: selected_node(state) }
    }

    fn restore(self, state: &mut AppState) {
        let rows = lists::argo_rows(state);
        let found = self.argo.as_ref().and_then(|a| {
            rows.iter().position(|r| r == a).or_else(|| {
                // A resource row whose app was collapsed: back to the app.
                rows.iter().position(|r| matches!(r, ArgoRow::App(n) if n == a.app()))
            })
        });
        state.ui.selected_app = found.unwrap_or(state.ui.selected_app).min(rows.len().saturating_sub(1));
        let node = self.node.as_ref().and_then(|n| state.nodes.keys().position(|k| k == n));
        state.ui.selected_node = node.unwrap_or(state.ui.selected_node).min(state.nodes.len().saturating_sub(1));
    }
}

/// A frame was drawn: its offsets are where the next frame starts, and the overlays' scroll is
/// kept within what they can show.
fn on_drawn(state: &mut AppState, d: Drawn) {
    let v = &mut state.ui.view;
    v.argo_offset = d.argo_offset;
    v.nodes_offset = d.nodes_offset;
    v.events_offset = d.events_offset;
    v.events_view_offset = d.events_view_offset;
    state.runbook.offset = d.runbook_offset;
    v.help_scroll = v.help_scroll.min(d.help_max_scroll);
    if let Some(detail) = v.flow_detail.as_mut() {
        detail.scroll = detail.scroll.min(d.detail_max_scroll);
    }
    v.drawn = Some(d);
}

/// ↑↓ j k PgUp PgDn Home End in a scrolling overlay: by how many lines.
fn scroll_key(code: KeyCode) -> Option<i64> {
    Some(match code {
        KeyCode::Up | KeyCode::Char('k') => -1,
        KeyCode::Down | KeyCode::Char('j') => 1,
        KeyCode::PageUp => -20,
        KeyCode::PageDown => 20,
        KeyCode::Home => i64::MIN / 2,
        KeyCode::End => i64::MAX / 2,
        _ => return None,
    })
}

fn scroll_by(cur: usize, delta: i64, max: usize) -> usize {
    (cur as i64).saturating_add(delta).clamp(0, max.min(i64::MAX as usize / 2) as i64) as usize
}

/// PgUp / PgDn in the focused pane: what the last frame showed of it.
fn page(state: &AppState) -> i64 {
    let d = state.ui.view.drawn.as_ref();
    lists::page(match state.ui.focus {
        Focus::Argo => d.map(|d| d.argo_rows),
        Focus::Nodes => d.map(|d| d.nodes_rows),
        Focus::Events => d.map(|d| d.events_rows),
        Focus::Flows => None,
    })
}

/// Moves the event selection; reaching the newest follows it again.
fn move_event(state: &mut AppState, delta: i64) {
    let Some(cur) = lists::event_index(state) else { return };
    let last = state.log.len() - 1;
    let next = (cur as i64).saturating_add(delta).clamp(0, last as i64) as usize;
    state.ui.view.event = if next == last { None } else { state.log.get(next).map(|l| l.seq) };
}

/// Apps in display order: the Cilium app first, then the root, then the rest by name.
pub fn app_order(state: &AppState) -> Vec<&str> {
    let mut names: Vec<&str> = state.apps.keys().map(String::as_str).collect();
    names.sort_by_key(|n| (*n != state.cilium_app, *n != state.root_app, n.to_string()));
    names
}

fn move_selection(state: &mut AppState, delta: i64) {
    let step = |cur: usize, len: usize| -> usize {
        if len == 0 {
            return 0;
        }
        (cur as i64).saturating_add(delta).clamp(0, len as i64 - 1) as usize
    };
    match state.ui.focus {
        Focus::Argo => state.ui.selected_app = step(state.ui.selected_app, lists::argo_rows(state).len()),
        Focus::Nodes => state.ui.selected_node = step(state.ui.selected_node, state.nodes.len()),
        Focus::Flows => {
            // Up scrolls back in time through the rows the view shows (with a filter: matching
            // flows and markers); scrolling back freezes nothing: new flows keep arriving.
            let max = crate::app::flowview::shown_count(state).saturating_sub(1) as i64;
            state.ui.flow_scroll = (state.ui.flow_scroll as i64).saturating_sub(delta).clamp(0, max) as usize;
        }
        Focus::Events => move_event(state, delta),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::model::NodeSummary;
    use crate::cluster::watch::Change;

    fn st(mode: Mode) -> AppState {
        let mut s = AppState::new(Timestamp::from_second(1_000).unwrap(), mode, 100);
        s.on_kube(KubeEvent::Nodes(Change::Apply(NodeSummary { name: "n1".into(), ..Default::default() })));
        s
    }

    fn press(s: &mut AppState, c: char) -> Vec<Command> {
        update(s, AppEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)))
    }

    fn key(s: &mut AppState, code: KeyCode) -> Vec<Command> {
        update(s, AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    fn focus_nodes(s: &mut AppState) {
        s.ui.focus = Focus::Nodes;
    }

    #[test]
    fn mutating_keys_need_confirmation() {
        let mut s = st(Mode::Armed);
        focus_nodes(&mut s);
        assert!(press(&mut s, 'c').is_empty());
        assert!(s.ui.confirm.is_some());
        assert!(press(&mut s, 'n').is_empty(), "anything but y cancels");
        assert!(s.ui.confirm.is_none());
        press(&mut s, 'c');
        match press(&mut s, 'y').as_slice() {
            [Command::Execute { op, confirmed, .. }] => {
                assert_eq!(op, &Operation::Cordon { node: "n1".into() });
                assert!(confirmed.contains("pressed y"), "{confirmed}");
            }
            other => panic!("expected one Execute, got {other:?}"),
        }
    }

    #[test]
    fn a_drain_shows_its_plan_and_runs_only_when_the_name_is_typed() {
        let mut s = st(Mode::Armed);
        focus_nodes(&mut s);
        assert_eq!(press(&mut s, 'd'), vec![Command::PlanDrain("n1".into())]);
        assert!(s.ui.confirm.is_none(), "no dialog before the plan is read");
        update(
            &mut s,
            AppEvent::DrainPlanned { node: "n1".into(), result: Ok(vec!["evict apps/web-1".into()]), refused: false },
        );
        assert_eq!(s.ui.confirm.as_ref().map(|p| p.preview.clone()), Some(vec!["evict apps/web-1".to_string()]));
        // `y` is just a character here; Enter with the wrong name runs nothing.
        assert!(press(&mut s, 'y').is_empty());
        assert!(key(&mut s, KeyCode::Enter).is_empty());
        assert!(s.ui.confirm.is_some(), "a wrong name keeps the dialog open");
        key(&mut s, KeyCode::Backspace);
        press(&mut s, 'n');
        press(&mut s, '1');
        match key(&mut s, KeyCode::Enter).as_slice() {
            [Command::Execute { op, preview, confirmed, .. }] => {
                assert_eq!(op, &Operation::Drain { node: "n1".into() });
                assert_eq!(preview, &vec!["evict apps/web-1".to_string()]);
                assert!(confirmed.contains("\"n1\""), "{confirmed}");
            }
            other => panic!("expected one Execute, got {other:?}"),
        }
    }

    #[test]
    fn a_refused_drain_plan_cannot_be_confirmed() {
        let mut s = st(Mode::Armed);
        focus_nodes(&mut s);
        press(&mut s, 'd');
        update(&mut s, AppEvent::DrainPlanned { node: "n1".into(), result: Ok(vec!["REFUSED".into()]), refused: true });
        assert!(press(&mut s, 'y').is_empty());
        assert!(s.ui.confirm.is_none());
    }

    #[test]
    fn pasted_text_never_becomes_keystrokes() {
        let mut s = st(Mode::Armed);
        focus_nodes(&mut s);
        update(&mut s, AppEvent::Paste("dy".into()));
        update(&mut s, AppEvent::Paste("cy".into()));
        assert!(s.ui.confirm.is_none() && s.planning.is_none(), "a paste opened nothing");
        // Into the typed-confirmation field it goes, without submitting.
        press(&mut s, 'd');
        update(&mut s, AppEvent::DrainPlanned { node: "n1".into(), result: Ok(vec![]), refused: false });
        update(&mut s, AppEvent::Paste("n1\n".into()));
        assert_eq!(s.ui.confirm.as_ref().map(|p| p.typed.as_str()), Some("n1"));
        assert!(s.ui.confirm.is_some(), "a pasted newline does not confirm");
    }

    #[test]
    fn quitting_while_an_operation_runs_asks_first() {
        let mut s = st(Mode::Armed);
        update(&mut s, AppEvent::Started(Operation::Drain { node: "n1".into() }));
        assert!(press(&mut s, 'q').is_empty());
        assert!(s.ui.quit_confirm);
        assert!(press(&mut s, 'n').is_empty(), "any other key stays");
        assert!(!s.ui.quit);
        press(&mut s, 'q');
        assert_eq!(press(&mut s, 'y'), vec![Command::Quit]);
        // `x` asks the runner to cancel.
        let mut s = st(Mode::Armed);
        update(&mut s, AppEvent::Started(Operation::Drain { node: "n1".into() }));
        assert_eq!(press(&mut s, 'x'), vec![Command::Cancel]);
        assert!(s.running.as_ref().is_some_and(|r| r.cancelling));
    }

    #[test]
    fn read_only_disables_mutating_keys_and_says_why() {
        let mut s = st(Mode::ReadOnly);
        for c in ['c', 'u', 'd'] {
            assert!(press(&mut s, c).is_empty());
            assert!(s.ui.confirm.is_none());
        }
        assert!(s.log.iter().any(|l| l.text.contains("read-only")));
    }

    fn flow(i: i64, verdict: crate::hubble::proto::flow::Verdict) -> crate::hubble::proto::flow::Flow {
        crate::hubble::proto::flow::Flow {
            time: Some(pbjson_types::Timestamp { seconds: 1_764_000_000 + i, nanos: 0 }),
            verdict: verdict as i32,
            node_name: "homelab/n1".into(),
            uuid: format!("u{i}"),
            ..Default::default()
        }
    }

    /// The uuids of the rows the view shows (10 rows), newest last; markers as `gap`.
    fn shown(s: &AppState) -> Vec<String> {
        crate::app::flowview::view_rows(s, 10)
            .into_iter()
            .map(|r| match r {
                crate::app::flowview::ViewRow::Flow(f) => f.uuid,
                crate::app::flowview::ViewRow::Marker(_) => "gap".into(),
            })
            .collect()
    }

    fn uuids(r: std::ops::Range<i64>) -> Vec<String> {
        r.map(|i| format!("u{i}")).collect()
    }

    #[test]
    fn pause_keeps_what_was_seen_while_the_ring_rotates() {
        use crate::hubble::proto::flow::Verdict;
        let mut s = AppState::new(Timestamp::from_second(1_000).unwrap(), Mode::ReadOnly, 20);
        s.ui.focus = Focus::Flows;
        for i in 0..20 {
            s.on_flow(flow(i, Verdict::Forwarded));
        }
        press(&mut s, ' ');
        assert!(s.flows.paused());
        // The ring turns over twice; the frozen view still has all 20 rows it had.
        for i in 20..60 {
            s.on_flow(flow(i, Verdict::Forwarded));
        }
        assert_eq!(s.flows.rows.len(), 20);
        assert_eq!(shown(&s), uuids(10..20), "the frozen view, not the newest flows");
        assert_eq!(s.flows.total, 60, "counters keep counting");
        assert_eq!(s.flows.new_since_pause(), 40);
        // Scrolling moves through the frozen rows, down to the oldest one.
        key(&mut s, KeyCode::PageUp);
        assert_eq!(shown(&s), uuids(0..10));
        key(&mut s, KeyCode::PageUp);
        assert_eq!(shown(&s), uuids(0..1), "clamped at the oldest row");
        key(&mut s, KeyCode::PageDown);
        key(&mut s, KeyCode::PageDown);
        key(&mut s, KeyCode::Down);
        assert_eq!(shown(&s), uuids(10..20));
        // Bounded: what the ring evicted while paused is kept, never more than the buffer size.
        assert_eq!(s.flows.frozen.as_ref().map(|f| f.evicted.len()), Some(20));
        // Resuming shows the live buffer again, newest first.
        press(&mut s, ' ');
        assert!(!s.flows.paused() && s.flows.frozen.is_none());
        assert_eq!(shown(&s), uuids(50..60));
    }

    #[test]
    fn pausing_keeps_the_rows_on_screen_and_new_rows_stay_out() {
        use crate::hubble::proto::flow::Verdict;
        let mut s = AppState::new(Timestamp::from_second(1_000).unwrap(), Mode::ReadOnly, 100);
        s.ui.focus = Focus::Flows;
        for i in 0..30 {
            s.on_flow(flow(i, Verdict::Forwarded));
        }
        key(&mut s, KeyCode::Up);
        key(&mut s, KeyCode::Up);
        assert_eq!(shown(&s), uuids(18..28));
        press(&mut s, ' ');
        for i in 30..35 {
            s.on_flow(flow(i, Verdict::Forwarded));
        }
        assert_eq!(shown(&s), uuids(18..28), "the same rows as before the pause");
        key(&mut s, KeyCode::Down);
        key(&mut s, KeyCode::Down);
        key(&mut s, KeyCode::Down);
        assert_eq!(shown(&s), uuids(20..30), "flows that arrived after the pause are not in the view");
    }

    #[test]
    fn with_a_filter_scrolling_moves_through_matching_rows() {
        use crate::hubble::proto::flow::Verdict;
        let mut s = AppState::new(Timestamp::from_second(1_000).unwrap(), Mode::ReadOnly, 1000);
        s.ui.focus = Focus::Flows;
        // Every 10th flow is a drop: 30 drops among 300 flows, and a gap marker in the middle.
        for i in 0..300 {
            if i == 150 {
                s.on_gap(
                    pbjson_types::Timestamp { seconds: 1_764_000_149, nanos: 0 },
                    Some(pbjson_types::Timestamp { seconds: 1_764_000_150, nanos: 0 }),
                    "relay reconnect",
                );
            }
            s.on_flow(flow(i, if i % 10 == 0 { Verdict::Dropped } else { Verdict::Forwarded }));
        }
        set_filter(&mut s, "verdict:dropped".into());
        let drops = |r: std::ops::Range<i64>| -> Vec<String> { r.map(|i| format!("u{}", i * 10)).collect() };
        assert_eq!(shown(&s), drops(20..30));
        // PgUp: ten matching rows back (not ten buffered flows, which would show the same drops).
        key(&mut s, KeyCode::PageUp);
        let mut want = drops(11..15);
        want.push("gap".into());
        want.extend(drops(15..20));
        assert_eq!(shown(&s), want, "the gap marker stays visible with the filter");
        key(&mut s, KeyCode::PageUp);
        assert_eq!(shown(&s), drops(1..11));
        // The end of the matching rows bounds the scroll (30 drops + 1 marker).
        for _ in 0..10 {
            key(&mut s, KeyCode::PageUp);
        }
        assert_eq!(s.ui.flow_scroll, 30);
        assert_eq!(shown(&s), drops(0..1));
        // Paused with a filter: the frozen view is filtered the same way.
        key(&mut s, KeyCode::End);
        press(&mut s, ' ');
        for i in 300..2000 {
            s.on_flow(flow(i, Verdict::Dropped));
        }
        assert_eq!(shown(&s), drops(20..30));
    }

    #[test]
    fn the_empty_view_names_only_what_is_set() {
        use crate::app::flowview::empty_message;
        use crate::hubble::proto::flow::Verdict;
        let mut s = AppState::new(Timestamp::from_second(1_000).unwrap(), Mode::ReadOnly, 100);
        s.ui.focus = Focus::Flows;
        assert!(empty_message(&s).starts_with("no relay connection"), "{}", empty_message(&s));
        s.on_relay_connected("127.0.0.1:4245");
        assert!(empty_message(&s).starts_with("connected; no flows yet"));
        // Paused on an empty buffer, flows arriving: no word of a filter.
        press(&mut s, ' ');
        for i in 0..5 {
            s.on_flow(flow(i, Verdict::Forwarded));
        }
        assert!(crate::app::flowview::view_rows(&s, 10).is_empty());
        let msg = empty_message(&s);
        assert_eq!(msg, "paused: no flow was buffered when paused (Space resumes)");
        assert!(!msg.contains("filter"));
        press(&mut s, ' ');
        // A filter that matches nothing is named.
        set_filter(&mut s, "verdict:dropped".into());
        assert_eq!(empty_message(&s), "no buffered flow matches the filter /verdict:dropped");
        press(&mut s, ' ');
        assert_eq!(
            empty_message(&s),
            "paused: no flow buffered when paused matches the filter /verdict:dropped (Space resumes)"
        );
    }

    #[test]
    fn bad_filter_keeps_previous() {
        let mut s = st(Mode::ReadOnly);
        set_filter(&mut s, "verdict:dropped".into());
        assert!(s.flow_filter.is_some());
        set_filter(&mut s, "verdict:nonsense".into());
        assert!(s.ui.filter_error.is_some());
        assert_eq!(s.ui.filter_text, "verdict:dropped");
    }
}
