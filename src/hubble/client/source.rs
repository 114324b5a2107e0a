//! The long-running flow source of the Flows pane: follow with reconnect, capped exponential
//! backoff with jitter, resume from the last flow without duplicates, gaps surfaced, relay status
//! refreshed on the same connection, client-side drops counted.
//!
//! A gap is reported after every reconnect that cannot be proven complete (see
//! [`assess_resume`]): the relay is asked, per node, for the oldest flow it still holds and for its
//! ring counters and uptime; a node whose ring no longer reaches back to the resume point and has
//! overwritten flows, a node that restarted or is unavailable, a node that vanished, or a relay
//! that cannot answer all mean "flows from the last one seen to … may be missing".

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use pbjson_types::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::{
    HubbleError, RelayServiceWatch, RelayTarget, connect_via_kube_watched, get_flows, get_nodes, server_status,
    watch_relay_service,
};
use crate::hubble::filter::CompiledRequest;
use crate::hubble::proto::flow::FlowFilter;
use crate::hubble::proto::observer::{
    GetFlowsRequest, GetFlowsResponse, Node, ServerStatusResponse, get_flows_response::ResponseTypes,
};
use crate::hubble::proto::relay::NodeState;
use crate::hubble::time::{system_time_to_timestamp, timestamp_from_nanos, timestamp_nanos};

/// What to ask the relay for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowQuery {
    /// Last N flows per node (0 with `follow` = only new flows).
    pub number: u64,
    /// Oldest N instead of newest.
    pub first: bool,
    pub follow: bool,
    pub whitelist: Vec<FlowFilter>,
    pub blacklist: Vec<FlowFilter>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl FlowQuery {
    /// The newest `n` flows per node, then follow.
    pub fn follow_last(n: u64) -> FlowQuery {
        FlowQuery { number: n, follow: true, ..Default::default() }
    }

    /// The request for this query.
    pub fn to_request(&self) -> GetFlowsRequest {
        GetFlowsRequest {
            number: self.number,
            first: self.first,
            follow: self.follow,
            blacklist: self.blacklist.clone(),
            whitelist: self.whitelist.clone(),
            since: self.since,
            until: self.until,
            field_mask: None,
            experimental: None,
        }
    }
}

/// Events of a flow source, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum HubbleEvent {
    /// The stream is established (`attempt` = failed attempts before this one).
    Connected { target: String, attempt: u32 },
    /// A flow (the whole response, so `node_name`/`time` come along).
    Flow(Box<GetFlowsResponse>),
    /// A relay node-status event (node connected / unavailable / gone / error).
    NodeStatus { state: i32, nodes: Vec<String>, message: String, node_name: String, time: Option<Timestamp> },
    /// The relay or an agent lost events (ring buffer overrun, perf buffer full).
    Lost { source: i32, count: u64, cpu: Option<i32>, node_name: String, time: Option<Timestamp> },
    /// After a reconnect, flows between `from` (the newest flow delivered before the disconnect)
    /// and `to` may be missing: the reconnect could not be proven complete. `to` is the oldest flow
    /// the relay still holds on the affected nodes, or the moment of the reconnect; `None` only
    /// when not even that is known. `reason` is short and starts with `relay reconnect`, e.g.
    /// `relay reconnect (homelab-w1: buffer overwritten)`. Sent after `Connected` and before the
    /// resumed flows, so a consumer keeping flows in arrival order puts it where the hole is.
    Gap { from: Timestamp, to: Option<Timestamp>, reason: String },
    /// The consumer was too slow: `count` flows were dropped here since the last report
    /// (`total` since start).
    ClientDropped { count: u64, total: u64 },
    /// The connection or stream failed; the source retries in `retry_in`.
    Disconnected { error: String, attempt: u32, retry_in: Duration },
    /// `ServerStatus`, refreshed periodically.
    ServerStatus(ServerStatusResponse),
    /// `GetNodes`, refreshed periodically.
    Nodes(Vec<Node>),
    /// A non-follow query (or one with `until`) is complete; the source stopped.
    Ended,
    /// A permanent error (invalid filter or address); the source stopped.
    Failed { error: String },
}

