//! The sim's network model for probe pods: what a probe client's script (see
//! `crate::validate::probes::SCRIPT`) would print, decided from the store and the active faults.
//! The sim does not run shell scripts; it reads the same environment the script reads
//! (`PROBE_NODE`, `PROBE_PEERS`, `PROBE_SERVICE`, `PROBE_NODEPORTS`, `PROBE_LB`,
//! `PROBE_DNS_CLUSTER`, `PROBE_DNS_EXTERNAL`, `PROBE_URL`, `PROBE_TIMEOUT`) and answers each probe
//! the way the simulated network would:
//!
//! - pod-to-pod (ICMP and TCP to a peer's pod IP): fails when `broken-path` covers the two nodes,
//!   or no Running pod has that IP;
//! - cluster-ip: the Service with that ClusterIP has a Running backend on the client's node
//!   (the probe Service has `internalTrafficPolicy: Local`; other Services: any backend);
//! - node-port: the node with that InternalIP is Ready and the Service with that nodePort has a
//!   Running backend;
//! - load-balancer: a LoadBalancer Service has that IP in `status.loadBalancer.ingress` and a
//!   Running backend (`load-balancer-ip-lost` empties the status);
//! - DNS and the fetch fail with `dns-broken`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::faults::ActiveFaults;
use super::registry;
use super::store::Store;

