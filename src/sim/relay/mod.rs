//! The simulated hubble-relay: a tonic `observer.Observer` server on loopback, fed by a traffic
//! generator that follows the published [`Topology`](crate::sim::Topology) and the active faults.
//!
//! Relay semantics kept: one ring buffer per node (4095 flows, oldest overwritten), `number` = the
//! last N matching flows *per node* (oldest N with `first`), `since`/`until` windows, `follow`,
//! whitelist/blacklist evaluated with [`crate::hubble::filter`], node-status events first (nodes
//! connected / unavailable) and on changes, lost events when a burst overflows a node's perf ring
//! (PERF_EVENT_RING_BUFFER) or a follower falls behind (HUBBLE_RING_BUFFER). Only nodes whose
//! Cilium agent is ready are relay peers, so without Cilium there are no flows.
//! Faults: `relay_down` refuses connections and calls and ends open streams; unavailable nodes
//! produce no flows; broken node paths and broken DNS shape the traffic ([`traffic`]).

pub mod sample;
mod traffic;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use pbjson_types::{Int32Value, Timestamp, UInt32Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};

use super::SimShared;
use crate::hubble::filter::CompiledRequest;
use crate::hubble::proto::flow::{Flow, LostEvent, LostEventSource};
use crate::hubble::proto::observer::{
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse, GetNodesRequest, GetNodesResponse,
    Namespace, Node, ServerStatusRequest, ServerStatusResponse, Tls,
    get_flows_response::ResponseTypes,
    observer_server::{Observer, ObserverServer},
};
use crate::hubble::proto::relay::{NodeState, NodeStatusEvent};
use crate::hubble::time::{system_time_to_timestamp, timestamp_nanos};
use crate::sim::Topology;
use traffic::{TopoIndex, TrafficGen};

/// Tuning of the simulated relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Flows per second over all nodes at speed 1 (scaled by the sim speed).
    pub flows_per_sec: f64,
    /// Ring buffer capacity per node (Hubble's default is 4095).
    pub ring_capacity: usize,
    /// Flows put into each node's ring when its agent first appears, timed over `prefill_span`
    /// before now (a backlog for `--last N`, or a big one for benchmarks).
    pub prefill_per_node: usize,
    pub prefill_span: Duration,
    /// Generation tick (wall time).
    pub tick: Duration,
    /// Mean simulated time between traffic bursts that overflow a node's perf ring
    /// (PERF_EVENT_RING_BUFFER lost events); `None` = no bursts.
    pub burst_every: Option<Duration>,
    /// Name the relay puts in node-status events.
    pub relay_name: String,
    /// Live-event queue per follower; a follower further behind gets a HUBBLE_RING_BUFFER lost event.
    pub follower_queue: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            flows_per_sec: 300.0,
            ring_capacity: 4095,
            prefill_per_node: 200,
            prefill_span: Duration::from_secs(60),
            tick: Duration::from_millis(100),
            burst_every: Some(Duration::from_secs(40)),
            relay_name: "hubble-relay".into(),
            follower_queue: 16_384,
        }
    }
}

/// Serves hubble-relay on `listener` until the task is aborted (default [`RelayConfig`]).
pub fn serve(listener: TcpListener, shared: Arc<SimShared>) -> JoinHandle<()> {
    serve_with(listener, shared, RelayConfig::default())
}

/// Serves hubble-relay with a custom configuration. Aborting the task stops the generator, the
/// listener and every open flow stream.
pub fn serve_with(listener: TcpListener, shared: Arc<SimShared>, cfg: RelayConfig) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        let state = Arc::new(RelayState::new(shared.clone(), cfg, shutdown_rx));
        let generator = run_generator(state.clone());
        let server = run_server(listener, state);
        tokio::select! {
            _ = generator => {}
            _ = server => {}
        }
        drop(shutdown_tx);
    })
}

/// Generates `count` flows for `topology` as the relay would record them (times spaced 1 ms apart,
/// ending now), e.g. to feed benchmarks or UI tests without a server.
pub fn generate_backlog(topology: &Topology, seed: u64, count: usize) -> Vec<GetFlowsResponse> {
    let idx = TopoIndex::new(topology);
    let mut gen_ = TrafficGen::new(seed);
    let mut out = Vec::with_capacity(count + 16);
    gen_.generate(&idx, &Default::default(), count, &mut out);
    out.truncate(count);
    let now = timestamp_nanos(&system_time_to_timestamp(SystemTime::now()));
    let n = out.len() as i128;
    out.into_iter()
        .enumerate()
        .map(|(i, (node, mut flow))| {
            let t = traffic::ts(now - (n - i as i128) * 1_000_000);
            flow.time = Some(t);
            GetFlowsResponse {
                response_types: Some(ResponseTypes::Flow(flow)),
                node_name: idx.nodes[node].display.clone(),
                time: Some(t),
            }
        })
        .collect()
}

