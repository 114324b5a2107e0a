//! The update function: every event goes through [`update`], which changes the state and returns
//! the commands for the outside world (run an operation, quit). Keys go through the keymap.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use jiff::Timestamp;

use super::action::{Operation, Pending};
use super::keymap::{self, Action};
use super::state::{AppState, Focus, Level, Mode};
use crate::cluster::watch::KubeEvent;
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
    /// An operation finished (Ok: summary line; Err: why it failed).
    Done {
        op: Operation,
        result: Result<String, String>,
    },
    /// Progress of a running operation (e.g. drain retrying on a PDB).
    Progress {
        op: Operation,
        text: String,
    },
    /// A pre-flight run finished.
    Preflight(Result<Vec<crate::checks::Check>, String>),
    /// A manifest preview was rendered for a stage: (path, contents) per file.
    Rendered {
        stage: u8,
        result: Result<Vec<(String, String)>, String>,
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
    Execute(Operation),
    /// Run the read-only pre-flight checks in the background.
    RunPreflight,
    /// Render the manifests of a stage for the preview (writes nothing).
    RenderPreview(u8),
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
            state.on_kube(*k);
            clamp_selection(state);
            Vec::new()
        }
        AppEvent::Relay(r) => {
            on_relay(state, *r);
            Vec::new()
        }
        AppEvent::Done { op, result } => {
            match result {
                Ok(msg) => state.log(Level::Info, format!("{}: {msg}", op.title())),
                Err(e) => state.log(Level::Error, format!("{} failed: {e}", op.title())),
            }
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
        AppEvent::Progress { op, text } => {
            state.log(Level::Info, format!("{}: {text}", op.title()));
            Vec::new()
        }
        AppEvent::Key(key) => on_key(state, key),
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
        HubbleEvent::Lost { count, node_name, .. } => state.on_lost(count, &node_name),
        HubbleEvent::NodeStatus { state: st, nodes, message, .. } => {
            let st = NodeState::try_from(st).unwrap_or(NodeState::UnknownNodeState);
            for n in &nodes {
                state.relay.nodes.insert(crate::app::state::strip_cluster_prefix(n).to_string(), st);
            }
            let level = if st == NodeState::NodeConnected { Level::Info } else { Level::Warn };
            let what = if message.is_empty() { st.as_str_name().to_string() } else { message };
            state.log(level, format!("hubble: {}: {what}", nodes.join(", ")));
        }
        HubbleEvent::Gap { reason, .. } => {
            state.relay.gap = Some(reason.clone());
            state.log(Level::Warn, format!("hubble: {reason}"));
        }
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
    // Ctrl-C always quits, whatever is open.
    if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
        state.ui.quit = true;
        return vec![Command::Quit];
    }
    // A confirmation takes every key: only `y` confirms; anything else cancels.
    if let Some(pending) = state.ui.confirm.take() {
        if key.code == KeyCode::Char('y') {
            state.log(Level::Info, format!("{}: confirmed, running", pending.op.title()));
            return vec![Command::Execute(pending.op)];
        }
        state.log(Level::Info, format!("{}: cancelled", pending.op.title()));
        return Vec::new();
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
                state.ui.quit = true;
                return vec![Command::Quit];
            }
            _ => state.ui.preview_stage = None,
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
                state.ui.quit = true;
                return vec![Command::Quit];
            }
            _ => state.ui.preflight_open = false,
        }
        return Vec::new();
    }
    if state.ui.help {
        // Any key closes help (q still quits).
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
        Action::Quit => {
            state.ui.quit = true;
            return vec![Command::Quit];
        }
        Action::Help => state.ui.help = true,
        Action::RenderPreview => {
            // Start with the stage the cluster is heading to.
            let stage = if state.apps.contains_key(&state.cilium_app) { 2 } else { 1 };
            state.ui.preview_stage = Some(stage);
            state.ui.preview_scroll = 0;
            return vec![Command::RenderPreview(stage)];
        }
        Action::Preflight => {
            state.ui.preflight_open = true;
            state.ui.preflight_scroll = 0;
            if !state.preflight_running {
                state.preflight_running = true;
                return vec![Command::RunPreflight];
            }
        }
        Action::FocusNext => state.ui.focus = state.ui.focus.next(),
        Action::FocusPrev => state.ui.focus = state.ui.focus.prev(),
        Action::Up => move_selection(state, -1),
        Action::Down => move_selection(state, 1),
        Action::PageUp => move_selection(state, -10),
        Action::PageDown => move_selection(state, 10),
        Action::Top => move_selection(state, i64::MIN / 2),
        Action::Bottom => move_selection(state, i64::MAX / 2),
        Action::Expand => {
            if let Some(app) = selected_app(state) {
                state.ui.expanded_app =
                    if state.ui.expanded_app.as_deref() == Some(app.as_str()) { None } else { Some(app) };
            }
        }
        Action::Pause => {
            state.ui.paused_at_total = match state.ui.paused_at_total {
                Some(_) => None,
                None => Some(state.flows.total),
            };
            state.ui.flow_scroll = 0;
        }
        Action::Filter => state.ui.filter_input = Some(state.ui.filter_text.clone()),
        Action::ClearFilter => {
            state.ui.follow_node = None;
            set_filter(state, String::new());
        }
        Action::FollowNode => {
            state.ui.follow_node = match (state.ui.focus, selected_node(state)) {
                (Focus::Nodes, Some(n)) => Some(n),
                _ => None,
            };
        }
        Action::Cordon | Action::Uncordon | Action::Drain => {
            if let Some(node) = selected_node(state) {
                let op = match binding.action {
                    Action::Cordon => Operation::Cordon { node },
                    Action::Uncordon => Operation::Uncordon { node },
                    _ => Operation::Drain { node },
                };
                state.ui.confirm = Some(Pending { op });
            }
        }
        Action::Sync | Action::Refresh => {
            if let Some(app) = selected_app(state) {
                let op =
                    if binding.action == Action::Sync { Operation::Sync { app } } else { Operation::Refresh { app } };
                state.ui.confirm = Some(Pending { op });
            }
        }
    }
    Vec::new()
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

