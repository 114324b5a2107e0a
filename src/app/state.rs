//! The one state of the cockpit. Only [`AppState::apply`] and the `on_*` handlers change it;
//! rendering only reads it. Time is an input (`now`), so the state and its views are
//! deterministic under test.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use jiff::{SignedDuration, Timestamp};

use super::model::{AppSummary, NodeSummary, PdbSummary, PodRole, PodSummary, WorkloadSummary};
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
    /// A gap the relay could not fill after a reconnect.
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

/// The bounded flow buffer with its counters.
#[derive(Debug, Clone)]
pub struct FlowBuffer {
    pub flows: VecDeque<StoredFlow>,
    pub capacity: usize,
    pub total: u64,
    pub drops: u64,
    /// Whole-stream rate (all nodes).
    pub rate: NodeRate,
    pub per_node: BTreeMap<String, NodeRate>,
}

impl FlowBuffer {
    pub fn new(capacity: usize) -> Self {
        FlowBuffer {
            flows: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
            total: 0,
            drops: 0,
            rate: NodeRate::default(),
            per_node: BTreeMap::new(),
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
    /// Frozen view: the number of flows received when paused; the buffer keeps filling.
    pub paused_at_total: Option<u64>,
    /// Rows scrolled up from the newest (0 = follow the newest).
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
                self.log(level, format!("{id}: {}", describe_problem(&problem)));
            }
            return;
        }
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
        if self.flows.flows.len() == self.flows.capacity {
            self.flows.flows.pop_front();
        }
        self.flows.flows.push_back(stored);
    }

    /// Sets (or clears) the `/` filter and re-evaluates it once over the buffer.
    pub fn set_flow_filter(&mut self, filter: Option<crate::app::flowview::ViewFilter>) {
        for f in self.flows.flows.iter_mut() {
            f.matches = match &filter {
                None => true,
                Some(flt) => f.decode().is_some_and(|flow| flt.matches(&flow)),
            };
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

    pub fn on_lost(&mut self, lost: u64, node: &str) {
        self.relay.lost_events += lost;
        self.log(
            Level::Warn,
            format!(
                "hubble: {lost} flow events lost on {}",
                if node.is_empty() { "relay" } else { strip_cluster_prefix(node) }
            ),
        );
    }

    /// Derives the runbook stage from what the cluster shows (never from what we did).
    pub fn derive_stage(&self) -> String {
        let servers: Vec<_> = self.nodes.values().filter(|n| n.server).collect();
        let args: Vec<_> = servers.iter().filter_map(|n| n.k3s_args.as_ref()).collect();
        if self.nodes.is_empty() {
            return "unknown".into();
        }
        let flannel_off = !args.is_empty() && args.iter().all(|a| !a.flannel_enabled());
        let kp_off = !args.is_empty() && args.iter().all(|a| a.disable_kube_proxy);
        let cilium = self.apps.get(&self.cilium_app);
        let agents_ready = self.nodes.keys().all(|n| self.cilium_agent(n).is_some_and(|p| p.ready));
        match (cilium, flannel_off, kp_off, agents_ready) {
            (None, false, _, _) => "0 · flannel (pre-flight)".into(),
            (None, true, _, _) => "1 · k3s flags set, no Cilium app".into(),
            (Some(_), _, true, true) => "2 · kube-proxy replacement".into(),
            (Some(_), _, _, true) => "1 · Cilium is the CNI".into(),
            (Some(_), _, _, false) => "1 · Cilium rolling out".into(),
        }
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

    /// True when any Kubernetes source is failing with the API unreachable.
    pub fn api_unreachable(&self) -> bool {
        self.sources
            .values()
            .any(|s| matches!(&s.state, SourceState::Failing { problem: SourceProblem::Unreachable(_), .. }))
    }
}

pub use crate::hubble::format::strip_cluster_prefix;

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
        let bits: Vec<bool> = s.flows.flows.iter().map(|f| f.matches).collect();
        assert_eq!(bits, vec![true, false, true]);
        assert_eq!(s.flows.flows[1].decode(), Some(fwd));
        s.set_flow_filter(None);
        assert!(s.flows.flows.iter().all(|f| f.matches));
    }

    #[test]
    fn ring_buffer_is_bounded() {
        let mut s = AppState::new(ts(1_000), Mode::ReadOnly, 3);
        for _ in 0..10 {
            s.on_flow(Flow::default());
        }
        assert_eq!(s.flows.flows.len(), 3);
        assert_eq!(s.flows.total, 10);
    }
}
