//! The soak after a node's uncordon: the live Hubble flow stream from the relay (the one the
//! `validate` step reads), counted for the flows to and from the node — observed by it, or with
//! one of its pod IPs or its InternalIP on either side — for `[runbook] soak`. It stops the
//! runbook on any drop other than policy-denied, or when policy-denied drops exceed
//! `[runbook] soak_max_drops_per_minute`. Unknown is never green: no relay, a relay that cannot
//! be reached or ends the stream, a relay that reports the node unavailable, or fewer than
//! [`MIN_FLOWS`] flows involving the node make the soak *unknown*, which stops the runbook too.
//!
//! [`judge`] is pure (the figures in, the verdict out); [`soak`] reads the stream.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::executor::Progress;
use super::node_work::{NodePhase, NodeWork};
use crate::hubble::client::{self, RelayTarget};
use crate::hubble::format::strip_cluster_prefix;
use crate::hubble::proto::observer::{GetFlowsRequest, get_flows_response::ResponseTypes};
use crate::hubble::proto::relay::NodeState;
use crate::validate::observe::{FlowFact, is_policy_reason};

/// Fewer flows involving the node than this over the whole soak: too few to judge (unknown).
pub const MIN_FLOWS: u64 = 10;
/// How often the soak says where it is (and re-reads the node's pod IPs).
const TICK: Duration = Duration::from_secs(10);
/// How long connecting to the relay (and starting the stream) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// What the soak is asked to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoakLimits {
    pub duration: Duration,
    /// Policy-denied drops per minute of soak allowed (more stop the runbook).
    pub max_policy_drops_per_minute: u32,
}

impl SoakLimits {
    pub fn from_settings(s: &crate::settings::RunbookSettings) -> SoakLimits {
        SoakLimits { duration: s.soak(), max_policy_drops_per_minute: s.soak_max_drops_per_minute }
    }

    /// Policy-denied drops allowed over `elapsed` (at least the rate's share of one minute,
    /// rounded down, so a short soak allows proportionally fewer).
    fn policy_allowance(&self, elapsed: Duration) -> u64 {
        (f64::from(self.max_policy_drops_per_minute) * elapsed.as_secs_f64() / 60.0).floor() as u64
    }

    /// The allowance over the whole soak (what the early stop compares against).
    fn policy_allowance_total(&self) -> u64 {
        self.policy_allowance(self.duration)
    }
}

/// What the soak counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoakFigures {
    /// Flows received from the relay (all nodes).
    pub received: u64,
    /// Flows to or from the node.
    pub flows: u64,
    pub forwarded: u64,
    /// Dropped flows to or from the node, by drop reason.
    pub dropped: BTreeMap<String, u64>,
    /// Events the relay or the agents reported lost.
    pub lost_events: u64,
    pub elapsed: Duration,
    /// Up to three example lines of drops other than policy-denied (`cutover flows` format).
    pub examples: Vec<String>,
}

impl SoakFigures {
    pub fn drops(&self) -> u64 {
        self.dropped.values().sum()
    }

    pub fn policy_drops(&self) -> u64 {
        self.dropped.iter().filter(|(r, _)| is_policy_reason(r)).map(|(_, n)| n).sum()
    }

    pub fn other_drops(&self) -> u64 {
        self.drops() - self.policy_drops()
    }

    fn reasons(&self) -> String {
        if self.dropped.is_empty() {
            return "no drops".into();
        }
        self.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", ")
    }

    /// One line for the journal and the messages.
    pub fn summary(&self) -> String {
        format!(
            "{} flows to/from the node in {} ({} forwarded, {} dropped: {}){}",
            self.flows,
            mmss(self.elapsed),
            self.forwarded,
            self.drops(),
            self.reasons(),
            if self.lost_events > 0 {
                format!(", {} events lost on the relay", self.lost_events)
            } else {
                String::new()
            }
        )
    }
}

/// How the soak ended when it did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoakStop {
    /// Drops beyond the limits: the node's datapath is losing traffic.
    Drops { why: String, figures: SoakFigures },
    /// Nothing can be said: no relay, the relay went away, the node unavailable, too few flows.
    Unknown { why: String, figures: SoakFigures },
    /// `x`: stopped by the operator.
    Cancelled { figures: SoakFigures },
}

