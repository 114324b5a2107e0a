//! The passive checks as pure functions of an [`Observation`]. Each gives per-subject results
//! (a node, an ordered node pair, a Service) with evidence; a subject whose data could not be
//! read, or that saw too little in the window, is unknown — never green by absence.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};

use super::observe::{FlowFact, FlowWindow, Observation, Peer};
use super::{CheckResult, PassiveCheck, State, SubResult};

/// Fewer flows than this in the whole window: too few to call anything green.
pub const MIN_WINDOW_FLOWS: u64 = 10;
/// Fewer flows than this observed on a node: `drops` cannot call that node green.
pub const MIN_NODE_FLOWS: u64 = 5;
/// Queries from a node's pods to CoreDNS without any answer that make `dns-answers` red (fewer:
/// unknown, the answer may simply not have come yet).
pub const MIN_UNANSWERED_QUERIES: u64 = 3;
/// Flow lines kept as evidence per subject.
const SAMPLE_LINES: usize = 3;

/// The namespace and label of Longhorn's CSI plugin DaemonSet pods.
pub const LONGHORN_NAMESPACE: &str = "longhorn-system";
pub const LONGHORN_CSI_LABEL: (&str, &str) = ("app", "longhorn-csi-plugin");
/// CoreDNS as k3s deploys it.
pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_LABEL: (&str, &str) = ("k8s-app", "kube-dns");

/// Whether the check reads the flow stream.
pub fn uses_flows(check: PassiveCheck) -> bool {
    matches!(check, PassiveCheck::CrossNodeFlows | PassiveCheck::DnsAnswers | PassiveCheck::Drops)
}

pub fn evaluate(check: PassiveCheck, obs: &Observation) -> CheckResult {
    match check {
        PassiveCheck::CrossNodeFlows => cross_node_flows(obs),
        PassiveCheck::DnsAnswers => dns_answers(obs),
        PassiveCheck::Drops => drops(obs),
        PassiveCheck::LonghornCsi => longhorn_csi(obs),
        PassiveCheck::LoadBalancerIp => loadbalancer_ip(obs),
    }
}

fn sub(subject: impl Into<String>, state: State, evidence: Vec<String>, duration: Duration) -> SubResult {
    SubResult { subject: subject.into(), state, evidence, duration }
}

/// One `cluster` subject saying why the check could not get as far as its subjects.
fn cannot(check: PassiveCheck, state: State, why: String, duration: Duration) -> CheckResult {
    CheckResult::new(check, vec![sub("cluster", state, vec![why], duration)], vec![])
}

/// Worst first; within a state by subject.
fn sorted(mut results: Vec<SubResult>) -> Vec<SubResult> {
    results.sort_by(|a, b| b.state.cmp(&a.state).then_with(|| a.subject.cmp(&b.subject)));
    results
}

fn labels_match(labels: Option<&BTreeMap<String, String>>, (k, v): (&str, &str)) -> bool {
    labels.and_then(|l| l.get(k)).is_some_and(|x| x == v)
}

fn pod_key(p: &Pod) -> (String, String) {
    (p.metadata.namespace.clone().unwrap_or_default(), p.metadata.name.clone().unwrap_or_default())
}

