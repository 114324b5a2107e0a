//! Footer (key hints, filter prompt), events pane, help overlay (generated from the keymap) and
//! the confirm dialog.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::Theme;
use super::common::{fit, framed, pane, position, wrap};
use crate::app::action::Pending;
use crate::app::keymap::{KEYMAP, Scope};
use crate::app::lists::{Drawn, event_index, offset};
use crate::app::state::{AppState, Focus, Level, LogLine, Mode};

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
        // The keys first: on a narrow terminal the explanation is what gets cut.
        let text = "y quits anyway · any other key stays · an operation is running (journaled as interrupted)";
        Line::from(Span::styled(fit(text, area.width as usize), theme.warn()))
    } else if let Some(keys) = overlay_keys(state) {
        Line::from(Span::styled(fit(keys, area.width as usize), theme.warn()))
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

/// The keys of the open scrolling overlay, for the footer.
fn overlay_keys(state: &AppState) -> Option<&'static str> {
    if state.ui.view.flow_detail.is_some() {
        Some("↑↓ PgUp PgDn Home End scroll · any other key closes · q quits")
    } else if state.ui.view.events_open {
        Some("↑↓ PgUp PgDn Home End select an event · any other key closes · q quits")
    } else if state.ui.help {
        Some("↑↓ PgUp PgDn Home End scroll · any other key closes · q quits")
    } else if state.ui.preview_stage.is_some() {
        Some("1 / 2 stage · ↑↓ PgUp PgDn scroll · any other key closes · q quits")
    } else if state.ui.preflight_open {
        Some("↑↓ PgUp PgDn scroll · p runs again · any other key closes · q quits")
    } else {
        None
    }
}

fn level_style(level: Level, theme: &Theme) -> Style {
    match level {
        Level::Info => Style::new(),
        Level::Warn => theme.warn(),
        Level::Error => theme.bad(),
    }
}

/// One event on one line: time, text cut to fit, and the repeat count, which is never cut.
pub(super) fn event_line<'a>(l: &LogLine, w: usize, theme: &Theme) -> Line<'a> {
    let repeat = crate::app::eventlog::repeat_suffix(l);
    let text_w = w.saturating_sub(9 + crate::ui::names::width(&repeat));
    Line::from(vec![
        Span::styled(l.at.strftime("%H:%M:%S ").to_string(), theme.dim()),
        Span::styled(fit(&l.text, text_w), level_style(l.level, theme)),
        Span::styled(repeat, theme.accent()),
    ])
}

