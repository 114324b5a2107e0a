//! The header line: context, cluster, API reachability, mode badge, stage, clock.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::Theme;
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
    let mut spans = vec![
        badge,
        Span::raw(" "),
        Span::styled("cutover", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(" ctx {} ", state.context)),
        Span::styled(format!("[{}] ", state.cluster), theme.dim()),
        api,
        Span::raw(" · stage "),
        Span::styled(state.derive_stage(), theme.accent()),
    ];
    // Where the journal says the runbook is (and whether the cluster agrees), once read.
    if let Some(pos) = state.runbook.position_text() {
        let style = if pos.contains("disagree") || pos.contains("interrupted") { theme.warn() } else { theme.dim() };
        spans.push(Span::styled(format!(" · {pos}"), style));
    }
    let used: usize = spans.iter().map(|s| s.width()).sum();
    // The clock goes right-aligned when it fits; the state of the cluster comes first.
    if used + clock.len() < area.width as usize {
        spans.push(Span::raw(" ".repeat(area.width as usize - used - clock.len())));
        spans.push(Span::styled(clock, theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