fn host_network(p: &Pod) -> bool {
    p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

fn pod_node(p: &Pod) -> Option<&str> {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

fn pod_running(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|ph| ph == "Running")
}

fn is_coredns_pod(p: &Pod) -> bool {
    p.metadata.namespace.as_deref() == Some(DNS_NAMESPACE) && labels_match(p.metadata.labels.as_ref(), DNS_LABEL)
}

/// Where pods run, from the pod lists (before and after the window): by name, and by IP for pods
/// on the pod network (a host-network pod shares its node's IP).
#[derive(Debug, Default)]
struct Placement {
    by_name: HashMap<(String, String), String>,
    by_ip: HashMap<String, String>,
    coredns: HashSet<(String, String)>,
    coredns_ips: HashSet<String>,
    host_network: HashSet<(String, String)>,
}

impl Placement {
    fn new(obs: &Observation) -> Placement {
        let mut p = Placement::default();
        let before = obs.pods.as_ref().map(|l| l.items.as_slice()).unwrap_or_default();
        for pod in obs.pods_after.iter().chain(before) {
            let key = pod_key(pod);
            let Some(node) = pod_node(pod) else { continue };
            if host_network(pod) {
                p.host_network.insert(key);
                continue;
            }
            if is_coredns_pod(pod) {
                p.coredns.insert(key.clone());
            }
            for ip in pod.status.iter().flat_map(|s| s.pod_ips.iter().flatten()).map(|i| i.ip.clone()) {
                if is_coredns_pod(pod) {
                    p.coredns_ips.insert(ip.clone());
                }
                p.by_ip.entry(ip).or_insert_with(|| node.to_string());
            }
            if let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) {
                if is_coredns_pod(pod) {
                    p.coredns_ips.insert(ip.clone());
                }
                p.by_ip.entry(ip).or_insert_with(|| node.to_string());
            }
            p.by_name.entry(key).or_insert_with(|| node.to_string());
        }
        p
    }

    /// The node of the pod on the pod network behind `peer`; `None` for hosts, the world, and
    /// pods not in the lists.
    fn node_of(&self, peer: &Peer) -> Option<&str> {
        if !peer.pod.is_empty() {
            let key = (peer.namespace.clone(), peer.pod.clone());
            if self.host_network.contains(&key) {
                return None;
            }
            if let Some(n) = self.by_name.get(&key) {
                return Some(n);
            }
        }
        (!peer.ip.is_empty()).then(|| self.by_ip.get(&peer.ip).map(String::as_str)).flatten()
    }

    fn is_coredns(&self, peer: &Peer) -> bool {
        peer.kube_dns
            || (!peer.pod.is_empty() && self.coredns.contains(&(peer.namespace.clone(), peer.pod.clone())))
            || (peer.pod.is_empty() && !peer.ip.is_empty() && self.coredns_ips.contains(&peer.ip))
    }
}

/// Why the flow window cannot make anything green, if it cannot.
fn window_too_thin(w: &FlowWindow) -> Option<String> {
    if let Some(e) = &w.ended_early {
        return Some(format!("the flow stream ended after {} of the {} window: {e}", secs(w.elapsed), secs(w.window)));
    }
    if w.seen < MIN_WINDOW_FLOWS {
        return Some(format!(
            "only {} flow(s) in the {} window (at least {MIN_WINDOW_FLOWS} needed to judge)",
            w.seen,
            secs(w.window)
        ));
    }
    if w.not_kept > 0 {
        return Some(format!(
            "{} flow(s) arrived after the first {} and were not evaluated",
            w.not_kept,
            w.facts.len()
        ));
    }
    None
}

pub(crate) fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Greens become unknown (with the reason) when the window is too thin; reds stay red.
fn downgrade_greens(results: &mut [SubResult], why: &Option<String>) {
    if let Some(why) = why {
        for r in results.iter_mut().filter(|r| r.state == State::Green) {
            r.state = State::Unknown;
            r.evidence.insert(0, format!("not judged green: {why}"));
        }
    }
}

/// `REASON ×n, REASON ×m`, most frequent first.
fn reasons_text(reasons: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<(&String, &u64)> = reasons.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    v.iter().map(|(r, n)| format!("{r} ×{n}")).collect::<Vec<_>>().join(", ")
}

fn push_sample(samples: &mut Vec<String>, line: &str) {
    if samples.len() < SAMPLE_LINES {
        samples.push(line.to_string());
    }
}

/// The flow window, or the one unknown result saying why there is none.
fn flows_or_unknown(check: PassiveCheck, obs: &Observation) -> Result<&FlowWindow, CheckResult> {
    match &obs.flows {
        Some(Ok(w)) => Ok(w),
        Some(Err(e)) => Err(cannot(check, State::Unknown, format!("cannot read the flow stream: {e}"), Duration::ZERO)),
        None => Err(cannot(check, State::Unknown, "the flow stream was not read".into(), Duration::ZERO)),
    }
}