/// Apps in display order: the Cilium app first, then the root, then the rest by name.
pub fn app_order(state: &AppState) -> Vec<&str> {
    let mut names: Vec<&str> = state.apps.keys().map(String::as_str).collect();
    names.sort_by_key(|n| (*n != state.cilium_app, *n != state.root_app, n.to_string()));
    names
}

fn selected_app(state: &AppState) -> Option<String> {
    app_order(state).get(state.ui.selected_app).map(|s| s.to_string())
}

fn move_selection(state: &mut AppState, delta: i64) {
    let step = |cur: usize, len: usize| -> usize {
        if len == 0 {
            return 0;
        }
        (cur as i64).saturating_add(delta).clamp(0, len as i64 - 1) as usize
    };
    match state.ui.focus {
        Focus::Argo => state.ui.selected_app = step(state.ui.selected_app, state.apps.len()),
        Focus::Nodes => state.ui.selected_node = step(state.ui.selected_node, state.nodes.len()),
        Focus::Flows => {
            // Up scrolls back in time; scrolling back freezes nothing: new flows keep arriving.
            let max = state.flows.flows.len().saturating_sub(1) as i64;
            state.ui.flow_scroll = (state.ui.flow_scroll as i64).saturating_sub(delta).clamp(0, max) as usize;
        }
        Focus::Events => {
            let max = state.log.len().saturating_sub(1) as i64;
            state.ui.events_scroll = (state.ui.events_scroll as i64).saturating_sub(delta).clamp(0, max) as usize;
        }
    }
}

fn clamp_selection(state: &mut AppState) {
    state.ui.selected_node = state.ui.selected_node.min(state.nodes.len().saturating_sub(1));
    state.ui.selected_app = state.ui.selected_app.min(state.apps.len().saturating_sub(1));
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

    #[test]
    fn mutating_keys_need_confirmation() {
        let mut s = st(Mode::Armed);
        assert!(press(&mut s, 'd').is_empty());
        assert!(s.ui.confirm.is_some());
        assert!(press(&mut s, 'n').is_empty(), "anything but y cancels");
        assert!(s.ui.confirm.is_none());
        press(&mut s, 'd');
        assert_eq!(press(&mut s, 'y'), vec![Command::Execute(Operation::Drain { node: "n1".into() })]);
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