impl SoakStop {
    pub fn figures(&self) -> &SoakFigures {
        match self {
            SoakStop::Drops { figures, .. } | SoakStop::Unknown { figures, .. } | SoakStop::Cancelled { figures } => {
                figures
            }
        }
    }
}

/// The verdict on drops alone (while the soak runs and at its end).
fn judge_drops(f: &SoakFigures, limits: &SoakLimits) -> Option<String> {
    if f.other_drops() > 0 {
        return Some(format!("{} drop(s) other than policy-denied", f.other_drops()));
    }
    if f.policy_drops() > limits.policy_allowance_total() {
        return Some(format!(
            "{} policy-denied drops, more than [runbook] soak_max_drops_per_minute = {} allows over {} ({})",
            f.policy_drops(),
            limits.max_policy_drops_per_minute,
            mmss(limits.duration),
            limits.policy_allowance_total()
        ));
    }
    None
}

/// The verdict at the end of a soak that ran its full time.
pub fn judge(f: &SoakFigures, limits: &SoakLimits) -> Result<(), SoakStop> {
    if let Some(why) = judge_drops(f, limits) {
        return Err(SoakStop::Drops { why, figures: f.clone() });
    }
    if f.flows < MIN_FLOWS {
        return Err(SoakStop::Unknown {
            why: format!(
                "only {} flow(s) to or from the node in {} (at least {MIN_FLOWS} are needed to judge): is Hubble observing it (`cutover flows --node-name NODE -f`), does anything run there?",
                f.flows,
                mmss(f.elapsed)
            ),
            figures: f.clone(),
        });
    }
    Ok(())
}

/// `1:05`.
pub fn mmss(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

/// The IPs that belong to the node: its InternalIP and its pods' IPs (not hostNetwork ones,
/// which are the node's own).
async fn node_ips(read: &kube::Client, node: &str) -> Result<BTreeSet<String>, String> {
    let mut ips = BTreeSet::new();
    let n = Api::<Node>::all(read.clone()).get(node).await.map_err(|e| format!("cannot read node {node}: {e}"))?;
    for a in n.status.and_then(|s| s.addresses).unwrap_or_default() {
        if a.type_ == "InternalIP" {
            ips.insert(a.address);
        }
    }
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let pods =
        Api::<Pod>::all(read.clone()).list(&lp).await.map_err(|e| format!("cannot list the pods on {node}: {e}"))?;
    for p in pods.items {
        if p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) {
            continue;
        }
        if let Some(ip) = p.status.and_then(|s| s.pod_ip).filter(|ip| !ip.is_empty()) {
            ips.insert(ip);
        }
    }
    Ok(ips)
}

/// Whether a flow is to or from the node.
fn involves(f: &FlowFact, node: &str, ips: &BTreeSet<String>) -> bool {
    f.node == node || ips.contains(&f.src.ip) || ips.contains(&f.dst.ip)
}

/// Counts one flow to or from the node.
fn count(fig: &mut SoakFigures, f: &FlowFact) {
    fig.flows += 1;
    if f.forwarded() {
        fig.forwarded += 1;
    } else if f.dropped() {
        let reason = f.drop_reason.clone().unwrap_or_else(|| "DROP_REASON_UNKNOWN".into());
        if !is_policy_reason(&reason) && fig.examples.len() < 3 {
            fig.examples.push(f.line.clone());
        }
        *fig.dropped.entry(reason).or_default() += 1;
    }
}