/// Nodes that run at least one Running pod on the pod network, with their counts.
fn pod_network_nodes(pods: &[Pod]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in pods.iter().filter(|p| pod_running(p) && !host_network(p)) {
        if let Some(n) = pod_node(p) {
            *m.entry(n.to_string()).or_insert(0) += 1;
        }
    }
    m
}

// ---------------------------------------------------------------------------------------------
// cross-node-flows

#[derive(Debug, Default)]
struct PairTally {
    forwarded: u64,
    drops: BTreeMap<String, u64>,
    policy: u64,
    fwd_samples: Vec<String>,
    drop_samples: Vec<String>,
}

/// Flows between pods on different nodes, per ordered node pair (the packet's source pod's node →
/// its destination pod's node): red when any was dropped for a reason other than policy, green
/// when flows were forwarded and none dropped, unknown when only policy denials were seen. Pairs
/// without traffic in the window are named in the notes, not judged.
pub fn cross_node_flows(obs: &Observation) -> CheckResult {
    let check = PassiveCheck::CrossNodeFlows;
    let w = match flows_or_unknown(check, obs) {
        Ok(w) => w,
        Err(r) => return r,
    };
    if let Err(e) = &obs.pods {
        return cannot(check, State::Unknown, format!("pods are needed to place flows on nodes: {e}"), w.elapsed);
    }
    let place = Placement::new(obs);
    let mut pairs: BTreeMap<(String, String), PairTally> = BTreeMap::new();
    for f in &w.facts {
        let (Some(a), Some(b)) = (place.node_of(&f.src), place.node_of(&f.dst)) else { continue };
        if a == b {
            continue;
        }
        let t = pairs.entry((a.to_string(), b.to_string())).or_default();
        if f.forwarded() {
            t.forwarded += 1;
            push_sample(&mut t.fwd_samples, &f.line);
        } else if f.policy_drop() {
            t.policy += 1;
        } else if f.dropped() {
            *t.drops.entry(f.drop_reason.clone().unwrap_or_default()).or_default() += 1;
            push_sample(&mut t.drop_samples, &f.line);
        }
    }
    let mut results = Vec::new();
    for ((a, b), t) in &pairs {
        let subject = format!("{a} → {b}");
        let dropped: u64 = t.drops.values().sum();
        let policy = (t.policy > 0).then(|| format!("{} policy-denied (not counted: network policy)", t.policy));
        let (state, mut evidence) = if dropped > 0 {
            let mut e = vec![format!("{dropped} dropped ({}), {} forwarded", reasons_text(&t.drops), t.forwarded)];
            e.extend(policy);
            e.extend(t.drop_samples.iter().cloned());
            (State::Red, e)
        } else if t.forwarded > 0 {
            let mut e = vec![format!("{} forwarded, none dropped", t.forwarded)];
            e.extend(policy);
            e.extend(t.fwd_samples.iter().take(1).cloned());
            (State::Green, e)
        } else {
            (State::Unknown, vec![format!("only {} policy-denied flow(s): the path itself was not seen", t.policy)])
        };
        evidence.shrink_to_fit();
        results.push(sub(subject, state, evidence, w.elapsed));
    }
    downgrade_greens(&mut results, &window_too_thin(w));
    let mut notes = vec![format!("{} flow(s) read in {}", w.seen, secs(w.elapsed))];
    let nodes = pod_network_nodes(obs.pods.as_ref().map(|l| l.items.as_slice()).unwrap_or_default());
    let quiet: Vec<String> = nodes
        .keys()
        .flat_map(|a| nodes.keys().filter(move |b| *b != a).map(move |b| (a.clone(), b.clone())))
        .filter(|k| !pairs.contains_key(k))
        .map(|(a, b)| format!("{a} → {b}"))
        .collect();
    if !quiet.is_empty() {
        notes.push(format!("no traffic between pods seen, not judged: {}", quiet.join(", ")));
    }
    if results.is_empty() {
        results.push(sub(
            "cluster",
            State::Unknown,
            vec![format!("no flows between pods on different nodes in the {} window", secs(w.window))],
            w.elapsed,
        ));
    }
    CheckResult::new(check, sorted(results), notes)
}

// ---------------------------------------------------------------------------------------------
// dns-answers

