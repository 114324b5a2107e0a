//! Gaps in the cockpit's flow list, end to end: the cockpit's flow source follows the simulated
//! hubble-relay into an `AppState` (through `update`, as the event loop does); the relay goes down
//! long enough to lose flows (its rings keep turning meanwhile) and comes back. The flow list must
//! then hold a marker row where the hole is, with the window that may be missing, and count it.
#![cfg(feature = "sim")] // drives the simulated relay

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::app::state::{AppState, Marker, Mode, StoredRow};
use cutover::app::update::{AppEvent, update};
use cutover::hubble::client::{FlowQuery, FlowSourceOptions, HubbleEvent, RelayTarget, spawn_flow_source_with};
use cutover::hubble::proto::observer::get_flows_response::ResponseTypes;
use cutover::hubble::time::timestamp_nanos;
use cutover::sim::relay::{RelayConfig, sample::homelab_topology, serve_with};
use cutover::sim::{ActiveFaults, Fault, RequestLog, SimShared, Store, Tokens};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

const WAIT: Duration = Duration::from_secs(60);

struct Relay {
    addr: std::net::SocketAddr,
    shared: Arc<SimShared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(cfg: RelayConfig) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut rng = fastrand::Rng::with_seed(11);
    let shared = Arc::new(SimShared {
        store: Store::default(),
        faults: watch::channel(ActiveFaults::default()).0,
        topology: watch::channel(homelab_topology("homelab")).0,
        requests: RequestLog::default(),
        tokens: Tokens::random(&mut rng),
        seed: 7,
        speed: 1.0,
        relay_addr: std::sync::OnceLock::from(addr),
        api_ca_pem: std::sync::OnceLock::new(),
        volumes: Default::default(),
    });
    let task = serve_with(listener, shared.clone(), cfg);
    Relay { addr, shared, task }
}

/// What the cockpit saw: its state, and the time of the newest flow before the first disconnect.
struct Cockpit {
    state: AppState,
    rx: mpsc::Receiver<AppEvent>,
    last_before: Option<i128>,
    disconnected: bool,
    reconnected: bool,
}

impl Cockpit {
    fn follow(relay: &Relay) -> (Cockpit, cutover::hubble::client::FlowSource) {
        let (tx, rx) = mpsc::channel::<AppEvent>(100_000);
        let opts = FlowSourceOptions {
            status_interval: Duration::from_millis(200),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
            jitter_seed: Some(3),
            ..Default::default()
        };
        let source = spawn_flow_source_with(
            RelayTarget::Address(relay.addr.to_string()),
            FlowQuery { follow: true, ..Default::default() },
            tx,
            opts,
        );
        let state = AppState::new(jiff::Timestamp::now(), Mode::ReadOnly, 10_000);
        (Cockpit { state, rx, last_before: None, disconnected: false, reconnected: false }, source)
    }

    /// Feeds the next event into the state as the event loop does; returns it for the test.
    async fn step(&mut self) -> HubbleEvent {
        let ev = tokio::time::timeout(WAIT, self.rx.recv()).await.expect("an event").expect("source alive");
        let AppEvent::Relay(hubble) = &ev else { panic!("only relay events here") };
        let hubble = (**hubble).clone();
        match &hubble {
            HubbleEvent::Flow(r) if !self.disconnected => {
                if let Some(ResponseTypes::Flow(f)) = &r.response_types {
                    let t = timestamp_nanos(f.time.as_ref().expect("flow time"));
                    self.last_before = Some(self.last_before.map_or(t, |l| l.max(t)));
                }
            }
            HubbleEvent::Disconnected { .. } => self.disconnected = true,
            HubbleEvent::Connected { .. } if self.disconnected => self.reconnected = true,
            _ => {}
        }
        self.state.now = jiff::Timestamp::now();
        update(&mut self.state, ev);
        hubble
    }

    /// Runs until `n` flows arrived, then takes the relay down for `seconds`.
    async fn outage_after(&mut self, relay: &Relay, n: u64, seconds: u64, also: Option<Fault>) {
        let deadline = Instant::now() + WAIT;
        while self.state.flows.total < n {
            assert!(Instant::now() < deadline, "only {} flows", self.state.flows.total);
            self.step().await;
        }
        if let Some(f) = also {
            relay.shared.inject(&f);
        }
        relay.shared.inject(&Fault::RelayDown { seconds });
    }

    /// Runs until the reconnected stream delivered `n` more flows after the first gap marker.
    async fn until_marker_and(&mut self, n: usize) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no gap marker; log: {:?}", self.state.log);
            if let Some(at) = self.marker_index()
                && self.state.flows.rows.len() - at > n
            {
                return at;
            }
            self.step().await;
        }
    }

    fn marker_index(&self) -> Option<usize> {
        self.state
            .flows
            .rows
            .iter()
            .position(|r| matches!(r, StoredRow::Marker(m) if matches!(**m, Marker::Gap { .. })))
    }

    /// (time, node) of the flow rows.
    fn flow_at(&self, i: usize) -> Option<(i128, String)> {
        match &self.state.flows.rows[i] {
            StoredRow::Flow(f) => {
                let flow = f.decode()?;
                Some((timestamp_nanos(flow.time.as_ref()?), f.node.to_string()))
            }
            StoredRow::Marker(_) => None,
        }
    }
}