/// The Events pane: the newest events, or around the selected one; one line on a short terminal.
pub fn events(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme, drawn: &mut Drawn) {
    let focused = state.ui.focus == Focus::Events;
    let selected = event_index(state);
    if area.height == 1 {
        let label = if focused { Style::new().add_modifier(Modifier::BOLD) } else { theme.dim() };
        let hint = " · e all";
        let w = (area.width as usize).saturating_sub(8 + hint.len());
        let mut spans = vec![Span::styled("Events ", label)];
        if let Some(l) = selected.and_then(|i| state.log.get(i)) {
            let mut line = event_line(l, w, theme);
            if focused {
                line = line.style(theme.selected());
            }
            spans.extend(line.spans);
        }
        spans.push(Span::styled(hint, theme.dim()));
        (drawn.events_offset, drawn.events_rows) = (selected.unwrap_or(0), 1);
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
        return;
    }
    let inner = framed(Block::new().borders(Borders::ALL), frame).inner(area);
    let (h, w) = (inner.height as usize, inner.width as usize);
    let first = offset(state.ui.view.events_offset, selected.unwrap_or(0), state.log.len(), h);
    (drawn.events_offset, drawn.events_rows) = (first, h);
    let title = format!("Events{}", position(first, h, state.log.len()));
    let block = framed(pane(&title, focused, Line::from(Span::styled(" e all, in full ", theme.dim())), theme), frame);
    let lines: Vec<Line> = state
        .log
        .iter()
        .enumerate()
        .skip(first)
        .take(h)
        .map(|(i, l)| {
            let line = event_line(l, w, theme);
            if focused && Some(i) == selected { line.style(theme.selected()) } else { line }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

/// What the abbreviations and marks on screen mean (shown after the keys in `?`).
const LEGEND: &[(&str, &str)] = &[
    (
        "Argo CD",
        "⟳ automated sync with selfHeal · a automated · ✗del being deleted · OP last operation · REV chart \
         version or Git revision · AGE since the last reconcile · └ a resource of the expanded app: kind, sync, \
         health, namespace/name",
    ),
    (
        "Nodes",
        "SCHED cordon = unschedulable · CNI what this node runs, from its own evidence: flannel · restart? \
         (servers switched, not restarted here since) · starting · 3/7 (pods with a CiliumEndpoint / pods here) · \
         cilium · FLNL / FLANNEL flannel as the servers' node-args say (off* = servers say off, this node not \
         restarted since; off? = no restart evidence here) · KPRX / KPROXY kube-proxy · CILIUM the agent pod: phase, ✓ ready / ✗ not, \
         rN restarts · CN a CiliumNode exists · RELAY the relay's view: conn, unavail, gone, none · PODS pods on \
         the node · F/S, D/S flows and drops per second over the last minute · ? unknown (never shown as 0) · \
         …cp1 a name shortened without its shared prefix",
    ),
    (
        "Flows",
        "verdict, source <> destination (-> request, <- reply, <> direction unknown), then as the width allows: \
         drop reason, node, time, type, summary · the highlighted (newest shown) flow opens with Enter",
    ),
    ("Events", "×N in 1m: the same message N times (its numbers may differ) within that time; the latest is shown"),
    (
        "Frames",
        "top right: live · connecting… · STALE age · retry n · forbidden · not installed · 4–9/203 = rows shown \
         of the list's total",
    ),
];

pub fn help(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme, drawn: &mut Drawn) {
    let bindings = KEYMAP.iter().filter(|b| !b.help.is_empty()).count();
    // Two columns of keys on a short, wide terminal; one otherwise. The legend follows, full
    // width; everything scrolls.
    let two = bindings + 12 > area.height as usize && area.width >= 100;
    let width = if two { area.width.saturating_sub(4) } else { 96.min(area.width) };
    let inner_w = width.saturating_sub(2) as usize;
    let col_w = if two { inner_w / 2 } else { inner_w };
    // Groups of lines, one per scope, generated from the keymap; `true` where a line may start
    // the second column (a binding's wrapped lines stay together, a title stays with its keys).
    let mut keys: Vec<(Line, bool)> = Vec::new();
    let mut last_scope = None;
    for b in KEYMAP.iter().filter(|b| !b.help.is_empty()) {
        let mut first_of_group = false;
        if last_scope != Some(b.scope) {
            let title = match b.scope {
                Scope::Global => "Everywhere",
                Scope::Pane(Focus::Argo) => "Argo CD pane",
                Scope::Pane(Focus::Nodes) => "Nodes pane",
                Scope::Pane(Focus::Flows) => "Flows pane",
                Scope::Pane(Focus::Events) => "Events pane",
            };
            if !keys.is_empty() {
                keys.push((Line::from(""), false));
            }
            keys.push((Line::from(Span::styled(title, theme.accent())), true));
            last_scope = Some(b.scope);
            first_of_group = true;
        }
        let disabled = b.mutating && state.mode == Mode::ReadOnly;
        let style = if disabled { theme.dim() } else { Style::new() };
        let text = if disabled { format!("{} — disabled: read-only mode", b.help) } else { b.help.to_string() };
        let label = format!(" {:<10}", b.label);
        for (k, part) in wrap(&text, col_w.saturating_sub(12).max(10)).into_iter().enumerate() {
            let lead = if k == 0 { label.clone() } else { " ".repeat(11) };
            let line =
                Line::from(vec![Span::styled(lead, style.add_modifier(Modifier::BOLD)), Span::styled(part, style)]);
            keys.push((line, k == 0 && !first_of_group));
        }
    }
    let mut rows: Vec<(Line, Option<Line>)> = if two {
        let half = keys.len().div_ceil(2);
        let split = (half..keys.len()).find(|&i| keys[i].1).unwrap_or(keys.len());
        let mut right: Vec<Line> = keys.split_off(split).into_iter().map(|(l, _)| l).collect();
        if right.first().is_some_and(|l| l.width() == 0) {
            right.remove(0);
        }
        let n = keys.len().max(right.len());
        let mut left = keys.into_iter().map(|(l, _)| l);
        let mut right = right.into_iter();
        (0..n).map(|_| (left.next().unwrap_or_default(), Some(right.next().unwrap_or_default()))).collect()
    } else {
        keys.into_iter().map(|(l, _)| (l, None)).collect()
    };
    rows.push((Line::from(""), None));
    rows.push((Line::from(Span::styled("Columns and marks", theme.accent())), None));
    for (what, text) in LEGEND {
        let head = format!(" {what:<9} ");
        for (k, part) in wrap(text, inner_w.saturating_sub(head.len()).max(10)).into_iter().enumerate() {
            let lead = if k == 0 { head.clone() } else { " ".repeat(head.len()) };
            rows.push((
                Line::from(vec![Span::styled(lead, Style::new().add_modifier(Modifier::BOLD)), Span::raw(part)]),
                None,
            ));
        }
    }
    let height = (rows.len() as u16 + 2).min(area.height);
    let r = centered(area, width, height);
    let visible = r.height.saturating_sub(2) as usize;
    let max_scroll = rows.len().saturating_sub(visible);
    let scroll = state.ui.view.help_scroll.min(max_scroll);
    drawn.help_max_scroll = max_scroll;
    let title = format!(
        " keys{} · {}any other key closes ",
        position(scroll, visible, rows.len()),
        if max_scroll > 0 { "↑↓ PgUp PgDn scroll · " } else { "" }
    );
    frame.render_widget(Clear, r);
    let block = Block::new()
        .borders(Borders::ALL)
        .title(Line::from(Span::styled(title, Style::new().add_modifier(Modifier::BOLD))));
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let half = inner.width / 2;
    for (y, (left, right)) in rows.into_iter().skip(scroll).take(visible).enumerate() {
        let row = Rect { y: inner.y + y as u16, height: 1, ..inner };
        match right {
            Some(right) => {
                frame.render_widget(Paragraph::new(left), Rect { width: half, ..row });
                frame.render_widget(Paragraph::new(right), Rect { x: row.x + half, width: row.width - half, ..row });
            }
            None => frame.render_widget(Paragraph::new(left), row),
        }
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
        let mut sorted: Vec<&crate::checks::Check> = checks.iter().collect();
        // Worst first; `Status` orders by severity.
        sorted.sort_by_key(|c| std::cmp::Reverse(c.status));
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
        Paragraph::new(shown).block(
            Block::new()
                .borders(Borders::ALL)
                .title(" pre-flight (read-only) · ↑↓ scroll · p again · any other key closes "),
        ),
        r,
    );
}

/// The validation overlay (`v`): the passive checks as `cutover validate` prints them.
pub fn validation(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let mut lines: Vec<Line> = Vec::new();
    let active = state.running.as_ref().filter(|r| r.op == crate::app::action::Operation::Validate);
    let header = match (&state.validation, state.validating) {
        _ if active.is_some() => {
            let r = active.map(|r| (r.started, r.last.clone()));
            let (since, last) = r.unwrap_or((state.now, None));
            format!(
                "active checks running since {} (probe objects created, then deleted; x stops) · {}",
                since.strftime("%H:%M:%S"),
                last.as_deref().unwrap_or("starting")
            )
        }
        (_, Some(since)) => format!(
            "running since {} (reads only: nodes, pods, Services and the flow stream for the window)",
            since.strftime("%H:%M:%S")
        ),
        (Some((at, Ok(r))), None) => {
            let word = if r.exit_code() == crate::validate::EXIT_GREEN { "all green" } else { "NOT green" };
            format!("at {} · {word} · v runs again", at.strftime("%H:%M:%S"))
        }
        (Some((_, Err(e))), None) => format!("failed: {e}"),
        (None, None) => "not run yet · v runs it".to_string(),
    };
    lines.push(Line::from(Span::styled(header, theme.dim())));
    let w = area.width.saturating_sub(6) as usize;
    match &state.probe_leftovers {
        Some(Ok(left)) if !left.objects.is_empty() => {
            let read_only = state.mode == crate::app::state::Mode::ReadOnly;
            let line = format!("{} probe object(s) of earlier runs are left:", left.objects.len());
            lines.push(Line::from(Span::styled(fit(&line, w), theme.warn())));
            let quiet = crate::duration::format_short(left.quiet);
            let idle = if read_only {
                "idle; read-only: listed only".to_string()
            } else {
                "idle: a deletes them first, after its confirmation".to_string()
            };
            let recent = format!("created less than {quiet} ago, maybe a run in progress elsewhere: left alone");
            const SHOWN: usize = 4;
            for (runs, what) in [(&left.idle, idle), (&left.recent, recent)] {
                if runs.is_empty() {
                    continue;
                }
                let objects = left.of(runs);
                let head = format!("  run {} ({what}):", runs.join(", "));
                lines.push(Line::from(Span::styled(fit(&head, w), theme.warn())));
                for o in objects.iter().take(SHOWN) {
                    lines.push(Line::from(Span::styled(fit(&format!("    {o}"), w), theme.warn())));
                }
                if objects.len() > SHOWN {
                    let more =
                        format!("    and {} more (`cutover validate --passive` lists them all)", objects.len() - SHOWN);
                    lines.push(Line::from(Span::styled(fit(&more, w), theme.warn())));
                }
            }
        }
        Some(Err(e)) => {
            let line = format!("probe objects of earlier runs: unknown ({e})");
            lines.push(Line::from(Span::styled(fit(&line, w), theme.warn())));
        }
        _ => {}
    }
    if let Some((_, Ok(r))) = &state.validation {
        for l in crate::validate::output::text(r).lines() {
            let t = l.trim_start();
            let style = if t.starts_with("red ") {
                theme.bad()
            } else if t.starts_with("unknown ") {
                theme.warn()
            } else if t.starts_with("green ") {
                theme.ok()
            } else {
                Style::new()
            };
            lines.push(Line::from(Span::styled(fit(l, w), style)));
        }
    }
    let r = crate::ui::inset(area, 2, 1);
    let visible = r.height.saturating_sub(2) as usize;
    let scroll = state.ui.validate_scroll.min(lines.len().saturating_sub(visible));
    let shown: Vec<Line> = lines.into_iter().skip(scroll).collect();
    frame.render_widget(Clear, r);
    let title = if state.mode == crate::app::state::Mode::ReadOnly {
        " validation (read-only) · ↑↓ scroll · v again · any other key closes "
    } else {
        " validation · ↑↓ scroll · v again (reads only) · a with the active checks · other keys close "
    };
    let title = fit(title, r.width.saturating_sub(2) as usize);
    frame.render_widget(Paragraph::new(shown).block(Block::new().borders(Borders::ALL).title(title)), r);
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
    // The keys are in the footer too; here they come first so a narrow frame cuts the description.
    let title = format!(" 1/2 stage · ↑↓ PgUp PgDn · any other key closes · stage {stage} manifests, nothing written ");
    let title = fit(&title, r.width.saturating_sub(2) as usize);
    frame.render_widget(Paragraph::new(shown).block(Block::new().borders(Borders::ALL).title(title)), r);
}
