//! Where each node really is in the flannel → Cilium switch, from evidence on that node.
//!
//! The k3s network flags are server flags, but they take effect per node and only when k3s starts
//! there: a server runs with what its own `k3s.io/node-args` say (k3s writes them at every start
//! whose args changed), an agent with what its server told it at the agent's last start (an
//! agent's node-args never carry these flags). And pods keep the network they were created with
//! until they are re-created. So "the servers say `flannel-backend: none`" is not "this node has
//! switched", and the cockpit must never show it as such.
//!
//! Per node the evidence is:
//! - the k3s process: for a server its own node-args; for an agent, whether its k3s started
//!   after the servers' last start (the kubelet's `Starting` Event, else the Ready condition's
//!   last transition: a restart goes through NotReady);
//! - the pods: how many of its pods (not hostNetwork) have a CiliumEndpoint, as `cilium status`
//!   counts "managing x/y pods". A pod with an address and no CiliumEndpoint got that address
//!   from flannel's host-local: it must be re-created. (With `ipam.mode: kubernetes`, as the plan
//!   has it, Cilium allocates from the same node /24, so an address alone cannot tell old from
//!   new; the endpoint can.)
//!
//! Missing data stays unknown: a source that is not listed yet or failing makes the node
//! [`NodeMigration::Unknown`], never done.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::model::{EndpointSummary, K3sArgs, NodeStartEvent, NodeSummary, PodSummary};

/// One node's state in the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMigration {
    /// The evidence needed is missing (why).
    Unknown(String),
    /// Embedded flannel (and the network-policy controller) still run on this node.
    /// `awaiting_restart`: the servers have switched, this node's k3s has not started since.
    Flannel { awaiting_restart: bool },
    /// k3s started with the new flags and the node is not Ready yet.
    Restarting,
    /// k3s runs without flannel; some pods are not managed by Cilium yet. `old_ip_pods` of them
    /// hold an address from flannel (they keep it until re-created).
    SwitchedPodsPending { managed: usize, total: usize, old_ip_pods: usize },
    /// k3s runs without flannel and every pod on the node has a CiliumEndpoint.
    Switched,
}

impl NodeMigration {
    pub fn is_switched(&self) -> bool {
        matches!(self, NodeMigration::Switched)
    }

    /// The Nodes pane's CNI cell.
    pub fn cell(&self) -> String {
        match self {
            NodeMigration::Unknown(_) => "?".into(),
            NodeMigration::Flannel { awaiting_restart: false } => "flannel".into(),
            NodeMigration::Flannel { awaiting_restart: true } => "restart?".into(),
            NodeMigration::Restarting => "starting".into(),
            NodeMigration::SwitchedPodsPending { managed, total, .. } => format!("{managed}/{total}"),
            NodeMigration::Switched => "cilium".into(),
        }
    }
}

/// A node's state with what it rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVerdict {
    pub node: String,
    pub state: NodeMigration,
    /// Short, for the header's pending list: `3/7 pods managed`.
    pub reason: String,
    /// The evidence in full, for `cutover status`.
    pub evidence: String,
}

/// How far a source can be trusted right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// Listed and watching.
    Live,
    /// The resource is not served (CRD not installed): there are none.
    Absent,
    /// Not listed yet.
    Waiting,
    /// Failing (why); what is held is the last known state.
    Failing(String),
}

/// Everything the derivation reads (borrowed from the state, or built by a test).
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub nodes: &'a BTreeMap<String, NodeSummary>,
    pub nodes_known: Known,
    pub pods: &'a BTreeMap<String, PodSummary>,
    pub pods_known: Known,
    pub endpoints: &'a BTreeMap<String, EndpointSummary>,
    pub endpoints_known: Known,
    pub starts: &'a BTreeMap<String, NodeStartEvent>,
    pub starts_known: Known,
}

/// A node's pods that need a CNI: with a CiliumEndpoint, all, and holding a flannel address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PodCounts {
    managed: usize,
    total: usize,
    old_ip: usize,
}

/// When k3s last started on a node, and from what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub at: Timestamp,
    /// True: the kubelet's `Starting` Event; false: the Ready condition's last transition.
    pub from_event: bool,
}

impl Started {
    fn describe(&self) -> String {
        if self.from_event {
            format!("{} (kubelet Starting event)", hms(self.at))
        } else {
            format!("{} (Ready since; no Starting event left)", hms(self.at))
        }
    }
}

