//! The Nodes pane: per node Ready, cordon, k3s role/version, the node's real CNI state (from
//! evidence on the node: [`crate::app::migration`]), flannel and kube-proxy as the servers' flags
//! say (marked when the node has not restarted since), the cilium agent, taint, CiliumNode, relay
//! state, pods, flows/drops per s. While the runbook's node step works on a node, its row is
//! marked `▶` and the title says the phase (draining 3/7, restarting, soaking 1:20 of 2:00, …).

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Cell, Row, Table};

use super::Theme;
use super::common::{fit, framed, freshness, pane, position};
use crate::app::lists::{Drawn, offset};
use crate::app::migration::{NodeMigration, NodeVerdict};
use crate::app::model::{K3sArgs, NodeSummary};
use crate::app::state::{AppState, Focus};
use crate::cluster::watch::SourceId;
use crate::hubble::proto::relay::NodeState;

/// The flags that decide the network mode are server flags: agents take them from their server
/// when their own k3s starts. So a node's flags are the servers' (when they agree) — as intended,
/// not yet as applied: see [`off_cell`].
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

/// A flag the servers turned off, for one node: `off` once the node's k3s started after the
/// servers' (a server's own node-args are always its own), `off*` when the servers say off and
/// this node has not restarted since (it still runs what it started with), `off?` when there is no
/// restart evidence either way.
fn off_cell(follows: Option<bool>, theme: &Theme) -> Span<'static> {
    match follows {
        Some(true) => Span::styled("off", theme.ok()),
        Some(false) => Span::styled("off*", theme.warn()),
        None => Span::styled("off?", theme.dim()),
    }
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme, drawn: &mut Drawn) {
    let focused = state.ui.focus == Focus::Nodes;
    // The list scrolls with the selection: the highlighted row is always drawn, and the keys act
    // on the row drawn highlighted (`drawn`).
    let inner = framed(Block::new().borders(Borders::ALL), frame).inner(area);
    let height = inner.height.saturating_sub(1) as usize;
    let selected = state.ui.selected_node.min(state.nodes.len().saturating_sub(1));
    let first = offset(state.ui.view.nodes_offset, selected, state.nodes.len(), height);
    (drawn.nodes_offset, drawn.nodes_rows) = (first, height);
    if focused {
        drawn.node = state.nodes.keys().nth(selected).cloned();
    }
    // The node step's node in work: `▶` on its row, its phase in the title.
    let work = state.running.as_ref().and_then(|r| r.node_work.as_ref());
    let title = match work {
        Some(w) => format!("Nodes{} ▶ {}: {}", position(first, height, state.nodes.len()), w.node, w.phase),
        None => format!("Nodes{}", position(first, height, state.nodes.len())),
    };
    let inputs = state.migration_inputs();
    let verdicts: std::collections::BTreeMap<String, NodeVerdict> =
        inputs.verdicts().into_iter().map(|v| (v.node.clone(), v)).collect();
    let mut block = pane(
        &title,
        focused,
        freshness(
            state,
            &[SourceId::Nodes, SourceId::Pods, SourceId::CiliumNodes, SourceId::CiliumEndpoints, SourceId::NodeEvents],
            theme,
        ),
        theme,
    );
    // The selected node's migration state and why, on the bottom border while focused.
    // (Only with a bottom border: on a short terminal the panes have a top line only, and a
    // bottom title would take a row from the list.)
    if focused
        && !super::common::short(frame)
        && let Some(node) = state.nodes.values().nth(selected)
    {
        let reason = verdicts.get(&node.name).map_or("?", |v| v.reason.as_str());
        let text = format!(" {}: {reason} ", node.name);
        block = block.title_bottom(Span::styled(fit(&text, area.width.saturating_sub(4) as usize), theme.dim()));
    }
    // Every column needs ~150 columns; below that the compact set (CNI instead of FLANNEL, no
    // version or taint), with the spare width going to the node names.
    let wide = area.width >= 150;
    // Names never cut ambiguously: a shared prefix is shortened first (`…cp1`, `…w1`).
    let names: Vec<&str> = state.nodes.keys().map(String::as_str).collect();
    // Narrow: the name column gets what the other columns leave (their widths and the gaps
    // between the 12 columns below), up to the longest name.
    let longest = names.iter().map(|n| unicode_width::UnicodeWidthStr::width(*n)).max().unwrap_or(4);
    let name_w = if wide { 20 } else { (inner.width as usize).saturating_sub(56 + 11).clamp(8, longest.max(8)) };
    // While a node is in work every name gives two columns to the `▶ ` mark (the shortening
    // keeps names apart at the narrower width).
    let mark_w = if work.is_some() { 2 } else { 0 };
    let labels = crate::ui::names::labels(&names, name_w.saturating_sub(mark_w));
    let mut rows = Vec::new();
    for (i, node) in state.nodes.values().enumerate().skip(first).take(height) {
        let args = effective_args(state, node);
        // "Off" from the servers' flags is a fact for this node only once it restarted since.
        let follows = inputs.follows_servers(node);
        let cni = match verdicts.get(&node.name).map(|v| &v.state) {
            Some(s @ NodeMigration::Switched) => Span::styled(s.cell(), theme.ok()),
            Some(s @ NodeMigration::Unknown(_)) => Span::styled(s.cell(), theme.dim()),
            Some(s) => Span::styled(s.cell(), theme.warn()),
            None => Span::styled("?", theme.dim()),
        };
        let ready = match node.ready {
            Some(true) => Span::styled("Ready", theme.ok()),
            Some(false) => Span::styled("NotRdy", theme.bad()),
            None => Span::styled("Unknwn", theme.bad()),
        };
        let sched = match (node.unschedulable, wide) {
            (true, true) => Span::styled("cordon", theme.warn()),
            (true, false) => Span::styled("cord", theme.warn()),
            (false, _) => Span::raw(""),
        };
        let flannel = match &args {
            Some(a) if a.flannel_enabled() => Span::styled("on", theme.warn()),
            Some(_) => off_cell(follows, theme),
            None => Span::styled("?", theme.dim()),
        };
        let kproxy = match &args {
            Some(a) if a.disable_kube_proxy => off_cell(follows, theme),
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
        let role = match (node.server, wide) {
            (true, true) => "server",
            (false, true) => "agent",
            (true, false) => "srv",
            (false, false) => "agt",
        };
        let label = labels.get(i).cloned().unwrap_or_default();
        let name_cell = match work {
            Some(w) if w.node == node.name => {
                Cell::from(ratatui::text::Line::from(vec![Span::styled("▶ ", theme.warn()), Span::raw(label)]))
            }
            Some(_) => Cell::from(format!("  {label}")),
            None => Cell::from(label),
        };
        let mut cells = vec![name_cell, Cell::from(ready), Cell::from(sched), Cell::from(role)];
        if wide {
            cells.push(Cell::from(node.kubelet_version.clone()));
        }
        // Narrow: the CNI cell says per node what FLANNEL only says for the servers' flags.
        cells.push(Cell::from(cni));
        if wide {
            cells.push(Cell::from(flannel));
        }
        cells.extend([Cell::from(kproxy), Cell::from(agent)]);
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
        if focused && i == selected {
            row = row.style(theme.selected());
        }
        rows.push(row);
    }
    if rows.is_empty() {
        let msg = match state.sources.get(&SourceId::Nodes).map(|s| &s.state) {
            Some(crate::app::state::SourceState::Failing { problem, .. }) => problem.message().to_string(),
            _ => "waiting for the node list…".into(),
        };
        rows.push(Row::new(vec![Cell::from(Span::styled(msg, theme.dim()))]));
    }
    let (header, widths): (Vec<&str>, Vec<Constraint>) = if wide {
        (
            vec![
                "NODE",
                "READY",
                "SCHED",
                "ROLE",
                "K3S",
                "CNI",
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
                Constraint::Length(20),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(13),
                Constraint::Length(8),
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
            vec!["NODE", "READY", "SCHD", "ROLE", "CNI", "KPRX", "CILIUM", "CN", "RELAY", "PODS", "F/S", "D/S"],
            vec![
                Constraint::Length(name_w as u16),
                Constraint::Length(6),
                Constraint::Length(4),
                Constraint::Length(4),
                Constraint::Length(8),
                Constraint::Length(4),
                Constraint::Min(9),
                Constraint::Length(3),
                Constraint::Length(6),
                Constraint::Length(4),
                Constraint::Length(4),
                Constraint::Length(4),
            ],
        )
    };
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.dim()))
        .column_spacing(1)
        .block(framed(block, frame));
    frame.render_widget(table, area);
}
