//! The one state of the cockpit. Only [`AppState::apply`] and the `on_*` handlers change it;
//! rendering only reads it. Time is an input (`now`), so the state and its views are
//! deterministic under test.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use jiff::{SignedDuration, Timestamp};

use super::migration::{Inputs, Known, NodeMigration, NodeVerdict};
use super::model::{
    AppSummary, EndpointSummary, NodeStartEvent, NodeSummary, PdbSummary, PodRole, PodSummary, WorkloadSummary,
};
use crate::cluster::watch::{Change, KubeEvent, SourceId, SourceProblem};
use crate::hubble::proto::flow::{Flow, Verdict};
use crate::hubble::proto::observer::Node as RelayNode;
use crate::hubble::proto::relay::NodeState;

/// Mode badge: read-only can never change anything; armed may, after confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ReadOnly,
    Armed,
}

/// Health of one watched resource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SourceState {
    /// Started, no list answered yet.
    #[default]
    Connecting,
    /// Listed and watching: the data is current.
    Live { since: Timestamp },
    /// Failing; data shown is the last known, marked stale.
    Failing { problem: SourceProblem, since: Timestamp, attempts: u32, last_good: Option<Timestamp> },
}

/// Per-source bookkeeping.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub state: SourceState,
    /// Last time this source delivered anything.
    pub last_event: Option<Timestamp>,
    /// Keys seen during the current relist (Init..InitDone).
    relisting: Option<BTreeSet<String>>,
}

/// A one-second bucket of flows observed from a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    second: i64,
    flows: u32,
    drops: u32,
}

/// Flows/s and drops/s per node over the last minute, from the flows received.
#[derive(Debug, Clone, Default)]
pub struct NodeRate {
    buckets: VecDeque<Bucket>,
}

impl NodeRate {
    const WINDOW: i64 = 60;

    fn add(&mut self, second: i64, drop: bool) {
        match self.buckets.back_mut() {
            Some(b) if b.second == second => {
                b.flows += 1;
                b.drops += u32::from(drop);
            }
            _ => self.buckets.push_back(Bucket { second, flows: 1, drops: u32::from(drop) }),
        }
        while self.buckets.front().is_some_and(|b| b.second <= second - Self::WINDOW) {
            self.buckets.pop_front();
        }
    }

    /// (flows/s, drops/s) over the window ending at `now`, averaged over the part of the window
    /// we actually observed (`observed_since`), so a fresh connection is not diluted.
    pub fn rates(&self, now: Timestamp, observed_since: Timestamp) -> (f64, f64) {
        let now_s = now.as_second();
        let start = (now_s - Self::WINDOW).max(observed_since.as_second());
        let span = (now_s - start).max(1) as f64;
        let (f, d) = self
            .buckets
            .iter()
            .filter(|b| b.second > start && b.second <= now_s)
            .fold((0u64, 0u64), |(f, d), b| (f + u64::from(b.flows), d + u64::from(b.drops)));
        (f as f64 / span, d as f64 / span)
    }
}

/// The relay connection as the cockpit knows it.
#[derive(Debug, Clone, Default)]
pub struct RelayState {
    pub address: String,
    pub connected_since: Option<Timestamp>,
    pub last_error: Option<String>,
    pub attempts: u32,
    pub next_retry: Option<Timestamp>,
    /// Nodes by (prefix-stripped) name as the relay reports them.
    pub nodes: BTreeMap<String, NodeState>,
    pub nodes_at: Option<Timestamp>,
    pub lost_events: u64,
    pub version: String,
    pub last_flow: Option<Timestamp>,
    /// Flows the cockpit itself could not keep up with (dropped client-side), never hidden.
    pub dropped_locally: u64,
    /// The latest gap after a reconnect (the marker's text); every gap is also a marker row in
    /// the flow buffer and counted in `FlowBuffer::gaps`.
    pub gap: Option<String>,
}

/// One buffered flow: its protobuf encoding (a few hundred bytes, against several KiB for the
/// decoded message with all its strings), the node it came from, and whether it matches the
/// current `/` filter (computed once on arrival or when the filter changes, never per frame).
#[derive(Debug, Clone)]
pub struct StoredFlow {
    pub bytes: Box<[u8]>,
    pub node: Box<str>,
    pub matches: bool,
}

impl StoredFlow {
    /// Decodes the flow (done only for the rows on screen).
    pub fn decode(&self) -> Option<Flow> {
        <Flow as prost::Message>::decode(&*self.bytes).ok()
    }
}

/// Something missing between two rows of the flow list. Shown as its own row (never as a flow),
/// kept by every filter: a hole in the stream matters whatever one is looking for.
#[derive(Debug, Clone, PartialEq)]
pub enum Marker {
    /// After a reconnect, flows between `from` (the last one seen before) and `to` may be missing
    /// (`reason` says why, e.g. `relay reconnect (homelab-w1: buffer overwritten)`).
    Gap { from: pbjson_types::Timestamp, to: Option<pbjson_types::Timestamp>, reason: String },
    /// The relay or agents reported lost events; consecutive reports (no flow in between) are
    /// one marker. `sources` are `LostEventSource` numbers.
    Lost { count: u64, at: Option<pbjson_types::Timestamp>, nodes: Vec<String>, sources: Vec<i32> },
}

