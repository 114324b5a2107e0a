//! The simulated hubble-relay over loopback, driven by the real client code (tonic over HTTP/2):
//! follow + filters, number/first/since/until, ServerStatus/GetNodes/GetNamespaces, faults (relay
//! down, unavailable node), the reconnecting flow source (resume without duplicates, gaps
//! reported; the cockpit's view of them is in `flow_gaps.rs`), lost events, and error classification (unreachable, not a relay, invalid filter).
#![cfg(feature = "sim")] // drives the simulated cluster

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::hubble::client::{
    self, FlowQuery, FlowSourceOptions, HubbleError, HubbleEvent, RelayTarget, spawn_flow_source_with,
};
use cutover::hubble::filter::FilterBuilder;
use cutover::hubble::proto::flow::{Flow, FlowFilter, LostEventSource};
use cutover::hubble::proto::observer::{GetFlowsRequest, GetFlowsResponse, get_flows_response::ResponseTypes};
use cutover::hubble::proto::relay::NodeState;
use cutover::hubble::time::timestamp_nanos;
use cutover::sim::relay::{RelayConfig, sample::homelab_topology, serve_with};
use cutover::sim::{ActiveFaults, Fault, RequestLog, SimShared, Store, Tokens, Topology};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(60);

struct Relay {
    addr: SocketAddr,
    shared: Arc<SimShared>,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    fn target(&self) -> String {
        self.addr.to_string()
    }
}

async fn start(topology: Topology, cfg: RelayConfig) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut rng = fastrand::Rng::with_seed(5);
    let shared = Arc::new(SimShared {
        store: Store::default(),
        faults: watch::channel(ActiveFaults::default()).0,
        topology: watch::channel(topology).0,
        requests: RequestLog::default(),
        tokens: Tokens::random(&mut rng),
        seed: 42,
        speed: 1.0,
        relay_addr: std::sync::OnceLock::from(addr),
        api_ca_pem: std::sync::OnceLock::new(),
        volumes: Default::default(),
    });
    let task = serve_with(listener, shared.clone(), cfg);
    Relay { addr, shared, task }
}

fn quiet(prefill: usize) -> RelayConfig {
    RelayConfig { flows_per_sec: 0.0, prefill_per_node: prefill, burst_every: None, ..Default::default() }
}

fn live(rate: f64) -> RelayConfig {
    RelayConfig { flows_per_sec: rate, prefill_per_node: 0, burst_every: None, ..Default::default() }
}

/// Waits until `f` returns Some, polling; panics after WAIT.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a non-follow GetFlows to completion.
async fn collect(relay: &Relay, req: GetFlowsRequest) -> Vec<GetFlowsResponse> {
    let ch = client::connect(&relay.target()).await.unwrap();
    let mut s = client::get_flows(&ch, &relay.target(), req).await.unwrap();
    let mut out = Vec::new();
    while let Some(r) = tokio::time::timeout(WAIT, s.message()).await.expect("stream stalled").unwrap() {
        out.push(r);
    }
    out
}

fn flows(rs: &[GetFlowsResponse]) -> Vec<&Flow> {
    rs.iter()
        .filter_map(|r| match &r.response_types {
            Some(ResponseTypes::Flow(f)) => Some(f),
            _ => None,
        })
        .collect()
}

fn filters(flags: &[(&str, &str)]) -> (Vec<FlowFilter>, Vec<FlowFilter>) {
    let mut b = FilterBuilder::new();
    for (k, v) in flags {
        if *k == "not" {
            b.not().unwrap();
        } else {
            b.set(k, v).unwrap();
        }
    }
    b.build().unwrap()
}

