//! Snapshot tests: whole-screen renders of typical and edge states into ratatui's TestBackend,
//! compared with stored snapshots (`cargo insta review` to accept changes).

use jiff::Timestamp;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::{Theme, draw};
use crate::app::action::{Operation, Pending};
use crate::app::model::{
    AppResource, AppSummary, EndpointSummary, K3sArgs, NodeStartEvent, NodeSummary, PodRole, PodSummary,
};
use crate::app::state::{AppState, Focus, Mode};
use crate::cluster::watch::{Change, KubeEvent, SourceId, SourceProblem};
use crate::hubble::proto::flow::{Endpoint, Flow, Ip, Verdict};
use crate::hubble::proto::observer::Node as RelayNode;
use crate::hubble::proto::relay::NodeState;

const T0: i64 = 1_764_000_000;

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap()
}

fn node(name: &str, server: bool, flannel: bool) -> NodeSummary {
    let args = if flannel {
        K3sArgs { role: "server".into(), ..Default::default() }
    } else {
        K3sArgs {
            role: "server".into(),
            flannel_backend: Some("none".into()),
            disable_network_policy: true,
            ..Default::default()
        }
    };
    NodeSummary {
        name: name.into(),
        ready: Some(true),
        server,
        kubelet_version: "v1.32.6+k3s1".into(),
        kernel: "6.8.0-52-generic".into(),
        k3s_args: server.then_some(args),
        flannel_annotations: true,
        ready_since: Some(ts(T0 - 3600)),
        ..Default::default()
    }
}

fn agent(node: &str, ready: bool) -> PodSummary {
    PodSummary {
        namespace: "kube-system".into(),
        name: format!("cilium-{node}"),
        node: node.into(),
        phase: "Running".into(),
        ready,
        restarts: if ready { 0 } else { 3 },
        role: PodRole::CiliumAgent,
        owner_kind: "DaemonSet".into(),
        host_network: true,
        ..Default::default()
    }
}

fn workload(ns: &str, name: &str, node: &str, ip: &str) -> PodSummary {
    PodSummary {
        namespace: ns.into(),
        name: name.into(),
        node: node.into(),
        phase: "Running".into(),
        ready: true,
        owner_kind: "ReplicaSet".into(),
        ip: ip.into(),
        ..Default::default()
    }
}

fn start_event(node: &str, at: i64) -> NodeStartEvent {
    NodeStartEvent {
        key: format!("default/{node}.{at}"),
        node: node.into(),
        component: "kubelet".into(),
        at: Some(ts(at)),
    }
}

fn endpoint(ns: &str, name: &str, ip: &str) -> EndpointSummary {
    EndpointSummary { namespace: ns.into(), name: name.into(), ip: ip.into() }
}

fn app(name: &str, sync: &str, health: &str) -> AppSummary {
    AppSummary {
        name: name.into(),
        sync: sync.into(),
        health: health.into(),
        op_phase: "Succeeded".into(),
        revision: "4f2c9e1d0a".into(),
        reconciled_at: Some(ts(T0 - 42)),
        automated: true,
        self_heal: true,
        prune: true,
        ..Default::default()
    }
}

fn flow(i: i64, node: &str, verdict: Verdict) -> Flow {
    Flow {
        time: Some(pbjson_types::Timestamp { seconds: T0 - 10 + i, nanos: 0 }),
        verdict: verdict as i32,
        node_name: format!("homelab/{node}"),
        ip: Some(Ip { source: "10.42.1.15".into(), destination: "10.42.0.8".into(), ..Default::default() }),
        source: Some(Endpoint {
            namespace: "media".into(),
            pod_name: "jellyfin-7c9f8d-x2k4q".into(),
            identity: 21877,
            ..Default::default()
        }),
        destination: Some(Endpoint {
            namespace: "kube-system".into(),
            pod_name: "coredns-6799fbcd5-9vzl2".into(),
            identity: 3129,
            ..Default::default()
        }),
        summary: "UDP".into(),
        ..Default::default()
    }
}

fn kube(s: &mut AppState, e: KubeEvent) {
    s.on_kube(e);
}