/// Tuning of [`spawn_flow_source_with`].
#[derive(Debug, Clone)]
pub struct FlowSourceOptions {
    /// How often `ServerStatus` and `GetNodes` are refreshed.
    pub status_interval: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Drop flows (and count them) when the channel is full instead of waiting. Waiting would stall
    /// the network read and make the relay drop them anyway, later and silently.
    pub drop_when_full: bool,
    /// How far before the last delivered flow a resume starts (catches slightly out-of-order flows;
    /// duplicates in that window are recognised and dropped).
    pub resume_overlap: Duration,
    /// Seed of the backoff jitter (None = random).
    pub jitter_seed: Option<u64>,
}

impl Default for FlowSourceOptions {
    fn default() -> Self {
        FlowSourceOptions {
            status_interval: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(15),
            drop_when_full: true,
            resume_overlap: Duration::from_secs(1),
            jitter_seed: None,
        }
    }
}

/// Counters of a flow source, readable at any time (the TUI shows them without waiting for events).
#[derive(Debug, Default)]
pub struct FlowSourceStats {
    pub received: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped_client: AtomicU64,
    pub duplicates: AtomicU64,
    pub lost_server: AtomicU64,
    pub reconnects: AtomicU64,
    /// Reconnects that could not be proven complete (each sent as a `Gap`).
    pub gaps: AtomicU64,
    pub connected: AtomicBool,
    /// Time of the newest delivered flow, Unix nanoseconds (0 = none yet).
    pub last_flow_unix_nanos: AtomicI64,
}

/// A copy of [`FlowSourceStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStatsSnapshot {
    pub received: u64,
    pub delivered: u64,
    pub dropped_client: u64,
    pub duplicates: u64,
    pub lost_server: u64,
    pub reconnects: u64,
    pub gaps: u64,
    pub connected: bool,
    pub last_flow_unix_nanos: i64,
}

impl FlowSourceStats {
    pub fn snapshot(&self) -> FlowStatsSnapshot {
        FlowStatsSnapshot {
            received: self.received.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped_client: self.dropped_client.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            lost_server: self.lost_server.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            last_flow_unix_nanos: self.last_flow_unix_nanos.load(Ordering::Relaxed),
        }
    }
}

/// A running flow source. Dropping it does not stop the task; call [`FlowSource::abort`] or drop
/// the receiver (the task ends when the channel closes).
pub struct FlowSource {
    pub task: JoinHandle<()>,
    pub stats: Arc<FlowSourceStats>,
}

impl FlowSource {
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Starts a background task that streams `query` from `target` into `tx` (see [`HubbleEvent`])
/// with default options. Flows use `try_send` (counted when dropped); other events wait for room.
/// The channel may carry any event type made from a `HubbleEvent` (the cockpit's own event type:
/// no forwarding task, no second channel hop per flow).
pub fn spawn_flow_source<E>(target: RelayTarget, query: FlowQuery, tx: mpsc::Sender<E>) -> FlowSource
where
    E: From<HubbleEvent> + Send + 'static,
{
    spawn_flow_source_with(target, query, tx, FlowSourceOptions::default())
}

/// [`spawn_flow_source`] with options.
pub fn spawn_flow_source_with<E>(
    target: RelayTarget,
    query: FlowQuery,
    tx: mpsc::Sender<E>,
    opts: FlowSourceOptions,
) -> FlowSource
where
    E: From<HubbleEvent> + Send + 'static,
{
    let stats = Arc::new(FlowSourceStats::default());
    let runner = Runner {
        target,
        query,
        tx: EventTx { inner: tx },
        rng: opts.jitter_seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
        opts,
        stats: stats.clone(),
        dedup: Dedup::default(),
        high_water: None,
        known_nodes: BTreeSet::new(),
        pending_dropped: 0,
        encode_buf: Vec::new(),
    };
    FlowSource { task: tokio::spawn(runner.run()), stats }
}

/// Keys of recently delivered flows, to drop the overlap a resume replays.
#[derive(Default)]
struct Dedup {
    set: HashSet<(i128, u64)>,
    order: VecDeque<(i128, u64)>,
}

const DEDUP_MAX: usize = 200_000;

impl Dedup {
    /// Records the key; false if it was already delivered.
    fn insert(&mut self, key: (i128, u64), keep_after: i128) -> bool {
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        while let Some(front) = self.order.front() {
            if front.0 < keep_after || self.order.len() > DEDUP_MAX {
                self.set.remove(front);
                self.order.pop_front();
            } else {
                break;
            }
        }
        true
    }
}

/// The source's end of the channel: converts each `HubbleEvent` into the consumer's event type.
struct EventTx<E> {
    inner: mpsc::Sender<E>,
}

impl<E: From<HubbleEvent>> EventTx<E> {
    async fn send(&self, ev: HubbleEvent) -> Result<(), mpsc::error::SendError<E>> {
        self.inner.send(E::from(ev)).await
    }

