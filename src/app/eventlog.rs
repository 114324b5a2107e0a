//! Grouping of repeated events: a message that repeats (the same text, or the same once its
//! numbers are left out — "hubble: 37 flow events lost on relay") within a minute of the last one
//! is counted on one line instead of pushing everything else out of the bounded log.

use std::collections::VecDeque;

use jiff::SignedDuration;

use super::state::LogLine;

/// How far back a repeat is looked for (lines), and how recent its group must be.
const LOOKBACK: usize = 8;
const WINDOW: SignedDuration = SignedDuration::from_secs(60);

/// The text with its stand-alone numbers (`37`, `(3)`, `12,`) replaced by `#`. Numbers inside
/// words are kept — `homelab-w1` and `homelab-w2` are different nodes, `10.0.0.1` an address.
pub fn shape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let core = word.trim_matches(|c: char| "()[],;:".contains(c));
        if !core.is_empty() && core.bytes().all(|b| b.is_ascii_digit()) {
            let start = word.find(core).unwrap_or(0);
            out.push_str(&word[..start]);
            out.push('#');
            out.push_str(&word[start + core.len()..]);
        } else {
            out.push_str(word);
        }
    }
    out
}

/// Appends `line`, or folds it into a recent line of the same level and shape: the group keeps
/// its first time and `seq`, takes the latest text and time, counts one more, and moves to the end
/// (the log stays in order of the latest time). At most `cap` lines are kept.
pub fn push(log: &mut VecDeque<LogLine>, line: LogLine, cap: usize) {
    let key = shape(&line.text);
    let recent = log.len().saturating_sub(LOOKBACK);
    let found = (recent..log.len()).rev().find(|&i| {
        let l = &log[i];
        l.level == line.level
            && line.at.duration_since(l.at) <= WINDOW
            && (l.text == line.text || shape(&l.text) == key)
    });
    if let Some(mut group) = found.and_then(|i| log.remove(i)) {
        group.count = group.count.saturating_add(line.count.max(1));
        group.at = line.at;
        group.text = line.text;
        log.push_back(group);
        return;
    }
    while log.len() >= cap.max(1) {
        log.pop_front();
    }
    log.push_back(line);
}

/// `×12 in 1m` for a group, empty for a single line.
pub fn repeat_suffix(line: &LogLine) -> String {
    if line.count <= 1 {
        return String::new();
    }
    let span = line.at.duration_since(line.first).as_secs().max(0);
    let within = match span {
        0 => String::new(),
        1..60 => format!(" in {span}s"),
        60..3600 => format!(" in {}m", span / 60),
        _ => format!(" in {}h", span / 3600),
    };
    format!(" ×{}{within}", line.count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::state::Level;
    use jiff::Timestamp;

    fn line(at: i64, level: Level, text: &str, seq: u64) -> LogLine {
        let at = Timestamp::from_second(at).unwrap();
        LogLine { at, level, text: text.into(), count: 1, first: at, seq }
    }

    #[test]
    fn numbers_are_left_out_but_names_are_not() {
        assert_eq!(shape("hubble: 37 flow events lost on relay"), "hubble: # flow events lost on relay");
        assert_eq!(shape("retry (3), then 12, done"), "retry (#), then #, done");
        assert_ne!(shape("lost on homelab-w1"), shape("lost on homelab-w2"));
        assert_ne!(shape("connect 10.0.0.1"), shape("connect 10.0.0.2"));
    }

    #[test]
    fn repeats_are_grouped_with_a_count_and_the_latest_time() {
        let mut log = VecDeque::new();
        push(&mut log, line(100, Level::Info, "connected", 1), 10);
        for (i, n) in [37, 12, 5].into_iter().enumerate() {
            let t = 100 + 20 * i as i64;
            push(&mut log, line(t, Level::Warn, &format!("hubble: {n} flow events lost on relay"), 2 + i as u64), 10);
            // Another message in between does not break the group.
            push(&mut log, line(t, Level::Warn, "hubble: homelab-w2: NODE_UNAVAILABLE", 10 + i as u64), 10);
        }
        assert_eq!(log.len(), 3, "{log:?}");
        let lost = log.iter().find(|l| l.text.contains("lost")).unwrap();
        assert_eq!(lost.count, 3);
        assert_eq!(lost.seq, 2, "the group keeps its identity");
        assert_eq!(lost.text, "hubble: 5 flow events lost on relay", "the latest text");
        assert_eq!(lost.at, Timestamp::from_second(140).unwrap());
        assert_eq!(repeat_suffix(lost), " ×3 in 40s");
        assert_eq!(repeat_suffix(&log[0]), "");
        // Ordered by the latest time: the groups that repeated come after "connected".
        assert_eq!(log[0].text, "connected");
    }

    #[test]
    fn different_levels_nodes_and_old_lines_are_not_grouped() {
        let mut log = VecDeque::new();
        push(&mut log, line(100, Level::Warn, "hubble: 3 flow events lost on homelab-w1", 1), 10);
        push(&mut log, line(101, Level::Warn, "hubble: 3 flow events lost on homelab-w2", 2), 10);
        push(&mut log, line(102, Level::Error, "hubble: 3 flow events lost on homelab-w2", 3), 10);
        push(&mut log, line(300, Level::Warn, "hubble: 9 flow events lost on homelab-w1", 4), 10);
        assert_eq!(log.len(), 4);
        assert!(log.iter().all(|l| l.count == 1));
    }

    #[test]
    fn the_log_stays_bounded() {
        let mut log = VecDeque::new();
        for i in 0..50 {
            push(&mut log, line(100, Level::Info, &format!("distinct message {i}x"), i), 20);
        }
        assert_eq!(log.len(), 20);
        assert_eq!(log.back().map(|l| l.seq), Some(49));
    }
}