impl Marker {
    /// The row's text, times as the flow rows show them (UTC).
    pub fn text(&self) -> String {
        match self {
            Marker::Gap { from, to, reason } => match to {
                Some(to) => format!("flows from {} to {} may be missing: {reason}", hms(from), hms(to)),
                None => format!("flows from {} on may be missing: {reason}", hms(from)),
            },
            Marker::Lost { count, at, nodes, sources } => {
                use crate::hubble::proto::flow::LostEventSource as Src;
                let what: Vec<&str> = sources
                    .iter()
                    .map(|s| match Src::try_from(*s) {
                        Ok(Src::PerfEventRingBuffer) => "agent perf ring full",
                        Ok(Src::ObserverEventsQueue) => "agent events queue full",
                        Ok(Src::HubbleRingBuffer) => "reader fell behind the Hubble ring",
                        _ => "unknown source",
                    })
                    .collect();
                let at = at.as_ref().map_or_else(String::new, |t| format!("{} ", hms(t)));
                let on = if nodes.is_empty() { "relay".to_string() } else { nodes.join(", ") };
                format!("{at}{count} flow events lost on {on} ({})", what.join(", "))
            }
        }
    }
}

/// `15:04:05` (UTC), as the time column of the flow rows.
fn hms(t: &pbjson_types::Timestamp) -> String {
    let mut s = String::with_capacity(16);
    crate::hubble::time::TimeFormat::Stamp.write(&mut s, Some(t));
    s.get(7..).unwrap_or(&s).to_string()
}

/// One row of the flow buffer: a flow or a marker. Markers age out with the buffer like flows.
#[derive(Debug, Clone)]
pub enum StoredRow {
    Flow(StoredFlow),
    /// Boxed: markers are rare, flows are many (the row stays the size of a flow).
    Marker(Box<Marker>),
}

/// A paused view: the rows the buffer held when paused. Rows the live ring evicts meanwhile are
/// moved here instead of dropped, so the view keeps everything it had (at most the buffer size,
/// stored as the buffer stores them) while new flows keep arriving and the ring keeps rotating.
#[derive(Debug, Clone, Default)]
pub struct Frozen {
    /// `FlowBuffer::pushed` when paused: rows numbered below it belong to the view.
    pub at_row: u64,
    /// Flows received when paused (the counters go on; the pane shows how many arrived since).
    pub at_total: u64,
    /// The view's rows the live ring has evicted since, oldest first.
    pub evicted: VecDeque<StoredRow>,
}

/// The bounded flow buffer with its counters.
#[derive(Debug, Clone)]
pub struct FlowBuffer {
    pub rows: VecDeque<StoredRow>,
    pub capacity: usize,
    /// Rows ever pushed (flows and markers): the number of the next row.
    pub pushed: u64,
    pub total: u64,
    pub drops: u64,
    /// Gap markers ever added (they age out of `rows`; the count stays).
    pub gaps: u64,
    /// Whole-stream rate (all nodes).
    pub rate: NodeRate,
    pub per_node: BTreeMap<String, NodeRate>,
    /// Set while paused.
    pub frozen: Option<Frozen>,
}

impl FlowBuffer {
    pub fn new(capacity: usize) -> Self {
        FlowBuffer {
            rows: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
            pushed: 0,
            total: 0,
            drops: 0,
            gaps: 0,
            rate: NodeRate::default(),
            per_node: BTreeMap::new(),
            frozen: None,
        }
    }

    /// Appends a row, evicting the oldest when full (into the paused view if it belongs there).
    pub fn push(&mut self, row: StoredRow) {
        if self.rows.len() >= self.capacity
            && let Some(old) = self.rows.pop_front()
        {
            let old_no = self.pushed - self.rows.len() as u64 - 1;
            if let Some(f) = self.frozen.as_mut().filter(|f| old_no < f.at_row) {
                f.evicted.push_back(old);
            }
        }
        self.rows.push_back(row);
        self.pushed += 1;
    }

    /// Pauses (freezes the view on the rows held now) or resumes the live view.
    pub fn toggle_pause(&mut self) {
        self.frozen = match self.frozen {
            Some(_) => None,
            None => Some(Frozen { at_row: self.pushed, at_total: self.total, evicted: VecDeque::new() }),
        };
    }

    pub fn paused(&self) -> bool {
        self.frozen.is_some()
    }

    /// Flows received since the pause (0 when live).
    pub fn new_since_pause(&self) -> u64 {
        self.frozen.as_ref().map_or(0, |f| self.total.saturating_sub(f.at_total))
    }

    /// The rows of the view, newest first: while paused the rows held when paused, else the
    /// live ring.
    pub fn view_rev(&self) -> impl Iterator<Item = &StoredRow> {
        let (live, evicted) = match &self.frozen {
            Some(f) => {
                let since = usize::try_from(self.pushed - f.at_row).unwrap_or(usize::MAX);
                (self.rows.len().saturating_sub(since), Some(&f.evicted))
            }
            None => (self.rows.len(), None),
        };
        self.rows.range(..live).rev().chain(evicted.into_iter().flat_map(|e| e.iter().rev()))
    }

    /// Every stored row: the live ring and what a paused view keeps aside.
    fn all_rows_mut(&mut self) -> impl Iterator<Item = &mut StoredRow> {
        self.rows.iter_mut().chain(self.frozen.iter_mut().flat_map(|f| f.evicted.iter_mut()))
    }