#[derive(Debug, Default)]
struct DnsTally {
    answers: u64,
    answered_pods: BTreeSet<String>,
    error_answers: BTreeMap<String, u64>,
    queries: u64,
    dropped_queries: u64,
    samples: Vec<String>,
    drop_samples: Vec<String>,
}

fn rcode_name(rcode: u32) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE {n}"),
    }
}

/// DNS answers from CoreDNS (kube-system, `k8s-app=kube-dns`) to pods, per node of the receiving
/// pod, for every node with pods on the pod network. A DNS answer is an L7 DNS response from
/// CoreDNS (NOERROR or NXDOMAIN: the server answered) or a forwarded packet from CoreDNS's port 53
/// to a pod. A node with answers is green; with queries but no answer (at least
/// [`MIN_UNANSWERED_QUERIES`], or any dropped) or only error answers (SERVFAIL, REFUSED) red; a
/// node whose pods asked nothing in the window is unknown (a quiet node proves nothing).
pub fn dns_answers(obs: &Observation) -> CheckResult {
    let check = PassiveCheck::DnsAnswers;
    let w = match flows_or_unknown(check, obs) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let pods = match &obs.pods {
        Ok(l) => &l.items,
        Err(e) => return cannot(check, State::Unknown, e.clone(), w.elapsed),
    };
    let coredns: Vec<&Pod> = pods.iter().filter(|p| is_coredns_pod(p)).collect();
    if coredns.is_empty() {
        return cannot(
            check,
            State::Red,
            format!("no CoreDNS pod ({DNS_NAMESPACE}, {}={}) in the pod list", DNS_LABEL.0, DNS_LABEL.1),
            w.elapsed,
        );
    }
    let place = Placement::new(obs);
    let is_dns_service = |f: &FlowFact| f.dst_service.as_deref() == Some("kube-system/kube-dns");
    let mut tally: BTreeMap<String, DnsTally> = BTreeMap::new();
    for f in &w.facts {
        // An answer: from CoreDNS to a pod.
        if place.is_coredns(&f.src)
            && let Some(node) = place.node_of(&f.dst)
        {
            let t = tally.entry(node.to_string()).or_default();
            match &f.dns {
                Some(d) if d.response && f.forwarded() => {
                    if d.rcode == 0 || d.rcode == 3 {
                        t.answers += 1;
                        t.answered_pods.insert(format!("{}/{}", f.dst.namespace, f.dst.pod));
                        push_sample(&mut t.samples, &f.line);
                    } else {
                        *t.error_answers.entry(rcode_name(d.rcode)).or_default() += 1;
                        push_sample(&mut t.drop_samples, &f.line);
                    }
                }
                None if f.forwarded() && f.src_port == Some(53) => {
                    t.answers += 1;
                    t.answered_pods.insert(format!("{}/{}", f.dst.namespace, f.dst.pod));
                    push_sample(&mut t.samples, &f.line);
                }
                _ => {}
            }
            continue;
        }
        // A query: from a pod to CoreDNS (or the kube-dns Service) on port 53.
        let to_dns = place.is_coredns(&f.dst) || is_dns_service(f);
        let query_port = f.dst_port == Some(53) || f.dns.as_ref().is_some_and(|d| !d.response);
        if to_dns
            && query_port
            && let Some(node) = place.node_of(&f.src)
        {
            let t = tally.entry(node.to_string()).or_default();
            if f.dropped() {
                t.dropped_queries += 1;
                push_sample(&mut t.drop_samples, &f.line);
            } else if f.dns.is_none() || f.dns.as_ref().is_some_and(|d| !d.response) {
                t.queries += 1;
            }
        }
    }
    let subjects: BTreeSet<String> = pod_network_nodes(pods).into_keys().chain(tally.keys().cloned()).collect();
    let mut results = Vec::new();
    for node in subjects {
        let t = tally.remove(&node).unwrap_or_default();
        let errors: u64 = t.error_answers.values().sum();
        let (state, mut evidence) = if t.answers > 0 {
            let mut e =
                vec![format!("{} answer(s) from CoreDNS to {} pod(s) on this node", t.answers, t.answered_pods.len())];
            if errors > 0 {
                e.push(format!("also {errors} error answer(s): {}", reasons_text(&t.error_answers)));
            }
            if t.dropped_queries > 0 {
                e.push(format!("also {} dropped query packet(s)", t.dropped_queries));
            }
            e.extend(t.samples.iter().take(1).cloned());
            (State::Green, e)
        } else if errors > 0 {
            (State::Red, vec![format!("only error answers from CoreDNS: {}", reasons_text(&t.error_answers))])
        } else if t.dropped_queries > 0 {
            (State::Red, vec![format!("{} DNS query packet(s) dropped, no answer from CoreDNS", t.dropped_queries)])
        } else if t.queries >= MIN_UNANSWERED_QUERIES {
            (
                State::Red,
                vec![format!(
                    "{} DNS query packet(s) to CoreDNS, no answer in the {} window",
                    t.queries,
                    secs(w.window)
                )],
            )
        } else if t.queries > 0 {
            (State::Unknown, vec![format!("{} DNS query packet(s), no answer yet: too few to judge", t.queries)])
        } else {
            (State::Unknown, vec![format!("no DNS traffic from pods on this node in the {} window", secs(w.window))])
        };
        if state == State::Red {
            evidence.extend(t.drop_samples.iter().cloned());
        }
        results.push(sub(node, state, evidence, w.elapsed));
    }
    downgrade_greens(&mut results, &window_too_thin(w));
    let notes = vec![format!("CoreDNS pods: {}", coredns.iter().map(|p| pod_key(p).1).collect::<Vec<_>>().join(", "))];
    CheckResult::new(check, sorted(results), notes)
}

