//! Colours (NO_COLOR honoured), pane frames with the age of their data, small formatters.

use jiff::Timestamp;
use ratatui::Frame;
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

/// Terminals lower than this draw panes with only a top rule (title, freshness): the side and
/// bottom borders would cost four rows that 24-line terminals need for apps and flows.
pub const SHORT_HEIGHT: u16 = 30;

/// True on a short terminal (see [`SHORT_HEIGHT`]).
pub fn short(frame: &Frame) -> bool {
    frame.area().height < SHORT_HEIGHT
}

/// A pane's frame as the terminal's height allows: full borders, or only the top rule.
pub fn framed<'a>(block: Block<'a>, frame: &Frame) -> Block<'a> {
    if short(frame) { block.borders(Borders::TOP) } else { block }
}

/// ` 4–9/203` when a list shows only part of its rows (first shown, last shown, total).
pub fn position(offset: usize, shown: usize, len: usize) -> String {
    if len <= shown || shown == 0 {
        return String::new();
    }
    format!(" {}–{}/{len}", offset + 1, (offset + shown).min(len))
}

/// Wraps `text` into lines of at most `w` columns, breaking after spaces where it can and inside
/// words where it must (long pod names, JSON strings). Keeps leading indentation.
pub fn wrap(text: &str, w: usize) -> Vec<String> {
    use unicode_width::UnicodeWidthChar;
    let w = w.max(1);
    let mut out = Vec::new();
    for raw in text.split('\n') {
        let mut line = String::new();
        let mut used = 0;
        // Byte position in `line` just after the last space, and the width up to it.
        let mut brk: Option<(usize, usize)> = None;
        for c in raw.chars() {
            let cw = c.width().unwrap_or(0);
            if used + cw > w && used > 0 {
                match brk.filter(|(at, _)| *at < line.len()) {
                    Some((at, bw)) => {
                        let rest = line.split_off(at);
                        out.push(std::mem::take(&mut line));
                        line = rest;
                        used -= bw;
                    }
                    None => {
                        out.push(std::mem::take(&mut line));
                        used = 0;
                    }
                }
                brk = None;
            }
            line.push(c);
            used += cw;
            if c == ' ' {
                brk = Some((line.len(), used));
            }
        }
        out.push(line);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces_and_inside_long_words() {
        assert_eq!(wrap("hubble: 37 flow events lost", 12), ["hubble: 37 ", "flow events ", "lost"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\n\nb", 4), ["a", "", "b"]);
        assert_eq!(wrap("", 4), [""]);
        assert!(wrap("ノード-東京-01", 3).iter().all(|l| l.chars().count() <= 2));
    }

    #[test]
    fn position_only_when_the_list_is_cut() {
        assert_eq!(position(0, 9, 9), "");
        assert_eq!(position(3, 6, 203), " 4–9/203");
    }
}