/// A half-migrated cluster: Cilium syncing, one agent not ready, flows from two nodes; the server
/// and homelab-w1 restarted without flannel (w1 still has a pod on its flannel address),
/// homelab-w2 not restarted since.
fn typical(mode: Mode) -> AppState {
    let mut s = AppState::new(ts(T0), mode, 10_000);
    s.context = "homelab".into();
    s.cluster = "homelab".into();
    for (n, server) in [("homelab-cp1", true), ("homelab-w1", false), ("homelab-w2", false)] {
        kube(&mut s, KubeEvent::Nodes(Change::Apply(node(n, server, false))));
    }
    kube(&mut s, KubeEvent::Pods(Change::Apply(agent("homelab-cp1", true))));
    kube(&mut s, KubeEvent::Pods(Change::Apply(agent("homelab-w1", true))));
    kube(&mut s, KubeEvent::Pods(Change::Apply(agent("homelab-w2", false))));
    kube(&mut s, KubeEvent::CiliumNodes(Change::Apply("homelab-cp1".into())));
    kube(&mut s, KubeEvent::CiliumNodes(Change::Apply("homelab-w1".into())));
    kube(&mut s, KubeEvent::NodeStarts(Change::Apply(start_event("homelab-cp1", T0 - 600))));
    kube(&mut s, KubeEvent::NodeStarts(Change::Apply(start_event("homelab-w1", T0 - 300))));
    kube(
        &mut s,
        KubeEvent::Pods(Change::Apply(workload("kube-system", "coredns-6799fbcd5-9vzl2", "homelab-cp1", "10.42.0.8"))),
    );
    kube(
        &mut s,
        KubeEvent::Pods(Change::Apply(workload("media", "jellyfin-7c9f8d-x2k4q", "homelab-w1", "10.42.1.15"))),
    );
    kube(&mut s, KubeEvent::Pods(Change::Apply(workload("blog", "blog-5d8f7-abcde", "homelab-w1", "10.42.1.4"))));
    kube(&mut s, KubeEvent::Pods(Change::Apply(workload("blog", "blog-5d8f7-fghij", "homelab-w2", "10.42.2.3"))));
    kube(
        &mut s,
        KubeEvent::CiliumEndpoints(Change::Apply(endpoint("kube-system", "coredns-6799fbcd5-9vzl2", "10.42.0.8"))),
    );
    kube(&mut s, KubeEvent::CiliumEndpoints(Change::Apply(endpoint("media", "jellyfin-7c9f8d-x2k4q", "10.42.1.15"))));
    let mut cilium = app("cilium-app", "Synced", "Progressing");
    cilium.chart = Some(("cilium".into(), "1.17.6".into()));
    cilium.resources = vec![
        AppResource {
            kind: "DaemonSet".into(),
            namespace: "kube-system".into(),
            name: "cilium".into(),
            status: "Synced".into(),
            health: "Progressing".into(),
        },
        AppResource {
            kind: "Deployment".into(),
            namespace: "kube-system".into(),
            name: "cilium-operator".into(),
            status: "Synced".into(),
            health: "Healthy".into(),
        },
    ];
    kube(&mut s, KubeEvent::Applications(Change::Apply(cilium)));
    kube(&mut s, KubeEvent::Applications(Change::Apply(app("root", "Synced", "Healthy"))));
    let mut lh = app("longhorn-app", "OutOfSync", "Degraded");
    lh.conditions = vec![("ComparisonError".into(), "failed to render chart".into())];
    kube(&mut s, KubeEvent::Applications(Change::Apply(lh)));
    for k in SourceId::ALL {
        if let Some(src) = s.sources.get_mut(&k) {
            src.state = crate::app::state::SourceState::Live { since: ts(T0 - 100) };
        }
    }
    s.on_relay_connected("127.0.0.1:4245");
    s.on_relay_nodes(&[
        RelayNode { name: "homelab/homelab-cp1".into(), state: NodeState::NodeConnected as i32, ..Default::default() },
        RelayNode { name: "homelab/homelab-w1".into(), state: NodeState::NodeConnected as i32, ..Default::default() },
        RelayNode { name: "homelab/homelab-w2".into(), state: NodeState::NodeUnavailable as i32, ..Default::default() },
    ]);
    for i in 0..12 {
        let n = if i % 2 == 0 { "homelab-cp1" } else { "homelab-w1" };
        let v = if i % 5 == 4 { Verdict::Dropped } else { Verdict::Forwarded };
        s.on_flow(flow(i, n, v));
    }
    s
}

fn render(s: &AppState, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, s, &Theme { color: false })).unwrap();
    t.backend().to_string()
}

#[test]
fn typical_80x24() {
    insta::assert_snapshot!(render(&typical(Mode::Armed), 80, 24));
}

#[test]
fn typical_200x60() {
    insta::assert_snapshot!(render(&typical(Mode::ReadOnly), 200, 60));
}

