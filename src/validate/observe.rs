//! What the passive checks read: one list each of nodes, pods and Services (read-only client,
//! bounded by a timeout), then the live Hubble flow stream for the window, then the pods once more
//! (to place pods created during the window). Flows are reduced on arrival to [`FlowFact`]s —
//! the few fields the checks need and the flow's line as `cutover flows` prints it — and at most
//! [`MAX_FACTS`] are kept, so memory stays bounded however busy the cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::ValidateError;
use crate::hubble::client::{self, RelayTarget};
use crate::hubble::format::{FormatOptions, strip_cluster_prefix, write_compact};
use crate::hubble::proto::flow::{DropReason, Flow, L7FlowType, Verdict, layer4, layer7};
use crate::hubble::proto::observer::{GetFlowsRequest, get_flows_response::ResponseTypes};
use crate::hubble::proto::relay::NodeState;

/// Per-request deadline for the Kubernetes lists.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to the relay (and starting the stream) may take, on top of the window.
const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Flows kept for evaluation; more are counted in [`FlowWindow::not_kept`].
pub const MAX_FACTS: usize = 200_000;

/// One list and how long it took.
#[derive(Debug, Clone, Default)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub took: Duration,
}

/// Everything a passive run read.
#[derive(Debug, Clone)]
pub struct Observation {
    pub nodes: Result<Listed<Node>, String>,
    pub pods: Result<Listed<Pod>, String>,
    pub services: Result<Listed<Service>, String>,
    /// Pods listed again after the flow window (empty when not listed or the list failed).
    pub pods_after: Vec<Pod>,
    /// `None` when no flow check was selected (the relay was not read).
    pub flows: Option<Result<FlowWindow, String>>,
}

/// The flow stream over the window.
#[derive(Debug, Clone, Default)]
pub struct FlowWindow {
    pub facts: Vec<FlowFact>,
    /// Flows received (kept or not).
    pub seen: u64,
    /// Flows received beyond [`MAX_FACTS`] (not evaluated).
    pub not_kept: u64,
    /// The window asked for, and how long the stream was actually read.
    pub window: Duration,
    pub elapsed: Duration,
    /// Why the stream ended before the window did (the relay went away, …).
    pub ended_early: Option<String>,
    /// Events the relay or the agents reported lost in the window.
    pub lost_events: u64,
    /// Nodes the relay reported unavailable (and not connected again) in the window.
    pub unavailable_nodes: BTreeSet<String>,
}

/// One side of a flow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    pub namespace: String,
    /// Empty for anything that is not a pod (host, world, remote node).
    pub pod: String,
    pub ip: String,
    /// The endpoint carries `k8s:k8s-app=kube-dns` in kube-system (CoreDNS).
    pub kube_dns: bool,
}

/// What a DNS L7 event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEvent {
    pub response: bool,
    pub rcode: u32,
}

/// The parts of a flow the checks read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowFact {
    /// The node that observed it (without the `<cluster>/` prefix).
    pub node: String,
    pub verdict: i32,
    /// Drop reason name (`POLICY_DENIED`, `STALE_OR_UNROUTABLE_IP`, …) of a DROPPED flow.
    pub drop_reason: Option<String>,
    pub src: Peer,
    pub dst: Peer,
    pub src_port: Option<u32>,
    pub dst_port: Option<u32>,
    pub dns: Option<DnsEvent>,
    /// `namespace/name` of the destination Service, if Hubble resolved one.
    pub dst_service: Option<String>,
    /// The flow as `cutover flows --print-node-name` prints it (one line, no newline).
    pub line: String,
}

impl FlowFact {
    pub fn forwarded(&self) -> bool {
        self.verdict == Verdict::Forwarded as i32
    }

    pub fn dropped(&self) -> bool {
        self.verdict == Verdict::Dropped as i32
    }

    /// A drop by network policy (the cluster's intent, not a fault of the datapath).
    pub fn policy_drop(&self) -> bool {
        self.dropped() && self.drop_reason.as_deref().is_some_and(is_policy_reason)
    }

