//! The Flows pane: the live stream like `hubble observe` compact, coloured by verdict, with the
//! counters; pause freezes the view while the buffer and counters keep going.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::Theme;
use super::common::{age, pane};
use crate::app::state::{AppState, Focus, strip_cluster_prefix};
use crate::hubble::proto::flow::{Flow, Verdict};

/// The flows the pane shows, newest last: after pause/scroll offsets, node follow and filter.
pub fn visible(state: &AppState, rows: usize) -> Vec<&Flow> {
    let buf = &state.flows.flows;
    let skip_new =
        state.ui.paused_at_total.map_or(0, |p| state.flows.total.saturating_sub(p) as usize) + state.ui.flow_scroll;
    let mut out: Vec<&Flow> = buf
        .iter()
        .rev()
        .skip(skip_new.min(buf.len()))
        .filter(|f| state.ui.follow_node.as_deref().is_none_or(|n| strip_cluster_prefix(&f.node_name) == n))
        .filter(|f| state.flow_filter.as_ref().is_none_or(|flt| flt.matches(f)))
        .take(rows)
        .collect();
    out.reverse();
    out
}

fn relay_line<'a>(state: &AppState, theme: &Theme) -> Line<'a> {
    let r = &state.relay;
    match (&r.connected_since, &r.last_error) {
        (Some(_), _) => Line::from(Span::styled(
            format!(
                " relay {} · last flow {} ",
                r.address,
                r.last_flow.map_or_else(|| "—".into(), |t| age(state.now, t) + " ago")
            ),
            theme.ok(),
        )),
        (None, Some(e)) => {
            let retry = r.next_retry.map_or_else(String::new, |t| format!(" in {}", age(t, state.now)));
            Line::from(Span::styled(
                format!(" relay DOWN: {} · retry {}{retry} ", super::common::fit(e, 40), r.attempts),
                theme.bad(),
            ))
        }
        (None, None) => Line::from(Span::styled(" relay connecting… ", theme.warn())),
    }
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let focused = state.ui.focus == Focus::Flows;
    let block = pane("Flows", focused, relay_line(state, theme), theme);
    let inner_h = area.height.saturating_sub(3) as usize;
    let mut lines = Vec::with_capacity(inner_h + 1);

    let (rate, drops) = match state.flow_rates() {
        Some((f, d)) => (format!("{f:.0}/s"), format!("{d:.1}/s")),
        None => ("?/s".into(), "?/s".into()),
    };
    let mut status = vec![
        Span::raw(format!("{rate} flows · ")),
        Span::styled(
            format!("{drops} drops"),
            if drops.starts_with("0.0") || drops.starts_with('?') { Style::new() } else { theme.bad() },
        ),
        Span::raw(format!(
            " · lost {} · buf {}/{}",
            state.relay.lost_events,
            state.flows.flows.len(),
            state.flows.capacity
        )),
    ];
    if state.relay.dropped_locally > 0 {
        status
            .push(Span::styled(format!(" · {} not shown (cockpit behind)", state.relay.dropped_locally), theme.bad()));
    }
    if state.ui.paused_at_total.is_some() {
        status.push(Span::styled(" · PAUSED", theme.warn().add_modifier(Modifier::BOLD)));
    }
    if state.ui.flow_scroll > 0 {
        status.push(Span::styled(format!(" · ↑{}", state.ui.flow_scroll), theme.warn()));
    }
    if let Some(n) = &state.ui.follow_node {
        status.push(Span::styled(format!(" · node {n}"), theme.accent()));
    }
    if !state.ui.filter_text.is_empty() {
        status.push(Span::styled(format!(" · /{}", state.ui.filter_text), theme.accent()));
    }
    lines.push(Line::from(status));

    let shown = visible(state, inner_h);
    if shown.is_empty() {
        let why = if state.relay.connected_since.is_none() {
            "no relay connection: nothing is known about flows (not the same as no traffic)"
        } else if state.flows.flows.is_empty() {
            "connected; no flows yet (flows exist only on nodes where Cilium runs)"
        } else {
            "no buffered flow matches the filter"
        };
        lines.push(Line::from(Span::styled(why, theme.dim())));
    }
    for f in shown {
        let row = Row::from_flow(f);
        let style = match Verdict::try_from(f.verdict) {
            Ok(Verdict::Dropped | Verdict::Error) => theme.bad(),
            Ok(Verdict::Forwarded | Verdict::Redirected | Verdict::Translated) => Style::new(),
            Ok(Verdict::Audit | Verdict::Traced) => theme.warn(),
            _ => theme.dim(),
        };
        lines.push(Line::from(vec![
            Span::styled(row.time, theme.dim()),
            Span::raw(" "),
            Span::styled(format!("{:<12}", super::common::fit(&row.node, 12)), theme.accent()),
            Span::raw(" "),
            Span::raw(row.src),
            Span::styled(format!(" {} ", row.arrow), theme.dim()),
            Span::raw(row.dst),
            Span::raw(" "),
            Span::styled(row.kind, theme.dim()),
            Span::raw(" "),
            Span::styled(row.verdict, style),
            Span::styled(
                if row.summary.is_empty() { String::new() } else { format!(" ({})", row.summary) },
                theme.dim(),
            ),
        ]));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// TEMPORARY: a minimal row until `hubble::format` lands (then this goes).
struct Row {
    time: String,
    node: String,
    src: String,
    arrow: &'static str,
    dst: String,
    kind: String,
    verdict: String,
    summary: String,
}

impl Row {
    fn from_flow(f: &Flow) -> Row {
        let ep = |e: Option<&crate::hubble::proto::flow::Endpoint>, ip: &str| match e {
            Some(e) if !e.pod_name.is_empty() => format!("{}/{}", e.namespace, e.pod_name),
            _ => ip.to_string(),
        };
        let ip = f.ip.clone().unwrap_or_default();
        Row {
            time: f.time.as_ref().map_or_else(
                || "--:--:--".into(),
                |t| {
                    jiff::Timestamp::new(t.seconds, t.nanos)
                        .map_or_else(|_| "??".into(), |t| t.strftime("%H:%M:%S").to_string())
                },
            ),
            node: strip_cluster_prefix(&f.node_name).to_string(),
            src: ep(f.source.as_ref(), &ip.source),
            arrow: "->",
            dst: ep(f.destination.as_ref(), &ip.destination),
            kind: String::new(),
            verdict: Verdict::try_from(f.verdict)
                .map_or_else(|_| f.verdict.to_string(), |v| v.as_str_name().to_string()),
            summary: f.summary.clone(),
        }
    }
}
