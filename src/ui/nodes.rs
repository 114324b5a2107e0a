//! The Nodes pane: per node Ready, cordon, k3s role/version, flannel and kube-proxy state from the
//! servers' node-args, the cilium agent, taint, CiliumNode, relay state, pods, flows/drops per s.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};

use super::Theme;
use super::common::{framed, freshness, pane, position};
use crate::app::lists::{Drawn, offset};
use crate::app::model::{K3sArgs, NodeSummary};
use crate::app::state::{AppState, Focus};
use crate::cluster::watch::SourceId;
use crate::hubble::proto::relay::NodeState;

/// The flags that decide the network mode are server flags: agents follow their server. So a
/// node's effective flags are the servers' (when they agree).
fn effective_args(state: &AppState, node: &NodeSummary) -> Option<K3sArgs> {
    if node.server {
        return node.k3s_args.clone();
    }
    let servers: Vec<&K3sArgs> =
        state.nodes.values().filter(|n| n.server).filter_map(|n| n.k3s_args.as_ref()).collect();
    let first = servers.first()?;
    servers
        .iter()
        .all(|a| a.flannel_backend == first.flannel_backend && a.disable_kube_proxy == first.disable_kube_proxy)
        .then(|| (*first).clone())
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme, drawn: &mut Drawn) {
    let focused = state.ui.focus == Focus::Nodes;
    // The list scrolls with the selection: the highlighted row is always drawn.
    let inner = framed(Block::new().borders(Borders::ALL), frame).inner(area);
    let height = inner.height.saturating_sub(1) as usize;
    let selected = state.ui.selected_node.min(state.nodes.len().saturating_sub(1));
    let first = offset(state.ui.view.nodes_offset, selected, state.nodes.len(), height);
    (drawn.nodes_offset, drawn.nodes_rows) = (first, height);
    if focused {
        drawn.node = state.nodes.keys().nth(selected).cloned();
    }
    let title = format!("Nodes{}", position(first, height, state.nodes.len()));
    let block = framed(
        pane(
            &title,
            focused,
            freshness(state, &[SourceId::Nodes, SourceId::Pods, SourceId::CiliumNodes], theme),
            theme,
        ),
        frame,
    );
    // Wide only when the name column keeps room next to all the wide columns.
    let wide = inner.width >= 130;
    let name_w = name_width(state, inner.width, wide);
    let names: Vec<&str> = state.nodes.keys().map(String::as_str).collect();
    let labels = crate::ui::names::labels(&names, name_w as usize);
    let mut rows = Vec::new();
    for (i, node) in state.nodes.values().enumerate().skip(first).take(height) {
        let args = effective_args(state, node);
        let ready = match node.ready {
            Some(true) => Span::styled("Ready", theme.ok()),
            Some(false) => Span::styled("NotRdy", theme.bad()),
            None => Span::styled("Unknwn", theme.bad()),
        };
        let sched = if node.unschedulable { Span::styled("cordon", theme.warn()) } else { Span::raw("") };
        let flannel = match &args {
            Some(a) if a.flannel_enabled() => Span::styled("on", theme.warn()),
            Some(_) if node.flannel_annotations => Span::styled("off*", theme.ok()),
            Some(_) => Span::styled("off", theme.ok()),
            None => Span::styled("?", theme.dim()),
        };
        let kproxy = match &args {
            Some(a) if a.disable_kube_proxy => Span::styled("off", theme.ok()),
            Some(_) => Span::raw("on"),
            None => Span::styled("?", theme.dim()),
        };
        let agent = match state.cilium_agent(&node.name) {
            None => Span::styled("—", theme.dim()),
            Some(p) => {
                let restarts = if p.restarts > 0 { format!(" r{}", p.restarts) } else { String::new() };
                let text = if !p.waiting_reason.is_empty() {
                    format!("{}{restarts}", p.waiting_reason)
                } else {
                    format!("{}{}{restarts}", p.phase, if p.ready { " ✓" } else { " ✗" })
                };
                let style = if p.ready {
                    theme.ok()
                } else if p.restarts > 2 {
                    theme.bad()
                } else {
                    theme.warn()
                };
                Span::styled(text, style)
            }
        };
        let taint =
            if node.agent_not_ready_taint { Span::styled("agent-not-ready", theme.warn()) } else { Span::raw("") };
        let cn = if state.cilium_nodes.contains(&node.name) {
            Span::styled("yes", theme.ok())
        } else {
            Span::styled("no", theme.dim())
        };
        let relay = match (state.relay.connected_since, state.relay.nodes.get(&node.name)) {
            (None, _) => Span::styled("?", theme.dim()),
            (Some(_), Some(NodeState::NodeConnected)) => Span::styled("conn", theme.ok()),
            (Some(_), Some(NodeState::NodeUnavailable | NodeState::NodeError)) => Span::styled("unavail", theme.bad()),
            (Some(_), Some(_)) => Span::styled("gone", theme.warn()),
            (Some(_), None) => Span::styled("none", theme.dim()),
        };
        let (fps, dps) = match state.node_rates(&node.name) {
            Some((f, d)) => (
                Span::raw(format!("{f:.1}")),
                Span::styled(format!("{d:.1}"), if d > 0.0 { theme.bad() } else { Style::new() }),
            ),
            None => (Span::styled("?", theme.dim()), Span::styled("?", theme.dim())),
        };
        let role = if node.server { "server" } else { "agent" };
        let mut cells = vec![
            Cell::from(labels.get(i).cloned().unwrap_or_default()),
            Cell::from(ready),
            Cell::from(sched),
            Cell::from(role),
        ];
        if wide {
            cells.push(Cell::from(node.kubelet_version.clone()));
        }
        cells.extend([Cell::from(flannel), Cell::from(kproxy), Cell::from(agent)]);
        if wide {
            cells.push(Cell::from(taint));
        }
        cells.extend([
            Cell::from(cn),
            Cell::from(relay),
            Cell::from(state.pods_on(&node.name).to_string()),
            Cell::from(fps),
            Cell::from(dps),
        ]);
        let mut row = Row::new(cells);
        if focused && i == state.ui.selected_node {
            row = row.style(theme.selected());
        }
        rows.push(row);
    }
    // Without nodes, the reason goes under the header across the whole width (not in a column).
    let empty = rows.is_empty().then(|| match state.sources.get(&SourceId::Nodes).map(|s| &s.state) {
        Some(crate::app::state::SourceState::Failing { problem, .. }) => problem.message().to_string(),
        _ => "waiting for the node list…".into(),
    });
    let (header, widths): (Vec<&str>, Vec<Constraint>) = if wide {
        (
            vec![
                "NODE",
                "READY",
                "SCHED",
                "ROLE",
                "K3S",
                "FLANNEL",
                "KPROXY",
                "CILIUM AGENT",
                "TAINT",
                "CN",
                "RELAY",
                "PODS",
                "FLOW/S",
                "DROP/S",
            ],
            vec![
                Constraint::Length(name_w),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(13),
                Constraint::Length(7),
                Constraint::Length(6),
                Constraint::Length(18),
                Constraint::Length(15),
                Constraint::Length(3),
                Constraint::Length(7),
                Constraint::Length(4),
                Constraint::Length(7),
                Constraint::Length(7),
            ],
        )
    } else {
        (
            vec!["NODE", "READY", "SCHED", "ROLE", "FLNL", "KPRX", "CILIUM", "CN", "RELAY", "PODS", "F/S", "D/S"],
            vec![
                Constraint::Length(name_w),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(4),
                Constraint::Length(4),
                Constraint::Min(10),
                Constraint::Length(3),
                Constraint::Length(7),
                Constraint::Length(4),
                Constraint::Length(5),
                Constraint::Length(5),
            ],
        )
    };
    let table = Table::new(rows, widths).header(Row::new(header).style(theme.dim())).column_spacing(1).block(block);
    frame.render_widget(table, area);
    if let Some(msg) = empty {
        let below = Rect { y: inner.y + 1, height: inner.height.saturating_sub(1), ..inner };
        frame.render_widget(Paragraph::new(Span::styled(msg, theme.dim())).wrap(Wrap { trim: true }), below);
    }
}

/// The name column: every name in full when the other columns leave room (up to 48), otherwise
/// what is left, and the names are shortened without becoming ambiguous (`ui::names`).
fn name_width(state: &AppState, inner: u16, wide: bool) -> u16 {
    // The other columns' widths and spacing (see the constraints above); CILIUM keeps 12.
    let others: u16 = if wide { 105 + 13 } else { 6 + 6 + 6 + 4 + 4 + 12 + 3 + 7 + 4 + 5 + 5 + 11 };
    let longest = state.nodes.keys().map(|n| crate::ui::names::width(n)).max().unwrap_or(4) as u16;
    longest.clamp(4, 48).min(inner.saturating_sub(others)).max(4)
}