#[tokio::test]
async fn number_first_since_until_per_node() {
    let relay = start(homelab_topology("default"), quiet(300)).await;
    // Wait for the prefill of the three nodes.
    let ch = client::connect(&relay.target()).await.unwrap();
    eventually("prefill", || {
        let ch = ch.clone();
        let t = relay.target();
        async move { client::server_status(&ch, &t).await.ok().filter(|s| s.num_flows >= 900) }
    })
    .await;

    let last = collect(&relay, GetFlowsRequest { number: 10, ..Default::default() }).await;
    // Node status first, then the last 10 flows of every node, oldest first.
    match &last[0].response_types {
        Some(ResponseTypes::NodeStatus(ns)) => {
            assert_eq!(ns.state_change, NodeState::NodeConnected as i32);
            assert_eq!(ns.node_names.len(), 3);
        }
        other => panic!("expected node status first, got {other:?}"),
    }
    let f = flows(&last);
    assert_eq!(f.len(), 30);
    for node in ["homelab-cp1", "homelab-w1", "homelab-w2"] {
        assert_eq!(f.iter().filter(|x| x.node_name == node).count(), 10, "{node}");
    }
    let times: Vec<i128> = f.iter().map(|x| timestamp_nanos(x.time.as_ref().unwrap())).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "sorted by time");

    let first = collect(&relay, GetFlowsRequest { number: 5, first: true, ..Default::default() }).await;
    let ff = flows(&first);
    assert_eq!(ff.len(), 15);
    let oldest = timestamp_nanos(ff[0].time.as_ref().unwrap());
    assert!(oldest < times[0]);

    let all = collect(&relay, GetFlowsRequest { number: u64::MAX, ..Default::default() }).await;
    let all_f = flows(&all);
    assert_eq!(all_f.len(), 900);
    let mid = all_f[450].time.unwrap();
    let end = all_f[600].time.unwrap();
    let since = collect(&relay, GetFlowsRequest { since: Some(mid), ..Default::default() }).await;
    assert_eq!(flows(&since).len(), 450);
    let window = collect(&relay, GetFlowsRequest { since: Some(mid), until: Some(end), ..Default::default() }).await;
    assert_eq!(flows(&window).len(), 151);
    assert!(flows(&window).iter().all(|f| {
        let t = timestamp_nanos(f.time.as_ref().unwrap());
        t >= timestamp_nanos(&mid) && t <= timestamp_nanos(&end)
    }));
    // until in the past with follow: the stream still ends.
    let ended =
        collect(&relay, GetFlowsRequest { follow: true, since: Some(mid), until: Some(end), ..Default::default() })
            .await;
    assert_eq!(flows(&ended).len(), 151);

    // Filters are evaluated server side with the shared matcher.
    let (wl, bl) = filters(&[("protocol", "tcp"), ("not", ""), ("namespace", "kube-system")]);
    let filtered = collect(
        &relay,
        GetFlowsRequest { number: u64::MAX, whitelist: wl.clone(), blacklist: bl.clone(), ..Default::default() },
    )
    .await;
    let req = cutover::hubble::filter::CompiledRequest::new(&wl, &bl).unwrap();
    let expected = all_f.iter().filter(|f| req.matches(f)).count();
    assert!(expected > 0);
    assert_eq!(flows(&filtered).len(), expected);
}

#[tokio::test]
async fn follow_streams_new_flows_matching_filters() {
    let relay = start(homelab_topology("homelab"), live(1500.0)).await;
    let ch = client::connect(&relay.target()).await.unwrap();
    wait_connected(&ch, &relay.target(), 3).await;
    let (wl, bl) = filters(&[("to-port", "53")]);
    let mut s = client::get_flows(
        &ch,
        &relay.target(),
        GetFlowsRequest { follow: true, whitelist: wl.clone(), blacklist: bl, ..Default::default() },
    )
    .await
    .unwrap();
    let mut got = 0;
    let mut saw_status = false;
    let deadline = Instant::now() + WAIT;
    while got < 40 {
        assert!(Instant::now() < deadline, "only {got} flows");
        let r = tokio::time::timeout(WAIT, s.message()).await.unwrap().unwrap().unwrap();
        match r.response_types {
            Some(ResponseTypes::NodeStatus(ns)) => {
                saw_status = true;
                assert!(ns.node_names.iter().all(|n| n.starts_with("homelab/")), "{ns:?}");
            }
            Some(ResponseTypes::Flow(f)) => {
                assert!(cutover::hubble::filter::request_matches(&wl, &[], &f), "{f:?}");
                assert!(f.node_name.starts_with("homelab/"));
                assert_eq!(r.node_name, f.node_name);
                got += 1;
            }
            _ => {}
        }
    }
    assert!(saw_status);
}

