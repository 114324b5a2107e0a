//! One flow as a line of the Flows pane, fitted to the pane's width. Source, destination and
//! verdict are always on the line; the other columns are added, most useful first, while they fit:
//! the drop reason, the node, the time, the type, the summary. When everything fits on a wide pane,
//! the line is `hubble observe`'s compact layout.

use std::collections::{BTreeSet, HashMap};

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::Theme;
use super::common::fit;
use super::names::{labels, width};
use crate::app::state::AppState;
use crate::hubble::format::{FlowRow, VerdictKind};

const VERDICT_W: usize = 9;
/// Node labels when the full names do not fit (`…cp1`, `…w1`).
const SHORT_NODE: usize = 8;

/// Which columns the pane's lines carry (the same for every line, so they align).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plan {
    /// `hubble observe` compact order, with identities.
    hubble: bool,
    time: bool,
    /// Width of the node column, 0 for none; whether it holds the short labels.
    node_w: usize,
    short_nodes: bool,
    /// Widths src and dst are cut to (0 = in full).
    src_w: usize,
    dst_w: usize,
    /// The drop reason on drop lines; the type on every line.
    reason: bool,
    kind: bool,
    summary: bool,
}

/// The plan for the pane's rows, and the short node labels when the plan uses them (the same
/// labels whatever rows are on screen: computed over every known node).
pub fn plan_for(state: &AppState, rows: &[FlowRow], w: usize) -> (Plan, HashMap<String, String>) {
    let mut names: BTreeSet<&str> = state.nodes.keys().map(String::as_str).collect();
    names.extend(rows.iter().map(|r| r.node.as_str()));
    let names: Vec<&str> = names.into_iter().collect();
    let short: HashMap<String, String> = names.iter().map(|n| n.to_string()).zip(labels(&names, SHORT_NODE)).collect();
    let full_w = rows.iter().map(|r| width(&r.node)).max().unwrap_or(0);
    let short_w = rows.iter().map(|r| short.get(&r.node).map_or(0, |l| width(l))).max().unwrap_or(0);
    let plan = plan(rows, w, full_w, short_w);
    (plan, if plan.short_nodes { short } else { HashMap::new() })
}

fn summary(row: &FlowRow) -> String {
    if row.summary.is_empty() { String::new() } else { format!(" ({})", row.summary) }
}

/// Chooses the columns for `rows` in `w` columns. `node_full` / `node_short` are the widest node
/// name and label.
pub fn plan(rows: &[FlowRow], w: usize, node_full: usize, node_short: usize) -> Plan {
    let max = |f: &dyn Fn(&FlowRow) -> usize| rows.iter().map(f).max().unwrap_or(0);
    let src = max(&|r| width(&r.src));
    let dst = max(&|r| width(&r.dst));
    let reason = max(&|r| if r.is_drop { width(&r.type_text) + 1 } else { 0 });
    let kind = max(&|r| width(&r.type_text) + 1);
    let summ = max(&|r| width(&summary(r)));
    let hubble_w = 13
        + node_full.max(12)
        + 1
        + max(&|r| width(&r.src) + width(&r.src_identity) + width(&r.dst) + width(&r.dst_identity) + 8)
        + kind
        + max(&|r| width(&r.verdict))
        + summ;
    if w >= 140 && hubble_w <= w {
        return Plan {
            hubble: true,
            time: true,
            node_w: node_full.max(12),
            kind: true,
            summary: true,
            ..Plan::default()
        };
    }
    let base = VERDICT_W + 1 + src + 4 + dst;
    if base > w {
        // Even alone they do not fit: cut both, the shorter keeps what it needs.
        let room = w.saturating_sub(VERDICT_W + 1 + 4).max(2);
        let half = room / 2;
        let (src_w, dst_w) = if src <= half {
            (src, room - src)
        } else if dst <= half {
            (room - dst, dst)
        } else {
            (half, room - half)
        };
        return Plan { src_w: src_w.max(1), dst_w: dst_w.max(1), ..Plan::default() };
    }
    let mut left = w - base;
    let mut p = Plan::default();
    let mut take = |cost: usize| {
        let ok = cost <= left;
        if ok {
            left -= cost;
        }
        ok
    };
    p.reason = reason > 0 && take(reason);
    if node_full > 0 && take(node_full + 1) {
        p.node_w = node_full;
    } else if node_short > 0 && take(node_short + 1) {
        (p.node_w, p.short_nodes) = (node_short, true);
    }
    p.time = take(9);
    p.kind = take(kind.saturating_sub(if p.reason { reason } else { 0 }));
    p.summary = take(summ);
    p
}

