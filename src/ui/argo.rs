//! The Argo pane: each Application's sync, health, operation, revision, reconcile age, conditions;
//! any app expandable into its resources (kind, sync, health, namespace/name). The list scrolls
//! with its selection.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::Theme;
use super::common::{age, fit, framed, freshness, pane, position};
use super::names::width;
use crate::app::lists::{ArgoRow, Drawn, argo_rows, offset};
use crate::app::model::AppSummary;
use crate::app::state::{AppState, Focus};
use crate::cluster::watch::SourceId;

fn sync_style(s: &str, t: &Theme) -> Style {
    match s {
        "Synced" => t.ok(),
        "OutOfSync" => t.warn(),
        _ => t.bad(),
    }
}

fn health_style(s: &str, t: &Theme) -> Style {
    match s {
        "Healthy" => t.ok(),
        "Progressing" | "Suspended" => t.warn(),
        _ => t.bad(),
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "?" } else { s }
}

/// Columns after the name: SYNC, HEALTH, and on wide panes OP, REV, AGE (the widest value each).
const NARROW: [usize; 2] = [9, 11];
const WIDE: [usize; 5] = [9, 11, 11, 9, 4];
/// The message column keeps at least this much before the name column grows.
const MESSAGE_MIN: usize = 14;

fn flags(app: &AppSummary) -> String {
    let mut flags = String::new();
    if app.automated {
        flags.push_str(if app.self_heal { " ⟳" } else { " a" });
    }
    if app.terminating {
        flags.push_str(" ✗del");
    }
    flags
}

/// `text` fitted and padded to `w` columns, then the column gap.
fn cell<'a>(text: &str, w: usize, style: Style) -> Span<'a> {
    let t = fit(text, w);
    let pad = w.saturating_sub(width(&t));
    Span::styled(format!("{t}{} ", " ".repeat(pad)), style)
}