#[tokio::test]
async fn status_nodes_namespaces_and_unavailable_node() {
    let relay = start(homelab_topology("homelab"), live(800.0)).await;
    let ch = client::connect(&relay.target()).await.unwrap();
    let t = relay.target();
    let status = eventually("flows recorded", || {
        let (ch, t) = (ch.clone(), t.clone());
        async move { client::server_status(&ch, &t).await.ok().filter(|s| s.seen_flows > 50 && s.flows_rate > 0.0) }
    })
    .await;
    assert_eq!(status.num_connected_nodes.map(|v| v.value), Some(3));
    assert_eq!(status.num_unavailable_nodes.map(|v| v.value), Some(0));
    assert_eq!(status.max_flows, 3 * 4095);
    assert_eq!(status.version, "1.16.6");
    assert!(status.uptime_ns > 0);
    let nodes = client::get_nodes(&ch, &t).await.unwrap();
    assert_eq!(nodes.len(), 3);
    let w2 = nodes.iter().find(|n| n.name == "homelab/homelab-w2").expect("prefixed node name");
    assert_eq!(w2.state, NodeState::NodeConnected as i32);
    assert_eq!(w2.address, "10.0.20.22:4244");
    assert_eq!(w2.tls.as_ref().map(|t| t.server_name.as_str()), Some("homelab-w2.homelab.hubble-grpc.cilium.io"));
    let ns = client::get_namespaces(&ch, &t).await.unwrap();
    assert!(ns.namespaces.iter().any(|n| n.namespace == "media" && n.cluster == "homelab"), "{ns:?}");

    // A follower sees the relay lose the node (NODE_ERROR, as the relay reports a failed agent
    // stream), then no more flows from it.
    let mut s = client::get_flows(&ch, &t, GetFlowsRequest { follow: true, ..Default::default() }).await.unwrap();
    relay.shared.inject(&Fault::RelayNodeUnavailable { node: "homelab-w2".into() });
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no NODE_ERROR event");
        let r = tokio::time::timeout(WAIT, s.message()).await.unwrap().unwrap().unwrap();
        if let Some(ResponseTypes::NodeStatus(ns)) = r.response_types
            && ns.state_change == NodeState::NodeError as i32
        {
            assert_eq!(ns.node_names, vec!["homelab/homelab-w2".to_string()]);
            assert!(ns.message.contains("code = Unavailable"), "{ns:?}");
            break;
        }
    }
    let mut after = 0;
    while after < 50 {
        let r = tokio::time::timeout(WAIT, s.message()).await.unwrap().unwrap().unwrap();
        if let Some(ResponseTypes::Flow(f)) = r.response_types {
            assert_ne!(f.node_name, "homelab/homelab-w2");
            after += 1;
        }
    }
    let status = client::server_status(&ch, &t).await.unwrap();
    assert_eq!(status.num_unavailable_nodes.map(|v| v.value), Some(1));
    assert_eq!(status.unavailable_nodes, vec!["homelab/homelab-w2".to_string()]);
    let nodes = client::get_nodes(&ch, &t).await.unwrap();
    let w2 = nodes.iter().find(|n| n.name == "homelab/homelab-w2").unwrap();
    assert_eq!(w2.state, NodeState::NodeUnavailable as i32);
}

