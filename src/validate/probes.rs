//! The active checks' probe objects and their results, as pure functions: the manifests a run
//! creates (one server pod per node, a probe Service, one client Job per node), the POSIX `sh`
//! script the clients run, the parser of the `CUTOVER-PROBE` lines their logs carry, and the
//! evaluation of those lines (and of the probe flows Hubble saw) into check results.
//!
//! Creating and deleting the objects is the runner's job ([`crate::app::action::Operation`]
//! `ProbeCreate` / `ProbeDelete`); [`super::active`] drives a run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use super::observe::FlowFact;
use super::{CheckResult, State, SubResult};

/// Label on everything cutover creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "cutover");
/// Label carrying the run id of a validation run's probe objects.
pub const RUN_LABEL: &str = "cutover.io/probe-run";
/// `server` or `client`.
pub const ROLE_LABEL: &str = "cutover.io/probe";
/// The node a probe pod is pinned to.
pub const NODE_LABEL: &str = "cutover.io/probe-node";
/// The TCP port the servers listen on.
pub const SERVER_PORT: u16 = 8080;
/// Each single probe command (ping, nc, nslookup, curl) gives up after this many seconds.
pub const PROBE_COMMAND_SECONDS: u64 = 3;
/// The bounded read of a client's log.
pub const LOG_LIMIT_BYTES: i64 = 64 * 1024;
pub const LOG_TAIL_LINES: i64 = 2000;
/// Longest evidence text kept from one log line.
const MAX_EVIDENCE: usize = 300;

/// The label selector of one run's objects, or (`None`) of every run's.
pub fn selector(run: Option<&str>) -> String {
    match run {
        Some(r) => format!("{}={},{RUN_LABEL}={r}", MANAGED_BY.0, MANAGED_BY.1),
        None => format!("{}={},{RUN_LABEL}", MANAGED_BY.0, MANAGED_BY.1),
    }
}

/// A new run id: lowercase hex, valid in names and label values.
pub fn new_run_id() -> String {
    let t = jiff::Timestamp::now().as_second() as u64;
    format!("{:04x}{:04x}", (t & 0xffff) as u16, fastrand::u16(..))
}

/// Settings of the probes (`[validate]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    pub namespace: String,
    pub image: String,
    /// Deadline of each phase (servers Ready, clients finished) and the Jobs' activeDeadline.
    pub timeout: Duration,
    /// Fetched by every client (dns-egress); its host is the external name resolved.
    pub url: String,
    /// The cluster name resolved (dns-egress).
    pub cluster_name: String,
    /// `namespace/name` of the ingress LoadBalancer Service (node-port, load-balancer).
    pub ingress_service: String,
    /// The storage class of the volume probe's PVC (longhorn-volume).
    pub storage_class: String,
}

/// A node the probes cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeNode {
    pub name: String,
    pub internal_ip: String,
}

fn labels(run: &str, role: &str, node: Option<&str>) -> Value {
    let mut l = json!({ MANAGED_BY.0: MANAGED_BY.1, RUN_LABEL: run, ROLE_LABEL: role });
    if let Some(n) = node {
        l[NODE_LABEL] = json!(n);
    }
    l
}

fn tolerate_all() -> Value {
    json!([{ "operator": "Exists" }])
}

pub fn server_name(run: &str, index: usize) -> String {
    format!("cutover-probe-{run}-s{index}")
}

pub fn client_name(run: &str, index: usize) -> String {
    format!("cutover-probe-{run}-c{index}")
}

pub fn service_name(run: &str) -> String {
    format!("cutover-probe-{run}")
}

pub fn volume_claim_name(run: &str) -> String {
    format!("cutover-probe-{run}-vol")
}

pub fn volume_job_name(run: &str, step: usize) -> String {
    format!("cutover-probe-{run}-v{step}")
}

/// The size of the volume probe's PVC.
pub const VOLUME_SIZE: &str = "16Mi";
/// Where the volume probe mounts its PVC, and the file it writes there.
pub const VOLUME_MOUNT: &str = "/cutover-probe";
pub const VOLUME_FILE: &str = "/cutover-probe/token";

/// What a volume probe Job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeRole {
    Write,
    Read,
}

impl VolumeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeRole::Write => "write",
            VolumeRole::Read => "read",
        }
    }
}

/// The volume probe's PVC: [`VOLUME_SIZE`], ReadWriteOnce, on the configured storage class.
pub fn volume_claim(cfg: &ProbeConfig, run: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": volume_claim_name(run), "namespace": cfg.namespace, "labels": labels(run, "volume", None) },
        "spec": {
            "storageClassName": cfg.storage_class,
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": VOLUME_SIZE } },
        },
    })
}

