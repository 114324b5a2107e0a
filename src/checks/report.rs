//! The text report of `cutover preflight`: the checks worst first (the same order as the
//! cockpit's pre-flight overlay), every evidence line and the action, long lines wrapped at the
//! output's width instead of cut. The line that says why a drain will refuse (a pod without a
//! controller) is often the second or third evidence line, and a cut line hides the pod's name.

use std::cmp::Reverse;

use unicode_width::UnicodeWidthStr;

use super::{Check, Status};

/// Width of the report when stdout is no terminal (a file, a pipe, a CI log): fixed, so the same
/// checks give the same bytes wherever they are written.
pub const PIPE_WIDTH: usize = 100;

/// Narrowest width the report is laid out for; a narrower terminal gets lines this long.
const MIN_WIDTH: usize = 60;

/// Where evidence and action lines start (under the ID column).
const BODY_INDENT: usize = 9;

/// Where a wrapped evidence or action line goes on: two columns further, so a continuation is not
/// taken for the next evidence line.
const CONTINUATION_INDENT: usize = BODY_INDENT + 2;

/// The checks worst first: fail, unknown, warn, pass (`Status`'s order, most severe first); checks
/// of one status keep the order they were evaluated in. The one order for the text report and
/// the cockpit's pre-flight overlay.
pub fn worst_first(checks: &[Check]) -> Vec<&Check> {
    let mut sorted: Vec<&Check> = checks.iter().collect();
    // A stable sort: within a status the evaluation order (cluster, k3s, …, drain, access) stays.
    sorted.sort_by_key(|c| Reverse(c.status));
    sorted
}

/// The report at the fixed [`PIPE_WIDTH`].
pub fn format_table(checks: &[Check]) -> String {
    format_table_width(checks, PIPE_WIDTH)
}

/// The report with lines of at most `width` columns (where words allow: a single word longer
/// than a line, such as a URL, stays whole on a line of its own).
///
/// ```text
/// STATUS   ID              TITLE
/// fail     drain/worker-1  Drain readiness (kubectl drain --ignore-daemonsets)
///          no controller, the drain refuses (evicting would delete them for good):
///            default/netshoot
///          1 pod(s) to evict
///          → recreate pods without a controller under a Deployment, or delete them yourself
/// ```
pub fn format_table_width(checks: &[Check], width: usize) -> String {
    let width = width.max(MIN_WIDTH);
    let idw = checks.iter().map(|c| c.id.width()).max().unwrap_or(2).clamp(2, 40);
    let mut s = format!("{:<7}  {:<idw$}  TITLE\n", "STATUS", "ID");
    for c in worst_first(checks) {
        let head = format!("{:<7}  {:<idw$}  ", c.status.as_str(), c.id);
        push_wrapped(&mut s, &head, head.width(), &c.title, width);
        for ev in &c.evidence {
            push_wrapped(&mut s, &" ".repeat(BODY_INDENT), CONTINUATION_INDENT, ev, width);
        }
        if c.status != Status::Pass && !c.action.is_empty() {
            push_wrapped(&mut s, &format!("{}→ ", " ".repeat(BODY_INDENT)), CONTINUATION_INDENT, &c.action, width);
        }
    }
    s
}

/// The width for the report on this process's stdout: the terminal's columns when stdout is a
/// terminal whose size is known, else [`PIPE_WIDTH`].
pub fn stdout_width() -> usize {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return PIPE_WIDTH;
    }
    match crossterm::terminal::size() {
        Ok((cols, _)) if cols > 0 => usize::from(cols),
        _ => PIPE_WIDTH,
    }
}

/// Appends `text` wrapped to `width` columns: the first line after `first` (already laid out, its
/// width counted), the others indented by `indent`.
fn push_wrapped(out: &mut String, first: &str, indent: usize, text: &str, width: usize) {
    let first_w = first.width();
    // Room for at least a few words even after a very long ID.
    let room = |used: usize| width.saturating_sub(used).max(20);
    let mut line = first.to_string();
    let mut used = first_w;
    let mut limit = first_w + room(first_w);
    let mut empty = true;
    for word in text.split_whitespace() {
        let w = word.width();
        if !empty && used + 1 + w > limit {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(indent);
            used = indent;
            limit = indent + room(indent);
            empty = true;
        }
        if !empty {
            line.push(' ');
            used += 1;
        }
        line.push_str(word);
        used += w;
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, status: Status, evidence: &[&str], action: &str) -> Check {
        Check {
            id: id.into(),
            title: format!("title of {id}"),
            status,
            evidence: evidence.iter().map(|e| e.to_string()).collect(),
            action: action.into(),
        }
    }

    #[test]
    fn worst_first_keeps_evaluation_order_within_a_status() {
        let checks = [
            check("a", Status::Pass, &[], ""),
            check("b", Status::Warn, &[], ""),
            check("c", Status::Fail, &[], ""),
            check("d", Status::Unknown, &[], ""),
            check("e", Status::Warn, &[], ""),
            check("f", Status::Fail, &[], ""),
        ];
        let ids: Vec<&str> = worst_first(&checks).iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["c", "f", "d", "b", "e", "a"]);
    }

    #[test]
    fn every_evidence_line_is_shown_and_wrapped_not_cut() {
        let long = "no controller, the drain refuses (evicting would delete them for good): default/netshoot, \
                    default/debug-shell, monitoring/one-off-curl, kube-system/leftover-test-pod";
        let checks = [check("drain/worker-1", Status::Fail, &["1 pod(s) to evict", long], "recreate them")];
        let text = format_table_width(&checks, 60);
        assert!(!text.contains('…'), "{text}");
        for line in text.lines() {
            assert!(line.width() <= 60, "{line:?} is wider than 60:\n{text}");
        }
        // Every word of every evidence line is there, in order.
        let body: Vec<&str> = text.split_whitespace().collect();
        let words: Vec<&str> = long.split_whitespace().collect();
        let at = body.iter().position(|w| *w == words[0]).expect("first word");
        assert_eq!(&body[at..at + words.len()], &words[..], "{text}");
        assert!(text.contains("\n         1 pod(s) to evict\n"), "{text}");
        assert!(text.contains("\n           default/"), "continuation lines are indented further:\n{text}");
        assert!(text.contains("\n         → recreate them\n"), "{text}");
    }

    #[test]
    fn a_word_longer_than_the_line_stays_whole() {
        let url = format!("https://example.invalid/{}", "x".repeat(120));
        let checks = [check("k", Status::Warn, &[&format!("see {url} for more")], "")];
        let text = format_table_width(&checks, 80);
        assert!(text.lines().any(|l| l.trim() == url), "{text}");
        assert!(text.contains("\n           for more\n"), "{text}");
    }

    #[test]
    fn passing_checks_show_no_action_and_width_has_a_floor() {
        let checks = [check("ok", Status::Pass, &["fine"], "nothing to do")];
        let text = format_table_width(&checks, 10);
        assert!(!text.contains("nothing to do"), "{text}");
        assert_eq!(text, "STATUS   ID  TITLE\npass     ok  title of ok\n         fine\n");
    }
}
