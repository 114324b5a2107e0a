//! Footer (key hints, filter prompt), events pane, help overlay (generated from the keymap) and
//! the confirm dialog.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::Theme;
use super::common::{fit, pane};
use crate::app::action::Pending;
use crate::app::keymap::{KEYMAP, Scope};
use crate::app::state::{AppState, Focus, Level, Mode};

pub fn footer(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let line = if let Some(input) = &state.ui.filter_input {
        Line::from(vec![
            Span::styled("/", theme.accent()),
            Span::raw(input.clone()),
            Span::styled("▏ Enter apply · Esc cancel · ns: pod: verdict: node: port: proto: !negate", theme.dim()),
        ])
    } else if let Some(p) = &state.ui.confirm {
        let hint = if p.needs_name() && !p.refused {
            "type the name · Enter confirm · Esc cancel"
        } else {
            "y confirm · any other key cancels"
        };
        Line::from(Span::styled(hint, theme.warn()))
    } else if state.ui.quit_confirm {
        Line::from(Span::styled(
            "an operation is running: y quits anyway (journaled as interrupted) · any other key stays",
            theme.warn(),
        ))
    } else {
        let pane_keys: Vec<String> = KEYMAP
            .iter()
            .filter(|b| b.scope == Scope::Pane(state.ui.focus) && !b.help.is_empty())
            .map(|b| {
                let off = b.mutating && state.mode == Mode::ReadOnly;
                format!("{} {}{}", b.label, b.help.split(" (").next().unwrap_or(b.help), if off { " [ro]" } else { "" })
            })
            .collect();
        let mut text = String::from("? help · Tab pane · / filter · Space pause · q quit");
        if let Some(r) = &state.running {
            let secs = state.now.duration_since(r.started).as_secs().max(0);
            let what = if r.cancelling { "cancelling" } else { "x cancels" };
            text = format!("▶ {} {}:{:02} · {what} · {text}", r.op.title(), secs / 60, secs % 60);
        }
        for k in pane_keys {
            text.push_str(" · ");
            text.push_str(&k);
        }
        if let Some(e) = &state.ui.filter_error {
            text = format!("filter error: {e} · {text}");
        }
        Line::from(Span::styled(fit(&text, area.width as usize), theme.dim()))
    };
    frame.render_widget(Paragraph::new(line), area);
}

