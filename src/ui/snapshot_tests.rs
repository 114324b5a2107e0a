//! Snapshot tests: whole-screen renders of typical and edge states into ratatui's TestBackend,
//! compared with stored snapshots (`cargo insta review` to accept changes).

use jiff::Timestamp;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Modifier;

use super::{Theme, draw};
use crate::app::action::{Operation, Pending};
use crate::app::model::{
    AppResource, AppSummary, EndpointSummary, K3sArgs, NodeStartEvent, NodeSummary, PodRole, PodSummary,
};
use crate::app::state::{AppState, Focus, Mode};
use crate::app::update::{AppEvent, update};
use crate::cluster::watch::{Change, KubeEvent, SourceId, SourceProblem};
use crate::hubble::proto::flow::{CiliumEventType, Endpoint, Flow, Ip, Layer4, Udp, Verdict, layer4};
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
    // A drop carries its reason (133 = Policy denied); a forwarded flow its trace point (to-endpoint).
    let event_type = if verdict == Verdict::Dropped {
        CiliumEventType { r#type: crate::hubble::names::MSG_DROP, sub_type: 133 }
    } else {
        CiliumEventType { r#type: crate::hubble::names::MSG_TRACE, sub_type: 0 }
    };
    Flow {
        event_type: Some(event_type),
        l4: Some(Layer4 { protocol: Some(layer4::Protocol::Udp(Udp { source_port: 41234, destination_port: 53 })) }),
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
    // The rest of the homelab's nine Applications.
    for name in ["metallb-app", "cert-manager-app", "haproxy-app", "jellyfin-app", "home-assistant-app", "blog-app"] {
        kube(&mut s, KubeEvent::Applications(Change::Apply(app(name, "Synced", "Healthy"))));
    }
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
    t.draw(|f| {
        draw(f, s, &Theme { color: false });
    })
    .unwrap();
    t.backend().to_string()
}

/// One turn of the cockpit's loop: draw, and tell the state what was drawn. Returns the screen
/// and the rows drawn highlighted (below the header, whose mode badge is reversed too).
fn frame(s: &mut AppState, w: u16, h: u16) -> (String, Vec<String>) {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    let mut drawn = None;
    t.draw(|f| drawn = Some(draw(f, s, &Theme { color: false }))).unwrap();
    update(s, AppEvent::Drawn(Box::new(drawn.unwrap_or_default())));
    let buf = t.backend().buffer();
    let mut highlighted = Vec::new();
    for y in 1..h {
        let cells: Vec<_> = (0..w).map(|x| &buf[(x, y)]).collect();
        if cells.iter().any(|c| c.modifier.contains(Modifier::REVERSED)) {
            let text: String =
                cells.iter().filter(|c| c.modifier.contains(Modifier::REVERSED)).map(|c| c.symbol()).collect();
            highlighted.push(text.trim().to_string());
        }
    }
    (t.backend().to_string(), highlighted)
}

fn press(s: &mut AppState, code: KeyCode) {
    update(s, AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

/// Whether a (possibly shortened) label stands for `name`: its pieces between `…` appear in the
/// name in order, anchored at the ends the label does not cut.
fn label_means(label: &str, name: &str) -> bool {
    let pieces: Vec<&str> = label.split('…').collect();
    let mut rest = name;
    for (i, p) in pieces.iter().enumerate() {
        if p.is_empty() {
            continue;
        }
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else { return false };
            rest = r;
        } else if i == pieces.len() - 1 {
            return rest.ends_with(p);
        } else {
            let Some(at) = rest.find(p) else { return false };
            rest = &rest[at + p.len()..];
        }
    }
    label.ends_with('…') || pieces.len() == 1 && rest.is_empty() || pieces.last().is_some_and(|p| p.is_empty())
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
    let out = render(&s, 120, 28);
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

#[test]
fn typical_120x40() {
    insta::assert_snapshot!(render(&typical(Mode::Armed), 120, 40));
}

/// The Cilium app expanded into its resources (long names, more than fit), the Argo pane focused.
fn expanded(mode: Mode) -> AppState {
    let mut s = typical(mode);
    let mut cilium = s.apps["cilium-app"].clone();
    for (kind, name) in [
        ("ServiceAccount", "cilium"),
        ("ServiceAccount", "cilium-operator"),
        ("ConfigMap", "cilium-config"),
        ("Secret", "hubble-relay-client-certs"),
        ("ClusterRole", "cilium-operator"),
        ("ClusterRoleBinding", "cilium-operator"),
        ("Service", "hubble-relay"),
        ("Deployment", "hubble-relay"),
        ("Ingress", "hubble-ui-restricted-ingress-for-the-homelab"),
    ] {
        cilium.resources.push(AppResource {
            kind: kind.into(),
            namespace: if kind.starts_with("Cluster") { String::new() } else { "kube-system".into() },
            name: name.into(),
            status: "Synced".into(),
            health: if kind == "Deployment" { "Progressing".into() } else { "Healthy".into() },
        });
    }
    kube(&mut s, KubeEvent::Applications(Change::Apply(cilium)));
    s.ui.focus = Focus::Argo;
    s.ui.expanded_app = Some("cilium-app".into());
    s
}

#[test]
fn expanded_app_80x24() {
    let mut s = expanded(Mode::Armed);
    // The selection on the last resource: the list has scrolled to it.
    s.ui.selected_app = 11;
    let (out, hl) = frame(&mut s, 80, 24);
    assert_eq!(hl.len(), 1, "{out}");
    assert!(hl[0].contains("Ingress") && hl[0].contains("kube-system/hubble-ui-restricted"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn expanded_app_120x40() {
    let mut s = expanded(Mode::Armed);
    s.ui.selected_app = 11;
    let out = render(&s, 120, 40);
    assert!(out.contains("kube-system/hubble-ui-restricted-ingress-for-the-homelab"), "names in full\n{out}");
    assert!(out.contains("└ ClusterRoleBinding") && out.contains("cilium-operator"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn expanded_app_200x60() {
    insta::assert_snapshot!(render(&expanded(Mode::Armed), 200, 60));
}

/// Walks a list from top to bottom and back with the keys, one frame per key as the cockpit does,
/// checking that exactly one row is drawn highlighted and that it is the selection.
fn walk(s: &mut AppState, w: u16, h: u16, len: usize, mut check: impl FnMut(&mut AppState, usize, &str)) {
    press(s, KeyCode::Home);
    let mut keys: Vec<KeyCode> = vec![KeyCode::Down; len - 1];
    keys.extend([KeyCode::PageUp, KeyCode::End, KeyCode::PageUp, KeyCode::PageUp, KeyCode::Up, KeyCode::PageDown]);
    let (out, hl) = frame(s, w, h);
    assert_eq!(hl.len(), 1, "{w}x{h}: one highlighted row\n{out}");
    check(s, 0, &hl[0]);
    for (i, k) in keys.iter().enumerate() {
        press(s, *k);
        let (out, hl) = frame(s, w, h);
        assert_eq!(hl.len(), 1, "{w}x{h} after {k:?}: one highlighted row\n{out}");
        let sel = if s.ui.focus == Focus::Argo { s.ui.selected_app } else { s.ui.selected_node };
        if i < len - 1 {
            assert_eq!(sel, i + 1, "{w}x{h}: {k:?}");
        }
        check(s, sel, &hl[0]);
    }
}

#[test]
fn every_list_scrolls_with_its_selection_and_keys_act_on_the_highlighted_row() {
    use crate::app::lists::{ArgoRow, argo_rows};
    for (w, h) in [(80, 24), (120, 40), (200, 60)] {
        // Many apps, one expanded: the selection walks through apps and resources.
        let mut s = expanded(Mode::Armed);
        for i in 0..30 {
            kube(
                &mut s,
                KubeEvent::Applications(Change::Apply(app(&format!("tenant-{i:02}-app"), "Synced", "Healthy"))),
            );
        }
        let rows = argo_rows(&s);
        let names: Vec<String> = s.apps.keys().cloned().collect();
        walk(&mut s, w, h, rows.len(), |s, sel, hl| {
            let label = hl.split_whitespace().next().unwrap_or_default();
            match &rows[sel] {
                ArgoRow::App(name) => {
                    let means: Vec<&String> = names.iter().filter(|n| label_means(label, n)).collect();
                    assert_eq!(means, [name], "{w}x{h}: highlighted {hl:?} is the selected app, unambiguously");
                    for (key, want) in
                        [('s', Operation::Sync { app: name.clone() }), ('r', Operation::Refresh { app: name.clone() })]
                    {
                        press(s, KeyCode::Char(key));
                        let op = s.ui.confirm.as_ref().map(|p| p.op.clone());
                        assert_eq!(op, Some(want), "{w}x{h}: `{key}` on {hl:?}");
                        let (out, _) = frame(s, w, h);
                        assert!(out.contains(&format!("{key} {name}")) || out.contains(name.as_str()), "{out}");
                        press(s, KeyCode::Char('n'));
                        assert!(s.ui.confirm.is_none());
                    }
                }
                ArgoRow::Resource { kind, namespace, name, .. } => {
                    assert!(hl.contains(&format!("└ {kind}")), "{w}x{h}: {hl:?} is {kind}");
                    let object = if namespace.is_empty() { name.clone() } else { format!("{namespace}/{name}") };
                    if w >= 120 {
                        assert!(hl.contains(&object), "{w}x{h}: {hl:?} shows {object} in full");
                    }
                    press(s, KeyCode::Char('s'));
                    assert!(s.ui.confirm.is_none(), "`s` on a resource row syncs nothing");
                }
            }
        });

        // 203 nodes with long and wide names.
        let mut s = many_nodes();
        s.ui.focus = Focus::Nodes;
        let names: Vec<String> = s.nodes.keys().cloned().collect();
        walk(&mut s, w, h, names.len(), |s, sel, hl| {
            let label = hl.split_whitespace().next().unwrap_or_default();
            let means: Vec<&String> = names.iter().filter(|n| label_means(label, n)).collect();
            assert_eq!(means, [&names[sel]], "{w}x{h}: highlighted {hl:?} is the selected node, unambiguously");
            press(s, KeyCode::Char('c'));
            let op = s.ui.confirm.as_ref().map(|p| p.op.clone());
            assert_eq!(op, Some(Operation::Cordon { node: names[sel].clone() }), "{w}x{h}: `c` on {hl:?}");
            press(s, KeyCode::Char('n'));
        });
    }
}

#[test]
fn a_key_pressed_before_the_screen_showed_the_change_does_nothing() {
    let mut s = typical(Mode::Armed);
    s.ui.focus = Focus::Nodes;
    s.ui.selected_node = 2;
    let (_, hl) = frame(&mut s, 120, 40);
    assert!(hl[0].starts_with("homelab-w2"), "{hl:?}");
    // homelab-w2 goes away before the next frame: the selection moves to homelab-w1, which the
    // operator has not seen highlighted yet.
    update(&mut s, AppEvent::Kube(Box::new(KubeEvent::Nodes(Change::Delete(node("homelab-w2", false, false))))));
    press(&mut s, KeyCode::Char('c'));
    assert!(s.ui.confirm.is_none(), "nothing offered for a row the screen did not show");
    assert!(s.log.iter().any(|l| l.text.contains("look and press again")));
    let (_, hl) = frame(&mut s, 120, 40);
    assert!(hl[0].starts_with("homelab-w1"), "{hl:?}");
    press(&mut s, KeyCode::Char('c'));
    assert_eq!(s.ui.confirm.map(|p| p.op), Some(Operation::Cordon { node: "homelab-w1".into() }));
}

#[test]
fn the_selection_stays_on_its_node_when_one_is_added_before_it() {
    let mut s = typical(Mode::Armed);
    s.ui.focus = Focus::Nodes;
    s.ui.selected_node = 1; // homelab-w1
    frame(&mut s, 120, 40);
    update(&mut s, AppEvent::Kube(Box::new(KubeEvent::Nodes(Change::Apply(node("homelab-a0", false, false))))));
    let (_, hl) = frame(&mut s, 120, 40);
    assert!(hl[0].starts_with("homelab-w1"), "{hl:?}");
}

fn many_nodes() -> AppState {
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
    s
}

#[test]
fn flow_detail_overlay() {
    let mut s = typical(Mode::ReadOnly);
    s.ui.focus = Focus::Flows;
    let (_, hl) = frame(&mut s, 80, 24);
    assert_eq!(hl.len(), 1);
    assert!(hl[0].contains("FORWARDED") && hl[0].contains(":53"), "verdict and destination port: {hl:?}");
    press(&mut s, KeyCode::Enter);
    let detail = s.ui.view.flow_detail.clone().expect("Enter opens the highlighted flow");
    assert_eq!(detail.flow.time.map(|t| t.seconds), Some(T0 + 1), "the newest flow, highlighted");
    let (out, _) = frame(&mut s, 80, 24);
    for field in ["TIMESTAMP:", "NODE: homelab/homelab-w1", "SOURCE: media/jellyfin-7c9f8d-x2k4q:41234"] {
        assert!(out.contains(field), "{field}\n{out}");
    }
    assert!(out.contains("any other key closes"), "{out}");
    insta::assert_snapshot!(out);
    // Scrolls to its end: every field, long lines wrapped.
    press(&mut s, KeyCode::End);
    let (out, _) = frame(&mut s, 80, 24);
    assert!(out.contains("\"destination_port\": 53") || out.contains("\"destinationPort\": 53"), "{out}");
    press(&mut s, KeyCode::Char('y'));
    assert!(s.ui.view.flow_detail.is_none(), "any other key closes");
}

#[test]
fn events_grouped_and_shown_in_full() {
    let mut s = typical(Mode::Armed);
    for i in 0..12 {
        s.now = ts(T0 + 6 * i);
        s.on_lost(37 + i as u64, "", 0, None);
    }
    s.log(
        crate::app::state::Level::Warn,
        format!("a long message that does not fit on one line: {}", "word ".repeat(30)),
    );
    let out = render(&s, 120, 40);
    assert!(out.contains("hubble: 48 flow events lost on relay ×12 in 1m"), "{out}");
    s.ui.focus = Focus::Events;
    press(&mut s, KeyCode::Char('e'));
    assert!(s.ui.view.events_open);
    let (out, _) = frame(&mut s, 80, 24);
    assert!(out.contains("selected event, in full"), "{out}");
    assert!(out.contains("word word"), "{out}");
    insta::assert_snapshot!(out);
    press(&mut s, KeyCode::Up);
    let (out, hl) = frame(&mut s, 80, 24);
    assert!(hl[0].contains("×12 in 1m"), "{hl:?}");
    assert!(out.contains("12 times from 16:00:00 to 16:01:06"), "{out}");
    press(&mut s, KeyCode::Char('y'));
    assert!(!s.ui.view.events_open);
}

#[test]
fn help_scrolls_to_every_key_and_the_legend_at_80x24() {
    let mut s = typical(Mode::Armed);
    press(&mut s, KeyCode::Char('?'));
    let mut seen = String::new();
    for _ in 0..20 {
        let (out, _) = frame(&mut s, 80, 24);
        seen.push_str(&out);
        press(&mut s, KeyCode::PageDown);
    }
    for b in crate::app::keymap::KEYMAP.iter().filter(|b| !b.help.is_empty()) {
        let start: String = b.help.split(' ').take(3).collect::<Vec<_>>().join(" ");
        assert!(seen.contains(&format!(" {:<10}{start}", b.label)), "{} {start:?} never shown", b.label);
    }
    assert!(seen.contains("FLNL / FLANNEL") && seen.contains("F/S, D/S"), "the legend");
    assert!(s.ui.help, "scroll keys keep help open");
    let (out, _) = frame(&mut s, 80, 24);
    insta::assert_snapshot!(out);
    press(&mut s, KeyCode::Char('x'));
    assert!(!s.ui.help);
}

#[test]
fn dialogs_show_their_keys_at_80x24() {
    let mut s = typical(Mode::Armed);
    update(&mut s, AppEvent::Started(Operation::Drain { node: "homelab-w1".into() }));
    press(&mut s, KeyCode::Char('q'));
    let (out, _) = frame(&mut s, 80, 24);
    assert!(out.contains("y quits anyway · any other key stays"), "{out}");
    press(&mut s, KeyCode::Char('n'));
    s.ui.preflight_open = true;
    let (out, _) = frame(&mut s, 80, 24);
    assert!(out.contains("any other key closes"), "{out}");
    s.ui.preflight_open = false;
    s.ui.preview_stage = Some(1);
    let (out, _) = frame(&mut s, 80, 24);
    assert!(out.contains("1/2 stage · ↑↓ PgUp PgDn · any other key closes"), "{out}");
}

/// A runbook read: Stage 0 done in the journal, the Stage 1 commit ready with its diff, the
/// per-node step unavailable.
fn runbook_state(w_dry_run: bool) -> AppState {
    use crate::runbook::plan::{Gate, GateResult, GateState, Runbook};
    use crate::runbook::steps::{JournaledStep, Position, StepPreview, StepState};
    let mut s = typical(Mode::Armed);
    let rb = Runbook::built_in();
    let mut previews = Vec::new();
    for st in rb.stages.iter().chain(&rb.rollbacks) {
        for step in &st.steps {
            let (state, gates, changes) = match step.id.as_str() {
                "stage1-commit" => (
                    StepState::Ready,
                    vec![GateResult {
                        gate: Gate::CiliumAppAbsent,
                        state: GateState::Green,
                        evidence: "Application cilium-app does not exist".into(),
                    }],
                    vec![
                        "create platform/gitops/argocd/apps/cilium-app.yaml (+41)".into(),
                        "+apiVersion: argoproj.io/v1alpha1".into(),
                        "+kind: Application".into(),
                    ],
                ),
                "stage1-nodes" | "stage1-nodes-back" | "stage2-nodes" | "stage2-nodes-back" => (
                    StepState::Unavailable(
                        "`ssh` is not on PATH: install the OpenSSH client (Debian: apt-get install openssh-client)"
                            .into(),
                    ),
                    vec![GateResult {
                        gate: Gate::NodeStepAvailable,
                        state: GateState::Red,
                        evidence: "unavailable".into(),
                    }],
                    vec![],
                ),
                "stage1-wait" | "stage2-commit" => (
                    StepState::Blocked(
                        "cilium-app-synced-healthy is red: Application cilium-app does not exist".into(),
                    ),
                    vec![],
                    vec![],
                ),
                _ => (StepState::Ready, vec![], vec![]),
            };
            previews.push(StepPreview { stage: st.id.clone(), step: step.clone(), gates, state, changes });
        }
    }
    let position = Position {
        last: [(
            "preflight".to_string(),
            JournaledStep {
                seq: 3,
                time: "2025-11-24T15:00:00Z".into(),
                outcome: "ok".into(),
                message: "preflight: acknowledged (2 pre-flight warning(s))".into(),
            },
        )]
        .into_iter()
        .collect(),
        interrupted: None,
    };
    s.runbook.runbook = Some(std::sync::Arc::new(rb));
    s.runbook.read = Some(Ok(crate::app::runbook::RunbookRead { at: ts(T0), previews, position }));
    s.runbook.dry_run = w_dry_run;
    s.runbook.open = true;
    s
}

#[test]
fn runbook_view_80x24_and_120x40() {
    let mut s = runbook_state(false);
    // The next step is highlighted by `n` before its preview is read.
    let cmds = update(&mut s, AppEvent::Key(KeyEvent::new(KeyCode::Char('n'), KeyModifiers::NONE)));
    assert_eq!(cmds, vec![crate::app::update::Command::PreviewStep("stage1-commit".into())]);
    insta::assert_snapshot!("runbook_80x24", render(&s, 80, 24));
    insta::assert_snapshot!("runbook_120x40", render(&s, 120, 40));
}

#[test]
fn runbook_next_step_is_confirmed_by_its_id_and_a_dry_run_sends_nothing() {
    use crate::app::update::Command;
    for dry in [false, true] {
        let mut s = runbook_state(dry);
        press(&mut s, KeyCode::Char('n'));
        let pre = match &s.runbook.read {
            Some(Ok(r)) => r.previews.iter().find(|p| p.step.id == "stage1-commit").cloned().expect("preview"),
            _ => panic!("no read"),
        };
        // A preview for another step than the one asked for is ignored.
        let mut other = pre.clone();
        other.step.id = "stage1-refresh".into();
        update(&mut s, AppEvent::StepPreviewed { id: "stage1-refresh".into(), result: Ok(Box::new(other)) });
        assert!(s.ui.confirm.is_none());
        update(&mut s, AppEvent::StepPreviewed { id: "stage1-commit".into(), result: Ok(Box::new(pre)) });
        let pending = s.ui.confirm.clone().expect("confirmation open");
        assert!(pending.needs_name(), "a commit that deploys needs the step's id typed");
        assert_eq!(
            pending.preview.first().map(String::as_str),
            Some(
                "stage1-commit — Commit the Stage 1 files (Application, values, Hubble UI Ingress, k3s fragment) and push"
            )
        );
        if dry {
            assert!(pending.preview.iter().any(|l| l.starts_with("DRY RUN")));
        }
        // `y` does not confirm a typed confirmation; the id does.
        press(&mut s, KeyCode::Char('y'));
        assert!(s.ui.confirm.is_some());
        update(&mut s, AppEvent::Paste("stage1-commit".into()));
        let typed = s.ui.confirm.as_ref().map(|p| p.typed.clone());
        assert_eq!(typed.as_deref(), Some("ystage1-commit"), "pasted text fills the field, never keystrokes");
        for _ in 0..14 {
            press(&mut s, KeyCode::Backspace);
        }
        for c in "stage1-commit".chars() {
            press(&mut s, KeyCode::Char(c));
        }
        let cmds = update(&mut s, AppEvent::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)));
        if dry {
            assert!(cmds.is_empty(), "{cmds:?}");
            assert!(s.log.back().is_some_and(|l| l.text.contains("dry run")));
        } else {
            assert!(
                matches!(&cmds[..], [Command::Execute { op: Operation::Step { id, disruptive: true, .. }, .. }] if id == "stage1-commit"),
                "{cmds:?}"
            );
        }
    }
}

#[test]
fn runbook_blocked_step_opens_a_confirmation_that_cannot_run_and_read_only_refuses() {
    let mut s = runbook_state(false);
    s.runbook.selected = 0;
    // A blocked next step: the dialog says why and only closes.
    if let Some(Ok(r)) = s.runbook.read.as_mut() {
        for p in r.previews.iter_mut().filter(|p| p.step.id == "stage1-commit") {
            p.state = crate::runbook::steps::StepState::Blocked("preflight-no-fail is red: 1 fail".into());
        }
    }
    press(&mut s, KeyCode::Char('n'));
    let pre = match &s.runbook.read {
        Some(Ok(r)) => r.previews.iter().find(|p| p.step.id == "stage1-commit").cloned().expect("preview"),
        _ => panic!("no read"),
    };
    update(&mut s, AppEvent::StepPreviewed { id: "stage1-commit".into(), result: Ok(Box::new(pre)) });
    assert!(s.ui.confirm.as_ref().is_some_and(|p| p.refused));
    for c in "stage1-commit".chars() {
        press(&mut s, KeyCode::Char(c));
    }
    assert!(s.ui.confirm.is_none(), "a refused dialog closes on the first key");
    let mut ro = runbook_state(false);
    ro.mode = Mode::ReadOnly;
    let cmds = update(&mut ro, AppEvent::Key(KeyEvent::new(KeyCode::Char('n'), KeyModifiers::NONE)));
    assert!(cmds.is_empty() && ro.ui.confirm.is_none());
}

/// The runbook after Stage 1's wait failed: the commit and the refresh done in the journal.
fn runbook_failed_wait() -> AppState {
    use crate::runbook::steps::{JournaledStep, StepState};
    let mut s = runbook_state(false);
    if let Some(Ok(r)) = s.runbook.read.as_mut() {
        for p in r.previews.iter_mut() {
            match p.step.id.as_str() {
                "stage1-commit" => p.state = StepState::Done("commit 1a2b3c4 is on main".into()),
                "stage1-wait" => p.state = StepState::Ready,
                "stage1-sync" => p.state = StepState::Skip("auto-sync is on: Argo CD syncs by itself".into()),
                _ => {}
            }
        }
        let j = |seq: u64, outcome: &str, message: &str| JournaledStep {
            seq,
            time: format!("2025-11-24T15:0{seq}:00Z"),
            outcome: outcome.into(),
            message: message.into(),
        };
        r.position.last.insert("stage1-commit".into(), j(5, "ok", "commit 1a2b3c4 pushed"));
        r.position.last.insert("stage1-refresh".into(), j(7, "ok", "refresh requested"));
        r.position.last.insert("stage1-appear".into(), j(8, "ok", "cilium-app exists"));
        r.position.last.insert(
            "stage1-wait".into(),
            j(9, "failed", "timed out after 10m: cilium DaemonSet scheduled on 3 of 4 nodes"),
        );
    }
    s
}

#[test]
fn runbook_failure_says_what_failed_and_the_keys_and_a_skip_is_typed_and_journaled() {
    use crate::app::update::Command;
    let mut s = runbook_failed_wait();
    let rows = s.runbook.rows(None);
    let at = rows.iter().position(|r| r.id == "stage1-wait").expect("row");
    s.runbook.selected = at;
    assert_eq!(s.runbook.next(None).map(|r| r.id).as_deref(), Some("stage1-wait"), "a failed step is next again");
    // Before the screen has shown a highlighted step, S acts on nothing.
    press(&mut s, KeyCode::Char('S'));
    assert!(s.ui.confirm.is_none());
    let (out, _) = frame(&mut s, 80, 24);
    insta::assert_snapshot!("runbook_failed_80x24", out);
    assert!(out.contains("keys: n retry"), "{out}");
    assert!(out.contains("S skip it"), "{out}");
    // The header keeps the position within 80 columns.
    let header = out.lines().next().unwrap_or_default().to_string();
    assert!(header.contains("after stage1-appe"), "{header}");

    // S: the skip names the step and needs its id typed; Enter sends the skip, nothing else.
    press(&mut s, KeyCode::Char('S'));
    let pending = s.ui.confirm.clone().expect("confirmation");
    assert!(pending.needs_name());
    assert!(
        matches!(&pending.op, Operation::SkipStep { id, why } if id == "stage1-wait" && why.starts_with("failed: "))
    );
    for c in "stage1-wait".chars() {
        press(&mut s, KeyCode::Char(c));
    }
    let cmds = update(&mut s, AppEvent::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)));
    assert!(
        matches!(&cmds[..], [Command::Execute { op: Operation::SkipStep { id, .. }, .. }] if id == "stage1-wait"),
        "{cmds:?}"
    );

    // Journaled as skipped: the runbook goes on after it.
    if let Some(Ok(r)) = s.runbook.read.as_mut()
        && let Some(j) = r.position.last.get_mut("stage1-wait")
    {
        j.outcome = "skipped".into();
    }
    assert_eq!(s.runbook.next(None).map(|r| r.id).as_deref(), Some("stage1-nodes"));

    // A commit is never skipped; a step that did not fail is not either; read-only refuses.
    let mut s = runbook_failed_wait();
    if let Some(Ok(r)) = s.runbook.read.as_mut()
        && let Some(j) = r.position.last.get_mut("stage1-commit")
    {
        j.outcome = "failed".into();
    }
    s.runbook.selected = s.runbook.rows(None).iter().position(|r| r.id == "stage1-commit").expect("row");
    frame(&mut s, 80, 24);
    press(&mut s, KeyCode::Char('S'));
    assert!(s.ui.confirm.is_none());
    assert!(s.log.back().is_some_and(|l| l.text.contains("cannot be skipped")), "{:?}", s.log.back());
    s.runbook.selected = s.runbook.rows(None).iter().position(|r| r.id == "stage2-wait").expect("row");
    frame(&mut s, 80, 24);
    press(&mut s, KeyCode::Char('S'));
    assert!(s.ui.confirm.is_none());
    let mut ro = runbook_failed_wait();
    ro.mode = Mode::ReadOnly;
    ro.runbook.selected = at;
    frame(&mut ro, 80, 24);
    press(&mut ro, KeyCode::Char('S'));
    assert!(ro.ui.confirm.is_none());
}

#[test]
fn header_cuts_the_runbook_position_to_80_columns_and_a_disagreement_comes_first() {
    let mut s = runbook_failed_wait();
    s.runbook.open = false;
    // Git says the journal's commit is gone.
    if let Some(Ok(r)) = s.runbook.read.as_mut() {
        for p in r.previews.iter_mut().filter(|p| p.step.id == "stage1-commit") {
            p.state = crate::runbook::steps::StepState::Ready;
        }
    }
    for w in [80u16, 100, 200] {
        let out = render(&s, w, 24);
        let header = out.lines().next().unwrap_or_default();
        assert!(
            header.contains("disagree on stage1-commit") || header.contains("journal≠cluster: stage1-commit"),
            "{w}: {header}"
        );
    }
}

/// A validation report with a red pair, a green LoadBalancer IP and one skipped active check.
fn red_pair_report() -> crate::validate::Report {
    use crate::validate::{CheckResult, PassiveCheck, Report, Skipped, State, SubResult};
    use std::time::Duration;
    let sub = |subject: &str, state: State, ev: &str| SubResult {
        subject: subject.into(),
        state,
        evidence: vec![ev.into()],
        duration: Duration::from_secs(3),
    };
    Report {
        checks: vec![
            CheckResult::new(
                PassiveCheck::CrossNodeFlows,
                vec![
                    sub("homelab-cp1 → homelab-w1", State::Green, "120 forwarded, none dropped"),
                    sub("homelab-w1 → homelab-w2", State::Red, "0 forwarded, 14 dropped (UNKNOWN_L3_TARGET_ADDRESS)"),
                ],
                vec![],
            ),
            CheckResult::new(
                PassiveCheck::LoadBalancerIp,
                vec![sub("haproxy-ingress/haproxy-ingress", State::Green, "192.168.20.240")],
                vec![],
            ),
        ],
        skipped: vec![Skipped {
            id: "probe-clusterip".into(),
            title: "ClusterIP from every node".into(),
            reason: "this run reads only; a in the cockpit's overlay (or `cutover validate`) runs them".into(),
        }],
        window: Duration::from_secs(3),
        flows_seen: Some(2931),
        elapsed: Duration::from_secs(4),
    }
}

#[test]
fn validation_overlay_names_the_red_pair() {
    let report = red_pair_report();
    let mut s = typical(Mode::Armed);
    let cmds = update(&mut s, AppEvent::Key(KeyEvent::new(KeyCode::Char('v'), KeyModifiers::NONE)));
    assert_eq!(cmds, vec![crate::app::update::Command::RunValidate]);
    assert!(s.ui.validate_open && s.validating.is_some());
    // Pressing v again while it reads does not start a second run.
    let again = update(&mut s, AppEvent::Key(KeyEvent::new(KeyCode::Char('v'), KeyModifiers::NONE)));
    assert!(again.is_empty());
    update(&mut s, AppEvent::Validated(Ok(Box::new(report))));
    assert!(s.validating.is_none());
    insta::assert_snapshot!(render(&s, 100, 30));
}

#[test]
fn the_node_in_work_is_marked_with_its_phase_and_the_mark_goes_when_it_ends() {
    use crate::runbook::node_work::{NodePhase, NodeWork};
    use crate::runbook::runner::RunEvent;
    let mut s = typical(Mode::Armed);
    let op = Operation::Step { id: "stage1-nodes".into(), title: "Per node".into(), disruptive: true };
    update(&mut s, AppEvent::Started(op.clone()));
    let work = |phase| RunEvent::Node { op: op.clone(), work: Some(NodeWork { node: "homelab-w1".into(), phase }) };
    update(&mut s, AppEvent::Run(work(NodePhase::Draining { gone: 3, total: 7 })));
    let out = render(&s, 120, 30);
    assert!(out.contains("▶ homelab-w1: draining 3/7"), "{out}");
    update(
        &mut s,
        AppEvent::Run(work(NodePhase::Soaking {
            elapsed: std::time::Duration::from_secs(80),
            total: std::time::Duration::from_secs(120),
            flows: 412,
            drops: 0,
        })),
    );
    insta::assert_snapshot!(render(&s, 120, 30));
    let out = render(&s, 120, 30);
    assert!(out.contains("┃▶ …w1 "), "the row is marked:\n{out}");
    update(&mut s, AppEvent::Run(RunEvent::Node { op: op.clone(), work: None }));
    let out = render(&s, 120, 30);
    assert!(!out.contains("▶ homelab") && !out.contains("┃▶ "), "cleared when the node is done:\n{out}");
    update(&mut s, AppEvent::Run(work(NodePhase::Restarting)));
    update(&mut s, AppEvent::Run(RunEvent::Done { op, result: Ok("done".into()) }));
    let out = render(&s, 120, 30);
    assert!(!out.contains("▶ homelab") && !out.contains("┃▶ "), "cleared when the operation ends:\n{out}");
}

#[test]
fn the_runbook_view_shows_the_running_node_steps_node_its_sub_step_and_the_last_line() {
    use crate::runbook::node_work::{NodePhase, NodeWork};
    use crate::runbook::runner::RunEvent;
    let mut s = runbook_state(false);
    let rows = s.runbook.rows(None);
    s.runbook.selected = rows.iter().position(|r| r.id == "stage1-nodes").expect("row");
    let op = Operation::Step { id: "stage1-nodes".into(), title: "Per node".into(), disruptive: true };
    update(&mut s, AppEvent::Started(op.clone()));
    update(
        &mut s,
        AppEvent::Run(RunEvent::Progress { op: op.clone(), text: "homelab-w1: node 2/3 (k3s-agent)".into() }),
    );
    let work = NodeWork { node: "homelab-w1".into(), phase: NodePhase::Draining { gone: 3, total: 7 } };
    update(&mut s, AppEvent::Run(RunEvent::Node { op: op.clone(), work: Some(work) }));
    let (out, _) = frame(&mut s, 100, 30);
    assert!(out.contains("▶ homelab-w1: draining 3/7"), "{out}");
    assert!(out.contains("last: homelab-w1: node 2/3 (k3s-agent)"), "{out}");
    // Another step highlighted: the panel is that step's.
    s.runbook.selected = rows.iter().position(|r| r.id == "stage1-commit").expect("row");
    let (out, _) = frame(&mut s, 100, 30);
    assert!(!out.contains("▶ homelab-w1: draining"), "{out}");
    update(&mut s, AppEvent::Run(RunEvent::Done { op, result: Ok("done".into()) }));
    s.runbook.selected = rows.iter().position(|r| r.id == "stage1-nodes").expect("row");
    let (out, _) = frame(&mut s, 100, 30);
    assert!(!out.contains("▶ homelab-w1") && !out.contains("last: homelab-w1"), "gone when it ends: {out}");
}

#[test]
fn a_in_the_validation_overlay_runs_the_active_checks_through_the_runner_after_a_confirmation() {
    use crate::app::update::Command;
    use crate::runbook::runner::RunEvent;
    let mut s = typical(Mode::Armed);
    press(&mut s, KeyCode::Char('v'));
    update(&mut s, AppEvent::Validated(Ok(Box::new(red_pair_report()))));
    let out = render(&s, 120, 30);
    assert!(out.contains("a with the active checks"), "{out}");
    // a: a confirmation that says what is created and deleted; y hands it to the runner.
    press(&mut s, KeyCode::Char('a'));
    let pending = s.ui.confirm.clone().expect("a confirmation");
    assert_eq!(pending.op, Operation::Validate);
    assert!(!pending.needs_name(), "probe objects only: y confirms");
    assert!(pending.preview.iter().any(|l| l.contains("CREATE one probe server Pod per Ready node")), "{pending:?}");
    let cmds = update(&mut s, AppEvent::Key(KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE)));
    assert!(matches!(&cmds[..], [Command::Execute { op: Operation::Validate, .. }]), "{cmds:?}");
    // Running: the overlay opens with its live progress.
    update(&mut s, AppEvent::Started(Operation::Validate));
    update(
        &mut s,
        AppEvent::Run(RunEvent::Progress { op: Operation::Validate, text: "validate: 3 client Job(s) running".into() }),
    );
    assert!(s.ui.validate_open);
    let out = render(&s, 140, 30);
    assert!(out.contains("active checks running since") && out.contains("validate: 3 client Job(s) running"), "{out}");
    // Its report replaces the overlay's; the end clears the running line.
    let mut report = red_pair_report();
    report.skipped.clear();
    update(&mut s, AppEvent::Run(RunEvent::Report { op: Operation::Validate, report: Box::new(report) }));
    update(
        &mut s,
        AppEvent::Run(RunEvent::Done {
            op: Operation::Validate,
            result: Err(crate::runbook::executor::ExecError::Failed("validate: not green".into())),
        }),
    );
    let out = render(&s, 140, 30);
    assert!(!out.contains("active checks running") && out.contains("NOT green"), "{out}");
    assert!(s.validation.as_ref().is_some_and(|(_, r)| r.as_ref().is_ok_and(|r| r.skipped.is_empty())));

    // Read-only: a opens nothing.
    let mut ro = typical(Mode::ReadOnly);
    press(&mut ro, KeyCode::Char('v'));
    press(&mut ro, KeyCode::Char('a'));
    assert!(ro.ui.confirm.is_none());
    assert!(render(&ro, 120, 30).contains("validation (read-only)"));
}

#[test]
fn probe_leftovers_of_earlier_runs_are_listed_and_a_deletes_them_first_after_its_confirmation() {
    use crate::validate::{Leftover, Leftovers};
    let o = |kind: &'static str, name: &str, run: &str| Leftover {
        kind,
        namespace: "default".into(),
        name: name.into(),
        run: run.into(),
        created: None,
    };
    let left = Leftovers {
        objects: vec![
            o("job", "cutover-probe-ab12-c0", "ab12"),
            o("pod", "cutover-probe-ab12-s0", "ab12"),
            o("pod", "cutover-probe-ab12-s1", "ab12"),
            o("service", "cutover-probe-ab12", "ab12"),
            o("persistentvolumeclaim", "cutover-probe-ab12-vol", "ab12"),
            o("pod", "cutover-probe-cd34-s0", "cd34"),
        ],
        idle: vec!["ab12".into()],
        recent: vec!["cd34".into()],
        quiet: std::time::Duration::from_secs(270),
    };
    let mut s = typical(Mode::Armed);
    press(&mut s, KeyCode::Char('v'));
    update(&mut s, AppEvent::ProbeLeftovers(Ok(Box::new(left.clone()))));
    update(&mut s, AppEvent::Validated(Ok(Box::new(red_pair_report()))));
    let out = render(&s, 160, 40);
    assert!(out.contains("6 probe object(s) of earlier runs are left:"), "{out}");
    assert!(out.contains("  run ab12 (idle: a deletes them first, after its confirmation):"), "{out}");
    assert!(out.contains("    job default/cutover-probe-ab12-c0 (run ab12)"), "{out}");
    assert!(out.contains("    and 1 more"), "{out}");
    assert!(
        out.contains("  run cd34 (created less than 4m30s ago, maybe a run in progress elsewhere: left alone):"),
        "{out}"
    );
    // The confirmation says what is deleted first and what is left alone.
    press(&mut s, KeyCode::Char('a'));
    let pending = s.ui.confirm.clone().expect("a confirmation");
    assert!(
        pending.preview.iter().any(|l| l.starts_with(
            "First DELETE the 5 probe object(s) earlier validation runs left behind (run ab12): job default/"
        )),
        "{pending:?}"
    );
    assert!(pending.preview.iter().any(|l| l.starts_with("Left alone: 1 probe object(s) of run cd34")), "{pending:?}");
    // Once the active run ends, the listing is stale: not shown until `v` looks again.
    update(
        &mut s,
        AppEvent::Run(crate::runbook::runner::RunEvent::Done { op: Operation::Validate, result: Ok("green".into()) }),
    );
    assert!(s.probe_leftovers.is_none());

    // Read-only: listed only. Could not look: unknown, said as such.
    let mut ro = typical(Mode::ReadOnly);
    press(&mut ro, KeyCode::Char('v'));
    update(&mut ro, AppEvent::ProbeLeftovers(Ok(Box::new(left))));
    let out = render(&ro, 160, 40);
    assert!(out.contains("  run ab12 (idle; read-only: listed only):"), "{out}");
    update(&mut ro, AppEvent::ProbeLeftovers(Err("listing pods: 403 Forbidden".into())));
    let out = render(&ro, 160, 40);
    assert!(out.contains("probe objects of earlier runs: unknown (listing pods: 403 Forbidden)"), "{out}");
}