/// One step of the volume probe: a Job pinned to `node` (`backoffLimit: 0`,
/// `activeDeadlineSeconds` = the timeout) mounting the run's PVC and running [`VOLUME_SCRIPT`]:
/// the writer writes the token (the run id), a reader reads it back. `writer` is the node that
/// wrote it (evidence in the reader's line).
pub fn volume_job(cfg: &ProbeConfig, run: &str, step: usize, node: &str, role: VolumeRole, writer: &str) -> Value {
    let role_label = match role {
        VolumeRole::Write => "volume-writer",
        VolumeRole::Read => "volume-reader",
    };
    let env = [
        ("PROBE_VOLUME_NODE", node.to_string()),
        ("PROBE_VOLUME_ROLE", role.as_str().to_string()),
        ("PROBE_TOKEN", run.to_string()),
        ("PROBE_CLAIM", volume_claim_name(run)),
        ("PROBE_WRITER", writer.to_string()),
        ("PROBE_FILE", VOLUME_FILE.to_string()),
    ];
    let env: Vec<Value> = env.iter().map(|(k, v)| json!({ "name": k, "value": v })).collect();
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": volume_job_name(run, step), "namespace": cfg.namespace, "labels": labels(run, role_label, Some(node)) },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": cfg.timeout.as_secs().max(1),
            "template": {
                "metadata": { "labels": labels(run, role_label, Some(node)) },
                "spec": {
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "tolerations": tolerate_all(),
                    "terminationGracePeriodSeconds": 1,
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": "probe", "image": cfg.image, "command": ["/bin/sh", "-c", VOLUME_SCRIPT], "env": env,
                        "volumeMounts": [{ "name": "data", "mountPath": VOLUME_MOUNT }],
                    }],
                    "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": volume_claim_name(run) } }],
                },
            },
        },
    })
}

/// The volume probe's script (POSIX sh): one `CUTOVER-PROBE longhorn-volume <node> ok|fail …`
/// line and the `end` line; it always exits 0.
pub const VOLUME_SCRIPT: &str = r#"me="$PROBE_VOLUME_NODE"; f="${PROBE_FILE:-/cutover-probe/token}"
line() { printf 'CUTOVER-PROBE %s %s %s %s\n' "$1" "$2" "$3" "$4"; }
flat() { printf '%s' "$1" | tr '\n' ' ' | cut -c1-200; }
if [ "$PROBE_VOLUME_ROLE" = write ]; then
  if out=$(printf '%s\n' "$PROBE_TOKEN" 2>&1 > "$f" && sync 2>&1); then line longhorn-volume "$me" ok "wrote token $PROBE_TOKEN to $PROBE_CLAIM"
  else line longhorn-volume "$me" fail "writing to $PROBE_CLAIM: $(flat "$out")"; fi
else
  got=$(cat "$f" 2>&1); rc=$?
  if [ "$rc" -eq 0 ] && [ "$got" = "$PROBE_TOKEN" ]; then line longhorn-volume "$me" ok "read token $got back from $PROBE_CLAIM (written on $PROBE_WRITER)"
  else line longhorn-volume "$me" fail "read $PROBE_CLAIM: expected token $PROBE_TOKEN (written on $PROBE_WRITER), got: $(flat "$got")"; fi
fi
line end "$me" ok "volume probe ran"
"#;

/// One server pod per node (pinned by `nodeName`, tolerating every taint) listening on TCP
/// [`SERVER_PORT`] with socat, and the probe ClusterIP Service selecting them
/// (`internalTrafficPolicy: Local`: each node's probe reaches its own node's backend).
pub fn server_objects(cfg: &ProbeConfig, run: &str, nodes: &[ProbeNode]) -> Vec<Value> {
    let mut out: Vec<Value> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": server_name(run, i), "namespace": cfg.namespace, "labels": labels(run, "server", Some(&n.name)) },
                "spec": {
                    "nodeName": n.name,
                    "tolerations": tolerate_all(),
                    "terminationGracePeriodSeconds": 1,
                    "automountServiceAccountToken": false,
                    "activeDeadlineSeconds": cfg.timeout.as_secs().max(1) * 3,
                    "containers": [{
                        "name": "server", "image": cfg.image,
                        "command": ["socat", format!("TCP-LISTEN:{SERVER_PORT},fork,reuseaddr"), "SYSTEM:echo cutover-probe"],
                        "ports": [{ "containerPort": SERVER_PORT, "protocol": "TCP" }],
                        "readinessProbe": { "tcpSocket": { "port": SERVER_PORT }, "periodSeconds": 2 },
                    }],
                },
            })
        })
        .collect();
    out.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": service_name(run), "namespace": cfg.namespace, "labels": labels(run, "service", None) },
        "spec": {
            "type": "ClusterIP",
            "internalTrafficPolicy": "Local",
            "selector": { RUN_LABEL: run, ROLE_LABEL: "server" },
            "ports": [{ "name": "tcp", "port": SERVER_PORT, "targetPort": SERVER_PORT, "protocol": "TCP" }],
        },
    }));
    out
}

/// What the clients probe besides the peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// node → its server pod's IP.
    pub servers: BTreeMap<String, String>,
    /// `ip:port` of the probe Service.
    pub service: String,
    /// node → `InternalIP:nodePort` of the ingress Service.
    pub node_ports: BTreeMap<String, String>,
    /// `ip:port` of the ingress MetalLB IP (empty: none assigned, not probed).
    pub load_balancer: String,
}

/// The host of a URL (`https://example.com:8443/x` → `example.com`).
pub fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    host.split(':').next().unwrap_or("")
}