    fn try_send(&self, ev: HubbleEvent) -> Result<(), mpsc::error::TrySendError<E>> {
        self.inner.try_send(E::from(ev))
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    async fn closed(&self) {
        self.inner.closed().await;
    }
}

/// Resolves when the watched value changes (never without a watch, or once it has stopped).
async fn changed<T>(rx: Option<&mut tokio::sync::watch::Receiver<T>>) {
    if let Some(rx) = rx
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending::<()>().await
}

struct Runner<E> {
    target: RelayTarget,
    query: FlowQuery,
    tx: EventTx<E>,
    opts: FlowSourceOptions,
    rng: fastrand::Rng,
    stats: Arc<FlowSourceStats>,
    dedup: Dedup,
    /// Time of the newest delivered flow.
    high_water: Option<Timestamp>,
    /// Nodes the relay reported (any state) at the last status refresh: a node among them that
    /// is gone or restarted after a reconnect may have taken flows with it.
    known_nodes: BTreeSet<String>,
    pending_dropped: u64,
    encode_buf: Vec<u8>,
}

enum StreamOutcome {
    /// Stop: done or the receiver is gone.
    Stop,
    /// Reconnect after this error; `progressed` = something was received.
    Retry { error: HubbleError, progressed: bool },
}

impl<E: From<HubbleEvent> + Send + 'static> Runner<E> {
    async fn run(mut self) {
        // Validate the filters once: an invalid filter never becomes valid.
        if let Err(e) = CompiledRequest::new(&self.query.whitelist, &self.query.blacklist) {
            let _ = self.tx.send(HubbleEvent::Failed { error: HubbleError::from(e).to_string() }).await;
            return;
        }
        // Through the Kubernetes API, Service hubble-relay is watched rather than read at every
        // attempt: without Hubble Relay installed, reconnecting costs no request, and the relay
        // is tried as soon as its Service appears.
        let relay_service = match &self.target {
            RelayTarget::Kube { client, namespace } => Some(watch_relay_service(client.clone(), namespace)),
            _ => None,
        };
        let mut service_changes = relay_service.as_ref().map(RelayServiceWatch::subscribe);
        let mut attempt: u32 = 0;
        loop {
            if self.tx.is_closed() {
                return;
            }
            if let Some(rx) = service_changes.as_mut() {
                rx.borrow_and_update();
            }
            let connected = match (&self.target, &relay_service) {
                (RelayTarget::Kube { client, namespace }, Some(w)) => {
                    connect_via_kube_watched(client.clone(), namespace, w.subscribe()).await
                }
                _ => self.target.connect().await,
            };
            let outcome = match connected {
                Ok(channel) => self.stream_once(&channel, attempt).await,
                Err(error) => StreamOutcome::Retry { error, progressed: false },
            };
            self.stats.connected.store(false, Ordering::Relaxed);
            let (error, progressed) = match outcome {
                StreamOutcome::Stop => return,
                StreamOutcome::Retry { error, progressed } => (error, progressed),
            };
            if !error.is_retryable() {
                let _ = self.tx.send(HubbleEvent::Failed { error: error.to_string() }).await;
                return;
            }
            attempt = if progressed { 0 } else { attempt.saturating_add(1) };
            let retry_in = self.backoff(attempt);
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target = %self.target.describe(), error = %error, ?retry_in, "hubble flow stream disconnected");
            if self.tx.send(HubbleEvent::Disconnected { error: error.to_string(), attempt, retry_in }).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(retry_in) => {}
                // The Service appeared, changed or went: try now.
                _ = changed(service_changes.as_mut()) => {}
                _ = self.tx.closed() => return,
            }
        }
    }

    /// Capped exponential backoff with jitter (50–100 % of the step).
    fn backoff(&mut self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(16);
        let base = self.opts.backoff_initial.saturating_mul(1u32 << exp).min(self.opts.backoff_max);
        base.mul_f64(0.5 + self.rng.f64() * 0.5)
    }

    fn request(&self) -> GetFlowsRequest {
        let mut req = self.query.to_request();
        if let Some(hw) = self.high_water {
            // Resume: everything from shortly before the last delivered flow; duplicates dropped.
            let overlap = i128::try_from(self.opts.resume_overlap.as_nanos()).unwrap_or(0);
            req.since = Some(crate::hubble::time::timestamp_from_nanos(timestamp_nanos(&hw) - overlap));
            req.number = 0;
            req.first = false;
        }
        req
    }

    async fn stream_once(&mut self, channel: &Channel, attempt: u32) -> StreamOutcome {
        let label = self.target.describe();
        let resuming = self.high_water;
        let req = self.request();
        let since = req.since;
        let mut stream = match get_flows(channel, &label, req.clone()).await {
            Ok(s) => s,
            Err(error) => return StreamOutcome::Retry { error, progressed: false },
        };
        self.stats.connected.store(true, Ordering::Relaxed);
        if self.tx.send(HubbleEvent::Connected { target: label.clone(), attempt }).await.is_err() {
            return StreamOutcome::Stop;
        }
        if let (Some(hw), Some(since)) = (resuming, since) {
            self.check_gap(channel, &label, hw, since).await;
        }
        let mut progressed = false;
        let mut ticker = tokio::time::interval(self.opts.status_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = self.tx.closed() => return StreamOutcome::Stop,
                msg = stream.message() => match msg {
                    Ok(Some(resp)) => {
                        progressed = true;
                        if !self.handle(resp).await {
                            return StreamOutcome::Stop;
                        }
                    }
                    Ok(None) => {
                        if !self.query.follow || self.query.until.is_some() {
                            let _ = self.flush_dropped().await;
                            let _ = self.tx.send(HubbleEvent::Ended).await;
                            return StreamOutcome::Stop;
                        }
                        return StreamOutcome::Retry {
                            error: HubbleError::StreamEnded { target: label, reason: "the relay closed the stream".into() },
                            progressed,
                        };
                    }
                    Err(error) => return StreamOutcome::Retry { error, progressed },
                },
                _ = ticker.tick() => {
                    self.refresh_status(channel, &label).await;
                    if !self.flush_dropped().await {
                        return StreamOutcome::Stop;
                    }
                }
            }
        }
    }

    /// After a reconnect: asks the relay what it still holds (GetNodes: state, ring counters,
    /// uptime; the oldest flow of every node) and sends a [`HubbleEvent::Gap`] unless that proves
    /// nothing since `since` was lost (see [`assess_resume`]).
    async fn check_gap(&mut self, channel: &Channel, label: &str, high_water: Timestamp, since: Timestamp) {
        let t = Duration::from_secs(5);
        let nodes = match tokio::time::timeout(t, get_nodes(channel, label)).await {
            Ok(Ok(nodes)) => Some(nodes),
            _ => None,
        };
        let oldest = self.oldest_per_node(channel, label).await;
        let now = timestamp_nanos(&system_time_to_timestamp(std::time::SystemTime::now()));
        let evidence = ResumeEvidence {
            high_water: timestamp_nanos(&high_water),
            since: timestamp_nanos(&since),
            now,
            known: &self.known_nodes,
            nodes: nodes.as_deref(),
            oldest: oldest.as_ref(),
        };
        let verdict = assess_resume(&evidence);
        if let Some(nodes) = &nodes {
            self.known_nodes = nodes.iter().map(|n| n.name.clone()).collect();
        }
        if let Some((to, reason)) = verdict {
            self.stats.gaps.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target = %label, %reason, "hubble flow stream resumed with a possible gap");
            let ev = HubbleEvent::Gap { from: high_water, to: Some(timestamp_from_nanos(to)), reason };
            let _ = self.tx.send(ev).await;
        }
    }

    /// The oldest flow each node's ring still holds (`first` 1: one per node), by node name;
    /// `None` when the relay did not answer completely.
    async fn oldest_per_node(&self, channel: &Channel, label: &str) -> Option<HashMap<String, i128>> {
        let t = Duration::from_secs(5);
        let probe = GetFlowsRequest { number: 1, first: true, ..Default::default() };
        let Ok(Ok(mut s)) = tokio::time::timeout(t, get_flows(channel, label, probe)).await else {
            return None;
        };
        let mut oldest: HashMap<String, i128> = HashMap::new();
        loop {
            match tokio::time::timeout(t, s.message()).await {
                Ok(Ok(Some(r))) => {
                    if let Some(ResponseTypes::Flow(f)) = &r.response_types
                        && let Some(time) = f.time.or(r.time)
                    {
                        let node = if f.node_name.is_empty() { &r.node_name } else { &f.node_name };
                        let t = timestamp_nanos(&time);
                        let e = oldest.entry(node.clone()).or_insert(t);
                        *e = (*e).min(t);
                    }
                }
                Ok(Ok(None)) => return Some(oldest),
                _ => return None,
            }
        }
    }

    async fn refresh_status(&mut self, channel: &Channel, label: &str) {
        let t = Duration::from_secs(5);
        if let Ok(Ok(s)) = tokio::time::timeout(t, server_status(channel, label)).await {
            let _ = self.tx.try_send(HubbleEvent::ServerStatus(s));
        }
        if let Ok(Ok(n)) = tokio::time::timeout(t, get_nodes(channel, label)).await {
            self.known_nodes = n.iter().map(|n| n.name.clone()).collect();
            let _ = self.tx.try_send(HubbleEvent::Nodes(n));
        }
    }

    /// Reports client-side drops not yet reported; false if the receiver is gone.
    async fn flush_dropped(&mut self) -> bool {
        if self.pending_dropped == 0 {
            return true;
        }
        let ev = HubbleEvent::ClientDropped {
            count: self.pending_dropped,
            total: self.stats.dropped_client.load(Ordering::Relaxed),
        };
        match self.tx.try_send(ev) {
            Ok(()) => {
                self.pending_dropped = 0;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn flow_key(
        &mut self,
        resp: &GetFlowsResponse,
        flow: &crate::hubble::proto::flow::Flow,
        time: i128,
    ) -> (i128, u64) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        if flow.uuid.is_empty() {
            self.encode_buf.clear();
            if prost::Message::encode(resp, &mut self.encode_buf).is_ok() {
                self.encode_buf.hash(&mut h);
            }
        } else {
            flow.uuid.hash(&mut h);
        }
        (time, h.finish())
    }

    /// Handles one response; false if the receiver is gone.
    async fn handle(&mut self, resp: GetFlowsResponse) -> bool {
        match &resp.response_types {
            Some(ResponseTypes::Flow(flow)) => {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                let Some(time) = flow.time.or(resp.time) else {
                    return self.deliver(resp).await;
                };
                let t = timestamp_nanos(&time);
                let overlap = i128::try_from(self.opts.resume_overlap.as_nanos()).unwrap_or(0);
                let hw = self.high_water.map_or(i128::MIN, |h| timestamp_nanos(&h));
                let key = self.flow_key(&resp, flow, t);
                if !self.dedup.insert(key, hw.max(t) - overlap) {
                    self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                if t > hw {
                    self.high_water = Some(time);
                    let clamped = i64::try_from(t).unwrap_or(i64::MAX);
                    self.stats.last_flow_unix_nanos.store(clamped, Ordering::Relaxed);
                }
                self.deliver(resp).await
            }
            Some(ResponseTypes::NodeStatus(ns)) => self
                .tx
                .send(HubbleEvent::NodeStatus {
                    state: ns.state_change,
                    nodes: ns.node_names.clone(),
                    message: ns.message.clone(),
                    node_name: resp.node_name.clone(),
                    time: resp.time,
                })
                .await
                .is_ok(),
            Some(ResponseTypes::LostEvents(l)) => {
                self.stats.lost_server.fetch_add(l.num_events_lost, Ordering::Relaxed);
                self.tx
                    .send(HubbleEvent::Lost {
                        source: l.source,
                        count: l.num_events_lost,
                        cpu: l.cpu.as_ref().map(|c| c.value),
                        node_name: resp.node_name.clone(),
                        time: resp.time,
                    })
                    .await
                    .is_ok()
            }
            None => true,
        }
    }

    async fn deliver(&mut self, resp: GetFlowsResponse) -> bool {
        let ev = HubbleEvent::Flow(Box::new(resp));
        if self.opts.drop_when_full {
            match self.tx.try_send(ev) {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    self.flush_dropped().await
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.stats.dropped_client.fetch_add(1, Ordering::Relaxed);
                    self.pending_dropped += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        } else {
            let ok = self.tx.send(ev).await.is_ok();
            if ok {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            ok
        }
    }
}

/// What the relay says after a reconnect (times in Unix nanoseconds).
struct ResumeEvidence<'a> {
    /// The newest flow delivered before the disconnect.
    high_water: i128,
    /// The `since` of the resumed request (`high_water` − overlap).
    since: i128,
    /// Local time of the check.
    now: i128,
    /// Nodes the relay reported before the disconnect.
    known: &'a BTreeSet<String>,
    /// GetNodes now (`None`: it failed).
    nodes: Option<&'a [Node]>,
    /// Oldest flow per node now (`None`: the probe failed).
    oldest: Option<&'a HashMap<String, i128>>,
}

/// An agent that started this long after the last flow we saw restarted in the outage (allows
/// for the agent's clock being a little off ours: uptime is measured on our clock).
const RESTART_SLACK_NANOS: i128 = 1_000_000_000;

/// Decides whether a resumed stream may miss flows. Returns the end of the window that may be
/// missing and the reason, or `None` when completeness is proven: every node the relay reported
/// before is still there and connected, and each node's ring either still reaches back to `since`
/// (its oldest flow is not newer) or has never overwritten a flow (`seen_flows` = `num_flows`,
/// ring not full) and did not restart after `high_water`. A node that appeared during the outage
/// has nothing older to lose. A relay that cannot answer proves nothing.
fn assess_resume(ev: &ResumeEvidence<'_>) -> Option<(i128, String)> {
    let (Some(nodes), Some(oldest)) = (ev.nodes, ev.oldest) else {
        return Some((ev.now, "relay reconnect (the relay could not tell what it still holds)".into()));
    };
    let mut to = i128::MIN;
    let mut causes: Vec<String> = Vec::new();
    for n in nodes {
        let name = crate::hubble::format::strip_cluster_prefix(&n.name);
        if n.state != NodeState::NodeConnected as i32 {
            causes.push(format!("{name}: unavailable"));
            to = to.max(ev.now);
            continue;
        }
        let first = oldest.get(&n.name).copied();
        if first.is_some_and(|t| t <= ev.since) {
            continue;
        }
        let overwritten = n.seen_flows > n.num_flows || (n.max_flows > 0 && n.num_flows >= n.max_flows);
        if overwritten {
            causes.push(format!("{name}: buffer overwritten"));
            to = to.max(first.unwrap_or(ev.now).min(ev.now));
            continue;
        }
        let started = ev.now - i128::from(n.uptime_ns);
        if n.uptime_ns > 0 && started > ev.high_water + RESTART_SLACK_NANOS && ev.known.contains(&n.name) {
            causes.push(format!("{name}: agent restarted"));
            to = to.max(started);
        }
    }
    for k in ev.known {
        if !nodes.iter().any(|n| &n.name == k) {
            causes.push(format!("{}: no longer reported", crate::hubble::format::strip_cluster_prefix(k)));
            to = to.max(ev.now);
        }
    }
    if causes.is_empty() {
        return None;
    }
    const SHOWN: usize = 3;
    let more = causes.len().saturating_sub(SHOWN);
    causes.truncate(SHOWN);
    let mut reason = format!("relay reconnect ({}", causes.join(", "));
    if more > 0 {
        reason.push_str(&format!(", {more} more"));
    }
    reason.push(')');
    Some((to.max(ev.high_water), reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let (tx, _rx) = mpsc::channel::<HubbleEvent>(1);
        let mut r = Runner {
            target: RelayTarget::Address("x:1".into()),
            query: FlowQuery::default(),
            tx: EventTx { inner: tx },
            opts: FlowSourceOptions {
                backoff_initial: Duration::from_millis(100),
                backoff_max: Duration::from_secs(2),
                ..Default::default()
            },
            rng: fastrand::Rng::with_seed(7),
            stats: Arc::default(),
            dedup: Dedup::default(),
            high_water: None,
            known_nodes: BTreeSet::new(),
            pending_dropped: 0,
            encode_buf: Vec::new(),
        };
        for attempt in 1..40 {
            let d = r.backoff(attempt);
            let step =
                Duration::from_millis(100).saturating_mul(1 << (attempt - 1).min(16)).min(Duration::from_secs(2));
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?} vs {step:?}");
        }
    }

    #[test]
    fn dedup_window() {
        let mut d = Dedup::default();
        assert!(d.insert((10, 1), 0));
        assert!(!d.insert((10, 1), 0));
        assert!(d.insert((10, 2), 0));
        assert!(d.insert((20, 1), 15));
        // (10, *) fell out of the window and would be accepted again.
        assert!(d.insert((10, 1), 15));
    }

    const S: i128 = 1_000_000_000;

    fn node(name: &str, state: NodeState, num: u64, max: u64, seen: u64, uptime_s: u64) -> Node {
        Node {
            name: name.into(),
            state: state as i32,
            num_flows: num,
            max_flows: max,
            seen_flows: seen,
            uptime_ns: uptime_s * 1_000_000_000,
            ..Default::default()
        }
    }

    /// Last flow at 100 s, resume `since` 99 s, checked at 130 s.
    fn assess(known: &[&str], nodes: Option<&[Node]>, oldest: &[(&str, i128)]) -> Option<(i128, String)> {
        let known: BTreeSet<String> = known.iter().map(|s| s.to_string()).collect();
        let oldest: HashMap<String, i128> = oldest.iter().map(|(n, t)| (n.to_string(), *t)).collect();
        assess_resume(&ResumeEvidence {
            high_water: 100 * S,
            since: 99 * S,
            now: 130 * S,
            known: &known,
            nodes,
            oldest: Some(&oldest),
        })
    }

    #[test]
    fn a_resume_is_complete_only_when_proven() {
        use NodeState::{NodeConnected as Up, NodeUnavailable as Down};
        // Both rings reach back before `since`: complete, even though full.
        let nodes = [node("a", Up, 4095, 4095, 90_000, 3600), node("b", Up, 10, 4095, 10, 3600)];
        assert_eq!(assess(&["a", "b"], Some(&nodes), &[("a", 50 * S), ("b", 20 * S)]), None);
        // b's oldest is after `since` but it never overwrote anything and ran all along: complete.
        assert_eq!(assess(&["a", "b"], Some(&nodes), &[("a", 50 * S), ("b", 110 * S)]), None);
        // a's ring was overwritten past `since`: missing up to its oldest flow.
        let (to, why) = assess(&["a", "b"], Some(&nodes), &[("a", 120 * S), ("b", 20 * S)]).unwrap();
        assert_eq!(to, 120 * S);
        assert_eq!(why, "relay reconnect (a: buffer overwritten)");
        // A known agent that started after the last flow lost its ring.
        let restarted = [node("a", Up, 5, 4095, 5, 10), node("b", Up, 10, 4095, 10, 3600)];
        let (to, why) = assess(&["a", "b"], Some(&restarted), &[("a", 125 * S), ("b", 20 * S)]).unwrap();
        assert_eq!((to, why.as_str()), (120 * S, "relay reconnect (a: agent restarted)"));
        // …while a node that joined during the outage had nothing to lose.
        assert_eq!(assess(&["b"], Some(&restarted), &[("a", 125 * S), ("b", 20 * S)]), None);
        // Unavailable or vanished nodes: missing up to the reconnect.
        let down = [node("a", Down, 0, 0, 0, 0), node("b", Up, 10, 4095, 10, 3600)];
        let (to, why) = assess(&["a", "b", "c"], Some(&down), &[("b", 20 * S)]).unwrap();
        assert_eq!(to, 130 * S);
        assert_eq!(why, "relay reconnect (a: unavailable, c: no longer reported)");
        // A relay that cannot say what it holds proves nothing.
        let (to, why) = assess(&["a"], None, &[]).unwrap();
        assert_eq!(to, 130 * S);
        assert!(why.starts_with("relay reconnect"), "{why}");
    }
}
