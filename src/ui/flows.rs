//! The Flows pane: the live stream like `hubble observe` compact, coloured by verdict, with the
//! counters; pause freezes the view while the buffer and counters keep going. Marker rows (a gap
//! after a reconnect, lost events) are drawn as what they are, never as flows.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::Theme;
use super::common::{age, framed, pane};
use super::flowline;
use crate::app::flowview::ViewRow;
use crate::app::lists::Drawn;
use crate::app::state::{AppState, Focus, Marker};
use crate::hubble::format::flow_row;

/// The rows the pane shows, newest last (see [`crate::app::flowview::view_rows`]).
pub fn visible(state: &AppState, rows: usize) -> Vec<ViewRow> {
    crate::app::flowview::view_rows(state, rows)
}

/// A marker row: its text between rules, so it never reads as a flow (also without colour).
fn marker_line<'a>(m: &Marker, theme: &Theme) -> Line<'a> {
    let style = match m {
        Marker::Gap { .. } => theme.bad(),
        Marker::Lost { .. } => theme.warn(),
    };
    Line::from(Span::styled(format!("── {} ──", m.text()), style.add_modifier(Modifier::BOLD)))
}

fn relay_line<'a>(state: &AppState, theme: &Theme) -> Line<'a> {
    let r = &state.relay;
    match (&r.connected_since, &r.last_error) {
        (Some(_), _) => Line::from(Span::styled(
            format!(
                " relay {} · last flow {} ",
                r.address,
                r.last_flow.map_or_else(|| "—".into(), |t| age(state.now, t) + " ago")
            ),
            theme.ok(),
        )),
        (None, Some(e)) => {
            let retry = r.next_retry.map_or_else(String::new, |t| format!(" in {}", age(t, state.now)));
            Line::from(Span::styled(
                format!(" relay DOWN: {} · retry {}{retry} ", super::common::fit(e, 40), r.attempts),
                theme.bad(),
            ))
        }
        (None, None) => Line::from(Span::styled(" relay connecting… ", theme.warn())),
    }
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme, drawn: &mut Drawn) {
    let focused = state.ui.focus == Focus::Flows;
    let block = framed(pane("Flows", focused, relay_line(state, theme), theme), frame);
    let inner = block.inner(area);
    let inner_h = inner.height.saturating_sub(1) as usize;
    let mut lines = Vec::with_capacity(inner_h + 1);

    let (rate, drops) = match state.flow_rates() {
        Some((f, d)) => (format!("{f:.0}/s"), format!("{d:.1}/s")),
        None => ("?/s".into(), "?/s".into()),
    };
    let mut status = vec![
        Span::raw(format!("{rate} flows · ")),
        Span::styled(
            format!("{drops} drops"),
            if drops.starts_with("0.0") || drops.starts_with('?') { Style::new() } else { theme.bad() },
        ),
        Span::raw(format!(
            " · lost {} · buf {}/{}",
            state.relay.lost_events,
            state.flows.rows.len(),
            state.flows.capacity
        )),
    ];
    if state.flows.gaps > 0 {
        status.push(Span::styled(format!(" · gaps {}", state.flows.gaps), theme.bad()));
    }
    if state.relay.dropped_locally > 0 {
        status
            .push(Span::styled(format!(" · {} not shown (cockpit behind)", state.relay.dropped_locally), theme.bad()));
    }
    if state.flows.paused() {
        let new = state.flows.new_since_pause();
        let text = if new > 0 { format!(" · PAUSED (+{new} new)") } else { " · PAUSED".into() };
        status.push(Span::styled(text, theme.warn().add_modifier(Modifier::BOLD)));
    }
    if state.ui.flow_scroll > 0 {
        status.push(Span::styled(format!(" · ↑{}", state.ui.flow_scroll), theme.warn()));
    }
    if let Some(n) = &state.ui.follow_node {
        status.push(Span::styled(format!(" · node {n}"), theme.accent()));
    }
    if !state.ui.filter_text.is_empty() {
        status.push(Span::styled(format!(" · /{}", state.ui.filter_text), theme.accent()));
    }
    lines.push(Line::from(status));

    let shown = visible(state, inner_h);
    if shown.is_empty() {
        lines.push(Line::from(Span::styled(crate::app::flowview::empty_message(state), theme.dim())));
    }
    // The newest flow shown is the selection (↑ scrolls back): Enter opens it. Markers are drawn
    // as what they are and never selected.
    let flow_rows: Vec<_> = shown
        .iter()
        .filter_map(|r| match r {
            ViewRow::Flow(f) => Some(flow_row(f)),
            ViewRow::Marker(_) => None,
        })
        .collect();
    let (plan, labels) = flowline::plan_for(state, &flow_rows, inner.width as usize);
    let newest = shown.iter().rposition(|r| matches!(r, ViewRow::Flow(_)));
    let mut next_row = flow_rows.iter();
    for (k, r) in shown.iter().enumerate() {
        match r {
            ViewRow::Marker(m) => lines.push(marker_line(m, theme)),
            ViewRow::Flow(_) => {
                let Some(row) = next_row.next() else { continue };
                let mut line = flowline::line(row, labels.get(&row.node).map_or(&row.node, |l| l), &plan, theme);
                if focused && Some(k) == newest {
                    line = line.style(theme.selected());
                }
                lines.push(line);
            }
        }
    }
    if focused {
        drawn.flow = newest.and_then(|i| match &shown[i] {
            ViewRow::Flow(f) => Some(f.clone()),
            ViewRow::Marker(_) => None,
        });
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