// ---------------------------------------------------------------------------------------------
// drops

#[derive(Debug, Default)]
struct NodeTally {
    flows: u64,
    drops: BTreeMap<String, u64>,
    policy: BTreeMap<String, u64>,
    samples: Vec<String>,
}

/// Drops per observing node: red when any flow was DROPPED for a reason other than
/// `POLICY_DENIED`/`POLICY_DENY` (reasons with counts and sample lines), green when the node
/// produced at least [`MIN_NODE_FLOWS`] flows and no such drop, unknown otherwise (no flows from
/// it, the relay reports it unavailable).
pub fn drops(obs: &Observation) -> CheckResult {
    let check = PassiveCheck::Drops;
    let w = match flows_or_unknown(check, obs) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let mut tally: BTreeMap<String, NodeTally> = BTreeMap::new();
    for f in &w.facts {
        let t = tally.entry(f.node.clone()).or_default();
        t.flows += 1;
        if f.policy_drop() {
            *t.policy.entry(f.drop_reason.clone().unwrap_or_default()).or_default() += 1;
        } else if f.dropped() {
            *t.drops.entry(f.drop_reason.clone().unwrap_or_default()).or_default() += 1;
            push_sample(&mut t.samples, &f.line);
        }
    }
    let mut notes = Vec::new();
    let listed: Vec<String> = match &obs.nodes {
        Ok(l) => l.items.iter().filter_map(|n| n.metadata.name.clone()).collect(),
        Err(e) => {
            notes.push(format!("{e}: only nodes seen in the flows are judged"));
            Vec::new()
        }
    };
    if w.lost_events > 0 {
        notes.push(format!("{} event(s) reported lost in the window (not seen, not judged)", w.lost_events));
    }
    let subjects: BTreeSet<String> = listed.into_iter().chain(tally.keys().cloned()).collect();
    let mut results = Vec::new();
    for node in subjects {
        let t = tally.remove(&node).unwrap_or_default();
        let dropped: u64 = t.drops.values().sum();
        let policy =
            (!t.policy.is_empty()).then(|| format!("not counted (network policy): {}", reasons_text(&t.policy)));
        let (state, mut evidence) = if dropped > 0 {
            let mut e = vec![format!("{dropped} drop(s) of {} flow(s): {}", t.flows, reasons_text(&t.drops))];
            e.extend(policy);
            e.extend(t.samples.iter().cloned());
            (State::Red, e)
        } else if w.unavailable_nodes.contains(&node) {
            (State::Unknown, vec!["hubble-relay reports this node unavailable: its flows are not seen".to_string()])
        } else if t.flows >= MIN_NODE_FLOWS {
            let mut e = vec![format!("{} flow(s), no drops other than policy denials", t.flows)];
            e.extend(policy);
            (State::Green, e)
        } else if t.flows > 0 {
            (
                State::Unknown,
                vec![format!("only {} flow(s) from this node (at least {MIN_NODE_FLOWS} needed)", t.flows)],
            )
        } else {
            (State::Unknown, vec![format!("no flows from this node in the {} window", secs(w.window))])
        };
        evidence.shrink_to_fit();
        results.push(sub(node, state, evidence, w.elapsed));
    }
    downgrade_greens(&mut results, &window_too_thin(w));
    if results.is_empty() {
        results.push(sub("cluster", State::Unknown, vec!["no nodes listed and no flows seen".into()], w.elapsed));
    }
    CheckResult::new(check, sorted(results), notes)
}

