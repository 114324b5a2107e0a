//! Colours (NO_COLOR honoured), pane frames with the age of their data, small formatters.

use jiff::Timestamp;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders};

use crate::app::state::{AppState, SourceState};
use crate::cluster::watch::{SourceId, SourceProblem};

/// Styles; all plain when NO_COLOR is set (bold/reverse still mark focus and selection).
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Honours NO_COLOR (https://no-color.org): any non-empty value disables colour.
    pub fn from_env() -> Theme {
        Theme { color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color { Style::new().fg(c) } else { Style::new() }
    }
    pub fn ok(&self) -> Style {
        self.fg(Color::Green)
    }
    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }
    pub fn bad(&self) -> Style {
        if self.color {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }
    pub fn dim(&self) -> Style {
        if self.color { Style::new().fg(Color::DarkGray) } else { Style::new() }
    }
    pub fn accent(&self) -> Style {
        self.fg(Color::Cyan)
    }
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
}

/// A pane frame: title, focus marker and the freshness of its data on the right.
pub fn pane<'a>(title: &'a str, focused: bool, freshness: Line<'a>, theme: &Theme) -> Block<'a> {
    let title_style = if focused { Style::new().add_modifier(Modifier::BOLD) } else { Style::new() };
    let border = if focused { theme.accent() } else { theme.dim() };
    Block::new()
        .borders(Borders::ALL)
        .border_type(if focused { BorderType::Thick } else { BorderType::Plain })
        .border_style(border)
        .title(Line::from(Span::styled(format!(" {title} "), title_style)))
        .title_top(freshness.right_aligned())
}

/// "live", "STALE 42s old · retry 3", "forbidden", "not installed", "connecting…" for the sources
/// behind a pane (the first one that is not live wins).
pub fn freshness<'a>(state: &AppState, ids: &[SourceId], theme: &Theme) -> Line<'a> {
    for id in ids {
        let Some(src) = state.sources.get(id) else { continue };
        let span = match &src.state {
            SourceState::Live { .. } => continue,
            SourceState::Connecting => Span::styled(" connecting… ", theme.warn()),
            SourceState::Failing { problem: SourceProblem::Forbidden(_), .. } => {
                Span::styled(format!(" {id}: forbidden "), theme.bad())
            }
            SourceState::Failing { problem: SourceProblem::NotInstalled(_), .. } => {
                Span::styled(format!(" {id}: not installed "), theme.dim())
            }
            SourceState::Failing { attempts, last_good, .. } => Span::styled(
                format!(
                    " STALE {} · retry {attempts} ",
                    last_good.map_or_else(|| "no data".to_string(), |t| format!("{} old", age(state.now, t)))
                ),
                theme.bad(),
            ),
        };
        return Line::from(span);
    }
    Line::from(Span::styled(" live ", theme.ok()))
}

/// Compact age: 5s, 3m, 2h, 4d.
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let s = (now.as_second() - then.as_second()).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Truncates to `w` display columns with an ellipsis (wide characters counted as 2).
pub fn fit(s: &str, w: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    let total: usize = s.chars().map(|c| c.width().unwrap_or(0)).sum();
    if total <= w {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if used + cw + 1 > w {
            break;
        }
        out.push(c);
        used += cw;
    }
    out.push('…');
    out
}