    pub fn from_flow(f: &Flow) -> FlowFact {
        let peer = |e: Option<&crate::hubble::proto::flow::Endpoint>, ip: &str| {
            let e = e.cloned().unwrap_or_default();
            let kube_dns = e.namespace == "kube-system" && e.labels.iter().any(|l| l == "k8s:k8s-app=kube-dns");
            Peer { namespace: e.namespace, pod: e.pod_name, ip: ip.to_string(), kube_dns }
        };
        let (sip, dip) = f.ip.as_ref().map_or(("", ""), |ip| (ip.source.as_str(), ip.destination.as_str()));
        let (src_port, dst_port) = match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
            Some(layer4::Protocol::Tcp(t)) => (Some(t.source_port), Some(t.destination_port)),
            Some(layer4::Protocol::Udp(u)) => (Some(u.source_port), Some(u.destination_port)),
            Some(layer4::Protocol::Sctp(s)) => (Some(s.source_port), Some(s.destination_port)),
            _ => (None, None),
        };
        let dns = f.l7.as_ref().and_then(|l7| match &l7.record {
            Some(layer7::Record::Dns(d)) => {
                Some(DnsEvent { response: l7.r#type == L7FlowType::Response as i32, rcode: d.rcode })
            }
            _ => None,
        });
        let drop_reason = (f.verdict == Verdict::Dropped as i32).then(|| drop_reason_name(f));
        let mut line = String::with_capacity(160);
        write_compact(&mut line, f, &FormatOptions { print_node_name: true, ..Default::default() });
        let line = line.trim_end().to_string();
        FlowFact {
            node: strip_cluster_prefix(&f.node_name).to_string(),
            verdict: f.verdict,
            drop_reason,
            src: peer(f.source.as_ref(), sip),
            dst: peer(f.destination.as_ref(), dip),
            src_port,
            dst_port,
            dns,
            dst_service: f.destination_service.as_ref().map(|s| format!("{}/{}", s.namespace, s.name)),
            line,
        }
    }
}

/// `POLICY_DENIED` (no rule allows it) and `POLICY_DENY` (a deny rule matched).
pub fn is_policy_reason(reason: &str) -> bool {
    reason == DropReason::PolicyDenied.as_str_name() || reason == DropReason::PolicyDeny.as_str_name()
}

/// The drop reason's proto name; from the legacy numeric code when `drop_reason_desc` is unset.
fn drop_reason_name(f: &Flow) -> String {
    let named = |code: i32| DropReason::try_from(code).ok().filter(|r| *r != DropReason::Unknown);
    if f.drop_reason_desc != 0 {
        return named(f.drop_reason_desc)
            .map_or_else(|| format!("DROP_REASON_{}", f.drop_reason_desc), |r| r.as_str_name().to_string());
    }
    match i32::try_from(f.drop_reason).ok().filter(|c| *c != 0) {
        Some(code) => named(code).map_or_else(|| format!("DROP_REASON_{code}"), |r| r.as_str_name().to_string()),
        None => DropReason::Unknown.as_str_name().to_string(),
    }
}

fn strip<K: Resource>(mut k: K) -> K {
    k.meta_mut().managed_fields = None;
    k
}

/// Whether a kube error means the API could not be reached (as opposed to a refusal).
fn unreachable_error(e: &kube::Error) -> bool {
    matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_))
}

enum ListError {
    Unreachable(String),
    Other(String),
}

async fn list<K>(api: Api<K>, what: &str) -> Result<Listed<K>, ListError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let start = Instant::now();
    match tokio::time::timeout(LIST_TIMEOUT, api.list(&ListParams::default())).await {
        Ok(Ok(l)) => Ok(Listed { items: l.items.into_iter().map(strip).collect(), took: start.elapsed() }),
        Ok(Err(e)) if unreachable_error(&e) => Err(ListError::Unreachable(format!("cannot list {what}: {e}"))),
        Ok(Err(kube::Error::Api(s))) => {
            Err(ListError::Other(format!("cannot list {what}: {} ({})", s.message, s.code)))
        }
        Ok(Err(e)) => Err(ListError::Other(format!("cannot list {what}: {e}"))),
        Err(_) => {
            Err(ListError::Unreachable(format!("cannot list {what}: no answer within {}s", LIST_TIMEOUT.as_secs())))
        }
    }
}