#[tokio::test]
async fn flow_source_reconnects_and_resumes_without_duplicates() {
    let relay = start(homelab_topology("default"), live(600.0)).await;
    let (tx, mut rx) = mpsc::channel(100_000);
    let opts = FlowSourceOptions {
        status_interval: Duration::from_millis(300),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(300),
        jitter_seed: Some(1),
        ..Default::default()
    };
    let source = spawn_flow_source_with(
        RelayTarget::Address(relay.target()),
        FlowQuery { follow: true, ..Default::default() },
        tx,
        opts,
    );

    let mut uuids = HashSet::new();
    let mut times = Vec::new();
    let mut events = Vec::new();
    let mut phase = 0; // 0: before the outage, 1: disconnected, 2: back
    let deadline = Instant::now() + WAIT;
    let mut flows_after_reconnect = 0;
    while flows_after_reconnect < 300 {
        assert!(Instant::now() < deadline, "phase {phase}, events {events:?}");
        let ev = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        match &ev {
            HubbleEvent::Flow(r) => {
                let Some(ResponseTypes::Flow(f)) = &r.response_types else { panic!() };
                assert!(uuids.insert(f.uuid.clone()), "duplicate flow {}", f.uuid);
                times.push(timestamp_nanos(f.time.as_ref().unwrap()));
                if phase == 0 && uuids.len() == 100 {
                    relay.shared.inject(&Fault::RelayDown { seconds: 2 });
                }
                if phase == 2 {
                    flows_after_reconnect += 1;
                }
            }
            HubbleEvent::Disconnected { .. } => phase = phase.max(1),
            HubbleEvent::Connected { .. } if phase == 1 => phase = 2,
            HubbleEvent::Gap { .. } => panic!("no gap expected: the rings hold the outage: {ev:?}"),
            _ => {}
        }
        events.push(format!("{ev:?}").chars().take(80).collect::<String>());
    }
    assert!(events.iter().any(|e| e.starts_with("Disconnected")));
    assert!(events.iter().filter(|e| e.starts_with("Connected")).count() >= 2);
    let stats = source.stats.snapshot();
    assert!(stats.reconnects >= 1);
    assert_eq!(stats.dropped_client, 0);

    // Nothing the relay recorded between our first and last flow was missed (no hidden gap).
    let first = *times.iter().min().unwrap();
    let last = *times.iter().max().unwrap();
    let window = collect(
        &relay,
        GetFlowsRequest {
            since: Some(cutover::hubble::time::timestamp_from_nanos(first)),
            until: Some(cutover::hubble::time::timestamp_from_nanos(last)),
            ..Default::default()
        },
    )
    .await;
    let recorded: HashSet<String> = flows(&window).iter().map(|f| f.uuid.clone()).collect();
    let missing: Vec<&String> = recorded.difference(&uuids).collect();
    assert!(missing.is_empty(), "{} flows missed, e.g. {:?}", missing.len(), missing.first());
    source.abort();
}