/// `12:01:07` (UTC, as the header clock).
pub fn hms(t: Timestamp) -> String {
    t.strftime("%H:%M:%S").to_string()
}

fn stage1_flags(a: &K3sArgs) -> bool {
    !a.flannel_enabled() && a.disable_network_policy
}

fn flags_text(a: &K3sArgs) -> String {
    format!(
        "flannel-backend {}, network policy {}",
        a.flannel_backend.as_deref().unwrap_or("vxlan (default)"),
        if a.disable_network_policy { "off" } else { "on" }
    )
}

impl Inputs<'_> {
    /// When k3s last started on `node`: its latest kubelet `Starting` Event, else (events expire
    /// after an hour, or cannot be read) the Ready condition's last transition.
    pub fn last_start(&self, node: &NodeSummary) -> Result<Started, String> {
        let note = match &self.starts_known {
            Known::Waiting => return Err("node events not listed yet".into()),
            Known::Live => None,
            Known::Absent => Some("node events not served".to_string()),
            Known::Failing(why) => Some(format!("node events not readable: {why}")),
        };
        if note.is_none()
            && let Some(at) =
                self.starts.values().filter(|e| e.node == node.name && e.is_kubelet()).filter_map(|e| e.at).max()
        {
            return Ok(Started { at, from_event: true });
        }
        match node.ready_since {
            Some(at) => Ok(Started { at, from_event: false }),
            None => Err(match note {
                Some(n) => format!("no restart evidence ({n}; no Ready transition time)"),
                None => "no restart evidence (no Starting event, no Ready transition time)".into(),
            }),
        }
    }

    fn servers(&self) -> Vec<&NodeSummary> {
        self.nodes.values().filter(|n| n.server).collect()
    }

    /// The servers' latest k3s start: an agent that started after it got its flags from a server
    /// that already had the current ones. (The latest of any start is used, not the one that
    /// changed the flags, which the API does not record: a later unrelated server restart makes
    /// agents look pending — the safe side.)
    fn servers_started(&self) -> Result<Started, String> {
        let servers = self.servers();
        if servers.is_empty() {
            return Err("no server node in the node list".into());
        }
        let mut latest: Option<Started> = None;
        for s in servers {
            let st = self.last_start(s).map_err(|e| format!("server {}: {e}", s.name))?;
            if latest.is_none_or(|l| st.at > l.at) {
                latest = Some(st);
            }
        }
        latest.ok_or_else(|| "no server node in the node list".into())
    }

    /// Whether `node` runs with the servers' current flags: a server always does (its node-args
    /// are its own); an agent only if its k3s started after the servers' last start. `None`: no
    /// evidence either way. This is what makes a server-flag-derived column a fact for the node.
    pub fn follows_servers(&self, node: &NodeSummary) -> Option<bool> {
        if node.server {
            return node.k3s_args.is_some().then_some(true);
        }
        let servers = self.servers_started().ok()?;
        let agent = self.last_start(node).ok()?;
        Some(agent.at > servers.at)
    }

    /// Per node, its pods that need a CNI (not hostNetwork, not terminating, not finished), in one
    /// pass over the pods.
    fn pod_counts(&self, only: Option<&str>) -> BTreeMap<&str, PodCounts> {
        let mut out: BTreeMap<&str, PodCounts> = BTreeMap::new();
        for p in self.pods.values().filter(|p| {
            only.is_none_or(|n| p.node == n)
                && !p.host_network
                && !p.terminating
                && !matches!(p.phase.as_str(), "Succeeded" | "Failed")
        }) {
            let c = out.entry(p.node.as_str()).or_default();
            c.total += 1;
            let has_endpoint = self
                .endpoints
                .get(&p.key())
                // A re-created pod of the same name (StatefulSet) must not count by an old endpoint.
                .is_some_and(|e| e.ip.is_empty() || p.ip.is_empty() || e.ip == p.ip);
            if has_endpoint {
                c.managed += 1;
            } else if !p.ip.is_empty() {
                c.old_ip += 1;
            }
        }
        out
    }

    /// The verdict for one node.
    pub fn verdict(&self, node: &NodeSummary) -> NodeVerdict {
        let counts = self.pod_counts(Some(&node.name)).get(node.name.as_str()).copied().unwrap_or_default();
        self.judge(node, counts)
    }

    fn judge(&self, node: &NodeSummary, counts: PodCounts) -> NodeVerdict {
        let v =
            |state, reason: String, evidence: String| NodeVerdict { node: node.name.clone(), state, reason, evidence };
        let unknown = |why: String| v(NodeMigration::Unknown(why.clone()), format!("unknown: {why}"), why);
        match &self.nodes_known {
            Known::Live => {}
            Known::Failing(why) => return unknown(format!("node list not current ({why})")),
            Known::Waiting | Known::Absent => return unknown("node list not read yet".into()),
        }
        // 1. The k3s process on the node.
        let mut evidence = Vec::new();
        if node.server {
            let Some(args) = &node.k3s_args else {
                return unknown("no readable k3s.io/node-args on this server".into());
            };
            if !stage1_flags(args) {
                let reason = if args.flannel_enabled() {
                    "flannel on in its node-args".to_string()
                } else {
                    "network-policy controller on in its node-args".to_string()
                };
                return v(
                    NodeMigration::Flannel { awaiting_restart: false },
                    reason,
                    format!("k3s.io/node-args of this server's running k3s: {}", flags_text(args)),
                );
            }
            let started = self.last_start(node).map(|s| format!(", k3s started {}", s.describe())).unwrap_or_default();
            evidence.push(format!("node-args: {}{started}", flags_text(args)));
        } else {
            let servers = self.servers();
            if servers.is_empty() {
                return unknown("no server node in the node list".into());
            }
            if let Some(s) = servers.iter().find(|s| s.k3s_args.is_none()) {
                return unknown(format!("server {} has no readable k3s.io/node-args", s.name));
            }
            let on: Vec<&str> = servers
                .iter()
                .filter(|s| s.k3s_args.as_ref().is_some_and(|a| !stage1_flags(a)))
                .map(|s| s.name.as_str())
                .collect();
            if !on.is_empty() {
                return v(
                    NodeMigration::Flannel { awaiting_restart: false },
                    format!("servers still run flannel: {}", on.join(", ")),
                    format!(
                        "agents take flannel and network policy from their server at start; still on in the node-args of {}",
                        on.join(", ")
                    ),
                );
            }
            let servers_at = match self.servers_started() {
                Ok(s) => s,
                Err(e) => return unknown(e),
            };
            let agent_at = match self.last_start(node) {
                Ok(s) => s,
                Err(e) => return unknown(e),
            };
            if agent_at.at <= servers_at.at {
                return v(
                    NodeMigration::Flannel { awaiting_restart: true },
                    format!("flannel still running: not restarted since {}", hms(servers_at.at)),
                    format!(
                        "the servers switched off flannel (last k3s start {}); this agent's k3s last started {}, so it still runs embedded flannel and the network-policy controller",
                        servers_at.describe(),
                        agent_at.describe()
                    ),
                );
            }
            evidence.push(format!(
                "k3s-agent started {} after the servers' {}",
                agent_at.describe(),
                servers_at.describe()
            ));
        }
        if node.ready != Some(true) {
            let what = match node.ready {
                Some(false) => "not Ready",
                _ => "Ready unknown",
            };
            let since = node.ready_since.map(|t| format!(" since {}", hms(t))).unwrap_or_default();
            let msg = if node.ready_message.is_empty() { String::new() } else { format!(": {}", node.ready_message) };
            evidence.push(format!("{what}{since}{msg}"));
            return v(NodeMigration::Restarting, format!("k3s restarted, {what}{since}"), evidence.join("; "));
        }
        // 2. Its pods.
        match &self.pods_known {
            Known::Live => {}
            Known::Failing(why) => return unknown(format!("pods not current ({why})")),
            Known::Waiting | Known::Absent => return unknown("pods not listed yet".into()),
        }
        match &self.endpoints_known {
            Known::Live | Known::Absent => {}
            Known::Failing(why) => return unknown(format!("CiliumEndpoints not readable ({why})")),
            Known::Waiting => return unknown("CiliumEndpoints not listed yet".into()),
        }
        let PodCounts { managed, total, old_ip: old_ip_pods } = counts;
        evidence.push(format!("{managed}/{total} pods managed by Cilium (CiliumEndpoints)"));
        if old_ip_pods > 0 {
            evidence.push(format!("{old_ip_pods} still on flannel addresses until re-created"));
        }
        if managed == total {
            return v(NodeMigration::Switched, "switched".into(), evidence.join("; "));
        }
        let mut reason = format!("{managed}/{total} pods managed");
        if old_ip_pods > 0 {
            reason.push_str(&format!(", {old_ip_pods} on flannel IPs"));
        }
        v(NodeMigration::SwitchedPodsPending { managed, total, old_ip_pods }, reason, evidence.join("; "))
    }

    /// Every node's verdict, in name order.
    pub fn verdicts(&self) -> Vec<NodeVerdict> {
        let counts = self.pod_counts(None);
        self.nodes.values().map(|n| self.judge(n, counts.get(n.name.as_str()).copied().unwrap_or_default())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_764_000_000;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(T + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn args(stage1: bool) -> K3sArgs {
        K3sArgs {
            role: "server".into(),
            flannel_backend: stage1.then(|| "none".to_string()),
            disable_network_policy: stage1,
            ..Default::default()
        }
    }

    fn server(name: &str, stage1: bool, ready_since: i64) -> NodeSummary {
        NodeSummary {
            name: name.into(),
            ready: Some(true),
            server: true,
            k3s_args: Some(args(stage1)),
            ready_since: Some(ts(ready_since)),
            ..Default::default()
        }
    }

    fn agent(name: &str, ready_since: i64) -> NodeSummary {
        NodeSummary {
            name: name.into(),
            ready: Some(true),
            k3s_args: Some(K3sArgs { role: "agent".into(), ..Default::default() }),
            ready_since: Some(ts(ready_since)),
            ..Default::default()
        }
    }

    fn pod(node: &str, name: &str, ip: &str) -> PodSummary {
        PodSummary {
            namespace: "ns".into(),
            name: name.into(),
            node: node.into(),
            phase: "Running".into(),
            ip: ip.into(),
            ..Default::default()
        }
    }

    fn start(node: &str, at: i64) -> NodeStartEvent {
        NodeStartEvent {
            key: format!("default/{node}.{at}"),
            node: node.into(),
            component: "kubelet".into(),
            at: Some(ts(at)),
        }
    }

    /// One table row: the cluster as summaries, and what each node must be.
    struct Case {
        what: &'static str,
        nodes: Vec<NodeSummary>,
        pods: Vec<PodSummary>,
        endpoints: Vec<(&'static str, &'static str)>,
        starts: Vec<NodeStartEvent>,
        pods_known: Known,
        endpoints_known: Known,
        starts_known: Known,
        want: Vec<(&'static str, NodeMigration)>,
    }

    fn case(what: &'static str) -> Case {
        Case {
            what,
            nodes: Vec::new(),
            pods: Vec::new(),
            endpoints: Vec::new(),
            starts: Vec::new(),
            pods_known: Known::Live,
            endpoints_known: Known::Live,
            starts_known: Known::Live,
            want: Vec::new(),
        }
    }

    fn run(c: &Case) -> Vec<NodeVerdict> {
        let nodes: BTreeMap<String, NodeSummary> = c.nodes.iter().map(|n| (n.name.clone(), n.clone())).collect();
        let pods: BTreeMap<String, PodSummary> = c.pods.iter().map(|p| (p.key(), p.clone())).collect();
        let endpoints: BTreeMap<String, EndpointSummary> = c
            .endpoints
            .iter()
            .map(|(name, ip)| {
                let e = EndpointSummary { namespace: "ns".into(), name: (*name).into(), ip: (*ip).into() };
                (e.key(), e)
            })
            .collect();
        let starts: BTreeMap<String, NodeStartEvent> = c.starts.iter().map(|e| (e.key.clone(), e.clone())).collect();
        let inputs = Inputs {
            nodes: &nodes,
            nodes_known: Known::Live,
            pods: &pods,
            pods_known: c.pods_known.clone(),
            endpoints: &endpoints,
            endpoints_known: c.endpoints_known.clone(),
            starts: &starts,
            starts_known: c.starts_known.clone(),
        };
        inputs.verdicts()
    }

    fn unknown() -> NodeMigration {
        NodeMigration::Unknown(String::new())
    }

    fn same(a: &NodeMigration, b: &NodeMigration) -> bool {
        match (a, b) {
            (NodeMigration::Unknown(_), NodeMigration::Unknown(_)) => true,
            _ => a == b,
        }
    }

    #[test]
    fn table() {
        use NodeMigration::*;
        let mut cases = Vec::new();

        let mut c = case("flannel everywhere, Cilium managing nothing");
        c.nodes = vec![server("cp1", false, 0), agent("w1", 10)];
        c.pods = vec![pod("cp1", "a", "10.42.0.5"), pod("w1", "b", "10.42.1.5")];
        c.want = vec![("cp1", Flannel { awaiting_restart: false }), ("w1", Flannel { awaiting_restart: false })];
        cases.push(c);

        let mut c = case("only the first server restarted: agents still run flannel");
        c.nodes = vec![server("cp1", true, 100), agent("w1", 10), agent("w2", 20)];
        c.starts = vec![start("cp1", 95), start("w1", 5), start("w2", 15)];
        c.pods = vec![pod("cp1", "a", "10.42.0.5"), pod("w1", "b", "10.42.1.5")];
        c.want = vec![
            ("cp1", SwitchedPodsPending { managed: 0, total: 1, old_ip_pods: 1 }),
            ("w1", Flannel { awaiting_restart: true }),
            ("w2", Flannel { awaiting_restart: true }),
        ];
        cases.push(c);

        let mut c = case("agent restarted after the servers, old pods still on flannel addresses");
        c.nodes = vec![server("cp1", true, 100), agent("w1", 210)];
        c.starts = vec![start("cp1", 95), start("w1", 200)];
        c.pods = vec![pod("w1", "old", "10.42.1.5"), pod("w1", "new", "10.42.1.77"), pod("w1", "pending", "")];
        c.endpoints = vec![("new", "10.42.1.77")];
        c.want = vec![("cp1", Switched), ("w1", SwitchedPodsPending { managed: 1, total: 3, old_ip_pods: 1 })];
        cases.push(c);

        let mut c = case("every pod re-created under Cilium; hostNetwork and finished pods do not count");
        c.nodes = vec![server("cp1", true, 100), agent("w1", 210)];
        c.starts = vec![start("cp1", 95), start("w1", 200)];
        let mut host = pod("w1", "cilium-x", "192.168.20.12");
        host.host_network = true;
        let mut done = pod("w1", "job", "10.42.1.9");
        done.phase = "Succeeded".into();
        let mut going = pod("w1", "going", "10.42.1.10");
        going.terminating = true;
        c.pods = vec![pod("w1", "a", "10.42.1.20"), host, done, going];
        c.endpoints = vec![("a", "10.42.1.20")];
        c.want = vec![("cp1", Switched), ("w1", Switched)];
        cases.push(c);

        let mut c = case("an endpoint left from a previous pod of the same name does not count");
        c.nodes = vec![server("cp1", true, 100)];
        c.pods = vec![pod("cp1", "db-0", "10.42.0.30")];
        c.endpoints = vec![("db-0", "10.42.0.11")];
        c.want = vec![("cp1", SwitchedPodsPending { managed: 0, total: 1, old_ip_pods: 1 })];
        cases.push(c);

        let mut c = case("an agent that flapped Ready after its Starting event is judged by the event");
        c.nodes = vec![server("cp1", true, 100), agent("w1", 300)];
        c.starts = vec![start("cp1", 95), start("w1", 50)];
        c.want = vec![("cp1", Switched), ("w1", Flannel { awaiting_restart: true })];
        cases.push(c);

        let mut c = case("no events left: Ready transitions decide, equal times are not 'after'");
        c.nodes = vec![server("cp1", true, 100), agent("w1", 100), agent("w2", 101)];
        c.want = vec![("cp1", Switched), ("w1", Flannel { awaiting_restart: true }), ("w2", Switched)];
        cases.push(c);

        let mut c = case("restarted agent not Ready yet");
        let mut w1 = agent("w1", 210);
        w1.ready = Some(false);
        w1.ready_message = "container runtime status check may not have completed yet".into();
        c.nodes = vec![server("cp1", true, 100), w1];
        c.starts = vec![start("cp1", 95), start("w1", 205)];
        c.want = vec![("cp1", Switched), ("w1", Restarting)];
        cases.push(c);

        let mut c = case("half the servers switched: agents wait for all of them");
        c.nodes = vec![server("cp1", true, 100), server("cp2", false, 20), agent("w1", 300)];
        c.want = vec![
            ("cp1", Switched),
            ("cp2", Flannel { awaiting_restart: false }),
            ("w1", Flannel { awaiting_restart: false }),
        ];
        cases.push(c);

        let mut c = case("flannel off but the network-policy controller still on is not switched");
        let mut cp1 = server("cp1", true, 100);
        if let Some(a) = cp1.k3s_args.as_mut() {
            a.disable_network_policy = false;
        }
        c.nodes = vec![cp1];
        c.want = vec![("cp1", Flannel { awaiting_restart: false })];
        cases.push(c);

        let mut c = case("missing data is unknown, never done");
        let mut bare = server("cp1", true, 100);
        bare.k3s_args = None;
        c.nodes = vec![bare, agent("w1", 200)];
        c.want = vec![("cp1", unknown()), ("w1", unknown())];
        cases.push(c);

        let mut c = case("pods not readable");
        c.nodes = vec![server("cp1", true, 100)];
        c.pods_known = Known::Failing("forbidden".into());
        c.want = vec![("cp1", unknown())];
        cases.push(c);

        let mut c = case("CiliumEndpoints not listed yet");
        c.nodes = vec![server("cp1", true, 100)];
        c.endpoints_known = Known::Waiting;
        c.want = vec![("cp1", unknown())];
        cases.push(c);

        let mut c = case("CiliumEndpoint CRD not installed: known to manage nothing");
        c.nodes = vec![server("cp1", true, 100)];
        c.pods = vec![pod("cp1", "a", "10.42.0.5")];
        c.endpoints_known = Known::Absent;
        c.want = vec![("cp1", SwitchedPodsPending { managed: 0, total: 1, old_ip_pods: 1 })];
        cases.push(c);

        let mut c = case("node events not listed yet: agents unknown");
        c.nodes = vec![server("cp1", true, 100), agent("w1", 200)];
        c.starts_known = Known::Waiting;
        c.want = vec![("cp1", Switched), ("w1", unknown())];
        cases.push(c);

        let mut c = case("node events forbidden: Ready transitions still decide");
        c.nodes = vec![server("cp1", true, 100), agent("w1", 200)];
        c.starts = vec![start("w1", 50)];
        c.starts_known = Known::Failing("forbidden".into());
        c.want = vec![("cp1", Switched), ("w1", Switched)];
        cases.push(c);

        let mut c = case("an agent without any restart time is unknown");
        let mut w1 = agent("w1", 0);
        w1.ready_since = None;
        c.nodes = vec![server("cp1", true, 100), w1];
        c.want = vec![("cp1", Switched), ("w1", unknown())];
        cases.push(c);

        for c in &cases {
            let got = run(c);
            assert_eq!(got.len(), c.want.len(), "{}", c.what);
            for (v, (name, want)) in got.iter().zip(&c.want) {
                assert_eq!(v.node, *name, "{}", c.what);
                assert!(same(&v.state, want), "{}: {name} is {:?} ({}), want {want:?}", c.what, v.state, v.evidence);
            }
        }
    }

    #[test]
    fn reasons_say_why() {
        let nodes: BTreeMap<String, NodeSummary> =
            [server("cp1", true, 100), agent("w1", 10)].into_iter().map(|n| (n.name.clone(), n)).collect();
        let pods: BTreeMap<String, PodSummary> =
            [pod("cp1", "a", "10.42.0.5"), pod("cp1", "b", "10.42.0.6")].into_iter().map(|p| (p.key(), p)).collect();
        let e = EndpointSummary { namespace: "ns".into(), name: "b".into(), ip: "10.42.0.6".into() };
        let endpoints: BTreeMap<String, EndpointSummary> = [(e.key(), e)].into_iter().collect();
        let starts = BTreeMap::new();
        let inputs = Inputs {
            nodes: &nodes,
            nodes_known: Known::Live,
            pods: &pods,
            pods_known: Known::Live,
            endpoints: &endpoints,
            endpoints_known: Known::Live,
            starts: &starts,
            starts_known: Known::Live,
        };
        let v = inputs.verdicts();
        assert_eq!(v[0].reason, "1/2 pods managed, 1 on flannel IPs");
        assert_eq!(v[0].state.cell(), "1/2");
        assert_eq!(v[1].reason, format!("flannel still running: not restarted since {}", hms(ts(100))));
        assert!(v[1].evidence.contains("Ready since"), "{}", v[1].evidence);
        assert_eq!(v[1].state.cell(), "restart?");
        assert_eq!(inputs.follows_servers(&nodes["w1"]), Some(false));
        assert_eq!(inputs.follows_servers(&nodes["cp1"]), Some(true));
    }
}
