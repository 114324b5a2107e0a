//! Matcher tests: one block per FlowFilter field family, plus fixture flows.

use super::*;
use crate::hubble::proto::flow::{
    CiliumEventType, Dns, Http, HttpHeader, Ip, Layer4, Layer7, Service, Tcp, Udp, layer4::Protocol, layer7::Record,
};
use crate::hubble::proto::observer::GetFlowsResponse;

fn ep(ns: &str, pod: &str, identity: u32, labels: &[&str]) -> Endpoint {
    Endpoint {
        namespace: ns.into(),
        pod_name: pod.into(),
        identity,
        labels: labels.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A TCP flow media/jellyfin → kube-system/coredns on node homelab-w1.
fn base() -> Flow {
    Flow {
        uuid: "u-1".into(),
        verdict: Verdict::Forwarded as i32,
        ip: Some(Ip {
            source: "10.42.1.7".into(),
            destination: "10.42.2.9".into(),
            ip_version: 1,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(Protocol::Tcp(Tcp {
                source_port: 48512,
                destination_port: 8096,
                flags: Some(TcpFlags { syn: true, ack: true, ..Default::default() }),
            })),
        }),
        source: Some(ep(
            "media",
            "jellyfin-7c9f8d-x2k4q",
            21877,
            &["k8s:app=jellyfin", "k8s:io.kubernetes.pod.namespace=media"],
        )),
        destination: Some(ep("kube-system", "coredns-6799fbcd5-9vzl2", 3129, &["k8s:k8s-app=kube-dns"])),
        node_name: "homelab-w1".into(),
        event_type: Some(CiliumEventType { r#type: 4, sub_type: 0 }),
        traffic_direction: 2,
        is_reply: Some(pbjson_types::BoolValue { value: false }),
        ..Default::default()
    }
}

fn ff() -> FlowFilter {
    FlowFilter::default()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn yes(filter: FlowFilter, flow: &Flow) {
    assert!(matches(&filter, flow), "expected match: {filter:?}");
}

fn no(filter: FlowFilter, flow: &Flow) {
    assert!(CompiledFilter::new(&filter).is_ok(), "filter should compile: {filter:?}");
    assert!(!matches(&filter, flow), "expected no match: {filter:?}");
}

#[test]
fn empty_filter_matches_everything() {
    yes(ff(), &base());
    yes(ff(), &Flow::default());
    assert!(request_matches(&[], &[], &Flow::default()));
}

#[test]
fn uuid() {
    yes(FlowFilter { uuid: s(&["x", "u-1"]), ..ff() }, &base());
    no(FlowFilter { uuid: s(&["x"]), ..ff() }, &base());
}

#[test]
fn ips_and_cidrs() {
    let f = base();
    yes(FlowFilter { source_ip: s(&["10.42.1.7"]), ..ff() }, &f);
    yes(FlowFilter { source_ip: s(&["10.42.0.0/16"]), ..ff() }, &f);
    yes(FlowFilter { destination_ip: s(&["10.42.2.0/24", "1.1.1.1"]), ..ff() }, &f);
    yes(FlowFilter { destination_ip: s(&["0.0.0.0/0"]), ..ff() }, &f);
    no(FlowFilter { destination_ip: s(&["10.42.1.0/24"]), ..ff() }, &f);
    no(FlowFilter { source_ip: s(&["10.42.1.8"]), ..ff() }, &f);
    no(FlowFilter { source_ip_xlated: s(&["10.42.1.7"]), ..ff() }, &f);
    let mut v6 = base();
    if let Some(ip) = v6.ip.as_mut() {
        ip.source = "fd00:10:42::7".into();
        ip.ip_version = 2;
    }
    yes(FlowFilter { source_ip: s(&["fd00:10:42::/48"]), ..ff() }, &v6);
    no(FlowFilter { source_ip: s(&["fd00:10:43::/48"]), ..ff() }, &v6);
    no(FlowFilter { source_ip: s(&["10.0.0.0/8"]), ..ff() }, &v6);
    yes(FlowFilter { ip_version: vec![2], ..ff() }, &v6);
    no(FlowFilter { ip_version: vec![2], ..ff() }, &f);
    assert_eq!(
        CompiledFilter::new(&FlowFilter { source_ip: s(&["10.0.0.300"]), ..ff() }).unwrap_err(),
        FilterError::InvalidIp("10.0.0.300".into())
    );
    assert!(matches!(
        CompiledFilter::new(&FlowFilter { source_ip: s(&["10.0.0.0/33"]), ..ff() }),
        Err(FilterError::InvalidCidr(_))
    ));
    assert!(matches!(
        CompiledFilter::new(&FlowFilter { source_ip: s(&["x/8"]), ..ff() }),
        Err(FilterError::InvalidCidr(_))
    ));
}

#[test]
fn pods_and_services() {
    let f = base();
    yes(FlowFilter { source_pod: s(&["media/jelly"]), ..ff() }, &f);
    yes(FlowFilter { source_pod: s(&["media/"]), ..ff() }, &f);
    yes(FlowFilter { source_pod: s(&["/jellyfin"]), ..ff() }, &f);
    no(FlowFilter { source_pod: s(&["jellyfin"]), ..ff() }, &f); // means default/jellyfin
    no(FlowFilter { source_pod: s(&["other/jellyfin"]), ..ff() }, &f);
    yes(FlowFilter { destination_pod: s(&["kube-system/coredns"]), ..ff() }, &f);
    no(FlowFilter { destination_pod: s(&["kube-system/metrics"]), ..ff() }, &f);
    no(FlowFilter { destination_pod: s(&["kube-system/"]), ..ff() }, &Flow::default());
    let mut d = base();
    if let Some(src) = d.source.as_mut() {
        src.namespace = "default".into();
    }
    yes(FlowFilter { source_pod: s(&["jellyfin"]), ..ff() }, &d);
    assert_eq!(
        CompiledFilter::new(&FlowFilter { source_pod: s(&[""]), ..ff() }).unwrap_err(),
        FilterError::InvalidName("".into())
    );
    assert!(CompiledFilter::new(&FlowFilter { source_pod: s(&["/"]), ..ff() }).is_err());

    let mut svc = base();
    svc.destination_service = Some(Service { name: "kube-dns".into(), namespace: "kube-system".into() });
    yes(FlowFilter { destination_service: s(&["kube-system/kube-dns"]), ..ff() }, &svc);
    yes(FlowFilter { destination_service: s(&["kube-system/"]), ..ff() }, &svc);
    no(FlowFilter { destination_service: s(&["kube-system/kube-dns"]), ..ff() }, &f);
    no(FlowFilter { source_service: s(&["kube-system/"]), ..ff() }, &svc);
}

#[test]
fn fqdns() {
    let mut f = base();
    f.destination_names = s(&["api.github.com"]);
    yes(FlowFilter { destination_fqdn: s(&["api.github.com"]), ..ff() }, &f);
    yes(FlowFilter { destination_fqdn: s(&["*.github.com"]), ..ff() }, &f);
    yes(FlowFilter { destination_fqdn: s(&["API.GitHub.com."]), ..ff() }, &f);
    yes(FlowFilter { destination_fqdn: s(&["x.org", "*.com"]), ..ff() }, &f);
    no(FlowFilter { destination_fqdn: s(&["github.com"]), ..ff() }, &f);
    no(FlowFilter { source_fqdn: s(&["*"]), ..ff() }, &f);
    assert!(matches!(
        CompiledFilter::new(&FlowFilter { source_fqdn: s(&["a b"]), ..ff() }),
        Err(FilterError::InvalidPattern { .. })
    ));
    assert!(matches!(
        CompiledFilter::new(&FlowFilter { source_fqdn: s(&["a.."]), ..ff() }),
        Err(FilterError::InvalidPattern { .. })
    ));
}

#[test]
fn labels_and_workloads() {
    let f = base();
    yes(FlowFilter { source_label: s(&["k8s:app=jellyfin"]), ..ff() }, &f);
    yes(FlowFilter { source_label: s(&["app=jellyfin"]), ..ff() }, &f);
    yes(FlowFilter { source_label: s(&["app in (jellyfin, sonarr)"]), ..ff() }, &f);
    yes(FlowFilter { source_label: s(&["!tier"]), ..ff() }, &f);
    yes(FlowFilter { destination_label: s(&["k8s-app=kube-dns", "nope"]), ..ff() }, &f);
    no(FlowFilter { source_label: s(&["k8s:app=sonarr"]), ..ff() }, &f);
    no(FlowFilter { source_label: s(&["reserved:world"]), ..ff() }, &f);
    no(FlowFilter { source_label: s(&["app=jellyfin"]), ..ff() }, &Flow::default());
    let mut world = base();
    world.source = Some(ep("", "", 2, &["reserved:world"]));
    yes(FlowFilter { source_label: s(&["reserved:world"]), ..ff() }, &world);
    assert!(matches!(
        CompiledFilter::new(&FlowFilter { source_label: s(&["app in"]), ..ff() }),
        Err(FilterError::InvalidLabel(_))
    ));

    let mut n = base();
    n.node_labels = s(&["kubernetes.io/os=linux", "node-role.kubernetes.io/control-plane=true"]);
    yes(FlowFilter { node_labels: s(&["any:node-role.kubernetes.io/control-plane"]), ..ff() }, &n);
    no(FlowFilter { node_labels: s(&["any:node-role.kubernetes.io/worker"]), ..ff() }, &n);

    let mut w = base();
    if let Some(src) = w.source.as_mut() {
        src.workloads = vec![Workload { name: "jellyfin".into(), kind: "Deployment".into() }];
    }
    yes(FlowFilter { source_workload: vec![Workload { name: "jellyfin".into(), kind: String::new() }], ..ff() }, &w);
    yes(FlowFilter { source_workload: vec![Workload { name: String::new(), kind: "deployment".into() }], ..ff() }, &w);
    no(
        FlowFilter { source_workload: vec![Workload { name: "jellyfin".into(), kind: "StatefulSet".into() }], ..ff() },
        &w,
    );
    no(
        FlowFilter { destination_workload: vec![Workload { name: "jellyfin".into(), kind: String::new() }], ..ff() },
        &w,
    );
}

#[test]
fn verdicts_reasons_directions() {
    let f = base();
    yes(FlowFilter { verdict: vec![2, 1], ..ff() }, &f);
    no(FlowFilter { verdict: vec![2], ..ff() }, &f);
    let mut d = base();
    d.verdict = Verdict::Dropped as i32;
    d.drop_reason_desc = flow::DropReason::PolicyDenied as i32;
    yes(FlowFilter { drop_reason_desc: vec![133], ..ff() }, &d);
    no(FlowFilter { drop_reason_desc: vec![181], ..ff() }, &d);
    yes(FlowFilter { traffic_direction: vec![2], ..ff() }, &f);
    no(FlowFilter { traffic_direction: vec![1], ..ff() }, &f);
}

#[test]
fn event_types() {
    let f = base();
    let et = |t: i32, m: bool, st: i32| EventTypeFilter { r#type: t, match_sub_type: m, sub_type: st };
    yes(FlowFilter { event_type: vec![et(4, false, 0)], ..ff() }, &f);
    yes(FlowFilter { event_type: vec![et(4, true, 0)], ..ff() }, &f);
    no(FlowFilter { event_type: vec![et(4, true, 3)], ..ff() }, &f);
    no(FlowFilter { event_type: vec![et(1, false, 0)], ..ff() }, &f);
    yes(FlowFilter { event_type: vec![et(1, false, 0), et(4, false, 0)], ..ff() }, &f);
    yes(FlowFilter { event_type: vec![et(0, false, 0)], ..ff() }, &f);
    no(FlowFilter { event_type: vec![et(4, false, 0)], ..ff() }, &Flow::default());
}

fn http_flow(code: u32, method: &str, url: &str) -> Flow {
    let mut f = base();
    f.l7 = Some(Layer7 {
        r#type: 2,
        latency_ns: 0,
        record: Some(Record::Http(Http {
            code,
            method: method.into(),
            url: url.into(),
            protocol: "HTTP/1.1".into(),
            headers: vec![],
        })),
    });
    f.event_type = Some(CiliumEventType { r#type: 129, sub_type: 0 });
    f
}

#[test]
fn http_fields() {
    let f = http_flow(404, "GET", "http://jellyfin.media:8096/web/index.html?x=1");
    yes(FlowFilter { http_status_code: s(&["404"]), ..ff() }, &f);
    yes(FlowFilter { http_status_code: s(&["4+"]), ..ff() }, &f);
    yes(FlowFilter { http_status_code: s(&["40+", "200"]), ..ff() }, &f);
    no(FlowFilter { http_status_code: s(&["5+"]), ..ff() }, &f);
    no(FlowFilter { http_status_code: s(&["4+"]), ..ff() }, &http_flow(0, "GET", "/"));
    no(FlowFilter { http_status_code: s(&["4+"]), ..ff() }, &base());
    for bad in ["600", "4", "4++", "abc", "+"] {
        assert!(
            matches!(
                CompiledFilter::new(&FlowFilter { http_status_code: s(&[bad]), ..ff() }),
                Err(FilterError::InvalidHttpStatus(_))
            ),
            "{bad}"
        );
    }
    yes(FlowFilter { http_method: s(&["get"]), ..ff() }, &f);
    no(FlowFilter { http_method: s(&["POST"]), ..ff() }, &f);
    yes(FlowFilter { http_path: s(&["^/web/"]), ..ff() }, &f);
    no(FlowFilter { http_path: s(&["x=1"]), ..ff() }, &f);
    yes(FlowFilter { http_path: s(&["index"]), ..ff() }, &http_flow(200, "GET", "/web/index.html"));
    yes(FlowFilter { http_url: s(&[r"x=1$"]), ..ff() }, &f);
    assert_eq!(
        CompiledFilter::new(&FlowFilter {
            http_status_code: s(&["404"]),
            event_type: vec![EventTypeFilter { r#type: 4, ..Default::default() }],
            ..ff()
        })
        .unwrap_err(),
        FilterError::NeedsL7("http status code")
    );
    assert!(
        CompiledFilter::new(&FlowFilter {
            http_method: s(&["GET"]),
            event_type: vec![EventTypeFilter { r#type: 129, ..Default::default() }],
            ..ff()
        })
        .is_ok()
    );
    assert!(matches!(
        CompiledFilter::new(&FlowFilter { http_path: s(&["("]), ..ff() }),
        Err(FilterError::InvalidRegex { .. })
    ));
}

#[test]
fn protocols_and_ports() {
    let f = base();
    yes(FlowFilter { protocol: s(&["TCP"]), ..ff() }, &f);
    yes(FlowFilter { protocol: s(&["udp", "tcp"]), ..ff() }, &f);
    no(FlowFilter { protocol: s(&["udp"]), ..ff() }, &f);
    no(FlowFilter { protocol: s(&["http"]), ..ff() }, &f);
    yes(FlowFilter { protocol: s(&["http"]), ..ff() }, &http_flow(200, "GET", "/"));
    let mut icmp = base();
    icmp.l4 = Some(Layer4 { protocol: Some(Protocol::IcmPv6(flow::IcmPv6 { r#type: 128, code: 0 })) });
    yes(FlowFilter { protocol: s(&["icmp"]), ..ff() }, &icmp);
    yes(FlowFilter { protocol: s(&["icmpv6"]), ..ff() }, &icmp);
    no(FlowFilter { protocol: s(&["icmpv4"]), ..ff() }, &icmp);
    no(FlowFilter { source_port: s(&["0"]), ..ff() }, &icmp);
    assert_eq!(
        CompiledFilter::new(&FlowFilter { protocol: s(&["quic"]), ..ff() }).unwrap_err(),
        FilterError::UnknownProtocol("quic".into())
    );

    yes(FlowFilter { source_port: s(&["48512"]), ..ff() }, &f);
    yes(FlowFilter { destination_port: s(&["53", "8096"]), ..ff() }, &f);
    no(FlowFilter { destination_port: s(&["53"]), ..ff() }, &f);
    let mut udp = base();
    udp.l4 = Some(Layer4 { protocol: Some(Protocol::Udp(Udp { source_port: 40000, destination_port: 53 })) });
    yes(FlowFilter { destination_port: s(&["53"]), protocol: s(&["udp"]), ..ff() }, &udp);
    assert_eq!(
        CompiledFilter::new(&FlowFilter { source_port: s(&["70000"]), ..ff() }).unwrap_err(),
        FilterError::InvalidPort("70000".into())
    );
}

#[test]
fn reply_field() {
    let f = base();
    yes(FlowFilter { reply: vec![false], ..ff() }, &f);
    no(FlowFilter { reply: vec![true], ..ff() }, &f);
    let mut unknown = base();
    unknown.is_reply = None;
    no(FlowFilter { reply: vec![false], ..ff() }, &unknown);
    no(FlowFilter { reply: vec![true], ..ff() }, &unknown);
    unknown.verdict = Verdict::Dropped as i32;
    yes(FlowFilter { reply: vec![false], ..ff() }, &unknown);
}

#[test]
fn dns_queries() {
    let mut f = base();
    f.l7 = Some(Layer7 {
        r#type: 1,
        latency_ns: 0,
        record: Some(Record::Dns(Dns { query: "jellyfin.media.svc.cluster.local.".into(), ..Default::default() })),
    });
    yes(FlowFilter { dns_query: s(&[r"\.svc\.cluster\.local\.$"]), ..ff() }, &f);
    yes(FlowFilter { dns_query: s(&["^jelly"]), ..ff() }, &f);
    no(FlowFilter { dns_query: s(&["github"]), ..ff() }, &f);
    no(FlowFilter { dns_query: s(&[".*"]), ..ff() }, &base());
    assert!(matches!(
        CompiledFilter::new(&FlowFilter { dns_query: s(&["a(b"]), ..ff() }),
        Err(FilterError::InvalidRegex { .. })
    ));
}

#[test]
fn identities() {
    let f = base();
    yes(FlowFilter { source_identity: vec![21877], ..ff() }, &f);
    yes(FlowFilter { destination_identity: vec![1, 3129], ..ff() }, &f);
    no(FlowFilter { destination_identity: vec![2], ..ff() }, &f);
}

#[test]
fn tcp_flags() {
    let f = base(); // SYN+ACK
    yes(FlowFilter { tcp_flags: vec![TcpFlags { syn: true, ..Default::default() }], ..ff() }, &f);
    yes(FlowFilter { tcp_flags: vec![TcpFlags { syn: true, ack: true, ..Default::default() }], ..ff() }, &f);
    no(FlowFilter { tcp_flags: vec![TcpFlags { fin: true, ..Default::default() }], ..ff() }, &f);
    yes(
        FlowFilter {
            tcp_flags: vec![TcpFlags { fin: true, ..Default::default() }, TcpFlags { ack: true, ..Default::default() }],
            ..ff()
        },
        &f,
    );
    no(
        FlowFilter { tcp_flags: vec![TcpFlags { syn: true, ..Default::default() }], ..ff() },
        &http_flow(1, "", "").clone_with_udp(),
    );
}

trait WithUdp {
    fn clone_with_udp(&self) -> Flow;
}
impl WithUdp for Flow {
    fn clone_with_udp(&self) -> Flow {
        let mut f = self.clone();
        f.l4 = Some(Layer4 { protocol: Some(Protocol::Udp(Udp { source_port: 1, destination_port: 2 })) });
        f
    }
}

#[test]
fn node_names() {
    let f = base(); // homelab-w1, no cluster prefix → default cluster
    yes(FlowFilter { node_name: s(&["homelab-w1"]), ..ff() }, &f);
    yes(FlowFilter { node_name: s(&["homelab-*"]), ..ff() }, &f);
    yes(FlowFilter { node_name: s(&["default/homelab-w1"]), ..ff() }, &f);
    yes(FlowFilter { node_name: s(&["default/"]), ..ff() }, &f);
    no(FlowFilter { node_name: s(&["homelab/homelab-w1"]), ..ff() }, &f);
    no(FlowFilter { node_name: s(&["homelab-w2"]), ..ff() }, &f);
    let mut c = base();
    c.node_name = "homelab/homelab-w1".into();
    yes(FlowFilter { node_name: s(&["homelab-w1"]), ..ff() }, &c);
    yes(FlowFilter { node_name: s(&["homelab/homelab-w1"]), ..ff() }, &c);
    yes(FlowFilter { node_name: s(&["home*/*-w1"]), ..ff() }, &c);
    no(FlowFilter { node_name: s(&["default/homelab-w1"]), ..ff() }, &c);
    no(FlowFilter { node_name: s(&["*"]), ..ff() }, &Flow::default());
    assert!(matches!(
        CompiledFilter::new(&FlowFilter { node_name: s(&["a/b/c"]), ..ff() }),
        Err(FilterError::InvalidPattern { .. })
    ));
}

#[test]
fn interface_and_trace_id() {
    let mut f = base();
    f.interface = Some(NetworkInterface { index: 10, name: "lxc_health".into() });
    yes(FlowFilter { interface: vec![NetworkInterface { index: 0, name: "lxc_health".into() }], ..ff() }, &f);
    yes(FlowFilter { interface: vec![NetworkInterface { index: 10, name: String::new() }], ..ff() }, &f);
    no(FlowFilter { interface: vec![NetworkInterface { index: 11, name: String::new() }], ..ff() }, &f);
    no(FlowFilter { trace_id: s(&["abc"]), ..ff() }, &f);
}

#[test]
fn fields_are_anded_filters_ored_blacklist_wins() {
    let f = base();
    no(FlowFilter { source_pod: s(&["media/"]), verdict: vec![2], ..ff() }, &f);
    let wl = vec![
        FlowFilter { source_pod: s(&["other/"]), ..ff() },
        FlowFilter { destination_pod: s(&["kube-system/"]), ..ff() },
    ];
    assert!(request_matches(&wl, &[], &f));
    let bl = vec![FlowFilter { destination_port: s(&["8096"]), ..ff() }];
    assert!(!request_matches(&wl, &bl, &f));
    assert!(!request_matches(&[], &bl, &f));
    assert!(request_matches(&[], &[FlowFilter { verdict: vec![2], ..ff() }], &f));
    // An invalid filter makes the convenience function match nothing.
    assert!(!request_matches(&[FlowFilter { source_ip: s(&["bad"]), ..ff() }], &[], &f));
}

fn fixture(name: &str) -> Vec<Flow> {
    let path = format!("{}/tests/fixtures/hubble/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<GetFlowsResponse>(l).unwrap_or_else(|e| panic!("{name}: {e}")))
        .filter_map(|r| match r.response_types {
            Some(crate::hubble::proto::observer::get_flows_response::ResponseTypes::Flow(f)) => Some(f),
            _ => None,
        })
        .collect()
}

fn count(flows: &[Flow], flags: &[(&str, &str)]) -> usize {
    let mut b = FilterBuilder::new();
    for (k, v) in flags {
        if *k == "not" {
            b.not().unwrap();
        } else {
            b.set(k, v).unwrap();
        }
    }
    let (wl, bl) = b.build().unwrap();
    let req = CompiledRequest::new(&wl, &bl).unwrap();
    flows.iter().filter(|f| req.matches(f)).count()
}

#[test]
fn hubble_flags_on_fixture_flows() {
    let flows = fixture("hubble-otel-basic-sample-10-flows.jsonl");
    assert_eq!(flows.len(), 10);
    let total = flows.len();
    let in_bookinfo = count(&flows, &[("namespace", "bookinfo")]);
    let not_bookinfo = count(&flows, &[("not", ""), ("namespace", "bookinfo")]);
    assert!(in_bookinfo > 0);
    assert_eq!(in_bookinfo + not_bookinfo, total);
    assert_eq!(
        count(&flows, &[("to-label", "reserved:host")]),
        flows.iter().filter(|f| f.destination.as_ref().is_some_and(|d| d.identity == 1)).count()
    );
    assert_eq!(
        count(&flows, &[("identity", "host")]),
        flows
            .iter()
            .filter(|f| f.source.as_ref().is_some_and(|d| d.identity == 1)
                || f.destination.as_ref().is_some_and(|d| d.identity == 1))
            .count()
    );
    assert_eq!(
        count(&flows, &[("type", "trace:to-stack")]),
        flows.iter().filter(|f| f.event_type.as_ref().is_some_and(|e| e.r#type == 4 && e.sub_type == 3)).count()
    );
    assert_eq!(count(&flows, &[("protocol", "tcp"), ("protocol", "udp")]), total);

    let dns = fixture("hubble-otel-basic-sample-330-dns-flows.jsonl");
    let l7 = count(&dns, &[("type", "l7")]);
    assert!(l7 > 0);
    assert_eq!(count(&dns, &[("type", "l7"), ("protocol", "dns")]), l7);
    let drops = fixture("cilium-docs-exporter-dropped-fieldmask.jsonl");
    assert_eq!(count(&drops, &[("drop-reason-desc", "POLICY_DENIED")]), 1);
    assert_eq!(count(&drops, &[("verdict", "DROPPED"), ("node-name", "kind-kind/*")]), 2);
    assert_eq!(count(&drops, &[("node-name", "kind-worker")]), 2);
    assert_eq!(count(&drops, &[("pod", "xwing")]), 1);
    assert_eq!(count(&drops, &[("to-pod", "default/deathstar")]), 1);
}

#[test]
fn http_headers_and_unsupported_cel() {
    let mut f = http_flow(200, "GET", "/");
    if let Some(Layer7 { record: Some(Record::Http(h)), .. }) = f.l7.as_mut() {
        h.headers = vec![HttpHeader { key: "x-request-id".into(), value: "abc".into() }];
    }
    let hdr =
        |k: &str, v: &str| FlowFilter { http_header: vec![HttpHeader { key: k.into(), value: v.into() }], ..ff() };
    yes(hdr("x-request-id", "abc"), &f);
    no(hdr("x-request-id", "abd"), &f);
    no(hdr("x-other", "abc"), &f);
    no(hdr("x-request-id", "abc"), &base());
    // `--http-header key:value`, as the hubble CLI spells it.
    let mut b = FilterBuilder::new();
    b.set("http-header", "x-request-id:abc").unwrap();
    let (wl, _) = b.build().unwrap();
    assert_eq!(wl[0].http_header, vec![HttpHeader { key: "x-request-id".into(), value: "abc".into() }]);
    assert!(FilterBuilder::new().set("http-header", "novalue").is_err());
    // CEL is refused, not silently ignored (an ignored filter would match everything).
    let cel = FlowFilter {
        experimental: Some(crate::hubble::proto::flow::flow_filter::Experimental { cel_expression: s(&["true"]) }),
        ..ff()
    };
    assert!(matches!(CompiledFilter::new(&cel), Err(FilterError::Unsupported(_))));
}