// ---------------------------------------------------------------------------------------------
// longhorn-csi

/// Why a pod is not Ready, from its Ready condition and container states.
fn not_ready_text(p: &Pod) -> String {
    let st = p.status.as_ref();
    let phase = st.and_then(|s| s.phase.clone()).unwrap_or_else(|| "unknown phase".into());
    let mut parts = vec![format!("phase {phase}")];
    if let Some(c) = st.and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready")) {
        let mut t = format!("Ready={}", c.status);
        if let Some(r) = c.reason.as_deref().filter(|r| !r.is_empty()) {
            t.push_str(&format!(" ({r})"));
        }
        parts.push(t);
    }
    for cs in st.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten() {
        if let Some(wt) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            parts.push(format!("{}: {}", cs.name, wt.reason.clone().unwrap_or_else(|| "waiting".into())));
        }
    }
    if p.metadata.deletion_timestamp.is_some() {
        parts.push("terminating".into());
    }
    parts.join(", ")
}

fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn containers_ready(p: &Pod) -> String {
    let cs = p.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    let total = cs.map_or(0, Vec::len);
    let ready = cs.map_or(0, |v| v.iter().filter(|c| c.ready).count());
    format!("{ready}/{total} containers ready")
}

/// Longhorn's CSI plugin (DaemonSet pods `app=longhorn-csi-plugin` in longhorn-system): a Ready
/// pod on every node, else red naming the node and why.
pub fn longhorn_csi(obs: &Observation) -> CheckResult {
    let check = PassiveCheck::LonghornCsi;
    let pods = match &obs.pods {
        Ok(l) => l,
        Err(e) => return cannot(check, State::Unknown, e.clone(), Duration::ZERO),
    };
    let nodes = match &obs.nodes {
        Ok(l) => l,
        Err(e) => return cannot(check, State::Unknown, e.clone(), pods.took),
    };
    let took = pods.took.max(nodes.took);
    let csi: Vec<&Pod> = pods
        .items
        .iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(LONGHORN_NAMESPACE)
                && labels_match(p.metadata.labels.as_ref(), LONGHORN_CSI_LABEL)
        })
        .collect();
    let mut notes = Vec::new();
    if csi.is_empty() {
        notes.push(format!(
            "no pod labelled {}={} in {LONGHORN_NAMESPACE}: is Longhorn installed, its driver deployer running?",
            LONGHORN_CSI_LABEL.0, LONGHORN_CSI_LABEL.1
        ));
    }
    let mut results = Vec::new();
    for node in nodes.items.iter().filter_map(|n| n.metadata.name.as_deref()) {
        let here: Vec<&&Pod> = csi.iter().filter(|p| pod_node(p) == Some(node)).collect();
        let (state, evidence) = if let Some(p) = here.iter().find(|p| pod_ready(p)) {
            (State::Green, vec![format!("{}/{} Ready ({})", LONGHORN_NAMESPACE, pod_key(p).1, containers_ready(p))])
        } else if here.is_empty() {
            (State::Red, vec!["no longhorn-csi-plugin pod on this node".to_string()])
        } else {
            (
                State::Red,
                here.iter()
                    .map(|p| format!("{}/{} not Ready: {}", LONGHORN_NAMESPACE, pod_key(p).1, not_ready_text(p)))
                    .collect(),
            )
        };
        results.push(sub(node, state, evidence, took));
    }
    if results.is_empty() {
        results.push(sub("cluster", State::Unknown, vec!["the node list is empty".into()], took));
    }
    CheckResult::new(check, sorted(results), notes)
}

