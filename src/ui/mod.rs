//! Rendering: pure functions from `&AppState` to a frame. Nothing here does I/O or changes state.

mod argo;
mod common;
mod flowline;
mod flows;
mod header;
pub mod names;
mod nodes;
mod overlays;
mod runbook;
mod views;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

use crate::app::lists::Drawn;
use crate::app::state::{AppState, Focus};
pub use common::Theme;

/// Smallest terminal the cockpit draws its panes in.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

/// Draws the whole cockpit and says what it drew (fed back to `update` as `AppEvent::Drawn`).
pub fn draw(frame: &mut Frame, state: &AppState, theme: &Theme) -> Drawn {
    let mut drawn = Drawn::default();
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = vec![
            Line::from(format!("terminal {}x{} is too small", area.width, area.height)),
            Line::from(format!("cutover needs {MIN_WIDTH}x{MIN_HEIGHT}; data keeps updating")),
            Line::from("q quits"),
        ];
        frame.render_widget(Paragraph::new(msg).wrap(ratatui::widgets::Wrap { trim: true }), area);
        return drawn;
    }
    let [head, body, foot] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(area);
    header::draw(frame, head, state, theme);
    overlays::footer(frame, foot, state, theme);

    let panes = layout(state, body);
    argo::draw(frame, panes.argo, state, theme, &mut drawn);
    nodes::draw(frame, panes.nodes, state, theme, &mut drawn);
    flows::draw(frame, panes.flows, state, theme, &mut drawn);
    overlays::events(frame, panes.events, state, theme, &mut drawn);

    if state.runbook.open {
        runbook::draw(frame, body, state, theme, &mut drawn);
    }
    if state.ui.view.events_open {
        views::events(frame, body, state, theme, &mut drawn);
    }
    if let Some(detail) = &state.ui.view.flow_detail {
        views::flow_detail(frame, body, detail, theme, &mut drawn);
    }
    if state.ui.preflight_open {
        overlays::preflight(frame, body, state, theme);
    }
    if state.ui.validate_open {
        overlays::validation(frame, body, state, theme);
    }
    if let Some(stage) = state.ui.preview_stage {
        overlays::preview(frame, body, state, stage, theme);
    }
    if state.ui.help {
        overlays::help(frame, body, state, theme, &mut drawn);
    }
    if let Some(p) = &state.ui.confirm {
        overlays::confirm(frame, body, p, theme);
    }
    drawn
}

/// Where the four panes go.
struct Panes {
    argo: Rect,
    nodes: Rect,
    flows: Rect,
    events: Rect,
}

/// Rows a pane needs besides its list: a rule or two borders, and the column header.
fn chrome(short: bool) -> u16 {
    if short { 2 } else { 3 }
}

/// The panes' places. Side by side only when the flows still get the full `hubble observe`
/// width; otherwise stacked, each list as tall as its rows within a share of the height, the
/// flows taking the rest. On a short terminal (80×24) the frames shrink to a top rule and
/// Events to one line (the latest event; `e` shows them all) unless it has the focus.
fn layout(state: &AppState, body: Rect) -> Panes {
    let short = body.height + 2 < common::SHORT_HEIGHT;
    let argo_rows = crate::app::lists::argo_rows(state).len().max(1) as u16;
    let node_rows = state.nodes.len().max(1) as u16;
    if body.width >= 220 {
        let [left, right] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
        let argo_h = (argo_rows + chrome(short)).clamp(4, (left.height / 2).max(4));
        let [argo, nodes] = Layout::vertical([Constraint::Length(argo_h), Constraint::Min(0)]).areas(left);
        let [flows, events] = Layout::vertical([Constraint::Min(0), Constraint::Length(8)]).areas(right);
        return Panes { argo, nodes, flows, events };
    }
    let events_h = match (short, state.ui.focus == Focus::Events) {
        (true, false) => 1,
        (true, true) => 4,
        (false, _) if body.height >= 50 => 8,
        (false, _) if body.height >= 26 => 5,
        (false, _) => 3,
    };
    let rest = body.height.saturating_sub(events_h);
    let share = |pct: u16| (rest * pct / 100).max(chrome(short) + 1);
    let argo_h = (argo_rows + chrome(short)).min(share(40));
    let nodes_h = (node_rows + chrome(short)).min(share(30));
    let [argo, nodes, flows, events] = Layout::vertical([
        Constraint::Length(argo_h),
        Constraint::Length(nodes_h),
        Constraint::Min(3),
        Constraint::Length(events_h),
    ])
    .areas(body);
    Panes { argo, nodes, flows, events }
}

/// Shrinks a rect by a margin, never below zero.
pub(crate) fn inset(r: ratatui::layout::Rect, dx: u16, dy: u16) -> ratatui::layout::Rect {
    ratatui::layout::Rect {
        x: r.x + dx.min(r.width / 2),
        y: r.y + dy.min(r.height / 2),
        width: r.width.saturating_sub(2 * dx),
        height: r.height.saturating_sub(2 * dy),
    }
}

#[cfg(test)]
mod snapshot_tests;
