//! The runbook view (`b`): each stage and rollback with its steps and their states, the next
//! step marked, and the selected step in full (its gates and what it changes).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::Theme;
use super::common::{fit, position, wrap};
use crate::app::action::Operation;
use crate::app::lists::{Drawn, offset};
use crate::app::runbook::RunbookRow;
use crate::app::state::AppState;

fn state_style(state: &str, theme: &Theme) -> Style {
    match state {
        "done" => theme.ok(),
        "ready" | "running" => theme.accent(),
        "skip" | "skipped" => theme.dim(),
        "blocked" | "unavailable" | "interrupted" | "changed" | "cancelled" => theme.warn(),
        "failed" => theme.bad(),
        _ => Style::new(),
    }
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme, drawn: &mut Drawn) {
    frame.render_widget(Clear, area);
    let running = match state.running.as_ref().map(|r| &r.op) {
        Some(Operation::Step { id, .. }) => Some(id.as_str()),
        _ => None,
    };
    let view = &state.runbook;
    let rows = view.rows(running);
    let next = view.next(running).map(|r| r.id);
    let rollback = view.rollback_next(running).map(|r| r.id);
    let selected = view.selected.min(rows.len().saturating_sub(1));
    let inner_w = area.width.saturating_sub(2) as usize;

    // The selected step in full.
    let mut full: Vec<Line> = Vec::new();
    let pre = rows.get(selected).and_then(|r| match &view.read {
        Some(Ok(read)) => read.previews.iter().find(|p| p.step.id == r.id),
        _ => None,
    });
    if let (Some(row), Some(pre)) = (rows.get(selected), pre) {
        full.push(Line::from(vec![
            Span::styled(format!("{} ", row.id), Style::new().add_modifier(Modifier::BOLD)),
            Span::styled(format!("[{}] ", row.state), state_style(&row.state, theme)),
            Span::styled(crate::runbook::steps::kind_id(row.kind), theme.dim()),
        ]));
        full.extend(wrap(&row.title, inner_w).into_iter().map(Line::from));
        if !row.why.is_empty() {
            full.extend(wrap(&row.why, inner_w).into_iter().map(|l| Line::from(Span::styled(l, theme.dim()))));
        }
        // The step running now: the node step's node in work and its sub-step, the last line.
        if running == Some(row.id.as_str())
            && let Some(r) = state.running.as_ref()
        {
            if let Some(w) = &r.node_work {
                let text = format!("▶ {}: {}", w.node, w.phase);
                full.extend(wrap(&text, inner_w).into_iter().map(|l| Line::from(Span::styled(l, theme.accent()))));
            }
            if let Some(last) = &r.last {
                full.push(Line::from(Span::styled(fit(&format!("last: {last}"), inner_w), theme.dim())));
            }
        }
        // After a failure: what the cluster says now, and the ways on.
        if row.stopped() {
            if row.state != pre.state.word() {
                let now = match &pre.state {
                    crate::runbook::steps::StepState::Ready => "now: its gates hold; n runs it again".to_string(),
                    other => format!("now: {}: {}", other.word(), other.why()),
                };
                full.extend(
                    wrap(now.trim_end(), inner_w).into_iter().map(|l| Line::from(Span::styled(l, theme.warn()))),
                );
            }
            let step = view.runbook.as_ref().and_then(|rb| rb.find(&row.id)).map(|(_, s)| s);
            let skip = match step.map(crate::runbook::steps::skippable) {
                Some(Ok(())) => "S skip it (type its id; journaled)".to_string(),
                _ => "it cannot be skipped".to_string(),
            };
            let keys = if row.rollback {
                format!("keys: n/R retry · {skip}")
            } else {
                format!("keys: n retry · {skip} · R roll the stage back")
            };
            full.extend(wrap(&keys, inner_w).into_iter().map(|l| Line::from(Span::styled(l, theme.accent()))));
        }
        for g in &pre.gates {
            let (mark, style) = match g.state {
                crate::runbook::plan::GateState::Green => ("ok ", theme.ok()),
                crate::runbook::plan::GateState::Red => ("RED", theme.bad()),
                crate::runbook::plan::GateState::Unknown => ("?  ", theme.warn()),
            };
            let text = format!("{}: {}", crate::runbook::steps::gate_id(g.gate), g.evidence);
            full.push(Line::from(vec![
                Span::styled(format!("{mark} "), style),
                Span::raw(fit(&text, inner_w.saturating_sub(4))),
            ]));
        }
        for c in pre.changes.iter().take(6) {
            full.push(Line::from(Span::raw(fit(c, inner_w))));
        }
        if pre.changes.len() > 6 {
            full.push(Line::from(Span::styled(
                format!("… {} more lines in the preview (n)", pre.changes.len() - 6),
                theme.dim(),
            )));
        }
    }
    let full_h = (full.len() as u16 + 2).min(area.height / 2).max(3);
    let [list_a, full_a] = Layout::vertical([Constraint::Min(3), Constraint::Length(full_h)]).areas(area);

    // Stage headings and steps as one list, so the selected step is always on screen.
    enum Item<'r> {
        Heading(String),
        Step(usize, &'r RunbookRow),
    }
    let mut items: Vec<Item> = Vec::new();
    let mut last_stage = String::new();
    for (i, r) in rows.iter().enumerate() {
        if r.stage != last_stage {
            last_stage = r.stage.clone();
            items.push(Item::Heading(r.stage_title.clone()));
        }
        items.push(Item::Step(i, r));
    }
    let selected_item = items.iter().position(|it| matches!(it, Item::Step(i, _) if *i == selected)).unwrap_or(0);
    let h = list_a.height.saturating_sub(2) as usize;
    let first = offset(view.offset, selected_item, items.len(), h);
    (drawn.runbook_offset, drawn.runbook_rows) = (first, h);
    drawn.runbook_step = rows.get(selected).map(|r| r.id.clone());
    let mut lines: Vec<Line> = Vec::new();
    for it in items.iter().skip(first).take(h) {
        lines.push(match it {
            Item::Heading(t) => Line::from(Span::styled(fit(t, inner_w), theme.dim())),
            Item::Step(i, r) => row_line(r, *i == selected, next.as_deref(), rollback.as_deref(), inner_w, theme),
        });
    }
    if lines.is_empty() {
        let msg = match &view.read {
            None => "reading the runbook (journal, gates, Git)…".to_string(),
            Some(Err(e)) => format!("cannot read the runbook: {e}"),
            Some(Ok(_)) => "the runbook has no steps".to_string(),
        };
        lines.push(Line::from(Span::styled(msg, theme.dim())));
    }
    let reading = if view.reading { " · reading…" } else { "" };
    let dry = if view.dry_run { " · DRY RUN" } else { "" };
    let at = view.position_text().map(|p| format!(" · {}", p.trim_start_matches("runbook: "))).unwrap_or_default();
    let title = format!(
        " runbook{}{at}{dry}{reading} · n next · R rollback · x stop · r re-read · Esc ",
        position(first, h, items.len())
    );
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::new()
                .borders(Borders::ALL)
                .title(Line::from(Span::styled(title, Style::new().add_modifier(Modifier::BOLD)))),
        ),
        list_a,
    );
    frame
        .render_widget(Paragraph::new(full).block(Block::new().borders(Borders::ALL).title(" selected step ")), full_a);
}

fn row_line<'a>(
    r: &RunbookRow,
    selected: bool,
    next: Option<&str>,
    rollback: Option<&str>,
    w: usize,
    theme: &Theme,
) -> Line<'a> {
    let mark = if next == Some(r.id.as_str()) {
        "▶ "
    } else if rollback == Some(r.id.as_str()) {
        "↶ "
    } else {
        "  "
    };
    let state = format!("{:<11} ", r.state);
    let id = format!("{:<18} ", r.id);
    let rest = w.saturating_sub(2 + state.len() + id.len());
    let why = if r.why.is_empty() || matches!(r.state.as_str(), "ready") { r.title.clone() } else { r.why.clone() };
    let line = Line::from(vec![
        Span::raw(mark),
        Span::styled(state, state_style(&r.state, theme)),
        Span::raw(id),
        Span::styled(fit(&why, rest), theme.dim()),
    ]);
    if selected { line.style(theme.selected()) } else { line }
}