/// One client Job per node (pinned, `backoffLimit: 0`, `activeDeadlineSeconds` = the timeout),
/// running [`SCRIPT`] with the targets in its environment.
pub fn client_objects(cfg: &ProbeConfig, run: &str, nodes: &[ProbeNode], t: &Targets) -> Vec<Value> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let peers: Vec<String> =
                t.servers.iter().filter(|(node, _)| **node != n.name).map(|(node, ip)| format!("{node}={ip}")).collect();
            let node_ports: Vec<String> = t.node_ports.iter().map(|(node, hp)| format!("{node}={hp}")).collect();
            let env = [
                ("PROBE_NODE", n.name.clone()),
                ("PROBE_PEERS", peers.join(" ")),
                ("PROBE_SERVICE", t.service.clone()),
                ("PROBE_NODEPORTS", node_ports.join(" ")),
                ("PROBE_LB", t.load_balancer.clone()),
                ("PROBE_DNS_CLUSTER", cfg.cluster_name.clone()),
                ("PROBE_DNS_EXTERNAL", url_host(&cfg.url).to_string()),
                ("PROBE_URL", cfg.url.clone()),
                ("PROBE_TIMEOUT", PROBE_COMMAND_SECONDS.to_string()),
            ];
            let env: Vec<Value> = env.iter().map(|(k, v)| json!({ "name": k, "value": v })).collect();
            json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": { "name": client_name(run, i), "namespace": cfg.namespace, "labels": labels(run, "client", Some(&n.name)) },
                "spec": {
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": cfg.timeout.as_secs().max(1),
                    "template": {
                        "metadata": { "labels": labels(run, "client", Some(&n.name)) },
                        "spec": {
                            "nodeName": n.name,
                            "restartPolicy": "Never",
                            "tolerations": tolerate_all(),
                            "terminationGracePeriodSeconds": 1,
                            "automountServiceAccountToken": false,
                            "containers": [{ "name": "probe", "image": cfg.image, "command": ["/bin/sh", "-c", SCRIPT], "env": env }],
                        },
                    },
                },
            })
        })
        .collect()
}

/// The client's script (POSIX sh; netshoot has ping, nc, nslookup and curl). Every result is one
/// line `CUTOVER-PROBE <check> <subject> ok|fail <evidence>`; the last is `CUTOVER-PROBE end
/// <node> ok …` (a log without it was cut short). It always exits 0: the lines carry the results.
pub const SCRIPT: &str = r#"t="${PROBE_TIMEOUT:-3}"; me="$PROBE_NODE"
line() { printf 'CUTOVER-PROBE %s %s %s %s\n' "$1" "$2" "$3" "$4"; }
flat() { printf '%s' "$1" | tr '\n' ' ' | cut -c1-200; }
probe_tcp() {
  h="${3%:*}"; p="${3##*:}"
  if nc -z -w "$t" "$h" "$p" >/dev/null 2>&1; then line "$1" "$2" ok "tcp $3 connected"
  else line "$1" "$2" fail "tcp $3 no connection within ${t}s"; fi
}
for peer in $PROBE_PEERS; do
  n="${peer%%=*}"; ip="${peer#*=}"
  out=$(ping -c 3 -W "$t" "$ip" 2>&1); rc=$?
  sum=$(printf '%s\n' "$out" | grep 'packets transmitted' | cut -d, -f1-2)
  if [ "$rc" -eq 0 ]; then line pod-to-pod "$me->$n" ok "icmp $ip: $sum"
  else line pod-to-pod "$me->$n" fail "icmp $ip: ${sum:-$(flat "$out")}"; fi
  probe_tcp pod-to-pod "$me->$n" "$ip:8080"
done
if [ -n "$PROBE_SERVICE" ]; then probe_tcp cluster-ip "$me" "$PROBE_SERVICE"; fi
for np in $PROBE_NODEPORTS; do probe_tcp node-port "$me->${np%%=*}" "${np#*=}"; done
if [ -n "$PROBE_LB" ]; then probe_tcp load-balancer "$me" "$PROBE_LB"; fi
dns() {
  out=$(nslookup -timeout="$t" "$1" 2>&1); rc=$?
  addr=$(printf '%s\n' "$out" | awk '/^Name:/{n=1} n && /^Address/{print $NF; exit}')
  if [ "$rc" -eq 0 ] && [ -n "$addr" ]; then line dns-egress "$me" ok "nslookup $1: $addr"
  else line dns-egress "$me" fail "nslookup $1: $(flat "$out")"; fi
}
if [ -n "$PROBE_DNS_CLUSTER" ]; then dns "$PROBE_DNS_CLUSTER"; fi
if [ -n "$PROBE_DNS_EXTERNAL" ]; then dns "$PROBE_DNS_EXTERNAL"; fi
if [ -n "$PROBE_URL" ]; then
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time "$t" "$PROBE_URL" 2>&1); rc=$?
  if [ "$rc" -eq 0 ] && [ "$code" -ge 200 ] 2>/dev/null && [ "$code" -lt 400 ]; then line dns-egress "$me" ok "fetch $PROBE_URL: HTTP $code"
  else line dns-egress "$me" fail "fetch $PROBE_URL: $(flat "$code")"; fi