/// Reads the flow stream for `limits.duration` and judges it. Progress every ~10 s, the
/// node's phase on the cockpit's Nodes pane.
pub async fn soak(
    relay: Option<&RelayTarget>,
    read: &kube::Client,
    node: &str,
    limits: &SoakLimits,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<SoakFigures, SoakStop> {
    let mut fig = SoakFigures::default();
    let unknown = |why: String, fig: &SoakFigures| SoakStop::Unknown { why, figures: fig.clone() };
    let Some(relay) = relay else {
        return Err(unknown(
            "no Hubble relay is configured for the runbook: give --hubble-server HOST:PORT, or let it port-forward to hubble-relay in [cilium] namespace".into(),
            &fig,
        ));
    };
    let label = relay.describe();
    let look = format!("check that hubble-relay answers (`cutover flows --hubble-server {label} --node-name {node}`)");
    let channel = tokio::select! {
        () = cancel.cancelled() => return Err(SoakStop::Cancelled { figures: fig }),
        c = tokio::time::timeout(CONNECT_TIMEOUT, relay.connect()) => match c {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(unknown(format!("the relay is unreachable: {e}; {look}"), &fig)),
            Err(_) => return Err(unknown(format!("no connection to hubble-relay at {label} within {}s; {look}", CONNECT_TIMEOUT.as_secs()), &fig)),
        },
    };
    let req = GetFlowsRequest { number: 0, follow: true, ..Default::default() };
    let mut stream = tokio::select! {
        () = cancel.cancelled() => return Err(SoakStop::Cancelled { figures: fig }),
        s = tokio::time::timeout(CONNECT_TIMEOUT, client::get_flows(&channel, &label, req)) => match s {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(unknown(format!("the relay gives no flow stream: {e}; {look}"), &fig)),
            Err(_) => return Err(unknown(format!("no flow stream from hubble-relay at {label} within {}s; {look}", CONNECT_TIMEOUT.as_secs()), &fig)),
        },
    };
    let mut ips = node_ips(read, node).await.map_err(|e| unknown(e, &fig))?;
    let start = Instant::now();
    let deadline = start + limits.duration;
    let mut next_tick = start + TICK;
    let mut unavailable = false;
    let say = |fig: &SoakFigures| {
        let total = mmss(limits.duration);
        progress.say(format!(
            "{node}: soaking {} of {total}, {} flows, {} drops",
            mmss(fig.elapsed),
            fig.flows,
            fig.drops()
        ));
        progress.work(Some(NodeWork {
            node: node.to_string(),
            phase: NodePhase::Soaking {
                elapsed: fig.elapsed,
                total: limits.duration,
                flows: fig.flows,
                drops: fig.drops(),
            },
        }));
    };
    say(&fig);
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => {
                fig.elapsed = start.elapsed();
                return Err(SoakStop::Cancelled { figures: fig });
            }
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tokio::time::sleep_until(next_tick) => {
                fig.elapsed = start.elapsed();
                say(&fig);
                next_tick += TICK;
                if let Ok(now) = node_ips(read, node).await {
                    ips = now;
                }
                continue;
            }
            m = stream.message() => m,
        };
        match next {
            Ok(Some(resp)) => match resp.response_types {
                Some(ResponseTypes::Flow(f)) => {
                    fig.received += 1;
                    let fact = FlowFact::from_flow(&f);
                    // The relay picks a node that comes back up silently: its flows say so.
                    if fact.node == node {
                        unavailable = false;
                    }
                    if involves(&fact, node, &ips) {
                        count(&mut fig, &fact);
                        if fact.dropped()
                            && let Some(why) = judge_drops(&fig, limits)
                        {
                            fig.elapsed = start.elapsed();
                            return Err(SoakStop::Drops { why, figures: fig });
                        }
                    }
                }
                Some(ResponseTypes::NodeStatus(ns)) => {
                    let here = ns.node_names.iter().any(|n| strip_cluster_prefix(n) == node);
                    match NodeState::try_from(ns.state_change) {
                        Ok(NodeState::NodeUnavailable | NodeState::NodeError | NodeState::NodeGone) if here => {
                            unavailable = true;
                        }
                        Ok(NodeState::NodeConnected) if here => unavailable = false,
                        _ => {}
                    }
                }
                Some(ResponseTypes::LostEvents(l)) => {
                    fig.lost_events = fig.lost_events.saturating_add(l.num_events_lost)
                }
                None => {}
            },
            Ok(None) => {
                fig.elapsed = start.elapsed();
                return Err(unknown(
                    format!("hubble-relay at {label} ended the flow stream after {}; {look}", mmss(fig.elapsed)),
                    &fig,
                ));
            }
            Err(e) => {
                fig.elapsed = start.elapsed();
                return Err(unknown(format!("the flow stream broke after {}: {e}; {look}", mmss(fig.elapsed)), &fig));
            }
        }
    }
    fig.elapsed = limits.duration;
    say(&fig);
    if unavailable {
        return Err(unknown(
            format!(
                "the relay reports {node} unavailable and no flow observed by it came since (its Hubble does not answer): is the cilium agent on it Running? `cutover flows --node-name {node}`"
            ),
            &fig,
        ));
    }
    judge(&fig, limits).map(|()| fig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::observe::Peer;

    fn limits(secs: u64, per_min: u32) -> SoakLimits {
        SoakLimits { duration: Duration::from_secs(secs), max_policy_drops_per_minute: per_min }
    }

    fn fact(node: &str, verdict: i32, reason: Option<&str>, src: &str, dst: &str) -> FlowFact {
        FlowFact {
            node: node.into(),
            verdict,
            drop_reason: reason.map(str::to_string),
            src: Peer { ip: src.into(), ..Default::default() },
            dst: Peer { ip: dst.into(), ..Default::default() },
            src_port: None,
            dst_port: None,
            dns: None,
            dst_service: None,
            line: format!("{src} -> {dst}"),
        }
    }

    const FWD: i32 = crate::hubble::proto::flow::Verdict::Forwarded as i32;
    const DROP: i32 = crate::hubble::proto::flow::Verdict::Dropped as i32;

    #[test]
    fn flows_count_when_observed_by_the_node_or_with_one_of_its_ips() {
        let ips: BTreeSet<String> = ["10.42.1.5".to_string()].into();
        assert!(involves(&fact("w1", FWD, None, "1.1.1.1", "2.2.2.2"), "w1", &ips));
        assert!(involves(&fact("w2", FWD, None, "10.42.2.9", "10.42.1.5"), "w1", &ips));
        assert!(!involves(&fact("w2", FWD, None, "10.42.2.9", "10.42.3.1"), "w1", &ips));
    }

    #[test]
    fn any_drop_other_than_policy_stops_and_policy_drops_only_above_the_rate() {
        let mut f = SoakFigures { elapsed: Duration::from_secs(120), ..Default::default() };
        for _ in 0..50 {
            count(&mut f, &fact("w1", FWD, None, "a", "b"));
        }
        assert_eq!(judge(&f, &limits(120, 5)), Ok(()));
        // 10 policy drops in 2 minutes at 5/min: allowed; the 11th is not.
        for _ in 0..10 {
            count(&mut f, &fact("w1", DROP, Some("POLICY_DENIED"), "a", "b"));
        }
        assert_eq!(judge(&f, &limits(120, 5)), Ok(()));
        count(&mut f, &fact("w1", DROP, Some("POLICY_DENY"), "a", "b"));
        let Err(SoakStop::Drops { why, .. }) = judge(&f, &limits(120, 5)) else { panic!("stops") };
        assert!(why.contains("11 policy-denied") && why.contains("soak_max_drops_per_minute = 5"), "{why}");
        // One drop of another reason stops whatever the rate.
        let mut g = SoakFigures { elapsed: Duration::from_secs(120), ..Default::default() };
        for _ in 0..50 {
            count(&mut g, &fact("w1", FWD, None, "a", "b"));
        }
        count(&mut g, &fact("w1", DROP, Some("STALE_OR_UNROUTABLE_IP"), "a", "b"));
        let Err(SoakStop::Drops { why, figures }) = judge(&g, &limits(120, 1000)) else { panic!("stops") };
        assert!(why.contains("1 drop(s) other than policy-denied"), "{why}");
        assert!(figures.summary().contains("STALE_OR_UNROUTABLE_IP 1"), "{}", figures.summary());
        assert_eq!(figures.examples, ["a -> b"]);
    }

    #[test]
    fn too_few_flows_is_unknown_never_green() {
        let mut f = SoakFigures { elapsed: Duration::from_secs(120), ..Default::default() };
        for _ in 0..MIN_FLOWS - 1 {
            count(&mut f, &fact("w1", FWD, None, "a", "b"));
        }
        let Err(SoakStop::Unknown { why, .. }) = judge(&f, &limits(120, 5)) else { panic!("unknown") };
        assert!(why.contains(&format!("only {} flow(s)", MIN_FLOWS - 1)), "{why}");
        count(&mut f, &fact("w1", FWD, None, "a", "b"));
        assert_eq!(judge(&f, &limits(120, 5)), Ok(()));
    }

    #[test]
    fn the_summary_names_every_figure() {
        let mut f = SoakFigures { elapsed: Duration::from_secs(80), lost_events: 3, ..Default::default() };
        count(&mut f, &fact("w1", FWD, None, "a", "b"));
        count(&mut f, &fact("w1", DROP, Some("POLICY_DENIED"), "a", "b"));
        assert_eq!(
            f.summary(),
            "2 flows to/from the node in 1:20 (1 forwarded, 1 dropped: POLICY_DENIED 1), 3 events lost on the relay"
        );
    }
}