// ---------------------------------------------------------------------------------------------
// loadbalancer-ip

/// The IPs MetalLB is asked for: `metallb.universe.tf/loadBalancerIPs` or
/// `metallb.io/loadBalancerIPs` (comma-separated), else `spec.loadBalancerIP`.
fn requested_ips(s: &Service) -> Option<(Vec<String>, &'static str)> {
    let ann = s.metadata.annotations.as_ref();
    for key in ["metallb.universe.tf/loadBalancerIPs", "metallb.io/loadBalancerIPs"] {
        if let Some(v) = ann.and_then(|a| a.get(key)) {
            let ips: Vec<String> = v.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect();
            if !ips.is_empty() {
                return Some((ips, key));
            }
        }
    }
    s.spec
        .as_ref()
        .and_then(|sp| sp.load_balancer_ip.clone())
        .filter(|ip| !ip.is_empty())
        .map(|ip| (vec![ip], "spec.loadBalancerIP"))
}

/// Every Service of type LoadBalancer (the HAProxy ingress's) has an address in
/// `status.loadBalancer.ingress` — the one it asked MetalLB for, when it asked for one.
pub fn loadbalancer_ip(obs: &Observation) -> CheckResult {
    let check = PassiveCheck::LoadBalancerIp;
    let services = match &obs.services {
        Ok(l) => l,
        Err(e) => return cannot(check, State::Unknown, e.clone(), Duration::ZERO),
    };
    let lbs: Vec<&Service> = services
        .items
        .iter()
        .filter(|s| s.spec.as_ref().and_then(|sp| sp.type_.as_deref()) == Some("LoadBalancer"))
        .collect();
    if lbs.is_empty() {
        return cannot(
            check,
            State::Red,
            "no Service of type LoadBalancer (the HAProxy ingress's Service should be one)".into(),
            services.took,
        );
    }
    let mut results = Vec::new();
    for s in lbs {
        let subject = format!(
            "{}/{}",
            s.metadata.namespace.as_deref().unwrap_or_default(),
            s.metadata.name.as_deref().unwrap_or_default()
        );
        let have: Vec<String> = s
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
            .filter(|a| !a.is_empty())
            .collect();
        let requested = requested_ips(s);
        let asked = requested.as_ref().map(|(ips, key)| format!("requested {} ({key})", ips.join(", ")));
        let missing: Vec<String> = requested
            .as_ref()
            .map(|(want, _)| want.iter().filter(|ip| !have.contains(ip)).cloned().collect())
            .unwrap_or_default();
        let (state, mut evidence) = if have.is_empty() {
            let why = "status.loadBalancer.ingress is empty: MetalLB has not assigned (or has withdrawn) its IP";
            (State::Red, vec![why.to_string()])
        } else if !missing.is_empty() {
            (State::Red, vec![format!("has {}, not the requested {}", have.join(", "), missing.join(", "))])
        } else {
            (State::Green, vec![format!("status.loadBalancer.ingress: {}", have.join(", "))])
        };
        evidence.extend(asked);
        let ports: Vec<String> = s
            .spec
            .as_ref()
            .and_then(|sp| sp.ports.as_ref())
            .into_iter()
            .flatten()
            .map(|p| match p.node_port {
                Some(np) => format!("{}/{} (nodePort {np})", p.port, p.protocol.as_deref().unwrap_or("TCP")),
                None => format!("{}/{}", p.port, p.protocol.as_deref().unwrap_or("TCP")),
            })
            .collect();
        if !ports.is_empty() {
            evidence.push(format!("ports {}", ports.join(", ")));
        }
        results.push(sub(subject, state, evidence, services.took));
    }
    CheckResult::new(check, sorted(results), vec![])
}

#[cfg(test)]
mod tests;
