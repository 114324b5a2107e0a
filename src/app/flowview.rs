//! The Flows pane's `/` filter and the rows the pane shows. The filter is the Hubble prompt syntax
//! (`hubble::filter::query`) — the same FlowFilters the relay evaluates, plus free text matched
//! against the compact line — evaluated once per buffered flow (on arrival or when the filter
//! changes), so typing a filter never loses flows and clearing it shows everything again.
//!
//! The view: the live buffer, or while paused the rows held when paused; flows that match the
//! filter and the followed node, and every marker row (a gap matters whatever the filter);
//! scrolled by `flow_scroll` rows of that view.

use super::state::{AppState, Marker, StoredRow};
use crate::hubble::filter::query::CompiledQuery;
use crate::hubble::format::{FormatOptions, write_compact};
use crate::hubble::proto::flow::Flow;

/// A row as the Flows pane draws it.
#[derive(Debug, Clone, PartialEq)]
pub enum ViewRow {
    Flow(Box<Flow>),
    Marker(Marker),
}

/// Whether the view shows a buffered row: markers always, flows that match the `/` filter (bit
/// kept on the row) and the followed node.
pub fn row_shown(row: &StoredRow, follow_node: Option<&str>) -> bool {
    match row {
        StoredRow::Marker(_) => true,
        StoredRow::Flow(f) => f.matches && follow_node.is_none_or(|n| &*f.node == n),
    }
}

/// The rows the pane shows, newest last, `flow_scroll` shown rows up from the newest. Only these
/// are decoded.
pub fn view_rows(state: &AppState, rows: usize) -> Vec<ViewRow> {
    let follow = state.ui.follow_node.as_deref();
    let mut out: Vec<ViewRow> = state
        .flows
        .view_rev()
        .filter(|r| row_shown(r, follow))
        .skip(state.ui.flow_scroll)
        .take(rows)
        .filter_map(|r| match r {
            StoredRow::Flow(f) => f.decode().map(|f| ViewRow::Flow(Box::new(f))),
            StoredRow::Marker(m) => Some(ViewRow::Marker((**m).clone())),
        })
        .collect();
    out.reverse();
    out
}

/// How many rows the view has (what scrolling moves through).
pub fn shown_count(state: &AppState) -> usize {
    let follow = state.ui.follow_node.as_deref();
    state.flows.view_rev().filter(|r| row_shown(r, follow)).count()
}

/// Why the view is empty. Names only what is set (filter, followed node, pause).
pub fn empty_message(state: &AppState) -> String {
    let mut narrowed = Vec::new();
    if let Some(n) = &state.ui.follow_node {
        narrowed.push(format!("from node {n}"));
    }
    if state.flow_filter.is_some() {
        narrowed.push(format!("matches the filter /{}", state.ui.filter_text));
    }
    let narrowed = narrowed.join(" that ");
    if state.flows.paused() {
        let held = state.flows.view_rev().next().is_some();
        return match (held, narrowed.is_empty()) {
            (false, _) => "paused: no flow was buffered when paused (Space resumes)".into(),
            (true, false) => format!("paused: no flow buffered when paused {narrowed} (Space resumes)"),
            (true, true) => "paused (Space resumes)".into(),
        };
    }
    if state.flows.rows.is_empty() {
        return if state.relay.connected_since.is_none() {
            "no relay connection: nothing is known about flows (not the same as no traffic)".into()
        } else {
            "connected; no flows yet (flows exist only on nodes where Cilium runs)".into()
        };
    }
    if narrowed.is_empty() { "no buffered flow to show".into() } else { format!("no buffered flow {narrowed}") }
}

/// A compiled `/` filter.
#[derive(Debug, Clone)]
pub struct ViewFilter {
    query: CompiledQuery,
    opts: FormatOptions,
}

impl ViewFilter {
    /// Parses e.g. `ns:media verdict:dropped node:homelab-w1 port:53 !ns:kube-system "text"`.
    pub fn parse(text: &str) -> Result<ViewFilter, String> {
        let query = CompiledQuery::parse(text).map_err(|e| e.to_string())?;
        Ok(ViewFilter { query, opts: FormatOptions { print_node_name: true, ..Default::default() } })
    }

    pub fn matches(&self, f: &Flow) -> bool {
        if !self.query.matches_flow(f) {
            return false;
        }
        if !self.query.needs_line() {
            return true;
        }
        let mut line = String::with_capacity(160);
        write_compact(&mut line, f, &self.opts);
        self.query.matches_text(&line)
    }
}