fi
line end "$me" ok "all probes ran"
"#;

/// The probes a client's log reports, by the tag in its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeKind {
    PodToPod,
    ClusterIp,
    NodePort,
    LoadBalancer,
    DnsEgress,
    /// The volume probe's Jobs (not the network clients').
    LonghornVolume,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 5] =
        [ProbeKind::PodToPod, ProbeKind::ClusterIp, ProbeKind::NodePort, ProbeKind::LoadBalancer, ProbeKind::DnsEgress];

    /// Every kind a log line can carry: the network clients' and the volume probe's.
    const TAGGED: [ProbeKind; 6] = [
        ProbeKind::PodToPod,
        ProbeKind::ClusterIp,
        ProbeKind::NodePort,
        ProbeKind::LoadBalancer,
        ProbeKind::DnsEgress,
        ProbeKind::LonghornVolume,
    ];

    /// The tag in the log lines.
    pub fn tag(self) -> &'static str {
        match self {
            ProbeKind::PodToPod => "pod-to-pod",
            ProbeKind::ClusterIp => "cluster-ip",
            ProbeKind::NodePort => "node-port",
            ProbeKind::LoadBalancer => "load-balancer",
            ProbeKind::DnsEgress => "dns-egress",
            ProbeKind::LonghornVolume => "longhorn-volume",
        }
    }

    /// The check id in reports.
    pub fn check_id(self) -> &'static str {
        match self {
            ProbeKind::PodToPod => "probe-pod-to-pod",
            ProbeKind::ClusterIp => "probe-clusterip",
            ProbeKind::NodePort => "probe-nodeport",
            ProbeKind::LoadBalancer => "probe-loadbalancer",
            ProbeKind::DnsEgress => "probe-dns-egress",
            ProbeKind::LonghornVolume => "probe-longhorn-volume",
        }
    }

    fn from_tag(tag: &str) -> Option<ProbeKind> {
        ProbeKind::TAGGED.into_iter().find(|k| k.tag() == tag)
    }
}

/// One result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeLine {
    pub kind: ProbeKind,
    /// A node, or an ordered pair `a → b`.
    pub subject: String,
    pub ok: bool,
    pub evidence: String,
}

/// A client's log, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedLog {
    pub lines: Vec<ProbeLine>,
    /// The `end` line was there (the script ran to its end and the log was read whole).
    pub complete: bool,
    /// `line N: why` for each `CUTOVER-PROBE` line that could not be read.
    pub malformed: Vec<String>,
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Evidence text from outside, bounded as a log line's is.
pub fn cut_evidence(s: &str) -> String {
    cut(s, MAX_EVIDENCE)
}

/// Parses a client's log. Lines without the `CUTOVER-PROBE ` prefix are ignored (the image may
/// print its own); a prefixed line that does not parse is reported in `malformed`, never a panic.
pub fn parse_log(text: &str) -> ParsedLog {
    let mut out = ParsedLog::default();
    for (i, raw) in text.lines().enumerate() {
        let Some(rest) = raw.strip_prefix("CUTOVER-PROBE ") else { continue };
        let mut parts = rest.splitn(4, ' ');
        let (tag, subject, verdict) = (parts.next(), parts.next(), parts.next());
        let evidence = parts.next().unwrap_or("").trim();
        let bad = |why: &str| format!("line {}: {why}: {:?}", i + 1, cut(raw, 120));
        let (Some(tag), Some(subject), Some(verdict)) = (tag, subject, verdict) else {
            out.malformed.push(bad("expected `CUTOVER-PROBE <check> <subject> ok|fail <evidence>`"));
            continue;
        };
        let ok = match verdict {
            "ok" => true,
            "fail" => false,
            _ => {
                out.malformed.push(bad("the result is neither ok nor fail"));
                continue;
            }
        };
        if subject.is_empty() {
            out.malformed.push(bad("no subject"));
            continue;
        }
        if tag == "end" {
            out.complete = ok;
            continue;
        }
        let Some(kind) = ProbeKind::from_tag(tag) else {
            out.malformed.push(bad("unknown check"));
            continue;
        };
        let subject = match subject.split_once("->") {
            Some((a, b)) if !a.is_empty() && !b.is_empty() => format!("{a} → {b}"),
            Some(_) => {
                out.malformed.push(bad("a pair needs two nodes"));
                continue;
            }
            None => subject.to_string(),
        };
        out.lines.push(ProbeLine { kind, subject, ok, evidence: cut(evidence, MAX_EVIDENCE) });
    }
    out
}

/// What one client produced: its parsed log, or why there is none.
#[derive(Debug, Clone)]
pub struct ClientOutcome {
    pub node: String,
    pub log: Result<ParsedLog, String>,
    /// From the Job's creation to its end (or the deadline).
    pub took: Duration,
}