#[tokio::test]
async fn a_relay_outage_that_loses_flows_leaves_a_marker_with_its_window() {
    // 900 flows/s over three nodes into rings of 150: a ring holds about half a second.
    let relay = start(RelayConfig {
        flows_per_sec: 900.0,
        ring_capacity: 150,
        prefill_per_node: 0,
        burst_every: None,
        ..Default::default()
    })
    .await;
    let (mut c, source) = Cockpit::follow(&relay);
    c.outage_after(&relay, 300, 3, None).await;
    let at = c.until_marker_and(200).await;
    assert!(c.disconnected && c.reconnected);

    let Some(StoredRow::Marker(m)) = c.state.flows.rows.get(at) else { unreachable!() };
    let Marker::Gap { from, to, reason } = &**m else { unreachable!() };
    let (from, to) = (timestamp_nanos(from), timestamp_nanos(to.as_ref().expect("window end")));
    // From the last flow seen before the disconnect…
    assert_eq!(Some(from), c.last_before, "the window starts at the last flow seen");
    let before = c.flow_at(at - 1).expect("a flow right before the marker");
    assert_eq!(before.0, from, "the marker sits right after the last flow before the outage");
    // …to the oldest flow the relay still held: what comes after the marker starts there. The
    // relay was down for 3 s, the rings hold half a second: at least 2 s are missing.
    assert!(to - from > 2_000_000_000, "window {} ms", (to - from) / 1_000_000);
    let mut first_after: HashMap<String, i128> = HashMap::new();
    for (t, node) in (at + 1..c.state.flows.rows.len()).filter_map(|i| c.flow_at(i)) {
        assert!(t > from, "after the marker only flows newer than the last one seen before");
        first_after.entry(node).or_insert(t);
    }
    assert_eq!(first_after.len(), 3, "every node resumed: {first_after:?}");
    let newest_first = *first_after.values().max().unwrap();
    assert!(to >= newest_first, "the window reaches the oldest flow held on every node");
    assert!(to - newest_first < 1_000_000_000, "…and not much further: {} ms", (to - newest_first) / 1_000_000);
    assert!(reason.starts_with("relay reconnect ("), "{reason}");
    assert!(reason.contains("buffer overwritten"), "{reason}");

    // Counted, logged, and in the pane: a row of its own that the filter keeps.
    assert_eq!(c.state.flows.gaps, 1);
    assert_eq!(source.stats.snapshot().gaps, 1);
    assert!(c.state.log.iter().any(|l| l.text.contains("may be missing: relay reconnect")), "{:?}", c.state.log);
    let nothing = cutover::app::flowview::ViewFilter::parse("ns:no-such-namespace").expect("a valid filter");
    c.state.set_flow_filter(Some(nothing));
    let rows = cutover::app::flowview::view_rows(&c.state, 5);
    use cutover::app::flowview::ViewRow;
    assert!(rows.iter().all(|r| matches!(r, ViewRow::Marker(_))), "the filter matches no flow: {rows:?}");
    assert!(
        rows.iter().any(|r| matches!(r, ViewRow::Marker(Marker::Gap { .. }))),
        "a filter that matches no flow still shows the gap: {rows:?}"
    );
    source.abort();
}

#[tokio::test]
async fn a_node_unavailable_after_the_outage_is_a_gap_up_to_the_reconnect() {
    // Rings hold far more than the outage: only the unavailable node can have lost flows.
    let relay =
        start(RelayConfig { flows_per_sec: 300.0, prefill_per_node: 0, burst_every: None, ..Default::default() }).await;
    let (mut c, source) = Cockpit::follow(&relay);
    let down = Fault::RelayNodeUnavailable { node: "homelab-w2".into() };
    c.outage_after(&relay, 150, 1, Some(down)).await;
    let reconnect_after = jiff::Timestamp::now();
    let at = c.until_marker_and(20).await;
    let Some(StoredRow::Marker(m)) = c.state.flows.rows.get(at) else { unreachable!() };
    let Marker::Gap { from, to, reason } = &**m else { unreachable!() };
    assert_eq!(Some(timestamp_nanos(from)), c.last_before);
    assert_eq!(reason, "relay reconnect (homelab-w2: unavailable)");
    let to = timestamp_nanos(to.as_ref().expect("window end"));
    assert!(to > reconnect_after.as_nanosecond(), "up to the reconnect");
    assert_eq!(c.state.flows.gaps, 1);
    source.abort();
}