#[test]
fn empty_connecting() {
    let s = AppState::new(ts(T0), Mode::ReadOnly, 100);
    insta::assert_snapshot!(render(&s, 100, 30));
}

#[test]
fn forbidden_and_not_installed() {
    let mut s = typical(Mode::ReadOnly);
    s.apps.clear();
    kube(
        &mut s,
        KubeEvent::Problem(
            SourceId::Applications,
            SourceProblem::Forbidden("applications.argoproj.io is forbidden: User \"viewer\" cannot list".into()),
        ),
    );
    kube(
        &mut s,
        KubeEvent::Problem(
            SourceId::CiliumNodes,
            SourceProblem::NotInstalled("the server could not find the requested resource".into()),
        ),
    );
    insta::assert_snapshot!(render(&s, 120, 30));
}

#[test]
fn stale_after_disconnect() {
    let mut s = typical(Mode::Armed);
    s.now = ts(T0 + 95);
    for k in SourceId::ALL {
        kube(&mut s, KubeEvent::Problem(k, SourceProblem::Unreachable("connection refused".into())));
    }
    s.on_relay_disconnected("transport error: connection refused", 4, std::time::Duration::from_secs(8));
    let out = render(&s, 120, 30);
    assert!(out.contains("STALE"), "{out}");
    assert!(out.contains("API unreachable"));
    assert!(out.contains("relay DOWN"));
    insta::assert_snapshot!(out);
}

#[test]
fn many_nodes_long_and_wide_names() {
    let mut s = typical(Mode::Armed);
    for i in 0..200 {
        kube(
            &mut s,
            KubeEvent::Nodes(Change::Apply(node(
                &format!("worker-{i:03}-with-a-very-long-hostname.lab.example"),
                false,
                false,
            ))),
        );
    }
    kube(&mut s, KubeEvent::Nodes(Change::Apply(node("ノード-東京-01", false, false))));
    let mut a = app("アプリ-😀-long-application-name-for-testing", "Synced", "Healthy");
    a.op_message = "successfully synced (all tasks run) — and a very long message that must be cut".into();
    kube(&mut s, KubeEvent::Applications(Change::Apply(a)));
    insta::assert_snapshot!(render(&s, 120, 40));
}