/// Cuts `pod:port` keeping the port (`kube-system/coredns-67…:53`): the port says what the flow
/// was for, the end of a pod name rarely does.
fn cut_host(s: &str, w: usize) -> String {
    if width(s) <= w {
        return s.to_string();
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) => {
            if w > port.len() + 2 { format!("{}:{port}", fit(host, w - port.len() - 1)) } else { fit(s, w) }
        }
        _ => fit(s, w),
    }
}

/// The line for one flow.
pub fn line(row: &FlowRow, node: &str, plan: &Plan, theme: &Theme) -> Line<'static> {
    let style = match row.verdict_kind {
        VerdictKind::Dropped | VerdictKind::Error => theme.bad(),
        VerdictKind::Forwarded | VerdictKind::Redirected | VerdictKind::Translated => Style::new(),
        VerdictKind::Audit | VerdictKind::Traced => theme.warn(),
        VerdictKind::Unknown => theme.dim(),
    };
    // `Jan _2 15:04:05.000`: the date is noise on a live screen; keep the time.
    let time = row.time.get(7..).unwrap_or(&row.time).to_string();
    let node = Span::styled(format!("{:<w$} ", fit(node, plan.node_w.max(1)), w = plan.node_w), theme.accent());
    if plan.hubble {
        return Line::from(vec![
            Span::styled(time + " ", theme.dim()),
            node,
            Span::raw(row.src.clone()),
            Span::styled(format!(" {} ", row.src_identity), theme.dim()),
            Span::styled(format!("{} ", row.arrow), theme.dim()),
            Span::raw(row.dst.clone()),
            Span::styled(format!(" {} ", row.dst_identity), theme.dim()),
            Span::styled(row.type_text.clone() + " ", theme.dim()),
            Span::styled(row.verdict.clone(), style),
            Span::styled(summary(row), theme.dim()),
        ]);
    }
    let cut = |s: &str, w: usize| if w == 0 { s.to_string() } else { cut_host(s, w) };
    let mut spans = Vec::with_capacity(8);
    if plan.time {
        spans.push(Span::styled(time.get(..8).unwrap_or(&time).to_string() + " ", theme.dim()));
    }
    if plan.node_w > 0 {
        spans.push(node);
    }
    spans.extend([
        Span::styled(format!("{:<VERDICT_W$} ", fit(&row.verdict, VERDICT_W)), style),
        Span::raw(cut(&row.src, plan.src_w)),
        Span::styled(format!(" {} ", row.arrow), theme.dim()),
        Span::raw(cut(&row.dst, plan.dst_w)),
    ]);
    if (plan.reason && row.is_drop) || plan.kind {
        spans.push(Span::styled(format!(" {}", row.type_text), if row.is_drop { style } else { theme.dim() }));
    }
    if plan.summary {
        spans.push(Span::styled(summary(row), theme.dim()));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_host_keeps_its_port() {
        assert_eq!(cut_host("kube-system/coredns-6799fbcd5-9vzl2:53", 20), "kube-system/core…:53");
        assert_eq!(cut_host("media/jellyfin:8096", 40), "media/jellyfin:8096");
        assert_eq!(cut_host("fd00::1234:5678", 8), "fd…:5678");
        assert_eq!(cut_host("10.0.0.1:53", 4), "10.…");
    }
}
