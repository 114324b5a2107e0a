//! The Argo pane: each Application's sync, health, operation, revision, reconcile age, conditions;
//! the Cilium app expandable into its resources.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};

use super::Theme;
use super::common::{age, fit, freshness, pane};
use crate::app::model::AppSummary;
use crate::app::state::{AppState, Focus};
use crate::app::update::app_order;
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

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let focused = state.ui.focus == Focus::Argo;
    let block = pane("Argo CD", focused, freshness(state, &[SourceId::Applications], theme), theme);
    let wide = area.width >= 100;
    let mut rows = Vec::new();
    let order = app_order(state);
    if order.is_empty() {
        let msg = match &state.sources.get(&SourceId::Applications).map(|s| &s.state) {
            Some(crate::app::state::SourceState::Failing { problem, .. }) => problem.message().to_string(),
            _ => "no Applications in the Argo CD namespace (yet)".into(),
        };
        rows.push(Row::new(vec![Cell::from(Span::styled(msg, theme.dim()))]));
    }
    for (i, name) in order.iter().enumerate() {
        let Some(app) = state.apps.get(*name) else { continue };
        let mut row = app_row(app, state, theme, wide, area.width);
        if focused && i == state.ui.selected_app {
            row = row.style(theme.selected());
        }
        rows.push(row);
        if state.ui.expanded_app.as_deref() == Some(*name) {
            for r in app.resources.iter().take(12) {
                rows.push(Row::new(vec![
                    Cell::from(format!("  └ {}", fit(&format!("{}/{}", r.kind, r.name), 30))),
                    Cell::from(Span::styled(or_unknown(&r.status).to_string(), sync_style(&r.status, theme))),
                    Cell::from(Span::styled(r.health.clone(), health_style(&r.health, theme))),
                ]));
            }
            if app.resources.len() > 12 {
                rows.push(Row::new(vec![Cell::from(format!("  … {} more", app.resources.len() - 12))]));
            }
        }
    }
    let widths: Vec<Constraint> = if wide {
        vec![
            Constraint::Length(22),
            Constraint::Length(10),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(5),
            Constraint::Min(10),
        ]
    } else {
        vec![Constraint::Length(18), Constraint::Length(10), Constraint::Length(12), Constraint::Min(8)]
    };
    let header = if wide {
        Row::new(vec!["APP", "SYNC", "HEALTH", "OP", "REV", "AGE", "MESSAGE"])
    } else {
        Row::new(vec!["APP", "SYNC", "HEALTH", "MESSAGE"])
    }
    .style(theme.dim());
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

fn app_row<'a>(app: &'a AppSummary, state: &AppState, theme: &Theme, wide: bool, width: u16) -> Row<'a> {
    let mut flags = String::new();
    if app.automated {
        flags.push_str(if app.self_heal { " ⟳" } else { " a" });
    }
    if app.terminating {
        flags.push_str(" ✗del");
    }
    // The most important message: a condition (e.g. ComparisonError) beats the op message.
    let message = app
        .conditions
        .first()
        .map(|(t, m)| format!("{t}: {m}"))
        .or_else(|| (!app.op_message.is_empty()).then(|| app.op_message.clone()))
        .or_else(|| (!app.health_message.is_empty()).then(|| app.health_message.clone()))
        .unwrap_or_default();
    let msg_style = if app.conditions.is_empty() { Style::new() } else { theme.bad() };
    let name = Cell::from(Line::from(vec![Span::raw(fit(&app.name, 18)), Span::styled(flags, theme.dim())]));
    let sync = Cell::from(Span::styled(or_unknown(&app.sync).to_string(), sync_style(&app.sync, theme)));
    let health = Cell::from(Span::styled(or_unknown(&app.health).to_string(), health_style(&app.health, theme)));
    if wide {
        let rev = app.chart.as_ref().map(|(_, v)| v.clone()).unwrap_or_else(|| app.revision.chars().take(7).collect());
        let reconciled = app.reconciled_at.map_or_else(|| "?".into(), |t| age(state.now, t));
        let msg_w = (width as usize).saturating_sub(22 + 10 + 12 + 10 + 9 + 5 + 9);
        Row::new(vec![
            name,
            sync,
            health,
            Cell::from(app.op_phase.clone()),
            Cell::from(fit(&rev, 9)),
            Cell::from(reconciled),
            Cell::from(Span::styled(fit(&message, msg_w.max(10)), msg_style)),
        ])
    } else {
        let msg_w = (width as usize).saturating_sub(18 + 10 + 12 + 6);
        Row::new(vec![name, sync, health, Cell::from(Span::styled(fit(&message, msg_w.max(8)), msg_style))])
    }
}