#[test]
fn help_overlay_read_only() {
    let mut s = typical(Mode::ReadOnly);
    s.ui.help = true;
    let out = render(&s, 100, 40);
    assert!(out.contains("disabled: read-only mode"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn confirm_dialog() {
    let mut s = typical(Mode::Armed);
    s.ui.focus = Focus::Nodes;
    let plan = crate::checks::drain::DrainPlan {
        node: "homelab-w1".into(),
        evict: vec![crate::checks::drain::PodRef {
            namespace: "media".into(),
            name: "jellyfin-0".into(),
            uid: "u1".into(),
            owner: "StatefulSet/jellyfin".into(),
        }],
        skip: vec![(
            crate::checks::drain::PodRef {
                namespace: "kube-system".into(),
                name: "cilium-7xk2p".into(),
                uid: "u2".into(),
                owner: "DaemonSet/cilium".into(),
            },
            crate::checks::drain::SkipReason::DaemonSet,
        )],
        pdbs: vec![crate::checks::drain::PdbCover {
            pdb: "media/jellyfin".into(),
            allowed: 0,
            pods: vec!["media/jellyfin-0".into()],
        }],
        ..Default::default()
    };
    let preview = crate::runbook::executor::drain_preview(&plan, &Default::default());
    let mut pending = Pending::with_preview(Operation::Drain { node: "homelab-w1".into() }, preview, false);
    pending.typed = "homelab-w".into();
    s.ui.confirm = Some(pending);
    insta::assert_snapshot!(render(&s, 100, 30));
}

#[test]
fn paused_filtered_flows() {
    let mut s = typical(Mode::Armed);
    s.ui.focus = Focus::Flows;
    s.flows.toggle_pause();
    for i in 20..25 {
        s.on_flow(flow(i, "homelab-w1", Verdict::Forwarded));
    }
    s.set_flow_filter(crate::app::flowview::ViewFilter::parse("verdict:dropped").ok());
    s.ui.filter_text = "verdict:dropped".into();
    let out = render(&s, 120, 30);
    assert!(out.contains("PAUSED"));
    assert!(!out.contains("FORWARDED"), "filter hides forwarded flows\n{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn gap_marker_row() {
    let mut s = typical(Mode::Armed);
    s.ui.focus = Focus::Flows;
    // The relay was down from the last flow (T0 + 1) to its return; w1's ring had moved on.
    s.on_relay_disconnected("transport error: connection refused", 1, std::time::Duration::from_secs(1));
    s.on_relay_connected("127.0.0.1:4245");
    s.on_gap(
        pbjson_types::Timestamp { seconds: T0 + 1, nanos: 0 },
        Some(pbjson_types::Timestamp { seconds: T0 + 20, nanos: 0 }),
        "relay reconnect (homelab-w1: buffer overwritten)",
    );
    for i in 30..33 {
        s.on_flow(flow(i, "homelab-w1", Verdict::Forwarded));
    }
    s.on_lost(
        340,
        "homelab/homelab-w1",
        crate::hubble::proto::flow::LostEventSource::PerfEventRingBuffer as i32,
        Some(pbjson_types::Timestamp { seconds: T0 + 23, nanos: 0 }),
    );
    s.on_flow(flow(34, "homelab-w1", Verdict::Forwarded));
    // A filter hides the forwarded flows, not the markers.
    s.set_flow_filter(crate::app::flowview::ViewFilter::parse("verdict:dropped").ok());
    s.ui.filter_text = "verdict:dropped".into();
    let out = render(&s, 120, 30);
    assert!(out.contains("── flows from 16:00:01 to 16:00:20 may be missing: relay reconnect"), "{out}");
    assert!(out.contains("340 flow events lost on homelab-w1"), "{out}");
    assert!(out.contains("gaps 1"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn tiny_and_resizes_never_panic() {
    let s = typical(Mode::Armed);
    for (w, h) in [(20, 5), (1, 1), (59, 15), (60, 16), (80, 24), (20, 5), (300, 100)] {
        let _ = render(&s, w, h);
    }
    insta::assert_snapshot!(render(&s, 20, 5));
}

#[test]
fn unknown_rates_are_shown_as_unknown() {
    let mut s = typical(Mode::Armed);
    s.relay.connected_since = None;
    s.relay.last_error = Some("connection refused".into());
    let out = render(&s, 80, 24);
    assert!(!out.contains(" 0.0 "), "no zero rates while the relay is down\n{out}");
}

#[test]
fn help_overlay_two_columns_when_short() {
    let mut s = typical(Mode::Armed);
    s.ui.help = true;
    let out = render(&s, 120, 26);
    assert!(out.contains("drain the selected node"), "every binding is visible\n{out}");
    assert!(out.contains("stop following a node"), "{out}");
    assert!(out.contains("clear flow filter"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn preflight_overlay_worst_first() {
    use crate::checks::{Check, Status};
    let mut s = typical(Mode::ReadOnly);
    s.ui.preflight_open = true;
    let check = |id: &str, status, ev: &str, action: &str| Check {
        id: id.into(),
        title: format!("title of {id}"),
        status,
        evidence: vec![ev.into()],
        action: action.into(),
    };
    s.preflight = Some((
        ts(T0),
        Ok(vec![
            check("k8s-version", Status::Pass, "all 3 node(s) run v1.32.6+k3s1", ""),
            check(
                "k3s-flannel",
                Status::Warn,
                "homelab-cp1: no --flannel-backend → embedded flannel runs",
                "set flannel-backend: none",
            ),
            check(
                "drain/homelab-w1",
                Status::Fail,
                "pod media/bare has no controller",
                "recreate it under a controller",
            ),
        ]),
    ));
    let out = render(&s, 100, 30);
    let fail = out.find("FAIL").unwrap_or(usize::MAX);
    let warn = out.find("WARN").unwrap_or(usize::MAX);
    let pass = out.find("PASS").unwrap_or(usize::MAX);
    assert!(fail < warn && warn < pass, "worst first\n{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn manifest_preview_overlay() {
    let mut s = typical(Mode::ReadOnly);
    s.ui.preview_stage = Some(1);
    s.preview = Some((
        1,
        Ok(vec![
            (
                "platform/networking/cilium/values.yaml".into(),
                "routingMode: native\nipv4NativeRoutingCIDR: 10.42.0.0/16\nkubeProxyReplacement: \"false\"\n".into(),
            ),
            (
                "infrastructure/k3s/config.yaml.d/50-cilium.yaml".into(),
                "flannel-backend: none\ndisable-network-policy: true\n".into(),
            ),
        ]),
    ));
    let out = render(&s, 100, 30);
    assert!(out.contains("nothing written"), "{out}");
    insta::assert_snapshot!(out);
}