fn flatten<T>(r: Result<Listed<T>, ListError>) -> Result<Listed<T>, String> {
    r.map_err(|e| match e {
        ListError::Unreachable(m) | ListError::Other(m) => m,
    })
}

/// Reads the cluster and (with `relay`) the flow stream for `window`. Fails only when no list
/// could reach the API at all.
pub async fn observe(
    client: &Client,
    relay: Option<&RelayTarget>,
    window: Duration,
) -> Result<Observation, ValidateError> {
    let (nodes, pods, services) = tokio::join!(
        list(Api::<Node>::all(client.clone()), "nodes"),
        list(Api::<Pod>::all(client.clone()), "pods"),
        list(Api::<Service>::all(client.clone()), "services"),
    );
    if let (Err(ListError::Unreachable(m)), Err(ListError::Unreachable(_)), Err(ListError::Unreachable(_))) =
        (&nodes, &pods, &services)
    {
        return Err(ValidateError::Unreachable(format!("cannot reach the Kubernetes API: {m}")));
    }
    let mut obs = Observation {
        nodes: flatten(nodes),
        pods: flatten(pods),
        services: flatten(services),
        pods_after: Vec::new(),
        flows: None,
    };
    if let Some(relay) = relay {
        obs.flows = Some(read_flows(relay, window).await);
        if let Ok(after) = list(Api::<Pod>::all(client.clone()), "pods").await {
            obs.pods_after = after.items;
        }
    }
    Ok(obs)
}

/// Reads the live flow stream (new flows only, as `cutover flows -f` without a backlog) for
/// `window`, reducing each flow to a [`FlowFact`].
pub async fn read_flows(relay: &RelayTarget, window: Duration) -> Result<FlowWindow, String> {
    read_flows_until(relay, window, &tokio_util::sync::CancellationToken::new(), |_| true).await
}

