//! The single keymap table: key handling and the help overlay are both generated from it.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::state::Focus;

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Help,
    FocusNext,
    FocusPrev,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Expand,
    Pause,
    Filter,
    ClearFilter,
    FollowNode,
    Cordon,
    Uncordon,
    Drain,
    Sync,
    Refresh,
    Preflight,
    RenderPreview,
    Cancel,
    /// The full-screen events view.
    Events,
    /// The highlighted flow in full.
    FlowDetail,
    /// The runbook view.
    Runbook,
    /// The passive validation checks (read-only), in an overlay.
    Validate,
    /// Preview the runbook's next step (and run it after its confirmation).
    NextStep,
    /// Preview the current stage's rollback (and run its next step after confirmation).
    Rollback,
    /// Skip the runbook step highlighted in the runbook view, after it failed or while it is
    /// blocked (typed confirmation; journaled).
    SkipStep,
}

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Pane(Focus),
}

/// One row of the keymap.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub code: KeyCode,
    pub ctrl: bool,
    /// How the help shows the key.
    pub label: &'static str,
    pub scope: Scope,
    pub action: Action,
    pub help: &'static str,
    /// Changes the cluster or Git: disabled in read-only mode, always confirmed.
    pub mutating: bool,
}

const fn key(code: KeyCode, label: &'static str, scope: Scope, action: Action, help: &'static str) -> Binding {
    Binding { code, ctrl: false, label, scope, action, help, mutating: false }
}

const fn mutating(code: KeyCode, label: &'static str, scope: Scope, action: Action, help: &'static str) -> Binding {
    Binding { code, ctrl: false, label, scope, action, help, mutating: true }
}

const G: Scope = Scope::Global;
const ARGO: Scope = Scope::Pane(Focus::Argo);
const NODES: Scope = Scope::Pane(Focus::Nodes);
const FLOWS: Scope = Scope::Pane(Focus::Flows);
const EVENTS: Scope = Scope::Pane(Focus::Events);