/// One recorded event (flow, lost event or node-status event).
#[derive(Debug)]
struct Entry {
    seq: u64,
    time: i128,
    resp: GetFlowsResponse,
    /// Not sent: tells followers that the agent `resp.node_name` (re)joined, so that they ask it
    /// for its backlog as the relay does with a new peer.
    joined: bool,
    /// The protobuf encoding, made once by the first stream that sends it.
    encoded: std::sync::OnceLock<Vec<u8>>,
}

impl Entry {
    fn new(seq: u64, time: i128, resp: GetFlowsResponse) -> Entry {
        Entry { seq, time, resp, joined: false, encoded: std::sync::OnceLock::new() }
    }

    fn encoded(&self) -> &[u8] {
        self.encoded.get_or_init(|| prost::Message::encode_to_vec(&self.resp))
    }

    fn flow(&self) -> Option<&Flow> {
        match &self.resp.response_types {
            Some(ResponseTypes::Flow(f)) => Some(f),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Connected,
    Unavailable,
}

#[derive(Debug)]
struct NodeRing {
    name: String,
    display: String,
    ip: String,
    link: Link,
    ring: VecDeque<Arc<Entry>>,
    seen: u64,
    since: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    nodes: Vec<NodeRing>,
    seq: u64,
    last_time: i128,
    rate: VecDeque<(Instant, u64)>,
    namespaces: HashMap<String, Instant>,
    version: String,
    cluster: String,
}

struct RelayState {
    inner: Mutex<Inner>,
    live: broadcast::Sender<Arc<Entry>>,
    shared: Arc<SimShared>,
    cfg: RelayConfig,
    started: Instant,
    shutdown: watch::Receiver<()>,
}

impl RelayState {
    fn new(shared: Arc<SimShared>, cfg: RelayConfig, shutdown: watch::Receiver<()>) -> RelayState {
        let (live, _) = broadcast::channel(cfg.follower_queue.max(16));
        RelayState { inner: Mutex::new(Inner::default()), live, shared, cfg, started: Instant::now(), shutdown }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn down(&self) -> bool {
        self.shared.faults.borrow().relay_down()
    }

    fn unavailable() -> Status {
        Status::unavailable("hubble-relay is not available")
    }

    fn now_ts(&self) -> Timestamp {
        system_time_to_timestamp(SystemTime::now())
    }

    fn node_status(&self, state: NodeState, nodes: Vec<String>) -> GetFlowsResponse {
        GetFlowsResponse {
            response_types: Some(ResponseTypes::NodeStatus(NodeStatusEvent {
                state_change: state as i32,
                node_names: nodes,
                message: String::new(),
            })),
            node_name: self.cfg.relay_name.clone(),
            time: Some(self.now_ts()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generator

async fn run_generator(state: Arc<RelayState>) {
    let shared = state.shared.clone();
    let mut topo_rx = shared.topology.subscribe();
    let mut idx = TopoIndex::new(&topo_rx.borrow_and_update());
    let mut version = topo_rx.borrow().cilium_version.clone();
    let mut gen_ = TrafficGen::new(shared.seed);
    let mut rng = fastrand::Rng::with_seed(shared.seed ^ 0x0062_7572_7374);
    let mut interval = tokio::time::interval(state.cfg.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut carry = 0.0f64;
    let mut out = Vec::new();
    loop {
        interval.tick().await;
        if topo_rx.has_changed().unwrap_or(false) {
            let t = topo_rx.borrow_and_update();
            idx = TopoIndex::new(&t);
            version = t.cilium_version.clone();
        }
        let faults = shared.faults.borrow().clone();
        let (newly_connected, joined) = sync_nodes(&state, &idx, &faults, &version);
        if state.cfg.prefill_per_node > 0 && !newly_connected.is_empty() {
            prefill(&state, &idx, &mut gen_, &newly_connected);
        }
        // After the history is in the ring: followers fetch the joined agents' backlog.
        for node in joined {
            let mut inner = state.lock();
            inner.seq += 1;
            let resp = GetFlowsResponse { node_name: node, ..Default::default() };
            let mut e = Entry::new(inner.seq, inner.last_time, resp);
            e.joined = true;
            let _ = state.live.send(Arc::new(e));
        }
        let now = Instant::now();
        let dt = now.duration_since(last).as_secs_f64();
        last = now;
        let budget = state.cfg.flows_per_sec * state.shared.speed.max(0.0) * dt + carry;
        let n = budget.floor();
        carry = budget - n;
        out.clear();
        if n >= 1.0 {
            gen_.generate(&idx, &faults, n as usize, &mut out);
        }
        let mut lost: Vec<(usize, u64)> = Vec::new();
        if let Some(every) = state.cfg.burst_every.filter(|_| !idx.nodes.is_empty()) {
            let p = dt * state.shared.speed.max(0.0) / every.as_secs_f64().max(1e-3);
            if rng.f64() < p {
                let per_tick = (state.cfg.flows_per_sec * state.cfg.tick.as_secs_f64()).max(1.0) as usize;
                let start = out.len();
                gen_.burst(&idx, &faults, per_tick * 20 + 800, &mut out);
                // The perf ring of each node takes a bounded number of events per tick.
                let cap = (per_tick * 4).max(256);
                let mut counts: HashMap<usize, usize> = HashMap::new();
                let mut kept = Vec::with_capacity(out.len());
                for (i, item) in out.drain(..).enumerate() {
                    let c = counts.entry(item.0).or_default();
                    *c += 1;
                    if i < start || *c <= cap {
                        kept.push(item);
                    }
                }
                out = kept;
                for (node, c) in counts {
                    if c > cap {
                        lost.push((node, (c - cap) as u64));
                    }
                }
            }
        }
        if !out.is_empty() || !lost.is_empty() {
            record(&state, &idx, &mut out, &lost, &mut rng, dt);
        }
    }
}

/// Aligns the relay's peers with the topology and faults; emits NODE_ERROR for agents lost.
/// Returns the indexes (in `idx.nodes`) of nodes that just became connected for the first time.
fn sync_nodes(
    state: &RelayState,
    idx: &TopoIndex,
    faults: &crate::sim::ActiveFaults,
    version: &str,
) -> (Vec<usize>, Vec<String>) {
    let mut unavailable_now = Vec::new();
    let mut joined = Vec::new();
    let mut first_time = Vec::new();
    {
        let mut inner = state.lock();
        inner.version = if version.is_empty() { "1.16.6".into() } else { version.to_string() };
        inner.cluster = idx.cluster.clone();
        // Nodes that left the topology are gone.
        inner.nodes.retain(|n| idx.nodes.iter().any(|t| t.name == n.name));
        for (i, t) in idx.nodes.iter().enumerate() {
            let fault =
                faults.relay_unavailable_nodes.contains(&t.name) || faults.relay_unavailable_nodes.contains(&t.display);
            let want = if t.cilium_ready && !fault { Link::Connected } else { Link::Unavailable };
            match inner.nodes.iter_mut().find(|n| n.name == t.name) {
                Some(n) => {
                    n.display = t.display.clone();
                    n.ip = t.ip.clone();
                    if n.link != want {
                        n.link = want;
                        if want == Link::Connected {
                            n.since = Instant::now();
                            joined.push(t.display.clone());
                        } else {
                            unavailable_now.push(t.display.clone());
                        }
                    }
                }
                None if t.cilium_ready => {
                    inner.nodes.push(NodeRing {
                        name: t.name.clone(),
                        display: t.display.clone(),
                        ip: t.ip.clone(),
                        link: want,
                        ring: VecDeque::new(),
                        seen: 0,
                        since: Instant::now(),
                    });
                    if want == Link::Connected {
                        first_time.push(i);
                        joined.push(t.display.clone());
                    }
                }
                None => {}
            }
        }
    }
    // A follower hears only about agents it loses (the relay's stream from that agent failed);
    // agents that appear or come back are picked up silently, and removed ones end quietly, as
    // the relay does.
    if !unavailable_now.is_empty() {
        let mut resp = state.node_status(NodeState::NodeError, unavailable_now);
        if let Some(ResponseTypes::NodeStatus(ns)) = resp.response_types.as_mut() {
            ns.message = "rpc error: code = Unavailable desc = error reading from server: EOF".into();
        }
        publish_event(state, resp);
    }
    (first_time, joined)
}

fn publish_event(state: &RelayState, resp: GetFlowsResponse) {
    let entry = {
        let mut inner = state.lock();
        inner.seq += 1;
        let time = resp.time.as_ref().map_or(0, timestamp_nanos);
        Arc::new(Entry::new(inner.seq, time, resp))
    };
    let _ = state.live.send(entry);
}

/// Fills the rings of newly connected nodes with history.
fn prefill(state: &RelayState, idx: &TopoIndex, gen_: &mut TrafficGen, nodes: &[usize]) {
    let per_node = state.cfg.prefill_per_node.min(state.cfg.ring_capacity);
    let mut out = Vec::new();
    let mut guard = 0;
    let mut counts = vec![0usize; idx.nodes.len()];
    let faults = state.shared.faults.borrow().clone();
    while nodes.iter().any(|n| counts[*n] < per_node) && guard < 10_000 {
        guard += 1;
        let mut batch = Vec::new();
        gen_.generate(idx, &faults, 512, &mut batch);
        for (n, f) in batch {
            if nodes.contains(&n) && counts[n] < per_node {
                counts[n] += 1;
                out.push((n, f));
            }
        }
    }
    let now = timestamp_nanos(&system_time_to_timestamp(SystemTime::now()));
    let span = i128::try_from(state.cfg.prefill_span.as_nanos()).unwrap_or(0).max(1);
    let total = out.len().max(1) as i128;
    let mut inner = state.lock();
    // History must precede anything already recorded.
    let start = now - span;
    for (i, (node, mut flow)) in out.into_iter().enumerate() {
        let t = start + span * i as i128 / total;
        inner.seq += 1;
        let seq = inner.seq;
        let Some(ring) = inner.nodes.iter_mut().find(|r| r.name == idx.nodes[node].name) else { continue };
        let ts = traffic::ts(t);
        flow.time = Some(ts);
        let resp = GetFlowsResponse {
            response_types: Some(ResponseTypes::Flow(flow)),
            node_name: ring.display.clone(),
            time: Some(ts),
        };
        push_ring(ring, Arc::new(Entry::new(seq, t, resp)), state.cfg.ring_capacity);
    }
    inner.last_time = inner.last_time.max(now);
}

fn push_ring(ring: &mut NodeRing, e: Arc<Entry>, cap: usize) {
    if e.flow().is_some() {
        ring.seen += 1;
    }
    if ring.ring.len() >= cap.max(1) {
        ring.ring.pop_front();
    }
    ring.ring.push_back(e);
}

/// Stamps, stores and publishes one tick of flows (spread over the last `dt` seconds).
fn record(
    state: &RelayState,
    idx: &TopoIndex,
    out: &mut Vec<(usize, Flow)>,
    lost: &[(usize, u64)],
    rng: &mut fastrand::Rng,
    dt: f64,
) {
    let now = timestamp_nanos(&system_time_to_timestamp(SystemTime::now()));
    let span = ((dt * 1e9) as i128).clamp(1, 1_000_000_000);
    let n = out.len() as i128 + 1;
    let mut published = Vec::with_capacity(out.len() + lost.len());
    {
        let mut inner = state.lock();
        let base = (now - span).max(inner.last_time + 1);
        let mut flows_recorded = 0u64;
        for (k, (node, mut flow)) in out.drain(..).enumerate() {
            let mut t = base + span * (k as i128 + 1) / n;
            if t <= inner.last_time {
                t = inner.last_time + 1;
            }
            inner.last_time = t;
            inner.seq += 1;
            let seq = inner.seq;
            let Some(name) = idx.nodes.get(node).map(|n| n.name.clone()) else { continue };
            let cap = state.cfg.ring_capacity;
            let now_i = Instant::now();
            for ep in [flow.source.as_ref(), flow.destination.as_ref()].into_iter().flatten() {
                if !ep.namespace.is_empty() && !inner.namespaces.contains_key(&ep.namespace) {
                    inner.namespaces.insert(ep.namespace.clone(), now_i);
                } else if let Some(v) = inner.namespaces.get_mut(&ep.namespace) {
                    *v = now_i;
                }
            }
            let Some(ring) = inner.nodes.iter_mut().find(|r| r.name == name && r.link == Link::Connected) else {
                continue;
            };
            let ts = traffic::ts(t);
            flow.time = Some(ts);
            let resp = GetFlowsResponse {
                response_types: Some(ResponseTypes::Flow(flow)),
                node_name: ring.display.clone(),
                time: Some(ts),
            };
            let e = Arc::new(Entry::new(seq, t, resp));
            push_ring(ring, e.clone(), cap);
            published.push(e);
            flows_recorded += 1;
        }
        for (node, count) in lost {
            let Some(name) = idx.nodes.get(*node).map(|n| n.name.clone()) else { continue };
            inner.seq += 1;
            let seq = inner.seq;
            let t = inner.last_time + 1;
            inner.last_time = t;
            let cpu = rng.i32(0..4);
            let Some(ring) = inner.nodes.iter_mut().find(|r| r.name == name && r.link == Link::Connected) else {
                continue;
            };
            let resp = GetFlowsResponse {
                response_types: Some(ResponseTypes::LostEvents(LostEvent {
                    source: LostEventSource::PerfEventRingBuffer as i32,
                    num_events_lost: *count,
                    cpu: Some(Int32Value { value: cpu }),
                })),
                node_name: ring.display.clone(),
                time: Some(traffic::ts(t)),
            };
            let e = Arc::new(Entry::new(seq, t, resp));
            push_ring(ring, e.clone(), state.cfg.ring_capacity);
            published.push(e);
        }
        let now_i = Instant::now();
        inner.rate.push_back((now_i, flows_recorded));
        while inner.rate.front().is_some_and(|(t, _)| now_i.duration_since(*t) > Duration::from_secs(60)) {
            inner.rate.pop_front();
        }
        inner.namespaces.retain(|_, seen| now_i.duration_since(*seen) < Duration::from_secs(3600));
    }
    for e in published {
        let _ = state.live.send(e);
    }
}

// ---------------------------------------------------------------------------------------------
// Server

async fn run_server(listener: TcpListener, state: Arc<RelayState>) {
    let faults = state.shared.faults.subscribe();
    let incoming = futures::stream::unfold((listener, faults), |(listener, faults)| async move {
        loop {
            match listener.accept().await {
                Ok((sock, _)) => {
                    // A relay that is down refuses connections.
                    if faults.borrow().relay_down() {
                        drop(sock);
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    return Some((Ok::<_, std::io::Error>(sock), (listener, faults)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sim hubble-relay: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    let svc = RelayService { state: state.clone(), unary: ObserverServer::from_arc(Arc::new(UnaryObserver { state })) };
    if let Err(e) = tonic::transport::Server::builder().add_service(svc).serve_with_incoming(incoming).await {
        tracing::warn!(error = %e, "sim hubble-relay stopped");
    }
}

/// `observer.Observer` with a GetFlows that streams shared entries without copying them.
#[derive(Clone)]
struct RelayService {
    state: Arc<RelayState>,
    unary: ObserverServer<UnaryObserver>,
}

impl tonic::server::NamedService for RelayService {
    const NAME: &'static str = "observer.Observer";
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl tower::Service<http::Request<tonic::body::Body>> for RelayService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() == "/observer.Observer/GetFlows" {
            let state = self.state.clone();
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(FlowsCodec);
                Ok(grpc.server_streaming(GetFlowsSvc(state), req).await)
            })
        } else {
            tower::Service::call(&mut self.unary, req)
        }
    }
}

/// A response the GetFlows stream sends: shared ring entries go out as their cached encoding.
enum Out {
    Shared(Arc<Entry>),
    Owned(Box<GetFlowsResponse>),
}

#[derive(Debug, Clone, Copy, Default)]
struct FlowsCodec;

struct OutEncoder;
struct RequestDecoder;

impl Codec for FlowsCodec {
    type Encode = Out;
    type Decode = GetFlowsRequest;
    type Encoder = OutEncoder;
    type Decoder = RequestDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        OutEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder
    }
}

impl Encoder for OutEncoder {
    type Item = Out;
    type Error = Status;
    fn encode(&mut self, item: Out, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            Out::Shared(e) => {
                bytes::BufMut::put_slice(dst, e.encoded());
                Ok(())
            }
            Out::Owned(r) => prost::Message::encode(&*r, dst).map_err(|e| Status::internal(e.to_string())),
        }
    }
}

impl Decoder for RequestDecoder {
    type Item = GetFlowsRequest;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<GetFlowsRequest>, Status> {
        <GetFlowsRequest as prost::Message>::decode(src).map(Some).map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

struct GetFlowsSvc(Arc<RelayState>);

/// Responses travel from the stream task in batches (one channel operation per batch).
type Batch = Vec<Result<Out, Status>>;
type OutStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<Out, Status>> + Send + 'static>>;

/// Most responses per batch.
const BATCH: usize = 256;

impl tonic::server::ServerStreamingService<GetFlowsRequest> for GetFlowsSvc {
    type Response = Out;
    type ResponseStream = OutStream;
    type Future = BoxFuture<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<GetFlowsRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move { get_flows(state, request.into_inner()) })
    }
}

fn get_flows(state: Arc<RelayState>, req: GetFlowsRequest) -> Result<Response<OutStream>, Status> {
    if state.down() {
        return Err(RelayState::unavailable());
    }
    // The relay passes the request to every agent; an agent refusing it is reported per node as
    // NODE_ERROR (the message as the agent gave it), and the stream then ends normally.
    let refused = match CompiledRequest::new(&req.whitelist, &req.blacklist) {
        Err(e) => Err(e.to_string()),
        Ok(_) if req.first && req.follow => {
            Err("rpc error: code = InvalidArgument desc = first cannot be specified with follow".to_string())
        }
        Ok(c) => Ok(c),
    };
    // Snapshot the rings and subscribe to live events atomically (nothing is missed or doubled).
    let (rings, connected, unavailable, live, last_seq) = {
        let inner = state.lock();
        let live = state.live.subscribe();
        let mut rings = Vec::new();
        let mut connected = Vec::new();
        let mut unavailable = Vec::new();
        for n in &inner.nodes {
            if n.link == Link::Connected {
                connected.push(n.display.clone());
                rings.push(n.ring.iter().cloned().collect::<Vec<_>>());
            } else {
                unavailable.push(n.display.clone());
            }
        }
        (rings, connected, unavailable, live, inner.seq)
    };
    let compiled = match refused {
        Ok(c) => c,
        Err(message) => {
            let mut out: Batch = Vec::new();
            if !connected.is_empty() {
                out.push(Ok(Out::Owned(Box::new(state.node_status(NodeState::NodeConnected, connected.clone())))));
            }
            if !unavailable.is_empty() {
                out.push(Ok(Out::Owned(Box::new(state.node_status(NodeState::NodeUnavailable, unavailable)))));
            }
            if !connected.is_empty() {
                let mut err = state.node_status(NodeState::NodeError, connected);
                if let Some(ResponseTypes::NodeStatus(ns)) = err.response_types.as_mut() {
                    ns.message = message;
                }
                out.push(Ok(Out::Owned(Box::new(err))));
            }
            return Ok(with_version(&state, Response::new(Box::pin(futures::stream::iter(out)))));
        }
    };
    let (tx, rx) = mpsc::channel::<Batch>(16);
    tokio::spawn(stream_flows(state.clone(), req, compiled, rings, connected, unavailable, live, last_seq, tx));
    let stream: OutStream = Box::pin(ReceiverStream::new(rx).flat_map(futures::stream::iter));
    Ok(with_version(&state, Response::new(stream)))
}

/// The relay names its version in a response header (the hubble CLI compares it with its own).
fn with_version<T>(state: &RelayState, mut resp: Response<T>) -> Response<T> {
    let version = state.lock().version.clone();
    if let Ok(v) = tonic::metadata::MetadataValue::try_from(version.as_str()) {
        resp.metadata_mut().insert("hubble-relay-version", v);
    }
    resp
}

/// Backlog of one node's ring for a request (relay semantics, per node).
fn select_backlog(ring: &[Arc<Entry>], req: &GetFlowsRequest, filter: &CompiledRequest) -> Vec<Arc<Entry>> {
    let since = req.since.as_ref().map(timestamp_nanos);
    let until = req.until.as_ref().map(timestamp_nanos);
    let matches = |e: &Entry| e.flow().is_some_and(|f| filter.matches(f));
    // Where the agent's ring reader starts: the oldest entry (`first`), the first entry at or
    // after `since`, or `number` matching flows back from the newest (the whole ring if fewer).
    let start = if req.first {
        0
    } else if let Some(s) = since {
        ring.iter().position(|e| e.time >= s).unwrap_or(ring.len())
    } else if req.number > 0 {
        let mut n = 0;
        let mut at = 0;
        for (i, e) in ring.iter().enumerate().rev() {
            if matches(e) {
                n += 1;
                at = i;
                if n >= req.number {
                    break;
                }
            }
        }
        if n >= req.number { at } else { 0 }
    } else if until.is_some() && !req.follow {
        0
    } else {
        ring.len()
    };
    // Then it reads forward: a flow past `until` ends the read, `number` flows end it (not when
    // following), flows before `since` or not matching are skipped; lost events pass as they are.
    let limit = if req.follow || req.number == 0 { u64::MAX } else { req.number };
    let mut out = Vec::new();
    let mut n = 0;
    for e in &ring[start..] {
        if n >= limit {
            break;
        }
        if e.flow().is_some() {
            if until.is_some_and(|u| e.time > u) {
                break;
            }
            if since.is_some_and(|s| e.time < s) || !matches(e) {
                continue;
            }
            n += 1;
        }
        out.push(e.clone());
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn stream_flows(
    state: Arc<RelayState>,
    req: GetFlowsRequest,
    filter: CompiledRequest,
    rings: Vec<Vec<Arc<Entry>>>,
    connected: Vec<String>,
    unavailable: Vec<String>,
    mut live: broadcast::Receiver<Arc<Entry>>,
    last_seq: u64,
    tx: mpsc::Sender<Batch>,
) {
    let mut batch: Batch = Vec::with_capacity(BATCH);
    if !connected.is_empty() {
        batch.push(Ok(Out::Owned(Box::new(state.node_status(NodeState::NodeConnected, connected)))));
    }
    if !unavailable.is_empty() {
        batch.push(Ok(Out::Owned(Box::new(state.node_status(NodeState::NodeUnavailable, unavailable)))));
    }
    let mut backlog: Vec<Arc<Entry>> = rings.iter().flat_map(|r| select_backlog(r, &req, &filter)).collect();
    drop(rings);
    // Merged by time, as the relay's sort queue does (a late node's history is older than its seq).
    backlog.sort_by_key(|e| (e.time, e.seq));
    for e in backlog {
        batch.push(Ok(Out::Shared(e)));
        if batch.len() >= BATCH && tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).await.is_err() {
            return;
        }
    }
    if !batch.is_empty() && tx.send(std::mem::take(&mut batch)).await.is_err() {
        return;
    }
    if !req.follow {
        return;
    }
    let since = req.since.as_ref().map(timestamp_nanos);
    let until = req.until.as_ref().map(timestamp_nanos);
    let now = timestamp_nanos(&system_time_to_timestamp(SystemTime::now()));
    if until.is_some_and(|u| u < now) {
        return;
    }
    let mut faults = state.shared.faults.subscribe();
    let mut shutdown = state.shutdown.clone();
    // One live event into the batch; Err(()) ends the stream.
    let take = |r: Result<Arc<Entry>, broadcast::error::RecvError>, batch: &mut Batch| -> Result<(), ()> {
        match r {
            Ok(e) => {
                if e.seq <= last_seq {
                    return Ok(());
                }
                if e.joined {
                    // The relay opens a stream to the new agent with the same request: its
                    // backlog (last N, since…) comes first, older than what was already sent.
                    let ring: Vec<Arc<Entry>> = {
                        let inner = state.lock();
                        inner
                            .nodes
                            .iter()
                            .find(|n| n.display == e.resp.node_name && n.link == Link::Connected)
                            .map(|n| n.ring.iter().filter(|x| x.seq < e.seq).cloned().collect())
                            .unwrap_or_default()
                    };
                    batch.extend(select_backlog(&ring, &req, &filter).into_iter().map(|x| Ok(Out::Shared(x))));
                    return Ok(());
                }
                if until.is_some_and(|u| e.time > u) {
                    return Err(());
                }
                if let Some(f) = e.flow()
                    && (since.is_some_and(|s| e.time < s) || !filter.matches(f))
                {
                    return Ok(());
                }
                batch.push(Ok(Out::Shared(e)));
                Ok(())
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                batch.push(Ok(Out::Owned(Box::new(GetFlowsResponse {
                    response_types: Some(ResponseTypes::LostEvents(LostEvent {
                        source: LostEventSource::HubbleRingBuffer as i32,
                        num_events_lost: n,
                        cpu: None,
                    })),
                    node_name: state.cfg.relay_name.clone(),
                    time: Some(state.now_ts()),
                }))));
                Ok(())
            }
            Err(broadcast::error::RecvError::Closed) => Err(()),
        }
    };
    loop {
        tokio::select! {
            r = live.recv() => {
                let mut end = take(r, &mut batch).is_err();
                // Take whatever else is already queued, up to a batch.
                while !end && batch.len() < BATCH {
                    match live.try_recv() {
                        Ok(e) => end = take(Ok(e), &mut batch).is_err(),
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            let _ = take(Err(broadcast::error::RecvError::Lagged(n)), &mut batch);
                        }
                        Err(_) => break,
                    }
                }
                if !batch.is_empty() && tx.send(std::mem::take(&mut batch)).await.is_err() {
                    return;
                }
                if end {
                    return;
                }
            }
            changed = faults.changed() => {
                if changed.is_err() {
                    return;
                }
                if state.down() {
                    let _ = tx.send(vec![Err(RelayState::unavailable())]).await;
                    return;
                }
            }
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
        }
    }
}

/// The unary methods (GetFlows goes through [`RelayService`]).
struct UnaryObserver {
    state: Arc<RelayState>,
}

#[tonic::async_trait]
impl Observer for UnaryObserver {
    type GetFlowsStream = futures::stream::Empty<Result<GetFlowsResponse, Status>>;

    async fn get_flows(&self, _request: Request<GetFlowsRequest>) -> Result<Response<Self::GetFlowsStream>, Status> {
        Err(Status::internal("GetFlows is served by the streaming handler"))
    }

    async fn get_nodes(&self, _request: Request<GetNodesRequest>) -> Result<Response<GetNodesResponse>, Status> {
        let s = &self.state;
        if s.down() {
            return Err(RelayState::unavailable());
        }
        let inner = s.lock();
        let cluster = if inner.cluster.is_empty() { "default".to_string() } else { inner.cluster.clone() };
        let nodes = inner
            .nodes
            .iter()
            .map(|n| {
                let up = n.link == Link::Connected;
                let plain = crate::hubble::format::strip_cluster_prefix(&n.display);
                Node {
                    name: n.display.clone(),
                    version: if up { inner.version.clone() } else { String::new() },
                    address: format!("{}:4244", n.ip),
                    state: if up { NodeState::NodeConnected } else { NodeState::NodeUnavailable } as i32,
                    tls: Some(Tls { enabled: true, server_name: format!("{plain}.{cluster}.hubble-grpc.cilium.io") }),
                    uptime_ns: if up { n.since.elapsed().as_nanos() as u64 } else { 0 },
                    num_flows: if up { n.ring.iter().filter(|e| e.flow().is_some()).count() as u64 } else { 0 },
                    max_flows: if up { s.cfg.ring_capacity as u64 } else { 0 },
                    seen_flows: if up { n.seen } else { 0 },
                }
            })
            .collect();
        drop(inner);
        Ok(with_version(s, Response::new(GetNodesResponse { nodes })))
    }

    async fn get_namespaces(
        &self,
        _request: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        let s = &self.state;
        if s.down() {
            return Err(RelayState::unavailable());
        }
        let inner = s.lock();
        let cluster = if inner.cluster.is_empty() { "default".to_string() } else { inner.cluster.clone() };
        let mut names: Vec<&String> = inner.namespaces.keys().collect();
        names.sort();
        let namespaces =
            names.into_iter().map(|n| Namespace { cluster: cluster.clone(), namespace: n.clone() }).collect();
        Ok(Response::new(GetNamespacesResponse { namespaces }))
    }

    async fn server_status(
        &self,
        _request: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let s = &self.state;
        if s.down() {
            return Err(RelayState::unavailable());
        }
        let inner = s.lock();
        let connected: Vec<&NodeRing> = inner.nodes.iter().filter(|n| n.link == Link::Connected).collect();
        let unavailable: Vec<String> =
            inner.nodes.iter().filter(|n| n.link != Link::Connected).map(|n| n.display.clone()).collect();
        let window = inner.rate.front().map_or(0.0, |(t, _)| t.elapsed().as_secs_f64()).max(s.cfg.tick.as_secs_f64());
        let recorded: u64 = inner.rate.iter().map(|(_, c)| c).sum();
        let mut resp = Response::new(ServerStatusResponse {
            num_flows: connected.iter().map(|n| n.ring.iter().filter(|e| e.flow().is_some()).count() as u64).sum(),
            max_flows: (connected.len() * s.cfg.ring_capacity) as u64,
            seen_flows: connected.iter().map(|n| n.seen).sum(),
            uptime_ns: s.started.elapsed().as_nanos() as u64,
            num_connected_nodes: Some(UInt32Value { value: connected.len() as u32 }),
            num_unavailable_nodes: Some(UInt32Value { value: unavailable.len() as u32 }),
            unavailable_nodes: unavailable,
            version: inner.version.clone(),
            flows_rate: if inner.rate.is_empty() { 0.0 } else { recorded as f64 / window },
        });
        if let Ok(v) = tonic::metadata::MetadataValue::try_from(inner.version.as_str()) {
            resp.metadata_mut().insert("hubble-relay-version", v);
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_selection_is_per_node() {
        let topo = sample::homelab_topology("default");
        let flows = generate_backlog(&topo, 9, 300);
        assert_eq!(flows.len(), 300);
        let entries: Vec<Arc<Entry>> = flows
            .into_iter()
            .enumerate()
            .map(|(i, resp)| Arc::new(Entry::new(i as u64 + 1, timestamp_nanos(&resp.time.unwrap_or_default()), resp)))
            .collect();
        let all = CompiledRequest::default();
        let req = |number: u64, first: bool| GetFlowsRequest { number, first, ..Default::default() };
        let last = select_backlog(&entries, &req(10, false), &all);
        assert_eq!(last.len(), 10);
        assert_eq!(last.last().map(|e| e.seq), Some(300));
        let first = select_backlog(&entries, &req(5, true), &all);
        assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert!(select_backlog(&entries, &req(0, false), &all).is_empty());
        let mid = entries[100].time;
        let since = GetFlowsRequest { since: Some(traffic::ts(mid)), ..Default::default() };
        assert_eq!(select_backlog(&entries, &since, &all).len(), 200);
        let until = GetFlowsRequest { until: Some(traffic::ts(mid)), ..Default::default() };
        assert_eq!(select_backlog(&entries, &until, &all).len(), 101);
        let both = GetFlowsRequest {
            number: 3,
            since: Some(traffic::ts(mid)),
            until: Some(traffic::ts(entries[150].time)),
            ..Default::default()
        };
        // An agent reads forward from `since`: the oldest N of the window, not the newest.
        assert_eq!(
            select_backlog(&entries, &both, &all).iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![101, 102, 103]
        );
        // `until` with `number`: N back from the newest, then stop at `until` — nothing here,
        // as on a real agent.
        let until_n = GetFlowsRequest { number: 3, until: Some(traffic::ts(mid)), ..Default::default() };
        assert!(select_backlog(&entries, &until_n, &all).is_empty());
        let udp = CompiledRequest::new(
            &[crate::hubble::proto::flow::FlowFilter { protocol: vec!["udp".into()], ..Default::default() }],
            &[],
        )
        .unwrap();
        let got = select_backlog(&entries, &req(1000, false), &udp);
        assert!(!got.is_empty() && got.iter().all(|e| e.flow().is_some_and(|f| udp.matches(f))));
    }
}