/// A row padded to the pane's width, so a highlight covers all of it.
fn full_row(mut spans: Vec<Span<'static>>, w: usize) -> Line<'static> {
    let used: usize = spans.iter().map(Span::width).sum();
    spans.push(Span::raw(" ".repeat(w.saturating_sub(used))));
    Line::from(spans)
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme, drawn: &mut Drawn) {
    let focused = state.ui.focus == Focus::Argo;
    let list = argo_rows(state);
    let inner = framed(Block::new().borders(Borders::ALL), frame).inner(area);
    let height = inner.height.saturating_sub(1) as usize;
    let selected = state.ui.selected_app.min(list.len().saturating_sub(1));
    let first = offset(state.ui.view.argo_offset, selected, list.len(), height);
    drawn.argo_offset = first;
    drawn.argo_rows = height;
    if focused {
        drawn.argo = list.get(selected).cloned();
    }
    let title = format!("Argo CD{}", position(first, height, list.len()));
    let block = framed(pane(&title, focused, freshness(state, &[SourceId::Applications], theme), theme), frame);

    // The name column is as wide as the longest name (or resource kind), before the message.
    let total = inner.width as usize;
    let wide = total >= 100;
    let others: &[usize] = if wide { &WIDE } else { &NARROW };
    let fixed = others.iter().sum::<usize>() + others.len() + 1;
    let flag_w = state.apps.values().map(|a| width(&flags(a))).max().unwrap_or(0);
    let need = list
        .iter()
        .map(|r| match r {
            ArgoRow::App(a) => width(a) + flag_w,
            ArgoRow::Resource { kind, .. } => 4 + width(kind),
        })
        .max()
        .unwrap_or(3)
        .max(3);
    let name_w = need.min(total.saturating_sub(fixed + MESSAGE_MIN)).max(8);
    let msg_w = total.saturating_sub(fixed + name_w);
    let app_names: Vec<&str> = state.apps.keys().map(String::as_str).collect();
    let labels: std::collections::HashMap<&str, String> =
        app_names.iter().copied().zip(crate::ui::names::labels(&app_names, name_w.saturating_sub(flag_w))).collect();

    let mut lines = Vec::new();
    let last = if state.ui.expanded_app.is_some() { "MESSAGE · resource NAMESPACE/NAME" } else { "MESSAGE" };
    let mut header = vec![cell("APP", name_w, theme.dim()), cell("SYNC", others[0], theme.dim())];
    header.push(cell("HEALTH", others[1], theme.dim()));
    if wide {
        header.extend(["OP", "REV", "AGE"].iter().zip(&others[2..]).map(|(h, w)| cell(h, *w, theme.dim())));
    }
    header.push(Span::styled(last, theme.dim()));
    lines.push(Line::from(header));
    if list.is_empty() {
        let msg = match &state.sources.get(&SourceId::Applications).map(|s| &s.state) {
            Some(crate::app::state::SourceState::Failing { problem, .. }) => problem.message().to_string(),
            _ => "no Applications in the Argo CD namespace (yet)".into(),
        };
        lines.push(Line::from(Span::styled(msg, theme.dim())));
    }
    for (i, r) in list.iter().enumerate().skip(first).take(height) {
        let spans = match r {
            ArgoRow::App(name) => {
                let Some(app) = state.apps.get(name) else { continue };
                let label = labels.get(name.as_str()).cloned().unwrap_or_else(|| name.clone());
                app_row(app, &label, state, theme, name_w, others, msg_w)
            }
            ArgoRow::Resource { app, kind, namespace, name } => {
                let res = state.apps.get(app).and_then(|a| {
                    a.resources.iter().find(|x| &x.kind == kind && &x.namespace == namespace && &x.name == name)
                });
                let (sync, health) = res.map_or(("", ""), |x| (x.status.as_str(), x.health.as_str()));
                let object = if namespace.is_empty() { name.clone() } else { format!("{namespace}/{name}") };
                // The object's name takes the OP, REV and AGE columns too: resources have none.
                let room = total.saturating_sub(name_w + others[0] + others[1] + 3);
                vec![
                    cell(&format!("  └ {kind}"), name_w, Style::new()),
                    cell(or_unknown(sync), others[0], sync_style(sync, theme)),
                    cell(or_unknown(health), others[1], health_style(health, theme)),
                    Span::raw(fit(&object, room)),
                ]
            }
        };
        let mut line = full_row(spans, total);
        if focused && i == selected {
            line = line.style(theme.selected());
        }
        lines.push(line);
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn app_row(
    app: &AppSummary,
    label: &str,
    state: &AppState,
    theme: &Theme,
    name_w: usize,
    others: &[usize],
    msg_w: usize,
) -> Vec<Span<'static>> {
    // The most important message: a condition (e.g. ComparisonError) beats the op message.
    let message = app
        .conditions
        .first()
        .map(|(t, m)| format!("{t}: {m}"))
        .or_else(|| (!app.op_message.is_empty()).then(|| app.op_message.clone()))
        .or_else(|| (!app.health_message.is_empty()).then(|| app.health_message.clone()))
        .unwrap_or_default();
    let msg_style = if app.conditions.is_empty() { Style::new() } else { theme.bad() };
    let flags = flags(app);
    let pad = name_w.saturating_sub(width(label) + width(&flags));
    let mut spans = vec![
        Span::raw(label.to_string()),
        Span::styled(format!("{flags}{} ", " ".repeat(pad)), theme.dim()),
        cell(or_unknown(&app.sync), others[0], sync_style(&app.sync, theme)),
        cell(or_unknown(&app.health), others[1], health_style(&app.health, theme)),
    ];
    if others.len() > 2 {
        let rev = app.chart.as_ref().map(|(_, v)| v.clone()).unwrap_or_else(|| app.revision.chars().take(7).collect());
        let reconciled = app.reconciled_at.map_or_else(|| "?".into(), |t| age(state.now, t));
        spans.extend([
            cell(&app.op_phase, others[2], Style::new()),
            cell(&rev, others[3], Style::new()),
            cell(&reconciled, others[4], Style::new()),
        ]);
    }
    spans.push(Span::styled(fit(&message, msg_w.max(8)), msg_style));
    spans
}