/// A probe client pod: its container's environment has `PROBE_NODE`.
pub fn is_probe_client(pod: &Value) -> bool {
    !env_of(pod).get("PROBE_NODE").is_none_or(String::is_empty)
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn env_of(pod: &Value) -> BTreeMap<String, String> {
    pod.pointer("/spec/containers/0/env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| (s(e, "/name").to_string(), s(e, "/value").to_string()))
        .collect()
}

fn list(store: &Store, id: &str) -> Vec<std::sync::Arc<Value>> {
    registry::find(id).map(|r| store.list(r, None).0).unwrap_or_default()
}

fn running(p: &Value) -> bool {
    s(p, "/status/phase") == "Running" && p.pointer("/metadata/deletionTimestamp").is_none()
}

fn selects(svc: &Value, pod: &Value) -> bool {
    let Some(sel) = svc.pointer("/spec/selector").and_then(Value::as_object) else { return false };
    !sel.is_empty()
        && s(svc, "/metadata/namespace") == s(pod, "/metadata/namespace")
        && sel.iter().all(|(k, v)| pod.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
}

struct Net {
    pods: Vec<std::sync::Arc<Value>>,
    services: Vec<std::sync::Arc<Value>>,
    nodes: Vec<std::sync::Arc<Value>>,
}

impl Net {
    fn node_of_ip(&self, ip: &str) -> Option<String> {
        self.pods
            .iter()
            .find(|p| {
                running(p) && s(p, "/status/podIP") == ip && !p.pointer("/spec/hostNetwork").is_some_and(|h| h == true)
            })
            .map(|p| s(p, "/spec/nodeName").to_string())
    }

    fn backends(&self, svc: &Value) -> Vec<String> {
        self.pods.iter().filter(|p| running(p) && selects(svc, p)).map(|p| s(p, "/spec/nodeName").to_string()).collect()
    }

    fn node_ready(&self, node_ip: &str, faults: &ActiveFaults) -> Option<bool> {
        let node = self.nodes.iter().find(|n| {
            n.pointer("/status/addresses")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| s(x, "/type") == "InternalIP" && s(x, "/address") == node_ip))
        })?;
        let name = s(node, "/metadata/name");
        let ready = node
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True"));
        Some(ready && !faults.not_ready_nodes.contains(name))
    }
}

fn split_hostport(hp: &str) -> (&str, &str) {
    hp.rsplit_once(':').unwrap_or((hp, ""))
}

/// The log of a probe client pod, as its script prints it: one `CUTOVER-PROBE` line per probe
/// and a final `end` line.
pub fn probe_log(store: &Store, faults: &ActiveFaults, pod: &Value) -> String {
    let env = env_of(pod);
    let get = |k: &str| env.get(k).cloned().unwrap_or_default();
    let me = get("PROBE_NODE");
    let t = get("PROBE_TIMEOUT");
    let t = if t.is_empty() { "3".to_string() } else { t };
    let net = Net { pods: list(store, "pods"), services: list(store, "services"), nodes: list(store, "nodes") };
    let mut out = String::new();
    let mut say = |check: &str, subject: &str, ok: bool, evidence: String| {
        out.push_str(&format!("CUTOVER-PROBE {check} {subject} {} {evidence}\n", if ok { "ok" } else { "fail" }));
    };
    let tcp = |ok: bool, hp: &str| {
        if ok { format!("tcp {hp} connected") } else { format!("tcp {hp} no connection within {t}s") }
    };
    for peer in get("PROBE_PEERS").split_whitespace() {
        let (n, ip) = peer.split_once('=').unwrap_or((peer, ""));
        let ok = net.node_of_ip(ip).is_some_and(|node| !faults.path_broken(&me, &node));
        let subject = format!("{me}->{n}");
        let icmp = if ok {
            format!("icmp {ip}: 3 packets transmitted, 3 received")
        } else {
            format!("icmp {ip}: 3 packets transmitted, 0 received")
        };
        say("pod-to-pod", &subject, ok, icmp);
        say("pod-to-pod", &subject, ok, tcp(ok, &format!("{ip}:8080")));
    }
    let svc_hp = get("PROBE_SERVICE");
    if !svc_hp.is_empty() {
        let (ip, _) = split_hostport(&svc_hp);
        let ok = net.services.iter().find(|svc| s(svc, "/spec/clusterIP") == ip).is_some_and(|svc| {
            let local = s(svc, "/spec/internalTrafficPolicy") == "Local";
            net.backends(svc).iter().any(|b| !local || *b == me)
        });
        say("cluster-ip", &me, ok, tcp(ok, &svc_hp));
    }
    for np in get("PROBE_NODEPORTS").split_whitespace() {
        let (n, hp) = np.split_once('=').unwrap_or((np, ""));
        let (ip, port) = split_hostport(hp);
        let port: i64 = port.parse().unwrap_or(-1);
        let ok = net.node_ready(ip, faults) == Some(true)
            && net.services.iter().any(|svc| {
                svc.pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .is_some_and(|ps| ps.iter().any(|p| p.pointer("/nodePort").and_then(Value::as_i64) == Some(port)))
                    && !net.backends(svc).is_empty()
            });
        say("node-port", &format!("{me}->{n}"), ok, tcp(ok, hp));
    }
    let lb = get("PROBE_LB");
    if !lb.is_empty() {
        let (ip, _) = split_hostport(&lb);
        let ok = net.services.iter().any(|svc| {
            let key = (s(svc, "/metadata/namespace").to_string(), s(svc, "/metadata/name").to_string());
            let has_ip = svc
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|i| s(i, "/ip") == ip));
            has_ip && !faults.lb_ip_lost.contains(&key) && !net.backends(svc).is_empty()
        });
        say("load-balancer", &me, ok, tcp(ok, &lb));
    }
    let cluster_name = get("PROBE_DNS_CLUSTER");
    if !cluster_name.is_empty() {
        let answer = net.services.iter().find(|svc| {
            format!("{}.{}.svc.cluster.local", s(svc, "/metadata/name"), s(svc, "/metadata/namespace"))
                == cluster_name.trim_end_matches('.')
        });
        match (faults.dns_broken, answer) {
            (true, _) => say(
                "dns-egress",
                &me,
                false,
                format!("nslookup {cluster_name}: ;; connection timed out; no servers could be reached"),
            ),
            (false, Some(svc)) => {
                say("dns-egress", &me, true, format!("nslookup {cluster_name}: {}", s(svc, "/spec/clusterIP")))
            }
            (false, None) => say(
                "dns-egress",
                &me,
                false,
                format!("nslookup {cluster_name}: ** server can't find {cluster_name}: NXDOMAIN"),
            ),
        }
    }
    let external = get("PROBE_DNS_EXTERNAL");
    if !external.is_empty() {
        if faults.dns_broken {
            say(
                "dns-egress",
                &me,
                false,
                format!("nslookup {external}: ;; connection timed out; no servers could be reached"),
            );
        } else {
            say("dns-egress", &me, true, format!("nslookup {external}: 203.0.113.80"));
        }
    }
    let url = get("PROBE_URL");
    if !url.is_empty() {
        if faults.dns_broken {
            let host = url.split("://").nth(1).unwrap_or(&url).split(['/', ':']).next().unwrap_or("");
            say("dns-egress", &me, false, format!("fetch {url}: curl: (6) Could not resolve host: {host}"));
        } else {
            say("dns-egress", &me, true, format!("fetch {url}: HTTP 200"));
        }
    }
    out.push_str(&format!("CUTOVER-PROBE end {me} ok all probes ran\n"));
    out
}

