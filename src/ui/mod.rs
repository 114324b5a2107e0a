//! Rendering: pure functions from `&AppState` to a frame. Nothing here does I/O or changes state.

mod argo;
mod common;
mod flows;
mod header;
mod nodes;
mod overlays;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

use crate::app::state::AppState;
pub use common::Theme;

/// Smallest terminal the cockpit draws its panes in.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

/// Draws the whole cockpit.
pub fn draw(frame: &mut Frame, state: &AppState, theme: &Theme) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = vec![
            Line::from(format!("terminal {}x{} is too small", area.width, area.height)),
            Line::from(format!("cutover needs {MIN_WIDTH}x{MIN_HEIGHT}; data keeps updating")),
            Line::from("q quits"),
        ];
        frame.render_widget(Paragraph::new(msg).wrap(ratatui::widgets::Wrap { trim: true }), area);
        return;
    }
    let [head, body, foot] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(area);
    header::draw(frame, head, state, theme);
    overlays::footer(frame, foot, state, theme);

    // Side by side only when the flows still get the full `hubble observe` width.
    if body.width >= 220 {
        let [left, right] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
        let argo_h = argo_height(state, left.height / 2);
        let [argo_a, nodes_a] = Layout::vertical([Constraint::Length(argo_h), Constraint::Min(0)]).areas(left);
        let [flows_a, events_a] = Layout::vertical([Constraint::Min(0), Constraint::Length(8)]).areas(right);
        argo::draw(frame, argo_a, state, theme);
        nodes::draw(frame, nodes_a, state, theme);
        flows::draw(frame, flows_a, state, theme);
        overlays::events(frame, events_a, state, theme);
    } else {
        let argo_h = argo_height(state, body.height * 3 / 10);
        let nodes_h = (state.nodes.len() as u16 + 3).clamp(4, body.height * 3 / 10);
        let events_h = if body.height >= 26 { 5 } else { 3 };
        let [argo_a, nodes_a, flows_a, events_a] = Layout::vertical([
            Constraint::Length(argo_h),
            Constraint::Length(nodes_h),
            Constraint::Min(3),
            Constraint::Length(events_h),
        ])
        .areas(body);
        argo::draw(frame, argo_a, state, theme);
        nodes::draw(frame, nodes_a, state, theme);
        flows::draw(frame, flows_a, state, theme);
        overlays::events(frame, events_a, state, theme);
    }

    if state.ui.preflight_open {
        overlays::preflight(frame, body, state, theme);
    }
    if let Some(stage) = state.ui.preview_stage {
        overlays::preview(frame, body, state, stage, theme);
    }
    if state.ui.help {
        overlays::help(frame, body, state, theme);
    }
    if let Some(p) = &state.ui.confirm {
        overlays::confirm(frame, body, p, theme);
    }
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

fn argo_height(state: &AppState, cap: u16) -> u16 {
    let expanded =
        state.ui.expanded_app.as_ref().and_then(|a| state.apps.get(a)).map_or(0, |a| a.resources.len().min(12) as u16);
    (state.apps.len() as u16 + expanded + 3).clamp(4, cap.max(4))
}

#[cfg(test)]
mod snapshot_tests;