pub fn events(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let focused = state.ui.focus == Focus::Events;
    let block = pane("Events", focused, Line::from(""), theme);
    let h = area.height.saturating_sub(2) as usize;
    let w = area.width.saturating_sub(2) as usize;
    let end = state.log.len().saturating_sub(state.ui.events_scroll);
    let start = end.saturating_sub(h);
    let lines: Vec<Line> = state
        .log
        .range(start..end)
        .map(|l| {
            let style = match l.level {
                Level::Info => Style::new(),
                Level::Warn => theme.warn(),
                Level::Error => theme.bad(),
            };
            Line::from(vec![
                Span::styled(l.at.strftime("%H:%M:%S ").to_string(), theme.dim()),
                Span::styled(fit(&l.text, w.saturating_sub(9)), style),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

pub fn help(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    // Groups of lines, one per scope, generated from the keymap.
    let mut groups: Vec<Vec<Line>> = Vec::new();
    let mut last_scope = None;
    for b in KEYMAP.iter().filter(|b| !b.help.is_empty()) {
        if last_scope != Some(b.scope) {
            let title = match b.scope {
                Scope::Global => "Everywhere",
                Scope::Pane(Focus::Argo) => "Argo CD pane",
                Scope::Pane(Focus::Nodes) => "Nodes pane",
                Scope::Pane(Focus::Flows) => "Flows pane",
                Scope::Pane(Focus::Events) => "Events pane",
            };
            groups.push(vec![Line::from(Span::styled(title, theme.accent()))]);
            last_scope = Some(b.scope);
        }
        let disabled = b.mutating && state.mode == Mode::ReadOnly;
        let style = if disabled { theme.dim() } else { Style::new() };
        let mut spans = vec![
            Span::styled(format!(" {:<10}", b.label), style.add_modifier(Modifier::BOLD)),
            Span::styled(b.help, style),
        ];
        if disabled {
            spans.push(Span::styled(" — disabled: read-only mode", theme.dim()));
        }
        if let Some(g) = groups.last_mut() {
            g.push(Line::from(spans));
        }
    }
    // What the Nodes pane's derived cells mean: shown when it fits next to the keys (the keys
    // come first). Short lines, so that they fit a column of the two-column layout too.
    let legend = |k: &'static str, text: &'static str| {
        Line::from(vec![Span::styled(format!(" {k:<10}"), Style::new().add_modifier(Modifier::BOLD)), Span::raw(text)])
    };
    let legend_group = vec![
        Line::from(Span::styled("Nodes pane columns", theme.accent())),
        legend("CNI", "flannel · restart? · starting · 3/7 · cilium"),
        legend("restart?", "servers switched; not restarted here since"),
        legend("3/7", "pods with a CiliumEndpoint / pods here"),
        legend("off*", "servers say off, not restarted here since"),
        legend("off?", "servers say off, no restart evidence here"),
    ];
    let title = Line::from(Span::styled("Keys (any key closes)", Style::new().add_modifier(Modifier::BOLD)));
    let flatten = |with_legend: bool| {
        let mut all = vec![title.clone()];
        for g in groups.iter().chain(with_legend.then_some(&legend_group)) {
            all.push(Line::from(""));
            all.extend(g.iter().cloned());
        }
        all
    };
    let rows = area.height.saturating_sub(2) as usize;
    // One column when it fits (with the legend if that still fits); otherwise two, split in
    // halves (a group may continue in the second column), with the legend if both still fit.
    let one = |with_legend: bool| flatten(with_legend).len() <= rows || area.width < 100;
    let columns: Vec<Vec<Line>> = if one(true) {
        vec![flatten(true)]
    } else if one(false) {
        vec![flatten(false)]
    } else {
        let with = flatten(true);
        let mut all = if with.len().div_ceil(2) <= rows { with } else { flatten(false) };
        let right = all.split_off(all.len().div_ceil(2));
        vec![all, right]
    };
    let height = columns.iter().map(Vec::len).max().unwrap_or(0) as u16 + 2;
    let width = if columns.len() == 1 { 86 } else { area.width.saturating_sub(4) };
    let r = centered(area, width, height);
    frame.render_widget(Clear, r);
    let block = Block::new().borders(Borders::ALL).title(" help ");
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let n = columns.len() as u32;
    let areas =
        ratatui::layout::Layout::horizontal((0..n).map(|_| ratatui::layout::Constraint::Ratio(1, n))).split(inner);
    let two = n > 1;
    for (col, a) in columns.into_iter().zip(areas.iter()) {
        // Two columns are for short terminals: truncate rather than wrap, so no line is pushed out.
        let p = Paragraph::new(col);
        frame.render_widget(if two { p } else { p.wrap(Wrap { trim: false }) }, *a);
    }
}

/// The confirmation: what will be sent (cut in the middle when the screen is short), then the
/// keys, which are always on screen.
pub fn confirm(frame: &mut Frame, area: Rect, pending: &Pending, theme: &Theme) {
    let width = 96.min(area.width);
    let inner_w = width.saturating_sub(2) as usize;
    let title = Line::from(Span::styled(format!("Confirm: {}", pending.op.title()), theme.bad()));
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let keys: Vec<Line> = if pending.refused {
        vec![Line::from(Span::styled("Nothing can be run. Any key closes.", bold))]
    } else if pending.needs_name() {
        let name = pending.op.object_name();
        vec![
            Line::from(Span::styled(format!("Type the node's name ({name}) and press Enter · Esc cancels"), bold)),
            Line::from(vec![Span::styled("> ", theme.accent()), Span::raw(pending.typed.clone()), Span::raw("▏")]),
        ]
    } else {
        vec![Line::from(Span::styled("Press y to run it. Any other key cancels.", bold))]
    };
    // Borders, title, blank, blank, keys.
    let fixed = 2 + 1 + 1 + 1 + keys.len();
    let room = (area.height as usize).saturating_sub(fixed).max(1);
    let body: Vec<String> = pending.preview.iter().map(|l| fit(l, inner_w)).collect();
    let shown: Vec<Line> = if body.len() <= room {
        body.into_iter().map(Line::from).collect()
    } else {
        let head = room.saturating_sub(2).max(1);
        let mut v: Vec<Line> = body[..head].iter().cloned().map(Line::from).collect();
        v.push(Line::from(Span::styled(format!("… {} more line(s) …", body.len() - head - 1), theme.dim())));
        if let Some(last) = body.last() {
            v.push(Line::from(last.clone()));
        }
        v
    };
    let mut lines = vec![title, Line::from("")];
    lines.extend(shown);
    lines.push(Line::from(""));
    lines.extend(keys);
    let r = centered(area, width, lines.len() as u16 + 2);
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines).block(Block::new().borders(Borders::ALL).border_style(theme.bad()).title(" confirm ")),
        r,
    );
}

/// The pre-flight overlay: the same checks as `cutover preflight`, worst first.
pub fn preflight(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    use crate::checks::Status;
    let mut lines: Vec<Line> = Vec::new();
    let header = match (&state.preflight, state.preflight_running) {
        (_, true) => "running… (reads only: lists and access reviews)".to_string(),
        (Some((at, Ok(checks))), false) => {
            let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
            format!(
                "at {} · {} fail · {} warn · {} unknown · {} pass · p runs again",
                at.strftime("%H:%M:%S"),
                count(Status::Fail),
                count(Status::Warn),
                count(Status::Unknown),
                count(Status::Pass)
            )
        }
        (Some((_, Err(e))), false) => format!("failed: {e}"),
        (None, false) => "not run yet · p runs it".to_string(),
    };
    lines.push(Line::from(Span::styled(header, theme.dim())));
    if let Some((_, Ok(checks))) = &state.preflight {
        // Worst first, the same order as `cutover preflight`.
        let sorted = crate::checks::worst_first(checks);
        let w = area.width.saturating_sub(8) as usize;
        for c in sorted {
            let style = match c.status {
                Status::Fail => theme.bad(),
                Status::Warn | Status::Unknown => theme.warn(),
                Status::Pass => theme.ok(),
            };
            lines.push(Line::from(vec![
                Span::styled(format!("{:<8}", c.status.as_str().to_uppercase()), style),
                Span::styled(format!("{} ", c.id), Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(fit(&c.title, w.saturating_sub(c.id.len() + 9))),
            ]));
            if let Some(ev) = c.evidence.first() {
                lines.push(Line::from(Span::styled(format!("        {}", fit(ev, w.saturating_sub(8))), theme.dim())));
            }
            if c.status != Status::Pass && !c.action.is_empty() {
                lines.push(Line::from(format!("        → {}", fit(&c.action, w.saturating_sub(10)))));
            }
        }
    }
    let r = crate::ui::inset(area, 2, 1);
    let visible = r.height.saturating_sub(2) as usize;
    let max_scroll = lines.len().saturating_sub(visible);
    let scroll = state.ui.preflight_scroll.min(max_scroll);
    let shown: Vec<Line> = lines.into_iter().skip(scroll).collect();
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(shown).block(Block::new().borders(Borders::ALL).title(" pre-flight (read-only) · Esc closes ")),
        r,
    );
}

/// The manifest preview: what `cutover render --stage N` would write, from the settings and the
/// cluster (API versions, nodes). Writes nothing.
pub fn preview(frame: &mut Frame, area: Rect, state: &AppState, stage: u8, theme: &Theme) {
    let mut lines: Vec<Line> = Vec::new();
    match &state.preview {
        Some((s, Ok(files))) if *s == stage => {
            for (path, contents) in files {
                lines.push(Line::from(Span::styled(format!("── {path}"), theme.accent().add_modifier(Modifier::BOLD))));
                lines.extend(contents.lines().map(|l| Line::from(l.to_string())));
                lines.push(Line::from(""));
            }
        }
        Some((s, Err(e))) if *s == stage => lines.push(Line::from(Span::styled(e.clone(), theme.bad()))),
        _ => lines.push(Line::from(Span::styled("rendering…", theme.dim()))),
    }
    let r = crate::ui::inset(area, 2, 1);
    let visible = r.height.saturating_sub(2) as usize;
    let scroll = state.ui.preview_scroll.min(lines.len().saturating_sub(visible));
    let shown: Vec<Line> = lines.into_iter().skip(scroll).collect();
    frame.render_widget(Clear, r);
    let title = format!(" stage {stage} manifests (preview, nothing written) · 1/2 stage · ↑↓ PgUp PgDn · Esc ");
    frame.render_widget(Paragraph::new(shown).block(Block::new().borders(Borders::ALL).title(title)), r);
}
