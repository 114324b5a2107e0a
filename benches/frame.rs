//! Cockpit rendering and key handling cost: a 200×60 frame with 10,000 flows buffered and 20,000
//! flows/s arriving, drawn into ratatui's TestBackend (the terminal write itself is not included;
//! ratatui only writes the cells that changed). Run: `cargo bench --bench frame`.

use std::hint::black_box;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use cutover::app::model::{AppSummary, K3sArgs, NodeSummary, PodRole, PodSummary};
use cutover::app::state::{AppState, Mode};
use cutover::app::update::{AppEvent, update};
use cutover::cluster::watch::{Change, KubeEvent};
use cutover::hubble::proto::flow::{Endpoint, Flow, Ip, Verdict};
use cutover::hubble::proto::observer::Node as RelayNode;
use cutover::hubble::proto::relay::NodeState;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn flow(i: u64, node: &str) -> Flow {
    Flow {
        time: Some(pbjson_types::Timestamp {
            seconds: 1_764_000_000 + (i / 20_000) as i64,
            nanos: (i % 1000) as i32 * 1000,
        }),
        verdict: if i.is_multiple_of(50) { Verdict::Dropped as i32 } else { Verdict::Forwarded as i32 },
        node_name: format!("homelab/{node}"),
        ip: Some(Ip { source: format!("10.42.1.{}", i % 250), destination: "10.42.0.8".into(), ..Default::default() }),
        source: Some(Endpoint {
            namespace: "media".into(),
            pod_name: format!("jellyfin-{i}"),
            identity: 21877,
            ..Default::default()
        }),
        destination: Some(Endpoint {
            namespace: "kube-system".into(),
            pod_name: "coredns-6799fbcd5-9vzl2".into(),
            identity: 3129,
            ..Default::default()
        }),
        summary: "TCP Flags: ACK".into(),
        ..Default::default()
    }
}

fn state() -> AppState {
    let mut s = AppState::new(
        jiff::Timestamp::from_second(1_764_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        Mode::Armed,
        10_000,
    );
    let nodes = ["homelab-cp1", "homelab-w1", "homelab-w2"];
    for (i, n) in nodes.iter().enumerate() {
        s.on_kube(KubeEvent::Nodes(Change::Apply(NodeSummary {
            name: (*n).into(),
            ready: Some(true),
            server: i == 0,
            k3s_args: (i == 0).then(|| K3sArgs {
                role: "server".into(),
                flannel_backend: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        })));
        s.on_kube(KubeEvent::Pods(Change::Apply(PodSummary {
            name: format!("cilium-{i}"),
            node: (*n).into(),
            ready: true,
            role: PodRole::CiliumAgent,
            ..Default::default()
        })));
    }
    for a in ["cilium-app", "root", "longhorn-app", "metallb-app", "cert-manager-app", "haproxy-app"] {
        s.on_kube(KubeEvent::Applications(Change::Apply(AppSummary {
            name: a.into(),
            sync: "Synced".into(),
            health: "Healthy".into(),
            ..Default::default()
        })));
    }
    s.on_relay_connected("127.0.0.1:4245");
    s.on_relay_nodes(
        &nodes
            .iter()
            .map(|n| RelayNode {
                name: format!("homelab/{n}"),
                state: NodeState::NodeConnected as i32,
                ..Default::default()
            })
            .collect::<Vec<_>>(),
    );
    for i in 0..10_000 {
        s.on_flow(flow(i, nodes[(i % 3) as usize]));
    }
    s
}

fn main() {
    let theme = cutover::ui::Theme { color: true };
    let mut s = state();
    let mut term = match Terminal::new(TestBackend::new(200, 60)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("terminal: {e}");
            return;
        }
    };
    // Frame: draw with 2,000 new flows between frames (20,000 flows/s at 10 fps).
    let frames = 300;
    let mut incoming = 10_000u64;
    let mut ingest = std::time::Duration::ZERO;
    let t0 = Instant::now();
    for _ in 0..frames {
        let t = Instant::now();
        for _ in 0..2_000 {
            s.on_flow(flow(incoming, "homelab-w1"));
            incoming += 1;
        }
        ingest += t.elapsed();
        let _ = term.draw(|f| {
            cutover::ui::draw(f, &s, &theme);
        });
    }
    let total = t0.elapsed();
    let draw = total - ingest;
    println!(
        "frame 200x60, 10k flows buffered: {:.3} ms/frame (draw only), ingest {:.0} ns/flow",
        draw.as_secs_f64() * 1e3 / frames as f64,
        ingest.as_nanos() as f64 / (frames * 2_000) as f64
    );

    // Same with a filter active (worst case: the filter scans the buffer for visible rows).
    s.set_flow_filter(cutover::app::flowview::ViewFilter::parse("verdict:dropped").ok());
    let t0 = Instant::now();
    for _ in 0..frames {
        let _ = term.draw(|f| {
            cutover::ui::draw(f, &s, &theme);
        });
    }
    println!(
        "frame 200x60 with a 2%-selective filter: {:.3} ms/frame",
        t0.elapsed().as_secs_f64() * 1e3 / frames as f64
    );

    // Keys: update() per key press (the loop then draws one frame).
    let keys = [
        KeyCode::Down,
        KeyCode::Up,
        KeyCode::Tab,
        KeyCode::Char(' '),
        KeyCode::Char(' '),
        KeyCode::Char('?'),
        KeyCode::Esc,
    ];
    let n = 100_000;
    let t0 = Instant::now();
    for i in 0..n {
        black_box(update(&mut s, AppEvent::Key(KeyEvent::new(keys[i % keys.len()], KeyModifiers::NONE))));
    }
    println!("key handling (update only): {:.2} µs/key", t0.elapsed().as_secs_f64() * 1e6 / n as f64);
}
