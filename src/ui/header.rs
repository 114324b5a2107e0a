//! The header line: context, cluster, API reachability, mode badge, stage, clock.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::Theme;
use super::common::fit;
use crate::app::state::{AppState, Mode};

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let badge = match state.mode {
        Mode::ReadOnly => Span::styled(" READ-ONLY ", theme.ok().add_modifier(Modifier::REVERSED | Modifier::BOLD)),
        Mode::Armed => Span::styled(" ARMED ", theme.bad().add_modifier(Modifier::REVERSED)),
    };
    let api = if state.api_unreachable() {
        Span::styled("API unreachable", theme.bad())
    } else if state.sources.values().all(|s| matches!(s.state, crate::app::state::SourceState::Connecting)) {
        Span::styled("API connecting", theme.warn())
    } else {
        Span::styled("API ok", theme.ok())
    };
    let clock = state.now.strftime("%H:%M:%S UTC").to_string();
    let width = area.width as usize;
    let mut spans = vec![
        badge,
        Span::raw(" "),
        Span::styled("cutover", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(" ctx {} ", state.context)),
    ];
    // The cluster's name when it says more than the context's.
    if state.cluster != state.context {
        spans.push(Span::styled(format!("[{}] ", state.cluster), theme.dim()));
    }
    spans.push(api);
    let used: usize = spans.iter().map(|s| s.width()).sum();
    let room = width.saturating_sub(used);
    let stage = format!(" · stage {}", state.derive_stage());
    // Where the journal says the runbook is (and whether the cluster agrees), once read.
    let position = state.runbook.position_text();
    let pos = position.as_deref().map(|pos| {
        let style = if pos.contains("disagree") || pos.contains("interrupted") { theme.warn() } else { theme.dim() };
        (format!(" · {pos}"), style)
    });
    let len = |t: &str| t.chars().count();
    let (stage, pos) = match pos {
        None => (fit(&stage, room), None),
        Some((full, style)) if len(&stage) + len(&full) <= room => (stage, Some((full, style))),
        Some((_, style)) => {
            // Narrow: both cut; the position keeps a third, a disagreement all it needs but for the
            // stage's first words (it matters more than where the journal is).
            let changed = state.runbook.disagreements();
            let short = match (changed.is_empty(), position.as_deref()) {
                (false, _) => format!(" · journal≠cluster: {}", changed.join(",")),
                (true, Some(p)) => format!(" · {}", p.trim_start_matches("runbook: ")),
                (true, None) => String::new(),
            };
            let share = if changed.is_empty() { (room / 3).max(24) } else { room.saturating_sub(12) };
            let pos_room = len(&short).min(share).min(room);
            let stage_room = room.saturating_sub(pos_room);
            let stage = fit(&stage, stage_room);
            let pos_room = room.saturating_sub(len(&stage));
            (stage, Some((fit(&short, pos_room), style)))
        }
    };
    if let Some(rest) = stage.strip_prefix(" · stage ") {
        spans.push(Span::raw(" · stage "));
        spans.push(Span::styled(rest.to_string(), theme.accent()));
    } else if !stage.is_empty() {
        spans.push(Span::raw(stage));
    }
    if let Some((text, style)) = pos.filter(|(t, _)| !t.trim().is_empty()) {
        spans.push(Span::styled(text, style));
    }
    let used: usize = spans.iter().map(|s| s.width()).sum();
    // The clock goes right-aligned when it fits; the state of the cluster comes first.
    if used + clock.len() < width {
        spans.push(Span::raw(" ".repeat(width - used - clock.len())));
        spans.push(Span::styled(clock, theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