#[tokio::test]
async fn flow_source_reports_a_gap_the_relay_cannot_fill() {
    let cfg = RelayConfig { ring_capacity: 40, ..live(1500.0) };
    let relay = start(homelab_topology("default"), cfg).await;
    let (tx, mut rx) = mpsc::channel(100_000);
    let opts = FlowSourceOptions {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        jitter_seed: Some(2),
        resume_overlap: Duration::ZERO,
        ..Default::default()
    };
    let _source = spawn_flow_source_with(
        RelayTarget::Address(relay.target()),
        FlowQuery { follow: true, ..Default::default() },
        tx,
        opts,
    );
    let mut seen = 0;
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no gap reported");
        match tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap() {
            HubbleEvent::Flow(_) => {
                seen += 1;
                if seen == 50 {
                    relay.shared.inject(&Fault::RelayDown { seconds: 2 });
                }
            }
            HubbleEvent::Gap { from, to, reason } => {
                let to = to.expect("gap end");
                assert!(timestamp_nanos(&to) > timestamp_nanos(&from));
                assert!(reason.contains("buffer overwritten"), "{reason}");
                break;
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn slow_follower_gets_lost_events() {
    let cfg = RelayConfig { follower_queue: 32, ..live(8000.0) };
    let relay = start(homelab_topology("default"), cfg).await;
    let ch = client::connect(&relay.target()).await.unwrap();
    let mut s =
        client::get_flows(&ch, &relay.target(), GetFlowsRequest { follow: true, ..Default::default() }).await.unwrap();
    // Read nothing for a while: the relay's queues fill up and the follower falls behind.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no lost event");
        let r = tokio::time::timeout(WAIT, s.message()).await.unwrap().unwrap().unwrap();
        if let Some(ResponseTypes::LostEvents(l)) = r.response_types {
            assert_eq!(l.source, LostEventSource::HubbleRingBuffer as i32);
            assert!(l.num_events_lost > 0);
            break;
        }
    }
}

#[tokio::test]
async fn bursts_overflow_the_perf_ring() {
    let cfg = RelayConfig { burst_every: Some(Duration::from_millis(200)), ..live(100.0) };
    let relay = start(homelab_topology("default"), cfg).await;
    let ch = client::connect(&relay.target()).await.unwrap();
    let mut s =
        client::get_flows(&ch, &relay.target(), GetFlowsRequest { follow: true, ..Default::default() }).await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no perf ring lost event");
        let r = tokio::time::timeout(WAIT, s.message()).await.unwrap().unwrap().unwrap();
        if let Some(ResponseTypes::LostEvents(l)) = r.response_types {
            assert_eq!(l.source, LostEventSource::PerfEventRingBuffer as i32);
            assert!(!r.node_name.is_empty());
            break;
        }
    }
}

#[tokio::test]
async fn without_cilium_there_are_no_flows() {
    let mut topo = homelab_topology("default");
    for n in &mut topo.nodes {
        n.cilium_ready = false;
    }
    let relay = start(topo, RelayConfig { prefill_per_node: 100, ..live(2000.0) }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = collect(&relay, GetFlowsRequest { number: 1000, ..Default::default() }).await;
    assert!(got.is_empty(), "{got:?}");
    let ch = client::connect(&relay.target()).await.unwrap();
    let st = client::server_status(&ch, &relay.target()).await.unwrap();
    assert_eq!(st.num_connected_nodes.map(|v| v.value), Some(0));
    assert_eq!(st.num_flows, 0);
    assert!(client::get_nodes(&ch, &relay.target()).await.unwrap().is_empty());
}

/// Waits until the relay has `n` agents connected.
async fn wait_connected(ch: &tonic::transport::Channel, target: &str, n: u32) {
    let deadline = Instant::now() + WAIT;
    while client::server_status(ch, target).await.unwrap().num_connected_nodes.map(|v| v.value) != Some(n) {
        assert!(Instant::now() < deadline, "agents never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn errors_are_classified() {
    // Invalid filter: rejected by the relay, and by the flow source before it connects.
    let relay = start(homelab_topology("default"), quiet(10)).await;
    let ch = client::connect(&relay.target()).await.unwrap();
    let bad = vec![FlowFilter { source_ip: vec!["10.0.0.0/99".into()], ..Default::default() }];
    // As a real relay: each agent refuses the request; the relay reports that as one NODE_ERROR
    // for the nodes it asked, and ends the stream normally.
    wait_connected(&ch, &relay.target(), 3).await;
    let mut s =
        client::get_flows(&ch, &relay.target(), GetFlowsRequest { whitelist: bad.clone(), ..Default::default() })
            .await
            .expect("the stream opens");
    let mut states = Vec::new();
    while let Some(r) = s.message().await.expect("no gRPC error") {
        let Some(ResponseTypes::NodeStatus(ns)) = r.response_types else { panic!("only node status: {r:?}") };
        if ns.state_change == NodeState::NodeError as i32 {
            assert!(ns.message.contains("invalid CIDR"), "{ns:?}");
            assert_eq!(ns.node_names.len(), 3, "{ns:?}");
        }
        states.push(ns.state_change);
    }
    assert_eq!(states, vec![NodeState::NodeConnected as i32, NodeState::NodeError as i32]);
    let (tx, mut rx) = mpsc::channel(10);
    let _s = client::spawn_flow_source(
        RelayTarget::Address(relay.target()),
        FlowQuery { whitelist: bad, ..Default::default() },
        tx,
    );
    assert!(matches!(rx.recv().await, Some(HubbleEvent::Failed { .. })));

    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let err = client::connect(&addr.to_string()).await.unwrap_err();
    assert!(matches!(err, HubbleError::Unreachable { .. }), "{err}");

    // An HTTP/1 server is not a relay.
    let http1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http1_addr = http1.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = http1.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let _ =
                    sock.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
            });
        }
    });
    let err = match client::connect(&http1_addr.to_string()).await {
        Ok(ch) => client::server_status(&ch, &http1_addr.to_string()).await.unwrap_err(),
        Err(e) => e,
    };
    assert!(matches!(err, HubbleError::NotARelay { .. }), "{err}");
    assert!(err.to_string().contains("not a hubble-relay"), "{err}");
    server.abort();

    // While the relay is down, calls fail as unreachable and connections are refused.
    relay.shared.inject(&Fault::RelayDown { seconds: 30 });
    let err = client::server_status(&ch, &relay.target()).await.unwrap_err();
    assert!(matches!(err, HubbleError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn sim_starts_with_a_reachable_relay() {
    let sim = cutover::sim::Sim::start(cutover::sim::SimOptions::default()).await.unwrap();
    let target = sim.relay_addr.to_string();
    let ch = client::connect(&target).await.unwrap();
    let st = client::server_status(&ch, &target).await.unwrap();
    assert!(st.num_connected_nodes.is_some());
    drop(sim);
}

#[tokio::test]
async fn port_forward_through_the_sim_api_reaches_the_relay() {
    let opts = cutover::sim::SimOptions { scenario: "cilium-installed".into(), speed: 20.0, ..Default::default() };
    let sim = cutover::sim::Sim::start(opts).await.unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&sim.kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await.unwrap();
    let kube_client = kube::Client::try_from(config).unwrap();
    // The relay pod becomes Ready after a little simulated time.
    let ch = eventually("hubble-relay reachable through port-forward", || {
        let c = kube_client.clone();
        async move { client::connect_via_kube(c, "kube-system").await.ok() }
    })
    .await;
    let label = "port-forward kube-system/hubble-relay";
    let st = client::server_status(&ch, label).await.unwrap();
    assert!(st.num_connected_nodes.is_some());
    // Flows stream over the same kind of connection once Cilium agents are ready.
    let (tx, mut rx) = mpsc::channel(1000);
    let target = RelayTarget::Kube { client: kube_client, namespace: "kube-system".into() };
    let source = client::spawn_flow_source(target, FlowQuery { number: 5, follow: true, ..Default::default() }, tx);
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no flow through the port-forward");
        match tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap() {
            HubbleEvent::Flow(_) => break,
            HubbleEvent::Failed { error } => panic!("{error}"),
            _ => {}
        }
    }
    source.abort();
}

#[tokio::test]
async fn a_returning_agent_sends_its_backlog_to_followers() {
    // No live traffic: only the rings' history (10 flows per node).
    let relay = start(homelab_topology("homelab"), quiet(10)).await;
    let ch = client::connect(&relay.target()).await.unwrap();
    wait_connected(&ch, &relay.target(), 3).await;
    let mut s =
        client::get_flows(&ch, &relay.target(), GetFlowsRequest { number: 3, follow: true, ..Default::default() })
            .await
            .unwrap();
    let mut next = async || tokio::time::timeout(WAIT, s.message()).await.unwrap().unwrap().unwrap();
    let mut flows = 0;
    while flows < 9 {
        if let Some(ResponseTypes::Flow(_)) = next().await.response_types {
            flows += 1;
        }
    }
    relay.shared.inject(&Fault::RelayNodeUnavailable { node: "homelab-w2".into() });
    loop {
        if let Some(ResponseTypes::NodeStatus(ns)) = next().await.response_types {
            assert_eq!(ns.state_change, NodeState::NodeError as i32, "{ns:?}");
            break;
        }
    }
    // Back again: the relay asks it with the same request, so its last 3 flows come again —
    // and no node-status event says so.
    relay.shared.inject(&Fault::Clear);
    for _ in 0..3 {
        match next().await.response_types {
            Some(ResponseTypes::Flow(f)) => assert_eq!(f.node_name, "homelab/homelab-w2"),
            other => panic!("expected w2's backlog, got {other:?}"),
        }
    }
}