/// The subjects each probe kind must report.
fn expected_subjects(kind: ProbeKind, node: &str, nodes: &[ProbeNode], t: &Targets) -> Vec<String> {
    match kind {
        ProbeKind::PodToPod => nodes
            .iter()
            .filter(|n| n.name != node && t.servers.contains_key(&n.name))
            .map(|n| pair(node, &n.name))
            .collect(),
        ProbeKind::NodePort => t.node_ports.keys().map(|n| pair(node, n)).collect(),
        ProbeKind::LoadBalancer if t.load_balancer.is_empty() => Vec::new(),
        ProbeKind::ClusterIp | ProbeKind::LoadBalancer | ProbeKind::DnsEgress | ProbeKind::LonghornVolume => {
            vec![node.to_string()]
        }
    }
}

pub fn pair(a: &str, b: &str) -> String {
    format!("{a} → {b}")
}

/// The check of one probe kind from every client's outcome. A subject with a failing line is
/// red; with only ok lines green; without any line unknown (the reason: no log, a cut log,
/// malformed lines).
pub fn evaluate_kind(
    kind: ProbeKind,
    title: &str,
    nodes: &[ProbeNode],
    t: &Targets,
    outcomes: &[ClientOutcome],
    notes: Vec<String>,
) -> CheckResult {
    let mut results = Vec::new();
    for o in outcomes {
        let expected = expected_subjects(kind, &o.node, nodes, t);
        match &o.log {
            Err(why) => {
                for s in expected {
                    results.push(SubResult {
                        subject: s,
                        state: State::Unknown,
                        evidence: vec![format!("no result from the probe on {}: {why}", o.node)],
                        duration: o.took,
                    });
                }
            }
            Ok(log) => {
                let mut by_subject: BTreeMap<String, Vec<&ProbeLine>> = BTreeMap::new();
                for l in log.lines.iter().filter(|l| l.kind == kind) {
                    by_subject.entry(l.subject.clone()).or_default().push(l);
                }
                let mut subjects: BTreeSet<String> = expected.into_iter().collect();
                subjects.extend(by_subject.keys().cloned());
                for s in subjects {
                    let lines = by_subject.get(&s).cloned().unwrap_or_default();
                    let mut evidence: Vec<String> =
                        lines.iter().map(|l| format!("{} {}", if l.ok { "ok" } else { "FAIL" }, l.evidence)).collect();
                    let state = if lines.iter().any(|l| !l.ok) {
                        State::Red
                    } else if lines.is_empty() {
                        evidence.push(if log.complete {
                            format!("the probe on {} reported nothing for it", o.node)
                        } else {
                            format!(
                                "the probe's log on {} ends before this result (cut short or still running)",
                                o.node
                            )
                        });
                        evidence.extend(log.malformed.iter().take(3).cloned());
                        State::Unknown
                    } else {
                        State::Green
                    };
                    results.push(SubResult { subject: s, state, evidence, duration: o.took });
                }
            }
        }
    }
    results.sort_by(|a, b| a.subject.cmp(&b.subject));
    CheckResult::from_parts(kind.check_id(), title, results, notes)
}

/// How one step of the volume probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The Job finished; its log, parsed.
    Log(ParsedLog),
    /// The Job failed or did not finish in time (the volume could not be used there): why.
    Failed(String),
    /// The Job finished but its result could not be read: why.
    NoResult(String),
    /// The step did not run (an earlier one failed, or the run was cut short): why.
    NotReached(String),
}

/// One step of the volume probe: the writer on the first node, then a reader on each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeStep {
    pub node: String,
    pub role: VolumeRole,
    pub outcome: StepOutcome,
    pub took: Duration,
}

/// `probe-longhorn-volume`, one subject per node the volume was (to be) mounted on: green when
/// its step reported ok, red when it reported a failure or its Job failed or timed out (the
/// volume could not be mounted or used there), unknown when there is no result.
pub fn evaluate_volume(title: &str, steps: &[VolumeStep], notes: Vec<String>) -> CheckResult {
    let mut results = Vec::new();
    for st in steps {
        let role = st.role.as_str();
        let (state, evidence) = match &st.outcome {
            StepOutcome::Log(log) => {
                let lines: Vec<&ProbeLine> =
                    log.lines.iter().filter(|l| l.kind == ProbeKind::LonghornVolume && l.subject == st.node).collect();
                let mut evidence: Vec<String> = lines
                    .iter()
                    .map(|l| format!("{role}: {} {}", if l.ok { "ok" } else { "FAIL" }, l.evidence))
                    .collect();
                let state = if lines.iter().any(|l| !l.ok) {
                    State::Red
                } else if lines.is_empty() {
                    evidence.push(format!("{role}: the volume probe on {} reported nothing", st.node));
                    evidence.extend(log.malformed.iter().take(3).cloned());
                    State::Unknown
                } else {
                    State::Green
                };
                (state, evidence)
            }
            StepOutcome::Failed(why) => (State::Red, vec![format!("{role}: FAIL {why}")]),
            StepOutcome::NoResult(why) => (State::Unknown, vec![format!("{role}: no result: {why}")]),
            StepOutcome::NotReached(why) => (State::Unknown, vec![format!("{role}: not run: {why}")]),
        };
        results.push(SubResult { subject: st.node.clone(), state, evidence, duration: st.took });
    }
    CheckResult::from_parts(ProbeKind::LonghornVolume.check_id(), title, results, notes)
}

