//! What the lists on screen show and what the keys act on: the rows of the Argo pane (the apps and
//! the expanded app's resources), the scroll offset that keeps a selection on screen, what the last
//! frame drew highlighted, and the state of the scrollable overlays (help, events view, flow
//! detail).
//!
//! Why: a key must act only on the row the operator sees highlighted. Rendering derives each
//! list's first row from the selection ([`offset`]), so the selected row is always the one drawn
//! highlighted; the frame then reports what it drew ([`Drawn`]), which becomes the next frame's
//! starting offset and lets a key check it acts on the row that was on screen.

use super::state::AppState;
use crate::hubble::proto::flow::Flow;

/// One row of the Argo pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgoRow {
    /// An Application (the rows `s` and `r` act on).
    App(String),
    /// A resource of the expanded Application.
    Resource { app: String, kind: String, namespace: String, name: String },
}

impl ArgoRow {
    /// The Application the row belongs to.
    pub fn app(&self) -> &str {
        match self {
            ArgoRow::App(a) | ArgoRow::Resource { app: a, .. } => a,
        }
    }
}

/// The Argo pane's rows in display order: each app, and under the expanded one all its resources.
pub fn argo_rows(state: &AppState) -> Vec<ArgoRow> {
    let mut rows = Vec::with_capacity(state.apps.len());
    for name in super::update::app_order(state) {
        rows.push(ArgoRow::App(name.to_string()));
        if state.ui.expanded_app.as_deref() != Some(name) {
            continue;
        }
        for r in state.apps.get(name).map(|a| a.resources.as_slice()).unwrap_or_default() {
            rows.push(ArgoRow::Resource {
                app: name.to_string(),
                kind: r.kind.clone(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            });
        }
    }
    rows
}

/// The first row to draw so that row `selected` of `len` is among the `height` rows drawn. Keeps
/// `hint` (the previous frame's offset) while that still shows the selection, so moving within
/// the page does not scroll; never leaves empty rows at the end of a list that fills the page.
pub fn offset(hint: usize, selected: usize, len: usize, height: usize) -> usize {
    if height == 0 || len == 0 {
        return 0;
    }
    let selected = selected.min(len - 1);
    let lowest = (selected + 1).saturating_sub(height);
    hint.clamp(lowest, selected).min(len.saturating_sub(height))
}

/// What one frame drew: per list the first row and the number of rows on screen, what was
/// highlighted, and how far the open overlay can scroll. Fed back to `update` after each frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drawn {
    pub argo_offset: usize,
    pub argo_rows: usize,
    pub nodes_offset: usize,
    pub nodes_rows: usize,
    pub events_offset: usize,
    pub events_rows: usize,
    pub events_view_offset: usize,
    pub events_view_rows: usize,
    /// The highlighted row of the focused pane (None when another pane has the focus).
    pub argo: Option<ArgoRow>,
    pub node: Option<String>,
    pub flow: Option<Box<Flow>>,
    /// Lines the help / flow detail can scroll by before their end is on screen.
    pub help_max_scroll: usize,
    pub detail_max_scroll: usize,
    /// The runbook view: its first row, rows shown, and the step drawn highlighted.
    pub runbook_offset: usize,
    pub runbook_rows: usize,
    pub runbook_step: Option<String>,
}

/// A flow opened with Enter: the flow as it was drawn, and how far its detail is scrolled.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowDetail {
    pub flow: Box<Flow>,
    pub scroll: usize,
}

/// Scroll offsets, the event selection and the overlays that scroll.
#[derive(Debug, Clone, Default)]
pub struct Views {
    /// First rows drawn by the last frame (the starting point of the next).
    pub argo_offset: usize,
    pub nodes_offset: usize,
    pub events_offset: usize,
    pub events_view_offset: usize,
    /// The selected event by its `seq`; `None` follows the newest.
    pub event: Option<u64>,
    /// The full-screen events view (`e`).
    pub events_open: bool,
    pub help_scroll: usize,
    pub flow_detail: Option<FlowDetail>,
    /// What the last frame drew; `None` before the first frame (headless use, tests).
    pub drawn: Option<Drawn>,
}

/// Index in `state.log` of the selected event (the newest when following, or when the selected
/// one has left the log).
pub fn event_index(state: &AppState) -> Option<usize> {
    let last = state.log.len().checked_sub(1)?;
    Some(state.ui.view.event.and_then(|seq| state.log.iter().position(|l| l.seq == seq)).unwrap_or(last))
}

/// Page size for PgUp / PgDn: what the last frame showed of the list, or 10 before any frame.
pub fn page(rows: Option<usize>) -> i64 {
    rows.filter(|r| *r > 1).map_or(10, |r| r as i64 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_keeps_the_selection_on_screen_and_scrolls_only_when_needed() {
        // Moving down within the page keeps the offset; past it scrolls by one.
        assert_eq!(offset(0, 3, 20, 5), 0);
        assert_eq!(offset(0, 5, 20, 5), 1);
        // Moving up from the bottom keeps the offset until the top is passed.
        assert_eq!(offset(10, 12, 20, 5), 10);
        assert_eq!(offset(10, 9, 20, 5), 9);
        // A list that shrank does not leave empty rows; a selection past the end is clamped.
        assert_eq!(offset(15, 19, 8, 5), 3);
        assert_eq!(offset(0, 0, 0, 5), 0);
        assert_eq!(offset(7, 2, 3, 0), 0);
        for hint in 0..30 {
            for sel in 0..20 {
                let o = offset(hint, sel, 20, 6);
                assert!(o <= sel && sel < o + 6, "hint {hint} sel {sel} -> {o}");
            }
        }
    }
}
