//! The passive checks on hand-built inputs (and on real Hubble flows from the fixtures: see
//! tests/fixtures/SOURCES.md).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use serde_json::json;

use super::*;
use crate::hubble::names;
use crate::hubble::proto::flow::{
    CiliumEventType, DropReason, Endpoint, Flow, Ip, Layer4, Layer7, Tcp, Udp, Verdict, layer4, layer7,
};
use crate::validate::observe::{FlowFact, FlowWindow, Listed, Observation};

fn node(name: &str) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

fn pod(ns: &str, name: &str, node: &str, ip: &str, labels: serde_json::Value, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                                   "reason": if ready { "" } else { "ContainersNotReady" }}],
                   "containerStatuses": [{"name": "c", "ready": ready, "restartCount": 0, "image": "i", "imageID": "",
                                          "state": if ready { json!({"running": {}}) } else { json!({"waiting": {"reason": "CrashLoopBackOff"}}) }}]},
    }))
    .unwrap()
}

fn app(name: &str, node: &str, ip: &str) -> Pod {
    pod("default", name, node, ip, json!({"app": name}), true)
}

fn coredns(node: &str, ip: &str) -> Pod {
    pod("kube-system", "coredns-abc", node, ip, json!({"k8s-app": "kube-dns"}), true)
}

fn ep(p: &Pod) -> Endpoint {
    let labels: Vec<String> = p
        .metadata
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("k8s:{k}={v}"))
        .chain([format!("k8s:io.kubernetes.pod.namespace={}", p.metadata.namespace.clone().unwrap())])
        .collect();
    Endpoint {
        identity: 1000,
        namespace: p.metadata.namespace.clone().unwrap(),
        pod_name: p.metadata.name.clone().unwrap(),
        labels,
        ..Default::default()
    }
}

fn ip_of(p: &Pod) -> String {
    p.status.as_ref().unwrap().pod_ip.clone().unwrap()
}