/// [`read_flows`] until `stop` is cancelled (at most `window`), keeping only the facts `keep`
/// accepts (all are counted in `seen`).
pub async fn read_flows_until(
    relay: &RelayTarget,
    window: Duration,
    stop: &tokio_util::sync::CancellationToken,
    keep: impl Fn(&FlowFact) -> bool,
) -> Result<FlowWindow, String> {
    let label = relay.describe();
    let channel = match tokio::time::timeout(RELAY_CONNECT_TIMEOUT, relay.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            return Err(format!("hubble-relay at {label}: no connection within {}s", RELAY_CONNECT_TIMEOUT.as_secs()));
        }
    };
    let req = GetFlowsRequest { number: 0, follow: true, ..Default::default() };
    let mut stream = match tokio::time::timeout(RELAY_CONNECT_TIMEOUT, client::get_flows(&channel, &label, req)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            return Err(format!("hubble-relay at {label}: no flow stream within {}s", RELAY_CONNECT_TIMEOUT.as_secs()));
        }
    };
    let start = Instant::now();
    let deadline = start + window;
    let mut w = FlowWindow { window, ..Default::default() };
    loop {
        let next = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = stop.cancelled() => break,
            m = stream.message() => m,
        };
        match next {
            Ok(Some(resp)) => match resp.response_types {
                Some(ResponseTypes::Flow(f)) => {
                    w.seen += 1;
                    let fact = FlowFact::from_flow(&f);
                    if !keep(&fact) {
                    } else if w.facts.len() < MAX_FACTS {
                        w.facts.push(fact);
                    } else {
                        w.not_kept += 1;
                    }
                }
                Some(ResponseTypes::NodeStatus(ns)) => {
                    let names = ns.node_names.iter().map(|n| strip_cluster_prefix(n).to_string());
                    match NodeState::try_from(ns.state_change) {
                        Ok(NodeState::NodeUnavailable | NodeState::NodeError | NodeState::NodeGone) => {
                            w.unavailable_nodes.extend(names);
                        }
                        Ok(NodeState::NodeConnected) => {
                            for n in names {
                                w.unavailable_nodes.remove(&n);
                            }
                        }
                        _ => {}
                    }
                }
                Some(ResponseTypes::LostEvents(l)) => w.lost_events = w.lost_events.saturating_add(l.num_events_lost),
                None => {}
            },
            Ok(None) => {
                w.ended_early = Some(format!("hubble-relay at {label} ended the flow stream"));
                break;
            }
            Err(e) => {
                w.ended_early = Some(e.to_string());
                break;
            }
        }
    }
    w.elapsed = start.elapsed().min(window);
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hubble::proto::observer::GetFlowsResponse;

    fn fixture(name: &str) -> Vec<Flow> {
        let path = format!("{}/tests/fixtures/hubble/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| {
                match serde_json::from_str::<GetFlowsResponse>(l).expect("a GetFlowsResponse").response_types {
                    Some(ResponseTypes::Flow(f)) => Some(f),
                    _ => None,
                }
            })
            .collect()
    }

    #[test]
    fn facts_from_real_dns_flows() {
        // cilium/hubble-otel testdata (see tests/fixtures/SOURCES.md): a query to kube-dns and its answer.
        let flows = fixture("hubble-otel-basic-sample-5-dns-flows.jsonl");
        let facts: Vec<FlowFact> = flows.iter().map(FlowFact::from_flow).collect();
        let query = &facts[0];
        assert!(query.forwarded() && query.dst.kube_dns && !query.src.kube_dns);
        assert_eq!(query.dst_port, Some(53));
        assert_eq!(query.dns, Some(DnsEvent { response: false, rcode: 0 }));
        assert!(query.line.contains("dns-request proxy FORWARDED"), "{}", query.line);
        assert!(query.line.contains(" [gke-example-otel-demo-"), "the observing node is printed: {}", query.line);
        let answer = facts.iter().find(|f| f.dns.as_ref().is_some_and(|d| d.response)).expect("an answer");
        assert!(answer.src.kube_dns && answer.src_port == Some(53));
        assert_eq!(answer.src.pod, "kube-dns-b4f5c58c7-vnx5s");
    }

    #[test]
    fn facts_from_real_drops() {
        // Cilium docs' exporter output: INVALID_SOURCE_IP and POLICY_DENIED drops.
        let facts: Vec<FlowFact> =
            fixture("cilium-docs-exporter-dropped-fieldmask.jsonl").iter().map(FlowFact::from_flow).collect();
        let reasons: Vec<_> = facts.iter().map(|f| f.drop_reason.clone().unwrap_or_default()).collect();
        assert_eq!(reasons, ["INVALID_SOURCE_IP", "POLICY_DENIED"]);
        assert!(!facts[0].policy_drop() && facts[1].policy_drop());
        assert!(facts.iter().all(|f| f.dropped() && !f.forwarded()));
    }

    #[test]
    fn legacy_drop_codes_and_unknown_numbers_are_named() {
        let mut f = Flow { verdict: Verdict::Dropped as i32, drop_reason: 133, ..Default::default() };
        assert_eq!(FlowFact::from_flow(&f).drop_reason.as_deref(), Some("POLICY_DENIED"));
        f.drop_reason_desc = 4242;
        assert_eq!(FlowFact::from_flow(&f).drop_reason.as_deref(), Some("DROP_REASON_4242"));
        f.drop_reason_desc = 0;
        f.drop_reason = 0;
        assert_eq!(FlowFact::from_flow(&f).drop_reason.as_deref(), Some("DROP_REASON_UNKNOWN"));
        f.verdict = Verdict::Forwarded as i32;
        assert_eq!(FlowFact::from_flow(&f).drop_reason, None);
    }
}