    /// The newest row is a lost-events marker (more lost events join it) — unless it belongs to
    /// a paused view, which must not change.
    fn last_lost_mut(&mut self) -> Option<&mut Marker> {
        if self.frozen.as_ref().is_some_and(|f| self.pushed <= f.at_row) {
            return None;
        }
        match self.rows.back_mut() {
            Some(StoredRow::Marker(m)) if matches!(**m, Marker::Lost { .. }) => Some(m),
            _ => None,
        }
    }
}

/// Which pane has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    Argo,
    #[default]
    Nodes,
    Flows,
    Events,
}

impl Focus {
    pub fn next(self) -> Focus {
        match self {
            Focus::Argo => Focus::Nodes,
            Focus::Nodes => Focus::Flows,
            Focus::Flows => Focus::Events,
            Focus::Events => Focus::Argo,
        }
    }
    pub fn prev(self) -> Focus {
        match self {
            Focus::Argo => Focus::Events,
            Focus::Nodes => Focus::Argo,
            Focus::Flows => Focus::Nodes,
            Focus::Events => Focus::Flows,
        }
    }
}

/// Severity of a line in the events pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// One line in the events pane: a message, or a group of repeats of it (`super::eventlog`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was (last) said.
    pub at: Timestamp,
    pub level: Level,
    /// The latest text.
    pub text: String,
    /// How many times it was said since `first`.
    pub count: u32,
    pub first: Timestamp,
    /// Identity of the line for the selection in Events (new lines count up; a group keeps its own).
    pub seq: u64,
}

/// UI-only state (selection, scroll, overlays). Still changed only by the update function.
#[derive(Debug, Clone, Default)]
pub struct UiState {
    pub focus: Focus,
    pub help: bool,
    pub selected_app: usize,
    pub selected_node: usize,
    pub expanded_app: Option<String>,
    /// Rows of the view scrolled up from the newest (0 = follow the newest), counted in rows the
    /// filter shows. Pausing is `FlowBuffer::frozen`.
    pub flow_scroll: usize,
    pub follow_node: Option<String>,
    /// The `/` prompt while typing.
    pub filter_input: Option<String>,
    pub filter_text: String,
    pub filter_error: Option<String>,
    /// Scroll offsets, the event selection, the events view, help scroll and the flow detail.
    pub view: super::lists::Views,
    /// A confirmation waiting for y/n.
    pub confirm: Option<super::action::Pending>,
    /// The pre-flight overlay is open (and its scroll offset).
    pub preflight_open: bool,
    pub preflight_scroll: usize,
    /// The validation overlay (`v`).
    pub validate_open: bool,
    pub validate_scroll: usize,
    /// The manifest preview is open for this stage (1 or 2), and its scroll offset.
    pub preview_stage: Option<u8>,
    pub preview_scroll: usize,
    /// `q` while an operation runs: asking whether to quit anyway.
    pub quit_confirm: bool,
    pub quit: bool,
}

/// The operation the runner is carrying out (shown in the header; `x` cancels it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningOp {
    pub op: super::action::Operation,
    pub started: Timestamp,
    /// The latest progress line.
    pub last: Option<String>,
    /// `x` was pressed: stopping at the next safe point.
    pub cancelling: bool,
    /// The node step's node in work and its phase (the Nodes pane's `▶`).
    pub node_work: Option<crate::runbook::node_work::NodeWork>,
}

/// A rendered file for the preview: (repo-relative path, contents).
pub type RenderedText = (String, String);

/// Everything the cockpit knows.
#[derive(Debug, Clone)]
pub struct AppState {
    pub now: Timestamp,
    pub started: Timestamp,
    pub mode: Mode,
    pub context: String,
    pub cluster: String,
    pub server: String,
    pub sources: BTreeMap<SourceId, Source>,
    pub nodes: BTreeMap<String, NodeSummary>,
    pub pods: BTreeMap<String, PodSummary>,
    pub cilium_ds: Option<WorkloadSummary>,
    pub operator: Option<WorkloadSummary>,
    pub cilium_nodes: BTreeSet<String>,
    pub apps: BTreeMap<String, AppSummary>,
    pub pdbs: BTreeMap<String, PdbSummary>,
    /// CiliumEndpoints by `namespace/name` (= the pod's).
    pub endpoints: BTreeMap<String, EndpointSummary>,
    /// Node `Starting` Events by the Event's `namespace/name`.
    pub node_starts: BTreeMap<String, NodeStartEvent>,
    pub relay: RelayState,
    pub flows: FlowBuffer,
    pub log: VecDeque<LogLine>,
    /// `seq` of the newest log line.
    pub log_seq: u64,
    pub ui: UiState,
    /// Name of the Cilium Argo CD Application and the root app.
    pub cilium_app: String,
    pub root_app: String,
    /// Compiled `/` filter, applied to buffered flows when drawing.
    pub flow_filter: Option<crate::app::flowview::ViewFilter>,
    /// Last pre-flight result (when it finished), and whether one is running.
    pub preflight: Option<(Timestamp, Result<Vec<crate::checks::Check>, String>)>,
    pub preflight_running: bool,
    /// Last manifest preview: stage and the rendered files (path, contents) or why it failed.
    pub preview: Option<(u8, Result<Vec<RenderedText>, String>)>,
    /// The operation running now, if any.
    pub running: Option<RunningOp>,
    /// A drain plan is being computed for this node (the confirmation opens when it arrives).
    pub planning: Option<String>,
    /// The runbook view (`b`): steps, their states, the next step and the rollback.
    pub runbook: super::runbook::RunbookView,
    /// The last validation (`v`): when, and the report or why it failed.
    pub validation: Option<(Timestamp, Result<crate::validate::Report, String>)>,
    /// A validation is reading now (since when).
    pub validating: Option<Timestamp>,
    /// Probe objects of earlier validation runs, as the last `v` listed them (`Err`: could not
    /// look; `None`: not looked, or stale since an active run removed them).
    pub probe_leftovers: Option<Result<crate::validate::Leftovers, String>>,
}