/// `hubble-probe-flows`: per ordered pair of probe nodes, the flows between probe pods on those
/// nodes (by the pods' names, which carry the run id) — green with at least one forwarded and
/// none dropped, red with a drop, unknown when none was seen.
pub fn evaluate_flows(
    title: &str,
    probe_pods: &BTreeMap<(String, String), (String, bool)>,
    nodes: &[ProbeNode],
    flows: &Result<super::observe::FlowWindow, String>,
) -> CheckResult {
    let w = match flows {
        Ok(w) => w,
        Err(e) => {
            return CheckResult::from_parts(
                "probe-hubble-flows",
                title,
                vec![SubResult {
                    subject: "cluster".into(),
                    state: State::Unknown,
                    evidence: vec![format!("cannot read the flow stream: {e}")],
                    duration: Duration::ZERO,
                }],
                vec![],
            );
        }
    };
    let node_of = |f: &super::observe::Peer| probe_pods.get(&(f.namespace.clone(), f.pod.clone())).cloned();
    // (client node, server node) → (forwarded, dropped, sample lines)
    let mut seen: BTreeMap<(String, String), (u64, u64, Vec<String>)> = BTreeMap::new();
    for f in &w.facts {
        let (Some((a, a_client)), Some((b, b_client))) = (node_of(&f.src), node_of(&f.dst)) else { continue };
        if a == b || a_client == b_client {
            continue;
        }
        // A reply travels server → client; count it for the client's pair.
        let key = if a_client { (a, b) } else { (b, a) };
        let e = seen.entry(key).or_default();
        if f.dropped() {
            e.1 += 1;
            if e.2.len() < 5 {
                e.2.push(f.line.clone());
            }
        } else if f.forwarded() {
            e.0 += 1;
            if e.2.len() < 2 && e.1 == 0 {
                e.2.push(f.line.clone());
            }
        }
    }
    let mut results = Vec::new();
    for a in nodes {
        for b in nodes.iter().filter(|b| b.name != a.name) {
            let (fwd, drop, samples) = seen.get(&(a.name.clone(), b.name.clone())).cloned().unwrap_or_default();
            let state = if drop > 0 {
                State::Red
            } else if fwd > 0 {
                State::Green
            } else {
                State::Unknown
            };
            let mut evidence = vec![format!("{fwd} forwarded, {drop} dropped between the probe pods")];
            if fwd == 0 && drop == 0 {
                evidence.push("no probe flow seen between these nodes while the probes ran".into());
            }
            evidence.extend(samples);
            results.push(SubResult { subject: pair(&a.name, &b.name), state, evidence, duration: w.elapsed });
        }
    }
    let mut notes = Vec::new();
    if let Some(why) = &w.ended_early {
        notes.push(format!("the flow stream ended early: {why}"));
    }
    if !w.unavailable_nodes.is_empty() {
        notes.push(format!(
            "nodes unavailable in the relay: {}",
            w.unavailable_nodes.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    CheckResult::from_parts("probe-hubble-flows", title, results, notes)
}

/// Flow facts between probe pods are what `evaluate_flows` reads; this keeps only them, so a
/// long probe phase on a busy cluster does not hold every flow.
pub fn is_probe_flow(f: &FlowFact, run: &str) -> bool {
    let mark = format!("cutover-probe-{run}-");
    f.src.pod.starts_with(&mark) || f.dst.pod.starts_with(&mark)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<ProbeNode> {
        ["a", "b", "c"]
            .iter()
            .map(|n| ProbeNode { name: n.to_string(), internal_ip: format!("192.0.2.{}", n.len()) })
            .collect()
    }

    #[test]
    fn parses_lines_and_reports_malformed_ones_without_panicking() {
        let log = "starting\nCUTOVER-PROBE pod-to-pod a->b ok icmp 10.0.0.2: 3 packets transmitted, 3 received\n\
                   CUTOVER-PROBE cluster-ip a fail tcp 10.43.0.9:8080 no connection within 3s\n\
                   CUTOVER-PROBE bogus a ok x\nCUTOVER-PROBE pod-to-pod a->b maybe\nCUTOVER-PROBE short\n\
                   CUTOVER-PROBE pod-to-pod ->b ok x\nCUTOVER-PROBE end a ok all probes ran\n";
        let p = parse_log(log);
        assert!(p.complete);
        assert_eq!(p.lines.len(), 2);
        assert_eq!(p.lines[0].subject, "a → b");
        assert!(p.lines[0].ok && !p.lines[1].ok);
        assert_eq!(p.lines[1].kind, ProbeKind::ClusterIp);
        assert_eq!(p.malformed.len(), 4, "{:?}", p.malformed);
        assert!(p.malformed[0].starts_with("line 4: unknown check"), "{:?}", p.malformed);
        assert!(p.malformed[1].contains("neither ok nor fail"));
        assert!(p.malformed[2].contains("expected `CUTOVER-PROBE"));
        // A cut log: no end line; binary junk and a huge line do not panic.
        let p = parse_log(&format!("CUTOVER-PROBE dns-egress a ok {}\u{fffd}\nCUTOVER-PRO", "x".repeat(10_000)));
        assert!(!p.complete);
        assert!(p.lines[0].evidence.len() <= MAX_EVIDENCE + 4);
    }

    #[test]
    fn the_evaluation_names_the_red_pair_and_unknowns_say_why() {
        let t = Targets {
            servers: [("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")]
                .iter()
                .map(|(n, i)| (n.to_string(), i.to_string()))
                .collect(),
            ..Default::default()
        };
        let ok = |from: &str, to: &str| format!("CUTOVER-PROBE pod-to-pod {from}->{to} ok x\n");
        let log_a = format!("{}{}CUTOVER-PROBE end a ok .\n", ok("a", "b"), "CUTOVER-PROBE pod-to-pod a->c fail tcp\n");
        let log_b = ok("b", "a"); // cut short: no line for b → c, no end
        let outcomes = vec![
            ClientOutcome { node: "a".into(), log: Ok(parse_log(&log_a)), took: Duration::from_secs(1) },
            ClientOutcome { node: "b".into(), log: Ok(parse_log(&log_b)), took: Duration::from_secs(1) },
            ClientOutcome { node: "c".into(), log: Err("the Job failed".into()), took: Duration::from_secs(1) },
        ];
        let r = evaluate_kind(ProbeKind::PodToPod, "t", &nodes(), &t, &outcomes, vec![]);
        let states: BTreeMap<&str, State> = r.results.iter().map(|s| (s.subject.as_str(), s.state)).collect();
        assert_eq!(states["a → b"], State::Green);
        assert_eq!(states["a → c"], State::Red);
        assert_eq!(states["b → a"], State::Green);
        assert_eq!(states["b → c"], State::Unknown);
        assert_eq!(states["c → a"], State::Unknown);
        assert_eq!(states.len(), 6);
        assert_eq!(r.state, State::Red);
        let bc = r.results.iter().find(|s| s.subject == "b → c").expect("b → c");
        assert!(bc.evidence[0].contains("ends before this result"), "{bc:?}");
    }

    #[test]
    fn manifests_are_labelled_pinned_and_bounded() {
        let cfg = ProbeConfig {
            namespace: "probes".into(),
            image: "nicolaka/netshoot:v0.13".into(),
            timeout: Duration::from_secs(60),
            url: "https://example.com/".into(),
            cluster_name: "kubernetes.default.svc.cluster.local".into(),
            ingress_service: "haproxy-ingress/haproxy-ingress".into(),
            storage_class: "longhorn".into(),
        };
        let objs = server_objects(&cfg, "r1", &nodes());
        assert_eq!(objs.len(), 4);
        assert_eq!(objs[1]["spec"]["nodeName"], "b");
        assert_eq!(objs[3]["kind"], "Service");
        assert_eq!(objs[3]["spec"]["selector"][RUN_LABEL], "r1");
        let t = Targets { servers: [("a".into(), "10.0.0.1".into())].into(), ..Default::default() };
        let jobs = client_objects(&cfg, "r1", &nodes(), &t);
        for o in objs.iter().chain(&jobs) {
            assert_eq!(o["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1, "{o}");
            assert_eq!(o["metadata"]["labels"][RUN_LABEL], "r1", "{o}");
            assert_eq!(o["metadata"]["namespace"], "probes");
        }
        assert_eq!(jobs[0]["spec"]["activeDeadlineSeconds"], 60);
        assert_eq!(jobs[0]["spec"]["template"]["spec"]["nodeName"], "a");
        let env = jobs[1]["spec"]["template"]["spec"]["containers"][0]["env"].as_array().expect("env").clone();
        let get = |k: &str| env.iter().find(|e| e["name"] == k).map(|e| e["value"].clone()).expect(k);
        assert_eq!(get("PROBE_PEERS"), "a=10.0.0.1");
        assert_eq!(get("PROBE_DNS_EXTERNAL"), "example.com");
        assert_eq!(url_host("http://u:p@h.example:8080/x?y"), "h.example");
        assert_eq!(selector(Some("r1")), "app.kubernetes.io/managed-by=cutover,cutover.io/probe-run=r1");
        assert_eq!(selector(None), "app.kubernetes.io/managed-by=cutover,cutover.io/probe-run");
    }

    fn cfg() -> ProbeConfig {
        ProbeConfig {
            namespace: "probes".into(),
            image: "nicolaka/netshoot:v0.13".into(),
            timeout: Duration::from_secs(45),
            url: "https://example.com/".into(),
            cluster_name: "kubernetes.default.svc.cluster.local".into(),
            ingress_service: "haproxy-ingress/haproxy-ingress".into(),
            storage_class: "longhorn-fast".into(),
        }
    }

    #[test]
    fn the_volume_manifests_are_labelled_pinned_bounded_and_share_one_claim() {
        let cfg = cfg();
        let pvc = volume_claim(&cfg, "r2");
        assert_eq!(pvc["kind"], "PersistentVolumeClaim");
        assert_eq!(pvc["metadata"]["name"], "cutover-probe-r2-vol");
        assert_eq!(pvc["spec"]["storageClassName"], "longhorn-fast");
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "16Mi");
        assert_eq!(pvc["spec"]["accessModes"], json!(["ReadWriteOnce"]));
        let w = volume_job(&cfg, "r2", 0, "a", VolumeRole::Write, "a");
        let r = volume_job(&cfg, "r2", 1, "b", VolumeRole::Read, "a");
        for o in [&pvc, &w, &r] {
            assert_eq!(o["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1, "{o}");
            assert_eq!(o["metadata"]["labels"][RUN_LABEL], "r2", "{o}");
            assert_eq!(o["metadata"]["namespace"], "probes");
        }
        assert_ne!(w["metadata"]["name"], r["metadata"]["name"]);
        for (j, node, role) in [(&w, "a", "write"), (&r, "b", "read")] {
            assert_eq!(j["spec"]["activeDeadlineSeconds"], 45);
            assert_eq!(j["spec"]["backoffLimit"], 0);
            let pod = &j["spec"]["template"]["spec"];
            assert_eq!(pod["nodeName"], node);
            assert_eq!(pod["restartPolicy"], "Never");
            assert_eq!(j["spec"]["template"]["metadata"]["labels"][RUN_LABEL], "r2");
            assert_eq!(j["metadata"]["labels"][NODE_LABEL], node);
            assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["claimName"], "cutover-probe-r2-vol");
            assert_eq!(pod["containers"][0]["volumeMounts"][0]["mountPath"], VOLUME_MOUNT);
            let env = pod["containers"][0]["env"].as_array().expect("env").clone();
            let get = |k: &str| env.iter().find(|e| e["name"] == k).map(|e| e["value"].clone()).expect(k);
            assert_eq!(get("PROBE_VOLUME_ROLE"), role);
            assert_eq!(get("PROBE_TOKEN"), "r2", "the token is the run id");
            assert_eq!(get("PROBE_WRITER"), "a");
            // Not a network client: the network probes' variables are absent.
            assert!(env.iter().all(|e| e["name"] != "PROBE_NODE"));
        }
    }

    #[test]
    fn the_volume_evaluation_is_green_only_when_read_back_and_names_the_failing_node() {
        let step =
            |node: &str, role, outcome| VolumeStep { node: node.into(), role, outcome, took: Duration::from_secs(2) };
        let log = |t: &str| StepOutcome::Log(parse_log(t));
        let green = [
            step(
                "a",
                VolumeRole::Write,
                log("CUTOVER-PROBE longhorn-volume a ok wrote token r1 to c\nCUTOVER-PROBE end a ok .\n"),
            ),
            step(
                "b",
                VolumeRole::Read,
                log("CUTOVER-PROBE longhorn-volume b ok read token r1 back from c (written on a)\n"),
            ),
        ];
        let r = evaluate_volume("t", &green, vec![]);
        assert_eq!(r.id, "probe-longhorn-volume");
        assert_eq!(r.state, State::Green);
        assert_eq!(r.results[1].evidence, ["read: ok read token r1 back from c (written on a)"]);

        // Timed out on b (FailedMount), c never reached: red naming b, c unknown.
        let stuck = [
            green[0].clone(),
            step("b", VolumeRole::Read, StepOutcome::Failed("did not finish within 45s on b: FailedMount".into())),
            step("c", VolumeRole::Read, StepOutcome::NotReached("stopped after the read on b".into())),
        ];
        let r = evaluate_volume("t", &stuck, vec![]);
        let states: Vec<(&str, State)> = r.results.iter().map(|s| (s.subject.as_str(), s.state)).collect();
        assert_eq!(states, [("a", State::Green), ("b", State::Red), ("c", State::Unknown)]);
        assert_eq!(r.state, State::Red);
        assert!(r.results[1].evidence[0].starts_with("read: FAIL did not finish"), "{r:?}");

        // A wrong token is red; a log without a line for the node is unknown, never green; a
        // line for another node does not count.
        let wrong = [step(
            "b",
            VolumeRole::Read,
            log("CUTOVER-PROBE longhorn-volume b fail read c: expected token r1, got: x\n"),
        )];
        assert_eq!(evaluate_volume("t", &wrong, vec![]).state, State::Red);
        let other = [step("b", VolumeRole::Read, log("CUTOVER-PROBE longhorn-volume a ok x\n"))];
        let r = evaluate_volume("t", &other, vec![]);
        assert_eq!(r.state, State::Unknown);
        assert!(r.results[0].evidence.iter().any(|e| e.contains("reported nothing")), "{r:?}");
        let none = [step("b", VolumeRole::Read, StepOutcome::NoResult("cannot read the log".into()))];
        assert_eq!(evaluate_volume("t", &none, vec![]).state, State::Unknown);
        assert_eq!(evaluate_volume("t", &[], vec![]).state, State::Unknown);
        // The volume tag parses; network kinds still do not include it.
        assert_eq!(parse_log("CUTOVER-PROBE longhorn-volume a ok x\n").lines[0].kind, ProbeKind::LonghornVolume);
        assert!(!ProbeKind::ALL.contains(&ProbeKind::LonghornVolume));
    }
}