/// Longhorn's volumes in the sim: what each volume (by PV name) holds, and the output of the
/// volume probe pods (by pod uid), produced when their container ran. Kept beside the store (a
/// volume's content is not an API object); the kubelet writes it, the API's log endpoint reads it.
#[derive(Debug, Default)]
pub struct VolumeData {
    pub content: BTreeMap<String, String>,
    pub logs: BTreeMap<String, String>,
}

pub type Volumes = std::sync::Arc<std::sync::Mutex<VolumeData>>;

/// A volume probe pod (see `crate::validate::probes::VOLUME_SCRIPT`): its environment has
/// `PROBE_VOLUME_ROLE`.
pub fn is_volume_probe(pod: &Value) -> bool {
    !env_of(pod).get("PROBE_VOLUME_ROLE").is_none_or(String::is_empty)
}

/// Runs a volume probe pod's script against the volume `pv` it mounted, as the container would:
/// the writer stores the token, a reader compares what the volume holds with it. Returns the
/// log it prints.
pub fn volume_run(data: &mut VolumeData, pod: &Value, pv: &str) -> String {
    let env = env_of(pod);
    let get = |k: &str| env.get(k).cloned().unwrap_or_default();
    let (me, token, claim, writer) =
        (get("PROBE_VOLUME_NODE"), get("PROBE_TOKEN"), get("PROBE_CLAIM"), get("PROBE_WRITER"));
    let file = get("PROBE_FILE");
    let line = match get("PROBE_VOLUME_ROLE").as_str() {
        "write" => {
            data.content.insert(pv.to_string(), format!("{token}\n"));
            format!("CUTOVER-PROBE longhorn-volume {me} ok wrote token {token} to {claim}")
        }
        _ => match data.content.get(pv).map(|c| c.trim_end_matches('\n').to_string()) {
            Some(got) if got == token => {
                format!(
                    "CUTOVER-PROBE longhorn-volume {me} ok read token {got} back from {claim} (written on {writer})"
                )
            }
            Some(got) => format!(
                "CUTOVER-PROBE longhorn-volume {me} fail read {claim}: expected token {token} (written on {writer}), got: {got}"
            ),
            None => format!(
                "CUTOVER-PROBE longhorn-volume {me} fail read {claim}: expected token {token} (written on {writer}), got: cat: can't open '{file}': No such file or directory"
            ),
        },
    };
    format!("{line}\nCUTOVER-PROBE end {me} ok volume probe ran\n")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::validate::probes::{ProbeKind, parse_log};

    fn world() -> Store {
        let s = Store::new(Arc::new(|| jiff::Timestamp::UNIX_EPOCH));
        let res = |id| registry::find(id).expect("resource");
        for (name, ip) in [("a", "192.0.2.1"), ("b", "192.0.2.2")] {
            let node = json!({"metadata": {"name": name}, "status": {
                "addresses": [{"type": "InternalIP", "address": ip}],
                "conditions": [{"type": "Ready", "status": "True"}]}});
            s.create(res("nodes"), "", node).expect("node");
        }
        for (name, node, ip) in [("srv-a", "a", "10.42.0.5"), ("srv-b", "b", "10.42.1.5")] {
            let pod = json!({"metadata": {"name": name, "labels": {"probe": "server"}},
                "spec": {"nodeName": node, "containers": [{"name": "c"}]},
                "status": {"phase": "Running", "podIP": ip}});
            s.create(res("pods"), "default", pod).expect("pod");
        }
        let svc = json!({"metadata": {"name": "probe"}, "spec": {"clusterIP": "10.43.0.50",
            "internalTrafficPolicy": "Local", "selector": {"probe": "server"}, "ports": [{"port": 8080}]}});
        s.create(res("services"), "default", svc).expect("svc");
        s
    }

    fn client(node: &str, peers: &str) -> Value {
        json!({"spec": {"containers": [{"env": [
            {"name": "PROBE_NODE", "value": node}, {"name": "PROBE_PEERS", "value": peers},
            {"name": "PROBE_SERVICE", "value": "10.43.0.50:8080"},
            {"name": "PROBE_DNS_CLUSTER", "value": "probe.default.svc.cluster.local"},
            {"name": "PROBE_URL", "value": "https://example.com/"}]}]}})
    }

    #[test]
    fn the_network_model_fails_exactly_what_the_fault_covers() {
        let s = world();
        let pod = client("a", "b=10.42.1.5");
        assert!(is_probe_client(&pod) && !is_probe_client(&json!({"spec": {}})));
        let ok = parse_log(&probe_log(&s, &ActiveFaults::default(), &pod));
        assert!(ok.complete && ok.malformed.is_empty(), "{ok:?}");
        assert!(ok.lines.iter().all(|l| l.ok), "{ok:?}");
        assert_eq!(ok.lines.iter().filter(|l| l.kind == ProbeKind::PodToPod).count(), 2);
        assert!(ok.lines.iter().any(|l| l.evidence == "nslookup probe.default.svc.cluster.local: 10.43.0.50"));

        let mut broken = ActiveFaults::default();
        broken.apply(&crate::sim::Fault::BrokenPath { a: "b".into(), b: "a".into() }, 1.0);
        let p = parse_log(&probe_log(&s, &broken, &pod));
        let failed: Vec<ProbeKind> = p.lines.iter().filter(|l| !l.ok).map(|l| l.kind).collect();
        assert_eq!(failed, [ProbeKind::PodToPod, ProbeKind::PodToPod], "{p:?}");

        let mut dns = ActiveFaults::default();
        dns.apply(&crate::sim::Fault::DnsBroken, 1.0);
        let p = parse_log(&probe_log(&s, &dns, &pod));
        let failed: Vec<ProbeKind> = p.lines.iter().filter(|l| !l.ok).map(|l| l.kind).collect();
        assert_eq!(failed, [ProbeKind::DnsEgress, ProbeKind::DnsEgress], "{p:?}");

        // A peer IP no pod has, and a node without a local backend for the Local Service.
        let p = parse_log(&probe_log(&s, &ActiveFaults::default(), &client("c", "a=10.42.9.9")));
        assert!(p.lines.iter().filter(|l| l.kind != ProbeKind::DnsEgress).all(|l| !l.ok), "{p:?}");
    }

    #[test]
    fn a_volume_keeps_what_the_writer_wrote_for_the_reader_on_another_node() {
        let pod = |node: &str, role: &str, token: &str| {
            json!({"spec": {"containers": [{"env": [
                {"name": "PROBE_VOLUME_NODE", "value": node}, {"name": "PROBE_VOLUME_ROLE", "value": role},
                {"name": "PROBE_TOKEN", "value": token}, {"name": "PROBE_CLAIM", "value": "claim"},
                {"name": "PROBE_WRITER", "value": "a"}, {"name": "PROBE_FILE", "value": "/d/token"}]}]}})
        };
        let w = pod("a", "write", "r1");
        assert!(is_volume_probe(&w) && !is_probe_client(&w));
        let mut data = VolumeData::default();
        // Nothing written yet: the reader fails and says what it found.
        let early = parse_log(&volume_run(&mut data, &pod("b", "read", "r1"), "pv-1"));
        assert!(!early.lines[0].ok && early.lines[0].evidence.contains("No such file"), "{early:?}");
        let wrote = parse_log(&volume_run(&mut data, &w, "pv-1"));
        assert!(wrote.complete && wrote.lines[0].ok && wrote.lines[0].kind == ProbeKind::LonghornVolume, "{wrote:?}");
        let read = parse_log(&volume_run(&mut data, &pod("b", "read", "r1"), "pv-1"));
        assert!(read.lines[0].ok && read.lines[0].subject == "b", "{read:?}");
        assert!(read.lines[0].evidence.contains("read token r1 back from claim (written on a)"), "{read:?}");
        // Another volume does not hold it; another token does not match.
        assert!(!parse_log(&volume_run(&mut data, &pod("b", "read", "r1"), "pv-2")).lines[0].ok);
        let wrong = parse_log(&volume_run(&mut data, &pod("b", "read", "r9"), "pv-1"));
        assert!(!wrong.lines[0].ok && wrong.lines[0].evidence.contains("got: r1"), "{wrong:?}");
    }
}