const LOG_CAP: usize = 500;

impl AppState {
    pub fn new(now: Timestamp, mode: Mode, flow_capacity: usize) -> Self {
        AppState {
            now,
            started: now,
            mode,
            context: String::new(),
            cluster: String::new(),
            server: String::new(),
            sources: SourceId::ALL.iter().map(|s| (*s, Source::default())).collect(),
            nodes: BTreeMap::new(),
            pods: BTreeMap::new(),
            cilium_ds: None,
            operator: None,
            cilium_nodes: BTreeSet::new(),
            apps: BTreeMap::new(),
            pdbs: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            node_starts: BTreeMap::new(),
            relay: RelayState::default(),
            flows: FlowBuffer::new(flow_capacity),
            log: VecDeque::new(),
            log_seq: 0,
            ui: UiState::default(),
            cilium_app: "cilium-app".into(),
            root_app: "root".into(),
            flow_filter: None,
            preflight: None,
            preflight_running: false,
            running: None,
            planning: None,
            preview: None,
            runbook: Default::default(),
            validation: None,
            validating: None,
            probe_leftovers: None,
        }
    }

    pub fn log(&mut self, level: Level, text: impl Into<String>) {
        let text = text.into();
        match level {
            Level::Error => tracing::error!("{text}"),
            Level::Warn => tracing::warn!("{text}"),
            Level::Info => tracing::info!("{text}"),
        }
        self.log_seq += 1;
        let line = LogLine { at: self.now, level, text, count: 1, first: self.now, seq: self.log_seq };
        super::eventlog::push(&mut self.log, line, LOG_CAP);
    }

    /// Applies one Kubernetes event.
    pub fn on_kube(&mut self, ev: KubeEvent) {
        let source = ev.source();
        let now = self.now;
        if let KubeEvent::Problem(id, problem) = ev {
            let src = self.sources.entry(id).or_default();
            let (attempts, since, last_good) = match &src.state {
                SourceState::Failing { attempts, since, last_good, .. } => (*attempts + 1, *since, *last_good),
                SourceState::Live { .. } => (1, now, src.last_event),
                SourceState::Connecting => (1, now, None),
            };
            let first = attempts == 1;
            src.state = SourceState::Failing { problem: problem.clone(), since, attempts, last_good };
            if first {
                let level = if matches!(problem, SourceProblem::NotInstalled(_)) { Level::Info } else { Level::Warn };
                self.log(level, format!("{id} watch: {}", describe_problem(&problem)));
            }
            return;
        }
        // Anything but `Init` is the server answering: a list page, the end of a (re)list, an
        // event. A successful re-list after an outage marks the source live even when no object
        // changed (`InitDone` of an empty or unchanged collection).
        if !ev.is_init() {
            let src = self.sources.entry(source).or_default();
            src.last_event = Some(now);
            let recovered = matches!(src.state, SourceState::Failing { .. });
            if !matches!(src.state, SourceState::Live { .. }) {
                src.state = SourceState::Live { since: now };
            }
            if recovered {
                self.log(Level::Info, format!("{source}: watching again"));
            }
        }
        match ev {
            KubeEvent::Nodes(c) => apply_change(&mut self.nodes, self.sources.get_mut(&source), c, |n| n.name.clone()),
            KubeEvent::Pods(c) => apply_change(&mut self.pods, self.sources.get_mut(&source), c, PodSummary::key),
            KubeEvent::Pdbs(c) => apply_change(&mut self.pdbs, self.sources.get_mut(&source), c, PdbSummary::key),
            KubeEvent::Applications(c) => {
                apply_change(&mut self.apps, self.sources.get_mut(&source), c, |a| a.name.clone())
            }
            KubeEvent::CiliumNodes(c) => {
                let mut map: BTreeMap<String, String> =
                    self.cilium_nodes.iter().map(|n| (n.clone(), n.clone())).collect();
                apply_change(&mut map, self.sources.get_mut(&source), c, Clone::clone);
                self.cilium_nodes = map.into_keys().collect();
            }
            KubeEvent::NodeStarts(c) => {
                apply_change(&mut self.node_starts, self.sources.get_mut(&source), c, |e| e.key.clone())
            }
            KubeEvent::CiliumEndpoints(c) => {
                apply_change(&mut self.endpoints, self.sources.get_mut(&source), c, EndpointSummary::key)
            }
            KubeEvent::CiliumDaemonSet(c) => apply_single(&mut self.cilium_ds, c),
            KubeEvent::CiliumOperator(c) => apply_single(&mut self.operator, c),
            KubeEvent::Problem(..) => {}
        }
    }

