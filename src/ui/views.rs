//! Full-screen views over the panes: all events (`e`) with the selected one in full, and one flow
//! in full (Enter on a flow), as `hubble observe -o dict` prints it plus every field it carries.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::Theme;
use super::common::{position, wrap};
use super::overlays::event_line;
use crate::app::lists::{Drawn, FlowDetail, event_index, offset};
use crate::app::state::{AppState, Level};
use crate::hubble::format::{FormatOptions, OutputFormat, write_dict};
use crate::hubble::proto::flow::Flow;

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

/// Every event, newest last, the selected one highlighted and, below, in full (wrapped).
pub fn events(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme, drawn: &mut Drawn) {
    frame.render_widget(Clear, area);
    let selected = event_index(state);
    let line = selected.and_then(|i| state.log.get(i));
    let inner_w = area.width.saturating_sub(2) as usize;
    // The selected event in full: when, how often, how bad, and the whole text.
    let mut full: Vec<Line> = Vec::new();
    if let Some(l) = line {
        let level = match l.level {
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
        };
        let when = if l.count > 1 {
            format!(
                "{} · {level} · {} times from {} to {}",
                l.at.strftime("%Y-%m-%d"),
                l.count,
                l.first.strftime("%H:%M:%S"),
                l.at.strftime("%H:%M:%S UTC")
            )
        } else {
            format!("{} · {level}", l.at.strftime("%Y-%m-%d %H:%M:%S UTC"))
        };
        full.push(Line::from(Span::styled(when, theme.dim())));
        full.extend(wrap(&l.text, inner_w).into_iter().map(Line::from));
    }
    // The list gets at least half; the full text what it needs of the rest.
    let full_h = (full.len() as u16 + 2).min(area.height / 2).max(3);
    let [list_a, full_a] = Layout::vertical([Constraint::Min(3), Constraint::Length(full_h)]).areas(area);

    let h = list_a.height.saturating_sub(2) as usize;
    let first = offset(state.ui.view.events_view_offset, selected.unwrap_or(0), state.log.len(), h);
    (drawn.events_view_offset, drawn.events_view_rows) = (first, h);
    let rows: Vec<Line> = state
        .log
        .iter()
        .enumerate()
        .skip(first)
        .take(h)
        .map(|(i, l)| {
            let line = event_line(l, inner_w, theme);
            if Some(i) == selected { line.style(theme.selected()) } else { line }
        })
        .collect();
    let title = format!(
        " events{} · ↑↓ PgUp PgDn Home End select · any other key closes ",
        position(first, h, state.log.len())
    );
    let list = if rows.is_empty() { vec![Line::from(Span::styled("no events yet", theme.dim()))] } else { rows };
    frame.render_widget(
        Paragraph::new(list).block(Block::new().borders(Borders::ALL).title(Line::from(Span::styled(title, bold())))),
        list_a,
    );
    frame.render_widget(
        Paragraph::new(full).block(Block::new().borders(Borders::ALL).title(" selected event, in full ")),
        full_a,
    );
}

/// The text of a flow in full: the `hubble observe -o dict` block, then every field the flow
/// carries (proto3 JSON, as `-o json` would print them).
pub fn flow_text(flow: &Flow) -> String {
    let mut text = String::new();
    let opts = FormatOptions { output: OutputFormat::Dict, print_node_name: true, ..FormatOptions::default() };
    write_dict(&mut text, flow, &opts);
    text.push_str("\nEvery field:\n");
    match serde_json::to_string_pretty(flow) {
        Ok(json) => text.push_str(&json),
        Err(e) => text.push_str(&format!("(cannot show the fields: {e})")),
    }
    text
}

/// The flow detail overlay: [`flow_text`], wrapped, scrollable.
pub fn flow_detail(frame: &mut Frame, area: Rect, detail: &FlowDetail, theme: &Theme, drawn: &mut Drawn) {
    let r = crate::ui::inset(area, 1, 0);
    let inner_w = r.width.saturating_sub(2) as usize;
    let lines: Vec<String> = wrap(&flow_text(&detail.flow), inner_w);
    let visible = r.height.saturating_sub(2) as usize;
    let max_scroll = lines.len().saturating_sub(visible);
    let scroll = detail.scroll.min(max_scroll);
    drawn.detail_max_scroll = max_scroll;
    let shown: Vec<Line> = lines
        .into_iter()
        .skip(scroll)
        .take(visible)
        .map(|l| match l.split_once(": ") {
            // The dict block's keys stand out.
            Some((k, v)) if !k.trim().is_empty() && k.trim().chars().all(|c| c.is_ascii_uppercase()) => {
                Line::from(vec![Span::styled(format!("{k}: "), theme.accent()), Span::raw(v.to_string())])
            }
            _ => Line::from(l),
        })
        .collect();
    let title = format!(
        " flow{} · ↑↓ PgUp PgDn Home End scroll · any other key closes ",
        position(scroll, visible, max_scroll + visible)
    );
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(shown).block(Block::new().borders(Borders::ALL).title(Line::from(Span::styled(title, bold())))),
        r,
    );
}
