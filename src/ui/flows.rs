//! The Flows pane: the live stream like `hubble observe` compact, coloured by verdict, with the
//! counters; pause freezes the view while the buffer and counters keep going.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::Theme;
use super::common::{age, framed, pane};
use super::flowline;
use crate::app::lists::Drawn;
use crate::app::state::{AppState, Focus};
use crate::hubble::format::flow_row;
use crate::hubble::proto::flow::Flow;

/// The flows the pane shows, newest last: after pause/scroll offsets, node follow and filter.
/// Only these rows are decoded.
pub fn visible(state: &AppState, rows: usize) -> Vec<Flow> {
    let buf = &state.flows.flows;
    let skip_new =
        state.ui.paused_at_total.map_or(0, |p| state.flows.total.saturating_sub(p) as usize) + state.ui.flow_scroll;
    let mut out: Vec<Flow> = buf
        .iter()
        .rev()
        .skip(skip_new.min(buf.len()))
        .filter(|f| f.matches && state.ui.follow_node.as_deref().is_none_or(|n| &*f.node == n))
        .take(rows)
        .filter_map(|f| f.decode())
        .collect();
    out.reverse();
    out
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
            state.flows.flows.len(),
            state.flows.capacity
        )),
    ];
    if state.relay.dropped_locally > 0 {
        status
            .push(Span::styled(format!(" · {} not shown (cockpit behind)", state.relay.dropped_locally), theme.bad()));
    }
    if state.ui.paused_at_total.is_some() {
        status.push(Span::styled(" · PAUSED", theme.warn().add_modifier(Modifier::BOLD)));
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
        let why = if state.relay.connected_since.is_none() {
            "no relay connection: nothing is known about flows (not the same as no traffic)"
        } else if state.flows.flows.is_empty() {
            "connected; no flows yet (flows exist only on nodes where Cilium runs)"
        } else {
            "no buffered flow matches the filter"
        };
        lines.push(Line::from(Span::styled(why, theme.dim())));
    }
    // The newest row shown is the selection (↑ scrolls back): Enter opens it.
    let rows: Vec<_> = shown.iter().map(flow_row).collect();
    let (plan, labels) = flowline::plan_for(state, &rows, inner.width as usize);
    for (k, row) in rows.iter().enumerate() {
        let mut line = flowline::line(row, labels.get(&row.node).map_or(&row.node, |l| l), &plan, theme);
        if focused && k + 1 == rows.len() {
            line = line.style(theme.selected());
        }
        lines.push(line);
    }
    if focused {
        drawn.flow = shown.last().cloned().map(Box::new);
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