    /// A flow arrived from the relay.
    pub fn on_flow(&mut self, flow: Flow) {
        let drop = flow.verdict == Verdict::Dropped as i32;
        let node = strip_cluster_prefix(&flow.node_name);
        let second = self.now.as_second();
        self.flows.total += 1;
        self.flows.drops += u64::from(drop);
        self.flows.rate.add(second, drop);
        match self.flows.per_node.get_mut(node) {
            Some(r) => r.add(second, drop),
            None => self.flows.per_node.entry(node.to_string()).or_default().add(second, drop),
        }
        self.relay.last_flow = Some(self.now);
        let matches = self.flow_filter.as_ref().is_none_or(|f| f.matches(&flow));
        let stored =
            StoredFlow { bytes: prost::Message::encode_to_vec(&flow).into_boxed_slice(), node: node.into(), matches };
        self.flows.push(StoredRow::Flow(stored));
    }

    /// A reconnect that may have missed flows: a marker row where the hole is, counted, logged.
    pub fn on_gap(&mut self, from: pbjson_types::Timestamp, to: Option<pbjson_types::Timestamp>, reason: &str) {
        let marker = Marker::Gap { from, to, reason: reason.to_string() };
        let text = marker.text();
        self.flows.gaps += 1;
        self.log(Level::Warn, format!("hubble: {text}"));
        self.relay.gap = Some(text);
        self.flows.push(StoredRow::Marker(Box::new(marker)));
    }

    /// Sets (or clears) the `/` filter and re-evaluates it once over the buffer (and the paused
    /// view's rows).
    pub fn set_flow_filter(&mut self, filter: Option<crate::app::flowview::ViewFilter>) {
        for row in self.flows.all_rows_mut() {
            if let StoredRow::Flow(f) = row {
                f.matches = match &filter {
                    None => true,
                    Some(flt) => f.decode().is_some_and(|flow| flt.matches(&flow)),
                };
            }
        }
        self.flow_filter = filter;
    }

    pub fn on_relay_connected(&mut self, address: &str) {
        let was_down = self.relay.last_error.is_some();
        self.relay.address = address.to_string();
        self.relay.connected_since = Some(self.now);
        self.relay.last_error = None;
        self.relay.attempts = 0;
        self.relay.next_retry = None;
        self.log(
            Level::Info,
            if was_down {
                format!("hubble-relay {address}: reconnected")
            } else {
                format!("hubble-relay {address}: connected")
            },
        );
    }

    pub fn on_relay_disconnected(&mut self, error: &str, attempt: u32, retry_in: std::time::Duration) {
        let first = self.relay.last_error.is_none();
        self.relay.connected_since = None;
        self.relay.last_error = Some(error.to_string());
        self.relay.attempts = attempt;
        self.relay.next_retry = SignedDuration::try_from(retry_in).ok().and_then(|d| self.now.checked_add(d).ok());
        if first {
            self.log(Level::Warn, format!("hubble-relay: {error} (retrying)"));
        }
    }

    pub fn on_relay_nodes(&mut self, nodes: &[RelayNode]) {
        self.relay.nodes = nodes
            .iter()
            .map(|n| {
                (
                    strip_cluster_prefix(&n.name).to_string(),
                    NodeState::try_from(n.state).unwrap_or(NodeState::UnknownNodeState),
                )
            })
            .collect();
        self.relay.nodes_at = Some(self.now);
    }

    /// Lost events (`source`: a `LostEventSource`): counted, logged, and a marker row where the
    /// flows are missing (joined with the marker before it when no flow came in between).
    pub fn on_lost(&mut self, lost: u64, node: &str, source: i32, at: Option<pbjson_types::Timestamp>) {
        self.relay.lost_events += lost;
        let node = if node.is_empty() { String::new() } else { strip_cluster_prefix(node).to_string() };
        self.log(
            Level::Warn,
            format!("hubble: {lost} flow events lost on {}", if node.is_empty() { "relay" } else { &node }),
        );
        if let Some(Marker::Lost { count, nodes, sources, .. }) = self.flows.last_lost_mut() {
            *count += lost;
            if !node.is_empty() && !nodes.contains(&node) {
                nodes.push(node);
            }
            if !sources.contains(&source) {
                sources.push(source);
            }
            return;
        }
        let nodes = if node.is_empty() { Vec::new() } else { vec![node] };
        let marker = Marker::Lost { count: lost, at, nodes, sources: vec![source] };
        self.flows.push(StoredRow::Marker(Box::new(marker)));
    }

    /// How far each source behind the migration state can be trusted.
    fn known(&self, id: SourceId) -> Known {
        match self.sources.get(&id).map(|s| &s.state) {
            Some(SourceState::Live { .. }) => Known::Live,
            Some(SourceState::Failing { problem: SourceProblem::NotInstalled(_), .. }) => Known::Absent,
            Some(SourceState::Failing { problem, .. }) => Known::Failing(describe_problem(problem)),
            Some(SourceState::Connecting) | None => Known::Waiting,
        }
    }