/// Every key the cockpit knows, in help order.
pub static KEYMAP: &[Binding] = &[
    key(KeyCode::Char('q'), "q", G, Action::Quit, "quit (asks first while an operation runs)"),
    Binding { code: KeyCode::Char('c'), ctrl: true, ..key(KeyCode::Char('c'), "Ctrl-C", G, Action::Quit, "quit") },
    key(KeyCode::Char('?'), "?", G, Action::Help, "show / hide this help"),
    key(KeyCode::Tab, "Tab", G, Action::FocusNext, "next pane"),
    key(KeyCode::BackTab, "Shift-Tab", G, Action::FocusPrev, "previous pane"),
    key(KeyCode::Up, "↑ / k", G, Action::Up, "move up (flows: scroll back)"),
    key(KeyCode::Char('k'), "k", G, Action::Up, ""),
    key(KeyCode::Down, "↓ / j", G, Action::Down, "move down (flows: towards newest)"),
    key(KeyCode::Char('j'), "j", G, Action::Down, ""),
    key(KeyCode::PageUp, "PgUp", G, Action::PageUp, "page up"),
    key(KeyCode::PageDown, "PgDn", G, Action::PageDown, "page down"),
    key(KeyCode::Home, "Home", G, Action::Top, "first row / oldest flow"),
    key(KeyCode::End, "End", G, Action::Bottom, "last row / follow newest flows"),
    key(KeyCode::Char(' '), "Space", G, Action::Pause, "pause / resume the flow view (counting goes on)"),
    key(
        KeyCode::Char('/'),
        "/",
        G,
        Action::Filter,
        "filter flows: ns: pod: verdict: node: port: proto: text, !negates",
    ),
    key(KeyCode::Esc, "Esc", G, Action::ClearFilter, "clear flow filter and node follow; close overlays"),
    key(KeyCode::Char('x'), "x", G, Action::Cancel, "cancel the running operation at its next safe point"),
    key(KeyCode::Char('p'), "p", G, Action::Preflight, "pre-flight checks (read-only, run now; ↑↓ scroll, Esc close)"),
    key(
        KeyCode::Char('m'),
        "m",
        G,
        Action::RenderPreview,
        "preview the rendered manifests (1 / 2 stage; writes nothing)",
    ),
    key(
        KeyCode::Char('e'),
        "e",
        G,
        Action::Events,
        "events, full screen: repeats grouped, the selected one in full (↑↓ PgUp PgDn)",
    ),
    key(
        KeyCode::Char('v'),
        "v",
        G,
        Action::Validate,
        "validation: the passive checks (flows, DNS, drops, Longhorn CSI, LB IP), read-only; v reruns; armed, a adds the probes",
    ),
    key(
        KeyCode::Char('b'),
        "b",
        G,
        Action::Runbook,
        "runbook, full screen: stages, steps, their gates; where the journal says you are",
    ),
    mutating(
        KeyCode::Char('n'),
        "n",
        G,
        Action::NextStep,
        "runbook: preview the next step (gates, exact changes), run it after its confirmation",
    ),
    mutating(
        KeyCode::Char('R'),
        "R",
        G,
        Action::Rollback,
        "runbook: preview the rollback of the current stage, run its next step after confirmation",
    ),
    mutating(
        KeyCode::Char('S'),
        "S",
        G,
        Action::SkipStep,
        "runbook view: skip the highlighted step that failed or is blocked (type its id; journaled)",
    ),
    key(KeyCode::Enter, "Enter", ARGO, Action::Expand, "expand / collapse the app's resources"),
    mutating(KeyCode::Char('s'), "s", ARGO, Action::Sync, "sync the selected Application (confirm)"),
    mutating(KeyCode::Char('r'), "r", ARGO, Action::Refresh, "refresh the selected Application (confirm)"),
    key(KeyCode::Char('f'), "f", NODES, Action::FollowNode, "show only flows from the selected node"),
    mutating(KeyCode::Char('c'), "c", NODES, Action::Cordon, "cordon the selected node (confirm)"),
    mutating(KeyCode::Char('u'), "u", NODES, Action::Uncordon, "uncordon the selected node (confirm)"),
    mutating(KeyCode::Char('d'), "d", NODES, Action::Drain, "drain the selected node (shows the plan; type its name)"),
    key(KeyCode::Char('f'), "f", FLOWS, Action::FollowNode, "stop following a node"),
    key(KeyCode::Enter, "Enter", FLOWS, Action::FlowDetail, "the highlighted flow in full, every field (↑↓ scroll)"),
    key(KeyCode::Enter, "Enter", EVENTS, Action::Events, "the events view (as e)"),
];

/// Finds the binding for a key in the focused pane (pane bindings win over global ones).
pub fn lookup(ev: &KeyEvent, focus: Focus) -> Option<&'static Binding> {
    let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
    let matches = |b: &&Binding| b.code == ev.code && b.ctrl == ctrl;
    KEYMAP
        .iter()
        .filter(matches)
        .find(|b| b.scope == Scope::Pane(focus))
        .or_else(|| KEYMAP.iter().filter(matches).find(|b| b.scope == Scope::Global))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_ambiguous_bindings() {
        for (i, a) in KEYMAP.iter().enumerate() {
            for b in &KEYMAP[i + 1..] {
                assert!(
                    !(a.code == b.code && a.ctrl == b.ctrl && a.scope == b.scope),
                    "{} bound twice in {:?}",
                    a.label,
                    a.scope
                );
            }
        }
    }

    #[test]
    fn pane_binding_wins() {
        let c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::NONE);
        assert_eq!(lookup(&c, Focus::Nodes).map(|b| b.action), Some(Action::Cordon));
        assert_eq!(lookup(&c, Focus::Flows).map(|b| b.action), None);
        let cc = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(lookup(&cc, Focus::Nodes).map(|b| b.action), Some(Action::Quit));
    }
}