/// A TCP (or UDP with `udp`) flow from `src` to `dst` observed on `at`.
fn flow(at: &str, src: &Pod, dst: &Pod, sport: u32, dport: u32, udp: bool, drop: Option<DropReason>) -> Flow {
    let l4 = if udp {
        layer4::Protocol::Udp(Udp { source_port: sport, destination_port: dport })
    } else {
        layer4::Protocol::Tcp(Tcp { source_port: sport, destination_port: dport, flags: None })
    };
    Flow {
        node_name: format!("homelab/{at}"),
        verdict: if drop.is_some() { Verdict::Dropped as i32 } else { Verdict::Forwarded as i32 },
        drop_reason_desc: drop.map_or(0, |d| d as i32),
        event_type: Some(match drop {
            Some(d) => CiliumEventType { r#type: names::MSG_DROP, sub_type: d as i32 },
            None => CiliumEventType { r#type: names::MSG_TRACE, sub_type: 0 },
        }),
        ip: Some(Ip { source: ip_of(src), destination: ip_of(dst), ..Default::default() }),
        l4: Some(Layer4 { protocol: Some(l4) }),
        source: Some(ep(src)),
        destination: Some(ep(dst)),
        ..Default::default()
    }
}

fn window(flows: &[Flow]) -> FlowWindow {
    FlowWindow {
        facts: flows.iter().map(FlowFact::from_flow).collect(),
        seen: flows.len() as u64,
        window: Duration::from_secs(2),
        elapsed: Duration::from_secs(2),
        ..Default::default()
    }
}

fn listed<T>(items: Vec<T>) -> Result<Listed<T>, String> {
    Ok(Listed { items, took: Duration::from_millis(3) })
}

fn obs(nodes: &[&str], pods: Vec<Pod>, services: Vec<Service>, flows: Option<FlowWindow>) -> Observation {
    Observation {
        nodes: listed(nodes.iter().map(|n| node(n)).collect()),
        pods: listed(pods),
        services: listed(services),
        pods_after: vec![],
        flows: flows.map(Ok),
    }
}

fn states(c: &CheckResult) -> Vec<(String, State)> {
    c.results.iter().map(|r| (r.subject.clone(), r.state)).collect()
}

fn padding(n: usize, a: &Pod, b: &Pod) -> Vec<Flow> {
    (0..n).map(|i| flow("n1", a, b, 40000 + i as u32, 8080, false, None)).collect()
}

#[test]
fn cross_node_flows_per_ordered_pair() {
    let (a, b, c) = (app("a", "n1", "10.0.1.5"), app("b", "n2", "10.0.2.5"), app("c", "n3", "10.0.3.5"));
    let a2 = app("a2", "n1", "10.0.1.6");
    let mut flows = padding(6, &a, &b);
    flows.push(flow("n2", &b, &a, 8080, 40000, false, None));
    flows.push(flow("n1", &a, &c, 40001, 80, false, Some(DropReason::StaleOrUnroutableIp)));
    flows.push(flow("n1", &a, &c, 40001, 80, false, Some(DropReason::StaleOrUnroutableIp)));
    flows.push(flow("n3", &c, &b, 40002, 22, false, Some(DropReason::PolicyDenied)));
    // Same node: not a cross-node flow; a dropped one does not count here.
    flows.push(flow("n1", &a, &a2, 1, 2, false, Some(DropReason::StaleOrUnroutableIp)));
    let o = obs(&["n1", "n2", "n3"], vec![a, b, c, a2], vec![], Some(window(&flows)));
    let r = cross_node_flows(&o);
    assert_eq!(r.state, State::Red);
    assert_eq!(
        states(&r),
        [
            ("n1 → n3".to_string(), State::Red),
            ("n3 → n2".to_string(), State::Unknown),
            ("n1 → n2".to_string(), State::Green),
            ("n2 → n1".to_string(), State::Green),
        ]
    );
    let red = &r.results[0];
    assert_eq!(red.evidence[0], "2 dropped (STALE_OR_UNROUTABLE_IP ×2), 0 forwarded");
    assert!(
        red.evidence[1].contains("default/a:40001") && red.evidence[1].contains("Stale or unroutable IP DROPPED"),
        "{red:?}"
    );
    assert!(red.evidence[1].contains(" [homelab/n1]: "), "the observing node is printed: {red:?}");
    assert_eq!(red.duration, Duration::from_secs(2));
    assert_eq!(r.results[2].evidence[0], "6 forwarded, none dropped");
    assert!(r.notes.iter().any(|n| n == "no traffic between pods seen, not judged: n2 → n3, n3 → n1"), "{:?}", r.notes);
}

#[test]
fn cross_node_flows_is_never_green_by_absence() {
    let (a, b) = (app("a", "n1", "10.0.1.5"), app("b", "n2", "10.0.2.5"));
    // Too few flows in the window.
    let o = obs(&["n1", "n2"], vec![a.clone(), b.clone()], vec![], Some(window(&padding(3, &a, &b))));
    let r = cross_node_flows(&o);
    assert_eq!(states(&r), [("n1 → n2".to_string(), State::Unknown)]);
    assert!(r.results[0].evidence[0].starts_with("not judged green: only 3 flow(s) in the 2s window"), "{r:?}");
    // No cross-node flow at all.
    let o = obs(&["n1", "n2"], vec![a.clone(), b.clone()], vec![], Some(window(&padding(20, &a, &a))));
    assert_eq!(states(&cross_node_flows(&o)), [("cluster".to_string(), State::Unknown)]);
    // The stream ended early: greens are unknown, reds stay red.
    let mut w = window(&padding(20, &a, &b));
    w.ended_early = Some("hubble-relay went away".into());
    w.elapsed = Duration::from_millis(500);
    let r = cross_node_flows(&obs(&["n1", "n2"], vec![a.clone(), b.clone()], vec![], Some(w)));
    assert_eq!(r.state, State::Unknown);
    assert!(r.results[0].evidence[0].contains("ended after 500ms of the 2s window: hubble-relay went away"), "{r:?}");
    // The relay could not be read.
    let mut o = obs(&["n1"], vec![a.clone()], vec![], None);
    o.flows = Some(Err("hubble-relay at 127.0.0.1:1 is unreachable: refused".into()));
    let r = cross_node_flows(&o);
    assert_eq!(states(&r), [("cluster".to_string(), State::Unknown)]);
    assert!(r.results[0].evidence[0].starts_with("cannot read the flow stream: hubble-relay"), "{r:?}");
    // Pods could not be listed: flows cannot be placed.
    let mut o = obs(&["n1"], vec![], vec![], Some(window(&padding(20, &a, &b))));
    o.pods = Err("cannot list pods: forbidden (403)".into());
    assert_eq!(cross_node_flows(&o).state, State::Unknown);
}

#[test]
fn pods_created_during_the_window_are_placed_by_the_second_list() {
    let (a, b) = (app("a", "n1", "10.0.1.5"), app("late", "n2", "10.0.2.9"));
    let mut o = obs(&["n1", "n2"], vec![a.clone()], vec![], Some(window(&padding(12, &a, &b))));
    assert_eq!(cross_node_flows(&o).results[0].subject, "cluster");
    o.pods_after = vec![a, b];
    assert_eq!(states(&cross_node_flows(&o)), [("n1 → n2".to_string(), State::Green)]);
}

fn dns_answer_l7(at: &str, dns: &Pod, client: &Pod, rcode: u32) -> Flow {
    let mut f = flow(at, dns, client, 53, 40000, true, None);
    f.l7 = Some(Layer7 {
        r#type: 2,
        latency_ns: 0,
        record: Some(layer7::Record::Dns(crate::hubble::proto::flow::Dns { rcode, ..Default::default() })),
    });
    f
}

#[test]
fn dns_answers_per_node_of_the_asking_pod() {
    let dns = coredns("n1", "10.0.1.2");
    let (a, b, c, d) = (
        app("a", "n1", "10.0.1.5"),
        app("b", "n2", "10.0.2.5"),
        app("c", "n3", "10.0.3.5"),
        app("d", "n4", "10.0.4.5"),
    );
    let e = app("e", "n5", "10.0.5.5");
    let mut flows = vec![
        // n1: an L3/L4 answer from port 53.
        flow("n1", &a, &dns, 40000, 53, true, None),
        flow("n1", &dns, &a, 53, 40000, true, None),
        // n4: an L7 NXDOMAIN answer is an answer.
        dns_answer_l7("n4", &dns, &d, 3),
        // n5: only SERVFAIL.
        dns_answer_l7("n5", &dns, &e, 2),
    ];
    // n2: three queries, no answer.
    for i in 0..3 {
        flows.push(flow("n2", &b, &dns, 41000 + i, 53, true, None));
    }
    // n3: one query only.
    flows.push(flow("n3", &c, &dns, 42000, 53, true, None));
    flows.extend(padding(10, &a, &b));
    let o = obs(&["n1", "n2", "n3", "n4", "n5"], vec![dns, a, b, c, d, e], vec![], Some(window(&flows)));
    let r = dns_answers(&o);
    assert_eq!(
        states(&r),
        [
            ("n2".to_string(), State::Red),
            ("n5".to_string(), State::Red),
            ("n3".to_string(), State::Unknown),
            ("n1".to_string(), State::Green),
            ("n4".to_string(), State::Green),
        ]
    );
    assert_eq!(r.results[0].evidence[0], "3 DNS query packet(s) to CoreDNS, no answer in the 2s window");
    assert_eq!(r.results[1].evidence[0], "only error answers from CoreDNS: SERVFAIL ×1");
    assert!(r.results[2].evidence[0].contains("too few to judge"));
    assert_eq!(r.results[3].evidence[0], "1 answer(s) from CoreDNS to 1 pod(s) on this node");
    assert!(r.results[3].evidence[1].contains("kube-system/coredns-abc:53"), "{:?}", r.results[3]);
    assert_eq!(r.notes, ["CoreDNS pods: coredns-abc"]);
}

#[test]
fn dns_answers_dropped_queries_and_missing_coredns() {
    let dns = coredns("n1", "10.0.1.2");
    let (a, b) = (app("a", "n1", "10.0.1.5"), app("b", "n2", "10.0.2.5"));
    let mut flows = vec![flow("n2", &b, &dns, 40000, 53, true, Some(DropReason::StaleOrUnroutableIp))];
    flows.extend(padding(10, &a, &b));
    let r = dns_answers(&obs(&["n1", "n2"], vec![dns, a.clone(), b.clone()], vec![], Some(window(&flows))));
    let n2 = r.results.iter().find(|x| x.subject == "n2").unwrap();
    assert_eq!(n2.state, State::Red);
    assert_eq!(n2.evidence[0], "1 DNS query packet(s) dropped, no answer from CoreDNS");
    assert!(n2.evidence[1].contains("DROPPED"));
    // a on n1 asked nothing: unknown, not green.
    assert_eq!(r.results.iter().find(|x| x.subject == "n1").unwrap().state, State::Unknown);
    let r = dns_answers(&obs(&["n1", "n2"], vec![a, b], vec![], Some(window(&flows))));
    assert_eq!(states(&r), [("cluster".to_string(), State::Red)]);
    assert!(r.results[0].evidence[0].starts_with("no CoreDNS pod (kube-system, k8s-app=kube-dns)"));
}

#[test]
fn dns_answers_on_real_flows() {
    // cilium/hubble-otel testdata (tests/fixtures/SOURCES.md): node-local-dns asks kube-dns.
    let path =
        format!("{}/tests/fixtures/hubble/hubble-otel-basic-sample-5-dns-flows.jsonl", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let flows: Vec<Flow> = text
        .lines()
        .filter_map(|l| {
            let r: crate::hubble::proto::observer::GetFlowsResponse = serde_json::from_str(l).unwrap();
            match r.response_types {
                Some(crate::hubble::proto::observer::get_flows_response::ResponseTypes::Flow(f)) => Some(f),
                _ => None,
            }
        })
        .collect();
    let dns =
        pod("kube-system", "kube-dns-b4f5c58c7-vnx5s", "gke-a", "10.156.2.3", json!({"k8s-app": "kube-dns"}), true);
    let client =
        pod("kube-system", "node-local-dns-88zrp", "gke-b", "10.156.2.2", json!({"k8s-app": "node-local-dns"}), true);
    let mut w = window(&flows);
    w.seen = 50; // the fixture is short; the window is not what this test is about
    let r = dns_answers(&obs(&["gke-a", "gke-b"], vec![dns, client], vec![], Some(w)));
    let b = r.results.iter().find(|x| x.subject == "gke-b").unwrap();
    assert_eq!(b.state, State::Green, "{r:?}");
    assert!(b.evidence[1].contains("kube-system/kube-dns-b4f5c58c7-vnx5s:53"), "{b:?}");
}

#[test]
fn drops_per_observing_node_excluding_policy() {
    let (a, b) = (app("a", "n1", "10.0.1.5"), app("b", "n2", "10.0.2.5"));
    let mut flows = padding(10, &a, &b);
    flows.push(flow("n1", &b, &a, 1, 22, false, Some(DropReason::PolicyDenied)));
    flows.push(flow("n1", &b, &a, 1, 22, false, Some(DropReason::PolicyDeny)));
    flows.extend((0..6).map(|_| flow("n2", &b, &a, 1, 80, false, None)));
    flows.push(flow("n2", &b, &a, 1, 80, false, Some(DropReason::StaleOrUnroutableIp)));
    flows.push(flow("n2", &b, &a, 1, 80, false, Some(DropReason::ServiceBackendNotFound)));
    flows.push(flow("n2", &b, &a, 1, 80, false, Some(DropReason::StaleOrUnroutableIp)));
    flows.extend((0..2).map(|_| flow("n3", &b, &a, 1, 80, false, None)));
    let mut w = window(&flows);
    w.unavailable_nodes.insert("n5".into());
    w.lost_events = 7;
    let r = drops(&obs(&["n1", "n2", "n3", "n4", "n5"], vec![a, b], vec![], Some(w)));
    assert_eq!(
        states(&r),
        [
            ("n2".to_string(), State::Red),
            ("n3".to_string(), State::Unknown),
            ("n4".to_string(), State::Unknown),
            ("n5".to_string(), State::Unknown),
            ("n1".to_string(), State::Green),
        ]
    );
    assert_eq!(
        r.results[0].evidence[0],
        "3 drop(s) of 9 flow(s): STALE_OR_UNROUTABLE_IP ×2, SERVICE_BACKEND_NOT_FOUND ×1"
    );
    assert_eq!(r.results[0].evidence.len(), 4, "the reason line and three sample lines");
    assert_eq!(
        r.results[4].evidence,
        [
            "12 flow(s), no drops other than policy denials",
            "not counted (network policy): POLICY_DENIED ×1, POLICY_DENY ×1"
        ]
    );
    assert!(r.results[3].evidence[0].contains("unavailable"));
    assert!(r.notes.iter().any(|n| n.starts_with("7 event(s) reported lost")));
}

#[test]
fn longhorn_csi_on_every_node() {
    let csi = |name: &str, node: &str, ready: bool| {
        pod(LONGHORN_NAMESPACE, name, node, "10.0.9.9", json!({"app": "longhorn-csi-plugin"}), ready)
    };
    let other =
        pod(LONGHORN_NAMESPACE, "longhorn-manager-x", "n3", "10.0.3.3", json!({"app": "longhorn-manager"}), true);
    let o = obs(&["n1", "n2", "n3"], vec![csi("csi-1", "n1", true), csi("csi-2", "n2", false), other], vec![], None);
    let r = longhorn_csi(&o);
    assert_eq!(
        states(&r),
        [("n2".to_string(), State::Red), ("n3".to_string(), State::Red), ("n1".to_string(), State::Green)]
    );
    assert_eq!(
        r.results[0].evidence,
        ["longhorn-system/csi-2 not Ready: phase Running, Ready=False (ContainersNotReady), c: CrashLoopBackOff"]
    );
    assert_eq!(r.results[1].evidence, ["no longhorn-csi-plugin pod on this node"]);
    assert_eq!(r.results[2].evidence, ["longhorn-system/csi-1 Ready (1/1 containers ready)"]);
    assert_eq!(r.results[2].duration, Duration::from_millis(3));
    // Nothing installed: every node red, and a note says so.
    let r = longhorn_csi(&obs(&["n1"], vec![], vec![], None));
    assert_eq!(states(&r), [("n1".to_string(), State::Red)]);
    assert!(r.notes[0].contains("is Longhorn installed"));
    let mut o = obs(&["n1"], vec![], vec![], None);
    o.pods = Err("cannot list pods: forbidden (403)".into());
    assert_eq!(states(&longhorn_csi(&o)), [("cluster".to_string(), State::Unknown)]);
}

fn lb(name: &str, requested: Option<&str>, ingress: &[&str]) -> Service {
    let mut ann = json!({});
    if let Some(r) = requested {
        ann = json!({"metallb.universe.tf/loadBalancerIPs": r});
    }
    let ing: Vec<_> = ingress.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "haproxy-ingress", "annotations": ann},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31080}]},
        "status": {"loadBalancer": {"ingress": ing}},
    }))
    .unwrap()
}