    /// What the per-node migration derivation reads.
    pub fn migration_inputs(&self) -> Inputs<'_> {
        Inputs {
            nodes: &self.nodes,
            nodes_known: self.known(SourceId::Nodes),
            pods: &self.pods,
            pods_known: self.known(SourceId::Pods),
            endpoints: &self.endpoints,
            endpoints_known: self.known(SourceId::CiliumEndpoints),
            starts: &self.node_starts,
            starts_known: self.known(SourceId::NodeEvents),
        }
    }

    /// Every node's migration state, in name order (the header, the Nodes pane and `cutover
    /// status` all use this one derivation).
    pub fn migration(&self) -> Vec<NodeVerdict> {
        self.migration_inputs().verdicts()
    }

    /// Derives the runbook stage from what the cluster shows (never from what we did): "Cilium is
    /// the CNI" only when every node has switched and every pod on it is managed; otherwise how
    /// many nodes have, and why the others have not.
    pub fn derive_stage(&self) -> String {
        if self.nodes.is_empty() {
            return "unknown".into();
        }
        let verdicts = self.migration();
        let inputs = self.migration_inputs();
        let servers: Vec<_> = self.nodes.values().filter(|n| n.server).collect();
        let args: Vec<_> = servers.iter().filter_map(|n| n.k3s_args.as_ref()).collect();
        let any_server_switched = args.iter().any(|a| !a.flannel_enabled());
        let kp_off = !args.is_empty() && args.len() == servers.len() && args.iter().all(|a| a.disable_kube_proxy);
        let cilium = self.apps.get(&self.cilium_app);
        let switched = verdicts.iter().filter(|v| v.state.is_switched()).count();
        let total = verdicts.len();
        if switched == total {
            let not_ready: Vec<&str> = self
                .nodes
                .keys()
                .filter(|n| !self.cilium_agent(n).is_some_and(|p| p.ready))
                .map(String::as_str)
                .collect();
            let agents = if not_ready.is_empty() {
                String::new()
            } else {
                format!(" · cilium agent not ready: {}", list(&not_ready))
            };
            if kp_off {
                let pending: Vec<&str> = self
                    .nodes
                    .values()
                    .filter(|n| inputs.follows_servers(n) != Some(true))
                    .map(|n| n.name.as_str())
                    .collect();
                if !pending.is_empty() {
                    return format!(
                        "2 · kube-proxy off on the servers · not restarted since: {}{agents}",
                        list(&pending)
                    );
                }
                return format!("2 · kube-proxy replacement{agents}");
            }
            return format!("1 · Cilium is the CNI{agents}");
        }
        if let Some(why) = verdicts
            .iter()
            .map(|v| match &v.state {
                NodeMigration::Unknown(why) => Some(why),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .and_then(|whys| whys.first().copied())
        {
            return format!("? · node state unknown: {why}");
        }
        let all_flannel = verdicts.iter().all(|v| v.state == NodeMigration::Flannel { awaiting_restart: false });
        let no_app = if cilium.is_none() { " · no Cilium app" } else { "" };
        if all_flannel {
            if cilium.is_none() && !any_server_switched {
                return "0 · flannel (pre-flight)".into();
            }
            return format!("1 · 0/{total} nodes switched{no_app} · flannel still on in the servers' node-args");
        }
        let pending: Vec<String> =
            verdicts.iter().filter(|v| !v.state.is_switched()).map(|v| format!("{} ({})", v.node, v.reason)).collect();
        format!(
            "1 · {switched}/{total} nodes switched{no_app} · pending: {}",
            list(&pending.iter().map(String::as_str).collect::<Vec<_>>())
        )
    }

    pub fn cilium_agent(&self, node: &str) -> Option<&PodSummary> {
        self.pods.values().find(|p| p.role == PodRole::CiliumAgent && p.node == node && !p.terminating)
    }

    pub fn pods_on(&self, node: &str) -> usize {
        self.pods.values().filter(|p| p.node == node && !p.terminating).count()
    }

    /// (flows/s, drops/s) observed from a node over the last minute, or `None` when unknown:
    /// the relay is not connected, or does not report the node as connected.
    pub fn node_rates(&self, node: &str) -> Option<(f64, f64)> {
        let since = self.relay.connected_since?;
        if self.relay.nodes.get(node) != Some(&NodeState::NodeConnected) {
            return None;
        }
        Some(self.flows.per_node.get(node).map_or((0.0, 0.0), |r| r.rates(self.now, since)))
    }

    /// Overall (flows/s, drops/s), or `None` while disconnected.
    pub fn flow_rates(&self) -> Option<(f64, f64)> {
        let since = self.relay.connected_since?;
        Some(self.flows.rate.rates(self.now, since))
    }

    /// True when the API cannot be reached now: some source is failing with the API unreachable
    /// and none is live. Derived from the sources' current states each time (never a sticky
    /// flag), so the header clears as soon as one watch is back.
    pub fn api_unreachable(&self) -> bool {
        let states = || self.sources.values().map(|s| &s.state);
        states().any(|s| matches!(s, SourceState::Failing { problem: SourceProblem::Unreachable(_), .. }))
            && !states().any(|s| matches!(s, SourceState::Live { .. }))
    }
}

pub use crate::hubble::format::strip_cluster_prefix;

/// `a, b, c` — at most four, then `+N more` (the header is one line).
fn list(items: &[&str]) -> String {
    const SHOWN: usize = 4;
    let mut out = items.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
    if items.len() > SHOWN {
        out.push_str(&format!(", +{} more", items.len() - SHOWN));
    }
    out
}

fn describe_problem(p: &SourceProblem) -> String {
    match p {
        SourceProblem::Forbidden(m) => format!("forbidden ({m})"),
        SourceProblem::NotInstalled(m) => format!("not installed ({m})"),
        SourceProblem::Unreachable(m) => format!("API unreachable ({m})"),
        SourceProblem::Other(m) => m.clone(),
    }
}

fn apply_change<T>(
    map: &mut BTreeMap<String, T>,
    source: Option<&mut Source>,
    change: Change<T>,
    key: impl Fn(&T) -> String,
) {
    let Some(source) = source else { return };
    match change {
        Change::Init => source.relisting = Some(BTreeSet::new()),
        Change::InitApply(obj) => {
            let k = key(&obj);
            if let Some(seen) = source.relisting.as_mut() {
                seen.insert(k.clone());
            }
            map.insert(k, obj);
        }
        Change::InitDone => {
            if let Some(seen) = source.relisting.take() {
                map.retain(|k, _| seen.contains(k));
            }
        }
        Change::Apply(obj) => {
            map.insert(key(&obj), obj);
        }
        Change::Delete(obj) => {
            map.remove(&key(&obj));
        }
    }
}

fn apply_single<T>(slot: &mut Option<T>, change: Change<T>) {
    match change {
        Change::Init => {}
        Change::InitApply(o) | Change::Apply(o) => *slot = Some(o),
        Change::InitDone => {}
        Change::Delete(_) => *slot = None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn node(name: &str) -> NodeSummary {
        NodeSummary { name: name.into(), ready: Some(true), ..Default::default() }
    }

    #[test]
    fn relist_removes_vanished_objects() {
        let mut s = AppState::new(ts(1_000), Mode::ReadOnly, 10);
        s.on_kube(KubeEvent::Nodes(Change::Apply(node("a"))));
        s.on_kube(KubeEvent::Nodes(Change::Apply(node("b"))));
        s.on_kube(KubeEvent::Nodes(Change::Init));
        s.on_kube(KubeEvent::Nodes(Change::InitApply(node("b"))));
        s.on_kube(KubeEvent::Nodes(Change::InitDone));
        assert_eq!(s.nodes.keys().cloned().collect::<Vec<_>>(), vec!["b".to_string()]);
    }

    #[test]
    fn problems_keep_last_state_and_count_attempts() {
        let mut s = AppState::new(ts(1_000), Mode::ReadOnly, 10);
        s.on_kube(KubeEvent::Nodes(Change::Apply(node("a"))));
        s.now = ts(1_010);
        for _ in 0..3 {
            s.on_kube(KubeEvent::Problem(SourceId::Nodes, SourceProblem::Unreachable("connection refused".into())));
        }
        assert_eq!(s.nodes.len(), 1);
        match &s.sources[&SourceId::Nodes].state {
            SourceState::Failing { attempts, last_good, .. } => {
                assert_eq!(*attempts, 3);
                assert_eq!(*last_good, Some(ts(1_000)));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(s.api_unreachable());
        // A relist attempt is announced with Init before it can fail: not a recovery.
        s.on_kube(KubeEvent::Nodes(Change::Init));
        assert!(s.api_unreachable());
        s.on_kube(KubeEvent::Nodes(Change::Apply(node("a"))));
        assert!(!s.api_unreachable());
    }

    #[test]
    fn a_relist_marks_a_stale_source_live_without_any_change() {
        let mut s = AppState::new(ts(1_000), Mode::ReadOnly, 10);
        let op = WorkloadSummary { name: "cilium-operator".into(), ..Default::default() };
        s.on_kube(KubeEvent::CiliumOperator(Change::Init));
        s.on_kube(KubeEvent::CiliumOperator(Change::InitApply(op.clone())));
        s.on_kube(KubeEvent::CiliumOperator(Change::InitDone));
        s.on_kube(KubeEvent::Pdbs(Change::Init));
        s.on_kube(KubeEvent::Pdbs(Change::InitDone));
        s.now = ts(1_060);
        for _ in 0..6 {
            s.on_kube(KubeEvent::Problem(SourceId::CiliumOperator, SourceProblem::Unreachable("503".into())));
            s.on_kube(KubeEvent::Problem(SourceId::Pdbs, SourceProblem::Unreachable("503".into())));
        }
        assert!(matches!(s.sources[&SourceId::Pdbs].state, SourceState::Failing { attempts: 6, .. }));
        assert!(s.api_unreachable());
        s.now = ts(1_300);
        // The watch is back: the same object listed again, nothing changed.
        s.on_kube(KubeEvent::CiliumOperator(Change::Init));
        assert!(matches!(s.sources[&SourceId::CiliumOperator].state, SourceState::Failing { .. }));
        s.on_kube(KubeEvent::CiliumOperator(Change::InitApply(op.clone())));
        s.on_kube(KubeEvent::CiliumOperator(Change::InitDone));
        assert_eq!(s.sources[&SourceId::CiliumOperator].state, SourceState::Live { since: ts(1_300) });
        assert_eq!(s.operator, Some(op));
        assert!(!s.api_unreachable(), "one live source clears the header");
        // An empty collection (no PDBs) re-listed: Init, InitDone and nothing else.
        s.on_kube(KubeEvent::Pdbs(Change::Init));
        s.on_kube(KubeEvent::Pdbs(Change::InitDone));
        assert_eq!(s.sources[&SourceId::Pdbs].state, SourceState::Live { since: ts(1_300) });
        // The retry count starts again at the next failure.
        s.on_kube(KubeEvent::Problem(SourceId::Pdbs, SourceProblem::Other("429 TooManyRequests: busy".into())));
        assert!(matches!(s.sources[&SourceId::Pdbs].state, SourceState::Failing { attempts: 1, .. }));
        let lines: Vec<&str> = s.log.iter().map(|l| l.text.as_str()).collect();
        assert!(lines.contains(&"poddisruptionbudgets watch: 429 TooManyRequests: busy"), "{lines:?}");
        assert!(lines.contains(&"deployment/cilium-operator: watching again"), "{lines:?}");
    }

    #[test]
    fn unknown_rates_are_not_zero() {
        let mut s = AppState::new(ts(1_000), Mode::ReadOnly, 10);
        assert_eq!(s.node_rates("a"), None);
        s.on_relay_connected("127.0.0.1:4245");
        assert_eq!(s.node_rates("a"), None, "relay does not report node a");
        s.on_relay_nodes(&[RelayNode {
            name: "homelab/a".into(),
            state: NodeState::NodeConnected as i32,
            ..Default::default()
        }]);
        assert_eq!(s.node_rates("a"), Some((0.0, 0.0)));
        s.now = ts(1_002);
        s.on_flow(Flow { node_name: "homelab/a".into(), verdict: Verdict::Dropped as i32, ..Default::default() });
        let (f, d) = s.node_rates("a").unwrap();
        assert!(f > 0.0 && d > 0.0);
    }

    #[test]
    fn filter_bit_is_kept_on_arrival_and_on_change() {
        let mut s = AppState::new(ts(1_000), Mode::ReadOnly, 10);
        let dropped = Flow { verdict: Verdict::Dropped as i32, ..Default::default() };
        let fwd = Flow { verdict: Verdict::Forwarded as i32, ..Default::default() };
        s.on_flow(dropped.clone());
        s.set_flow_filter(crate::app::flowview::ViewFilter::parse("verdict:dropped").ok());
        s.on_flow(fwd.clone());
        s.on_flow(dropped);
        let bits: Vec<bool> = flows(&s).iter().map(|f| f.matches).collect();
        assert_eq!(bits, vec![true, false, true]);
        assert_eq!(flows(&s)[1].decode(), Some(fwd));
        s.set_flow_filter(None);
        assert!(flows(&s).iter().all(|f| f.matches));
    }

    fn flows(s: &AppState) -> Vec<&StoredFlow> {
        s.flows
            .rows
            .iter()
            .filter_map(|r| match r {
                StoredRow::Flow(f) => Some(f),
                StoredRow::Marker(_) => None,
            })
            .collect()
    }

    #[test]
    fn ring_buffer_is_bounded() {
        let mut s = AppState::new(ts(1_000), Mode::ReadOnly, 3);
        for _ in 0..10 {
            s.on_flow(Flow::default());
        }
        assert_eq!(s.flows.rows.len(), 3);
        assert_eq!(s.flows.total, 10);
    }

    fn t(seconds: i64) -> pbjson_types::Timestamp {
        pbjson_types::Timestamp { seconds, nanos: 0 }
    }

    #[test]
    fn gaps_are_rows_that_age_out_and_stay_counted() {
        let mut s = AppState::new(ts(1_000), Mode::ReadOnly, 3);
        s.on_flow(Flow::default());
        // 1764024408 = 2025-11-24T22:46:48Z.
        s.on_gap(t(1_764_024_408), Some(t(1_764_024_427)), "relay reconnect (homelab-w1: buffer overwritten)");
        let Some(StoredRow::Marker(m)) = s.flows.rows.back() else { panic!("a marker row") };
        assert_eq!(
            m.text(),
            "flows from 22:46:48 to 22:47:07 may be missing: relay reconnect (homelab-w1: buffer overwritten)"
        );
        assert_eq!(s.relay.gap.as_deref(), Some(m.text().as_str()));
        assert!(s.log.back().is_some_and(|l| l.text.contains("may be missing")));
        for _ in 0..3 {
            s.on_flow(Flow::default());
        }
        assert!(s.flows.rows.iter().all(|r| matches!(r, StoredRow::Flow(_))), "aged out with the buffer");
        assert_eq!(s.flows.gaps, 1, "the count stays");
    }

    #[test]
    fn lost_events_are_one_marker_until_a_flow_arrives() {
        use crate::hubble::proto::flow::LostEventSource;
        let mut s = AppState::new(ts(1_000), Mode::ReadOnly, 10);
        let perf = LostEventSource::PerfEventRingBuffer as i32;
        s.on_lost(5, "homelab/homelab-w1", perf, Some(t(1_764_024_408)));
        s.on_lost(7, "homelab/homelab-w2", perf, None);
        s.on_flow(Flow::default());
        s.on_lost(1, "", LostEventSource::HubbleRingBuffer as i32, None);
        let texts: Vec<String> = s
            .flows
            .rows
            .iter()
            .filter_map(|r| match r {
                StoredRow::Marker(m) => Some(m.text()),
                StoredRow::Flow(_) => None,
            })
            .collect();
        assert_eq!(
            texts,
            vec![
                "22:46:48 12 flow events lost on homelab-w1, homelab-w2 (agent perf ring full)".to_string(),
                "1 flow events lost on relay (reader fell behind the Hubble ring)".to_string(),
            ]
        );
        assert_eq!(s.relay.lost_events, 13);
        assert_eq!(s.flows.gaps, 0, "lost events are counted as lost, not as gaps");
        // A paused view's marker stays as it was: later losses start a new marker.
        s.flows.toggle_pause();
        s.on_lost(2, "", LostEventSource::HubbleRingBuffer as i32, None);
        let counts: Vec<u64> = s
            .flows
            .rows
            .iter()
            .filter_map(|r| match r {
                StoredRow::Marker(m) => match **m {
                    Marker::Lost { count, .. } => Some(count),
                    Marker::Gap { .. } => None,
                },
                StoredRow::Flow(_) => None,
            })
            .collect();
        assert_eq!(counts, vec![12, 1, 2]);
    }
}
