//! The Flows pane's `/` filter: the Hubble prompt syntax (`hubble::filter::query`) — the same
//! FlowFilters the relay evaluates, plus free text matched against the compact line. Applied to
//! buffered flows at draw time, so typing a filter never loses flows and clearing it shows
//! everything again.

use crate::hubble::filter::query::CompiledQuery;
use crate::hubble::format::{FormatOptions, write_compact};
use crate::hubble::proto::flow::Flow;

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