#[test]
fn loadbalancer_ip_assigned_and_as_requested() {
    let cluster_ip: Service =
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {"type": "ClusterIP"}}))
            .unwrap();
    let o = obs(
        &[],
        vec![],
        vec![
            lb("ok", Some("192.168.20.240"), &["192.168.20.240"]),
            lb("pool", None, &["192.168.20.241"]),
            lb("lost", Some("192.168.20.242"), &[]),
            lb("other", Some("192.168.20.243"), &["192.168.20.249"]),
            cluster_ip.clone(),
        ],
        None,
    );
    let r = loadbalancer_ip(&o);
    assert_eq!(
        states(&r),
        [
            ("haproxy-ingress/lost".to_string(), State::Red),
            ("haproxy-ingress/other".to_string(), State::Red),
            ("haproxy-ingress/ok".to_string(), State::Green),
            ("haproxy-ingress/pool".to_string(), State::Green),
        ]
    );
    assert!(r.results[0].evidence[0].starts_with("status.loadBalancer.ingress is empty"));
    assert_eq!(r.results[0].evidence[1], "requested 192.168.20.242 (metallb.universe.tf/loadBalancerIPs)");
    assert_eq!(r.results[1].evidence[0], "has 192.168.20.249, not the requested 192.168.20.243");
    assert_eq!(
        r.results[2].evidence,
        [
            "status.loadBalancer.ingress: 192.168.20.240",
            "requested 192.168.20.240 (metallb.universe.tf/loadBalancerIPs)",
            "ports 80/TCP (nodePort 31080)"
        ]
    );
    let r = loadbalancer_ip(&obs(&[], vec![], vec![cluster_ip], None));
    assert_eq!(states(&r), [("cluster".to_string(), State::Red)]);
    let mut o = obs(&[], vec![], vec![], None);
    o.services = Err("cannot list services: forbidden (403)".into());
    assert_eq!(states(&loadbalancer_ip(&o)), [("cluster".to_string(), State::Unknown)]);
}

#[test]
fn host_network_pods_are_not_pod_network_peers() {
    let a = app("a", "n1", "10.0.1.5");
    let mut h: Pod = pod("kube-system", "speaker", "n2", "192.168.20.12", json!({}), true);
    h.spec.as_mut().unwrap().host_network = Some(true);
    let o = obs(&["n1", "n2"], vec![a.clone(), h.clone()], vec![], Some(window(&padding(12, &a, &h))));
    assert_eq!(cross_node_flows(&o).results[0].subject, "cluster");
}
